package demo

import (
	"cmp"
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

func TestMain(m *testing.M) {
	MaybeSender() // Run re-executes the test binary as the sender
	os.Exit(m.Run())
}

// The end-to-end tests share one generated day of a million messages.
var (
	dayOnce sync.Once
	day     *Day
	dayErr  error
)

func testDay(t testing.TB) *Day {
	t.Helper()
	dayOnce.Do(func() { day, dayErr = GenerateDay(1_000_000, 800, 42) })
	if dayErr != nil {
		t.Fatal(dayErr)
	}
	return day
}

func needLab(t testing.TB) {
	t.Helper()
	lab, err := netlab.New(netlab.Options{Prefix: "fhp"})
	if errors.Is(err, netlab.ErrNotSupported) {
		t.Skipf("no network namespaces here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	lab.Close()
}

func testLog(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.InfoLevel)
	}
	return zerolog.Nop()
}

// forEachMode runs f as a subtest per pipeline mode: run to completion
// (the default) and sharded.
func forEachMode(t *testing.T, f func(t *testing.T, mode handler.Mode)) {
	for _, m := range []handler.Mode{handler.ModeRunToCompletion, handler.ModeSharded} {
		t.Run(m.String(), func(t *testing.T) { f(t, m) })
	}
}

func run(t testing.TB, mode handler.Mode, o Options) *Result {
	t.Helper()
	o.Mode = mode
	o.Hold = cmp.Or(o.Hold, time.Second)
	if o.RingSize == 0 && (o.Backend == "xdp" || o.Backend == "") {
		// AF_XDP with the ring `feedhandler demo` uses (Options.RingSize):
		// with the backend's default of 4096 frames, a loaded 2-CPU
		// machine starving the sharded mode's receive thread for a tenth
		// of a second overflowed both lines' rings (counted in
		// Stats.Receive.Dropped) and turned line A's injected loss into
		// gaps on both lines.
		o.RingSize = 16384
	}
	o.Day = testDay(t)
	o.Log = testLog(t)
	o.ShmName = shmtest.Name(t, "fhtest")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("run: %v (stats %+v)", err, res)
	}
	if res.Stats.Mode != mode {
		t.Fatalf("ran %v, want %v", res.Stats.Mode, mode)
	}
	t.Logf("backend %s: %d messages, line A %+v, line B %+v, gaps %d, latency p50 %dns p99 %dns",
		res.Backend, res.Stats.Arbiter.Delivered, res.Stats.Arbiter.Lines[0], res.Stats.Arbiter.Lines[1],
		res.Stats.Arbiter.Gaps, res.Stats.Latency.Quantile(0.5), res.Stats.Latency.Quantile(0.99))
	return res
}

func checkIdentical(t *testing.T, res *Result) {
	t.Helper()
	d := testDay(t)
	if got := res.Stats.Arbiter.Delivered; got != d.Messages {
		t.Errorf("delivered %d messages, sent %d", got, d.Messages)
	}
	if res.Stats.Arbiter.Gaps != 0 {
		// Say whether the receive side counted the loss (XSK rx ring
		// full, socket overflow): that is the lab starving the handler,
		// not line B missing packets.
		t.Errorf("%d gaps (%d messages) declared; line B carried everything; receive drops counted: %d",
			res.Stats.Arbiter.Gaps, res.Stats.Arbiter.GapMessages, res.Stats.Receive.Dropped)
	}
	if res.Instruments == 0 {
		t.Fatal("no instrument published")
	}
	for i, m := range res.Mismatches {
		if i == 10 {
			t.Errorf("... %d mismatches in all", len(res.Mismatches))
			break
		}
		t.Errorf("book mismatch: %s", m)
	}
	if res.Stale != 0 {
		t.Errorf("%d instruments flagged possibly stale without a gap", res.Stale)
	}
	var inc uint64
	for _, s := range res.Stats.Shards {
		inc += s.Book.Inconsistencies()
	}
	if inc != 0 {
		t.Errorf("%d inconsistencies applying a consistent day", inc)
	}
}

