package handler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// restartScript drives a one-line handler with recovery through the
// numberings of session RST: numbering n (1 old, 2 restarted) carries the
// directory at 1, then orders n*100+seq.
type restartScript struct {
	h   *Handler
	rec *recovery
	now int64
}

func (rs *restartScript) msg(n, seq uint64) []byte {
	return sessionPacket("RST", seq, orderMsg("RST", n*100+seq, seq))
}

// offer offers numbering n's from..to on the line, step apart.
func (rs *restartScript) offer(n, from, to uint64, step time.Duration) {
	for seq := from; seq <= to; seq++ {
		rs.now += int64(step)
		rs.h.arb.Offer(0, rs.msg(n, seq), rs.now)
	}
}

// poll is the receive loop's turn between batches, a millisecond on.
func (rs *restartScript) poll() {
	rs.now += int64(time.Millisecond)
	rs.h.arb.Tick(rs.now)
	rs.rec.poll(rs.now)
	rs.h.endBatch()
	rs.h.syncWake(rs.now)
}

// pollUntilNext polls, a millisecond apart (bounded: answers on
// loopback), until the arbiter's next expected number is next.
func (rs *restartScript) pollUntilNext(t *testing.T, next uint64) {
	t.Helper()
	for i := 0; rs.h.arb.Next() != next; i++ {
		if i == 2000 {
			t.Fatalf("not filled up to %d: next %d, client %+v", next, rs.h.arb.Next(), rs.rec.client.Stats)
		}
		time.Sleep(time.Millisecond)
		rs.poll()
	}
}

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
	rs := &restartScript{h: h, rec: rec, now: time.Now().UnixNano()}
	msg, offer, poll := rs.msg, rs.offer, rs.poll
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

// TestSnapshotAbandonedRerequestNotCountedFilled: after a sequence restart
// the restarted numbering's start is being re-requested when the change's
// snapshot is fetched, which freezes delivery and gives the re-request up.
// The snapshot fails; the start is found missing again and re-requested.
// The range given up was not repaired then: no repair by re-request is
// recorded (RecoveryStats.Events, feedhandler_recovery_time_seconds) until
// an answer fills it, and then one.
func TestSnapshotAbandonedRerequestNotCountedFilled(t *testing.T) {
	down := func(context.Context, moldudp64.Session, func([]byte) error) (Snapshot, error) {
		return Snapshot{}, errors.New("snapshot server down")
	}
	srv, h, _, rec := scriptedSnapshotRecovery(t, time.Second, time.Hour, down)
	rs := &restartScript{h: h, rec: rec, now: time.Now().UnixNano()}
	rs.offer(1, 1, 20, time.Millisecond)
	rs.poll()
	// The restart, confirmed after LineTimeout: its start is missing.
	rs.offer(2, 1, 5, 500*time.Millisecond)
	if h.arb.Stats.Restarts != 1 {
		t.Fatalf("no restart followed (regressions %d)", h.arb.Stats.Regressions)
	}
	rs.poll()
	if !rec.fetching || rec.client.Stats.Requests != 1 {
		t.Fatalf("fetching %v, requests %d: want the start asked, then the restart's snapshot fetched", rec.fetching, rec.client.Stats.Requests)
	}
	checkRecWakeIdle(t, "fetching", rec, rs.now, false)
	// The snapshot fails, delivery resumes, the start is asked again.
	for i := 0; rec.stats.SnapshotFailures == 0 || rec.client.Stats.Requests < 2; i++ {
		if i == 2000 {
			t.Fatalf("snapshot failures %d, requests %d: want the failure taken and the start asked again", rec.stats.SnapshotFailures, rec.client.Stats.Requests)
		}
		time.Sleep(time.Millisecond)
		rs.poll()
	}
	if len(rec.events) != 0 || rec.hist.Count() != 0 {
		t.Fatalf("before any answer: repairs recorded %+v, recovery times %d; want none (the range given up for the snapshot was not filled)",
			rec.events, rec.hist.Count())
	}
	srv.request(t) // the first ask, given up
	req, from := srv.request(t)
	for seq := range uint64(req.Count) {
		srv.answer(t, from, rs.msg(2, req.Seq+seq))
	}
	for i := 0; h.arb.Next() < 6 || rec.started != 0; i++ {
		if i == 2000 {
			t.Fatalf("the start not filled: next %d", h.arb.Next())
		}
		time.Sleep(time.Millisecond)
		rs.poll()
	}
	if len(rec.events) != 1 || rec.events[0].By != "re-request" || rec.events[0].Range.First != 1 || rec.hist.Count() != 1 {
		t.Fatalf("repairs recorded %+v, recovery times %d; want one, the start by re-request", rec.events, rec.hist.Count())
	}
}
