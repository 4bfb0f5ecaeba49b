package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/race"
)

// The arbitration of the NextDue tests, and their packets: session DUE,
// one add order each.
const (
	dueGrace   = time.Millisecond
	dueHold    = 300 * time.Millisecond
	dueTimeout = time.Second
)

func duePkt(seq uint64) []byte { return sessionPacket("DUE", seq, orderMsg("DUE", 100+seq, seq)) }

// TestArbiterNextDue: on lines that go quiet after a hole, empty polls
// made only when NextDue says (as the receive loop's wake timer does,
// with no wait timing out) declare the hole at the time it is due, found
// by ticking every 100 µs: both lines past it, Grace after the later
// (a line's own Grace); one past it, the other silent, Hold after it was
// seen; the silent one dead (LineTimeout) first; a held packet its line
// went on below within Grace, kept while the feed pauses (paused) until
// the line is dead, or until Hold after the other line went on past the
// hole. A few wakes each, and NextDue allocates nothing; 0 with nothing
// held or missing.
func TestArbiterNextDue(t *testing.T) {
	const grace, hold, timeout = dueGrace, dueHold, dueTimeout
	pkt := duePkt
	type offer struct {
		line int
		seq  uint64
		at   time.Duration // after the start of the hole's scene
	}
	for _, tc := range []struct {
		name   string
		pre    time.Duration // 1 to 5 on both lines this long before the scene
		offers []offer
		gap    moldudp64.Range // declared first (none: 7 dropped as contradicted)
	}{
		{"both lines past", 200 * time.Millisecond, []offer{{0, 7, 0}, {1, 7, 3 * time.Millisecond}}, moldudp64.Range{First: 6, Count: 1}},
		{"one line past, the other silent", 200 * time.Millisecond, []offer{{0, 7, 0}}, moldudp64.Range{First: 6, Count: 1}},
		{"the silent line dies first", 900 * time.Millisecond, []offer{{0, 7, 0}}, moldudp64.Range{First: 6, Count: 1}},
		// 7's line went on below it within Grace: kept while the feed
		// pauses (paused), until the line is dead.
		{"paused below a held packet", 200 * time.Millisecond, []offer{{0, 7, 0}, {0, 5, 500 * time.Microsecond}}, moldudp64.Range{}},
		// Until Hold after the other line went on past the hole, then
		// dropped, and the hole up to that line's packet declared.
		{"paused, the other line went on", 200 * time.Millisecond, []offer{{0, 7, 0}, {0, 5, 500 * time.Microsecond}, {1, 8, 10 * time.Millisecond}}, moldudp64.Range{First: 6, Count: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same scene twice: ticked every 100 µs (when the hole is
			// due), then only at NextDue.
			run := func(byNextDue bool) (declared int64, wakes int, a *Arbiter) {
				var gaps []moldudp64.Range
				a = NewArbiter(ArbiterConfig{Grace: grace, Hold: hold, LineTimeout: timeout},
					func(*moldudp64.Packet, int, int64) {}, func(r moldudp64.Range, now int64) { gaps = append(gaps, r) })
				start := int64(1e18)
				now := start - int64(tc.pre)
				for seq := uint64(1); seq <= 5; seq++ { // both lines, in order
					for l := range 2 {
						now += 1000
						a.Offer(l, pkt(seq), now)
					}
				}
				if d := a.NextDue(now); d != 0 {
					t.Fatalf("in order: NextDue %d, want 0", d)
				}
				if allocs, exact := race.AllocsPerRun(t, 100, func() { a.NextDue(now) }); exact && allocs != 0 {
					t.Fatalf("NextDue: %v allocations, want 0", allocs)
				}
				for _, o := range tc.offers {
					now = start + int64(o.at)
					a.Offer(o.line, pkt(o.seq), now)
					if o.seq == 7 && o.line == 0 && byNextDue {
						if allocs, exact := race.AllocsPerRun(t, 100, func() { a.NextDue(now) }); exact && allocs != 0 {
							t.Fatalf("NextDue with a hole: %v allocations, want 0", allocs)
						}
					}
				}
				for i := 0; declared == 0; i++ {
					if i == 100_000 {
						t.Fatalf("hole not declared (next %d, held %d, by NextDue %v)", a.Next(), a.Pending(), byNextDue)
					}
					if !byNextDue {
						now += int64(100 * time.Microsecond)
					} else if d := a.NextDue(now); d == 0 {
						t.Fatalf("NextDue 0 with the hole at %d not declared (held %d)", a.Next(), a.Pending())
					} else {
						now = max(now, d) // at or before now: the wait ends at once
					}
					wakes++
					a.Tick(now)
					if len(gaps) > 0 || a.Stats.Lines[0].Contradicted > 0 {
						declared = now
					}
				}
				switch {
				case tc.gap.Count != 0 && (len(gaps) == 0 || gaps[0] != tc.gap):
					t.Fatalf("gaps %v, want %v first", gaps, tc.gap)
				case tc.gap.Count == 0 && (len(gaps) != 0 || a.Stats.Lines[0].Contradicted != 1):
					t.Fatalf("gaps %v, contradicted %d: want 7 dropped", gaps, a.Stats.Lines[0].Contradicted)
				}
				return declared - start, wakes, a
			}
			polled, _, _ := run(false)
			due, wakes, a := run(true)
			// Ticked every 100 µs, the hole is declared at the first tick
			// at or past its time: by NextDue, at that time.
			if due > polled || polled-due >= int64(100*time.Microsecond) {
				t.Fatalf("declared %v after the scene's start by NextDue, %v by ticks every 100 µs", time.Duration(due), time.Duration(polled))
			}
			if wakes > 8 {
				t.Fatalf("%d wakes before the hole was declared, want a few", wakes)
			}
			for now, d := int64(1e18)+due, a.NextDue(int64(1e18)+due); d != 0; d = a.NextDue(now) {
				if wakes++; wakes > 16 {
					t.Fatalf("NextDue %d still after the hole was declared (held %d, next %d)", d, a.Pending(), a.Next())
				}
				now = max(now, d)
				a.Tick(now)
			}
			t.Logf("declared %v after the scene's start, %d wakes", time.Duration(due), wakes)
		})
	}
}

// dueCheck checks Arbiter.NextDue in the models' receive loops: an empty
// poll (Tick) that acts (delivers, declares, hands a hole to the recovery
// source, drops a held packet) comes at or after the time NextDue gave
// after the round before, when the wake timer would have ended the wait;
// one before it would mean a wait woken late.
//
// It also counts the rounds that read packets and left something held or
// missing (held), those after which NextDue said the next wait should end
// at once (overdue), and of those the ones whose next round, an empty
// poll, found nothing due (idle): a wake and an empty round for nothing.
type dueCheck struct {
	due                  int64
	overdueRound         bool // the round before read packets and NextDue was at or before its end
	held, overdue, empty int
}

// dueTotals sums the models' dueChecks (logged by TestArbiterLinesModel).
var dueTotals dueCheck

// dueState is what an empty poll that acts changes.
type dueState struct {
	next, delivered, gaps, recoveries, contradicted uint64
	held                                            int
}

func dueStateOf(a *Arbiter) dueState {
	s := dueState{next: a.Next(), delivered: a.Stats.Delivered, gaps: a.Stats.Gaps, recoveries: a.Stats.Recoveries, held: a.Pending()}
	for _, l := range a.Stats.Lines {
		s.contradicted += l.Contradicted
	}
	return s
}

// tick is an empty poll at now.
func (c *dueCheck) tick(t *testing.T, a *Arbiter, now int64) {
	t.Helper()
	before := dueStateOf(a)
	a.Tick(now)
	after := dueStateOf(a)
	if after != before && (c.due == 0 || c.due > now) {
		t.Fatalf("an empty poll at %d acted (%+v, then %+v); NextDue after the round before: %d (0: nothing due)", now, before, after, c.due)
	}
	if c.overdueRound && after == before {
		c.empty++
		dueTotals.empty++
	}
}

// round is told that a round of the loop ended at now, having read
// packets (read > 0) or not.
func (c *dueCheck) round(a *Arbiter, now int64, read int) {
	c.due = a.NextDue(now)
	c.overdueRound = read > 0 && c.due != 0 && c.due <= now
	if read > 0 && c.due != 0 {
		c.held++
		dueTotals.held++
	}
	if c.overdueRound {
		c.overdue++
		dueTotals.overdue++
	}
}

// TestArbiterNextDueAfterPackets: after a round of packets that leaves a
// hole held whose deadlines all lie ahead, NextDue is ahead too: the wake
// timer is armed for then and the next wait is the receiver's, not ended
// at once for deadlines the round's own check passed (the session's start
// plus LineTimeout, long past; a dead line's silence; the hole's Grace,
// passed by the clock of the line past it). And while the other line,
// live, has not moved past the hole, no earlier than Hold after its
// latest packet: the hole is waited for by its Hold, and the first
// line's Grace is no deadline (a wake then found nothing due). The first
// line's 7, 8 and 9 past the hole (6 lost on it) a microsecond apart with
// the other line live, then dead, then two Grace apart with the other
// line live.
func TestArbiterNextDueAfterPackets(t *testing.T) {
	const grace, hold, timeout = dueGrace, dueHold, dueTimeout
	pkt := duePkt
	hb := append([]byte(nil), moldudp64.NewBuilder(moldudp64.NewSession("DUE"), 2, 0).Heartbeat()...)
	for _, tc := range []struct {
		name  string
		lines []int         // the lines that bring 1 to 5 up to the hole
		step  time.Duration // between the first line's 7, 8 and 9
	}{
		{"both lines live", []int{0, 1}, time.Microsecond},
		{"the other line dead", []int{0}, time.Microsecond},
		{"the other line behind by more than Grace", []int{0, 1}, 2 * grace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewArbiter(ArbiterConfig{Grace: grace, Hold: hold, LineTimeout: timeout},
				func(*moldudp64.Packet, int, int64) {}, func(moldudp64.Range, int64) {})
			now := int64(1e18)
			a.Offer(1, pkt(1), now) // the session starts (both lines heard)
			a.Offer(0, pkt(1), now)
			// Ten seconds of the day on the lines, every 100 ms.
			for k := range 100 {
				now += int64(100 * time.Millisecond)
				for _, l := range tc.lines {
					now += 1000
					a.Offer(l, hb, now)
				}
				if k == 99 {
					for seq := uint64(2); seq <= 5; seq++ {
						for _, l := range tc.lines {
							now += 1000
							a.Offer(l, pkt(seq), now)
						}
					}
				}
			}
			if d := a.NextDue(now); d != 0 {
				t.Fatalf("in order: NextDue %d, want 0", d)
			}
			lastB := now                            // the other line's latest packet (live)
			for seq := uint64(7); seq <= 9; seq++ { // 6 lost on the first line, held behind it
				now += int64(tc.step)
				a.Offer(0, pkt(seq), now)
				d := a.NextDue(now)
				if d <= now {
					t.Fatalf("after %d held behind 6: NextDue %v before now, want ahead", seq, time.Duration(d-now))
				}
				if len(tc.lines) == 2 && d < lastB+int64(hold) {
					t.Fatalf("after %d held behind 6: NextDue in %v, want no earlier than Hold (%v) after the other line's latest packet, %v before now", seq, time.Duration(d-now), hold, time.Duration(now-lastB))
				}
			}
			if a.Pending() != 3 {
				t.Fatalf("held %d, want 3", a.Pending())
			}
		})
	}
}
