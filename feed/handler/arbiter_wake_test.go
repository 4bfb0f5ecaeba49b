package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

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
	const (
		grace   = time.Millisecond
		hold    = 300 * time.Millisecond
		timeout = time.Second
	)
	pkt := func(seq uint64) []byte { return sessionPacket("DUE", seq, orderMsg("DUE", 100+seq, seq)) }
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
					func(moldudp64.Packet, int, int64) {}, func(r moldudp64.Range, now int64) { gaps = append(gaps, r) })
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
				if allocs := testing.AllocsPerRun(100, func() { a.NextDue(now) }); allocs != 0 {
					t.Fatalf("NextDue: %v allocations, want 0", allocs)
				}
				for _, o := range tc.offers {
					now = start + int64(o.at)
					a.Offer(o.line, pkt(o.seq), now)
					if o.seq == 7 && o.line == 0 && byNextDue {
						if allocs := testing.AllocsPerRun(100, func() { a.NextDue(now) }); allocs != 0 {
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
type dueCheck struct{ due int64 }

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
	if after := dueStateOf(a); after != before && (c.due == 0 || c.due > now) {
		t.Fatalf("an empty poll at %d acted (%+v, then %+v); NextDue after the round before: %d (0: nothing due)", now, before, after, c.due)
	}
}

// round is told that a round of the loop ended at now.
func (c *dueCheck) round(a *Arbiter, now int64) { c.due = a.NextDue(now) }
