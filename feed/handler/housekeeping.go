package handler

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/clock"
)

// This file holds the housekeeping goroutine (the gap and session logs, the
// shm heartbeat while the hot threads go round, the shm file's checks, the
// hot-path clock's log), and what a fault on the shm file does to a thread
// (shmFault, shmFailed).

// stallLimit is how long a hot thread may go without passing its stats
// point before housekeeping stops beating the shm heartbeat. A variable
// for tests.
var stallLimit = 2 * time.Second

// logGap logs a gap the receive thread declared (housekeeping).
func (h *Handler) logGap(r moldudp64.Range) {
	h.log.Warn().Uint64("first", r.First).Uint64("count", r.Count).Uint64("last", r.End()-1).
		Msg("gap: sequence range missing on every line; books flagged possibly stale")
}

// logSession logs a session confirmed or changed (housekeeping): sc is
// the old session and the new.
func (h *Handler) logSession(sc [2]moldudp64.Session) {
	switch sc[0] {
	case moldudp64.Session{}:
		h.log.Info().Str("session", sc[1].String()).Msg("session confirmed: following it")
	case sc[1]:
		// A restart of its sequence: copyStats logs it (Regressions).
	default:
		h.log.Warn().Str("old", sc[0].String()).Str("new", sc[1].String()).
			Msg("session change: the followed session went silent and another is consistent; books rebuilt")
	}
}

// housekeeping logs gaps, beats the shm heartbeat and logs stats.
//
// The heartbeat tells readers the writer is alive, so it is beaten only
// while every hot thread goes round its loop: a receive or shard thread
// wedged (a deadlock, an endless loop, a receive call that never returns)
// would otherwise leave the books frozen under a fresh heartbeat, and the
// readers, the shm_heartbeat_age_seconds gauge and the alerts on it would
// all take the writer for alive. Each hot thread counts its passes of the
// stats point (every 20 ms on the receive thread, at least every 50 ms or
// so on an idle shard); when one has not moved for stallLimit the beats
// stop, and the readers find the writer dead StaleAfter later. The limit
// leaves room for what legitimately holds a thread for a while, a
// snapshot's rebuild in one go among them.
func (h *Handler) housekeeping() {
	hb := time.NewTicker(50 * time.Millisecond)
	defer hb.Stop()
	clockFaults := clock.ReadStats().Faults
	threads := []*atomic.Uint64{&h.alive}
	names := []string{"receive"}
	for _, s := range h.shards {
		if s != h.inline {
			threads = append(threads, &s.alive)
			names = append(names, "shard "+strconv.Itoa(s.id))
		}
	}
	seen := make([]uint64, len(threads))
	moved := make([]time.Time, len(threads))
	for i := range moved {
		moved[i] = time.Now()
	}
	withheld := false
	ticks, nameLost := 0, false
	for {
		select {
		case <-h.done:
			// What the receive thread queued before it ended is logged
			// too: a gap or a session change just before Stop was lost
			// from the log when select took done first (helper-224).
			for {
				select {
				case r := <-h.gapLog:
					h.logGap(r)
				case sc := <-h.sessionLog:
					h.logSession(sc)
				default:
					return
				}
			}
		case r := <-h.gapLog:
			h.logGap(r)
		case sc := <-h.sessionLog:
			h.logSession(sc)
		case <-hb.C:
			now := time.Now()
			stalled := -1
			for i, c := range threads {
				if n := c.Load(); n != seen[i] || h.stop.Load() {
					// Stopping: the threads end one after another.
					seen[i], moved[i] = n, now
				} else if now.Sub(moved[i]) > stallLimit && stalled < 0 {
					stalled = i
				}
			}
			switch {
			case stalled < 0:
				if withheld {
					withheld = false
					h.log.Warn().Msg("hot threads go round again: shm heartbeat resumed")
				}
				h.w.Heartbeat()
			case !withheld:
				withheld = true
				h.log.Error().Str("thread", names[stalled]).Dur("for", now.Sub(moved[stalled])).
					Msg("hot thread stopped going round its loop: shm heartbeat withheld, so readers will find the writer dead while it lasts")
			}
			// Once a second: is the file still under its name (an
			// operator's rm leaves the writer publishing into a file
			// that no reader can open)? Does it still hold the
			// writer's header (a file cut and grown back to its size,
			// or another copied over it, gives no fault: the writer
			// would publish on into pages no reader can use)? A file
			// cut and not grown back faults here, as the heartbeat.
			if ticks++; ticks%20 == 0 {
				if err := h.w.Wiped(); err != nil {
					h.shmFailed(err, "housekeeping")
				}
				err := h.w.NameLost()
				switch {
				case err != nil && !nameLost:
					h.log.Error().Err(err).Msg("shm file no longer under its name: strategies that open it now find no books; restart the handler to create it anew")
				case err == nil && nameLost:
					h.log.Warn().Str("shm", h.w.Path()).Msg("shm file under its name again")
				}
				nameLost = err != nil
			}
			if f := clock.ReadStats().Faults; f != clockFaults {
				clockFaults = f
				logClock(h.log, true)
			}
		}
	}
}

// housekeepingGuarded runs housekeeping until Stop (true), or until its
// heartbeat faults on the shm file truncated under the writer (false:
// shmFault reported it, and the writer, closed by it, beats no more).
func (h *Handler) housekeepingGuarded() (done bool) {
	defer func() {
		if h.shmFault(recover(), "housekeeping") {
			done = false
		}
	}()
	h.housekeeping()
	return true
}

// shmFault handles p, recovered at the top of a thread's loop (receive,
// shard, housekeeping), whose goroutine set debug.SetPanicOnFault: nil is
// no panic (false); a fault inside the shm writer's mapping is the feed
// file truncated under it (an operator's `truncate -s 0`), which the
// writer turns into an error and a close (shm.Writer.Fault): logged,
// counted once for the handler (Failed, Err, Stop's error), true, and the
// thread goes on without publishing. Anything else panics again.
func (h *Handler) shmFault(p any, thread string) bool {
	if p == nil {
		return false
	}
	err := h.w.Fault(p)
	if err == nil {
		panic(p)
	}
	h.shmFailed(err, thread)
	return true
}

// shmFailed reports err, the shm writer's ErrTruncated (from Fault, or
// from housekeeping's Wiped): logged, and counted once for the handler
// (Failed, Err, Stop's error).
func (h *Handler) shmFailed(err error, thread string) {
	if h.failErr.CompareAndSwap(nil, &err) {
		close(h.failed)
	}
	h.log.Error().Err(err).Str("thread", thread).
		Msg("shm file truncated under the writer: books no longer published; the handler stops (exit 74), a restart creates the file anew")
}

// logClock says which clock stamps the hot path (internal/clock) and why;
// fault says the TSC just disagreed with the kernel's clock.
func logClock(log zerolog.Logger, fault bool) {
	name, why := clock.Source()
	ev := log.Info()
	if fault {
		ev = log.Warn().Uint64("faults", clock.ReadStats().Faults)
	}
	ev = ev.Str("clock", name).Str("why", why)
	if cur, tsc := clock.KernelClocksource(); name == "tsc" && cur != "" && !tsc {
		ev = ev.Str("kernel_clocksource", cur).Bool("kernel_lists_tsc", false)
	}
	if fault {
		ev.Msg("hot-path clock: the TSC disagreed with CLOCK_MONOTONIC and was re-measured (three times: turned off)")
		return
	}
	ev.Msg("hot-path clock")
}
