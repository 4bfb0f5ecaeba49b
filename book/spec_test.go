package book

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// The tests here check Apply against the TotalView-ITCH 5.0 specification
// itself (/work/shared/spec/itch50-moldudp64.md and Nasdaq's published
// specification), not against the reference book: each message is built
// byte by byte at the offsets the specification gives, without the itch
// package's encoders, and each expectation is the specification's.

// specMsg builds an ITCH message of type t and total length n on locate
// with timestamp ts; fill writes the type's fields at their offsets.
func specMsg(t byte, n int, locate uint16, ts uint64, fill func(m []byte)) itch.Msg {
	m := make([]byte, n)
	m[0] = t
	binary.BigEndian.PutUint16(m[1:], locate)
	for i := range 6 { // 6-byte timestamp, big-endian, at 5
		m[5+i] = byte(ts >> (8 * (5 - i)))
	}
	if fill != nil {
		fill(m)
	}
	return m
}

func put8(m []byte, at int, v uint64) { binary.BigEndian.PutUint64(m[at:], v) }
func put4(m []byte, at int, v uint32) { binary.BigEndian.PutUint32(m[at:], v) }
func putSym(m []byte, at int, s string) {
	copy(m[at:at+8], "        ")
	copy(m[at:], s)
}

const specLocate = 7

func specR(sym string) itch.Msg {
	return specMsg('R', 39, specLocate, 1, func(m []byte) { putSym(m, 11, sym) })
}

func specA(ref uint64, side byte, shares, price uint32) itch.Msg {
	return specMsg('A', 36, specLocate, 2, func(m []byte) {
		put8(m, 11, ref)
		m[19] = side
		put4(m, 20, shares)
		putSym(m, 24, "SPEC")
		put4(m, 32, price)
	})
}

func specF(ref uint64, side byte, shares, price uint32) itch.Msg {
	return specMsg('F', 40, specLocate, 2, func(m []byte) {
		put8(m, 11, ref)
		m[19] = side
		put4(m, 20, shares)
		putSym(m, 24, "SPEC")
		put4(m, 32, price)
		copy(m[36:40], "MPID")
	})
}

func specE(ref uint64, shares uint32, match uint64) itch.Msg {
	return specMsg('E', 31, specLocate, 3, func(m []byte) {
		put8(m, 11, ref)
		put4(m, 19, shares)
		put8(m, 23, match)
	})
}

func specC(ref uint64, shares uint32, match uint64, printable byte, price uint32) itch.Msg {
	return specMsg('C', 36, specLocate, 4, func(m []byte) {
		put8(m, 11, ref)
		put4(m, 19, shares)
		put8(m, 23, match)
		m[31] = printable
		put4(m, 32, price)
	})
}

func specX(ref uint64, shares uint32) itch.Msg {
	return specMsg('X', 23, specLocate, 5, func(m []byte) {
		put8(m, 11, ref)
		put4(m, 19, shares)
	})
}

func specD(ref uint64) itch.Msg {
	return specMsg('D', 19, specLocate, 6, func(m []byte) { put8(m, 11, ref) })
}

func specU(orig, ref uint64, shares, price uint32) itch.Msg {
	return specMsg('U', 35, specLocate, 7, func(m []byte) {
		put8(m, 11, orig)
		put8(m, 19, ref)
		put4(m, 27, shares)
		put4(m, 31, price)
	})
}

// specP is a Trade (non-cross): order reference 0, side 'B' (as Nasdaq
// sends them), shares u32 at 20, stock at 24, price at 32, match at 36.
func specP(shares, price uint32, match uint64) itch.Msg {
	return specMsg('P', 44, specLocate, 8, func(m []byte) {
		m[19] = 'B'
		put4(m, 20, shares)
		putSym(m, 24, "SPEC")
		put4(m, 32, price)
		put8(m, 36, match)
	})
}

// specQ is a Cross Trade: shares u64 at 11, stock at 19, cross price at
// 27, match at 31, cross type at 39.
func specQ(shares uint64, price uint32, match uint64) itch.Msg {
	return specMsg('Q', 40, specLocate, 9, func(m []byte) {
		put8(m, 11, shares)
		putSym(m, 19, "SPEC")
		put4(m, 27, price)
		put8(m, 31, match)
		m[39] = 'O'
	})
}

func specB(match uint64) itch.Msg {
	return specMsg('B', 19, specLocate, 10, func(m []byte) { put8(m, 11, match) })
}

