package exchange

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Deadline pacing (Config.Deadline): the sender sleeps until each packet
// is due with clock_nanosleep(TIMER_ABSTIME) on a locked thread whose timer
// slack is 1 ns, so a packet leaves within the kernel's wakeup latency of
// its due time, and only the packets a late wakeup left due go out
// together. Go's timers (time.Sleep, time.Timer) wake through the runtime's
// scheduler and netpoller, with the thread's default 50 µs slack: at tens
// of thousands of packets per second their overshoot turns pacing into
// bursts.
//
// A packet waits in the batch until the next one is found not yet due (or
// Burst are queued), so the sender has asked its source for the next
// packet before it writes this one: it queues a copy, made in an arena
// that NewSender sizes (Burst packets of moldudp64.MaxPayload, at least
// the largest UDP payload), never by reference to the source's buffer.
// When the next packet does not fit in what is left of the arena, the
// queued ones (all due) go out first.

// maxSleep bounds one clock_nanosleep, so that a cancelled ctx or a passed
// Duration ends a slowly paced Send promptly.
const maxSleep = 10 * time.Millisecond

// lockThread locks the calling goroutine to its OS thread and applies Pin
// (affinity) and Deadline (1 ns timer slack) to the thread; restore puts
// the thread's settings back and unlocks it.
func (s *Sender) lockThread() (restore func(), err error) {
	runtime.LockOSThread()
	var undo []func()
	restore = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		runtime.UnlockOSThread()
	}
	if s.cfg.Pin {
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			restore()
			return nil, fmt.Errorf("pin sender: %w", err)
		}
		set.Set(s.cfg.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			restore()
			return nil, fmt.Errorf("pin sender to CPU %d: %w", s.cfg.CPU, err)
		}
		undo = append(undo, func() { unix.SchedSetaffinity(0, &old) })
	}
	if s.cfg.Deadline {
		old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
		if err != nil {
			restore()
			return nil, fmt.Errorf("sender timer slack: %w", err)
		}
		if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
			restore()
			return nil, fmt.Errorf("sender timer slack: %w", err)
		}
		undo = append(undo, func() { unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0) })
	}
	return restore, nil
}

// monotonic returns CLOCK_MONOTONIC in nanoseconds, the clock
// clock_nanosleep sleeps on.
func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// sleepUntil sleeps until CLOCK_MONOTONIC reaches t (ns); a signal (Go's
// preemption sends them) resumes the sleep.
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
	}
}

// sendTimed is Send with deadline pacing, on the locked thread.
func (s *Sender) sendTimed(ctx context.Context, pkts iter.Seq[[]byte]) (Stats, error) {
	st := Stats{}
	start := time.Now()
	t0 := monotonic()
	end := int64(0) // CLOCK_MONOTONIC time at which Duration passes
	if s.cfg.Duration > 0 {
		end = t0 + int64(s.cfg.Duration)
	}
	interval := 0.0 // ns between input packets
	if s.cfg.Rate > 0 {
		interval = float64(time.Second) / s.cfg.Rate
	}
	var err error
	queued, pos := 0, uint64(0) // input packets in the batch, their last sequence number
	used := 0                   // s.arena[:used] holds the queued packets' copies
	write := func() {
		if queued > 1 {
			st.Bursts++
		}
		st.MaxBurst = max(st.MaxBurst, queued)
		s.batch.write(s.lines)
		queued, used = 0, 0
		if pos > s.sent.Load() {
			s.sent.Store(pos)
		}
	}
	now := t0
loop:
	for p := range pkts {
		if s.cfg.Count > 0 && st.Input >= uint64(s.cfg.Count) {
			break
		}
		if err = ctx.Err(); err != nil {
			break
		}
		due := t0 + int64(float64(st.Input)*interval)
		if interval > 0 && now-due > int64(float64(s.cfg.Burst)*interval) {
			// More than Burst packets behind (the thread lost its CPU):
			// slip the schedule rather than catch up in a long burst.
			t0 += now - due
			due = now
			st.Slips++
		}
		if due > now || queued >= s.cfg.Burst {
			write()
			now = monotonic()
		}
		for due > now {
			if end > 0 && due >= end {
				break loop
			}
			sleepUntil(min(due, now+int64(maxSleep)))
			if err = ctx.Err(); err != nil {
				break loop
			}
			now = monotonic()
		}
		if end > 0 && now >= end {
			break
		}
		// Queue a copy of p: the source may reuse p's memory once it is
		// asked for the next packet (FileSource, moldudp64.Builder), and
		// p is written only after that.
		if len(p) > len(s.arena)-used {
			write() // the arena is full: what is queued is due, send it now
		}
		q := p
		if len(p) <= len(s.arena) {
			q = s.arena[used : used+len(p) : used+len(p)]
			copy(q, p)
			used += len(p)
		}
		st.Input++
		for i := range s.lines {
			s.lines[i].offer(q)
		}
		queued++
		if last := lastSeq(p); last > pos {
			pos = last
		}
		if len(q) > len(s.arena) {
			write() // larger than any UDP payload: out alone, uncopied, before the next is asked for
		}
	}
	write()
	return s.finish(st, start, err)
}
