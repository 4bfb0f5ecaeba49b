package rerequest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// TestRTOServerQueue: a server that answers its requests one at a time,
// 8 ms each (the lab soak's seed 16096), is asked the wanted range and
// four ranges ahead at once, so the last answers come 24, 32 and 40 ms
// after their requests, past the configured Timeout (20 ms). The timeout
// follows the answer times measured (8, 16 and 24 ms before the next is
// due) and none is taken as lost: with the fixed Timeout the requests of
// 300+5 and 400+5 were resent at 24 ms, behind the server's queue. The
// clock is Poll's now, moved by the test.
func TestRTOServerQueue(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{Timeout: 20 * time.Millisecond})
	t0 := time.Now().UnixNano()
	c.Want(session, rg(10, 5), t0)
	c.Ahead([]moldudp64.Range{rg(100, 5), rg(200, 5), rg(300, 5), rg(400, 5)})
	c.Poll(t0, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+5", "100+5", "200+5", "300+5", "400+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	if c.Stats.RTO != 20*time.Millisecond || c.Stats.AnswerTimes != 0 {
		t.Fatalf("before any answer: %+v", c.Stats)
	}
	var resent []string
	for i, first := range []uint64{10, 100, 200, 300, 400} {
		now := t0 + int64(i+1)*int64(8*time.Millisecond)
		srv.answer(first, first+5)
		pollUntil(t, c, now, uint64(i+1), func(p moldudp64.Packet) {
			if p.Seq == 10 {
				c.Progress(p.Next())
			}
		})
		resent = append(resent, srv.requests()...)
	}
	if len(resent) != 0 || c.Stats.Retries != 0 || c.Stats.Timeouts != 0 {
		t.Fatalf("requests resent %v (timeout %v): %+v", resent, c.Stats.RTO, c.Stats)
	}
	if c.Stats.AnswerTimes != 5 || c.Stats.RTO <= 20*time.Millisecond {
		t.Fatalf("answer times taken %d, timeout %v, want 5 and more than the configured 20ms", c.Stats.AnswerTimes, c.Stats.RTO)
	}
}

// TestRTOResendNotMeasured: the answer to a resent request may be the
// first send's, late, so its time is not taken (Karn's rule), and the
// timeout stays Timeout; the next request's first answer is taken.
func TestRTOResendNotMeasured(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{Timeout: 20 * time.Millisecond})
	t0 := time.Now().UnixNano()
	c.Want(session, rg(10, 5), t0)
	c.Poll(t0, func(moldudp64.Packet) {})
	c.Poll(t0+int64(20*time.Millisecond), func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+5", "10+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(10, 12) // in part: the rest is asked once it is quiet
	now := t0 + int64(21*time.Millisecond)
	pollUntil(t, c, now, 1, func(p moldudp64.Packet) { c.Progress(p.Next()) })
	if c.Stats.AnswerTimes != 0 {
		t.Fatalf("the answer to a resend was measured: %+v", c.Stats)
	}
	now += int64(5 * time.Millisecond) // past the settle: 12+3 asked
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"12+3"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(12, 15)
	pollUntil(t, c, now+int64(time.Millisecond), 2, func(p moldudp64.Packet) { c.Progress(p.Next()) })
	if c.Stats.AnswerTimes != 1 || c.Stats.RTO != 20*time.Millisecond {
		t.Fatalf("answer times taken %d, timeout %v: want 1, and the floor (Timeout, 20ms) for a 1ms answer", c.Stats.AnswerTimes, c.Stats.RTO)
	}
}

// TestRTOBackoffKept: after a timeout, the first try of the next request
// waits twice the timeout (Karn's algorithm: what took longer than the
// timeout is never measured), until an answer to a first try is
// measured.
func TestRTOBackoffKept(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{Timeout: 20 * time.Millisecond})
	ms := int64(time.Millisecond)
	progress := func(p moldudp64.Packet) { c.Progress(p.Next()) }
	t0 := time.Now().UnixNano()
	c.Want(session, rg(10, 5), t0)
	c.Poll(t0, progress)
	c.Poll(t0+20*ms, progress) // timed out: resent
	if got, want := srv.requests(), []string{"10+5", "10+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(10, 12) // the first send's, or the resend's: not measured
	pollUntil(t, c, t0+21*ms, 1, progress)
	c.Poll(t0+26*ms, progress) // quiet past the settle: 12+3, a first try
	if got, want := srv.requests(), []string{"12+3"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	c.Poll(t0+46*ms, progress) // Timeout after it: still awaited
	if got := srv.requests(); len(got) != 0 {
		t.Fatalf("resent %v Timeout after a first try that follows a timeout, want it awaited twice as long (%+v)", got, c.Stats)
	}
	c.Poll(t0+66*ms, progress) // twice Timeout: resent
	if got, want := srv.requests(), []string{"12+3"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v twice Timeout after, want %v", got, want)
	}
	srv.answer(12, 13) // to a resend: not measured
	pollUntil(t, c, t0+67*ms, 2, progress)
	c.Poll(t0+72*ms, progress) // 13+2, a first try, answered: measured
	if got, want := srv.requests(), []string{"13+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(13, 15)
	pollUntil(t, c, t0+73*ms, 3, progress)
	if c.Stats.AnswerTimes != 1 || c.Stats.RTO != 20*time.Millisecond || c.Active() {
		t.Fatalf("answer times %d, timeout %v, active %v: want 1, Timeout once measured, filled", c.Stats.AnswerTimes, c.Stats.RTO, c.Active())
	}
}
