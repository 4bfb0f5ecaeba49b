package handler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// This file holds the handler's start: Start and StartContext (the shm
// file, the shards' books, the recovery, the capture and the receiver, then
// the threads), and pin.

// Start opens the receiver and the shared-memory file and starts the
// receive and shard threads.
func Start(cfg Config) (*Handler, error) { return StartContext(context.Background(), cfg) }

// StartContext is Start, stopping the setup at its next step once ctx
// ends (the command's first SIGINT or SIGTERM): after the shm file, after
// each shard's books, before the recovery, the capture and the receivers,
// and once they are open. What it set up is undone (the shm file removed,
// the receivers closed) and the error wraps ctx's. A step under way is
// not cut short: one shard's books (seconds with gigabytes) are
// allocated and touched first.
func StartContext(ctx context.Context, cfg Config) (*Handler, error) {
	if cfg.ShmName == "" {
		return nil, errors.New("start handler: no shared-memory name")
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = 1 << 16
	}
	if cfg.Depth <= 0 {
		cfg.Depth = 10
	}
	if cfg.ShmSlots <= 0 {
		cfg.ShmSlots = 16384
	}
	if cfg.Book.MaxOrders == 0 {
		cfg.Book = book.DefaultConfig()
	}
	mode, err := cfg.Mode.resolve(cfg.ShardCores)
	if err != nil {
		return nil, fmt.Errorf("start handler: %w", err)
	}
	if cfg.RTPriority < 0 || cfg.RTPriority > MaxRTPriority {
		return nil, fmt.Errorf("start handler: real-time priority %d out of range (0..%d)", cfg.RTPriority, MaxRTPriority)
	}
	for i, s := range cfg.Symbols {
		// The filter matches the 8 bytes of the stock field: a symbol
		// that is not one would never match, or (too long) match another.
		if err := itch.CheckSymbol(s); err != nil {
			return nil, fmt.Errorf("start handler: symbols[%d]: %w", i, err)
		}
	}
	unusedCore := -1
	if mode == ModeRunToCompletion {
		if len(cfg.ShardCores) == 1 && cfg.ShardCores[0] >= 0 && cfg.ShardCores[0] != cfg.ReceiveCore {
			unusedCore = cfg.ShardCores[0]
		}
		cfg.ShardCores = []int{cfg.ReceiveCore}
	}
	if len(cfg.ShardCores) == 0 {
		cfg.ShardCores = []int{-1}
	}
	if len(cfg.ShardCores) > MaxShards {
		return nil, fmt.Errorf("start handler: %d shards, at most %d", len(cfg.ShardCores), MaxShards)
	}
	if cfg.Open == nil {
		cfg.Open = rx.Open
	}
	// The receive thread is locked and pinned: io_uring can then use
	// SINGLE_ISSUER|DEFER_TASKRUN.
	cfg.Receive.LockedThread = true
	// Run to completion has one hot thread: it may keep its P while it
	// sleeps (rx.Config.KeepP). Sharded, the shard threads need the Ps.
	cfg.Receive.KeepP = mode == ModeRunToCompletion
	cfg.Arbiter.Session = cfg.Session
	cfg.Arbiter.Lines = len(cfg.Receive.Lines)
	// An idle receive poll is when held-back packets behind a gap are
	// released if traffic pauses: keep it well under the hold time.
	hold := cfg.Arbiter.Hold
	if hold <= 0 {
		hold = defaultHold
	}
	if cfg.Receive.PollTimeout <= 0 || cfg.Receive.PollTimeout > hold/4 {
		cfg.Receive.PollTimeout = max(hold/4, time.Millisecond)
	}
	h := &Handler{
		cfg: cfg, log: cfg.Log, mode: mode,
		shardOf: make([]uint8, 1<<16), admission: newAdmission(cfg.Symbols),
		done: make(chan struct{}), rxDone: make(chan struct{}), stopped: make(chan struct{}), failed: make(chan struct{}),
		gapLog: make(chan moldudp64.Range, 64), sessionLog: make(chan [2]moldudp64.Session, 4),
	}
	if unusedCore >= 0 {
		h.log.Warn().Int("shard_core", unusedCore).Int("receive_core", cfg.ReceiveCore).
			Msg("one shard core named: running to completion on the receive core, the shard core is unused; name two or more shard cores to shard")
	}
	threads := 1 + len(cfg.ShardCores)
	if mode == ModeRunToCompletion {
		threads = 1
	}
	if n := runtime.NumCPU(); n < threads {
		h.log.Warn().Int("threads", threads).Int("cpus", n).
			Msg("fewer CPUs than pipeline threads: threads share cores, expect higher latency")
	}
	w, err := shm.Create(shm.Config{Name: cfg.ShmName, Instruments: cfg.ShmSlots, Depth: cfg.Depth,
		Mode: cfg.ShmMode, Group: cfg.ShmGroup, SingleWriter: len(cfg.ShardCores) == 1, Log: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("start handler: %w", &SharedMemoryError{Err: err})
	}
	h.w = w
	// stopped is the setup's check between steps: nil, or the error to
	// return once undo has undone what the setup did so far.
	stopped := func(undo func()) error {
		if ctx.Err() == nil {
			return nil
		}
		if undo != nil {
			undo()
		}
		w.Close()
		shm.Remove(cfg.ShmName)
		return fmt.Errorf("start handler: setup stopped: %w", context.Cause(ctx))
	}
	if err := stopped(nil); err != nil {
		return nil, err
	}
	ringSize := cfg.RingSize
	if mode == ModeRunToCompletion {
		ringSize = 0
	}
	for i, core := range cfg.ShardCores {
		s, err := newShard(i, core, ringSize, cfg.Book, w, cfg.Depth)
		if err != nil {
			w.Close()
			shm.Remove(cfg.ShmName)
			return nil, fmt.Errorf("start handler: shard %d: %w", i, err)
		}
		s.rtPriority = cfg.RTPriority
		s.fault = h.shmFault
		h.shards = append(h.shards, s)
		if err := stopped(nil); err != nil {
			return nil, err
		}
	}
	for loc := range h.shardOf {
		h.shardOf[loc] = uint8(loc % len(h.shards))
	}
	if mode == ModeRunToCompletion {
		h.inline = h.shards[0]
	} else {
		c := &rebuildCount{shards: uint64(len(h.shards))}
		for _, s := range h.shards {
			s.rebuilt = c
		}
	}
	h.arb = NewArbiter(cfg.Arbiter, h.route, h.gap)
	h.arb.route = h // emit calls h.route without the method value (Arbiter.route)
	h.arb.SetSessionFunc(h.sessionChanged)
	rec, err := newRecovery(h, cfg.Recovery)
	if err != nil {
		w.Close()
		shm.Remove(cfg.ShmName)
		return nil, fmt.Errorf("start handler: %w", err)
	}
	h.arb.idleAfterEnd = rec.idleAfterEnd()
	if rec.enabled() {
		h.rec = rec
		h.arb.SetMissing(rec.missing)
		h.arb.SetNarrowed(rec.narrowed)
		h.rawBuf = make([]byte, 0, 2048)
	}

	if err := stopped(func() { rec.close() }); err != nil {
		return nil, err
	}
	if cfg.CapturePath != "" {
		c, err := capture.Open(capture.Config{Buffer: cfg.CaptureBuffer, Lines: cfg.Receive.Lines, Log: cfg.Log, Base: cfg.CapturePath, RotateSize: cfg.CaptureRotate})
		if err != nil {
			rec.close()
			w.Close()
			shm.Remove(cfg.ShmName)
			return nil, fmt.Errorf("start handler: %w", err)
		}
		h.capFile = c
		// The session the arbiter follows, its own: the line datagram
		// before the hold may be a stray sender's.
		h.arb.SetBehindFunc(func(next uint64, now int64) { c.Behind(now, next, h.arb.Session()) })
		h.log.Info().Str("file", c.Path()).Int("buffer", c.BufferSize()).Msg("capturing every line datagram")
	}
	undoCapture := func() {
		if h.capFile != nil {
			h.capFile.Close()
			os.Remove(h.capFile.Path())
		}
		rec.close()
	}
	if err := stopped(undoCapture); err != nil {
		return nil, err
	}
	recv, err := cfg.Open(cfg.Receive)
	if err != nil {
		undoCapture()
		w.Close()
		shm.Remove(cfg.ShmName)
		return nil, fmt.Errorf("start handler: %w", err)
	}
	if err := stopped(func() { recv.Close(); undoCapture() }); err != nil {
		return nil, err
	}
	h.recv = recv
	h.log.Info().Str("backend", recv.Backend()).Stringer("mode", mode).Int("shards", len(h.shards)).
		Str("shm", w.Path()).Int("depth", cfg.Depth).Msg("receiving")
	logClock(h.log, false)

	pinErrs := make(chan error, len(h.shards)+1)
	pinned := func(threads int) {
		for range threads {
			if err := <-pinErrs; err != nil {
				h.log.Warn().Err(err).Msg("thread not pinned")
			}
		}
	}
	if h.inline == nil {
		for _, s := range h.shards {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				s.run(pinErrs)
			}()
		}
		// Before the receive thread starts: a shard sets its ring's
		// backoff (shard.run) before it reports.
		pinned(len(h.shards))
	}
	t0 := time.Now()
	h.started, h.startMono = t0.UnixNano(), clock.Mono(t0)
	go h.receive(pinErrs)
	pinned(1)
	h.logThread("receive", h.rxThread)
	if h.inline != nil {
		h.inline.thread = h.rxThread // the receive thread applies its messages
	} else {
		for _, s := range h.shards {
			h.logThread("shard "+strconv.Itoa(s.id), s.thread)
		}
	}
	h.hk.Add(1)
	go func() {
		defer h.hk.Done()
		debug.SetPanicOnFault(true) // Heartbeat stores into the mapping (shmFault)
		for !h.housekeepingGuarded() {
		}
	}()
	return h, nil
}

// pin locks the calling thread to core (no-op for core < 0).
func pin(core int) error {
	if core < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(core)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to core %d: %w", core, err)
	}
	return nil
}
