package privilege

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/deathsig"
)

// Caps is a set of Linux capabilities, bit n for capability n.
type Caps uint64

// The capabilities the handler may use.
const (
	NetBindService Caps = 1 << unix.CAP_NET_BIND_SERVICE
	NetAdmin       Caps = 1 << unix.CAP_NET_ADMIN
	NetRaw         Caps = 1 << unix.CAP_NET_RAW
	IPCLock        Caps = 1 << unix.CAP_IPC_LOCK
	SysNice        Caps = 1 << unix.CAP_SYS_NICE
	SysResource    Caps = 1 << unix.CAP_SYS_RESOURCE
	Perfmon        Caps = 1 << unix.CAP_PERFMON
	BPF            Caps = 1 << unix.CAP_BPF
	Setuid         Caps = 1 << unix.CAP_SETUID
	Setgid         Caps = 1 << unix.CAP_SETGID
	Chown          Caps = 1 << unix.CAP_CHOWN
	Fowner         Caps = 1 << unix.CAP_FOWNER
)

// ErrNotSupported: the capabilities cannot be changed on every thread of
// this process (syscall.AllThreadsSyscall is unavailable when cgo is linked).
var ErrNotSupported = errors.New("privilege: not supported")

var capNames = map[int]string{
	unix.CAP_CHOWN: "cap_chown", unix.CAP_DAC_OVERRIDE: "cap_dac_override", unix.CAP_DAC_READ_SEARCH: "cap_dac_read_search",
	unix.CAP_FOWNER: "cap_fowner", unix.CAP_FSETID: "cap_fsetid", unix.CAP_KILL: "cap_kill", unix.CAP_SETGID: "cap_setgid",
	unix.CAP_SETUID: "cap_setuid", unix.CAP_SETPCAP: "cap_setpcap", unix.CAP_LINUX_IMMUTABLE: "cap_linux_immutable",
	unix.CAP_NET_BIND_SERVICE: "cap_net_bind_service", unix.CAP_NET_BROADCAST: "cap_net_broadcast",
	unix.CAP_NET_ADMIN: "cap_net_admin", unix.CAP_NET_RAW: "cap_net_raw", unix.CAP_IPC_LOCK: "cap_ipc_lock",
	unix.CAP_IPC_OWNER: "cap_ipc_owner", unix.CAP_SYS_MODULE: "cap_sys_module", unix.CAP_SYS_RAWIO: "cap_sys_rawio",
	unix.CAP_SYS_CHROOT: "cap_sys_chroot", unix.CAP_SYS_PTRACE: "cap_sys_ptrace", unix.CAP_SYS_PACCT: "cap_sys_pacct",
	unix.CAP_SYS_ADMIN: "cap_sys_admin", unix.CAP_SYS_BOOT: "cap_sys_boot", unix.CAP_SYS_NICE: "cap_sys_nice",
	unix.CAP_SYS_RESOURCE: "cap_sys_resource", unix.CAP_SYS_TIME: "cap_sys_time", unix.CAP_SYS_TTY_CONFIG: "cap_sys_tty_config",
	unix.CAP_MKNOD: "cap_mknod", unix.CAP_LEASE: "cap_lease", unix.CAP_AUDIT_WRITE: "cap_audit_write",
	unix.CAP_AUDIT_CONTROL: "cap_audit_control", unix.CAP_SETFCAP: "cap_setfcap", unix.CAP_MAC_OVERRIDE: "cap_mac_override",
	unix.CAP_MAC_ADMIN: "cap_mac_admin", unix.CAP_SYSLOG: "cap_syslog", unix.CAP_WAKE_ALARM: "cap_wake_alarm",
	unix.CAP_BLOCK_SUSPEND: "cap_block_suspend", unix.CAP_AUDIT_READ: "cap_audit_read", unix.CAP_PERFMON: "cap_perfmon",
	unix.CAP_BPF: "cap_bpf", unix.CAP_CHECKPOINT_RESTORE: "cap_checkpoint_restore",
}

// String lists the set as comma-separated names ("none" when empty), as
// setpriv and systemd's AmbientCapabilities= spell them.
func (c Caps) String() string {
	if c == 0 {
		return "none"
	}
	var names []string
	for i := 0; i < 64; i++ {
		if c&(1<<i) == 0 {
			continue
		}
		if n, ok := capNames[i]; ok {
			names = append(names, n)
		} else {
			names = append(names, "cap_"+strconv.Itoa(i))
		}
	}
	return strings.Join(names, ",")
}

