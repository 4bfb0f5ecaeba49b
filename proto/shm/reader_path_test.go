package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/race"
)

// TestRelativePathResolvedAtOpen: a relative path given to Open is
// resolved once, at Open. Before, Check looked the relative name up again
// against the working directory of the moment: a strategy that changed
// directory after Open checked another file (here a file of the same name
// in its new directory: a false ErrRestarted), or none (a real restart of
// the feed read as ErrClosed).
func TestRelativePathResolvedAtOpen(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	heartbeats(t, w)
	dir, base := filepath.Split(w.Path())
	t.Chdir(dir)
	r := testReader(t, "./"+base)
	if r.Path() != w.Path() {
		t.Errorf("Path %q, want %q", r.Path(), w.Path())
	}

	other := t.TempDir()
	decoy := filepath.Join(other, base)
	if err := os.WriteFile(decoy, []byte("not the feed"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)
	if err := r.Check(); err != nil {
		t.Fatalf("Check after chdir to a directory holding another %s: %v", base, err)
	}

	if err := os.Remove(decoy); err != nil {
		t.Fatal(err)
	}
	w.Close()
	testWriter(t, Config{Name: w.Path(), Instruments: 1, Depth: 1})
	if err := r.Check(); !errors.Is(err, ErrRestarted) {
		t.Fatalf("Check after the feed was restarted: %v, want ErrRestarted", err)
	}
}

// truncations are the ways a test cuts a feed file of size bytes at path
// under its readers: to 0, by its last page, and to 0 after its name was
// removed (through a descriptor opened before: a reader's check then has
// only its own descriptor to ask). Each returns a function that gives the
// file its size back, so that the writer's Close can store its state.
var truncations = []struct {
	name string
	cut  func(t *testing.T, path string, size int64) (restore func())
}{
	{"to 0", func(t *testing.T, path string, size int64) func() {
		return truncateFile(t, path, 0, size, false)
	}},
	{"last page", func(t *testing.T, path string, size int64) func() {
		return truncateFile(t, path, size-4096, size, false)
	}},
	{"unlinked, to 0", func(t *testing.T, path string, size int64) func() {
		return truncateFile(t, path, 0, size, true)
	}},
}

func truncateFile(t *testing.T, path string, to, size int64, unlink bool) func() {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if unlink {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(to); err != nil {
		t.Fatal(err)
	}
	return func() {
		f.Truncate(size)
		f.Close()
	}
}

// TestCheckTruncatedFile: a feed file truncated under a reader (an
// operator's `truncate -s 0`; the writer never truncates) is ErrFormat from
// Check, which reads nothing past the end of the file. Before, Check read
// the writer's state from the mapping: a fault (SIGBUS, here a panic) for a
// file truncated to 0, and nil for one that lost only its last page.
func TestCheckTruncatedFile(t *testing.T) {
	for _, c := range truncations {
		t.Run(c.name, func(t *testing.T) {
			// No heartbeat goroutine: nothing but Check may touch the
			// mapping while the file is short.
			w := testWriter(t, Config{Instruments: 1, Depth: 1})
			w.Heartbeat()
			r := testReader(t, w.Path())
			if err := r.Check(); err != nil {
				t.Fatal(err)
			}
			defer c.cut(t, w.Path(), int64(len(w.m.mem)))()
			err := checkNoFault(r)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("Check of a truncated file: %v, want ErrFormat (truncated)", err)
			}
		})
	}
}

// checkNoFault is r.Check with a fault on the mapping turned into an error.
func checkNoFault(r *Reader) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("Check faulted: %v", p)
		}
	}()
	return r.Check()
}

// noFault is fn with a fault on the mapping turned into an error, so that a
// test of a call that faults fails instead of crashing.
func noFault(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s faulted: %v", what, p)
		}
	}()
	return fn()
}

