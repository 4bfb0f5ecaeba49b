package handler

import (
	"fmt"
	"net"
	"time"
)

// allSilentAfter is how long every line must be silent before the
// handler says that nothing reaches it: SilentNotReady, when /readyz
// turns not ready for it too (MoldUDP64 sends a heartbeat a second on an
// idle feed: not a quiet market). A longer arbitration.line_timeout takes
// its place.
const allSilentAfter = SilentNotReady

// silenceState is what noteSilence last said of the lines (receive
// thread, under h.mu), and since when (the last packet before).
type silenceState struct {
	line      [MaxLines]bool // silent while another line delivered
	lineSince [MaxLines]int64
	// seenAt is, for a line not (yet) silent, the newest packet of any
	// line when noteSilence first found the line line_timeout behind it
	// (0: not behind): the line is silent only once another line has
	// delivered again since.
	seenAt   [MaxLines]int64
	all      bool // every line silent
	allSince int64
	// never: no packet on any line allSilentAfter after the start, logged.
	never bool
	// stale: silenceFlag flagged the books possibly stale, the silence
	// since allSince (the last packet before it); marks is h.flagMarks
	// once it did.
	stale bool
	marks uint64
}

// noteSilence logs, once each time, a line that went silent while another
// line still delivered packets line_timeout after its last one, and again
// after that (its link, NIC or path is down: the arbiter no longer waits
// for it, and the other line carries the feed alone), every line going
// silent for allSilentAfter (nothing reaches the host), and a line
// receiving again. An idle feed is not a silent line: both lines carry the
// same heartbeats. Nor is a line whose copy of a packet is in flight when
// the other's arrives after both were idle for line_timeout (both links
// were down, the exchange paused, heartbeats a line_timeout apart): the
// other line's packet after it is the one that tells. Nothing is said
// after the session's end. It runs in copyStats, on the receive thread,
// with h.lastMono (and h.lastPkt, the same moments in Unix ns for the log)
// just refreshed; now is monoNow.
func (h *Handler) noteSilence(now int64) {
	n := min(len(h.cfg.Receive.Lines), MaxLines)
	var latest, latestUnix int64
	for i := range n {
		if h.lastMono[i] > latest {
			latest, latestUnix = h.lastMono[i], h.lastPkt[i]
		}
	}
	if latest == 0 && !h.endedCopy && !h.silence.never && now-h.startMono >= max(int64(h.arb.cfg.LineTimeout), int64(allSilentAfter)) {
		h.silence.never = true
		h.nothingReceived(now)
	}
	if latest == 0 || h.endedCopy {
		return
	}
	timeout := int64(h.arb.cfg.LineTimeout)
	s := &h.silence
	for i := range n {
		last, lastUnix := h.lastMono[i], h.lastPkt[i]
		if last == 0 {
			last, lastUnix = h.startMono, h.started
		}
		silent := latest-last >= timeout
		if silent && !s.line[i] && (s.seenAt[i] == 0 || s.seenAt[i] == latest) {
			s.seenAt[i] = latest // its copy may be in flight: wait for another packet
			continue
		}
		s.seenAt[i] = 0
		if silent == s.line[i] {
			continue
		}
		s.line[i] = silent
		name := h.cfg.Receive.Lines[i].Name
		if silent {
			s.lineSince[i] = last
			h.log.Warn().Str("line", name).Dur("line_timeout", time.Duration(timeout)).
				Time("last_packet", time.Unix(0, lastUnix)).
				Msg("line silent while another line delivers: not waited for (its link, NIC or path may be down); the other line carries the feed alone, without redundancy")
		} else {
			h.log.Info().Str("line", name).Dur("silent_for", time.Duration(now-s.lineSince[i])).
				Msg("line receiving again")
		}
	}
	all := now-latest >= max(timeout, int64(allSilentAfter))
	if all == s.all {
		return
	}
	s.all = all
	if all {
		s.allSince = latest
		h.log.Error().Time("last_packet", time.Unix(0, latestUnix)).
			Msg("every line silent, no heartbeat either: nothing of the feed reaches this host (links, NICs, the path or the exchange)")
	} else {
		h.log.Info().Dur("silent_for", time.Duration(now-s.allSince)).Msg("receiving again after every line was silent")
	}
}

// silenceFlag flags every book possibly stale, in band as a declared gap
// does, while every line has been silent for allSilentAfter mid-session
// (noteSilence's all: after a packet, before End of Session): a feed sends
// a heartbeat a second when idle, so the path is lost, and whatever the
// exchange sent meanwhile is missing from the books. Books already flagged
// (a gap open, a catch-up, a session change) are left as they are. The
// flag is cleared once the lines are back and the arbiter has delivered
// everything they announced with nothing held, nothing being recovered
// and no marker flagging the books since its own: nothing was lost. When
// something was (a gap declared, a catch-up re-requested, a session
// changed, a snapshot loaded), that marker's own clearing takes over and
// the flag stays until the loss is repaired. It runs in copyStats, on the
// receive thread, outside the lock (a marker may wait for a shard's ring),
// never at the end of the run; nothing per message.
func (h *Handler) silenceFlag() {
	s, a := &h.silence, h.arb
	if !s.stale {
		if s.all && a.started && !a.ended && !h.flagged { // a.ended covers endedCopy (Ended, just copied)
			h.pushStaleAll()
			s.stale, s.marks = true, h.flagMarks
		}
		return
	}
	switch {
	case h.flagMarks != s.marks:
		s.stale = false // another flag took over
	case s.all && !h.endedCopy:
		// Still silent (noteSilence says nothing after the end).
	case a.pend.n == 0 && !a.recovering && !a.frozen && a.maxHigh() <= a.next:
		s.stale = false
		h.markWhole()
	}
}

// nothingReceived logs, once, that no packet of any line reached the
// handler since its start, not even a heartbeat: before, a handler whose
// interface was down, or whose groups, ports or sources were not the
// feed's, logged nothing at all (no line had delivered, so none could be
// silent), and only /readyz said "no packet received yet". Each line with
// its interface's state. Once, on the receive thread, in copyStats.
func (h *Handler) nothingReceived(now int64) {
	ev := h.log.Warn().Dur("since_start", time.Duration(now-h.startMono))
	for _, l := range h.cfg.Receive.Lines {
		state := "up"
		switch ifi, err := net.InterfaceByName(l.Interface); {
		case err != nil:
			state = err.Error()
		case ifi.Flags&net.FlagUp == 0:
			state = "DOWN: ip link set dev " + l.Interface + " up"
		case ifi.Flags&net.FlagRunning == 0:
			state = "up, no carrier"
		}
		what := fmt.Sprintf("%s:%d on %s (%s)", l.Group, l.Port, l.Interface, state)
		if l.Source.IsValid() {
			what += " from " + l.Source.String()
		}
		ev = ev.Str("line_"+l.Name, what)
	}
	ev.Msg("no packet on any line since the start, not even a heartbeat (an open session sends one a second): check that each line's interface is up, that its group, port and source are the feed's, and that the multicast reaches this host")
}