// checkArbitrated is checkIdentical for a run where line B carries every
// packet line A loses (Options.Recovery unset: runArbitrated sets it): no
// range may be missing on both lines, but for the datagrams the handler's
// receive side counted as dropped (a socket or ring the kernel found full:
// on a loaded 2-CPU machine the sharded mode's shard thread waits for a
// CPU, its ring fills, and the receive thread stops draining the sockets),
// which the lab's re-request server must then repair, the books still
// equal to the day's. A range missing on both lines without such a drop is
// the handler's fault, and so is any book off the day's.
//
// The bound: a packet is missing on both lines only if line B's copy,
// which the lab always sends, was dropped at receive, and counted there
// (line A's copy may have been lost by the lab's injected loss, which the
// handler does not count, so it takes one counted drop, not two). The
// ranges missing on both lines are apart, each holds at least one such
// packet, so they number at most the receive drops counted. An arbiter
// that threw away line B's copies (or some of them) passed the check
// before in any run with a drop counted; it now fails unless the drops
// outnumber the ranges it made.
func checkArbitrated(t *testing.T, res *Result) {
	t.Helper()
	checkIdentical(t, res)
	rs := res.Stats.Recovery
	dropped := res.Stats.Receive.Dropped
	if rs.GapsDetected > dropped {
		t.Errorf("%d ranges missing on both lines (recovery: %s, %d messages re-requested), more than the %d datagrams the receive side counted as dropped: line B carried everything, each such range needs a dropped copy on line B",
			rs.GapsDetected, rs, res.Stats.Arbiter.RecoveredMessages, dropped)
	} else if dropped != 0 {
		t.Logf("the receive side dropped %d datagrams (the machine starved the handler: sockets or rings full); %d ranges missing on both lines, %d messages repaired by re-request (recovery: %s)",
			dropped, rs.GapsDetected, res.Stats.Arbiter.RecoveredMessages, rs)
	}
	if rs.Open != 0 {
		t.Errorf("%d gaps still open: %v", rs.Open, rs.OpenRanges)
	}
}

// runArbitrated is run with the lab's re-request server, which repairs
// only what the handler's receive side dropped (checkArbitrated).
func runArbitrated(t *testing.T, mode handler.Mode, o Options) *Result {
	t.Helper()
	o.Recovery = &Recovery{Rerequest: true}
	return run(t, mode, o)
}

// TestEndToEnd sends the day on both lines with 5% loss injected on line A
// only, once per backend, and compares every published book with the
// reference books built from the same messages: line B fills every range
// line A lost (checkArbitrated).
func TestEndToEnd(t *testing.T) { forEachMode(t, testEndToEnd) }

func testEndToEnd(t *testing.T, mode handler.Mode) {
	needLab(t)
	backends := []string{"xdp", "uring", "socket"}
	if mode == handler.ModeRunToCompletion {
		// The receive thread spinning on its rings with the deeper ring,
		// as `feedhandler demo` runs it (in run to completion only: on 2
		// CPUs a spinning receive thread would starve the shard threads).
		// Not pinned: on a shared CI machine another process pinned to
		// the same CPU would take half of it.
		backends = append(backends, "xdp-spinning")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			o := Options{Backend: backend, LossA: 0.05}
			if backend == "xdp-spinning" {
				o.Backend, o.Spin, o.RingSize = "xdp", time.Millisecond, 16384
			}
			res := runArbitrated(t, mode, o)
			if !strings.HasPrefix(res.Backend, o.Backend) {
				t.Errorf("backend %q, want %s", res.Backend, o.Backend)
			}
			if o.Spin > 0 && !strings.Contains(res.Backend, "spin") {
				t.Errorf("backend %q does not say it spins", res.Backend)
			}
			checkArbitrated(t, res)
			if res.Stats.Arbiter.Lines[0].LineGaps == 0 {
				t.Error("line A loss was not seen")
			}
			if res.Stats.Arbiter.Lines[1].Duplicates == 0 {
				t.Error("no arbitration duplicates counted on line B")
			}
		})
	}
}

// TestEndToEndReorderDuplicates: line A reorders and duplicates packets.
func TestEndToEndReorderDuplicates(t *testing.T) { forEachMode(t, testEndToEndReorderDuplicates) }

func testEndToEndReorderDuplicates(t *testing.T, mode handler.Mode) {
	needLab(t)
	res := runArbitrated(t, mode, Options{Backend: "socket", ReorderA: 0.05, DupA: 0.05})
	checkArbitrated(t, res)
	if res.Stats.Arbiter.Lines[0].OutOfOrder == 0 {
		t.Error("no out-of-order packet counted on line A")
	}
}

// TestGapOnBothLines drops the same packets from both lines: the gap is
// detected with its exact range and every book is flagged possibly stale.
func TestGapOnBothLines(t *testing.T) { forEachMode(t, testGapOnBothLines) }

func testGapOnBothLines(t *testing.T, mode handler.Mode) {
	needLab(t)
	d := testDay(t)
	drop := map[int]bool{5000: true, 5001: true, 5002: true}
	first, _ := moldudp64.Parse(d.Packets[5000])
	last, _ := moldudp64.Parse(d.Packets[5002])
	want := moldudp64.Range{First: first.Seq, Count: last.Next() - first.Seq}
	res := run(t, mode, Options{Backend: "socket", Drop: drop})
	st := res.Stats.Arbiter
	if st.Gaps != 1 || st.LastGap != want || st.GapMessages != want.Count {
		t.Fatalf("gaps %d, last %+v (%d messages), want one gap %+v", st.Gaps, st.LastGap, st.GapMessages, want)
	}
	if got := st.Delivered; got != d.Messages-want.Count {
		t.Errorf("delivered %d, want %d", got, d.Messages-want.Count)
	}
	if res.Stale != res.Instruments || res.Instruments == 0 {
		t.Errorf("%d of %d instruments flagged possibly stale, want all", res.Stale, res.Instruments)
	}
}

