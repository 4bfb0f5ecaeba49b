package rx

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MaxWakeFds is how many file descriptors Waker.WakeOn takes at most.
const MaxWakeFds = 8

// Waker is implemented by every backend of this package. WakeOn sets the
// file descriptors whose readability also ends Receive's wait, besides a
// line's datagram and the poll timeout: Receive then returns (0, nil)
// once it has read the lines again and found nothing, as after a timeout
// (every line drained). Receive never reads them: the caller does, before
// it calls Receive again, or the next wait ends at once. An empty or nil
// fds waits on the lines alone again. The handler sets its re-request
// sockets while a request is out, so that an answer arriving on quiet
// lines is read when it comes, not when the wait times out (a quarter of
// arbitration.hold).
//
// The set is copied; it costs nothing while packets arrive (Receive waits
// only when the lines have nothing) and a call that does not change it
// does nothing. Call it between Receive calls; it allocates nothing.
// Receivers count the waits that ended this way and those that timed out
// in Stats.Extra "wait_woken" and "wait_timeouts".
type Waker interface {
	WakeOn(fds []int) error
}

// wakeSet is a receiver's wake file descriptors (Waker), in a fixed array.
type wakeSet struct {
	fds [MaxWakeFds]int32
	n   int
}

// set takes fds; it reports whether the set changed.
func (w *wakeSet) set(fds []int) (bool, error) {
	if len(fds) > MaxWakeFds {
		return false, fmt.Errorf("wake on %d file descriptors: at most %d", len(fds), MaxWakeFds)
	}
	if len(fds) == w.n {
		same := true
		for i, fd := range fds {
			same = same && w.fds[i] == int32(fd)
		}
		if same {
			return false, nil
		}
	}
	for i, fd := range fds {
		if fd < 0 {
			return false, fmt.Errorf("wake on file descriptor %d", fd)
		}
		w.fds[i] = int32(fd)
	}
	w.n = len(fds)
	return true, nil
}

// pollFds writes the set as poll(2) entries into dst (len >= w.n) and
// returns them.
func (w *wakeSet) pollFds(dst []unix.PollFd) []unix.PollFd {
	dst = dst[:w.n]
	for i := range dst {
		dst[i] = unix.PollFd{Fd: w.fds[i], Events: unix.POLLIN}
	}
	return dst
}

// ready reports whether one of pfds (a wake set's entries after poll) is
// readable or has an error.
func wakeReady(pfds []unix.PollFd) bool {
	for i := range pfds {
		if pfds[i].Revents != 0 {
			return true
		}
	}
	return false
}
