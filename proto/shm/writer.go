package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/mem"
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
// 'T') into the schema's enum; anything else is TradingStateUnknown.
func TradingState(itch byte) bookfb.TradingState {
	switch itch {
	case 'H':
		return bookfb.TradingStateHalted
	case 'P':
		return bookfb.TradingStatePaused
	case 'Q':
		return bookfb.TradingStateQuotationOnly
	case 'T':
		return bookfb.TradingStateTrading
	}
	return bookfb.TradingStateUnknown
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

// Create makes a new feed file and maps it. The file is built under a
// temporary name and renamed into place, so a reader never sees a partial
// header; an existing file is replaced (its readers see ErrRestarted) unless
// a live writer still owns it (ErrInUse).
func Create(cfg Config) (*Writer, error) {
	if cfg.Name == "" {
		return nil, errors.New("create shm: empty name")
	}
	path := Path(cfg.Name)
	if bigEndian {
		return nil, errBigEndian("create", path)
	}
	if cfg.Instruments <= 0 || cfg.Instruments > MaxLocates {
		return nil, fmt.Errorf("create shm %s: instruments %d out of range 1..%d", path, cfg.Instruments, MaxLocates)
	}
	if cfg.Depth <= 0 || cfg.Depth > maxDepth {
		return nil, fmt.Errorf("create shm %s: depth %d out of range 1..%d", path, cfg.Depth, maxDepth)
	}
	if cfg.JournalLen == 0 {
		cfg.JournalLen = defaultJournalLen
	}
	if cfg.JournalLen < 2 || cfg.JournalLen&(cfg.JournalLen-1) != 0 || cfg.JournalLen > 1<<30 {
		return nil, fmt.Errorf("create shm %s: journal length %d is not a power of two in 2..2^30", path, cfg.JournalLen)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 100 * time.Millisecond
	}
	if cfg.HeartbeatInterval > MaxHeartbeatInterval {
		return nil, fmt.Errorf("create shm %s: heartbeat interval %v above %v", path, cfg.HeartbeatInterval, MaxHeartbeatInterval)
	}
	if cfg.Mode == 0 {
		cfg.Mode = DefaultMode
	}
	if cfg.Mode&^os.ModePerm != 0 || cfg.Mode&0o200 == 0 {
		return nil, fmt.Errorf("create shm %s: mode %04o: want permission bits only, writable by the owner", path, uint32(cfg.Mode))
	}
	gid := -1
	if cfg.Group != "" {
		g, err := LookupGroup(cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("create shm %s: %w", path, err)
		}
		gid = g
	}
	if err := checkOwner(path); err != nil {
		return nil, fmt.Errorf("create shm %s: %w", path, err)
	}

	removeStaleTemps(path)

	l := plan(cfg.Instruments, cfg.Depth, cfg.JournalLen, maxSnapshotSize(cfg.Depth))
	now := time.Now()
	l.startTime = now.UnixNano()
	l.pid = os.Getpid()
	l.heartbeatEvery = int64(cfg.HeartbeatInterval)
	l.generation = rand.Uint64() | 1
	created.Lock()
	if created.generations == nil {
		created.generations = make(map[uint64]bool)
	}
	created.generations[l.generation] = true
	created.Unlock()

	tmp := filepath.Join(filepath.Dir(path), tempPrefix(path)+strconv.Itoa(l.pid)+"."+strconv.FormatUint(rand.Uint64(), 36))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create shm %s: %w", path, err)
	}
	fail := func(err error) (*Writer, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("create shm %s: %w", path, err)
	}
	// Group first, then mode: readers never see the file (it is renamed
	// into place below) before both are set.
	if gid >= 0 {
		if err := f.Chown(-1, gid); err != nil {
			return fail(fmt.Errorf("set group %s (gid %d; a writer that is not root must be a member): %w", cfg.Group, gid, err))
		}
	}
	if err := f.Chmod(cfg.Mode); err != nil {
		return fail(fmt.Errorf("set mode %04o: %w", uint32(cfg.Mode), err))
	}
	if err := f.Truncate(int64(l.fileSize)); err != nil {
		return fail(err)
	}
	// Every page allocated now: a tmpfs too small for the file fails here
	// with ENOSPC, not with a SIGBUS at the first store into a page it
	// cannot back (dirtyPages below, or a publish).
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(l.fileSize)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return fail(fmt.Errorf("allocate %d bytes: %w", l.fileSize, err))
	}
	// MAP_POPULATE allocates and maps every page now: no publish takes a
	// page fault.
	mem, err := unix.Mmap(int(f.Fd()), 0, int(l.fileSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	dirtyPages(mem)
	// The symbol map is sized for every slot here, not at the first
	// binding (a publishing thread's): it never grows, and no binding
	// allocates it.
	w := &Writer{m: mapping{mem: mem}, l: l, path: path, single: cfg.SingleWriter, log: cfg.Log,
		epochs: make([]uint64, l.capacity), live: make(map[symKey]uint64, l.capacity)}
	w.m.writeHeader(l)
	atomic.StoreInt64(w.m.i64(offHeartbeat), now.UnixNano())
	w.beat.Store(now.UnixNano())
	if err := os.Rename(tmp, path); err != nil {
		unix.Munmap(mem)
		return fail(explainReplace(path, err))
	}
	rememberFile(l.generation, f)
	f.Close()
	return w, nil
}

// dirtyPages stores a zero into every page of a new file's mapping (all
// zero: nothing changes), before any reader can see the file.
//
// MAP_POPULATE has the kernel allocate and map every page, but the first
// store from the process into each page still costs a trap on the lab's VM,
// about 5 µs (BenchmarkFirstStore; the same after MADV_POPULATE_WRITE, for
// private memory too). Without this the publishing thread paid it once for
// each page of the journal's first lap (one every 256 publishes) and of
// each slot's first publish. Stored here, they cost Create the same once.
func dirtyPages(m []byte) { mem.Touch(m) }

// explainReplace adds to a refused rename over path why it was refused
// when the file belongs to another user in a sticky directory (/dev/shm
// is mode 1777): only the file's owner, or a holder of cap_fowner, may
// replace or remove it there.
func explainReplace(path string, err error) error {
	owner, ok := ForeignInSticky(path)
	if !errors.Is(err, unix.EPERM) || !ok {
		return err
	}
	return fmt.Errorf("%w (the existing file belongs to uid %d and %s is sticky: only its owner may replace it; remove it)", err, owner, filepath.Dir(path))
}

// ForeignInSticky reports whether a file exists at path that belongs to
// another user than this process's, in a sticky directory (/dev/shm is mode
// 1777) this process does not own either: then only the file's owner or a
// holder of cap_fowner may rename over it or remove it (rename(2)). owner
// is the file's uid.
func ForeignInSticky(path string) (owner uint32, ok bool) {
	var st, dir unix.Stat_t
	if unix.Stat(path, &st) != nil || unix.Stat(filepath.Dir(path), &dir) != nil {
		return 0, false
	}
	uid := os.Geteuid()
	return st.Uid, dir.Mode&unix.S_ISVTX != 0 && int(st.Uid) != uid && int(dir.Uid) != uid
}

// defaultJournalLen is Config.JournalLen's default.
const defaultJournalLen = 1 << 16

// FileSize is the size of the file Create makes for cfg. The file system
// must have it free besides the file it replaces: Create builds the new
// file under a temporary name and renames it over the old one.
func FileSize(cfg Config) int64 {
	if cfg.JournalLen == 0 {
		cfg.JournalLen = defaultJournalLen
	}
	return int64(plan(cfg.Instruments, cfg.Depth, cfg.JournalLen, maxSnapshotSize(cfg.Depth)).fileSize)
}

// CheckOwner returns ErrInUse, with the writer's pid, when a live writer
// other than this process publishes to the feed file at path: Create
// would refuse to replace it.
func CheckOwner(path string) error { return checkOwner(path) }

// checkOwner refuses to replace a file whose writer is alive: another
// process, not closed, fresh heartbeat. A file this process wrote, a dead
// writer's file or a foreign file is replaced.
func checkOwner(path string) error {
	r, err := Open(path)
	if err != nil {
		return nil
	}
	defer r.Close()
	// This process's pid on a file it did not create is another pid
	// namespace's process under the same number (pid 1 of two
	// containers sharing /dev/shm), or this pid's before an exec: the
	// pid says nothing of it, the heartbeat decides, as for a pid not
	// visible from here.
	ownPid := r.l.pid == os.Getpid()
	if ownPid && createdHere(r.l.generation) {
		return nil
	}
	if err := r.Check(); err != nil {
		return nil // closed, dead, or replaced since
	}
	if err := unix.Kill(r.l.pid, 0); !ownPid && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("writer pid %d: %w", r.l.pid, ErrInUse)
	}
	// The pid is gone here (or is this process's) but the heartbeat is
	// fresh: a writer that died within the last two intervals (a restart
	// right after a crash), or a live one in another pid namespace. A
	// live one beats: watch the heartbeat for two intervals and a half,
	// at most a second (beyond that the pid decides, as it did for every
	// interval before readers learned to doubt it).
	every := time.Duration(r.l.heartbeatEvery)
	beat := r.Heartbeat()
	for deadline := time.Now().Add(min(every*5/2, time.Second)); time.Now().Before(deadline); {
		time.Sleep(min(max(every/10, time.Millisecond), 10*time.Millisecond))
		if r.Check() != nil {
			return nil // closed (its last beat comes just before), or replaced
		}
		if !r.Heartbeat().Equal(beat) {
			if r.Check() != nil {
				return nil
			}
			where := "not visible from here"
			if ownPid {
				where = "another pid namespace's: this process has the pid"
			}
			return fmt.Errorf("writer pid %d (%s) beats: %w", r.l.pid, where, ErrInUse)
		}
	}
	return nil
}

