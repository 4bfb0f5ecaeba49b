package book

import (
	"encoding/binary"
	"math/bits"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// refAt marks the message types that name a resting order, at offset 11:
// E, C, X, D and U (its original order). Adds (A, F) and the new order of a
// replace are left out: their references come from the day's increasing
// sequence, and every add prefetches the home slot of the reference
// addPrefetch ahead of its own, so those slots are loaded already.
var refAt = [256]bool{
	itch.TypeOrderExecuted: true, itch.TypeOrderExecutedWithPrice: true, itch.TypeOrderCancel: true,
	itch.TypeOrderDelete: true, itch.TypeOrderReplace: true,
}

// Prefetch starts loading the order slot that Apply(m) will read for a
// message naming a resting order (E, C, X, D, U): the home slot of its
// reference. It is a hint to the CPU: it changes nothing, never faults, and
// costs a few nanoseconds; any other message, or one too short, is ignored.
//
// Call it on a message some way ahead of the one being applied, so that the
// slot is in cache when Apply gets to it: in a replay the lookahead is the
// file, in a live feed the messages of the packets in hand. Messages of
// most types are applied in tens of nanoseconds and a load from memory takes
// about a hundred, so 8 to 32 messages ahead is enough (PrefetchAhead).
// Apply's result does not depend on whether, or how far ahead, Prefetch ran.
func (bs *Books) Prefetch(m itch.Msg) {
	if len(m) < itch.HeaderLen+8 || !refAt[m[0]] {
		return
	}
	prefetch(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])))
}

// PrefetchAhead is how many messages ahead of Apply a caller with a
// lookahead should call Prefetch.
const PrefetchAhead = 16

// PrefetchBlocks calls Prefetch on the messages of up to k blocks of a
// BinaryFILE (each a 2-byte big-endian length and a message) in data from
// offset off, and returns the offset after the last whole block it read.
// It stops early at a block that does not fit in data, and reads at most
// PrefetchAhead blocks a call. The slots are prefetched by one call into
// assembly, not one a message. Like Prefetch it only hints.
func (bs *Books) PrefetchBlocks(data []byte, off, k int) int {
	if off < 0 {
		return off
	}
	var addrs [PrefetchAhead]uintptr
	// Reads through p are checked against end by hand. An address is not
	// checked against orders: ref&homeMask < len(orders), and a prefetch
	// never faults anyway.
	p, end := unsafe.Pointer(unsafe.SliceData(data)), len(data)
	orders, mask := uintptr(unsafe.Pointer(unsafe.SliceData(bs.orders))), bs.homeMask
	n := 0
	for k = min(k, len(addrs)); k > 0 && off+itch.BlockHeaderLen < end; k-- {
		l := int(*(*byte)(unsafe.Add(p, off)))<<8 | int(*(*byte)(unsafe.Add(p, off+1)))
		m := off + itch.BlockHeaderLen
		if l > end-m {
			break
		}
		off = m + l
		if l >= itch.HeaderLen+8 && refAt[*(*byte)(unsafe.Add(p, m))] {
			ref := bits.ReverseBytes64(*(*uint64)(unsafe.Add(p, m+itch.HeaderLen))) // big-endian on amd64, the only GOARCH that prefetches
			addrs[n&(len(addrs)-1)] = orders + uintptr(ref&mask)*unsafe.Sizeof(order{})
			n++
		}
	}
	prefetchN(&addrs[0], n)
	return off
}
