package book

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// The wire differential: streams of every message that touches a book
// (R, A, F, E, C, X, D, U, P, Q, B, H, h, Y, S), encoded byte by byte at
// the offsets of the ITCH 5.0 specification (specMsg, not the itch
// package's encoders), go through Books.Apply and through the reference
// book (ref_test.go). After every message the named instrument's book
// (every level's price, shares, order count and queue, both sides), its
// last trade, volume, trade counts, states and timestamp, the market's
// system event, every counter of bad input, and what Apply reports
// (changed, and which locate) must be the reference's; every few messages
// and at the end, every instrument and every live order's lookup.
//
// The streams come from bytes (FuzzWireDifferential, and
// TestWireDifferential's seeded ones): small spaces of references and
// prices so that duplicates, unknown references, collisions, over-executions
// and levels emptying and refilling are common, with prices 0 and 2^32-1,
// share counts up to 2^32-1, many instruments (locate 0, unannounced ones,
// ones above Config.MaxLocates, re-announced under the same or another
// symbol), match numbers 0, repeated and broken, messages longer than their
// type's length or cut short, Reset in the middle, and tiny capacities.

// wireConfigs are the Books configurations a byte stream may choose.
var wireConfigs = []Config{
	// Tiny: every capacity runs out; more live orders than home slots and
	// fewer overflow slots than orders; the ladder block used up (ladders
	// grow on the heap); the trade memory wraps.
	{MaxOrders: 24, MaxLocates: 40, MaxLevels: 20, RefTableSize: 16, Overflow: 12, TradeMemory: 16},
	// Roomy, many instruments: nothing runs out.
	{MaxOrders: 1 << 12, MaxLocates: 300, MaxLevels: 1 << 12, TradeMemory: 1 << 10},
}

// wireAnnounced is how many locates a stream starts with announced.
const wireAnnounced = 32

// wireKinds picks an op's kind from its first byte (adds, deletes and
// replaces weighted up, as on a real day). 'Z' is Books.Reset (a
// snapshot's rebuild) one time in eight, a 'D' otherwise.
const wireKinds = "RAAAAAFFFEECCXXXDDDDUUUUPQBBHhYSZ"

// wireShares: most share counts small, the rest the extremes.
func wireShares(b byte) uint32 {
	if b < 240 {
		return uint32(b) // 0 too
	}
	return [...]uint32{1<<32 - 1, 1<<32 - 2, 1 << 31, 1<<31 - 1, 1 << 16, 1<<16 - 1, 1 << 24, 1_000_000,
		99_999_999, 1, 2, 100, 200, 500, 1 << 30, 3}[b-240]
}

// wirePrice: most prices among 24 close levels, the rest the extremes.
func wirePrice(b byte) uint32 {
	if b < 224 {
		return 1000 + uint32(b%24)
	}
	return [...]uint32{0, 1, 2, 1<<32 - 1, 1<<32 - 2, 1 << 31, 1<<31 - 1, 1<<31 + 1, 999, 1024, 1 << 16,
		1 << 24, 2_000_000_000, 1<<32 - 3, 3, 1000}[(b-224)%16]
}

// wireRef: a small space of references, some sharing the low 32 bits (and
// so the home slot) of a small one.
func wireRef(b byte) uint64 {
	r := uint64(b % 48)
	if b >= 224 {
		r += uint64(b) << 32
	}
	return r
}

// wireLocate: mostly four busy instruments, else any of 0..63.
func wireLocate(b byte) uint16 {
	if b < 192 {
		return 1 + uint16(b%4)
	}
	return uint16(b - 192)
}

// wireSymbol is the symbol of locate: variant 0 is the one it is
// announced with at the start (announceOps'), others another instrument.
func wireSymbol(locate uint16, variant byte) [8]byte {
	if variant == 0 {
		return [8]byte{'S', byte('0' + locate%10), ' ', ' ', ' ', ' ', ' ', ' '}
	}
	return [8]byte{'T', byte('A' + variant), byte('A' + locate%26), byte('A' + locate/26%26), ' ', ' ', ' ', ' '}
}

