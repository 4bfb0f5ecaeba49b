package mem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// populateChunk is the most populate asks of the kernel in one
// MADV_POPULATE_WRITE. The call holds the process's mmap lock from start to
// end: a thread of the same process that maps or unmaps meanwhile (the Go
// runtime growing its heap, a new thread's stack) waits for the whole call,
// and every page fault of every other thread then waits behind it. One call
// for a 3 GiB book (book.max_orders 32 Mi) held a thread's stack mmap 7.1 s
// on a loaded 2-CPU host, and with it the metrics server's answers while
// the handler set up. 16 MiB (8 huge pages) is tens of milliseconds.
const populateChunk = 16 << 20

// madvise is unix.Madvise; a variable for tests.
var madvise = unix.Madvise

// populate asks the kernel to map b's whole pages writable, populateChunk
// bytes a call. Best effort: an older kernel (EINVAL) leaves it to Touch's
// stores.
func populate(b []byte) {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	skip := (PageSize - p%PageSize) % PageSize
	if uintptr(len(b)) <= skip {
		return
	}
	n := (uintptr(len(b)) - skip) &^ (PageSize - 1)
	if n == 0 {
		return
	}
	rest := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), skip)), n)
	for len(rest) > 0 {
		c := min(len(rest), populateChunk)
		if madvise(rest[:c], unix.MADV_POPULATE_WRITE) != nil {
			return // not supported, or no memory: Touch's stores say
		}
		rest = rest[c:]
	}
}

// Resident returns how many of the pages that b spans are resident, and
// how many it spans (mincore(2)): for tests that check what Touch did.
func Resident(b []byte) (in, pages int, err error) {
	if len(b) == 0 {
		return 0, 0, nil
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := p &^ (PageSize - 1)
	n := (p + uintptr(len(b)) - start + PageSize - 1) / PageSize
	vec := make([]byte, n)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, start, n*PageSize, uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); e != 0 {
		return 0, 0, e
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, int(n), nil
}