// created holds the generations of the files this process created: a file
// that names this process's pid and another generation is not its own
// (checkOwner).
var created struct {
	sync.Mutex
	generations map[uint64]bool
}

// createdHere reports whether this process created the file of generation g.
func createdHere(g uint64) bool {
	created.Lock()
	defer created.Unlock()
	return created.generations[g]
}

// tempPrefix is the name prefix of the files Create builds before renaming.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp." }

// staleTempAge is how old a temporary file of a gone pid must be for
// removeStaleTemps: Create renames its file within seconds, so an older one
// is a dead writer's. The age is what tells, not the pid alone: a writer in
// another pid namespace, inside its Create, has a pid this process cannot
// see.
const staleTempAge = time.Minute

// removeStaleTemps deletes the temporary files of writers that died inside
// Create (their pid is gone and the file is older than staleTempAge). A
// file under this process's own pid is not one of its Creates (this one
// has not made its file yet, and none takes a minute): another pid
// namespace's process under the same number (a container's pid 1
// restarted after dying inside Create), judged by its age as a pid not
// visible from here is.
func removeStaleTemps(path string) {
	dir, prefix := filepath.Dir(path), tempPrefix(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, ".")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || (pid != os.Getpid() && !errors.Is(unix.Kill(pid, 0), syscall.ESRCH)) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Path returns the file the writer publishes into.
func (w *Writer) Path() string { return w.path }

// Info describes the file.
func (w *Writer) Info() Info { return infoOf(&w.l) }

// Register assigns a slot to an instrument. Registering a locate again with
// the same symbol is a no-op; with another symbol it is an error. symbol is
// ASCII, trailing spaces are dropped, at most 8 bytes.
//
// A symbol registered under another locate before (ITCH reassigns locates
// every session) moves: its old directory entry is retired and its old
// locate unbound, as Rebind does (see there).
//
// Register knows no epochs: it binds as above whatever the epochs of the
// bindings it replaces, and its binding has epoch 0, so a Rebind at epoch
// 0 treats it as a binding of its own epoch and one at a later epoch as
// an older one (see Rebind).
//
// After Close (also one running concurrently) it fails with ErrClosed.
func (w *Writer) Register(locate uint16, symbol string) error {
	sym := trimSymbol(symbol)
	if len(sym) == 0 || len(sym) > 8 {
		return fmt.Errorf("register locate %d: bad symbol %q", locate, strings.Clone(symbol))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return fmt.Errorf("register locate %d: %w", locate, ErrClosed)
	}
	_, _, err := w.bind(locate, sym, false, 0)
	if err != nil {
		return fmt.Errorf("register locate %d %q: %w", locate, strings.Clone(sym), err)
	}
	return nil
}

// bind binds locate to sym (trimmed, 1..8 bytes) under w.mu, for Register
// and Rebind, and returns the locate's slot. A locate bound to sym already
// keeps its slot. One bound to another symbol is an error, unless rebind:
// then its entry is retired (retired is true) and it gets a fresh slot.
// Another locate bound to sym loses it: its entry is retired and it is
// unbound, so that one symbol never has two live entries.
//
// With rebind, epoch orders the bindings (Rebind's rules): a binding never
// replaces one of a later epoch (ErrStaleBinding), and a symbol bound to
// another locate in the same epoch stays there (ErrDuplicateSymbol). Every
// check comes before any retirement: a refused bind changes nothing.
// Without rebind (Register) epochs are not checked and the binding's is 0.
//
// Store order, for readers (which load the count, then the entries, or the
// index, then an entry): every retirement (the flag, then the index entry
// cleared) comes before the new entry's index and count stores, so a
// reader that sees the new entry sees the old ones retired. A reader may
// find sym nowhere for the few stores in between, never at two locates.
func (w *Writer) bind(locate uint16, sym string, rebind bool, epoch uint64) (sl Slot, retired bool, err error) {
	key := keyOf(sym)
	idx := w.m.indexEntry(&w.l, locate)
	bound, boundSym := uint64(0), []byte(nil)
	if v := atomic.LoadUint32(idx); v != 0 {
		bound = uint64(v - 1)
		boundSym = dirSymbol(w.m.dirEntry(&w.l, bound))
		if string(boundSym) == sym {
			if rebind {
				w.epochs[bound] = max(w.epochs[bound], epoch)
			}
			return slotOf(uint32(bound), byte(len(sym))), false, nil
		}
		if !rebind {
			return Slot{}, false, fmt.Errorf("already registered as %q", string(boundSym))
		}
		if e := w.epochs[bound]; e > epoch {
			return Slot{}, false, fmt.Errorf("locate bound to %q at epoch %d, after epoch %d: %w", string(boundSym), e, epoch, ErrStaleBinding)
		}
	}
	other, moved := w.live[key]
	if moved && rebind {
		otherLocate := dirLocate(w.m.dirEntry(&w.l, other))
		switch e := w.epochs[other]; {
		case e > epoch:
			return Slot{}, false, fmt.Errorf("symbol bound to locate %d at epoch %d, after epoch %d: %w", otherLocate, e, epoch, ErrStaleBinding)
		case e == epoch:
			return Slot{}, false, fmt.Errorf("symbol bound to locate %d in the same epoch %d: %w", otherLocate, epoch, ErrDuplicateSymbol)
		}
	}
	// Decided: retire what the new binding replaces.
	if len(boundSym) != 0 {
		// The locate's own binding: its slot is the caller's to write.
		w.retire(bound, keyOf(boundSym), true)
		retired = true
	}
	if moved {
		// The symbol moved to this locate (a new session): its old
		// locate's entry names a stale book. That locate's slot is
		// another publisher's (book shards publish by locate), unless
		// one goroutine publishes everything.
		w.retire(other, key, w.single)
	}
	slot := w.count.Load()
	if slot == w.l.capacity {
		w.warnSlots(true)
		return Slot{}, retired, fmt.Errorf("%w (%d)", ErrFull, w.l.capacity)
	}
	e := w.m.dirEntry(&w.l, slot)
	e[0], e[1] = byte(locate), byte(locate>>8)
	e[2] = byte(len(sym))
	copy(e[8:16], "        ")
	copy(e[8:], sym)
	off := w.l.slotOff(slot)
	atomic.StoreUint32(w.m.slotLocate(off), uint32(locate))
	writePrefix(w.m.slotData(&w.l, off), locate, key[:len(sym)])
	// Readers find the directory entry through the index or the count, both
	// stored after the entry.
	atomic.StoreUint32(idx, uint32(slot+1))
	w.count.Store(slot + 1)
	atomic.StoreUint32(w.m.u32(offCount), uint32(slot+1))
	w.live[key] = slot
	w.epochs[slot] = epoch
	w.warnSlots(false)
	return slotOf(uint32(slot), byte(len(sym))), retired, nil
}

// symKey is a trimmed symbol (1 to 8 bytes) padded with zero bytes: the
// writer's map key, so that binding a symbol allocates nothing (a string
// key would keep the caller's string, which then has to be on the heap,
// made on the publishing thread). A
// trimmed symbol never ends in a zero byte, so two symbols never share a
// key.
type symKey [8]byte

// keyOf returns sym's key; sym is trimmed and at most 8 bytes (a string
// given to bind, or a directory entry's symbol bytes).
func keyOf[S string | []byte](sym S) (k symKey) {
	copy(k[:], sym)
	return k
}

// retire flags the live directory entry of slot (symbol sym) retired and
// unbinds its locate, under w.mu. The flag is stored before the index entry
// is cleared, and both before any later index or count store, which
// publish them.
//
// A slot that holds a snapshot (version v) gets a journal record of its
// locate at version v+1 first, so that a follower learns that its book is
// gone (docs/SHM.md, "Retired slots"): the record of v+1 is a final publish
// of the slot when own says the caller may write it (Config.SingleWriter,
// or the locate the caller binds or unbinds: no other goroutine publishes
// it), the last snapshot again flagged PossiblyStale, appended before the
// retirement, so that a read returns it (or, once the index entry is
// cleared, ErrUnknownLocate). A slot of another publisher (shared journal,
// a symbol that moved from its locate) is not written: a publish of it may
// be under way, and the writer must not be a second writer of the slot.
// Its record then follows the clearing of the index entry, at one version
// past the slot's (past the one under way, if any): no read of the locate
// reaches the slot any more. Nothing of this is on the publish path.
func (w *Writer) retire(slot uint64, sym symKey, own bool) {
	e := w.m.dirEntry(&w.l, slot)
	locate := dirLocate(e)
	off := w.l.slotOff(slot)
	seq := w.m.slotSeq(off)
	s0 := atomic.LoadUint64(seq)
	final := own && s0 != 0 && s0&1 == 0 // odd: a Begin of its own not committed; 0: nothing to retract
	if final {
		w.publishRetired(off, seq, s0, locate)
	}
	e[dirFlags] |= dirRetired
	// A publisher that kept the slot's Slot fails from now on, instead of
	// writing where no reader looks (a publish already inside the slot
	// completes).
	atomic.StoreUint32(w.m.slotLocate(off), uint32(locate)|slotRetired)
	if idx := w.m.indexEntry(&w.l, locate); atomic.LoadUint32(idx) == uint32(slot+1) {
		atomic.StoreUint32(idx, 0)
	}
	// Loaded again after the stores above (sequentially consistent): a
	// publish that began before them shows here, odd or done.
	if s := atomic.LoadUint64(seq); !final && !w.single && s != 0 {
		w.appendJournal(locate, (s+1)/2+1)
	}
	delete(w.live, sym)
	w.retired.Add(1)
}

// publishRetired publishes the slot at off (locate's, version s0/2) once
// more, before retire retires it: the same snapshot, flagged
// PossiblyStale, at a new publish time, and its journal record (end). The
// caller is the slot's only writer (retire's own).
func (w *Writer) publishRetired(off slotOffset, seq *uint64, s0 uint64, locate uint16) {
	storeBegin64(seq, s0+1)
	t := w.m.slotData(&w.l, off)[tableAt:]
	le := binary.LittleEndian // Create refuses big-endian hosts
	le.PutUint16(t[fFlags:], le.Uint16(t[fFlags:])|uint16(bookfb.FlagsPossiblyStale))
	le.PutUint64(t[fPublishTime:], uint64(now()))
	w.end(seq, atomic.LoadUint32(w.m.slotLen(off)), s0, locate)
}

// warnSlots logs, once per file, that the slots in use (live and retired)
// passed 3/4 of the capacity, and once that they ran out (full): retired
// slots are not reused, so sessions changing without a restart use up to
// twice the day's symbols (docs/OPERATIONS.md). Under w.mu.
func (w *Writer) warnSlots(full bool) {
	if full {
		if !w.warnedFull {
			w.warnedFull = true
			w.log.Error().Str("shm", w.path).Uint64("slots", w.l.capacity).Uint64("retired", w.retired.Load()).
				Msg("shm slots exhausted: instruments not registered until a restart (retired slots are not reused; raise the slot count)")
		}
		return
	}
	if used := w.count.Load(); !w.warned && used*4 >= w.l.capacity*3 {
		w.warned = true
		w.log.Warn().Str("shm", w.path).Uint64("used", used).Uint64("slots", w.l.capacity).Uint64("retired", w.retired.Load()).
			Msg("shm slots over 3/4 used (retired slots are not reused until a restart; size slots at twice the day's symbols if sessions change without a restart)")
	}
}

// SlotUsage counts a writer's instrument slots.
type SlotUsage struct {
	Capacity int // Config.Instruments
	Used     int // registered, live and retired: Capacity - Used are left
	Retired  int // retired (Rebind, or a symbol moved to another locate): not reused until a restart
}

// Retirements counts the directory entries retired since Create, by any
// caller: a publisher whose binding was refused because its symbol was
// bound elsewhere asks again when it moves (the other binding may be the
// one retired). One atomic load.
func (w *Writer) Retirements() uint64 { return w.retired.Load() }

// SlotUsage returns the writer's slot counts. It allocates nothing, takes
// no lock and never reads the mapping (for metrics, which may run during
// or after Close: the counts stay those of the last registration).
func (w *Writer) SlotUsage() SlotUsage {
	return SlotUsage{Capacity: int(w.l.capacity), Used: int(w.count.Load()), Retired: int(w.retired.Load())}
}

func trimSymbol(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == 0) {
		s = s[:len(s)-1]
	}
	return s
}

