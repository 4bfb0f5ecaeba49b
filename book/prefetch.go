package book

import (
	"encoding/binary"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// refAt marks the message types that name an order: 1 for those whose
// order reference is at offset 11 (A, F, E, C, X, D), 2 for the replace
// (U), which names a second, new reference at offset 19.
var refAt = [256]uint8{
	itch.TypeAddOrder: 1, itch.TypeAddOrderMPID: 1, itch.TypeOrderExecuted: 1,
	itch.TypeOrderExecutedWithPrice: 1, itch.TypeOrderCancel: 1, itch.TypeOrderDelete: 1,
	itch.TypeOrderReplace: 2,
}

// Prefetch starts loading the order slots that Apply(m) will read: the home
// slot of the order m names (A, F, E, C, X, D, U) and of the new order of a
// replace. It is a hint to the CPU: it changes nothing, never faults, and
// costs a few nanoseconds; any other message, or one too short, is ignored.
//
// Call it on a message some way ahead of the one being applied, so that the
// slot is in cache when Apply gets to it: in a replay the lookahead is the
// file, in a live feed the messages of the packets in hand. Messages of
// most types are applied in tens of nanoseconds and a load from memory takes
// about a hundred, so 8 to 32 messages ahead is enough (PrefetchAhead).
// Apply's result does not depend on whether, or how far ahead, Prefetch ran.
func (bs *Books) Prefetch(m itch.Msg) {
	if len(m) < itch.HeaderLen+8 {
		return
	}
	k := refAt[m[0]]
	if k == 0 {
		return
	}
	prefetch(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])))
	if k == 2 && len(m) >= itch.HeaderLen+16 {
		prefetch(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen+8:])&bs.homeMask])))
	}
}

// PrefetchAhead is how many messages ahead of Apply a caller with a
// lookahead should call Prefetch.
const PrefetchAhead = 16
