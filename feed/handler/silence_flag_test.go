package handler

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// flaggedBooks returns how many books feed name publishes, and how many of
// them are flagged PossiblyStale.
func flaggedBooks(t *testing.T, name string) (n, stale int) {
	t.Helper()
	eachSnapshot(t, name, func(_ int, _ shm.Instrument, v shm.View) {
		n++
		if v.Flags()&bookfb.FlagsPossiblyStale != 0 {
			stale++
		}
	})
	return n, stale
}

// TestEveryLineSilentBooksFlagged: both lines deliver half a day, then
// nothing comes, not even a heartbeat (the path is lost mid-session: an
// idle feed sends one a second). Once every line was silent for
// allSilentAfter every book is published flagged PossiblyStale: what the
// exchange sent meanwhile may be missing. When the lines come back at the
// next sequence number (nothing lost) the flag is cleared and the books are
// the day's; when the first packet after the silence is lost on both lines
// the gap is declared and the books stay flagged. Both modes publish the
// same at each step. Before, the books stayed unflagged through the
// silence.
func TestEveryLineSilentBooksFlagged(t *testing.T) {
	day := dayPackets(t, 2000)
	k := len(day) / 2
	refs := func(pkts [][]byte) *book.Books {
		ref, err := book.New(dayBooks)
		if err != nil {
			t.Fatal(err)
		}
		for _, ms := range dayMessages(t, pkts) {
			for _, m := range ms {
				ref.Apply(itch.Msg(m))
			}
		}
		return ref
	}
	half, whole := refs(day[:k]), refs(day)
	lostRef := refs(append(append([][]byte(nil), day[:k]...), day[k+1:]...))
	for _, lost := range []bool{false, true} {
		what := "nothing lost"
		if lost {
			what = "the first packet after lost"
		}
		t.Run(what, func(t *testing.T) {
			var silent, after []map[string]string
			forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
				now := time.Now().UnixNano()
				r := &scriptRx{errAt: -1}
				r.play(&now, day[:k], 0)
				name := shmtest.Name(t, "fhsilentflag")
				h := startRx(t, mode, shards, r, name, zerolog.Nop(), nil)
				defer h.Stop()
				waitFor(t, "half the day applied", func() bool {
					st := h.Stats()
					return st.Arbiter.Delivered == totalMessages(t, day[:k]) && st.Applied() == st.Routed
				})
				if n, stale := flaggedBooks(t, name); stale != 0 {
					t.Fatalf("half the day delivered: %d of %d books flagged PossiblyStale", stale, n)
				}
				waitFor(t, "every line silent", func() bool { return h.Stats().AllSilent })
				waitFor(t, "every book flagged PossiblyStale, every line silent", func() bool { return compareShm(t, name, half, true) })
				silent = append(silent, snapshotFields(t, name))

				rest, want := day[k:], totalMessages(t, day)
				if lost {
					rest, want = day[k+1:], want-totalMessages(t, day[k:k+1])
				}
				now = time.Now().UnixNano()
				r.play(&now, rest, 0)
				if !lost {
					waitFor(t, "the day applied, the flag cleared", func() bool {
						st := h.Stats()
						n, stale := flaggedBooks(t, name)
						return st.Arbiter.Delivered == want && st.Applied() == st.Routed && !st.AllSilent && n > 0 && stale == 0
					})
					compareShm(t, name, whole, false)
				} else {
					for range 2 { // after one more stats copy too
						waitFor(t, "the rest applied, the gap declared", func() bool {
							st := h.Stats()
							return st.Arbiter.Delivered == want && st.Applied() == st.Routed && !st.AllSilent && st.Arbiter.Gaps == 1
						})
						time.Sleep(30 * time.Millisecond)
					}
					if n, stale := flaggedBooks(t, name); !compareShm(t, name, lostRef, true) {
						t.Fatalf("the first packet after the silence lost, the gap declared: %d of %d books flagged PossiblyStale; want every one", stale, n)
					}
				}
				after = append(after, snapshotFields(t, name))
			})
			for i, got := range [][]map[string]string{silent, after} {
				if len(got) != len(modes) {
					return
				}
				for sym, a := range got[0] {
					if b, ok := got[1][sym]; !ok || a != b {
						t.Errorf("step %d, %s:\n  %v: %s\n  %v: %s", i, sym, modes[0].mode, a, modes[1].mode, b)
					}
				}
				if len(got[0]) != len(got[1]) {
					t.Errorf("step %d: %d books %v, %d %v", i, len(got[0]), modes[0].mode, len(got[1]), modes[1].mode)
				}
			}
		})
	}
}
