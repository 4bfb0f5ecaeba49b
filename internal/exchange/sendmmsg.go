package exchange

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An input packet's copies for every line (A, B, duplicates, a released
// reordered packet) are written together (with Config.Deadline, those of
// every input packet due at once), in line order, with one
// sendmmsg(2) on line 0's socket, each datagram addressed to its line's
// destination: the copy of line B leaves microseconds after line A's,
// never a scheduler time slice later because the sender was preempted
// between two writes.
//
// That holds for the lines whose sockets have line 0's source address.
// A line routed out of another interface (its group's route, with no
// Config.Interface) has another, and goes through its own socket, one
// sendmmsg for each run of its datagrams: sent on line 0's socket, its
// datagrams would take line 0's source address, and with it line 0's
// interface (the kernel routes a multicast datagram with a source address
// and no IP_MULTICAST_IF out of the interface that has the address).

// datagram is one copy queued for the current input packet.
type datagram struct {
	line int
	p    []byte
}

// batch holds the datagrams of one input packet and the sendmmsg
// arguments, sized once in NewSender.
type batch struct {
	fd   []int // by line: the socket its datagrams are written on
	out  []datagram
	dst  []unix.RawSockaddrInet4 // by line
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
}

func newBatch(fd []int, lines []Line, perWrite int) *batch {
	// Per line and input packet at most: a duplicated packet (2) and a
	// held one released (1).
	n := 3 * len(lines) * perWrite
	b := &batch{fd: fd, out: make([]datagram, 0, n), dst: make([]unix.RawSockaddrInet4, len(lines)),
		msgs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n)}
	for i, l := range lines {
		sa := &b.dst[i]
		sa.Family = unix.AF_INET
		sa.Addr = l.Group.As4()
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		port[0], port[1] = byte(l.Port>>8), byte(l.Port)
	}
	return b
}

func (b *batch) add(line int, p []byte) { b.out = append(b.out, datagram{line, p}) }

// write sends the queued datagrams and counts them on their lines; a
// datagram the kernel refuses (ENOBUFS, ECONNREFUSED) is lost and counted
// as an error, as one write(2) per datagram would.
func (b *batch) write(lines []lineState) {
	out := b.out
	for len(out) > 0 {
		// The run of datagrams written on one socket.
		fd := b.fd[out[0].line]
		n := 1
		for n < min(len(out), len(b.msgs)) && b.fd[out[n].line] == fd {
			n++
		}
		for i := range n {
			d := out[i]
			iov := &b.iovs[i]
			iov.Base = nil
			if len(d.p) > 0 {
				iov.Base = &d.p[0]
			}
			iov.SetLen(len(d.p))
			h := &b.msgs[i].Hdr
			h.Name = (*byte)(unsafe.Pointer(&b.dst[d.line]))
			h.Namelen = unix.SizeofSockaddrInet4
			h.Iov = iov
			h.SetIovlen(1)
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(n), 0, 0, 0)
		if errno != 0 {
			if errors.Is(errno, unix.EINTR) {
				continue
			}
			lines[out[0].line].st.Errors++ // the first one failed: drop it, go on
			out = out[1:]
			continue
		}
		for _, d := range out[:r] {
			lines[d.line].st.Sent++
			lines[d.line].st.Bytes += uint64(len(d.p))
		}
		out = out[r:]
	}
	clear(b.out) // no references to the caller's packets
	b.out = b.out[:0]
}
