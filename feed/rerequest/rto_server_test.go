package rerequest_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// askOfTwo returns a client of two quiet servers (Timeout 20 ms, Retries
// 1), a progress callback, and t0, when it asked the first for 10+5.
func askOfTwo(t *testing.T) (a, b *quietServer, c *rerequest.Client, progress func(moldudp64.Packet), t0 int64) {
	a, b = newQuietServer(t), newQuietServer(t)
	c = newQuietClient(t, a, rerequest.Config{Timeout: 20 * time.Millisecond, Retries: 1}, b)
	progress = func(p moldudp64.Packet) { c.Progress(p.Next()) }
	t0 = time.Now().UnixNano()
	c.Want(session, rg(10, 5), t0)
	c.Poll(t0, progress)
	return a, b, c, progress, t0
}

// TestRTOFailoverLateAnswerNotMeasured: the first server times a range
// out twice (Retries 1), the client fails over to the second and asks it
// (its first send there), then the first server's answer comes, late.
// It fills the range but is no answer to the second server's request:
// its time (1 ms after that send) says nothing of either server and is
// not measured; the second server's answer to the rest, asked after, is.
func TestRTOFailoverLateAnswerNotMeasured(t *testing.T) {
	a, b, c, progress, t0 := askOfTwo(t)
	ms := int64(time.Millisecond)
	c.Poll(t0+20*ms, progress) // timed out: resent to a, its timeout doubled
	c.Poll(t0+60*ms, progress) // timed out again: b asked
	if got, want := a.requests(), []string{"10+5", "10+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests to the first server %v, want %v", got, want)
	}
	if got, want := b.requests(), []string{"10+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests to the second server %v, want %v (%+v)", got, want, c.Stats)
	}
	a.answer(10, 12) // the first server's, late
	pollUntil(t, c, t0+61*ms, 1, progress)
	if c.Stats.AnswerTimes != 0 {
		t.Fatalf("the first server's late answer was measured as the second's answer time: %d measured, timeout %v (%+v)", c.Stats.AnswerTimes, c.Stats.RTO, c.Stats)
	}
	c.Poll(t0+64*ms, progress) // quiet past the settle: the rest asked of b
	if got, want := b.requests(), []string{"12+3"}; !slices.Equal(got, want) {
		t.Fatalf("requests to the second server %v, want %v (%+v)", got, want, c.Stats)
	}
	b.answer(12, 15) // the second server's, to a first send
	pollUntil(t, c, t0+65*ms, 2, progress)
	if c.Stats.AnswerTimes != 1 || c.Active() {
		t.Fatalf("after the second server's answer: %d measured, active %v; want 1, filled (%+v)", c.Stats.AnswerTimes, c.Active(), c.Stats)
	}
}

// TestRTOFailedWriteNotDoubled: a request whose write failed never left,
// so its timeout says nothing of the server: it moves on (a retry, or
// the next server) without doubling the timeout of the requests after it,
// as a range asked ahead whose write fails does. First a new socket that
// could not be opened (after Forget): the resend, once it opens, is
// awaited twice Timeout as a retry, and the timeout of a first try stays
// Timeout. Then a first server that cannot be written to (a broadcast
// address: EACCES): the second is asked at once, and its first try
// resent after Timeout, not twice it. Before, each failed write doubled
// the timeout as a server's silence does.
func TestRTOFailedWriteNotDoubled(t *testing.T) {
	srv := newQuietServer(t)
	fail := false
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: 20 * time.Millisecond}, failingOpen(&fail))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ms := int64(time.Millisecond)
	progress := func(p moldudp64.Packet) { c.Progress(p.Next()) }
	c.Forget()
	fail = true
	t0 := time.Now().UnixNano()
	c.Want(session, rg(10, 5), t0)
	c.Poll(t0, progress)
	fail = false
	c.Poll(t0+20*ms, progress) // its timeout: resent, the socket opened now
	if got, want := srv.requests(), []string{"10+5"}; !slices.Equal(got, want) || c.Stats.OpenErrors != 1 {
		t.Fatalf("requests %v, want %v after an open error (%+v)", got, want, c.Stats)
	}
	if c.Stats.RTO != 20*time.Millisecond {
		t.Fatalf("after a request whose socket could not be opened: timeout %v, want the configured 20ms (%+v)", c.Stats.RTO, c.Stats)
	}

	b := newQuietServer(t)
	c2, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("255.255.255.255:9"), b.addr()},
		Timeout: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Want(session, rg(10, 5), t0)
	c2.Poll(t0, progress) // the write fails
	c2.Poll(t0, progress) // the second server asked
	c2.Poll(t0+20*ms, progress)
	if got, want := b.requests(), []string{"10+5", "10+5"}; !slices.Equal(got, want) || c2.Stats.SendErrors != 1 {
		t.Fatalf("requests to the second server %v Timeout after its first try, want %v (timeout %v; %+v)", got, want, c2.Stats.RTO, c2.Stats)
	}
}