// wireOpsOfBytes turns bytes into ops, 8 bytes each: kind, locate, ref,
// flags (side, printable; bad sides, a message longer than its type's
// length or cut short), shares, price, a byte for the new reference,
// match or state (0xf8 and up: a state byte ITCH 5.0 does not define), and
// a byte for the symbol, market code or C's printable flag (0xf8 and up:
// one it does not define) or timestamp.
func wireOpsOfBytes(data []byte) []op {
	var ops []op
	var match uint64 // the last match number given
	for i := 0; len(data) >= 8; i, data = i+1, data[8:] {
		o := op{
			kind:      wireKinds[int(data[0])%len(wireKinds)],
			locate:    wireLocate(data[1]),
			ref:       wireRef(data[2]),
			side:      "BS"[data[3]&1],
			printable: data[3]&2 != 0,
			shares:    wireShares(data[4]),
			price:     wirePrice(data[5]),
			newRef:    wireRef(data[6]),
			ts:        uint64(i + 1),
		}
		switch data[3] {
		case 255:
			o.side = 'Z'
		case 254:
			o.side = 0
		case 253:
			o.side = 'b'
		case 252, 251: // a longer message, applied as its type
			o.extra = int(data[3]) - 250
		case 250: // a message cut short, ignored
			o.extra = -1
		}
		if data[7] == 255 {
			o.ts = 1<<48 - 1 // the largest 6-byte timestamp
		}
		switch o.kind {
		case 'Z':
			if data[7] >= 32 {
				o.kind = 'D'
			}
		case 'F':
			o.kind, o.attrib = 'A', true
		case 'R':
			o.symbol = wireSymbol(o.locate, data[7]%3)
		case 'E', 'C', 'P', 'Q':
			switch data[6] {
			case 0: // no match number
			case 1: // the last one again (bad input)
				o.match = match
			default:
				match++
				o.match = match
			}
			o.volume = uint64(o.shares)
			if o.kind == 'Q' && data[7]&1 != 0 {
				o.volume <<= 20 // a cross's shares are 8 bytes
			}
		case 'B': // one of the last 8 matches, one never given, or 0
			switch k := data[6] % 10; k {
			case 0:
			case 9:
				o.match = match + 1 + uint64(data[7])<<40
			default:
				o.match = match + 1 - uint64(k-1)
			}
		case 'H':
			o.state = "HPQT"[data[6]%4]
		case 'h':
			o.state = "HT"[data[6]&1]
			o.market = "QBX"[data[7]%3]
			if data[7] >= 0xf8 { // a market code ITCH 5.0 does not define
				o.market = data[7]
			}
		case 'Y':
			o.state = "012"[data[6]%3]
		case 'S':
			o.state = "OSQMEC"[data[6]%6]
		}
		if o.kind == 'C' && data[7] >= 0xf8 { // a printable flag ITCH 5.0 does not define: BadState
			o.printable, o.badPrint, o.state = false, true, data[7]
		}
		if data[6] >= 0xf8 && (o.kind == 'H' || o.kind == 'h' || o.kind == 'Y' || o.kind == 'S') {
			o.state = data[6] // a state, action or event code ITCH 5.0 does not define: BadState
		}
		ops = append(ops, o)
	}
	return ops
}

