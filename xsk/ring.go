package xsk

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Desc is one rx or tx descriptor: a frame at Addr in the UMEM holding Len
// bytes.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// ring is the shared part of the four AF_XDP rings: producer and consumer
// indices in memory shared with the kernel, plus cached copies so that the
// shared cache lines are touched only when the cached view runs out (the
// libxdp pattern). Indices run freely and wrap; mask selects the slot.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32

	cachedProd uint32
	cachedCons uint32

	mem []byte // the mmapped region, for munmap
}

func (r *ring) init(mem []byte, off unix.XDPRingOffset, size uint32) {
	r.mem = mem
	r.producer = (*uint32)(unsafe.Pointer(&mem[off.Producer]))
	r.consumer = (*uint32)(unsafe.Pointer(&mem[off.Consumer]))
	r.flags = (*uint32)(unsafe.Pointer(&mem[off.Flags]))
	r.size = size
	r.mask = size - 1
}

// Producer side (fill, tx).

// free returns how many slots the producer may fill, refreshing the cached
// consumer only when fewer than want are known to be free.
func (r *ring) free(want uint32) uint32 {
	n := r.cachedCons - r.cachedProd
	if n >= want {
		return n
	}
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
	return r.cachedCons - r.cachedProd
}

// submit publishes n reserved slots to the kernel.
func (r *ring) submit(n uint32) {
	atomic.StoreUint32(r.producer, atomic.LoadUint32(r.producer)+n)
}

// Consumer side (rx, completion).

// available returns how many entries the consumer may read, refreshing the
// cached producer only when the cached view is empty.
func (r *ring) available(want uint32) uint32 {
	n := r.cachedProd - r.cachedCons
	if n == 0 {
		r.cachedProd = atomic.LoadUint32(r.producer)
		n = r.cachedProd - r.cachedCons
	}
	return min(n, want)
}

// release hands n consumed entries back to the kernel.
func (r *ring) release(n uint32) {
	atomic.StoreUint32(r.consumer, atomic.LoadUint32(r.consumer)+n)
}

func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

func (r *ring) unmap() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	*r = ring{}
	return err
}

// addrRing is a fill or completion ring of UMEM addresses.
type addrRing struct {
	ring
	addrs []uint64
}

func (r *addrRing) init(mem []byte, off unix.XDPRingOffset, size uint32) {
	r.ring.init(mem, off, size)
	r.addrs = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Desc])), size)
}

// put appends as many of addrs as fit and publishes them; it returns how
// many it took.
func (r *addrRing) put(addrs []uint64) int {
	n := min(r.free(uint32(len(addrs))), uint32(len(addrs)))
	idx := r.cachedProd
	for i := uint32(0); i < n; i++ {
		r.addrs[(idx+i)&r.mask] = addrs[i]
	}
	r.cachedProd += n
	r.submit(n)
	return int(n)
}

// take reads up to len(dst) addresses and releases them.
func (r *addrRing) take(dst []uint64) int {
	n := r.available(uint32(len(dst)))
	idx := r.cachedCons
	for i := uint32(0); i < n; i++ {
		dst[i] = r.addrs[(idx+i)&r.mask]
	}
	r.cachedCons += n
	r.release(n)
	return int(n)
}

// descRing is an rx or tx ring of descriptors.
type descRing struct {
	ring
	descs []unix.XDPDesc
}

func (r *descRing) init(mem []byte, off unix.XDPRingOffset, size uint32) {
	r.ring.init(mem, off, size)
	r.descs = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&mem[off.Desc])), size)
}

// take reads up to len(dst) descriptors and releases their slots.
func (r *descRing) take(dst []Desc) int {
	n := r.available(uint32(len(dst)))
	idx := r.cachedCons
	for i := uint32(0); i < n; i++ {
		d := &r.descs[(idx+i)&r.mask]
		dst[i] = Desc{Addr: d.Addr, Len: d.Len, Options: d.Options}
	}
	r.cachedCons += n
	r.release(n)
	return int(n)
}

// put appends as many of src as fit and publishes them.
func (r *descRing) put(src []Desc) int {
	n := min(r.free(uint32(len(src))), uint32(len(src)))
	idx := r.cachedProd
	for i := uint32(0); i < n; i++ {
		r.descs[(idx+i)&r.mask] = unix.XDPDesc{Addr: src[i].Addr, Len: src[i].Len, Options: src[i].Options}
	}
	r.cachedProd += n
	r.submit(n)
	return int(n)
}
