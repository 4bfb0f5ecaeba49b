package book

import "unsafe"

// prepare backs s with huge pages where possible and touches every page so
// the page faults happen in New, not on the apply path.
func prepare[T any](s []T) {
	if len(s) == 0 {
		return
	}
	var zero T
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
	adviseHuge(b)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 0
	}
}
