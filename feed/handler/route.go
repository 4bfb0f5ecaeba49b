package handler

import (
	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the routing of delivered messages by stock locate: to the
// one shard's books in run to completion, else into each shard's ring
// (push, pushMarker), System Events and Stock Directory claims to every
// shard.

// route is the Arbiter's Deliver: copy each message into the ring of the
// shard that owns its locate.
func (h *Handler) route(p *moldudp64.Packet, skip int, rxTime int64) {
	if h.inline != nil {
		h.routeInline(h.inline, p, skip, rxTime)
		return
	}
	it := p.Iter()
	it.Skip(skip)
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		h.nDelivered++
		h.routeMsg(msg, it.Seq(), rxTime)
	}
}

// routeInline is route in run to completion: the checks of routeMsg, then
// each message applied to the one shard's books in place, and what push
// and shard.apply do per message that is the same for every message of
// a packet (the latency run, the repair flag, the counters) done once for
// the packet.
func (h *Handler) routeInline(s *shard, p *moldudp64.Packet, skip int, rxTime int64) {
	// Start loading the order slots that the packet's deletes,
	// executes, cancels and replaces will read, and their books, all at
	// once, so that their misses overlap instead of following one
	// another.
	s.books.PrefetchBlocks(p.Blocks, p.Messages())
	it := p.Iter()
	it.Skip(skip)
	applied := 0
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		h.nDelivered++
		if !h.admit(msg) {
			if h.withdrawn != 0 {
				h.withdraw(h.takeWithdrawn(), it.Seq())
			}
			continue
		}
		if stageTiming {
			s.applyOne(msg, it.Seq(), rxTime) // timed
		} else {
			// applyOne without its timing, by hand: it does not
			// inline, and a call per message costs about 120
			// instructions a packet.
			loc, changed := s.books.Apply(itch.Msg(msg))
			s.pub.Applied(loc, changed, it.Seq(), rxTime)
		}
		applied++
	}
	if applied > 0 {
		h.routed += uint64(applied)
		s.addRun(applied, rxTime, h.pickup, h.arb.Repairing())
	}
}

// routeMsg sends one message to the shard owning its locate, through the
// symbol filter; a System Event to every shard, and a Stock Directory's
// claim too (routeDirectory).
//
// Only a System Event changes every shard's books (book.Books.Apply: its
// event goes into every snapshot, whatever its locate, which ITCH makes
// 0). Any other message of locate 0 (an MWCB message, which the books keep
// nothing of, or bad input: a Stock Directory, an order or a type unknown
// at locate 0, a message too short for its type) goes to the shard of
// locate 0 alone, so that it is applied and counted (book.Stats) once, as
// in run to completion, not once per shard.
func (h *Handler) routeMsg(msg []byte, seq uint64, rxTime int64) {
	if !h.admit(msg) {
		if h.withdrawn != 0 {
			h.withdraw(h.takeWithdrawn(), seq)
		}
		return
	}
	// 'R' and 'S' differ in their lowest bit only: one test a message
	// for both, as for 'S' alone before.
	if msg[0]|1 == itch.TypeSystemEvent && h.routeMarketWide(msg, seq, rxTime) {
		return
	}
	loc := uint16(msg[1])<<8 | uint16(msg[2])
	h.push(h.shards[h.shardOf[loc]], msg, seq, rxTime)
}

// The test in routeMsg takes a Stock Directory for a System Event's kin.
var _ = [1]struct{}{}[itch.TypeStockDirectory|1-itch.TypeSystemEvent]

