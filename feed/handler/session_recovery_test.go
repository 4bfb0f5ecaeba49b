package handler

import (
	"context"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// recoveryHandler is a run-to-completion Handler with one shard publishing
// into a test shm file, following whatever session confirms first, with
// snapshot recovery through fetch.
func recoveryHandler(t *testing.T, fetch SnapshotFunc) (*Handler, *shard, *recovery) {
	t.Helper()
	h, sh := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Millisecond})
	return h, sh, rec
}

// sessionPacket is one packet of session s at seq carrying msg.
func sessionPacket(s string, seq uint64, msg []byte) []byte {
	b := moldudp64.NewBuilder(moldudp64.NewSession(s), seq, 0)
	b.Add(msg)
	return append([]byte(nil), b.Flush()...)
}

// TestSessionChangeDuringSnapshot: a snapshot of the old session is being
// fetched when a new session confirms. The old session's snapshot, arriving
// after the change, is not loaded into the new session: the new session's
// sequence numbers and books stay its own, the books stay flagged, and a
// fresh snapshot of the new session is fetched.
func TestSessionChangeDuringSnapshot(t *testing.T) {
	dir := dirMsg("SNAP")
	add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: 1, Side: 'B', Shares: 100,
		Stock: itch.NewSymbol("SNAP"), Price: 7777}
	release := make(chan struct{})
	var sessions []moldudp64.Session
	// The fetch ignores ctx: its answer may be complete before a cancel.
	fetch := func(_ context.Context, s moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		sessions = append(sessions, s)
		if s == moldudp64.NewSession("OLD") {
			<-release
			fn(dir)
			fn(add.Append(nil))
			return Snapshot{Next: 5000}, nil
		}
		return Snapshot{Next: 6}, nil // the new session's snapshot: nothing on the book, 5 messages in
	}
	h, sh, rec := recoveryHandler(t, fetch)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	// The old session, joined late: a gap from 1, so a snapshot.
	joinLate(h, "OLD", now)
	h.arb.Tick(now + int64(time.Second/2))
	rec.poll(now)
	if !rec.fetching {
		t.Fatalf("no snapshot fetched for the late join: %+v", rec.stats)
	}
	// The old session goes quiet; a new one confirms and is locked.
	now += 2 * int64(time.Second)
	for i := range uint64(4) {
		h.arb.Offer(0, sessionPacket("NEW", 1+i, ev.Append(nil)), now)
	}
	if h.arb.Session() != moldudp64.NewSession("NEW") || h.arb.Next() != 5 {
		t.Fatalf("session %q next %d after the change, want NEW 5", h.arb.Session(), h.arb.Next())
	}
	close(release) // the old session's snapshot arrives now
	for i := 0; rec.fetching; i++ {
		if i == 2000 {
			t.Fatal("the fetch never returned")
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
	}
	h.endBatch()
	if n := h.arb.Next(); n != 5 {
		t.Fatalf("next %d after the old session's snapshot, want 5", n)
	}
	if b := sh.books.Book(7); b != nil && b.Orders() != 0 {
		t.Fatalf("the old session's order is in the new session's book: %d orders", b.Orders())
	}
	if !sh.pub.stale {
		t.Fatal("books not flagged after the old session's snapshot")
	}
	h.arb.Offer(0, sessionPacket("NEW", 5, ev.Append(nil)), now)
	if d := h.arb.Stats.Lines[0].Duplicates; d != 0 || h.arb.Next() != 6 {
		t.Fatalf("new session seq 5: next %d, duplicates %d", h.arb.Next(), d)
	}
	// A fresh snapshot, of the new session, repairs the books.
	for i := 0; rec.stats.Snapshots == 0 || rec.fetching; i++ {
		if i == 2000 {
			t.Fatalf("no snapshot of the new session: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
	}
	if last := sessions[len(sessions)-1]; last != moldudp64.NewSession("NEW") {
		t.Fatalf("the last snapshot fetched was of %q", last)
	}
}

// TestSnapshotFarAheadRefused: a late join's first snapshot is far ahead
// of the lines (more than MaxJump: the server gives another numbering of
// the session, as one that did not restart with the publisher would). It
// is not loaded, counted as a failure, and the next snapshot, of this
// feed, is.
func TestSnapshotFarAheadRefused(t *testing.T) {
	dir := dirMsg("SNAP")
	add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: 1, Side: 'B', Shares: 100,
		Stock: itch.NewSymbol("SNAP"), Price: 7777}
	var fetches int
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		fn(dir)
		fn(add.Append(nil))
		if fetches++; fetches == 1 {
			return Snapshot{Next: 4000 + 1<<22 + 100}, nil
		}
		return Snapshot{Next: 4004}, nil // where the lines are
	}
	h, sh, rec := recoveryHandler(t, fetch)
	now := int64(time.Second)
	joinLate(h, "AHD", now)
	h.arb.Tick(now + int64(time.Second/2))
	for i := 0; rec.stats.Snapshots == 0; i++ {
		if i == 3000 {
			t.Fatalf("no snapshot loaded: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(time.Now().UnixNano())
		h.endBatch()
	}
	if rec.stats.SnapshotFailures != 1 || rec.stats.LastSnapshotNext != 4004 || h.arb.Next() != 4004 || fetches != 2 {
		t.Fatalf("failures %d (%q), loaded at %d, next %d, fetches %d; want 1, 4004, 4004, 2",
			rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, rec.stats.LastSnapshotNext, h.arb.Next(), fetches)
	}
	if b := sh.books.Book(7); b == nil || b.Orders() != 1 {
		t.Fatal("the second snapshot's order is not in the book")
	}
}

// TestSessionChangeRebindsLocate: locate 7 is SNAP in one session and MSFT
// in the next (ITCH reassigns locates every day), with no restart between.
// Read back through a shm Reader, MSFT's book is found under MSFT at
// locate 7, SNAP is not found any more, and nothing was counted as an
// error.
func TestSessionChangeRebindsLocate(t *testing.T) {
	h, sh, _ := recoveryHandler(t, nil)
	h.rec = nil // no recovery source
	h.arb.SetMissing(nil)
	addMsg := func(sym string, price uint32) []byte {
		a := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: 1, Side: 'B', Shares: 100,
			Stock: itch.NewSymbol(sym), Price: price}
		return a.Append(nil)
	}
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	for i, m := range [][]byte{dirMsg("SNAP"), addMsg("SNAP", 1111), ev.Append(nil), ev.Append(nil)} {
		h.arb.Offer(0, sessionPacket("OLD", uint64(1+i), m), now)
	}
	h.endBatch()
	now += 2 * int64(time.Second)
	for i, m := range [][]byte{dirMsg("MSFT"), addMsg("MSFT", 7777), ev.Append(nil), ev.Append(nil)} {
		h.arb.Offer(0, sessionPacket("NEW", uint64(1+i), m), now)
	}
	h.endBatch()
	if h.arb.Session() != moldudp64.NewSession("NEW") || sh.books.Book(7) == nil || sh.books.Book(7).Name() != "MSFT" {
		t.Fatalf("session %q, book 7 %v", h.arb.Session(), sh.books.Book(7))
	}
	r, err := shm.Open(h.w.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	loc, ok := r.Lookup("MSFT")
	if !ok || loc != 7 {
		t.Fatalf("lookup MSFT = %d %v; instruments %v", loc, ok, r.Instruments())
	}
	v, err := r.Read(loc, buf)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := v.Bid(0); string(v.Symbol()) != "MSFT" || b.Price != 7777 {
		t.Fatalf("locate 7 reads as %q bid %v", v.Symbol(), b)
	}
	if loc, ok := r.Lookup("SNAP"); ok {
		t.Fatalf("SNAP still found, at locate %d", loc)
	}
	if sh.pub.Errors != 0 || sh.pub.Rebound != 1 {
		t.Fatalf("publish errors %d, rebound %d", sh.pub.Errors, sh.pub.Rebound)
	}
}
