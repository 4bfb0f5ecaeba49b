package book

import (
	"math"
	"slices"
	"testing"
)

// Scripted streams: each case is a short stream aimed at one rule of the
// ITCH 5.0 specification or of doc.go's inconsistent input, run three
// ways. The two differential drivers (the numeric methods, and Apply of
// the encoded messages, 'A' sent as 'F' for every third reference)
// compare every level, queue, trade and counter with the reference book
// after each message (runDifferential); and Apply's result is checked
// against the case's own expectation, written from the specification,
// since the reference shares doc.go's model and could share its mistake.

func sA(loc uint16, ref uint64, side byte, shares, price uint32) op {
	return op{kind: 'A', locate: loc, ref: ref, side: side, shares: shares, price: price}
}
func sE(loc uint16, ref uint64, shares uint32, match uint64) op {
	return op{kind: 'E', locate: loc, ref: ref, shares: shares, match: match}
}
func sC(loc uint16, ref uint64, shares, price uint32, match uint64, printable bool) op {
	return op{kind: 'C', locate: loc, ref: ref, shares: shares, price: price, match: match, printable: printable}
}
func sX(loc uint16, ref uint64, shares uint32) op {
	return op{kind: 'X', locate: loc, ref: ref, shares: shares}
}
func sD(loc uint16, ref uint64) op { return op{kind: 'D', locate: loc, ref: ref} }
func sU(loc uint16, ref, newRef uint64, shares, price uint32) op {
	return op{kind: 'U', locate: loc, ref: ref, newRef: newRef, shares: shares, price: price}
}
func sTrade(kind byte, loc uint16, volume uint64, price uint32, match uint64) op {
	return op{kind: kind, locate: loc, volume: volume, price: price, match: match}
}
func sB(loc uint16, match uint64) op { return op{kind: 'B', locate: loc, match: match} }

// scriptConfig has 16 home slots, so references 16 apart share one.
var scriptConfig = Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 64, RefTableSize: 16, Overflow: 16}

const maxPrice = math.MaxUint32

