package book

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestDuplicateSymbol: a symbol a Stock Directory message gives a second
// locate while the first still has it stays the first's, whichever is
// published first: the second is a duplicate (counted once per such
// message, its book kept and applied). When the holder leaves the symbol
// (given another, withdrawn, or another Books' locate: Claim), the
// duplicate given it first takes it; a Reset forgets every claim.
func TestDuplicateSymbol(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 100, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	dupe, other := itch.NewSymbol("DUPE"), itch.NewSymbol("OTHER")
	dir := func(loc uint16, sym itch.Symbol) {
		bs.Apply(itch.Msg((&itch.StockDirectoryFields{Header: itch.Header{Locate: loc}, Stock: sym}).Append(nil)))
	}
	check := func(step string, dups ...uint16) {
		t.Helper()
		for loc := uint16(1); loc <= 100; loc++ {
			want := false
			for _, d := range dups {
				want = want || d == loc
			}
			if b := bs.Book(loc); b != nil && b.Duplicate() != want {
				t.Errorf("%s: locate %d Duplicate %v, want %v", step, loc, b.Duplicate(), want)
			}
		}
	}
	dir(61, dupe)
	dir(70, dupe)
	dir(62, dupe)
	dir(62, dupe) // announced again: still a duplicate, counted again
	check("61, 70, 62", 70, 62)
	if _, changed := bs.Apply(itch.Msg((&itch.AddOrderFields{Header: itch.Header{Locate: 62}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}).Append(nil))); !changed || bs.Book(62).Orders() != 1 {
		t.Error("the duplicate's book does not apply its orders")
	}
	if d := bs.Stats().DuplicateSymbol; d != 3 || bs.SymbolsPromoted() != 0 {
		t.Fatalf("duplicate symbols %d, promoted %d; want 3, 0", d, bs.SymbolsPromoted())
	}
	dir(61, other) // the holder leaves: 70, given it before 62, takes it
	check("61 leaves", 62)
	bs.Withdraw(70) // 62 takes it
	check("70 withdrawn")
	bs.Claim(5, dupe) // another Books' locate, later: a duplicate there, nothing here
	check("claimed at 5")
	bs.Claim(9, other) // 61 has OTHER: 9 is a duplicate
	dir(61, dupe)      // 61 back to DUPE, which 62 has; 9 takes OTHER
	check("61 back", 61)
	bs.Claim(5, itch.Symbol{}) // withdrawn elsewhere: changes nothing here
	dir(62, other)             // 62 leaves DUPE: 61 takes it (5 left it); OTHER is 9's
	check("62 to OTHER", 62)
	if d, p := bs.Stats().DuplicateSymbol, bs.SymbolsPromoted(); d != 5 || p != 4 {
		t.Fatalf("duplicate symbols %d, promoted %d; want 5, 4", d, p)
	}
	bs.Reset()
	dir(62, other)
	check("after Reset")
	if bs.Stats().DuplicateSymbol != 5 {
		t.Fatalf("duplicate symbols %d after Reset, want 5 (a counter)", bs.Stats().DuplicateSymbol)
	}
}

// TestClaimsRandom drives the claims (their hash table of holders above
// all: its deletions) with random Stock Directory messages, withdrawals
// and other Books' claims over few symbols, and compares Duplicate for
// every locate with the naive rule (refBooks.duplicate): a locate is a
// duplicate when a locate still given its symbol was given it earlier.
func TestClaimsRandom(t *testing.T) {
	for _, c := range []struct{ locates, symbols int }{{16, 12}, {200, 24}, {200, 150}} {
		t.Run(fmt.Sprintf("%d locates %d symbols", c.locates, c.symbols), func(t *testing.T) {
			claimsRandom(t, uint16(c.locates), c.symbols)
		})
	}
}

func claimsRandom(t *testing.T, locates uint16, symbols int) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: int(locates), MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	ref := map[uint16]refClaim{}
	var n uint64
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20_000 {
		loc := uint16(1 + rng.IntN(int(locates)))
		sym := itch.NewSymbol(fmt.Sprintf("S%d", rng.IntN(symbols)))
		r := rng.IntN(10)
		switch {
		case r == 0:
			bs.Claim(loc, itch.Symbol{})
			delete(ref, loc)
		case r < 4:
			bs.Claim(loc, sym)
		default:
			bs.Apply(itch.Msg((&itch.StockDirectoryFields{Header: itch.Header{Locate: loc}, Stock: sym}).Append(nil)))
		}
		if r != 0 && ref[loc].sym != sym {
			n++
			ref[loc] = refClaim{sym: sym, at: n}
		}
		if i%7 == 0 || i == 19_999 {
			naive := &refBooks{claims: ref}
			for l := uint16(1); l <= locates; l++ {
				if got, want := bs.claims.duplicate(l), naive.duplicate(l); got != want {
					t.Fatalf("op %d: locate %d duplicate %v, want %v", i, l, got, want)
				}
			}
		}
	}
	if bs.claims.held == 0 || bs.SymbolsPromoted() == 0 {
		t.Fatalf("held %d, promoted %d: the test misses a case", bs.claims.held, bs.SymbolsPromoted())
	}
}
