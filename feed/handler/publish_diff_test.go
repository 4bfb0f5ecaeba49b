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

// refPublisher is the Publisher's publish before the book wrote its levels
// straight into the slot: the top levels copied out with AppendDepth, then
// shm.Writer.Publish. TestPublishMatchesCopy holds the Publisher to its
// bytes.
type refPublisher struct {
	w          *shm.Writer
	registered map[uint16]bool
	snap       shm.Snapshot
	bids, asks []book.Level
}

func (r *refPublisher) publish(p *Publisher, b *book.Book, publishTime int64) error {
	loc := b.Locate()
	if !r.registered[loc] {
		if err := r.w.Register(loc, b.Name()); err != nil {
			return err
		}
		r.registered[loc] = true
	}
	st := &p.locs[loc]
	sn := &r.snap
	sn.Locate = loc
	sn.Seq = st.seq
	sn.ExchangeTime = b.Timestamp()
	sn.ReceiveTime = st.rx
	sn.PublishTime = publishTime
	sn.State = shm.TradingState(b.TradingState())
	sn.Flags = 0
	if p.stale {
		sn.Flags |= bookfb.FlagsPossiblyStale
	}
	if r := b.RegSHO(); r == '1' || r == '2' {
		sn.Flags |= bookfb.FlagsShortSaleRestricted
	}
	if b.OperationalHalt() == 'H' {
		sn.Flags |= bookfb.FlagsOperationalHalt
	}
	sn.SystemEvent, _ = p.books.SystemEvent()
	r.bids = b.AppendDepth(book.Bid, r.bids[:0], p.depth)
	r.asks = b.AppendDepth(book.Ask, r.asks[:0], p.depth)
	sn.Bids, sn.Asks = sn.Bids[:0], sn.Asks[:0]
	for _, l := range r.bids {
		sn.Bids = append(sn.Bids, shm.Level(l))
	}
	for _, l := range r.asks {
		sn.Asks = append(sn.Asks, shm.Level(l))
	}
	if len(sn.Bids) > 0 && len(sn.Asks) > 0 && sn.Bids[0].Price >= sn.Asks[0].Price {
		sn.Flags |= bookfb.FlagsCrossed
	}
	sn.BidLevels = uint32(b.Levels(book.Bid))
	sn.AskLevels = uint32(b.Levels(book.Ask))
	sn.LastTradePrice, sn.LastTradeShares, sn.Volume = b.Last()
	sn.Messages = st.msgs
	return r.w.Publish(sn)
}

// dayMaker builds a random day's messages: each header's timestamp a
// little after the last, each locate's symbol a prefix and its number.
type dayMaker struct {
	rng    *rand.Rand
	ts     uint64
	prefix string
	msgs   []itch.Msg
}

func newDayMaker(rng *rand.Rand, prefix string) *dayMaker {
	return &dayMaker{rng: rng, ts: 34200_000_000_000, prefix: prefix}
}

func (d *dayMaker) hdr(loc uint16) itch.Header {
	d.ts += uint64(d.rng.IntN(1000))
	return itch.Header{Locate: loc, Timestamp: d.ts}
}

func (d *dayMaker) sym(loc uint16) itch.Symbol {
	return itch.NewSymbol(fmt.Sprintf("%s%d", d.prefix, loc))
}

func (d *dayMaker) emit(e itch.Encoder) { d.msgs = append(d.msgs, itch.Msg(e.Append(nil))) }

// The messages dayMaker.action emits.
const (
	regSHO          = iota // Reg SHO Restriction, action '0', '1' or '2'
	tradingAction          // Stock Trading Action, state 'H', 'P', 'Q' or 'T'
	operationalHalt        // Operational Halt on Nasdaq ('Q'), 'H' or 'T'
	systemEvent            // System Event (locate 0), any code
)

// action emits a message of kind about loc, its code drawn at random.
func (d *dayMaker) action(loc uint16, kind int) {
	h, sym := d.hdr(loc), d.sym(loc)
	switch kind {
	case regSHO:
		d.emit(&itch.RegSHOFields{Header: h, Stock: sym, Action: "012"[d.rng.IntN(3)]})
	case tradingAction:
		d.emit(&itch.StockTradingActionFields{Header: h, Stock: sym, TradingState: "HPQT"[d.rng.IntN(4)]})
	case operationalHalt:
		d.emit(&itch.OperationalHaltFields{Header: h, Stock: sym, MarketCode: 'Q', HaltAction: "HT"[d.rng.IntN(2)]})
	default:
		d.emit(&itch.SystemEventFields{Header: h, EventCode: "OSQMEC"[d.rng.IntN(6)]})
	}
}

