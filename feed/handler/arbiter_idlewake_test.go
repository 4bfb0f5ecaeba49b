package handler

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterNextDueIdleWakes measures the wakes that NextDue causes on
// quiet lines and that find nothing to do. Two lines, a packet every
// 100 µs, 1 ms, 5 ms or 50 ms for 20,000 packets, each copy lost with
// probability 1%, 5% or 20% (a hole where both are), the second line
// 300 µs behind; the default Grace, Hold and LineTimeout. After every
// packet the lines drain (an empty poll 10 µs later) and, until the next
// packet, empty polls come only when NextDue says (at least 50 µs on, the
// wake timer's slack), as the receive loop's wake timer has them. A wake
// that found nothing to do (nothing delivered or declared, the hole and
// what is held as they were) is early: NextDue gives a line's deadline
// (its Grace, its Hold of silence) while another line still waits for
// the hole. At most one per hole: each costs one empty poll (a receive
// call, Tick and a timer call, a few microseconds), so the worst here,
// 21.5 a second (100 µs, 20% lost, 768 holes in 2 s), is about 0.01% of
// a core; 0 where fewer than 5% are lost.
func TestArbiterNextDueIdleWakes(t *testing.T) {
	for _, gap := range []time.Duration{100 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond} {
		for _, loss := range []float64{0.01, 0.05, 0.2} {
			woke, idle, holes, secs := idleWakes(gap, loss)
			t.Logf("a packet every %v, %.0f%% lost on each line: %d holes in %.0f s, %d wakes (%.1f/s), %d found nothing (%.1f/s)",
				gap, 100*loss, holes, secs, woke, float64(woke)/secs, idle, float64(idle)/secs)
			if uint64(idle) > holes {
				t.Errorf("a packet every %v, %.0f%% lost: %d wakes found nothing, want at most one a hole (%d)", gap, 100*loss, idle, holes)
			}
		}
	}
}

// idleWakes runs TestArbiterNextDueIdleWakes's day: the wakes, those that
// found nothing, the holes declared and the day's length in seconds.
func idleWakes(gap time.Duration, loss float64) (woke, idle int, holes uint64, secs float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	var delivered uint64
	a := NewArbiter(ArbiterConfig{},
		func(*moldudp64.Packet, int, int64) { delivered++ }, func(moldudp64.Range, int64) { holes++ })
	type copyAt struct {
		at   int64
		line int
		seq  uint64
	}
	var copies []copyAt
	t0 := int64(1e18)
	const n = 20000
	for seq := uint64(1); seq <= n; seq++ {
		at := t0 + int64(seq)*int64(gap)
		for l := range 2 {
			if seq > 1 && rng.Float64() < loss {
				continue
			}
			copies = append(copies, copyAt{at + int64(l)*int64(300*time.Microsecond) + rng.Int64N(int64(50*time.Microsecond)), l, seq})
		}
	}
	sort.SliceStable(copies, func(i, j int) bool { return copies[i].at < copies[j].at })
	state := func() [5]int64 {
		return [5]int64{int64(delivered), int64(holes), int64(a.next), int64(a.pend.n), a.gapSince}
	}
	pkts := make(map[uint64][]byte)
	for i, c := range copies {
		p, ok := pkts[c.seq]
		if !ok {
			p = duePkt(c.seq)
			pkts[c.seq] = p
		}
		a.Offer(c.line, p, c.at)
		end := int64(1 << 62)
		if i+1 < len(copies) {
			end = copies[i+1].at
		}
		now := c.at + int64(10*time.Microsecond)
		if now >= end {
			continue
		}
		a.Tick(now)
		for range 100 {
			d := a.NextDue(now)
			if d == 0 {
				break
			}
			if d = max(d, now+int64(timerSlack)); d >= end {
				break
			}
			before := state()
			a.Tick(d)
			woke++
			if state() == before {
				idle++
			}
			now = d
		}
	}
	return woke, idle, holes, float64(n) * gap.Seconds()
}
