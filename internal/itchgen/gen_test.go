package itchgen_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/netip"
	"testing"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/itchgen"
)

func day(t testing.TB, cfg itchgen.Config) []byte {
	t.Helper()
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := g.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if g.Emitted() != cfg.Messages {
		t.Fatalf("emitted %d messages, want %d", g.Emitted(), cfg.Messages)
	}
	return buf.Bytes()
}

func messages(t testing.TB, file []byte) []itch.Msg {
	t.Helper()
	r := dayfile.NewReader(bytes.NewReader(file))
	var out []itch.Msg
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := itch.Check(m); err != nil {
			t.Fatalf("message %d: %v", len(out), err)
		}
		if len(m) != itch.Length(m[0]) {
			t.Fatalf("message %d type %q: %d bytes, want %d", len(out), m[0], len(m), itch.Length(m[0]))
		}
		out = append(out, itch.Msg(bytes.Clone(m)))
	}
}

func TestDeterministic(t *testing.T) {
	cfg := itchgen.Config{Messages: 50_000, Symbols: 50, Seed: 7}
	a := sha256.Sum256(day(t, cfg))
	b := sha256.Sum256(day(t, cfg))
	if a != b {
		t.Fatal("same seed, different bytes")
	}
	cfg.Seed = 8
	if c := sha256.Sum256(day(t, cfg)); c == a {
		t.Fatal("different seeds, same bytes")
	}
}

// checkBreaks checks that every Broken Trade breaks a trade of its own
// instrument, once (the spec has it carry the stock locate), so that the
// books' breaks are exercised, not counted apart as without a locate.
func checkBreaks(t *testing.T, msgs []itch.Msg) {
	t.Helper()
	traded := map[[2]uint64]bool{} // locate, match number: false once broken
	for i, m := range msgs {
		var match uint64
		switch m.Type() {
		case 'E':
			match = itch.OrderExecuted(m).MatchNumber()
		case 'C':
			match = itch.OrderExecutedWithPrice(m).MatchNumber()
		case 'P':
			match = itch.Trade(m).MatchNumber()
		case 'Q':
			match = itch.CrossTrade(m).MatchNumber()
		case 'B':
			k := [2]uint64{uint64(m.Locate()), itch.BrokenTrade(m).MatchNumber()}
			if live, ok := traded[k]; !ok || !live {
				t.Fatalf("message %d: broken trade of match %d at locate %d: not a trade of that instrument not broken yet (traded %v)", i, k[1], k[0], ok)
			}
			traded[k] = false
			continue
		default:
			continue
		}
		traded[[2]uint64{uint64(m.Locate()), match}] = true
	}
}

// TestBrokenTradesOtherDays: TestDay's check of the breaks on days of
// other seeds and sizes, where a scheduled break's instrument often has no
// trade not broken yet (a small day, many symbols, two breaks of one).
func TestBrokenTradesOtherDays(t *testing.T) {
	for _, c := range []itchgen.Config{{Messages: 3000, Symbols: 50}, {Messages: 20000, Symbols: 300}} {
		for seed := uint64(1); seed <= 30; seed++ {
			c.Seed = seed
			t.Run(fmt.Sprintf("%d-%d-%d", c.Messages, c.Symbols, seed), func(t *testing.T) {
				checkBreaks(t, messages(t, day(t, c)))
			})
		}
	}
}

func TestTooFewMessages(t *testing.T) {
	if _, err := itchgen.New(itchgen.Config{Messages: 100, Symbols: 500}); err == nil {
		t.Fatal("100 messages for 500 symbols accepted")
	}
}

