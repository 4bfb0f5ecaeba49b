package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestModesPublishSameSnapshots runs the same input in both modes (sharded:
// two shards) and compares every field of every live snapshot once the
// handler stopped, but the times a run stamps (receive, publish): one day
// with a packet lost on both lines (a gap, declared: no recovery), then,
// after the lines' silence, the next day's session (a rebuild; its
// locates name other symbols). compareShm checks the levels and the stale
// flag against a reference; this checks the rest (sequence number,
// messages, volume, last trade, system event, trading state, every flag)
// and that the two modes agree on which instruments are live.
func TestModesPublishSameSnapshots(t *testing.T) {
	day1 := sessionDay(t, "DAY1", 9, 20_000, 0, 50)
	day2 := sessionDay(t, "DAY2", 10, 20_000, 0, 50)
	var script []rx.Packet
	now := time.Now().UnixNano()
	for d, day := range [][][]byte{day1, day2} {
		rxTime := now + int64(d)*int64(3*time.Second)
		for i, b := range day {
			if d == 0 && i == 100 {
				continue
			}
			script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: rxTime}, rx.Packet{Data: b, Line: rx.LineB, RxTime: rxTime})
		}
	}
	want := totalMessages(t, day1) + totalMessages(t, day2) - totalMessages(t, day1[100:101])
	var got []map[string]string
	for _, m := range modes {
		r := &scriptRx{script: script, errAt: -1}
		name := shmtest.Name(t, "fhmodes")
		h, err := Start(Config{
			Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
			Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond, LineTimeout: time.Second},
			Book:       book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
			Mode:       m.mode,
			ShardCores: m.shards,
			ShmName:    name,
			Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "both days applied", func() bool {
			st := h.Stats()
			return st.Arbiter.Delivered == want && st.Applied() == st.Routed
		})
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		if st := h.Stats(); st.Arbiter.Gaps != 1 || st.Arbiter.SessionChanges != 1 {
			t.Fatalf("%v: gaps %d, session changes %d; want 1 and 1", m.mode, st.Arbiter.Gaps, st.Arbiter.SessionChanges)
		}
		got = append(got, snapshotFields(t, name))
	}
	for sym, a := range got[0] {
		if b, ok := got[1][sym]; !ok || a != b {
			t.Errorf("%s:\n  %v: %s\n  %v: %s", sym, modes[0].mode, a, modes[1].mode, b)
		}
	}
	for sym, b := range got[1] {
		if _, ok := got[0][sym]; !ok {
			t.Errorf("%s live only %v: %s", sym, modes[1].mode, b)
		}
	}
}

// snapshotFields reads every live instrument of feed name: symbol -> its
// snapshot's fields but the receive and publish times, levels included.
func snapshotFields(t *testing.T, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	eachSnapshot(t, name, func(_ int, in shm.Instrument, v shm.View) {
		s := fmt.Sprintf("locate %d seq %d exchange time %d state %d flags %d levels %d/%d last %d x %d volume %d messages %d system event %d",
			v.Locate(), v.Seq(), v.ExchangeTime(), v.TradingState(), v.Flags(), v.BidLevels(), v.AskLevels(),
			v.LastTradePrice(), v.LastTradeShares(), v.Volume(), v.Messages(), v.SystemEvent())
		for i := 0; ; i++ {
			l, ok := v.Bid(i)
			if !ok {
				break
			}
			s += fmt.Sprintf(" bid %+v", l)
		}
		for i := 0; ; i++ {
			l, ok := v.Ask(i)
			if !ok {
				break
			}
			s += fmt.Sprintf(" ask %+v", l)
		}
		out[in.Symbol] = s
	})
	if len(out) == 0 {
		t.Fatal("nothing published")
	}
	return out
}

// countingModes are the pipelines TestModesCountSame compares: run to
// completion (the reference), then sharded with one, two and four shards.
var countingModes = []struct {
	mode   Mode
	shards []int
}{
	{ModeRunToCompletion, nil},
	{ModeSharded, []int{-1}},
	{ModeSharded, []int{-1, -1}},
	{ModeSharded, []int{-1, -1, -1, -1}},
}

