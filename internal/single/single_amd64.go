//go:build !race

package single

import (
	"sync/atomic"
	"unsafe"
)

// On amd64 (total store order) a plain store becomes visible after every
// store before it; the compiler keeps the order of the stores it emits but
// may drop one a later store overwrites (the package comment says what
// callers must do).

// atomic.Uint64 is its 8-byte word (its other fields have no size), so a
// pointer to it points to the word: both arrays have a non-negative
// length only when the size is 8.
var (
	_ [unsafe.Sizeof(atomic.Uint64{}) - 8]byte
	_ [8 - unsafe.Sizeof(atomic.Uint64{})]byte
)

// Add adds d to *c. Only c's writer may call it.
func Add(c *atomic.Uint64, d uint64) {
	*(*uint64)(unsafe.Pointer(c)) += d
}

// Store sets *c to v. Only c's writer may call it.
func Store(c *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(c)) = v
}
