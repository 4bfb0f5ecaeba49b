package handler

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// scriptRx is a receiver that plays a script of packets, with an error
// returned together with one batch, then idles like a real backend.
type scriptRx struct {
	mu       sync.Mutex
	script   []rx.Packet
	errAt    int // script index of the batch returned with errTransient (-1: none)
	closed   bool
	released int

	// With idleOnce, the script played, one idle poll returns nothing
	// after 2 ms (at once with idleNow) and every later call waits until
	// done is closed (by the test, before it stops the handler), then
	// returns rx.ErrClosed: exactly one idle round of the receive loop.
	// idles counts the calls made with the script played.
	idleOnce, idleNow bool
	idles             int
	done              chan struct{}
}

var errTransient = errors.New("transient receive error")

func (r *scriptRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, rx.ErrClosed
	}
	if len(r.script) == 0 {
		r.idles++
		idles, done := r.idles, r.done
		r.mu.Unlock()
		switch {
		case !r.idleOnce:
			time.Sleep(time.Millisecond) // an idle poll
		case idles == 1:
			if !r.idleNow {
				time.Sleep(2 * time.Millisecond)
			}
		default:
			<-done
			return 0, rx.ErrClosed
		}
		return 0, nil
	}
	n := copy(pkts[:min(len(pkts), 16)], r.script)
	r.script = r.script[n:]
	var err error
	if r.errAt >= 0 && r.errAt < n {
		err = errTransient
	}
	r.errAt -= n
	r.mu.Unlock()
	return n, err
}

func (r *scriptRx) Release(pkts []rx.Packet) {
	r.mu.Lock()
	r.released += len(pkts)
	r.mu.Unlock()
}
func (r *scriptRx) Backend() string { return "script" }

// Stats reports backend counters of its own, as the real backends do, so
// that receive_backend_events_total has samples.
func (r *scriptRx) Stats() rx.Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st rx.Stats
	st.Extra.Add("script_left", uint64(len(r.script)))
	st.Extra.Add("script_released", uint64(r.released))
	return st
}
func (r *scriptRx) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

// modes are the pipeline modes every end-to-end test runs in, with the
// shard cores each is tested with (sharded: two shards).
var modes = []struct {
	mode   Mode
	shards []int
}{
	{ModeRunToCompletion, nil},
	{ModeSharded, []int{-1, -1}},
}

// forEachMode runs f as a subtest per pipeline mode.
func forEachMode(t *testing.T, f func(t *testing.T, mode Mode, shards []int)) {
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) { f(t, m.mode, m.shards) })
	}
}

// startScripted runs a Handler over the packets (each on both lines) and a
// trailer, and returns it with the reference books.
func startScripted(t *testing.T, mode Mode, shards []int, n int, trailer [][]byte, errAt int) (*Handler, *scriptRx, *book.Books, string) {
	t.Helper()
	return startScriptedLog(t, mode, shards, n, trailer, errAt, zerolog.Nop())
}

// startScriptedLog is startScripted with the handler logging to log.
func startScriptedLog(t *testing.T, mode Mode, shards []int, n int, trailer [][]byte, errAt int, log zerolog.Logger) (*Handler, *scriptRx, *book.Books, string) {
	t.Helper()
	return startScriptedDay(t, mode, shards, dayPackets(t, n), trailer, errAt, log)
}

// startScriptedDay is startScriptedLog over the packets pkts.
func startScriptedDay(t *testing.T, mode Mode, shards []int, pkts, trailer [][]byte, errAt int, log zerolog.Logger) (*Handler, *scriptRx, *book.Books, string) {
	t.Helper()
	ref, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var script []rx.Packet
	now := time.Now().UnixNano()
	for i, ms := range dayMessages(t, pkts) {
		for _, m := range ms {
			ref.Apply(itch.Msg(m))
		}
		b := pkts[i]
		script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
	}
	for _, b := range trailer {
		script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
	}
	h, r, name := startScript(t, mode, shards, script, errAt, log, nil)
	return h, r, ref, name
}