// TestDay checks the message mix, the presence of every type, the shape of
// the day, and, with an independent naive book, that order events only refer
// to live orders, that executions take the front of the queue at the best
// price and that no book is ever crossed.
func TestDay(t *testing.T) {
	const n = 400_000
	msgs := messages(t, day(t, itchgen.Config{Messages: n, Symbols: 300, Seed: 1}))
	if len(msgs) != n {
		t.Fatalf("%d messages, want %d", len(msgs), n)
	}
	var byType [256]int
	for _, m := range msgs {
		byType[m.Type()]++
	}
	for _, typ := range itch.Types {
		if byType[typ] == 0 {
			t.Errorf("no %q (%s) message", typ, itch.Name(typ))
		}
	}
	// Mix of the real day, with tolerances.
	for _, c := range []struct {
		typ      byte
		pct, tol float64
	}{
		{'A', 43.3, 1.5}, {'D', 41.9, 1.5}, {'U', 8.7, 0.8}, {'E', 2.5, 0.4}, {'I', 1.3, 0.3},
		{'X', 1.2, 0.3}, {'P', 0.5, 0.15}, {'F', 0.5, 0.15}, {'C', 0.1, 0.06},
	} {
		got := 100 * float64(byType[c.typ]) / n
		if got < c.pct-c.tol || got > c.pct+c.tol {
			t.Errorf("%q: %.3f%% of messages, want %.1f±%.2f%%", c.typ, got, c.pct, c.tol)
		}
	}
	checkBreaks(t, msgs)
	if byType['R'] != 300 {
		t.Errorf("%d directory messages, want one per symbol (300)", byType['R'])
	}

	// Shape of the day.
	var events []byte
	var last uint64
	for i, m := range msgs {
		if m.Timestamp() < last {
			t.Fatalf("message %d: timestamp %d before %d", i, m.Timestamp(), last)
		}
		last = m.Timestamp()
		if m.Type() == 'S' {
			events = append(events, itch.SystemEvent(m).EventCode())
		}
	}
	if string(events) != "OSQMEC" {
		t.Errorf("system events %q, want OSQMEC", events)
	}
	if msgs[0].Type() != 'S' || msgs[len(msgs)-1].Type() != 'S' {
		t.Error("the day must start and end with a system event")
	}
	for _, c := range []struct {
		code byte
		ts   uint64
	}{{'O', itchgen.StartMessages}, {'Q', itchgen.MarketOpen}, {'M', itchgen.MarketClose}, {'E', itchgen.EndSystem}, {'C', itchgen.EndMessages}} {
		for _, m := range msgs {
			if m.Type() == 'S' && itch.SystemEvent(m).EventCode() == c.code && m.Timestamp() != c.ts {
				t.Errorf("system event %q at %d, want %d", c.code, m.Timestamp(), c.ts)
			}
		}
	}
	// Imbalance messages only before the crosses.
	for i, m := range msgs {
		if m.Type() != 'I' {
			continue
		}
		ts, cross := m.Timestamp(), itch.NOII(m).CrossType()
		open := ts >= itchgen.MarketOpen-5*60e9 && ts < itchgen.MarketOpen && cross == 'O'
		closing := ts >= itchgen.MarketClose-10*60e9 && ts < itchgen.MarketClose && cross == 'C'
		if !open && !closing {
			t.Fatalf("message %d: NOII cross type %q at %d", i, cross, ts)
		}
	}
	checkBooks(t, msgs)
	checkActivity(t, msgs)
}

// naive is an independent, map-based book of every symbol.
type naiveOrder struct {
	locate uint16
	side   byte
	price  uint32
	shares uint32
}

type naive struct {
	orders map[uint64]*naiveOrder
	queues map[[2]uint32][]uint64    // (locate<<1|side, price) -> refs in time priority
	prices map[uint32]map[uint32]int // locate<<1|side -> price -> orders
}

func key(locate uint16, side byte) uint32 {
	k := uint32(locate) << 1
	if side == 'S' {
		k |= 1
	}
	return k
}

func (b *naive) best(locate uint16, side byte) (uint32, bool) {
	var best uint32
	ok := false
	for p := range b.prices[key(locate, side)] {
		if !ok || (side == 'B' && p > best) || (side == 'S' && p < best) {
			best, ok = p, true
		}
	}
	return best, ok
}

func (b *naive) crosses(locate uint16, side byte, price uint32) bool {
	if side == 'B' {
		ask, ok := b.best(locate, 'S')
		return ok && price >= ask
	}
	bid, ok := b.best(locate, 'B')
	return ok && price <= bid
}

func (b *naive) add(ref uint64, o *naiveOrder) {
	b.orders[ref] = o
	k := key(o.locate, o.side)
	q := [2]uint32{k, o.price}
	b.queues[q] = append(b.queues[q], ref)
	if b.prices[k] == nil {
		b.prices[k] = map[uint32]int{}
	}
	b.prices[k][o.price]++
}

