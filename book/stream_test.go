package book

import (
	"math/rand/v2"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// dayStream builds a consistent, BinaryFILE-framed ITCH stream with the
// message mix of a real day (A 43%, D 42%, U 9%, E 2.5%, X 1.2%, ...): it
// announces symbols, builds up to live orders resting around a drifting mid
// per symbol, churns, and (with drain) deletes every order left so the
// stream can be replayed on the same Books.
type dayStream struct {
	rng     *rand.Rand
	mids    []uint32
	live    []liveOrder
	nextRef uint64
	buf     []byte
	msgs    int
	ts      uint64
}

type liveOrder struct {
	ref    uint64
	locate uint16
	side   byte
	shares uint32
	price  uint32
}

type phase struct {
	buf  []byte
	msgs int
}

// buildDayPhases returns the stream in three phases: announcements and
// build-up, churn, drain.
func buildDayPhases(seed uint64, symbols, live, churn int, drain bool) (p [3]phase) {
	d := &dayStream{rng: rand.New(rand.NewPCG(seed, 1)), nextRef: 1000, ts: 4 * 3600e9}
	d.emit(&itch.SystemEventFields{Header: d.hdr(0), EventCode: 'O'})
	for l := 1; l <= symbols; l++ {
		sym := itch.NewSymbol(symName(l))
		d.mids = append(d.mids, uint32(10000+d.rng.IntN(5000))*100)
		d.emit(&itch.StockDirectoryFields{Header: d.hdr(uint16(l)), Stock: sym, MarketCategory: 'Q', RoundLotSize: 100})
	}
	d.emit(&itch.SystemEventFields{Header: d.hdr(0), EventCode: 'Q'})
	for len(d.live) < live {
		d.add()
	}
	cut := func(i int) {
		p[i] = phase{d.buf, d.msgs}
		d.buf, d.msgs = make([]byte, 0, len(d.buf)), 0
	}
	cut(0)
	for range churn {
		switch r := d.rng.IntN(1000); {
		case r < 430:
			d.add()
		case r < 850:
			d.reduce('D')
		case r < 937:
			d.replace()
		case r < 962:
			d.reduce('E')
		case r < 974:
			d.reduce('X')
		case r < 976:
			d.reduce('C')
		case r < 981:
			l := uint16(1 + d.rng.IntN(symbols))
			d.emit(&itch.TradeFields{Header: d.hdr(l), Side: 'B', Shares: 100, Price: d.mids[l-1], MatchNumber: uint64(d.msgs)})
		case r < 994:
			d.emit(&itch.NOIIFields{Header: d.hdr(uint16(1 + d.rng.IntN(symbols)))})
		default:
			d.add()
		}
	}
	cut(1)
	if drain {
		for len(d.live) > 0 {
			o := d.live[len(d.live)-1]
			d.live = d.live[:len(d.live)-1]
			d.emit(&itch.OrderDeleteFields{Header: d.hdr(o.locate), OrderRef: o.ref})
		}
	}
	cut(2)
	return p
}

func symName(l int) string {
	b := []byte{byte('A' + l%26), byte('A' + l/26%26), byte('A' + l/676%26)}
	if l >= 17576 {
		b = append(b, byte('A'+l/17576%26))
	}
	return string(b)
}

func (d *dayStream) hdr(locate uint16) itch.Header {
	d.ts += uint64(d.rng.IntN(2000))
	return itch.Header{Locate: locate, Tracking: uint16(d.msgs), Timestamp: d.ts}
}

func (d *dayStream) emit(e itch.Encoder) {
	d.buf = e.AppendBlock(d.buf)
	d.msgs++
}

// price draws a price near the symbol's mid: bids below, asks above, with a
// geometric distance in cents.
func (d *dayStream) price(locate uint16, side byte) uint32 {
	mid := &d.mids[locate-1]
	if d.rng.IntN(50) == 0 {
		*mid = uint32(int64(*mid) + int64(d.rng.IntN(3)-1)*100)
	}
	ticks := uint32(1)
	for ticks < 400 && d.rng.IntN(3) != 0 {
		ticks += uint32(1 + d.rng.IntN(2))
	}
	if side == 'B' {
		return *mid - ticks*100
	}
	return *mid + ticks*100
}

func (d *dayStream) add() {
	// Activity is skewed: a few symbols take most orders.
	n := len(d.mids)
	locate := uint16(1 + int(float64(n)*d.rng.Float64()*d.rng.Float64()))
	side := "BS"[d.rng.IntN(2)]
	o := liveOrder{ref: d.nextRef, locate: locate, side: side, shares: uint32(100 * (1 + d.rng.IntN(10))), price: d.price(locate, side)}
	d.nextRef++
	d.live = append(d.live, o)
	if d.rng.IntN(100) == 0 {
		d.emit(&itch.AddOrderMPIDFields{Header: d.hdr(locate), OrderRef: o.ref, Side: side, Shares: o.shares, Stock: itch.NewSymbol(symName(int(locate))), Price: o.price, Attribution: itch.NewMPID("NITE")})
		return
	}
	d.emit(&itch.AddOrderFields{Header: d.hdr(locate), OrderRef: o.ref, Side: side, Shares: o.shares, Stock: itch.NewSymbol(symName(int(locate))), Price: o.price})
}

// pick returns the index of a live order: mostly a recent one (most orders
// live briefly), sometimes any.
func (d *dayStream) pick() int {
	n := len(d.live)
	if d.rng.IntN(10) < 7 {
		return n - 1 - d.rng.IntN(min(n, 4096))
	}
	return d.rng.IntN(n)
}

func (d *dayStream) unlive(i int) liveOrder {
	o := d.live[i]
	d.live[i] = d.live[len(d.live)-1]
	d.live = d.live[:len(d.live)-1]
	return o
}

func (d *dayStream) reduce(kind byte) {
	if len(d.live) == 0 {
		d.add()
		return
	}
	i := d.pick()
	o := &d.live[i]
	h := d.hdr(o.locate)
	switch kind {
	case 'D':
		d.emit(&itch.OrderDeleteFields{Header: h, OrderRef: o.ref})
		d.unlive(i)
		return
	}
	sh := o.shares
	if d.rng.IntN(2) == 0 && sh > 100 {
		sh = 100
	}
	switch kind {
	case 'E':
		d.emit(&itch.OrderExecutedFields{Header: h, OrderRef: o.ref, ExecutedShares: sh, MatchNumber: uint64(d.msgs)})
	case 'C':
		d.emit(&itch.OrderExecutedWithPriceFields{Header: h, OrderRef: o.ref, ExecutedShares: sh, MatchNumber: uint64(d.msgs), Printable: 'Y', ExecutionPrice: o.price})
	case 'X':
		d.emit(&itch.OrderCancelFields{Header: h, OrderRef: o.ref, CancelledShares: sh})
	}
	if o.shares -= sh; o.shares == 0 {
		d.unlive(i)
	}
}

func (d *dayStream) replace() {
	if len(d.live) == 0 {
		d.add()
		return
	}
	i := d.pick()
	o := &d.live[i]
	old := o.ref
	o.ref = d.nextRef
	d.nextRef++
	o.price = d.price(o.locate, o.side)
	o.shares = uint32(100 * (1 + d.rng.IntN(10)))
	d.emit(&itch.OrderReplaceFields{Header: d.hdr(o.locate), OriginalOrderRef: old, NewOrderRef: o.ref, Shares: o.shares, Price: o.price})
}
