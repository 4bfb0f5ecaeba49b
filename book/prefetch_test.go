package book

import (
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
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
	bs := baseBooks(t)
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
	if n, exact := race.AllocsPerRun(t, 100, func() {
		for _, m := range msgs[:5] {
			bs.Prefetch(m)
		}
	}); exact && n != 0 {
		t.Errorf("Prefetch: %v allocs per run", n)
	}
}

// TestPrefetchBlocks: PrefetchBlocks walks the same blocks as its Go
// definition on well-framed runs, cut anywhere and with any limit, and on
// random bytes; it changes nothing, never faults and allocates nothing.
func TestPrefetchBlocks(t *testing.T) {
	bs := baseBooks(t)
	before := bs.Stats()
	var framed []byte
	for _, m := range []itch.Msg{
		msgOf(add(1<<40, 'B', 1, 1)),
		msgOf(&itch.OrderDeleteFields{Header: hdr(1), OrderRef: 3}),
		msgOf(&itch.StockDirectoryFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL")}),
		{'X', 0},
		{},
		msgOf(&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: ^uint64(0), NewOrderRef: 1 << 63, Shares: 1, Price: 1}),
	} {
		framed = append(framed, byte(len(m)>>8), byte(len(m)))
		framed = append(framed, m...)
	}
	runs := [][]byte{framed}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, rng.IntN(80))
		for i := range b {
			b[i] = byte(rng.Uint32())
			if rng.IntN(3) == 0 {
				b[i] = byte(rng.IntN(24)) // lengths that fit
			}
		}
		runs = append(runs, b)
	}
	walked := 0
	for _, run := range runs {
		for n := 0; n <= len(run); n++ {
			for _, max := range []int{-1, 0, 1, 2, 3, 100} {
				got, want := bs.PrefetchBlocks(run[:n], max), bs.prefetchBlocksGo(run[:n], max)
				if got != want {
					t.Fatalf("PrefetchBlocks(% x, %d) = %d, want %d", run[:n], max, got, want)
				}
				walked += got
			}
		}
	}
	if got := bs.PrefetchBlocks(framed, 100); got != len(framed) {
		t.Errorf("PrefetchBlocks(whole run) = %d, want %d", got, len(framed))
	}
	if got, want := bs.PrefetchBlocks(framed, 2), 2+36+2+19; got != want {
		t.Errorf("PrefetchBlocks(run, 2) = %d, want %d", got, want)
	}
	if walked == 0 {
		t.Fatal("no block walked")
	}
	if bs.Stats() != before {
		t.Errorf("stats changed: %+v, was %+v", bs.Stats(), before)
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
	if n, exact := race.AllocsPerRun(t, 100, func() { bs.PrefetchBlocks(framed, 100) }); exact && n != 0 {
		t.Errorf("PrefetchBlocks: %v allocs per run", n)
	}
}

// baseBooks returns small books holding the base scenario.
func baseBooks(t *testing.T) *Books {
	t.Helper()
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range base {
		bs.Apply(msgOf(e))
	}
	return bs
}