// TestTruncatedUnderWaitAndGuard: a feed file truncated under a reader
// between two checks is ErrFormat from a follower's Wait, and from the
// Polls and Reads of a loop run under Reader.Guard, instead of a crash
// (SIGBUS; here, under SetPanicOnFault, a panic). Before, Wait polled the
// journal before its check came due, and the load of the head of a file
// cut to 0 faulted.
func TestTruncatedUnderWaitAndGuard(t *testing.T) {
	for _, c := range truncations {
		t.Run(c.name, func(t *testing.T) {
			// No heartbeat goroutine: nothing but the calls tested may
			// touch the mapping while the file is short.
			w := testWriter(t, Config{Instruments: 1, Depth: 1})
			if err := w.Register(1, "AAPL"); err != nil {
				t.Fatal(err)
			}
			s := newSnapshot(1)
			fillSnapshot(s, 1, 1, 1)
			if err := w.Publish(s); err != nil {
				t.Fatal(err)
			}
			w.Heartbeat()
			r := testReader(t, w.Path())
			f := r.Follow()
			ups := make([]Update, 4)
			buf := make([]byte, r.Info().MaxSnapshot)
			defer c.cut(t, w.Path(), int64(len(w.m.mem)))()

			err := noFault("Wait", func() error {
				_, err := f.Wait(ups, time.Millisecond, WaitOptions{Spin: 1})
				return err
			})
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("Wait on a truncated file: %v, want ErrFormat (truncated)", err)
			}
			err = noFault("Guard", func() error {
				return r.Guard(func() error {
					if _, err := r.Read(1, buf); err != nil {
						return err
					}
					_, err := f.Poll(ups)
					return err
				})
			})
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated") {
				t.Errorf("Read and Poll under Guard on a truncated file: %v, want ErrFormat (truncated)", err)
			}
		})
	}
}

// TestGuardPassesOtherPanics: Guard turns only faults on its Reader's
// mapping into errors; fn's error comes back as is, and any other panic
// goes on.
func TestGuardPassesOtherPanics(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	r := testReader(t, w.Path())
	want := errors.New("fn's own")
	if err := r.Guard(func() error { return want }); err != want {
		t.Errorf("Guard: %v, want fn's error", err)
	}
	defer func() {
		if p := recover(); p != "other" {
			t.Errorf("recovered %v, want the panic of fn", p)
		}
	}()
	r.Guard(func() error { panic("other") })
	t.Error("Guard returned after fn panicked")
}

// TestGuardRestoresFaultSetting: the calls (Wait, Check, Guard, Poll, Read,
// Lookup, ...) set the calling
// goroutine's debug.SetPanicOnFault for their own calls only and give back
// the caller's setting, off or on, whether they returned, recovered a fault
// on the mapping (a file truncated to 0) or passed another panic on.
func TestGuardRestoresFaultSetting(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	w.Heartbeat()
	r := testReader(t, w.Path())
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	f := r.Follow()
	ups := make([]Update, 4)
	buf := make([]byte, r.Info().MaxSnapshot)
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Check", r.Check},
		{"Wait", func() error { _, err := f.Wait(ups, time.Millisecond, WaitOptions{Spin: 1}); return err }},
		{"Wait with an empty dst", func() error { _, err := f.Wait(nil, time.Millisecond, WaitOptions{}); return err }},
		{"Guard", func() error { return r.Guard(func() error { _, err := f.Poll(ups); return err }) }},
		{"Poll", func() error { _, err := f.Poll(ups); return err }},
		{"Read", func() error { _, err := r.Read(1, buf); return err }},
		{"Lookup", func() error { r.Lookup("AAPL"); return nil }},
		{"Version", func() error { r.Version(1); return nil }},
		{"Pending", func() error { f.Pending(); return nil }},
		{"Follow", func() error { r.Follow(); return nil }},
		{"Guard, fn panicking", func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			return r.Guard(func() error { panic("other") })
		}},
	}
	run := func(state string) {
		for _, before := range []bool{false, true} {
			for _, c := range calls {
				debug.SetPanicOnFault(before)
				err := c.fn()
				if after := debug.SetPanicOnFault(false); after != before {
					t.Errorf("%s (%s, err %v) left SetPanicOnFault %v, the caller had %v", c.name, state, err, after, before)
				}
			}
		}
	}
	run("file whole")
	restore := truncations[0].cut(t, w.Path(), int64(len(w.m.mem)))
	run("file truncated to 0")
	restore()
}

