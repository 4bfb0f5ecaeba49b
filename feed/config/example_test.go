package config_test

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
)

func Example() {
	feed := []byte(`
feed:
  name: demo
lines:
  a: {interface: fhdemo1, group: 239.77.1.1, port: 26477}
  b: {interface: fhdemo1, group: 239.77.1.2, port: 26478}
receive:
  backend: socket
cores:
  shards: [0, 1]
`)
	c, err := config.Parse("demo.yaml", feed)
	if err != nil {
		fmt.Println(err)
		return
	}
	rc := c.RxConfig(zerolog.Nop())
	for _, l := range rc.Lines {
		fmt.Println(l.Name, l.Interface, l.Group, l.Port)
	}
	fmt.Println(rc.Backend, rc.BatchSize, c.ShardCount(), c.Book.Depth, c.SHM.Name, c.StatsInterval)
	// Output:
	// A fhdemo1 239.77.1.1 26477
	// B fhdemo1 239.77.1.2 26478
	// socket 64 2 10 demo 5s
}

func ExampleError() {
	_, err := config.Parse("nasdaq.yaml", []byte(`
feed: {name: nasdaq}
lines:
  a:
    interface: ens1f0
    group: 239.1.1.300
    port: 26477
receive:
  bakend: xdp
`))
	fmt.Println(err)
	var e *config.Error
	if errors.As(err, &e) {
		fmt.Println(e.Line, e.Field)
	}
	// Output:
	// nasdaq.yaml:6: lines.a.group: "239.1.1.300" is not an IPv4 multicast address
	// nasdaq.yaml:9: receive.bakend: unknown field (did you mean "backend"?)
	// 6 lines.a.group
}
