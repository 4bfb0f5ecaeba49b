package handler

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestSessionChangeDropsStrayClock: line B brought a malformed datagram
// and nothing of the first session after it; the wall clock then stepped
// back 10 minutes, and line A went on with the first session, then ended
// it (End of Session). The second session comes on both lines, B read 30 ms behind A;
// A lost its sequence number 10, which B brings within Hold (50 ms). At
// the change B was never heard from in the new session: its clock is
// none until its first packet, and the hole waits for it. Before, B's
// clock was the stray's stamp, from before the step (10 minutes ahead of
// the new stamps), carried over the change: every wait for B ended at
// once, and the hole was declared after A's Grace, while B held it.
func TestSessionChangeDropsStrayClock(t *testing.T) {
	ms := int64(time.Millisecond)
	first := func(seq uint64) []byte { return sessionPacket("TEST000001", seq, make([]byte, 12)) }
	delivered := map[uint64]bool{}
	var gaps []moldudp64.Range
	a := NewArbiter(ArbiterConfig{Lines: 2, Hold: 50 * time.Millisecond, Grace: 200 * time.Microsecond, LineTimeout: time.Second},
		func(p *moldudp64.Packet, skip int, _ int64) {
			if p.Session == secondSession {
				for q := p.Seq + uint64(skip); q < p.Next(); q++ {
					delivered[q] = true
				}
			}
		}, nil)
	a.onGap = func(r moldudp64.Range, _ int64) {
		if a.Session() == secondSession {
			gaps = append(gaps, r)
		}
	}
	now := int64(time.Hour)
	for seq := uint64(1); seq <= 4; seq++ {
		a.Offer(0, first(seq), now+int64(seq)*ms)
		a.Offer(1, first(seq), now+int64(seq)*ms+ms)
	}
	a.Offer(1, strayDatagram(t, "malformed"), now+10*ms)
	now -= 10 * int64(time.Minute) // the step back
	for seq := uint64(5); seq <= 8; seq++ {
		a.Offer(0, first(seq), now+int64(seq)*ms)
	}
	// The first session ends (End of Session on A), and the second
	// starts, B 30 ms behind A, read in stamp order (A first at a tie).
	a.Offer(0, moldudp64.AppendHeader(nil, moldudp64.NewSession("TEST000001"), 9, moldudp64.EndOfSessionCount), now+9*ms)
	now += 10 * ms
	var second []lockDatagram
	for seq := uint64(1); seq <= 30; seq++ {
		p := sessionPacket("TEST000002", seq, make([]byte, 12))
		if seq != 10 {
			second = append(second, lockDatagram{0, float64(seq), p})
		}
		second = append(second, lockDatagram{1, float64(seq + 30), p})
	}
	slices.SortStableFunc(second, func(x, y lockDatagram) int {
		return cmp.Or(cmp.Compare(x.at, y.at), cmp.Compare(x.line, y.line))
	})
	for _, d := range second {
		a.Offer(d.line, d.data, now+int64(d.at)*ms)
	}
	if a.Session() != secondSession {
		t.Fatalf("following %q, not the second session", a.Session())
	}
	if !delivered[10] || len(gaps) != 0 {
		t.Fatalf("seq 10, lost on A and brought by B 30 ms later (Hold 50 ms), not delivered: second session's gaps %v", gaps)
	}
}
