package handler

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestArbiterSequenceRestart: both lines deliver a day's first 60
// packets, then go back to sequence number 1 under the same session name
// (a publisher restarted, or replays the session from its start). With
// HoldRestart nothing behind is delivered again; once both lines brought
// only such packets for LineTimeout the restart is counted once and Behind
// is set; when the replay passes what was delivered, the new messages flow
// and Behind clears.
func TestArbiterSequenceRestart(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	day := packets(t, testSession, 100, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second, HoldRestart: true})
	var held []uint64 // told the BehindFunc (the capture's: restateHeld)
	a.SetBehindFunc(func(next uint64, _ int64) { held = append(held, next) })
	now := int64(time.Hour)
	offer := func(pkts [][]byte, step time.Duration) { offerBoth(a, &now, pkts, step) }
	offer(day[:60], time.Millisecond)
	delivered := s.got
	if delivered != totalMessages(t, day[:60]) {
		t.Fatalf("delivered %d of %d", delivered, totalMessages(t, day[:60]))
	}
	// The restart: 1 to 40 again, over 2 s.
	offer(day[:40], 50*time.Millisecond)
	a.refreshBehind()
	if s.got != delivered || a.Stats.Regressions != 1 || !a.Stats.Behind || !slices.Equal(held, []uint64{a.Next()}) {
		t.Fatalf("after the restart: delivered %d (want %d), regressions %d, behind %v, held told %v (want [%d])", s.got, delivered, a.Stats.Regressions, a.Stats.Behind, held, a.Next())
	}
	// A quiet spell: heartbeats with the restarted sequence number keep it
	// behind, and do not count it again.
	p40, err := moldudp64.Parse(day[40])
	if err != nil {
		t.Fatal(err)
	}
	hb := moldudp64.AppendHeader(nil, testSession, p40.Seq, 0)
	for range 30 {
		now += int64(100 * time.Millisecond)
		a.Offer(0, hb, now)
		a.Offer(1, hb, now)
	}
	if a.refreshBehind(); a.Stats.Regressions != 1 || !a.Stats.Behind {
		t.Fatalf("heartbeats: regressions %d, behind %v", a.Stats.Regressions, a.Stats.Behind)
	}
	// The replay goes on past what was delivered: the rest is new.
	offer(day[40:], time.Millisecond)
	a.refreshBehind()
	if want := totalMessages(t, day); s.got != want || a.Stats.Behind || a.Stats.Regressions != 1 || len(s.gaps) != 0 || len(held) != 1 {
		t.Fatalf("caught up: delivered %d of %d, behind %v, regressions %d, gaps %v, held told %v", s.got, want, a.Stats.Behind, a.Stats.Regressions, s.gaps, held)
	}
}

// offerBoth offers pkts on both lines, the clock *now advancing step
// before each.
func offerBoth(a *Arbiter, now *int64, pkts [][]byte, step time.Duration) {
	for _, p := range pkts {
		*now += int64(step)
		a.Offer(0, p, *now)
		a.Offer(1, p, *now)
	}
}

