package handler

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// BenchmarkPipeline measures the handler's own path at full speed, without
// a network: a scripted receiver hands a generated day's packets (each on
// lines A and B) to the real receive thread, arbiter, router, shard ring,
// book and shared-memory publisher. ns/msg is wall time per message from
// the first Receive to the last message applied and published; path-p50/p99
// are the pickup-to-publish latencies under that full load (queueing
// included).
func BenchmarkPipeline(b *testing.B) {
	const n = 500_000
	pkts := dayPackets(b, n)
	var script []rx.Packet
	now := time.Now().UnixNano()
	for _, p := range pkts {
		script = append(script, rx.Packet{Data: p, Line: rx.LineA, RxTime: now}, rx.Packet{Data: p, Line: rx.LineB, RxTime: now})
	}
	name := fmt.Sprintf("fhbench-%d", os.Getpid())
	defer shm.Remove(name)
	var total time.Duration
	var last Stats
	b.ReportAllocs()
	for b.Loop() {
		r := &scriptRx{script: script, errAt: -1}
		h, err := Start(Config{
			Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}, BatchSize: 64},
			Book:       book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
			ShardCores: []int{-1},
			ShmName:    name,
			Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
			Log:        zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for h.Applied() < n {
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(t0)
		h.Stop()
		last = h.Stats()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n*b.N), "ns/msg")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.5)), "path-p50-ns")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.99)), "path-p99-ns")
}

// pacedRx releases a script of packets at a fixed rate, stamping each with
// the time it became due: a receiver without a kernel, to measure the
// handler's own path at a realistic rate with nothing else on the machine.
type pacedRx struct {
	scriptRx
	start    time.Time
	interval time.Duration // between packets (each packet counts once per line copy)
	next     int

	tid  int   // the receive thread (the first caller of Receive)
	last int64 // the previous call's time, ns since start
	// stalls counts the calls that came more than stallNs after the
	// previous one: the receive thread did not run its loop for that long
	// (descheduled, preempted, or one slow batch). stallAt keeps the first
	// stallKeep of them (start, length), for period analysis.
	stalls  int
	stallAt [][2]int64
}

const (
	stallNs   = 5_000
	stallKeep = 1 << 16
)

func (r *pacedRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, rx.ErrClosed
	}
	since := time.Since(r.start)
	if r.tid == 0 {
		r.tid = unix.Gettid()
		r.stallAt = make([][2]int64, 0, stallKeep)
	} else if d := int64(since) - r.last; d > stallNs {
		r.stalls++
		if len(r.stallAt) < cap(r.stallAt) {
			r.stallAt = append(r.stallAt, [2]int64{r.last, d})
		}
	}
	r.last = int64(since)
	due := int(since / r.interval)
	n := 0
	for n < len(pkts) && r.next < len(r.script) && r.next <= due {
		pkts[n] = r.script[r.next]
		pkts[n].RxTime = r.start.Add(time.Duration(r.next) * r.interval).UnixNano()
		n++
		r.next++
	}
	return n, nil
}

var benchDepth = 10

// BenchmarkPipelinePaced offers a generated day at 100k packets/s per line
// (8-9 messages per packet, lines A and B interleaved) to the real
// pipeline and reports receive-to-publish latency percentiles: the
// handler's own path at a production-like rate, without a network stack.
// Run to completion: one thread pinned to CPU 0. Sharded: the receive
// thread on CPU 0, one shard thread on CPU 1 (the layout before run to
// completion was the default). apply-ns and publish-ns are the mean cost
// per packet of book apply and of publishing what its batch changed,
// measured on the same day without threads (BenchmarkApplyPublish), so the
// p50 can be split into receive + arbitration, apply and publish.
func BenchmarkPipelinePaced(b *testing.B) {
	for _, m := range []struct {
		mode   Mode
		shards []int
	}{{ModeRunToCompletion, nil}, {ModeSharded, []int{1}}} {
		b.Run(m.mode.String(), func(b *testing.B) { benchPaced(b, m.mode, m.shards) })
	}
}

func benchPaced(b *testing.B, mode Mode, shards []int) {
	g := dayPacketsSized(b, 400_000, 300)
	var script []rx.Packet
	for _, p := range g {
		script = append(script, rx.Packet{Data: p, Line: rx.LineA}, rx.Packet{Data: p, Line: rx.LineB})
	}
	name := fmt.Sprintf("fhbenchp-%d", os.Getpid())
	defer shm.Remove(name)
	var last Stats
	var vcs, ivcs, stalls float64
	b.ReportAllocs()
	for b.Loop() {
		r := &pacedRx{scriptRx: scriptRx{errAt: -1, script: script}}
		r.interval = time.Second / 200_000 // 100k/s per line, two lines
		h, err := Start(Config{
			Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}, BatchSize: 64},
			Book:        book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
			Mode:        mode,
			ReceiveCore: 0,
			ShardCores:  shards,
			Depth:       benchDepth,
			ShmName:     name,
			Open:        func(rx.Config) (rx.Receiver, error) { r.start = time.Now(); return r, nil },
			Log:         zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		var cs0 [2]uint64
		var t0 time.Time
		for {
			if cs0 == ([2]uint64{}) {
				r.mu.Lock()
				tid := r.tid
				r.mu.Unlock()
				if tid != 0 {
					cs0, t0 = threadSwitches(b, tid), time.Now()
				}
			}
			st := h.Stats()
			if st.Arbiter.Delivered == 400_000 && st.Applied() == st.Routed {
				break
			}
			time.Sleep(20 * time.Millisecond) // Stats merges histograms: keep it off the pinned cores' backs
		}
		r.mu.Lock()
		cs1, secs := threadSwitches(b, r.tid), time.Since(t0).Seconds()
		r.mu.Unlock()
		h.Stop()
		last = h.Stats()
		vcs, ivcs = float64(cs1[0]-cs0[0])/secs, float64(cs1[1]-cs0[1])/secs
		stalls = float64(r.stalls) / time.Duration(r.last).Seconds()
		if os.Getenv("FH_STALLS") != "" {
			logStalls(b, r.stallAt)
		}
	}
	b.ReportMetric(vcs, "rx-vcs/s")
	b.ReportMetric(ivcs, "rx-ivcs/s")
	b.ReportMetric(stalls, "rx-stalls/s")
	l := &last.Latency
	b.ReportMetric(float64(l.Quantile(0.5)), "p50-ns")
	b.ReportMetric(float64(l.Quantile(0.99)), "p99-ns")
	b.ReportMetric(float64(l.Quantile(0.999)), "p99.9-ns")
	b.ReportMetric(float64(l.Max), "max-ns")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.5)), "path-p50-ns")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.99)), "path-p99-ns")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.999)), "path-p99.9-ns")
}

