package rerequest_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// giveUp asks for r and polls, a second apart, until the client gives the
// range up (its servers never answer), calling each after every Poll.
func giveUp(t *testing.T, c *rerequest.Client, now *int64, each func()) {
	t.Helper()
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, *now)
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("range not given up after %d polls: %+v", i, c.Stats)
		}
		*now += int64(time.Second)
		ok := c.Poll(*now, func(moldudp64.Packet) {})
		if each != nil {
			each()
		}
		if !ok {
			return
		}
	}
}

// failingOpen is a client's open (rerequest.New) that fails while
// *fail is set: a new socket after Forget cannot be opened.
func failingOpen(fail *bool) func(func() error) error {
	return func(fn func() error) error {
		if *fail {
			return errors.New("namespace gone")
		}
		return fn()
	}
}

// TestRequestsCountsSent: Stats.Requests (the metric
// feedhandler_recovery_requests_total, "Re-request packets sent") counts
// the requests on the wire, not those whose write failed (SendErrors) or
// whose socket could not be opened (OpenErrors). Before, it counted both.
func TestRequestsCountsSent(t *testing.T) {
	// A broadcast address without SO_BROADCAST: every sendto fails (EACCES).
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("255.255.255.255:9")},
		Timeout: time.Millisecond, Retries: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UnixNano()
	giveUp(t, c, &now, nil)
	// EACCES stays: the server's tries are spent by the first failed
	// send (TestFailoverAtOnceOnSendError), not resent Retries times.
	if st := c.Stats; st.SendErrors != 1 || st.Requests != 0 {
		t.Errorf("every send failed: send errors %d (want 1), requests %d (want 0, none sent)", st.SendErrors, st.Requests)
	}

	h := history(t, 10)
	dead := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	fail := false
	c2, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead.Addr()}, Timeout: time.Millisecond, Retries: 2}, failingOpen(&fail))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Forget()
	fail = true
	giveUp(t, c2, &now, nil)
	if st := c2.Stats; st.OpenErrors != 3 || st.Requests != 0 {
		t.Errorf("no socket opened: open errors %d (want 3), requests %d (want 0, none sent)", st.OpenErrors, st.Requests)
	}
}

// TestOpenErrorPerServer: after a restart (Forget), the first server's new
// socket cannot be opened, the second's can. The first server's failure
// is reported (OpenError) once for its run of failures: the second
// server's socket opening does not end that run, so the next range, asked
// of the first server again and failing again, reports nothing. Before,
// the run was the client's: every range reported it again.
func TestOpenErrorPerServer(t *testing.T) {
	h := history(t, 10)
	dead0 := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	dead1 := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	var c *rerequest.Client
	fail := false
	var base uint64 // the client's failovers when the current range was wanted: asking the first server while equal
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead0.Addr(), dead1.Addr()}, Timeout: time.Millisecond, Retries: 1},
		func(fn func() error) error {
			if fail && c.Stats.Failovers == base {
				return errors.New("the first server's namespace is gone")
			}
			return fn()
		})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Forget()
	fail = true
	now := time.Now().UnixNano()
	var reported []error
	each := func() {
		if err := c.OpenError(); err != nil {
			reported = append(reported, err)
		}
	}
	for gap := range 3 {
		base = c.Stats.Failovers
		giveUp(t, c, &now, each)
		if want := uint64(2 * (gap + 1)); c.Stats.OpenErrors != want {
			t.Fatalf("range %d: open errors %d, want %d (two tries of the first server a range): %+v", gap+1, c.Stats.OpenErrors, want, c.Stats)
		}
	}
	if len(reported) != 1 || c.Stats.Requests == 0 {
		t.Errorf("the first server's socket failed 6 times in one run, the second's opened: OpenError reported %d times, want once: %v (requests %d, want some: the second server's)", len(reported), reported, c.Stats.Requests)
	}
}