// TestArbiterBehindNotRegression: what is behind but is no restart is
// never counted: the slower line's copies, one line that goes back while
// the other brings new packets, and a restart shorter than LineTimeout.
func TestArbiterBehindNotRegression(t *testing.T) {
	rng := rand.New(rand.NewPCG(73, 74))
	day := packets(t, testSession, 400, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(time.Hour)
	// Line B trails A by 5 packets, over 1.5 s.
	for i := range 100 {
		now += int64(15 * time.Millisecond)
		a.Offer(0, day[i], now)
		if i >= 5 {
			a.Offer(1, day[i-5], now)
		}
	}
	// Line B goes back to 1 for 2 s while A goes on.
	for i := 100; i < 200; i++ {
		now += int64(20 * time.Millisecond)
		a.Offer(0, day[i], now)
		a.Offer(1, day[i-100], now)
	}
	// Both lines go back for 0.5 s, then go on.
	for i := range 25 {
		now += int64(20 * time.Millisecond)
		a.Offer(0, day[i], now)
		a.Offer(1, day[i], now)
	}
	for i := 200; i < 400; i++ {
		now += int64(time.Millisecond)
		a.Offer(0, day[i], now)
		a.Offer(1, day[i], now)
	}
	a.refreshBehind()
	if want := totalMessages(t, day); s.got != want || a.Stats.Regressions != 0 || a.Stats.Behind {
		t.Fatalf("delivered %d of %d, regressions %d, behind %v", s.got, want, a.Stats.Regressions, a.Stats.Behind)
	}
}

// TestArbiterStrayCopiesNotRegression: on one line, in an idle spell
// (heartbeats only, nothing new), two stray late copies of old packets
// come 2 s apart. Each is behind, but the heartbeats between them are not:
// no restart, however long the spell.
func TestArbiterStrayCopiesNotRegression(t *testing.T) {
	rng := rand.New(rand.NewPCG(75, 76))
	day := packets(t, testSession, 50, 5, rng)
	a, _ := newTestArbiter(t, ArbiterConfig{Lines: 1, LineTimeout: time.Second})
	now := int64(time.Hour)
	for _, p := range day {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
	}
	hb := moldudp64.AppendHeader(nil, testSession, a.Next(), 0)
	beat := func(n int) {
		for range n {
			now += int64(100 * time.Millisecond)
			a.Offer(0, hb, now)
		}
	}
	beat(5)
	a.Offer(0, day[10], now)
	beat(20)
	a.Offer(0, day[11], now)
	beat(20)
	a.Offer(0, day[12], now)
	if a.refreshBehind(); a.Stats.Regressions != 0 || a.Stats.Behind {
		t.Fatalf("stray copies in an idle spell: regressions %d, behind %v", a.Stats.Regressions, a.Stats.Behind)
	}
}

// TestSequenceRestartNotReady: through the real threads, in both modes,
// with HoldRestart, a restart under the same session name makes the
// handler not ready, with
// its reason, and counts in feedhandler_sequence_regressions_total; the
// books keep what was delivered; new sequence numbers make it ready again.
func TestSequenceRestartNotReady(t *testing.T) { forEachMode(t, testSequenceRestartNotReady) }

func testSequenceRestartNotReady(t *testing.T, mode Mode, shards []int) {
	pkts := dayPacketsSized(t, 2000, 200)
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	play := func(pkts [][]byte, step time.Duration) { r.play(&now, pkts, step) }
	play(pkts[:40], time.Microsecond)
	h, err := Start(Config{
		Feed:       "itch",
		Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Arbiter:    ArbiterConfig{LineTimeout: time.Second, HoldRestart: true},
		Book:       book.Config{MaxOrders: 1 << 14, MaxLocates: 1024, MaxLevels: 1 << 12},
		Mode:       mode,
		ShardCores: shards,
		ShmName:    shmtest.Name(t, "fhregress"),
		Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	first := totalMessages(t, pkts[:40])
	waitFor(t, "the first 40 packets applied", func() bool {
		st := h.Stats()
		ok, _ := st.Ready()
		return st.Arbiter.Delivered == first && st.Applied() == st.Routed && ok
	})
	play(pkts[:20], 100*time.Millisecond) // back to 1, for 2 s
	waitFor(t, "not ready", func() bool { ok, _ := h.Ready(); return !ok })
	st := h.Stats()
	if _, why := st.Ready(); !strings.Contains(why, "same session name") || st.Arbiter.Delivered != first || st.Arbiter.Regressions != 1 {
		t.Fatalf("after the restart: %q, delivered %d (want %d), regressions %d", why, st.Arbiter.Delivered, first, st.Arbiter.Regressions)
	}
	if text := string(NewExposition(h).AppendText(nil)); !strings.Contains(text, "\nfeedhandler_sequence_regressions_total{feed=\"itch\"} 1\n") {
		t.Fatalf("no regression in the metrics:\n%s", grepLines(text, "regressions"))
	}
	play(pkts[20:], time.Microsecond) // the replay goes on past what was delivered
	all := totalMessages(t, pkts)
	waitFor(t, "everything applied and ready", func() bool {
		st := h.Stats()
		ok, _ := st.Ready()
		return st.Arbiter.Delivered == all && st.Applied() == st.Routed && ok
	})
}

// TestArbiterSequenceRestartRebuild is TestArbiterSequenceRestart without
// HoldRestart: once the restart is confirmed the session's sequence is
// followed again from 1, the SessionFunc told of a change to the same
// session. What the lines brought while it was confirmed (dropped as
// behind) is one gap from 1 (no recovery source here: declared), and the
// rest of the restarted sequence is delivered.
func TestArbiterSequenceRestartRebuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(77, 78))
	day := packets(t, testSession, 100, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	var held []uint64
	a.SetBehindFunc(func(next uint64, _ int64) { held = append(held, next) })
	var changes [][2]moldudp64.Session
	a.SetSessionFunc(func(old, new moldudp64.Session) {
		changes = append(changes, [2]moldudp64.Session{old, new})
		s.next = 0 // the sink checks the order from 1 again
	})
	now := int64(time.Hour)
	offer := func(pkts [][]byte, step time.Duration) { offerBoth(a, &now, pkts, step) }
	offer(day[:60], time.Millisecond)
	before := s.got
	offer(day[:40], 50*time.Millisecond) // back to 1, for 2 s
	a.Tick(now + int64(time.Millisecond))
	if a.Stats.Regressions != 1 || a.Stats.Behind || len(changes) != 2 || changes[1] != [2]moldudp64.Session{testSession, testSession} || !slices.Equal(held, []uint64{0}) {
		t.Fatalf("after the restart: regressions %d, behind %v, session changes %v, held told %v (want [0]: followed from 1, not held)", a.Stats.Regressions, a.Stats.Behind, changes, held)
	}
	if len(s.gaps) != 1 || s.gaps[0].First != 1 {
		t.Fatalf("gaps %v, want one from 1", s.gaps)
	}
	p40, _ := moldudp64.Parse(day[40])
	if g := s.gaps[0]; g.End() >= p40.Seq || g.End() < 2 {
		t.Fatalf("gap %v: the restart confirmed outside the window (seq 1 to %d)", g, p40.Seq)
	}
	offer(day[40:], time.Millisecond)
	if want := before + totalMessages(t, day) - s.gaps[0].Count; s.got != want || a.Next() != s.next || len(s.gaps) != 1 || a.Stats.SessionChanges != 0 {
		t.Fatalf("delivered %d, want %d; next %d; gaps %v; session changes %d", s.got, want, a.Next(), s.gaps, a.Stats.SessionChanges)
	}
}

// TestSequenceRestartRebuilt: through the real threads, in both modes, the
// publisher restarts under the same session name with another day's
// messages from sequence number 1 (a re-request server serving the
// restarted sequence). The books end equal to a replay of the second day
// alone, whole, with the restart counted. With HoldRestart (or without
// the rebuild) the second day's tail lands on the first day's books.
func TestSequenceRestartRebuilt(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		testSequenceRestartRebuilt(t, mode, shards, restartRerequest)
	})
}

