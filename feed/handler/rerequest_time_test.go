package handler

import (
	"testing"
	"time"
)

// TestRerequestRepairRecordedWithGapOpen: a range the server never
// answers is declared (the books flagged; with no snapshot source it
// stays open), then a later range is re-requested and answered. That
// repair is recorded (RecoveryStats.Events, recovery_time_seconds) as any
// other: the gap left open before it does not hide the repairs after it
// for the rest of the session.
func TestRerequestRepairRecordedWithGapOpen(t *testing.T) {
	srv, h, _, rec := scriptedRecovery(t, time.Hour, time.Millisecond)
	rs := &restartScript{h: h, rec: rec, now: time.Now().UnixNano()}
	rs.offer(1, 1, 5, time.Millisecond)
	rs.offer(1, 7, 10, time.Millisecond) // 6 lost
	for i := 0; len(rec.open) == 0; i++ {
		if i == 100 {
			t.Fatalf("6, never answered, not declared: client %+v", rec.client.Stats)
		}
		rs.now += int64(time.Second) // its timeouts, then the servers' rest
		rs.poll()
	}
	rs.now += int64(time.Minute)
	rs.poll()
	rs.offer(1, 11, 15, time.Millisecond)
	rs.offer(1, 17, 20, time.Millisecond) // 16 lost
	rs.poll()
	for {
		req, from := srv.request(t)
		if req.Seq == 16 {
			srv.answer(t, from, rs.msg(1, 16))
			break
		}
	}
	for i := 0; h.arb.Next() != 21 || rec.started != 0; i++ {
		if i == 2000 {
			t.Fatalf("16 not filled: next %d", h.arb.Next())
		}
		time.Sleep(time.Millisecond)
		rs.poll()
	}
	if len(rec.events) != 1 || rec.events[0].By != "re-request" || rec.events[0].Range.First != 16 || rec.hist.Count() != 1 {
		t.Fatalf("repairs recorded %+v, recovery times %d (6 open: %v); want one, 16 by re-request", rec.events, rec.hist.Count(), rec.open)
	}
}