// TestRTOPerServer: each server's request timeout is its own answer
// time's. The first server answers in 19 ms (its timeout 57 ms: 19 plus
// four times 9.5), then goes silent: the range fails over to the second,
// which nothing was measured of. Its first try is resent after Timeout
// (20 ms), not after the first server's timeout doubled by its timeouts
// (114 ms), and the gauge (Stats.RTO) says the second server's. Once the
// second server answered (in 2 ms) and filled the range, the next range
// is asked of it, still at Timeout; Forget keeps each server's.
func TestRTOPerServer(t *testing.T) {
	a, b, c, progress, t0 := askOfTwo(t)
	ms := int64(time.Millisecond)
	a.requests()
	a.answer(10, 15)
	pollUntil(t, c, t0+19*ms, 1, progress)
	if c.Stats.AnswerTimes != 1 || c.Stats.RTO != 57*time.Millisecond || c.Active() {
		t.Fatalf("after the first server's answer in 19ms: %d measured, timeout %v, active %v; want 1, 57ms, filled", c.Stats.AnswerTimes, c.Stats.RTO, c.Active())
	}
	t1 := t0 + 100*ms
	c.Want(session, rg(20, 5), t1)
	c.Poll(t1, progress)
	c.Poll(t1+57*ms, progress)       // the first server's timeout: resent, doubled
	c.Poll(t1+(57+114)*ms, progress) // again: the second server asked
	if got, want := a.requests(), []string{"20+5", "20+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests to the first server %v, want %v (%+v)", got, want, c.Stats)
	}
	if got, want := b.requests(), []string{"20+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests to the second server %v, want %v (%+v)", got, want, c.Stats)
	}
	if c.Stats.RTO != 20*time.Millisecond {
		t.Errorf("after the failover: timeout %v, want the second server's, the configured 20ms", c.Stats.RTO)
	}
	t2 := t1 + (57+114+20)*ms
	c.Poll(t2, progress)
	if got, want := b.requests(), []string{"20+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests to the second server %v Timeout (20ms) after its first try, want %v resent (timeout %v; %+v)", got, want, c.Stats.RTO, c.Stats)
	}
	b.answer(20, 25) // to a resend: not measured
	pollUntil(t, c, t2+ms, 2, progress)
	c.Forget()
	t3 := t2 + 10*ms
	c.Want(session, rg(1, 5), t3) // a new numbering: the second server first (it filled the last range)
	c.Poll(t3, progress)
	if got, want := b.requests(), []string{"1+5"}; !slices.Equal(got, want) || c.Active() == false {
		t.Fatalf("after Forget: requests to the second server %v, want %v (%+v)", got, want, c.Stats)
	}
	b.answer(1, 6)
	pollUntil(t, c, t3+2*ms, 3, progress)
	if c.Stats.AnswerTimes != 2 || c.Stats.RTO != 20*time.Millisecond || c.Active() {
		t.Fatalf("the second server's answer in 2ms: %d measured, timeout %v, active %v; want 2, 20ms, filled", c.Stats.AnswerTimes, c.Stats.RTO, c.Active())
	}
}

// TestAheadAnswerNotKeptNoTimeout: a range asked ahead is answered in
// time, in part, but the caller keeps none of it (its hold full) and
// lists it again from its start before the answer's quiet moment
// (settle) ends. It is asked again then, as a range the caller still
// lacks, not as a request the server did not answer: no timeout nor
// retry is counted, nor the timeout doubled for the requests after it.
// (Answered whole, the request ends at once and the range is asked again
// when listed: that counted nothing before either.)
func TestAheadAnswerNotKeptNoTimeout(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{Timeout: 20 * time.Millisecond})
	ms := int64(time.Millisecond)
	t0 := time.Now().UnixNano()
	c.Want(session, rg(10, 5), t0)
	c.Ahead([]moldudp64.Range{rg(100, 5)})
	c.Poll(t0, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+5", "100+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(100, 103)
	pollUntil(t, c, t0+ms, 1, func(moldudp64.Packet) {}) // not kept
	c.Ahead([]moldudp64.Range{rg(100, 5)})               // still lacked whole
	c.Poll(t0+5*ms, func(moldudp64.Packet) {})           // past the settle (2ms)
	if got, want := srv.requests(), []string{"100+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v after the answer not kept, want %v asked again (%+v)", got, want, c.Stats)
	}
	if st := c.Stats; st.Timeouts != 0 || st.Retries != 0 || st.RTO != 20*time.Millisecond {
		t.Fatalf("an answer not kept asked again: %d timeouts, %d retries, timeout %v; want none, none, the configured 20ms (%+v)", st.Timeouts, st.Retries, st.RTO, st)
	}
}
