package shm

import (
	"errors"
	"os"
	"testing"
)

// TestBigEndianRefused: on a big-endian host Create and Open refuse with
// errors.ErrUnsupported. The writer stores its words in the host's order,
// so such a host would write a file that the C++ and Python readers, which
// read little-endian, misread (the C++ reader did not even compile there).
// Create leaves no file behind.
func TestBigEndianRefused(t *testing.T) {
	name := testName(t)
	testWriter(t, Config{Name: name, Instruments: 4, Depth: 2})
	bigEndian = true
	defer func() { bigEndian = false }()

	if r, err := Open(name); !errors.Is(err, errors.ErrUnsupported) {
		if err == nil {
			r.Close()
		}
		t.Errorf("Open on a big-endian host: %v, want errors.ErrUnsupported", err)
	}
	other := testName(t) + "-be"
	if w2, err := Create(Config{Name: other, Instruments: 4, Depth: 2}); !errors.Is(err, errors.ErrUnsupported) {
		if err == nil {
			w2.Close()
		}
		t.Errorf("Create on a big-endian host: %v, want errors.ErrUnsupported", err)
	}
	if _, err := os.Stat(Path(other)); !errors.Is(err, os.ErrNotExist) {
		os.Remove(Path(other))
		t.Errorf("Create on a big-endian host left %s behind (stat: %v)", Path(other), err)
	}
}
