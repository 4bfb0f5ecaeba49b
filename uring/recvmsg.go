package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RecvmsgOutLen is the size of struct io_uring_recvmsg_out at the start of
// every buffer filled by a multishot RECVMSG.
const RecvmsgOutLen = 16

// RecvmsgOut is struct io_uring_recvmsg_out.
type RecvmsgOut struct {
	NameLen    uint32 // source address length as recvmsg(2) would report it
	ControlLen uint32 // control bytes written
	PayloadLen uint32 // datagram length (may exceed what fit in the buffer: Flags&MSG_TRUNC)
	Flags      uint32 // recvmsg(2) msg_flags
}

// ErrShortRecvmsg is returned by ParseRecvmsg for a buffer too short for its
// header.
var ErrShortRecvmsg = errors.New("multishot recvmsg buffer shorter than its header")

// ParseRecvmsg splits the used part of a buffer filled by a multishot
// RECVMSG (b = buffer[:cqe.Res]) submitted with a msghdr asking for nameLen
// name bytes and controlLen control bytes. The returned slices alias b.
func ParseRecvmsg(b []byte, nameLen, controlLen int) (out RecvmsgOut, name, control, payload []byte, err error) {
	hdr := RecvmsgOutLen + nameLen + controlLen
	if len(b) < hdr {
		return out, nil, nil, nil, fmt.Errorf("parse recvmsg: %d bytes, header %d: %w", len(b), hdr, ErrShortRecvmsg)
	}
	out.NameLen = binary.NativeEndian.Uint32(b[0:])
	out.ControlLen = binary.NativeEndian.Uint32(b[4:])
	out.PayloadLen = binary.NativeEndian.Uint32(b[8:])
	out.Flags = binary.NativeEndian.Uint32(b[12:])
	name = b[RecvmsgOutLen : RecvmsgOutLen+min(int(out.NameLen), nameLen)]
	cs := RecvmsgOutLen + nameLen
	control = b[cs : cs+min(int(out.ControlLen), controlLen)]
	payload = b[hdr : hdr+min(int(out.PayloadLen), len(b)-hdr)]
	return out, name, control, payload, nil
}

// PrepNop prepares a no-op request.
func (s *SQE) PrepNop(userData uint64) {
	s.Opcode = OpNop
	s.UserData = userData
}

// PrepRecvmsgMultishot prepares a multishot RECVMSG on socket fd that takes
// buffers from buffer group group. msg gives only the sizes: Namelen and
// Controllen bytes are reserved in each buffer for the source address and
// the control messages; its pointers must be nil. The kernel reads msg while
// the entry is submitted, so keep it alive (Msghdrs gives mmapped ones).
func (s *SQE) PrepRecvmsgMultishot(fd int, msg *unix.Msghdr, flags uint32, group uint16, userData uint64) {
	s.Opcode = OpRecvmsg
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(unsafe.Pointer(msg)))
	s.Len = 1
	s.OpFlags = flags
	s.IoPrio = RecvMultishot
	s.Flags = SQEBufferSelect
	s.BufIndex = group
	s.UserData = userData
}

// PrepPollAdd prepares a one-shot poll of fd for events (unix.POLLIN, ...):
// it completes once fd has one of them (at once if it has already), with
// the events it has as Res. A poll ends with its completion; cancel one
// still running with PrepCancelUserData.
func (s *SQE) PrepPollAdd(fd int, events uint32, userData uint64) {
	s.Opcode = OpPollAdd
	s.Fd = int32(fd)
	s.OpFlags = events // poll32_events, little endian
	s.UserData = userData
}

// PrepCancelFd prepares a cancel of every request on fd.
func (s *SQE) PrepCancelFd(fd int, userData uint64) {
	s.Opcode = OpAsyncCancel
	s.Fd = int32(fd)
	s.OpFlags = CancelFd | CancelAll
	s.UserData = userData
}

// PrepCancelUserData prepares a cancel of the request submitted with user
// data target. Its completion says whether one was found: 0 (cancelled:
// the request posts its own last completion, -ECANCELED, before or after
// this one), -ENOENT (none running: it had ended, its last completion
// posted, or dropped, before the cancel ran) or -EALREADY (running, it
// ends by itself).
func (s *SQE) PrepCancelUserData(target, userData uint64) {
	s.Opcode = OpAsyncCancel
	s.Fd = -1
	s.Addr = target
	s.UserData = userData
}

// Msghdrs is a set of message headers in mmapped memory, for requests whose
// msghdr the kernel reads.
type Msghdrs struct {
	mem  []byte
	Hdrs []unix.Msghdr
}

// NewMsghdrs maps n zeroed message headers.
func NewMsghdrs(n int) (*Msghdrs, error) {
	size := n * int(unsafe.Sizeof(unix.Msghdr{}))
	mem, err := unix.Mmap(-1, 0, max(size, 1), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap msghdrs: %w", err)
	}
	return &Msghdrs{mem: mem, Hdrs: unsafe.Slice((*unix.Msghdr)(unsafe.Pointer(&mem[0])), n)}, nil
}

// Close unmaps the headers.
func (m *Msghdrs) Close() error {
	if m.mem == nil {
		return nil
	}
	err := unix.Munmap(m.mem)
	m.mem, m.Hdrs = nil, nil
	return err
}
