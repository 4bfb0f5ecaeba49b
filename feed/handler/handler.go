package handler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// Config is what the pipeline needs; package config builds it from YAML.
type Config struct {
	Receive rx.Config // lines, backend and its options

	Session     moldudp64.Session // zero: follow the first session seen
	Arbiter     ArbiterConfig     // hold-back tuning (Session and Lines are filled in)
	Mode        Mode              // zero (ModeAuto): sharded with two or more ShardCores, else run to completion
	ReceiveCore int               // -1: not pinned
	ShardCores  []int             // sharded: one shard per entry; -1 entries are not pinned; empty: one unpinned shard
	RTPriority  int               // 1..MaxRTPriority: the hot threads run under SCHED_FIFO at this priority (docs/TUNING.md), those with a core (ReceiveCore, ShardCores): an unpinned one runs under normal scheduling and its ThreadSched.Reason says so; 0: normal scheduling
	RingSize    int               // slots per shard ring, power of two (default 65536)
	Symbols     []string          // subscribe to these symbols only; empty: all
	Depth       int               // levels per side published (default 10)
	Book        book.Config       // capacity per shard (zero: book.DefaultConfig)
	ShmName     string            // shared-memory feed name (required)
	ShmSlots    int               // instrument slots in the shm file, 1..65536 (default 16384; feed file: shm.slots)
	ShmMode     os.FileMode       // permission bits of the shm file (default 0640)
	ShmGroup    string            // group name or gid owning the shm file ("": the process's group)
	Feed        string            // feed name: the "feed" label of every metric
	Recovery    RecoveryConfig    // gap repair (zero: none, gaps flag the books)
	// CapturePath: write every line datagram received to a pcap file
	// (package capture) named capture.FileName(CapturePath, start time),
	// or of the next microsecond free when a file has that name, never before
	// one of its files already there; "": no capture. CaptureBuffer is its ring's size (0: the default).
	CapturePath   string
	CaptureBuffer int
	// CaptureRotate: once a capture file holds this many bytes, go on in
	// a new one (capture.Config.RotateSize; 0: never).
	CaptureRotate int64

	// Open replaces rx.Open, e.g. to open the receiver inside a network
	// namespace. Nil means rx.Open.
	Open func(rx.Config) (rx.Receiver, error)

	Log zerolog.Logger
}

// Mode is how the pipeline's work is split across threads.
type Mode uint8

