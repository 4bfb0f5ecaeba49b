package soupbintcp_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// TestCloseDuringAccept: Close and Accept on two goroutines, as the lab's
// snapshot server closes its connections while one is accepting a login.
// Close waits for the goroutines Accept starts, so Accept must start them
// before Close waits or not at all; under go test -race, Accept's
// WaitGroup.Add racing Close's Wait was reported (feed/handler's
// TestGlimpseSessionRefusedAtLogin, 'WARNING: DATA RACE' in Once.doSlow,
// Close, against serveConn's Accept).
func TestCloseDuringAccept(t *testing.T) {
	for range 200 {
		a, b := net.Pipe()
		go io.Copy(io.Discard, b) //nolint:errcheck
		sc := soupbintcp.NewServerConn(a, soupbintcp.ServerConfig{HeartbeatInterval: time.Hour})
		start := make(chan struct{})
		accepted := make(chan error, 1)
		go func() {
			<-start
			accepted <- sc.Accept("SESSION", 1)
		}()
		close(start)
		sc.Close()
		<-accepted
		b.Close()
	}
}
