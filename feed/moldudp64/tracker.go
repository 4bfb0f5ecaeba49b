package moldudp64

import (
	"math"
	"math/bits"
)

// Kind classifies a packet seen by a Tracker.
type Kind uint8

const (
	// KindMalformed: sequence number 0, or Seq+Count wraps past 2^64-1.
	// Nothing changes; drop the packet.
	KindMalformed Kind = iota
	// KindInOrder: the packet starts at the expected sequence number. Apply
	// all its messages.
	KindInOrder
	// KindGap: the packet starts after the expected sequence number. The
	// messages Verdict.Gap are missing; the packet's messages are applied and
	// the expected sequence number moves past them. Recovering the gap
	// (the other line, a re-request) is the caller's business.
	KindGap
	// KindOverlap: the packet starts before the expected sequence number and
	// ends after it. Skip the first Verdict.Skip messages (already seen),
	// apply the rest.
	KindOverlap
	// KindDuplicate: every message of the packet was already seen (or is too
	// old to know). Drop it.
	KindDuplicate
	// KindLate: the packet lies entirely before the expected sequence
	// number but carries Verdict.Filled messages that were missing (it
	// arrived after a gap was declared). The Tracker marks them seen so a
	// second copy is a KindDuplicate, but does not apply anything: the
	// messages are out of order, and what to do with them (a recovery layer
	// replaying them, or dropping them) is decided above the Tracker.
	KindLate
	// KindHeartbeat: no messages; Seq is the next expected sequence number.
	// A heartbeat ahead of the expected number reveals a gap (Verdict.Gap)
	// and moves the expectation to Seq; one behind it changes nothing.
	KindHeartbeat
	// KindEndOfSession: like KindHeartbeat, and the session is over.
	KindEndOfSession
	// KindStaleSession: the packet belongs to the session the Tracker left
	// at its last session change (a lagging line at a session rollover).
	// Nothing changes; drop it.
	KindStaleSession
)

var kindNames = [...]string{"malformed", "in-order", "gap", "overlap", "duplicate", "late", "heartbeat", "end-of-session", "stale-session"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(?)"
}

// Range is a run of sequence numbers: [First, First+Count).
type Range struct {
	First uint64
	Count uint64
}

// End returns First+Count.
func (r Range) End() uint64 { return r.First + r.Count }

// Contains reports whether seq is in r.
func (r Range) Contains(seq uint64) bool { return seq >= r.First && seq-r.First < r.Count }

// Overlaps reports whether r and o share a sequence number (an empty
// range shares none).
func (r Range) Overlaps(o Range) bool {
	return r.Count > 0 && o.Count > 0 && r.First < o.End() && o.First < r.End()
}

// Request returns the retransmission request for the start of r in session
// s: at most max messages (0 or more than MaxCount means MaxCount). Servers
// cap what one request returns, so a caller asks for the rest once the first
// part arrived.
func (r Range) Request(s Session, max int) Request {
	if max <= 0 || max > MaxCount {
		max = MaxCount
	}
	return Request{Session: s, Seq: r.First, Count: uint16(min(r.Count, uint64(max)))}
}

// Verdict is what Track says about one packet.
type Verdict struct {
	Kind Kind
	// Skip is the number of leading messages to skip (KindOverlap), 0 otherwise.
	Skip uint16
	// Gap is the run of missing sequence numbers this packet revealed
	// (KindGap, or a heartbeat/end of session ahead of the expectation);
	// Gap.Count is 0 when nothing is missing.
	Gap Range
	// Filled is the number of previously missing messages a KindLate packet
	// (or the skipped head of a KindOverlap packet) carries.
	Filled uint64
	// NewSession is set on the first packet a Tracker sees and when the
	// session name changes; the Tracker was reset (expecting 1) before the
	// packet was classified.
	NewSession bool
	// Next is the expected sequence number after this packet.
	Next uint64
}

// Apply reports whether the packet carries messages to apply: in order, after
// a gap, or the tail of an overlap (skip Skip messages first).
func (v Verdict) Apply() bool {
	return v.Kind == KindInOrder || v.Kind == KindGap || v.Kind == KindOverlap
}

