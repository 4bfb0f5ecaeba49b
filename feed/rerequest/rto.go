package rerequest

import "time"

// rto returns a request's timeout before its retries double it: the
// server's measured answer time, smoothed, and four times its variation
// (as TCP's retransmission timeout, RFC 6298), at least Config.Timeout
// and at most Config.Timeout<<6; Config.Timeout until an answer is
// measured. A server that answers its requests one at a time keeps those
// asked together (the ranges asked ahead, Ahead) waiting behind each
// other: with a timeout under that wait each was taken as lost and asked
// again, and the resends queued behind the rest, a storm of retries (the
// lab soak's seed 16096, 8 ms an answer: 3,093 timeouts of 7,206
// requests with the measured time alone, its first range 3.5 s).
func (c *Client) rto() time.Duration {
	t := c.cfg.Timeout
	if c.srtt != 0 {
		t = max(t, time.Duration(c.srtt+4*c.rttvar))
	}
	return min(t, c.cfg.Timeout<<6)
}

// timedOut counts f's request timed out, and doubles the timeout of the
// requests sent after it (those in flight keep theirs) until an answer is
// measured again (sample; Karn's algorithm, as TCP's): the answers that
// take longer than the timeout are never measured (an answer to a resend
// may be the first send's), so the measured time alone stays under a
// server's answer time that grew past the timeout. It is not compounded
// with a retry's own doubling (flight.timeout). A request whose write
// failed (unsent) doubles nothing: it never reached the server, whose
// answer time it says nothing of.
func (c *Client) timedOut(f *flight) {
	c.Stats.Timeouts++
	if f.unsent {
		return
	}
	c.backoff = min(c.backoff+1, maxBackoff)
	c.Stats.RTO = c.rto() << c.backoff
}

// maxBackoff is the most doublings timeouts keep (timedOut) for the first
// tries sent after them. A server losing a third of its answers (the lab
// soak's seed 13051) times out several requests in a row: their
// doublings kept up to 6 for every request, each retry's doubling on
// top, held its first range for 24 s and its repair took 142 s (2 kept:
// 38 s; 1: 35 s).
const maxBackoff = 1

// sample takes rtt, the answer time of a first try (flight.heard; 0:
// none), into the smoothed answer time and its variation (gains 1/8 and
// 1/4, RFC 6298), ends the doubling kept by timeouts (timedOut), and
// notes the timeout they make (Stats.RTO).
func (c *Client) sample(rtt int64) {
	if rtt <= 0 {
		return
	}
	if c.srtt == 0 {
		c.srtt, c.rttvar = rtt, rtt/2
	} else {
		d := c.srtt - rtt
		if d < 0 {
			d = -d
		}
		c.rttvar += (d - c.rttvar) / 4
		c.srtt += (rtt - c.srtt) / 8
	}
	c.backoff = 0
	c.Stats.AnswerTimes++
	c.Stats.RTO = c.rto()
}
