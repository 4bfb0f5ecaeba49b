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
	r, got, pkt, _ := replayBoth(t, 1, 3, 5, 7) // 2 and 4 lost on both lines, 6 late on B
	r.SetAnswered(func(_ moldudp64.Session, rg moldudp64.Range) bool { return rg.First == 4 })
	t0, us := replayT0, int64(time.Microsecond)
	poll := t0 + 5*int64(time.Millisecond) // past Hold: 2 declared, 4 re-requested
	r.Recovered(pkt(4), poll+us, poll)
	r.OfferMarked(1, pkt(6), poll+100*us, poll) // the batch after: its mark, the same poll
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(*got, []uint64{1, 3, 4, 5, 6, 7}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 3 4 5 6 7]", st.Gaps, st.GapMessages, *got)
	}
}

// TestReplayRerequestUnanswered: the handler re-requested a hole at an
// empty poll and held what followed it for the answers; none came, and a
// line brought the hole late, in the next batch. The capture held no
// answer for it, so the replay took it as not re-requested, declared it
// at once, and passed over the line's copy as a duplicate. The capture
// says what the handler re-requested (capture.Rerequest): the replay
// holds for it (FollowRerequests, Rerequested), answered or not.
func TestReplayRerequestUnanswered(t *testing.T) {
	r, got, pkt, _ := replayBoth(t, 1, 3) // 2 lost on both lines
	r.FollowRerequests()
	t0, us := replayT0, int64(time.Microsecond)
	poll := t0 + 5*int64(time.Millisecond) // past Hold: 2 re-requested
	r.Rerequested(moldudp64.Range{First: 2, Count: 1})
	r.OfferMarked(1, pkt(2), poll+100*us, poll) // B's late copy, in the batch marked with the poll
	r.Finish()
	if st := r.Stats(); st.Gaps != 0 || !slices.Equal(*got, []uint64{1, 2, 3}) {
		t.Errorf("gaps %d (%d missing), applied %v; want none, [1 2 3]", st.Gaps, st.GapMessages, *got)
	}
}

// TestReplayRerequestAfterLoadBehind: the handler declared a hole at once
// (not re-requested), then loaded a snapshot behind it, and the same
// numbers, missing again, it re-requested and was answered. The replay
// took every hole whose first number an answer held as re-requested, and
// held for the first one too; the capture's re-requests say which was.
func TestReplayRerequestAfterLoadBehind(t *testing.T) {
	r, got, pkt, msg := replayBoth(t, 1, 3) // 2 lost on both lines
	r.FollowRerequests()
	t0, us, ms := replayT0, int64(time.Microsecond), int64(time.Millisecond)
	// 2 declared at the poll at 5 ms; a freeze there, a snapshot loaded
	// at 1 (behind), 4 on the lines: 2 and 3 missing again, re-requested
	// at the poll at 8 ms and answered.
	r.Freeze(t0+5*ms, 4, false, 0)
	r.OfferMarked(0, pkt(4), t0+6*ms, t0+5*ms)
	r.OfferMarked(1, pkt(4), t0+6*ms+1, 0)
	snap := append([]byte{0, byte(len(msg(99)))}, msg(99)...)
	r.LoadSnapshot(t0+7*ms, snap, 2)
	r.Rerequested(moldudp64.Range{First: 2, Count: 2})
	r.Recovered(pkt(2), t0+8*ms+us, t0+8*ms)
	r.Recovered(pkt(3), t0+8*ms+2*us, 0)
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(*got, []uint64{1, 3, 99, 2, 3, 4}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 3 99 2 3 4]", st.Gaps, st.GapMessages, *got)
	}
}

// replayT0 is when the lines of replayBoth's feed start.
var replayT0 = time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC).UnixNano()

// replayBoth returns a Replayer of freezeGapFixture's feed, the tracking
// timestamps it applies (got) and the fixture's makers of packets and
// messages, with the packets of seqs offered on both lines from replayT0,
// 10 µs apart, in one batch.
func replayBoth(t *testing.T, seqs ...uint64) (r *Replayer, got *[]uint64, pkt, msg func(uint64) []byte) {
	cfg, msg, pkt := freezeGapFixture(t)
	got = new([]uint64)
	r = NewReplayer(cfg, func(m itch.Msg) { *got = append(*got, binary.BigEndian.Uint64(m[3:11])) }, func(uint16) {}, func() {})
	for i, seq := range seqs {
		for line := range 2 {
			r.OfferMarked(line, pkt(seq), replayT0+int64(i)*int64(10*time.Microsecond)+int64(line), 0)
		}
	}
	return r, got, pkt, msg
}

// TestReplayFreezeBetweenRoundsAfterPoll: the handler ticked at an empty
// poll that declared a hole and delivered what followed it, froze for a
// snapshot in that round's recovery poll, polled empty again, and the
// next batch, marked with the last empty poll, came before the snapshot
// loaded. The replay froze before that batch's tick, the first poll's
// tick never replayed: the hole not declared, what followed it spilled
// and dropped by the load. The freeze's frame says the empty poll before
// it (capture.Drained): the replay ticks there first.
func TestReplayFreezeBetweenRoundsAfterPoll(t *testing.T) {
	r, got, pkt, msg := replayBoth(t, 1, 3) // 2 lost on both lines
	ms := int64(time.Millisecond)
	poll := replayT0 + 5*ms                      // past Hold: 2 declared, 3 delivered
	r.Freeze(poll, 4, false, poll)               // in the round's recovery poll
	r.OfferMarked(0, pkt(4), poll+2*ms, poll+ms) // after another empty poll
	snap := append([]byte{0, byte(len(msg(99)))}, msg(99)...)
	r.LoadSnapshot(poll+3*ms, snap, 5)
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(*got, []uint64{1, 3, 99}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 3 99]", st.Gaps, st.GapMessages, *got)
	}
}

// TestReplayGiveUpAfterEmptyPoll: the handler re-requested a hole, held
// what followed it, and gave it up in a round after an empty poll (its
// tick, the range re-requested, declared nothing); the hole after it was
// waited for by the lines' clocks, and a line brought it late, in the
// batch marked with that poll. Replayed there, the tick came after the
// give-up and, idle, declared the hole the line brought. The give-up's
// frame says the empty poll before it (capture.Drained): the replay
// ticks there first.
func TestReplayGiveUpAfterEmptyPoll(t *testing.T) {
	r, got, pkt, _ := replayBoth(t, 1, 3) // 2 lost on both lines, 4 late on B
	r.FollowRerequests()
	us, ms := int64(time.Microsecond), int64(time.Millisecond)
	first := replayT0 + 2*ms // past Hold: 2 re-requested
	r.Rerequested(moldudp64.Range{First: 2, Count: 1})
	for line := range 2 {
		r.OfferMarked(line, pkt(5), first+10*us, first) // held behind 2 and 4
	}
	poll := first + 300*us
	r.GaveUp(poll, poll)
	r.OfferMarked(1, pkt(4), poll+100*us, poll)
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(*got, []uint64{1, 3, 4, 5}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 3 4 5]", st.Gaps, st.GapMessages, *got)
	}
}
