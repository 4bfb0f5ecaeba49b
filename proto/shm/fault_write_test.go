package shm

import (
	"testing"
	"unsafe"
)

// TestGuardPassesWriteFault: a fault on r's mapping while the file still
// covers the faulting page is no truncation (here fn stores into the
// read-only mapping: a bug of the caller's): it goes on as a panic, as
// Guard says of any other panic. Before, every fault at an address inside
// the mapping was ErrFormat, "file truncated under the mapping", for a
// file of its full size.
func TestGuardPassesWriteFault(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	r := testReader(t, w.Path())
	var err error
	func() {
		defer func() {
			if p := recover(); p == nil {
				t.Errorf("Guard of a store into the read-only mapping returned %v, want its fault as a panic", err)
			}
		}()
		err = r.Guard(func() error {
			*(*byte)(unsafe.Pointer(&r.m.mem[0])) = 1
			return nil
		})
	}()
}
