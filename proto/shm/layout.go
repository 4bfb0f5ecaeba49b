package shm

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// LayoutVersion is the version of the shared-memory layout described in
// docs/SHM.md, including the FlatBuffers schema of the slots. Readers refuse a
// file with another version (ErrLayoutVersion).
const LayoutVersion = 1

// bigEndian is the host's byte order (a variable so that a test can play a
// big-endian host). The file format is little-endian (docs/SHM.md), but the
// writer stores the header's and the slots' words, and the readers load
// them, in the host's order with plain atomic operations. So a big-endian
// host is refused (errBigEndian) rather than left to write a file the C++
// and Python readers misread.
var bigEndian = cpu.IsBigEndian

// errBigEndian is the error Create and Open return on a big-endian host.
func errBigEndian(op, path string) error {
	return fmt.Errorf("%s shm %s: the file format is little-endian and this host is big-endian: %w", op, path, errors.ErrUnsupported)
}

// Magic opens every feed file.
var Magic = [8]byte{'F', 'H', 'B', 'O', 'O', 'K', 'S', 0}

// FileIdentifier is the FlatBuffers file identifier of each slot's snapshot.
var FileIdentifier = [4]byte{'F', 'H', 'B', '1'}

// Dir is where bare feed names live.
const Dir = "/dev/shm"

// MaxLocates is the number of distinct ITCH stock locates (uint16).
const MaxLocates = 1 << 16

// maxDepth bounds Config.Depth.
const maxDepth = 4096

const (
	cacheLine   = 64
	pageSize    = 4096
	headerSize  = pageSize
	slotHeader  = cacheLine // seq, len, locate; the FlatBuffer follows
	trailerSize = 8         // the trailer: a copy of the generation, the file's last 8 bytes
	recordSize  = 16        // journal record: stamp, locate<<48 | version
	dirEntrySz  = 16        // directory entry: locate, len, symbol
	versionMask = 1<<48 - 1
	// stampBusy marks a journal record that a writer is rewriting.
	stampBusy = ^uint64(0)
)

// Header field offsets. Line 0 and 1 are written once before the file becomes
// visible; the dynamic fields each sit on their own pair of cache lines so
// that the writers' stores never invalidate what readers poll.
const (
	offMagic          = 0  // [8]byte
	offLayoutVersion  = 8  // uint32
	offHeaderSize     = 12 // uint32
	offGeneration     = 16 // uint64, random, new for every file
	offStartTime      = 24 // int64, Unix ns
	offWriterPid      = 32 // uint32
	offSlotSize       = 36 // uint32
	offCapacity       = 40 // uint32, number of slots
	offDepth          = 44 // uint32
	offJournalLen     = 48 // uint32, power of two
	offSchemaVersion  = 52 // uint32
	offHeartbeatEvery = 56 // int64 ns, the writer's promised heartbeat interval
	offIndex          = 64 // uint64, file offset of the locate index
	offDirectory      = 72 // uint64
	offJournal        = 80 // uint64
	offSlots          = 88 // uint64
	offFileSize       = 96 // uint64
	offFileIdentifier = 104
	offMaxSnapshot    = 108 // uint32, max FlatBuffer bytes in a slot
	offTrailer        = 112 // uint64, file offset of the trailer; 0 in files of earlier writers (none)

	offHeartbeat = 256 // int64 Unix ns, written by Writer.Heartbeat
	offState     = 264 // uint32: stateOpen or stateClosed
	offHead      = 384 // uint64 journal head: records ever appended
	offCount     = 512 // uint32 instruments registered
)

// MaxHeartbeatInterval bounds the writer's heartbeat interval: Create
// refuses more, and a reader refuses a file that says more (ErrFormat), so
// that every reader's stale limit (10 intervals) is a sane duration.
const MaxHeartbeatInterval = time.Hour

const (
	stateOpen   = 0
	stateClosed = 1
)

