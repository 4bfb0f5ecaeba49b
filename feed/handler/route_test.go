package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/rs/zerolog"
)

// TestHandlerFilterAndBadMessages: with a symbol filter, only the
// subscribed instruments' messages (and the market-wide ones, locate 0)
// reach the books, the others are counted as filtered and never published;
// blocks too short or too long to be an ITCH message are counted as bad
// and skipped; the published books equal a reference fed the admitted
// messages only. Both modes: run to completion admits and applies a
// packet's messages in one pass (routeInline), sharding through routeMsg.
func TestHandlerFilterAndBadMessages(t *testing.T) { forEachMode(t, testHandlerFilterAndBadMessages) }

func testHandlerFilterAndBadMessages(t *testing.T, mode Mode, shards []int) {
	pkts := dayPackets(t, 20_000)
	msgs := dayMessages(t, pkts)
	// Subscribe to every other instrument of the day's directory.
	var symbols []string
	subscribed := map[uint16]bool{}
	n := 0
	for _, ms := range msgs {
		for _, m := range ms {
			if m[0] == itch.TypeStockDirectory {
				if n++; n%2 == 0 {
					symbols = append(symbols, itch.StockDirectory(m).Stock().String())
					subscribed[uint16(m[1])<<8|uint16(m[2])] = true
				}
			}
		}
	}
	if len(symbols) < 2 {
		t.Fatalf("the day lists %d instruments", n)
	}
	ref, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var script []rx.Packet
	now := time.Now().UnixNano()
	var filtered, admitted, marketWide uint64
	for i, ms := range msgs {
		for _, m := range ms {
			switch loc := uint16(m[1])<<8 | uint16(m[2]); {
			case loc == 0:
				marketWide++
				fallthrough
			case subscribed[loc]:
				admitted++
				ref.Apply(itch.Msg(m))
			default:
				filtered++
			}
		}
		script = append(script, rx.Packet{Data: pkts[i], Line: rx.LineA, RxTime: now}, rx.Packet{Data: pkts[i], Line: rx.LineB, RxTime: now})
	}
	// A last packet of two blocks that no ITCH message fits: 2 bytes and
	// maxMsgLen+1 bytes (valid MoldUDP64 blocks).
	last, _ := moldudp64.Parse(pkts[len(pkts)-1])
	bad := moldudp64.AppendHeader(nil, last.Session, last.Next(), 2)
	bad = append(bad, 0, 2, 'S', 0)
	bad = append(bad, 0, maxMsgLen+1)
	bad = append(bad, make([]byte, maxMsgLen+1)...)
	bad[len(bad)-maxMsgLen-1] = itch.TypeAddOrder
	script = append(script, rx.Packet{Data: bad, Line: rx.LineA, RxTime: now}, rx.Packet{Data: bad, Line: rx.LineB, RxTime: now})
	delivered := admitted + filtered + 2

	h, _, name := startScript(t, mode, shards, script, -1, zerolog.Nop(), symbols)
	defer h.Stop()
	// Sharded, a market-wide message goes to every shard: routed once
	// per shard.
	routed := admitted + uint64(max(len(shards), 1)-1)*marketWide
	waitFor(t, "every message delivered and applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == delivered && st.Routed == routed && st.Applied() == routed
	})
	time.Sleep(60 * time.Millisecond) // one more stats copy
	st := h.Stats()
	if st.Filtered != filtered || st.BadMessages != 2 || st.Routed != routed {
		t.Fatalf("filtered %d, bad %d, routed %d; want %d, 2, %d", st.Filtered, st.BadMessages, st.Routed, filtered, routed)
	}
	if filtered == 0 || marketWide == 0 {
		t.Fatalf("the day has %d filtered and %d market-wide messages: the test misses a case", filtered, marketWide)
	}
	compareShm(t, name, ref, false)
}

// TestRunToCompletionRepairedLatency: in run to completion, the messages
// of a packet that waited for a recovery (the recovered one and the one
// held behind it) are recorded as repaired, apart from the live path's
// latencies, and the live ones are not. It fails if routeInline loses the
// arbiter's repair flag.
func TestRunToCompletionRepairedLatency(t *testing.T) {
	pkts := dayPackets(t, 5_000)
	h, s := oneShardHandler(t, 0, dayBooks)
	h.recv = &scriptRx{}
	withIdleRecovery(t, h)
	msgs := func(b []byte) uint64 {
		p, err := moldudp64.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(p.Messages())
	}
	offer := func(i int) {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[i], h.pickup)
		h.arb.Offer(1, pkts[i], h.pickup)
		h.endBatch()
	}
	offer(0)
	offer(1)
	offer(3) // 2 is lost on both lines: 3 is held
	if s.hist.Count() != msgs(pkts[0])+msgs(pkts[1]) || s.histRep.Count() != 0 {
		t.Fatalf("before the repair: %d live, %d repaired recorded; want %d, 0", s.hist.Count(), s.histRep.Count(), msgs(pkts[0])+msgs(pkts[1]))
	}
	p, _ := moldudp64.Parse(pkts[2])
	h.arb.OfferRecovered(pkts[2], p, time.Now().UnixNano())
	h.endBatch()
	if want := msgs(pkts[2]) + msgs(pkts[3]); s.histRep.Count() != want {
		t.Fatalf("repaired recorded %d, want %d (packets 2 and 3)", s.histRep.Count(), want)
	}
	if s.hist.Count() != msgs(pkts[0])+msgs(pkts[1]) {
		t.Fatalf("live recorded %d, want %d", s.hist.Count(), msgs(pkts[0])+msgs(pkts[1]))
	}
}

// TestRunToCompletionRunsFull: a packet whose latency run is the one past
// maxRuns ends the batch at once, and that batch, which published the
// packet's messages, records their run too: nothing is left for a later
// batch (which might never come) to record with its own, later time.
func TestRunToCompletionRunsFull(t *testing.T) {
	pkts := dayPackets(t, 5_000)
	h, s := oneShardHandler(t, 0, dayBooks)
	h.recv = &scriptRx{}
	withIdleRecovery(t, h)
	// Two packets lock the session; their batch ends as usual.
	for i := range 2 {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[i], h.pickup)
		h.arb.Offer(1, pkts[i], h.pickup)
	}
	h.endBatch()
	base := s.hist.Count()
	if base == 0 || len(s.runs) != 0 {
		t.Fatalf("the first packets: %d recorded, %d runs left", base, len(s.runs))
	}
	p, err := moldudp64.Parse(pkts[2])
	if err != nil {
		t.Fatal(err)
	}
	if p.Messages() < 2 {
		t.Fatalf("packet 2 has %d messages, want several", p.Messages())
	}
	// The runs of maxRuns one-message packets, each received at its own time.
	for i := range maxRuns {
		s.addRun(1, int64(i+1), int64(i+1), false)
	}
	if len(s.runs) != maxRuns || s.hist.Count() != base {
		t.Fatalf("%d runs queued, %d recorded; want %d, %d", len(s.runs), s.hist.Count(), maxRuns, base)
	}
	h.pickup = time.Now().UnixNano()
	h.arb.Offer(0, pkts[2], h.pickup)
	if len(s.runs) != 0 || s.pending {
		t.Fatalf("after packet 2: %d runs left, pending %v; want its run recorded with the batch it ended", len(s.runs), s.pending)
	}
	if got, want := s.hist.Count(), base+uint64(maxRuns+p.Messages()); got != want {
		t.Fatalf("recorded %d messages, want %d", got, want)
	}
}
