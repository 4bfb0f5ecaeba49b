package mem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// populate asks the kernel to map b's whole pages writable. Best effort:
// an older kernel (EINVAL) leaves it to Touch's stores.
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
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), skip)), n), unix.MADV_POPULATE_WRITE)
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