// Errors. Every error returned by this package wraps one of these (or an
// os/syscall error); compare with errors.Is.
var (
	// ErrNotExist: no feed file of that name (the writer has not created it yet).
	ErrNotExist = errors.New("shm: feed does not exist")
	// ErrFormat: the file is not a feed file or is truncated or inconsistent.
	ErrFormat = errors.New("shm: not a feed file")
	// ErrLayoutVersion: the file has another layout version than this library.
	ErrLayoutVersion = errors.New("shm: layout version mismatch")
	// ErrWriterDead: the writer process is gone or its heartbeat is stale.
	ErrWriterDead = errors.New("shm: writer is dead")
	// ErrRestarted: a new writer replaced the file; Close and Open again.
	ErrRestarted = errors.New("shm: writer restarted")
	// ErrClosed: the writer closed the feed; the last snapshots stay readable.
	ErrClosed = errors.New("shm: writer closed the feed")
	// ErrInUse: Create found a live writer publishing under that name.
	ErrInUse = errors.New("shm: feed in use by a live writer")
	// ErrOverrun: a follower fell more than a journal length behind and lost
	// records; rescan every instrument (see Follower.Poll).
	ErrOverrun = errors.New("shm: journal overrun")
	// ErrUnknownLocate: the locate was not registered.
	ErrUnknownLocate = errors.New("shm: unknown locate")
	// ErrNoData: the instrument is registered but nothing was published yet.
	ErrNoData = errors.New("shm: no snapshot published yet")
	// ErrShortBuffer: the caller's buffer is smaller than Info.MaxSnapshot.
	ErrShortBuffer = errors.New("shm: buffer too small")
	// ErrTooDeep: the snapshot has more levels per side than the file's depth.
	ErrTooDeep = errors.New("shm: more levels than the configured depth")
	// ErrFull: every slot is taken.
	ErrFull = errors.New("shm: instrument capacity reached")
	// ErrBusy: a slot stayed locked by a live writer for too long.
	ErrBusy = errors.New("shm: slot busy")
	// ErrStaleBinding: Rebind refused a binding older than the one it would
	// replace (the locate, or the symbol at another locate, was bound at a
	// later epoch): nothing was retired or registered.
	ErrStaleBinding = errors.New("shm: binding older than the current one")
	// ErrDuplicateSymbol: Rebind refused to bind a symbol that another
	// locate bound in the same epoch (one symbol at two locates in one
	// session: bad input); the first binding stays, nothing was retired.
	ErrDuplicateSymbol = errors.New("shm: symbol bound to another locate in the same epoch")
)

// Path returns the file of a feed: a bare name lives under Dir, a name with a
// slash is used as is.
func Path(name string) string {
	if strings.ContainsRune(name, '/') {
		return filepath.Clean(name)
	}
	return filepath.Join(Dir, name)
}

// mapping is a feed file mapped into memory. Its accessors hand out pointers
// into the mapping; the mapping holds no Go pointers.
type mapping struct {
	mem []byte
}

func (m *mapping) u32(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&m.mem[off])) }
func (m *mapping) u64(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&m.mem[off])) }
func (m *mapping) i64(off uint64) *int64  { return (*int64)(unsafe.Pointer(&m.mem[off])) }