// wireMsg encodes o as the ITCH 5.0 message the specification lays out
// (/work/shared/spec/itch50-moldudp64.md and Nasdaq's specification), byte
// by byte; fields the books do not read carry plausible values.
func wireMsg(o op) itch.Msg {
	sym := o.symbol
	if o.kind != 'R' {
		sym = [8]byte{'W', 'I', 'R', 'E', ' ', ' ', ' ', ' '}
	}
	stock := func(m []byte, at int) { copy(m[at:at+8], sym[:]) }
	switch o.kind {
	case 'R':
		return specMsg('R', 39, o.locate, o.ts, func(m []byte) {
			stock(m, 11)
			m[19], m[20] = 'Q', 'N' // market category, financial status
			put4(m, 21, 100)        // round lot size
			m[25], m[26] = 'N', 'C' // round lots only, issue classification
			m[27], m[28] = 'Z', ' ' // issue sub-type
			m[29], m[30], m[31], m[32], m[33] = 'P', 'N', ' ', '1', 'N'
			put4(m, 34, 0) // ETP leverage factor
			m[38] = 'N'    // inverse indicator
		})
	case 'A':
		n, t := 36, byte('A')
		if o.attrib {
			n, t = 40, 'F'
		}
		return specMsg(t, n, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.ref)
			m[19] = o.side
			put4(m, 20, o.shares)
			stock(m, 24)
			put4(m, 32, o.price)
			if o.attrib {
				copy(m[36:40], "MPID")
			}
		})
	case 'E':
		return specMsg('E', 31, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.ref)
			put4(m, 19, o.shares)
			put8(m, 23, o.match)
		})
	case 'C':
		return specMsg('C', 36, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.ref)
			put4(m, 19, o.shares)
			put8(m, 23, o.match)
			m[31] = 'N'
			if o.printable {
				m[31] = 'Y'
			}
			if o.badPrint {
				m[31] = o.state
			}
			put4(m, 32, o.price)
		})
	case 'X':
		return specMsg('X', 23, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.ref)
			put4(m, 19, o.shares)
		})
	case 'D':
		return specMsg('D', 19, o.locate, o.ts, func(m []byte) { put8(m, 11, o.ref) })
	case 'U':
		return specMsg('U', 35, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.ref)
			put8(m, 19, o.newRef)
			put4(m, 27, o.shares)
			put4(m, 31, o.price)
		})
	case 'P': // the order reference (0 from Nasdaq) and side are not the book's
		return specMsg('P', 44, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.ref)
			m[19] = o.side
			put4(m, 20, uint32(o.volume))
			stock(m, 24)
			put4(m, 32, o.price)
			put8(m, 36, o.match)
		})
	case 'Q':
		return specMsg('Q', 40, o.locate, o.ts, func(m []byte) {
			put8(m, 11, o.volume)
			stock(m, 19)
			put4(m, 27, o.price)
			put8(m, 31, o.match)
			m[39] = 'C'
		})
	case 'B':
		return specMsg('B', 19, o.locate, o.ts, func(m []byte) { put8(m, 11, o.match) })
	case 'H':
		return specMsg('H', 25, o.locate, o.ts, func(m []byte) {
			stock(m, 11)
			m[19], m[20] = o.state, ' '
			copy(m[21:25], "LUDP")
		})
	case 'h':
		return specMsg('h', 21, o.locate, o.ts, func(m []byte) {
			stock(m, 11)
			m[19], m[20] = o.market, o.state
		})
	case 'Y':
		return specMsg('Y', 20, o.locate, o.ts, func(m []byte) {
			stock(m, 11)
			m[19] = o.state
		})
	case 'S':
		return specMsg('S', 12, o.locate, o.ts, func(m []byte) { m[11] = o.state })
	}
	panic("wireMsg: kind " + string(o.kind))
}

// wireCompareEvery: every so many messages the wire differential compares
// every instrument, not only the one the message named.
const wireCompareEvery = 64

