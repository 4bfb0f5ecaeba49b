package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/procstat"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// CheckHost checks what the config names on this host, in the caller's
// network namespace: that each line's interface exists, that the AF_XDP
// receive queues exist on it, that the hot threads' cores are CPUs this
// process may run on (and, sharded, not the receive core twice), that the
// books, with the rest of the process, fit in the memory it can have, that
// a metrics.listen address with a zone is its interface's (and a
// link-local one has a zone) and its port is one this process may bind,
// that capture.path's directory exists and takes new files, that shm.group names a group of the host, that the
// shm file can be created and given to it (checkSharedMemory), that backend uring can create its ring
// (rx.ProbeUring) and, when this
// process is root (the only case it is used), that user names an account.
// Parse cannot check these (a file is written and validated on
// one machine and run on another); the feed handler calls CheckHost before
// it opens anything, so a wrong name is a config error in one line
//
//	feeds/nasdaq.yaml:23: lines.a.interface: no interface "ens1f0" on this host (have: lo, eth0)
//
// and never a reason for the receive backends to fall back. After them
// come the problems LoadCheck left to it (the snapshot password's
// variable not set, its file unreadable). The errors are *Error values
// (wrapping ErrInvalid), joined when there are several.
func (c *Config) CheckHost() error {
	var errs []error
	// addAt names field at the line of key (a list element at its key's).
	addAt := func(key, field, format string, args ...any) {
		errs = append(errs, &Error{File: c.File, Line: c.fieldAt[key], Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	add := func(path, format string, args ...any) { addAt(path, path, format, args...) }
	xdp := c.Receive.Backend == rx.BackendAuto || c.Receive.Backend == rx.BackendXDP
	queuesChecked := map[string]bool{}
	for _, l := range c.Lines {
		path := "lines." + strings.ToLower(l.Name) + ".interface"
		if _, err := rx.LookupInterface(l.Interface); err != nil {
			add(path, "%v", err) // `no interface "ens1f0" on this host (have: lo, eth0)`
			continue
		}
		if !xdp || len(c.Receive.Queues) == 0 || queuesChecked[l.Interface] {
			continue
		}
		queuesChecked[l.Interface] = true
		n, ok := rxQueues(l.Interface)
		if !ok {
			continue // no sysfs: the AF_XDP bind will say
		}
		for _, q := range c.Receive.Queues {
			if q >= n {
				add("receive.queues", "queue %d does not exist on %s (line %s), which has %d receive queue%s (0..%d)",
					q, l.Interface, l.Name, n, plural(n), n-1)
				break
			}
		}
	}
	c.checkCores(addAt)
	c.checkBookMemory(add)
	if err := c.checkListen(); err != nil {
		add("metrics.listen", "%v", err)
	} else if err := c.checkListenPort(); err != nil {
		add("metrics.listen", "%v", err)
	} else if err := c.checkListenAllowed(); err != nil {
		add("metrics.listen", "%v", err)
	}
	// Found missing only later, these stopped the start with exit status
	// 1, which systemd restarts: the group when the shm file is created,
	// the account after setup.
	if c.SHM.Group != "" {
		if _, err := shm.LookupGroup(c.SHM.Group); err != nil {
			add("shm.group", "%v on this host (groupadd --system %s, docs/OPERATIONS.md)", err, c.SHM.Group)
		}
	}
	c.checkSharedMemory(add)
	if c.Receive.Backend == rx.BackendUring {
		// What the backend's start would meet first: before, feedhandler
		// check said nothing of it (a kernel.io_uring_disabled of 1 or 2,
		// a seccomp filter) and run refused the start, exit 78.
		if err := rx.ProbeUring(); errors.Is(err, rx.ErrNotSupported) {
			add("receive.backend", "%v: backend uring cannot run on this host (auto would fall back to the sockets; docs/OPERATIONS.md section 1)", err)
		}
	}
	if c.Capture.Path != "" {
		// Found only when the handler starts, after the shm file and the
		// recovery are set up: exit status 1, restarted by systemd.
		if err := checkCaptureDir(c.Capture.Path); err != nil {
			add("capture.path", "%v", err)
		}
	}
	if c.User != "" && os.Geteuid() == 0 {
		if _, err := privilege.LookupUser(c.User); err != nil {
			add("user", "%v named %q on this host (useradd --system %s, docs/OPERATIONS.md)", err, c.User, c.User)
		}
	}
	// LoadCheck's: the snapshot password's source (Load refuses them).
	for _, e := range c.hostErrs {
		errs = append(errs, e)
	}
	return join(c.File, errs)
}

// UserNotSwitched says, when this process is not root and user: names an
// account other than the one it runs as, that the handler will not switch
// to it: it switches only when started as root, and runs on as this
// process's user, not the one the file says. The error is an *Error at
// user:'s line ("feeds/nasdaq.yaml:224: user: ..."); nil when user: is
// unset, this process is root, or it runs as that account already (a unit
// with User= as the file says). run logs it as a warning at start, check
// as a warning finding.
func (c *Config) UserNotSwitched() error {
	euid := os.Geteuid()
	if c.User == "" || euid == 0 {
		return nil
	}
	self := strconv.Itoa(euid)
	if u, err := user.LookupId(self); err == nil {
		self += " (" + u.Username + ")"
	}
	u, err := privilege.LookupUser(c.User)
	if err != nil {
		return c.FieldError("user", "%q: %v on this host, and not switched to anyway: the handler switches user only when started as root, and runs as uid %s (start it as root, or as that user with User= in the unit; docs/OPERATIONS.md section 1)", c.User, err, self)
	}
	if u.Uid == strconv.Itoa(euid) {
		return nil
	}
	return c.FieldError("user", "%q (uid %s) not switched to: the handler switches user only when started as root, and this one runs as uid %s, so it stays that user, not the file's (start it as root, or as %s with User= in the unit; docs/OPERATIONS.md section 1)", c.User, u.Uid, self, c.User)
}

// checkCaptureDir checks that the directory capture.path's files go to
// exists and this process may create files in it (the handler creates
// each start's capture there before it drops privileges).
func checkCaptureDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("directory %s: no file can be created in it: %w", dir, err)
	}
	return nil
}

// checkSharedMemory refuses what stops the shm file's creation whatever
// the number of restarts: a directory it may not create files in
// (read-only: a ReadOnlyPaths= over it that no ReadWritePaths=/dev/shm
// undoes, a container's read-only mount; not writable by this process), a directory at
// the file's name, another user's file there in a sticky directory
// without cap_fowner (only its owner may replace it), and an shm.group
// this process may not give the file to (not a member, without
// cap_chown). The handler refused each when it created the file, exit
// 78, while feedhandler check printed a FAIL line and exited 1; both now
// refuse them here, one line each, exit 78. A live writer under the name
// and a full file system are not here: a restart may find them gone
// (exit 1, a FAIL line of check).
func (c *Config) checkSharedMemory(add func(path, format string, args ...any)) {
	path := shm.Path(c.SHM.Name)
	dir := filepath.Dir(path)
	switch err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); {
	case errors.Is(err, unix.EROFS):
		add("shm.name", "%s is read-only to this process: the feed file cannot be created in it (under systemd: a ReadOnlyPaths= over it, which ReadWritePaths=%s undoes; ProtectSystem=strict leaves it writable; in a container: its mount, docs/OPERATIONS.md)", dir, dir)
		return
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		add("shm.name", "this process (uid %d) may not create files in %s (%v), which is normally mode 1777: the feed file cannot be created in it", os.Geteuid(), dir, err)
		return
	}
	eff, _ := privilege.Effective()
	if st, err := os.Lstat(path); err == nil && st.IsDir() {
		add("shm.name", "%s is a directory, not a feed file: the start cannot rename the new file over it; remove it, or give this feed another shm.name", path)
	} else if owner, foreign := shm.ForeignInSticky(path); foreign && eff&privilege.Fowner == 0 {
		add("shm.name", "%s is owned by uid %d and this process (uid %d) cannot replace it: %s is sticky and it lacks cap_fowner, so only the file's owner may replace it (remove the file, or run as its owner)",
			path, owner, os.Geteuid(), dir)
	}
	if c.SHM.Group == "" || eff&privilege.Chown != 0 {
		return
	}
	gid, err := shm.LookupGroup(c.SHM.Group)
	if err != nil {
		return // refused above when missing
	}
	if !privilege.InGroup(gid) {
		add("shm.group", "%s (gid %d): this process (uid %d) is not a member and lacks cap_chown, so it cannot give the feed file to the group (SupplementaryGroups= in the unit, docs/OPERATIONS.md section 3)",
			c.SHM.Group, gid, os.Getuid())
	}
}

