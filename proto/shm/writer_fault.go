package shm

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"
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
	f, ok := p.(interface{ Addr() uintptr })
	if !ok {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	mem := w.m.mem
	if w.fault == faultClosed || len(mem) == 0 {
		return nil
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	a := f.Addr()
	if a < base || a-base >= uintptr(len(mem)) {
		return nil
	}
	w.fault = faultSeen
	w.closed.Store(true)
	size := "the name is gone"
	if fi, err := os.Stat(w.path); err == nil {
		size = fmt.Sprintf("size now %d of %d bytes", fi.Size(), len(mem))
	}
	return fmt.Errorf("shm file %s truncated or removed under the writer (%s; fault at offset %d): %w",
		w.path, size, a-base, ErrTruncated)
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
