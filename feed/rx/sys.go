package rx

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the one place in feed/rx that issues raw syscalls or uses
// unsafe (the socket backend's recvmmsg, the AF_XDP backend's wait);
// AF_XDP's rings go through xsk and bpf, io_uring through uring, the
// sockets' SO_MEMINFO through internal/skmem. TestSyscallChokepoint
// enforces it.

// recvmmsg is recvmmsg(2); golang.org/x/sys/unix has no wrapper. The
// headers, names and buffers are Go memory used only during the call.
//
// With MSG_DONTWAIT it is a raw syscall (no entersyscall/exitsyscall): the
// receive thread keeps its P, so sysmon cannot retake it from a call the
// hypervisor stretches (docs/TUNING.md, "Syscalls on the hot path", says
// when it would), and no call pays the runtime's bookkeeping. It cannot
// block: MSG_DONTWAIT makes every datagram read non-blocking (EAGAIN on an
// empty queue), and without a timeout argument recvmmsg returns once the
// queue is empty. Without MSG_DONTWAIT it may wait, and takes the normal
// path; no caller passes that today (the socket backend always sets
// MSG_DONTWAIT), the branch keeps a future one correct. Each branch calls
// x/sys directly, the headers' uintptr conversion in the call itself
// (unsafe.Pointer's rule 4: the compiler keeps them alive and in place for
// a direct call of an assembly function, not for a call through a
// function value).
func recvmmsg(fd int, msgs []unix.Mmsghdr, flags int) (int, error) {
	var n uintptr
	var errno unix.Errno
	if flags&unix.MSG_DONTWAIT != 0 {
		n, _, errno = unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
			uintptr(len(msgs)), uintptr(flags), 0, 0)
	} else {
		n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
			uintptr(len(msgs)), uintptr(flags), 0, 0)
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// pollKeepP is poll(2) (as ppoll) without the runtime's syscall
// bookkeeping, for the AF_XDP backend's wait: the receive thread keeps its
// P while it sleeps. Through the runtime (unix.Poll) sysmon takes the P of
// a thread that sleeps in poll and hands it to another thread; the woken
// receive thread must then get a P back before it runs, and when none is
// idle it parks until another thread hands one over. `feedhandler demo`'s
// rx -> shm p99, 10 runs alternating the two in one binary: 108-138 us
// (median 121) keeping the P, 129-362 us (median 183) through the runtime
// (docs/TUNING.md).
//
// Holding the P is safe only while other Ps exist for everything else: the
// caller uses it for a receive thread that is the process's one hot thread
// (Config.KeepP) while GOMAXPROCS > 1, so every other goroutine runs on
// the rest (with shard threads holding Ps too, they would wait for
// sysmon's preemptions, every 10 to 20 ms). A stop of the
// world does not wait for the sleep: the runtime's preemption signal
// (SIGURG) ends ppoll with EINTR, never restarted (signal(7)), and the
// goroutine stops at its next safe point. With asynchronous preemption
// turned off (GODEBUG=asyncpreemptoff=1) no signal comes, so each stop
// waits for the call to return, at most ms, which the caller keeps short
// (xdpPollSlice).
func pollKeepP(fds []unix.PollFd, ms int) (int, error) {
	ts := unix.NsecToTimespec(int64(ms) * 1e6)
	n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// setMsgName points h's source address buffer at sa.
func setMsgName(h *unix.Msghdr, sa *unix.RawSockaddrInet4) {
	h.Name = (*byte)(unsafe.Pointer(sa))
}

// sockaddrBytes is the first n bytes of sa, as the kernel wrote them.
func sockaddrBytes(sa *unix.RawSockaddrInet4, n int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(sa)), n)
}

// ethtoolFlags reads interface name's legacy ethtool flags (SIOCETHTOOL,
// ETHTOOL_GFLAGS; ETH_FLAG_*), which the kernel still derives from the
// device's features for every driver.
func ethtoolFlags(name string) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	// struct ethtool_value { __u32 cmd; __u32 data; }
	val := [2]uint32{unix.ETHTOOL_GFLAGS, 0}
	// struct ifreq: the name, then (ifr_data) a pointer to val.
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	if len(name) >= unix.IFNAMSIZ {
		return 0, unix.EINVAL
	}
	copy(ifr.name[:], name)
	ifr.data = uintptr(unsafe.Pointer(&val))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&val)
	if errno != 0 {
		return 0, errno
	}
	return val[1], nil
}

// ifIndex returns the index of the interface called name in fd's network
// namespace (SIOCGIFINDEX through any socket fd); ENODEV when there is
// none. The request is on the stack: it allocates nothing.
func ifIndex(fd int, name string) (int, error) {
	var req struct {
		name  [unix.IFNAMSIZ]byte
		index int32
		_     [20]byte // the rest of struct ifreq's union
	}
	if len(name) >= len(req.name) {
		return 0, unix.EINVAL
	}
	copy(req.name[:], name)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFINDEX, uintptr(unsafe.Pointer(&req)))
	if errno != 0 {
		return 0, errno
	}
	return int(req.index), nil
}

// ifHWAddr returns the hardware address of device ifindex in fd's network
// namespace, asked through any socket fd: the device's name (SIOCGIFNAME),
// then its address (SIOCGIFHWADDR); ENODEV when there is no such device.
// ether is false for a device whose addresses are not Ethernet ones
// (ARPHRD_ETHER: Ethernet, veth, bond, VLAN, macvlan devices are). The
// request is on the stack: it allocates nothing.
func ifHWAddr(fd, ifindex int) (mac [6]byte, ether bool, err error) {
	var req struct {
		name [unix.IFNAMSIZ]byte
		// struct ifreq's union: ifr_ifindex (int), then ifr_hwaddr
		// (struct sockaddr: sa_family, then the address in sa_data).
		data [24]byte
	}
	*(*int32)(unsafe.Pointer(&req.data[0])) = int32(ifindex)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFNAME, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return mac, false, errno
	}
	req.data = [24]byte{}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCGIFHWADDR, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return mac, false, errno
	}
	copy(mac[:], req.data[2:])
	return mac, *(*uint16)(unsafe.Pointer(&req.data[0])) == unix.ARPHRD_ETHER, nil
}
