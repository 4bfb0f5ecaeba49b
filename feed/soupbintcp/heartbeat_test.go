package soupbintcp

import (
	"math/rand/v2"
	"testing"
	"time"
)

// longestSilence runs a heartbeat loop that checks every check and sends
// after idle without sending, against data sends at random times, over
// 1,000 intervals of every, and returns the longest time between two
// sends of any kind.
func longestSilence(every, check, idle time.Duration, seed uint64) time.Duration {
	rng := rand.New(rand.NewPCG(seed, 1))
	end := int64(1000 * every)
	last, longest := int64(0), int64(0)
	sent := func(at int64) {
		longest = max(longest, at-last)
		last = at
	}
	// The next data send: sometimes soon, often after a silence of a
	// few intervals.
	data := int64(rng.Int64N(int64(3 * every)))
	// The ticker's phase against the last send is arbitrary.
	for tick := int64(rng.Int64N(int64(check))); tick < end; tick += int64(check) {
		for data <= tick {
			sent(data)
			data += rng.Int64N(int64(3 * every))
		}
		if heartbeatDue(tick, last, idle) {
			sent(tick)
		}
	}
	return time.Duration(longest)
}

// TestHeartbeatSilence: with the loop's periods, no side is ever silent
// for the whole heartbeat interval (SoupBinTCP: a heartbeat whenever more
// than 1 s passes without sending), whatever the data sends and the
// ticker's phase.
func TestHeartbeatSilence(t *testing.T) {
	every := time.Second
	check, idle := heartbeatPeriods(every)
	for seed := range uint64(50) {
		if got := longestSilence(every, check, idle, seed); got >= every {
			t.Fatalf("seed %d: silent for %v, interval %v", seed, got, every)
		}
	}
	// The check has teeth: the loop as it was (a look every half
	// interval, a heartbeat after a whole one) is silent for longer.
	if got := longestSilence(every, every/2, every, 1); got <= every {
		t.Fatalf("the old periods were silent for at most %v, want more than %v", got, every)
	}
}