// TestSequenceRestartSnapshot is TestSequenceRestartRebuilt with a GLIMPSE
// server instead (a snapshot of the restarted sequence, taken where the
// restart was confirmed).
func TestSequenceRestartSnapshot(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		testSequenceRestartRebuilt(t, mode, shards, restartSnapshot)
	})
}

// The recovery source of testSequenceRestartRebuilt.
const (
	restartNone = iota
	restartRerequest
	restartSnapshot
)

// TestSequenceRestartNoRecovery is TestSequenceRestartRebuilt with no
// recovery source: the books are emptied at the restart and stay flagged
// possibly stale (what the lines brought while the restart was confirmed
// is a declared gap), and the handler is not ready.
func TestSequenceRestartNoRecovery(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) { testSequenceRestartRebuilt(t, mode, shards, restartNone) })
}

// restartDays is two days under session RST, the books of the second
// alone, its messages by sequence number, and a lab re-request server
// serving it (closed at the test's end).
func restartDays(t *testing.T) (day1, day2 [][]byte, ref *book.Books, bySeq map[uint64][]byte, rr *exchange.RerequestServer) {
	day1 = sessionDay(t, "RST", 9, 20_000, 300, 50)
	day2 = sessionDay(t, "RST", 10, 20_000, 300, 50)
	ref, err := book.New(dayBooks)
	if err != nil {
		t.Fatal(err)
	}
	hist := new(exchange.History)
	bySeq = map[uint64][]byte{}
	for i, ms := range dayMessages(t, day2) {
		hist.Record(day2[i])
		for _, m := range ms {
			ref.Apply(itch.Msg(m))
			bySeq[uint64(len(bySeq)+1)] = m
		}
	}
	rr, err = exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"),
		Session: moldudp64.NewSession("RST"), Message: hist.Message})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rr.Close() })
	return day1, day2, ref, bySeq, rr
}

