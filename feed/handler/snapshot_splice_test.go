package handler

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// addMsg7 is an Add Order of sym at locate 7.
func addMsg7(sym string, ref uint64, price uint32) []byte {
	a := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: ref, Side: 'B', Shares: 100,
		Stock: itch.NewSymbol(sym), Price: price}
	return a.Append(nil)
}

// TestSnapshotOfAnotherNumberingAhead: the feed changes session (OLD goes
// quiet, NEW confirms at sequence number 1) and the GLIMPSE server has not
// rolled over yet: its current session is still OLD's, at sequence number
// 3000, well within MaxJump of the lines. That snapshot is not a state of
// NEW: loaded, it put OLD's books under NEW's name, flagged whole, and
// every NEW message below 3000 was dropped as a duplicate. It is not
// loaded while the lines never reach its sequence number, and NEW,
// delivered by the lines from its first message, is whole without a
// snapshot (none is asked for again): its messages go on being applied.
func TestSnapshotOfAnotherNumberingAhead(t *testing.T) {
	var fetches int
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		if fetches++; fetches == 1 {
			fn(dirMsg("SNAP")) // OLD's closing state
			fn(addMsg7("SNAP", 1, 1111))
			return Snapshot{Next: 3000, Session: "OLD"}, nil
		}
		fn(dirMsg("MSFT"))
		fn(addMsg7("MSFT", 9, 5555))
		return Snapshot{Next: 5, Session: "NEW"}, nil
	}
	h, sh, rec := recoveryHandler(t, fetch)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	for i, m := range [][]byte{dirMsg("SNAP"), addMsg7("SNAP", 1, 1111), ev.Append(nil), ev.Append(nil)} {
		h.arb.Offer(0, sessionPacket("OLD", uint64(1+i), m), now)
	}
	h.endBatch()
	now += 2 * int64(time.Second)
	for i, m := range [][]byte{dirMsg("MSFT"), addMsg7("MSFT", 9, 5555), ev.Append(nil), ev.Append(nil)} {
		h.arb.Offer(0, sessionPacket("NEW", uint64(1+i), m), now)
	}
	h.endBatch()
	if h.arb.Session() != moldudp64.NewSession("NEW") || h.arb.Next() != 5 {
		t.Fatalf("session %q next %d, want NEW 5", h.arb.Session(), h.arb.Next())
	}
	for i := 0; rec.stats.SnapshotFailures == 0 || rec.fetching || rec.wantSnap || sh.pub.stale; i++ {
		if i == 3000 {
			t.Fatalf("OLD's snapshot not refused, or NEW not whole: fetching %v, wanted %v, stale %v, %+v", rec.fetching, rec.wantSnap, sh.pub.stale, rec.stats)
		}
		time.Sleep(time.Millisecond)
		now += int64(10 * time.Millisecond)
		h.arb.Tick(now) // the lines drained: nothing more of NEW
		rec.poll(now)
		h.endBatch()
	}
	if fetches != 1 || rec.stats.Snapshots != 0 {
		t.Fatalf("%d fetches, %d loaded; want OLD's only, refused", fetches, rec.stats.Snapshots)
	}
	h.arb.Offer(0, sessionPacket("NEW", 5, addMsg7("MSFT", 10, 5556)), now)
	h.endBatch()
	if d := h.arb.Stats.Lines[0].Duplicates; d != 0 || h.arb.Next() != 6 {
		t.Fatalf("NEW's message 5 after the snapshot (loaded at %d): next %d, duplicates %d; want 6, 0",
			rec.stats.LastSnapshotNext, h.arb.Next(), d)
	}
	if b := sh.books.Book(7); b == nil || b.Name() != "MSFT" || b.Orders() != 2 {
		t.Fatalf("book 7 %v, want MSFT with orders 9 and 10", b)
	}
	if sh.pub.stale {
		t.Fatal("books flagged after NEW's message 5")
	}
}

// joinLate offers line A four packets of session, sequence numbers 4000
// to 4003 (System Event 'Q'), received at rxTime: a late join, a gap from
// 1 on a handler without any packet yet.
func joinLate(h *Handler, session string, rxTime int64) {
	ev := itch.SystemEventFields{EventCode: 'Q'}
	for i := range uint64(4) {
		h.arb.Offer(0, sessionPacket(session, 4000+i, ev.Append(nil)), rxTime)
	}
}