type specWant struct {
	price          uint32
	shares, volume uint64
}

func checkLast(t *testing.T, bs *Books, what string, want specWant) {
	t.Helper()
	p, s, v := bs.Book(specLocate).Last()
	if got := (specWant{p, s, v}); got != want {
		t.Errorf("%s: last trade %d@%d volume %d, want %d@%d volume %d", what, got.shares, got.price, got.volume, want.shares, want.price, want.volume)
	}
}

func checkQueue(t *testing.T, bs *Books, what string, side Side, price uint32, want ...OrderInfo) {
	t.Helper()
	got := bs.Book(specLocate).Queue(side, price, make([]OrderInfo, 0, 16))
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: queue %v at %d: %+v, want %+v", what, side, price, got, want)
	}
}

func mustApply(t *testing.T, bs *Books, m itch.Msg, wantChanged bool) {
	t.Helper()
	if loc, changed := bs.Apply(m); changed != wantChanged || (changed && m[0] != 'S' && loc != specLocate) {
		t.Fatalf("Apply(%c) = %d, %v; want changed %v", m[0], loc, changed, wantChanged)
	}
}

// TestSpecOrderMessages walks one instrument through every order message
// and checks the book and the trade statistics each leaves, as the
// specification defines them: 'E' executes at the order's displayed price
// and prints; 'C' executes at its own price and prints only when Printable
// is 'Y' (Nasdaq: non-printable executions must not be counted, or cross
// volume is counted twice); 'X' takes shares off; 'D' removes; 'U' removes
// the original and adds the new reference on the same side at the new
// price and shares, behind the orders already at that price; 'P' (a
// non-displayed order's execution) and 'Q' (a cross, with its cross
// shares) print without touching the book; 'B' takes a printed trade back
// out of the volume and the last trade.
func TestSpecOrderMessages(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, bs, specR("SPEC"), true)
	if got := bs.Book(specLocate).Name(); got != "SPEC" {
		t.Fatalf("symbol %q", got)
	}

	mustApply(t, bs, specA(10, 'B', 100, 100000), true)
	mustApply(t, bs, specF(11, 'S', 200, 101000), true)
	mustApply(t, bs, specA(12, 'B', 50, 100000), true)
	checkQueue(t, bs, "adds", Bid, 100000, OrderInfo{10, Bid, 100000, 100}, OrderInfo{12, Bid, 100000, 50})
	checkQueue(t, bs, "adds", Ask, 101000, OrderInfo{11, Ask, 101000, 200})
	checkLast(t, bs, "adds", specWant{})

	mustApply(t, bs, specE(10, 30, 1), true)
	checkQueue(t, bs, "E", Bid, 100000, OrderInfo{10, Bid, 100000, 70}, OrderInfo{12, Bid, 100000, 50})
	checkLast(t, bs, "E", specWant{100000, 30, 30})

	mustApply(t, bs, specC(11, 20, 2, 'N', 100500), true)
	checkQueue(t, bs, "C non-printable", Ask, 101000, OrderInfo{11, Ask, 101000, 180})
	checkLast(t, bs, "C non-printable", specWant{100000, 30, 30})

	mustApply(t, bs, specC(11, 10, 3, 'Y', 100600), true)
	checkQueue(t, bs, "C printable", Ask, 101000, OrderInfo{11, Ask, 101000, 170})
	checkLast(t, bs, "C printable", specWant{100600, 10, 40})

	mustApply(t, bs, specX(11, 80), true)
	checkQueue(t, bs, "X", Ask, 101000, OrderInfo{11, Ask, 101000, 90})

	// U: new reference, same side, new price and shares.
	mustApply(t, bs, specU(10, 20, 500, 99000), true)
	checkQueue(t, bs, "U new price", Bid, 100000, OrderInfo{12, Bid, 100000, 50})
	checkQueue(t, bs, "U new price", Bid, 99000, OrderInfo{20, Bid, 99000, 500})
	if _, ok := bs.Order(specLocate, 10); ok {
		t.Errorf("U: original order 10 still live")
	}
	// U at the same price loses priority to orders already there.
	mustApply(t, bs, specA(13, 'B', 10, 100000), true)
	mustApply(t, bs, specU(12, 21, 50, 100000), true)
	checkQueue(t, bs, "U same price", Bid, 100000, OrderInfo{13, Bid, 100000, 10}, OrderInfo{21, Bid, 100000, 50})
	// U of an ask keeps it an ask.
	mustApply(t, bs, specU(11, 22, 90, 102000), true)
	checkQueue(t, bs, "U ask", Ask, 102000, OrderInfo{22, Ask, 102000, 90})

	mustApply(t, bs, specD(13), true)
	checkQueue(t, bs, "D", Bid, 100000, OrderInfo{21, Bid, 100000, 50})

	orders := bs.Book(specLocate).Orders()
	mustApply(t, bs, specP(300, 100200, 4), true)
	checkLast(t, bs, "P", specWant{100200, 300, 340})
	mustApply(t, bs, specQ(1000, 100300, 5), true)
	checkLast(t, bs, "Q", specWant{100300, 1000, 1340})
	if got := bs.Book(specLocate).Orders(); got != orders {
		t.Errorf("P/Q changed the book: %d orders, want %d", got, orders)
	}
	mustApply(t, bs, specQ(0, 100300, 6), false) // a cross that did not execute
	checkLast(t, bs, "Q of 0 shares", specWant{100300, 1000, 1340})

	mustApply(t, bs, specB(5), true)
	checkLast(t, bs, "B of the cross", specWant{100200, 300, 340})
	mustApply(t, bs, specB(1), true)
	checkLast(t, bs, "B of the E", specWant{100200, 300, 310})
	mustApply(t, bs, specB(2), true) // the non-printable C: nothing to take back
	checkLast(t, bs, "B of the non-printable C", specWant{100200, 300, 310})
	if got := bs.Book(specLocate).Orders(); got != orders {
		t.Errorf("B changed the book: %d orders, want %d", got, orders)
	}
	if s := bs.Stats(); s != (Stats{Messages: s.Messages, Orders: s.Orders, Levels: s.Levels}) {
		t.Errorf("consistent input counted: %+v", s)
	}
}

