package soupbintcp_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// TestSendOversized: a payload the 16-bit length field cannot count is
// refused on both sides, nothing of it is written, and the stream stays in
// step: the client's next packet arrives whole.
func TestSendOversized(t *testing.T) {
	big := make([]byte, soupbintcp.MaxPayload+1)
	a, b := net.Pipe()
	sc := soupbintcp.NewServerConn(a, soupbintcp.ServerConfig{HeartbeatInterval: time.Hour})
	if err := sc.WritePacket(soupbintcp.TypeSequencedData, big); !errors.Is(err, soupbintcp.ErrOversized) {
		t.Fatalf("ServerConn.WritePacket of %d bytes: %v, want ErrOversized", len(big), err)
	}
	sc.Close()
	b.Close()

	// The client against a server that reads raw packets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		typ byte
		msg string
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		r := soupbintcp.NewReader(c, soupbintcp.FromClient, 0, 0, nil)
		if typ, _, err := r.Next(); err != nil || typ != soupbintcp.TypeLoginRequest {
			got <- result{typ, "", err}
			return
		}
		if _, err := c.Write(soupbintcp.AppendLoginAccepted(nil, "S", 1)); err != nil {
			got <- result{err: err}
			return
		}
		typ, p, err := r.Next()
		got <- result{typ, string(p), err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := soupbintcp.Dial(ctx, soupbintcp.ClientConfig{Addr: ln.Addr().String(), HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(big); !errors.Is(err, soupbintcp.ErrOversized) {
		t.Fatalf("Client.Send of %d bytes: %v, want ErrOversized", len(big), err)
	}
	if err := c.Send([]byte("next")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil || r.typ != soupbintcp.TypeUnsequencedData || r.msg != "next" {
			t.Fatalf("server read '%c' %q, %v; want 'U' \"next\"", r.typ, r.msg, r.err)
		}
	case <-ctx.Done():
		t.Fatal("the server read nothing")
	}
}
