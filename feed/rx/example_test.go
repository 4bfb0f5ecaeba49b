package rx_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// Receive two packets on line B with the recvmmsg backend, in a namespace
// lab (needs root).
func Example() {
	lab, err := netlab.New(netlab.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lab.Close()
	lines := []rx.LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: netip.MustParseAddr("239.1.2.1"), Port: 30001},
		{Name: "B", Interface: lab.DstIf, Group: netip.MustParseAddr("239.1.2.2"), Port: 30002},
	}
	var r rx.Receiver
	if err := lab.Do(lab.Dst, func() (err error) {
		r, err = rx.Open(rx.Config{Lines: lines, Backend: rx.BackendSocket})
		return err
	}); err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	var s *exchange.Sender
	if err := lab.Do(lab.Src, func() (err error) {
		s, err = exchange.NewSender(exchange.Config{Interface: lab.SrcIf, Lines: []exchange.Line{{Group: lines[1].Group, Port: lines[1].Port}}})
		return err
	}); err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	s.Send(context.Background(), exchange.Packets([][]byte{[]byte("hello"), []byte("world")}))

	pkts := make([]rx.Packet, 8)
	for got, deadline := 0, time.Now().Add(5*time.Second); got < 2 && time.Now().Before(deadline); {
		n, err := r.Receive(pkts)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, p := range pkts[:n] {
			fmt.Printf("line %s from %s: %s\n", p.Line, p.Src.Addr(), p.Data)
		}
		r.Release(pkts[:n]) // the views are invalid from here on
		got += n
	}
	fmt.Println(r.Backend())
	// Output:
	// line B from 10.99.0.1: hello
	// line B from 10.99.0.1: world
	// socket (recvmmsg)
}