const (
	// ModeAuto runs to completion unless ShardCores names two or more
	// cores, then it shards.
	ModeAuto Mode = iota
	// ModeRunToCompletion: the receive thread does everything in turn for
	// each batch: receive, MoldUDP64 parse, arbitration and recovery, book
	// apply and shm publish. No ring, no other hot thread. ShardCores
	// must name at most one core (it is not used).
	ModeRunToCompletion
	// ModeSharded: the receive thread routes each message by locate
	// through an SPSC ring to one of len(ShardCores) shard threads, which
	// apply and publish.
	ModeSharded
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeRunToCompletion:
		return "run-to-completion"
	case ModeSharded:
		return "sharded"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// resolve returns the mode a config runs in.
func (m Mode) resolve(shardCores []int) (Mode, error) {
	switch m {
	case ModeAuto:
		if len(shardCores) >= 2 {
			return ModeSharded, nil
		}
		return ModeRunToCompletion, nil
	case ModeRunToCompletion:
		if len(shardCores) >= 2 {
			return m, fmt.Errorf("run to completion with %d shard cores: name at most one, or shard", len(shardCores))
		}
		return m, nil
	case ModeSharded:
		return m, nil
	}
	return m, fmt.Errorf("unknown mode %d", uint8(m))
}

// Stats is a consistent-enough copy of the pipeline's counters.
type Stats struct {
	Backend       string
	Mode          Mode // ModeRunToCompletion or ModeSharded
	Arbiter       ArbiterStats
	Receive       rx.Stats
	Shards        []ShardStats
	Routed        uint64           // messages pushed to shards (a System Event once per shard)
	Filtered      uint64           // messages dropped by the symbol filter
	BadMessages   uint64           // messages shorter than a type byte and a locate (3 bytes): not applied
	NextSeq       uint64           // next expected MoldUDP64 sequence number
	ReceiveErrors uint64           // errors returned by the receiver (logged)
	Ended         bool             // the session ended and everything before its end was delivered or declared missing
	EndAnnounced  bool             // the session announced its end (Arbiter.EndAnnounced), whether or not everything before it was delivered
	ReceiveThread ThreadSched      // how the receive thread is scheduled (in run to completion, the one hot thread)
	Latency       latency.Snapshot // receive timestamp to shm publish, per live message
	PathLatency   latency.Snapshot // receive thread pickup to shm publish: the handler's own path (live messages)
	// RepairedLatency: receive timestamp to shm publish of the messages
	// that waited for a recovery (re-requested, or spilled behind a
	// re-request or snapshot): the repair's time, kept out of Latency.
	RepairedLatency latency.Snapshot
	Recovery        RecoveryStats
	Capture         capture.Stats // zero without a capture
	// Shm counts the shm file's instrument slots: retired ones (a locate
	// bound to another symbol, a symbol moved to another locate) are not
	// reused until a restart (docs/OPERATIONS.md, "Slots and sessions").
	Shm shm.SlotUsage

	// LastPacket is, per configured line, when the handler last saw the
	// line's packet count move (Unix ns, resolution the 20 ms stats
	// refresh; 0: never).
	LastPacket [MaxLines]int64
	Started    int64 // when Start returned, Unix ns
	// LineSilent is, per configured line, whether it is silent while
	// another line delivers (for arbitration.line_timeout after its last
	// packet: its link, NIC or path is down); AllSilent whether every line
	// is (for SilentNotReady, or line_timeout when longer: no heartbeat
	// either). Both are logged when they change (silence.go).
	LineSilent [MaxLines]bool
	AllSilent  bool

	// LastPacket and Started on the monotonic clock (monoNow): silence is
	// measured on it, so a step of the wall clock (NTP or PTP setting it
	// at boot, an operator) neither hides a silent path nor invents one.
	lastMono  [MaxLines]int64
	startMono int64
}

// Applied returns the messages applied across shards: every shard applies
// each System Event (the one market-wide message the books keep), so with
// n shards each counts n times (Routed counts them alike); any other
// message, of locate 0 too, is applied once.
func (s *Stats) Applied() uint64 {
	var n uint64
	for _, sh := range s.Shards {
		n += sh.Applied
	}
	return n
}

// Handler runs the pipeline. Create it with Start; stop it with Stop.
type Handler struct {
	cfg     Config
	log     zerolog.Logger
	recv    rx.Receiver
	arb     *Arbiter
	rec     *recovery        // nil: no recovery source configured
	capFile *capture.Capture // nil: no capture (capture.path)
	// newSession: with no recovery source, a session change flagged the
	// books; they are whole again once the new session is delivered from
	// its first sequence number with no gap declared since (more than
	// newSessionGaps): see newSessionWhole.
	newSession     bool
	newSessionGaps uint64
	rawBuf         []byte // a recovered packet re-encoded for the spill
	mode           Mode
	shards         []*shard
	inline         *shard  // run to completion: the one shard, driven by the receive thread
	shardOf        []uint8 // by locate
	w              *shm.Writer

	// flagged mirrors, on the receive thread, what the markers pushed to
	// every shard left the books: flagged possibly stale (markerStale,
	// markerRebuild) or not (markerWhole); flagMarks counts the markers
	// that flag them (pushMarker), so that the silence's flag knows
	// whether another flagged the books since its own (silenceFlag).
	flagged   bool
	flagMarks uint64

	admission // which delivered messages go to the books

	// rx-thread counters, copied under mu every few tens of milliseconds
	// (with admission's filtered and badMsgs).
	routed, nDelivered, rxErrors uint64
	pickup                       int64 // when the current batch was taken from the receiver
	rxErrLogged                  time.Time
	rxErrQuiet                   uint64 // receive errors not logged since rxErrLogged (logReceiveError)
	// drainedAt: the receive loop's last empty poll since the last batch
	// (0: none), for the capture: the next batch is marked with it, and
	// so are the recovery's frames of the rounds before it (an answer),
	// which a replay reads first.
	drainedAt int64

	stop     atomic.Bool
	alive    atomic.Uint64 // receive thread: passes of its stats point (every 20 ms), for the heartbeat (housekeeping)
	closeErr error         // the receiver's Close, set by the receive thread before rxDone
	done     chan struct{}
	rxDone   chan struct{}
	stopped  chan struct{} // closed when Stop has finished, with stopErr set
	stopErr  error
	// failed is closed, with failErr set, when a thread found the shm
	// file truncated under the writer (shmFault): the books are no longer
	// published, and the handler's owner stops it (Failed).
	failed  chan struct{}
	failErr atomic.Pointer[error]
	wg      sync.WaitGroup // shard threads
	hk      sync.WaitGroup // housekeeping

	copiedOwn bool        // receive thread: copyStats copied h's part, the inline shard's is pending
	rxThread  ThreadSched // set by the receive thread before Start returns

	mu         sync.Mutex
	arbCopy    ArbiterStats
	rxCopy     rx.Stats
	cntCopy    [5]uint64
	endedCopy  bool
	announced  bool // Arbiter.EndAnnounced, copied with endedCopy
	recCopy    RecoveryStats
	seenPkts   [MaxLines]uint64 // line packet counts at the last copy
	lastPkt    [MaxLines]int64  // when they last moved, Unix ns
	lastMono   [MaxLines]int64  // the same, monotonic (monoNow)
	silence    silenceState     // what noteSilence last logged
	badLines   badLineState     // what logBadLines last logged
	started    int64            // when Start returned, Unix ns
	startMono  int64            // the same, monotonic (monoNow)
	delivered  atomic.Uint64    // messages the arbiter delivered (routed to shards)
	gapLog     chan moldudp64.Range
	sessionLog chan [2]moldudp64.Session

	logMu   sync.Mutex // LogStats: its Stats copy and keys, reused
	logSt   Stats
	readyMu sync.Mutex // Ready: its Stats copy, reused
	readySt Stats
	logKeys [][6]string // per line: the stats line's keys
}

// SharedMemoryError is Start's error when the shared-memory file could not
// be created: shm.Create's error, Err (a live writer publishing under the
// name, shm.ErrInUse; a /dev/shm full, read-only or not writable; a file
// there another user owns). Commands tell it from the receiver's errors to
// name the config's shm keys and what to do.
type SharedMemoryError struct{ Err error }

func (e *SharedMemoryError) Error() string { return e.Err.Error() }
func (e *SharedMemoryError) Unwrap() error { return e.Err }

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

// receive is the receive thread: Receive, arbitrate, route; in run to
// completion also apply and publish, once per batch.
func (h *Handler) receive(pinErr chan<- error) {
	defer close(h.rxDone)
	// Locked and never unlocked: the thread exits with the goroutine
	// rather than going back to the runtime pinned to the core.
	runtime.LockOSThread()
	pinErr <- setupThread(h.cfg.ReceiveCore, h.cfg.RTPriority, &h.rxThread)
	// A store into the shm file truncated under the writer is a panic,
	// which receiveLoop recovers (shmFault), not a crash of the process.
	debug.SetPanicOnFault(true)
	faulted := h.receiveLoop()
	if h.rec != nil {
		if err := h.rec.close(); err != nil {
			h.log.Warn().Err(err).Msg("close recovery")
		}
	}
	if !faulted {
		h.endBatch()
		h.finishSweep()
	}
	h.copyStats(true)
	// Close on the thread that used the receiver (io_uring's single issuer).
	h.closeErr = h.recv.Close()
}

// receiveLoop is the receive thread's loop, until Stop, or until a store
// into the shm file faults (true: the file was truncated under the
// writer; shmFault). The recover is deferred once per thread, not per
// message.
func (h *Handler) receiveLoop() (faulted bool) {
	defer func() {
		if h.shmFault(recover(), "receive") {
			faulted = true
		}
	}()
	batch := h.cfg.Receive.BatchSize
	if batch <= 0 {
		batch = 64
	}
	pkts := make([]rx.Packet, batch)
	last := clock.Now()
	for !h.stop.Load() {
		n, err := h.recv.Receive(pkts)
		// Packets returned together with an error are real: use and
		// release them before looking at the error.
		var ended int64 // when the batch's publish ended (run to completion)
		if n > 0 {
			h.pickup = clock.Now()
			if tailTrace && h.inline != nil {
				h.inline.tail.begin(h.pickup, pkts[:n], h.inline.pub.Published)
			}
			for i := 0; i < n; i++ {
				p := &pkts[i]
				h.arb.Offer(int(p.Line), p.Data, p.RxTime)
				if tailTrace && h.inline != nil {
					h.inline.tail.mark(clock.Now())
				}
			}
			if (stageTiming || tailTrace) && h.inline != nil {
				h.inline.stages.offered = clock.Now()
				if tailTrace {
					h.inline.tail.mark(h.inline.stages.offered)
				}
			}
			ended = h.endBatch()
			// After the batch is published, so the copy is not on its
			// path to the shm file; before Release, while the datagrams
			// are still the receiver's buffers as they came.
			h.captureBatch(pkts[:n], h.drainedAt)
			h.drainedAt = 0
			h.recv.Release(pkts[:n])
		}
		h.delivered.Store(h.nDelivered)
		if err != nil {
			if errors.Is(err, rx.ErrClosed) {
				break
			}
			h.rxErrors++
			h.logReceiveError(err)
			if n == 0 {
				// Back off, then go on with the round: a receiver failing
				// on every call must not stop the arbiter's hold and gap
				// timers, recovery or the stats copy.
				time.Sleep(time.Millisecond)
			}
		}
		// A batch that published has just read the clock: its end time
		// serves the ticks and the stats too.
		now := ended
		if now == 0 {
			now = clock.Now()
		}
		// Only an empty poll says that every line was drained: after a
		// failed one the failing line may still hold packets, so its
		// copies are still waited for (Advance).
		drained := n == 0 && err == nil
		switch {
		case drained:
			h.arb.Tick(now)
			h.drainedAt = now
		case n == 0:
			h.arb.Advance(now)
			h.captureFailed(now, h.drainedAt)
		}
		if h.rec != nil {
			h.rec.poll(now)
			h.delivered.Store(h.nDelivered)
		}
		if h.newSession {
			h.newSessionWhole()
		}
		h.endBatch() // what Tick released or recovery delivered
		if drained && now-h.pickup >= int64(sweepQuiet) {
			h.finishSweep()
		}
		// A reader (Stats) holding the lock makes the copy wait for the
		// next round, a loop later: the hot thread never waits for a
		// reader the kernel may have descheduled while holding it.
		last = min(last, now) // the wall clock stepped back: copy 20 ms on, not once it is back
		if now-last > int64(20*time.Millisecond) {
			h.alive.Add(1) // the thread goes round (housekeeping beats the heartbeat only then)
			if h.copyStats(false) {
				last = now
			}
		}
	}
	return false
}

// captureBatch copies a received batch into the capture's ring when
// capture.path is set: every datagram of both lines as received (not only
// what arbitration kept), once the batch is published and before Release,
// marked with the time of the empty poll before it (drainedAt, 0: none
// since the batch before), where the arbiter ticked; a copy, never a wait
// (package capture). Off, it is one branch; it inlines.
func (h *Handler) captureBatch(pkts []rx.Packet, drainedAt int64) {
	if h.capFile != nil {
		h.capFile.Put(pkts, drainedAt)
	}
}

// captureFailed notes in the capture, when capture.path is set, a receive
// call that failed with nothing read at now, where the arbiter advanced
// (drainedAt: the empty poll since the batch before, 0: none): the capture
// writes the run of failures before the next batch, so that a replay
// advances there too (package capture). A few stores; it inlines.
func (h *Handler) captureFailed(now, drainedAt int64) {
	if h.capFile != nil {
		h.capFile.Failed(now, drainedAt)
	}
}

// sweepQuiet is how long the feed must have been quiet (no packet picked
// up) before the receive thread, in run to completion, finishes a
// market-wide republish at once (finishSweep) instead of a chunk per round:
// it cannot look for packets between chunks without waiting in Receive, up
// to the receiver's poll timeout. A real receiver returns nothing only
// after its poll timeout of silence (Start sets it to at most a quarter of
// the arbiter's hold: 5 ms by default), so in practice the sweep finishes
// in the first round without packets; until then each round with packets
// adds two chunks (its own endBatch and the one ending every round).
var sweepQuiet = time.Millisecond // a variable for TestStopFinishesSweep

// finishSweep publishes the rest of a market-wide republish under way in
// run to completion (Publisher.Sweeping), unless the books are being
// rebuilt.
func (h *Handler) finishSweep() {
	if s := h.inline; s != nil && !s.rebuilding && s.pub.Sweeping() {
		s.pub.Flush()
	}
}

// route is the Arbiter's Deliver: copy each message into the ring of the
// shard that owns its locate.
func (h *Handler) route(p moldudp64.Packet, skip int, rxTime int64) {
	if h.inline != nil {
		h.routeInline(h.inline, p, skip, rxTime)
		return
	}
	it := p.Iter()
	it.Skip(skip)
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		h.nDelivered++
		h.routeMsg(msg, it.Seq(), rxTime)
	}
}

