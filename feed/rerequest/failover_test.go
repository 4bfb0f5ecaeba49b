package rerequest_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// TestFailoverRateLimited: two servers that never answer, a request rate
// (1 a second) slower than the timeouts. The failover to the second
// server finds no token: the request waits for one. It was left marked in
// flight with no send to the new server counted, so the next Poll timed
// it out again with the new server's tries at 0 (a negative shift: the
// receive thread panicked), and each Poll while waiting for a token
// counted a timeout and a retry that were never sent.
func TestFailoverRateLimited(t *testing.T) {
	h := history(t, 10)
	dead1 := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	dead2 := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead1.Addr(), dead2.Addr()},
		Timeout: time.Millisecond, Retries: 1, RequestsPerSecond: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := int64(1)
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
	failed := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Poll panicked after %d requests: %v (stats %+v)", c.Stats.Requests, r, c.Stats)
			}
		}()
		for range 10000 {
			now += int64(time.Millisecond)
			if !c.Poll(now, func(moldudp64.Packet) {}) {
				failed = true
				break
			}
		}
	}()
	// 2 sends to each server: 4 requests, 4 timeouts, 2 retries, 1 failover.
	st := c.Stats
	if !failed || st.Requests != 4 || st.Timeouts != 4 || st.Retries != 2 || st.Failovers != 1 || st.Failures != 1 {
		t.Fatalf("failed %v; stats %+v, want 4 requests, 4 timeouts, 2 retries, 1 failover, 1 failure", failed, st)
	}
}

// TestFailoverWhenAnswersMissTheStart: the first server answers every
// request, but from 5 messages past the first asked (it no longer has
// the first ones); the second server has everything. The first server's
// answers never fill what is missing first, so it must be failed over
// like one that does not answer. Before, every such answer counted as a
// partial answer: the request was continued from the same place with its
// tries reset, for ever, and the range was held until the spill overflowed
// and it was declared (or for ever on a quiet feed), while the second
// server could have filled it.
func TestFailoverWhenAnswersMissTheStart(t *testing.T) {
	h := history(t, 100)
	late := answerServer(t, func(conn *net.UDPConn, req []byte, from netip.AddrPort) {
		rq, err := moldudp64.ParseRequest(req)
		if err != nil {
			return
		}
		conn.WriteToUDPAddrPort(packet(h, rq.Seq+5, rq.Seq+uint64(rq.Count)), from)
	})
	live := newServer(t, exchange.RerequestConfig{Message: h.Message})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{late, live.Addr()},
		Timeout: 50 * time.Millisecond, Retries: 2, RequestsPerSecond: 1e6}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fill(t, c, moldudp64.Range{First: 20, Count: 30})
	if st := c.Stats; st.Failovers != 1 {
		t.Fatalf("stats %+v, want 1 failover", st)
	}
}
