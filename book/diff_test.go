package book

import (
	"math/rand/v2"
	"testing"
)

// applyOp drives the fast book with one op through its numeric methods.
func applyOpNumeric(bs *Books, o op) {
	switch o.kind {
	case 'R':
		bs.Announce(o.locate, o.symbol)
	case 'A':
		side, ok := SideOf(o.side)
		if !ok {
			side = 7
		}
		bs.AddOrder(o.locate, o.ref, side, o.shares, o.price)
	case 'E':
		bs.Execute(o.locate, o.ref, o.shares, o.match)
	case 'C':
		bs.ExecuteWithPrice(o.locate, o.ref, o.shares, o.price, o.match, o.printable)
	case 'P':
		bs.Trade(o.locate, o.price, o.volume, o.match)
	case 'Q':
		bs.CrossTrade(o.locate, o.price, o.volume, o.match)
	case 'B':
		bs.BreakTrade(o.locate, o.match)
	case 'X':
		bs.Cancel(o.locate, o.ref, o.shares)
	case 'D':
		bs.Delete(o.locate, o.ref)
	case 'U':
		bs.Replace(o.locate, o.ref, o.newRef, o.shares, o.price)
	}
}

// opGen makes random, partly inconsistent op streams over a few locates.
type opGen struct {
	rng     *rand.Rand
	live    []uint64 // refs added (may be dead by now)
	nextRef uint64
	locates int
	matches []uint64 // match numbers given (recent ones)
	match   uint64
}

// nextMatch returns a new, increasing match number (rarely 0: no number).
func (g *opGen) nextMatch() uint64 {
	if g.rng.IntN(200) == 0 {
		return 0
	}
	g.match++
	g.matches = append(g.matches, g.match)
	if len(g.matches) > 4096 {
		g.matches = g.matches[2048:]
	}
	return g.match
}

// brokenMatch returns a match for a Broken Trade: mostly a recent one (of
// any locate, maybe broken already), sometimes one never given.
func (g *opGen) brokenMatch() uint64 {
	switch r := g.rng.IntN(10); {
	case r < 5 && len(g.matches) > 0:
		return g.matches[len(g.matches)-1-g.rng.IntN(min(len(g.matches), 4))] // the last trades
	case r < 8 && len(g.matches) > 0:
		return g.matches[g.rng.IntN(len(g.matches))]
	case r < 9:
		return g.match + 1 + g.rng.Uint64N(100)
	}
	return 0
}

func (g *opGen) ref() uint64 {
	r := g.rng.IntN(100)
	switch {
	case r < 75 && len(g.live) > 0:
		return g.live[g.rng.IntN(len(g.live))]
	case r < 85:
		return g.rng.Uint64N(1 << 12) // unknown or colliding with small refs
	case r < 92:
		return g.nextRef + 1<<32 // same low 32 bits as a real ref
	default:
		return g.rng.Uint64()
	}
}

func (g *opGen) locate() uint16 {
	if g.rng.IntN(50) == 0 {
		return uint16(g.rng.IntN(g.locates + 3)) // 0, unannounced, above max
	}
	return uint16(1 + g.rng.IntN(g.locates))
}