// routeMarketWide routes a System Event or a Stock Directory message (msg
// is of type 'S' or 'R') that every shard must see, and reports whether it
// did; one too short for its type goes the way of any message. A System
// Event goes to every shard: whole to its locate's shard, cut to its
// type's length to the others, so that one longer than its type is
// counted Long (book.Stats) once, as in run to completion, not once per
// shard. One whose event code ITCH 5.0 does not define goes the way of
// any message too: every shard's books would keep their last event and
// count it (BadState), so its locate's shard alone counts it, once. A
// Stock Directory goes to its locate's shard, and its claim
// (routeDirectory) to the others.
func (h *Handler) routeMarketWide(msg []byte, seq uint64, rxTime int64) bool {
	loc := uint16(msg[1])<<8 | uint16(msg[2])
	if msg[0] == itch.TypeSystemEvent {
		if len(msg) < itch.SystemEventLen || !book.SystemEventDefined(msg[itch.HeaderLen]) {
			return false
		}
		for i, s := range h.shards {
			if i == int(h.shardOf[loc]) {
				h.push(s, msg, seq, rxTime)
			} else {
				h.push(s, msg[:itch.SystemEventLen], seq, rxTime)
			}
		}
		return true
	}
	if len(msg) < itch.StockDirectoryLen || len(h.shards) == 1 {
		return false
	}
	own := h.shards[h.shardOf[loc]]
	h.push(own, msg, seq, rxTime)
	h.claimElsewhere(own, loc, itch.StockDirectory(msg).Stock(), seq)
	return true
}

// claimElsewhere tells every shard but own, in order with its messages,
// that locate loc was given symbol sym (the zero Symbol: withdrawn), so
// that each shard's books know which locate holds each symbol as run to
// completion's one book.Books does (book.Books.Claim): a locate of theirs
// given a symbol another shard's locate was given first is a duplicate
// (book.Book.Duplicate), never published, whichever shard publishes
// first. A Stock Directory message, not a message per order: rare.
func (h *Handler) claimElsewhere(own *shard, loc uint16, sym itch.Symbol, seq uint64) {
	for _, s := range h.shards {
		if s == own {
			continue
		}
		e := h.reserve(s)
		e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, 0, h.pickup, markerClaim, 11, false
		e.data[0], e.data[1], e.data[2] = itch.TypeStockDirectory, byte(loc>>8), byte(loc)
		copy(e.data[3:11], sym[:])
		s.ring.Commit(1)
	}
}

// withdraw has the shard owning locate loc end its book, in order with the
// messages: the Stock Directory message of sequence number seq gave the
// locate to a symbol the filter leaves out (admission.withdrawn). Rare.
func (h *Handler) withdraw(loc uint16, seq uint64) {
	s := h.shards[h.shardOf[loc]]
	if s.ring == nil {
		s.withdraw(loc)
		s.pending = true
		return
	}
	e := h.reserve(s)
	e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, 0, h.pickup, markerWithdraw, 3, false
	e.data[0], e.data[1], e.data[2] = itch.TypeStockDirectory, byte(loc>>8), byte(loc)
	s.ring.Commit(1)
	h.claimElsewhere(s, loc, itch.Symbol{}, seq)
}

// push copies one message into a shard's ring (in run to completion:
// applies it), waiting (never dropping) when
// the shard is behind; the ring counts each wait once as back-pressure.
func (h *Handler) push(s *shard, msg []byte, seq uint64, rxTime int64) {
	repaired := h.arb.Repairing()
	if s.ring == nil {
		s.apply(msg, seq, rxTime, h.pickup, repaired)
		h.routed++
		return
	}
	e := h.reserve(s)
	// A message longer than the slot keeps its first maxMsgLen bytes:
	// still longer than its type's fields (maxMsgLen).
	e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, rxTime, h.pickup, 0, uint8(copy(e.data[:], msg)), repaired
	s.ring.Commit(1)
	h.routed++
}

// pushMarker puts a control slot (not a message) into a shard's ring.
func (h *Handler) pushMarker(s *shard, kind uint8, seq uint64) {
	switch kind {
	case markerStale, markerRebuild:
		h.flagged = true
		h.flagMarks++
	case markerWhole:
		h.flagged = false
	}
	if s.ring == nil {
		s.mark(kind)
		return
	}
	e := h.reserve(s)
	e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, 0, h.pickup, kind, 0, false
	s.ring.Commit(1)
}

// reserve returns a free slot of s's ring, waiting while it is full:
// never dropping. ReserveWait takes a free slot without counting anything
// and counts a wait once, however long; a Reserve before it, or a wait cut
// into timed slices, would count each wait two or more times.
func (h *Handler) reserve(s *shard) *slot {
	for {
		// Returns nothing only once the ring is closed, which Stop does
		// after this thread ended.
		if v := s.ring.ReserveWait(1, 0); len(v) == 1 {
			return &v[0]
		}
	}
}
