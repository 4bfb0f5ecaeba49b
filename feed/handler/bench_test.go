package handler

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/internal/shmtest"
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
	name := shmtest.Name(b, "fhbench")
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

	tid   int   // the receive thread (the first caller of Receive)
	last  int64 // the previous call's time, ns since start
	lastN int   // packets the previous call handed out
	// stalls counts the calls that came more than stallNs after the
	// previous one: the receive thread did not run its loop for that long
	// (descheduled, preempted, or one slow batch). stallAt keeps the first
	// stallKeep of them (start, length), for period analysis.
	stalls  int
	stallAt [][3]int64 // start, length, packets the call before the gap handed out
	// startMono is CLOCK_MONOTONIC at start, for FH_STALLS_OUT (the
	// stalls in the kernel tracer's "mono" clock, tools/hotcpu).
	startMono int64

	// Tail attribution (-tags tailtrace): the handler, its thread's
	// switch counts at the end of the last slow batch (read only then),
	// and the length of its batch trace at the last pickup (see
	// tailTrace).
	burst    int // FH_PACED_BURST: packets are released in groups of this many (0, 1: as they are due)
	tail     bool
	handler  *Handler // set by the benchmark under mu
	h        *Handler // the receive thread's copy
	ru       unix.Rusage
	traceBuf []batchTrace // the trace's buffer, allocated and touched by benchPaced before Start
	trace0   int          // len(trace) at the last pickup
	lastLoop int64        // when the loop was last seen outside a batch (a Receive call, a Release), ns since start
	idleGap  int64        // the longest interval between two such sightings since the last batch
}

const (
	stallNs   = 5_000
	stallKeep = 1 << 16
)

func (r *pacedRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, rx.ErrClosed
	}
	since := time.Since(r.start)
	if r.tid == 0 {
		r.tid = unix.Gettid()
		r.stallAt = make([][3]int64, 0, stallKeep)
	} else if d := int64(since) - r.last; d > stallNs {
		r.stalls++
		if len(r.stallAt) < cap(r.stallAt) {
			r.stallAt = append(r.stallAt, [3]int64{r.last, d, int64(r.lastN)})
		}
	}
	r.last = int64(since)
	due := int(since / r.interval)
	if r.burst > 1 {
		// Held until the last packet of its group of burst is due: as
		// after a stall of burst packet intervals, every time.
		due = (due+1)/r.burst*r.burst - 1
	}
	n := 0
	for n < len(pkts) && r.next < len(r.script) && r.next <= due {
		pkts[n] = r.script[r.next]
		pkts[n].RxTime = r.start.Add(time.Duration(r.next) * r.interval).UnixNano()
		n++
		r.next++
	}
	if tailTrace && r.tail {
		r.traceBegin(int64(since), n)
	}
	r.lastN = n
	r.mu.Unlock() // not deferred: a defer's cost every empty poll was counted in the round
	return n, nil
}

var benchDepth = 10

// BenchmarkPipelinePaced offers a generated day at 100k packets/s per line
// (8-9 messages per packet, lines A and B interleaved) to the real
// pipeline and reports receive-to-publish latency percentiles: the
// handler's own path at a production-like rate, without a network stack.
// Run to completion: one thread pinned to CPU 0. Sharded: the receive
// thread on CPU 0, one shard thread on CPU 1 (the layout before run to
// completion was the default).
//
// The p50 split: receive-ns is the p50 less the path p50 (a packet's wait
// from its due time to the receive thread's pickup); apply-ns/pkt and
// publish-ns/pkt are the mean cost per packet of book apply and of
// publishing what the packet changed, measured on the same day on one
// thread without the pipeline (as BenchmarkApplyPublish), so the path p50
// less those is MoldUDP64 parse, arbitration and recording.
//
// The tail: rx-vcs/s and rx-ivcs/s are the receive thread's voluntary
// (the Go scheduler parked it: a preemption of a locked goroutine, a
// contended lock) and involuntary (the kernel ran another thread on its
// core) context switches per second; rx-stalls/s counts the gaps over
// 5 µs between two calls of Receive (FH_STALLS=1 logs their lengths and
// spacing).
//
// run-to-completion-fifo is run to completion with the receive thread
// under SCHED_FIFO (Config.RTPriority 10; it falls back to normal
// scheduling, and says so in the log, without the privilege). The paced
// receiver never blocks, so it keeps CPU 0 from every other thread of
// normal priority but the kernel's fair-server share (docs/TUNING.md).
func BenchmarkPipelinePaced(b *testing.B) {
	for _, m := range []struct {
		name   string
		mode   Mode
		shards []int
		prio   int
	}{{"", ModeRunToCompletion, nil, 0}, {"", ModeSharded, []int{1}, 0}, {"run-to-completion-fifo", ModeRunToCompletion, nil, 10}} {
		b.Run(cmp.Or(m.name, m.mode.String()), func(b *testing.B) { benchPaced(b, m.mode, m.shards, m.prio) })
	}
}

