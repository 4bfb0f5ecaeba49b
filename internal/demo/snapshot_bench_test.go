package demo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// BenchmarkSnapshotRebuild measures a rebuild from a GLIMPSE snapshot as a
// function of the open orders: fetch over SoupBinTCP (127.0.0.1, from the
// lab snapshot server, whose own build is done beforehand) and apply every
// message into fresh books, as the handler does on a late join.
//
//	go test -run '^$' -bench SnapshotRebuild -benchtime 1x ./internal/demo
func BenchmarkSnapshotRebuild(b *testing.B) {
	for _, orders := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("orders=%d", orders), func(b *testing.B) {
			const stocks = 100
			var msgs [][]byte
			for s := range stocks {
				f := itch.StockDirectoryFields{Header: itch.Header{Locate: uint16(s + 1)}, Stock: itch.NewSymbol(fmt.Sprintf("S%04d", s)),
					MarketCategory: 'Q', FinancialStatus: 'N', RoundLotSize: 100, RoundLotsOnly: 'N', Authenticity: 'P'}
				msgs = append(msgs, f.Append(nil))
			}
			for i := range orders {
				s := i % stocks
				side, price := byte('B'), uint32(100_0000-(i/stocks)%2000*100)
				if i%2 == 1 {
					side, price = 'S', uint32(100_0100+(i/stocks)%2000*100)
				}
				f := itch.AddOrderFields{Header: itch.Header{Locate: uint16(s + 1), Timestamp: uint64(i)}, OrderRef: uint64(i + 1),
					Side: side, Shares: 100, Stock: itch.NewSymbol(fmt.Sprintf("S%04d", s)), Price: price}
				msgs = append(msgs, f.Append(nil))
			}
			srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{
				Listen: "127.0.0.1:0", Username: "bench", Password: "bench", Session: "BENCH",
				Messages: func(seq uint64) ([]byte, bool) {
					if seq == 0 || seq > uint64(len(msgs)) {
						return nil, false
					}
					return msgs[seq-1], true
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve() }()
			defer func() { srv.Close(); <-served }()
			srv.Prepare()
			bs, err := book.New(book.Config{MaxOrders: 2 << 20, MaxLocates: 65535, MaxLevels: 1 << 18})
			if err != nil {
				b.Fatal(err)
			}
			var took time.Duration
			var n uint64
			for b.Loop() {
				bs.Reset()
				t0 := time.Now()
				res, err := glimpse.Fetch(context.Background(), glimpse.Config{Addr: srv.Addr().String(), Username: "bench", Password: "bench"},
					func(m []byte) error { bs.Apply(itch.Msg(m)); return nil })
				if err != nil {
					b.Fatal(err)
				}
				took, n = time.Since(t0), res.Messages
			}
			var open int
			for bk := range bs.All() {
				open += bk.Orders()
			}
			if open != orders || bs.Stats().Inconsistencies() != 0 {
				b.Fatalf("%d open orders after the rebuild, want %d; %d inconsistencies", open, orders, bs.Stats().Inconsistencies())
			}
			b.ReportMetric(float64(took)/1e6, "rebuild-ms")
			b.ReportMetric(float64(n), "messages")
		})
	}
}