// routeInline is route in run to completion: the checks of routeMsg, then
// each message applied to the one shard's books in place, and what push
// and shard.apply do per message that is the same for every message of
// a packet (the latency run, the repair flag, the counters) done once for
// the packet.
func (h *Handler) routeInline(s *shard, p moldudp64.Packet, skip int, rxTime int64) {
	// Start loading the order slots that the packet's deletes,
	// executes, cancels and replaces will read, and their books, all at
	// once, so that their misses overlap instead of following one
	// another.
	s.books.PrefetchBlocks(p.Blocks, p.Messages())
	it := p.Iter()
	it.Skip(skip)
	applied := 0
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		h.nDelivered++
		if !h.admit(msg) {
			if h.withdrawn != 0 {
				h.withdraw(h.takeWithdrawn(), it.Seq())
			}
			continue
		}
		if stageTiming {
			s.applyOne(msg, it.Seq(), rxTime) // timed
		} else {
			// applyOne without its timing, by hand: it does not
			// inline, and a call per message costs about 120
			// instructions a packet.
			loc, changed := s.books.Apply(itch.Msg(msg))
			s.pub.Applied(loc, changed, it.Seq(), rxTime)
		}
		applied++
	}
	if applied > 0 {
		h.routed += uint64(applied)
		s.addRun(applied, rxTime, h.pickup, h.arb.Repairing())
	}
}

