package handler

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
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

// TestArbiterGraceFromEachHole: line B (1) is 5 ms ahead of line A (0);
// the receive loop reads the lines in batches, A's ahead of B's by
// stamps. Sequence number 3 is lost on both lines, 6 on B, and A
// reordered 6 behind 7 by 25 µs of its stamps. A moved past 3 with
// packet 4, and past 6 with packet 7: once 3 is declared, the hole at 6
// is A's to fill within Grace of packet 7. Before, A's Grace for every
// hole ran from where it moved past the first (packet 4), so 6 was due
// by A's clock at once, and by B's after Grace, before A's queue was read
// on: A's copy came as a duplicate.
func TestArbiterGraceFromEachHole(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 10, 1)
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Grace: 200 * time.Microsecond, Hold: 20 * time.Millisecond})
	us := int64(time.Microsecond)
	start := int64(time.Hour)
	at := func(i int) int64 { return start + int64(i+1)*100*us } // line B's stamp of packet i (seq i+1)
	lagA := 5000 * us
	read := func(line int, lag int64, idx ...int) {
		for _, i := range idx {
			a.Offer(line, pkts[i], at(i)+lag)
		}
	}
	read(1, 0, 0, 1, 3)                   // B: 1, 2, 4 (3 lost)
	read(0, lagA, 0, 1, 3, 4, 6)          // A: 1, 2, 4, 5, 7 (3 lost, 6 behind 7)
	read(1, 0, 4, 6, 7, 8, 9)             // B: 5, 7 to 10 (6 lost)
	a.Offer(0, pkts[5], at(6)+lagA+25*us) // A: 6, 25 µs after 7
	read(0, lagA+25*us, 7, 8, 9)
	a.Tick(start + int64(time.Second))
	if len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 3, Count: 1}) || s.got != 9 {
		t.Fatalf("declared %v, delivered %d of 9 messages: only sequence number 3 was lost on both lines", s.gaps, s.got)
	}
}
