package shm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/proto"
	"github.com/marketfeed/feedhandler/proto/bookfb"
)

const schemaVersion = proto.SchemaVersion

// Level is one price level: identical fields to book.Level, so a book level
// converts with shm.Level(l). Its memory is that of an encoded level in a
// slot (16 bytes, Price, Orders, Shares) on little-endian machines, where
// Begin hands out the slot's level vectors as []Level.
type Level struct {
	Price  uint32
	Orders uint32
	Shares uint64
}

// Snapshot is the writer's input: the state of one instrument's book after
// the messages applied so far. The pipeline owns it and reuses it; Publish
// copies what it needs.
type Snapshot struct {
	Locate          uint16
	Seq             uint64 // MoldUDP64 sequence number of the last applied message
	ExchangeTime    uint64 // ITCH timestamp of the last applied message, ns since midnight
	ReceiveTime     int64  // Unix ns when that message was received
	PublishTime     int64  // Unix ns; 0 makes Publish stamp the current time
	State           bookfb.TradingState
	Flags           bookfb.Flags
	SystemEvent     byte
	Bids            []Level // best first, at most Depth
	Asks            []Level // best first, at most Depth
	BidLevels       uint32  // price levels in the full book
	AskLevels       uint32
	LastTradePrice  uint32
	LastTradeShares uint64
	Volume          uint64
	Messages        uint64
}

// TradingState converts the ITCH Stock Trading Action state ('H', 'P', 'Q',
// 'T') into the schema's enum; anything else is TradingStateUnknown. It is
// a look-up (every publish converts its book's state): a byte indexes the
// table without a bounds check.
func TradingState(itch byte) bookfb.TradingState { return tradingStates[itch] }

var tradingStates = [256]bookfb.TradingState{
	'H': bookfb.TradingStateHalted,
	'P': bookfb.TradingStatePaused,
	'Q': bookfb.TradingStateQuotationOnly,
	'T': bookfb.TradingStateTrading,
}

// Config describes a feed file to create.
type Config struct {
	// Name is the feed: a bare name is a file under /dev/shm, a name with a
	// slash a path.
	Name string
	// Instruments is the number of slots (instruments that can be registered).
	Instruments int
	// Depth is the number of levels per side a snapshot carries.
	Depth int
	// JournalLen is the number of change-journal records, a power of two.
	// Zero means 65536.
	JournalLen int
	// HeartbeatInterval is how often the writer promises to call Heartbeat;
	// readers declare it dead after StaleAfter (see OpenOptions). Zero means
	// 100ms.
	HeartbeatInterval time.Duration
	// Mode is the file's permission bits (the process umask does not
	// apply). Zero means 0640: the writer's user writes, its group reads,
	// nobody else (see "Entitlements" in docs/SHM.md).
	Mode os.FileMode
	// Group owns the file: a group name or a numeric gid. Empty means the
	// writer's effective group. A writer that is not root must be a member.
	Group string
	// SingleWriter promises that Publish is never called by two goroutines
	// at once (run to completion, replay): the journal then needs no
	// atomic claim, and each publish appends its record with plain ordered
	// stores. False (the default) lets several goroutines publish
	// different locates concurrently (book shards). Breaking the promise
	// corrupts the journal; readers are not told. A binding that retires
	// a published slot (Register, Rebind, Unbind) appends a journal record
	// too (see "Retired slots" in docs/SHM.md), so with SingleWriter the
	// publishing goroutine binds, or bindings never overlap a publish.
	SingleWriter bool
	// Log receives the writer's rare warnings (slots running out). The
	// zero Logger logs nothing.
	Log zerolog.Logger
}

// DefaultMode is the permission of a feed file when Config.Mode is zero.
const DefaultMode os.FileMode = 0o640

