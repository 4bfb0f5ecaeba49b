package spsc

import (
	"time"

	"golang.org/x/sys/unix"
)

// osYield gives the CPU to another runnable thread, if any, without
// leaving the calling goroutine's thread.
func osYield() bool {
	_, _, errno := unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	return errno == 0
}

// osSleep blocks the calling thread for d in the kernel. An interrupted
// sleep returns early, which a poll loop tolerates.
func osSleep(d time.Duration) bool {
	ts := unix.NsecToTimespec(int64(d))
	err := unix.Nanosleep(&ts, nil)
	return err == nil || err == unix.EINTR
}