// checkCores refuses a hot thread's core that this process may not run on
// (a CPU the host lacks, or one outside its affinity mask: the unit's
// CPUAffinity=, the cgroup's cpuset), and, sharded, a receive core that is
// also a shard's: the thread would run unpinned, or two hot threads would
// take turns on one CPU (under cores.rt_priority, a spinning one keeps
// the other off it). Unset (config.Unpinned) is "not pinned", by choice.
// In run to completion a single shard core is unused (handler.Start warns)
// and not checked.
func (c *Config) checkCores(addAt func(key, field, format string, args ...any)) {
	var allowed unix.CPUSet
	if unix.SchedGetaffinity(0, &allowed) != nil {
		return // the pinning says (handler: "thread not pinned")
	}
	type hot struct {
		path, name string // fieldAt key; field named in the error
		cpu        int
	}
	ts := []hot{{"cores.receive", "cores.receive", c.Cores.Receive}}
	if len(c.Cores.Shards) >= 2 {
		for i, cpu := range c.Cores.Shards {
			ts = append(ts, hot{"cores.shards", "cores.shards[" + strconv.Itoa(i) + "]", cpu})
		}
	}
	for _, t := range ts {
		if t.cpu == Unpinned {
			continue
		}
		if t.cpu >= 8*len(allowed) || !allowed.IsSet(t.cpu) {
			addAt(t.path, t.name, "CPU %d is not one this process may run on (CPUs %s: online, and in its affinity, the unit's CPUAffinity= and the cgroup's cpuset): its thread would run unpinned",
				t.cpu, cpuList(&allowed))
		}
	}
	if r := c.Cores.Receive; r != Unpinned && len(c.Cores.Shards) >= 2 {
		for i, cpu := range c.Cores.Shards {
			if cpu == r {
				addAt("cores.shards", "cores.shards["+strconv.Itoa(i)+"]", "CPU %d is also cores.receive: two hot threads would take turns on one CPU (give each its own core, or leave cores.receive unset)", cpu)
			}
		}
	}
}