// TestTruncatedUnderEveryCall: a feed file truncated under a reader between
// two checks does not crash the process in any call of the Reader or its
// Followers, guarded by the caller or not: the calls that return an error
// return one wrapping ErrFormat (truncated) when they fault on the mapping,
// the others their zero values (as after Close). Before, only Wait, Check
// and Reader.Guard turned the fault into an error; Poll, Read, Lookup and
// the rest faulted (SIGBUS; here, under SetPanicOnFault, a panic).
func TestTruncatedUnderEveryCall(t *testing.T) {
	for _, c := range truncations {
		t.Run(c.name, func(t *testing.T) {
			// No heartbeat goroutine: nothing but the calls tested may
			// touch the mapping while the file is short.
			w := testWriter(t, Config{Instruments: 1, Depth: 1})
			if err := w.Register(1, "AAPL"); err != nil {
				t.Fatal(err)
			}
			s := newSnapshot(1)
			fillSnapshot(s, 1, 1, 1)
			if err := w.Publish(s); err != nil {
				t.Fatal(err)
			}
			w.Heartbeat()
			r := testReader(t, w.Path())
			f := r.Follow()
			ups := make([]Update, 4)
			buf := make([]byte, r.Info().MaxSnapshot)
			defer c.cut(t, w.Path(), int64(len(w.m.mem)))()

			// Cut to 0, every call faults; cut by its last page (the
			// slot's), only the reads of the slot do.
			all := c.name != "last page"
			errCalls := []struct {
				name  string
				fault bool
				fn    func() error
			}{
				{"Poll", all, func() error { _, err := f.Poll(ups); return err }},
				{"Read", true, func() error { _, err := r.Read(1, buf); return err }},
				{"ReadSymbol", true, func() error { _, err := r.ReadSymbol("AAPL", buf); return err }},
				{"Poll of a follower made after the truncation", all, func() error { _, err := r.Follow().Poll(ups); return err }},
			}
			for _, e := range errCalls {
				err := noFault(e.name, e.fn)
				if e.fault && (!errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated")) {
					t.Errorf("%s on a truncated file: %v, want ErrFormat (truncated)", e.name, err)
				}
				if !e.fault && err != nil {
					t.Errorf("%s on a file that lost only its last page: %v, want nil", e.name, err)
				}
			}
			if !all {
				return
			}
			zeroCalls := []struct {
				name string
				fn   func() string // what the call returned, "" for its zero values
			}{
				{"Lookup", func() string {
					if l, ok := r.Lookup("AAPL"); l != 0 || ok {
						return fmt.Sprint(l, ok)
					}
					return ""
				}},
				{"Version", func() string {
					if v := r.Version(1); v != 0 {
						return fmt.Sprint(v)
					}
					return ""
				}},
				{"Instruments", func() string {
					if ins := r.Instruments(); ins != nil {
						return fmt.Sprint(ins)
					}
					return ""
				}},
				{"Locates", func() string {
					if ls := r.Locates(); len(ls) != 0 {
						return fmt.Sprint(ls)
					}
					return ""
				}},
				{"Heartbeat", func() string {
					if h := r.Heartbeat(); !h.IsZero() {
						return h.String()
					}
					return ""
				}},
				{"Pending", func() string {
					if p := f.Pending(); p != 0 {
						return fmt.Sprint(p)
					}
					return ""
				}},
			}
			for _, z := range zeroCalls {
				var got string
				err := noFault(z.name, func() error { got = z.fn(); return nil })
				if err != nil || got != "" {
					t.Errorf("%s on a file truncated to 0: %q, err %v; want its zero values", z.name, got, err)
				}
			}
		})
	}
}