// runWireDifferential applies ops to a new Books through Apply and to the
// reference book, comparing them as the file's comment says.
func runWireDifferential(t testing.TB, cfg Config, ops []op) {
	bs, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newRefBooks(cfg)
	for _, o := range announceOps(wireAnnounced) {
		bs.Apply(wireMsg(o))
		r.apply(o)
	}
	for i, o := range ops {
		if o.kind == 'Z' {
			bs.Reset()
			r.reset()
			if err := compareWireAll(bs, r); err != nil {
				t.Fatalf("message %d, after Reset: %v", i, err)
			}
			continue
		}
		m := wireMsg(o)
		if o.extra > 0 {
			m = append(m, make([]byte, o.extra)...)
		} else {
			m = m[:len(m)+o.extra]
		}
		before := refState(r, o.locate)
		loc, changed := bs.Apply(m)
		want := r.apply(o)
		fail := func(err error) {
			t.Helper()
			t.Fatalf("message %d (%c %+v, % x): %v", i, m[0], o, []byte(m), err)
		}
		if !want && refState(r, o.locate) != before {
			fail(fmt.Errorf("the reference says unchanged, but its state changed"))
		}
		wantLoc := o.locate
		if o.kind == 'S' {
			wantLoc = 0
		}
		if changed != want || (changed && loc != wantLoc) {
			fail(fmt.Errorf("Apply = %d, %v; want %v for locate %d", loc, changed, want, wantLoc))
		}
		if err := compareWire(bs, r, o.locate); err != nil {
			fail(err)
		}
		if i%wireCompareEvery == wireCompareEvery-1 || i == len(ops)-1 {
			if err := compareWireAll(bs, r); err != nil {
				fail(err)
			}
		}
	}
	if err := compareWireAll(bs, r); err != nil {
		t.Fatalf("end: %v", err)
	}
}

// reset empties r as Books.Reset does: nothing known, no orders or
// trades, no system event; the counters run on.
func (r *refBooks) reset() {
	n := newRefBooks(r.cfg)
	n.stats, n.brokenNoLocate = r.stats, r.brokenNoLocate
	n.stats.Incomplete = 0 // a gauge: the books are empty
	*r = *n
}

