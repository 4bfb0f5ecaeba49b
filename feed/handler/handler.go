package handler

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
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
	wake    waker            // what ends the receive wait besides the lines (syncWake)
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
	// drainedAt: the receive loop's latest empty poll since its last
	// batch (0: none since; reset once that batch is captured), for the
	// capture, which marks with it what the receive thread records until
	// the next batch: that batch (Put), a failed receive call (Failed),
	// a re-request answer, held or not (Recovered, RecoveredDropped), a
	// freeze for a snapshot (Freeze) and a re-request given up (GaveUp).
	// A replay ticks at it before them, as the live arbiter did.
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
	delivered  atomic.Uint64    // messages the arbiter delivered (routed to shards); written by the receive thread alone (single.Store)
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
