package book

import (
	"encoding/binary"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// refAt marks the message types that name a resting order, at offset 11:
// E, C, X, D and U (its original order). Adds (A, F) and the new order of a
// replace are left out: their references come from the day's increasing
// sequence, and every add prefetches the home slot of the reference
// addPrefetch ahead of its own, so those slots are loaded already.
var refAt = [256]uint8{
	itch.TypeOrderExecuted: 1, itch.TypeOrderExecutedWithPrice: 1, itch.TypeOrderCancel: 1,
	itch.TypeOrderDelete: 1, itch.TypeOrderReplace: 1,
	itch.TypeAddOrder: 2, itch.TypeAddOrderMPID: 2,
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
	if len(m) < itch.HeaderLen+8 || refAt[m[0]] == 0 {
		return
	}
	if bs.announced <= prefetchBooksOver {
		if refAt[m[0]] == 1 {
			prefetch(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])))
		}
		return
	}
	loc := int(m.Locate())
	if loc >= len(bs.books) {
		loc = 0
	}
	b := uintptr(unsafe.Pointer(&bs.books[loc]))
	if refAt[m[0]] == 2 {
		prefetch(b)
		return
	}
	prefetch2(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])), b)
}

// prefetchBooksOver is the number of announced instruments above which
// Prefetch also loads the book's first cache line (for adds too): with a
// few hundred books their hot lines stay in cache and the extra call per
// add costs more than it saves (5% slower on the 500-symbol generated day),
// with thousands they miss (8% faster on the 5,000-symbol day; a Nasdaq day
// lists about 9,000).
const prefetchBooksOver = 1000

// PrefetchAhead is how many messages ahead of Apply a caller with a
// lookahead should call Prefetch.
const PrefetchAhead = 16
