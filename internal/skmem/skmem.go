// Package skmem reads what the kernel books against a socket's memory
// (SO_MEMINFO): here, the datagrams a full receive buffer refused. The line
// sockets (feed/rx) and the re-request sockets (feed/rerequest) read it
// when their counters are copied, never per datagram.
package skmem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Info is SO_MEMINFO's answer, indexed by unix.SK_MEMINFO_*: among them
// RMEM_ALLOC (the truesize of what the receive queue holds), RCVBUF (the
// kernel's limit, twice what SO_RCVBUF asked) and DROPS.
type Info [unix.SK_MEMINFO_VARS]uint32

// Read reads socket fd's SO_MEMINFO into info and returns how many of its
// fields the kernel filled (0 on an error). It allocates nothing.
func Read(fd int, info *Info) int {
	size := uint32(unsafe.Sizeof(*info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return 0
	}
	return int(size / 4)
}

// Drops returns SK_MEMINFO_DROPS of SO_MEMINFO (datagrams the full socket
// buffer refused, sk_drops: 32 bits, it wraps); false when the kernel does
// not report it. It allocates nothing.
func Drops(fd int) (uint32, bool) {
	var info Info
	if Read(fd, &info) <= unix.SK_MEMINFO_DROPS {
		return 0, false
	}
	return info[unix.SK_MEMINFO_DROPS], true
}
