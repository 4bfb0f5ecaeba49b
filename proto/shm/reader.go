package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/proto/bookfb"
)

func now() int64 { return time.Now().UnixNano() }

// The clocks a Reader judges the writer's liveness by (heartbeatAge):
// CLOCK_REALTIME, which the heartbeat is written in, and this process's
// monotonic clock (ns since monoBase). Variables so that tests can step
// them.
var (
	monoBase  = time.Now()
	realNanos = now
	monoNanos = func() int64 { return int64(time.Since(monoBase)) }
)

// OpenOptions tune a Reader.
type OpenOptions struct {
	// StaleAfter is how old the writer's heartbeat may get before Check
	// reports ErrWriterDead. Zero means 10 heartbeat intervals, at least 1s.
	StaleAfter time.Duration
}

// Reader reads one feed file. Read, Version and Info are safe for concurrent
// use; the file is mapped read-only.
type Reader struct {
	m     mapping
	l     layout
	path  string
	file  *os.File // the mapped file, kept open: Check fstats it (truncation)
	fd    int      // file's descriptor
	ino   uint64
	dev   uint64
	stale time.Duration
	live  liveness

	mu      sync.Mutex // guards the symbol map
	known   uint32
	symbols map[string]uint16
}

// Open maps the feed file name read-only. A missing file is ErrNotExist (the
// writer has not started: retry, or use OpenWait); a file of another layout
// version is ErrLayoutVersion. Open succeeds on a closed or dead writer's
// file so its last snapshots stay readable; Check tells the writer's state.
func Open(name string) (*Reader, error) { return OpenWith(name, OpenOptions{}) }

