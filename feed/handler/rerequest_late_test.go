package handler

import (
	"net"
	"testing"
	"time"
)

// TestRerequestAnswerAfterGiveUp: 10 to 13 are lost on the line and
// re-requested of a server that does not answer: the range is given up
// after the retries and declared (the books flagged, 14 to 16 delivered
// past the hole). Then the server's answer to the first request comes,
// whole and well-formed. It is too late: applying 10 to 13 after 14 to 16
// would put the books out of order. It is counted late
// (recovery_late_responses_total) with its 4 messages unused, and nothing
// of it reaches the arbiter or the books: the gap stays declared. A
// datagram of the same answer from another address, read while the next
// gap (20 to 21) is re-requested, is counted wrong_source and not applied
// either; the server's answer then fills that gap.
func TestRerequestAnswerAfterGiveUp(t *testing.T) {
	srv, h, sh, rec := scriptedRecovery(t, time.Hour, time.Millisecond)
	pkt := func(first, end uint64) []byte { return orderPacket("LATE", "LATE", first, end) }
	now, req, from := ask10to13(t, srv, h, rec, "LATE")
	if req.Seq != 10 || req.Count != 4 {
		t.Fatalf("asked %d+%d, want 10+4", req.Seq, req.Count)
	}
	cs := &rec.client.Stats
	for i := 0; cs.Failures == 0; i++ {
		if i == 1000 {
			t.Fatalf("not given up: %+v", *cs)
		}
		now += int64(10 * time.Millisecond)
		h.arb.Tick(now)
		rec.poll(now)
	}
	h.endBatch()
	orders := sh.books.Book(7).Orders()
	if h.arb.Next() != 17 || h.arb.Stats.Gaps != 1 || orders != 11 || len(rec.open) != 1 {
		t.Fatalf("given up: next %d (want 17), gaps %d (want 1), orders %d (want 11), open %v", h.arb.Next(), h.arb.Stats.Gaps, orders, rec.open)
	}

	srv.answer(t, from, pkt(10, 14))
	for i := 0; cs.Late == 0; i++ {
		if i == 2000 {
			t.Fatalf("the late answer not read: %+v", *cs)
		}
		time.Sleep(time.Millisecond)
		now += int64(time.Millisecond)
		rec.poll(now)
	}
	h.endBatch()
	var st Stats
	st.Arbiter = h.arb.Stats
	rec.copyStats(&st.Recovery)
	if h.arb.Next() != 17 || sh.books.Book(7).Orders() != orders || st.Recovery.Open != 1 || cs.Responses != 0 ||
		scalar(t, &st, "recovery_late_responses_total") != 1 || scalar(t, &st, "recovery_unused_messages_total") != 4 || scalar(t, &st, "recovery_messages_total") != 0 {
		t.Fatalf("after the late answer: next %d (want 17), orders %d (want %d), open gaps %d (want 1); late %d (want 1), unused %d (want 4), recovered %d (want 0); client %+v",
			h.arb.Next(), sh.books.Book(7).Orders(), orders, st.Recovery.Open, scalar(t, &st, "recovery_late_responses_total"),
			scalar(t, &st, "recovery_unused_messages_total"), scalar(t, &st, "recovery_messages_total"), *cs)
	}

	// The next gap, 20 and 21; a stranger answers it first.
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	rec.restUntil = 0 // no rest after the failure
	for seq := uint64(17); seq <= 22; seq++ {
		if seq < 20 || seq > 21 {
			now += int64(time.Millisecond)
			h.arb.Offer(0, pkt(seq, seq+1), now)
		}
	}
	now += int64(time.Second)
	h.arb.Tick(now)
	rec.poll(now)
	for {
		req, from = srv.request(t) // the retries of 10 to 13 first
		if req.Seq == 20 {
			break
		}
	}
	if _, err := stranger.WriteToUDPAddrPort(pkt(20, 22), from); err != nil {
		t.Fatal(err)
	}
	for i := 0; cs.WrongSource == 0; i++ {
		if i == 2000 {
			t.Fatalf("the stranger's answer not read: %+v", *cs)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
	}
	if h.arb.Next() != 20 || cs.Responses != 0 {
		t.Fatalf("after the stranger's answer: next %d (want 20), responses %d (want 0)", h.arb.Next(), cs.Responses)
	}
	srv.answer(t, from, pkt(20, 22))
	for i := 0; cs.Responses == 0; i++ {
		if i == 2000 {
			t.Fatalf("the answer not read: %+v", *cs)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
	}
	h.endBatch()
	rec.copyStats(&st.Recovery)
	st.Arbiter = h.arb.Stats
	if bad := badResponses(&st); h.arb.Next() != 23 || bad != [5]uint64{0, 0, 0, 1, 0} || sh.books.Book(7).Orders() != orders+6 {
		t.Fatalf("next %d (want 23), bad responses %v (want one wrong_source), orders %d (want %d)", h.arb.Next(), bad, sh.books.Book(7).Orders(), orders+6)
	}
}