// startScript runs a Handler over script (a scriptRx returning errAt's
// batch with an error) with the symbol filter symbols (none: all), and
// returns it, its receiver and its shm name.
func startScript(t *testing.T, mode Mode, shards []int, script []rx.Packet, errAt int, log zerolog.Logger, symbols []string) (*Handler, *scriptRx, string) {
	t.Helper()
	r := &scriptRx{script: script, errAt: errAt}
	name := shmtest.Name(t, "fhhandler")
	return startRx(t, mode, shards, r, name, log, symbols), r, name
}

// startRx is startScript over the receiver r, publishing to shm file name.
func startRx(t *testing.T, mode Mode, shards []int, r rx.Receiver, name string, log zerolog.Logger, symbols []string) *Handler {
	t.Helper()
	return startRxBooks(t, mode, shards, r, name, log, symbols, dayBooks)
}

// startRxBooks is startRx with books of capacity books (per shard).
func startRxBooks(t *testing.T, mode Mode, shards []int, r rx.Receiver, name string, log zerolog.Logger, symbols []string, books book.Config) *Handler {
	t.Helper()
	h, err := Start(Config{
		Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond},
		Book:       books,
		Mode:       mode,
		ShardCores: shards,
		ShmName:    name,
		Symbols:    symbols,
		Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:        log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHandlerThreaded runs the real threads (receive, two shards,
// housekeeping) over a day on two lines, with one receive error returned
// together with a batch of packets: nothing is lost, every buffer is
// released, the published books equal the reference, Stop is clean.
func TestHandlerThreaded(t *testing.T) { forEachMode(t, testHandlerThreaded) }

func testHandlerThreaded(t *testing.T, mode Mode, shards []int) {
	h, r, ref, name := startScripted(t, mode, shards, 100_000, nil, 101)
	if h.Mode() != mode {
		t.Fatalf("running %v, want %v", h.Mode(), mode)
	}
	waitFor(t, "every message applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == 100_000 && st.Applied() == st.Routed
	})
	time.Sleep(60 * time.Millisecond) // one more stats copy
	st := h.Stats()
	if st.ReceiveErrors != 1 || st.Arbiter.Gaps != 0 {
		t.Fatalf("receive errors %d (want 1), gaps %d (want 0)", st.ReceiveErrors, st.Arbiter.Gaps)
	}
	if len(st.Shards) != max(len(shards), 1) {
		t.Fatalf("%d shards, want %d", len(st.Shards), max(len(shards), 1))
	}
	for i, s := range st.Shards {
		if s.Applied == 0 || s.Published == 0 {
			t.Fatalf("shard %d: %+v", i, s)
		}
	}
	compareShm(t, name, ref, false)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released != 2*len(dayPackets(t, 100_000)) {
		t.Fatalf("released %d packets, received %d", r.released, 2*len(dayPackets(t, 100_000)))
	}
}

// TestQuietFeedFinishesSweep: in run to completion, the receive loop
// finishes a market-wide republish in the first round after the feed went
// quiet (finishSweep), not a chunk a round: a real receiver's idle round
// lasts its poll timeout. The receiver idles once, then waits for Close:
// once its second idle call has started, every one of 300 books must
// carry the stale flag of the trailing gap (two chunks, 128 books, without
// finishSweep).
func TestQuietFeedFinishesSweep(t *testing.T) {
	h, r, ref, name := startTrailingGap(t, false)
	defer h.Stop()
	defer close(r.done) // before Stop: the receive loop is waiting in Receive
	waitFor(t, "the second idle call", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.idles >= 2
	})
	// (The stats are not copied while the loop waits in Receive: the
	// flags are what tells that the gap was declared.)
	if !compareShm(t, name, ref, true) {
		t.Fatal("books without the stale flag after the quiet round")
	}
}

// TestStopFinishesSweep: a market-wide republish still under way when the
// handler stops is finished before the books are left to readers. The
// only idle round comes at once after the gap, and no round counts as
// quiet (sweepQuiet an hour): one or two chunks, then the receiver is
// closed.
func TestStopFinishesSweep(t *testing.T) {
	quiet := sweepQuiet
	sweepQuiet = time.Hour
	defer func() { sweepQuiet = quiet }() // after Stop: the receive loop reads it
	h, r, ref, name := startTrailingGap(t, true)
	waitFor(t, "the second idle call", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.idles >= 2
	})
	if compareShm(t, name, ref, true) {
		t.Fatal("every book flagged before the stop: nothing left for it to finish")
	}
	close(r.done)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if !compareShm(t, name, ref, true) {
		t.Fatal("books without the stale flag after Stop")
	}
}

