package book

import (
	"encoding/binary"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// Prefetch starts loading the order slot that Apply(m) will read for a
// message naming an order (the home slot of the reference at offset 11,
// the resting order of an E, C, X, D or U, the new order of an A or F), and
// the head of the book of the message's locate. It
// is a hint to the CPU: it changes nothing, never faults, and costs a few
// nanoseconds. A message too short to hold a reference is ignored; for
// one of another type the 8 bytes at offset 11 name a slot that is loaded
// for nothing: types follow one another in no order a branch predictor can
// learn, and a mispredicted test of the type costs more than the load.
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
	// The book's address is not checked against len(bs.books): a prefetch
	// never faults, and Apply checks the locate.
	book := uintptr(unsafe.Pointer(unsafe.SliceData(bs.books))) + uintptr(m.Locate())*unsafe.Sizeof(Book{})
	prefetch2(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])), book)
}

// PrefetchAhead is how many messages ahead of Apply a caller with a
// lookahead should call Prefetch.
const PrefetchAhead = 16

// PrefetchBlocks calls Prefetch on the messages of blocks, a run of
// length-prefixed message blocks (a 2-byte big-endian length, then the
// message: the framing of a MoldUDP64 packet's payload and of a Nasdaq
// BinaryFILE), at most max of them. It stops before a block that does not
// fit in blocks, or that starts fewer than blockRefEnd bytes from the end of
// blocks (so short a block holds no reference: one test, not two, tells that
// a block's header and reference can be read), and returns the length of the
// blocks it went over, so that a caller walking ahead of Apply knows where to
// go on from.
//
// One call for many messages is cheaper than a Prefetch each: Go keeps no
// register across a call, so every call makes the caller's loop save and
// reload what it holds in registers.
func (bs *Books) PrefetchBlocks(blocks []byte, max int) int { return bs.prefetchBlocks(blocks, max) }

// blockRefEnd is how many bytes of a block, from its header, reach the end
// of the reference at offset 11 of its message.
const blockRefEnd = itch.BlockHeaderLen + itch.HeaderLen + 8

// prefetchBlocksGo is PrefetchBlocks in Go: the definition, and the code
// where there is no assembly.
func (bs *Books) prefetchBlocksGo(blocks []byte, max int) int {
	off := 0
	for ; max > 0 && off+blockRefEnd <= len(blocks); max-- {
		n := int(blocks[off])<<8 | int(blocks[off+1])
		end := off + itch.BlockHeaderLen + n
		if end > len(blocks) {
			break
		}
		bs.Prefetch(blocks[off+itch.BlockHeaderLen : end])
		off = end
	}
	return off
}
