package handler

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// TestArbiterRecoveryRandom: packets are lost on both lines at random; a
// recovery source answers each missing range in random pieces, late, out of
// order and twice. Every message is delivered once, in order (the sink
// checks), and no gap is declared. The answers' messages are counted
// recovered (exactly the ranges asked: the lines lost them) or unused.
func TestArbiterRecoveryRandom(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 99))
		pkts := packets(t, testSession, 400, 6, rng)
		a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Grace: time.Microsecond, Hold: time.Millisecond, MaxPending: 16, Spill: 1024})
		var asked []moldudp64.Range
		var lost, offered uint64 // messages in the ranges asked, in the answers
		a.SetMissing(func(r moldudp64.Range, now int64) bool { asked, lost = append(asked, r), lost+r.Count; return true })
		// The source: every message by sequence number, re-packed on demand.
		bySeq := map[uint64][]byte{}
		for _, b := range pkts {
			p, _ := moldudp64.Parse(b)
			it := p.Iter()
			for m, ok := it.Next(); ok; m, ok = it.Next() {
				bySeq[it.Seq()] = m
			}
		}
		answer := func(first, n uint64) {
			b := moldudp64.NewBuilder(testSession, first, 0)
			for q := first; q < first+n; q++ {
				if m, ok := bySeq[q]; ok {
					b.Add(m)
				}
			}
			if raw := b.Flush(); raw != nil {
				p, _ := moldudp64.Parse(raw)
				offered += uint64(p.Messages())
				a.OfferRecovered(raw, p, 0)
			}
		}
		now := int64(1)
		for i, b := range pkts {
			now += int64(time.Millisecond)
			if i > 0 && rng.IntN(8) == 0 {
				continue // lost on both lines
			}
			a.Offer(0, b, now)
			a.Offer(1, b, now)
			// Answer what is being recovered, in pieces, sometimes twice
			// and sometimes a later piece first.
			for range 3 {
				r, ok := a.Recovering()
				if !ok {
					break
				}
				k := 1 + rng.Uint64N(r.Count)
				if rng.IntN(3) == 0 && r.Count > k {
					answer(r.First+k, r.Count-k) // the tail first: held
				}
				answer(r.First, k)
				if rng.IntN(2) == 0 {
					answer(r.First, k) // late duplicate
				}
			}
			a.Tick(now)
		}
		// The end of session names the last sequence number: a loss
		// just before it is missing too.
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		now += int64(time.Millisecond)
		a.Offer(0, moldudp64.AppendHeader(nil, testSession, last.Next(), moldudp64.EndOfSessionCount), now)
		for range 100 {
			now += int64(time.Millisecond)
			a.Tick(now)
			if r, ok := a.Recovering(); ok {
				answer(r.First, r.Count)
			}
			if a.Ended() {
				break
			}
		}
		if want := totalMessages(t, pkts); s.got != want || len(s.gaps) != 0 || len(asked) == 0 {
			t.Fatalf("seed %d: delivered %d of %d, gaps %v, asked %d ranges", seed, s.got, want, s.gaps, len(asked))
		}
		if a.Stats.RecoveriesFilled != uint64(len(asked)) {
			t.Fatalf("seed %d: %d ranges asked, %d filled", seed, len(asked), a.Stats.RecoveriesFilled)
		}
		if st := a.Stats; st.RecoveredMessages != lost || st.RecoveredMessages+st.RecoveredUnused != offered || a.Pending() != 0 {
			t.Fatalf("seed %d: recovered %d (want %d, the ranges asked), unused %d, of %d offered; %d held", seed, st.RecoveredMessages, lost, st.RecoveredUnused, offered, a.Pending())
		}
	}
}

// TestArbiterAbandon: a range given up is declared a gap, exactly, and what
// was held behind it is delivered.
func TestArbiterAbandon(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	pkts := packets(t, testSession, 20, 4, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Lines: 1, Grace: time.Microsecond})
	a.SetMissing(func(moldudp64.Range, int64) bool { return true })
	a.Offer(0, pkts[0], 1)
	for i := 2; i < len(pkts); i++ {
		a.Offer(0, pkts[i], 2)
	}
	a.Tick(int64(time.Second))
	r, ok := a.Recovering()
	p1, _ := moldudp64.Parse(pkts[1])
	if !ok || r != p1.Range() {
		t.Fatalf("recovering %v %v, want %v", r, ok, p1.Range())
	}
	a.Abandon(int64(time.Second))
	if len(s.gaps) != 1 || s.gaps[0] != p1.Range() {
		t.Fatalf("gaps %v, want [%v]", s.gaps, p1.Range())
	}
	if want := totalMessages(t, pkts) - uint64(p1.Messages()); s.got != want || a.Stats.RecoveriesFailed != 1 {
		t.Fatalf("delivered %d, want %d; failed %d", s.got, want, a.Stats.RecoveriesFailed)
	}
}

