package xsk

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the one place that issues raw AF_XDP syscalls.

func setsockoptPtr(fd, level, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptPtr(fd, level, opt int, p unsafe.Pointer, size uintptr) (uintptr, error) {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

func registerUMEM(fd int, reg *unix.XDPUmemReg) error {
	return setsockoptPtr(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(reg), unsafe.Sizeof(*reg))
}

func setRingSize(fd, opt int, n uint32) error {
	return unix.SetsockoptInt(fd, unix.SOL_XDP, opt, int(n))
}

func mmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	n, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return off, err
	}
	if n != unsafe.Sizeof(off) {
		return off, fmt.Errorf("kernel returned %d bytes of xdp_mmap_offsets, want %d (pre-5.4 layout)", n, unsafe.Sizeof(off))
	}
	return off, nil
}

func statistics(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	_, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st))
	return st, err
}

func options(fd int) (uint32, error) {
	var flags uint32
	_, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_OPTIONS, unsafe.Pointer(&flags), unsafe.Sizeof(flags))
	return flags, err
}

// wakeup kicks the kernel's receive processing (needed when the fill ring
// has the need_wakeup flag, and to drive busy polling). It never blocks and
// allocates nothing.
//
// It is a raw syscall (no entersyscall/exitsyscall): the receive thread
// keeps its P, so sysmon cannot retake it from a call the hypervisor
// stretches (docs/TUNING.md, "Syscalls on the hot path", says when it
// would), and no call pays the runtime's bookkeeping. It cannot block: with
// MSG_DONTWAIT, xsk_recvmsg only asks the driver to run its receive
// (ndo_xsk_wakeup, zero-copy) or, with busy polling, runs one busy-poll
// round (sk_busy_loop with nonblock set: one poll of the NAPI instance,
// limited by the socket's busy-poll budget, not by its busy-poll time); it
// takes no lock that sleeps and allocates nothing.
//
// ENETDOWN (the device is down: a link flap, the socket stays bound) is
// not an error; ENXIO is returned: the kernel unbound the socket (its
// device was unregistered), or, on a zero-copy socket, the driver's
// ndo_xsk_wakeup said so of a queue it is reconfiguring (mlx5 while a
// channel is without its XSK state, igc without its pool): boundProbe
// tells the two apart.
func wakeup(fd int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	}
	return e
}

// boundProbe asks the kernel whether socket fd, which has no tx ring, is
// still bound to its device: ENXIO once the kernel unbound it, nil
// otherwise (ENOBUFS: bound, no tx ring; ENETDOWN: bound, its device
// down). A sendto with MSG_DONTWAIT on a socket without a tx ring checks
// the binding and the device's IFF_UP (xsk_check_common since Linux 6.3;
// the binding before) and returns ENOBUFS before anything else: it never
// reaches the driver, whose ndo_xsk_wakeup may answer ENXIO of a bound
// socket, and transmits nothing. A raw syscall, as wakeup: it never
// blocks and allocates nothing.
func boundProbe(fd int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if e == unix.ENXIO {
		return e
	}
	return nil
}

// kickTx tells the kernel to transmit what is on the tx ring. With
// MSG_DONTWAIT xsk_sendmsg never waits for room (EAGAIN/EBUSY instead), but
// it can sleep: in copy mode it transmits from the call (xsk_generic_xmit,
// under the socket's mutex, each frame in an skb allocated with
// GFP_KERNEL). So it goes through the runtime's syscall path, which hands
// the P to other goroutines if the call sleeps; zero-copy only kicks the
// driver (ndo_xsk_wakeup), but Transmit is not on any hot path (a lab test
// is its only caller) and one path for both is simpler.
func kickTx(fd int) error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	}
	return e
}

// notSupported reports whether errno err means AF_XDP cannot work here
// (kernel, driver or privileges), as opposed to a usage error.
func notSupported(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.EACCES) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.ENOSYS)
}
