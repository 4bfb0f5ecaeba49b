package rx

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/privilege"
)

// memlockLimit explains err when it is errno, the error with which the
// kernel refuses memory it charges to RLIMIT_MEMLOCK in a process without
// cap_ipc_lock under a finite limit (io_uring's rings: ENOMEM; AF_XDP's
// UMEM: ENOBUFS), charged saying what it charged and how much. The limit
// is counted over every process of the uid. When what this backend needs
// (need bytes, -1 when not known) is above the limit on its own, it is a
// limit of this host, not an error of the feed: ErrNotSupported, so that
// auto goes on to the next backend (logged, with the remedy) as it does
// when AF_XDP lacks its privileges, and run exits as for any backend the
// host cannot run. When it fits alone, other processes of the uid hold
// the rest (another handler, or one still stopping), which may end: the
// error says so and is not ErrNotSupported. Other errors come back
// unchanged.
func memlockLimit(err error, errno unix.Errno, charged string, need int64) error {
	if !errors.Is(err, errno) || errors.Is(err, ErrNotSupported) || privilege.HasIPCLock() {
		return err
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) != nil || lim.Cur == unix.RLIM_INFINITY {
		return err
	}
	const remedy = "raise it (LimitMEMLOCK= in the unit, ulimit -l) or grant cap_ipc_lock"
	if need >= 0 && uint64(need) <= lim.Cur {
		return fmt.Errorf("%w (%s to RLIMIT_MEMLOCK, %d KiB here, counted over every process of uid %d, in a process without cap_ipc_lock: that fits alone, so locked memory the uid holds elsewhere takes the rest (another feedhandler, or one still stopping); %s)",
			err, charged, lim.Cur>>10, os.Getuid(), remedy)
	}
	return fmt.Errorf("%w (%s to RLIMIT_MEMLOCK, %d KiB here, counted over every process of uid %d, in a process without cap_ipc_lock: %s): %w",
		err, charged, lim.Cur>>10, os.Getuid(), remedy, ErrNotSupported)
}

// uringMemlock explains io_uring's ENOMEM in a process without
// cap_ipc_lock under a finite RLIMIT_MEMLOCK (memlockLimit): the kernel
// charges a ring's memory (its queues, a provided buffer ring) to that
// limit, about 200 KiB at the default ring size, 1.5 MiB at 32768 buffers,
// which an old distribution's default of 64 KiB does not hold.
func uringMemlock(err error) error {
	return memlockLimit(err, unix.ENOMEM, "io_uring charges its rings", -1)
}

// xdpMemlock explains XDP_UMEM_REG's ENOBUFS in a process without
// cap_ipc_lock under a finite RLIMIT_MEMLOCK (memlockLimit): the kernel
// charges each UMEM to that limit, XDPLockedBytes(cfg) in all, 16 MiB per
// queue at the default ring size, above the usual 8 MiB.
func xdpMemlock(err error, cfg Config) error {
	need := XDPLockedBytes(cfg)
	size := fmt.Sprintf("%d MiB", need>>20)
	if need < 1<<20 {
		size = fmt.Sprintf("%d KiB", need>>10)
	}
	return memlockLimit(err, unix.ENOBUFS, "AF_XDP charges its UMEMs ("+size+")", need)
}
