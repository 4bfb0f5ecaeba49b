package rerequest

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// failureRuns keeps, by server, the first error of its current run of
// failures of one kind, until the caller takes it (next). Nothing is
// built before then: a failure on every request allocates nothing.
type failureRuns struct {
	format     string // fmt.Errorf's, given the server's address and the error
	servers    []netip.AddrPort
	err        []error // nil: no run (the last attempt succeeded)
	unreported []bool
	// built: by server, the errors next built for a run that failed with
	// an errno, kept by errno: a server whose route flaps fails with the
	// same errno each run, and its report is built once, not once per run
	// (next runs on the receive thread, which allocates nothing in steady
	// state). At most builtKept a server.
	built [][]builtErr
}

// builtErr is an error next built for a run that failed with errno.
type builtErr struct {
	errno unix.Errno
	err   error
}

// builtKept bounds failureRuns.built per server.
const builtKept = 4

func newFailureRuns(servers []netip.AddrPort, format string) failureRuns {
	built := make([][]builtErr, len(servers))
	for i := range built {
		built[i] = make([]builtErr, 0, builtKept)
	}
	return failureRuns{format: format, servers: servers, err: make([]error, len(servers)), unreported: make([]bool, len(servers)), built: built}
}

// fail notes a failure of server; the first of a run keeps its error.
func (f *failureRuns) fail(server int, err error) {
	if f.err[server] == nil {
		f.err[server], f.unreported[server] = err, true
	}
}

// end ends server's run: its next failure is reported again.
func (f *failureRuns) end(server int) { f.err[server], f.unreported[server] = nil, false }

// next returns the first error of a run not reported yet, or nil.
func (f *failureRuns) next() error {
	for i, isNew := range f.unreported {
		if isNew {
			f.unreported[i] = false
			return f.build(i)
		}
	}
	return nil
}

// build returns the error reported for server's run: the one built for a
// run before with the same errno, else a new one (kept when an errno).
func (f *failureRuns) build(server int) error {
	errno, isErrno := f.err[server].(unix.Errno)
	if isErrno {
		for _, b := range f.built[server] {
			if b.errno == errno {
				return b.err
			}
		}
	}
	err := fmt.Errorf(f.format, f.servers[server], f.err[server])
	if isErrno && len(f.built[server]) < builtKept {
		f.built[server] = append(f.built[server], builtErr{errno: errno, err: err})
	}
	return err
}
