package handler

import (
	"testing"
	"time"
)

// TestRestartLateOldAnswer: order 10 of the old numbering is lost on the
// line and re-requested; the server is slow. The sequence restarts under
// the same session name (confirmed after LineTimeout), the restarted
// numbering's start is re-requested and answered, and it goes on until
// its own 10 is lost and re-requested in turn. Only then does the old
// request's answer arrive: old 10, same session name, overlapping the
// request of new 10. It must not be applied as the restarted numbering's
// message (the books would hold the old numbering's order 110 and miss
// order 210); it is dropped and counted, and the answer of the new
// request fills the hole.
func TestRestartLateOldAnswer(t *testing.T) {
	srv, h, sh, rec := scriptedRecovery(t, time.Second, time.Hour)
	// Numbering n (1 old, 2 restarted): 1 the directory, then orders
	// n*100+seq.
	msg := func(n, seq uint64) []byte { return sessionPacket("RST", seq, orderMsg("RST", n*100+seq, seq)) }
	now := time.Now().UnixNano()
	offer := func(n, from, to uint64, step time.Duration) {
		for seq := from; seq <= to; seq++ {
			now += int64(step)
			h.arb.Offer(0, msg(n, seq), now)
		}
	}
	poll := func() {
		now += int64(time.Millisecond)
		h.arb.Tick(now)
		rec.poll(now)
		h.endBatch()
	}
	// The old numbering: 10 lost, re-requested.
	offer(1, 1, 9, time.Millisecond)
	offer(1, 11, 20, time.Millisecond)
	poll()
	req, oldFrom := srv.request(t)
	if req.Seq != 10 || req.Count != 1 {
		t.Fatalf("asked %d+%d, want old 10", req.Seq, req.Count)
	}
	// The restart: the restarted numbering from 1, 2 s on the line.
	offer(2, 1, 5, 500*time.Millisecond)
	if h.arb.Stats.Restarts != 1 {
		t.Fatalf("no restart followed (regressions %d)", h.arb.Stats.Regressions)
	}
	// Its start, brought while the restart was confirmed, is re-requested
	// and answered; the rest comes on the line but its own 10.
	poll()
	req, from := srv.request(t)
	if req.Seq != 1 {
		t.Fatalf("asked %d+%d, want the restarted numbering from 1", req.Seq, req.Count)
	}
	for seq := range uint64(req.Count) {
		srv.answer(t, from, msg(2, 1+seq))
	}
	offer(2, 6, 9, time.Millisecond)
	offer(2, 11, 15, time.Millisecond)
	for i := 0; h.arb.Next() != 10 || rec.client.Stats.Requests != 3; i++ {
		if i == 2000 {
			t.Fatalf("the restarted numbering's start not filled, or its 10 not asked: next %d, requests %d", h.arb.Next(), rec.client.Stats.Requests)
		}
		time.Sleep(time.Millisecond)
		poll()
	}
	req, from = srv.request(t)
	if req.Seq != 10 || req.Count != 1 {
		t.Fatalf("asked %d+%d, want new 10", req.Seq, req.Count)
	}
	// The old request's answer arrives now, then the new one's.
	srv.answer(t, oldFrom, msg(1, 10))
	srv.answer(t, from, msg(2, 10))
	for i := 0; h.arb.Next() != 16; i++ {
		if i == 2000 {
			t.Fatalf("new 10 not filled: next %d, client %+v", h.arb.Next(), rec.client.Stats)
		}
		time.Sleep(time.Millisecond)
		poll()
	}
	_, old := sh.books.Order(7, 110) // orderMsg's locate
	_, restarted := sh.books.Order(7, 210)
	if old || !restarted || rec.client.Stats.BeforeRestart != 1 {
		t.Fatalf("the old numbering's answer applied as the restarted one's: order 110 in the books %v, order 210 %v (client %+v)",
			old, restarted, rec.client.Stats)
	}
}
