package shm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestLookupCorruptCount: a file whose instrument count is corrupted (far
// above its capacity) makes Lookup build its symbol map for the
// instruments the directory can hold, not for the count: sized by the
// count, the map of a count of 2^32-1 took minutes and gigabytes (found
// by FuzzOpen, testdata/fuzz/FuzzOpen/7a273c9e1f158ca1).
func TestLookupCorruptCount(t *testing.T) {
	b := append([]byte(nil), validFile(t)...)
	binary.LittleEndian.PutUint32(b[offCount:], 1<<22)
	name := filepath.Join(t.TempDir(), "feed")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	loc, ok := r.Lookup(symbolOf(2))
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("Lookup with a count of %d in a file of %d slots allocated %d MiB", 1<<22, r.l.capacity, got>>20)
	}
	if !ok || loc != 2 {
		t.Fatalf("Lookup = %d, %v; want 2, true", loc, ok)
	}
}
