package handler

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/rs/zerolog"
)

// silentServer is a re-request server that reads requests (a real UDP
// socket on loopback) and never answers.
func silentServer(t *testing.T) netip.AddrPort {
	t.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.LocalAddr().(*net.UDPAddr).AddrPort()
}

// modeHandler is oneShardHandler in mode: run to completion (no ring), or
// sharded with a ring of ring messages, whose shard loop runs until
// cleanup. wait(n) waits until the shard applied n messages in all.
func modeHandler(t *testing.T, mode Mode, ring int, books book.Config) (h *Handler, sh *shard, wait func(n uint64)) {
	t.Helper()
	if mode == ModeRunToCompletion {
		ring = 0
	}
	h, sh = oneShardHandler(t, ring, books)
	return h, sh, runShard(t, sh)
}

// offerWithoutSecond offers pkts on line A but the second packet, lost;
// line B brings only the first and then is quiet (not yet timed out), so
// the gap waits on it while what follows fills the hold-back arena.
func offerWithoutSecond(h *Handler, pkts [][]byte) {
	now := time.Now().UnixNano()
	h.arb.Offer(0, pkts[0], now)
	h.arb.Offer(1, pkts[0], now) // line B's last packet for a while
	for i := 2; i < len(pkts); i++ {
		now += int64(time.Millisecond)
		h.arb.Offer(0, pkts[i], now)
	}
}

// pollOnce is one idle turn of the receive loop: a tick, the recovery's
// poll, the batch's end and the sweep.
func pollOnce(h *Handler, rec *recovery) {
	now := time.Now().UnixNano()
	h.arb.Tick(now)
	rec.poll(now)
	h.endBatch()
	h.finishSweep()
}

// waitSnapshot polls rec until a snapshot is loaded, for at most about 3 s.
func waitSnapshot(t *testing.T, rec *recovery) {
	t.Helper()
	for i := 0; rec.stats.Snapshots == 0; i++ {
		if i == 3000 {
			t.Fatalf("no snapshot loaded: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(time.Now().UnixNano())
	}
}

// runShard runs a sharded shard's own loop (shard.run) until cleanup, and
// returns a func that waits until it applied n messages in all.
func runShard(t *testing.T, sh *shard) func(n uint64) {
	t.Helper()
	if sh.ring == nil {
		return func(uint64) {}
	}
	pinErr, done := make(chan error, 1), make(chan struct{})
	go func() { sh.run(pinErr); close(done) }()
	if err := <-pinErr; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.ring.Close(); <-done })
	return func(n uint64) {
		t.Helper()
		for i := 0; sh.applied.Load() < n; i++ {
			if i == 4000 {
				t.Fatalf("the shard applied %d of %d messages", sh.applied.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestSessionChangeMidRerequestIsNoRepair: a range of the old session is
// being re-requested (the server never answers) when a new session
// confirms and replaces the silent old one. The range was never filled:
// the recovery must not record it as repaired by re-request (RecoveryStats
// Events, recovery time), as if the old session's messages had come.
func TestSessionChangeMidRerequestIsNoRepair(t *testing.T) {
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			h, _, wait := modeHandler(t, m.mode, 1<<10, smallBooks)
			rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second, Grace: time.Microsecond, Hold: time.Millisecond},
				RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{silentServer(t)}, Timeout: time.Hour}})
			ev := itch.SystemEventFields{EventCode: 'Q'}
			now := time.Now().UnixNano()
			// The old session: 1..4 confirm it, 5 is lost on the line, 6 is held.
			for _, seq := range []uint64{1, 2, 3, 4, 6} {
				h.arb.Offer(0, sessionPacket("OLD", seq, ev.Append(nil)), now)
			}
			now += int64(10 * time.Millisecond)
			h.arb.Tick(now)
			rec.poll(now)
			if r, ok := h.arb.Recovering(); !ok || r.First != 5 || rec.client.Stats.Requests == 0 {
				t.Fatalf("not re-requesting 5: %v %v, requests %d", r, ok, rec.client.Stats.Requests)
			}
			// The old session falls silent; a new one confirms and replaces it.
			now += int64(2 * time.Second)
			for seq := range uint64(4) {
				h.arb.Offer(0, sessionPacket("NEW", 1+seq, ev.Append(nil)), now)
			}
			if h.arb.Session() != moldudp64.NewSession("NEW") {
				t.Fatalf("following %q", h.arb.Session())
			}
			for range 3 {
				now += int64(20 * time.Millisecond)
				rec.poll(now)
				h.endBatch()
			}
			wait(8)
			var st RecoveryStats
			rec.copyStats(&st)
			if len(st.Events) != 0 || st.RecoveryTime.Count != 0 || st.RecoveredByRerequest != 0 {
				t.Fatalf("the old session's unfilled range is recorded as repaired: events %+v, recovery times %d, by re-request %d",
					st.Events, st.RecoveryTime.Count, st.RecoveredByRerequest)
			}
			if a := &h.arb.Stats; a.Recoveries != 1 || a.RecoveriesAbandoned != 1 || a.RecoveriesFilled+a.RecoveriesFailed != 0 {
				t.Fatalf("recoveries %d: filled %d, failed %d, abandoned %d (want the one abandoned)", a.Recoveries, a.RecoveriesFilled, a.RecoveriesFailed, a.RecoveriesAbandoned)
			}
		})
	}
}

