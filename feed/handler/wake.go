package handler

import (
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/rx"
)

// This file holds what ends the receive wait besides a line's datagram and
// its timeout (rx.Waker): the re-request sockets while a range is being
// filled, and a timer armed for the next deadline of the arbiter
// (Arbiter.NextDue: a hole's Grace or Hold, a line's silence) or of the
// re-request client (rerequest.Client.NextDue: a request's timeout, the
// settle after a partial answer, a rate-limited request), whichever comes
// first (syncWake, armWake).

// waker is the receive thread's wake set (syncWake).
type waker struct {
	// set: the file descriptors the receiver was given (n of them);
	// next: the round's, built in place.
	set, next [rx.MaxWakeFds]int
	n         int
	// timer: a timerfd (CLOCK_MONOTONIC), made at the first need on a
	// receiver that can wake (none in a replay); made: it was; failed: it
	// could not be (logged once, not tried again). timerAt: when it is
	// armed to fire (the receive loop's clock), 0 disarmed; timerDur: for
	// how long it was armed then (a wall clock stepped back is caught by
	// it).
	timer        int
	made, failed bool
	timerAt      int64
	timerDur     int64
}

// syncWake gives the receiver, at the end of each round of the receive
// loop, the file descriptors that also end its wait: the re-request
// sockets while a range is being filled (recovery.wakeOn), so that on quiet
// lines an answer is read and applied when it comes rather than when the
// wait times out (a quarter of arbitration.hold), and the wake timer while
// the arbiter or the client has a deadline (armWake), so that a hole is
// declared or re-requested, and a request's timeout, the settle after a
// partial answer or a rate-limited request acted on, when due. The
// receiver is told only of a change (the sockets change with the
// client's: a new one after a session change or sequence restart, opened
// at the next request). With nothing missing it compares two lengths; it
// allocates nothing. A receiver without Waker (a replay) is left as is.
// The receive loop calls it only when it may have something to do
// (wakeIdle, recovery.wakeIdle).
func (h *Handler) syncWake(now int64) {
	w := &h.wake
	var fds []int
	var due int64
	if h.rec != nil {
		fds, due = h.rec.wakeOn(now)
	}
	n := 0
	if len(fds) > 0 { // none without a range being filled: no memmove call a round
		n = copy(w.next[:rx.MaxWakeFds-1], fds)
	}
	var d int64
	if !h.arb.noDeadline() { // NextDue's first exit, inlined
		d = h.arb.nextDue(now)
	}
	if d != 0 && (due == 0 || d < due) {
		due = d
	}
	if (due != 0 || w.timerAt != 0) && h.armWake(now, due, d != 0 && d <= now) {
		w.next[n] = w.timer
		n++
	}
	if n == w.n && slices.Equal(w.next[:n], w.set[:n]) {
		return
	}
	wk, ok := h.recv.(rx.Waker)
	if !ok {
		return
	}
	if err := wk.WakeOn(w.next[:n]); err != nil {
		h.log.Error().Err(err).Msg("the receive wait does not wake for re-request answers and the arbiter's or re-request's deadlines; they are acted on when the lines bring a packet or the wait times out")
	}
	w.set, w.n = w.next, n
}

// wakeIdle reports that syncWake would find nothing to change but for the
// recovery: no arbiter deadline (NextDue's first exit), and no descriptor
// given to the receiver nor timer armed from an earlier round. With
// recovery configured the receive loop also asks recovery.wakeIdle (its
// sockets and deadlines), a separate inlined call: both in one would be
// over the inliner's budget. Every round of the receive loop asks; with
// nothing held, missing or asked it is a few loads and compares, where
// syncWake's call cost about 80 instructions a round.
func (h *Handler) wakeIdle() bool {
	return h.wake.n == 0 && h.wake.timerAt == 0 && h.arb.noDeadline()
}

// armWake keeps the wake timer armed for due (0: disarmed), and reports
// whether it is in use. A timer that fired is read (so that it no longer
// ends every wait) and armed again; one armed for earlier than due is
// left to fire early, once (the round finds nothing due and arms it
// again), so that it costs a syscall when it fires or the deadline comes
// closer, not at every packet or answer. Overdue (an arbiter's deadline
// passed that no empty poll looked at yet: Arbiter.NextDue), a timer that
// fired is left readable: the next wait ends at once, finds the lines
// empty and ticks the arbiter, which passes the deadline. (A client's
// deadline that passed is not: one its Poll does not act on may stay
// past, and the wait would spin; the timer is armed for timerSlack.)
// Created at the first need on a receiver that can wake (rx.Waker); if it
// cannot be, the deadlines are seen at the receive wait's timeout, as
// before, logged once.
func (h *Handler) armWake(now, due int64, overdue bool) bool {
	w := &h.wake
	if !w.made {
		if _, ok := h.recv.(rx.Waker); !ok || due == 0 || w.failed {
			return false
		}
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
		if err != nil {
			w.failed = true
			h.log.Error().Err(err).Msg("no timerfd: on quiet lines a hole's wait, a re-request's timeout or settle is acted on at the receive wait's timeout (a quarter of arbitration.hold), not when due")
			return false
		}
		w.timer, w.made = fd, true
	}
	// A wall clock stepped back since the timer was armed: now is before
	// the time it was set from, and it would seem not to have fired.
	w.timerAt = min(w.timerAt, now+w.timerDur)
	if w.timerAt != 0 && now >= w.timerAt-int64(timerSlack) {
		if overdue {
			return true // fired: the next wait ends at once
		}
		var b [8]byte
		if _, err := unix.Read(w.timer, b[:]); err != unix.EAGAIN {
			w.timerAt = 0 // fired (or broken: armed again, or the wait's timeout stands in)
		}
	}
	switch {
	case due == 0:
		if w.timerAt != 0 {
			unix.TimerfdSettime(w.timer, 0, &unix.ItimerSpec{}, nil)
			w.timerAt = 0
		}
		return false
	case w.timerAt != 0 && w.timerAt <= due:
		return true
	}
	d := max(due-now, int64(timerSlack))
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d)}
	if err := unix.TimerfdSettime(w.timer, 0, &spec, nil); err != nil {
		return false
	}
	w.timerAt, w.timerDur = now+d, d
	return true
}

// closeWake closes the wake timer, if one was made.
func (h *Handler) closeWake() {
	if w := &h.wake; w.made {
		unix.Close(w.timer)
		w.made, w.timerAt = false, 0
	}
}

// timerSlack: the wake timer is taken to have fired this close to its
// time (the receive thread's clock and CLOCK_MONOTONIC drift apart by a
// few parts per million), and is never armed for less.
const timerSlack = 50 * time.Microsecond