func benchPaced(b *testing.B, mode Mode, shards []int, prio int) {
	nMsgs := 400_000
	if v, err := strconv.Atoi(os.Getenv("FH_PACED_MSGS")); err == nil && v > 0 {
		nMsgs = v // a longer run, for the tail (default 400k messages, about 0.47 s)
	}
	// FH_PACED_BURST=n releases the packets n at a time, each group
	// when its last packet is due: every batch then drains a backlog of n
	// packets (n/2 new, n/2 copies), as after a stall of n intervals; the
	// path is the drain's time, without waiting for the machine's stalls.
	burst, _ := strconv.Atoi(os.Getenv("FH_PACED_BURST"))
	// FH_PACED_SYMBOLS=n spreads the day over n instruments (default
	// 50): thousands, as on Nasdaq, make the books and slots outgrow the
	// caches.
	symbols := 50
	if v, err := strconv.Atoi(os.Getenv("FH_PACED_SYMBOLS")); err == nil && v > 0 {
		symbols = v
	}
	g := dayPacketsSymbols(b, nMsgs, 300, symbols)
	var script []rx.Packet
	for _, p := range g {
		script = append(script, rx.Packet{Data: p, Line: rx.LineA}, rx.Packet{Data: p, Line: rx.LineB})
	}
	name := shmtest.Name(b, "fhbenchp")
	var last Stats
	var vcs, ivcs, stalls, stalls20, stalled20 float64
	var lastH *Handler
	statsPoll := os.Getenv("FH_PACED_STATS") != ""
	// FH_PACED_RECOVERY=1 configures re-request (a server on loopback's
	// discard port, never asked: the day has no gap), as production does:
	// the round's cost with a recovery configured but idle.
	var recovery RecoveryConfig
	if os.Getenv("FH_PACED_RECOVERY") != "" {
		recovery.Rerequest = rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}}
	}
	var traceBuf []batchTrace
	if tailTrace && mode == ModeRunToCompletion {
		// The trace's buffer (about 151 MB), allocated once here, not on
		// the receive thread in a run: its pages are touched now and the
		// collection its allocation may start is done before the runs.
		traceBuf = make([]batchTrace, tailTraceCap)
		for i := range traceBuf {
			traceBuf[i].pkts = -1
		}
		runtime.GC()
	}
	b.ReportAllocs()
	for b.Loop() {
		r := &pacedRx{scriptRx: scriptRx{errAt: -1, script: script}}
		r.tail = tailTrace && mode == ModeRunToCompletion
		r.traceBuf = traceBuf
		r.burst = burst
		r.interval = time.Second / 200_000 // 100k/s per line, two lines
		h, err := Start(Config{
			Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}, BatchSize: 64},
			Book:        book.Config{MaxOrders: 1 << 18, MaxLocates: max(1024, symbols+1), MaxLevels: 1 << 16},
			Mode:        mode,
			ReceiveCore: 0,
			ShardCores:  shards,
			RTPriority:  prio,
			Depth:       benchDepth,
			ShmName:     name,
			Recovery:    recovery,
			Open: func(rx.Config) (rx.Receiver, error) {
				r.start = time.Now()
				var ts unix.Timespec
				if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
					r.startMono = ts.Nano()
				}
				return r, nil
			},
			Log: zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		r.mu.Lock()
		r.handler = h
		r.mu.Unlock()
		if th := h.Stats().ReceiveThread; th.Priority != prio {
			b.Logf("receive thread under normal scheduling: %s", th.Reason)
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
			// Done when every message is delivered and applied, read
			// from two atomics. FH_PACED_STATS=1 reads a whole Stats
			// instead (histogram merges and the stats locks every 20 ms,
			// as the harness did before: a scrape 50 times a second) to
			// measure what that costs the receive thread.
			if statsPoll {
				st := h.Stats()
				if st.Arbiter.Delivered == uint64(nMsgs) && st.Applied() == st.Routed {
					break
				}
			} else if h.Delivered() == uint64(nMsgs) && h.Applied() == uint64(nMsgs) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.mu.Lock()
		cs1, secs := threadSwitches(b, r.tid), time.Since(t0).Seconds()
		r.mu.Unlock()
		h.Stop()
		last, lastH = h.Stats(), h
		vcs, ivcs = float64(cs1[0]-cs0[0])/secs, float64(cs1[1]-cs0[1])/secs
		stalls = float64(r.stalls) / time.Duration(r.last).Seconds()
		long, lost := 0, int64(0)
		for _, st := range r.stallAt {
			if st[1] >= 20_000 {
				long++
				lost += st[1]
			}
		}
		stalls20 = float64(long) / time.Duration(r.last).Seconds()
		stalled20 = 100 * float64(lost) / float64(r.last)
		if os.Getenv("FH_STALLS") != "" {
			logStalls(b, r.stallAt)
		}
		if f := os.Getenv("FH_STALLS_OUT"); f != "" {
			writeStalls(b, f, r.tid, r.startMono, r.stallAt, r.stalls)
		}
	}
	b.ReportMetric(vcs, "rx-vcs/s")
	b.ReportMetric(ivcs, "rx-ivcs/s")
	b.ReportMetric(stalls, "rx-stalls/s")
	b.ReportMetric(stalls20, "rx-stalls20/s")
	b.ReportMetric(stalled20, "rx-stalled20-%")
	// The share of the p50: receive (the wait from the packet's time to
	// its pickup), and on the handler's own path apply and publish,
	// measured on the same day on this thread (means per packet); the
	// rest of the path is MoldUDP64 parse, arbitration and recording.
	// Warm: the fastest of three passes (the first one faults in the
	// books and the shm slots).
	msgs := dayMessages(b, g)
	applyNs, publishNs := 0.0, 0.0
	for i := 0; i < 3; i++ {
		c := newApplyPublishCostN(b, benchDepth, symbols)
		c.measure(b, msgs)
		c.apply, c.both, c.published, c.packets = 0, 0, 0, 0
		c.measure(b, msgs)
		if i == 0 || c.applyPerPacket()+c.publishPerPacket() < applyNs+publishNs {
			applyNs, publishNs = c.applyPerPacket(), c.publishPerPacket()
		}
	}
	l := &last.Latency
	b.ReportMetric(float64(l.Quantile(0.5)-last.PathLatency.Quantile(0.5)), "receive-ns")
	b.ReportMetric(applyNs, "apply-ns/pkt")
	b.ReportMetric(publishNs, "publish-ns/pkt")
	if stageTiming && mode == ModeRunToCompletion {
		// Per message, its batch's stages: offer (MoldUDP64 parse,
		// arbitration, apply), of which apply, and publish (+ record).
		st := &lastH.shards[0].stages
		var off, app, pub latency.Snapshot
		st.offer.Snapshot(&off)
		st.apply.Snapshot(&app)
		st.publish.Snapshot(&pub)
		b.ReportMetric(float64(off.Quantile(0.5)), "stage-offer-p50-ns")
		b.ReportMetric(float64(app.Quantile(0.5)), "stage-apply-p50-ns")
		b.ReportMetric(float64(pub.Quantile(0.5)), "stage-publish-p50-ns")
		b.ReportMetric(off.Mean(), "stage-offer-mean-ns")
		b.ReportMetric(app.Mean(), "stage-apply-mean-ns")
		b.ReportMetric(pub.Mean(), "stage-publish-mean-ns")
	}
	if tailTrace && mode == ModeRunToCompletion {
		logTail(b, lastH.shards[0].tail.traced(), &last.PathLatency)
	}
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
// packet. The
// cpu- figures are the thread's CPU time instead of wall time (so not the
// time other processes took the core, on a shared machine): the
// apply-and-publish pass per packet, and less the apply pass. The
// symbols=5000 cases run a day of as many messages over 5000 instruments,
// where books and slots no longer stay in the caches.
func BenchmarkApplyPublish(b *testing.B) {
	for _, day := range []struct {
		name    string
		symbols int
	}{{"", 50}, {"symbols=5000/", 5000}} {
		msgs := dayMessages(b, dayPacketsSymbols(b, 400_000, 300, day.symbols))
		for _, depth := range []int{1, 5, 10, 20} {
			b.Run(fmt.Sprintf("%sdepth=%d", day.name, depth), func(b *testing.B) {
				c := newApplyPublishCostN(b, depth, day.symbols)
				b.ReportAllocs()
				for b.Loop() {
					c.measure(b, msgs)
				}
				b.ReportMetric(c.perBook(), "ns/book")
				b.ReportMetric(float64(c.published)/float64(c.packets), "books/pkt")
				b.ReportMetric(c.publishPerPacket(), "publish-ns/pkt")
				b.ReportMetric(c.applyPerPacket(), "apply-ns/pkt")
				apply, both := c.cpuPerPacket()
				b.ReportMetric(both, "cpu-both-ns/pkt")
				b.ReportMetric(both-apply, "cpu-publish-ns/pkt")
			})
		}
	}
}