// Required returns the capabilities a backend needs to start as a user
// other than root, as measured (docs/OPERATIONS.md): xdp loads and attaches
// the steering program (cap_bpf; cap_perfmon because the verifier allows its
// packet pointer arithmetic only then; cap_net_admin to attach it) and opens
// AF_XDP sockets (cap_net_raw); uring and socket need none. cap_ipc_lock is
// not listed: it is needed only when the UMEM (receive.ring_size x 4 KiB
// per queue, 16 MiB by default) exceeds RLIMIT_MEMLOCK, which the unit
// raises with LimitMEMLOCK=. busyPoll adds cap_net_admin: on every backend
// SO_PREFER_BUSY_POLL is refused without it (measured on Linux 6.18).
func Required(backend string, busyPoll bool) Caps {
	var c Caps
	switch backend {
	case "xdp", "auto": // auto: to get its first choice, xdp
		c = NetAdmin | NetRaw | BPF | Perfmon
	}
	if busyPoll {
		c |= NetAdmin
	}
	return c
}

// HasIPCLock reports whether the calling thread holds cap_ipc_lock, which
// exempts it from RLIMIT_MEMLOCK (false when it cannot tell).
func HasIPCLock() bool {
	eff, err := Effective()
	return err == nil && eff&IPCLock != 0
}

// Effective returns the calling thread's effective capabilities.
func Effective() (Caps, error) {
	eff, _, err := capget()
	return eff, err
}

func capget() (eff, perm Caps, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, 0, fmt.Errorf("capget: %w", err)
	}
	eff = Caps(data[0].Effective) | Caps(data[1].Effective)<<32
	perm = Caps(data[0].Permitted) | Caps(data[1].Permitted)<<32
	return eff, perm, nil
}

// Explain adds to err, when it is a permission error (EPERM, EACCES), the
// capabilities the backend needs and which of them this process lacks.
// Other errors come back unchanged: AF_XDP's ENOBUFS for locked memory
// the backend explains itself, on the thread that registered the UMEM.
func Explain(err error, backend string, busyPoll bool) error {
	if err == nil || !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		return err
	}
	eff, e2 := Effective()
	if e2 != nil {
		return err
	}
	need := Required(backend, busyPoll)
	if missing := need &^ eff; missing != 0 {
		return fmt.Errorf("%w (backend %s needs %s; this process lacks %s)", err, backend, need, missing)
	}
	return err
}

// ThreadCaps reads the effective and permitted capabilities of every
// thread of process pid (0: this process) from /proc.
func ThreadCaps(pid int) (eff, perm []Caps, err error) {
	dir := "/proc/self/task"
	if pid > 0 {
		dir = filepath.Join("/proc", strconv.Itoa(pid), "task")
	}
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read thread capabilities: %w", err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "status"))
		if err != nil {
			continue // the thread exited
		}
		f := StatusFields(b, 16, "CapEff", "CapPrm")
		eff, perm = append(eff, Caps(f[0])), append(perm, Caps(f[1]))
	}
	return eff, perm, nil
}

// StatusFields returns the numbers, in base, that a /proc status file b
// gives for keys ("Key:\tvalue" lines), in the order of keys; 0 for a key
// that is missing or not a number.
func StatusFields(b []byte, base int, keys ...string) []uint64 {
	vals := make([]uint64, len(keys))
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		for i, key := range keys {
			if k == key {
				vals[i], _ = strconv.ParseUint(strings.TrimSpace(v), base, 64)
			}
		}
	}
	return vals
}

// LookupUser finds account, a name or a uid.
func LookupUser(account string) (*user.User, error) {
	u, err := user.Lookup(account)
	if err != nil {
		if u, err = user.LookupId(account); err != nil {
			return nil, errors.New("no such user")
		}
	}
	return u, nil
}

