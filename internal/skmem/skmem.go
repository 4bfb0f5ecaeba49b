// Package skmem reads what the kernel books against a socket's memory
// (SO_MEMINFO): here, the datagrams a full receive buffer refused. The line
// sockets (feed/rx) and the re-request sockets (feed/rerequest) read it
// when their counters are copied, never per datagram.
package skmem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Drops returns SK_MEMINFO_DROPS of SO_MEMINFO (datagrams the full socket
// buffer refused, sk_drops: 32 bits, it wraps); false when the kernel does
// not report it. It allocates nothing.
func Drops(fd int) (uint32, bool) {
	var info [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 || size <= 4*unix.SK_MEMINFO_DROPS {
		return 0, false
	}
	return info[unix.SK_MEMINFO_DROPS], true
}
