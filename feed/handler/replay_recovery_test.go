package handler

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestReplayAnswerAfterEmptyPoll: the handler ticked at an empty poll,
// which declared one hole (not re-requested) and handed the next to the
// re-request, whose answer came in the same round and filled it; the
// hole after it was waited for by the lines' clocks, and a line brought
// it late, in the next batch. The capture holds the answer, then the
// batch marked with the empty poll: replayed in that order, the answer
// came before the tick, held ahead of the first hole, and the tick
// declared the first hole, delivered the answer and, idle, the hole after
// it, which the handler never declared. The answer's frame says the empty
// poll before it (capture.Drained): the replay ticks there first, once.
func TestReplayAnswerAfterEmptyPoll(t *testing.T) {
	cfg, _, pkt := freezeGapFixture(t)
	var got []uint64
	r := NewReplayer(cfg, func(m itch.Msg) { got = append(got, binary.BigEndian.Uint64(m[3:11])) }, func(uint16) {}, func() {})
	r.SetAnswered(func(_ moldudp64.Session, rg moldudp64.Range) bool { return rg.First == 4 })
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC).UnixNano()
	us := int64(time.Microsecond)
	// 2 and 4 lost on both lines, 6 late on B.
	for i, seq := range []uint64{1, 3, 5, 7} {
		for line := range 2 {
			r.OfferMarked(line, pkt(seq), t0+int64(i)*10*us+int64(line), 0)
		}
	}
	poll := t0 + 5*int64(time.Millisecond) // past Hold: 2 declared, 4 re-requested
	r.Recovered(pkt(4), poll+us, poll)
	r.OfferMarked(1, pkt(6), poll+100*us, poll) // the batch after: its mark, the same poll
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(got, []uint64{1, 3, 4, 5, 6, 7}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 3 4 5 6 7]", st.Gaps, st.GapMessages, got)
	}
}