// TrackerStats counts what a Tracker saw, by kind.
type TrackerStats struct {
	Packets         uint64 // every call to Track
	InOrder         uint64
	Gaps            uint64 // gaps revealed (by data packets, heartbeats or end of session)
	GapMessages     uint64 // sequence numbers in those gaps
	Overlaps        uint64
	OverlapMessages uint64 // leading messages skipped
	Duplicates      uint64
	Late            uint64
	LateMessages    uint64 // missing messages carried by late packets (and skipped overlap heads)
	Heartbeats      uint64
	EndOfSession    uint64
	SessionChanges  uint64 // session name changes (not the first session)
	StaleSession    uint64 // packets of the previous session after a change
	Malformed       uint64
	Applied         uint64 // messages the caller was told to apply
}

// TrackerWindow is the number of recent sequence numbers whose reception a
// Tracker remembers, to tell a late packet from a duplicate and to list what
// is Missing.
const TrackerWindow = 4096

const window = TrackerWindow

// Tracker checks the sequence numbers of one session's packets. Its zero
// value is ready and expects sequence number 1 of whatever session it sees
// first: a late joiner whose first packet starts at seq>1 gets a KindGap for
// [1, seq). Expect starts it at an arbitrary sequence number instead.
//
// A new session name resets it to expect 1 of that session (counted, and
// flagged in the Verdict). The Tracker remembers the session it left: packets
// of that one are KindStaleSession and change nothing, so a line lagging
// behind a rollover cannot flip the Tracker back. A third name is a new
// change.
//
// Besides the expected sequence number, a Tracker remembers which of the last
// 4096 sequence numbers it has seen (a fixed bitmap, like a replay window),
// so a packet behind the expectation is reported as KindLate when it carries
// messages that were declared missing and KindDuplicate otherwise. Track
// allocates nothing.
type Tracker struct {
	Stats TrackerStats

	session Session
	prev    Session // the session left at the last change
	hasPrev bool
	next    uint64 // expected sequence number; 0 until the first packet
	ended   bool
	seen    [window / 64]uint64 // bit seq%window: seq seen, for seq in [next-window, next)
}

// Started reports whether the Tracker has a session.
func (t *Tracker) Started() bool { return t.next != 0 }

// Session returns the current session name.
func (t *Tracker) Session() Session { return t.session }

// Next returns the expected sequence number (0 before the first packet).
func (t *Tracker) Next() uint64 { return t.next }

// Ended reports whether the current session announced its end.
func (t *Tracker) Ended() bool { return t.ended }

// Reset forgets the session; the Tracker behaves as its zero value again
// (Stats are kept).
func (t *Tracker) Reset() {
	t.session, t.next, t.ended = Session{}, 0, false
	t.prev, t.hasPrev = Session{}, false
	clear(t.seen[:])
}

// Expect makes the Tracker expect sequence number next of session s (a late
// joiner that recovered the earlier messages elsewhere, or a restart). Older
// sequence numbers count as seen. It panics if next is 0.
func (t *Tracker) Expect(s Session, next uint64) {
	if next == 0 {
		panic("moldudp64: tracker expect: sequence numbers start at 1")
	}
	t.session, t.next, t.ended = s, next, false
	for i := range t.seen {
		t.seen[i] = math.MaxUint64
	}
}

// TrackPacket is Track(p.Session, p.Seq, p.Count).
func (t *Tracker) TrackPacket(p Packet) Verdict { return t.Track(p.Session, p.Seq, p.Count) }

