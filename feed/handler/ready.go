package handler

import (
	"fmt"
	"time"

	"github.com/marketfeed/feedhandler/internal/clock"
)

// StaleBooks returns how many books are flagged PossiblyStale.
func (s *Stats) StaleBooks() int {
	n := 0
	for _, sh := range s.Shards {
		if sh.Stale {
			n += sh.Books
		} else {
			n += int(sh.Book.Incomplete) // an order dropped for want of capacity
		}
	}
	return n
}

// UnrecoveredGaps returns the gaps whose messages the books still miss:
// with a recovery source, the declared gaps not repaired yet; without one,
// every declared gap (nothing repairs it).
func (s *Stats) UnrecoveredGaps() uint64 {
	if s.Recovery.State == "" || s.Recovery.State == StateOff {
		return s.Arbiter.Gaps
	}
	return s.Recovery.Open
}

// Ready tells a load balancer or supervisor whether the books can be used:
// false, with the reason, until a line has delivered a packet, while every
// line has been silent for SilentNotReady before the session's end, and
// while any book is flagged stale, a gap is unrecovered, a recovery (re-request
// or snapshot) is in progress, or the lines went back behind what was
// delivered (ArbiterStats.Behind: a sequence restart, with HoldRestart).
func (s *Stats) Ready() (bool, string) {
	switch s.readiness() {
	case notReceived:
		return false, "no packet received yet"
	case notSilent:
		return false, fmt.Sprintf("every line silent for %v (no packet, not even a heartbeat): the feed's path is down; books possibly behind",
			time.Duration(s.silence(monoNow())).Round(time.Millisecond))
	case notEndedJoin:
		return false, fmt.Sprintf("joined the session after its end: its %d messages not fetched (no snapshot source, and late_join off or no re-request server); no books until the next session",
			s.Arbiter.EndedJoin)
	case notBehind:
		return false, "every line went back to sequence numbers already delivered (a restart under the same session name): nothing new is delivered"
	case notSnapshot:
		return false, "recovering: loading a snapshot; books possibly stale"
	case notGaps:
		return false, fmt.Sprintf("%d unrecovered gap(s) (%d messages missing); books possibly stale", s.UnrecoveredGaps(), s.Arbiter.GapMessages)
	case notStale:
		return false, fmt.Sprintf("%d book(s) flagged possibly stale", s.StaleBooks())
	case notRerequesting:
		return false, "recovering: re-requesting messages missing on every line (books held back, not wrong)"
	}
	return true, "receiving"
}

// readiness is why the books can or cannot be used: Ready without the
// reason's text, so a metrics scrape allocates nothing.
type readiness uint8

const (
	readyOK readiness = iota
	notReceived
	notSnapshot
	notGaps
	notStale
	notRerequesting
	notBehind
	notSilent
	notEndedJoin
)

// SilentNotReady is how long every line may be silent before the session's
// end while the handler stays ready. MoldUDP64 sends a heartbeat every
// second while idle, so this is a path lost (links down, a switch, IGMP),
// not a quiet market; the books may be missing what the exchange sent
// meanwhile. The FeedhandlerLineSilent alert uses the same 5 s per line.
const SilentNotReady = 5 * time.Second

// silence is how long the line heard from last has been silent, as of
// now (monoNow).
func (s *Stats) silence(now int64) int64 {
	least := s.lineSilence(0, now)
	for l := 1; l < MaxLines; l++ {
		least = min(least, s.lineSilence(l, now))
	}
	return least
}

// lineSilence is how long line l has been silent as of now (monoNow):
// since its last packet, or since Start for a line never heard from.
func (s *Stats) lineSilence(l int, now int64) int64 {
	since := s.lastMono[l]
	if since == 0 {
		since = s.startMono
	}
	return now - since
}

// monoNow reads the monotonic clock (clock.Mono): never 0, which stands
// for never.
func monoNow() int64 { return clock.Mono(time.Now()) }

func (s *Stats) readiness() readiness {
	received := false
	for _, l := range s.Arbiter.Lines {
		received = received || l.Packets > 0
	}
	switch {
	case !received:
		return notReceived
	case !s.Ended && s.startMono != 0 && s.silence(monoNow()) > int64(SilentNotReady):
		return notSilent
	case s.Arbiter.EndedJoin > 0 && s.Arbiter.Delivered == 0:
		return notEndedJoin
	case s.Arbiter.Behind:
		return notBehind
	case s.Recovery.State == StateSnapshot:
		return notSnapshot
	case s.UnrecoveredGaps() > 0:
		return notGaps
	case s.StaleBooks() > 0:
		return notStale
	case s.Recovery.State == StateRerequesting:
		return notRerequesting
	}
	return readyOK
}

// Ready is Stats().Ready() without copying the latency histograms. It
// reuses one Stats (/readyz is probed all day): ready, it allocates
// nothing.
func (h *Handler) Ready() (bool, string) {
	h.readyMu.Lock()
	defer h.readyMu.Unlock()
	h.statsLightInto(&h.readySt)
	return h.readySt.Ready()
}

// Alive reports whether the receive thread is still running (false once it
// exited: Stop, or the receiver closed).
func (h *Handler) Alive() bool {
	select {
	case <-h.rxDone:
		return false
	default:
		return true
	}
}