// routeMsg sends one message to the shard owning its locate, through the
// symbol filter; a System Event to every shard, and a Stock Directory's
// claim too (routeDirectory).
//
// Only a System Event changes every shard's books (book.Books.Apply: its
// event goes into every snapshot, whatever its locate, which ITCH makes
// 0). Any other message of locate 0 (an MWCB message, which the books keep
// nothing of, or bad input: a Stock Directory, an order or a type unknown
// at locate 0, a message too short for its type) goes to the shard of
// locate 0 alone, so that it is applied and counted (book.Stats) once, as
// in run to completion, not once per shard.
func (h *Handler) routeMsg(msg []byte, seq uint64, rxTime int64) {
	if !h.admit(msg) {
		if h.withdrawn != 0 {
			h.withdraw(h.takeWithdrawn(), seq)
		}
		return
	}
	// 'R' and 'S' differ in their lowest bit only: one test a message
	// for both, as for 'S' alone before.
	if msg[0]|1 == itch.TypeSystemEvent && h.routeMarketWide(msg, seq, rxTime) {
		return
	}
	loc := uint16(msg[1])<<8 | uint16(msg[2])
	h.push(h.shards[h.shardOf[loc]], msg, seq, rxTime)
}

// The test in routeMsg takes a Stock Directory for a System Event's kin.
var _ = [1]struct{}{}[itch.TypeStockDirectory|1-itch.TypeSystemEvent]