// Heartbeat tells readers the writer is alive. Call it at least every
// Config.HeartbeatInterval, also when no message arrives. It takes no lock:
// a heartbeat goroutine that loses its CPU inside it holds up no Register,
// Rebind or Unbind of a publishing thread. It may run while Close does:
// Close waits for a heartbeat that passed its closed check to store it
// before it unmaps, and after Close a heartbeat does nothing.
func (w *Writer) Heartbeat() {
	// Both sequentially consistent (sync/atomic): either this load sees
	// closed, or Close's load of beating, after its store of closed, sees
	// this heartbeat counted.
	w.beating.Add(1)
	defer w.beating.Add(-1)
	if w.closed.Load() {
		return
	}
	if heartbeatHook != nil {
		heartbeatHook()
	}
	w.storeHeartbeat(time.Now().UnixNano())
}

// heartbeatHook, set by tests only, runs inside Heartbeat between its
// closed check and its store: where a descheduled heartbeat goroutine
// stands.
var heartbeatHook func()

// storeHeartbeat stores a heartbeat in the header and in w.beat, on an open
// writer (Heartbeat, counted in beating, or Close, under w.mu before it
// sets closed).
func (w *Writer) storeHeartbeat(now int64) {
	atomic.StoreInt64(w.m.i64(offHeartbeat), now)
	w.beat.Store(now)
}

