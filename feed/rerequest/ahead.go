package rerequest

import "github.com/marketfeed/feedhandler/feed/moldudp64"

// MaxAhead is how many ranges past the wanted one the client asks for at
// once at most (Ahead).
const MaxAhead = 4

// aheadRange is a range past the wanted one, asked while the wanted one
// is filled (Ahead): its own request in flight, timeout and retries.
type aheadRange struct {
	want moldudp64.Range // what the caller still lacks of it: [next, want.End())
	next uint64
	flight
	// spent: its server did not answer Retries resends (or could not be
	// written to): it is not asked again until it is the wanted range
	// (Want), where the servers are failed over in turn. Nothing is in
	// flight then (sentAt 0): it takes no room.
	spent bool
}

// Ahead tells the client the ranges past the wanted one that the caller
// lacks too, in order, each as far as it still lacks it (what answers
// brought is held by the caller, not delivered: only it knows what is
// left). While the wanted range is filled the client asks for the first
// MaxAhead of them as well, without waiting for the wanted one: when
// packets are lost at several places, a round trip per range in turn was
// the repair's cost. Each has its own request in flight, resent after
// the request timeout (rto: Timeout at least; doubled per retry) up to Retries times, of the server the
// wanted range is asked of; a range whose server did not answer waits for
// its turn (Want), which fails over as before. The messages asked and not
// yet answered, the wanted range's included, are at most RequestMessages
// (so that answers arriving together fit the sockets' receive buffer),
// and every request takes a token of the rate limit, the wanted range's
// first. Their answers are handed on as any (Poll), for the caller to
// hold until delivery reaches them. A range listed again from before
// where its request in flight asks (the answers that moved it on not
// kept) is asked again from its start, as room and the rate limit allow,
// not after that request's timeout. A range listed before and not now is
// no longer asked (an answer to it still in flight is taken); Want
// takes over the request in flight of the one it starts, rather than ask
// it again. Cancel, Forget and a wanted range given up drop them. It
// allocates nothing.
func (c *Client) Ahead(rs []moldudp64.Range) {
	var keep [MaxAhead]aheadRange
	n := 0
	used := 0 // bitmask of c.ahead matched
	for _, r := range rs {
		if n == MaxAhead {
			break
		}
		if r.Count == 0 || r.End() <= c.next || c.active && r.First < c.want.End() {
			continue
		}
		a := aheadRange{want: r, next: r.First, flight: flight{server: c.aheadServer()}}
		for i := range c.nAhead {
			if used&(1<<i) == 0 && c.ahead[i].want.Overlaps(r) {
				used |= 1 << i
				a = c.ahead[i]
				a.want, a.next = r, r.First
				if a.sentAt != 0 && !a.inflight.Contains(a.next) {
					// Asked past its start (answers the caller did not
					// keep moved it on): that request would only wait
					// out its timeout for the start, so it is dropped
					// and the range asked from its start (sendAhead).
					a.sentAt, a.lastAns = 0, 0
				}
				break
			}
		}
		keep[n] = a
		n++
	}
	c.ahead, c.nAhead = keep, n
}

// Aheads returns how many ranges past the wanted one are asked (Ahead).
func (c *Client) Aheads() int { return c.nAhead }

// aheadServer is the server a range ahead is asked of: the one the
// wanted range is asked of now, else the one a range starts with.
func (c *Client) aheadServer() int {
	if c.active {
		return c.server
	}
	return c.first
}

// adopt hands Want the request in flight for r of a range ahead, if any:
// the wanted range goes on with it (its server, tries and timeout) rather
// than ask it again at once. Only a request that asks r's first message
// is taken: one asked past it (the range ahead moved on by answers the
// caller did not keep) would only wait out its timeout for a message
// nobody asked. Ranges ahead before r, or overlapping it, are dropped.
func (c *Client) adopt(r moldudp64.Range) {
	k := 0
	for i := range c.nAhead {
		a := &c.ahead[i]
		switch {
		case a.want.End() <= r.First:
			continue // behind: the caller has it, or gave it up
		case a.want.Overlaps(r) && a.sentAt != 0 && !a.spent && a.inflight.Contains(r.First):
			c.flight = a.flight
			continue
		case a.want.Overlaps(r):
			continue
		}
		c.ahead[k] = *a
		k++
	}
	c.nAhead = k
}

