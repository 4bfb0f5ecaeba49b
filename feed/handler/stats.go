package handler

import (
	"time"

	"github.com/marketfeed/feedhandler/internal/clock"
)

// This file holds the handler's counters: the receive thread's copy of them
// (copyStats) and Stats, StatsInto for their readers.

// copyStats publishes the receive thread's counters (and in run to
// completion the shard's) for Stats. With wait false it gives up, and
// returns false, when a reader holds a lock. It takes the lock before
// gathering anything (the receiver's Stats makes syscalls), so a failed
// attempt costs one TryLock; and when the handler's part is copied but the
// inline shard's lock is taken, the next attempt copies only the shard's.
func (h *Handler) copyStats(wait bool) bool {
	if !h.copiedOwn || wait {
		if wait {
			h.mu.Lock()
		} else if !h.mu.TryLock() {
			return false
		}
		h.rxCopy = h.recv.Stats()
		h.arb.refreshBehind()
		switch st := &h.arb.Stats; {
		case st.Restarts != h.arbCopy.Restarts:
			h.log.Error().Str("session", h.arb.Session().String()).Dur("for", h.arb.cfg.LineTimeout).
				Msg("every line went back to sequence number 1 under the same session name: a sequence restart; the restarted sequence is followed from 1, the books emptied and rebuilt as at a session change (arbitration.sequence_restart: rebuild)")
		case st.Regressions != h.arbCopy.Regressions:
			why := "arbitration.sequence_restart: hold"
			if !h.arb.cfg.HoldRestart {
				why = "not back to sequence number 1: a replay, not a restart"
			}
			h.log.Error().Str("session", h.arb.Session().String()).Dur("for", h.arb.cfg.LineTimeout).Uint64("next", h.arb.Next()).Str("held", why).
				Msg("every line went back to sequence numbers already delivered, under the same session name; nothing behind is applied, the books stay as they are until a line brings new sequence numbers")
		case st.EndedJoin != h.arbCopy.EndedJoin:
			h.log.Warn().Str("session", h.arb.Session().String()).Uint64("messages", st.EndedJoin).
				Msg("joined the session after its end (only its End of Session packets on the lines): its messages are not fetched, no snapshot source and late_join off or no re-request server; no books until the next session (docs/RECOVERY.md, Late join after the end)")
		}
		h.arbCopy = h.arb.Stats
		h.cntCopy = [5]uint64{h.routed, h.filtered, h.badMsgs, h.arb.Next(), h.rxErrors}
		h.endedCopy = h.arb.Ended()
		h.announced = h.arb.EndAnnounced()
		t := time.Now()
		now := clock.Mono(t)
		for i := range h.seenPkts {
			if p := h.arbCopy.Lines[i].Packets; p != h.seenPkts[i] {
				h.seenPkts[i], h.lastPkt[i], h.lastMono[i] = p, t.UnixNano(), now
			}
		}
		h.noteSilence(now)
		h.logBadLines(now)
		if h.rec != nil {
			h.rec.copyStats(&h.recCopy)
		}
		h.mu.Unlock()
		h.copiedOwn = true
		if !wait {
			// Not at the end (wait): the shards may have stopped.
			h.silenceFlag()
		}
	}
	if h.inline != nil && !h.inline.copyStats(wait) {
		return false
	}
	h.copiedOwn = false
	return true
}

// Stats returns a copy of the counters (refreshed by the threads every few
// tens of milliseconds).
func (h *Handler) Stats() Stats {
	var st Stats
	h.StatsInto(&st)
	return st
}

// StatsInto copies the counters and the latency histograms into dst,
// reusing dst's slices and snapshots: called again with the same dst (a
// stats logger, a metrics scrape), it allocates nothing once the slices
// have grown to size.
func (h *Handler) StatsInto(dst *Stats) {
	h.statsLightInto(dst)
	for i, s := range h.shards {
		if i == 0 {
			s.hist.Snapshot(&dst.Latency)
			s.histPath.Snapshot(&dst.PathLatency)
			s.histRep.Snapshot(&dst.RepairedLatency)
			continue
		}
		s.hist.AddTo(&dst.Latency)
		s.histPath.AddTo(&dst.PathLatency)
		s.histRep.AddTo(&dst.RepairedLatency)
	}
}

// statsLightInto is StatsInto without the latency histograms (dst's are
// left as they are).
func (h *Handler) statsLightInto(dst *Stats) {
	ranges, events, shards := dst.Recovery.OpenRanges[:0], dst.Recovery.Events[:0], dst.Shards[:0]
	h.mu.Lock()
	dst.Arbiter, dst.Receive = h.arbCopy, h.rxCopy
	dst.Routed, dst.Filtered, dst.BadMessages, dst.NextSeq, dst.ReceiveErrors = h.cntCopy[0], h.cntCopy[1], h.cntCopy[2], h.cntCopy[3], h.cntCopy[4]
	dst.Ended, dst.EndAnnounced, dst.LastPacket, dst.Started = h.endedCopy, h.announced, h.lastPkt, h.started
	dst.lastMono, dst.startMono = h.lastMono, h.startMono
	dst.LineSilent, dst.AllSilent = h.silence.line, h.silence.all
	dst.Recovery = h.recCopy
	dst.Recovery.OpenRanges = append(ranges, h.recCopy.OpenRanges...)
	dst.Recovery.Events = append(events, h.recCopy.Events...)
	if h.rec == nil {
		dst.Recovery.State = StateOff
	}
	h.mu.Unlock()
	dst.Backend = h.recv.Backend()
	dst.Mode = h.mode
	dst.ReceiveThread = h.rxThread
	dst.Shm = h.w.SlotUsage()
	if gs := h.cfg.Recovery.SnapshotStats; gs != nil {
		dst.Recovery.SnapshotClient = gs.Snapshot()
	}
	if h.capFile != nil {
		dst.Capture = h.capFile.Stats()
	}
	for _, s := range h.shards {
		shards = append(shards, s.statsCopy())
	}
	dst.Shards = shards
}
