package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/mem"
)

// MaxBufRingEntries is the largest provided buffer ring the kernel accepts.
const MaxBufRingEntries = 1 << 15

// BufRing is a provided buffer ring registered with a Ring
// (IORING_REGISTER_PBUF_RING) together with its buffers. Both live in
// anonymous mmapped memory. Buffer ids run from 0 to Entries()-1; buffer id
// i is the bytes Buf(i).
//
// Requests with SQEBufferSelect and BufIndex = Group() take buffers from the
// ring; the completion names the buffer (CQE.BufID). Give a buffer back with
// Add and publish a batch of Adds with Advance.
type BufRing struct {
	ring    *Ring
	group   uint16
	entries uint32
	mask    uint32
	bufSize int

	ringMem []byte
	slots   []buf
	tailW   *uint32 // 32-bit word holding slots[0].Bid and the ring tail
	tail    uint16  // published tail
	added   uint16  // buffers added since the last Advance

	registered bool // false after a Reclaim that failed

	data []byte
}

// RegisterBufRing maps entries buffers of bufSize bytes, registers them as
// buffer group group and makes all of them available to the kernel.
// entries must be a power of two no larger than MaxBufRingEntries.
func (r *Ring) RegisterBufRing(group uint16, entries uint32, bufSize int) (*BufRing, error) {
	if entries == 0 || entries&(entries-1) != 0 || entries > MaxBufRingEntries {
		return nil, fmt.Errorf("io_uring register buffer ring: %d entries: not a power of two in [1, %d]", entries, MaxBufRingEntries)
	}
	if bufSize <= 0 || bufSize > 1<<20 {
		return nil, fmt.Errorf("io_uring register buffer ring: buffer size %d out of range", bufSize)
	}
	b := &BufRing{ring: r, group: group, entries: entries, mask: entries - 1, bufSize: bufSize}
	var err error
	b.ringMem, err = unix.Mmap(-1, 0, int(entries)*int(unsafe.Sizeof(buf{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("io_uring mmap buffer ring: %w", err)
	}
	b.data, err = unix.Mmap(-1, 0, int(entries)*bufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(b.ringMem)
		return nil, fmt.Errorf("io_uring mmap buffers: %w", err)
	}
	// This process reads the buffers after the kernel wrote them: its
	// first load from each page would trap on the receive thread
	// (mem.Touch). The ring is written here before it is registered.
	mem.Touch(b.data)
	mem.Touch(b.ringMem)
	b.slots = unsafe.Slice((*buf)(unsafe.Pointer(&b.ringMem[0])), entries)
	b.tailW = (*uint32)(unsafe.Pointer(&b.ringMem[12]))
	reg := bufReg{RingAddr: uint64(uintptr(unsafe.Pointer(&b.ringMem[0]))), RingEntries: entries, Bgid: group}
	if err := r.register(registerPbufRing, unsafe.Pointer(&reg), 1); err != nil {
		unix.Munmap(b.data)
		unix.Munmap(b.ringMem)
		if errors.Is(err, unix.EINVAL) && entries <= MaxBufRingEntries {
			// Kernels before 5.19 do not know the opcode; newer ones
			// return EINVAL only for bad arguments, which we checked.
			err = fmt.Errorf("%w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("io_uring register buffer ring group %d: %w", group, err)
	}
	b.registered = true
	for i := range entries {
		b.Add(uint16(i))
	}
	b.Advance()
	return b, nil
}

// Group returns the buffer group id.
func (b *BufRing) Group() uint16 { return b.group }

// Entries returns the number of buffers.
func (b *BufRing) Entries() uint32 { return b.entries }

// BufSize returns the size of each buffer.
func (b *BufRing) BufSize() int { return b.bufSize }

// Buf returns buffer id as a slice of its full size.
func (b *BufRing) Buf(id uint16) []byte {
	off := int(id) * b.bufSize
	return b.data[off : off+b.bufSize : off+b.bufSize]
}

// Add queues buffer id for the kernel; it becomes visible at Advance.
// A buffer must be added at most once between two uses.
func (b *BufRing) Add(id uint16) {
	slot := &b.slots[uint32(b.tail+b.added)&b.mask]
	slot.Addr = uint64(uintptr(unsafe.Pointer(&b.data[int(id)*b.bufSize])))
	slot.Len = uint32(b.bufSize)
	slot.Bid = id
	b.added++
}

// Advance publishes the buffers added since the last Advance.
func (b *BufRing) Advance() {
	if b.added == 0 {
		return
	}
	b.tail += b.added
	b.added = 0
	// The tail is a u16 sharing a 32-bit word with slot 0's buffer id
	// (little endian); store both at once, with release semantics.
	atomic.StoreUint32(b.tailW, uint32(b.slots[0].Bid)|uint32(b.tail)<<16)
}

// Reclaim takes every buffer back from the kernel and gives it again all
// buffers but those out says the caller holds: it unregisters the group
// and registers it anew, the ring refilled from its first slot. Buffers
// the kernel took for completions that were lost (Ring.Wait's EBADR) come
// back this way. No request may be selecting from the group meanwhile:
// finish or cancel them first. On an error the group is left unregistered;
// Reclaim may be called again.
func (b *BufRing) Reclaim(out func(id uint16) bool) error {
	if b.data == nil || b.ring.fd < 0 {
		return ErrClosed
	}
	if b.registered {
		reg := bufReg{Bgid: b.group}
		if err := b.ring.register(unregisterPbufRing, unsafe.Pointer(&reg), 1); err != nil {
			return fmt.Errorf("io_uring reclaim buffer ring group %d: unregister: %w", b.group, err)
		}
		b.registered = false
	}
	// The kernel starts a registered ring at head 0: so does the tail.
	b.tail, b.added = 0, 0
	atomic.StoreUint32(b.tailW, 0)
	reg := bufReg{RingAddr: uint64(uintptr(unsafe.Pointer(&b.ringMem[0]))), RingEntries: b.entries, Bgid: b.group}
	if err := b.ring.register(registerPbufRing, unsafe.Pointer(&reg), 1); err != nil {
		return fmt.Errorf("io_uring reclaim buffer ring group %d: register: %w", b.group, err)
	}
	b.registered = true
	for i := range b.entries {
		if !out(uint16(i)) {
			b.Add(uint16(i))
		}
	}
	b.Advance()
	return nil
}

// Close unregisters the buffer group and unmaps its memory. Requests that
// select from it must be finished or cancelled first.
func (b *BufRing) Close() error {
	if b.data == nil {
		return nil
	}
	var errs []error
	if b.ring.fd >= 0 && b.registered {
		reg := bufReg{Bgid: b.group}
		if err := b.ring.register(unregisterPbufRing, unsafe.Pointer(&reg), 1); err != nil {
			errs = append(errs, fmt.Errorf("io_uring unregister buffer ring group %d: %w", b.group, err))
		}
	}
	if err := unix.Munmap(b.data); err != nil {
		errs = append(errs, err)
	}
	if err := unix.Munmap(b.ringMem); err != nil {
		errs = append(errs, err)
	}
	b.data, b.ringMem, b.slots = nil, nil, nil
	return errors.Join(errs...)
}