// routeMarketWide routes a System Event or a Stock Directory message (msg
// is of type 'S' or 'R') that every shard must see, and reports whether it
// did; one too short for its type goes the way of any message. A System
// Event goes to every shard: whole to its locate's shard, cut to its
// type's length to the others, so that one longer than its type is
// counted Long (book.Stats) once, as in run to completion, not once per
// shard. One whose event code ITCH 5.0 does not define goes the way of
// any message too: every shard's books would keep their last event and
// count it (BadState), so its locate's shard alone counts it, once. A
// Stock Directory goes to its locate's shard, and its claim
// (routeDirectory) to the others.
func (h *Handler) routeMarketWide(msg []byte, seq uint64, rxTime int64) bool {
	loc := uint16(msg[1])<<8 | uint16(msg[2])
	if msg[0] == itch.TypeSystemEvent {
		if len(msg) < itch.SystemEventLen || !book.SystemEventDefined(msg[itch.HeaderLen]) {
			return false
		}
		for i, s := range h.shards {
			if i == int(h.shardOf[loc]) {
				h.push(s, msg, seq, rxTime)
			} else {
				h.push(s, msg[:itch.SystemEventLen], seq, rxTime)
			}
		}
		return true
	}
	if len(msg) < itch.StockDirectoryLen || len(h.shards) == 1 {
		return false
	}
	own := h.shards[h.shardOf[loc]]
	h.push(own, msg, seq, rxTime)
	h.claimElsewhere(own, loc, itch.StockDirectory(msg).Stock(), seq)
	return true
}

