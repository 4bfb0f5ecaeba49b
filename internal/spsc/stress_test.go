package spsc

import (
	"sync"
	"testing"
	"time"
)

// TestTwoGoroutinesFIFO moves a bounded count of sequenced elements through a
// small ring with a producer that mixes TryPush and Reserve/Commit and a
// consumer that mixes TryPop, Peek/Release and PeekWait, and checks every
// element arrives exactly once, in order, intact.
func TestTwoGoroutinesFIFO(t *testing.T) {
	const n = 200_000
	r, _ := New[item](64)
	r.SetBackoff(Backoff{Spins: 8, Yields: 8, MinSleep: time.Microsecond, MaxSleep: 20 * time.Microsecond})

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.Close()
		var seq uint64
		for seq < n {
			if seq%3 == 0 {
				x := item{Seq: seq, Line: uint8(seq)}
				x.Data[0], x.Data[39] = byte(seq), byte(seq>>8)
				if r.TryPush(x) {
					seq++
				} else {
					r.ReserveWait(1, 0) // wait for room without spinning the CPU away
				}
				continue
			}
			w := r.ReserveWait(int(seq%17)+1, 0)
			k := 0
			for ; k < len(w) && seq < n; k++ {
				w[k] = item{Seq: seq, Line: uint8(seq)}
				w[k].Data[0], w[k].Data[39] = byte(seq), byte(seq>>8)
				seq++
			}
			r.Commit(k)
		}
	}()

	var next uint64
	check := func(x item) {
		if x.Seq != next || x.Line != uint8(next) || x.Data[0] != byte(next) || x.Data[39] != byte(next>>8) {
			t.Fatalf("got seq %d (line %d), want %d", x.Seq, x.Line, next)
		}
		next++
	}
	for i := 0; ; i++ {
		switch i % 3 {
		case 0:
			if x, ok := r.TryPop(); ok {
				check(x)
			}
		case 1:
			v := r.Peek(i%29 + 1)
			if len(v) == 0 {
				// Wait (yielding) rather than spin: on a loaded machine the
				// producer may need this CPU.
				v = r.PeekWait(i%29+1, time.Millisecond)
			}
			for _, x := range v {
				check(x)
			}
			r.Release(len(v))
		default:
			v := r.PeekWait(32, 0)
			if len(v) == 0 && r.Closed() {
				wg.Wait()
				if next != n {
					t.Fatalf("received %d of %d", next, n)
				}
				if st := r.Stats(); st.Pushed != n || st.HighWater > 64 || st.HighWater == 0 {
					t.Fatalf("stats %+v", st)
				}
				return
			}
			for _, x := range v {
				check(x)
			}
			r.Release(len(v))
		}
	}
}

func benchHandoff(b *testing.B, batch int) {
	r, _ := New[item](1024)
	var stop, done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var seq uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 64 {
				w := r.Reserve(batch)
				for i := range w {
					w[i].Seq = seq
					seq++
				}
				r.Commit(len(w))
			}
		}
	}()
	b.ReportAllocs()
	var got uint64
	start := time.Now()
	for b.Loop() {
		for need := batch; need > 0; {
			v := r.Peek(need)
			if len(v) == 0 {
				continue
			}
			for i := range v {
				if v[i].Seq != got {
					b.Fatalf("seq %d want %d", v[i].Seq, got)
				}
				got++
			}
			r.Release(len(v))
			need -= len(v)
		}
	}
	el := time.Since(start)
	close(stop)
	<-done
	b.ReportMetric(float64(el.Nanoseconds())/float64(got), "ns/msg")
}

// BenchmarkHandoff moves one element per iteration from a producer goroutine
// to the benchmark goroutine.
func BenchmarkHandoff(b *testing.B) { benchHandoff(b, 1) }

// BenchmarkHandoffBatch64 moves 64 elements per iteration, written with
// Reserve/Commit and read with Peek/Release.
func BenchmarkHandoffBatch64(b *testing.B) { benchHandoff(b, 64) }
