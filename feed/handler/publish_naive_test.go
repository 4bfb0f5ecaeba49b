package handler

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// naiveOrder is a live order of the naive book.
type naiveOrder struct {
	loc    uint16
	bid    bool
	price  uint32
	shares uint32
}

// naiveInstr is what a snapshot of one instrument should say, kept the
// plainest way: every live order in a map, levels summed when asked.
type naiveInstr struct {
	name                 string
	seq                  uint64 // last message that changed the book
	ts                   uint64 // its timestamp
	rx                   int64
	msgs                 uint64 // messages that changed the book
	state, opHalt, regSH byte
	lastPrice            uint32
	lastShares, volume   uint64
}

type naiveBooks struct {
	orders map[uint64]*naiveOrder
	byLoc  map[uint16]map[uint64]*naiveOrder // the same orders by locate
	instr  map[uint16]*naiveInstr
	event  byte
}

// levels returns loc's levels of one side, best first.
func (n *naiveBooks) levels(loc uint16, bid bool) []shm.Level {
	by := map[uint32]*shm.Level{}
	for _, o := range n.byLoc[loc] {
		if o.bid != bid {
			continue
		}
		l := by[o.price]
		if l == nil {
			l = &shm.Level{Price: o.price}
			by[o.price] = l
		}
		l.Orders++
		l.Shares += uint64(o.shares)
	}
	var ls []shm.Level
	for _, l := range by {
		ls = append(ls, *l)
	}
	slices.SortFunc(ls, func(a, b shm.Level) int {
		if bid {
			return cmp.Compare(b.Price, a.Price)
		}
		return cmp.Compare(a.Price, b.Price)
	})
	return ls
}

// flags returns the snapshot flags the naive instrument's state and its
// levels bids and asks (best first) set, but the stale flag.
func (in *naiveInstr) flags(bids, asks []shm.Level) bookfb.Flags {
	var f bookfb.Flags
	if in.regSH == '1' || in.regSH == '2' {
		f |= bookfb.FlagsShortSaleRestricted
	}
	if in.opHalt == 'H' {
		f |= bookfb.FlagsOperationalHalt
	}
	if len(bids) > 0 && len(asks) > 0 && bids[0].Price >= asks[0].Price {
		f |= bookfb.FlagsCrossed
	}
	return f
}

// whatLevels has what compare snapshot v's symbol, levels and level
// counts with those of the naive instrument name, whose levels are bids
// and asks (best first), at depth.
func whatLevels(what func(field string, got, want any), v shm.View, name string, bids, asks []shm.Level, depth int) {
	gb, ga := viewLevels(v)
	what("symbol", string(v.Symbol()), name)
	what("bids", gb, bids[:min(depth, len(bids))])
	what("asks", ga, asks[:min(depth, len(asks))])
	what("bid_levels", v.BidLevels(), len(bids))
	what("ask_levels", v.AskLevels(), len(asks))
}

// viewLevels returns the levels a snapshot holds, best first.
func viewLevels(v shm.View) (bids, asks []shm.Level) {
	for j := 0; ; j++ {
		l, ok := v.Bid(j)
		if !ok {
			break
		}
		bids = append(bids, l)
	}
	for j := 0; ; j++ {
		l, ok := v.Ask(j)
		if !ok {
			break
		}
		asks = append(asks, l)
	}
	return bids, asks
}

func (n *naiveBooks) add(ref uint64, o *naiveOrder) {
	n.orders[ref] = o
	if n.byLoc[o.loc] == nil {
		n.byLoc[o.loc] = map[uint64]*naiveOrder{}
	}
	n.byLoc[o.loc][ref] = o
}

func (n *naiveBooks) remove(ref uint64) {
	delete(n.byLoc[n.orders[ref].loc], ref)
	delete(n.orders, ref)
}

