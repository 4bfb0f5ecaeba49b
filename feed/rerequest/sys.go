package rerequest

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvfrom reads one datagram without blocking and writes its source to
// from. Unlike unix.Recvfrom it allocates nothing (that one returns the
// source as a new Sockaddr), so the receive thread's Poll stays
// allocation-free while answers arrive. MSG_DONTWAIT: it cannot block, so
// it is a raw syscall, as the receive path's recvmmsg (feed/rx).
func recvfrom(fd int, p []byte, from *unix.RawSockaddrInet4) (int, error) {
	n := uint32(unsafe.Sizeof(*from))
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// fromPort returns the port of a source recvfrom wrote (in network byte
// order there).
func fromPort(from *unix.RawSockaddrInet4) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&from.Port))
	return uint16(b[0])<<8 | uint16(b[1])
}

// bindAny4 binds fd to a port the kernel picks on every IPv4 address.
// Unlike unix.Bind it allocates nothing (that one takes the address as a
// Sockaddr, put on the heap): a socket is opened on the receive thread
// after a session change or sequence restart (reopen).
func bindAny4(fd int) error {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET}
	_, _, errno := unix.RawSyscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return errno
	}
	return nil
}

// localPort4 returns the local port of an IPv4 socket. Unlike
// unix.Getsockname it allocates nothing (that one returns a new Sockaddr).
func localPort4(fd int) (uint16, error) {
	var sa unix.RawSockaddrInet4
	n := uint32(unsafe.Sizeof(sa))
	_, _, errno := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return 0, errno
	}
	if sa.Family != unix.AF_INET {
		return 0, unix.EAFNOSUPPORT
	}
	return fromPort(&sa), nil
}
