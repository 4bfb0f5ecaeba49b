package shm

import (
	"fmt"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A feed file truncated under a Reader (an operator's `truncate -s 0`; the
// writer never truncates) makes every load from a page of the mapping past
// the file's new end fault with SIGBUS, which kills a Go process. Check
// finds the truncation by the file's size before it reads the mapping, but
// a call between the truncation and the next Check loads from the mapping
// without asking. Under debug.SetPanicOnFault such a fault is a panic
// instead, which a deferred recover turns into ErrFormat (as Check reports
// a truncation); a fault anywhere else, or on a page the file still
// covers (not a truncation's), panics again. The setting is the
// goroutine's, so every call of a Reader and its Followers that loads from
// the mapping sets it for its own duration, and gives the caller's back:
// two calls into the runtime and a recover, about a hundred instructions a
// call (a few ns, nothing per record or byte; Wait once for all its
// polls). A call that has an error to return returns one wrapping ErrFormat
// on such a fault; the others (Lookup, Version, Instruments, Locates,
// Heartbeat, Pending) return their zero values, as after Close, and a
// Follow returns a follower whose Poll says ErrFormat.

// Guard runs fn, a caller's loop of calls on r (Poll, Read, Version, ...)
// and its followers, with a fault on r's mapping turned into an error
// wrapping ErrFormat (the file was truncated under the mapping) instead of
// a crash of the process; otherwise it returns fn's error. Every call of a
// Reader and its Followers now guards itself, so fn sees the fault as the
// error of the call that met it; Guard is kept for the callers written
// before, and for a fault in fn's own loads from the mapping (none: the
// Reader hands out no memory of the mapping). It applies to the calling
// goroutine only. After ErrFormat, Close the Reader (its mapping cannot be
// read again). A panic of fn, or a fault elsewhere or on a page the file
// still covers, goes on as a panic.
func (r *Reader) Guard(fn func() error) (err error) {
	defer r.unguard(guard(), "guard", &err)
	return fn()
}

// guard turns faults on for the calling goroutine; it returns the previous
// setting for unguard.
func guard() bool { return debug.SetPanicOnFault(true) }

// unguard restores the fault setting old and recovers a fault inside r's
// mapping into *err, the error of op. It must be deferred directly (recover
// works only there).
func (r *Reader) unguard(old bool, op string, err *error) {
	debug.SetPanicOnFault(old)
	if p := recover(); p != nil {
		*err = r.faultError(op, p)
	}
}

// unguardZero is unguard for a call with no error to return: after a
// fault inside r's mapping the call returns its zero values (its results
// must be unnamed, so that no return has set them). It must be deferred
// directly.
func (r *Reader) unguardZero(old bool) {
	debug.SetPanicOnFault(old)
	if p := recover(); p != nil {
		if _, ok := r.faultOffset(p); !ok {
			panic(p)
		}
	}
}

// faultOffset is the offset in r's mapping of the fault p, recovered from a
// panic; ok is false for a panic that is not a fault inside the mapping
// past the file's end (a truncation's).
func (r *Reader) faultOffset(p any) (off uintptr, ok bool) {
	off, ok = r.m.faultOffset(p)
	if !ok {
		return 0, false
	}
	// A truncation faults only on pages past the file's end: a fault at
	// an offset the file still covers is something else (a store into
	// the read-only mapping), a bug, not ErrFormat.
	var st unix.Stat_t
	if unix.Fstat(r.fd, &st) == nil && st.Size > int64(off) {
		return 0, false
	}
	return off, true
}

// faultOffset is the offset in m of the fault p, recovered from a panic
// under debug.SetPanicOnFault; ok is false for a panic that is not a
// fault, or a fault outside m.
func (m *mapping) faultOffset(p any) (off uintptr, ok bool) {
	f, isFault := p.(interface{ Addr() uintptr })
	if !isFault || len(m.mem) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m.mem)))
	a := f.Addr()
	if a < base || a-base >= uintptr(len(m.mem)) {
		return 0, false
	}
	return a - base, true
}

// faultError is the error of op for p, recovered from a panic: ErrFormat
// for a fault at an address inside the mapping; p again otherwise.
func (r *Reader) faultError(op string, p any) error {
	if off, ok := r.faultOffset(p); ok {
		return fmt.Errorf("%s shm %s: fault at offset %d of the mapping (%d bytes): file truncated under the mapping: %w",
			op, r.path, off, len(r.m.mem), ErrFormat)
	}
	panic(p)
}
