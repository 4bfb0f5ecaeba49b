package rerequest

import (
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// flight is a range's request in flight: the wanted range's (Client) and
// each range ahead's (aheadRange), which the wanted range takes over at
// its turn (adopt).
type flight struct {
	server   int // the server asked
	tries    int // sends of the current request to server
	inflight moldudp64.Range
	sentAt   int64 // when inflight was sent (0: nothing in flight)
	lastAns  int64 // when an answer to inflight last arrived (0: none yet)
	backoff  int   // the doublings of its timeout the client kept when it was sent (Client.timedOut)
	// unsent: its write failed (SendError, OpenError): nothing left, so
	// its timeout says nothing of the server (Client.timedOut).
	unsent bool
	// rewriteAt: its write failed for a reason that may pass (a send
	// buffer full: transientSendError), and is tried again at the first
	// check from then (rewrite), until its timeout; 0: none. writeFails:
	// the failed writes of this try in a row, which space them
	// (rewriteDelay).
	rewriteAt  int64
	writeFails int
	// heldFirst: an answer to it held the first message asked: the
	// server answered, though the caller may have kept none of it
	// (check, Client.timedOut).
	heldFirst bool
}

// Outcomes of a request in flight (flight.check).
const (
	awaited  = iota // nothing to do yet
	answered        // in full, or in part and quiet since: ask for what is left
	timedOut        // a retry, or the next server
	rewrite         // its write failed and may pass now: written again, the same try
)

// rewriteDelay is how long after the n-th failed write of a try in a row
// (a send buffer full) it is tried again: at once (the next check) after
// the first, then 100 µs, doubled per failure, at most maxRewriteDelay. A
// buffer full drains as the link sends (microseconds to a few
// milliseconds). A write failing all along is written 9 times in a
// try's timeout at the default 20 ms (at 0, 0, 0.1, 0.3, 0.7, 1.5, 3.1,
// 6.3 and 12.7 ms, then every 10 ms): 11 in the first retry's 40 ms, 15
// in 80 ms, 23 in 160 ms, about 58 a server over the default 3 retries,
// never per Poll.
func rewriteDelay(n int) int64 {
	if n <= 1 {
		return 0
	}
	return min(int64(100*time.Microsecond)<<min(n-2, 20), int64(maxRewriteDelay))
}

// maxRewriteDelay bounds rewriteDelay.
const maxRewriteDelay = 10 * time.Millisecond

// check returns what became of the request in flight (sentAt set) at now,
// for a range that has everything before next, and ends it (sentAt 0)
// unless it is still awaited. Answered in part, the server capped its
// answer or a packet of it was lost: once it has gone quiet for settle,
// the rest is asked for. Unanswered for its timeout (base, Client.rto,
// doubled per retry), or answered without the first message asked (a
// server that no longer has it, or the answer's first packet was lost)
// and quiet for settle, it timed out: were such an answer a partial
// one, a server lacking the start would be asked from there for ever,
// never failed over. Answered with it but lacking it still (the caller
// kept none of the answer: heldFirst), it is asked again as a retry is,
// but is no timeout (Client.timedOut). Its write failed for a reason that
// may pass (rewriteAt set), it is written again when that is due, as the
// same try (rewrite), until its timeout.
func (f *flight) check(next uint64, now int64, settle, base time.Duration) int {
	switch {
	case next >= f.inflight.End():
	case f.lastAns != 0 && next > f.inflight.First:
		if now-f.lastAns < int64(settle) {
			return awaited
		}
	case f.lastAns != 0:
		if now-f.lastAns < int64(settle) {
			return awaited
		}
		f.sentAt = 0
		return timedOut
	case now-f.sentAt < f.timeout(base):
		if f.rewriteAt != 0 && now >= f.rewriteAt {
			return rewrite
		}
		return awaited
	default:
		f.sentAt = 0
		return timedOut
	}
	f.sentAt = 0
	return answered
}

// timeout returns the request's timeout: base, doubled per retry, and
// at least backoff times (the doublings the client kept when it was
// sent: Client.timedOut), the two not compounded.
func (f *flight) timeout(base time.Duration) int64 {
	return int64(base) << min(max(f.tries-1, f.backoff), 6)
}

// due returns when the request in flight (sentAt set) is next looked at
// (check): the end of the quiet moment after its last answer, else its
// next write after a failed one (rewriteAt), else its timeout.
func (f *flight) due(settle, base time.Duration) int64 {
	if f.lastAns != 0 {
		return f.lastAns + int64(settle)
	}
	t := f.sentAt + f.timeout(base)
	if f.rewriteAt != 0 {
		t = min(t, f.rewriteAt)
	}
	return t
}

// start notes the request for r sent at now, its timeout doubled backoff
// times (Client.timedOut): a retry of the one before when it asks from
// the same message, else its first try (a continuation or a new range).
func (f *flight) start(r moldudp64.Range, now int64, backoff int) {
	if f.inflight.First != r.First {
		f.tries = 0
	}
	f.inflight = r
	f.tries++
	f.sentAt, f.lastAns, f.backoff, f.unsent, f.heldFirst = now, 0, backoff, false, false
	f.rewriteAt, f.writeFails = 0, 0
}

// wrote notes the outcome of a write of the request at now: sent (a
// failed write's rewrite that passed counts its timeout from now), or
// failed for a reason that may pass (transient: written again after
// rewriteDelay), or not.
func (f *flight) wrote(sent, transient bool, now int64) {
	switch {
	case sent:
		if f.unsent {
			f.sentAt = now
		}
		f.unsent, f.rewriteAt, f.writeFails = false, 0, 0
	case transient:
		f.unsent = true
		f.writeFails++
		f.rewriteAt = now + rewriteDelay(f.writeFails)
	default:
		f.unsent, f.rewriteAt = true, 0
	}
}

// heard notes an answer r from server taken at now: if it answers the
// request, the quiet moment after it counts from now. It returns the
// request's answer time, now less when it was sent, when r is the first
// answer to a first try in flight and comes from the server it was sent
// to (0 otherwise): an answer to a resent request may be the earlier
// send's, so its time says nothing (Karn's rule; Client.rto); nor does
// one from another server, the one failed over from answering late (the
// tries start again at a failover).
func (f *flight) heard(server int, r moldudp64.Range, now int64) int64 {
	if !r.Overlaps(f.inflight) {
		return 0
	}
	rtt := int64(0)
	if f.sentAt != 0 && f.lastAns == 0 && f.tries == 1 && server == f.server && !f.unsent {
		rtt = max(1, now-f.sentAt)
	}
	f.lastAns = now
	if r.Contains(f.inflight.First) {
		f.heldFirst = true
	}
	return rtt
}

// outstanding returns the messages the request in flight asked and the
// range, which has everything before next, still lacks (0: none in
// flight).
func (f *flight) outstanding(next uint64) uint64 {
	if f.sentAt == 0 {
		return 0
	}
	return f.inflight.End() - min(max(next, f.inflight.First), f.inflight.End())
}

// shift moves the stamps by d (a step back of the wall clock: observe).
func (f *flight) shift(d int64) {
	if f.sentAt != 0 {
		f.sentAt += d
	}
	if f.lastAns != 0 {
		f.lastAns += d
	}
	if f.rewriteAt != 0 {
		f.rewriteAt += d
	}
}
