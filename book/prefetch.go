package book

import (
	"encoding/binary"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

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
	if len(m) < itch.HeaderLen+8 {
		return
	}
	prefetch(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])))
}

// PrefetchAhead is how many messages ahead of Apply a caller with a
// lookahead should call Prefetch.
const PrefetchAhead = 16
