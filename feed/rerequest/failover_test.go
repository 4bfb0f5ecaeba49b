package rerequest_test

import (
	"net"
	"net/netip"
	"sync/atomic"
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

// switchableServer answers every request with the messages asked (from h)
// while up is set.
func switchableServer(t *testing.T, h *exchange.History, up *atomic.Bool) netip.AddrPort {
	return answerServer(t, func(conn *net.UDPConn, req []byte, from netip.AddrPort) {
		if rq, err := moldudp64.ParseRequest(req); err == nil && up.Load() {
			conn.WriteToUDPAddrPort(packet(h, rq.Seq, rq.Seq+uint64(rq.Count)), from)
		}
	})
}

// TestFailoverSticks: the first server is down, the second fills a range
// after the failover; the next range is asked of the second server first,
// not of the first again. Then the second goes down and the first comes
// back: the range is asked of the second, then of the first (the order
// wraps round), which fills it; with both down a range is given up after
// each was asked Retries+1 times. Before, every range started with the
// first server: with it down, every gap waited for all its timeouts (20,
// 40, 80, 160 ms by default) before the second was asked, everything after
// the gap held meanwhile, all day.
func TestFailoverSticks(t *testing.T) {
	h := history(t, 100)
	var up0, up1 atomic.Bool
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{switchableServer(t, h, &up0), switchableServer(t, h, &up1)},
		Timeout: 50 * time.Millisecond, Retries: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	up1.Store(true)
	fill(t, c, moldudp64.Range{First: 1, Count: 10})
	fill(t, c, moldudp64.Range{First: 20, Count: 10})
	if st := c.Stats; st.Failovers != 1 {
		t.Fatalf("the first server down, two ranges: %d failovers, want 1 (in the first range); %d requests", st.Failovers, st.Requests)
	}
	up0.Store(true)
	up1.Store(false)
	fill(t, c, moldudp64.Range{First: 40, Count: 10})
	if st := c.Stats; st.Failovers != 2 {
		t.Fatalf("the second server down, the first back: %d failovers, want 2 (the second, then the first)", st.Failovers)
	}
	up0.Store(false)
	now := time.Now().UnixNano()
	before := c.Stats.Requests
	giveUp(t, c, &now, nil)
	if st := c.Stats; st.Failovers != 3 || st.Requests-before != 6 || st.Failures != 1 {
		t.Fatalf("both servers down: %d failovers (want 3), %d requests (want 6: 3 to each), %d failures (want 1)", st.Failovers, st.Requests-before, st.Failures)
	}
}

// TestFailoverAtOnceOnSendError: the first server cannot be written to (a
// broadcast address without SO_BROADCAST: EACCES, as a firewall's EPERM or
// no route would be), the second answers. The client fails over at its
// next Poll, with no time passed, instead of waiting out the first
// server's timeouts (here an hour each) while delivery is held back; the
// second server's answer fills the range.
func TestFailoverAtOnceOnSendError(t *testing.T) {
	h := history(t, 10)
	live := newServer(t, exchange.RerequestConfig{Message: h.Message})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("255.255.255.255:9"), live.Addr()},
		Timeout: time.Hour, Retries: 2, RequestsPerSecond: 1e6}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := int64(1)
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
	var got atomic.Uint64
	deliver := func(p moldudp64.Packet) { got.Add(uint64(p.Messages())) }
	c.Poll(now, deliver) // the first send fails
	now++
	c.Poll(now, deliver) // fails over and asks the second server
	if st := c.Stats; st.SendErrors != 1 || st.Failovers != 1 || st.Requests != 1 {
		t.Fatalf("stats %+v; want 1 send error, 1 failover and 1 request sent (to the second server) with no time passed", st)
	}
	for i := 0; got.Load() < 5; i++ { // bounded: the answer is on loopback
		if i == 5000 {
			t.Fatalf("no answer from the second server: %d messages, stats %+v", got.Load(), c.Stats)
		}
		time.Sleep(time.Millisecond)
		now++
		c.Poll(now, deliver)
	}
}
