package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// TestRetirementJournaled: a strategy that follows the journal learns of a
// book retired without a new publish of its locate, in both journal modes:
// locate 6 withdrawn (Unbind: its new symbol is filtered out), AAPL moved
// from locate 5 to locate 9 (a new session's Stock Directory, published at
// 9 only later or never), and locate 7 rebound to another symbol. Each
// retirement appends a record of the old locate at one version past the
// last the follower saw, and a read of the locate then reports the book
// gone (ErrUnknownLocate; the rebound locate: no data, then its new
// symbol's version 1). Where the writer may write the retired slot (its
// own locate; every slot of a single writer), that version is a final
// publish of the last snapshot flagged PossiblyStale, before the
// retirement; another publisher's slot (shared journal, the moved symbol)
// keeps its last version, and the record follows the retirement.
func TestRetirementJournaled(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 8, Depth: 2, SingleWriter: single})
			r := testReader(t, w.Path())
			buf := make([]byte, r.Info().MaxSnapshot)
			f := r.Follow()
			ups := make([]Update, 64)
			seen := map[uint16]uint64{}
			poll := func(how string) []Update {
				t.Helper()
				n, err := f.Poll(ups)
				if err != nil {
					t.Fatalf("%s: poll: %v", how, err)
				}
				for _, u := range ups[:n] {
					seen[u.Locate] = max(seen[u.Locate], u.Version)
				}
				return ups[:n]
			}
			for i, sym := range []string{"AAPL", "MSFT", "IBM"} {
				loc := uint16(5 + i)
				for k := uint64(1); k <= 3; k++ {
					rebindAndPublish(t, w, loc, sym, 1, k)
				}
			}
			poll("published")
			if seen[5] != 3 || seen[6] != 3 || seen[7] != 3 {
				t.Fatalf("versions followed %v, want 3 each", seen)
			}
			// retired checks that the follower's next poll names loc past
			// the version it saw last (before the new binding's records,
			// if any), and the retired slot of sym: at that version,
			// flagged stale, when the writer wrote it.
			retired := func(how string, loc uint16, sym string, written bool) {
				t.Helper()
				last := seen[loc]
				got := poll(how)
				if len(got) == 0 || got[0].Locate != loc || got[0].Version != last+1 {
					t.Fatalf("%s: the follower's records %v, want first (%d, %d): a follower keeps showing the old book", how, got, loc, last+1)
				}
				slot := retiredSlot(t, w, sym)
				off := w.l.slotOff(slot)
				v := *w.m.slotSeq(off) / 2
				flags := bookfb.Flags(binary.LittleEndian.Uint16(w.m.slotData(&w.l, off)[tableAt+fFlags:]))
				if written && (v != last+1 || flags&bookfb.FlagsPossiblyStale == 0) {
					t.Fatalf("%s: retired slot of %s at version %d flags %v, want a final version %d flagged PossiblyStale", how, sym, v, flags, last+1)
				}
				if !written && (v != last || flags&bookfb.FlagsPossiblyStale != 0) {
					t.Fatalf("%s: another publisher's retired slot of %s at version %d flags %v, want it untouched at %d", how, sym, v, flags, last)
				}
			}

			// Withdrawn: locate 6's new symbol is filtered out.
			if ok, err := w.Unbind(6, "", 1); err != nil || !ok {
				t.Fatalf("unbind 6: %v %v", ok, err)
			}
			retired("withdrawn", 6, "MSFT", true)
			if _, err := r.Read(6, buf); !errors.Is(err, ErrUnknownLocate) {
				t.Fatalf("withdrawn: read of locate 6: %v, want ErrUnknownLocate", err)
			}

			// AAPL moves to locate 9 (a new session), nothing published
			// there yet: locate 5 is left without a book.
			if _, _, err := w.Rebind(9, "AAPL", 2); err != nil {
				t.Fatal(err)
			}
			retired("moved", 5, "AAPL", single)
			if _, err := r.Read(5, buf); !errors.Is(err, ErrUnknownLocate) {
				t.Fatalf("moved: read of locate 5: %v, want ErrUnknownLocate", err)
			}
			if _, err := r.Read(9, buf); !errors.Is(err, ErrNoData) {
				t.Fatalf("moved: read of locate 9: %v, want ErrNoData", err)
			}

			// Locate 7 rebound to ORCL: its retirement's record, then
			// ORCL's version 1.
			rebindAndPublish(t, w, 7, "ORCL", 2, 10)
			last := seen[7]
			got := poll("rebound")
			if len(got) != 2 || got[0] != (Update{7, last + 1}) || got[1] != (Update{7, 1}) {
				t.Fatalf("rebound: the follower's records %v, want [(7, %d) (7, 1)]", got, last+1)
			}
			if v, err := r.Read(7, buf); err != nil || string(v.Symbol()) != "ORCL" || v.Version != 1 {
				t.Fatalf("rebound: read of locate 7: %v %q version %d", err, v.Symbol(), v.Version)
			}
			slot := retiredSlot(t, w, "IBM")
			if v := *w.m.slotSeq(w.l.slotOff(slot)) / 2; v != last+1 {
				t.Fatalf("rebound: IBM's retired slot at version %d, want its final version %d", v, last+1)
			}

			// A slot never published retires without a record: there is
			// no book to retract.
			if _, _, err := w.Rebind(11, "NFLX", 2); err != nil {
				t.Fatal(err)
			}
			if ok, err := w.Unbind(11, "", 2); err != nil || !ok {
				t.Fatalf("unbind 11: %v %v", ok, err)
			}
			if got := poll("never published"); len(got) != 0 {
				t.Fatalf("never published: records %v, want none", got)
			}
		})
	}
}

// retiredSlot is the slot of sym's retired directory entry (the last one).
func retiredSlot(t *testing.T, w *Writer, sym string) uint64 {
	t.Helper()
	for i := w.count.Load(); i > 0; i-- {
		if e := w.m.dirEntry(&w.l, i-1); dirIsRetired(e) && string(dirSymbol(e)) == sym {
			return i - 1
		}
	}
	t.Fatalf("no retired entry of %s", sym)
	return 0
}
