package shm

import (
	"errors"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// publishFaulting publishes s on a goroutine of its own that turns faults
// into panics, as the handler's publishing threads do, and returns what
// Fault makes of the panic (nil: none), or Publish's error.
func publishFaulting(t *testing.T, w *Writer, s *Snapshot) (faultErr, pubErr error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				if faultErr = w.Fault(p); faultErr == nil {
					t.Errorf("panic %v: not a fault of the writer's mapping", p)
				}
			}
		}()
		pubErr = w.Publish(s)
	}()
	<-done
	return faultErr, pubErr
}

// TestWriterFaultTruncated: a feed file truncated under the writer (`truncate
// -s 0`) makes its next publish fault. On a goroutine with
// SetPanicOnFault, Fault turns the panic into an error wrapping
// ErrTruncated that names the file and its size; the writer is then
// closed: a publish fails with ErrClosed, a heartbeat and Close store
// nothing (a store would kill the test binary with "unexpected fault
// address").
func TestWriterFaultTruncated(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2})
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{Locate: 1, Seq: 1}
	if ferr, err := publishFaulting(t, w, s); ferr != nil || err != nil {
		t.Fatalf("publish before the truncation: fault %v, error %v", ferr, err)
	}
	if err := os.Truncate(w.Path(), 0); err != nil {
		t.Fatal(err)
	}
	ferr, err := publishFaulting(t, w, s)
	if !errors.Is(ferr, ErrTruncated) || !strings.Contains(ferr.Error(), "size now 0") || !strings.Contains(ferr.Error(), w.Path()) {
		t.Fatalf("publish after the truncation: fault %v, error %v; want ErrTruncated naming %s, size now 0", ferr, err, w.Path())
	}
	if _, err := publishFaulting(t, w, s); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after the fault: %v, want ErrClosed", err)
	}
	if err := w.Register(2, "MSFT"); !errors.Is(err, ErrClosed) {
		t.Errorf("register after the fault: %v, want ErrClosed", err)
	}
	w.Heartbeat()
	if err := w.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := w.Fault(ferrPanic{}); err != nil {
		t.Errorf("fault after close: %v, want nil", err)
	}
}

// ferrPanic is a fault value at address 0, outside any mapping.
type ferrPanic struct{}

func (ferrPanic) Addr() uintptr { return 0 }

// TestCloseAfterTruncation: a file truncated after the last publish (an
// operator's truncate, then the stop) is closed without a store into the
// mapping: Close's last heartbeat and closed state faulted, and the
// process died ("unexpected fault address") at its graceful stop.
func TestCloseAfterTruncation(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2})
	if err := os.Truncate(w.Path(), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := w.Fault(ferrPanic{}); err != nil {
		t.Errorf("fault after close: %v", err)
	}
}

// TestNameLost: NameLost is nil while the writer's path names its file, and
// says so when the file was removed, or when another file took the name.
func TestNameLost(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2})
	if err := w.NameLost(); err != nil {
		t.Fatalf("fresh writer: %v", err)
	}
	if err := os.Remove(w.Path()); err != nil {
		t.Fatal(err)
	}
	if err := w.NameLost(); err == nil || !strings.Contains(err.Error(), "removed under the writer") {
		t.Errorf("removed: %v, want removed under the writer", err)
	}
	if err := os.WriteFile(w.Path(), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.NameLost(); err == nil || !strings.Contains(err.Error(), "replaced under the writer") {
		t.Errorf("replaced: %v, want replaced under the writer", err)
	}
	w.Close()
	if err := w.NameLost(); err != nil {
		t.Errorf("closed: %v, want nil (nothing to tell)", err)
	}
}

// TestWiped: a feed file cut and grown back to its size (`truncate -s 0 f;
// truncate -s SIZE f`), or another feed file of the same size copied over
// it, gives no fault: the writer published on into zero pages, or the
// other file's, and nothing said so. Wiped finds the header not the
// writer's, or, for a cut past the header's page, the trailer not the
// generation, says so with ErrTruncated, and closes the writer.
func TestWiped(t *testing.T) {
	cfg := Config{Instruments: 4, Depth: 2}
	for _, tc := range []struct {
		name string
		wipe func(t *testing.T, w *Writer)
	}{
		{"cut and grown back", func(t *testing.T, w *Writer) {
			if err := os.Truncate(w.Path(), 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(w.Path(), int64(len(w.m.mem))); err != nil {
				t.Fatal(err)
			}
		}},
		// The header's page kept: only the trailer tells.
		{"cut past its first page and grown back", func(t *testing.T, w *Writer) {
			cutAndRegrow(t, w.Path(), 2*headerSize)
		}},
		{"another file copied over", func(t *testing.T, w *Writer) {
			other := testWriter(t, cfg)
			b, err := os.ReadFile(other.Path())
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != len(w.m.mem) {
				t.Fatalf("other file %d bytes, want %d", len(b), len(w.m.mem))
			}
			if err := os.WriteFile(w.Path(), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testWriter(t, cfg)
			if err := w.Register(1, "AAPL"); err != nil {
				t.Fatal(err)
			}
			s := &Snapshot{Locate: 1, Seq: 1}
			if err := w.Publish(s); err != nil {
				t.Fatal(err)
			}
			if err := w.Wiped(); err != nil {
				t.Fatalf("fresh file: %v", err)
			}
			tc.wipe(t, w)
			err := w.Wiped()
			if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), w.Path()) {
				t.Fatalf("wiped file: %v, want ErrTruncated naming %s", err, w.Path())
			}
			if err := w.Publish(s); !errors.Is(err, ErrClosed) {
				t.Errorf("publish after: %v, want ErrClosed", err)
			}
			if err := w.Wiped(); err != nil {
				t.Errorf("second check: %v, want nil (said once)", err)
			}
			w.Heartbeat()
			if err := w.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}