// TestSpecInconsistentOrders checks that each message the specification
// cannot produce on a consistent book (execute or cancel of more shares
// than left, a reference unknown or already live) is counted under its
// own counter and leaves the book as the rules in doc.go say.
func TestSpecInconsistentOrders(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, bs, specR("SPEC"), true)
	mustApply(t, bs, specA(1, 'B', 100, 100000), true)
	mustApply(t, bs, specA(2, 'S', 100, 101000), true)
	mustApply(t, bs, specA(3, 'B', 100, 99000), true)
	mustApply(t, bs, specA(4, 'S', 100, 102000), true)

	for _, c := range []struct {
		name    string
		m       itch.Msg
		changed bool
		counter func(Stats) uint64
		live    []uint64 // orders live after it
	}{
		{"A of a live reference", specA(1, 'S', 5, 1), false, func(s Stats) uint64 { return s.DuplicateAdd }, []uint64{1, 2, 3, 4}},
		{"E of an unknown reference", specE(99, 5, 10), false, func(s Stats) uint64 { return s.UnknownRefExecute }, []uint64{1, 2, 3, 4}},
		{"C of an unknown reference", specC(99, 5, 11, 'Y', 1), false, func(s Stats) uint64 { return s.UnknownRefExecute }, []uint64{1, 2, 3, 4}},
		{"X of an unknown reference", specX(99, 5), false, func(s Stats) uint64 { return s.UnknownRefCancel }, []uint64{1, 2, 3, 4}},
		{"D of an unknown reference", specD(99), false, func(s Stats) uint64 { return s.UnknownRefDelete }, []uint64{1, 2, 3, 4}},
		{"U of an unknown reference", specU(99, 100, 5, 1), false, func(s Stats) uint64 { return s.UnknownRefReplace }, []uint64{1, 2, 3, 4}},
		{"U to a live reference", specU(1, 2, 5, 1), true, func(s Stats) uint64 { return s.DuplicateAdd }, []uint64{2, 3, 4}},
		{"E of more than left", specE(2, 150, 12), true, func(s Stats) uint64 { return s.OverExecution }, []uint64{3, 4}},
		{"X of more than left", specX(3, 150), true, func(s Stats) uint64 { return s.OverCancel }, []uint64{4}},
		// A new reference that is the original's (ITCH gives the new
		// order a new one): replaced all the same, at 50 shares.
		{"U to its own reference", specU(4, 4, 50, 103000), true, func(s Stats) uint64 { return s.DuplicateAdd }, []uint64{4}},
		// A printable flag neither 'Y' nor 'N': the shares leave the
		// order, the print (in doubt) is left out of the last trade.
		{"C of an undefined printable flag", specC(4, 30, 13, 'y', 102500), true, func(s Stats) uint64 { return s.BadState }, []uint64{4}},
	} {
		before := c.counter(bs.Stats())
		if _, changed := bs.Apply(c.m); changed != c.changed {
			t.Errorf("%s: changed %v, want %v", c.name, changed, c.changed)
		}
		if got := c.counter(bs.Stats()) - before; got != 1 {
			t.Errorf("%s: counted %d times, want once", c.name, got)
		}
		var live []uint64
		for ref := range uint64(101) {
			if _, ok := bs.Order(specLocate, ref); ok {
				live = append(live, ref)
			}
		}
		if !slices.Equal(live, c.live) {
			t.Errorf("%s: live orders %v, want %v", c.name, live, c.live)
		}
		if got := uint64(bs.Book(specLocate).Orders()); got != uint64(len(c.live)) {
			t.Errorf("%s: book counts %d orders, want %d", c.name, got, len(c.live))
		}
	}
	if o, _ := bs.Order(specLocate, 1); o != (OrderInfo{}) {
		t.Errorf("order 1 after its replace: %+v", o)
	}
	if o, _ := bs.Order(specLocate, 4); o.Shares != 20 || o.Price != 103000 {
		t.Errorf("order 4 after its replace to itself and the C of an undefined printable flag: %+v, want 20 shares at 103000", o)
	}
	if p, s, v := bs.Book(specLocate).Last(); p != 101000 || s != 150 || v != 150 {
		t.Errorf("last trade %d@%d, volume %d after the C of an undefined printable flag; want the E's 150@101000, 150", s, p, v)
	}
}

