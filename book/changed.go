package book

// What changed since the last publish: for each book and side, Apply keeps
// the best price whose level changed (an order added, reduced or removed,
// a level opened or emptied) since ClearChanged. Every level better than it
// is then the same as at ClearChanged, at the same rank, so a publisher that
// wrote the book's top levels then rewrites only the ranks from ChangedFrom
// on (feed/handler's Publisher, in place in the shm slot).

// touchedAll marks every level of a side as changed: above 1+ any key.
const touchedAll = 1 << 32

// touch records that the level with key on side of the book at locate
// changed. touched holds 1+key of the best such level (0: none).
func (bs *Books) touch(locate uint16, side Side, key uint32) {
	t := &bs.touched[locate][side&1]
	if k := uint64(key) + 1; k > *t {
		*t = k
	}
}

// ChangedFrom returns the first rank (0 is best) of side, at most n, whose
// level may have changed since the last ClearChanged (or Books.Reset):
// the levels at the ranks below it have the same price, shares and orders
// as then. It reads at most n ladder entries.
func (b *Book) ChangedFrom(side Side, n int) int {
	lad := b.sides[side&1]
	t := b.bs.touched[b.locate][side&1]
	n = min(n, len(lad))
	for r := 0; r < n; r++ {
		if uint64(lad[len(lad)-1-r].key) < t {
			return r
		}
	}
	return n
}

// ClearChanged marks both sides of the book unchanged (after a publish).
func (b *Book) ClearChanged() { b.bs.touched[b.locate] = [2]uint64{} }

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
