package soupbintcp

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/clock"
)

// longestSilence runs the heartbeat loop (heartbeatLoop, with ticks every
// check and a heartbeat after idle without sending) against data sends at
// random times, over 1,000 intervals of every, and returns the longest
// time between two sends of any kind.
//
// The ticks are made up and handed over one at a time: after each, a tick
// at time 0 (never due) comes back only once the loop has handled the one
// before, so the data sends and the loop's reads of the last send never
// overlap.
func longestSilence(every, check, idle time.Duration, seed uint64) time.Duration {
	rng := rand.New(rand.NewPCG(seed, 1))
	var lastSend atomic.Int64
	lastSend.Store(clock.Mono(time.Unix(0, 0))) // as if sent at time 0
	last, longest := int64(0), int64(0)
	sent := func(at int64) {
		longest = max(longest, at-last)
		last = at
		lastSend.Store(clock.Mono(time.Unix(0, at)))
	}
	ticks, stop, done := make(chan time.Time), make(chan struct{}), make(chan struct{})
	var cur int64 // the tick being handled
	go func() {
		defer close(done)
		heartbeatLoop(ticks, stop, nil, &lastSend, idle, func() bool { sent(cur); return true })
	}()
	defer func() { close(stop); <-done }()
	end := int64(1000 * every)
	// The next data send: sometimes soon, often after a silence of a few
	// intervals. The ticker's phase against the sends is arbitrary.
	data := rng.Int64N(int64(3 * every))
	for tick := rng.Int64N(int64(check)); tick < end; tick += int64(check) {
		for data <= tick {
			sent(data)
			data += rng.Int64N(int64(3 * every))
		}
		cur = tick
		ticks <- time.Unix(0, tick)
		ticks <- time.Unix(0, 0) // handled: the tick before is done
	}
	return time.Duration(longest)
}

// TestHeartbeatSilence: with the loop's periods, no side is ever silent
// for the whole heartbeat interval (SoupBinTCP: a heartbeat whenever more
// than 1 s passes without sending), whatever the data sends and the
// ticker's phase. Client and server both run heartbeats, which runs this
// loop with these periods.
func TestHeartbeatSilence(t *testing.T) {
	every := time.Second
	check, idle := heartbeatPeriods(every)
	for seed := range uint64(20) {
		if got := longestSilence(every, check, idle, seed); got >= every {
			t.Fatalf("seed %d: silent for %v, interval %v", seed, got, every)
		}
	}
	// The check has teeth: the loop as it was (a look every half
	// interval, a heartbeat after a whole one) is silent for longer.
	if got := longestSilence(every, every/2, every, 1); got <= every {
		t.Fatalf("the old periods were silent for at most %v, want more than %v", got, every)
	}
	// An interval of nanoseconds does not make the loop spin.
	if check, _ := heartbeatPeriods(time.Nanosecond); check < time.Millisecond {
		t.Fatalf("check period %v for a 1 ns interval", check)
	}
}
