package shm

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// stepClock makes *clock (monoNanos or realNanos: the readers' clocks)
// the clock it was plus the steps given to the function it returns, until
// the test ends. The writer's clock (now) stays as it is.
func stepClock(t *testing.T, clock *func() int64) (step func(time.Duration)) {
	var off atomic.Int64
	orig := *clock
	*clock = func() int64 { return orig() + off.Load() }
	t.Cleanup(func() { *clock = orig })
	return func(d time.Duration) { off.Add(int64(d)) }
}

// TestLivenessClockSteps: a reader judges the writer by whether its
// heartbeat changes, timed on the reader's monotonic clock; the heartbeat's
// CLOCK_REALTIME age counts only at open and to place a change within the
// time since the reader's previous look. Before, the age was the reader's
// realtime minus the heartbeat, so a step of either clock read as a dead
// writer that was alive (for as long as the step) or a live one that was
// dead.
func TestLivenessClockSteps(t *testing.T) {
	// Interval 1s: two intervals 2s, stale after 10s. The writer's pid is
	// this process: only the stale limit says dead.
	cfg := Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second}

	t.Run("reader realtime forward, writer beats", func(t *testing.T) {
		w := testWriter(t, cfg)
		w.Heartbeat()
		r := testReader(t, w.Path())
		realStep := stepClock(t, &realNanos)
		if err := r.Check(); err != nil {
			t.Fatal(err)
		}
		realStep(time.Hour)
		if err := r.Check(); err != nil { // before: ErrWriterDead, heartbeat 1h old
			t.Fatalf("unchanged heartbeat, reader's realtime stepped an hour: %v", err)
		}
		w.Heartbeat()
		if err := r.Check(); err != nil {
			t.Fatalf("writer beat after the step: %v", err)
		}
	})

	t.Run("reader realtime back, writer stopped", func(t *testing.T) {
		w := testWriter(t, cfg)
		w.Heartbeat()
		r := testReader(t, w.Path())
		realStep, mono := stepClock(t, &realNanos), stepClock(t, &monoNanos)
		if err := r.Check(); err != nil {
			t.Fatal(err)
		}
		realStep(-time.Hour)
		// Past the stale limit; the heartbeat never changed. Before: nil,
		// the heartbeat an hour in the future.
		mono(11 * time.Second)
		if err := r.Check(); !errors.Is(err, ErrWriterDead) {
			t.Fatalf("heartbeat unchanged for 11s of the reader's clock: %v, want ErrWriterDead", err)
		}
		w.Heartbeat()
		if err := r.Check(); err != nil {
			t.Fatalf("writer beat again: %v", err)
		}
	})

	// The writer's clock an hour behind the reader's (stepped back), and
	// it keeps beating: its heartbeat advances. Only the first look, at
	// open, goes by the realtime age.
	t.Run("writer heartbeat an hour behind, advancing", func(t *testing.T) {
		w := testWriter(t, cfg)
		hb := time.Now().Add(-time.Hour).UnixNano()
		atomic.StoreInt64(w.m.i64(offHeartbeat), hb)
		r := testReader(t, w.Path())
		if err := r.Check(); !errors.Is(err, ErrWriterDead) {
			t.Fatalf("first check, heartbeat an hour old by realtime: %v, want ErrWriterDead", err)
		}
		for i := 1; i <= 3; i++ {
			atomic.StoreInt64(w.m.i64(offHeartbeat), hb+int64(i)*int64(time.Second))
			if err := r.Check(); err != nil { // before: ErrWriterDead, heartbeat 1h old
				t.Fatalf("beat %d of a writer an hour behind: %v", i, err)
			}
		}
		// A follower's wait checks the same way.
		if _, err := r.Follow().Wait(make([]Update, 1), 0, WaitOptions{Spin: 1}); err != nil {
			t.Fatalf("wait: %v", err)
		}
	})
}

// TestLivenessReaderStall: a reader that loses its CPU in the middle of a
// look at the heartbeat (a loaded machine, a stopped process) for longer
// than the stale limit, while the writer beats on, does not take its own
// stall for the writer's age. Before, it loaded the heartbeat and then
// read its clocks: the heartbeat it held was as old as its stall, and a
// stall of over a second (the default stale limit) read as ErrWriterDead
// for a writer that never missed a beat.
func TestLivenessReaderStall(t *testing.T) {
	// Interval 100ms: stale after 1s. The writer's pid is this process:
	// only the stale limit says dead.
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	w.Heartbeat()
	r := testReader(t, w.Path())
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	// The next reading of the reader's realtime clock comes after a stall
	// of 2s of both its clocks, at whose end the writer beats.
	var off atomic.Int64
	var stall atomic.Bool
	realOrig, monoOrig := realNanos, monoNanos
	t.Cleanup(func() { realNanos, monoNanos = realOrig, monoOrig })
	realNanos = func() int64 {
		if stall.CompareAndSwap(true, false) {
			off.Add(int64(2 * time.Second))
			atomic.StoreInt64(w.m.i64(offHeartbeat), realOrig()+off.Load())
		}
		return realOrig() + off.Load()
	}
	monoNanos = func() int64 { return monoOrig() + off.Load() }
	stall.Store(true)
	if err := r.Check(); err != nil { // before: ErrWriterDead, heartbeat 2s old
		t.Fatalf("the reader stalled 2s while the writer beat: %v", err)
	}
	// A writer that stops beating is still dead after the stale limit.
	off.Add(int64(2 * time.Second))
	if err := r.Check(); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("heartbeat unchanged for 2s of the reader's clocks: %v, want ErrWriterDead", err)
	}
}