// snapDay is the lab GLIMPSE day of the snapshot tests: SNAP's Stock
// Directory at sequence number 1, its order 1 (bid, 1111) at 2, then
// System Events 'Q' up to end-1; with ended, the last is 'C' (End of
// Messages).
func snapDay(end uint64, ended bool) func(seq uint64) ([]byte, bool) {
	ev := itch.SystemEventFields{EventCode: 'Q'}
	last := itch.SystemEventFields{EventCode: 'C'}
	return func(seq uint64) ([]byte, bool) {
		switch {
		case seq == 1:
			return dirMsg("SNAP"), true
		case seq == 2:
			return addMsg7("SNAP", 1, 1111), true
		case ended && seq == end-1:
			return last.Append(nil), true
		}
		return ev.Append(nil), seq < end
	}
}

// labSnapshot serves snapDay(end, ended) under session from the lab
// GLIMPSE server at listen (user u, password p), its position end-1, until
// the test ends or stop is called.
func labSnapshot(t *testing.T, session, listen string, end uint64, ended bool) (srv *exchange.SnapshotServer, stop func()) {
	t.Helper()
	srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: listen, Username: "u", Password: "p", Session: session,
		Messages: snapDay(end, ended), Position: func() uint64 { return end - 1 }, FollowInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close(); <-served }) }
	t.Cleanup(stop)
	return srv, stop
}

