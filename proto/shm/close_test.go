package shm

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestCloseRace: the writer methods that the doc lets run while Close
// unmaps the file (Rebind, Register, Slot, Heartbeat, LastHeartbeat,
// SlotUsage) either finish before the unmap or fail with ErrClosed (a
// no-op for Heartbeat, the zero Time for LastHeartbeat). Before the fix
// Rebind checked closed and then took w.mu while Close, without w.mu,
// unmapped the file: a Rebind that had passed the check touched the
// unmapped memory (a fault, or an index panic once the slice was nil; a
// DATA RACE under -race). Register did not check closed at all.
//
// Each round starts one goroutine per method, lets each make one call on
// the open file (so that they are inside their loops), then closes the
// writer while they run. The loops are bounded.
func TestCloseRace(t *testing.T) {
	const rounds, calls = 300, 2000
	for range rounds {
		name := shmtest.Name(t, "closerace")
		w, err := Create(Config{Name: name, Instruments: 8, Depth: 2, JournalLen: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Register(1, "AAPL"); err != nil {
			t.Fatal(err)
		}
		loops := []func() error{
			func() error { _, _, err := w.Rebind(1, "AAPL", 0); return err },
			func() error { return w.Register(1, "AAPL") },
			func() error { _, err := w.Slot(1); return err },
			func() error { w.Heartbeat(); return nil },
			func() error { _ = w.LastHeartbeat(); return nil },
			func() error { _ = w.SlotUsage(); return nil },
		}
		started := make(chan struct{}, len(loops))
		errs := make(chan error, len(loops))
		for _, call := range loops {
			go func() {
				var err error
				for i := range calls {
					err = call()
					if i == 0 {
						started <- struct{}{}
					}
					if err != nil {
						break
					}
				}
				if err != nil && !errors.Is(err, ErrClosed) {
					errs <- err
					return
				}
				errs <- nil
			}()
		}
		for range loops {
			<-started
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for range loops {
			if err := <-errs; err != nil {
				t.Fatalf("call racing Close: %v, want nil or ErrClosed", err)
			}
		}
		// After Close every method fails or does nothing, without
		// touching the unmapped file.
		if _, _, err := w.Rebind(1, "AAPL", 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("rebind after close: %v, want ErrClosed", err)
		}
		if err := w.Register(2, "MSFT"); !errors.Is(err, ErrClosed) {
			t.Fatalf("register after close: %v, want ErrClosed", err)
		}
		if _, err := w.Slot(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("slot after close: %v, want ErrClosed", err)
		}
		w.Heartbeat()
		if hb := w.LastHeartbeat(); !hb.IsZero() {
			t.Fatalf("last heartbeat after close: %v, want the zero Time", hb)
		}
		Remove(name)
	}
}

// TestHeartbeatHoldsUpNoBinding: a Heartbeat whose goroutine stands still
// between its closed check and its store (heartbeatHook: a housekeeping
// goroutine descheduled there) holds up neither the publishing thread's
// bindings (Register, Rebind, Unbind, Slot, SymbolBound) nor a reader, and
// Close waits for it to store its beat before it unmaps, then the feed
// reads closed. Before the fix Heartbeat held w.mu, which every binding
// takes: the receive thread waited for the housekeeping goroutine.
func TestHeartbeatHoldsUpNoBinding(t *testing.T) {
	w := testWriter(t, Config{Instruments: 8, Depth: 2, JournalLen: 2})
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	heartbeatHook = func() { close(inside); <-release }
	t.Cleanup(func() { heartbeatHook = nil })
	beaten := make(chan struct{})
	go func() { w.Heartbeat(); close(beaten) }()
	<-inside

	// Deterministic: a binding would block on whatever Heartbeat holds.
	if !w.mu.TryLock() {
		close(release)
		<-beaten
		t.Fatal("Heartbeat holds w.mu while it beats: a Rebind on the receive thread waits for the heartbeat goroutine")
	}
	w.mu.Unlock()
	if _, _, err := w.Rebind(2, "MSFT", 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(3, "IBM"); err != nil {
		t.Fatal(err)
	}
	if ok, err := w.Unbind(3, "ORCL", 1); err != nil || !ok {
		t.Fatalf("unbind: %v, %v; want true, nil", ok, err)
	}
	if _, err := w.Slot(2); err != nil {
		t.Fatal(err)
	}
	if !w.SymbolBound("MSFT") {
		t.Fatal("MSFT not bound")
	}

	closed := make(chan error)
	go func() { closed <- w.Close() }()
	// Close sets closed, then waits for the heartbeat inside.
	for !w.closed.Load() {
		runtime.Gosched()
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a Heartbeat that passed its closed check had not stored its beat: it unmapped the file under it", err)
	default:
	}
	close(release)
	<-beaten
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	r := testReader(t, w.Path())
	if err := r.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("check after close: %v, want ErrClosed", err)
	}
}

// TestCloseTwiceFirstResult: a second Close returns the first's error.
// Before, the first returned the munmap's failure and the second nil, so
// a caller that closed again (a deferred Close after an explicit one)
// lost it. The test makes the munmap fail with a slice the runtime did
// not map (EINVAL), then unmaps the file itself.
func TestCloseTwiceFirstResult(t *testing.T) {
	name := shmtest.Name(t, "closetwice")
	w, err := Create(Config{Name: name, Instruments: 8, Depth: 2, JournalLen: 2})
	if err != nil {
		t.Fatal(err)
	}
	mem := w.m.mem
	w.m.mem = make([]byte, len(mem))
	first := w.Close()
	if err := unix.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(first, unix.EINVAL) {
		t.Fatalf("first close: %v, want EINVAL", first)
	}
	second := w.Close()
	if second == nil || second.Error() != first.Error() || !errors.Is(second, unix.EINVAL) {
		t.Fatalf("second close: %v, want the first's %v", second, first)
	}
}