func (b *naive) remove(ref uint64) {
	o := b.orders[ref]
	delete(b.orders, ref)
	k := key(o.locate, o.side)
	q := [2]uint32{k, o.price}
	refs := b.queues[q]
	for i, r := range refs {
		if r == ref {
			b.queues[q] = append(refs[:i:i], refs[i+1:]...)
			break
		}
	}
	if b.prices[k][o.price]--; b.prices[k][o.price] == 0 {
		delete(b.prices[k], o.price)
	}
}

func checkBooks(t *testing.T, msgs []itch.Msg) {
	b := &naive{orders: map[uint64]*naiveOrder{}, queues: map[[2]uint32][]uint64{}, prices: map[uint32]map[uint32]int{}}
	var lastRef uint64
	newRef := func(i int, ref uint64) {
		if ref <= lastRef {
			t.Fatalf("message %d: order ref %d not above %d", i, ref, lastRef)
		}
		lastRef = ref
	}
	live := func(i int, m itch.Msg, ref uint64) *naiveOrder {
		o := b.orders[ref]
		if o == nil {
			t.Fatalf("message %d (%q): order %d is not live", i, m.Type(), ref)
		}
		if o.locate != m.Locate() {
			t.Fatalf("message %d (%q): locate %d, order %d has %d", i, m.Type(), m.Locate(), ref, o.locate)
		}
		return o
	}
	var resting, long int
	born := map[uint64]int{}
	for i, m := range msgs {
		switch m.Type() {
		case 'A', 'F':
			a := itch.AddOrder(m)
			newRef(i, a.OrderRef())
			if b.crosses(m.Locate(), a.Side(), a.Price()) {
				t.Fatalf("message %d: add %c %d @ %d crosses the book", i, a.Side(), a.Shares(), a.Price())
			}
			if a.Shares() == 0 || a.Price() == 0 {
				t.Fatalf("message %d: add of %d shares at %d", i, a.Shares(), a.Price())
			}
			b.add(a.OrderRef(), &naiveOrder{m.Locate(), a.Side(), a.Price(), a.Shares()})
			born[a.OrderRef()] = i
		case 'P':
			p := itch.Trade(m)
			bid, okB := b.best(m.Locate(), 'B')
			ask, okA := b.best(m.Locate(), 'S')
			if (okB && p.Price() < bid) || (okA && p.Price() > ask) {
				t.Fatalf("message %d: hidden trade at %d outside the spread %d-%d", i, p.Price(), bid, ask)
			}
		case 'D':
			ref := itch.OrderDelete(m).OrderRef()
			live(i, m, ref)
			if i-born[ref] > 100_000 {
				long++
			}
			b.remove(ref)
		case 'X':
			x := itch.OrderCancel(m)
			o := live(i, m, x.OrderRef())
			if x.CancelledShares() == 0 || x.CancelledShares() >= o.shares {
				t.Fatalf("message %d: cancel %d of %d shares", i, x.CancelledShares(), o.shares)
			}
			o.shares -= x.CancelledShares()
		case 'U':
			u := itch.OrderReplace(m)
			o := live(i, m, u.OriginalOrderRef())
			newRef(i, u.NewOrderRef())
			b.remove(u.OriginalOrderRef())
			if b.crosses(m.Locate(), o.side, u.Price()) {
				t.Fatalf("message %d: replace to %d crosses the book", i, u.Price())
			}
			b.add(u.NewOrderRef(), &naiveOrder{m.Locate(), o.side, u.Price(), u.Shares()})
			born[u.NewOrderRef()] = i
		case 'E', 'C':
			e := itch.OrderExecuted(m)
			o := live(i, m, e.OrderRef())
			best, _ := b.best(o.locate, o.side)
			if o.price != best {
				t.Fatalf("message %d: execution of order %d at %d, best %c is %d", i, e.OrderRef(), o.price, o.side, best)
			}
			if q := b.queues[[2]uint32{key(o.locate, o.side), o.price}]; q[0] != e.OrderRef() {
				t.Fatalf("message %d: execution of order %d, front of the queue is %d", i, e.OrderRef(), q[0])
			}
			if m.Type() == 'C' && itch.OrderExecutedWithPrice(m).ExecutionPrice() != o.price {
				t.Fatalf("message %d: execution price %d, order price %d", i, itch.OrderExecutedWithPrice(m).ExecutionPrice(), o.price)
			}
			switch k := e.ExecutedShares(); {
			case k == 0 || k > o.shares:
				t.Fatalf("message %d: execution of %d of %d shares", i, k, o.shares)
			case k == o.shares:
				b.remove(e.OrderRef())
			default:
				o.shares -= k
			}
		}
	}
	resting = len(b.orders)
	if resting == 0 || long == 0 {
		t.Errorf("want long-lived orders: %d resting at the end, %d deleted after 100k messages", resting, long)
	}
}