// TestArbiterSpillOverflow: while recovering, the spill fills up: the
// recovery is given up and the gap declared rather than anything lost.
func TestArbiterSpillOverflow(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	pkts := packets(t, testSession, 60, 4, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Lines: 1, Grace: time.Microsecond, MaxPending: 16, Spill: 32})
	a.SetMissing(func(moldudp64.Range, int64) bool { return true })
	a.Offer(0, pkts[0], 1)
	for i := 2; i < len(pkts); i++ {
		a.Offer(0, pkts[i], int64(i)*int64(time.Millisecond))
	}
	p1, _ := moldudp64.Parse(pkts[1])
	if a.Stats.SpillOverflows != 1 || len(s.gaps) != 1 || s.gaps[0] != p1.Range() {
		t.Fatalf("overflows %d, gaps %v, want [%v]", a.Stats.SpillOverflows, s.gaps, p1.Range())
	}
	if want := totalMessages(t, pkts) - uint64(p1.Messages()); s.got != want {
		t.Fatalf("delivered %d, want %d", s.got, want)
	}
}

// messageSource serves msgs as a day's messages to a snapshot server
// (exchange.SnapshotConfig.Messages): msgs[0] has sequence number 1.
func messageSource(msgs [][]byte) func(seq uint64) ([]byte, bool) {
	return func(seq uint64) ([]byte, bool) {
		if seq == 0 || seq > uint64(len(msgs)) {
			return nil, false
		}
		return msgs[seq-1], true
	}
}