// apply applies m (sequence number seq, received at rx) to the naive
// books: only the message types naiveDay generates.
func (n *naiveBooks) apply(m itch.Msg, seq uint64, rx int64) {
	loc := m.Locate()
	if m[0] == itch.TypeSystemEvent {
		n.event = itch.SystemEvent(m).EventCode()
		return
	}
	in := n.instr[loc]
	if m[0] == itch.TypeStockDirectory {
		in = &naiveInstr{name: itch.StockDirectory(m).Stock().String()}
		n.instr[loc] = in
	}
	trade := func(price uint32, shares uint64) {
		in.lastPrice, in.lastShares = price, shares
		in.volume += shares
	}
	take := func(ref uint64, shares uint32) *naiveOrder {
		o := n.orders[ref]
		o.shares -= shares
		if o.shares == 0 {
			n.remove(ref)
		}
		return o
	}
	switch m[0] {
	case itch.TypeAddOrder:
		a := itch.AddOrder(m)
		n.add(a.OrderRef(), &naiveOrder{loc: loc, bid: a.Side() == 'B', price: a.Price(), shares: a.Shares()})
	case itch.TypeOrderExecuted:
		e := itch.OrderExecuted(m)
		o := take(e.OrderRef(), e.ExecutedShares())
		trade(o.price, uint64(e.ExecutedShares()))
	case itch.TypeOrderExecutedWithPrice:
		c := itch.OrderExecutedWithPrice(m)
		take(c.OrderRef(), c.ExecutedShares())
		if c.Printable() == 'Y' {
			trade(c.ExecutionPrice(), uint64(c.ExecutedShares()))
		}
	case itch.TypeOrderCancel:
		x := itch.OrderCancel(m)
		take(x.OrderRef(), x.CancelledShares())
	case itch.TypeOrderDelete:
		n.remove(itch.OrderDelete(m).OrderRef())
	case itch.TypeOrderReplace:
		u := itch.OrderReplace(m)
		o := n.orders[u.OriginalOrderRef()]
		n.remove(u.OriginalOrderRef())
		n.add(u.NewOrderRef(), &naiveOrder{loc: loc, bid: o.bid, price: u.Price(), shares: u.Shares()})
	case itch.TypeTrade:
		p := itch.Trade(m)
		trade(p.Price(), uint64(p.Shares()))
	case itch.TypeStockTradingAction:
		in.state = itch.StockTradingAction(m).TradingState()
	case itch.TypeOperationalHalt:
		in.opHalt = itch.OperationalHalt(m).HaltAction()
	case itch.TypeRegSHO:
		in.regSH = itch.RegSHO(m).Action()
	case itch.TypeStockDirectory:
	default:
		return // not a book's message (NOII): the book is as it was
	}
	in.seq, in.ts, in.rx = seq, m.Timestamp(), rx
	in.msgs++
}

