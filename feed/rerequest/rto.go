package rerequest

import "time"

// estimate is a server's answer time as the client measured it (sample)
// and the doublings its timeouts kept (timedOut), which make the timeout
// of the requests asked of it (rto). Each server has its own: an
// exchange's primary and backup re-request servers are other hosts,
// often at other sites (a backup across the country answers in
// milliseconds where the primary takes microseconds), and a server that
// queues its requests (answering one at a time) is slow by its own
// queue, so one server's answer time says nothing of another's. With one
// estimate for all, a slow primary lengthened a fast backup's first tries
// after a failover (its timeout doubled by the primary's timeouts on
// top), and the backup's answers, once measured, shortened the
// primary's when the ranges went back to it (TestRTOPerServer). It is
// kept across Forget and a session change: it measures the server and
// the path to it, not the numbering, and each answer measured moves it
// on. A failover starts the next server's tries with its own estimate,
// Config.Timeout until an answer of it is measured.
type estimate struct {
	// srtt, rttvar: the smoothed answer time of first tries and its
	// variation, in ns (0: none measured yet).
	srtt, rttvar int64
	// backoff: the doublings of a first try's timeout kept after a
	// timeout until an answer is measured (timedOut, at most maxBackoff).
	backoff int
}

// rto returns the timeout of a request to server before its retries
// double it: the server's measured answer time, smoothed, and four
// times its variation (as TCP's retransmission timeout, RFC 6298), at
// least Config.Timeout and at most Config.Timeout<<6; Config.Timeout
// until an answer of it is measured. A server that answers its requests
// one at a time keeps those asked together (the ranges asked ahead,
// Ahead) waiting behind each other: with a timeout under that wait each
// was taken as lost and asked again, and the resends queued behind the
// rest, a storm of retries (the lab soak's seed 16096, 8 ms an answer:
// 3,093 timeouts of 7,206 requests with the measured time alone, its
// first range 3.5 s).
func (c *Client) rto(server int) time.Duration {
	t := c.cfg.Timeout
	if e := &c.est[server]; e.srtt != 0 {
		t = max(t, time.Duration(e.srtt+4*e.rttvar))
	}
	return min(t, c.cfg.Timeout<<6)
}

// noteRTO sets Stats.RTO to the timeout of a first try to the server
// asked now (the wanted range's; the one the next range starts with
// when none is wanted: aheadServer), its kept doubling included.
func (c *Client) noteRTO() {
	s := c.aheadServer()
	c.Stats.RTO = c.rto(s) << c.est[s].backoff
}

// timedOut counts f's request timed out, and doubles the timeout of the
// requests sent after it to its server (those in flight keep theirs) until
// an answer is measured again (sample; Karn's algorithm, as TCP's): the
// answers that take longer than the timeout are never measured (an answer
// to a resend may be the first send's), so the measured time alone stays
// under a server's answer time that grew past the timeout. It is not
// compounded with a retry's own doubling (flight.timeout). A request whose
// write failed (unsent) doubles nothing: it never reached the server, whose
// answer time it says nothing of. One the server answered from its first
// message, asked again because the caller kept none of the answer (its hold
// full: heldFirst), is no timeout: it is neither counted nor doubles
// anything, and timedOut reports false (it is no retry either).
func (c *Client) timedOut(f *flight) bool {
	if f.heldFirst {
		return false
	}
	c.Stats.Timeouts++
	if f.unsent {
		return true
	}
	e := &c.est[f.server]
	e.backoff = min(e.backoff+1, maxBackoff)
	c.noteRTO()
	return true
}

// maxBackoff is the most doublings timeouts keep (timedOut) for the first
// tries sent after them. A server losing a third of its answers (the lab
// soak's seed 13051) times out several requests in a row: their
// doublings kept up to 6 for every request, each retry's doubling on
// top, held its first range for 24 s and its repair took 142 s (2 kept:
// 38 s; 1: 35 s).
const maxBackoff = 1

// sample takes rtt, the answer time of a first try to server
// (flight.heard; 0: none), into its smoothed answer time and variation
// (gains 1/8 and 1/4, RFC 6298), ends the doubling its timeouts kept
// (timedOut), and notes the timeout of the server asked now (Stats.RTO).
func (c *Client) sample(server int, rtt int64) {
	if rtt <= 0 {
		return
	}
	e := &c.est[server]
	if e.srtt == 0 {
		e.srtt, e.rttvar = rtt, rtt/2
	} else {
		d := e.srtt - rtt
		if d < 0 {
			d = -d
		}
		e.rttvar += (d - e.rttvar) / 4
		e.srtt += (rtt - e.srtt) / 8
	}
	e.backoff = 0
	c.Stats.AnswerTimes++
	c.noteRTO()
}