// checkBookMemory refuses books that, with what the rest of the process
// holds from its start, do not fit in the memory this process can have:
// book.New allocates and touches every table at start, so a
// book.max_orders beyond it was an out-of-memory kill (or a failed
// allocation) at every start, restarted by systemd, rather than a config
// error. The bound is the smallest of MemTotal, RLIMIT_AS and the cgroup's
// memory limit (hostMemory). What only grows under load (Memory's Growth:
// the socket buffers, the held packets) is not refused: a start with no
// room for it warns (Memory.Warning).
func (c *Config) checkBookMemory(add func(path, format string, args ...any)) {
	m := c.Memory()
	if m.Err != nil {
		add("book.max_orders", "%v", m.Err)
		return
	}
	if m.Have <= 0 || m.Books+m.Start <= m.Have {
		return
	}
	msg := fmt.Sprintf("%d orders (max_locates %d, %d shard(s)) need %d bytes (%s) of book tables; with what the rest of the process holds from its start (%s) that is %d bytes (%s), and this process can have %d bytes (%s, %s): lower book.max_orders",
		c.Book.MaxOrders, c.Book.MaxLocates, m.Shards, m.Books, mibs(m.Books), m.StartParts, m.Books+m.Start, mibs(m.Books+m.Start), m.Have, mibs(m.Have), m.HaveWhat)
	if m.Growth > 0 {
		msg += fmt.Sprintf(" (under load it can grow by %s more: %s)", mibs(m.Growth), m.GrowthParts)
	}
	add("book.max_orders", "%s", msg)
}

// runtimeReserve is what Memory counts for the Go runtime and the
// handler's tables other than the books, the shm file, the receive
// buffers, the held packets, the capture's ring and, sharded, the
// shards' rings (ShardBytes each): the locate tables, the stacks, run to
// completion's one shard's publisher, the garbage of scrapes and log
// lines. Measured at start with the default config on the socket
// backend: about 26 MiB of the resident set beyond the book tables and
// the shm file (13 MiB of it the binary's pages).
const runtimeReserve = 64 << 20

// heldPacketBytes is a held-back packet's slot in the arbiter's arena
// (handler.ArbiterConfig.SlotSize's default): recovery.spill of them.
const heldPacketBytes = 2048