// naiveDay is a random day over locates 1..locates (more are announced by
// Stock Directory along the day, up to maxLoc): adds, replaces that may
// lock or cross the book, executions with and without price that may
// empty a level, cancels, deletes (the best level's last order among
// them), trades, state, halt and Reg SHO actions, system events and NOII
// messages; two locates trade at the ends of the price range (0 and
// 199999.9900).
func naiveDay(rng *rand.Rand, locates, maxLoc, n int) []itch.Msg {
	d := newDayMaker(rng, "N")
	hdr, sym, emit := d.hdr, d.sym, d.emit
	known := 0
	announce := func() {
		known++
		emit(&itch.StockDirectoryFields{Header: hdr(uint16(known)), Stock: sym(uint16(known))})
	}
	for known < locates {
		announce()
	}
	type live struct {
		ref    uint64
		bid    bool
		price  uint32
		shares uint32
	}
	orders := make(map[uint16][]live)
	ref := uint64(1)
	price := func(loc uint16, bid bool) uint32 {
		k := uint32(rng.IntN(12))
		switch loc {
		case 1: // the top of the range: 199999.9900 and below
			if bid {
				return 1_999_999_900 - 100*(k+6)
			}
			return 1_999_999_900 - 100*k
		case 2: // the bottom: 0 and up
			if bid {
				return 100 * k
			}
			return 100 * (k + 6)
		}
		if bid {
			return 1_000_000 - 100*k
		}
		return 1_000_100 + 100*k
	}
	for len(d.msgs) < n {
		loc := uint16(1 + rng.IntN(known))
		os := orders[loc]
		k := rng.IntN(100)
		if len(os) == 0 && k < 80 {
			k = 0
		}
		switch {
		case k < 35:
			bid := rng.IntN(2) == 0
			side := byte('S')
			if bid {
				side = 'B'
			}
			o := live{ref: ref, bid: bid, price: price(loc, bid), shares: uint32(1 + rng.IntN(300))}
			ref++
			emit(&itch.AddOrderFields{Header: hdr(loc), OrderRef: o.ref, Side: side, Shares: o.shares, Stock: sym(loc), Price: o.price})
			orders[loc] = append(os, o)
		case k < 50: // delete; half the time the best level's order
			i := rng.IntN(len(os))
			if rng.IntN(2) == 0 {
				for j, o := range os {
					if o.bid == os[i].bid && (o.bid && o.price > os[i].price || !o.bid && o.price < os[i].price) {
						i = j
					}
				}
			}
			emit(&itch.OrderDeleteFields{Header: hdr(loc), OrderRef: os[i].ref})
			orders[loc] = slices.Delete(os, i, i+1)
		case k < 58, k < 64: // execute, with price or not, part or whole
			i := rng.IntN(len(os))
			sh := os[i].shares
			if rng.IntN(2) == 0 {
				sh = uint32(1 + rng.IntN(int(sh)))
			}
			if k < 58 {
				emit(&itch.OrderExecutedFields{Header: hdr(loc), OrderRef: os[i].ref, ExecutedShares: sh, MatchNumber: ref})
			} else {
				emit(&itch.OrderExecutedWithPriceFields{Header: hdr(loc), OrderRef: os[i].ref, ExecutedShares: sh, MatchNumber: ref,
					Printable: "YN"[rng.IntN(2)], ExecutionPrice: os[i].price + 100})
			}
			ref++
			if os[i].shares -= sh; os[i].shares == 0 {
				orders[loc] = slices.Delete(os, i, i+1)
			}
		case k < 68:
			i := rng.IntN(len(os))
			sh := uint32(1 + rng.IntN(int(os[i].shares)))
			emit(&itch.OrderCancelFields{Header: hdr(loc), OrderRef: os[i].ref, CancelledShares: sh})
			if os[i].shares -= sh; os[i].shares == 0 {
				orders[loc] = slices.Delete(os, i, i+1)
			}
		case k < 80: // replace, a third of the time onto the other side's best (locked) or through it (crossed)
			i := rng.IntN(len(os))
			p := price(loc, os[i].bid)
			if rng.IntN(3) == 0 {
				p = price(loc, !os[i].bid)
			}
			o := live{ref: ref, bid: os[i].bid, price: p, shares: uint32(1 + rng.IntN(300))}
			ref++
			emit(&itch.OrderReplaceFields{Header: hdr(loc), OriginalOrderRef: os[i].ref, NewOrderRef: o.ref, Shares: o.shares, Price: o.price})
			os[i] = o
		case k < 85:
			emit(&itch.TradeFields{Header: hdr(loc), Side: 'B', Shares: uint32(1 + rng.IntN(100)), Stock: sym(loc), Price: price(loc, true), MatchNumber: ref})
			ref++
		case k < 94: // Reg SHO, trading action, operational halt
			d.action(loc, (k-85)%3)
		case k < 97:
			emit(&itch.NOIIFields{Header: hdr(loc), Stock: sym(loc), CrossType: 'O', ImbalanceDirection: 'B'})
		case k < 98:
			d.action(0, systemEvent)
		default:
			if known < maxLoc {
				announce()
			}
		}
	}
	return d.msgs
}

