package handler

import (
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the ranges re-requested ahead: while the arbiter's
// range is filled, the holes it holds packets past (Arbiter.holesAhead)
// are asked for too (rerequest.Client.Ahead), their answers held until
// delivery reaches them; each is counted and logged as a range repaired
// when delivery passes it, or handed on as the range being filled when
// its turn comes with part of it still missing.

// maxAheadGaps bounds the holes asked ahead and not yet reached
// (recovery.ahead): past it no further hole is asked ahead until
// delivery reaches one.
const maxAheadGaps = 64

// aheadEvery is how often, at most, the held packets are looked at for
// holes to ask ahead (a receive batch's round may be microseconds).
const aheadEvery = 100 * time.Microsecond

// aheadGap is a hole asked ahead: as first found, and when.
type aheadGap struct {
	rg moldudp64.Range
	at int64
}

// askAhead hands the client the holes past the range being filled that
// are missing on every live line (at most rerequest.MaxAhead, each one
// request fills and, with a snapshot source, not past MaxRerequestGap),
// and notes those found first now (gaps detected, from now). Called
// before the client's Poll while it fills a range, at most every
// aheadEvery. It allocates nothing.
func (r *recovery) askAhead(now int64) {
	if now-r.aheadAt < int64(aheadEvery) && now >= r.aheadAt {
		return
	}
	r.aheadAt = now
	maxCount := uint64(r.client.RequestMessages())
	if r.cfg.Snapshot != nil {
		maxCount = min(maxCount, r.cfg.MaxRerequestGap)
	}
	holes := r.h.arb.holesAhead(r.aheadBuf[:0], maxCount, now)
	k := 0
	for _, h := range holes {
		if !r.noteAhead(h, now) {
			break // no room to remember it: asked once delivery reaches one
		}
		k++
	}
	r.client.Ahead(holes[:k])
}

// noteAhead remembers hole h as asked ahead, found now, unless it is
// part of one remembered; false when there is no room.
func (r *recovery) noteAhead(h moldudp64.Range, now int64) bool {
	for i := range r.nAhead {
		if r.ahead[i].rg.Overlaps(h) {
			return true
		}
	}
	if r.nAhead == maxAheadGaps {
		return false
	}
	r.ahead[r.nAhead] = aheadGap{rg: h, at: now}
	r.nAhead++
	return true
}

// takeAhead removes the holes asked ahead that rg overlaps, and returns
// when the first of them was found (0: none).
func (r *recovery) takeAhead(rg moldudp64.Range) int64 {
	at := int64(0)
	k := 0
	for i := range r.nAhead {
		g := r.ahead[i]
		if g.rg.Overlaps(rg) {
			if at == 0 || g.at < at {
				at = g.at
			}
			continue
		}
		r.ahead[k] = g
		k++
	}
	r.nAhead = k
	return at
}

// reachedAhead records the holes asked ahead that delivery passed, not
// handed to missing nor declared since: filled ahead by their answers
// (or a line's late copy), each a gap detected and a range repaired by
// re-request, logged as the range being filled is (filled).
func (r *recovery) reachedAhead(now int64) {
	next := r.h.arb.Next()
	k := 0
	for i := range r.nAhead {
		g := r.ahead[i]
		if g.rg.End() > next {
			r.ahead[k] = g
			k++
			continue
		}
		r.stats.GapsDetected++
		r.aheadFilled++
		r.hist.Record(now - g.at)
		e := RecoveryEvent{Range: g.rg, Asked: g.rg, By: "re-request", Took: time.Duration(now - g.at)}
		r.event(e)
		r.h.log.Info().Uint64("first", e.Range.First).Uint64("count", e.Range.Count).Dur("took", e.Took).Bool("ahead", true).
			Msg("recovery: range repaired by re-request")
	}
	r.nAhead = k
}

// dropAhead forgets the holes asked ahead: delivery moves elsewhere (a
// snapshot's sequence number, a new session or numbering), not through
// them.
func (r *recovery) dropAhead() { r.nAhead = 0 }
