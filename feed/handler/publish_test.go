package handler

import (
	"testing"
	"unsafe"
)

// TestLocStateSize: a message and a publish touch one cache line of the
// Publisher's per-locate state.
func TestLocStateSize(t *testing.T) {
	if s := unsafe.Sizeof(locState{}); s != 32 {
		t.Fatalf("locState is %d bytes, want 32", s)
	}
}
