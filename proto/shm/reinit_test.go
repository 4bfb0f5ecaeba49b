package shm

import (
	"errors"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
)

// reinitInPlace writes another writer's file over w's, in place: the same
// file (inode) and size, another generation, as a copy over the file
// (cp, or a writer that opens the name with O_TRUNC instead of renaming
// a new file into place) leaves it. The new content's writer is alive.
func reinitInPlace(t *testing.T, w *Writer) *Writer {
	t.Helper()
	return reinitInPlaceAfter(t, w, 1)
}

// reinitInPlaceAfter is reinitInPlace with a new content whose writer has
// published locate 1's snapshots 1..published (its journal head).
func reinitInPlaceAfter(t *testing.T, w *Writer, published uint64) *Writer {
	t.Helper()
	w2 := publishedWriter(t, Config{Instruments: 1, Depth: 1})
	publishMore(t, w2, 2, published)
	if len(w2.m.mem) != len(w.m.mem) || w2.l.generation == w.l.generation {
		t.Fatalf("the second file: %d bytes, generation %#x; the first: %d bytes, generation %#x",
			len(w2.m.mem), w2.l.generation, len(w.m.mem), w.l.generation)
	}
	copy(w.m.mem, w2.m.mem)
	return w2
}

// TestCheckReinitializedInPlace: a feed file re-initialized in place (its
// static header, generation included, rewritten; the inode and the size
// unchanged) is no longer the file the reader opened, whose geometry it
// keeps: Check and a follower's Wait say ErrRestarted (Close, Open again).
// Before, the readers looked only at the name's inode, and read the new
// content through the old file's layout as the old writer's, alive.
func TestCheckReinitializedInPlace(t *testing.T) {
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1})
	r := testReader(t, w.Path())
	f := r.Follow()
	if err := r.Check(); err != nil {
		t.Fatalf("check before: %v", err)
	}
	reinitInPlace(t, w)
	if err := r.Check(); !errors.Is(err, ErrRestarted) {
		t.Fatalf("check of a file re-initialized in place: %v, want ErrRestarted", err)
	}
	if _, err := f.Wait(make([]Update, 4), time.Minute, WaitOptions{Spin: 1}); !errors.Is(err, ErrRestarted) {
		t.Fatalf("wait on a file re-initialized in place: %v, want ErrRestarted", err)
	}
	r2 := testReader(t, w.Path())
	if err := r2.Check(); err != nil {
		t.Fatalf("check of the file opened again: %v", err)
	}
}

// TestCppCheckReinitializedInPlace is TestCheckReinitializedInPlace for the
// C++ reader.
func TestCppCheckReinitializedInPlace(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1})
	s := startSession(t, bin, w.Path())
	s.expect("open", "open Ok")
	s.expect("follow", "follow Ok")
	s.expect("check", "check Ok")
	reinitInPlace(t, w)
	s.expect("check", "check ErrRestarted")
	s.expect("wait 60000", "wait ErrRestarted n 0")
	s.expect("open", "open Ok")
	s.expect("check", "check Ok")
}

// publishMore publishes locate 1's snapshots from..to into w.
func publishMore(t *testing.T, w *Writer, from, to uint64) {
	t.Helper()
	s := newSnapshot(1)
	for k := from; k <= to; k++ {
		fillSnapshot(s, 1, k, 1)
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPollReinitializedInPlaceRestarted: a feed file re-initialized in
// place by a writer that has published less than the old one (a restart:
// its journal head starts again near 0, below the follower's position)
// is ErrRestarted from Poll and from a follower's Wait, not ErrOverrun: an
// overrun tells the caller to rescan every slot, which it would do through
// the old file's layout, over another writer's slots. The follower keeps
// its position and counts no overrun.
func TestPollReinitializedInPlaceRestarted(t *testing.T) {
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1})
	publishMore(t, w, 2, 10)
	r := testReader(t, w.Path())
	f, g := r.Follow(), r.Follow()
	reinitInPlace(t, w)
	if n, err := f.Poll(make([]Update, 4)); !errors.Is(err, ErrRestarted) || n != 0 || f.Overruns() != 0 || f.Lost() != 0 {
		t.Fatalf("poll of a file re-initialized in place: %d, %v (overruns %d, lost %d); want 0, ErrRestarted (overruns 0, lost 0)", n, err, f.Overruns(), f.Lost())
	}
	if n, err := g.Wait(make([]Update, 4), time.Minute, WaitOptions{Spin: 1}); !errors.Is(err, ErrRestarted) || n != 0 || g.Overruns() != 0 {
		t.Fatalf("wait on a file re-initialized in place: %d, %v (overruns %d); want 0, ErrRestarted (overruns 0)", n, err, g.Overruns())
	}
}

// TestCppPollReinitializedInPlaceRestarted is
// TestPollReinitializedInPlaceRestarted for the C++ reader's poll.
func TestCppPollReinitializedInPlaceRestarted(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1})
	publishMore(t, w, 2, 10)
	sess := startSession(t, bin, w.Path())
	for _, step := range [][2]string{{"open", "open Ok"}, {"follow", "follow Ok"}, {"reinit", ""},
		{"poll", "poll ErrRestarted n 0"}, {"check", "check ErrRestarted"}} {
		if step[0] == "reinit" {
			reinitInPlace(t, w)
			continue
		}
		sess.expect(step[0], step[1])
	}
}

// TestPollReinitializedInPlaceWindow pins the window docs/SHM.md
// ("Following") describes: Poll compares the generation on its overrun
// path only (nothing per poll), so it says ErrRestarted for a file
// re-initialized in place while the new writer's journal head is below
// the follower's position or more than JournalLen past it; in between,
// Poll returns the new writer's records at the follower's positions as
// this file's, and only Check says ErrRestarted.
func TestPollReinitializedInPlaceWindow(t *testing.T) {
	const next = 10
	for _, tc := range []struct {
		published uint64 // the new writer's journal head
		records   int    // what Poll returns, without an error
	}{
		{next - 1, -1},
		{next, 0},
		{next + 2, 2},
		{next + defaultJournalLen, 4},
		{next + defaultJournalLen + 1, -1},
	} {
		w := publishedWriter(t, Config{Instruments: 1, Depth: 1})
		publishMore(t, w, 2, next)
		r := testReader(t, w.Path())
		f := r.Follow()
		reinitInPlaceAfter(t, w, tc.published)
		n, err := f.Poll(make([]Update, 4))
		if tc.records < 0 {
			if !errors.Is(err, ErrRestarted) || n != 0 {
				t.Errorf("new head %d, follower at %d: poll %d, %v; want 0, ErrRestarted", tc.published, next, n, err)
			}
		} else if err != nil || n != tc.records {
			t.Errorf("new head %d, follower at %d: poll %d, %v; want %d records, no error (the window)", tc.published, next, n, err, tc.records)
		}
		if err := r.Check(); !errors.Is(err, ErrRestarted) {
			t.Errorf("new head %d: check %v, want ErrRestarted", tc.published, err)
		}
	}
}
