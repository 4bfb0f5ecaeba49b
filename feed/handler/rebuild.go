package handler

import (
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/clock"
)

// This file holds the books' rebuild, from a snapshot or at a session
// change, and their possibly-stale flag, set at a gap (gap, pushStale) and
// cleared once they are whole (markWhole).

// glimpseSnapshot is the GLIMPSE snapshot message ('G'): it names the
// sequence number and is not applied to a book.
const glimpseSnapshot = 'G'

// rebuild replaces the books with a snapshot: every shard is told to flag
// and keep its published books while it resets and reloads them, then to
// publish them whole. msgs holds [u16 length][message] records; they get
// sequence number next-1.
func (h *Handler) rebuild(msgs []byte, next uint64) {
	for _, s := range h.shards {
		h.pushMarker(s, markerRebuild, next)
	}
	now := clock.Now()
	h.pickup = now
	// The snapshot's messages were not received from a line: their latency
	// is a repair's, recorded apart from the live path's (Repairing).
	repairing := h.arb.repairing
	h.arb.repairing = true
	it := (&moldudp64.Packet{Blocks: msgs}).Iter() // the same framing as a packet's blocks
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		if len(msg) > 0 && msg[0] == glimpseSnapshot {
			continue
		}
		h.routeMsg(msg, next-1, now)
	}
	h.arb.repairing = repairing
	for _, s := range h.shards {
		h.pushMarker(s, markerRebuilt, next)
	}
}

// sessionChanged is the arbiter's SessionFunc: the first lock is logged; a
// change (a confirmed session replacing a silent one, or the followed
// session's sequence restarting under the same name) empties the books,
// flagged, and has them rebuilt: by snapshot when one is configured, else
// by re-requesting the new session from its start; with no recovery source
// they are whole once the new session came from its start (newSessionWhole).
func (h *Handler) sessionChanged(old, new moldudp64.Session) {
	select {
	case h.sessionLog <- [2]moldudp64.Session{old, new}:
	default: // the logger is behind; the counters still have it
	}
	if old == (moldudp64.Session{}) {
		return
	}
	h.rebuild(nil, 1)
	if h.rec != nil {
		h.rec.sessionChanged(old, new)
	} else {
		h.pushStaleAll()
		h.newSession, h.newSessionGaps = true, h.arb.Stats.Gaps
	}
}

// newSessionWhole runs on the receive thread between batches while a
// session change without a recovery source waits for the new session:
// once it was delivered from sequence number 1 on with no gap declared
// (nothing of it is missing), the books, emptied at the change, are whole;
// once a gap was declared in it they stay flagged (nothing repairs it).
func (h *Handler) newSessionWhole() {
	switch {
	case h.arb.Stats.Gaps != h.newSessionGaps:
		h.newSession = false
	case h.arb.Next() > 1:
		h.newSession = false
		h.markWhole()
	}
}

func (h *Handler) pushStaleAll() { h.pushStale(h.arb.Next()) }

// pushStale flags every book possibly stale, in band at sequence number
// seq: a marker in every shard's ring (see gap).
func (h *Handler) pushStale(seq uint64) {
	for _, s := range h.shards {
		h.pushMarker(s, markerStale, seq)
	}
}

// markWhole clears the possibly-stale flag of every book: no gap is open.
func (h *Handler) markWhole() {
	for _, s := range h.shards {
		h.pushMarker(s, markerWhole, h.arb.Next())
	}
}

// gap is the Arbiter's GapFunc: flag every book possibly stale (the missing
// messages could belong to any instrument) and log the range. The flag
// travels in band, as a marker slot in every shard's ring, so it lands
// exactly between the messages before and after the gap, and reaches a
// shard even when no message follows. now is the arbiter's (see GapFunc).
func (h *Handler) gap(r moldudp64.Range, now int64) {
	h.pushStale(r.First)
	if h.rec != nil {
		h.rec.gap(r, now)
	}
	select {
	case h.gapLog <- r:
	default: // the logger is behind; the counters still have it
	}
}
