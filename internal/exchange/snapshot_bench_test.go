package exchange

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
)

// openOrderDay is a day of a system event, symbols directory entries and
// then n adds that all stay open, spread over the symbols and 200 price
// levels per side (index i = sequence number i+1).
func openOrderDay(n, symbols int) [][]byte {
	day := make([][]byte, 0, n+symbols+1)
	se := itch.SystemEventFields{Header: itch.Header{Timestamp: 1}, EventCode: 'Q'}
	day = append(day, se.Append(nil))
	for s := range symbols {
		r := itch.StockDirectoryFields{Header: itch.Header{Locate: uint16(s + 1), Timestamp: 2}, Stock: itch.NewSymbol(fmt.Sprintf("S%05d", s)),
			MarketCategory: 'Q', FinancialStatus: 'N', RoundLotSize: 100, RoundLotsOnly: 'N'}
		day = append(day, r.Append(nil))
	}
	for i := range n {
		s := i % symbols
		side := byte('B')
		price := uint32(1_000_000 - (i/symbols%200)*100)
		if i%2 == 1 {
			side, price = 'S', uint32(1_000_100+(i/symbols%200)*100)
		}
		a := itch.AddOrderFields{Header: itch.Header{Locate: uint16(s + 1), Timestamp: uint64(3 + i)}, OrderRef: uint64(i + 1),
			Side: side, Shares: uint32(100 + i%900), Stock: itch.NewSymbol(fmt.Sprintf("S%05d", s)), Price: price}
		day = append(day, a.Append(nil))
	}
	return day
}

// BenchmarkSnapshotFetchLoad measures a late join's snapshot part: fetch a
// GLIMPSE snapshot over loopback TCP and load it into fresh books, as a
// function of the open orders. The server's build is done before the
// timer starts (an exchange has its state ready); ns/op is the fetch and
// load, reported also as ms and orders/s. login-build-ms is what the
// server spends on a login when its state follows the sender (sort and
// encode the spin); cold-apply-ms is applying the whole day from nothing.
func BenchmarkSnapshotFetchLoad(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("open=%d", n), func(b *testing.B) {
			day := openOrderDay(n, 5000)
			var position atomic.Uint64
			position.Store(uint64(len(day) - 1))
			s := startServer(b, SnapshotConfig{Messages: dayFunc(day), Position: position.Load, FollowInterval: -1})
			t0 := time.Now()
			s.Prepare() // the whole day but one message, from scratch
			cold := time.Since(t0)
			position.Store(uint64(len(day)))
			t0 = time.Now()
			s.Prepare() // one more message: what a login costs when the state follows the sender
			build := time.Since(t0)
			bs, err := book.New(book.Config{MaxOrders: 1 << 21, MaxLocates: 8192, MaxLevels: 1 << 22})
			if err != nil {
				b.Fatal(err)
			}
			cfg := clientCfg(s)
			b.ResetTimer()
			var res glimpse.Result
			for b.Loop() {
				bs.Reset()
				res, err = glimpse.Fetch(context.Background(), cfg, func(m []byte) error {
					bs.Apply(itch.Msg(m))
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if bs.Stats().Inconsistencies() != 0 || res.NextSeq != uint64(len(day))+1 {
				b.Fatalf("stats %+v, result %+v", bs.Stats(), res)
			}
			per := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(per*1e3, "ms/snapshot")
			b.ReportMetric(float64(n)/per, "orders/s")
			b.ReportMetric(float64(build.Milliseconds()), "login-build-ms")
			b.ReportMetric(float64(cold.Milliseconds()), "cold-apply-ms")
		})
	}
}
