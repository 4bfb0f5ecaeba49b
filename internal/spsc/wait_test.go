package spsc

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// schedSamples is the runtime's count of goroutines it made runnable and
// then ran (/sched/latencies:seconds, which samples one in several).
func schedSamples() uint64 {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, c := range s[0].Value.Float64Histogram().Counts {
		n += c
	}
	return n
}

// TestThreadWaitKeepsGoroutineRunning: a goroutine locked to its thread
// that waits on an empty ring with Backoff.Thread yields and sleeps in the
// kernel, so the Go scheduler never deschedules it; through the scheduler
// (Thread false) every yield and sleep deschedules it and hands it back
// to its thread, which the runtime's scheduling-latency samples show.
func TestThreadWaitKeepsGoroutineRunning(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Backoff.Thread waits in the kernel on Linux only")
	}
	waits := func(thread bool) uint64 {
		r, err := New[int](2)
		if err != nil {
			t.Fatal(err)
		}
		r.SetBackoff(Backoff{Spins: 1, Yields: 100, MinSleep: time.Microsecond, MaxSleep: 10 * time.Microsecond, Thread: thread})
		done := make(chan uint64)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			before := schedSamples()
			if v := r.PeekWait(1, 5*time.Millisecond); len(v) != 0 {
				t.Errorf("an empty ring gave %d elements", len(v))
			}
			// A counted number of waits, so that the samples do not
			// depend on how long each one takes on a loaded machine.
			b := r.backoff
			for range 800 {
				b.yield()
			}
			for range 200 {
				b.sleep(time.Microsecond)
			}
			done <- schedSamples() - before
		}()
		return <-done
	}
	kernel, scheduler := waits(true), waits(false)
	t.Logf("scheduling samples while waiting: %d in the kernel, %d through the Go scheduler", kernel, scheduler)
	if scheduler < 50 {
		t.Fatalf("waiting through the Go scheduler gave only %d samples: the measure does not see the hand-offs", scheduler)
	}
	if kernel*10 > scheduler {
		t.Errorf("waiting in the kernel descheduled the goroutine: %d samples against %d through the Go scheduler", kernel, scheduler)
	}
}

// BenchmarkLockedYield: one yield of a goroutine locked to its thread, in
// the kernel (Backoff.Thread) and through the Go scheduler.
func BenchmarkLockedYield(b *testing.B) {
	for _, m := range []struct {
		name   string
		thread bool
	}{{"kernel", true}, {"scheduler", false}} {
		b.Run(m.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			bo := Backoff{Thread: m.thread}
			for b.Loop() {
				bo.yield()
			}
		})
	}
}