// claimElsewhere tells every shard but own, in order with its messages,
// that locate loc was given symbol sym (the zero Symbol: withdrawn), so
// that each shard's books know which locate holds each symbol as run to
// completion's one book.Books does (book.Books.Claim): a locate of theirs
// given a symbol another shard's locate was given first is a duplicate
// (book.Book.Duplicate), never published, whichever shard publishes
// first. A Stock Directory message, not a message per order: rare.
func (h *Handler) claimElsewhere(own *shard, loc uint16, sym itch.Symbol, seq uint64) {
	for _, s := range h.shards {
		if s == own {
			continue
		}
		e := h.reserve(s)
		e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, 0, h.pickup, markerClaim, 11, false
		e.data[0], e.data[1], e.data[2] = itch.TypeStockDirectory, byte(loc>>8), byte(loc)
		copy(e.data[3:11], sym[:])
		s.ring.Commit(1)
	}
}

// withdraw has the shard owning locate loc end its book, in order with the
// messages: the Stock Directory message of sequence number seq gave the
// locate to a symbol the filter leaves out (admission.withdrawn). Rare.
func (h *Handler) withdraw(loc uint16, seq uint64) {
	s := h.shards[h.shardOf[loc]]
	if s.ring == nil {
		s.withdraw(loc)
		s.pending = true
		return
	}
	e := h.reserve(s)
	e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, 0, h.pickup, markerWithdraw, 3, false
	e.data[0], e.data[1], e.data[2] = itch.TypeStockDirectory, byte(loc>>8), byte(loc)
	s.ring.Commit(1)
	h.claimElsewhere(s, loc, itch.Symbol{}, seq)
}

// glimpseSnapshot is the GLIMPSE snapshot message ('G'): it names the
// sequence number and is not applied to a book.
const glimpseSnapshot = 'G'

// rebuild replaces the books with a snapshot: every shard is told to flag
// and keep its published books while it resets and reloads them, then to
// publish them whole. msgs holds [u16 length][message] records; they get
// sequence number next-1.
func (h *Handler) rebuild(msgs []byte, next uint64) {
	for _, s := range h.shards {
		h.pushMarker(s, markerRebuild, next)
	}
	now := clock.Now()
	h.pickup = now
	// The snapshot's messages were not received from a line: their latency
	// is a repair's, recorded apart from the live path's (Repairing).
	repairing := h.arb.repairing
	h.arb.repairing = true
	it := moldudp64.Packet{Blocks: msgs}.Iter() // the same framing as a packet's blocks
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		if len(msg) > 0 && msg[0] == glimpseSnapshot {
			continue
		}
		h.routeMsg(msg, next-1, now)
	}
	h.arb.repairing = repairing
	for _, s := range h.shards {
		h.pushMarker(s, markerRebuilt, next)
	}
}