// randomDayMsgs is a random stream over locates 1..n: a directory entry
// each, then adds on both sides (asks in the bids' price band for a while
// now and then: crossed books), deletes, executions, trades, Reg SHO, trading and
// operational halt actions, system events.
func randomDayMsgs(rng *rand.Rand, locates, n int) []itch.Msg {
	d := newDayMaker(rng, "S")
	hdr, sym, emit := d.hdr, d.sym, d.emit
	for loc := uint16(1); loc <= uint16(locates); loc++ {
		emit(&itch.StockDirectoryFields{Header: hdr(loc), Stock: sym(loc)})
	}
	var live []uint64
	ref := uint64(1)
	crossing := make([]bool, locates+1)
	for len(d.msgs) < n {
		loc := uint16(1 + rng.IntN(locates))
		switch k := rng.IntN(100); {
		case k < 45 || len(live) == 0:
			// 30 prices a side, bids 100.00-101.45 and asks 101.50-102.95;
			// while a locate is in crossing mode its asks go into the
			// bids' band.
			side, price := byte('B'), 1_000_000+500*rng.IntN(30)
			if rng.IntN(2) == 0 {
				side, price = 'S', 1_015_000+500*rng.IntN(30)
				if crossing[loc] {
					price -= 15_000
				}
			}
			emit(&itch.AddOrderFields{Header: hdr(loc), OrderRef: ref, Side: side, Shares: uint32(1 + rng.IntN(500)),
				Stock: sym(loc), Price: uint32(price)})
			live = append(live, ref)
			ref++
			if rng.IntN(200) == 0 {
				crossing[loc] = !crossing[loc]
			}
		case k < 85:
			i := rng.IntN(len(live))
			emit(&itch.OrderDeleteFields{Header: hdr(loc), OrderRef: live[i]})
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		case k < 90:
			emit(&itch.OrderExecutedFields{Header: hdr(loc), OrderRef: live[rng.IntN(len(live))], ExecutedShares: uint32(1 + rng.IntN(50)), MatchNumber: ref})
			ref++
		case k < 95:
			emit(&itch.TradeFields{Header: hdr(loc), Side: 'B', Shares: uint32(1 + rng.IntN(100)), Stock: sym(loc), Price: uint32(1_000_000 + 100*rng.IntN(40)), MatchNumber: ref})
			ref++
		case k < 97:
			d.action(loc, regSHO)
		case k < 98:
			d.action(loc, tradingAction)
		case k < 99:
			d.action(loc, operationalHalt)
		default:
			d.action(0, systemEvent)
		}
	}
	return d.msgs
}

// TestPublishMatchesCopy: after every Flush, each book's slot holds the
// same bytes (and version) as the copying publish (refPublisher) writes
// into a second feed, at depths 1, 5, 10 and 20, on random books that
// cross or not, with the stale flag and market-wide republishes mixed in;
// sides deeper than the depth and empty sides both occur.
func TestPublishMatchesCopy(t *testing.T) {
	const locates = 6
	for _, depth := range []int{1, 5, 10, 20} {
		t.Run(fmt.Sprint("depth=", depth), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(depth), 7))
			msgs := randomDayMsgs(rng, locates, 20_000)
			feed := func() (*shm.Writer, *shm.Reader) {
				return shmFeed(t, shm.Config{Instruments: 64, Depth: depth, SingleWriter: true})
			}
			w, r := feed()       // the fused publish
			wRef, rRef := feed() // the copying reference
			bs, err := book.New(book.Config{MaxOrders: 1 << 15, MaxLocates: 64, MaxLevels: 1 << 12})
			if err != nil {
				t.Fatal(err)
			}
			p := NewPublisher(w, bs, depth)
			ref := &refPublisher{w: wRef, registered: map[uint16]bool{}}
			buf := make([]byte, r.Info().MaxSnapshot)
			bufRef := make([]byte, rRef.Info().MaxSnapshot)
			var dirty []uint16
			flushes, deep, crossed, apart, empty := 0, 0, 0, 0, 0
			for i := 0; i < len(msgs); {
				for n := 1 + rng.IntN(12); n > 0 && i < len(msgs); n-- {
					loc, changed := bs.Apply(msgs[i])
					p.Applied(loc, changed, uint64(i+1), int64(i)*1000)
					i++
				}
				switch rng.IntN(50) {
				case 0:
					p.SetStale(!p.stale)
				case 1:
					p.MarkAllDirty()
				}
				dirty = dirty[:0]
				if p.Sweeping() {
					for b := range bs.All() {
						dirty = append(dirty, b.Locate())
					}
				} else {
					dirty = append(dirty, p.dirty...)
				}
				published := p.Published
				p.Flush()
				flushes++
				if p.Errors != 0 {
					t.Fatalf("flush %d: %d publish errors", flushes, p.Errors)
				}
				if p.Published-published != uint64(len(dirty)) {
					t.Fatalf("flush %d: published %d books, want %d", flushes, p.Published-published, len(dirty))
				}
				for _, loc := range dirty {
					v, err := r.Read(loc, buf)
					if err != nil {
						t.Fatalf("flush %d: read locate %d: %v", flushes, loc, err)
					}
					if err := ref.publish(p, bs.Book(loc), v.PublishTime()); err != nil {
						t.Fatal(err)
					}
					vRef, err := rRef.Read(loc, bufRef)
					if err != nil {
						t.Fatalf("flush %d: read locate %d: %v", flushes, loc, err)
					}
					if !bytes.Equal(v.Bytes(), vRef.Bytes()) || v.Version != vRef.Version {
						t.Fatalf("flush %d, locate %d: slot (version %d)\n%x\nwant the copying publish's (version %d)\n%x",
							flushes, loc, v.Version, v.Bytes(), vRef.Version, vRef.Bytes())
					}
					b := bs.Book(loc)
					if b.Levels(book.Bid) > depth || b.Levels(book.Ask) > depth {
						deep++
					}
					if b.Levels(book.Bid) == 0 || b.Levels(book.Ask) == 0 {
						empty++
					}
					if v.Flags()&bookfb.FlagsCrossed != 0 {
						crossed++
					} else if v.BidsLength() > 0 && v.AsksLength() > 0 {
						apart++
					}
				}
			}
			// The stream must have reached the cases it is for.
			t.Logf("%d flushes; publishes: %d with a side deeper than the depth, %d with an empty side, %d crossed, %d apart", flushes, deep, empty, crossed, apart)
			if deep == 0 || empty == 0 || crossed == 0 || apart == 0 {
				t.Fatal("the stream misses a case")
			}
		})
	}
}