// TestSnapshotMessagesNotLiveLatency: a late join loads a snapshot of 200
// messages and no live message follows. The snapshot's messages were not
// received from a line: they must not be recorded in the live latency
// histograms (Stats.Latency and PathLatency: "receive timestamp to shm
// publish, per live message"), where they would stand for live messages
// that waited the whole snapshot load.
// Applied, not delivered, they are counted as the snapshot's messages
// (Stats.Recovery.SnapshotMessages, the stats line's snapshot_msgs,
// feedhandler_recovery_snapshot_loaded_messages_total): 200.
func TestSnapshotMessagesNotLiveLatency(t *testing.T) {
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			msgs := [][]byte{dirMsg("SNAP")}
			for i := range 199 {
				add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: uint64(i + 1), Side: 'B', Shares: 100,
					Stock: itch.NewSymbol("SNAP"), Price: uint32(1000 + i)}
				msgs = append(msgs, add.Append(nil))
			}
			fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
				for _, m := range msgs {
					fn(m)
				}
				// Past the lines' one packet (900): it is in the snapshot,
				// and no live message follows. (A snapshot ahead of
				// everything the lines brought waits for them to reach
				// it: TestSnapshotAheadWaitsForLines.)
				return Snapshot{Next: 901}, nil
			}
			h, sh, wait := modeHandler(t, m.mode, 1<<10, smallBooks)
			sink := &lastLine{}
			h.log, h.recv = zerolog.New(sink), &scriptRx{}
			rec := withRecovery(t, h, ArbiterConfig{Session: moldudp64.NewSession("LATE"), Lines: 1, Grace: time.Microsecond, Hold: time.Millisecond},
				RecoveryConfig{Snapshot: fetch})
			ev := itch.SystemEventFields{EventCode: 'Q'}
			now := time.Now().UnixNano()
			h.pickup = now
			h.arb.Offer(0, sessionPacket("LATE", 900, ev.Append(nil)), now) // a late join: 1..899 missing
			h.arb.Tick(now + int64(time.Second))
			waitSnapshot(t, rec)
			h.endBatch()
			wait(200)
			if got := sh.books.Book(7).Orders(); got != 199 {
				t.Fatalf("%d orders after the snapshot, want 199", got)
			}
			// Applied, not delivered (the stats line's applied and
			// delivered, docs/OPERATIONS.md).
			if d, a := h.arb.Stats.Delivered, sh.applied.Load(); d != 0 || a != 200 {
				t.Fatalf("after the snapshot: %d delivered, %d applied; want 0 and its 200", d, a)
			}
			// What tells them apart, counted once at the load: in
			// Stats, the stats line (snapshot_msgs) and /metrics.
			h.copyStats(true)
			if n := h.Stats().Recovery.SnapshotMessages; n != 200 {
				t.Errorf("Stats.Recovery.SnapshotMessages %d, want the snapshot's 200", n)
			}
			h.LogStats(false)
			if line, _ := sink.last(); !strings.Contains(line, `"snapshot_msgs":200,`) {
				t.Errorf("the stats line lacks \"snapshot_msgs\":200: %s", line)
			}
			if buf := NewExposition(h).AppendText(nil); !bytes.Contains(buf, []byte("\nfeedhandler_recovery_snapshot_loaded_messages_total{feed=\"\"} 200\n")) {
				t.Errorf("/metrics lacks feedhandler_recovery_snapshot_loaded_messages_total 200:\n%s", buf)
			}
			if n := sh.hist.Count(); n != 0 {
				t.Fatalf("%d snapshot messages recorded as live latencies (path %d), want 0", n, sh.histPath.Count())
			}
		})
	}
}

// TestSnapshotBehindGapEndThenRerequested: a gap [11,15) is declared (too
// large to re-request: MaxRerequestGap 2) and a snapshot is fetched. The
// snapshot server lags the feed: its snapshot ends at 13, inside the gap.
// The live feed resumes from 13; the re-request server (a real UDP server)
// sends 13 and 14, the books then hold every message once, and nothing is
// missing any more: the books must not stay flagged possibly stale with an
// open range, nor wait for another snapshot. Then 21..24 are lost: that
// gap has nothing to do with the lag, and its snapshot (at 25) must not
// wait SnapshotRetry (an hour here) after the lagging one.
func TestSnapshotBehindGapEndThenRerequested(t *testing.T) {
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			testSnapshotBehindGapEnd(t, m.mode)
		})
	}
}

