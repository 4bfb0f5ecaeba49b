// Package mem readies memory that a hot thread will write later: every
// page is mapped and stored to once, at start, so that no page fault and
// no first store's trap lands on the hot path.
package mem

import "unsafe"

// PageSize is the page size Touch steps by: 4 KiB, the smallest on the
// platforms the handler runs on (a larger page is touched several times).
const PageSize = 4096

// Touch stores a zero into every page that b spans. b must be all zero (a
// new allocation, or a new file's mapping) and not yet seen by another
// goroutine or process: the stores change nothing.
//
// First, where the kernel has it (Linux 5.14), MADV_POPULATE_WRITE maps the
// page-aligned interior writable, in one call instead of a fault per page
// (it allocates the huge pages a region advised MADV_HUGEPAGE gets). The
// stores then set what only a store from the process sets: on the lab's VM
// the first user store into a page traps to the hypervisor, about 5 µs, even
// when the kernel has already mapped it (docs/TUNING.md).
func Touch(b []byte) {
	if len(b) == 0 {
		return
	}
	populate(b)
	b[0] = 0
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for i := PageSize - int(start%PageSize); i < len(b); i += PageSize {
		b[i] = 0
	}
}

// Bytes returns the memory of s as bytes, for Touch.
func Bytes[T any](s []T) []byte {
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

// Of returns the memory of *p as bytes, for Touch.
func Of[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}