// pollUntilLoaded polls the recovery at now, as the receive loop does
// after every round, until n snapshots were loaded and none is fetched.
func pollUntilLoaded(t *testing.T, h *Handler, rec *recovery, n uint64, now int64) {
	t.Helper()
	for i := 0; rec.stats.Snapshots < n || rec.fetching; i++ {
		if i == 3000 {
			t.Fatalf("%d snapshots loaded, want %d: %+v", rec.stats.Snapshots, n, rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
}

// pollFetched polls rec at now until its fetch returned (loaded, or a
// snapshot ahead of the lines waiting for them: rec.early).
func pollFetched(t *testing.T, h *Handler, rec *recovery, now int64) {
	t.Helper()
	for i := 0; rec.fetching && rec.early == nil; i++ {
		if i == 3000 {
			t.Fatalf("the fetch never returned: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
}

// fetchAt4010 is a snapshot of one book (SNAP, order 1) at sequence
// number 4010.
func fetchAt4010(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
	fn(dirMsg("SNAP"))
	fn(addMsg7("SNAP", 1, 1111))
	return Snapshot{Next: 4010}, nil
}

// TestSnapshotAheadWaitsForLines: a late join's snapshot is a few
// messages ahead of what the lines brought when it arrives (the lines lag
// the snapshot server a little). It is loaded once the lines reach it:
// what they brought before its sequence number is dropped, what follows
// is applied on top.
func TestSnapshotAheadWaitsForLines(t *testing.T) {
	h, sh, rec := recoveryHandler(t, fetchAt4010)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	joinLate(h, "AHD", now)
	h.arb.Tick(now + int64(time.Second/2))
	pollFetched(t, h, rec, now)
	if rec.stats.Snapshots != 0 || !h.arb.Frozen() {
		t.Fatalf("loaded %d snapshots, frozen %v, before the lines reached the snapshot", rec.stats.Snapshots, h.arb.Frozen())
	}
	// The lines reach the snapshot: 4004..4009 (in it), 4010 and 4011.
	for seq := uint64(4004); seq < 4010; seq++ {
		h.arb.Offer(0, sessionPacket("AHD", seq, addMsg7("SNAP", seq, 2222)), now)
	}
	h.arb.Offer(0, sessionPacket("AHD", 4010, addMsg7("SNAP", 2, 1112)), now)
	h.arb.Offer(0, sessionPacket("AHD", 4011, ev.Append(nil)), now)
	pollUntilLoaded(t, h, rec, 1, now)
	h.endBatch()
	if rec.stats.SnapshotFailures != 0 || h.arb.Next() != 4012 {
		t.Fatalf("failures %d (%q), next %d; want 0, 4012", rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, h.arb.Next())
	}
	if b := sh.books.Book(7); b == nil || b.Orders() != 2 {
		t.Fatalf("book 7 %v, want the snapshot's order 1 and the live order 2", b)
	}
	if sh.pub.stale {
		t.Fatal("books flagged after the load")
	}
}

// sessionChangeFetch is the snapshot server of
// sessionChangeWhileSnapshotWaits: its first snapshot (of session OLD) far
// ahead of the lines, the next of session NEW, counted in fetches.
func sessionChangeFetch(fetches *int) SnapshotFunc {
	return func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		if *fetches++; *fetches == 1 {
			fn(dirMsg("SNAP"))
			fn(addMsg7("SNAP", 1, 1111))
			return Snapshot{Next: 4100}, nil
		}
		fn(dirMsg("MSFT"))
		fn(addMsg7("MSFT", 9, 5555))
		return Snapshot{Next: 5}, nil
	}
}

// sessionChangeWhileSnapshotWaits joins session OLD late, its snapshot
// (rec's first fetch, ahead of the lines) waiting for them; then the lines
// change to session NEW (MSFT at locate 7, order 9, sequence numbers 1 to
// 4), and the new session's snapshot is loaded. It returns the lines'
// time then.
func sessionChangeWhileSnapshotWaits(t *testing.T, h *Handler, rec *recovery) int64 {
	t.Helper()
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	joinLate(h, "OLD", now)
	h.arb.Tick(now + int64(time.Second/2))
	for i := 0; rec.early == nil; i++ {
		if i == 3000 {
			t.Fatalf("the snapshot is not waiting for the lines: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
	}
	now += 2 * int64(time.Second)
	for i, m := range [][]byte{dirMsg("MSFT"), addMsg7("MSFT", 9, 5555), ev.Append(nil), ev.Append(nil)} {
		h.arb.Offer(0, sessionPacket("NEW", uint64(1+i), m), now)
	}
	if h.arb.Session() != moldudp64.NewSession("NEW") {
		t.Fatalf("following %q", h.arb.Session())
	}
	for i := 0; rec.stats.Snapshots == 0 || rec.fetching; i++ {
		if i == 3000 {
			t.Fatalf("no snapshot of the new session: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
	return now
}

// TestSessionChangeWhileSnapshotWaitsForLines: a late join's snapshot is
// ahead of the lines and waits for them to reach it; meanwhile the session
// changes. The waiting snapshot, of the old session, is discarded, not
// loaded into the new one, and a snapshot of the new session is fetched.
func TestSessionChangeWhileSnapshotWaitsForLines(t *testing.T) {
	var fetches int
	h, sh, rec := recoveryHandler(t, sessionChangeFetch(&fetches))
	now := sessionChangeWhileSnapshotWaits(t, h, rec)
	if rec.stats.SnapshotsDiscarded != 1 || rec.stats.LastSnapshotNext != 5 || fetches != 2 {
		t.Fatalf("discarded %d, loaded at %d, fetches %d; want 1, 5, 2", rec.stats.SnapshotsDiscarded, rec.stats.LastSnapshotNext, fetches)
	}
	h.arb.Offer(0, sessionPacket("NEW", 5, addMsg7("MSFT", 10, 5556)), now)
	h.endBatch()
	if b := sh.books.Book(7); b == nil || b.Name() != "MSFT" || b.Orders() != 2 || sh.pub.stale {
		t.Fatalf("book 7 %v (stale %v), want MSFT with orders 9 and 10, whole", b, sh.pub.stale)
	}
}

// TestSnapshotAheadReceiverBehind: a late join's snapshot arrives ahead of
// what the lines brought because the receive loop is behind: it reads,
// never drained, packets received well before the snapshot arrived, and
// reading up to its sequence number takes it more than LineTimeout. The
// lines did not fail to reach the snapshot: what they brought by then is
// still queued. The snapshot is loaded once they reach it; before, the
// wait was measured by the wall clock and it was refused (and, with the
// receiver as far behind at every retry, refused for ever).
func TestSnapshotAheadReceiverBehind(t *testing.T) {
	h, sh, rec := recoveryHandler(t, fetchAt4010)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	stamp := int64(time.Second) // receive stamps of what is read
	joinLate(h, "BHD", stamp)
	h.arb.Offer(0, sessionPacket("BHD", 4004, ev.Append(nil)), stamp+int64(time.Millisecond))
	wall := stamp + int64(3*time.Second) // the loop is 3 s behind
	pollFetched(t, h, rec, wall)
	if rec.early == nil {
		t.Fatalf("the snapshot is not waiting for the lines: %+v", rec.stats)
	}
	// The loop reads on, a packet a round, each received before the
	// snapshot arrived, for more than LineTimeout.
	for seq := uint64(4005); seq < 4012; seq++ {
		m := addMsg7("SNAP", seq, 2222)
		switch seq {
		case 4010:
			m = addMsg7("SNAP", 2, 1112)
		case 4011:
			m = ev.Append(nil)
		}
		stamp += int64(100 * time.Millisecond)
		wall += int64(300 * time.Millisecond)
		h.arb.Offer(0, sessionPacket("BHD", seq, m), stamp)
		rec.poll(wall)
		h.endBatch()
	}
	if rec.stats.SnapshotFailures != 0 || rec.stats.Snapshots != 1 || h.arb.Next() != 4012 {
		t.Fatalf("snapshots loaded %d, failures %d (%q), next %d; want 1, 0, 4012",
			rec.stats.Snapshots, rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, h.arb.Next())
	}
	if b := sh.books.Book(7); b == nil || b.Orders() != 2 || sh.pub.stale {
		t.Fatalf("book 7 %v (stale %v), want the snapshot's order 1 and the live order 2, whole", b, sh.pub.stale)
	}
}

// waitEarly is a handler (recoveryHandler) whose snapshot, of one book at
// sequence number 4010, retried after an hour, is fetched for a late join
// of session at rxTime (joinLate, then 4004 a millisecond later): it
// returns once that snapshot, ahead of the lines, waits for them
// (recovery.early).
func waitEarly(t *testing.T, session string, rxTime int64) (*Handler, *recovery) {
	t.Helper()
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		fn(dirMsg("SNAP"))
		return Snapshot{Next: 4010}, nil
	}
	h, _, rec := recoveryHandler(t, fetch)
	rec.cfg.SnapshotRetry = time.Hour
	joinLate(h, session, rxTime)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	h.arb.Offer(0, sessionPacket(session, 4004, ev.Append(nil)), rxTime+int64(time.Millisecond))
	for i := 0; rec.early == nil; i++ {
		if i == 3000 {
			t.Fatalf("the snapshot is not waiting for the lines: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(rxTime)
	}
	return h, rec
}

// TestSnapshotAheadLinesDown: a snapshot ahead of the lines while both
// lines are down (every poll empty), or while the receiver fails on every
// call, is refused once LineTimeout passed by the wall clock (from the
// empty polls, or from the failures once they lasted LineTimeout), not
// waited for as long as the lines stay down.
func TestSnapshotAheadLinesDown(t *testing.T) {
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprint("failing=", failing), func(t *testing.T) {
			now := int64(time.Second)
			h, rec := waitEarly(t, "DWN", now)
			for i := 0; rec.stats.SnapshotFailures == 0; i++ {
				if i == 1000 {
					t.Fatalf("the snapshot still waits %v after it came, the lines down: frozen %v", time.Duration(now-rec.earlyAt), h.arb.Frozen())
				}
				now += int64(10 * time.Millisecond)
				if failing {
					h.arb.Advance(now)
				} else {
					h.arb.Tick(now)
				}
				rec.poll(now)
			}
			if h.arb.Frozen() || rec.stats.Snapshots != 0 {
				t.Fatalf("frozen %v, snapshots %d after the refusal", h.arb.Frozen(), rec.stats.Snapshots)
			}
		})
	}
}

// TestSnapshotOfAnotherSessionBehind: no session configured for the
// snapshot (the server's current one), a late join of session NEW at
// 4000, and a GLIMPSE server (the lab's, over SoupBinTCP) still on the
// session the feed left, OLD, at sequence number 3000: behind the lines,
// so the test of a snapshot ahead of them does not see it. Loaded, OLD's
// books went out under NEW's name, flagged whole, and NEW's messages from
// 3000 on were applied on top. The Login Accepted names the server's
// session: one the lines were on (a snapshot was fetched then) and left,
// so it is refused, counted, and the books stay flagged. The same server
// on NEW is loaded, and so is one naming its sessions apart from the
// lines' (GLIMPSE01: no Nasdaq specification says they are the same).
func TestSnapshotOfAnotherSessionBehind(t *testing.T) {
	for _, server := range []string{"OLD", "NEW", "GLIMPSE01"} {
		t.Run(server, func(t *testing.T) {
			snap, _ := labSnapshot(t, server, "127.0.0.1:0", 3000, false)
			fetch := GlimpseSnapshot(glimpse.Config{Addr: snap.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second})
			if server == "OLD" { // the lines were on OLD when a snapshot was last fetched
				if _, err := fetch(context.Background(), moldudp64.NewSession("OLD"), func([]byte) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}
			h, sh, rec := recoveryHandler(t, fetch)
			rec.cfg.SnapshotRetry = time.Hour
			now := int64(time.Second)
			joinLate(h, "NEW", now)
			h.arb.Tick(now + int64(time.Millisecond)) // the start gap is declared: a snapshot is fetched
			waitFetch(t, h, rec, now)
			b := sh.books.Book(7)
			if server != "OLD" { // the lines' session, or a server naming its sessions apart
				if rec.stats.Snapshots != 1 || b == nil || b.Orders() != 1 || sh.pub.stale {
					t.Fatalf("snapshot of session %s, the lines on NEW: loaded %d, failures %d (%q), book 7 %v, stale %v; want loaded, whole",
						server, rec.stats.Snapshots, rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, b, sh.pub.stale)
				}
				return
			}
			if rec.stats.Snapshots != 0 || b != nil || !sh.pub.stale || h.arb.Frozen() {
				t.Fatalf("snapshot of session OLD at 3000, the lines on NEW at 4004: loaded %d (next %d), OLD's book 7 loaded %v, stale %v, frozen %v; want it refused, the books flagged, delivery resumed",
					rec.stats.Snapshots, rec.stats.LastSnapshotNext, b != nil, sh.pub.stale, h.arb.Frozen())
			}
			if rec.stats.SnapshotFailures != 1 || rec.stats.SnapshotsWrongSession != 1 {
				t.Fatalf("failures %d, wrong session %d (%q); want 1, 1", rec.stats.SnapshotFailures, rec.stats.SnapshotsWrongSession, rec.stats.LastSnapshotError)
			}
		})
	}
}

// TestSnapshotOfLeftSessionNeverAsked: the lines were on OLD from its
// start (no gap, no snapshot asked under it), then changed to NEW, joined
// at 4000; the GLIMPSE server (blank session configured) is still on OLD
// at 3000, behind the lines. OLD is a session the lines left, named as the
// server names its own: the snapshot is refused (ErrSnapshotSession), as
// TestSnapshotOfAnotherSessionBehind's is when a snapshot was asked under
// OLD. Before, the snapshot source knew only the sessions it was asked
// under: OLD's books went out under NEW's name, flagged whole.
func TestSnapshotOfLeftSessionNeverAsked(t *testing.T) {
	snap, _ := labSnapshot(t, "OLD", "127.0.0.1:0", 3000, false)
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: snap.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}))
	rec.cfg.SnapshotRetry = time.Hour
	now := int64(time.Second)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	for i := range uint64(4) { // OLD from its start: nothing missing
		h.arb.Offer(0, sessionPacket("OLD", 1+i, ev.Append(nil)), now)
	}
	h.arb.Tick(now + int64(time.Millisecond))
	rec.poll(now)
	h.endBatch()
	if rec.fetching || h.arb.Session() != moldudp64.NewSession("OLD") || h.arb.Next() != 5 {
		t.Fatalf("OLD from its start: fetching %v, session %q, next %d", rec.fetching, h.arb.Session(), h.arb.Next())
	}
	// OLD goes quiet; NEW confirms, at 4000.
	now += 2 * int64(time.Second)
	joinLate(h, "NEW", now)
	h.arb.Tick(now + int64(time.Millisecond))
	if h.arb.Session() != moldudp64.NewSession("NEW") {
		t.Fatalf("session %q after the change, want NEW", h.arb.Session())
	}
	for i := 0; rec.stats.Snapshots+rec.stats.SnapshotFailures == 0 || rec.fetching; i++ {
		if i == 5000 {
			t.Fatalf("the fetch never returned: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
	b := sh.books.Book(7)
	if rec.stats.Snapshots != 0 || b != nil || !sh.pub.stale || rec.stats.SnapshotsWrongSession != 1 {
		t.Fatalf("snapshot of session OLD at 3000, the lines left OLD for NEW at 4004: loaded %d (next %d), OLD's book 7 loaded %v, stale %v, wrong session %d (%q); want it refused, the books flagged",
			rec.stats.Snapshots, rec.stats.LastSnapshotNext, b != nil, sh.pub.stale, rec.stats.SnapshotsWrongSession, rec.stats.LastSnapshotError)
	}
	t.Log(rec.stats.LastSnapshotError)
}

// TestSnapshotOfEndedDayBehind: the process's first join, late, of
// session NEW at 4000; the GLIMPSE server (blank session configured) is
// still on the previous day's session, PREV, which ended at 2999 (System
// Event 'C', End of Messages: "always the last message sent in any
// trading day"), its snapshot at 3000. Its name tells nothing on a first
// join (the lines were never on PREV; a server may name its sessions
// apart from the lines'), and its sequence number is behind the lines'.
// But no message follows 'C' in its numbering, and the lines brought
// 4000..4003: another numbering, refused; the books stay flagged. Before,
// PREV's books went out under NEW's name, flagged whole. The same
// snapshot joined by lines of its own day, at its end (2990..2999, 'C'
// last), is loaded; a snapshot without 'C' behind the lines is loaded as
// before (TestSnapshotOfAnotherSessionBehind's GLIMPSE01).
func TestSnapshotOfEndedDayBehind(t *testing.T) {
	day := snapDay(3000, true)
	for _, sameDay := range []bool{false, true} {
		snap, _ := labSnapshot(t, "PREV", "127.0.0.1:0", 3000, true)
		h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: snap.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}))
		rec.cfg.SnapshotRetry = time.Hour
		now := int64(time.Second)
		if sameDay {
			for seq := uint64(2990); seq < 3000; seq++ {
				m, _ := day(seq)
				h.arb.Offer(0, sessionPacket("PREV", seq, m), now)
			}
		} else {
			joinLate(h, "NEW", now)
		}
		h.arb.Tick(now + int64(time.Millisecond)) // the start gap is declared: a snapshot is fetched
		for i := 0; rec.stats.Snapshots+rec.stats.SnapshotFailures == 0 || rec.fetching; i++ {
			if i == 5000 {
				t.Fatalf("the fetch never returned: %+v", rec.stats)
			}
			time.Sleep(time.Millisecond)
			rec.poll(now)
			h.endBatch()
		}
		b := sh.books.Book(7)
		if sameDay {
			if rec.stats.Snapshots != 1 || b == nil || b.Orders() != 1 || sh.pub.stale || h.arb.Next() != 3000 {
				t.Fatalf("snapshot of PREV, ended at 2999, the lines on PREV at its end: loaded %d, failures %d (%q), book 7 %v, stale %v, next %d; want loaded, whole, at 3000",
					rec.stats.Snapshots, rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, b, sh.pub.stale, h.arb.Next())
			}
			continue
		}
		if rec.stats.Snapshots != 0 || b != nil || !sh.pub.stale || h.arb.Frozen() || rec.stats.SnapshotFailures != 1 {
			t.Fatalf("snapshot of PREV, ended at 2999, the lines on NEW at 4004: loaded %d (next %d), PREV's book 7 loaded %v, stale %v, frozen %v, failures %d (%q); want it refused, the books flagged, delivery resumed",
				rec.stats.Snapshots, rec.stats.LastSnapshotNext, b != nil, sh.pub.stale, h.arb.Frozen(), rec.stats.SnapshotFailures, rec.stats.LastSnapshotError)
		}
		t.Log(rec.stats.LastSnapshotError)
	}
}

// TestSessionChangeWhileSnapshotCaptured: a snapshot fetched when the
// lines change session is discarded, and the capture says so where the
// session changed (capture.Discarded) before the new session's freeze and
// load: its rotation, held from the freeze to the snapshot's end, no
// longer waits for a load that never comes. The capture said nothing:
// the first freeze had no end in the file.
func TestSessionChangeWhileSnapshotCaptured(t *testing.T) {
	var fetches int
	h, _, rec := recoveryHandler(t, sessionChangeFetch(&fetches))
	dir := t.TempDir()
	c, err := capture.Open(capture.Config{Base: filepath.Join(dir, "feed.pcap"), Lines: testCaptureLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	h.capFile = c
	sessionChangeWhileSnapshotWaits(t, h, rec)
	h.capFile = nil
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := recoveryFrames(t, dir)
	if got != "ZDZS" {
		t.Fatalf("the capture's snapshot frames %q (discarded %d): want ZDZS, the freeze, its discard at the session change, the new session's freeze and load", got, rec.stats.SnapshotsDiscarded)
	}
}
