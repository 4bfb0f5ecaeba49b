package shm

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTruncated: the writer's feed file was truncated under its mapping (an
// operator's `truncate -s 0`, `: > file`; the writer never truncates).
// Every store into a page past the file's new end faults with SIGBUS,
// which kills a Go process ("unexpected fault address") unless the
// goroutine set debug.SetPanicOnFault; Fault turns that fault into this
// error.
var ErrTruncated = errors.New("shm: feed file truncated or removed under the writer")

// Values of Writer.fault.
const (
	faultSeen   = 1 // Fault found the file truncated; Close has not run
	faultClosed = 2 // and Close has unmapped it
)

// Fault turns p, a value recovered from a panic on a goroutine that set
// debug.SetPanicOnFault(true) (a publishing thread, the heartbeat's), into
// the writer's error when it is a fault inside w's mapping: the file was
// truncated under it. The error wraps ErrTruncated and names the file and
// its size now. Fault then closes the writer for every caller: Publish,
// Begin, Register, Rebind, Unbind and Slot fail with ErrClosed, Heartbeat
// does nothing, and Close unmaps without storing into the mapping (the
// file is left as it is). For any other p (nil, another panic, a fault
// elsewhere) it returns nil, and the caller panics again with p.
//
// Nothing of this is on the publish path: the setting is the goroutine's,
// set once, and the recover is the thread's, at the top of its loop.
func (w *Writer) Fault(p any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fault == faultClosed {
		return nil
	}
	off, ok := w.m.faultOffset(p)
	if !ok {
		return nil
	}
	mem := w.m.mem
	w.fault = faultSeen
	w.closed.Store(true)
	size := "the name is gone"
	if fi, err := os.Stat(w.path); err == nil {
		size = fmt.Sprintf("size now %d of %d bytes", fi.Size(), len(mem))
	}
	return fmt.Errorf("shm file %s truncated or removed under the writer (%s; fault at offset %d): %w",
		w.path, size, off, ErrTruncated)
}

// markClosed stores Close's last heartbeat and the closed state into the
// header; false when the file was truncated under the mapping (the store
// faulted: a truncation since the last publish). Under w.mu.
func (w *Writer) markClosed() (ok bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if _, fault := p.(interface{ Addr() uintptr }); !fault {
				panic(p)
			}
			ok = false
		}
	}()
	w.storeHeartbeat(time.Now().UnixNano())
	atomic.StoreUint32(w.m.u32(offState), stateClosed)
	return true
}

// files holds the device and inode of each file this process created, by
// generation, for NameLost: not in the Writer, whose size is kept (see
// beat).
var files struct {
	sync.Mutex
	id map[uint64][2]uint64
}

// rememberFile records the device and inode of f, the file of generation
// gen (Create).
func rememberFile(gen uint64, f *os.File) {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return
	}
	files.Lock()
	defer files.Unlock()
	if files.id == nil {
		files.id = make(map[uint64][2]uint64)
	}
	files.id[gen] = [2]uint64{st.Dev, st.Ino}
}

// forgetFile drops what rememberFile recorded of generation gen (Close).
func forgetFile(gen uint64) {
	files.Lock()
	delete(files.id, gen)
	files.Unlock()
}

// NameLost reports whether the writer's path still names its file: nil
// while it does (or when it cannot tell: a stat refused), an error when the
// file was removed (an operator's rm; the writer never removes it while
// open) or another file took the name. The writer publishes on into its
// file, which readers that have it open read on, but a reader that opens
// the name finds nothing, or another file. One stat, for a periodic check
// (the handler's housekeeping), never on the publish path.
func (w *Writer) NameLost() error {
	files.Lock()
	id, ok := files.id[w.l.generation]
	files.Unlock()
	if !ok {
		return nil
	}
	var st unix.Stat_t
	switch err := unix.Stat(w.path, &st); {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("shm file %s removed under the writer: readers that have it open read on, a reader that opens the name finds nothing", w.path)
	case err != nil:
		return nil
	case st.Dev != id[0] || st.Ino != id[1]:
		return fmt.Errorf("shm file %s replaced under the writer by another file: readers that have the writer's open read on, a reader that opens the name gets the other", w.path)
	}
	return nil
}

// Wiped reports whether the writer's file lost the header Create wrote: nil
// while its magic and generation are the writer's (or once the writer is
// closed), an error wrapping ErrTruncated when the file was cut and grown
// back to its size (`truncate -s 0 f; truncate -s SIZE f`) or a copy of
// another file written over it (cp, which truncates first). The pages are
// then zero, or another file's, and no store faults: readers fail or
// misread while the writer publishes on. Wiped then closes the writer as
// Fault does (Publish and the bindings fail with ErrClosed, Heartbeat does
// nothing, Close stores nothing). A file cut and not grown back makes the
// header's load fault: the caller sets debug.SetPanicOnFault and hands the
// panic to Fault, as for Heartbeat. Two loads of the header, for a
// periodic check (the handler's housekeeping), never on the publish path,
// and never while Close runs. A file cut to the header's page or beyond it
// and grown back keeps the header, but not the trailer (a copy of the
// generation in the file's last 8 bytes), which Wiped loads too.
func (w *Writer) Wiped() error {
	if w.closed.Load() {
		return nil
	}
	magic := [8]byte(w.m.mem[offMagic : offMagic+8])
	gen := atomic.LoadUint64(w.m.u64(offGeneration))
	trailer, cut := w.m.cut(&w.l)
	if magic == Magic && gen == w.l.generation && !cut {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fault != 0 || w.closed.Load() {
		return nil
	}
	w.fault = faultSeen
	w.closed.Store(true)
	return fmt.Errorf("shm file %s cut and grown back, or overwritten, under the writer (header magic %q, generation %#x, trailer %#x: the writer's generation was %#x): %w",
		w.path, magic[:], gen, trailer, w.l.generation, ErrTruncated)
}
