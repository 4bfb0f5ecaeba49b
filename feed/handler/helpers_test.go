package handler

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// dayBooks hold the days of dayPackets.
var dayBooks = book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16}

// smallBooks hold a test's few hand-made instruments and orders.
var smallBooks = book.Config{MaxOrders: 1 << 12, MaxLocates: 64, MaxLevels: 1 << 10}

// oneShardHandler is a Handler with one shard (not pinned) of books cfg
// publishing into a test shm file, every locate routed to it. With ring 0
// it runs to completion (the shard applies inline); otherwise it is
// sharded, the shard's ring having ring slots, and the test applies what
// the ring holds (drainRing) or runs the shard's loop. It has no arbiter:
// see withRecovery.
func oneShardHandler(t testing.TB, ring int, cfg book.Config) (*Handler, *shard) {
	t.Helper()
	w := testWriter(t)
	s, err := newShard(0, -1, ring, cfg, w, 10)
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{log: zerolog.Nop(), mode: ModeSharded, shards: []*shard{s}, w: w,
		shardOf: make([]uint8, 1<<16), subscribed: make([]bool, 1<<16)}
	if ring == 0 {
		h.mode, h.inline = ModeRunToCompletion, s
	}
	return h, s
}

// dirMsg is a Stock Directory message announcing sym at locate 7.
func dirMsg(sym string) []byte {
	d := itch.StockDirectoryFields{Header: itch.Header{Locate: 7}, Stock: itch.NewSymbol(sym), MarketCategory: 'Q',
		FinancialStatus: 'N', RoundLotSize: 100, RoundLotsOnly: 'N', Authenticity: 'P'}
	return d.Append(nil)
}

// withRecovery gives h an arbiter of ac and a recovery of rc, wired as
// Start wires them (delivery to h.route, gaps to h.gap, session changes to
// h.sessionChanged, missing ranges to the recovery). The recovery is closed
// at cleanup.
func withRecovery(t testing.TB, h *Handler, ac ArbiterConfig, rc RecoveryConfig) *recovery {
	t.Helper()
	h.gapLog = make(chan moldudp64.Range, 8)
	h.sessionLog = make(chan [2]moldudp64.Session, 8)
	h.arb = NewArbiter(ac, h.route, h.gap)
	h.arb.SetSessionFunc(h.sessionChanged)
	rec, err := newRecovery(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.close() })
	h.rec = rec
	h.arb.SetMissing(rec.missing)
	return rec
}