func (g *opGen) next() op {
	o := op{locate: g.locate()}
	o.shares = uint32(1 + g.rng.IntN(300))
	if g.rng.IntN(40) == 0 {
		o.shares = 0
	}
	o.price = uint32(1000 + 100*g.rng.IntN(30))
	switch r := g.rng.IntN(100); {
	case r < 2:
		o.kind = 'R'
		o.symbol = [8]byte{'S', byte('A' + o.locate%26), byte('A' + o.locate/26%26), ' ', ' ', ' ', ' ', ' '}
	case r < 45:
		o.kind = 'A'
		o.side = "BS"[g.rng.IntN(2)]
		if g.rng.IntN(100) == 0 {
			o.side = 'Z'
		}
		if g.rng.IntN(30) == 0 {
			o.ref = g.ref() // maybe a duplicate
		} else {
			g.nextRef++
			o.ref = g.nextRef
		}
		g.live = append(g.live, o.ref)
	case r < 53:
		o.kind = 'E'
		o.ref = g.ref()
		o.match = g.nextMatch()
	case r < 56:
		o.kind = 'C'
		o.ref = g.ref()
		o.printable = g.rng.IntN(2) == 0
		o.match = g.nextMatch()
	case r < 58:
		o.kind = "PQ"[g.rng.IntN(2)]
		o.volume = uint64(g.rng.IntN(1000))
		o.match = g.nextMatch()
	case r < 60:
		o.kind = 'B'
		o.match = g.brokenMatch()
	case r < 70:
		o.kind = 'X'
		o.ref = g.ref()
	case r < 88:
		o.kind = 'D'
		o.ref = g.ref()
	default:
		o.kind = 'U'
		o.ref = g.ref()
		if g.rng.IntN(30) == 0 {
			o.newRef = g.ref()
		} else {
			g.nextRef++
			o.newRef = g.nextRef
		}
		g.live = append(g.live, o.newRef)
	}
	if len(g.live) > 4096 {
		g.live = g.live[2048:]
	}
	return o
}

// announceAll makes locates 1..n known in both books.
func announceOps(n int) []op {
	var ops []op
	for l := 1; l <= n; l++ {
		ops = append(ops, op{kind: 'R', locate: uint16(l), symbol: [8]byte{'S', byte('0' + l%10), ' ', ' ', ' ', ' ', ' ', ' '}})
	}
	return ops
}

func runDifferential(t testing.TB, cfg Config, ops []op, apply func(*Books, op)) {
	bs, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newRefBooks(cfg)
	for i, o := range ops {
		apply(bs, o)
		r.apply(o)
		maxOverflowed = max(maxOverflowed, bs.stats.Overflowed)
		if err := compareBook(bs, r, o.locate); err != nil {
			t.Fatalf("op %d %+v: %v", i, o, err)
		}
		if err := compareStats(bs, r); err != nil {
			t.Fatalf("op %d %+v: %v", i, o, err)
		}
	}
	for l := 0; l <= cfg.MaxLocates; l++ {
		if err := compareBook(bs, r, uint16(l)); err != nil {
			t.Fatalf("end: %v", err)
		}
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatalf("end: %v", err)
	}
}

// maxOverflowed records the most orders ever held in overflow slots by a
// differential run, to prove the overflow path is exercised.
var maxOverflowed uint64

func randomOps(seed uint64, locates, n int) []op {
	g := &opGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), locates: locates}
	ops := announceOps(locates - 1) // the last locate stays unannounced until an 'R' op
	for range n {
		ops = append(ops, g.next())
	}
	return ops
}

func TestDifferentialRandomNumeric(t *testing.T) {
	for seed := range uint64(8) {
		cfg := Config{MaxOrders: 1 << 12, MaxLocates: 6, MaxLevels: 1 << 10, Overflow: 1 << 12}
		if seed%2 == 1 { // tiny capacities: capacity errors, wrap-around, overflow
			cfg = Config{MaxOrders: 40, MaxLocates: 6, MaxLevels: 24, Overflow: 40}
		}
		runDifferential(t, cfg, randomOps(seed, 6, 20000), applyOpNumeric)
	}
	if maxOverflowed == 0 {
		t.Error("overflow slots never used")
	}
	t.Logf("max orders in overflow slots: %d", maxOverflowed)
}