// TestPublishMatchesNaiveBook applies a random day to the books and to a
// naive book (every live order in a map, levels summed when compared), in
// batches of 1 to 400 messages published by FlushSome (sweeps of 7 books
// a batch, the stale flag toggled now and then), and after every batch
// reads every
// instrument back from the feed file: each snapshot must say what the
// naive book says, field by field (levels to the depth, level counts,
// flags, states, last trade, volume, messages, the sequence number,
// exchange and receive times of the last message that changed the book,
// the system event and the stale flag once a sweep has republished them),
// and the journal names every book changed in the batch, at the version
// read.
func TestPublishMatchesNaiveBook(t *testing.T) {
	const depth, locates, maxLoc = 3, 40, 80
	rng := rand.New(rand.NewPCG(156, 1))
	msgs := naiveDay(rng, locates, maxLoc, 40_000)
	bs, p, r := publishedBooks(t, 128, depth)
	nv := &naiveBooks{orders: map[uint64]*naiveOrder{}, byLoc: map[uint16]map[uint64]*naiveOrder{}, instr: map[uint16]*naiveInstr{}}
	buf := make([]byte, r.Info().MaxSnapshot)
	p.SweepChunk = 7
	f := r.Follow()
	updates := make([]shm.Update, 1<<16)
	journaled := map[uint16]uint64{} // the last version the journal gave
	var locked, crossed, deep, top, bottom, sweeps int
	for i, batch := 0, 0; i < len(msgs); batch++ {
		changed := map[uint16]bool{}
		for n := 1 + rng.IntN(400); n > 0 && i < len(msgs); n-- {
			seq, rx := uint64(1000+i), int64(5_000_000+i)
			loc, ch := bs.Apply(msgs[i])
			p.Applied(loc, ch, seq, rx)
			nv.apply(msgs[i], seq, rx)
			if in := nv.instr[loc]; in != nil && in.seq == seq {
				changed[loc] = true
			}
			i++
		}
		if rng.IntN(40) == 0 {
			p.SetStale(!p.stale)
		}
		p.FlushSome()
		sweeps += b2i(p.Sweeping())
		n, err := f.Poll(updates)
		if err != nil {
			t.Fatalf("batch %d: journal: %v", batch, err)
		}
		for _, u := range updates[:n] {
			delete(changed, u.Locate)
			journaled[u.Locate] = u.Version
		}
		for loc := range changed {
			t.Fatalf("batch %d: locate %d changed, not in the journal", batch, loc)
		}
		for loc, in := range nv.instr {
			if in.seq == 0 {
				continue
			}
			v, err := r.Read(loc, buf)
			if err != nil {
				t.Fatalf("batch %d: locate %d: %v", batch, loc, err)
			}
			if v.Version != journaled[loc] {
				t.Fatalf("batch %d: locate %d at version %d, the journal's last %d", batch, loc, v.Version, journaled[loc])
			}
			bids, asks := nv.levels(loc, true), nv.levels(loc, false)
			flags := in.flags(bids, asks)
			if flags&bookfb.FlagsCrossed != 0 {
				if bids[0].Price == asks[0].Price {
					locked++
				} else {
					crossed++
				}
			}
			if len(bids) > depth || len(asks) > depth {
				deep++
			}
			for _, l := range append(bids, asks...) {
				top += b2i(l.Price >= 1_999_999_000)
				bottom += b2i(l.Price == 0)
			}
			what := func(f string, got, want any) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("batch %d (message %d), locate %d %s: snapshot %s %v, the naive book's %v", batch, i, loc, in.name, f, got, want)
				}
			}
			whatLevels(what, v, in.name, bids, asks, depth)
			if p.Sweeping() {
				// Not republished yet: the stale flag and the
				// system event may be the sweep's, not yet its.
				flags |= v.Flags() & bookfb.FlagsPossiblyStale
			} else if p.stale {
				flags |= bookfb.FlagsPossiblyStale
			}
			what("flags", v.Flags(), flags)
			what("trading_state", v.TradingState(), shm.TradingState(in.state))
			what("last trade", [2]uint64{uint64(v.LastTradePrice()), v.LastTradeShares()}, [2]uint64{uint64(in.lastPrice), in.lastShares})
			what("volume", v.Volume(), in.volume)
			if !p.Sweeping() {
				what("system_event", v.SystemEvent(), nv.event)
			}
			what("seq", v.Seq(), in.seq)
			what("exchange_time", v.ExchangeTime(), in.ts)
			what("receive_time", v.ReceiveTime(), in.rx)
			what("messages", v.Messages(), in.msgs)
		}
	}
	t.Logf("compared: %d locked, %d crossed, %d deeper than %d, %d levels at the top of the range, %d at 0; %d instruments; %d batches ended sweeping",
		locked, crossed, deep, depth, top, bottom, len(nv.instr), sweeps)
	if locked == 0 || crossed == 0 || deep == 0 || top == 0 || bottom == 0 || len(nv.instr) <= locates || sweeps == 0 {
		t.Fatal("the day misses a case")
	}
}

