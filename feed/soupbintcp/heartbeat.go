package soupbintcp

import "time"

// heartbeatPeriods returns how often a side's heartbeat loop looks at the
// time since its last send (check), and how long without sending makes it
// send a heartbeat (idle), for a heartbeat interval of every.
//
// The specification asks for a heartbeat whenever more than the interval
// (1 s) passes without sending. A heartbeat goes out once the side has
// been silent for half the interval, looked at every quarter: the
// longest silence is three quarters of the interval, and the timer's
// lateness has the last quarter. (Looked at every half interval against
// the whole interval, a silence reached one and a half intervals.)
func heartbeatPeriods(every time.Duration) (check, idle time.Duration) {
	return max(every/4, 1), every / 2
}

// heartbeatDue reports whether a heartbeat is due at now, the last send
// having been at last (both Unix nanoseconds).
func heartbeatDue(now, last int64, idle time.Duration) bool {
	return now-last >= int64(idle)
}
