package book_test

import (
	"fmt"
	"os"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
)

func Example() {
	bs, err := book.New(book.Config{MaxOrders: 1024, MaxLocates: 16, MaxLevels: 256})
	if err != nil {
		panic(err)
	}
	h := itch.Header{Locate: 7, Timestamp: 34_200_000_000_000}
	msgs := []itch.Encoder{
		&itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")},
		&itch.AddOrderFields{Header: h, OrderRef: 1, Side: 'B', Shares: 100, Price: 1_500_000},
		&itch.AddOrderFields{Header: h, OrderRef: 2, Side: 'B', Shares: 300, Price: 1_500_000},
		&itch.AddOrderFields{Header: h, OrderRef: 3, Side: 'S', Shares: 200, Price: 1_501_000},
		&itch.OrderExecutedFields{Header: h, OrderRef: 1, ExecutedShares: 40},
		&itch.OrderDeleteFields{Header: h, OrderRef: 99}, // unknown: counted, ignored
	}
	var buf []byte
	for _, e := range msgs {
		buf = e.Append(buf[:0])
		locate, changed := bs.Apply(itch.Msg(buf))
		fmt.Printf("%c locate %d changed %v\n", e.Type(), locate, changed)
	}
	b := bs.Book(7)
	bid, _, ask, _ := b.BBO()
	fmt.Printf("%s bid %d x %d (%d orders), ask %d x %d\n", b.Symbol(), bid.Price, bid.Shares, bid.Orders, ask.Price, ask.Shares)
	ahead, shares, _ := bs.QueueAhead(7, 2)
	fmt.Printf("order 2 has %d order(s), %d shares ahead of it\n", ahead, shares)
	price, size, volume := b.Last()
	fmt.Printf("last %d @ %d, volume %d\n", size, price, volume)
	fmt.Printf("unknown deletes %d\n", bs.Stats().UnknownRefDelete)
	bs.WriteJSON(os.Stdout, 0)
	// Output:
	// R locate 7 changed true
	// A locate 7 changed true
	// A locate 7 changed true
	// A locate 7 changed true
	// E locate 7 changed true
	// D locate 7 changed false
	// AAPL bid 1500000 x 360 (2 orders), ask 1501000 x 200
	// order 2 has 1 order(s), 60 shares ahead of it
	// last 40 @ 1500000, volume 40
	// unknown deletes 1
	// {
	// "AAPL": {"bids": [[1500000, 360, 2]], "asks": [[1501000, 200, 1]]}
	// }
}

func ExampleBook_Depth() {
	bs, _ := book.New(book.Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 64})
	bs.Announce(1, itch.NewSymbol("MSFT"))
	for i, p := range []uint32{100, 101, 99, 101, 98} {
		bs.AddOrder(1, uint64(i+1), book.Bid, 10, p)
	}
	var top [2]book.Level // depth 2, no allocation
	for _, lv := range bs.Book(1).Depth(book.Bid, top[:0]) {
		fmt.Println(lv.Price, lv.Shares, lv.Orders)
	}
	// Output:
	// 101 20 2
	// 100 10 1
}