func testSnapshotBehindGapEnd(t *testing.T, mode Mode) {
	session := moldudp64.NewSession("PART")
	msgs := map[uint64][]byte{1: dirMsg("SNAP")}
	for seq := uint64(2); seq <= 30; seq++ {
		add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: seq, Side: 'B', Shares: 100,
			Stock: itch.NewSymbol("SNAP"), Price: uint32(1000 + seq)}
		msgs[seq] = add.Append(nil)
	}
	srv, err := exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: session,
		Message: func(dst []byte, seq uint64) ([]byte, bool) {
			m, ok := msgs[seq]
			return append(dst, m...), ok
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var fetches atomic.Int32
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		next := uint64(13) // the first lags the feed; the second does not
		if fetches.Add(1) > 1 {
			next = 25
		}
		for seq := uint64(1); seq < next; seq++ {
			fn(msgs[seq])
		}
		return Snapshot{Next: next}, nil
	}
	h, sh, wait := modeHandler(t, mode, 1<<10, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Session: session, Lines: 1, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.Addr()}, Timeout: time.Second},
			Snapshot: fetch, MaxRerequestGap: 2, SnapshotRetry: time.Hour})
	now := time.Now().UnixNano()
	offer := func(seq uint64) {
		h.pickup = now
		h.arb.Offer(0, sessionPacket("PART", seq, msgs[seq]), now)
		h.endBatch()
	}
	for seq := uint64(1); seq <= 10; seq++ {
		offer(seq)
	}
	offer(15) // 11..14 lost on the line
	step := func(until func() bool) {
		t.Helper()
		for i := 0; !until(); i++ {
			if i == 3000 {
				t.Fatalf("stuck: next %d, recovery %+v", h.arb.Next(), rec.stats)
			}
			now = time.Now().UnixNano()
			h.arb.Tick(now)
			rec.poll(now)
			h.endBatch()
			time.Sleep(time.Millisecond)
		}
	}
	step(func() bool { return rec.stats.Snapshots == 1 })
	step(func() bool { return h.arb.Next() == 16 }) // 13, 14 re-requested, 15 delivered
	// offerThrough offers from..to live, then polls a few idle rounds.
	offerThrough := func(from, to uint64) {
		for seq := from; seq <= to; seq++ {
			offer(seq)
		}
		for range 5 {
			now = time.Now().UnixNano()
			rec.poll(now)
			h.endBatch()
		}
	}
	offerThrough(16, 20)
	// Applied: 10 live, 12 of the snapshot, 13..20.
	wait(10 + 12 + 8)
	sh.copyStats(true)
	st := sh.statsCopy()
	if b := sh.books.Book(7); b == nil || b.Orders() != 19 || st.Book.DuplicateAdd != 0 {
		t.Fatalf("book: %v orders, duplicate adds %d; want 19, 0", b.Orders(), st.Book.DuplicateAdd)
	}
	if h.arb.Stats.RecoveredMessages != 2 {
		t.Fatalf("recovered %d messages by re-request, want 2 (13, 14)", h.arb.Stats.RecoveredMessages)
	}
	var rs RecoveryStats
	rec.copyStats(&rs)
	if rs.Open != 0 || st.Stale || rs.State != StateInSync {
		t.Fatalf("every message is in the books, yet: open ranges %v, stale %v, state %q", rs.OpenRanges, st.Stale, rs.State)
	}
	offer(25) // 21..24 lost: too many to re-request
	step(func() bool { return rec.stats.Snapshots == 2 })
	offerThrough(26, 30)
	// Applied since: the second snapshot's 24, 25..30.
	wait(10 + 12 + 8 + 24 + 6)
	sh.copyStats(true)
	st = sh.statsCopy()
	rec.copyStats(&rs)
	if b := sh.books.Book(7); b == nil || b.Orders() != 29 || rs.Open != 0 || st.Stale {
		t.Fatalf("after the second snapshot: %v orders (want 29), open ranges %v, stale %v", b.Orders(), rs.OpenRanges, st.Stale)
	}
}

// TestSilentSessionTailCounted: the followed session goes silent with a
// range being re-requested (5) and two packets held behind it (6, 7); a new
// session confirms and replaces it. The old session's tail is never
// delivered: it must be counted (as the declared gap a change after an
// End of Session would have waited for), not dropped with no trace in any
// counter. Every message up to the old session's highest one is then
// delivered or counted missing.
func TestSilentSessionTailCounted(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 7, 1, rng) // one message each: seq i+1
	newPkts := packets(t, testSession, 4, 1, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 1, Grace: time.Microsecond, Hold: time.Millisecond, LineTimeout: time.Second})
	a.SetMissing(func(moldudp64.Range, int64) bool { return true }) // a slow recovery source
	now := int64(time.Second)
	for i, p := range oldPkts {
		if i != 4 { // 5 lost
			a.Offer(0, p, now)
		}
	}
	a.Tick(now + int64(time.Millisecond))
	if r, ok := a.Recovering(); !ok || r.First != 5 || a.Pending() != 2 {
		t.Fatalf("recovering %v %v, %d held; want 5, 2 held", r, ok, a.Pending())
	}
	now += int64(2 * time.Second) // the old session is silent
	s.next = 0
	for _, p := range newPkts {
		a.Offer(0, p, now)
	}
	if a.Session() != testSession || a.Stats.SessionChanges != 1 {
		t.Fatalf("following %q, %d changes", a.Session(), a.Stats.SessionChanges)
	}
	oldDelivered := a.Stats.Delivered - totalMessages(t, newPkts)
	if got := oldDelivered + a.Stats.GapMessages; got != 7 {
		t.Fatalf("old session: %d delivered + %d counted missing = %d of its 7 messages (held %d, won %d)",
			oldDelivered, a.Stats.GapMessages, got, a.Stats.Held, a.Stats.Lines[0].Won)
	}
}