// publishedBooks returns books of up to instruments locates, and their
// Publisher at depth into a new single-writer feed file, and its reader.
func publishedBooks(t *testing.T, instruments, depth int) (*book.Books, *Publisher, *shm.Reader) {
	t.Helper()
	w, r := shmFeed(t, shm.Config{Instruments: instruments, Depth: depth, SingleWriter: true})
	bs, err := book.New(book.Config{MaxOrders: 1 << 15, MaxLocates: instruments, MaxLevels: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	return bs, NewPublisher(w, bs, depth), r
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestNonBookMessageKeepsSeq: a message of the instrument that does not
// change its book (a NOII, a delete of an order it does not hold) leaves
// the snapshot's sequence number, receive time and message count with the
// last message that changed the book, whose timestamp is the exchange
// time: a republish (here the stale flag's) must not pair one message's
// sequence number with another's timestamp.
func TestNonBookMessageKeepsSeq(t *testing.T) {
	bs, p, r := publishedBooks(t, 4, 2)
	sym := itch.NewSymbol("KEEP")
	apply := func(seq uint64, e itch.Encoder) {
		loc, changed := bs.Apply(itch.Msg(e.Append(nil)))
		p.Applied(loc, changed, seq, int64(seq)*10)
	}
	apply(1, &itch.StockDirectoryFields{Header: itch.Header{Locate: 1, Timestamp: 100}, Stock: sym})
	apply(2, &itch.AddOrderFields{Header: itch.Header{Locate: 1, Timestamp: 200}, OrderRef: 7, Side: 'B', Shares: 100, Stock: sym, Price: 10_000})
	apply(3, &itch.NOIIFields{Header: itch.Header{Locate: 1, Timestamp: 300}, Stock: sym, CrossType: 'O'})
	apply(4, &itch.OrderDeleteFields{Header: itch.Header{Locate: 1, Timestamp: 400}, OrderRef: 99})
	p.Flush()
	p.SetStale(true)
	apply(5, &itch.NOIIFields{Header: itch.Header{Locate: 1, Timestamp: 500}, Stock: sym, CrossType: 'O'})
	p.Flush()
	v, err := r.Read(1, make([]byte, r.Info().MaxSnapshot))
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 2 || v.Seq() != 2 || v.ExchangeTime() != 200 || v.ReceiveTime() != 20 || v.Messages() != 2 {
		t.Fatalf("version %d: seq %d, exchange time %d, receive time %d, messages %d; want version 2: the add's seq 2, time 200, received at 20, 2 messages (R, A)",
			v.Version, v.Seq(), v.ExchangeTime(), v.ReceiveTime(), v.Messages())
	}
}
