package mem

import (
	"testing"
	"unsafe"
)

// TestBytes: the byte view of a slice and of a value covers exactly their
// memory, on every platform.
func TestBytes(t *testing.T) {
	s := make([]uint64, 1000)
	b := Bytes(s)
	if len(b) != 8000 || unsafe.SliceData(b) != (*byte)(unsafe.Pointer(&s[0])) {
		t.Fatalf("Bytes: %d bytes at %p, want 8000 at %p", len(b), unsafe.SliceData(b), &s[0])
	}
	if len(Bytes([]uint64(nil))) != 0 {
		t.Fatal("Bytes(nil) not empty")
	}
}

func TestOf(t *testing.T) {
	var v struct{ a, b uint64 }
	b := Of(&v)
	if len(b) != 16 || unsafe.SliceData(b) != (*byte)(unsafe.Pointer(&v)) {
		t.Fatalf("Of: %d bytes at %p, want 16 at %p", len(b), unsafe.SliceData(b), &v)
	}
}