// LastHeartbeat returns the heartbeat stored in the header (the zero Time
// after Close). It takes no lock and never reads the mapping (the writer
// keeps a copy), so metrics may call it during and after Close.
func (w *Writer) LastHeartbeat() time.Time {
	if w.closed.Load() {
		return time.Time{}
	}
	return time.Unix(0, w.beat.Load())
}

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

// Publish stores s as the latest snapshot of s.Locate, then appends
// (locate, version) to the change journal. It allocates nothing.
//
// Publish is safe for concurrent use by goroutines that publish different
// locates (book shards): each slot has a single writer, the journal is
// shared (see appendJournal). Two goroutines must never publish the same
// locate at once. With Config.SingleWriter only one goroutine may publish
// at all (see end).
//
// Conflation is the caller's: publish each changed locate once per batch
// with its latest state; a reader always sees the newest snapshot published.
func (w *Writer) Publish(s *Snapshot) error {
	data, seq, s0, symLen, publish, err := w.begin(Slot{}, s, len(s.Bids), len(s.Asks))
	if err != nil {
		return err
	}
	w.end(seq, uint32(writeSnapshot(data, s, symLen, publish)), s0, s.Locate)
	return nil
}

// Pending is a publish that Begin started and Commit ends. Between the two
// the slot is being written (readers retry), and the caller writes the
// snapshot's levels into Bids and Asks.
type Pending struct {
	// Bids and Asks are the snapshot's level vectors, of the lengths given
	// to Begin, best first: write every level before Commit, none after.
	// On little-endian machines they are the slot's own memory, so a level
	// written there is not copied again.
	Bids, Asks []Level

	data   []byte // the slot's FlatBuffer
	seq    *uint64
	s0     uint64
	n      uint32 // FlatBuffer length
	bidAt  int    // where the levels go, for the big-endian encoding
	askAt  int
	buf    []Level // big-endian only: Bids and Asks, encoded by Commit
	locate uint16
}

