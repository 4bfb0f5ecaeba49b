//go:build linux

package mem

import (
	"testing"
	"time"

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

// BenchmarkFirstAccess is the cost of the first load from each page of
// private anonymous memory that the kernel has allocated and mapped
// (MAP_POPULATE), as the UMEM's and io_uring's buffers are before the
// kernel writes packets into them: "populated" as mapped, "touched" after
// Touch. ns/page is the load's mean (ns/op includes the mapping).
func BenchmarkFirstAccess(b *testing.B) {
	for _, touch := range []bool{false, true} {
		name := "populated"
		if touch {
			name = "touched"
		}
		b.Run(name, func(b *testing.B) {
			const size = 4 << 20
			var loads time.Duration
			var pages int
			var sum byte
			for b.Loop() {
				m, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
				if err != nil {
					b.Fatal(err)
				}
				if touch {
					Touch(m)
				}
				t := time.Now()
				for off := 8; off < size; off += PageSize {
					sum += m[off]
				}
				loads += time.Since(t)
				pages += size / PageSize
				if err := unix.Munmap(m); err != nil {
					b.Fatal(err)
				}
			}
			if sum != 0 {
				b.Fatal("a fresh page read non-zero")
			}
			b.ReportMetric(float64(loads.Nanoseconds())/float64(pages), "ns/page")
		})
	}
}