// TestForcedGapDetected: line B stops (not yet timed out) while the feed is
// busy; line A loses packet 2 and the hold-back arena (MaxPending 4) fills
// before B could be given up on; the spill is no larger (Spill defaults
// to MaxPending), so the range is declared at once (the arbiter's
// ForcedByFull). It is a range missing on every line and
// declared: recovery_gaps_detected_total ("handed to recovery or
// declared") must count it, as it counts every range it is handed.
func TestForcedGapDetected(t *testing.T) {
	h, _ := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Session: testSession, MaxPending: 4},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{silentServer(t)}, Timeout: time.Hour}})
	rng := rand.New(rand.NewPCG(9, 10))
	pkts := packets(t, testSession, 8, 1, rng)
	offerWithoutSecond(h, pkts)
	h.endBatch()
	if h.arb.Stats.ForcedByFull != 1 || h.arb.Stats.Gaps != 1 || len(rec.open) != 1 {
		t.Fatalf("forced %d, gaps %d, open %v; want 1, 1, one range", h.arb.Stats.ForcedByFull, h.arb.Stats.Gaps, rec.open)
	}
	if rec.stats.GapsDetected != h.arb.Stats.Gaps {
		t.Fatalf("gaps detected %d, but %d range(s) declared missing on every line", rec.stats.GapsDetected, h.arb.Stats.Gaps)
	}
}

// TestRecoveryDifferential plays one generated day to the handler as the
// receive thread would, in both modes: it joins late (a snapshot from the
// lab's GLIMPSE server over TCP, whose position lags what the lines
// carried by a random number of messages, so its end may lie before,
// inside or after what is buffered), and packets are lost on both lines
// at random (re-requested from the lab's re-request server over UDP).
// Once everything is repaired, the published books equal a replay of the
// whole day, no book is stale, nothing is open, and no message was applied
// twice (no duplicate add, no inconsistency).
func TestRecoveryDifferential(t *testing.T) {
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			for seed := range uint64(6) {
				testRecoveryDifferential(t, m.mode, seed, ArbiterConfig{}, 0)
			}
			// Snapshots mid-day too (gaps over 30 messages), with a spill
			// small enough to overflow while one is fetched.
			for seed := range uint64(6) {
				testRecoveryDifferential(t, m.mode, 100+seed, ArbiterConfig{MaxPending: 16, Spill: 24}, 30)
			}
		})
	}
}