// Slot is where a registered locate's snapshots go, found once with
// Writer.Slot so that Begin reads neither the locate index nor the
// directory. The zero Slot is none.
type Slot struct {
	v uint32 // the slot's index + 1 (at most MaxLocates), and the symbol's length << 24
}

func slotOf(index uint32, symLen byte) Slot { return Slot{index + 1 | uint32(symLen)<<24} }

// index is the slot's index; the zero Slot's wraps to a huge one, beyond
// any writer's capacity.
func (sl Slot) index() uint64 { return uint64(sl.v&(1<<24-1)) - 1 }

func (sl Slot) symLen() int { return int(sl.v >> 24) }

// lookup finds the slot of a registered locate through the locate index
// and the directory (two loads); false if the locate is not registered.
func (w *Writer) lookup(locate uint16) (Slot, bool) {
	v := atomic.LoadUint32(w.m.indexEntry(&w.l, locate))
	if v == 0 {
		return Slot{}, false
	}
	return slotOf(v-1, w.m.dirSymLen(&w.l, uint64(v-1))), true
}

// Slot returns the slot of a registered locate, for Begin. It takes w.mu
// (it reads the mapping, and may run while Close does): look a slot up
// once, not per publish.
func (w *Writer) Slot(locate uint16) (Slot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return Slot{}, fmt.Errorf("slot of locate %d: %w", locate, ErrClosed)
	}
	sl, ok := w.lookup(locate)
	if !ok {
		return Slot{}, fmt.Errorf("slot of locate %d: %w", locate, ErrUnknownLocate)
	}
	return sl, nil
}

