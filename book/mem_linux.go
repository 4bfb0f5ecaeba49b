//go:build linux

package book

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// adviseHuge asks the kernel to back the 2 MiB-aligned interior of b with
// transparent huge pages (when THP is in "madvise" or "always" mode). The
// order table is touched at random, so 4 KiB pages would cost a TLB miss
// on nearly every lookup. Best effort: errors are ignored.
func adviseHuge(b []byte) {
	if len(b) < 2*hugePage {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	skip := int((hugePage - uintptr(p)%hugePage) % hugePage)
	n := (len(b) - skip) &^ (hugePage - 1)
	if n <= 0 {
		return
	}
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), n), unix.MADV_HUGEPAGE)
}