// Track classifies a packet of session s starting at seq with count messages
// (0 heartbeat, EndOfSessionCount end of session) and advances the
// expectation. See Kind for what each verdict means and what moves.
func (t *Tracker) Track(s Session, seq uint64, count uint16) Verdict {
	t.Stats.Packets++
	n := uint64(count)
	if count == EndOfSessionCount {
		n = 0
	}
	if seq == 0 || seq > math.MaxUint64-n {
		t.Stats.Malformed++
		return Verdict{Kind: KindMalformed, Next: t.next}
	}
	var v Verdict
	if t.next == 0 || s != t.session {
		if t.hasPrev && s == t.prev {
			t.Stats.StaleSession++
			return Verdict{Kind: KindStaleSession, Next: t.next}
		}
		if t.next != 0 {
			t.Stats.SessionChanges++
			t.prev, t.hasPrev = t.session, true
		}
		t.session, t.next, t.ended = s, 1, false
		clear(t.seen[:])
		v.NewSession = true
	}
	end := seq + n
	switch {
	case n == 0:
		v.Kind = KindHeartbeat
		t.Stats.Heartbeats++
		if count == EndOfSessionCount {
			v.Kind = KindEndOfSession
			t.Stats.EndOfSession++
			t.ended = true
		}
		if seq > t.next {
			v.Gap = Range{t.next, seq - t.next}
			t.advance(seq, seq)
		}
	case seq == t.next:
		v.Kind = KindInOrder
		t.Stats.InOrder++
		t.Stats.Applied += n
		t.advance(end, seq)
	case seq > t.next:
		v.Kind = KindGap
		v.Gap = Range{t.next, seq - t.next}
		t.Stats.Applied += n
		t.advance(end, seq)
	case end <= t.next:
		v.Filled = t.fill(seq, end)
		if v.Filled == 0 {
			v.Kind = KindDuplicate
			t.Stats.Duplicates++
		} else {
			v.Kind = KindLate
			t.Stats.Late++
			t.Stats.LateMessages += v.Filled
		}
	default: // seq < t.next < end
		v.Kind = KindOverlap
		v.Skip = uint16(t.next - seq)
		v.Filled = t.fill(seq, t.next)
		t.Stats.Overlaps++
		t.Stats.OverlapMessages += uint64(v.Skip)
		t.Stats.LateMessages += v.Filled
		t.Stats.Applied += end - t.next
		t.advance(end, t.next)
	}
	if v.Gap.Count != 0 {
		t.Stats.Gaps++
		t.Stats.GapMessages += v.Gap.Count
	}
	v.Next = t.next
	return v
}

// advance moves the expectation to end; of the sequence numbers passed over,
// those from seenFrom on were received, the others are missing.
func (t *Tracker) advance(end, seenFrom uint64) {
	from := t.next
	if end-from >= window {
		clear(t.seen[:])
		from = end - window
	} else {
		t.setBits(from, seenFrom, false)
	}
	if seenFrom < from {
		seenFrom = from
	}
	t.setBits(seenFrom, end, true)
	t.next = end
}

// fill marks [from, to) (all before t.next) seen and returns how many of them
// were not seen before. Sequence numbers older than the window count as seen.
func (t *Tracker) fill(from, to uint64) uint64 {
	if t.next > window && from < t.next-window {
		from = t.next - window
	}
	if from >= to {
		return 0
	}
	was := t.countBits(from, to)
	t.setBits(from, to, true)
	return (to - from) - was
}

// setBits sets or clears the bits of sequence numbers [from, to); to-from
// must not exceed window.
func (t *Tracker) setBits(from, to uint64, on bool) {
	for from < to {
		i := from % window
		w, b := i/64, i%64
		k := min(64-b, to-from)
		mask := ^uint64(0)
		if k < 64 {
			mask = (1<<k - 1) << b
		}
		if on {
			t.seen[w] |= mask
		} else {
			t.seen[w] &^= mask
		}
		from += k
	}
}

// countBits returns how many of [from, to) are marked seen.
func (t *Tracker) countBits(from, to uint64) uint64 {
	var c uint64
	for from < to {
		i := from % window
		w, b := i/64, i%64
		k := min(64-b, to-from)
		mask := ^uint64(0)
		if k < 64 {
			mask = (1<<k - 1) << b
		}
		c += uint64(bits.OnesCount64(t.seen[w] & mask))
		from += k
	}
	return c
}

// Missing appends to dst the runs of sequence numbers before the expectation
// that have not been seen, oldest first, and returns it. Only the last 4096
// sequence numbers are remembered: older gaps were reported by the Verdict
// that revealed them and are not listed. It allocates only if dst grows.
func (t *Tracker) Missing(dst []Range) []Range {
	if t.next <= 1 {
		return dst
	}
	lo := uint64(1)
	if t.next > window {
		lo = t.next - window
	}
	var run Range
	for s := lo; s < t.next; {
		i := s % window
		w, b := i/64, i%64
		if b == 0 && t.next-s >= 64 && t.seen[w] == math.MaxUint64 {
			// A whole word seen: close any open run and skip it.
			if run.Count != 0 {
				dst = append(dst, run)
				run = Range{}
			}
			s += 64
			continue
		}
		if t.seen[w]&(1<<b) == 0 {
			if run.Count == 0 {
				run.First = s
			}
			run.Count++
		} else if run.Count != 0 {
			dst = append(dst, run)
			run = Range{}
		}
		s++
	}
	if run.Count != 0 {
		dst = append(dst, run)
	}
	return dst
}
