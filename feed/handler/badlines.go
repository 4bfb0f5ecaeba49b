package handler

import "time"

// badLineLogEvery is how often line datagrams dropped as bad are logged at
// most: a sender flooding a group with forged packets would otherwise
// write a line per packet.
const badLineLogEvery = time.Minute

// badLineState is what logBadLines last logged (receive thread, under
// h.mu): each line's count of datagrams dropped as bad then, and when
// (monotonic; 0: never).
type badLineState struct {
	logged   [MaxLines]uint64
	loggedAt int64
}

// lineBad is the datagrams of a line dropped as bad input: rejected by
// the MoldUDP64 parser, jumping more than MaxJump ahead (suspect), held
// ahead and contradicted by the line that brought it (contradicted), or
// an End of Session behind what was received (stale). Not another session's
// packets, nor those of a sequence before its restart: a session change
// and a restart bring those, and log themselves.
func lineBad(l *LineStats) uint64 {
	return l.Malformed + l.Suspect + l.Contradicted + l.StaleEndOfSession
}

// logBadLines logs, for each line that dropped datagrams as bad since the
// last such log, how many and their totals by kind: the first at once,
// then at most once every badLineLogEvery. A forged or corrupt packet
// (one claiming a sequence number 2^40 ahead) was dropped and counted
// (feedhandler_line_suspect_total) with no log line at all, and the stats
// line does not carry it. Called by copyStats, off the per-packet path; it
// allocates nothing.
func (h *Handler) logBadLines(now int64) {
	s := &h.badLines
	if s.loggedAt != 0 && now-s.loggedAt < int64(badLineLogEvery) && now >= s.loggedAt {
		return
	}
	logged := false
	for i := 0; i < len(h.cfg.Receive.Lines) && i < MaxLines; i++ {
		l := &h.arbCopy.Lines[i]
		bad := lineBad(l)
		if bad == s.logged[i] {
			continue
		}
		ev := h.log.Warn().Str("line", h.cfg.Receive.Lines[i].Name).Uint64("dropped", bad-s.logged[i]).
			Uint64("malformed", l.Malformed).Uint64("suspect", l.Suspect).Uint64("contradicted", l.Contradicted).Uint64("stale_end_of_session", l.StaleEndOfSession).
			Uint64("next", h.arb.Next()).Uint64("max_jump", h.arb.cfg.MaxJump)
		if l.Suspect != 0 {
			ev = ev.Uint64("last_suspect_end", h.arb.suspectNext)
		}
		ev.Msg("line datagrams dropped as bad: malformed (MoldUDP64 parser), suspect (a sequence number jumping more than max_jump ahead: a corrupt or forged packet, never applied), contradicted (held ahead, and the line went on below it: a corrupt sequence number within max_jump, never applied) or a stale End of Session (totals by kind; logged at most once a minute)")
		s.logged[i], logged = bad, true
	}
	if logged {
		s.loggedAt = now
	}
}
