package book

import (
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestPrefetchDifferential: the random streams of TestDifferentialRandomITCH,
// each message prefetched (with the next few, as a lookahead would) before
// it is applied, give the reference book's results.
func TestPrefetchDifferential(t *testing.T) {
	for seed := range uint64(4) {
		cfg := Config{MaxOrders: 1 << 12, MaxLocates: 6, MaxLevels: 1 << 10, Overflow: 1 << 12}
		if seed%2 == 1 {
			cfg = Config{MaxOrders: 40, MaxLocates: 6, MaxLevels: 24, Overflow: 40}
		}
		ops := randomOps(200+seed, 6, 20000)
		var bufs [4][64]byte
		i := 0
		runDifferential(t, cfg, ops, func(bs *Books, o op) {
			for k := range bufs {
				if i+k < len(ops) {
					bs.Prefetch(itch.Msg(encodeOp(bufs[k][:0], ops[i+k], 1)))
				}
			}
			i++
			applyOpITCH(bs, o)
		})
	}
}

// TestPrefetchAnyBytes: Prefetch of any message, cut anywhere, or of random
// bytes changes nothing and never panics, and allocates nothing.
func TestPrefetchAnyBytes(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range base {
		bs.Apply(msgOf(e))
	}
	before := bs.Stats()
	msgs := []itch.Msg{
		msgOf(add(1<<40, 'B', 1, 1)),
		msgOf(&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: ^uint64(0), NewOrderRef: 1 << 63, Shares: 1, Price: 1}),
		msgOf(&itch.OrderDeleteFields{Header: hdr(1), OrderRef: 3}),
		msgOf(&itch.OrderExecutedFields{Header: hdr(1), OrderRef: 4, ExecutedShares: 1}),
		msgOf(&itch.StockDirectoryFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL")}),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		b := make([]byte, 1+rng.IntN(48))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0] = "AFECXDUPRZ"[rng.IntN(10)]
		msgs = append(msgs, b)
	}
	for _, m := range msgs {
		for n := 0; n <= len(m); n++ {
			bs.Prefetch(m[:n])
		}
	}
	if bs.Stats() != before {
		t.Errorf("stats changed: %+v, was %+v", bs.Stats(), before)
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, m := range msgs[:5] {
			bs.Prefetch(m)
		}
	}); n != 0 {
		t.Errorf("Prefetch: %v allocs per run", n)
	}
}
