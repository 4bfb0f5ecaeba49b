package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/marketfeed/feedhandler/internal/race"
)

// bothLevelPaths runs f with the slot's level vectors handed out in place
// (little-endian machines) and with the copying encoding of big-endian
// ones.
func bothLevelPaths(t *testing.T, f func(t *testing.T)) {
	defer func(v bool) { levelsInPlace = v }(levelsInPlace)
	for _, inPlace := range []bool{true, false} {
		if inPlace && cpu.IsBigEndian {
			continue
		}
		levelsInPlace = inPlace
		t.Run(fmt.Sprint("in-place=", inPlace), f)
	}
}

// slotBytes is slot i of w as a reader would copy it: seq, len and the
// FlatBuffer.
func slotBytes(w *Writer, locate uint16) (seq uint64, data []byte) {
	sl, _ := w.lookup(locate)
	off := w.l.slotOff(sl.index())
	n := *w.m.slotLen(off)
	return *w.m.slotSeq(off), w.m.slotData(&w.l, off)[:n]
}

// TestBeginMatchesPublish: a publish through Begin (levels written into the
// vectors it hands out) and Commit leaves the same slot bytes, version and
// journal record (locate and version, at the right stamp) as Publish of the
// same snapshot, with and without Config.SingleWriter, over random
// snapshots at random depths, symbol lengths and slots, with garbage of
// longer earlier snapshots left in the slots.
func TestBeginMatchesPublish(t *testing.T) {
	bothLevelPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for round := 0; round < 20; round++ {
			depth := 1 + rng.IntN(40)
			cfg := Config{Instruments: 8, Depth: depth, SingleWriter: round%2 == 0}
			w, wb, slots := writerPair(t, rng, cfg)
			var p Pending
			for i := 0; i < 200; i++ {
				s := randomSnapshot(rng, depth)
				s.Locate = uint16(1 + rng.IntN(8))
				if err := w.Publish(s); err != nil {
					t.Fatal(err)
				}
				sb := *s
				sb.Bids, sb.Asks = nil, nil // Begin ignores them
				sl := slots[s.Locate-1]
				if rng.IntN(4) == 0 {
					sl = Slot{} // looked up by locate
				}
				if err := wb.Begin(sl, &sb, len(s.Bids), len(s.Asks), &p); err != nil {
					t.Fatal(err)
				}
				if len(p.Bids) != len(s.Bids) || len(p.Asks) != len(s.Asks) {
					t.Fatalf("Begin handed out %d bids, %d asks, want %d, %d", len(p.Bids), len(p.Asks), len(s.Bids), len(s.Asks))
				}
				copy(p.Bids, s.Bids)
				copy(p.Asks, s.Asks)
				wb.Commit(&p)
				seq, data := slotBytes(w, s.Locate)
				seqB, dataB := slotBytes(wb, s.Locate)
				if seq != seqB || !bytes.Equal(data, dataB) {
					t.Fatalf("round %d, publish %d, locate %d: Begin/Commit wrote seq %d\n%x\nPublish seq %d\n%x", round, i, s.Locate, seqB, dataB, seq, data)
				}
				h, hb := w.m.head(), wb.m.head()
				if h != hb {
					t.Fatalf("journal head %d after Begin/Commit, %d after Publish", hb, h)
				}
				// The newest journal record of each: stamp h, data the
				// locate and the slot's version (its count / 2), the same
				// after Begin/Commit and Publish.
				stamp, rec := w.m.record(&w.l, h-1)
				stampB, recB := wb.m.record(&wb.l, hb-1)
				want := uint64(s.Locate)<<48 | seq/2
				if *stamp != h || *rec != want || *stampB != hb || *recB != want {
					t.Fatalf("round %d, publish %d, locate %d (single writer %v): journal record %d: stamp %d data %#x after Begin/Commit, stamp %d data %#x after Publish, want stamp %d data %#x",
						round, i, s.Locate, cfg.SingleWriter, h-1, *stampB, *recB, *stamp, *rec, h, want)
				}
			}
		}
	})
}