// OpenWith is Open with options.
//
// A relative path (a name with a slash, not starting with one) is resolved
// against the working directory once, here: the Reader keeps the absolute
// path (Path), and Check looks at that file even after the process changed
// its working directory.
func OpenWith(name string, opt OpenOptions) (*Reader, error) {
	path := Path(name)
	if bigEndian {
		return nil, errBigEndian("open", path)
	}
	path, err := absPath(path)
	if err != nil {
		return nil, err
	}
	// Not blocking: a FIFO of that name would block a plain open until a
	// writer came; it is refused below with the other files that are not
	// regular.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open shm %s: %w", path, ErrNotExist)
		}
		if perr := permissionError(path, err); perr != nil {
			return nil, perr
		}
		return nil, fmt.Errorf("open shm %s: %w", path, err)
	}
	mapped := false
	defer func() {
		if !mapped {
			f.Close()
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("open shm %s: fstat: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("open shm %s: not a regular file (mode %#o): %w", path, st.Mode&unix.S_IFMT, ErrFormat)
	}
	if st.Size < headerSize {
		return nil, fmt.Errorf("open shm %s: %d bytes: %w", path, st.Size, ErrFormat)
	}
	if err := readHeaderAt(int(f.Fd()), st.Size); err != nil {
		return nil, fmt.Errorf("open shm %s: %w", path, err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("open shm %s: mmap: %w", path, err)
	}
	r := &Reader{m: mapping{mem: mem}, path: path, file: f, fd: int(f.Fd()), ino: st.Ino, dev: st.Dev}
	openMapped(path)
	// The clocks before the heartbeat is loaded (liveness.age).
	rt, mono := realNanos(), monoNanos()
	hb, err := r.readMapped(st.Size)
	if err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("open shm %s: %w", path, err)
	}
	mapped = true
	r.live.start(hb, rt, mono)
	r.stale = opt.StaleAfter
	if r.stale <= 0 {
		r.stale = max(10*time.Duration(r.l.heartbeatEvery), time.Second)
	}
	return r, nil
}

// readHeaderAt reads the header of the file fd of size size and validates
// it, before Open maps the file: MAP_POPULATE has the kernel fault in every
// page of the mapping, and tmpfs allocates a page for each hole it faults.
// A file that is no feed of this layout (another program's sparse shm
// file under a mistyped name, a feed file truncated to a larger size, a
// feed of another layout version) would cost its whole size in memory,
// kept by the file after Open refused it. The mapping's header is
// validated again (readMapped): the file may change in between.
func readHeaderAt(fd int, size int64) error {
	var h [headerSize]byte
	n, err := unix.Pread(fd, h[:], 0)
	if err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	if n < headerSize {
		// Truncated since its fstat.
		return fmt.Errorf("header of %d bytes: %w", n, ErrFormat)
	}
	_, err = (&mapping{mem: h[:]}).readHeader(size)
	return err
}

// openMapped is called by Open between the mmap and the first load from
// the mapping (a test truncates the file there).
var openMapped = func(path string) {}

// readMapped reads the mapped file's header into r.l, and returns the
// writer's heartbeat. The file may have been truncated since its size was
// read: a fault on the mapping is ErrFormat (fault.go), as from every call
// that reads the mapping.
func (r *Reader) readMapped(size int64) (hb int64, err error) {
	defer func(old bool) {
		debug.SetPanicOnFault(old)
		if p := recover(); p != nil {
			off, ok := r.faultOffset(p)
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("fault at offset %d of the mapping (%d bytes): file truncated since its size was read: %w", off, len(r.m.mem), ErrFormat)
		}
	}(guard())
	if r.l, err = r.m.readHeader(size); err != nil {
		return 0, err
	}
	if r.l.fileSize > uint64(len(r.m.mem)) {
		return 0, ErrFormat
	}
	if t, cut := r.m.cut(&r.l); cut {
		return 0, fmt.Errorf("trailer %#x, generation %#x: %w", t, r.l.generation, errCutFile)
	}
	return atomic.LoadInt64(r.m.i64(offHeartbeat)), nil
}

// absPath resolves a relative path against the kernel's working directory
// (getcwd), as the C++ and Python readers take it, not filepath.Abs's
// os.Getwd: that returns $PWD, the shell's logical directory, and entered
// through a symbolic link "../feed" would name another file than the one
// the kernel (and the writer) resolve it to.
func absPath(path string) (string, error) {
	if filepath.IsAbs(path) {
		return path, nil
	}
	wd, err := unix.Getwd()
	if err != nil {
		return "", fmt.Errorf("open shm %s: %w", path, err)
	}
	return filepath.Join(wd, path), nil
}

// notExistHint is what an OpenWait that gave up asks to check, in the C++
// and Python readers' words too.
const notExistHint = "is the writer, feedhandler run, running? its feed config's shm.name must name this file"

// sleep is time.Sleep (a variable so that a test can see OpenWait's waits).
var sleep = time.Sleep

// OpenWait opens name, retrying every poll interval (0 or less: 1ms, as the
// C++ and Python readers read it) while it does not exist yet, until
// timeout. Then its ErrNotExist says how long it waited and what to
// check: "open shm /dev/shm/NAME: waited 1m0s: shm: feed does not exist
// (is the writer, feedhandler run, running? ...)".
func OpenWait(name string, timeout, poll time.Duration) (*Reader, error) {
	if poll <= 0 {
		poll = time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for {
		r, err := Open(name)
		if err == nil || !errors.Is(err, ErrNotExist) {
			return r, err
		}
		if time.Now().After(deadline) {
			path, perr := absPath(Path(name))
			if perr != nil {
				return nil, err
			}
			return nil, fmt.Errorf("open shm %s: waited %v: %w (%s)", path, timeout, ErrNotExist, notExistHint)
		}
		sleep(poll)
	}
}

// Close unmaps the file. Views returned by Read stay valid (they are in the
// caller's buffers). After Close, Read, ReadSymbol, Check and a Follower's
// Poll and Wait return an error wrapping fs.ErrClosed (the reader's, not
// ErrClosed, the writer's); Version, Heartbeat, Instruments, Lookup, Locates
// and Pending return their zero values. Close must not run while another
// goroutine calls any of them.
func (r *Reader) Close() error {
	if r.m.mem == nil {
		return nil
	}
	err := unix.Munmap(r.m.mem)
	r.m.mem = nil
	r.file.Close()
	if err != nil {
		return fmt.Errorf("close shm %s: %w", r.path, err)
	}
	return nil
}

// Path is the mapped file's absolute path (a relative name resolved at
// Open).
func (r *Reader) Path() string { return r.path }

// Info describes the file: geometry, writer pid, start time, generation.
func (r *Reader) Info() Info { return infoOf(&r.l) }

// Heartbeat returns the writer's last heartbeat.
func (r *Reader) Heartbeat() time.Time {
	if r.m.mem == nil {
		return time.Time{}
	}
	defer r.unguardZero(guard())
	return time.Unix(0, atomic.LoadInt64(r.m.i64(offHeartbeat)))
}

// Check reports the writer's state: nil while it is alive, ErrRestarted when
// a new writer replaced the file, or re-initialized it in place (another
// generation; Close, then Open again), ErrFormat when the
// mapped file was truncated below the size mapped (the writer never does;
// reading the mapping would fault), ErrClosed when it closed the feed,
// ErrWriterDead when its process is gone or its heartbeat is older than
// StaleAfter.
func (r *Reader) Check() (err error) {
	if r.m.mem == nil {
		return r.closedError("check")
	}
	// The file may be truncated between the size check and the loads of
	// the writer's state.
	defer r.unguard(guard(), "check", &err)
	return r.check()
}

// check is Check without the fault guard (for Wait, which guards itself).
func (r *Reader) check() error {
	if r.m.mem == nil {
		return r.closedError("check")
	}
	if err := r.checkFile(); err != nil {
		return err
	}
	return r.writerGone()
}

// checkFile is check without the writer's state (writerGone): whether the
// mapped file is still the one Open read, at its size. Check runs it
// first: a file replaced, truncated, re-initialized or cut is said before
// its writer's state.
func (r *Reader) checkFile() error {
	var st unix.Stat_t
	err := unix.Stat(r.path, &st)
	if err == nil && (st.Ino != r.ino || st.Dev != r.dev) {
		return fmt.Errorf("check shm %s: %w", r.path, ErrRestarted)
	}
	// Before anything reads the mapping: pages past the end of the file
	// fault (SIGBUS). A read racing the truncation still can. The name's
	// stat, when it is the mapped file, has its size; otherwise (the name
	// is gone) the descriptor kept open has it.
	if err != nil {
		err = unix.Fstat(r.fd, &st)
	}
	if err == nil && st.Size < int64(len(r.m.mem)) {
		return fmt.Errorf("check shm %s: file truncated to %d bytes, %d mapped: %w", r.path, st.Size, len(r.m.mem), ErrFormat)
	}
	// The same file, re-initialized in place (a copy over it, a writer
	// that opened the name with O_TRUNC rather than renaming its file into
	// place): the static header never changes in the file Open read, so
	// another generation is another writer's file, whose layout this
	// Reader does not have.
	if err := r.reinitialized("check"); err != nil {
		return err
	}
	// The same file, cut below its size and grown back (truncate -s 8192,
	// then to its size): the header survives, everything past the cut
	// reads as zeros, the writer's stores go on into it. One load, of the
	// trailer.
	if t, cut := r.m.cut(&r.l); cut {
		return fmt.Errorf("check shm %s: trailer %#x, generation %#x: %w", r.path, t, r.l.generation, errCutFile)
	}
	return nil
}

// errCutFile is the ErrFormat of a file whose trailer says it was cut and
// grown back, or its end overwritten (mapping.cut).
var errCutFile = fmt.Errorf("file cut below its size and grown back, or overwritten, under the writer (its end zeroed; the writer may go on into it): %w", ErrFormat)

// reinitialized is the error of op, wrapping ErrRestarted, when the
// mapped file's generation is no longer the one Open read (the file was
// re-initialized in place), nil otherwise.
func (r *Reader) reinitialized(op string) error {
	if g := atomic.LoadUint64(r.m.u64(offGeneration)); g != r.l.generation {
		return fmt.Errorf("%s shm %s: generation %#x, %#x at open: file re-initialized in place: %w", op, r.path, g, r.l.generation, ErrRestarted)
	}
	return nil
}

// closedError is the error of a call on a closed Reader.
func (r *Reader) closedError(op string) error {
	return fmt.Errorf("%s shm %s: reader: %w", op, r.path, fs.ErrClosed)
}

// writerGone is Check without the file's replacement: whether the writer
// of the mapped file closed it (ErrClosed) or died (ErrWriterDead), even
// when a new writer has replaced the file since.
func (r *Reader) writerGone() error {
	if atomic.LoadUint32(r.m.u32(offState)) == stateClosed {
		return fmt.Errorf("check shm %s: %w", r.path, ErrClosed)
	}
	age := r.live.age(r.m.i64(offHeartbeat))
	// The pid alone does not say: a reader in another pid namespace (a
	// container) sees no such process, or another one, under the
	// writer's pid. Gone and two heartbeats missed is dead, sooner than
	// the stale limit.
	if age > 2*time.Duration(r.l.heartbeatEvery) {
		if err := unix.Kill(r.l.pid, 0); errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("check shm %s: pid %d gone, heartbeat %v old: %w", r.path, r.l.pid, age.Round(time.Millisecond), ErrWriterDead)
		}
	}
	if age > r.stale {
		return fmt.Errorf("check shm %s: heartbeat %v old: %w", r.path, age.Round(time.Millisecond), ErrWriterDead)
	}
	return nil
}

// liveness times the writer's heartbeat on the reader's own monotonic
// clock (docs/SHM.md, "Writer liveness"). The heartbeat is the writer's
// CLOCK_REALTIME: compared with the reader's, a step of either clock (NTP,
// an operator's date) would read as a fresh heartbeat going stale at once,
// or a stale one looking fresh. So the realtime age counts only until the
// reader sees the heartbeat change: at open, and to place a change it sees
// within the time since its previous look. Between changes the age grows on
// the monotonic clock. Read's slow path and Check may run in several
// goroutines at once: mu guards the fields.
type liveness struct {
	mu   sync.Mutex
	hb   int64 // the heartbeat value last seen
	seen int64 // monotonic ns of the last look
	beat int64 // monotonic ns at which the writer is taken to have stored hb
}

// start is the look at open: the heartbeat hb's realtime age (0 if in the
// future) at the clocks' readings r and m, taken before hb was loaded,
// places the beat.
func (l *liveness) start(hb, r, m int64) {
	l.hb, l.seen, l.beat = hb, m, m-max(subSat(r, hb), 0)
}

// age loads the heartbeat at p and returns how long ago the writer stored
// it: a value other than the last one seen was stored since the previous
// look, at the time its realtime age says, kept within that interval (a
// clock step cannot move it further); the same value has aged by the
// monotonic clock since.
//
// The clocks are read first, then the heartbeat: a reader that loses its
// CPU in between (a loaded machine, a stopped process) loads a heartbeat
// at least as new as the clocks' readings, and the age is at most the
// true one. The other way round its own stall was the writer's age: after
// a stall longer than the stale limit, ErrWriterDead for a writer that had
// beaten all along.
func (l *liveness) age(p *int64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, m := realNanos(), monoNanos()
	hb := atomic.LoadInt64(p)
	if hb != l.hb {
		since := max(m-l.seen, 0)
		l.hb, l.beat = hb, m-min(max(subSat(r, hb), 0), since)
	}
	l.seen = max(l.seen, m)
	return time.Duration(subSat(m, l.beat))
}

// subSat is a - b, saturated to the int64 range (a corrupt heartbeat may
// hold any value).
func subSat(a, b int64) int64 {
	d := a - b
	if (b > 0 && d > a) || (b < 0 && d < a) {
		if b > 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return d
}

// Instrument is a registered instrument.
type Instrument struct {
	Locate uint16
	Symbol string
}

// Instruments returns the registered instruments in registration order,
// but for retired slots (a locate bound to another symbol since; see
// Writer.Rebind).
func (r *Reader) Instruments() []Instrument {
	if r.m.mem == nil {
		return nil
	}
	defer r.unguardZero(guard())
	return r.instruments()
}

// instruments is Instruments without the fault guard.
func (r *Reader) instruments() []Instrument {
	n := uint64(atomic.LoadUint32(r.m.u32(offCount)))
	n = min(n, r.l.capacity)
	out := make([]Instrument, 0, n)
	for slot := uint64(0); slot < n; slot++ {
		e := r.m.dirEntry(&r.l, slot)
		if dirIsRetired(e) {
			continue
		}
		out = append(out, Instrument{Locate: dirLocate(e), Symbol: string(dirSymbol(e))})
	}
	return out
}

// Lookup returns the locate of symbol (no padding).
//
// It keeps a map of the directory, built again when the instrument count
// changes. A retirement without a new entry (a rebind that found no slot
// left) leaves the count as it is: a symbol found in the map is checked
// against the directory entry its locate is bound to now, and the map is
// rebuilt when they differ.
func (r *Reader) Lookup(symbol string) (uint16, bool) {
	if r.m.mem == nil {
		return 0, false
	}
	defer r.unguardZero(guard())
	return r.lookup(symbol)
}

// lookup is Lookup without the fault guard.
func (r *Reader) lookup(symbol string) (uint16, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := atomic.LoadUint32(r.m.u32(offCount)); n != r.known || r.symbols == nil {
		r.scanSymbols(n)
	}
	l, ok := r.symbols[symbol]
	if ok && !r.boundTo(l, symbol) {
		r.scanSymbols(atomic.LoadUint32(r.m.u32(offCount)))
		l, ok = r.symbols[symbol]
	}
	return l, ok
}

// scanSymbols builds the symbol map from the directory; n is the count it
// is for. The map is sized by the entries read, not by n: a corrupted count
// may be far above the directory's capacity. Under r.mu.
func (r *Reader) scanSymbols(n uint32) {
	ins := r.instruments()
	r.symbols = make(map[string]uint16, len(ins))
	for _, in := range ins {
		r.symbols[in.Symbol] = in.Locate
	}
	r.known = n
}

// boundTo reports whether locate is bound to a live directory entry naming
// symbol.
func (r *Reader) boundTo(locate uint16, symbol string) bool {
	slot, ok := r.slotOf(locate)
	if !ok {
		return false
	}
	e := r.m.dirEntry(&r.l, slot)
	return !dirIsRetired(e) && string(dirSymbol(e)) == symbol
}

// Locates returns the registered locates sorted ascending.
func (r *Reader) Locates() []uint16 {
	ins := r.Instruments()
	out := make([]uint16, len(ins))
	for i, in := range ins {
		out[i] = in.Locate
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (r *Reader) slotOf(locate uint16) (uint64, bool) {
	v := atomic.LoadUint32(r.m.indexEntry(&r.l, locate))
	if v == 0 || uint64(v) > r.l.capacity {
		return 0, false
	}
	return uint64(v - 1), true
}

// Version returns how many snapshots of locate were published (0: none or
// unknown locate). Comparing versions after ErrOverrun tells which
// instruments changed, but for a locate bound to another symbol since (a
// session change without a restart): its new slot counts again from 1 and
// may be at the version last seen, so read again the locates you keep
// (the snapshot's symbol tells).
func (r *Reader) Version(locate uint16) uint64 {
	if r.m.mem == nil {
		return 0
	}
	defer r.unguardZero(guard())
	slot, ok := r.slotOf(locate)
	if !ok {
		return 0
	}
	return atomic.LoadUint64(r.m.slotSeq(r.l.slotOff(slot))) / 2
}

// View is a consistent snapshot in the caller's buffer: the generated
// FlatBuffers accessors (Seq, Bids, ...) plus the slot version it was read
// at. It stays valid until the buffer is reused.
type View struct {
	bookfb.Snapshot
	Version uint64
}

// Bid returns bid level i (0 is best); ok is false past the last level,
// and on the zero View a failed Read returns (as C++'s View::bid), whose
// generated accessors (Seq, BidsLength, ...) would panic.
func (v *View) Bid(i int) (Level, bool) {
	var l bookfb.Level
	if i < 0 || len(v.Bytes()) == 0 || i >= v.BidsLength() || !v.Bids(&l, i) {
		return Level{}, false
	}
	return Level{Price: l.Price(), Shares: l.Shares(), Orders: l.Orders()}, true
}

// Ask returns ask level i (0 is best); ok is false past the last level,
// and on the zero View, as Bid.
func (v *View) Ask(i int) (Level, bool) {
	var l bookfb.Level
	if i < 0 || len(v.Bytes()) == 0 || i >= v.AsksLength() || !v.Asks(&l, i) {
		return Level{}, false
	}
	return Level{Price: l.Price(), Shares: l.Shares(), Orders: l.Orders()}, true
}

// Bytes is the FlatBuffer (for forwarding or storing).
func (v *View) Bytes() []byte { return v.Table().Bytes }

// busyTimeout bounds how long Read waits for a slot that a live writer holds
// odd. A writer holds it for tens of nanoseconds, unless the kernel preempts
// it inside the window: then readers of that one slot wait until it runs
// again (a scheduler time slice, milliseconds on an overloaded machine).
const busyTimeout = time.Second

// Read copies the latest consistent snapshot of locate into buf and returns
// a view over it. buf needs Info().MaxSnapshot bytes. It allocates nothing:
// the seqlock protocol copies the slot, then re-checks its sequence and
// retries when a writer was publishing meanwhile. A file truncated under
// the mapping is ErrFormat (fault.go).
func (r *Reader) Read(locate uint16, buf []byte) (_ View, err error) {
	if r.m.mem == nil {
		return View{}, r.closedError("read")
	}
	defer r.unguard(guard(), "read", &err)
	return r.read(locate, buf)
}

// read is Read without the fault guard.
func (r *Reader) read(locate uint16, buf []byte) (View, error) {
	slot, ok := r.slotOf(locate)
	if !ok {
		return View{}, fmt.Errorf("read shm locate %d: %w", locate, ErrUnknownLocate)
	}
	if uint64(len(buf)) < r.l.maxSnapshot {
		return View{}, fmt.Errorf("read shm locate %d: %d bytes: %w (need %d)", locate, len(buf), ErrShortBuffer, r.l.maxSnapshot)
	}
	off := r.l.slotOff(slot)
	seq, lenp, data := r.m.slotSeq(off), r.m.slotLen(off), r.m.slotData(&r.l, off)
	var start time.Time
	var gone error // Check: the writer closed or died; the slot changes no more
	for spin := 1; ; spin++ {
		s1 := atomic.LoadUint64(seq)
		if s1 == 0 {
			return View{}, fmt.Errorf("read shm locate %d: %w", locate, ErrNoData)
		}
		if s1&1 == 0 {
			n := uint64(atomic.LoadUint32(lenp))
			if n > r.l.maxSnapshot {
				// The writer never stores such a length, and an aligned
				// 4-byte load does not tear: the file is corrupt, and
				// no retry will read it.
				return View{}, fmt.Errorf("read shm locate %d: length %d above %d: %w", locate, n, r.l.maxSnapshot, ErrFormat)
			}
			copy(buf[:n], data[:n])
			loadFence()
			if atomic.LoadUint64(seq) == s1 {
				if !validSnapshot(buf[:n], r.l.depth) {
					return View{}, fmt.Errorf("read shm locate %d: %w", locate, ErrFormat)
				}
				var v View
				v.Init(buf[:n], tableAt)
				v.Version = s1 / 2
				return v, nil
			}
		}
		if gone != nil {
			// The attempt after the writer was found gone failed too:
			// it left the slot odd, inside a publish.
			return View{}, fmt.Errorf("read shm locate %d: %w", locate, gone)
		}
		if spin < 256 {
			continue
		}
		runtime.Gosched()
		if spin%1024 != 0 {
			continue
		}
		// Slow path, every 1024 attempts: a writer that died or closed
		// while holding the slot will never release it. One that is gone
		// between publishes left the slot readable: one more attempt
		// reads it (the attempts before may all have met a publish).
		// The mapped file's own writer is asked about, not the file's
		// name: a new writer may have replaced the file since the old
		// one died inside a publish.
		if err := r.writerGone(); err != nil {
			gone = err
			continue
		}
		if start.IsZero() {
			start = time.Now()
		} else if time.Since(start) > busyTimeout {
			return View{}, fmt.Errorf("read shm locate %d: %w", locate, ErrBusy)
		}
	}
}

// ReadSymbol is Read by symbol: the book of symbol, never another's.
//
// It looks the symbol's locate up, then reads the locate. A session change
// between the two (the writer rebinding the locate to another symbol, or
// the symbol to another locate) leaves the locate with another symbol's
// book, or none: every slot holds one symbol's snapshots, so the
// snapshot's symbol tells, and ReadSymbol looks up again once. A symbol
// whose locate changed again meanwhile is ErrUnknownLocate.
func (r *Reader) ReadSymbol(symbol string, buf []byte) (_ View, err error) {
	if r.m.mem == nil {
		return View{}, r.closedError("read")
	}
	defer r.unguard(guard(), "read", &err)
	for again := false; ; again = true {
		l, ok := r.lookup(symbol)
		if !ok {
			return View{}, fmt.Errorf("read shm %q: %w", symbol, ErrUnknownLocate)
		}
		symbolLookedUp(symbol, l)
		v, err := r.read(l, buf)
		moved := errors.Is(err, ErrUnknownLocate) || errors.Is(err, ErrNoData)
		if err == nil && string(v.Symbol()) != symbol {
			if again {
				return View{}, fmt.Errorf("read shm %q: locate %d bound to %q while it was read: %w", symbol, l, v.Symbol(), ErrUnknownLocate)
			}
			moved = true
		}
		if !moved || again {
			return v, err
		}
	}
}

// symbolLookedUp is called by ReadSymbol between its lookup and its read
// (a test rebinds the locate there).
var symbolLookedUp = func(symbol string, locate uint16) {}
