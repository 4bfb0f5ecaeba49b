package book

import "unsafe"

// prefetch asks the CPU to start loading the cache line at addr. It is a
// hint: it never faults and changes nothing observable.
//
//go:noescape
func prefetch(addr uintptr)

// prefetch3 is prefetch of a, b and c, in one call.
//
//go:noescape
func prefetch3(a, b, c uintptr)

// prefetchBlocks is prefetchBlocksGo in assembly (prefetch_amd64.s): the
// walk and every prefetch in one call, so that the caller's registers are
// saved once for the lot (Go saves every live register around a call, and
// cannot inline assembly) rather than once a message.
func (bs *Books) prefetchBlocks(blocks []byte, max int) int {
	return prefetchBlocksAsm(unsafe.Pointer(unsafe.SliceData(bs.orders)), bs.homeMask, unsafe.Pointer(unsafe.SliceData(bs.books)), unsafe.Pointer(unsafe.SliceData(blocks)), len(blocks), max)
}

//go:noescape
func prefetchBlocksAsm(orders unsafe.Pointer, mask uint64, books unsafe.Pointer, p unsafe.Pointer, n int, max int) int

// The assembly scales a slot index by 32 and a locate by 192, and
// prefetches a book's first and third lines.
var _ [32 - unsafe.Sizeof(order{})]struct{}
var _ [unsafe.Sizeof(order{}) - 32]struct{}
var _ [192 - unsafe.Sizeof(Book{})]struct{}
var _ [unsafe.Sizeof(Book{}) - 192]struct{}
var _ [128 - unsafe.Offsetof(Book{}.inl)]struct{}
var _ [unsafe.Offsetof(Book{}.inl) - 128]struct{}