// TestShutdownMidSnapshot: a snapshot server stalls in the middle of a
// snapshot (heartbeats go on, so the fetch would wait for its idle
// timeout); closing the recovery cancels the fetch and returns, leaving no
// goroutine behind.
func TestShutdownMidSnapshot(t *testing.T) {
	before := runtime.NumGoroutine()
	var msgs [][]byte
	for i := range 100 {
		f := itch.SystemEventFields{Header: itch.Header{Locate: 0, Timestamp: uint64(i)}, EventCode: 'O'}
		msgs = append(msgs, f.Append(nil))
	}
	srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{
		Listen: "127.0.0.1:0", Username: "u", Password: "p", Session: "STALL",
		Messages: messageSource(msgs), StallAfter: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	stopServer := func() { srv.Close(); <-served }
	defer func() {
		if srv != nil {
			stopServer()
		}
	}()

	h := &Handler{log: zerolog.Nop()}
	h.arb = NewArbiter(ArbiterConfig{Session: moldudp64.NewSession("STALL")}, func(*moldudp64.Packet, int, int64) {}, nil)
	rec, err := newRecovery(h, RecoveryConfig{Snapshot: GlimpseSnapshot(glimpse.Config{
		Addr: srv.Addr().String(), Username: "u", Password: "p", IdleTimeout: time.Hour})})
	if err != nil {
		t.Fatal(err)
	}
	h.rec = rec
	rec.startSnapshot(time.Now().UnixNano(), false)
	for i := 0; srv.Stats().Logins == 0; i++ {
		if i == 1000 {
			t.Fatal("the fetch never logged in")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !h.arb.Frozen() {
		t.Fatal("delivery not frozen during the snapshot")
	}
	if err := rec.close(); err != nil {
		t.Fatal(err)
	}
	if rec.fetching {
		t.Fatal("still fetching after close")
	}
	// The server's own goroutines end with it; what is left is ours.
	stopServer()
	srv = nil
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 500 {
			t.Fatalf("goroutines %d -> %d after close", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGlimpseSession: a GLIMPSE server whose session is not named as the
// feed's MoldUDP64 session. With AnySnapshotSession the fetch logs in to
// the current one (blank Requested Session) and loads; a configured
// session is asked for as it is, and a wrong one is refused. Without a
// configured session the current one is loaded too (no specification says
// a GLIMPSE server names its session as the lines'), unless it is a session
// the lines were on and left (ErrSnapshotSession; also
// TestSnapshotOfAnotherSessionBehind).
func TestGlimpseSession(t *testing.T) {
	msgs := [][]byte{dirMsg("GSES")}
	srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p",
		Session: "GLIMPSE01", Messages: messageSource(msgs)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() { srv.Close(); <-served }()
	feed := moldudp64.NewSession("FEED01")
	for _, tc := range []struct {
		session string
		err     error // nil: loaded
	}{{AnySnapshotSession, nil}, {"GLIMPSE01", nil}, {"FEED01", glimpse.ErrLoginRejected}, {"", nil}} {
		cfg := glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p", Session: tc.session, IdleTimeout: 5 * time.Second}
		n := 0
		snap, err := GlimpseSnapshot(cfg)(context.Background(), feed, func([]byte) error { n++; return nil })
		if tc.err == nil && (err != nil || snap.Next == 0 || n == 0 || snap.Session != "GLIMPSE01") {
			t.Errorf("session %q: %+v, %d messages, %v", tc.session, snap, n, err)
		}
		if tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("session %q: %v, want %v", tc.session, err, tc.err)
		}
	}
	// A blank session compares where the names can be compared: the
	// server on GLIMPSE01, a session the lines were on and left for
	// FEED01, is refused; AnySnapshotSession still loads it.
	for _, tc := range []struct {
		session string
		err     error
	}{{"", ErrSnapshotSession}, {AnySnapshotSession, nil}} {
		fetch := GlimpseSnapshot(glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p", Session: tc.session, IdleTimeout: 5 * time.Second})
		if _, err := fetch(context.Background(), moldudp64.NewSession("GLIMPSE01"), func([]byte) error { return nil }); err != nil {
			t.Fatalf("session %q, the lines on GLIMPSE01: %v", tc.session, err)
		}
		if _, err := fetch(context.Background(), feed, func([]byte) error { return nil }); !errors.Is(err, tc.err) {
			t.Errorf("session %q, the lines on GLIMPSE01 then FEED01, the server on GLIMPSE01: %v, want %v", tc.session, err, tc.err)
		}
	}
}

// TestGlimpseSessionRefusedAtLogin: a blank session, the lines on OLD
// then on NEW, the server still on OLD: its session is refused at the
// Login Accepted, which names it, not after the whole snapshot is
// downloaded (on a real day minutes and hundreds of MB). The server sends
// one message of its spin and then stalls (heartbeats go on, IdleTimeout
// an hour): a fetch that reads past the login waits for the snapshot
// until ctx ends; one refused at login returns ErrSnapshotSession at once,
// naming both sessions, with nothing handed to fn.
func TestGlimpseSessionRefusedAtLogin(t *testing.T) {
	msgs := [][]byte{dirMsg("OLDS")}
	for i := range 100 {
		add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: uint64(i + 1), Side: 'B', Shares: 100, Stock: itch.NewSymbol("OLDS"), Price: 100}
		msgs = append(msgs, add.Append(nil))
	}
	srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p",
		Session: "OLD", Messages: messageSource(msgs), StallAfter: 1})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() { srv.Close(); <-served }()
	st := new(glimpse.Stats)
	fetch := GlimpseSnapshot(glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p", IdleTimeout: time.Hour, Stats: st})
	// The lines on OLD: asked for a snapshot under it (here cancelled
	// before it starts; the session is remembered all the same).
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fetch(gone, moldudp64.NewSession("OLD"), func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled fetch: %v", err)
	}
	// The lines on NEW; the server still on OLD. The bound only ends a
	// fetch that waits for the stalled snapshot.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	_, err = fetch(ctx, moldudp64.NewSession("NEW"), func([]byte) error { n++; return nil })
	if !errors.Is(err, ErrSnapshotSession) || !errors.Is(err, glimpse.ErrSessionRefused) || n != 0 || st.Refused.Load() != 1 {
		t.Fatalf("the server on OLD, the lines left it for NEW: %d messages handed over, refused %d, err %v; want ErrSnapshotSession at login, none", n, st.Refused.Load(), err)
	}
	for _, s := range []string{`"OLD"`, `"NEW"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name session %s", err, s)
		}
	}
	t.Log(err)
}

// TestSnapshotSourceBack: the snapshot server rejects the login: the
// failure is counted, delivery resumes, the range stays open and the books
// flagged. Once a server answers, the next attempt rebuilds the books from
// it and clears the flag, without a restart.
func TestSnapshotSourceBack(t *testing.T) { forEachMode(t, testSnapshotSourceBack) }

func testSnapshotSourceBack(t *testing.T, mode Mode, _ []int) {
	var msgs [][]byte
	dir := dirMsg("SNAP")
	msgs = append(msgs, dir)
	for i := range 50 {
		add := itch.AddOrderFields{Header: itch.Header{Locate: 7, Timestamp: uint64(i)}, OrderRef: uint64(i + 1), Side: 'B',
			Shares: 100, Stock: itch.NewSymbol("SNAP"), Price: uint32(10000 + i)}
		msgs = append(msgs, add.Append(nil))
	}
	start := func(reject bool) *exchange.SnapshotServer {
		srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p",
			Session: "BACK", Messages: messageSource(msgs), RejectLogin: reject})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		t.Cleanup(func() { srv.Close(); <-served })
		return srv
	}
	bad, good := start(true), start(false)
	var addr atomic.Value
	addr.Store(bad.Addr().String())
	fetch := func(ctx context.Context, s moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		return GlimpseSnapshot(glimpse.Config{Addr: addr.Load().(string), Username: "u", Password: "p"})(ctx, s, fn)
	}

	ringSize := 1 << 12
	if mode == ModeRunToCompletion {
		ringSize = 0
	}
	h, sh := oneShardHandler(t, ringSize, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Session: moldudp64.NewSession("BACK")},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Millisecond})
	// The shard's own loop (shard.run) applies and publishes when sharded;
	// in run to completion the receive thread (here the test) does, at the
	// end of each batch.
	if sh.ring != nil {
		pinErr, done := make(chan error, 1), make(chan struct{})
		go func() { sh.run(pinErr); close(done) }()
		if err := <-pinErr; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sh.ring.Close(); <-done })
	}
	drain := func() {
		if sh.ring == nil {
			h.endBatch()
		}
	}
	// What the shard published: its stats copy (the shard thread's,
	// refreshed when its ring is idle; the test's own in run to
	// completion).
	state := func() ShardStats {
		if sh.ring == nil {
			sh.copyStats(true)
		}
		return sh.statsCopy()
	}
	// A late join: the live feed starts past the snapshot's messages.
	live := moldudp64.NewBuilder(moldudp64.NewSession("BACK"), uint64(len(msgs))+1, 0)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	live.Add(ev.Append(nil))
	pkt := append([]byte(nil), live.Flush()...)
	h.arb.Offer(0, pkt, 1)
	h.arb.Offer(1, pkt, 1)
	h.arb.Tick(int64(time.Second))
	poll := func(until func() bool) {
		for i := 0; !until(); i++ {
			if i == 2000 {
				t.Fatalf("recovery stuck: %+v", rec.stats)
			}
			rec.poll(time.Now().UnixNano())
			drain()
			time.Sleep(time.Millisecond)
		}
	}
	poll(func() bool { return rec.stats.SnapshotFailures >= 1 })
	if len(rec.open) != 1 || h.arb.Frozen() {
		t.Fatalf("after a failed snapshot: open %v, frozen %v", rec.open, h.arb.Frozen())
	}
	waitFor(t, "the books flagged after a failed snapshot", func() bool { return state().Stale })
	addr.Store(good.Addr().String()) // the source comes back
	poll(func() bool { return rec.stats.Snapshots == 1 })
	drain()
	if len(rec.open) != 0 {
		t.Fatalf("after the snapshot: open %v", rec.open)
	}
	waitFor(t, "the snapshot's books, whole", func() bool {
		st := state()
		return !st.Stale && st.Book.Orders == 50 && st.Books == 1
	})
	if st := state(); st.Published == 0 || st.PublishErrors != 0 {
		t.Fatalf("after the snapshot: published %d, errors %d", st.Published, st.PublishErrors)
	}
}

// TestRecoveryClockStepBack: the recovery's deadlines (a server's rest, a
// snapshot's retry, a lagging snapshot's wait) were set from the wall
// clock; after it steps back an hour each waits at most its own length
// from the new time, not an hour more.
func TestRecoveryClockStepBack(t *testing.T) {
	h, _ := oneShardHandler(t, 0, smallBooks)
	const wait = time.Second
	rec := withRecovery(t, h, ArbiterConfig{}, RecoveryConfig{SnapshotRetry: wait, ServerRest: wait})
	now := time.Now().UnixNano()
	rec.restUntil, rec.snapAt, rec.lagUntil, rec.lastRec = now+int64(wait), now+int64(wait), now+int64(wait), now
	back := now - int64(time.Hour)
	rec.poll(back)
	for name, at := range map[string]int64{"server rest": rec.restUntil, "snapshot retry": rec.snapAt, "lagging snapshot": rec.lagUntil} {
		if at > back+int64(wait) {
			t.Errorf("%s until %v after the clock stepped back an hour, want at most %v", name, time.Duration(at-back), wait)
		}
	}
	if rec.lastRec > back {
		t.Errorf("last re-request poll %v after now", time.Duration(rec.lastRec-back))
	}
}
