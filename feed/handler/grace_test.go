package handler

import (
	"cmp"
	"slices"
	"testing"
	"time"
)

// TestArbiterGraceFromLaggingLine: line A, 1 ms ahead of line B (well
// within Hold), lost packet 5; line B reordered it behind packet 6, by
// 50 µs of its own stamps (within Grace). The receive loop reads both
// lines in stamp order. B moved past the hole 50 µs before bringing it:
// not for longer than Grace, so nothing may be declared. Before, Grace
// ran from the moment the hole appeared (A's packet 6, 1 ms earlier), so
// the hole was due the moment B's packet 6 was read, and B's copy came as
// a duplicate: a message lost that a live line brought.
func TestArbiterGraceFromLaggingLine(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 10, 1)
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Grace: 200 * time.Microsecond, Hold: 20 * time.Millisecond})
	start, period, lag := int64(time.Hour), int64(100*time.Microsecond), int64(time.Millisecond)
	type arrival struct {
		line, pkt int
		at        int64
	}
	var q []arrival
	for i := range pkts {
		if i != 4 {
			q = append(q, arrival{0, i, start + int64(i)*period})
		}
		at := start + int64(i)*period + lag
		if i == 4 {
			at += period + int64(50*time.Microsecond) // behind packet 6 (index 5)
		}
		q = append(q, arrival{1, i, at})
	}
	slices.SortStableFunc(q, func(x, y arrival) int { return cmp.Compare(x.at, y.at) })
	for _, r := range q {
		a.Offer(r.line, pkts[r.pkt], r.at)
	}
	a.Tick(q[len(q)-1].at + int64(time.Second))
	if want := totalMessages(t, pkts); len(s.gaps) != 0 || s.got != want {
		t.Fatalf("declared %v, delivered %d of %d messages: line B brought packet 5 50 µs after it moved past it (Grace 200 µs)", s.gaps, s.got, want)
	}
}