// BenchmarkApplyPublish splits the handler's per-packet work on the
// paced benchmark's day into book apply and publish, without threads or a
// receiver and without a clock read per packet: each loop applies the whole
// day twice on fresh books, once without publishing and once publishing
// after every packet what it changed (conflated: each changed book once),
// as a run-to-completion batch of one packet does; publish is the
// difference. Per depth: ns per published book, apply and publish ns per
// packet.
func BenchmarkApplyPublish(b *testing.B) {
	pkts := dayPacketsSized(b, 400_000, 300)
	var msgs [][][]byte
	for _, raw := range pkts {
		p, err := moldudp64.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		var ms [][]byte
		it := p.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			ms = append(ms, m)
		}
		msgs = append(msgs, ms)
	}
	bcfg := book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16}
	for _, depth := range []int{1, 5, 10, 20} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			name := fmt.Sprintf("fhbenchap-%d", os.Getpid())
			defer shm.Remove(name)
			w, err := shm.Create(shm.Config{Name: name, Instruments: 1024, Depth: depth})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			bsA, errA := book.New(bcfg)
			bsP, errP := book.New(bcfg)
			if errA != nil || errP != nil {
				b.Fatal(errA, errP)
			}
			pub := NewPublisher(w, bsP, depth)
			var apply, both time.Duration
			var published, packets uint64
			b.ReportAllocs()
			for b.Loop() {
				bsA.Reset()
				t0 := time.Now()
				for i, ms := range msgs {
					for _, m := range ms {
						loc, changed := bsA.Apply(itch.Msg(m))
						_, _, _ = loc, changed, i
					}
				}
				t1 := time.Now()
				bsP.Reset()
				p0 := pub.Published
				for i, ms := range msgs {
					for _, m := range ms {
						loc, changed := bsP.Apply(itch.Msg(m))
						pub.Applied(loc, changed, uint64(i), 0)
					}
					pub.Flush()
				}
				both += time.Since(t1)
				apply += t1.Sub(t0)
				published += pub.Published - p0
				packets += uint64(len(msgs))
			}
			publish := both - apply
			b.ReportMetric(float64(publish.Nanoseconds())/float64(published), "ns/book")
			b.ReportMetric(float64(published)/float64(packets), "books/pkt")
			b.ReportMetric(float64(publish.Nanoseconds())/float64(packets), "publish-ns/pkt")
			b.ReportMetric(float64(apply.Nanoseconds())/float64(packets), "apply-ns/pkt")
		})
	}
}

// threadSwitches reads a thread's voluntary and involuntary context
// switches so far: voluntary ones are the thread sleeping (a futex wait:
// the Go scheduler parked it), involuntary ones the kernel running
// something else on its core.
func threadSwitches(tb testing.TB, tid int) (cs [2]uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch k {
		case "voluntary_ctxt_switches":
			cs[0] = n
		case "nonvoluntary_ctxt_switches":
			cs[1] = n
		}
	}
	return cs
}

// logStalls logs how long the receive thread's stalls were and how far
// apart the long ones came (a 10 ms period is the Go scheduler's
// preemption of a goroutine that ran 10 ms without rescheduling).
func logStalls(b *testing.B, at [][2]int64) {
	bounds := []int64{10e3, 20e3, 50e3, 100e3, 1e6, 1 << 62}
	hist := make([]int, len(bounds))
	var apart []int64
	prev := int64(-1)
	for _, s := range at {
		for i, ub := range bounds {
			if s[1] < ub {
				hist[i]++
				break
			}
		}
		if s[1] >= 20e3 {
			if prev >= 0 {
				apart = append(apart, (s[0]-prev)/1e5) // in 0.1 ms
			}
			prev = s[0]
		}
	}
	b.Logf("stalls by length (< 10, 20, 50, 100 us, 1 ms, more): %v", hist)
	per := map[int64]int{}
	for _, a := range apart {
		per[a]++
	}
	b.Logf("stalls >= 20 us: %d; intervals between them (0.1 ms: count): %v", len(apart)+1, per)
}
