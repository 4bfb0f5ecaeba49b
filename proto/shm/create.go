package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/mem"
)

// This file holds the making of a feed file: Create (built under a temporary
// name, renamed into place), its size, whether it may replace the file
// there (a live writer's, another user's in a sticky directory), and the
// removal of the temporary files of writers that died inside Create.

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
