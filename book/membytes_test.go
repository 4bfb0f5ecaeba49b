package book

import (
	"testing"
	"unsafe"
)

// Config.Bytes is what New allocates: the feed file's book sizes are
// checked against the host's memory with it (config.CheckHost).
func TestConfigBytes(t *testing.T) {
	for _, cfg := range []Config{
		{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64},
		{MaxOrders: 1000, MaxLocates: 300, MaxLevels: 5000, Overflow: 77, TradeMemory: 3000},
	} {
		got, err := cfg.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		bs, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		size := func(n int, elem uintptr) int64 { return int64(n) * int64(elem) }
		want := size(cap(bs.orders)+1, unsafe.Sizeof(order{})) + // the spare slot before orders[0]
			size(cap(bs.ovf), 8) + size(cap(bs.books), unsafe.Sizeof(Book{})) +
			size(cap(bs.trades), unsafe.Sizeof(tradeRec{})) + size(cap(bs.ladders.mem), unsafe.Sizeof(rung{})) +
			size(cap(bs.levels), unsafe.Sizeof(priceLevel{})) +
			size(cap(bs.claims.sym), 8) + size(cap(bs.claims.at), 8) + size(cap(bs.claims.holders), 2)
		if got != want {
			t.Errorf("%+v: Bytes %d, New allocated %d", cfg, got, want)
		}
	}
	if _, err := (Config{MaxOrders: MaxOrdersLimit + 1, MaxLocates: 1, MaxLevels: 1}).Bytes(); err == nil {
		t.Errorf("Bytes accepted MaxOrders %d", MaxOrdersLimit+1)
	}
	def, _ := DefaultConfig().Bytes()
	t.Logf("DefaultConfig: %d MiB", def>>20)
}
