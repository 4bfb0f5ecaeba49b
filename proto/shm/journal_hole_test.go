package shm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// claimUnwritten claims the journal's next record as a shared-mode
// publisher does (the head's fetch-add) and writes nothing: a writer
// process killed between the claim and the record's stores.
func claimUnwritten(w *Writer) { atomic.AddUint64(w.m.u64(offHead), 1) }

// TestJournalHoleOfStoppedWriter: a shared-mode writer claimed a journal
// record and stopped (died, or closed) before writing it, after other
// publishers had appended two records behind it. The hole is never
// filled, so a follower waiting there would never deliver the two records
// behind it: its wait reports them lost (ErrOverrun: the caller rescans,
// and finds the versions they name in the slots), then the writer's state
// at the next wait. Before, the wait delivered what came before the hole
// and then only ErrWriterDead (ErrClosed), with no overrun and Lost 0: a
// caller keeping the last books of a dead feed kept books older than the
// file's.
func TestJournalHoleOfStoppedWriter(t *testing.T) {
	for _, c := range []struct {
		name string
		stop func(w *Writer, step func(time.Duration))
		want error
	}{
		{"dead", func(_ *Writer, step func(time.Duration)) { step(time.Hour) }, ErrWriterDead},
		{"closed", func(w *Writer, _ func(time.Duration)) { w.Close() }, ErrClosed},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 2, Depth: 1, HeartbeatInterval: time.Second})
			for loc := uint16(1); loc <= 2; loc++ {
				if err := w.Register(loc, symbolOf(loc)); err != nil {
					t.Fatal(err)
				}
			}
			r := testReader(t, w.Path())
			step := stepClock(t, &monoNanos)
			f := r.Follow()
			s := newSnapshot(1)
			publish := func(loc uint16, k uint64) {
				t.Helper()
				fillSnapshot(s, loc, k, 1)
				if err := w.Publish(s); err != nil {
					t.Fatal(err)
				}
			}
			publish(1, 1)
			claimUnwritten(w) // locate 2's first record, never written
			publish(1, 2)
			publish(2, 3)
			c.stop(w, step)
			dst := make([]Update, 8)
			opt := WaitOptions{Spin: 1, CheckEvery: time.Nanosecond}
			var got []string
			var errs []error
			for range 4 {
				n, err := f.Wait(dst, time.Minute, opt)
				got = append(got, fmt.Sprintf("%v %v", dst[:n], err))
				errs = append(errs, err)
				if err != nil && !errors.Is(err, ErrOverrun) {
					break
				}
			}
			if len(errs) != 3 || got[0] != "[{1 1}] <nil>" || !errors.Is(errs[1], ErrOverrun) || !errors.Is(errs[2], c.want) ||
				f.Lost() != 3 || f.Overruns() != 1 || f.Pending() != 0 {
				t.Fatalf("waits %q, lost %d, overruns %d, pending %d; want [{1 1}], an overrun losing the hole and the 2 records behind it, then %v",
					got, f.Lost(), f.Overruns(), f.Pending(), c.want)
			}
			// The rescan the overrun asks for finds both slots' last versions.
			if v1, v2 := r.Version(1), r.Version(2); v1 != 2 || v2 != 1 {
				t.Fatalf("versions after the stop: %d, %d; want 2, 1", v1, v2)
			}
		})
	}
}