// writerPair returns two writers of cfg (8 instruments) with the same
// random symbols of 1 to 8 bytes registered at locates 1 to 8, and the
// second's slots, by locate - 1: the subjects of the tests that compare a
// publish path against Publish.
func writerPair(t *testing.T, rng *rand.Rand, cfg Config) (w, w2 *Writer, slots [8]Slot) {
	t.Helper()
	w, w2 = testWriter(t, cfg), testWriter(t, cfg)
	for loc := uint16(1); loc <= 8; loc++ {
		// One symbol per locate (a symbol registered again at another
		// locate moves there).
		sym := string(rune('A'+loc-1)) + "BCDEFGH"[:rng.IntN(8)]
		if err := w.Register(loc, sym); err != nil {
			t.Fatal(err)
		}
		if err := w2.Register(loc, sym); err != nil {
			t.Fatal(err)
		}
		sl, err := w2.Slot(loc)
		if err != nil {
			t.Fatal(err)
		}
		slots[loc-1] = sl
	}
	return w, w2, slots
}

// TestBeginErrors: Begin refuses a closed writer, an unknown locate, a
// slot of another locate or another writer and too many levels, and writes
// nothing when it does.
func TestBeginErrors(t *testing.T) {
	const depth = 4
	w := testWriter(t, Config{Instruments: 2, Depth: depth})
	w.Register(1, "AAPL")
	w.Register(2, "MSFT")
	sl1, err := w.Slot(1)
	if err != nil {
		t.Fatal(err)
	}
	sl2, _ := w.Slot(2)
	// The last slot there can be, far beyond w's 2 slots and its mapping:
	// without the bound check, Begin would read its header out of the
	// mapping and fault.
	far := slotOf(MaxLocates-1, 4)
	if _, err := w.Slot(3); !errors.Is(err, ErrUnknownLocate) {
		t.Fatalf("Slot of an unknown locate: %v", err)
	}
	s := newSnapshot(depth)
	fillSnapshot(s, 1, 5, depth)
	if err := w.Publish(s); err != nil { // so that the slot holds data to compare
		t.Fatal(err)
	}
	seq, data := slotBytes(w, 1)
	data = bytes.Clone(data)
	head := w.m.head()
	if seq == 0 || len(data) == 0 || head == 0 {
		t.Fatalf("Publish left seq %d, %d bytes, journal head %d", seq, len(data), head)
	}
	var p Pending
	for _, c := range []struct {
		name   string
		sl     Slot
		locate uint16
		nb, na int
		want   error
	}{
		{"unknown locate", Slot{}, 3, 1, 1, ErrUnknownLocate},
		{"slot of another locate", sl2, 1, 1, 1, ErrUnknownLocate},
		{"slot beyond the writer's", far, 1, 1, 1, ErrUnknownLocate},
		{"too many bids", sl1, 1, depth + 1, 0, ErrTooDeep},
		{"too many asks", sl1, 1, 0, depth + 1, ErrTooDeep},
		{"negative", sl1, 1, -1, 0, ErrTooDeep},
	} {
		s.Locate = c.locate
		if err := w.Begin(c.sl, s, c.nb, c.na, &p); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if seq2, data2 := slotBytes(w, 1); seq2 != seq || !bytes.Equal(data, data2) || w.m.head() != head {
		t.Fatalf("a refused Begin wrote the slot or the journal")
	}
	s.Locate = 1
	if err := w.Begin(sl1, s, 1, 1, &p); err != nil {
		t.Fatal(err)
	}
	w.Commit(&p)
	if p.Bids != nil || p.Asks != nil {
		t.Error("Commit left the level vectors in the Pending")
	}
	w.Close()
	if err := w.Begin(sl1, s, 1, 1, &p); !errors.Is(err, ErrClosed) {
		t.Errorf("Begin after Close: %v", err)
	}
	if _, err := w.Slot(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Slot after Close: %v", err)
	}
}

// TestBeginAllocs: Begin and Commit allocate nothing (after a Pending's
// first use on the copying path), nor do BeginDirect and CommitDirect.
func TestBeginAllocs(t *testing.T) {
	bothLevelPaths(t, func(t *testing.T) {
		const depth = 10
		w := testWriter(t, Config{Instruments: 4, Depth: depth, SingleWriter: true})
		w.Register(1, "AAPL")
		sl, err := w.Slot(1)
		if err != nil {
			t.Fatal(err)
		}
		s := newSnapshot(depth)
		var p Pending
		k := uint64(0)
		publish := func() {
			k++
			fillSnapshot(s, 1, k, depth)
			if err := w.Begin(sl, s, len(s.Bids), len(s.Asks), &p); err != nil {
				t.Fatal(err)
			}
			copy(p.Bids, s.Bids)
			copy(p.Asks, s.Asks)
			w.Commit(&p)
		}
		publish()
		if a, exact := race.AllocsPerRun(t, 1000, publish); exact && a != 0 {
			t.Errorf("Begin+Commit: %v allocs, want 0", a)
		}
		if !levelsInPlace {
			return // BeginDirect declines
		}
		direct := func() {
			k++
			fillSnapshot(s, 1, k, depth)
			s.PublishTime = int64(k)
			if _, ok := directPublish(w, sl, s); !ok {
				t.Fatalf("BeginDirect declined publish %d", k)
			}
		}
		if a, exact := race.AllocsPerRun(t, 1000, direct); exact && a != 0 {
			t.Errorf("BeginDirect+CommitDirect: %v allocs, want 0", a)
		}
	})
}

// TestEncodeBothLevelPaths runs the encoding's reference tests on both
// level paths.
func TestEncodeBothLevelPaths(t *testing.T) {
	bothLevelPaths(t, TestEncodeMatchesBuilder)
}

// TestBeginSecondPublisher: a Begin of a slot whose count is odd (a Begin
// not yet committed: another publisher inside its write window) panics,
// whether the slot is given or looked up, and a Begin without a publish
// time stamps the current time; the slot is then published as usual.
func TestBeginSecondPublisher(t *testing.T) {
	bothLevelPaths(t, func(t *testing.T) {
		const depth = 4
		w := testWriter(t, Config{Instruments: 2, Depth: depth, SingleWriter: true})
		w.Register(1, "AAPL")
		sl, err := w.Slot(1)
		if err != nil {
			t.Fatal(err)
		}
		s := newSnapshot(depth)
		fillSnapshot(s, 1, 5, depth)
		s.PublishTime = 5
		var p, p2 Pending
		if err := w.Begin(sl, s, 1, 1, &p); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			sl   Slot
		}{{"given slot", sl}, {"looked up", Slot{}}} {
			func() {
				defer func() {
					if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "published concurrently") {
						t.Errorf("%s: a Begin of an odd slot: recovered %v, want the second-publisher panic", c.name, r)
					}
				}()
				w.Begin(c.sl, s, 1, 1, &p2)
			}()
		}
		w.Commit(&p)
		s.PublishTime = 0
		if err := w.Begin(sl, s, 1, 1, &p); err != nil {
			t.Fatal(err)
		}
		w.Commit(&p)
		seq, data := slotBytes(w, 1)
		if seq != 4 || len(data) == 0 {
			t.Fatalf("after the commit: seq %d, %d bytes", seq, len(data))
		}
		r, err := Open(w.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		v, err := r.Read(1, make([]byte, w.Info().MaxSnapshot))
		if err != nil {
			t.Fatal(err)
		}
		if v.PublishTime() == 0 {
			t.Error("a Begin without a publish time left it 0")
		}
	})
}
