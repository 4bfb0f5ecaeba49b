package book

import "unsafe"

// prefetch asks the CPU to start loading the cache line at addr. It is a
// hint: it never faults and changes nothing observable.
//
//go:noescape
func prefetch(addr uintptr)

// prefetch2 is prefetch of a and b, in one call.
//
//go:noescape
func prefetch2(a, b uintptr)

// prefetchBlocks is prefetchBlocksGo in assembly (prefetch_amd64.s): the
// walk and every prefetch in one call, so that the caller's registers are
// saved once for the lot (Go saves every live register around a call, and
// cannot inline assembly) rather than once a message.
func (bs *Books) prefetchBlocks(blocks []byte, max int) int {
	return prefetchBlocksAsm(unsafe.Pointer(unsafe.SliceData(bs.orders)), bs.homeMask, unsafe.Pointer(unsafe.SliceData(bs.books)), unsafe.Pointer(unsafe.SliceData(blocks)), len(blocks), max)
}

//go:noescape
func prefetchBlocksAsm(orders unsafe.Pointer, mask uint64, books unsafe.Pointer, p unsafe.Pointer, n int, max int) int

// The assembly walks from offsets up to blockRefEnd bytes before the end.
var _ [21 - blockRefEnd]struct{}
var _ [blockRefEnd - 21]struct{}

// The assembly scales a slot index by 32 and a locate by 128.
var _ [32 - unsafe.Sizeof(order{})]struct{}
var _ [unsafe.Sizeof(order{}) - 32]struct{}
var _ [128 - unsafe.Sizeof(Book{})]struct{}
var _ [unsafe.Sizeof(Book{}) - 128]struct{}
