//go:build linux

package mem

import (
	"fmt"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestPopulateChunks: Touch asks the kernel to populate a large region in
// calls of at most populateChunk bytes, covering its page-aligned interior
// once, in order. One MADV_POPULATE_WRITE holds the process's mmap lock
// throughout: for a book of gigabytes it stalled every other thread of the
// process that mapped memory or faulted (the metrics server answering
// "starting") for seconds. The region is reserved, not populated (the test
// records the calls instead of making them).
func TestPopulateChunks(t *testing.T) {
	const size = 256<<20 + 3*PageSize
	m, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	type call struct{ off, n int }
	var calls []call
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	defer func(f func([]byte, int) error) { madvise = f }(madvise)
	madvise = func(b []byte, advice int) error {
		if advice != unix.MADV_POPULATE_WRITE {
			return fmt.Errorf("advice %d", advice)
		}
		calls = append(calls, call{int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) - base), len(b)})
		return nil
	}
	// Unaligned at both ends: the interior is the whole pages inside.
	b := m[100 : size-100]
	populate(b)
	next, total := PageSize, 0
	for i, c := range calls {
		if c.n > populateChunk || c.off != next || c.n%PageSize != 0 {
			t.Fatalf("call %d: %d bytes at %d; want at most %d, at %d, whole pages (calls %v)", i, c.n, c.off, populateChunk, next, calls)
		}
		next += c.n
		total += c.n
	}
	if want := size - 2*PageSize; total != want {
		t.Fatalf("populated %d bytes in %d call(s), want the interior's %d", total, len(calls), want)
	}
}