// Begin starts a publish of s.Locate, whose slot is sl (from Slot; the zero
// Slot has Begin look the slot up by s.Locate, at the cost of two
// loads), with nb bid and na ask levels: it writes every field of s but its Bids and Asks (ignored),
// and hands the slot's level vectors to the caller in p. Commit(p) ends
// the publish. Between the two the caller writes the levels, and nothing
// else: no other Begin or Publish of the same locate, and, with
// Config.SingleWriter, none at all. Begin and Commit allocate nothing (on a
// big-endian machine, the first Begin with a p allocates its level
// storage).
//
// Publish(s) is Begin, a copy of s's levels, Commit. A caller that reads
// its levels from elsewhere (an order book) writes them straight into the
// slot instead.
//
// On an error nothing was written and Commit must not be called.
func (w *Writer) Begin(sl Slot, s *Snapshot, nb, na int, p *Pending) error {
	// The common case (a little-endian machine, a Slot of this writer
	// for s.Locate, a publish time given) is BeginDirect's, with s's
	// fields; anything else goes the general way, which reports it.
	if t, ok := w.BeginDirect(sl, s.Locate, nb, na, s.PublishTime, p); ok {
		t.set(s)
		return nil
	}
	data, seq, s0, symLen, publish, err := w.begin(sl, s, nb, na)
	if err != nil {
		return err
	}
	p.data, p.seq, p.s0, p.locate = data, seq, s0, s.Locate
	bidAt, askAt, n := writeTable(data, s, symLen, nb, na, publish)
	p.n = uint32(n)
	if levelsInPlace {
		p.Bids, p.Asks = levelView(p.data[bidAt:], nb), levelView(p.data[askAt:], na)
		return nil
	}
	if cap(p.buf) < 2*w.l.depth {
		p.buf = make([]Level, 2*w.l.depth)
	}
	p.bidAt, p.askAt = bidAt, askAt
	p.Bids, p.Asks = p.buf[:nb:nb], p.buf[w.l.depth:w.l.depth+na:w.l.depth+na]
	return nil
}