// refState renders what the reference holds for locate: its book, trades
// and states.
func refState(r *refBooks, locate uint16) string {
	b := r.books[locate]
	if b == nil {
		return "unknown"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%q", b.symbol)
	for side := Bid; side <= Ask; side++ {
		for _, lv := range r.depth(b, side) {
			fmt.Fprintf(&sb, " %v", lv)
			for _, ref := range b.sides[side][lv.Price] {
				fmt.Fprintf(&sb, " %+v", *r.orders[refKey{locate, ref}])
			}
		}
	}
	if b.last != nil {
		fmt.Fprintf(&sb, " last %+v", *b.last)
	}
	fmt.Fprintf(&sb, " %d %d %d %c%c%c", b.volume, b.trades, b.broken, b.state, b.regSHO, b.opHalt)
	return sb.String()
}

// compareWire compares the book of locate, its states and timestamp, the
// market's system event and every counter.
func compareWire(bs *Books, r *refBooks, locate uint16) error {
	if err := compareBook(bs, r, locate); err != nil {
		return err
	}
	if rb := r.books[locate]; rb != nil {
		b := bs.Book(locate)
		// What a publisher reads: Top, Depth with a limit, Levels, Crossed.
		want := [2][]Level{r.depth(rb, Bid), r.depth(rb, Ask)}
		bids, asks := make([]Level, len(want[Bid])), make([]Level, len(want[Ask]))
		b.Top(bids, asks)
		if !slices.Equal(bids, want[Bid]) || !slices.Equal(asks, want[Ask]) {
			return fmt.Errorf("locate %d: Top %v %v, want %v %v", locate, bids, asks, want[Bid], want[Ask])
		}
		for side := Bid; side <= Ask; side++ {
			top3 := want[side][:min(3, len(want[side]))]
			if got := b.Depth(side, make([]Level, 0, 3)); b.Levels(side) != len(want[side]) || !slices.Equal(got, top3) {
				return fmt.Errorf("locate %d %v: Levels %d, Depth(3) %v; want %d, %v", locate, side, b.Levels(side), got, len(want[side]), top3)
			}
		}
		crossed := len(want[Bid]) > 0 && len(want[Ask]) > 0 && want[Bid][0].Price >= want[Ask][0].Price
		if b.Crossed() != crossed {
			return fmt.Errorf("locate %d: Crossed %v, want %v", locate, b.Crossed(), crossed)
		}
		got := [4]uint64{uint64(b.TradingState()), uint64(b.RegSHO()), uint64(b.OperationalHalt()), b.Timestamp()}
		wantStates := [4]uint64{uint64(rb.state), uint64(rb.regSHO), uint64(rb.opHalt), rb.lastTime}
		if got != wantStates {
			return fmt.Errorf("locate %d: trading state, Reg SHO, halt, timestamp %v, want %v", locate, got, wantStates)
		}
		if b.Duplicate() != r.duplicate(locate) {
			return fmt.Errorf("locate %d: Duplicate %v, want %v", locate, b.Duplicate(), r.duplicate(locate))
		}
	}
	if e, ts := bs.SystemEvent(); uint64(e) != r.event || ts != r.eventTime {
		return fmt.Errorf("system event %c at %d, want %c at %d", e, ts, r.event, r.eventTime)
	}
	if err := compareStats(bs, r); err != nil {
		return err
	}
	st := bs.Stats()
	if st.Malformed != r.stats.Malformed || st.UnknownType != 0 || bs.BrokenWithoutLocate() != r.brokenNoLocate {
		return fmt.Errorf("malformed %d, unknown types %d, broken without locate %d; want %d, 0, %d",
			st.Malformed, st.UnknownType, bs.BrokenWithoutLocate(), r.stats.Malformed, r.brokenNoLocate)
	}
	return nil
}

// compareWireAll compares every instrument, the lookup of every live order
// and of the references the streams use that are not live, and the
// structures' own invariants.
func compareWireAll(bs *Books, r *refBooks) error {
	for l := range r.cfg.MaxLocates + 1 {
		if err := compareWire(bs, r, uint16(l)); err != nil {
			return err
		}
	}
	n := 0
	for b := range bs.All() {
		n++
		if r.books[b.Locate()] == nil {
			return fmt.Errorf("locate %d known, the reference does not know it", b.Locate())
		}
	}
	if n != len(r.books) {
		return fmt.Errorf("%d locates known, want %d", n, len(r.books))
	}
	for k, o := range r.orders {
		got, ok := bs.Order(k.locate, k.ref)
		if !ok || got != (OrderInfo{Ref: k.ref, Side: o.side, Price: o.price, Shares: o.shares}) {
			return fmt.Errorf("Order(%d, %d) = %+v %v, want %+v", k.locate, k.ref, got, ok, *o)
		}
		ahead, shares, ok := bs.QueueAhead(k.locate, k.ref)
		q := r.books[o.locate].sides[o.side][o.price]
		wantAhead, wantShares := slices.Index(q, k.ref), uint64(0)
		for _, a := range q[:wantAhead] {
			wantShares += uint64(r.orders[refKey{k.locate, a}].shares)
		}
		if !ok || ahead != wantAhead || shares != wantShares {
			return fmt.Errorf("QueueAhead(%d, %d) = %d, %d, %v; want %d, %d", k.locate, k.ref, ahead, shares, ok, wantAhead, wantShares)
		}
	}
	for l := range r.cfg.MaxLocates + 1 {
		for b := range 256 {
			if k := (refKey{uint16(l), wireRef(byte(b))}); r.orders[k] == nil {
				if got, ok := bs.Order(k.locate, k.ref); ok {
					return fmt.Errorf("Order(%d, %d) = %+v, want none", k.locate, k.ref, got)
				}
			}
		}
	}
	return checkInvariants(bs)
}

// wireRun is one fuzz input: its first byte picks the configuration.
func wireRun(t testing.TB, data []byte) {
	if len(data) == 0 {
		return
	}
	runWireDifferential(t, wireConfigs[int(data[0])%len(wireConfigs)], wireOpsOfBytes(data[1:]))
}

// FuzzWireDifferential: go test -run '^$' -fuzz FuzzWireDifferential ./book/
func FuzzWireDifferential(f *testing.F) {
	for _, seed := range wireSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { wireRun(t, data) })
}

