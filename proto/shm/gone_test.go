package shm

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deadPid returns the pid of a process that has exited (and been waited
// for).
func deadPid(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// TestReadLockedSlotAfterRestart: a writer dies inside a publish (its slot
// stays odd, its pid is gone), then a new writer replaces the file. A
// reader still mapping the old file reads the locked slot: the answer is
// that its writer is dead, as before the restart, not ErrBusy (which means
// a live writer holding the slot).
func TestReadLockedSlotAfterRestart(t *testing.T) {
	name := testName(t)
	w1 := testWriter(t, Config{Name: name, Instruments: 1, Depth: 1})
	w1.Register(1, "A")
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	if err := w1.Publish(s); err != nil {
		t.Fatal(err)
	}
	seq := w1.m.slotSeq(w1.l.slotOff(0))
	atomic.StoreUint64(seq, atomic.LoadUint64(seq)+1) // died inside a publish
	*w1.m.u32(offWriterPid) = uint32(deadPid(t))
	r := testReader(t, name)
	buf := make([]byte, r.Info().MaxSnapshot)
	if _, err := r.Read(1, buf); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("locked slot of a dead writer: %v, want ErrWriterDead", err)
	}
	testWriter(t, Config{Name: name, Instruments: 1, Depth: 1}) // the new writer
	if err := r.Check(); !errors.Is(err, ErrRestarted) {
		t.Fatalf("check after the restart: %v, want ErrRestarted", err)
	}
	if _, err := r.Read(1, buf); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("locked slot of a dead writer, file replaced: %v, want ErrWriterDead", err)
	}
}

// TestOpenNotRegular: a FIFO or a directory under the feed's name is not a
// feed file: Open says so (ErrFormat) at once instead of blocking in open
// until a process writes to the FIFO, and Create replaces the FIFO.
func TestOpenNotRegular(t *testing.T) {
	t.Run("fifo", func(t *testing.T) {
		name := testName(t)
		path := Path(name)
		if err := unix.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(path) })
		done := make(chan error, 1)
		go func() {
			r, err := Open(name)
			if err == nil {
				r.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("open a FIFO: %v, want ErrFormat", err)
			}
		case <-time.After(10 * time.Second):
			// Let the blocked open go: a writer end opened.
			if fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				defer unix.Close(fd)
			}
			t.Fatal("open of a FIFO still blocked after 10 s")
		}
		w := testWriter(t, Config{Name: name, Instruments: 1, Depth: 1})
		if _, err := testReader(t, w.Path()).Read(1, make([]byte, w.Info().MaxSnapshot)); !errors.Is(err, ErrUnknownLocate) {
			t.Fatalf("read the feed that replaced the FIFO: %v, want ErrUnknownLocate", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		path := Path(testName(t))
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(path) })
		if _, err := Open(path); !errors.Is(err, ErrFormat) {
			t.Fatalf("open a directory: %v, want ErrFormat", err)
		}
	})
}

// TestClosedReader: calls on a closed Reader return fs.ErrClosed instead
// of touching the unmapped file.
func TestClosedReader(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	w.Register(1, "A")
	r, err := Open(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	f := r.Follow()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(1, make([]byte, w.Info().MaxSnapshot)); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Read: %v, want fs.ErrClosed", err)
	}
	if err := r.Check(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Check: %v, want fs.ErrClosed", err)
	}
	dst := make([]Update, 4)
	if _, err := f.Poll(dst); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Poll: %v, want fs.ErrClosed", err)
	}
	if _, err := f.Wait(dst, time.Millisecond, WaitOptions{}); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Wait: %v, want fs.ErrClosed", err)
	}
	if _, err := r.ReadSymbol("A", make([]byte, w.Info().MaxSnapshot)); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("ReadSymbol: %v, want fs.ErrClosed", err)
	}
	if _, err := r.Follow().Poll(dst); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Poll of a Follow after Close: %v, want fs.ErrClosed", err)
	}
	if v, hb, ins, p := r.Version(1), r.Heartbeat(), r.Instruments(), f.Pending(); v != 0 || !hb.IsZero() || ins != nil || p != 0 {
		t.Errorf("Version %d, Heartbeat %v, Instruments %v, Pending %d: want zero values", v, hb, ins, p)
	}
	if l, ok := r.Lookup("A"); ok || l != 0 || len(r.Locates()) != 0 {
		t.Errorf("Lookup: %d %v, Locates %v: want nothing", l, ok, r.Locates())
	}
}

// TestHeaderPid: a header naming pid 0 or one past Linux's largest is not a
// feed file (kill(2) would signal a process group, or the pid none).
func TestHeaderPid(t *testing.T) {
	for _, pid := range []uint32{0, maxPid + 1, 0xFFFFFFF0} {
		w := testWriter(t, Config{Instruments: 1, Depth: 1})
		*w.m.u32(offWriterPid) = pid
		if _, err := Open(w.Path()); !errors.Is(err, ErrFormat) {
			t.Errorf("pid %d: %v, want ErrFormat", pid, err)
		}
	}
}