// SwitchUser makes every thread run as account (a name or a uid), with its
// primary group and supplementary groups. Coming from root, the kernel
// clears every capability of every thread (capabilities(7)). It also
// clears their parent-death signal: SwitchUser sets again the one the
// process's parent gave it (PR_SET_PDEATHSIG, a supervisor's or a test's),
// on a thread kept for it, and sends it at once when the parent died during
// the switch.
func SwitchUser(account string) (uid, gid int, err error) {
	u, err := LookupUser(account)
	if err != nil {
		return 0, 0, fmt.Errorf("switch to user %q: %w", account, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	groups := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil && n != gid {
				groups = append(groups, n)
			}
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return 0, 0, fmt.Errorf("switch to user %s: setgroups: %w", account, err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return 0, 0, fmt.Errorf("switch to user %s: setresgid %d: %w", account, gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return 0, 0, fmt.Errorf("switch to user %s: setresuid %d: %w", account, uid, err)
	}
	if err := keepDeathsig(); err != nil {
		return 0, 0, fmt.Errorf("switch to user %s: %w", account, err)
	}
	return uid, gid, nil
}

// parentDeath is the parent-death signal a parent (a supervisor, a test)
// gave this process, and that parent's pid, as the main thread saw them
// when the package was initialized.
var parentDeath struct {
	sig  int
	ppid int
}

func init() {
	// Package initialization runs on the main goroutine locked to the main
	// thread (runtime.main), the thread exec started: the one that holds
	// the signal the parent asked for (PR_SET_PDEATHSIG before exec). A
	// thread the process creates starts with none, so after init no
	// goroutine could read it reliably.
	var sig int32
	if unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0) == nil {
		parentDeath.sig = int(sig)
	}
	parentDeath.ppid = unix.Getppid()
}

// keepDeathsig gives the process back the parent-death signal its parent
// set, which the kernel cleared on every thread at the uid change
// (commit_creds), or sends it now when the parent died in between.
//
// The signal belongs to a thread, not the process: the kernel sends it
// (to the whole thread group) when the parent dies while any thread that
// has it set exists (kernel/exit.c forget_original_parent), so it is set
// on deathsig.OnThread's thread, locked for the process's life. Not the main
// thread: after init no goroutine can run there except through
// AllThreadsSyscall, which cgo refuses. It costs that one sleeping thread,
// and only when a parent set the signal.
func keepDeathsig() error {
	if parentDeath.sig == 0 {
		return nil
	}
	var err error
	deathsig.OnThread(func() { err = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(parentDeath.sig), 0, 0, 0) })
	if err != nil {
		return fmt.Errorf("keep parent-death signal %d: %w", parentDeath.sig, err)
	}
	// The parent may have died between the switch and now, its signal
	// lost: send it as the kernel would have (to the whole process).
	if unix.Getppid() != parentDeath.ppid {
		if err := unix.Kill(unix.Getpid(), syscall.Signal(parentDeath.sig)); err != nil {
			return fmt.Errorf("parent %d died during the switch: send parent-death signal %d: %w", parentDeath.ppid, parentDeath.sig, err)
		}
	}
	return nil
}

// Drop sets the effective, permitted and inheritable capabilities of every
// thread to keep (intersected with what they have), clears the ambient set
// and sets no_new_privs, so nothing dropped can come back, not even through
// exec. It needs syscall.AllThreadsSyscall: ErrNotSupported when cgo is
// linked.
func Drop(keep Caps) error {
	_, perm, err := capget()
	if err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	keep &= perm
	dropMu.Lock()
	defer dropMu.Unlock()
	// Package variables: the kernel reads them through raw pointers, and
	// unlike a goroutine stack they never move.
	hdr, data := &dropHdr, &dropData
	*hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data[0].Effective, data[0].Permitted, data[0].Inheritable = uint32(keep), uint32(keep), uint32(keep)
	data[1].Effective, data[1].Permitted, data[1].Inheritable = uint32(keep>>32), uint32(keep>>32), uint32(keep>>32)
	// Ambient first: an ambient capability must stay in permitted and
	// inheritable, so lowering those would drop it anyway, but explicitly.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return fmt.Errorf("drop capabilities: clear ambient: %w", err)
	}
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("drop capabilities: capset %s: %w", keep, err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("drop capabilities: no_new_privs: %w", err)
	}
	return nil
}

var (
	dropMu   sync.Mutex
	dropHdr  unix.CapUserHeader
	dropData [2]unix.CapUserData
)

func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	switch e {
	case 0:
		return nil
	case syscall.ENOTSUP:
		return fmt.Errorf("%w: cgo is linked, so Go cannot change every thread (build with CGO_ENABLED=0): %w", ErrNotSupported, e)
	}
	return e
}