// wireOp is the 8 bytes of one op of a seed (see wireOpsOfBytes).
func wireOp(kind byte, locate, ref, flags, shares, price, b6, b7 byte) []byte {
	k := strings.IndexByte(wireKinds, kind)
	if k < 0 {
		panic("wireOp: kind " + string(kind))
	}
	return []byte{byte(k), locate, ref, flags, shares, price, b6, b7}
}

// wireSeeds are hand-made streams of the cases the brief names, for the
// fuzzer to start from and for the normal suite.
func wireSeeds() [][]byte {
	cat := func(cfg byte, ops ...[]byte) []byte { return slices.Concat(append([][]byte{{cfg}}, ops...)...) }
	const loc1, busy2 = 0, 1          // wireLocate: locates 1 and 2
	const pMin, pMax = 224, 227       // wirePrice: 0 and 2^32-1
	const sMax = 240                  // wireShares: 2^32-1
	const fresh, collide = 2, 2 + 224 // wireRef: 2, and a ref with 2's low bits
	return [][]byte{
		// Adds and executes at price 0 and 2^32-1 on both sides, with
		// 2^32-1 shares; C printable and not; X partial and full; level
		// emptying and refilling; over-execution and over-cancel.
		cat(0,
			wireOp('A', loc1, 1, 0, 10, pMin, 0, 0), wireOp('F', loc1, 2, 1, sMax, pMax, 0, 0),
			wireOp('A', loc1, 3, 1, 5, pMin, 0, 0), wireOp('F', loc1, 4, 0, sMax, pMax, 0, 0),
			wireOp('E', loc1, 1, 0, 4, 0, 2, 0), wireOp('C', loc1, 2, 2, 7, 5, 2, 0),
			wireOp('C', loc1, 2, 0, 7, 5, 2, 0), wireOp('X', loc1, 4, 0, 1, 0, 0, 0),
			wireOp('X', loc1, 4, 0, sMax, 0, 0, 0), wireOp('E', loc1, 1, 0, 200, 0, 2, 0),
			wireOp('A', loc1, 1, 0, 10, pMin, 0, 0), wireOp('D', loc1, 3, 0, 0, 0, 0, 0),
			wireOp('B', loc1, 0, 0, 0, 0, 1, 0), wireOp('B', loc1, 0, 0, 0, 0, 2, 0),
			wireOp('A', loc1, 6, 1, sMax, pMax, 0, 0), wireOp('E', loc1, 6, 0, sMax, 0, 2, 0),
			wireOp('A', loc1, 6, 0, sMax-1, pMin, 0, 0), wireOp('X', loc1, 6, 0, sMax+1, 0, 2, 0),
			wireOp('X', loc1, 6, 0, sMax, 0, 2, 0), wireOp('A', loc1, 6, 0, sMax, pMin, 0, 0),
		),
		// Replace to another price, to the same reference, to a live
		// reference (the original still goes), with 0 shares; references
		// sharing a home slot; unknown references; locate mismatch.
		cat(0,
			wireOp('A', loc1, fresh, 0, 10, 1, 0, 0), wireOp('A', loc1, collide, 0, 20, 1, 0, 0),
			wireOp('A', busy2, 5, 1, 30, 2, 0, 0), wireOp('U', loc1, fresh, 0, 11, 3, collide, 0),
			wireOp('U', loc1, collide, 0, 12, 4, 7, 0), wireOp('U', loc1, 7, 0, 13, 4, 7, 0),
			wireOp('U', loc1, 7, 0, 0, 4, 8, 0), wireOp('U', loc1, 5, 0, 1, 4, 9, 0),
			wireOp('E', loc1, 40, 0, 1, 0, 2, 0), wireOp('X', loc1, 41, 0, 1, 0, 0, 0),
			wireOp('D', loc1, 42, 0, 0, 0, 0, 0), wireOp('U', loc1, 43, 0, 1, 1, 44, 0),
			wireOp('A', loc1, 9, 0, 0, 1, 0, 0), wireOp('A', loc1, 9, 255, 5, 1, 0, 0),
			wireOp('A', loc1, 10, 252, 5, 1, 0, 0), wireOp('D', loc1, 10, 250, 0, 0, 0, 0),
			wireOp('E', loc1, 10, 251, 5, 0, 2, 0), wireOp('Z', loc1, 0, 0, 0, 0, 0, 0),
			wireOp('A', loc1, 10, 0, 5, 1, 0, 0), wireOp('R', loc1, 0, 0, 0, 0, 0, 0),
			wireOp('A', loc1, 10, 0, 5, 1, 0, 0),
		),
		// Trades, crosses, broken trades, states, system events and
		// announcements on many locates, in the roomy configuration.
		cat(1,
			wireOp('P', 200, 0, 0, 100, 5, 2, 0), wireOp('Q', 201, 0, 0, 100, pMax, 2, 1),
			wireOp('Q', 201, 0, 0, 0, 5, 2, 0), wireOp('P', 202, 0, 0, 0, 5, 2, 0),
			wireOp('B', 201, 0, 0, 0, 0, 1, 0), wireOp('B', 192, 0, 0, 0, 0, 1, 0),
			wireOp('H', 203, 0, 0, 0, 0, 0, 0), wireOp('h', 203, 0, 0, 0, 0, 1, 0),
			wireOp('h', 203, 0, 0, 0, 0, 0, 1), wireOp('Y', 203, 0, 0, 0, 0, 1, 0),
			wireOp('S', 192, 0, 0, 0, 0, 0, 0), wireOp('R', 250, 0, 0, 0, 0, 0, 1),
			wireOp('A', 250, 3, 0, 10, 1, 0, 0), wireOp('R', 250, 0, 0, 0, 0, 0, 2),
			wireOp('R', 192, 0, 0, 0, 0, 0, 0), wireOp('H', 255, 0, 0, 0, 0, 0, 255),
		),
	}
}

