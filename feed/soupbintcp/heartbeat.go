package soupbintcp

import (
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/internal/clock"
)

// heartbeats is a side's heartbeat loop for interval every: a ticker at
// heartbeatPeriods' check period drives heartbeatLoop.
func heartbeats(every time.Duration, stop, gone <-chan struct{}, lastSend *atomic.Int64, send func() bool) {
	check, idle := heartbeatPeriods(every)
	t := time.NewTicker(check)
	defer t.Stop()
	heartbeatLoop(t.C, stop, gone, lastSend, idle, send)
}

// heartbeatLoop calls send (a heartbeat) at each tick at which the side has
// sent nothing for idle (lastSend: the last send, clock.Mono: a step of the
// wall clock neither stops the heartbeats for as long as the step, when a
// server drops the session mid-snapshot, nor sends a burst), until stop or
// gone is closed (a nil one never is) or send returns false.
func heartbeatLoop(ticks <-chan time.Time, stop, gone <-chan struct{}, lastSend *atomic.Int64, idle time.Duration, send func() bool) {
	for {
		select {
		case <-stop:
			return
		case <-gone:
			return
		case now := <-ticks:
			if clock.Mono(now)-lastSend.Load() >= int64(idle) && !send() {
				return
			}
		}
	}
}

// heartbeatPeriods returns how often a side's heartbeat loop looks at the
// time since its last send (check), and how long without sending makes it
// send a heartbeat (idle), for a heartbeat interval of every.
//
// The specification asks for a heartbeat whenever more than the interval
// (1 s) passes without sending. A heartbeat goes out once the side has
// been silent for half the interval, looked at every quarter: the
// longest silence is three quarters of the interval, and the timer's
// lateness has the last quarter. (Looked at every half interval against
// the whole interval, a silence reached one and a half intervals.) The
// check is at least a millisecond: an interval of a few nanoseconds must
// not make the loop spin.
func heartbeatPeriods(every time.Duration) (check, idle time.Duration) {
	return max(every/4, time.Millisecond), every / 2
}
