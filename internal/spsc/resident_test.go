package spsc

import (
	"runtime/debug"
	"testing"

	"github.com/marketfeed/feedhandler/internal/mem"
)

// TestNewTouchesBuffer: the ring's slots are resident once New returns,
// so that the producer's first lap (the receive thread's, sharded) takes
// no page fault per page of slots: 5 MiB, 1,280 pages, for the handler's
// default ring of 65,536 80-byte slots. Memory handed back to the OS
// first, so that the ring's comes fresh from it.
func TestNewTouchesBuffer(t *testing.T) {
	debug.FreeOSMemory()
	r, err := New[[80]byte](1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	in, n, err := mem.Resident(mem.Bytes(r.buf))
	if err != nil {
		t.Skip("mincore:", err)
	}
	if in != n || n == 0 {
		t.Fatalf("%d of the ring's %d pages resident after New", in, n)
	}
}
