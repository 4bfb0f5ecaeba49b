package handler

import "fmt"

// StaleBooks returns how many books are flagged PossiblyStale.
func (s *Stats) StaleBooks() int {
	n := 0
	for _, sh := range s.Shards {
		if sh.Stale {
			n += sh.Books
		}
	}
	return n
}

// UnrecoveredGaps returns the gaps whose messages the books still miss.
// Nothing recovers a gap yet, so every declared gap counts; gap recovery
// subtracts the ranges it filled.
func (s *Stats) UnrecoveredGaps() uint64 { return s.Arbiter.Gaps }

// Ready tells a load balancer or supervisor whether the books can be used:
// false, with the reason, until a line has delivered a packet, and while
// any book is flagged stale or a gap is unrecovered. Gap recovery hooks in
// by clearing the stale flag (a marker through the shard rings, see
// Publisher.SetStale) and counting recovered gaps in UnrecoveredGaps; while
// it is in progress it adds its own reason here.
func (s *Stats) Ready() (bool, string) {
	received := false
	for _, l := range s.Arbiter.Lines {
		received = received || l.Packets > 0
	}
	switch {
	case !received:
		return false, "no packet received yet"
	case s.UnrecoveredGaps() > 0:
		return false, fmt.Sprintf("%d unrecovered gap(s) (%d messages missing); books possibly stale", s.UnrecoveredGaps(), s.Arbiter.GapMessages)
	}
	if n := s.StaleBooks(); n > 0 {
		return false, fmt.Sprintf("%d book(s) flagged possibly stale", n)
	}
	return true, "receiving"
}

// Ready is Stats().Ready() without copying the latency histograms.
func (h *Handler) Ready() (bool, string) {
	st := h.statsLight()
	return st.Ready()
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
