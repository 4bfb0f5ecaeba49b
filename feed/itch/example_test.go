package itch_test

import (
	"fmt"

	"github.com/marketfeed/feedhandler/feed/itch"
)

func Example() {
	// Encode two messages as blocks, as in a BinaryFILE or a MoldUDP64 packet.
	add := itch.AddOrderFields{
		Header:   itch.Header{Locate: 13, Timestamp: 34_200_000_000_000},
		OrderRef: 42, Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 150_2500,
	}
	exec := itch.OrderExecutedFields{
		Header:   itch.Header{Locate: 13, Timestamp: 34_200_000_001_000},
		OrderRef: 42, ExecutedShares: 40, MatchNumber: 7,
	}
	var buf []byte
	buf = add.AppendBlock(buf)
	buf = itch.AppendBlock(buf, []byte{'z', 0, 0}) // a type this decoder does not know
	buf = exec.AppendBlock(buf)

	var s itch.Scanner
	s.Reset(buf)
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		switch m.Type() {
		case itch.TypeAddOrder:
			a := itch.AddOrder(m)
			fmt.Printf("%s add %d %c %d %s @ %s\n", itch.AppendTimestamp(nil, a.Timestamp()),
				a.OrderRef(), a.Side(), a.Shares(), a.Stock(), itch.AppendPrice4(nil, a.Price()))
		case itch.TypeOrderExecuted:
			e := itch.OrderExecuted(m)
			fmt.Printf("executed %d: %d shares, match %d\n", e.OrderRef(), e.ExecutedShares(), e.MatchNumber())
		}
	}
	fmt.Println("err:", s.Err(), "messages:", s.Messages, "unknown:", s.Unknown)
	// Output:
	// 09:30:00.000000000 add 42 B 100 AAPL @ 150.2500
	// executed 42: 40 shares, match 7
	// err: <nil> messages: 2 unknown: 1
}