// TestGuardedCallsAllocs: the fault guard every call of a Reader and its
// Followers sets (a file truncated under the mapping is ErrFormat, not a
// crash) allocates nothing: the calls that allocated nothing before still
// do not, and Instruments allocates what it did (the slice and its
// symbols).
func TestGuardedCallsAllocs(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2})
	for l := uint16(1); l <= 2; l++ {
		if err := w.Register(l, symbolOf(l)); err != nil {
			t.Fatal(err)
		}
	}
	s := newSnapshot(2)
	fillSnapshot(s, 1, 1, 2)
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	w.Heartbeat()
	r := testReader(t, w.Path())
	f := r.Follow()
	buf := make([]byte, r.Info().MaxSnapshot)
	ups := make([]Update, 4)
	sym1, sym2 := symbolOf(1), symbolOf(2)
	var sink uint64
	calls := []struct {
		name   string
		allocs float64
		fn     func()
	}{
		{"Read", 0, func() {
			if _, err := r.Read(1, buf); err != nil {
				t.Fatal(err)
			}
		}},
		{"ReadSymbol", 0, func() {
			if _, err := r.ReadSymbol(sym1, buf); err != nil {
				t.Fatal(err)
			}
		}},
		{"Poll", 0, func() {
			if _, err := f.Poll(ups); err != nil {
				t.Fatal(err)
			}
		}},
		{"Wait", 0, func() {
			if _, err := f.Wait(ups, 0, WaitOptions{Spin: 1, CheckEvery: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}},
		{"Lookup", 0, func() {
			if _, ok := r.Lookup(sym2); !ok {
				t.Fatal("Lookup: not found")
			}
		}},
		{"Version", 0, func() { sink += r.Version(1) }},
		{"Heartbeat", 0, func() { sink += uint64(r.Heartbeat().UnixNano()) }},
		{"Pending", 0, func() { sink += f.Pending() }},
		{"Follow", 0, func() { sink += r.Follow().Pending() }},
		{"Instruments", 3, func() { sink += uint64(len(r.Instruments())) }},
	}
	for _, c := range calls {
		if a, exact := race.AllocsPerRun(t, 1000, c.fn); exact && a != c.allocs {
			t.Errorf("%s: %v allocations, want %v", c.name, a, c.allocs)
		}
	}
	_ = sink
}

// TestOpenTruncatedWhileOpening: a feed file truncated between Open's
// fstat, which sizes the mapping, and its reads of the header is ErrFormat
// from Open, not a crash (SIGBUS; here, under SetPanicOnFault, a panic).
// Before, Open read the header from the mapping unguarded.
func TestOpenTruncatedWhileOpening(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	size := int64(len(w.m.mem))
	var restore func()
	openMapped = func(path string) { restore = truncateFile(t, path, 0, size, false) }
	defer func() { openMapped = func(string) {} }()
	var r *Reader
	err := noFault("Open", func() (err error) {
		r, err = Open(w.Path())
		return err
	})
	if restore != nil {
		restore()
	}
	if r != nil {
		r.Close()
	}
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("Open of a file truncated after its fstat: %v, want ErrFormat (truncated)", err)
	}
}

// TestOpenWaitPollZero: OpenWait with a poll interval of 0 or less waits 1ms
// between tries, as the C++ reader's open_wait does with 0, not 0 s: a
// loop of opens that holds a core for the whole timeout.
func TestOpenWaitPollZero(t *testing.T) {
	name := testName(t)
	var waits []time.Duration
	sleep = func(d time.Duration) {
		waits = append(waits, d)
		if len(waits) == 1 {
			testWriter(t, Config{Name: name, Instruments: 1, Depth: 1})
		}
	}
	defer func() { sleep = time.Sleep }()
	r, err := OpenWait(name, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if len(waits) != 1 || waits[0] != time.Millisecond {
		t.Fatalf("OpenWait with poll 0 waited %v between tries, want [1ms]", waits)
	}
}