// Memory is what the process needs, as checkBookMemory counts it: what
// it holds from its start (Books and Start: allocated and touched, or
// mapped and locked, before it receives) and what can grow under load
// (Growth), against what it can have (Have; 0: unknown).
type Memory struct {
	Books  int64 // the book tables, every shard's
	Shards int   // book shards
	// Start is the rest held from the start: the shm file (tmpfs pages,
	// charged to the writer's cgroup), the receive buffers mapped at
	// open (the AF_XDP UMEMs, io_uring's buffer ring), the capture's
	// ring, the shards' rings and the Go runtime with the handler's other
	// tables; StartParts names each.
	Start      int64
	StartParts string
	// Growth is what fills only under load: the socket buffers (twice
	// receive.recv_buffer a line, socketHeld; filled when the receive
	// thread falls behind), the held packets' arena (recovery.spill
	// packets, never touched at start, filled by a deep gap or a long
	// recovery) and the re-request sockets' buffers (socketHeld of
	// recovery.rerequest.recv_buffer, two sockets a server: a new one and
	// the old one after a restart; filled by an answer not read yet);
	// GrowthParts names each.
	Growth      int64
	GrowthParts string
	Have        int64  // the most this process can have (hostMemory)
	HaveWhat    string // what sets Have: MemTotal, RLIMIT_AS, the cgroup's file
	Err         error  // the books cannot be sized (book.Config.Bytes)
}

// Fits reports whether the books, the rest and all that can grow fit in
// what the process can have (or that is unknown).
func (m Memory) Fits() bool { return m.Have <= 0 || m.Books+m.Start+m.Growth <= m.Have }

// Warning is the warning for a start whose books and rest fit but whose
// growth under load does not (Fits false); "" when it fits. checkBookMemory
// refuses what does not fit at start.
func (m Memory) Warning() string {
	if m.Fits() || m.Books+m.Start > m.Have {
		return ""
	}
	return fmt.Sprintf("books %s and the rest %s fit at start (%s of %s, %s), but under load the process can grow by %s (%s) to %s: past the limit, the held packets of a long recovery or a snapshot's download are an out-of-memory kill; lower recovery.spill (or receive.recv_buffer, book.max_orders) or raise the limit",
		mibs(m.Books), mibs(m.Start), mibs(m.Books+m.Start), mibs(m.Have), m.HaveWhat, mibs(m.Growth), m.GrowthParts, mibs(m.Books+m.Start+m.Growth))
}

// String is Memory for `feedhandler check`'s line.
func (m Memory) String() string {
	return fmt.Sprintf("books %s, the rest %s held from the start (%s), up to %s more under load (%s): %s of %s (%s)",
		mibs(m.Books), mibs(m.Start), m.StartParts, mibs(m.Growth), m.GrowthParts, mibs(m.Books+m.Start+m.Growth), mibs(m.Have), m.HaveWhat)
}