// sessionChanged is the arbiter's SessionFunc: the first lock is logged; a
// change (a confirmed session replacing a silent one, or the followed
// session's sequence restarting under the same name) empties the books,
// flagged, and has them rebuilt: by snapshot when one is configured, else
// by re-requesting the new session from its start; with no recovery source
// they are whole once the new session came from its start (newSessionWhole).
func (h *Handler) sessionChanged(old, new moldudp64.Session) {
	select {
	case h.sessionLog <- [2]moldudp64.Session{old, new}:
	default: // the logger is behind; the counters still have it
	}
	if old == (moldudp64.Session{}) {
		return
	}
	h.rebuild(nil, 1)
	if h.rec != nil {
		h.rec.sessionChanged(old, new)
	} else {
		h.pushStaleAll()
		h.newSession, h.newSessionGaps = true, h.arb.Stats.Gaps
	}
}

// newSessionWhole runs on the receive thread between batches while a
// session change without a recovery source waits for the new session:
// once it was delivered from sequence number 1 on with no gap declared
// (nothing of it is missing), the books, emptied at the change, are whole;
// once a gap was declared in it they stay flagged (nothing repairs it).
func (h *Handler) newSessionWhole() {
	switch {
	case h.arb.Stats.Gaps != h.newSessionGaps:
		h.newSession = false
	case h.arb.Next() > 1:
		h.newSession = false
		h.markWhole()
	}
}

func (h *Handler) pushStaleAll() { h.pushStale(h.arb.Next()) }

// pushStale flags every book possibly stale, in band at sequence number
// seq: a marker in every shard's ring (see gap).
func (h *Handler) pushStale(seq uint64) {
	for _, s := range h.shards {
		h.pushMarker(s, markerStale, seq)
	}
}

// markWhole clears the possibly-stale flag of every book: no gap is open.
func (h *Handler) markWhole() {
	for _, s := range h.shards {
		h.pushMarker(s, markerWhole, h.arb.Next())
	}
}

// endBatch ends a run-to-completion batch: publish what it changed and
// record its latencies. It returns the time read after the publish, or 0
// when nothing happened or the shards publish.
func (h *Handler) endBatch() int64 {
	if h.inline != nil {
		return h.inline.endBatch()
	}
	return 0
}

// push copies one message into a shard's ring (in run to completion:
// applies it), waiting (never dropping) when
// the shard is behind; the ring counts each wait once as back-pressure.
func (h *Handler) push(s *shard, msg []byte, seq uint64, rxTime int64) {
	repaired := h.arb.Repairing()
	if s.ring == nil {
		s.apply(msg, seq, rxTime, h.pickup, repaired)
		h.routed++
		return
	}
	e := h.reserve(s)
	// A message longer than the slot keeps its first maxMsgLen bytes:
	// still longer than its type's fields (maxMsgLen).
	e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, rxTime, h.pickup, 0, uint8(copy(e.data[:], msg)), repaired
	s.ring.Commit(1)
	h.routed++
}

// pushMarker puts a control slot (not a message) into a shard's ring.
func (h *Handler) pushMarker(s *shard, kind uint8, seq uint64) {
	switch kind {
	case markerStale, markerRebuild:
		h.flagged = true
		h.flagMarks++
	case markerWhole:
		h.flagged = false
	}
	if s.ring == nil {
		s.mark(kind)
		return
	}
	e := h.reserve(s)
	e.seq, e.rxTime, e.pickup, e.kind, e.n, e.repaired = seq, 0, h.pickup, kind, 0, false
	s.ring.Commit(1)
}

// reserve returns a free slot of s's ring, waiting while it is full:
// never dropping. ReserveWait takes a free slot without counting anything
// and counts a wait once, however long; a Reserve before it, or a wait cut
// into timed slices, would count each wait two or more times.
func (h *Handler) reserve(s *shard) *slot {
	for {
		// Returns nothing only once the ring is closed, which Stop does
		// after this thread ended.
		if v := s.ring.ReserveWait(1, 0); len(v) == 1 {
			return &v[0]
		}
	}
}

// gap is the Arbiter's GapFunc: flag every book possibly stale (the missing
// messages could belong to any instrument) and log the range. The flag
// travels in band, as a marker slot in every shard's ring, so it lands
// exactly between the messages before and after the gap, and reaches a
// shard even when no message follows. now is the arbiter's (see GapFunc).
func (h *Handler) gap(r moldudp64.Range, now int64) {
	h.pushStale(r.First)
	if h.rec != nil {
		h.rec.gap(r, now)
	}
	select {
	case h.gapLog <- r:
	default: // the logger is behind; the counters still have it
	}
}

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

