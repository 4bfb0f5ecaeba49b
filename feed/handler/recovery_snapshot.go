package handler

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the recovery's snapshot side: a fetch started with
// delivery frozen (startSnapshot), the retry's backoff, a snapshot refused
// or loaded (loadSnapshot) and delivery resumed, and what a snapshot behind
// the feed missed (lag).

// startSnapshot freezes delivery (the live feed is spilled) and fetches a
// snapshot on a goroutine; atGap: in the arbiter's declaring a gap at now
// (gap), else between batches (poll).
func (r *recovery) startSnapshot(now int64, atGap bool) {
	r.wantSnap = false
	r.fetching, r.tried = true, true
	if r.client != nil {
		r.client.Cancel()
	}
	r.dropAhead() // delivery goes on from the snapshot's number
	// The freeze gives the range being re-requested up (the arbiter's
	// RecoveriesAbandoned): not filled. Kept as the range recovered, it
	// was recorded repaired by re-request (an event, a recovery time) at
	// the next missing range once a failed snapshot resumed delivery, the
	// same range found missing again.
	r.cur = moldudp64.Range{}
	if r.started == 0 {
		r.started = now
	}
	r.snapGaps = uint64(len(r.open))
	r.snapFrom = r.h.arb.Next()
	r.snapDropped = r.h.arb.Stats.SpillDropped
	r.h.arb.Freeze()
	if r.h.capFile != nil {
		// Where the live feed is spilled from: a replay freezes there.
		// After the empty poll since the batch before (the round's, when
		// between rounds): a replay ticks there first.
		r.h.capFile.Freeze(now, r.snapFrom, atGap, r.h.drainedAt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if r.nLeft > 0 {
		left := make([]moldudp64.Session, 0, sessionsKept)
		for i := max(r.nLeft-sessionsKept, 0); i < r.nLeft; i++ {
			left = append(left, r.left[i%sessionsKept])
		}
		ctx = context.WithValue(ctx, linesLeftKey{}, left)
	}
	r.makeSnapDone()
	fetch, session, gen, done := r.cfg.Snapshot, r.h.arb.Session(), r.gen, r.snapDone
	if r.snapBuf == nil && r.h.capFile != nil {
		// The last one's, once the capture has written it.
		r.snapBuf = r.keepSnapBuf(r.h.capFile.SnapshotBuffer())
	}
	if r.snapBuf == nil {
		r.snapBuf = make([]byte, 0, 1<<20)
	}
	buf := r.snapBuf[:0]
	r.snapBuf = nil // the fetch's until loadSnapshot
	r.h.log.Info().Str("session", session.String()).Msg("recovery: fetching snapshot")
	go func() {
		t0 := time.Now()
		res := snapResult{gen: gen}
		res.msgs = buf
		res.snap, res.err = fetch(ctx, session, func(msg []byte) error {
			if len(msg) > 0xFFFF {
				return errors.New("snapshot message longer than 65535 bytes")
			}
			res.msgs = binary.BigEndian.AppendUint16(res.msgs, uint16(len(msg)))
			res.msgs = append(res.msgs, msg...)
			res.n++
			if len(msg) >= itch.Length('S') && msg[0] == 'S' && msg[11] == 'C' {
				res.ended = true
			}
			return nil
		})
		if res.err == nil && res.snap.Next == 0 {
			res.err = errors.New("snapshot names sequence number 0")
		}
		res.took = time.Since(t0)
		snapDoneSignal(done)
		r.snapRes <- res
	}()
}

// retryIn counts one more consecutive failed attempt and returns the wait
// before the next: SnapshotRetry after the first, doubled after each
// further one, at most SnapshotRetryMax (at least SnapshotRetry). A
// server persistently serving a snapshot refused, or down, is not asked
// for a whole snapshot every SnapshotRetry for ever, delivery frozen
// during each download.
func (r *recovery) retryIn() time.Duration {
	r.snapFails++
	d := doubled(r.cfg.SnapshotRetry, r.cfg.SnapshotRetryMax, r.snapFails)
	r.snapWait = d
	r.stats.SnapshotRetryFailures, r.stats.SnapshotRetryIn = r.snapFails, d
	return d
}

// doubled returns base after the first of n failures in a row, twice as
// long after each further one, at most hi (at least base).
func doubled(base, hi time.Duration, n uint64) time.Duration {
	hi = max(hi, base)
	d := base
	for i := uint64(1); i < n && d < hi; i++ {
		if d > hi/2 {
			return hi // no overflow, whatever the cap
		}
		d *= 2
	}
	return min(d, hi)
}

// resetRetry restarts the backoff: the next failure waits SnapshotRetry.
// It ends a run of refusals at login too (refusals): the next is the
// first of another, logged at once.
func (r *recovery) resetRetry() {
	r.snapFails, r.snapWait, r.lagPending = 0, r.cfg.SnapshotRetry, false
	r.refusals = 0
	r.stats.SnapshotRetryFailures, r.stats.SnapshotRetryIn = 0, 0
}

// retrySnapshot has a snapshot asked for again after the backoff's wait
// (retryIn), and returns it.
func (r *recovery) retrySnapshot(now int64) time.Duration {
	d := r.retryIn()
	r.wantSnap = true
	r.snapAt = now + int64(d)
	return d
}

// refuseSnapshot counts and logs a snapshot of another numbering (next:
// its sequence number; ahead: how far the lines are), not loaded: delivery
// resumes, the books stay flagged, and a snapshot is asked for again after
// the backoff's wait (retrySnapshot).
func (r *recovery) refuseSnapshot(now int64, next, ahead uint64, why, msg string) {
	r.stats.SnapshotFailures++
	r.stats.LastSnapshotError = why
	d := r.retrySnapshot(now)
	r.h.log.Warn().Uint64("next_seq", next).Uint64("lines_at", ahead).Dur("retry_in", d).Uint64("attempt", r.snapFails).Msg(msg)
	r.resume(now)
}

// resume resumes delivery without a snapshot loaded (Arbiter.Unfreeze(0)),
// said in the capture (a replay resumes there too).
func (r *recovery) resume(now int64) {
	r.h.arb.Unfreeze(0)
	if r.h.capFile != nil {
		r.h.capFile.Resumed(now)
	}
}

// warnUnsequenced logs once a process, after a fetch, that the GLIMPSE
// server sent Unsequenced Data packets (RecoveryConfig.SnapshotStats):
// GLIMPSE carries every message as Sequenced Data, so a server sending
// these is not behaving as GLIMPSE does (another service at the address,
// a server's change), which the client ignores and counts
// (recovery_snapshot_unsequenced_packets_total).
func (r *recovery) warnUnsequenced() {
	gs := r.cfg.SnapshotStats
	if gs == nil || r.unseqWarned {
		return
	}
	if n := gs.UnsequencedPacket.Load(); n > 0 {
		r.unseqWarned = true
		r.h.log.Warn().Uint64("unsequenced_packets", n).
			Msg("recovery: the GLIMPSE server sent SoupBinTCP Unsequenced Data packets during a snapshot, which GLIMPSE does not send: ignored, the snapshot goes on; counted in recovery_snapshot_unsequenced_packets_total (logged once)")
	}
}

// keepSnapBuf returns buf emptied for the next fetch, or nil (the next
// fetch makes a new one) when its capacity is above snapKeep.
func (r *recovery) keepSnapBuf(buf []byte) []byte {
	if int64(cap(buf)) > r.snapKeep {
		r.h.log.Info().Int("buffer_bytes", cap(buf)).Int64("keep_bytes", r.snapKeep).
			Msg("recovery: snapshot download buffer released: larger than a snapshot of the books needs")
		return nil
	}
	return buf[:0]
}

// loadSnapshot replaces the books with the snapshot and resumes delivery
// from the snapshot's sequence number on.
func (r *recovery) loadSnapshot(res snapResult, now int64) {
	r.warnUnsequenced()
	a := r.h.arb
	// The buffer is free for the next fetch once the books are rebuilt
	// from it: nothing below reads it after rebuild, and only a gap
	// declared by the Unfreeze after it starts the next fetch (or a poll
	// after this returns). A snapshot held for the lines (r.early) keeps
	// it: no fetch starts while it is held (fetching).
	r.snapBuf = r.keepSnapBuf(res.msgs)
	if res.gen != r.gen {
		// Fetched for a session that has been replaced since: its books
		// and sequence numbers are not the new session's. The arbiter
		// follows the new session already (its lock unfroze delivery);
		// sessionChanged asked for a new snapshot.
		r.stats.SnapshotsDiscarded++
		r.h.log.Warn().Err(res.err).Uint64("next_seq", res.snap.Next).
			Msg("recovery: snapshot of a replaced session discarded")
		return
	}
	if res.err != nil {
		if errors.Is(res.err, ErrSnapshotSession) {
			r.stats.SnapshotsWrongSession++
		}
		r.stats.SnapshotFailures++
		r.stats.LastSnapshotError = res.err.Error()
		var d time.Duration
		if errors.Is(res.err, ErrSnapshotSession) {
			// Refused at the server's Login Accepted for a session the
			// lines left: nothing was downloaded (a login's round
			// trip), and the server's rollover to the lines' session is
			// what makes the books whole. Not a failed attempt for the
			// backoff: asked again every SnapshotRetry, not up to
			// SnapshotRetryMax after it. A refusal by the caller's own
			// glimpse.Config.CheckSession (also ErrSessionRefused) says
			// nothing of a rollover: it backs off as a rejected login.
			d = r.cfg.SnapshotRetry
			r.wantSnap = true
			r.snapAt = now + int64(d)
			// A server that stays on the old session all day would log
			// a line every SnapshotRetry (720 an hour): the first of a
			// run, then once a minute, with how many so far.
			r.refusals++
			if r.refusals == 1 || now-r.refusalLogged >= int64(time.Minute) {
				r.refusalLogged = now
				r.h.log.Warn().Err(res.err).Dur("retry_in", d).Uint64("refused", r.refusals).
					Msg("recovery: snapshot server on a session the lines left; asked again, books stay flagged (logged once a minute)")
			}
			r.resume(now)
			return
		}
		r.refusals = 0
		d = r.retrySnapshot(now)
		r.h.log.Warn().Err(res.err).Dur("retry_in", d).Uint64("attempt", r.snapFails).Msg("recovery: snapshot failed; books stay flagged")
		r.resume(now)
		return
	}
	r.refusals = 0
	if r.pendingWhole && len(r.open) == 0 && r.snapFrom > 1 && res.snap.Next < r.snapFrom {
		// A new session (or restarted sequence) delivered from its first
		// message with nothing declared up to where delivery froze for
		// this snapshot (the rule poll marks whole by), and the snapshot
		// behind it: loaded, it would take back what the books had,
		// which no line sends again (declared, the whole books flagged,
		// and the next snapshot of a server lagging as much the same,
		// for as long as it lags). Not loaded: the books are whole.
		r.wantSnap, r.pendingWhole = false, false
		r.resetRetry()
		r.h.log.Info().Uint64("next_seq", res.snap.Next).Uint64("fetched_at", r.snapFrom).
			Msg("recovery: snapshot behind what the new session delivered from its first message; not loaded, books whole")
		r.resume(now)
		r.h.markWhole()
		return
	}
	if ahead := max(a.Next(), a.maxHigh()); res.ended && ahead > res.snap.Next {
		// The snapshot's day ended (End of Messages) before its
		// sequence number, and the lines brought a message at or past
		// it (a line's high is the number it would send next): not its
		// numbering. A GLIMPSE server still on an earlier session (the
		// previous day's) whose end is behind the lines; on a first
		// join its session's name tells nothing (GLIMPSE.md). Not
		// loaded.
		r.refuseSnapshot(now, res.snap.Next, ahead,
			fmt.Sprintf("snapshot of a day that ended (System Event 'C') before sequence number %d, the lines past it at %d: another numbering, not loaded", res.snap.Next, ahead),
			"recovery: snapshot of a day that ended, behind the lines (another numbering: a snapshot server on an earlier session); not loaded, books stay flagged")
		return
	}
	if ahead := max(a.Next(), a.maxHigh()); res.snap.Next > ahead && res.snap.Next-ahead > a.cfg.MaxJump {
		// (Not ahead+MaxJump: it wraps past 2^64 for lines within
		// MaxJump of it, and every snapshot was refused.)
		// Further ahead of everything the lines brought than a jump the
		// arbiter takes at face value: another numbering of the session
		// (a server that did not restart with the publisher, or that is
		// a session ahead), not a state of this feed. Not loaded.
		r.refuseSnapshot(now, res.snap.Next, ahead,
			fmt.Sprintf("snapshot at sequence number %d, more than %d past the lines' %d: another numbering, not loaded", res.snap.Next, a.cfg.MaxJump, ahead),
			"recovery: snapshot far ahead of the lines (another numbering of the session); not loaded, books stay flagged")
		return
	}
	if ahead := max(a.Next(), a.maxHigh()); res.snap.Next > ahead {
		// Ahead of everything the lines brought. A snapshot shows a
		// point of the past: by the time it is downloaded the lines of
		// its feed have normally passed it, or reach it within a line's
		// lag. Another numbering (a snapshot server still on the
		// session the feed left, or that did not restart with the
		// publisher) is not reached: loaded, its books would be flagged
		// whole and every live message below its number dropped as a
		// duplicate, silently. It waits, delivery frozen, for the
		// lines to reach it, at most LineTimeout.
		if !res.waited {
			held := res // on the heap only when held
			held.waited = true
			r.snapBuf = nil // held's until it is loaded or refused
			r.early, r.earlyAt, r.fetching = &held, now, true
			r.h.log.Info().Uint64("next_seq", res.snap.Next).Uint64("lines_at", ahead).
				Msg("recovery: snapshot ahead of the lines; loaded once they reach it")
			return
		}
		r.refuseSnapshot(now, res.snap.Next, ahead,
			fmt.Sprintf("snapshot at sequence number %d, past the lines' %d after waiting %v for them: another numbering, not loaded", res.snap.Next, ahead, a.cfg.LineTimeout),
			"recovery: the lines did not reach the snapshot (another numbering of the session); not loaded, books stay flagged")
		return
	}
	r.h.rebuild(res.msgs, res.snap.Next)
	if r.h.capFile != nil {
		// Its messages, then where it was loaded: a replay rebuilds the
		// books from them there. The capture's writer writes them from
		// the buffer (the receive thread does not wait for the disk):
		// kept, it is the capture's until SnapshotBuffer gives it back.
		if r.h.capFile.SnapshotMessages(res.msgs, now) {
			r.snapBuf = nil
		}
		r.h.capFile.Snapshot(now, res.snap.Next, res.n)
	}
	// Gaps before the snapshot's sequence number are repaired by it. None
	// stays open: delivery resumes at that number (Unfreeze below), so what
	// a gap held past it is missing in the arbiter again, and re-requested
	// or declared (and opened again) like any other range.
	// Each repair's time runs from its range's detection, in the events
	// and in the histogram alike: from the start of the recovery (r.started),
	// the histogram left out a failed attempt and the wait before this
	// one (started anew at each fetch), and had one time per snapshot
	// whatever it repaired.
	end := r.snapFrom
	for i, g := range r.open {
		if g.End() <= res.snap.Next {
			r.stats.RecoveredBySnapshot++
			r.hist.Record(now - r.openAt[i])
			r.event(RecoveryEvent{Range: g, By: "snapshot", Took: time.Duration(now - r.openAt[i]), NextSeq: res.snap.Next})
		}
		end = max(end, g.End())
	}
	// The snapshot is behind the feed when it ends before what the books
	// had been brought to when the fetch began (delivered, or declared:
	// an open range ends there at most), not only before an open range's
	// end: the backoff let delivery go on past the gaps meanwhile, so a
	// server lagging the feed by less than the wait covered every open
	// range and was taken as whole (the backoff restarted), and what it
	// missed, declared again, was fetched at once, back to back, for ever.
	// If what it misses is declared again, the load was a failed attempt
	// (lagPending) and the next snapshot waits (the server may lag still);
	// a snapshot for a later, unrelated gap does not wait.
	lagging := res.snap.Next < end
	if lagging {
		r.lag(res.snap.Next, end, now, r.cfg.SnapshotRetry)
	}
	r.open, r.openAt = r.open[:0], r.openAt[:0]
	r.wantSnap = false // a gap declared during the fetch is covered, or missing again
	// Delivery resumes at the snapshot's number: a range missing after it
	// is found again, whether it is handed to missing (counted there) or
	// declared at once (counted in gap), not covered by one handed before.
	r.handed = moldudp64.Range{}
	r.stats.Snapshots++
	r.stats.SnapshotMessages += res.n
	r.stats.LastSnapshotNext = res.snap.Next
	r.h.log.Info().Uint64("messages", res.n).Uint64("next_seq", res.snap.Next).Dur("took", res.took).
		Bool("behind", lagging).Uint64("fetched_at", r.snapFrom).Str("snapshot_session", res.snap.Session).Str("feed_session", a.Session().String()).
		Msg("recovery: snapshot loaded")
	a.Unfreeze(res.snap.Next)
	if dropped := a.Stats.SpillDropped - r.snapDropped; dropped > 0 && a.pend.n > 0 && a.pend.front().seq > a.next {
		// The spill filled while the snapshot downloaded: the oldest
		// packets held were dropped, and with them what follows the
		// snapshot's number. The hole is found missing, declared (or
		// re-requested) like any other; its snapshot waits the backoff's
		// wait (a failed attempt: SnapshotRetry, doubled per consecutive
		// one). At once, on a feed as busy, it overflowed the same way,
		// and so on for ever, delivery frozen throughout.
		hole := moldudp64.Range{First: a.next, Count: a.pend.front().seq - a.next}
		r.stats.SnapshotSpillOverflows++
		d := r.retryIn()
		r.lag(hole.First, hole.End(), now, d)
		r.h.log.Error().Uint64("dropped", dropped).Int("spill", a.cfg.Spill).Dur("took", res.took).
			Uint64("hole_first", hole.First).Uint64("hole_count", hole.Count).Dur("retry_in", d).Uint64("attempt", r.snapFails).
			Msg("recovery: the spill overflowed while the snapshot downloaded (raise recovery.spill); the hole after it is re-requested if a server can, else declared, books flagged")
	} else if lagging {
		// Counted (retryIn) only if what it missed is declared again
		// (gap); re-requested, the recovery ends with nothing open and
		// the backoff restarts.
		r.lagPending, r.lagAt = true, now
	} else {
		r.resetRetry()
	}
	r.started = 0
	r.pendingWhole = false
	r.h.markWhole()
}

// lag records [first, end) as missed by the snapshot just loaded (the
// server lagged the feed, or the spill overflowed while it downloaded): a
// snapshot for a range overlapping it waits wait from now (SnapshotRetry;
// the backoff's after a spill overflow).
func (r *recovery) lag(first, end uint64, now int64, wait time.Duration) {
	if r.lagUntil <= now {
		r.lagged = moldudp64.Range{}
	}
	if r.lagged.Count > 0 {
		first, end = min(first, r.lagged.First), max(end, r.lagged.End())
	}
	r.lagged = moldudp64.Range{First: first, Count: end - first}
	r.lagUntil = now + int64(wait)
}
