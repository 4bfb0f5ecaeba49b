package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestLineStatsMeaning pins what the per-line counters exported as
// feedhandler_line_{duplicates,out_of_order,gaps}_total (the stats line's
// dups, ooo, gaps) count, as docs/OPERATIONS.md says: a packet a line
// reorders (overtaken by a later one, nothing lost) is a jump in its
// sequence numbers and, when it comes, out of order; a packet a line
// loses (the other line brings it) is a jump only; a copy that comes
// after its sequence numbers were declared missing on every line is a
// duplicate, though nobody delivered its messages. Before, the docs said
// the gaps were loss alone (and the AF_XDP fill-ring alert reads them so)
// and the duplicates the other line's wins alone.
func TestLineStatsMeaning(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 12, 3)
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(time.Hour)
	offer := func(line int, i int) {
		now += int64(10 * time.Microsecond)
		a.Offer(line, pkts[i], now)
	}
	// A: 0 1 3 2 (2 reordered) 4 6 (5 lost) 7 9 10 11 (8 lost on both lines).
	// B: 0 1 2 3 4 5 6 7 9 10 11, then 8 after it was declared missing.
	for _, i := range []int{0, 1, 3, 2, 4, 6, 7} {
		offer(0, i)
	}
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7} {
		offer(1, i)
	}
	for _, i := range []int{9, 10, 11} {
		offer(0, i)
		offer(1, i)
	}
	now += int64(time.Second)
	a.Tick(now)
	if len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 25, Count: 3}) {
		t.Fatalf("gaps %v, want [{25 3}] (packet 8)", s.gaps)
	}
	offer(1, 8) // late
	if want := totalMessages(t, pkts) - 3; s.got != want {
		t.Fatalf("delivered %d, want %d", s.got, want)
	}
	A, B := a.Stats.Lines[0], a.Stats.Lines[1]
	// A: jumps at 3 (over 2, reordered), 6 (over 5, lost), 9 (over 8); 2 out of order.
	if A.LineGaps != 3 || A.OutOfOrder != 1 || A.Duplicates != 0 {
		t.Errorf("line A gaps %d, out of order %d, duplicates %d; want 3, 1, 0", A.LineGaps, A.OutOfOrder, A.Duplicates)
	}
	// B: the jump at 9 (over 8), 8 out of order and a duplicate; 0-4, 6, 7
	// the duplicates of A's wins (5 B's own).
	if B.LineGaps != 1 || B.OutOfOrder != 1 || B.Duplicates != 11 || B.Won != 1 {
		t.Errorf("line B gaps %d, out of order %d, duplicates %d, won %d; want 1, 1, 11, 1", B.LineGaps, B.OutOfOrder, B.Duplicates, B.Won)
	}
}