func testRecoveryDifferential(t *testing.T, mode Mode, seed uint64, ac ArbiterConfig, maxGap uint64) {
	rng := rand.New(rand.NewPCG(seed, 77))
	pkts := sessionDay(t, "DIFF", 11+seed, 20_000, 300, 40)
	session := moldudp64.NewSession("DIFF")
	var hist exchange.History
	bySeq := map[uint64][]byte{}
	ref, err := book.New(dayBooks)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range pkts {
		hist.Record(b)
		p, _ := moldudp64.Parse(b)
		it := p.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			bySeq[it.Seq()] = m
			ref.Apply(itch.Msg(m))
		}
	}
	rr, err := exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: session, Message: hist.Message})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	var pos atomic.Uint64
	snap, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p", Session: "DIFF",
		Messages: func(seq uint64) ([]byte, bool) { m, ok := bySeq[seq]; return m, ok }, Position: pos.Load, FollowInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- snap.Serve() }()
	defer func() { snap.Close(); <-served }()

	h, sh, wait := modeHandler(t, mode, 1<<12, dayBooks)
	h.recv = &scriptRx{}
	ac.Session, ac.Grace, ac.Hold, ac.LineTimeout = session, time.Microsecond, time.Millisecond, time.Hour
	rec := withRecovery(t, h, ac,
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{rr.Addr()}, Timeout: 50 * time.Millisecond}, MaxRerequestGap: maxGap,
			Snapshot:      GlimpseSnapshot(glimpse.Config{Addr: snap.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}),
			SnapshotRetry: 5 * time.Millisecond})
	lag := rng.Uint64N(200)
	join := len(pkts)/5 + rng.IntN(len(pkts)/5)
	step := func() { pollOnce(h, rec) }
	for i := join; i < len(pkts); i++ {
		p, _ := moldudp64.Parse(pkts[i])
		pos.Store(p.Next() - 1 - min(lag, p.Next()-1))
		now := time.Now().UnixNano()
		h.pickup = now
		lostA, lostB := rng.IntN(40) == 0, rng.IntN(40) == 0
		if i > join && rng.IntN(60) == 0 {
			lostA, lostB = true, true
		}
		if maxGap > 0 && i > join && i%400 == 0 {
			// A burst lost on both lines: too long to re-request.
			i += 10
			continue
		}
		if !lostA {
			h.arb.Offer(0, pkts[i], now)
		}
		if !lostB {
			h.arb.Offer(1, pkts[i], now)
		}
		h.endBatch()
		if i%4 == 0 {
			rec.poll(now)
			h.endBatch()
		}
		if i%16 == 0 {
			time.Sleep(100 * time.Microsecond)
			step()
		}
	}
	last, _ := moldudp64.Parse(pkts[len(pkts)-1])
	pos.Store(last.Next() - 1)
	eos := moldudp64.AppendHeader(nil, session, last.Next(), moldudp64.EndOfSessionCount)
	for i := 0; ; i++ {
		if i == 5000 {
			t.Fatalf("seed %d: not whole: next %d of %d, open %v, fetching %v, recovering %v, stats %+v", seed,
				h.arb.Next(), last.Next(), rec.open, rec.fetching, h.arb.recovering, rec.stats)
		}
		h.arb.Offer(0, eos, time.Now().UnixNano())
		step()
		if _, busy := h.arb.Recovering(); h.arb.Next() == last.Next() && !busy && !rec.fetching && len(rec.open) == 0 && !h.arb.Frozen() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	step()
	if sh.ring != nil {
		wait(h.routed)
		time.Sleep(20 * time.Millisecond) // the shard's idle flushes
	}
	sh.copyStats(true)
	st := sh.statsCopy()
	// Messages applied to books flagged stale (a gap declared while a
	// snapshot's retry delay runs) may find unknown references; with
	// every gap re-requested, none may.
	if st.Book.DuplicateAdd != 0 || maxGap == 0 && st.Book.Inconsistencies() != 0 {
		t.Errorf("seed %d (join %d, lag %d): duplicate adds %d, inconsistencies %d; snapshots %d, by re-request %d",
			seed, join, lag, st.Book.DuplicateAdd, st.Book.Inconsistencies(), rec.stats.Snapshots, h.arb.Stats.RecoveriesFilled)
	}
	compareShm(t, h.w.Path(), ref, false)
	if a := &h.arb.Stats; a.Recoveries != a.RecoveriesFilled+a.RecoveriesFailed+a.RecoveriesAbandoned {
		t.Errorf("seed %d: recoveries %d != filled %d + failed %d + abandoned %d", seed, a.Recoveries, a.RecoveriesFilled, a.RecoveriesFailed, a.RecoveriesAbandoned)
	}
	t.Logf("seed %d: join %d lag %d: snapshots %d (next %d), gaps %d, re-requested %d, spill max %d, spill dropped %d", seed, join, lag,
		rec.stats.Snapshots, rec.stats.LastSnapshotNext, rec.stats.GapsDetected, rec.client.Stats.Messages, h.arb.Stats.HeldMax, h.arb.Stats.SpillDropped)
}

// TestSessionChangeDifferential: the handler follows day 1's session (no
// session configured) with losses re-requested, the last packets of day 1
// lost on both lines (its End of Session reveals them), then day 2's
// session, joined late (a snapshot of day 2). In both modes the published
// books end equal to a replay of day 2 alone, with nothing open or stale.
func TestSessionChangeDifferential(t *testing.T) {
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			for seed := range uint64(4) {
				testSessionChangeDifferential(t, m.mode, seed)
			}
		})
	}
}

type labDay struct {
	session moldudp64.Session
	pkts    [][]byte
	bySeq   map[uint64][]byte
	hist    exchange.History
	ref     *book.Books
	rr      *exchange.RerequestServer
	snap    *exchange.SnapshotServer
	pos     atomic.Uint64
}

func newLabDay(t *testing.T, name string, seed uint64, n int) *labDay {
	d := &labDay{session: moldudp64.NewSession(name), pkts: sessionDay(t, name, seed, n, 300, 40), bySeq: map[uint64][]byte{}}
	var err error
	if d.ref, err = book.New(dayBooks); err != nil {
		t.Fatal(err)
	}
	for _, b := range d.pkts {
		d.hist.Record(b)
		p, _ := moldudp64.Parse(b)
		it := p.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			d.bySeq[it.Seq()] = m
			d.ref.Apply(itch.Msg(m))
		}
	}
	if d.rr, err = exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: d.session, Message: d.hist.Message}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.rr.Close() })
	if d.snap, err = exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p", Session: name,
		Messages: func(seq uint64) ([]byte, bool) { m, ok := d.bySeq[seq]; return m, ok }, Position: d.pos.Load, FollowInterval: -1}); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.snap.Serve() }()
	t.Cleanup(func() { d.snap.Close(); <-served })
	return d
}

