package book

import (
	"encoding/binary"
	"math/bits"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// claims is which locate holds each symbol in the session: the first
// locate a Stock Directory message gave it to. A later locate given the
// same symbol while the first still has it is a duplicate (bad input: one
// symbol at two locates in one session): its book is kept, but it is not
// the symbol's (Book.Duplicate), and a publisher leaves it out. When the
// holder leaves the symbol (given another, withdrawn), the duplicate
// claimed earliest takes it.
//
// The claims follow every Stock Directory message in the order of the
// feed, those of the books' own locates (Announce, Withdraw) and, when
// several Books share a feed by locate (book shards), those of the
// others' (Claim): every Books then decides alike, whichever locates it
// keeps. Only Stock Directory messages and Reset touch them, never an
// order message.
type claims struct {
	sym []itch.Symbol // by locate: the symbol it was given last (zero: none)
	at  []uint64      // by locate: n when it was given sym (for promote)
	// holders is a hash table of the locates holding a symbol (locate+1,
	// 0: empty), by their symbol (sym), linear probing: at most half
	// full, fixed at New, so a symbol given allocates nothing (the
	// opening) and Config.Bytes counts it.
	holders []uint16
	shift   uint8  // 64 - log2(len(holders))
	n       uint64 // symbols given since Reset
	held    int    // entries in holders
	dups    int    // locates whose symbol another locate holds
	// promoted counts duplicates that took their symbol (promote), for
	// a publisher to ask again: monotonic.
	promoted uint64
}

func newClaims(locates int) claims {
	n := holderSlots(locates)
	return claims{
		sym:     make([]itch.Symbol, locates),
		at:      make([]uint64, locates),
		holders: make([]uint16, n),
		shift:   uint8(64 - bits.TrailingZeros(uint(n))),
	}
}

// holderSlots is the size of the holders table for locates locates: a
// power of two at least twice as many.
func holderSlots(locates int) int { return 1 << bits.Len(uint(2*locates-1)) }

// find returns sym's slot in holders and the locate there (ok), or the
// empty slot where it would go.
func (c *claims) find(sym itch.Symbol) (i int, loc uint16, ok bool) {
	mask := len(c.holders) - 1
	for i = c.home(sym); ; i = (i + 1) & mask {
		e := c.holders[i]
		if e == 0 {
			return i, 0, false
		}
		if c.sym[e-1] == sym {
			return i, e - 1, true
		}
	}
}

// home is sym's first slot in holders (Fibonacci hashing).
func (c *claims) home(sym itch.Symbol) int {
	return int(binary.LittleEndian.Uint64(sym[:]) * 0x9E3779B97F4A7C15 >> c.shift)
}

// holder returns the locate holding sym, if any.
func (c *claims) holder(sym itch.Symbol) (uint16, bool) {
	_, loc, ok := c.find(sym)
	return loc, ok
}

// hold makes loc, whose sym is sym already, hold it; no locate does.
func (c *claims) hold(sym itch.Symbol, loc uint16) {
	i, _, _ := c.find(sym)
	c.holders[i] = loc + 1
	c.held++
}

// release empties sym's slot (its holder's sym is sym still), moving back
// the entries after it that could not take their home slot (linear
// probing's deletion: no tombstones).
func (c *claims) release(sym itch.Symbol) {
	i, _, ok := c.find(sym)
	if !ok {
		return
	}
	mask := len(c.holders) - 1
	for j := (i + 1) & mask; c.holders[j] != 0; j = (j + 1) & mask {
		k := c.home(c.sym[c.holders[j]-1])
		// The entry at j stays unless its home is cyclically outside
		// (i, j]: then it may move back to i.
		if (i <= j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			c.holders[i] = c.holders[j]
			i = j
		}
	}
	c.holders[i] = 0
	c.held--
}

// give records that locate loc was given symbol sym (the zero Symbol:
// none, withdrawn). It reports whether loc is a duplicate now: another
// locate holds sym. loc is within the books' locates and not 0.
func (c *claims) give(loc uint16, sym itch.Symbol) (duplicate bool) {
	old := c.sym[loc]
	if old == sym {
		return c.duplicate(loc)
	}
	if old != (itch.Symbol{}) {
		if h, _ := c.holder(old); h == loc {
			c.release(old) // found by loc's symbol, old still
			c.sym[loc] = itch.Symbol{}
			c.promote(old)
		} else {
			c.sym[loc] = itch.Symbol{}
			c.dups--
		}
	}
	if sym == (itch.Symbol{}) {
		return false
	}
	c.sym[loc] = sym
	c.n++
	c.at[loc] = c.n
	if _, held := c.holder(sym); held {
		c.dups++
		return true
	}
	c.hold(sym, loc)
	return false
}

// promote gives sym, just left by its holder, to the duplicate that was
// given it first, if any. Rare: a scan of the locates, only while a
// duplicate stands.
func (c *claims) promote(sym itch.Symbol) {
	if c.dups == 0 {
		return
	}
	best := -1
	for loc := range c.sym {
		if c.sym[loc] == sym && (best < 0 || c.at[loc] < c.at[best]) {
			best = loc
		}
	}
	if best >= 0 {
		c.hold(sym, uint16(best))
		c.dups--
		c.promoted++
	}
}

// duplicate reports whether another locate holds loc's symbol.
func (c *claims) duplicate(loc uint16) bool {
	sym := c.sym[loc]
	if sym == (itch.Symbol{}) {
		return false
	}
	h, _ := c.holder(sym)
	return h != loc
}

// reset forgets every claim (a rebuild: the locates are announced again).
func (c *claims) reset() {
	if c.n == 0 {
		return
	}
	clear(c.sym)
	clear(c.at)
	clear(c.holders)
	c.n, c.held, c.dups = 0, 0, 0
}

// Claim records a Stock Directory message that gave locate to symbol when
// another Books keeps the locate (a book shard's neighbour): these books
// keep nothing of it but the claim, so that a locate of theirs given the
// same symbol later is found a duplicate (Book.Duplicate), and one given
// it earlier keeps it, as a single Books would decide. The zero Symbol
// withdraws the locate's claim (its Books ended it: Withdraw). Locate 0
// and locates above Config.MaxLocates claim nothing, as Announce.
func (bs *Books) Claim(locate uint16, symbol itch.Symbol) {
	if locate == 0 || int(locate) >= len(bs.books) {
		return
	}
	bs.claims.give(locate, symbol)
}

// Duplicate reports whether another locate holds the book's symbol in the
// session: a Stock Directory message gave it to that locate first (Books
// counts the later one in Stats.DuplicateSymbol). Such a book is kept and
// applied, but is not the symbol's: a publisher leaves it out, until the
// holder leaves the symbol (then the duplicate given it first takes it) or
// the books are Reset.
func (b *Book) Duplicate() bool { return b.bs.claims.duplicate(b.locate) }

// SymbolsPromoted counts the duplicates (Book.Duplicate) that took their
// symbol since New: their holder left it. One load, for a publisher that
// left duplicates out to ask again when it moves.
func (bs *Books) SymbolsPromoted() uint64 { return bs.claims.promoted }