// TestWireDifferential runs the hand-made seeds and seeded random streams
// in both configurations (a few seconds).
func TestWireDifferential(t *testing.T) {
	for i, seed := range wireSeeds() {
		t.Run(fmt.Sprint("seed", i), func(t *testing.T) { wireRun(t, seed) })
	}
	for s := range uint64(16) {
		data := wireRandom(s, 4000)
		t.Run(fmt.Sprint("random", s), func(t *testing.T) { wireRun(t, data) })
	}
}

// wireRandom makes a random input of n ops for wireRun (configuration
// seed mod 2). Half of its bytes are uniform; the rest aim the order
// messages at the references added on their locate, with share counts
// about the size of the orders', so that executes and cancels mostly find
// their order, as on a real feed, and sometimes take more than it has.
func wireRandom(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	data := []byte{byte(seed)}
	added := map[byte][]byte{} // locate byte -> ref bytes added on it
	for range n {
		o := make([]byte, 8)
		for i := range o {
			o[i] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 {
			kind := wireKinds[int(o[0])%len(wireKinds)]
			o[1] %= 192 // a busy locate
			loc := 1 + o[1]%4
			switch kind {
			case 'A', 'F':
				o[4] = byte(1 + rng.IntN(200))
				added[loc] = append(added[loc], o[2])
			case 'E', 'C', 'X', 'D', 'U':
				if refs := added[loc]; len(refs) > 0 {
					o[2] = refs[rng.IntN(len(refs))]
				}
				o[4] = byte(1 + rng.IntN(120))
			}
			if len(added[loc]) > 64 {
				added[loc] = added[loc][32:]
			}
		}
		data = append(data, o...)
	}
	return data
}