var scripts = []struct {
	name string
	ops  []op
	cfg  Config           // scriptConfig when zero
	want string           // render of locate 1 after the stream
	s    func(Stats) bool // the counters it must leave
}{
	{"C at another price leaves the order at its level",
		[]op{sA(1, 1, 'B', 100, 1000), sA(1, 2, 'B', 50, 1000), sA(1, 3, 'S', 40, 1100),
			sC(1, 1, 30, 1010, 1, true), sC(1, 3, 10, 1090, 2, false), sC(1, 1, 70, 990, 3, true)},
		Config{}, "B 1000 50/1 [2:50] | A 1100 30/1 [3:30] | last 70@990 vol 100",
		func(s Stats) bool { return s.Inconsistencies() == 0 && s.Levels == 2 }},
	{"E of more shares than left removes the order",
		[]op{sA(1, 1, 'S', 100, 1100), sA(1, 2, 'S', 10, 1100), sE(1, 1, 150, 1)},
		Config{}, "B | A 1100 10/1 [2:10] | last 150@1100 vol 150",
		func(s Stats) bool { return s.OverExecution == 1 && s.Orders == 1 }},
	{"E of the order a replace added, not of the original",
		[]op{sA(1, 1, 'B', 100, 1000), sA(1, 2, 'B', 20, 1010), sU(1, 1, 5, 80, 1010), sE(1, 5, 30, 1), sE(1, 1, 5, 2)},
		Config{}, "B 1010 70/2 [2:20 5:50] | A | last 30@1010 vol 30",
		func(s Stats) bool { return s.UnknownRefExecute == 1 && s.Levels == 1 }},
	{"X of more than left, D, D again",
		[]op{sA(1, 1, 'B', 100, 1000), sA(1, 2, 'B', 100, 1000), sX(1, 1, 200), sD(1, 2), sD(1, 2)},
		Config{}, "B | A | last 0@0 vol 0",
		func(s Stats) bool {
			return s.OverCancel == 1 && s.UnknownRefDelete == 1 && s.Levels == 0 && s.Orders == 0
		}},
	{"U to a live reference leaves that order alone",
		[]op{sA(1, 1, 'B', 100, 1000), sA(1, 2, 'S', 50, 1100), sA(1, 3, 'S', 60, 1100), sU(1, 1, 2, 70, 1005)},
		Config{}, "B | A 1100 110/2 [2:50 3:60] | last 0@0 vol 0",
		func(s Stats) bool { return s.DuplicateAdd == 1 && s.Orders == 2 }},
	{"U of an unknown reference adds nothing",
		[]op{sA(1, 1, 'B', 100, 1000), sU(1, 9, 10, 70, 1005), sE(1, 10, 1, 1)},
		Config{}, "B 1000 100/1 [1:100] | A | last 0@0 vol 0",
		func(s Stats) bool { return s.UnknownRefReplace == 1 && s.UnknownRefExecute == 1 && s.Orders == 1 }},
	{"U at the same price goes to the back of the level",
		[]op{sA(1, 1, 'B', 100, 1000), sA(1, 2, 'B', 100, 1000), sA(1, 3, 'B', 100, 1000), sU(1, 1, 4, 100, 1000)},
		Config{}, "B 1000 300/3 [2:100 3:100 4:100] | A | last 0@0 vol 0",
		func(s Stats) bool { return s.Inconsistencies() == 0 }},
	{"E/X/D/U of another locate's order are of an unknown reference",
		[]op{sA(1, 1, 'B', 100, 1000), sU(2, 1, 5, 70, 1005), sE(2, 5, 1, 1), sX(2, 1, 1), sD(2, 1), sE(2, 1, 1, 2)},
		Config{}, "B 1000 100/1 [1:100] | A | last 0@0 vol 0",
		func(s Stats) bool {
			return s.UnknownRefReplace == 1 && s.UnknownRefExecute == 2 && s.UnknownRefCancel == 1 && s.UnknownRefDelete == 1 && s.Orders == 1
		}},
	{"a reference live on another locate is another order",
		[]op{sA(1, 1, 'B', 100, 1000), sA(2, 1, 'S', 50, 1010), sE(2, 1, 20, 1), sX(1, 1, 10), sA(1, 1, 'B', 1, 1000)},
		Config{}, "B 1000 90/1 [1:90] | A | last 0@0 vol 0",
		func(s Stats) bool { return s.DuplicateAdd == 1 && s.Orders == 2 && s.Inconsistencies() == 1 }},
	{"U keeps an ask an ask, whatever its new price",
		[]op{sA(1, 1, 'S', 100, 1100), sA(1, 2, 'B', 10, 1000), sU(1, 1, 5, 30, 900)},
		Config{}, "B 1000 10/1 [2:10] | A 900 30/1 [5:30] | last 0@0 vol 0",
		func(s Stats) bool { return s.Inconsistencies() == 0 }},
	{"prices 0 and 2^32-1 on both sides",
		[]op{sA(1, 1, 'B', 10, 0), sA(1, 2, 'B', 20, maxPrice), sA(1, 3, 'B', 30, 1000),
			sA(1, 4, 'S', 40, 0), sA(1, 5, 'S', 50, maxPrice), sA(1, 6, 'S', 60, 1000), sA(1, 7, 'B', 5, maxPrice),
			sE(1, 2, 5, 1), sC(1, 4, 1, maxPrice, 2, true)},
		Config{}, "B 4294967295 20/2 [2:15 7:5] 1000 30/1 [3:30] 0 10/1 [1:10] | A 0 39/1 [4:39] 1000 60/1 [6:60] 4294967295 50/1 [5:50] | last 1@4294967295 vol 6",
		func(s Stats) bool { return s.Inconsistencies() == 0 && s.Levels == 6 }},
	{"0 shares: add, execute, cancel, replace",
		[]op{sA(1, 1, 'B', 0, 1000), sA(1, 2, 'B', 10, 1000), sE(1, 2, 0, 1), sC(1, 2, 0, 1000, 2, true), sX(1, 2, 0), sU(1, 2, 3, 0, 1005), sE(1, 3, 1, 3)},
		Config{}, "B | A | last 0@0 vol 0",
		func(s Stats) bool { return s.ZeroShares == 5 && s.UnknownRefExecute == 1 && s.Levels == 0 }},
	{"P, Q and B leave the book",
		[]op{sA(1, 1, 'B', 100, 1000), sA(1, 2, 'S', 100, 1100), sTrade('P', 1, 300, 1050, 1), sTrade('Q', 1, 1000, 1060, 2),
			sTrade('Q', 1, 0, 1070, 3), sB(1, 2), sB(1, 1), sTrade('P', 1, 0, 1080, 4)},
		Config{}, "B 1000 100/1 [1:100] | A 1100 100/1 [2:100] | last 0@0 vol 0",
		func(s Stats) bool { return s.ZeroShares == 1 && s.BrokenUnmatched == 0 && s.Orders == 2 }},
	{"a reference reused after a delete and a full execution joins the back",
		[]op{sA(1, 1, 'B', 10, 1000), sA(1, 2, 'B', 20, 1000), sD(1, 1), sA(1, 1, 'B', 30, 1000), sE(1, 2, 20, 1), sA(1, 2, 'B', 40, 1000)},
		Config{}, "B 1000 70/2 [1:30 2:40] | A | last 20@1000 vol 20",
		func(s Stats) bool { return s.Inconsistencies() == 0 }},
	{"references sharing a slot or low bits never reach another order",
		[]op{sA(1, 3, 'B', 10, 1000), sE(1, 19, 5, 1), sA(1, 19, 'B', 20, 1000), sD(1, 3), sE(1, 3, 1, 2),
			sX(1, 3+1<<32, 1), sD(1, 19+1<<32), sU(1, 35, 36, 1, 1), sE(1, 19, 5, 3)},
		Config{}, "B 1000 15/1 [19:15] | A | last 5@1000 vol 5",
		func(s Stats) bool {
			return s.UnknownRefExecute == 2 && s.UnknownRefCancel == 1 && s.UnknownRefDelete == 1 && s.UnknownRefReplace == 1 && s.Orders == 1
		}},
	{"levels sorted both sides, emptied in the middle and refilled",
		[]op{sA(1, 1, 'B', 10, 1000), sA(1, 2, 'B', 20, 1020), sA(1, 3, 'B', 30, 1010), sA(1, 4, 'S', 40, 1050),
			sA(1, 5, 'S', 50, 1030), sA(1, 6, 'S', 60, 1040), sA(1, 7, 'B', 70, 1010), sD(1, 3), sX(1, 7, 70),
			sE(1, 6, 60, 1), sA(1, 8, 'S', 80, 1040), sA(1, 9, 'B', 90, 1010)},
		Config{}, "B 1020 20/1 [2:20] 1010 90/1 [9:90] 1000 10/1 [1:10] | A 1030 50/1 [5:50] 1040 80/1 [8:80] 1050 40/1 [4:40] | last 60@1040 vol 60",
		func(s Stats) bool { return s.OverCancel == 0 && s.Levels == 6 && s.Orders == 6 }},
	{"capacity: a dropped add flags its book, a replace frees before it adds",
		[]op{sA(1, 1, 'B', 10, 1000), sA(1, 2, 'B', 20, 1010), sA(1, 3, 'B', 30, 1020), // a third level: dropped
			sU(1, 1, 4, 40, 1030),                          // the level of 1 frees first: 4 fits
			sA(1, 5, 'B', 50, 1010), sU(1, 5, 6, 60, 1040), // 1010 stays: no level for 6
			sA(1, 7, 'B', 70, 1030), sA(1, 8, 'B', 80, 1030)}, // the third order, then none left
		Config{MaxOrders: 3, MaxLocates: 4, MaxLevels: 2}, "B 1030 110/2 [4:40 7:70] 1010 20/1 [2:20] | A | last 0@0 vol 0",
		func(s Stats) bool {
			return s.LevelCapacity == 2 && s.OrderCapacity == 1 && s.Incomplete == 1 && s.Orders == 3
		}},
	{"capacity: a replace dropped for want of a level flags its book alone",
		[]op{sA(2, 10, 'S', 10, 1100), sA(2, 11, 'S', 10, 1100), sA(1, 1, 'B', 10, 1000), sU(2, 10, 12, 10, 1200)},
		Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 2}, "B 1000 10/1 [1:10] | A | last 0@0 vol 0",
		func(s Stats) bool { return s.LevelCapacity == 1 && s.Incomplete == 1 && s.Orders == 2 }},
	{"capacity: a replace dropped for want of an overflow slot flags its book",
		[]op{sA(1, 1, 'B', 10, 1000), sA(1, 17, 'B', 20, 1000), sA(1, 2, 'B', 30, 1000), sU(1, 2, 33, 40, 1000)},
		Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 8, RefTableSize: 16, Overflow: 1}, "B 1000 30/2 [1:10 17:20] | A | last 0@0 vol 0",
		func(s Stats) bool { return s.OrderCapacity == 1 && s.Incomplete == 1 && s.Orders == 2 }},
}