// startRestart starts the real threads over r for the restart tests.
func startRestart(t *testing.T, r *scriptRx, rc RecoveryConfig, mode Mode, shards []int, name string) *Handler {
	h, err := Start(Config{
		Feed:       "itch",
		Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond, LineTimeout: time.Second},
		Recovery:   rc,
		Book:       dayBooks,
		Mode:       mode,
		ShardCores: shards,
		ShmName:    name,
		Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	return h
}

func testSequenceRestartRebuilt(t *testing.T, mode Mode, shards []int, source int) {
	day1, day2, ref, bySeq, rr := restartDays(t)
	var rc RecoveryConfig
	switch source {
	case restartRerequest:
		rc.Rerequest = rerequest.Config{Servers: []netip.AddrPort{rr.Addr()}, Timeout: 50 * time.Millisecond}
	case restartSnapshot:
		// The snapshot is of the restarted sequence up to its 30th packet.
		p30, _ := moldudp64.Parse(day2[30])
		snap, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p", Session: "RST",
			Messages: func(seq uint64) ([]byte, bool) { m, ok := bySeq[seq]; return m, ok }, Position: func() uint64 { return p30.Seq - 1 }, FollowInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- snap.Serve() }()
		defer func() { snap.Close(); <-served }()
		rc.Snapshot = GlimpseSnapshot(glimpse.Config{Addr: snap.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second})
		rc.SnapshotRetry = 5 * time.Millisecond
	}
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	play := func(pkts [][]byte, step time.Duration) { r.play(&now, pkts, step) }
	play(day1, 0)
	name := shmtest.Name(t, "fhrestart")
	h := startRestart(t, r, rc, mode, shards, name)
	first := totalMessages(t, day1)
	waitFor(t, "the first day applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == first && st.Applied() == st.Routed
	})
	play(day2[:30], 100*time.Millisecond) // back to 1 for 3 s: confirmed as a restart
	play(day2[30:], time.Microsecond)
	all := first + totalMessages(t, day2)
	if source == restartNone {
		waitFor(t, "the second day applied but for one gap", func() bool {
			st := h.Stats()
			return st.Arbiter.Gaps == 1 && st.Arbiter.Delivered+st.Arbiter.GapMessages == all && st.Applied() == st.Routed
		})
		for range 2 { // after one more stats copy too
			waitFor(t, "every shard flagged, not ready", func() bool {
				st := h.Stats()
				ok, _ := st.Ready()
				return st.StaleBooks() != 0 && !ok && st.Arbiter.Regressions == 1
			})
			time.Sleep(30 * time.Millisecond)
		}
		return
	}
	if source == restartSnapshot {
		// What the snapshot loaded is not delivered by the lines.
		all = first + totalMessages(t, day2[30:])
	}
	waitFor(t, "the second day applied, whole", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == all && st.Applied() == st.Routed && st.StaleBooks() == 0
	})
	st := h.Stats()
	repaired := st.Arbiter.RecoveriesFilled != 0 && st.Arbiter.Gaps == 0
	if source == restartSnapshot {
		repaired = st.Recovery.Snapshots == 1 && st.Recovery.LastSnapshotNext > 1
	}
	if ok, why := st.Ready(); !ok || st.Arbiter.Regressions != 1 || st.Arbiter.Restarts != 1 || st.Arbiter.Behind || !repaired {
		t.Fatalf("ready %v (%s), regressions %d, behind %v, recoveries filled %d, gaps %d, snapshots %d (next %d)", ok, why,
			st.Arbiter.Regressions, st.Arbiter.Behind, st.Arbiter.RecoveriesFilled, st.Arbiter.Gaps, st.Recovery.Snapshots, st.Recovery.LastSnapshotNext)
	}
	compareShm(t, name, ref, false)
}

// play appends pkts to the script on both lines, the receive time *now
// advancing step before each.
func (r *scriptRx) play(now *int64, pkts [][]byte, step time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range pkts {
		*now += int64(step)
		r.script = append(r.script, rx.Packet{Data: b, Line: rx.LineA, RxTime: *now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: *now})
	}
}

// grepLines returns text's lines that contain s.
func grepLines(text, s string) string {
	var out []string
	for l := range strings.Lines(text) {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