// Writer publishes snapshots into one feed file. Its methods are safe for
// concurrent use, with two rules: two goroutines never publish the same
// locate at once (each slot has a single writer), and no publish (Publish,
// Begin, Commit) runs while Close does (see Close). With
// Config.SingleWriter, one goroutine publishes, whatever the locates (the
// journal head is its own counter). A Rebind or Unbind of a locate may
// publish its retired slot once more (the retirement's journal record), so
// it counts as a publish of that locate: never while another goroutine
// publishes the locate.
type Writer struct {
	m    mapping
	l    layout
	path string

	// mu serializes Register and Rebind (bind), and keeps the mapping
	// alive for every method that reads or writes it except the lock-free
	// publish path (Publish, Begin, Commit) and Heartbeat: Register,
	// Rebind, Unbind and Slot check closed under mu, and Close unmaps
	// under mu. The publishing threads take it (a book's first publish,
	// a locate re-assigned), so nothing that a housekeeping goroutine
	// calls takes it: a goroutine descheduled while holding it would
	// hold up the receive thread (Heartbeat counts itself in beating
	// instead).
	mu sync.Mutex
	// count is the registered instruments, live and retired: changed
	// under mu, read atomically by SlotUsage, which must not read the
	// mapping (Close unmaps it).
	count atomic.Uint64

	single bool // Config.SingleWriter
	// fault is faultSeen once Fault found the file truncated under the
	// mapping (under mu): closed is set, and Close unmaps without
	// storing, then sets faultClosed. In single's word, beside closed.
	fault  uint8
	closed atomic.Bool // set under mu (Close, Fault); loaded without it by the publish path
	head   uint64      // journal head, single writer only (the writer's own copy)

	// Registration only, after the fields a publish reads.
	live       map[symKey]uint64 // symbol -> slot of its live directory entry (under mu)
	epochs     []uint64          // by slot: the epoch of its binding (Rebind; Register's is 0) (under mu)
	warned     bool              // the slots-over-3/4 warning was logged (under mu)
	warnedFull bool              // the slots-exhausted error was logged (under mu)
	// closeErrno is the first Close's munmap failure (under mu), for a
	// second Close to return: an errno in the padding of this word, as
	// an error field would grow the Writer past 352 bytes (see beat).
	closeErrno uint16
	// beating counts the Heartbeat calls between their closed check and
	// their store: Close, once closed is set, waits for none to be left
	// before it unmaps (Heartbeat takes no lock). It fills the word of
	// warned and warnedFull, so the Writer keeps its size (see beat).
	beating atomic.Int32
	retired atomic.Uint64 // retired directory entries
	log     zerolog.Logger

	// beat is the last heartbeat stored in the header, for LastHeartbeat,
	// which must not read the mapping (metrics run during Close). Apart
	// from the fields a publish reads: Heartbeat stores it.
	//
	// closed shares single's word so that beat keeps the Writer at 352
	// bytes, its size before beat: at 360 (the 384-byte size class) the
	// shared-journal BenchmarkPublish ran 31.9 ns/snapshot against 27.4
	// (medians of 5) with the same machine code, an effect of where the
	// Writer lands, not of the code.
	beat atomic.Int64
}

// Path returns the file the writer publishes into.
func (w *Writer) Path() string { return w.path }

// Info describes the file.
func (w *Writer) Info() Info { return infoOf(&w.l) }

// Close marks the feed closed (a last heartbeat, then the closed state in
// the header) and unmaps it. The file stays so that readers can still read
// the final books; Remove deletes it. A second Close does nothing and
// returns the first's result (after waiting for it to finish).
//
// Close takes w.mu, so Register, Rebind, Unbind and Slot may run
// concurrently with it: each either completes before the unmap or fails
// with ErrClosed. Heartbeat may too: Close waits for one that passed its
// closed check to store its beat (a later one does nothing).
// LastHeartbeat, SlotUsage, Retirements, SymbolBound, Path and Info never
// read the mapping and may run at any time.
//
// Publish, Begin and Commit take no lock (the per-publish path stays
// lock-free), and Close does not wait for them: a publish racing with
// Close writes into the unmapped file (a fault). Their caller must make
// every Publish return and every Begin be committed before it calls Close
// (join the publishing goroutines first, as the handler's Stop does); a
// Publish or Begin that the caller orders after Close fails with
// ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() && w.fault != faultSeen {
		return w.closeErr(w.closeErrno)
	}
	if w.fault == 0 && !w.markClosed() {
		w.fault = faultSeen // truncated under the mapping since the last publish
	}
	if w.fault != 0 {
		w.fault = faultClosed
	}
	w.closed.Store(true)
	forgetFile(w.l.generation)
	// A Heartbeat that loaded closed before the store above is counted
	// in beating: it stores its beat into the mapping, so wait for it
	// (a few stores, unless its goroutine lost the CPU). One that starts
	// now sees closed and does nothing.
	for w.beating.Load() != 0 {
		time.Sleep(10 * time.Microsecond)
	}
	if err := unix.Munmap(w.m.mem); err != nil {
		var errno unix.Errno
		if !errors.As(err, &errno) || errno == 0 || errno > 0xffff {
			errno = unix.EINVAL // unix.Munmap fails with an errno only
		}
		w.closeErrno = uint16(errno)
		return w.closeErr(w.closeErrno)
	}
	w.m.mem = nil
	return nil
}

// closeErr is Close's error for a munmap that failed with errno (0: none).
func (w *Writer) closeErr(errno uint16) error {
	if errno == 0 {
		return nil
	}
	return fmt.Errorf("close shm %s: %w", w.path, unix.Errno(errno))
}

// Remove deletes a feed file (readers that have it mapped keep their view).
func Remove(name string) error {
	if err := os.Remove(Path(name)); err != nil {
		return fmt.Errorf("remove shm: %w", err)
	}
	return nil
}

// Info describes a feed file.
type Info struct {
	LayoutVersion     int
	Generation        uint64 // random, new for every file a writer creates
	StartTime         time.Time
	WriterPid         int
	Instruments       int // slot capacity
	Depth             int
	JournalLen        int
	SlotSize          int
	MaxSnapshot       int // bytes a Read buffer needs
	HeartbeatInterval time.Duration
}

func infoOf(l *layout) Info {
	return Info{
		LayoutVersion:     LayoutVersion,
		Generation:        l.generation,
		StartTime:         time.Unix(0, l.startTime),
		WriterPid:         l.pid,
		Instruments:       int(l.capacity),
		Depth:             l.depth,
		JournalLen:        int(l.journalLen),
		SlotSize:          int(l.slotSize),
		MaxSnapshot:       int(l.maxSnapshot),
		HeartbeatInterval: time.Duration(l.heartbeatEvery),
	}
}