// checkActivity: a few symbols carry most of the order flow.
func checkActivity(t *testing.T, msgs []itch.Msg) {
	per := map[uint16]int{}
	total := 0
	for _, m := range msgs {
		if m.Type() == 'A' {
			per[m.Locate()]++
			total++
		}
	}
	counts := make([]int, 0, len(per))
	for _, c := range per {
		counts = append(counts, c)
	}
	// Share of the 10% most active symbols (30 of 300).
	top := 0
	for range 30 {
		bi := 0
		for i, c := range counts {
			if c > counts[bi] {
				bi = i
			}
		}
		top += counts[bi]
		counts[bi] = -1
	}
	if share := float64(top) / float64(total); share < 0.4 {
		t.Errorf("top 10%% of symbols carry %.0f%% of adds, want a skewed market (>= 40%%)", 100*share)
	}
}

func TestPcap(t *testing.T) {
	cfg := itchgen.Config{Messages: 100_000, Symbols: 100, Seed: 3, Session: "TEST000042"}
	want := messages(t, day(t, cfg))
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	st, err := g.WritePcap(&file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcap.NewReader(&file)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	got, heartbeats, eos, packets, multi := 0, 0, 0, 0, 0
	for {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(fr.Payload) > 1400 {
			t.Fatalf("packet of %d bytes", len(fr.Payload))
		}
		if fr.Dst != g.Config().Group || fr.Src != g.Config().Source {
			t.Fatalf("frame %s -> %s", fr.Src, fr.Dst)
		}
		p, err := moldudp64.Parse(fr.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if p.Session != moldudp64.NewSession("TEST000042") || p.Seq != next {
			t.Fatalf("packet %q seq %d, want seq %d", p.Session, p.Seq, next)
		}
		switch {
		case p.EndOfSession():
			eos++
			continue
		case p.Heartbeat():
			heartbeats++
			continue
		}
		packets++
		if p.Count > 1 {
			multi++
		}
		it := p.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			if !bytes.Equal(m, want[got]) {
				t.Fatalf("message %d differs from the BinaryFILE", got)
			}
			got++
		}
		next = p.Next()
	}
	if got != len(want) || heartbeats == 0 || eos != 3 || multi == 0 {
		t.Fatalf("%d messages of %d, %d heartbeats, %d end of session, %d packets with several messages", got, len(want), heartbeats, eos, multi)
	}
	if st.Packets != packets || st.Heartbeats != heartbeats || st.NextSeq != next {
		t.Fatalf("stats %+v, counted %d packets %d heartbeats next %d", st, packets, heartbeats, next)
	}
}

func TestPcapLinesAndFaults(t *testing.T) {
	cfg := itchgen.Config{Messages: 30_000, Symbols: 50, Seed: 4, Lines: 2, Loss: 0.05, Dup: 0.05, Reorder: 0.05, MaxPacket: 600}
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	st, err := g.WritePcap(&file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dropped == 0 || st.Duplicated == 0 || st.Reordered == 0 {
		t.Fatalf("faults not injected: %+v", st)
	}
	if want := 2*(st.Packets+st.Heartbeats+3) - st.Dropped + st.Duplicated; st.Frames != want {
		t.Fatalf("%d frames, want %d", st.Frames, want)
	}
	r, err := pcap.NewReader(&file)
	if err != nil {
		t.Fatal(err)
	}
	perLine := map[string]int{}
	for {
		fr, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(fr.Payload) > 600 {
			t.Fatalf("packet of %d bytes", len(fr.Payload))
		}
		perLine[fr.Dst.String()]++
	}
	b := g.Config().GroupB
	if len(perLine) != 2 || perLine[g.Config().Group.String()] == 0 || perLine[b.String()] == 0 {
		t.Fatalf("frames per line %v", perLine)
	}
}

func BenchmarkGenerate(b *testing.B) {
	g, err := itchgen.New(itchgen.Config{Messages: 1 << (bits.UintSize - 2), Symbols: 500, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := g.Next(); !ok {
			b.Fatal("day over")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
}

func Example() {
	g, _ := itchgen.New(itchgen.Config{Messages: 2000, Symbols: 10, Seed: 1})
	var counts [256]int
	g.Stream(func(m itch.Msg) error {
		counts[m.Type()]++
		return nil
	})
	fmt.Println("directory:", counts['R'], "system events:", counts['S'], "total:", g.Emitted())
	// Output: directory: 10 system events: 6 total: 2000
}

// TestNoTradesWhileHalted: between a Stock Trading Action that halts or
// pauses a symbol and the one that resumes it, and between an Operational
// Halt of it on Nasdaq (market code 'Q', action 'H') and its lifting ('T'),
// the day has no execution and no trade print of that symbol, whatever the
// symbol count (with one symbol, every trade drawn during its halts falls
// on it).
func TestNoTradesWhileHalted(t *testing.T) {
	for _, cfg := range []itchgen.Config{{Messages: 30_000, Symbols: 1, Seed: 4}, {Messages: 50_000, Symbols: 3, Seed: 3}, {Messages: 50_000, Symbols: 20, Seed: 1}} {
		halted, opHalted := map[uint16]bool{}, map[uint16]bool{}
		halts := 0
		for i, m := range messages(t, day(t, cfg)) {
			switch m.Type() {
			case 'H':
				halted[m.Locate()] = m[19] != 'T'
				if m[19] != 'T' {
					halts++
				}
			case 'h':
				if m[19] == 'Q' {
					opHalted[m.Locate()] = m[20] == 'H'
					if m[20] == 'H' {
						halts++
					}
				}
			case 'E', 'C', 'P':
				if halted[m.Locate()] || opHalted[m.Locate()] {
					t.Fatalf("%d symbols, seed %d: message %d: %q of locate %d during its halt", cfg.Symbols, cfg.Seed, i, m.Type(), m.Locate())
				}
			}
		}
		if halts == 0 {
			t.Fatalf("%d symbols, seed %d: no halt", cfg.Symbols, cfg.Seed)
		}
	}
}

// TestFaultProbabilityRange: a fault probability outside [0, 1), NaN
// included (itchgen -loss NaN), is refused; NaN passed the range check and
// the pcap came out without a fault.
func TestFaultProbabilityRange(t *testing.T) {
	for _, p := range []float64{-0.1, 1, math.NaN()} {
		for _, cfg := range []itchgen.Config{{Messages: 10_000, Loss: p}, {Messages: 10_000, Dup: p}, {Messages: 10_000, Reorder: p}} {
			if _, err := itchgen.New(cfg); err == nil {
				t.Errorf("loss %v dup %v reorder %v accepted", cfg.Loss, cfg.Dup, cfg.Reorder)
			}
		}
	}
}

// TestAddressesIPv4: the pcap's frames are IPv4, so an IPv6 line B group or
// source (itchgen -group-b ff02::1, -src [::1]:5000) is refused by New;
// WritePcap panicked with 'As4 called on IPv6 address'.
func TestAddressesIPv4(t *testing.T) {
	for _, cfg := range []itchgen.Config{
		{Messages: 10_000, Source: netip.MustParseAddrPort("[::1]:5000")},
		{Messages: 10_000, Lines: 2, GroupB: netip.MustParseAddrPort("[ff02::1]:26477")},
	} {
		if _, err := itchgen.New(cfg); err == nil {
			t.Errorf("source %v, group B %v accepted", cfg.Source, cfg.GroupB)
		}
	}
}
