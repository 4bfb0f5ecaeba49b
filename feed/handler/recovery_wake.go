package handler

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/rx"
)

// This file holds what of the recovery ends the receive wait
// (Handler.syncWake): the re-request sockets while a range is being filled
// and the client's next deadline (rerequest.Client.NextDue), the
// recovery's own next deadline (nextDue), and the snapshot fetch's result
// (snapDone, an eventfd).

// wakeOn returns the file descriptors to wake the receive wait on: the
// snapshot fetch's eventfd while a fetch runs (snapDone), the re-request
// sockets while a range is being filled or ranges ahead are asked (none
// once they are over, and none open after a Forget until a request is
// sent); and the earliest of the recovery's next deadline (nextDue) and
// the client's (rerequest.Client.NextDue, 0 while nothing is asked), with
// sockets or not; 0: none. The wake timer is armed for it when the
// arbiter has none sooner. The eventfd comes first: the set's room
// (rx.MaxWakeFds) is for it before the sockets. It allocates nothing.
func (r *recovery) wakeOn(now int64) ([]int, int64) {
	fds := r.wakeBuf[:0]
	if r.fetching && r.early == nil && r.snapDone >= 0 {
		fds = append(fds, r.snapDone)
	}
	due := r.nextDue(now)
	if r.client == nil {
		return fds, due
	}
	// The client's deadline with or without sockets: after a Forget none
	// is open until the next request is sent, and one the rate limit
	// holds back, or a request whose socket could not be reopened (its
	// timeout), is due all the same.
	fds = r.client.WakeFds(fds)
	if d := r.client.NextDue(); d != 0 && (due == 0 || d < due) {
		due = d
	}
	return fds, due
}

// wakeIdle reports that wakeOn returns no descriptor and no deadline: no
// fetch running (its eventfd, a snapshot ahead held), no look due at once
// (again), no snapshot wanted (only ever set with Snapshot configured),
// and the client asking nothing (rerequest.Client.Idle: its WakeFds and
// NextDue are empty then). The receive loop asks it with
// Handler.wakeIdle, inlined, and skips syncWake when both say idle: a
// recovery configured but with nothing to do costs a round a few loads.
func (r *recovery) wakeIdle() bool {
	return !r.fetching && !r.again && !r.wantSnap &&
		(r.client == nil || r.client.Idle())
}

// nextDue returns when poll next acts by the clock alone, with nothing
// brought by the lines, an answer or the fetch (0: never): now after a
// round that took a fetch's result (again); a snapshot asked for again
// after the backoff's wait (snapAt, which a snapshot for what a lagging
// one missed waits until lagUntil through); a snapshot ahead of the lines
// held LineTimeout by the lines' clock (earlyAt; on quiet lines the empty
// poll of the round the timer ends brings that clock to now). The other
// times poll compares need no wake: the rest after every server failed
// (restUntil) is looked at only when the arbiter hands a range (missing),
// at a deadline of its own; the idle drain of the re-request sockets
// (every 10 ms while nothing is asked) reads answers to nothing asked,
// which hold nothing back; a log's rate limit (badLoggedAt) delays a log
// line, and aheadEvery a look for holes ahead to the next round (an
// answer or the client's deadline, which wake). Called once a round
// (syncWake); O(1), three branches while no snapshot is wanted or fetched.
func (r *recovery) nextDue(now int64) int64 {
	switch {
	case r.again:
		return now
	case r.fetching:
		if r.early != nil {
			return r.earlyAt + int64(r.h.arb.cfg.LineTimeout)
		}
		return 0 // its result wakes (snapDone)
	case r.wantSnap && r.cfg.Snapshot != nil:
		// At or before now (a session change asks at once: 0) poll has
		// started it this round; the timer would be armed for timerSlack.
		return max(r.snapAt, now)
	}
	return 0
}

// makeSnapDone makes the snapshot fetch's eventfd (snapDone) at the first
// fetch on a receiver that can wake (rx.Waker; not a replay's, which
// takes its results from the capture); if it cannot be made, a result is
// taken at the receive wait's timeout on quiet lines, as before, logged
// once.
func (r *recovery) makeSnapDone() {
	if r.snapDone >= 0 || r.snapDoneFailed {
		return
	}
	if _, ok := r.h.recv.(rx.Waker); !ok {
		return
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		r.snapDoneFailed = true
		r.h.log.Error().Err(err).Msg("recovery: no eventfd: on quiet lines a snapshot fetched is loaded at the receive wait's timeout (a quarter of arbitration.hold), not when it is downloaded")
		return
	}
	r.snapDone = fd
}

// snapDoneSignal, on the fetch's goroutine, makes fd (snapDone; -1: none)
// readable: the result follows on snapRes. Written before the result is
// sent, so that close, once it has the result, may close fd; a wait it
// ends before the result is on the channel finds nothing and the next one
// ends at once, fd still readable, until it is.
func snapDoneSignal(fd int) {
	if fd < 0 {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(fd, one[:]) // EAGAIN only at 2^64-1 unread: readable anyway
}

// tookSnapshot reads snapDone once the fetch's result is taken, so that it
// no longer ends every wait.
func (r *recovery) tookSnapshot() {
	if r.snapDone >= 0 {
		var b [8]byte
		unix.Read(r.snapDone, b[:])
	}
}