// Commit ends the publish that Begin started: the snapshot becomes
// readable, and (locate, version) goes to the change journal.
func (w *Writer) Commit(p *Pending) {
	if !levelsInPlace {
		putLevels(p.data[p.bidAt:], p.Bids)
		putLevels(p.data[p.askAt:], p.Asks)
	}
	p.Bids, p.Asks = nil, nil
	w.end(p.seq, p.n, p.s0, p.locate)
}

// begin checks a publish of nb bid and na ask levels of s.Locate into sl
// (the zero Slot: look it up), and makes the slot's count odd (readers
// retry): the start of Publish and Begin. It returns the slot's
// FlatBuffer, its seqlock word and the word's value before, the symbol's
// length and the publish time.
func (w *Writer) begin(sl Slot, s *Snapshot, nb, na int) (data []byte, seq *uint64, s0 uint64, symLen int, publish int64, err error) {
	if w.closed.Load() {
		return nil, nil, 0, 0, 0, fmt.Errorf("publish locate %d: %w", s.Locate, ErrClosed)
	}
	// The clock is read before the slot's offset is computed: off then
	// never lives across a call (a stack spill on every publish).
	publish = s.PublishTime
	if publish == 0 {
		publish = now()
	}
	var off slotOffset
	if sl.v == 0 {
		var ok bool
		if sl, ok = w.lookup(s.Locate); !ok {
			return nil, nil, 0, 0, 0, fmt.Errorf("publish locate %d: %w", s.Locate, ErrUnknownLocate)
		}
		off = w.l.slotOff(sl.index())
	} else if slot := sl.index(); slot >= w.l.capacity {
		// Not a slot of this writer (or not made by slotOf: the zero
		// index wraps).
		return nil, nil, 0, 0, 0, fmt.Errorf("publish locate %d: slot out of this writer's %d slots: %w", s.Locate, w.l.capacity, ErrUnknownLocate)
	} else if off = w.l.slotOff(slot); atomic.LoadUint32(w.m.slotLocate(off)) != uint32(s.Locate) {
		// The slot's header names its locate (Register wrote it before
		// the slot became known), on the line Begin writes anyway. A
		// retired slot's has slotRetired set.
		if atomic.LoadUint32(w.m.slotLocate(off)) == uint32(s.Locate)|slotRetired {
			return nil, nil, 0, 0, 0, fmt.Errorf("publish locate %d: slot %d retired (the locate or its symbol was bound again): %w", s.Locate, slot, ErrUnknownLocate)
		}
		return nil, nil, 0, 0, 0, fmt.Errorf("publish locate %d: not the locate of slot %d: %w", s.Locate, slot, ErrUnknownLocate)
	}
	if nb > w.l.depth || na > w.l.depth || nb < 0 || na < 0 {
		return nil, nil, 0, 0, 0, fmt.Errorf("publish locate %d: %d bids, %d asks: %w %d", s.Locate, nb, na, ErrTooDeep, w.l.depth)
	}
	seq = w.m.slotSeq(off)
	// The seqlock needs store order only, never an atomic read-modify-write
	// (one writer per slot): the odd count before the data, the data and
	// len before the even count (order.go, docs/SHM.md "Memory ordering").
	s0 = atomic.LoadUint64(seq)
	if s0&1 != 0 {
		// Best effort: catches a second publisher only if it is inside
		// its write window now.
		panic(fmt.Sprintf("shm: locate %d published concurrently by two goroutines", s.Locate))
	}
	storeBegin64(seq, s0+1)
	return w.m.slotData(&w.l, off), seq, s0, sl.symLen(), publish, nil
}