// TestSymbolFilter subscribes to three symbols: only they are published, and
// they equal the reference.
func TestSymbolFilter(t *testing.T) { forEachMode(t, testSymbolFilter) }

func testSymbolFilter(t *testing.T, mode handler.Mode) {
	needLab(t)
	d := testDay(t)
	want := []string{d.Symbols[0].String(), d.Symbols[1].String(), d.Symbols[7].String()}
	res := run(t, mode, Options{Backend: "socket", Configure: func(c *handler.Config) { c.Symbols = want }})
	checkIdentical(t, res)
	if res.Instruments != len(want) {
		t.Errorf("%d instruments published, want %d", res.Instruments, len(want))
	}
	if res.Stats.Filtered == 0 {
		t.Error("no message filtered")
	}
}

// TestShutdownLeavesNothing: after a run on AF_XDP no XDP program stays
// attached, and no fd or goroutine is left behind.
func TestShutdownLeavesNothing(t *testing.T) { forEachMode(t, testShutdownLeavesNothing) }

func testShutdownLeavesNothing(t *testing.T, mode handler.Mode) {
	needLab(t)
	testDay(t)
	fds := countFDs(t)
	gr := runtime.NumGoroutine()
	res := run(t, mode, Options{Backend: "xdp"})
	if res.XDPAfterStop != "" {
		t.Errorf("XDP program still attached after Stop:\n%s", res.XDPAfterStop)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, g := countFDs(t), runtime.NumGoroutine()
		if f <= fds && g <= gr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: fds %d -> %d, goroutines %d -> %d", fds, f, gr, g)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestShmOptions: the shm file of a run has Options.ShmSlots slots,
// ShmMode's permission bits and ShmGroup's group (a feed file's
// shm.slots, shm.mode and shm.group under `feedhandler demo --feed`),
// not the handler's defaults (16384, 0640, the process's group).
func TestShmOptions(t *testing.T) {
	needLab(t)
	res := run(t, handler.ModeRunToCompletion, Options{Backend: "socket", ShmSlots: 1000, ShmMode: 0o600, ShmGroup: "1"})
	checkIdentical(t, res)
	if res.Stats.Shm.Capacity != 1000 || res.ShmPerm != 0o600 || res.ShmGid != 1 {
		t.Fatalf("shm file: %d slots, mode %04o, gid %d; want 1000, 0600, 1", res.Stats.Shm.Capacity, res.ShmPerm, res.ShmGid)
	}
}

// TestEndToEndReceiveDrops is TestEndToEnd with the line sockets' receive
// buffers cut to 64 KiB (about 25 of the day's datagrams), so that the
// kernel drops what the receive thread does not drain at once, as it did
// for a shard thread waiting for a CPU on a loaded 2-CPU CI machine
// (TestEndToEnd/sharded/uring: 312 receive drops, 26 gaps declared, books
// off the day's): the ranges lost on both lines are re-requested and
// every book must still equal the day's (checkArbitrated). Socket
// backends only: AF_XDP has no socket buffer.
//
// Its point is the drops: a run that counted none was TestEndToEnd again
// and proved nothing of their repair, so it runs once more with the
// kernel's least buffer (2 or 3 datagrams), and fails if that counted
// none either (no timing is asserted: a receive thread that drained every
// datagram with room for 2 across the day would be news to look at).
func TestEndToEndReceiveDrops(t *testing.T) { forEachMode(t, testEndToEndReceiveDrops) }

func testEndToEndReceiveDrops(t *testing.T, mode handler.Mode) {
	needLab(t)
	for _, backend := range []string{"uring", "socket"} {
		t.Run(backend, func(t *testing.T) {
			for _, buf := range []int{64 << 10, minRecvBuffer} {
				o := Options{Backend: backend, LossA: 0.05, Configure: func(c *handler.Config) { c.Receive.RecvBuffer = buf }}
				res := runArbitrated(t, mode, o)
				checkArbitrated(t, res)
				if res.Stats.Receive.Dropped != 0 {
					return
				}
				t.Logf("no receive drop with a %d-byte buffer: the receive thread kept up (nothing re-requested)", buf)
			}
			t.Errorf("no receive drop counted even with a %d-byte buffer: the drops' repair went untested", minRecvBuffer)
		})
	}
}

// minRecvBuffer is the least SO_RCVBUF worth asking: the kernel doubles
// it and raises it to its floor (SOCK_MIN_RCVBUF), room for 2 or 3 of the
// day's datagrams.
const minRecvBuffer = 4 << 10
