package shm

import (
	"fmt"
	"runtime/debug"
	"unsafe"
)

// A feed file truncated under a Reader (an operator's `truncate -s 0`; the
// writer never truncates) makes every load from a page of the mapping past
// the file's new end fault with SIGBUS, which kills a Go process. Check
// finds the truncation by the file's size before it reads the mapping, but
// a call between the truncation and the next Check loads from the mapping
// without asking. Under debug.SetPanicOnFault such a fault is a panic
// instead, which a deferred recover turns into ErrFormat (as Check reports
// a truncation); a fault anywhere else panics again. The setting is the
// goroutine's, and a defer with recover costs about a hundred instructions
// a call (a few ns, nothing per record or byte): Wait and Check guard
// themselves (Wait once for all its polls), while Poll and Read, which a
// strategy calls in its tightest loop, do not: Guard runs that whole loop
// under one guard instead.

// Guard runs fn, a caller's loop of calls on r (Poll, Read, Version, ...)
// and its followers, with a fault on r's mapping turned into an error
// wrapping ErrFormat (the file was truncated under the mapping) instead of
// a crash of the process; otherwise it returns fn's error. The guard costs
// once per Guard call, not per call inside fn, and applies to the calling
// goroutine only: fn must make its calls on r in that goroutine. After
// ErrFormat, Close the Reader (its mapping cannot be read again). A panic
// of fn, or a fault elsewhere, goes on as a panic.
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

// faultError is the error of op for p, recovered from a panic: ErrFormat
// for a fault at an address inside the mapping; p again otherwise.
func (r *Reader) faultError(op string, p any) error {
	if f, ok := p.(interface{ Addr() uintptr }); ok && len(r.m.mem) > 0 {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(r.m.mem)))
		if a := f.Addr(); a >= base && a-base < uintptr(len(r.m.mem)) {
			return fmt.Errorf("%s shm %s: fault at offset %d of the mapping (%d bytes): file truncated under the mapping: %w",
				op, r.path, a-base, len(r.m.mem), ErrFormat)
		}
	}
	panic(p)
}