// end makes the slot readable (its FlatBuffer's length n, then the even
// count s0+2, release) and appends the new version of locate to the
// journal: the end of Publish and Commit.
//
// A single writer's journal has no other writer: the record's previous lap
// is complete and no claim is needed. Its record (busy stamp, data, stamp
// position+1) and then the head are written in the same ordered-store call
// as the slot's end; readers never see a head beyond a complete record.
func (w *Writer) end(seq *uint64, n uint32, s0 uint64, locate uint16) {
	v := s0 + 2
	if w.single {
		pos := w.head
		commitSingle(seq, n, v, w.m.u64(w.l.recordOff(pos)), uint64(locate)<<48|(v/2)&versionMask, pos+1, w.m.u64(offHead))
		w.head = pos + 1
		return
	}
	seqEnd(seq, n, v)
	w.appendJournal(locate, v/2)
}

// appendJournal appends (locate, version) to the change journal. Several
// publishers share the journal: each claims a position with an atomic
// fetch-add on the head, waits until the record's previous lap is complete,
// then writes the record under its own stamp (busy, data, position+1).
func (w *Writer) appendJournal(locate uint16, version uint64) {
	pos := atomic.AddUint64(w.m.u64(offHead), 1) - 1
	stamp := w.m.u64(w.l.recordOff(pos))
	var prev uint64
	if pos >= w.l.journalLen {
		prev = pos - w.l.journalLen + 1
	}
	for spins := 0; atomic.LoadUint64(stamp) != prev; spins++ {
		// Another publisher claimed this record one lap earlier and has
		// not finished writing it: practically never, and only for the
		// few nanoseconds of its three stores.
		if spins > 100 {
			runtime.Gosched()
		}
	}
	putRecord(stamp, uint64(locate)<<48|version&versionMask, pos+1)
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
