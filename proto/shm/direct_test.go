package shm

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// directPublish publishes s into locate's slot sl of w through BeginDirect,
// its fields stored into the table it hands out, and CommitDirect; false
// if BeginDirect declined. moved is BeginDirect's.
func directPublish(w *Writer, sl Slot, s *Snapshot) (moved, ok bool) {
	t, bids, asks, n, moved := w.BeginDirect(sl, s.Locate, len(s.Bids), len(s.Asks), s.PublishTime)
	if t == nil {
		return false, false
	}
	t.set(s)
	copy(bids, s.Bids)
	copy(asks, s.Asks)
	w.CommitDirect(t, n)
	return moved, true
}

// TestBeginDirectMatchesPublish: a publish through BeginDirect (fields
// stored into the slot's table, levels into its vectors) and CommitDirect leaves
// the same slot bytes, version and journal record as Publish of the same
// snapshot, with and without Config.SingleWriter, over random snapshots at
// random depths and symbol lengths, with garbage of longer earlier
// snapshots left in the slots. A Table field at the wrong offset, a count
// or vector offset laid out unlike writeTable's, or a length off by a
// level fails it. BeginDirect's moved is true exactly when the slot held no
// snapshot or the previous one had another number of bids.
func TestBeginDirectMatchesPublish(t *testing.T) {
	if cpu.IsBigEndian {
		t.Skip("BeginDirect declines on a big-endian machine (TestBeginDirectDeclines)")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for round := 0; round < 20; round++ {
		depth := 1 + rng.IntN(40)
		cfg := Config{Instruments: 8, Depth: depth, SingleWriter: round%2 == 0}
		w, wd, slots := writerPair(t, rng, cfg)
		var lastBids [8]int // by locate - 1: the bids last published, -1 none
		for i := range lastBids {
			lastBids[i] = -1
		}
		for i := 0; i < 200; i++ {
			s := randomSnapshot(rng, depth)
			s.Locate = uint16(1 + rng.IntN(8))
			if err := w.Publish(s); err != nil {
				t.Fatal(err)
			}
			moved, ok := directPublish(wd, slots[s.Locate-1], s)
			if !ok {
				t.Fatalf("round %d, publish %d: BeginDirect declined a publish of locate %d into its slot, %d bids, %d asks at depth %d",
					round, i, s.Locate, len(s.Bids), len(s.Asks), depth)
			}
			if last := lastBids[s.Locate-1]; moved != (last != len(s.Bids)) {
				t.Fatalf("round %d, publish %d, locate %d: BeginDirect's moved %v, %d bids after %d", round, i, s.Locate, moved, len(s.Bids), last)
			}
			lastBids[s.Locate-1] = len(s.Bids)
			seq, data := slotBytes(w, s.Locate)
			seqD, dataD := slotBytes(wd, s.Locate)
			if seq != seqD || !bytes.Equal(data, dataD) {
				t.Fatalf("round %d, publish %d, locate %d: BeginDirect/CommitDirect wrote seq %d\n%x\nPublish seq %d\n%x", round, i, s.Locate, seqD, dataD, seq, data)
			}
			h, hd := w.m.head(), wd.m.head()
			stamp, rec := w.m.record(&w.l, h-1)
			stampD, recD := wd.m.record(&wd.l, hd-1)
			if h != hd || *stamp != *stampD || *rec != *recD {
				t.Fatalf("round %d, publish %d: journal head %d, newest record stamp %d data %#x after BeginDirect; %d, %d, %#x after Publish",
					round, i, hd, *stampD, *recD, h, *stamp, *rec)
			}
		}
	}
}

// TestBeginDirectDeclines: BeginDirect reports false, and writes neither
// the slot nor the journal, for every case it leaves to Begin.
func TestBeginDirectDeclines(t *testing.T) {
	const depth = 4
	w := testWriter(t, Config{Instruments: 4, Depth: depth, SingleWriter: true})
	for loc := uint16(1); loc <= 3; loc++ {
		if err := w.Register(loc, symbolOf(loc)); err != nil {
			t.Fatal(err)
		}
	}
	sl1, _ := w.Slot(1)
	sl2, _ := w.Slot(2)
	sl3, _ := w.Slot(3)
	// Locate 3 moves to another symbol: its first slot is retired.
	if _, _, err := w.Rebind(3, "OTHER", 1); err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(depth)
	fillSnapshot(s, 1, 5, depth)
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	var busy Pending
	for _, c := range []struct {
		name    string
		sl      Slot
		locate  uint16
		nb, na  int
		publish int64
		setup   func() (undo func())
	}{
		{"the zero Slot", Slot{}, 1, 1, 1, 7, nil},
		{"slot of another locate", sl2, 1, 1, 1, 7, nil},
		{"retired slot", sl3, 3, 1, 1, 7, nil},
		{"slot beyond the writer's", slotOf(MaxLocates-1, 2), 1, 1, 1, 7, nil},
		{"too many bids", sl1, 1, depth + 1, 0, 7, nil},
		{"too many asks", sl1, 1, 0, depth + 1, 7, nil},
		{"negative", sl1, 1, -1, 0, 7, nil},
		{"no publish time", sl1, 1, 1, 1, 0, nil},
		{"big-endian encoding", sl1, 1, 1, 1, 7, func() func() {
			levelsInPlace = false
			return func() { levelsInPlace = !cpu.IsBigEndian }
		}},
		{"a publish in progress", sl1, 1, 1, 1, 7, func() func() {
			if err := w.Begin(sl1, s, 1, 1, &busy); err != nil {
				t.Fatal(err)
			}
			return func() { w.Commit(&busy) }
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			undo := func() {}
			if c.setup != nil {
				undo = c.setup()
			}
			defer undo()
			// Every slot of the writer, the retired one too: a write
			// into the slot given, not locate 1's, is caught as well.
			before := allSlots(w)
			head := w.m.head()
			if tb, _, _, _, _ := w.BeginDirect(c.sl, c.locate, c.nb, c.na, c.publish); tb != nil {
				t.Fatalf("BeginDirect accepted it (table %p)", tb)
			}
			if after := allSlots(w); !bytes.Equal(before, after) || w.m.head() != head {
				t.Fatal("a declined BeginDirect wrote a slot or the journal")
			}
		})
	}
	w.Close()
	if tb, _, _, _, _ := w.BeginDirect(sl1, 1, 1, 1, 7); tb != nil {
		t.Error("BeginDirect after Close accepted")
	}
}

// allSlots is a copy of every slot of w, headers (seqlock words) included.
func allSlots(w *Writer) []byte {
	start := w.l.slotOff(0).off
	return bytes.Clone(w.m.mem[start : start+w.l.capacity*w.l.slotSize])
}
