package shm

import (
	"errors"
	"testing"

	"github.com/marketfeed/feedhandler/internal/race"
)

// TestPollSaysClosed: once the writer closed the feed, a poll that finds
// no new record returns ErrClosed, after the records published before the
// close were delivered; a follower that only polls (no Check, no Wait)
// learns it so, and the books it reads are the closed writer's last.
// Before, Poll returned 0, nil for ever: the last books, flags as they
// were, looked live to a reader that polls and reads. A poll with no room
// returns what it did (0, nil): it can tell nothing. A restarted writer
// (a new file renamed into place after the close) is ErrRestarted first,
// as Check orders them.
func TestPollSaysClosed(t *testing.T) {
	name := testName(t)
	w := testWriter(t, Config{Name: name, Instruments: 8, Depth: 2, JournalLen: 64})
	r := testReader(t, name)
	f := r.Follow()
	snap := newSnapshot(2)
	for _, loc := range []uint16{1, 2, 3} {
		if err := w.Register(loc, symbolOf(loc)); err != nil {
			t.Fatal(err)
		}
		fillSnapshot(snap, loc, 1, 2)
		if err := w.Publish(snap); err != nil {
			t.Fatal(err)
		}
	}
	dst := make([]Update, 4)
	if n, err := f.Poll(dst); n != 3 || err != nil {
		t.Fatalf("poll: %d, %v; want 3 records", n, err)
	}
	if n, exact := race.AllocsPerRun(t, 100, func() { f.Poll(dst) }); exact && n != 0 {
		t.Errorf("an empty poll of a live writer's feed allocates %.1f times", n)
	}
	fillSnapshot(snap, 3, 2, 2)
	if err := w.Publish(snap); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Poll(dst); n != 1 || err != nil || dst[0].Locate != 3 {
		t.Fatalf("poll after close: %d, %v, %+v; want the record published before it first", n, err, dst[0])
	}
	if n, err := f.Poll(dst[:0]); n != 0 || err != nil {
		t.Errorf("poll with no room after close: %d, %v; want 0, nil", n, err)
	}
	for range 2 {
		if n, err := f.Poll(dst); n != 0 || !errors.Is(err, ErrClosed) {
			t.Fatalf("poll after close, caught up: %d, %v; want ErrClosed", n, err)
		}
	}
	if _, err := r.Read(3, make([]byte, r.Info().MaxSnapshot)); err != nil {
		t.Fatalf("read the closed writer's last book: %v", err)
	}
	// A new writer under the name: the old file's follower is told to
	// open again.
	testWriter(t, Config{Name: name, Instruments: 8, Depth: 2, JournalLen: 64})
	if n, err := f.Poll(dst); n != 0 || !errors.Is(err, ErrRestarted) {
		t.Fatalf("poll after close and a restart: %d, %v; want ErrRestarted", n, err)
	}
}