// progressAhead moves the ranges ahead on: next is what the caller has
// everything before; ranges it passed are dropped.
func (c *Client) progressAhead(next uint64) {
	k := 0
	for i := range c.nAhead {
		a := c.ahead[i]
		if a.want.End() <= next {
			continue
		}
		a.next = max(a.next, next)
		c.ahead[k] = a
		k++
	}
	c.nAhead = k
}

// answeredAhead notes an answer r from server, taken at now, to the
// ranges ahead it answers: the quiet moment after it counts from now, and
// one that continues what the range lacks moves it on.
func (c *Client) answeredAhead(server int, r moldudp64.Range, now int64) {
	for i := range c.nAhead {
		a := &c.ahead[i]
		c.sample(server, a.heard(server, r, now))
		if r.First <= a.next && r.End() > a.next {
			a.next = r.End()
		}
	}
}

// inFlight returns the messages asked and not answered yet: of the
// wanted range's request, and of those of the ranges ahead.
func (c *Client) inFlight() uint64 {
	n := uint64(0)
	if c.active {
		n += c.outstanding(c.next)
	}
	for i := range c.nAhead {
		n += c.ahead[i].outstanding(c.ahead[i].next)
	}
	return n
}

// room returns how many messages a request may ask now besides those in
// flight (RequestMessages in all).
func (c *Client) room() uint64 {
	return uint64(c.perRequest) - min(uint64(c.perRequest), c.inFlight())
}

// sendAhead sends, resends or continues the requests of the ranges ahead
// that are due, in order, as send does the wanted range's. One that
// waits for room or a token holds back those after it, whose timeouts
// are still seen to: a request timed out no longer takes room.
func (c *Client) sendAhead(now int64) {
	held := false // a range before waits for room or a token
	for i := range c.nAhead {
		a := &c.ahead[i]
		if a.spent || a.next >= a.want.End() && a.sentAt == 0 {
			continue
		}
		if a.sentAt != 0 {
			switch a.check(a.next, now, c.settle(), c.rto(a.server)) {
			case awaited:
				continue
			case rewrite:
				c.askAhead(a, now) // needs no room (it holds its own) nor a token (the failed write took it)
				continue
			case answered:
				if a.next >= a.want.End() {
					continue // answered: the caller holds it
				}
			case timedOut:
				counted := c.timedOut(&a.flight)
				if a.tries > c.cfg.Retries {
					a.spent = true // its turn (Want) fails over
					continue
				}
				if counted {
					c.Stats.Retries++
				}
			}
		}
		if held {
			continue
		}
		n := min(a.want.End()-a.next, c.room())
		if n == 0 {
			held = true // the answers in flight first: a later range waits as well
			continue
		}
		if !c.take(now) {
			c.Stats.RateLimited++
			held = true
			continue
		}
		a.start(moldudp64.Range{First: a.next, Count: n}, now, c.est[a.server].backoff)
		c.askAhead(a, now)
	}
}

// askAhead writes a's request (ask).
func (c *Client) askAhead(a *aheadRange, now int64) {
	sent, lasting := c.ask(&a.flight, now)
	if lasting {
		// No route, a firewall: nothing went, so nothing is in flight
		// (it takes no room); left to its turn, which fails over.
		a.sentAt, a.spent = 0, true
	}
	if sent {
		c.Stats.Ahead++
	}
}

// nextDueAhead returns the earliest of the ranges ahead's deadlines
// (NextDue), or 0: a timeout, the quiet moment after an answer, a request
// due now (room and a token: when the rate limit gives the next). One
// waiting for room is due when an answer or a timeout makes it, not
// before.
func (c *Client) nextDueAhead() int64 {
	due := int64(0)
	room := c.room()
	for i := range c.nAhead {
		a := &c.ahead[i]
		t := int64(0)
		switch {
		case a.spent:
		case a.sentAt == 0:
			if a.next < a.want.End() && room > 0 {
				t = c.tokenDue()
			}
		default:
			t = a.due(c.settle(), c.rto(a.server))
		}
		if t != 0 && (due == 0 || t < due) {
			due = t
		}
	}
	return due
}
