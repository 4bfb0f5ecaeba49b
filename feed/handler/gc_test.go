package handler

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// gcCycles reads the runtime's GC cycle count (the cycles GODEBUG=gctrace=1
// prints a line for).
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// batches counts the batches the shards applied and published so far.
func batches(h *Handler) uint64 {
	var n uint64
	for _, s := range h.shards {
		n += s.batches.Load()
	}
	return n
}

const (
	gcChildEnv  = "FEEDHANDLER_GC_CHILD"  // set: run the paced pipeline (the child)
	gcInjectEnv = "FEEDHANDLER_GC_INJECT" // set in the child: the receiver allocates once per batch
	gcSteady    = "gc check: steady state from here"
	gcWindow    = 60 * time.Second
)

// gcLine is a line GODEBUG=gctrace=1 prints per GC cycle.
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @.*$`)

// TestPacedRunStartsNoGC runs the real pipeline (run to completion: receive
// thread, arbiter, books, shm publisher, housekeeping) for 60 s at 100k
// packets/s per line, in a child process with GODEBUG=gctrace=1, with the
// stats line logged and the metrics scraped every second, as the command
// does; and checks that the runtime prints no "gc N @" line after the
// warm-up. The child lowers GOGC to 1 once warm, so the check has teeth: a
// path allocating once per batch (set FEEDHANDLER_GC_INJECT=1 to see it
// fail) grows the heap by 1% within a second and starts a cycle.
func TestPacedRunStartsNoGC(t *testing.T) {
	if os.Getenv(gcChildEnv) != "" {
		pacedGCChild(t)
		return
	}
	if testing.Short() {
		t.Skip("a 60 s paced run")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPacedRunStartsNoGC$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), gcChildEnv+"=1", "GODEBUG=gctrace=1")
	out, err := deathsig.CombinedOutput(cmd) // a 60 s child: it dies with a killed test binary
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), gcSteady)
	if !ok {
		t.Fatalf("the child never reached the steady state:\n%s", out)
	}
	if gcs := gcLine.FindAllString(after, -1); len(gcs) > 0 {
		t.Errorf("%d GC cycles in the 60 s steady state, the first: %s", len(gcs), gcs[0])
	}
	for _, l := range strings.Split(after, "\n") {
		if strings.Contains(l, "gc check:") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if t.Failed() {
		t.Logf("child output:\n%s", out)
	}
}

// lapRx plays one generated day at a fixed rate, over and over (a lap
// after another, sequence numbers continued), on lines A and B, out of a
// fixed set of buffers: a receiver without a kernel, for a run longer than
// a day held in memory. From the second lap the books see the day's orders
// again (counted as inconsistencies and ignored): the path's work is the
// same, which is what a GC check needs.
type lapRx struct {
	mu       sync.Mutex
	day      [][]byte // one lap, line A's copy (B sends the same)
	lapMsgs  uint64   // messages per lap
	start    time.Time
	interval time.Duration // between packets (each line's copy counts)
	next     int           // packets released so far, both lines
	bufs     [256][1500]byte
	closed   bool
	inject   bool
}

var gcSink []byte

func (r *lapRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, rx.ErrClosed
	}
	now := time.Now()
	due := int(now.Sub(r.start) / r.interval)
	n := 0
	for n < len(pkts) && n < len(r.bufs) && r.next <= due {
		i := r.next / 2 // the packet; A and B in turn
		lap := uint64(i / len(r.day))
		src := r.day[i%len(r.day)]
		b := r.bufs[r.next%len(r.bufs)][:len(src)]
		copy(b, src)
		seq := binary.BigEndian.Uint64(b[10:18])
		binary.BigEndian.PutUint64(b[10:18], seq+lap*r.lapMsgs)
		pkts[n] = rx.Packet{Data: b, Line: rx.Line(r.next % 2), RxTime: r.start.Add(time.Duration(r.next) * r.interval).UnixNano()}
		n++
		r.next++
	}
	if n > 0 && r.inject {
		gcSink = make([]byte, 16) // the injected fault: one allocation per batch
	}
	return n, nil
}

func (r *lapRx) Release([]rx.Packet) {}
func (r *lapRx) Backend() string     { return "lap" }
func (r *lapRx) Stats() rx.Stats     { return rx.Stats{} }
func (r *lapRx) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

// pacedGCChild is the child of TestPacedRunStartsNoGC.
func pacedGCChild(t *testing.T) {
	day := dayPacketsSized(t, 400_000, 300)
	var lapMsgs uint64
	for _, p := range day {
		lapMsgs += uint64(binary.BigEndian.Uint16(p[18:20]))
	}
	if p, err := moldudp64.Parse(day[len(day)-1]); err != nil || p.Seq+uint64(p.Count) != lapMsgs+1 {
		t.Fatalf("the day does not end at message %d: %v", lapMsgs, err)
	}
	r := &lapRx{day: day, lapMsgs: lapMsgs, interval: time.Second / 200_000, inject: os.Getenv(gcInjectEnv) != ""}
	name := shmtest.Name(t, "fhgc")
	h, err := Start(Config{
		Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}, BatchSize: 64},
		Book:        book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
		Mode:        ModeRunToCompletion,
		ReceiveCore: -1,
		ShmName:     name,
		Open:        func(rx.Config) (rx.Receiver, error) { r.start = time.Now(); return r, nil },
		Log:         zerolog.New(&lastLine{}).With().Timestamp().Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	e := NewExposition(h)
	var scrape []byte
	// What the command does besides the pipeline: a stats line and a
	// metrics scrape every second (their own allocation tests are
	// TestScrapeAndStatsLineAllocateNothing).
	everySecond := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			time.Sleep(time.Second)
			h.LogStats(false)
			scrape = e.AppendText(scrape[:0])
		}
	}
	everySecond(5 * time.Second) // warm-up: the first lap registers every instrument
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	c0, d0, b0 := gcCycles(), h.Delivered(), batches(h)
	fmt.Fprintln(os.Stderr, gcSteady)
	everySecond(gcWindow)
	c1, d1, b1 := gcCycles(), h.Delivered(), batches(h)
	st := h.Stats()
	fmt.Fprintf(os.Stderr, "gc check: %d messages in %d batches delivered in %v (%d laps of the day), %d GC cycles; path p50 %d ns, p99 %d ns\n",
		d1-d0, b1-b0, gcWindow, d1/lapMsgs, c1-c0, st.PathLatency.Quantile(0.5), st.PathLatency.Quantile(0.99))
	if d1-d0 < uint64(gcWindow.Seconds())*lapMsgs/10 || b1 == b0 {
		t.Fatalf("%d messages in %d batches delivered in the window: no steady state was measured", d1-d0, b1-b0)
	}
	if st.Arbiter.Gaps != 0 {
		t.Fatalf("%d gaps: the laps do not continue the sequence", st.Arbiter.Gaps)
	}
}