// WithoutOnThread runs fn on a thread of its own whose effective set lacks
// drop, the process's other threads keeping theirs, and returns once fn
// did; the thread is discarded then, never given to another goroutine. It
// is how a test sees what a process without those capabilities gets,
// without a child process. fn runs on another goroutine: it must not call
// t.Fatal (report through a variable instead).
func WithoutOnThread(drop Caps, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- WithoutOnLockedThread(drop, fn)
	}()
	return <-errc
}

// WithoutOnLockedThread runs fn on the calling goroutine, which must be
// locked to its thread (runtime.LockOSThread), with drop taken out of that
// thread's effective set, then puts the set back as it was: the thread
// keeps its other state, such as a network namespace a test switched it
// to (netlab.Do). Should the set not go back, the thread stays locked
// once more than the caller locked it, so that it ends with its goroutine
// instead of serving another without the capabilities.
func WithoutOnLockedThread(drop Caps, fn func()) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data, was [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	was = data
	data[0].Effective &^= uint32(drop)
	data[1].Effective &^= uint32(drop >> 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset without %s: %w", drop, err)
	}
	fn()
	if err := unix.Capset(&hdr, &was[0]); err != nil {
		runtime.LockOSThread()
		return fmt.Errorf("capset back with %s: %w", drop, err)
	}
	return nil
}

// MayRealtime reports whether this process may move a thread to
// SCHED_FIFO at prio: it holds cap_sys_nice, or its RLIMIT_RTPRIO is at
// least prio. A seccomp filter, or a cgroup with no real-time runtime, can
// still refuse it (ExplainRealtime says which).
func MayRealtime(prio int) bool {
	may, _, err := realtimeAllowed(prio)
	return err == nil && may
}

// realtimeAllowed reports whether this process holds cap_sys_nice or an
// RLIMIT_RTPRIO of at least prio, and its RLIMIT_RTPRIO.
func realtimeAllowed(prio int) (may bool, rtprio uint64, err error) {
	eff, err := Effective()
	if err != nil {
		return false, 0, err
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim); err != nil {
		return false, 0, err
	}
	return eff&SysNice != 0 || prio >= 0 && lim.Cur >= uint64(prio), lim.Cur, nil
}

// ExplainRealtime adds to err, the refusal of sched_setattr(SCHED_FIFO,
// prio) for a permission reason (EPERM), what would allow it and what this
// process has: cap_sys_nice, or an RLIMIT_RTPRIO of at least prio
// (systemd's LimitRTPRIO=, no capability needed). When the process holds
// one of them and is still refused, the refusal is a seccomp filter
// (systemd's RestrictRealtime=yes) or real-time group scheduling with no
// real-time runtime for the process's cgroup (cpu.rt_runtime_us 0). Other
// errors come back unchanged.
func ExplainRealtime(err error, prio int) error {
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	may, rtprio, e2 := realtimeAllowed(prio)
	if e2 != nil {
		return err
	}
	if !may {
		return fmt.Errorf("%w (priority %d needs cap_sys_nice or RLIMIT_RTPRIO >= %d; this process lacks cap_sys_nice and its RLIMIT_RTPRIO is %d: set LimitRTPRIO=%d in the unit)",
			err, prio, prio, rtprio, prio)
	}
	return fmt.Errorf("%w (this process has cap_sys_nice or RLIMIT_RTPRIO %d, yet the kernel refused: a seccomp filter (systemd RestrictRealtime=yes) or no real-time runtime for its cgroup (cpu.rt_runtime_us))",
		err, rtprio)
}

// SetRecvBuffer asks socket fd's receive buffer of want bytes:
// SO_RCVBUFFORCE, past net.core.rmem_max, when the process holds
// cap_net_admin, else SO_RCVBUF, which rmem_max caps (its error is
// returned). granted is what the kernel gave (half what SO_RCVBUF reads
// back: the kernel doubles it for its bookkeeping), 0 when it cannot tell.
// It allocates nothing, for a socket opened on a hot thread.
func SetRecvBuffer(fd, want int) (granted int, err error) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want) != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, want); err != nil {
			return 0, err
		}
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return 0, nil
	}
	return got / 2, nil
}

// InGroup reports whether this process is in group gid, as the kernel
// decides it for a group's rights (kernel.io_uring_group, a file's group):
// its effective gid or a supplementary group.
func InGroup(gid int) bool {
	if gid == os.Getegid() {
		return true
	}
	groups, _ := os.Getgroups()
	return slices.Contains(groups, gid)
}
