package handler

import (
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// lateJoinFlags reads the flags of locate 7's book from h's shm file.
func lateJoinFlags(t *testing.T, h *Handler) bookfb.Flags {
	t.Helper()
	r, err := shm.Open(h.w.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v, err := r.Read(7, make([]byte, r.Info().MaxSnapshot))
	if err != nil {
		t.Fatalf("read locate 7: %v", err)
	}
	return v.Flags()
}

// TestLateJoinRerequestBooksFlagged: a late join (the lines start at 21)
// whose start, larger than one request (5 messages), is re-requested
// (late_join: rerequest, and late_join: snapshot without a snapshot
// source). The books published from the answers, while the live feed is
// held in the spill, are the morning's: flagged PossiblyStale, so that a
// strategy does not take them for current. Once the start is whole and
// what the spill held delivered (the live edge), the flag is cleared.
// Before, they were published with the flag clear throughout.
func TestLateJoinRerequestBooksFlagged(t *testing.T) {
	for _, lj := range []string{LateJoinRerequest, LateJoinSnapshot} {
		t.Run(lj, func(t *testing.T) { testLateJoinRerequestBooksFlagged(t, lj) })
	}
}

func testLateJoinRerequestBooksFlagged(t *testing.T, lateJoin string) {
	srv := newScriptedServer(t)
	h, _ := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Hour, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{LateJoin: lateJoin, Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Hour, MaxRequestMessages: 5}})
	const live, end = 21, 27
	now := time.Now().UnixNano()
	for seq := uint64(live); seq < end; seq++ {
		now += int64(time.Millisecond)
		h.arb.Offer(0, orderPacket("LJ", "LJ", seq, seq+1), now)
	}
	now += int64(time.Second)
	h.arb.Tick(now)
	rec.poll(now)
	h.endBatch()
	if _, busy := h.arb.Recovering(); !busy || h.arb.Next() != 1 {
		t.Fatalf("recovering %v, next %d: want the start 1 to %d re-requested", busy, h.arb.Next(), live-1)
	}
	caughtUp := false
	for i := 0; !caughtUp; i++ {
		req, from := srv.request(t)
		if i == 20 || req.Seq != h.arb.Next() {
			t.Fatalf("request %d: %d+%d, next %d", i, req.Seq, req.Count, h.arb.Next())
		}
		srv.answer(t, from, orderPacket("LJ", "LJ", req.Seq, req.Seq+uint64(req.Count)))
		for j := 0; h.arb.Next() < req.Seq+uint64(req.Count); j++ {
			if j == 5000 {
				t.Fatalf("the answer to %d+%d not applied: next %d", req.Seq, req.Count, h.arb.Next())
			}
			time.Sleep(time.Millisecond)
			now += int64(time.Millisecond)
			rec.poll(now)
		}
		h.endBatch()
		caughtUp = h.arb.Next() == end
		if !caughtUp {
			if f := lateJoinFlags(t, h); f&bookfb.FlagsPossiblyStale == 0 {
				t.Fatalf("catching up (next %d, the lines at %d): locate 7 published with flags %v; want PossiblyStale", h.arb.Next(), end, f)
			}
		}
	}
	for i := 0; i < 3; i++ { // the poll that sees the catch-up ended, then the sweep
		now += int64(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
	if f := lateJoinFlags(t, h); f&bookfb.FlagsPossiblyStale != 0 {
		t.Fatalf("caught up (next %d): locate 7 flags %v; want PossiblyStale clear", h.arb.Next(), f)
	}
	if b := h.shards[0].books.Book(7); b == nil || b.Orders() != end-2 {
		t.Fatalf("book 7 %v: want %d orders", b, end-2)
	}
}
