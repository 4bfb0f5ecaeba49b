package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/proto/shm"
)

// truncateSlots cuts the feed file's last page, where testFeed's slots are
// (8 slots of a depth-3 feed fit in the page after the journal), keeping
// its header and journal.
func truncateSlots(t *testing.T, r *shm.Reader) {
	t.Helper()
	if n := 8 * (r.Info().MaxSnapshot + 128); n > 4096 {
		t.Fatalf("testFeed's slots take %d bytes, more than the last page: cut more", n)
	}
	st, err := os.Stat(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(r.Path(), st.Size()-4096); err != nil {
		t.Fatal(err)
	}
}

// noFault runs f with a fault on a bad address turned into an error: a read
// of the mapping past the truncated file's end.
func noFault(f func() error) (err error) {
	debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(false)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("read the mapping past the file's end: %v", p)
		}
	}()
	return f()
}

// A feed file truncated under bookview (docs/SHM.md, "A file truncated
// under a reader"): the check says ErrFormat, and bookview stops with it,
// exit status 1, instead of reading the books (SIGBUS: the process died).
func TestBookviewTruncated(t *testing.T) {
	t.Run("live", func(t *testing.T) {
		name := testFeed(t)
		r, v := openViewer(t, name, &syncLog{})
		stop := make(chan os.Signal)
		done := make(chan error, 1)
		// Truncated before the view starts: a truncation while it reads
		// faults whatever it does (a read between the truncation and the
		// next check).
		truncateSlots(t, r)
		go func() { done <- noFault(func() error { return v.live(name, 20*time.Millisecond, stop) }) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			close(stop)
			err = <-done
			t.Fatalf("the live view went on 30 s after its feed file was truncated (returned %v)", err)
		}
		if !errors.Is(err, shm.ErrFormat) {
			t.Fatalf("live view of a truncated file: %v, want ErrFormat", err)
		}
	})
	t.Run("once", func(t *testing.T) {
		var out bytes.Buffer
		r, v := openViewer(t, testFeed(t), &out)
		truncateSlots(t, r)
		for _, mode := range []struct{ json, state bool }{{false, false}, {true, false}, {true, true}} {
			err := noFault(func() error { return v.once(checkWriter(r), mode.json, mode.state) })
			var ec interface{ ExitCode() int }
			if !errors.Is(err, shm.ErrFormat) || errors.As(err, &ec) || out.Len() != 0 {
				t.Fatalf("--once (json %v, state %v) of a truncated file: %v, printed %q; want ErrFormat, exit status 1, nothing printed", mode.json, mode.state, err, out.String())
			}
		}
	})
}