// TestSpecStates checks the instrument and market states: 'H' trading
// state (byte 19), 'h' operational halt (market code 19, action 20; only
// Nasdaq's market 'Q' is this book's), 'Y' Reg SHO action (19), 'S' system
// event code (11); the market-wide types with no book effect ('V', 'W',
// 'K', 'J', 'L', 'I', 'N', 'O') change nothing.
func TestSpecStates(t *testing.T) {
	bs, b := specStateBooks(t)
	for _, st := range []byte{'H', 'P', 'Q', 'T'} {
		mustApply(t, bs, specMsg('H', 25, specLocate, 11, func(m []byte) {
			putSym(m, 11, "SPEC")
			m[19] = st
			m[20] = ' '
			copy(m[21:25], "T1  ")
		}), true)
		if b.TradingState() != st {
			t.Errorf("H %c: trading state %c", st, b.TradingState())
		}
	}
	halt := func(market, action byte) itch.Msg {
		return specMsg('h', 21, specLocate, 12, func(m []byte) {
			putSym(m, 11, "SPEC")
			m[19], m[20] = market, action
		})
	}
	mustApply(t, bs, halt('Q', 'H'), true)
	if b.OperationalHalt() != 'H' {
		t.Errorf("h Q H: %c", b.OperationalHalt())
	}
	mustApply(t, bs, halt('B', 'T'), false) // BX's halt is not Nasdaq's
	if b.OperationalHalt() != 'H' {
		t.Errorf("h B T: %c", b.OperationalHalt())
	}
	mustApply(t, bs, halt('Q', 'T'), true)
	if b.OperationalHalt() != 'T' {
		t.Errorf("h Q T: %c", b.OperationalHalt())
	}
	for _, a := range []byte{'1', '2', '0'} {
		mustApply(t, bs, specMsg('Y', 20, specLocate, 13, func(m []byte) {
			putSym(m, 11, "SPEC")
			m[19] = a
		}), true)
		if b.RegSHO() != a {
			t.Errorf("Y %c: %c", a, b.RegSHO())
		}
	}
	for _, e := range []byte{'O', 'S', 'Q', 'M', 'E', 'C'} {
		mustApply(t, bs, specMsg('S', 12, 0, 14, func(m []byte) { m[11] = e }), true)
		if got, ts := bs.SystemEvent(); got != e || ts != 14 {
			t.Errorf("S %c: %c at %d", e, got, ts)
		}
	}
	mustApply(t, bs, specA(1, 'B', 100, 100000), true)
	for _, tl := range []struct {
		t byte
		n int
	}{{'V', 35}, {'W', 12}, {'K', 28}, {'J', 35}, {'L', 26}, {'I', 50}, {'N', 20}, {'O', 48}} {
		loc := uint16(specLocate)
		if tl.t == 'V' || tl.t == 'W' {
			loc = 0
		}
		mustApply(t, bs, specMsg(tl.t, tl.n, loc, 15, nil), false)
	}
	if _, s, v := b.Last(); b.Orders() != 1 || s != 0 || v != 0 || b.TradingState() != 'T' || b.RegSHO() != '0' || b.OperationalHalt() != 'T' {
		t.Errorf("informational messages changed the book: %d orders, last %d, volume %d, states %c %c %c", b.Orders(), s, v, b.TradingState(), b.RegSHO(), b.OperationalHalt())
	}
	if got := b.Timestamp(); got != 2 {
		t.Errorf("timestamp %d, want the add's 2", got)
	}
}

