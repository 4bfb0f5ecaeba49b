package rerequest_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// TestClientModel fills random ranges from one to three servers of random
// kinds, in random order: a server with everything (capping its answers,
// losing up to 5% of them), one that never answers, one that answers from
// past the first message asked (it no longer has the start), and one that
// loses most of its answers. With a server of the first kind among them
// the range must be filled, whatever the others do and whatever the
// client's settings; with none, it must be filled or given up on, never
// polled for ever. Every message is taken once, in order (stream).
func TestClientModel(t *testing.T) {
	h := history(t, 3000)
	for seed := range uint64(60) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel() // mostly waiting for timeouts
			testClientModel(t, h, seed)
		})
	}
}

func testClientModel(t *testing.T, h *exchange.History, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x7e))
	var servers []netip.AddrPort
	var kinds []string
	good := false
	for range 1 + rng.IntN(3) {
		switch k := rng.IntN(4); k {
		case 0:
			srv := newServer(t, exchange.RerequestConfig{Message: h.Message, MaxMessages: rng.IntN(50), Loss: rng.Float64() * 0.05, Seed: seed})
			servers, kinds, good = append(servers, srv.Addr()), append(kinds, "whole"), true
		case 1:
			srv := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
			servers, kinds = append(servers, srv.Addr()), append(kinds, "silent")
		case 2:
			skip := 1 + uint64(rng.IntN(5))
			servers = append(servers, answerServer(t, func(conn *net.UDPConn, req []byte, from netip.AddrPort) {
				if rq, err := moldudp64.ParseRequest(req); err == nil {
					conn.WriteToUDPAddrPort(packet(h, rq.Seq+skip, rq.Seq+uint64(rq.Count)+skip), from)
				}
			}))
			kinds = append(kinds, fmt.Sprintf("from+%d", skip))
		case 3:
			srv := newServer(t, exchange.RerequestConfig{Message: h.Message, Loss: 0.9, Seed: seed})
			servers, kinds = append(servers, srv.Addr()), append(kinds, "lossy")
		}
	}
	cfg := rerequest.Config{Servers: servers, Timeout: time.Duration(1+rng.IntN(2)) * time.Millisecond,
		Retries: 6 + rng.IntN(4), MaxRequestMessages: 5 + rng.IntN(300), RequestsPerSecond: 1e6}
	if rng.IntN(4) == 0 {
		cfg.RequestsPerSecond = float64(200 + rng.IntN(2000)) // slower than the timeouts at times
	}
	r := moldudp64.Range{First: 1 + uint64(rng.IntN(1000)), Count: 1 + uint64(rng.IntN(1500))}
	desc := fmt.Sprintf("servers [%s], %+v, range %v", strings.Join(kinds, " "), cfg, r)
	c, err := rerequest.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &stream{t: t, c: c, next: r.First}
	c.Want(session, r, time.Now().UnixNano())
	gaveUp := false
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s: Poll panicked: %v (stats %+v)", desc, p, c.Stats)
			}
		}()
		for range 50_000 {
			if !c.Poll(time.Now().UnixNano(), s.take) {
				if good {
					t.Fatalf("%s: gave up at %d with a server that has everything (stats %+v)", desc, s.next, c.Stats)
				}
				gaveUp = true
				return
			}
			if !c.Active() {
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		if c.Active() {
			t.Fatalf("%s: neither filled nor given up on after 50,000 polls: at %d (stats %+v)", desc, s.next, c.Stats)
		}
	}()
	if !gaveUp && s.next != r.End() {
		t.Fatalf("%s: done at %d, want %d (stats %+v)", desc, s.next, r.End(), c.Stats)
	}
}