func testSessionChangeDifferential(t *testing.T, mode Mode, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 78))
	d1, d2 := newLabDay(t, "DAYONE", 21+seed, 8_000), newLabDay(t, "DAYTWO", 31+seed, 12_000)
	var snapAddr atomic.Value
	snapAddr.Store(d1.snap.Addr().String())
	fetch := func(ctx context.Context, s moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		return GlimpseSnapshot(glimpse.Config{Addr: snapAddr.Load().(string), Username: "u", Password: "p", IdleTimeout: 5 * time.Second})(ctx, s, fn)
	}
	h, sh, wait := modeHandler(t, mode, 1<<12, dayBooks)
	h.recv = &scriptRx{}
	rec := withRecovery(t, h, ArbiterConfig{Grace: time.Microsecond, Hold: time.Millisecond, LineTimeout: time.Hour},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{d1.rr.Addr(), d2.rr.Addr()}, Timeout: 2 * time.Millisecond, Retries: 1},
			Snapshot: fetch, SnapshotRetry: 5 * time.Millisecond})
	step := func() { pollOnce(h, rec) }
	play := func(d *labDay, from int, tailLost int) {
		for i := from; i < len(d.pkts); i++ {
			p, _ := moldudp64.Parse(d.pkts[i])
			d.pos.Store(p.Next() - 1)
			now := time.Now().UnixNano()
			h.pickup = now
			lost := i >= len(d.pkts)-tailLost || i > from+8 && rng.IntN(50) == 0
			if !lost && rng.IntN(30) != 0 {
				h.arb.Offer(0, d.pkts[i], now)
			}
			if !lost {
				h.arb.Offer(1, d.pkts[i], now)
			}
			h.endBatch()
			if i%8 == 0 {
				time.Sleep(50 * time.Microsecond)
				step()
			}
		}
	}
	play(d1, 0, 3)
	last1, _ := moldudp64.Parse(d1.pkts[len(d1.pkts)-1])
	eos1 := moldudp64.AppendHeader(nil, d1.session, last1.Next(), moldudp64.EndOfSessionCount)
	for i := 0; !h.arb.Ended(); i++ {
		if i == 3000 {
			t.Fatalf("seed %d: day 1 never ended: next %d of %d", seed, h.arb.Next(), last1.Next())
		}
		h.arb.Offer(0, eos1, time.Now().UnixNano())
		h.arb.Offer(1, eos1, time.Now().UnixNano())
		step()
		time.Sleep(time.Millisecond)
	}
	snapAddr.Store(d2.snap.Addr().String()) // the snapshot server moved on to day 2
	join := len(d2.pkts)/4 + rng.IntN(len(d2.pkts)/4)
	d2.pos.Store(0)
	play(d2, join, 0)
	last2, _ := moldudp64.Parse(d2.pkts[len(d2.pkts)-1])
	eos2 := moldudp64.AppendHeader(nil, d2.session, last2.Next(), moldudp64.EndOfSessionCount)
	for i := 0; ; i++ {
		if i == 5000 {
			t.Fatalf("seed %d: day 2 not whole: session %q next %d of %d, open %v, fetching %v, stats %+v", seed,
				h.arb.Session(), h.arb.Next(), last2.Next(), rec.open, rec.fetching, rec.stats)
		}
		h.arb.Offer(0, eos2, time.Now().UnixNano())
		step()
		if _, busy := h.arb.Recovering(); h.arb.Session() == d2.session && h.arb.Next() == last2.Next() && !busy && !rec.fetching &&
			len(rec.open) == 0 && !h.arb.Frozen() && !rec.pendingWhole {
			break
		}
		time.Sleep(time.Millisecond)
	}
	step()
	if sh.ring != nil {
		wait(h.routed)
		time.Sleep(20 * time.Millisecond)
	}
	if h.arb.Stats.SessionChanges != 1 {
		t.Fatalf("seed %d: %d session changes", seed, h.arb.Stats.SessionChanges)
	}
	compareShm(t, h.w.Path(), d2.ref, false)
	t.Logf("seed %d: join %d: snapshots %d discarded %d, gaps %d, re-requested %d", seed, join,
		rec.stats.Snapshots, rec.stats.SnapshotsDiscarded, rec.stats.GapsDetected, rec.client.Stats.Messages)
}