// TestModesCountSame runs one adversarial stream (adversarialScript: a
// generated day with bad input woven in, line faults, a gap, then a
// session change to a second day) through run to completion and sharded
// pipelines of 1, 2 and 4 shards, with and without a symbol filter, and
// compares what each made of it, once stopped: every counter of Stats,
// every /metrics sample (through the functions both expositions take
// their values from), the warnings and errors logged and the final stats
// line, and every live shm snapshot (snapshotFields: sequence number,
// flags, levels...). Bad input must count the same whatever the split:
// an operator's alert on an inconsistency counter must not depend on the
// mode.
//
// Per mode by design, and so not compared as equal:
//   - applied (Stats.Applied, shard_applied_total, the stats line's
//     applied), Stats.Routed and book.Stats.Messages: every shard applies
//     each System Event (its event goes into every book's snapshot), so
//     with n shards each counts n times: checked to be the reference's
//     plus (n-1) per System Event delivered;
//   - published snapshots and batches (shard_published_total): a shard
//     conflates a book's changes per batch, and a receive batch (run to
//     completion) is not a ring batch (sharded);
//   - the rings (shard_ring_*): run to completion has none;
//   - shard_stale_binds_total: a shard lagging another across a session
//     change or a Stock Directory that freed a symbol, which only
//     sharding has;
//   - thread scheduling (shard_thread_rt_priority, the threads' log
//     lines), latencies and times (line_silence_seconds, the heartbeat);
//   - book.Stats.Overflowed: live orders in overflow slots depend on which
//     references share a shard's table;
//   - the binding of DUPD's holder (advPromoteHolder) in day 2: its Stock
//     Directory, its add, the duplicate's two messages and the holder's
//     LEFT are one packet. A receive batch (run to completion) holds whole
//     packets, so it applies the five together and never binds the
//     holder; a ring batch (sharded) may end inside the packet (the
//     receive thread pushes message by message; a shard takes what is
//     there), and the shard then publishes the holder's book as it was
//     between its add and its LEFT, a state of the feed, and retires that
//     binding at LEFT. So a sharded run may have one slot more used and
//     retired, one more rebound (shm_slots_used, shm_slots_retired,
//     shard_rebound_total) and, under the filter (LEFT withdrawn, never
//     bound), one more book: accepted only as that one binding, all of
//     these moved together (holderSplit); what is live at the end is
//     compared as equal.
//
// The stream keeps out what differs by design beyond that: book
// capacities are per shard (book.Config), so capacity drops are provoked
// on one instrument only, apart (TestModesCountCapacitySame); a
// message longer than its type, but a System Event (every shard applies
// it, one counts it Long), is left to TestFilterLongStockDirectory and
// its kin. Order references that cross locates are in it, in one shard
// and across shards: an order message naming another locate's order is
// of an unknown reference, and an add of a reference live under another
// locate adds an order, in every mode (book.Books.AddOrder: each
// instrument's references are its own, as a shard sees them). A symbol announced at two locates of one session is in it
// (advDupFirst, advDupLater: two shards for 2 and 4): the locate announced
// first keeps it and the later one counts once (DuplicateSymbols) in
// every mode; before, the shard that bound first kept it and each refused
// publish counted.
func TestModesCountSame(t *testing.T) {
	for _, filter := range []bool{false, true} {
		t.Run(fmt.Sprintf("filter=%v", filter), func(t *testing.T) {
			adv := adversarialScript(t)
			var symbols []string
			if filter {
				symbols = adv.subscribe
			}
			var ref *modeCounts
			for _, m := range countingModes {
				got := runCounting(t, adv, m.mode, m.shards, symbols, dayBooks)
				if ref == nil {
					ref = got
					if ref.st.Arbiter.Gaps != 1 || ref.st.Arbiter.SessionChanges != 1 {
						t.Fatalf("%s: gaps %d, session changes %d; want 1 and 1", ref.name, ref.st.Arbiter.Gaps, ref.st.Arbiter.SessionChanges)
					}
					checkAdversarialCounted(t, ref, filter)
					continue
				}
				compareCounts(t, ref, got)
			}
		})
	}
}

// TestModesCountCapacitySame is TestModesCountSame's comparison over
// books too small for the orders and levels of the one instrument that has
// any, so that every pipeline's shard (the capacity is per shard) drops
// the same adds: OrderCapacity, LevelCapacity, and Incomplete published as
// PossiblyStale.
func TestModesCountCapacitySame(t *testing.T) {
	const loc = 12
	msgs := [][]byte{filterDir(loc, "CAPA")}
	for i := range 200 {
		// 200 orders on 40 prices: more than 64 orders, 16 levels.
		msgs = append(msgs, filterAdd(loc, "CAPA", uint64(1000+i), uint32(100+i%40)))
	}
	for i := range 200 {
		if i%3 == 0 {
			d := itch.OrderDeleteFields{Header: itch.Header{Locate: loc}, OrderRef: uint64(1000 + i)}
			msgs = append(msgs, d.Append(nil))
		}
	}
	event := itch.SystemEventFields{EventCode: 'Q'}
	msgs = append(msgs, event.Append(nil))
	var adv adversarial
	now := time.Now().UnixNano()
	for _, p := range packMessages(t, "CAPA", msgs) {
		adv.script = append(adv.script, rx.Packet{Data: p, Line: rx.LineA, RxTime: now}, rx.Packet{Data: p, Line: rx.LineB, RxTime: now})
		adv.delivered += messagesOf(t, p)
		adv.systemEvents += systemEventsOf(t, p)
	}
	small := book.Config{MaxOrders: 64, MaxLocates: 64, MaxLevels: 16}
	var ref *modeCounts
	for _, m := range countingModes {
		got := runCounting(t, adv, m.mode, m.shards, nil, small)
		if ref == nil {
			ref = got
			if b := ref.book; b.OrderCapacity == 0 || b.LevelCapacity == 0 || b.Incomplete == 0 || b.UnknownRefDelete == 0 {
				t.Fatalf("%s: order capacity %d, level capacity %d, incomplete %d, unknown deletes %d: the stream misses a case",
					ref.name, b.OrderCapacity, b.LevelCapacity, b.Incomplete, b.UnknownRefDelete)
			}
			continue
		}
		compareCounts(t, ref, got)
	}
}

