package handler

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"unsafe"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// inPlacePair publishes the same books twice: pub rewrites each changed
// book in place from the first changed rank, as the pipeline does; full
// rewrites every level of each changed book. flush compares the two feeds'
// snapshots byte for byte.
type inPlacePair struct {
	t          *testing.T
	depth      int
	bs, bsFull *book.Books
	pub, full  *Publisher
	r, rFull   *shm.Reader
	buf, bufF  []byte
	flushes    int
	partial    int // in-place publishes that kept some levels of a side
}

func newInPlacePair(t *testing.T, depth int) *inPlacePair {
	p := &inPlacePair{t: t, depth: depth}
	cfg := book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16}
	for i, dst := range []struct {
		bs  **book.Books
		pub **Publisher
		r   **shm.Reader
	}{{&p.bs, &p.pub, &p.r}, {&p.bsFull, &p.full, &p.rFull}} {
		name := fmt.Sprintf("fhinplace-%d-%d-%d", os.Getpid(), depth, i)
		w, err := shm.Create(shm.Config{Name: name, Instruments: 1024, Depth: depth, SingleWriter: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close(); shm.Remove(name) })
		bs, err := book.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := shm.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		*dst.bs, *dst.pub, *dst.r = bs, NewPublisher(w, bs, depth), r
	}
	p.full.rewriteAll = true
	n := p.r.Info().MaxSnapshot
	p.buf, p.bufF = make([]byte, n), make([]byte, n)
	return p
}

// apply applies one message to both books.
func (p *inPlacePair) apply(m itch.Msg, seq uint64) {
	loc, changed := p.bs.Apply(m)
	p.pub.Applied(loc, changed, seq, int64(seq))
	loc, changed = p.bsFull.Apply(m)
	p.full.Applied(loc, changed, seq, int64(seq))
}

// do runs op on both books (the order methods, without a message).
func (p *inPlacePair) do(loc uint16, seq uint64, op func(*book.Books) bool) {
	p.pub.Applied(loc, op(p.bs), seq, 0)
	p.full.Applied(loc, op(p.bsFull), seq, 0)
}

// publishTime is where the snapshot's publish time lies in a slot's
// FlatBuffer (docs/SHM.md): each Flush stamps its own, so check ignores it.
const publishTime = 48 + 32

// flush flushes both publishers and checks every published locate.
func (p *inPlacePair) flush() {
	t := p.t
	for b := range p.bs.All() {
		for side := book.Bid; side <= book.Ask; side++ {
			if r := b.ChangedFrom(side, p.pub.locs[b.Locate()].changed, p.depth); r > 0 && r < min(p.depth, b.Levels(side)) {
				p.partial++
			}
		}
	}
	p.pub.Flush()
	p.full.Flush()
	p.flushes++
	if p.pub.Errors != 0 || p.full.Errors != 0 {
		t.Fatalf("publish errors: in place %d, full %d", p.pub.Errors, p.full.Errors)
	}
	asks := 164 + 16*p.depth // the ask vector's count (docs/SHM.md)
	for _, loc := range p.rFull.Locates() {
		vf, errF := p.rFull.Read(loc, p.bufF)
		v, err := p.r.Read(loc, p.buf)
		if errors.Is(errF, shm.ErrNoData) && errors.Is(err, shm.ErrNoData) {
			continue
		}
		if err != nil || errF != nil {
			t.Fatalf("flush %d locate %d: read %v, full %v", p.flushes, loc, err, errF)
		}
		got, want := v.Bytes(), vf.Bytes()
		clear(got[publishTime : publishTime+8])
		clear(want[publishTime : publishTime+8])
		if !bytes.Equal(got, want) {
			t.Fatalf("depth %d flush %d locate %d: in-place slot differs from a full rewrite\n got %x\nwant %x", p.depth, p.flushes, loc, got, want)
		}
		// And both are the book: the top levels, zeros past each count.
		b := p.bs.Book(loc)
		for side, n := range []int{v.BidsLength(), v.AsksLength()} {
			lv := b.AppendDepth(book.Side(side), nil, p.depth)
			if n != len(lv) {
				t.Fatalf("flush %d locate %d side %d: %d levels, book has %d", p.flushes, loc, side, n, len(lv))
			}
			for i, l := range lv {
				var sl shm.Level
				if side == 0 {
					sl, _ = v.Bid(i)
				} else {
					sl, _ = v.Ask(i)
				}
				if sl != shm.Level(l) {
					t.Fatalf("flush %d locate %d side %d rank %d: %+v, book %+v", p.flushes, loc, side, i, sl, l)
				}
			}
			at := 156 + 4 + 16*n
			end := asks
			if side == 1 {
				at, end = asks+4+16*n, len(got)
			}
			if slices.ContainsFunc(got[at:end], func(c byte) bool { return c != 0 }) {
				t.Fatalf("flush %d locate %d side %d: bytes past the %d levels are not zero: %x", p.flushes, loc, side, n, got[at:end])
			}
		}
	}
}