// checkInvariants walks every structure of bs and checks it against itself.
func checkInvariants(bs *Books) error {
	live, overflowed, ovfEntries := 0, 0, 0
	for i := range bs.orders {
		o := &bs.orders[i]
		if o.shares == 0 {
			continue
		}
		live++
		if uint64(i) > bs.homeMask {
			overflowed++
		} else if o.ref&bs.homeMask != uint64(i) {
			return errorf("order %d: ref %d not at its home slot", i, o.ref)
		}
		if got := bs.lookup(o.locate, o.ref); got != int32(i) {
			return errorf("order %d: lookup(%d, %d) = %d", i, o.locate, o.ref, got)
		}
	}
	for _, s := range bs.ovf {
		if s != 0 {
			ovfEntries++
		}
	}
	free := 0
	for oi := bs.ovfFree; oi != none; oi = bs.orders[oi].next {
		if bs.orders[oi].shares != 0 || uint64(oi) <= bs.homeMask {
			return errorf("free overflow slot %d is live or a home slot", oi)
		}
		free++
	}
	if uint64(live) != bs.stats.Orders || uint64(overflowed) != bs.stats.Overflowed || ovfEntries != overflowed ||
		free+overflowed != len(bs.orders)-int(bs.homeMask+1) {
		return errorf("live %d overflowed %d overflow entries %d free %d, stats %d %d",
			live, overflowed, ovfEntries, free, bs.stats.Orders, bs.stats.Overflowed)
	}
	levels := 0
	levelSeen := make([]bool, bs.levelUsed)
	for b := range bs.All() {
		n := 0
		for side := Bid; side <= Ask; side++ {
			if l := b.sides[side]; l.n > l.c || (l.c > 0) != (l.p != nil) {
				// ladder.at reads rungs below n without a bounds check.
				return errorf("locate %d %v: ladder of %d rungs in an array of %d at %p", b.locate, side, l.n, l.c, l.p)
			}
			lad := b.sides[side].rungs()
			if len(lad) > 0 && b.top[side] != lad[len(lad)-1] {
				return errorf("locate %d %v: best rung %+v, ladder's last %+v", b.locate, side, b.top[side], lad[len(lad)-1])
			}
			for k := range lad {
				r := &lad[k]
				if k > 0 && lad[k-1].key >= r.key {
					return errorf("locate %d %v: ladder not sorted at %d", b.locate, side, k)
				}
				price := sideKey(side, r.key)
				if r.lvl < 0 || r.lvl >= bs.levelUsed || levelSeen[r.lvl] {
					return errorf("locate %d %v level %d: level index %d bad or shared", b.locate, side, price, r.lvl)
				}
				levelSeen[r.lvl] = true
				l := &bs.levels[r.lvl]
				if l.key != r.key {
					return errorf("locate %d %v level %d: level key %d, rung key %d", b.locate, side, price, l.key, r.key)
				}
				var sh uint64
				var cnt uint32
				prev := int32(none)
				for oi := l.head; oi != none; oi = bs.orders[oi].next {
					o := &bs.orders[oi]
					if o.prev != prev || o.side != side || o.locate != b.locate || o.price != price || o.shares == 0 || o.level != r.lvl {
						return errorf("locate %d %v: order %d links/fields wrong", b.locate, side, oi)
					}
					sh += uint64(o.shares)
					cnt++
					prev = oi
				}
				if prev != l.tail || sh != l.shares || cnt != l.orders || cnt == 0 {
					return errorf("locate %d %v level %d: totals wrong", b.locate, side, price)
				}
				n += int(cnt)
				levels++
			}
		}
		if n != b.Orders() {
			return errorf("locate %d: %d orders in levels, Orders() %d", b.locate, n, b.Orders())
		}
	}
	if uint64(levels) != bs.stats.Levels {
		return errorf("ladders hold %d levels, stats %d", levels, bs.stats.Levels)
	}
	freeLevels := 0
	for li := bs.levelFree; li != none; li = bs.levels[li].head {
		if li < 0 || li >= bs.levelUsed || levelSeen[li] || freeLevels > len(levelSeen) {
			return errorf("free level %d is live, out of range or in a loop", li)
		}
		levelSeen[li] = true
		freeLevels++
	}
	if levels+freeLevels != int(bs.levelUsed) {
		return errorf("%d live and %d free levels, %d handed out", levels, freeLevels, bs.levelUsed)
	}
	return nil
}