// layout is the geometry of a feed file, derived from its header.
type layout struct {
	generation     uint64
	startTime      int64
	pid            int
	slotSize       uint64
	capacity       uint64
	depth          int
	journalLen     uint64
	heartbeatEvery int64
	index          uint64
	directory      uint64
	journal        uint64
	slots          uint64
	fileSize       uint64
	maxSnapshot    uint64
	// trailer is the offset of the file's last 8 bytes, past the last
	// slot, which hold a copy of the generation (0: a file of an earlier
	// writer, without one). Any cut of the file below its size zeroes
	// them, and a cut grown back to the size leaves them zero, where the
	// header, in the first page, may survive: the trailer tells.
	trailer uint64
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// plan computes the geometry of a new file.
func plan(capacity, depth, journalLen int, maxSnapshot uint64) layout {
	var l layout
	l.capacity = uint64(capacity)
	l.depth = depth
	l.journalLen = uint64(journalLen)
	l.maxSnapshot = roundUp(maxSnapshot, cacheLine)
	l.slotSize = slotHeader + l.maxSnapshot
	l.index = headerSize
	l.directory = l.index + MaxLocates*4
	l.journal = l.directory + roundUp(l.capacity*dirEntrySz, pageSize)
	l.slots = l.journal + roundUp(l.journalLen*recordSize, pageSize)
	l.fileSize = roundUp(l.slots+l.capacity*l.slotSize+trailerSize, pageSize)
	l.trailer = l.fileSize - trailerSize
	return l
}

// writeHeader fills the static header fields.
func (m *mapping) writeHeader(l layout) {
	copy(m.mem[offMagic:], Magic[:])
	*m.u32(offLayoutVersion) = LayoutVersion
	*m.u32(offHeaderSize) = headerSize
	*m.u64(offGeneration) = l.generation
	*m.i64(offStartTime) = l.startTime
	*m.u32(offWriterPid) = uint32(l.pid)
	*m.u32(offSlotSize) = uint32(l.slotSize)
	*m.u32(offCapacity) = uint32(l.capacity)
	*m.u32(offDepth) = uint32(l.depth)
	*m.u32(offJournalLen) = uint32(l.journalLen)
	*m.u32(offSchemaVersion) = schemaVersion
	*m.i64(offHeartbeatEvery) = l.heartbeatEvery
	*m.u64(offIndex) = l.index
	*m.u64(offDirectory) = l.directory
	*m.u64(offJournal) = l.journal
	*m.u64(offSlots) = l.slots
	*m.u64(offFileSize) = l.fileSize
	copy(m.mem[offFileIdentifier:], FileIdentifier[:])
	*m.u32(offMaxSnapshot) = uint32(l.maxSnapshot)
	*m.u64(offTrailer) = l.trailer
	*m.u64(l.trailer) = l.generation
}

// maxPid is Linux's largest process ID (PID_MAX_LIMIT on 64-bit is 2^22,
// and pids stay below it). A header's writer pid outside 1..maxPid is not
// a feed file's: kill(2) of 0, or of a pid read as negative, would signal a
// process group.
const maxPid = 1<<22 - 1

// readHeader validates the header at the start of m, of a file of size
// size: the mapped file's, or its first page read into m before the file
// is mapped (readHeaderAt).
func (m *mapping) readHeader(size int64) (layout, error) {
	var l layout
	if size < headerSize || len(m.mem) < headerSize {
		return l, fmt.Errorf("%d bytes: %w", min(size, int64(len(m.mem))), ErrFormat)
	}
	if magic := [8]byte(m.mem[offMagic : offMagic+8]); magic != Magic {
		return l, fmt.Errorf("magic %q: %w", magic[:], ErrFormat)
	}
	if v := *m.u32(offLayoutVersion); v != LayoutVersion {
		return l, &versionError{have: v}
	}
	l.generation = *m.u64(offGeneration)
	l.startTime = *m.i64(offStartTime)
	l.pid = int(*m.u32(offWriterPid))
	l.slotSize = uint64(*m.u32(offSlotSize))
	l.capacity = uint64(*m.u32(offCapacity))
	l.depth = int(*m.u32(offDepth))
	l.journalLen = uint64(*m.u32(offJournalLen))
	l.heartbeatEvery = *m.i64(offHeartbeatEvery)
	l.index = *m.u64(offIndex)
	l.directory = *m.u64(offDirectory)
	l.journal = *m.u64(offJournal)
	l.slots = *m.u64(offSlots)
	l.fileSize = *m.u64(offFileSize)
	l.maxSnapshot = uint64(*m.u32(offMaxSnapshot))
	l.trailer = *m.u64(offTrailer)
	switch {
	case l.capacity == 0 || l.capacity > MaxLocates,
		l.depth <= 0 || l.depth > maxDepth,
		l.pid <= 0 || l.pid > maxPid,
		l.heartbeatEvery <= 0 || l.heartbeatEvery > int64(MaxHeartbeatInterval),
		l.journalLen > 1<<30,
		l.slotSize > 1<<20 || l.maxSnapshot < maxSnapshotSize(l.depth),
		l.index > l.fileSize || l.directory > l.fileSize || l.journal > l.fileSize || l.slots > l.fileSize:
		return l, errHeader
	}
	switch {
	case *m.u32(offHeaderSize) != headerSize,
		l.fileSize != uint64(size),
		l.journalLen == 0 || l.journalLen&(l.journalLen-1) != 0,
		l.slotSize%cacheLine != 0 || l.slotSize < slotHeader+l.maxSnapshot,
		l.index != headerSize,
		l.directory < l.index+MaxLocates*4,
		l.journal < l.directory+l.capacity*dirEntrySz,
		l.slots < l.journal+l.journalLen*recordSize,
		l.slots%cacheLine != 0 || l.journal%cacheLine != 0,
		l.slots+l.capacity*l.slotSize > l.fileSize,
		l.trailer != 0 && (l.trailer != l.fileSize-trailerSize || l.trailer%trailerSize != 0 || l.trailer < l.slots+l.capacity*l.slotSize):
		return l, errHeader
	}
	return l, nil
}

// errHeader is a header with the magic and layout version of a feed file
// whose fields do not describe one (the Python reader's message).
var errHeader = fmt.Errorf("inconsistent header: %w", ErrFormat)

// cut reports whether the file's trailer (a copy of the generation in its
// last 8 bytes) is no longer the generation the header had at open: the
// file was cut below its size and grown back (the header, in the first
// page, may survive that), or its end overwritten. A file without a
// trailer (an earlier writer's) is never cut. The caller knows the file
// still covers the mapping (or guards the load).
func (m *mapping) cut(l *layout) (trailer uint64, cut bool) {
	if l.trailer == 0 {
		return 0, false
	}
	trailer = atomic.LoadUint64(m.u64(l.trailer))
	return trailer, trailer != l.generation
}

type versionError struct{ have uint32 }

func (e *versionError) Error() string {
	return "shm: layout version " + itoa(uint64(e.have)) + ", this library reads " + itoa(LayoutVersion)
}

func (e *versionError) Unwrap() error { return ErrLayoutVersion }

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}