// startTrailingGap starts a run-to-completion handler over a day of 300
// instruments ending with a heartbeat that reveals a gap, its receiver
// idling once (at once with now) and then waiting for r.done.
func startTrailingGap(t *testing.T, now bool) (*Handler, *scriptRx, *book.Books, string) {
	t.Helper()
	hb := moldudp64.AppendHeader(nil, moldudp64.NewSession("ALLOC"), 0, 0)
	pkts := dayPacketsSymbols(t, 20_000, 0, 300)
	last, _ := moldudp64.Parse(pkts[len(pkts)-1])
	hb = moldudp64.AppendHeader(hb[:0], last.Session, last.Next()+10, 0)
	ref, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var script []rx.Packet
	for i, ms := range dayMessages(t, pkts) {
		for _, m := range ms {
			ref.Apply(itch.Msg(m))
		}
		script = append(script, rx.Packet{Data: pkts[i], Line: rx.LineA}, rx.Packet{Data: pkts[i], Line: rx.LineB})
	}
	script = append(script, rx.Packet{Data: hb, Line: rx.LineA}, rx.Packet{Data: hb, Line: rx.LineB})
	r := &scriptRx{script: script, errAt: -1, idleOnce: true, idleNow: now, done: make(chan struct{})}
	name := shmtest.Name(t, "fhquiet")
	h, err := Start(Config{
		Receive: rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		// The gap is declared by the first idle round's tick.
		Arbiter: ArbiterConfig{Grace: time.Nanosecond, Hold: time.Nanosecond},
		Book:    book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
		Mode:    ModeRunToCompletion,
		ShmName: name,
		Open:    func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:     zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, r, ref, name
}

// TestSystemEventReachesEveryBook: the day's last system event (locate 0)
// is in every book's snapshot once the day is played, 300 books in both
// modes: the republish sweep reaches the books that did not change after
// it (64 a batch, the rest when the feed is quiet or the ring empty).
func TestSystemEventReachesEveryBook(t *testing.T) { forEachMode(t, testSystemEventReachesEveryBook) }

func testSystemEventReachesEveryBook(t *testing.T, mode Mode, shards []int) {
	pkts := dayPacketsSymbols(t, 20_000, 0, 300)
	h, _, ref, name := startScriptedDay(t, mode, shards, pkts, nil, -1, zerolog.Nop())
	defer h.Stop()
	want, _ := ref.SystemEvent()
	if want == 0 {
		t.Fatal("the day has no system event")
	}
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	waitFor(t, "the last system event in all 300 books", func() bool {
		books := r.Instruments()
		if len(books) != 300 {
			return false
		}
		for _, inst := range books {
			v, err := r.Read(inst.Locate, buf)
			if err != nil {
				t.Fatal(err)
			}
			if v.SystemEvent() != want {
				return false
			}
		}
		return true
	})
}

// TestHandlerTrailingGapFlagsStale: a gap revealed by a heartbeat with
// nothing after it still flags every published book possibly stale. With
// 300 instruments the republish takes several chunks (DefaultSweepChunk),
// the later ones while nothing arrives.
func TestHandlerTrailingGapFlagsStale(t *testing.T) { forEachMode(t, testHandlerTrailingGapFlagsStale) }

func testHandlerTrailingGapFlagsStale(t *testing.T, mode Mode, shards []int) {
	hb := moldudp64.AppendHeader(nil, moldudp64.NewSession("ALLOC"), 0, 0)
	pkts := dayPacketsSymbols(t, 20_000, 0, 300)
	last, _ := moldudp64.Parse(pkts[len(pkts)-1])
	hb = moldudp64.AppendHeader(hb[:0], last.Session, last.Next()+10, 0)
	h, _, ref, name := startScriptedDay(t, mode, shards, pkts, [][]byte{hb}, -1, zerolog.Nop())
	defer h.Stop()
	waitFor(t, "the gap", func() bool { return h.Stats().Arbiter.Gaps == 1 })
	if g := h.Stats().Arbiter.LastGap; g != (moldudp64.Range{First: last.Next(), Count: 10}) {
		t.Fatalf("gap %+v", g)
	}
	// The gap is the receive thread's; sharded, the shard may still be
	// applying the day's last messages: compareShm fails on a level the
	// shard has not published yet (not "not stale yet"), so wait for
	// every message routed to be applied (and published: a shard
	// publishes a batch before it counts it applied).
	waitFor(t, "every message applied", func() bool { st := h.Stats(); return st.Applied() == st.Routed })
	waitFor(t, "stale flags", func() bool { return compareShm(t, name, ref, true) })
}

// compareShm reads every instrument back and compares it with ref: every
// reference book is published, under its symbol, with exactly the
// reference's levels up to the depth (none more) and its level counts;
// with wantStale it reports whether every book carries PossiblyStale (and
// fails on a level mismatch only).
func compareShm(t *testing.T, name string, ref *book.Books, wantStale bool) bool {
	t.Helper()
	n, stale := 0, 0
	published := map[string]uint16{}
	eachSnapshot(t, name, func(depth int, inst shm.Instrument, v shm.View) {
		n++
		published[inst.Symbol] = inst.Locate
		if v.Flags()&bookfb.FlagsPossiblyStale != 0 {
			stale++
		}
		b := ref.Book(inst.Locate)
		if b == nil || b.Name() != inst.Symbol {
			t.Fatalf("%s published at locate %d: the reference has %v there", inst.Symbol, inst.Locate, b)
		}
		for _, side := range []book.Side{book.Bid, book.Ask} {
			want := b.AppendDepth(side, nil, depth)
			level := v.Bid
			levels := v.BidLevels()
			if side == book.Ask {
				level, levels = v.Ask, v.AskLevels()
			}
			for i, w := range want {
				if got, ok := level(i); !ok || got != shm.Level(w) {
					t.Fatalf("%s side %d level %d: published %+v (%v), reference %+v", inst.Symbol, side, i, got, ok, w)
				}
			}
			if got, ok := level(len(want)); ok {
				t.Fatalf("%s side %d: level %d published (%+v), the reference has %d", inst.Symbol, side, len(want), got, len(want))
			}
			if int(levels) != b.Levels(side) {
				t.Fatalf("%s side %d: %d levels in the book published, reference %d", inst.Symbol, side, levels, b.Levels(side))
			}
		}
	})
	if n == 0 {
		t.Fatal("nothing published")
	}
	for b := range ref.All() {
		if loc, ok := published[b.Name()]; !ok || loc != b.Locate() {
			t.Fatalf("reference book %s (locate %d) not published (locate %d %v)", b.Name(), b.Locate(), loc, ok)
		}
	}
	if !wantStale && stale != 0 {
		t.Fatalf("%d books flagged stale without a gap", stale)
	}
	return stale == n
}

// eachSnapshot reads every live instrument of feed name back and calls f
// with the file's depth, the instrument and its snapshot.
func eachSnapshot(t *testing.T, name string, f func(depth int, inst shm.Instrument, v shm.View)) {
	t.Helper()
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf, depth := make([]byte, r.Info().MaxSnapshot), r.Info().Depth
	for _, inst := range r.Instruments() {
		v, err := r.Read(inst.Locate, buf)
		if err != nil {
			t.Fatalf("read %s: %v", inst.Symbol, err)
		}
		f(depth, inst, v)
	}
}