// TestSpecStatesUnknownValue: an 'H', 'Y' or 'h' whose state, action or
// market code is none of the values ITCH 5.0 defines (H/P/Q/T; 0/1/2;
// H/T and Q/B/X) is bad input: the instrument keeps its state (a halted
// stock stays halted, not published as Unknown), nothing changes, and the
// message is counted in BadState, an inconsistency. So is an 'S' whose
// event code is none of O/S/Q/M/E/C: the market keeps its last event.
func TestSpecStatesUnknownValue(t *testing.T) {
	bs, b := specStateBooks(t)
	trading := func(st byte, ts uint64) itch.Msg {
		return specMsg('H', 25, specLocate, ts, func(m []byte) { putSym(m, 11, "SPEC"); m[19] = st })
	}
	halt := func(market, action byte, ts uint64) itch.Msg {
		return specMsg('h', 21, specLocate, ts, func(m []byte) { putSym(m, 11, "SPEC"); m[19], m[20] = market, action })
	}
	sho := func(a byte, ts uint64) itch.Msg {
		return specMsg('Y', 20, specLocate, ts, func(m []byte) { putSym(m, 11, "SPEC"); m[19] = a })
	}
	event := func(e byte, ts uint64) itch.Msg {
		return specMsg('S', 12, 0, ts, func(m []byte) { m[11] = e })
	}
	mustApply(t, bs, event('Q', 9), true)
	mustApply(t, bs, trading('H', 10), true)
	mustApply(t, bs, halt('Q', 'H', 11), true)
	mustApply(t, bs, sho('1', 12), true)
	bad := []itch.Msg{
		trading('X', 20), trading(0, 21), trading('t', 22), trading(' ', 23),
		halt('Q', 'X', 24), halt('Z', 'T', 25), halt('B', 0, 26), halt(' ', 'H', 27),
		sho('3', 28), sho(' ', 29), sho(0, 30),
		event('Z', 31), event(0, 32), event('q', 33), event(' ', 34),
	}
	for _, m := range bad {
		mustApply(t, bs, m, false)
	}
	if b.TradingState() != 'H' || b.OperationalHalt() != 'H' || b.RegSHO() != '1' || b.Timestamp() != 12 {
		t.Errorf("after unknown values: trading state %q, operational halt %q, Reg SHO %q, timestamp %d; want 'H', 'H', '1', 12",
			b.TradingState(), b.OperationalHalt(), b.RegSHO(), b.Timestamp())
	}
	if e, ts := bs.SystemEvent(); e != 'Q' || ts != 9 {
		t.Errorf("after unknown event codes: system event %q at %d; want 'Q' at 9", e, ts)
	}
	if s := bs.Stats(); s.BadState != uint64(len(bad)) || s.Inconsistencies() != uint64(len(bad)) {
		t.Errorf("bad state %d, inconsistencies %d; want %d", s.BadState, s.Inconsistencies(), len(bad))
	}
	// Every value the specification defines still applies.
	mustApply(t, bs, trading('T', 40), true)
	mustApply(t, bs, halt('Q', 'T', 41), true)
	mustApply(t, bs, halt('X', 'H', 42), false) // PSX's halt is not Nasdaq's
	mustApply(t, bs, sho('0', 43), true)
	if b.TradingState() != 'T' || b.OperationalHalt() != 'T' || b.RegSHO() != '0' || bs.Stats().BadState != uint64(len(bad)) {
		t.Errorf("valid values after: %q %q %q, bad state %d", b.TradingState(), b.OperationalHalt(), b.RegSHO(), bs.Stats().BadState)
	}
}

// specStateBooks returns small books announcing SPEC at specLocate, and its
// book.
func specStateBooks(t *testing.T) (*Books, *Book) {
	t.Helper()
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, bs, specR("SPEC"), true)
	b := bs.Book(specLocate)
	return bs, b
}