// TestPublishInPlaceMatchesFullRewrite: after every flush, the slots that
// the Publisher rewrites in place hold the same bytes as slots rewritten
// in full, and decode to the books' top levels, at depths 1, 5, 10 and 20,
// on a generated day (with a GLIMPSE-style rebuild halfway: stale, flush,
// Reset, the day replayed from the start, republish everything) and on a
// random stream whose prices sit on a narrow grid, so that levels open,
// empty and shift ranks all the time.
func TestPublishInPlaceMatchesFullRewrite(t *testing.T) {
	msgs := dayMessages(t, dayPacketsSized(t, 40_000, 300))
	for _, depth := range []int{1, 5, 10, 20} {
		t.Run(fmt.Sprintf("day/depth=%d", depth), func(t *testing.T) {
			p := newInPlacePair(t, depth)
			half := len(msgs) / 2
			for i, ms := range msgs {
				for _, m := range ms {
					p.apply(itch.Msg(m), uint64(i))
				}
				p.flush()
				if i != half {
					continue
				}
				// The shard's markerRebuild, the snapshot's messages,
				// markerRebuilt, markerWhole; with a flush of the half
				// rebuilt books on the way (the shard publishes
				// nothing while rebuilding; a stricter case).
				p.pub.SetStale(true)
				p.full.SetStale(true)
				p.flush()
				p.bs.Reset()
				p.bsFull.Reset()
				for j, ms := range msgs[:i+1] {
					for _, m := range ms {
						p.apply(itch.Msg(m), uint64(j))
					}
					if j == i/2 {
						p.flush()
					}
				}
				p.pub.MarkAllDirty()
				p.full.MarkAllDirty()
				p.pub.SetStale(false)
				p.full.SetStale(false)
				p.flush()
			}
			t.Logf("%d flushes, %d books published in place, %d sides kept some levels", p.flushes, p.pub.Published, p.partial)
		})
	}
	for _, depth := range []int{1, 5, 10, 20} {
		t.Run(fmt.Sprintf("random/depth=%d", depth), func(t *testing.T) {
			p := newInPlacePair(t, depth)
			randomStream(p, 40_000, uint64(depth))
			if p.partial < 1000 && depth > 1 {
				t.Fatalf("only %d partial rewrites: the stream does not exercise them", p.partial)
			}
			t.Logf("%d flushes, %d sides kept some levels", p.flushes, p.partial)
		})
	}
}

// randomStream applies n random order messages to p's books, four
// instruments, prices on a grid of 40 ticks, flushing every 1 to 6. Halfway
// it resets the books (a new day) and goes on without MarkAllDirty.
func randomStream(p *inPlacePair, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 3))
	announce := func() {
		for loc := uint16(1); loc <= 4; loc++ {
			p.do(loc, 0, func(bs *book.Books) bool { return bs.Announce(loc, itch.NewSymbol(fmt.Sprint("R", loc))) })
		}
	}
	announce()
	var live []uint64
	ref := uint64(1)
	for i := 0; i < n; i++ {
		seq := uint64(i)
		if i == n/2 {
			p.bs.Reset()
			p.bsFull.Reset()
			announce()
			live = live[:0]
		}
		if len(live) == 0 || rng.IntN(100) < 45 {
			loc, side := uint16(1+rng.IntN(4)), book.Side(rng.IntN(2))
			shares, price := uint32(1+rng.IntN(500)), uint32(10_000+100*rng.IntN(40))
			r := ref
			ref++
			p.do(loc, seq, func(bs *book.Books) bool { return bs.AddOrder(loc, r, side, shares, price) })
			live = append(live, r)
		} else {
			k := rng.IntN(len(live))
			r := live[k]
			o, loc, ok := p.bs.Order(r)
			if !ok {
				live = slices.Delete(live, k, k+1)
				continue
			}
			shares := uint32(1 + rng.IntN(int(o.Shares)))
			switch op := rng.IntN(4); op {
			case 0:
				p.do(loc, seq, func(bs *book.Books) bool { return bs.Execute(loc, r, shares, seq) })
			case 1:
				p.do(loc, seq, func(bs *book.Books) bool { return bs.Cancel(loc, r, shares) })
			case 2:
				p.do(loc, seq, func(bs *book.Books) bool { return bs.Delete(loc, r) })
			default:
				nr, price := ref, uint32(10_000+100*rng.IntN(40))
				ref++
				p.do(loc, seq, func(bs *book.Books) bool { return bs.Replace(loc, r, nr, shares, price) })
				live = append(live, nr)
			}
		}
		if rng.IntN(4) == 0 {
			p.flush()
		}
	}
	p.flush()
}

// TestLocStateSize: a message and a publish touch one cache line of the
// Publisher's per-locate state.
func TestLocStateSize(t *testing.T) {
	if s := unsafe.Sizeof(locState{}); s != 32 {
		t.Fatalf("locState is %d bytes, want 32", s)
	}
}
