package handler

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestPartialPublishMatchesFull: the Publisher writes only the levels a
// batch changed (book.Book.TopChanged) into a slot written in place, and
// after every Flush each bound book's slot holds the same bytes as a full
// publish of the book (every level, shm.Writer.Publish) into a second
// feed: a reader that gets a snapshot through the seqlock gets one of
// these, never a mix of two snapshots' levels. Random batches of adds,
// deletes, partial and whole cancels and executions and replaces at every
// rank, sides deeper than the depth and emptied (the bid count changes,
// so the ask vector moves), books published through the general path
// (Begin, Commit) now and then, locates given another symbol (rebound to
// a fresh slot), withdrawn and announced again, rebuilds (BooksReset),
// and the depth changed midway (a new Publisher on the same books, into a
// feed of that depth).
func TestPartialPublishMatchesFull(t *testing.T) {
	defer func() { generalPathHook = nil }()
	const locates = 6
	for _, depths := range [][2]int{{1, 3}, {5, 10}, {10, 2}} {
		t.Run(fmt.Sprintf("depth=%d,%d", depths[0], depths[1]), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(depths[0]), uint64(depths[1])))
			general := false
			generalPathHook = func() bool { return general }
			bs, err := book.New(book.Config{MaxOrders: 1 << 14, MaxLocates: 64, MaxLevels: 1 << 12})
			if err != nil {
				t.Fatal(err)
			}
			feed := func(depth int) (*Publisher, *shm.Reader, *shm.Writer, *shm.Reader) {
				w, r := shmFeed(t, shm.Config{Instruments: 256, Depth: depth, SingleWriter: true})
				wRef, rRef := shmFeed(t, shm.Config{Instruments: 256, Depth: depth, SingleWriter: true})
				return NewPublisher(w, bs, depth), r, wRef, rRef
			}
			p, r, wRef, rRef := feed(depths[0])
			buf := make([]byte, 1<<16)
			bufRef := make([]byte, 1<<16)
			var msgs []itch.Msg
			ts := uint64(34200_000_000_000)
			hdr := func(loc uint16) itch.Header { ts += 1000; return itch.Header{Locate: loc, Timestamp: ts} }
			emit := func(e itch.Encoder) { msgs = append(msgs, itch.Msg(e.Append(nil))) }
			gen := make([]int, locates+1)
			sym := func(loc uint16) itch.Symbol { return itch.NewSymbol(fmt.Sprintf("P%d_%d", loc, gen[loc])) }
			apply := func(seq *uint64) {
				for _, m := range msgs {
					*seq++
					loc, changed := bs.Apply(m)
					p.Applied(loc, changed, *seq, int64(*seq))
				}
				msgs = msgs[:0]
			}
			var seq uint64
			for loc := uint16(1); loc <= locates; loc++ {
				emit(&itch.StockDirectoryFields{Header: hdr(loc), Stock: sym(loc)})
			}
			apply(&seq)
			type liveOrder struct {
				loc    uint16
				ref    uint64
				shares uint32
			}
			var live []liveOrder
			ref, ovf := uint64(0), uint64(0)
			overflowed := false // an order was in an overflow slot at a flush
			type compared struct {
				slot    shm.Slot
				version uint64
				bids    int
			}
			seen := map[uint16]compared{} // locate: the slot, version and bid vector last compared
			var partial, unchanged, moved, generals, rebinds, flushes int
			for batch := range 3000 {
				if batch == 1500 {
					p, r, wRef, rRef = feed(depths[1])
					clear(seen)
				}
				for n := 1 + rng.IntN(10); n > 0; n-- {
					loc := uint16(1 + rng.IntN(locates))
					k := rng.IntN(1000)
					switch {
					case k < 450 || len(live) == 0:
						ref++
						add := ref
						if len(live) > 0 && rng.IntN(8) == 0 {
							// A reference whose home slot a live order
							// holds (the same low bits): the add's seldom
							// path (an overflow slot) under the check too.
							ovf++
							add = live[rng.IntN(len(live))].ref&(1<<32-1) | ovf<<32
						}
						side, price := byte('B'), uint32(1_000_000+100*rng.IntN(25))
						if rng.IntN(2) == 0 {
							side, price = 'S', uint32(1_002_000+100*rng.IntN(25))
						}
						shares := uint32(1 + rng.IntN(300))
						emit(&itch.AddOrderFields{Header: hdr(loc), OrderRef: add, Side: side, Shares: shares, Stock: sym(loc), Price: price})
						live = append(live, liveOrder{loc, add, shares})
					case k < 980:
						i := rng.IntN(len(live))
						o := &live[i]
						done := true
						switch rng.IntN(4) {
						case 0:
							emit(&itch.OrderDeleteFields{Header: hdr(o.loc), OrderRef: o.ref})
						case 1:
							c := uint32(1 + rng.IntN(int(o.shares)))
							emit(&itch.OrderCancelFields{Header: hdr(o.loc), OrderRef: o.ref, CancelledShares: c})
							o.shares -= c
							done = o.shares == 0
						case 2:
							ref++
							c := uint32(1 + rng.IntN(int(o.shares)))
							emit(&itch.OrderExecutedFields{Header: hdr(o.loc), OrderRef: o.ref, ExecutedShares: c, MatchNumber: ref})
							o.shares -= c
							done = o.shares == 0
						default:
							ref++
							shares := uint32(1 + rng.IntN(300))
							emit(&itch.OrderReplaceFields{Header: hdr(o.loc), OriginalOrderRef: o.ref, NewOrderRef: ref, Shares: shares, Price: uint32(1_000_000 + 100*rng.IntN(45))})
							*o = liveOrder{o.loc, ref, shares}
							done = false
						}
						if done {
							live[i] = live[len(live)-1]
							live = live[:len(live)-1]
						}
					case k < 988:
						gen[loc]++ // another symbol: the book emptied, a new slot
						emit(&itch.StockDirectoryFields{Header: hdr(loc), Stock: sym(loc)})
						rebinds++
					case k < 994:
						apply(&seq)
						if bs.Withdraw(loc) {
							p.Withdrawn(loc)
						}
						gen[loc]++
						emit(&itch.StockDirectoryFields{Header: hdr(loc), Stock: sym(loc)})
						rebinds++
					case k < 996:
						apply(&seq)
						bs.Reset()
						p.BooksReset()
						for l := uint16(1); l <= locates; l++ {
							emit(&itch.StockDirectoryFields{Header: hdr(l), Stock: sym(l)})
						}
						rebinds++
					}
					if k >= 980 {
						// Orders of an emptied book are gone.
						apply(&seq)
						kept := live[:0]
						for _, o := range live {
							if _, ok := bs.Order(o.loc, o.ref); ok {
								kept = append(kept, o)
							}
						}
						live = kept
					}
				}
				apply(&seq)
				overflowed = overflowed || bs.Stats().Overflowed > 0
				for _, loc := range p.dirty {
					st := &p.locs[loc]
					b := bs.Book(loc)
					if b == nil || st.slot == (shm.Slot{}) {
						continue
					}
					rb, ra := b.Changed()
					if rb > 0 && b.Levels(book.Bid) > 0 || ra > 0 && b.Levels(book.Ask) > 0 {
						partial++
					}
					if rb >= min(b.Levels(book.Bid), p.depth) && ra >= min(b.Levels(book.Ask), p.depth) {
						unchanged++
					}
				}
				general = rng.IntN(8) == 0
				if general {
					generals++
				}
				p.Flush()
				flushes++
				if p.Errors != 0 || p.StaleBinds != 0 || p.DuplicateBinds != 0 {
					t.Fatalf("batch %d: %d errors, %d stale, %d duplicate bindings", batch, p.Errors, p.StaleBinds, p.DuplicateBinds)
				}
				for loc := uint16(1); loc <= locates; loc++ {
					b, st := bs.Book(loc), &p.locs[loc]
					if b == nil || st.slot == (shm.Slot{}) {
						continue
					}
					v, err := r.Read(loc, buf)
					if err != nil {
						t.Fatalf("batch %d: read locate %d: %v", batch, loc, err)
					}
					if last := seen[loc]; last.slot != st.slot || last.version != v.Version {
						if last.slot == st.slot && last.bids != v.BidsLength() {
							moved++ // the ask vector moved
						}
						seen[loc] = compared{st.slot, v.Version, v.BidsLength()}
						if err := fullPublish(wRef, p, b, v.PublishTime()); err != nil {
							t.Fatal(err)
						}
					}
					vRef, err := rRef.Read(loc, bufRef)
					if err != nil {
						t.Fatalf("batch %d: read locate %d: %v", batch, loc, err)
					}
					if !bytes.Equal(v.Bytes(), vRef.Bytes()) {
						t.Fatalf("batch %d (depth %d), locate %d: slot\n%x\nwant the full publish's\n%x\nbids %v, asks %v", batch, p.depth, loc, v.Bytes(), vRef.Bytes(), b.AppendDepth(book.Bid, nil, p.depth), b.AppendDepth(book.Ask, nil, p.depth))
					}
				}
			}
			// The stream must reach the cases it is for.
			t.Logf("%d flushes, %d through the general path; %d publishes from a rank past the best, %d of no level, %d with the asks moved; %d rebinds; orders in overflow slots: %v", flushes, generals, partial, unchanged, moved, rebinds, overflowed)
			if partial == 0 || unchanged == 0 || moved == 0 || generals == 0 || rebinds == 0 || !overflowed {
				t.Fatal("the stream misses a case")
			}
		})
	}
}