// Failed is closed when the handler can no longer publish: the shm file
// was truncated under the writer (Err says so). Its owner then calls Stop,
// whose error includes Err's.
func (h *Handler) Failed() <-chan struct{} { return h.failed }

// Err is the error that closed Failed (wrapping shm.ErrTruncated), or nil.
func (h *Handler) Err() error {
	if p := h.failErr.Load(); p != nil {
		return *p
	}
	return nil
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

// Delivered returns the messages the arbiter delivered so far.
func (h *Handler) Delivered() uint64 { return h.delivered.Load() }

// Applied returns the messages the shards applied so far.
func (h *Handler) Applied() uint64 {
	var n uint64
	for _, s := range h.shards {
		n += s.applied.Load()
	}
	return n
}

// Mode is the mode the pipeline runs in (never ModeAuto).
func (h *Handler) Mode() Mode { return h.mode }

// Backend names the receive backend in use.
func (h *Handler) Backend() string { return h.recv.Backend() }

// ShmPath is the shared-memory file the books are published to.
func (h *Handler) ShmPath() string { return h.w.Path() }

// Stop stops receiving, lets the shards drain what they hold, publishes,
// marks the shared memory closed and releases everything.
//
// The order keeps the shm writer's lock-free publish path away from its
// Close: the receive thread (which in run to completion also applies,
// publishes and rebinds) ends first, then the shard threads (publish,
// Rebind), then housekeeping (Heartbeat), and only then the writer is
// closed. What may still run during Close are readers of the handler:
// metrics scrapes (Collector, Exposition: Writer.LastHeartbeat and
// SlotUsage, via Stats; an http.Server's Close does not wait for a scrape
// in flight) and Stats callers. Those writer methods never read the
// mapping, and the others that do take the lock Close takes
// (shm.Writer.Close).
func (h *Handler) Stop() error {
	if h.stop.Swap(true) {
		// Another call stops it: wait for that one, and give its error.
		<-h.stopped
		return h.stopErr
	}
	defer close(h.stopped)
	<-h.rxDone // Receive returns within the poll timeout; the thread closes the receiver
	errRx := h.closeErr
	for _, s := range h.shards {
		if s.ring != nil {
			s.ring.Close()
		}
	}
	h.wg.Wait()
	h.settleDuplicates()
	close(h.done)
	h.hk.Wait() // no heartbeat after the mapping is gone
	errShm := h.w.Close()
	var errCap error
	if h.capFile != nil {
		errCap = h.capFile.Close() // after the receive thread: nothing is Put any more
	}
	h.stopErr = errors.Join(h.Err(), errRx, errShm, errCap)
	return h.stopErr
}

// settleDuplicates runs in Stop, sharded, once every shard thread has
// ended: a book its shard's publisher left unpublished because another
// shard's binding of its symbol stood (a duplicate whose holder, in
// another shard, left the symbol; a binding that shard had yet to retire)
// is asked again when that binding is retired, at its shard's next flush
// (Publisher.flush: one after each batch, and one each time the shard
// idles 50 ms). Stop closes every ring at once, so a shard could drain
// and end before another retired the binding: no next flush, and the
// book, which run to completion publishes in the same batch, was missing
// from the file the handler leaves. Each shard's publisher flushes once
// more here, on Stop's goroutine (the shard threads have ended), until a
// round retires no binding; then the shards' counters are copied again
// (Stats after Stop count what this published).
// Nothing is asked when no refusal stands (Publisher.flush returns at
// once), nor after a fault on the shm file (the writer is closed).
func (h *Handler) settleDuplicates() {
	if h.inline != nil || h.Err() != nil {
		return
	}
	// A publish stores into the mapping: a file truncated under the
	// writer is a fault, reported as the shard threads report it.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() { h.shmFault(recover(), "stop") }()
	// A round's binds retire nothing but in a chain of refusals across
	// shards, one link a round: bounded, should a chain never end.
	for range 2 * len(h.shards) {
		n := h.w.Retirements()
		for _, s := range h.shards {
			s.pub.Flush()
		}
		if h.w.Retirements() == n {
			break
		}
	}
	for _, s := range h.shards {
		s.copyStats(true)
	}
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