// Memory counts what the process needs on this host (checkBookMemory).
func (c *Config) Memory() Memory {
	m := Memory{Shards: c.BookShards()}
	per, err := c.BookConfig().Bytes()
	if err != nil {
		m.Err = err
		return m
	}
	m.Books = per * int64(m.Shards)
	m.Have, m.HaveWhat = hostMemory()
	shmFile := shm.FileSize(shm.Config{Instruments: c.SHM.Slots, Depth: c.Book.Depth})
	// One backend's buffers at a time: auto's fallback opens io_uring's
	// buffer ring and the sockets' buffers once the AF_XDP attempt has
	// unmapped its UMEMs, and under AF_XDP the lines' sockets only join
	// their groups (never bound, they receive nothing), so auto needs
	// the larger, not the sum. io_uring maps and touches its buffer ring
	// (receive.ring_size x 2112 bytes) at open; the sockets' buffers are the
	// kernel's, filled only while the receive thread is behind.
	rxc := c.RxConfig(zerolog.Nop())
	sockets := socketHeld(c.Receive.RecvBuffer) * int64(len(c.Lines))
	var mapped int64
	switch c.Receive.Backend {
	case rx.BackendXDP:
		mapped, sockets = rx.XDPLockedBytes(rxc), 0
	case rx.BackendUring:
		mapped = rx.UringBufferBytes(rxc)
	case rx.BackendSocket:
	default: // auto
		// The larger ring at start; the sockets' buffers should it
		// fall back.
		mapped = max(rx.XDPLockedBytes(rxc), rx.UringBufferBytes(rxc))
	}
	m.Start = shmFile + mapped + runtimeReserve
	m.StartParts = fmt.Sprintf("shm file %s, receive rings %s, Go runtime and tables %s", mibs(shmFile), mibs(mapped), mibs(runtimeReserve))
	if c.Capture.Path != "" {
		ring := capture.RingBytes(c.Capture.Buffer)
		m.Start += ring
		m.StartParts += ", capture ring " + mibs(ring)
	}
	if n := int64(c.BookShards()); n >= 2 {
		m.Start += n * ShardBytes
		m.StartParts += fmt.Sprintf(", shard rings and tables %s (%d shards, %s each)", mibs(n*ShardBytes), n, mibs(ShardBytes))
	}
	held := int64(c.Recovery.Spill) * heldPacketBytes
	m.Growth = sockets + held
	m.GrowthParts = fmt.Sprintf("socket buffers %s, held packets %s", mibs(sockets), mibs(held))
	if n := int64(len(c.Recovery.Rerequest.Servers)); n > 0 {
		// A socket a server, on every backend, filled by an answer the
		// receive thread has not read yet; after a session change or a
		// sequence restart a server is asked from a new socket while its
		// old one stays open to drop late answers (rerequest.Client.Forget):
		// two a server.
		rr := 2 * n * socketHeld(c.Recovery.Rerequest.RecvBuffer)
		m.Growth += rr
		m.GrowthParts += fmt.Sprintf(", re-request socket buffers %s (%d server(s), 2 sockets each after a restart, %s each)", mibs(rr), n, mibs(socketHeld(c.Recovery.Rerequest.RecvBuffer)))
	}
	if c.Recovery.Snapshot.Server != "" {
		b, bufs := c.SnapshotBufferBytes(), int64(1)
		if c.Capture.Path != "" {
			// The capture's writer holds the last snapshot's buffer
			// until written; a fetch meanwhile downloads into its own.
			bufs = 2
		}
		m.Growth += bufs * b
		m.GrowthParts += fmt.Sprintf(", snapshot download buffer %s (%d orders of %d bytes and %d instruments of %d, a quarter more for its growth)",
			mibs(b), int64(c.BookConfig().MaxOrders)*int64(c.BookShards()), glimpse.BufferOrderBytes, c.BookConfig().MaxLocates, glimpse.BufferLocateBytes)
		if bufs == 2 {
			m.GrowthParts += " twice (one the capture is writing, one downloading)"
		}
	}
	return m
}

// SnapshotBufferBytes is what the download buffer of a GLIMPSE snapshot
// of full books holds at most (glimpse.BufferBytes of every shard's
// book.max_orders and book.max_locates). A larger snapshot cannot be
// loaded whole; a server that never ends its snapshot can grow the buffer
// up to recovery.snapshot.max_size before the fetch fails, and the
// handler releases such a buffer once the fetch has ended.
func (c *Config) SnapshotBufferBytes() int64 {
	bc := c.BookConfig()
	return glimpse.BufferBytes(int64(bc.MaxOrders)*int64(c.BookShards()), int64(bc.MaxLocates))
}

// socketHeld is what a full socket asked a receive buffer of recvBuffer
// bytes holds: twice that. SO_RCVBUF (and SO_RCVBUFFORCE) set the
// kernel's limit to twice the size asked, for its bookkeeping, and the
// datagrams queued are charged their skb truesize up to it (measured on
// Linux 6.18: 1 MiB asked, 2,096,640 bytes held once flooded).
func socketHeld(recvBuffer int) int64 { return 2 * int64(recvBuffer) }

func mibs(n int64) string { return strconv.FormatInt(n>>20, 10) + " MiB" }

// hostMemory is the most memory this process can have and what sets it:
// the smallest of /proc/meminfo's MemTotal, RLIMIT_AS and the memory limit
// of its cgroup and their ancestors (cgroupMemory); 0 when none can be
// read. A variable for tests.
var hostMemory = func() (int64, string) {
	var have int64
	var what string
	take := func(n int64, w string) {
		if n > 0 && (have == 0 || n < have) {
			have, what = n, w
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					take(kb<<10, "MemTotal")
				}
			}
		}
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_AS, &rl) == nil && rl.Cur != unix.RLIM_INFINITY && rl.Cur < 1<<62 {
		take(int64(rl.Cur), "RLIMIT_AS")
	}
	take(cgroupMemory("/proc/self/cgroup", "/proc/self/mountinfo", "/sys/fs/cgroup/memory"))
	return have, what
}