// TestFullHoldBackHandsToRerequest: as in TestForcedGapDetected, line B
// stops (not yet timed out) and line A loses packet 2 while the feed is
// busy; the hold-back arena (MaxPending 4) fills before B is given up on.
// A re-request server is configured and has packet 2, and the spill (64)
// has room: the range must be re-requested (RECOVERY.md: the arbiter hands
// a missing range to recovery, which holds what follows in the spill; a gap
// is declared when every server failed or the spill is full), not declared
// lost with the books flagged for good.
func TestFullHoldBackHandsToRerequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	pkts := packets(t, testSession, 8, 1, rng)
	var hist exchange.History
	for _, b := range pkts {
		hist.Record(b)
	}
	srv, err := exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: testSession, Message: hist.Message})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h, _ := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Session: testSession, MaxPending: 4, Spill: 64},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.Addr()}, Timeout: time.Second}})
	offerWithoutSecond(h, pkts)
	for i := 0; h.arb.Next() != 9 && h.arb.Stats.Gaps == 0; i++ {
		if i == 2000 {
			t.Fatalf("stuck: next %d, recovering %v", h.arb.Next(), h.arb.recovering)
		}
		rec.poll(time.Now().UnixNano())
		h.endBatch()
		time.Sleep(time.Millisecond)
	}
	if h.arb.Stats.Gaps != 0 || len(rec.open) != 0 || h.arb.Stats.RecoveredMessages != 1 {
		t.Fatalf("declared %d gap(s) %v (forced %d); re-requests %d, messages recovered by re-request %d",
			h.arb.Stats.Gaps, rec.open, h.arb.Stats.ForcedByFull, rec.client.Stats.Requests, h.arb.Stats.RecoveredMessages)
	}
}

// TestForcedGapAfterSnapshotDetected: a gap [11,15) is declared
// (no re-request source) and a snapshot fetched; the snapshot server lags
// the feed, its snapshot ends at 13. Meanwhile the spill (4, as the
// arena) filled with 15..18. After the load [13,15) is missing again;
// the next live packet finds the arena full and the range is declared at
// once (ForcedByFull), without MissingFunc. Such a gap
// counts in GapsDetected, as it would had it been declared through
// MissingFunc (a Tick instead of packet 19: GapsDetected 2); it is not,
// because recovery.handed still holds the range handed before the
// snapshot rewound delivery.
func TestForcedGapAfterSnapshotDetected(t *testing.T) {
	for _, viaTick := range []bool{false, true} {
		h, _ := oneShardHandler(t, 0, smallBooks)
		msgs := map[uint64][]byte{1: dirMsg("SNAP")}
		for seq := uint64(2); seq <= 20; seq++ {
			add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: seq, Side: 'B', Shares: 100,
				Stock: itch.NewSymbol("SNAP"), Price: uint32(1000 + seq)}
			msgs[seq] = add.Append(nil)
		}
		fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
			for seq := uint64(1); seq < 13; seq++ {
				fn(msgs[seq])
			}
			return Snapshot{Next: 13}, nil
		}
		rec := withRecovery(t, h, ArbiterConfig{Session: moldudp64.NewSession("PART"), Lines: 1, Grace: time.Microsecond,
			Hold: time.Millisecond, MaxPending: 4}, RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Hour})
		now := time.Now().UnixNano()
		offer := func(seq uint64) {
			h.arb.Offer(0, sessionPacket("PART", seq, msgs[seq]), now)
			h.endBatch()
		}
		for seq := uint64(1); seq <= 10; seq++ {
			offer(seq)
		}
		offer(15) // 11..14 lost
		now += int64(10 * time.Millisecond)
		h.arb.Tick(now) // [11,15) declared; the snapshot is fetched, delivery frozen
		if !h.arb.Frozen() || rec.stats.GapsDetected != 1 {
			t.Fatalf("frozen %v, gaps detected %d", h.arb.Frozen(), rec.stats.GapsDetected)
		}
		for seq := uint64(16); seq <= 18; seq++ {
			offer(seq) // held in the spill, now full
		}
		waitSnapshot(t, rec)
		h.endBatch()
		now = time.Now().UnixNano()
		if viaTick {
			h.arb.Tick(now + int64(10*time.Millisecond)) // [13,15) declared through MissingFunc
		} else {
			offer(19) // the arena is full: [13,15) declared at once
		}
		if h.arb.Stats.Gaps != 2 || h.arb.Next() < 19 {
			t.Fatalf("via tick %v: %d gaps declared, next %d; want 2, >= 19", viaTick, h.arb.Stats.Gaps, h.arb.Next())
		}
		if rec.stats.GapsDetected != h.arb.Stats.Gaps {
			t.Errorf("via tick %v: gaps detected %d, but %d ranges declared missing on every line (forced %d)",
				viaTick, rec.stats.GapsDetected, h.arb.Stats.Gaps, h.arb.Stats.ForcedByFull)
		}
	}
}

