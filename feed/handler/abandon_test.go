package handler

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterAbandonWaitsForSlowLine: a range lost on both lines is
// handed to the recovery source; meanwhile line A lost one more packet
// that line B, read behind A, still holds in its queue. The recovery
// fails (Abandon, from the receive loop's poll: nothing says the lines
// were drained). Only the failed range may be declared: the next hole is
// still B's to fill, waited for by B's own clock as any other. Before,
// Abandon looked for the next gap as if every line were drained (idle),
// declared it at once, and B's copy arrived as a duplicate: a message
// lost that a live line brought.
func TestArbiterAbandonWaitsForSlowLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(99, 1))
	pkts := packets(t, testSession, 10, 4, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Grace: time.Microsecond, Hold: 10 * time.Millisecond})
	// The source takes the first range; after it failed, the servers
	// rest (recovery.restUntil): later ranges are declared.
	var asked []moldudp64.Range
	a.SetMissing(func(r moldudp64.Range, _ int64) bool { asked = append(asked, r); return len(asked) == 1 })
	ms := int64(time.Millisecond)
	a.Offer(0, pkts[0], 1*ms)
	a.Offer(1, pkts[0], 1*ms)
	// Packet 1 is lost on both lines, packet 4 on line A only. Line B is
	// read behind: so far up to packet 3.
	a.Offer(1, pkts[2], 2*ms)
	a.Offer(1, pkts[3], 3*ms)
	// (A microsecond apart: line A waits Grace from its own first packet
	// past the hole.)
	for j, i := range []int{2, 3, 5, 6, 7, 8, 9} {
		a.Offer(0, pkts[i], 5*ms+int64(j)*int64(time.Microsecond))
	}
	p1, _ := moldudp64.Parse(pkts[1])
	if r, ok := a.Recovering(); !ok || r != p1.Range() {
		t.Fatalf("recovering %v %v, want %v (asked %v)", r, ok, p1.Range(), asked)
	}
	// Every server failed, 400 ms on (line B is live: its last packet is
	// well within LineTimeout).
	a.Abandon(400 * ms)
	if len(s.gaps) != 1 || s.gaps[0] != p1.Range() {
		t.Fatalf("gaps %v after the recovery failed, want only [%v]: line B still holds packet 4", s.gaps, p1.Range())
	}
	// Line B's queue goes on.
	for i := 4; i < len(pkts); i++ {
		a.Offer(1, pkts[i], 4*ms)
	}
	a.Tick(401 * ms)
	if want := totalMessages(t, pkts) - uint64(p1.Messages()); s.got != want || len(s.gaps) != 1 {
		t.Fatalf("delivered %d, want %d; gaps %v", s.got, want, s.gaps)
	}
}