// dayMessages splits packets into their messages.
func dayMessages(b testing.TB, pkts [][]byte) [][][]byte {
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
	return msgs
}

// applyPublishCost measures, on one thread, the book apply and the
// publish (each changed book once per packet) of a day's packets.
type applyPublishCost struct {
	bsA, bsP           *book.Books
	pub                *Publisher
	apply, both        time.Duration
	applyCPU, bothCPU  time.Duration // the thread's CPU time: without the time other processes took the core
	published, packets uint64
}

// newApplyPublishCostN sizes the books and the feed for a day of symbols
// instruments.
func newApplyPublishCostN(b *testing.B, depth, symbols int) *applyPublishCost {
	locates := max(1024, symbols+1)
	w, err := shm.Create(shm.Config{Name: shmtest.Name(b, "fhbenchap"), Instruments: locates, Depth: depth, SingleWriter: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	bcfg := book.Config{MaxOrders: 1 << 18, MaxLocates: locates, MaxLevels: 1 << 17}
	bsA, errA := book.New(bcfg)
	bsP, errP := book.New(bcfg)
	if errA != nil || errP != nil {
		b.Fatal(errA, errP)
	}
	return &applyPublishCost{bsA: bsA, bsP: bsP, pub: NewPublisher(w, bsP, depth)}
}

// measure applies the day twice on fresh books, once without publishing
// and once publishing after every packet what it changed.
func (c *applyPublishCost) measure(b *testing.B, msgs [][][]byte) {
	// On a locked thread, so that its CPU clock is this work's alone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.bsA.Reset()
	t0, u0 := time.Now(), threadCPU()
	for _, ms := range msgs {
		for _, m := range ms {
			c.bsA.Apply(itch.Msg(m))
		}
	}
	t1, u1 := time.Now(), threadCPU()
	c.bsP.Reset() // outside the timed part, as bsA's
	p0 := c.pub.Published
	t2, u2 := time.Now(), threadCPU()
	for i, ms := range msgs {
		for _, m := range ms {
			loc, changed := c.bsP.Apply(itch.Msg(m))
			c.pub.Applied(loc, changed, uint64(i), 0)
		}
		c.pub.Flush()
	}
	c.both += time.Since(t2)
	c.bothCPU += threadCPU() - u2
	c.apply += t1.Sub(t0)
	c.applyCPU += u1 - u0
	c.published += c.pub.Published - p0
	c.packets += uint64(len(msgs))
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// cpuPerPacket returns the thread CPU time per packet of the apply pass
// and of the apply-and-publish pass.
func (c *applyPublishCost) cpuPerPacket() (apply, both float64) {
	return float64(c.applyCPU.Nanoseconds()) / float64(c.packets), float64(c.bothCPU.Nanoseconds()) / float64(c.packets)
}

func (c *applyPublishCost) applyPerPacket() float64 {
	return float64(c.apply.Nanoseconds()) / float64(c.packets)
}

func (c *applyPublishCost) publishPerPacket() float64 {
	return float64((c.both - c.apply).Nanoseconds()) / float64(c.packets)
}

func (c *applyPublishCost) perBook() float64 {
	return float64((c.both - c.apply).Nanoseconds()) / float64(c.published)
}

// threadSwitches reads a thread's voluntary and involuntary context
// switches so far (ThreadSched.Switches).
func threadSwitches(tb testing.TB, tid int) (cs [2]uint64) {
	var err error
	if cs[0], cs[1], err = (ThreadSched{Tid: tid}).Switches(); err != nil {
		tb.Fatal(err)
	}
	return cs
}

// logStalls logs how long the receive thread's stalls were and how far
// apart the long ones came (a 10 ms period is the Go scheduler's
// preemption of a goroutine that ran 10 ms without rescheduling).
func logStalls(b *testing.B, at [][3]int64) {
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

// writeStalls writes the receive thread's id ("tid N"), then its stalls,
// one a line: start in CLOCK_MONOTONIC ns, length in ns, and the packets
// the Receive call before the gap handed out (the gap holds their work)
// (tools/hotcpu matches them against a kernel trace of the CPU). Only the
// first stallKeep are kept: when there were more (total), it says so, in
// the log and on a last line "cut N" (the N stalls left out).
func writeStalls(b *testing.B, file string, tid int, startMono int64, at [][3]int64, total int) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "tid %d\n", tid)
	for _, s := range at {
		fmt.Fprintf(&sb, "%d %d %d\n", startMono+s[0], s[1], s[2])
	}
	if total > len(at) {
		fmt.Fprintf(&sb, "cut %d\n", total-len(at))
		b.Logf("FH_STALLS_OUT: wrote the first %d of %d stalls (the rest were not kept)", len(at), total)
	}
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		b.Fatalf("write stalls: %v", err)
	}
}

// BenchmarkMachineStalls measures what the machine does to a spinning
// thread, without the handler: a goroutine locked to its thread and pinned
// to CPU 0 (where BenchmarkPipelinePaced runs its receive thread) reads the
// clock for a second and counts the gaps between two reads over 5 µs and
// over 20 µs (per second), and the share of the second they took. Compare
// with the paced benchmark's rx-stalls20/s: what the machine (hypervisor,
// kernel, other processes) imposes is the floor of the handler's tail.
func BenchmarkMachineStalls(b *testing.B) {
	var n5, n20 int
	var lost, total time.Duration
	for b.Loop() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the pinned thread exits with the goroutine
			if err := pin(0); err != nil {
				b.Error(err)
				return
			}
			start := time.Now()
			prev := time.Duration(0)
			for {
				now := time.Since(start)
				if now > time.Second {
					total += now
					return
				}
				if d := now - prev; d > stallNs {
					n5++
					if d >= 20*time.Microsecond {
						n20++
						lost += d
					}
				}
				prev = now
			}
		}()
		<-done
	}
	b.ReportMetric(float64(n5)/total.Seconds(), "stalls/s")
	b.ReportMetric(float64(n20)/total.Seconds(), "stalls20/s")
	b.ReportMetric(100*lost.Seconds()/total.Seconds(), "stalled20-%")
}