// A slot is a header line, then its FlatBuffer at slotHeader. The header's
// fields, at these offsets from the slot's start (docs/SHM.md, "Slots"):
const (
	slotSeqAt    = 0  // uint64 seqlock word
	slotLenAt    = 8  // uint32 FlatBuffer length (seqEnd's assembly stores it at seq+8)
	slotLocateAt = 12 // the locate, stored as a uint32 by Register (docs: u16, then two bytes 0 or, retired, 1 0)

	// slotRetired, or'ed into a retired slot's uint32 locate (its byte
	// 14), makes every Begin and Publish into the slot fail: a publisher
	// that kept the Slot of a locate unbound since learns it (handler's
	// Publisher: binds again).
	slotRetired = 1 << 16
)

// slotOffset is the file offset of a slot: a struct, so that neither a
// slot's index nor a constant is ever taken for it.
type slotOffset struct{ off uint64 }

// slotOff is the offset of slot i: the slot accessors below take it, so
// that a caller reaching several of a slot's fields computes it once.
func (l *layout) slotOff(slot uint64) slotOffset { return slotOffset{l.slots + slot*l.slotSize} }

// slotSeq is the seqlock word of the slot at s: odd while the writer
// copies, even otherwise; seq/2 is the number of snapshots published into
// the slot.
func (m *mapping) slotSeq(s slotOffset) *uint64 { return m.u64(s.off + slotSeqAt) }

func (m *mapping) slotLen(s slotOffset) *uint32 { return m.u32(s.off + slotLenAt) }

// slotLocate is the locate of the slot at s, written by Register before
// the slot becomes known, changed only when the slot is retired
// (slotRetired); loaded and stored atomically (publishers read it, another
// goroutine may retire the slot).
func (m *mapping) slotLocate(s slotOffset) *uint32 { return m.u32(s.off + slotLocateAt) }

// slotData is the FlatBuffer of the slot at s.
func (m *mapping) slotData(l *layout, s slotOffset) []byte {
	off := s.off + slotHeader
	return m.mem[off : off+l.maxSnapshot : off+l.maxSnapshot]
}

// indexEntry is the locate index: slot+1, or 0 when the locate is unknown.
func (m *mapping) indexEntry(l *layout, locate uint16) *uint32 {
	return m.u32(l.index + uint64(locate)*4)
}

func (m *mapping) dirEntry(l *layout, slot uint64) []byte {
	off := l.directory + slot*dirEntrySz
	return m.mem[off : off+dirEntrySz : off+dirEntrySz]
}

// dirLocate is the locate in directory entry e (its bytes 0-1).
func dirLocate(e []byte) uint16 { return uint16(e[0]) | uint16(e[1])<<8 }

// dirSymLen is the symbol length in slot's directory entry (its byte 2).
func (m *mapping) dirSymLen(l *layout, slot uint64) byte {
	return m.mem[l.directory+slot*dirEntrySz+2]
}

// dirSymbol returns the symbol of a directory entry (no padding).
func dirSymbol(e []byte) []byte {
	n := int(e[2])
	if n > 8 {
		n = 8
	}
	return e[8 : 8+n]
}

func (m *mapping) record(l *layout, pos uint64) (stamp, data *uint64) {
	off := l.recordOff(pos)
	return m.u64(off), m.u64(off + 8)
}

// recordOff is the offset of the journal record of position pos (its stamp;
// the data follows).
func (l *layout) recordOff(pos uint64) uint64 {
	return l.journal + (pos&(l.journalLen-1))*recordSize
}

func (m *mapping) head() uint64 { return atomic.LoadUint64(m.u64(offHead)) }