// cgroupMemory is the smallest memory limit of the cgroup that
// cgroupFile (a process's /proc/PID/cgroup) names and of its ancestors,
// and what sets it ("cgroup FILE"); 0 when none is set or none can be
// read. On cgroup v2 it is memory.max, read by procstat as the
// feedhandler_cgroup_memory_limit_bytes metric reads it (the cgroup2 mount
// found in mountinfo, a container's subtree); where the memory controller
// is a v1 hierarchy (mounted at v1Mount), memory.limit_in_bytes.
func cgroupMemory(cgroupFile, mountinfo, v1Mount string) (int64, string) {
	if c, err := procstat.OpenCgroupMemoryFrom(cgroupFile, mountinfo); err == nil {
		defer c.Close()
		if n, file, err := c.Max(); err == nil && n < 1<<62 {
			return int64(n), "cgroup " + file
		}
		return 0, ""
	}
	b, err := os.ReadFile(cgroupFile)
	if err != nil {
		return 0, ""
	}
	var have int64
	var what string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[0] == "0" || !slices.Contains(strings.Split(f[1], ","), "memory") {
			continue
		}
		for p := f[2]; ; p = filepath.Dir(p) {
			file := filepath.Join(v1Mount, p, "memory.limit_in_bytes")
			if v, err := os.ReadFile(file); err == nil {
				// v1's near 2^63 means no limit.
				if n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64); err == nil && n > 0 && n < 1<<62 && (have == 0 || n < have) {
					have, what = n, "cgroup "+file
				}
			}
			if p == "/" || p == "." || p == "" {
				break
			}
		}
	}
	return have, what
}

// cpuList formats a CPU set as ranges, "0-3,6".
func cpuList(s *unix.CPUSet) string {
	var b strings.Builder
	n := 8 * len(s)
	for cpu := 0; cpu < n; cpu++ {
		if !s.IsSet(cpu) {
			continue
		}
		end := cpu
		for end+1 < n && s.IsSet(end+1) {
			end++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpu))
		if end > cpu {
			b.WriteString("-" + strconv.Itoa(end))
		}
		cpu = end
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// rxQueues counts /sys/class/net/NAME/queues/rx-*; false without sysfs.
func rxQueues(name string) (int, bool) {
	m, err := filepath.Glob(filepath.Join("/sys/class/net", name, "queues", "rx-*"))
	if err != nil || len(m) == 0 {
		return 0, false
	}
	return len(m), true
}

// checkListen checks a literal IP in metrics.listen that names its
// interface (a zone) against that interface's addresses, and refuses a
// link-local one without a zone. An address the host does not have is
// not refused: it may come after the start, and the handler binds it with
// IP_FREEBIND. Names and the unspecified address are left to net.Listen.
func (c *Config) checkListen() error {
	if c.Metrics.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Metrics.Listen)
	if err != nil {
		return nil // Parse has checked the shape
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return nil
	}
	// A link-local address names its interface as a zone, which the
	// host's addresses do not carry: "[fe80::1%eth0]:9100" is eth0's
	// fe80::1.
	zone := ip.Zone()
	ip = ip.WithZone("")
	if zone == "" && ip.Is6() && ip.IsLinkLocalUnicast() {
		return linkLocalNoZone(ip, c.Metrics.Listen)
	}
	var addrs []net.Addr
	if zone != "" {
		ifi, err := net.InterfaceByName(zone)
		if n, aerr := strconv.Atoi(zone); err != nil && aerr == nil {
			ifi, err = net.InterfaceByIndex(n)
		}
		if err != nil {
			return fmt.Errorf("no interface %q (the zone of %s) on this host", zone, host)
		}
		addrs, err = ifi.Addrs()
		if err != nil {
			return fmt.Errorf("list %s's addresses: %w", zone, err)
		}
	} else if addrs, err = net.InterfaceAddrs(); err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	var have []string
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if p.Addr().Unmap() == ip.Unmap() {
			return nil
		}
		have = append(have, p.Addr().String())
	}
	if zone != "" {
		return fmt.Errorf("no address %s on %s (have: %s)", ip, zone, strings.Join(have, ", "))
	}
	// Not (yet) an address of this host: a service address added after
	// the start (keepalived, the network manager). The handler binds it
	// with IP_FREEBIND and warns (cmd/feedhandler's listenMetrics); check
	// warns too.
	return nil
}

