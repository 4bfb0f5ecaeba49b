//go:build linux

package mem

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestTouch maps fresh anonymous memory (no page resident), touches a slice
// of it that starts and ends inside a page, and checks that exactly the
// pages the slice spans became resident, and that it still reads zero.
func TestTouch(t *testing.T) {
	const pages = 64
	m, err := unix.Mmap(-1, 0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if in, _, err := Resident(m); err != nil || in != 0 {
		t.Fatalf("%d pages resident before any access (%v)", in, err)
	}
	// Pages 2 to 41: from the middle of page 2 to the middle of page 41.
	b := m[2*PageSize+100 : 41*PageSize+7]
	Touch(b)
	if in, n, err := Resident(b); err != nil || in != 40 || n != 40 {
		t.Errorf("Resident: %d of %d pages (%v), want 40 of 40", in, n, err)
	}
	for i := range pages {
		in, n, err := Resident(m[i*PageSize : i*PageSize+1])
		if want := i >= 2 && i <= 41; err != nil || n != 1 || (in == 1) != want {
			t.Errorf("page %d: %d of %d resident (%v), want resident %v", i, in, n, err, want)
		}
	}
	for i, c := range m {
		if c != 0 {
			t.Fatalf("byte %d is %d after Touch", i, c)
		}
	}
}

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