// BenchmarkMarketWideChange is the publish of a batch that carries a
// market-wide change (a system event, the stale flag) with 5,000 books
// published: "flush" republishes every book in that batch (Flush, as every
// batch did before the sweep), "chunk" the batch's own books and
// DefaultSweepChunk of the sweep (FlushSome, what the pipeline does after
// each batch). ns/op is the batch's publish.
func BenchmarkMarketWideChange(b *testing.B) {
	const n = 5000
	w := testWriterN(b, n+1)
	bs, err := book.New(book.Config{MaxOrders: 1 << 16, MaxLocates: n, MaxLevels: 1 << 14})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPublisher(w, bs, 10)
	for loc := uint16(1); loc <= n; loc++ {
		bs.Announce(loc, itch.NewSymbol(fmt.Sprintf("S%d", loc)))
		for i := range 20 {
			side := book.Bid
			if i%2 == 1 {
				side = book.Ask
			}
			bs.AddOrder(loc, uint64(loc)*100+uint64(i), side, 100, 1000+uint32(i))
		}
		p.Applied(loc, true, uint64(loc), 1)
	}
	p.Flush()
	for _, c := range []struct {
		name  string
		flush func()
	}{{"flush", p.Flush}, {"chunk", p.FlushSome}} {
		b.Run(c.name, func(b *testing.B) {
			stale := false
			for b.Loop() {
				stale = !stale
				p.SetStale(stale)
				p.Applied(7, true, 1, 1) // the batch's own book
				c.flush()
			}
			b.StopTimer()
			p.Flush()
			if p.Errors != 0 {
				b.Fatalf("%d publish errors", p.Errors)
			}
		})
	}
}