// fullPublish publishes book b as Publisher p does, every level through
// shm.Writer.Publish, into w, binding its locate to its symbol first (at
// p's epoch), with publish time publish.
func fullPublish(w *shm.Writer, p *Publisher, b *book.Book, publish int64) error {
	loc := b.Locate()
	if _, _, err := w.Rebind(loc, b.Name(), p.epoch); err != nil {
		return err
	}
	st := &p.locs[loc]
	sn := &shm.Snapshot{
		Locate: loc, Seq: st.seq, ExchangeTime: b.Timestamp(), ReceiveTime: st.rx, PublishTime: publish,
		State: shm.TradingState(b.TradingState()), Messages: st.msgs,
		BidLevels: uint32(b.Levels(book.Bid)), AskLevels: uint32(b.Levels(book.Ask)),
	}
	sn.SystemEvent, _ = p.books.SystemEvent()
	if p.stale {
		sn.Flags |= bookfb.FlagsPossiblyStale
	}
	sn.Flags |= bookFlags(b)
	sn.LastTradePrice, sn.LastTradeShares, sn.Volume = b.Last()
	for _, l := range b.AppendDepth(book.Bid, nil, p.depth) {
		sn.Bids = append(sn.Bids, shm.Level(l))
	}
	for _, l := range b.AppendDepth(book.Ask, nil, p.depth) {
		sn.Asks = append(sn.Asks, shm.Level(l))
	}
	return w.Publish(sn)
}
