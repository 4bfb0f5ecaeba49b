package book

// What changed, for a publisher that rewrites only that: Apply (and the
// order methods) mark, per side, the best price whose level they changed
// (an order added, reduced or removed, a level opened or emptied). Every
// level better than it is as it was, at the same rank. The publisher takes
// the marks after each message (TakeChanged), merges them per instrument
// until it publishes the book, then asks the book for the first rank that
// may differ (ChangedFrom): feed/handler's Publisher rewrites the shm slot
// from there on. A Reset needs no mark of its own: every level a book has
// after it was added after it, and so marked.

// Changed marks, per side (Bid, Ask), the best level changed: 1 + its
// ladder key (the price for bids, ^price for asks, so larger is better), 0
// for none. A mark saturates at ChangedAll, which marks every level.
type Changed [2]uint32

// ChangedAll marks every level of a side as changed.
const ChangedAll = ^uint32(0)

// Merge adds the marks of o to c.
func (c *Changed) Merge(o Changed) {
	c[0] = max(c[0], o[0])
	c[1] = max(c[1], o[1])
}

// touch marks the level with key on side as changed.
func (bs *Books) touch(side Side, key uint32) {
	m := key + 1
	if m == 0 {
		m = ChangedAll // key ^0: the best possible price, every level
	}
	if c := &bs.changed[side&1]; m > *c {
		*c = m
	}
}

// TakeChanged returns the marks of the levels changed since the last call
// (on whichever book: take them after each message) and clears them.
func (bs *Books) TakeChanged() Changed {
	c := bs.changed
	bs.changed = Changed{}
	return c
}

// ChangedFrom returns the first rank (0 is best) of side, at most n, whose
// level may differ from when the levels marked in c were last published:
// the levels at the ranks below it are unchanged. It reads at most n
// ladder entries.
func (b *Book) ChangedFrom(side Side, c Changed, n int) int {
	m := c[side&1]
	if m == ChangedAll {
		return 0
	}
	lad := b.sides[side&1]
	n = min(n, len(lad))
	for r := 0; r < n; r++ {
		if lad[len(lad)-1-r].key < m { // at or below the best changed key
			return r
		}
	}
	return n
}

// AppendRanks appends the levels of side at ranks from to to-1 (0 is best;
// to is clamped to the levels there are) to dst.
func (b *Book) AppendRanks(side Side, dst []Level, from, to int) []Level {
	lad := b.sides[side&1]
	to = min(to, len(lad))
	for k := from; k < to; k++ {
		dst = append(dst, b.level(side, lad[len(lad)-1-k]))
	}
	return dst
}
