package exchange_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/marketfeed/feedhandler/internal/exchange"
)

// Send three packets to a local socket, dropping none.
func Example() {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	s, err := exchange.NewSender(exchange.Config{
		Lines: []exchange.Line{{Group: netip.MustParseAddr("127.0.0.1"), Port: port}},
		Rate:  1000,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	st, err := s.Send(context.Background(), exchange.Packets([][]byte{[]byte("one"), []byte("two"), []byte("three")}))
	fmt.Println("input", st.Input, "sent", st.Lines[0].Sent, err)
	buf := make([]byte, 64)
	for range 3 {
		n, _ := c.Read(buf)
		fmt.Println(string(buf[:n]))
	}
	// Output:
	// input 3 sent 3 <nil>
	// one
	// two
	// three
}
