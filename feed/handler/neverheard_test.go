package handler

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestArbiterNeverHeardClockStepBack: line B is never heard from in the
// session (down since before it started); the wall clock steps back an
// hour; then line A loses a packet, and the receive loop never finds the
// lines drained (no empty poll: a busy io_uring or AF_XDP queue). A line
// never heard from is waited for until an empty poll or until LineTimeout
// after the session's start: that start, stamped before the step, must not
// hold the gap for as long as the step (it was held until a drained poll
// or a full hold-back arena, whichever came first).
func TestArbiterNeverHeardClockStepBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pkts := packets(t, testSession, 3000, 5, rng)
	const hold = 5 * time.Millisecond
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Lines: 2, Hold: hold, Grace: hold / 5, LineTimeout: time.Second, MaxPending: 4096})
	now := int64(2 * time.Hour)
	for _, p := range pkts[:10] {
		a.Offer(0, p, now)
		now += int64(time.Millisecond)
	}
	now -= int64(time.Hour) // the step back
	for i, p := range pkts[10:] {
		if i == 5 { // lost on line A; line B never came up
			continue
		}
		a.Offer(0, p, now)
		now += int64(time.Millisecond)
	}
	// Three seconds of stamps after the step, by the lines' clock: well
	// past LineTimeout and Hold.
	if a.Stats.Gaps != 1 || a.Pending() != 0 || s.next != a.Next() {
		t.Fatalf("%v of line A's packets after the clock stepped back an hour, line B never heard from, no empty poll: gaps %d, pending %d; want the lost packet declared and everything delivered",
			time.Duration(len(pkts)-11)*time.Millisecond, a.Stats.Gaps, a.Pending())
	}
}

// TestArbiterNeverHeardBoundBusy: at start-up line B never sends, line A
// lost the session's first packets (a start-up gap) and its later ones
// keep the receive loop busy: no empty poll, ever. The never-heard line
// holds the gap until LineTimeout after the session's start by line A's
// stamps, not longer: the gap is declared at the first packet stamped
// LineTimeout or more after the session's first, and everything held is
// delivered then.
func TestArbiterNeverHeardBoundBusy(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	pkts := packets(t, testSession, 400, 5, rng)
	const timeout = 100 * time.Millisecond
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Lines: 2, Hold: 5 * time.Millisecond, Grace: time.Millisecond, LineTimeout: timeout})
	start := int64(time.Hour)
	declaredAt := -1
	for i, p := range pkts[3:] { // packets 0 to 2 lost on line A
		a.Offer(0, p, start+int64(i)*int64(time.Millisecond))
		if a.Stats.Gaps > 0 && declaredAt < 0 {
			declaredAt = i
		}
	}
	if want := int(timeout / time.Millisecond); declaredAt != want || a.Stats.Gaps != 1 || a.Pending() != 0 || s.next != a.Next() {
		t.Fatalf("line B never heard from, no empty poll: gap declared at line A's packet %d after the session's first (-1: never), want %d (LineTimeout); gaps %d, pending %d",
			declaredAt, want, a.Stats.Gaps, a.Pending())
	}
}