func TestScripts(t *testing.T) {
	for _, c := range scripts {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg == (Config{}) {
				cfg = scriptConfig
			}
			ops := append(announceOps(2), c.ops...)
			runDifferential(t, cfg, ops, applyOpNumeric)
			runDifferential(t, cfg, ops, applyOpITCH)
			bs, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range ops {
				applyOpITCH(bs, o)
			}
			if got := render(bs.Book(1)); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
			if s := bs.Stats(); !c.s(s) {
				t.Errorf("stats %+v", s)
			}
			if err := checkInvariants(bs); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestScriptDepth: the levels a publisher reads at depth N are the N best
// of each side, with every level's aggregates, and Levels counts those
// beyond N too.
func TestScriptDepth(t *testing.T) {
	bs, err := New(scriptConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range append(announceOps(1),
		sA(1, 1, 'B', 10, 1000), sA(1, 2, 'B', 20, 1020), sA(1, 3, 'B', 30, 1010), sA(1, 4, 'B', 5, 1020),
		sA(1, 5, 'S', 40, 1050), sA(1, 6, 'S', 50, 1030), sA(1, 7, 'S', 60, 1040)) {
		applyOpITCH(bs, o)
	}
	b := bs.Book(1)
	wantBids := []Level{{1020, 2, 25}, {1010, 1, 30}}
	wantAsks := []Level{{1030, 1, 50}, {1040, 1, 60}}
	if got := b.Depth(Bid, make([]Level, 0, 2)); !slices.Equal(got, wantBids) {
		t.Errorf("bids at depth 2: %v, want %v", got, wantBids)
	}
	if got := b.Depth(Ask, make([]Level, 0, 2)); !slices.Equal(got, wantAsks) {
		t.Errorf("asks at depth 2: %v, want %v", got, wantAsks)
	}
	bids, asks := make([]Level, 2), make([]Level, 2)
	b.Top(bids, asks)
	if !slices.Equal(bids, wantBids) || !slices.Equal(asks, wantAsks) {
		t.Errorf("Top at depth 2: %v %v, want %v %v", bids, asks, wantBids, wantAsks)
	}
	if b.Levels(Bid) != 3 || b.Levels(Ask) != 3 || b.Crossed() {
		t.Errorf("levels %d %d crossed %v, want 3 3 false", b.Levels(Bid), b.Levels(Ask), b.Crossed())
	}
	// A level moved in from beyond the depth when the best empties.
	applyOpITCH(bs, sD(1, 6))
	if got := b.Depth(Ask, make([]Level, 0, 2)); !slices.Equal(got, []Level{{1040, 1, 60}, {1050, 1, 40}}) {
		t.Errorf("asks at depth 2 after the best emptied: %v", got)
	}
}