// adversarial is adversarialScript's stream.
type adversarial struct {
	script       []rx.Packet
	delivered    uint64 // messages the arbiter delivers (the lost packet's are declared missing)
	systemEvents uint64 // System Events among them
	// locatedEvents: System Events among them under a locate never
	// announced, which the symbol filter leaves out.
	locatedEvents uint64
	subscribe     []string // a symbol filter: every other instrument of day 1, and the two hand-made ones
}

// Locates the hand-made messages use: new ones announced mid-day, beyond
// the generated day's, and in the same shard for 1, 2, 3 and 4 shards
// (shard 0: where a locate 0 message goes).
const (
	advLocA = 60
	advLocB = 72
)

// Locates one symbol is announced at, in one session (bad input): the
// first announced keeps it. In two shards for 2 and 4 shards (locate % n).
const (
	advDupFirst = 61
	advDupLater = 62
)

// Day 2's symbol at two locates: the first leaves it, the second takes it.
// In two shards for 2 and 4 shards.
const (
	advPromoteHolder = 66
	advPromoted      = 67
)

// adversarialScript is a generated day (50 instruments) with a hand-made
// message woven in every 300 generated ones, each on both lines, with
// faults: a packet lost on both lines (a gap), one lost on line A only, an
// old packet again on line A, a packet of another session and garbage on
// one line, a packet truncated on one line; then, after the lines'
// silence, a second day in another session (a session change), with bad
// input too, and its End of Session.
func adversarialScript(t *testing.T) adversarial {
	t.Helper()
	var adv adversarial
	day1, dir := generatedDay(t, 20_000, 3)
	// The generated locate whose instrument the day reassigns, and a
	// symbol of the generated day given to nobody else.
	var reused uint16
	n := 0
	for _, loc := range slices.Sorted(maps.Keys(dir)) {
		if n++; n%2 == 0 {
			adv.subscribe = append(adv.subscribe, dir[loc])
			if reused == 0 {
				reused = loc
			}
		}
	}
	adv.subscribe = append(adv.subscribe, "NEWA", "NEWB", "DUPE", "LONGR", "DUPD")
	bad := badInput(reused)
	var msgs [][]byte
	for i, m := range day1 {
		msgs = append(msgs, m)
		if i >= 1000 && i%300 == 0 && len(bad) > 0 {
			msgs = append(msgs, bad[0])
			bad = bad[1:]
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d hand-made messages left: the day is too short", len(bad))
	}
	day2, dir2 := generatedDay(t, 5_000, 4)
	for _, loc := range []uint16{advPromoteHolder, advPromoted} {
		if sym, ok := dir2[loc]; ok {
			t.Fatalf("day 2 announces locate %d itself (%s)", loc, sym)
		}
	}
	msgs2 := slices.Clone(day2[:1500])
	msgs2 = append(msgs2, filterDir(0, "ZERO"), []byte{'z', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, filterAdd(0, "ZERO", 1<<41, 100))
	msgs2 = append(msgs2, day2[1500:]...)
	// DUPD at a locate, then at a second (a duplicate), then the first
	// given LEFT (withdrawn under the filter): the second takes DUPD, in
	// its shard's books by the first's claim, and publishes it once the
	// first's shard retired its binding. Near the session's end, so that
	// the handler stops soon after (TestStopPromotesDuplicate).
	msgs2 = append(msgs2,
		filterDir(advPromoteHolder, "DUPD"), filterAdd(advPromoteHolder, "DUPD", 1<<41+1, 100),
		filterDir(advPromoted, "DUPD"), filterAdd(advPromoted, "DUPD", 1<<41+2, 200), // DuplicateSymbols
		filterDir(advPromoteHolder, "LEFT")) // LocateReassigned; withdrawn under the filter
	// A System Event under a locate (ITCH gives it 0): market-wide all
	// the same, its event in every book's snapshot; a locate never
	// announced, so that the symbol filter leaves it out. Last, so that
	// no generated one overwrites it.
	event := itch.SystemEventFields{Header: itch.Header{Locate: 1000}, EventCode: 'M'}
	msgs2 = append(msgs2, event.Append(nil))
	adv.locatedEvents++

	now := time.Now().UnixNano()
	both := func(p []byte, rxTime int64) {
		adv.script = append(adv.script, rx.Packet{Data: p, Line: rx.LineA, RxTime: rxTime}, rx.Packet{Data: p, Line: rx.LineB, RxTime: rxTime})
	}
	pkts1 := packMessages(t, "ADV1", msgs)
	for i, p := range pkts1 {
		switch i {
		case 150: // lost on both lines: a gap
			continue
		case 160: // lost on line A: B brings it
			adv.script = append(adv.script, rx.Packet{Data: p, Line: rx.LineB, RxTime: now})
		case 250: // truncated on line B: A brings it whole
			adv.script = append(adv.script, rx.Packet{Data: p[:len(p)-5], Line: rx.LineB, RxTime: now}, rx.Packet{Data: p, Line: rx.LineA, RxTime: now})
		case 200: // an old packet again, garbage, another session's packet
			both(p, now)
			adv.script = append(adv.script,
				rx.Packet{Data: pkts1[10], Line: rx.LineA, RxTime: now},
				rx.Packet{Data: []byte("not moldudp64"), Line: rx.LineB, RxTime: now},
				rx.Packet{Data: packMessages(t, "OTHER", [][]byte{filterDir(advLocA, "OTHR")})[0], Line: rx.LineA, RxTime: now})
		default:
			both(p, now)
		}
		if i != 150 {
			adv.delivered += messagesOf(t, p)
			adv.systemEvents += systemEventsOf(t, p)
		}
	}
	pkts2 := packMessages(t, "ADV2", msgs2)
	for _, p := range pkts2 {
		both(p, now+int64(3*time.Second))
		adv.delivered += messagesOf(t, p)
		adv.systemEvents += systemEventsOf(t, p)
	}
	last, err := moldudp64.Parse(pkts2[len(pkts2)-1])
	if err != nil {
		t.Fatal(err)
	}
	both(moldudp64.AppendHeader(nil, last.Session, last.Next(), 0xFFFF), now+int64(3*time.Second)) // End of Session
	return adv
}

// generatedDay is itchgen's day of n messages (seed seed) and its
// directory: locate -> symbol.
func generatedDay(t *testing.T, n int, seed uint64) ([][]byte, map[uint16]string) {
	t.Helper()
	g, err := itchgen.New(itchgen.Config{Messages: n, Symbols: 50, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	dir := map[uint16]string{}
	err = g.Stream(func(m itch.Msg) error {
		if m[0] == itch.TypeStockDirectory {
			dir[m.Locate()] = itch.StockDirectory(m).Stock().String()
		}
		msgs = append(msgs, slices.Clone(m))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs, dir
}

// badInput is the hand-made input woven into day 1, in order: what each
// one counts in run to completion is said beside it. reused is a
// generated locate (subscribed under the filter) given to another symbol.
func badInput(reused uint16) [][]byte {
	const r1, r2, r3, unknown = 1 << 40, 1<<40 + 1, 1<<40 + 2, 1<<40 + 99
	add := func(loc uint16, ref uint64, side byte, shares, price uint32) []byte {
		a := itch.AddOrderFields{Header: itch.Header{Locate: loc}, OrderRef: ref, Side: side, Shares: shares,
			Stock: itch.NewSymbol("NEWA"), Price: price}
		return a.Append(nil)
	}
	del := func(loc uint16, ref uint64) []byte {
		d := itch.OrderDeleteFields{Header: itch.Header{Locate: loc}, OrderRef: ref}
		return d.Append(nil)
	}
	exe := func(loc uint16, ref uint64, shares uint32) []byte {
		e := itch.OrderExecutedFields{Header: itch.Header{Locate: loc}, OrderRef: ref, ExecutedShares: shares, MatchNumber: 1 << 50}
		return e.Append(nil)
	}
	cancel := itch.OrderCancelFields{Header: itch.Header{Locate: advLocB}, OrderRef: r3, CancelledShares: 500}
	cancelUnknown := itch.OrderCancelFields{Header: itch.Header{Locate: advLocA}, OrderRef: unknown, CancelledShares: 1}
	replace := itch.OrderReplaceFields{Header: itch.Header{Locate: advLocA}, OriginalOrderRef: unknown, NewOrderRef: unknown + 1, Shares: 1, Price: 1}
	trade := func(loc uint16, shares uint32) []byte {
		p := itch.TradeFields{Header: itch.Header{Locate: loc}, Side: 'B', Shares: shares, Stock: itch.NewSymbol("NEWA"), Price: 1000, MatchNumber: 1<<50 + 1}
		return p.Append(nil)
	}
	broken := itch.BrokenTradeFields{Header: itch.Header{Locate: advLocA}, MatchNumber: 1<<50 + 7}
	longEvent := append((&itch.SystemEventFields{EventCode: 'Q'}).Append(nil), 0, 0, 0)
	badEvent := (&itch.SystemEventFields{EventCode: 'Z'}).Append(nil)
	tradingAction := func(loc uint16, state byte) []byte {
		a := itch.StockTradingActionFields{Header: itch.Header{Locate: loc}, Stock: itch.NewSymbol("DUPE"), TradingState: state}
		return a.Append(nil)
	}
	opHalt := func(loc uint16, market byte) []byte {
		h := itch.OperationalHaltFields{Header: itch.Header{Locate: loc}, Stock: itch.NewSymbol("DUPE"), MarketCode: market, HaltAction: 'H'}
		return h.Append(nil)
	}
	regSHO := func(loc uint16, action byte) []byte {
		y := itch.RegSHOFields{Header: itch.Header{Locate: loc}, Stock: itch.NewSymbol("NEWA"), Action: action}
		return y.Append(nil)
	}
	halt := itch.StockTradingActionFields{Header: itch.Header{Locate: 0}, Stock: itch.NewSymbol("NEWA"), TradingState: 'H'}
	truncated := func(loc uint16) []byte { return add(loc, unknown, 'B', 1, 1)[:20] }
	unknownType := func(loc uint16, n int) []byte {
		m := make([]byte, n)
		m[0], m[1], m[2] = 'z', byte(loc>>8), byte(loc)
		return m
	}
	return [][]byte{
		filterDir(0, "ZERO"),                // Malformed: a Stock Directory for locate 0
		filterDir(advLocA, "NEWA"),          // a new instrument
		filterDir(advLocB, "NEWB"),          // another
		filterDir(advDupFirst, "DUPE"),      // another
		add(advLocA, r1, 'B', 100, 1000),    // applied
		add(advLocA, r2, 'S', 200, 1100),    // applied
		add(advLocB, r3, 'B', 100, 990),     // applied
		add(advLocA, r1, 'B', 100, 1000),    // DuplicateAdd
		add(advLocA, r1+50, 'X', 100, 1000), // BadSide
		add(advLocA, r1+51, 'B', 0, 1000),   // ZeroShares
		del(advLocB, r1),                    // UnknownRefDelete: another locate's order
		// Another locate's orders again, that locate in another shard
		// (for 2 and 4 shards), which cannot see them: each
		// instrument's references are its own.
		del(advDupFirst, r2),                    // UnknownRefDelete
		add(advDupFirst, r1, 'S', 300, 1200),    // applied: r1 of advLocA stays
		exe(advDupFirst, r1, 100),               // applied to advDupFirst's r1
		del(advLocA, unknown),                   // UnknownRefDelete
		exe(advLocA, unknown, 1),                // UnknownRefExecute
		cancelUnknown.Append(nil),               // UnknownRefCancel
		replace.Append(nil),                     // UnknownRefReplace
		exe(advLocA, r2, 300),                   // OverExecution
		cancel.Append(nil),                      // OverCancel
		del(0, r1),                              // UnknownLocate: locate 0
		exe(0, unknown, 1),                      // UnknownRefExecute: locate 0
		add(0, unknown, 'B', 1, 1),              // UnknownLocate: locate 0
		trade(0, 100),                           // UnknownLocate: locate 0
		halt.Append(nil),                        // UnknownLocate: locate 0
		add(900, unknown, 'B', 1, 1),            // UnknownLocate
		add(2000, unknown, 'B', 1, 1),           // LocateCapacity
		unknownType(0, 20),                      // UnknownType: locate 0
		unknownType(advLocA, 20),                // UnknownType
		unknownType(0, 5),                       // UnknownType: shorter than a header, locate 0
		truncated(0),                            // Malformed: locate 0
		truncated(advLocA),                      // Malformed
		{itch.TypeAddOrder, 0, 0, 0, 0},         // Malformed: shorter than a header, locate 0
		{itch.TypeSystemEvent, 0, 0, 0, 0},      // Malformed: a System Event shorter than a header
		longEvent,                               // Long: a System Event (every shard applies it) longer than its type, counted once
		badEvent,                                // BadState: an event code ITCH 5.0 does not define, counted once
		{itch.TypeAddOrder, 0},                  // a bad message: no locate (BadMessages)
		trade(advLocA, 0),                       // ZeroShares
		tradingAction(advDupFirst, 'X'),         // BadState
		tradingAction(advDupFirst, 'P'),         // applied: paused
		opHalt(advLocB, 'Q'),                    // applied: halted
		opHalt(advDupFirst, 'B'),                // another market's: no change
		regSHO(advLocA, '1'),                    // applied
		regSHO(advDupFirst, '9'),                // BadState
		append(filterDir(63, "LONGR"), 1, 2, 3), // Long: a Stock Directory, its claim sent to every shard
		filterDir(advLocB, "NEWB")[:20],         // Malformed
		filterDir(advDupFirst, "DUPE"),          // nothing: the same symbol
		filterDir(65, "NEWA"),                   // DuplicateSymbols: NEWA is at advLocA
		filterAdd(65, "NEWA", 1<<40+300, 700),   // applied, not published
		broken.Append(nil),                      // BrokenUnmatched
		filterDir(reused, "REUSE"),              // LocateReassigned; withdrawn under the filter
		// The symbol at a second locate, 300 messages on: the first
		// keeps it, the second's book is kept but not published; its
		// changes come in separate packets (and batches).
		filterDir(advDupLater, "DUPE"),              // DuplicateSymbols
		filterAdd(advDupLater, "DUPE", r1+200, 500), // applied, not published
		filterAdd(advDupFirst, "DUPE", r1+201, 600), // applied, published
		filterAdd(advDupLater, "DUPE", r1+202, 501), // applied, not published
	}
}

// packMessages packs msgs into MoldUDP64 packets of session from sequence
// number 1.
func packMessages(t *testing.T, session string, msgs [][]byte) [][]byte {
	t.Helper()
	b := moldudp64.NewBuilder(moldudp64.NewSession(session), 1, 0)
	var pkts [][]byte
	for _, m := range msgs {
		err := b.Add(m)
		if errors.Is(err, moldudp64.ErrFull) {
			pkts = append(pkts, slices.Clone(b.Flush()))
			err = b.Add(m)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return append(pkts, slices.Clone(b.Flush()))
}

func messagesOf(t *testing.T, pkt []byte) uint64 { return totalMessages(t, [][]byte{pkt}) }

// systemEventsOf counts the System Events of a packet that every shard
// applies (of its length at least, and of an event code ITCH 5.0 defines).
func systemEventsOf(t *testing.T, pkt []byte) uint64 {
	p, err := moldudp64.Parse(pkt)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	it := p.Iter()
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		if len(m) >= itch.SystemEventLen && m[0] == itch.TypeSystemEvent && book.SystemEventDefined(m[itch.HeaderLen]) {
			n++
		}
	}
	return n
}

// modeCounts is what one run made of the stream.
type modeCounts struct {
	name         string
	shards       int
	systemEvents uint64 // System Events delivered (adversarial.systemEvents)
	st           Stats
	book         book.Stats // summed over the shards
	metrics      map[string]float64
	logs         []string
	shm          map[string]string
	mode         Mode
	filtered     bool // run under the symbol filter
}

// runCounting runs the stream through one pipeline until every message
// is delivered and applied, stops it and gathers what it counted.
func runCounting(t *testing.T, adv adversarial, mode Mode, shards []int, symbols []string, books book.Config) *modeCounts {
	t.Helper()
	out := &modeCounts{name: fmt.Sprintf("%v/%d shards", mode, max(len(shards), 1)), systemEvents: adv.systemEvents, mode: mode, filtered: symbols != nil}
	if symbols != nil {
		out.systemEvents -= adv.locatedEvents
	}
	logs := new(lockedBuffer)
	r := &scriptRx{script: slices.Clone(adv.script), errAt: -1}
	name := shmtest.Name(t, "fhcount")
	// startRx's arbiter: the line timeout 1 s (the default), under the 3 s
	// of silence before day 2.
	h := startRxBooks(t, mode, shards, r, name, zerolog.New(logs), symbols, books)
	waitFor(t, out.name+": the stream delivered and applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == adv.delivered && st.Applied() == st.Routed
	})
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	h.LogStats(true)
	out.st = h.Stats()
	out.shards = len(out.st.Shards)
	for _, s := range out.st.Shards {
		addBookStats(&out.book, &s.Book)
	}
	out.metrics = metricSamples(h, &out.st)
	out.logs = badInputLogs(t, logs.String())
	out.shm = snapshotFields(t, name)
	return out
}

// addBookStats adds every counter of s to sum.
func addBookStats(sum, s *book.Stats) {
	a, b := reflect.ValueOf(sum).Elem(), reflect.ValueOf(s).Elem()
	for i := range a.NumField() {
		a.Field(i).SetUint(a.Field(i).Uint() + b.Field(i).Uint())
	}
}

// metricSamples is every /metrics sample of st, each from its row of
// exported as the Exposition and the Collector take it, per-shard ones
// summed over the shards, but the histograms (times) and the families of
// a case of their own (ownFamily) other than the receive backend's
// counters: times, the process's own (its cgroup's limits, whether
// /proc/self is readable), the receiver's label set (TestReceiveBackendInfo).
func metricSamples(h *Handler, st *Stats) map[string]float64 {
	out := map[string]float64{}
	for _, m := range exported {
		switch {
		case m.stats != nil:
			out[m.name] = float64(m.stats(st))
		case m.line != nil:
			for l, lc := range h.cfg.Receive.Lines {
				out[m.name+"{"+lc.Name+"}"] = float64(m.line(&st.Arbiter.Lines[l]))
			}
		case m.shard != nil:
			for i := range st.Shards {
				out[m.name] += float64(m.shard(&st.Shards[i]))
			}
		case m.each != nil:
			for k, v := range m.values {
				out[m.name+"{"+v+"}"] = float64(m.each(st, k))
			}
		case m.own == ownBackendEvents:
			for i := range st.Receive.Extra.Len() {
				name, v := st.Receive.Extra.At(i)
				out[m.name+"{"+name+"}"] = float64(v)
			}
		}
	}
	return out
}

// badInputLogs is what the handler logged at warn level and above, and
// its final stats line, each as its JSON less what is per mode by design
// (times, durations, threads, latencies, the applied count, the rings,
// the counts of the moment bad line datagrams were logged).
func badInputLogs(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch {
		case ev["message"] == "stats":
		case ev["level"] != "warn" && ev["level"] != "error":
			continue
		case ev["message"] == "fewer CPUs than pipeline threads: threads share cores, expect higher latency":
			continue
		}
		for k := range ev {
			// The shm slots (the stats line's shm_slots_used and
			// shm_slots_retired) are compared in the metrics, less the
			// one binding a sharded run may add by design (holderSplit):
			// in the log they differed by it (CI: 108 and 52 against 107
			// and 51).
			if k == "time" || k == "for" || k == "applied" || strings.HasPrefix(k, "ring_") ||
				strings.HasPrefix(k, "lat_") || strings.HasPrefix(k, "path_") || strings.HasPrefix(k, "shm_slots_") {
				delete(ev, k)
			}
		}
		if msg, _ := ev["message"].(string); strings.HasPrefix(msg, "line datagrams dropped as bad:") {
			// Logged at the first stats copy after the first bad
			// datagram (logBadLines): its counts are those of that
			// moment, which the batching decides. The totals are
			// compared in the metrics.
			for _, k := range []string{"dropped", "malformed", "suspect", "contradicted", "stale_end_of_session", "next", "last_suspect_end"} {
				delete(ev, k)
			}
		}
		b, _ := json.Marshal(ev)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// checkAdversarialCounted checks that the reference run counted the bad
// input the stream holds, so that comparing the modes compares something.
func checkAdversarialCounted(t *testing.T, ref *modeCounts, filter bool) {
	t.Helper()
	b := &ref.book
	for name, v := range map[string]uint64{
		"Malformed": b.Malformed, "UnknownType": b.UnknownType, "UnknownLocate": b.UnknownLocate,
		"LocateReassigned": b.LocateReassigned, "DuplicateAdd": b.DuplicateAdd,
		"UnknownRefExecute": b.UnknownRefExecute, "UnknownRefCancel": b.UnknownRefCancel,
		"UnknownRefDelete": b.UnknownRefDelete, "UnknownRefReplace": b.UnknownRefReplace,
		"OverExecution": b.OverExecution, "BadSide": b.BadSide, "ZeroShares": b.ZeroShares,
		"BrokenUnmatched": b.BrokenUnmatched,
		"OverCancel":      b.OverCancel, "Long": b.Long, "BadState": b.BadState,
		"BadMessages": ref.st.BadMessages, "line duplicates": ref.st.Arbiter.Lines[0].Duplicates + ref.st.Arbiter.Lines[0].OutOfOrder,
		"line malformed": ref.st.Arbiter.Lines[1].Malformed, "line wrong session": ref.st.Arbiter.Lines[0].WrongSession,
		"rebound": uint64(ref.metrics["shard_rebound_total"]), "duplicate symbols": uint64(ref.metrics["shard_duplicate_symbols_total"]),
	} {
		if v == 0 {
			t.Errorf("%s: %s 0: the stream misses a case", ref.name, name)
		}
	}
	// The symbol announced at two locates: the first announced keeps it.
	if got, want := ref.shm["DUPE"], fmt.Sprintf("locate %d ", advDupFirst); !strings.HasPrefix(got, want) {
		t.Errorf("%s: DUPE published as %q, want at locate %d", ref.name, got, advDupFirst)
	}
	// Day 2's duplicate takes the symbol its holder left.
	if got, want := ref.shm["DUPD"], fmt.Sprintf("locate %d ", advPromoted); !strings.HasPrefix(got, want) {
		t.Errorf("%s: DUPD published as %q, want at locate %d", ref.name, got, advPromoted)
	}
	// Under the filter the locate above the books' capacity, never
	// announced, is filtered out.
	if !ref.st.Ended {
		t.Errorf("%s: the session's end not seen: the stream misses a case", ref.name)
	}
	if filter && ref.st.Filtered == 0 {
		t.Errorf("%s: nothing filtered: the stream misses a case", ref.name)
	} else if !filter && b.LocateCapacity == 0 {
		t.Errorf("%s: LocateCapacity 0: the stream misses a case", ref.name)
	}
}

// holderSplit is 1 when got (sharded) bound DUPD's holder in a ring batch
// that ended inside the holder's packet and run to completion did not
// (TestModesCountSame): one slot more used and retired, one rebound more,
// one book more under the filter, every one of them; otherwise 0, and
// compareCounts reports any difference.
func holderSplit(ref, got *modeCounts) int {
	if got.mode != ModeSharded || ref.st.Shm.Used+1 != got.st.Shm.Used || ref.st.Shm.Retired+1 != got.st.Shm.Retired {
		return 0
	}
	var rr, gr uint64
	var rb, gb int
	for _, s := range ref.st.Shards {
		rr, rb = rr+s.Rebound, rb+s.Books
	}
	for _, s := range got.st.Shards {
		gr, gb = gr+s.Rebound, gb+s.Books
	}
	books := 0
	if got.filtered {
		books = 1
	}
	if gr != rr+1 || gb != rb+books {
		return 0
	}
	return 1
}

// compareCounts compares got with the reference run, but what is per
// mode by design (TestModesCountSame).
func compareCounts(t *testing.T, ref, got *modeCounts) {
	t.Helper()
	extra := uint64(got.shards-1) * ref.systemEvents
	if g, w := got.st.Routed, ref.st.Routed+extra; g != w {
		t.Errorf("%s: routed %d, want %d (run to completion's %d, and a System Event once more per shard)", got.name, g, w, ref.st.Routed)
	}
	if g, w := got.st.Applied(), ref.st.Applied()+extra; g != w {
		t.Errorf("%s: applied %d, want %d", got.name, g, w)
	}
	if g, w := got.book.Messages, ref.book.Messages+extra; g != w {
		t.Errorf("%s: book messages %d, want %d", got.name, g, w)
	}
	// The books' counters, all but those above and Overflowed.
	rb, gb := ref.book, got.book
	rb.Messages, gb.Messages, rb.Overflowed, gb.Overflowed = 0, 0, 0, 0
	rv, gv := reflect.ValueOf(rb), reflect.ValueOf(gb)
	for i := range rv.NumField() {
		if r, g := rv.Field(i).Uint(), gv.Field(i).Uint(); r != g {
			t.Errorf("%s: book.Stats.%s %d, run to completion %d", got.name, rv.Type().Field(i).Name, g, r)
		}
	}
	// The holder's binding of a ring batch ended inside its packet, if
	// any (TestModesCountSame), taken off got's slot counts.
	split := holderSplit(ref, got)
	gotShm := got.st.Shm
	gotShm.Used -= split
	gotShm.Retired -= split
	// The receive thread's counters.
	for _, c := range []struct {
		name string
		r, g any
	}{
		{"Arbiter", ref.st.Arbiter, got.st.Arbiter},
		{"Filtered", ref.st.Filtered, got.st.Filtered},
		{"BadMessages", ref.st.BadMessages, got.st.BadMessages},
		{"NextSeq", ref.st.NextSeq, got.st.NextSeq},
		{"ReceiveErrors", ref.st.ReceiveErrors, got.st.ReceiveErrors},
		{"Ended", ref.st.Ended, got.st.Ended},
		{"Recovery", ref.st.Recovery, got.st.Recovery},
		{"Shm", ref.st.Shm, gotShm},
		{"StaleBooks", ref.st.StaleBooks(), got.st.StaleBooks()},
	} {
		if !reflect.DeepEqual(c.r, c.g) {
			t.Errorf("%s: %s\n  %+v\nrun to completion:\n  %+v", got.name, c.name, c.g, c.r)
		}
	}
	// The shards' publishers, summed.
	var rs, gs [5]uint64
	for i, st := range []*Stats{&ref.st, &got.st} {
		sum := []*[5]uint64{&rs, &gs}[i]
		for _, s := range st.Shards {
			sum[0] += s.PublishErrors
			sum[1] += s.Rebound
			sum[2] += s.DuplicateSymbols
			sum[3] += uint64(s.Books)
			sum[4] += s.Book.Orders
		}
	}
	gs[1] -= uint64(split)
	if got.filtered {
		gs[3] -= uint64(split)
	}
	if rs != gs {
		t.Errorf("%s: publish errors, rebound, duplicate symbols, books, orders %v; run to completion %v", got.name, gs, rs)
	}
	// /metrics.
	for k, r := range ref.metrics {
		switch k {
		case "shard_applied_total", "shard_published_total", "shard_ring_full_total", "shard_ring_high_water",
			"shard_stale_binds_total", "shard_thread_rt_priority":
			continue
		}
		g, ok := got.metrics[k]
		switch k {
		case "shm_slots_used", "shm_slots_retired", "shard_rebound_total":
			g -= float64(split)
		}
		if !ok || g != r {
			t.Errorf("%s: metric %s %v (present %v), run to completion %v", got.name, k, g, ok, r)
		}
	}
	for k := range got.metrics {
		if _, ok := ref.metrics[k]; !ok {
			t.Errorf("%s: metric %s only here", got.name, k)
		}
	}
	// The log, in any order: housekeeping logs a gap and a session change
	// as its select takes them.
	if !slices.Equal(ref.logs, got.logs) {
		t.Errorf("%s: logged\n  %s\nrun to completion:\n  %s", got.name, strings.Join(got.logs, "\n  "), strings.Join(ref.logs, "\n  "))
	}
	// The shm file.
	for sym, r := range ref.shm {
		if g, ok := got.shm[sym]; !ok || g != r {
			t.Errorf("%s: %s:\n  %s\nrun to completion:\n  %s", got.name, sym, g, r)
		}
	}
	for sym, g := range got.shm {
		if _, ok := ref.shm[sym]; !ok {
			t.Errorf("%s: %s live only here: %s", got.name, sym, g)
		}
	}
}