// checkListenPort refuses a metrics.listen port below
// net.ipv4.ip_unprivileged_port_start (of the caller's network namespace;
// IPv6 binds follow it too) when this process lacks cap_net_bind_service:
// the bind would fail with EACCES, and no restart grants a capability.
// The unit does not grant it, least privilege for a port that needs none:
// the remedy is a higher port. Found here, check (the unit's
// ExecStartPre=) and run say it in the same line with the same status;
// before, check printed a bare FAIL finding (exit 1) where run exited 78.
// Port 0 (any port) and a sysctl it cannot read are left to the bind.
func (c *Config) checkListenPort() error {
	port, start, low := lowPort(c.Metrics.Listen)
	if !low {
		return nil
	}
	return fmt.Errorf("port %d is below net.ipv4.ip_unprivileged_port_start (%d) and this process lacks cap_net_bind_service: use a port of %d or above (the unit grants no cap_net_bind_service: least privilege, docs/OPERATIONS.md section 1)",
		port, start, start)
}

// lowPort reports whether listen's port is below
// net.ipv4.ip_unprivileged_port_start (start) and this process lacks
// cap_net_bind_service to bind it.
func lowPort(listen string) (port, start int, low bool) {
	_, p, err := net.SplitHostPort(listen) // unset: an error
	port, perr := net.LookupPort("tcp", p)
	if err != nil || perr != nil || port == 0 {
		return port, 0, false
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return port, 0, false
	}
	start, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || port >= start {
		return port, start, false
	}
	if eff, err := privilege.Effective(); err != nil || eff&privilege.NetBindService != 0 {
		return port, start, false
	}
	return port, start, true
}

// checkListenAllowed binds metrics.listen for a moment, after
// checkListenPort has passed its port: a bind refused there (EACCES,
// EPERM) is a policy's, a security module's or a cgroup bind program's,
// which no restart changes (ListenRefused). Before, run exited 78 blaming
// a missing cap_net_bind_service for a port that needs none, and check
// printed a bare FAIL line, exit 1. A port in use or an address not up
// yet is left to run and check's findings (restarted; bound with
// IP_FREEBIND).
func (c *Config) checkListenAllowed() error {
	if c.Metrics.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", c.Metrics.Listen)
	if err == nil {
		ln.Close()
		return nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return ListenRefused(c.Metrics.Listen, err)
	}
	return nil
}

// ListenRefused is a bind of listen (metrics.listen) refused with err,
// EACCES or EPERM, said with its cause and remedy: a port below
// net.ipv4.ip_unprivileged_port_start without cap_net_bind_service, or
// else a policy: a security module (SELinux, AppArmor: EACCES) or a BPF
// program on the cgroup's bind hook (EPERM, or what it sets).
func ListenRefused(listen string, err error) error {
	if port, start, low := lowPort(listen); low {
		return fmt.Errorf("%w: port %d is below net.ipv4.ip_unprivileged_port_start (%d) and this process lacks cap_net_bind_service: use a port of %d or above", err, port, start, start)
	}
	return fmt.Errorf("%w: refused by a policy, not for want of a capability (the port needs none here): a security module (SELinux: the port's type, semanage port -l; AppArmor: the profile's network rules; the audit log names the denial) or a BPF program on the cgroup's bind hook; allow this port there, or use one the policy allows (docs/OPERATIONS.md section 1)", err)
}

// linkLocalNoZone is checkListen's error for an IPv6 link-local address
// without a zone, which net.Listen cannot bind (EINVAL: the kernel does
// not know which link's): named with the interfaces that have it.
func linkLocalNoZone(ip netip.Addr, listen string) error {
	_, port, _ := net.SplitHostPort(listen)
	var on []string
	ifs, _ := net.Interfaces()
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == ip {
				on = append(on, net.JoinHostPort(ip.WithZone(ifi.Name).String(), port))
			}
		}
	}
	hint := "name its interface as a zone, [" + ip.String() + "%IFNAME]:" + port
	if len(on) > 0 {
		hint = "name its interface as a zone: " + strings.Join(on, " or ")
	}
	return fmt.Errorf("%s is link-local, which cannot be bound without its interface (bind: invalid argument); %s", ip, hint)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
