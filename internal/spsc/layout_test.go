package spsc

import (
	"testing"
	"unsafe"
)

// TestIndicesApart: what the producer writes (tail, headCache, full),
// what the consumer writes (head, tailCache, highWater) and what both only
// read (buf, mask, backoff) share no 128-byte block (cacheLine: the
// adjacent-line prefetcher's pairs of 64-byte lines, and arm64's 128-byte
// lines), nor does the consumer's group with the object after the Ring,
// wherever the allocator puts the Ring: it aligns it to 8 bytes, not to
// 128 (a 464-byte Ring's size class gave 0, 32, 64 and 96 mod 128 here).
func TestIndicesApart(t *testing.T) {
	var r Ring[int]
	end := func(off, size uintptr) uintptr { return off + size - 1 } // last byte
	shared := end(unsafe.Offsetof(r.closed), unsafe.Sizeof(r.closed))
	producer := [2]uintptr{unsafe.Offsetof(r.tail), end(unsafe.Offsetof(r.full), unsafe.Sizeof(r.full))}
	consumer := [2]uintptr{unsafe.Offsetof(r.head), end(unsafe.Offsetof(r.highWater), unsafe.Sizeof(r.highWater))}
	for _, c := range []struct {
		what       string
		last, next uintptr // the last byte of one, the first of the other
	}{
		{"the fields both sides read and the producer's", shared, producer[0]},
		{"the producer's fields and the consumer's", producer[1], consumer[0]},
		{"the consumer's fields and the next object", consumer[1], unsafe.Sizeof(r)},
	} {
		for base := uintptr(0); base < cacheLine; base += 8 {
			if (base+c.last)/cacheLine == (base+c.next)/cacheLine {
				t.Errorf("%s: bytes %d and %d in one 128-byte block at a base %d mod 128", c.what, c.last, c.next, base)
				break
			}
		}
	}
}