// TestHandOverStress: random loss and reordering on two lines, one
// line going quiet at times, a small hold-back arena and a larger spill, a
// recovery source that takes some ranges and fills them later, or gives
// them up. Nothing is delivered twice or out of order (sink), every
// message is delivered or counted missing, and every recovery handed
// over ends filled or failed.
func TestHandOverStress(t *testing.T) {
	var forced, spilled, recs, failed, overflow uint64
	defer func() {
		t.Logf("forced %d, held past the arena %d, recoveries %d failed %d overflows %d", forced, spilled, recs, failed, overflow)
	}()
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 99))
		pkts := packets(t, testSession, 400, 3, rng)
		slot := 64
		a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, MaxPending: 4, Spill: 4 + rng.IntN(20), SlotSize: slot,
			Grace: time.Microsecond, Hold: 5 * time.Millisecond, LineTimeout: time.Second})
		var want []moldudp64.Range
		a.SetMissing(func(r moldudp64.Range, now int64) bool {
			if rng.IntN(4) == 0 {
				return false
			}
			want = append(want, r)
			return true
		})
		now := int64(time.Second)
		quietB := false
		for i := 0; i < len(pkts); i++ {
			now += int64(rng.IntN(300)) * 1000
			if rng.IntN(30) == 0 {
				quietB = !quietB
			}
			j := i
			if i+1 < len(pkts) && rng.IntN(8) == 0 {
				j = i + 1 // swap with the next
			}
			order := []int{i}
			if j != i {
				order = []int{j, i}
				i++
			}
			for _, k := range order {
				if rng.IntN(10) != 0 {
					a.Offer(0, pkts[k], now)
				}
				if !quietB && rng.IntN(10) != 0 {
					a.Offer(1, pkts[k], now)
				}
			}
			if len(want) > 0 && rng.IntN(6) == 0 {
				if r, busy := a.Recovering(); busy {
					if rng.IntN(5) == 0 {
						a.Abandon(now)
					} else {
						for _, b := range pkts {
							p, _ := moldudp64.Parse(b)
							if p.Next() > r.First && p.Seq < r.End() {
								a.OfferRecovered(b, p, now)
							}
						}
					}
				}
			}
			if rng.IntN(20) == 0 {
				a.Tick(now)
			}
		}
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		a.Offer(0, moldudp64.AppendHeader(nil, testSession, last.Next(), 0), now)
		for k := 0; k < 50; k++ {
			now += int64(10 * time.Millisecond)
			if r, busy := a.Recovering(); busy {
				for _, b := range pkts {
					p, _ := moldudp64.Parse(b)
					if p.Next() > r.First && p.Seq < r.End() {
						a.OfferRecovered(b, p, now)
					}
				}
			}
			a.Tick(now)
		}
		forced += a.Stats.ForcedByFull
		recs += a.Stats.Recoveries
		failed += a.Stats.RecoveriesFailed
		overflow += a.Stats.SpillOverflows
		if a.Stats.HeldMax > 4 {
			spilled++
		}
		total := totalMessages(t, pkts)
		var gapMsgs uint64
		for _, g := range s.gaps {
			gapMsgs += g.Count
		}
		if _, busy := a.Recovering(); busy || a.Pending() != 0 {
			t.Fatalf("seed %d: still recovering %v or %d pending", seed, busy, a.Pending())
		}
		if s.got+gapMsgs != total || a.Stats.GapMessages != gapMsgs || a.Stats.Gaps != uint64(len(s.gaps)) {
			t.Fatalf("seed %d: delivered %d + gaps %d != %d (stats gaps %d msgs %d)", seed, s.got, gapMsgs, total, a.Stats.Gaps, a.Stats.GapMessages)
		}
		if a.Stats.Recoveries != a.Stats.RecoveriesFilled+a.Stats.RecoveriesFailed+a.Stats.RecoveriesAbandoned {
			t.Fatalf("seed %d: recoveries %d != filled %d + failed %d + abandoned %d", seed, a.Stats.Recoveries, a.Stats.RecoveriesFilled, a.Stats.RecoveriesFailed, a.Stats.RecoveriesAbandoned)
		}
	}
}

// TestHandOverAsksOnlyMissing: the arena holds 5..8 (line B quiet, not
// timed out) when 3 arrives and finds it full: the range handed to the
// recovery source is [2,3), what is missing before 3, not [2,5), which
// would re-request 3, in hand, and could push a range over
// max_rerequest_gap to a snapshot.
func TestHandOverAsksOnlyMissing(t *testing.T) {
	pkts := packets(t, testSession, 10, 1, rand.New(rand.NewPCG(1, 2)))
	a, _ := newTestArbiter(t, ArbiterConfig{Session: testSession, MaxPending: 4, Spill: 16, Grace: time.Hour, Hold: time.Hour, LineTimeout: time.Hour})
	var asked []moldudp64.Range
	a.SetMissing(func(r moldudp64.Range, now int64) bool { asked = append(asked, r); return true })
	now := int64(time.Second)
	a.Offer(0, pkts[0], now)
	a.Offer(1, pkts[0], now)
	for _, i := range []int{4, 5, 6, 7, 2} { // 5..8, then 3
		now += int64(time.Millisecond)
		a.Offer(0, pkts[i], now)
	}
	if len(asked) != 1 || asked[0] != (moldudp64.Range{First: 2, Count: 1}) {
		t.Fatalf("asked %v, want [{2 1}]", asked)
	}
}
