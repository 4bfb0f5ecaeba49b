package book

import (
	"math/bits"
	"unsafe"
)

// ladder is a side's ladder: rungs p[:n] of an array of c, sorted by key,
// the best last. It is a slice in 16 bytes rather than 24, so that both
// sides' ladders and their best rungs (Book.top) fit on the book's first
// cache line.
type ladder struct {
	p *rung
	n uint32 // at most Config.MaxLevels, under 1<<31
	c uint32 // the array's length: at most twice n's bound, or the first array's
}

// rungs returns the ladder as a slice.
func (l ladder) rungs() []rung { return unsafe.Slice(l.p, l.c)[:l.n] }

// at returns rung i, for i < n, without a bounds check.
func (l ladder) at(i uint32) rung {
	return *(*rung)(unsafe.Add(unsafe.Pointer(l.p), uintptr(i)*unsafe.Sizeof(rung{})))
}

// set writes rung i, for i < c, without a bounds check.
func (l ladder) set(i uint32, r rung) {
	*(*rung)(unsafe.Add(unsafe.Pointer(l.p), uintptr(i)*unsafe.Sizeof(rung{}))) = r
}

// setLadder makes lad side's ladder of b, and its last rung, if any, the
// side's best (Book.top).
func (b *Book) setLadder(side Side, lad []rung) {
	b.sides[side] = ladder{p: unsafe.SliceData(lad), n: uint32(len(lad)), c: uint32(cap(lad))}
	if len(lad) > 0 {
		b.top[side] = lad[len(lad)-1]
	}
}

// ladders hands out the rung arrays of the books' ladders from one block
// that New allocates and touches, so that a ladder growing on the apply
// path neither allocates nor takes a page fault (a fault costs microseconds
// in a VM and made the replay's run-to-run spread). Arrays have
// power-of-two capacities from minLadder up; a ladder that grows gives its
// old array back to the free list of its size, for the next ladder to grow
// to that size. Only when the block is used up does a ladder grow on the Go
// heap (amortized doubling, as before).
type ladders struct {
	mem  []rung
	used int       // mem[:used] has been handed out
	free [32]int32 // per size class: 1 + offset in mem of the first free array, 0: none; linked through rung.lvl
}

// minLadder is the capacity of a side's first ladder array: 4 rungs, 32
// bytes, two arrays to a cache line. Most instruments rest on a level or
// two a side (on a generated day of 5,000 instruments the ladder an add
// finds holds 1.5 levels on average), and every order message reads its
// side's best rung: arrays of 16 rungs gave each ladder a line of its own
// and made the ladders four times the memory, most of it never read.
const minLadder = 4

// ladderRungs is the size of the block for maxLevels live levels: twice
// that (arrays are at most half empty after doubling), at most what int32
// offsets address.
func ladderRungs(maxLevels int) int {
	return min(max(2*maxLevels, 4*minLadder), 1<<30)
}

func ladderClass(c int) int { return bits.Len(uint(c)) - bits.Len(minLadder) }

// grow returns an array of twice lad's capacity (minLadder for none)
// holding lad's rungs, and takes lad's array back.
func (l *ladders) grow(lad []rung) []rung {
	c := max(minLadder, 2*cap(lad))
	var grown []rung
	if k := ladderClass(c); l.free[k] != 0 {
		off := int(l.free[k] - 1)
		l.free[k] = l.mem[off].lvl
		grown = l.mem[off : off+len(lad) : off+c]
	} else if l.used+c <= len(l.mem) {
		off := l.used
		l.used += c
		grown = l.mem[off : off+len(lad) : off+c]
	} else {
		grown = make([]rung, len(lad), c)
	}
	copy(grown, lad)
	l.put(lad)
	return grown
}

// put returns array s to its free list when it came from the block.
func (l *ladders) put(s []rung) {
	if cap(s) == 0 || len(l.mem) == 0 {
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(l.mem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	size := unsafe.Sizeof(rung{})
	if p < base || p >= base+uintptr(len(l.mem))*size {
		return // grown on the heap: the garbage collector has it
	}
	off := int((p - base) / size)
	k := ladderClass(cap(s))
	l.mem[off].lvl = l.free[k]
	l.free[k] = int32(off + 1)
}
