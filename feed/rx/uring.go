package rx

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/uring"
)

// uringRx is the io_uring backend: one ring, one provided buffer ring, one
// multishot RECVMSG per line socket (user data = line). A completion names
// the buffer holding io_uring_recvmsg_out, the source address, the control
// message (the kernel timestamp; the sockets' drops are read with
// SO_MEMINFO, dropGauge) and the payload; the packet is a view into it
// until Release gives the buffer id back to the buffer ring.
//
// Setup flags. With Config.LockedThread the ring uses
// SINGLE_ISSUER|DEFER_TASKRUN|R_DISABLED and the first Receive enables it,
// which makes the receiving thread its only submitter (Open may run on
// another thread, e.g. inside netlab.Do): the kernel then copies datagrams
// into buffers in batches when Receive waits, and wakes the thread once per
// wait. Measured on a flooded veth this sustains the sender's rate
// (~300k pkt/s here) with no socket drops.
//
// Without LockedThread, Receive may be called from any goroutine, hence
// from any OS thread, which SINGLE_ISSUER forbids; the ring uses
// COOP_TASKRUN (no IPI per datagram; a sleeping submitter is still woken).
// The kernel finishes each datagram as task work on the thread that
// submitted the request, so Receive moves the requests to its own thread
// when the Go scheduler has moved it (rehome). This mode is correct but
// costs the NAPI side one task-work wakeup per datagram: in tools/rxbench
// at the sender's full rate it received about a fifth of what recvmmsg did,
// at three times the CPU per packet, while LockedThread matched recvmmsg.
// Callers that care about speed lock their receive goroutine and set
// LockedThread.
type uringRx struct {
	mu     sync.Mutex
	closed atomic.Bool
	closer closer

	ring  *uring.Ring
	bufs  *uring.BufRing
	hdrs  *uring.Msghdrs
	socks []lineSocket
	armed []bool
	// Without LockedThread: the thread that armed each line's request and
	// whether a cancel is on its way (see rehome).
	locked     bool
	armTid     []int
	cancelling []bool
	// After completions were lost (the wait's EBADR, see dropped): the
	// lines whose reset cancel is on its way, the reset's number (in its
	// cancels' user data), and whether the buffers are to be reclaimed
	// once no line has a request running nor a cancel unanswered.
	resetCancel []bool
	resetGen    uint64
	reclaim     bool

	// wake: the file descriptors that also end a wait (Waker), each
	// polled by a one-shot POLL_ADD in the ring, armed when Receive is
	// about to wait (submitted by the wait's own io_uring_enter) and
	// again after its completion; wakeArmed, by entry: its poll runs.
	// wakeGen is in the polls' user data (uringWakeTag): a change of the
	// set cancels the running ones and moves it on, so that their late
	// completions are told apart. wakeFailed: a poll that completed with
	// an error, not armed again until the set changes. woke: a poll of
	// the set completed since the wait began.
	wake       wakeSet
	wakeArmed  [MaxWakeFds]bool
	wakeFailed [MaxWakeFds]bool
	wakeGen    uint64
	woke       bool

	batch   int
	timeout time.Duration
	mode    string
	name    string // Backend's: BackendUring and mode
	held    int    // buffers handed to the caller, not yet released
	lent    []bool // by buffer id: handed to the caller
	cqes    []uring.CQE

	counters
	drops           dropGauge
	bc              batchCounts
	rearms, enobufs atomic.Uint64
	rehomes         atomic.Uint64
	badReleases     atomic.Uint64
	cqDropped       atomic.Uint64
	droppedLoggedAt time.Time
	log             zerolog.Logger
	lastErr         error
	watch           lineWatch
}

const (
	uringBufGroup   = 1
	uringCancelTag  = 1 << 32
	uringProbeTag   = 1 << 33
	uringResetTag   = 1 << 34 // + reset<<uringResetShift + line: a reset's cancel (dropped)
	uringResetShift = 20
	// uringWakeTag + (gen mod 2^20)<<uringWakeShift + entry: a wake
	// file descriptor's poll (Waker). Below uringCancelTag and above any
	// line, so reap meets it in its branch for user data that is no line.
	uringWakeTag     = 1 << 31
	uringWakeShift   = 4
	uringWakeGens    = 1 << 20
	defaultUringBufs = 4096
)

// UringBuffers is the number of buffers of the io_uring backend's buffer
// ring: cfg.RingSize, or the default 4096. The backend takes a power of two
// of at least twice cfg.BatchSize and at most uring.MaxBufRingEntries.
func UringBuffers(cfg Config) int {
	if cfg.RingSize <= 0 {
		return defaultUringBufs
	}
	return cfg.RingSize
}

// uringBufSize is the size of each provided buffer. A multishot RECVMSG
// writes its struct io_uring_recvmsg_out, the source address and the
// control messages in front of the payload, so a buffer is a receive slot
// (slotSize) and those 64 bytes: the io_uring backend takes the datagrams
// the socket backend takes, up to 2048 bytes.
const uringBufSize = uring.RecvmsgOutLen + nameLen + controlLen + slotSize

// UringBufferBytes is the memory the io_uring backend maps and touches at
// open for its buffer ring, besides the line sockets' receive buffers:
// UringBuffers(cfg) buffers of 2112 bytes each (a 2048-byte slot and the
// 64 bytes in front of it).
func UringBufferBytes(cfg Config) int64 {
	return int64(UringBuffers(cfg)) * uringBufSize
}

// uringSQEntries is the backend's submission queue: one request per line
// and the cancels, re-arms and NAPI registration; 64 is plenty.
const uringSQEntries = 64

// uringCQEntries is the backend's completion queue for bufs buffers: two
// completions per buffer, at least 128 (the CQ may not be smaller than the
// SQ: io_uring_setup EINVAL).
func uringCQEntries(bufs int) uint32 { return uint32(max(2*bufs, 128)) }

// UringLockedBytes is what the io_uring backend's rings pin for cfg, which
// the kernel charges to RLIMIT_MEMLOCK (per user, over all its processes)
// unless the process holds cap_ipc_lock, each region in whole pages: the
// completion queue (16 bytes an entry, and a page for the ring's header
// and the SQ's index array), the submission queue entries (64 bytes each),
// the provided buffer ring (16 bytes a buffer; not the buffers, which this
// process maps itself), and the two pages of the
// probe's scratch ring, which the kernel may uncharge only after the
// backend's ring is charged (it frees a ring from a work queue). About
// 200 KiB at the default 4096 buffers, 1.5 MiB at 32768.
func UringLockedBytes(cfg Config) int64 {
	const page = 4096
	pages := func(b int64) int64 { return (b + page - 1) / page }
	bufs := int64(UringBuffers(cfg))
	cq := pages(int64(uringCQEntries(int(bufs)))*16) + 1
	sqes := pages(uringSQEntries * 64)
	return (cq + sqes + pages(bufs*16) + 2) * page
}

func openUring(cfg Config) (r Receiver, err error) {
	bufs := UringBuffers(cfg)
	if bufs&(bufs-1) != 0 || bufs < 2*cfg.BatchSize {
		return nil, fmt.Errorf("open uring backend: ring size %d: want a power of two in [2*batch (%d), %d]", bufs, 2*cfg.BatchSize, uring.MaxBufRingEntries)
	}
	if bufs > uring.MaxBufRingEntries {
		// The kernel's limit (IORING_REGISTER_PBUF_RING: EINVAL), not a
		// mistake in the configuration: a ring size above it is one the
		// AF_XDP backend takes, so auto, whose AF_XDP step failed, goes
		// on to the sockets (which have no ring) instead of stopping here.
		return nil, fmt.Errorf("open uring backend: ring size %d: a provided buffer ring holds at most %d buffers: %w", bufs, uring.MaxBufRingEntries, ErrNotSupported)
	}
	u := &uringRx{batch: cfg.BatchSize, timeout: cfg.PollTimeout, cqes: make([]uring.CQE, cfg.BatchSize), lent: make([]bool, bufs),
		watch: lineWatch{log: cfg.Log, every: cfg.PollTimeout}, log: cfg.Log}
	defer func() {
		if err != nil {
			u.teardown()
			err = fmt.Errorf("open uring backend: %w", uringMemlock(err))
		}
	}()
	if err := probeMultishot(); err != nil {
		return nil, err
	}
	params := uring.Params{Entries: uringSQEntries, CQEntries: uringCQEntries(bufs), Flags: uring.SetupCoopTaskrun}
	if cfg.LockedThread {
		params.Flags = uring.SetupSingleIssuer | uring.SetupDeferTaskrun | uring.SetupRDisabled
		u.mode = ", defer taskrun"
	}
	u.ring, err = uringSetup(params)
	if errors.Is(err, unix.EINVAL) && cfg.LockedThread {
		// DEFER_TASKRUN needs Linux 6.1; run without it.
		cfg.Log.Warn().Err(err).Msg("rx: io_uring refused SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+): using COOP_TASKRUN, one task-work wakeup per datagram")
		params.Flags, u.mode = uring.SetupCoopTaskrun, ""
		u.ring, err = uringSetup(params)
	}
	if err != nil {
		return nil, notSupported(err)
	}
	u.bufs, err = u.ring.RegisterBufRing(uringBufGroup, uint32(bufs), uringBufSize)
	if err != nil {
		return nil, notSupported(err)
	}
	if cfg.BusyPoll {
		// The line sockets' SO_BUSY_POLL polls for BusyPollUsec only in a
		// blocking read; this backend's reads are non-blocking, which poll
		// one pass when the socket is empty, and its waits are the
		// ring's, which busy-poll only when the ring is registered. The
		// kernel's own budget applies (BusyPollBudget is not the ring's).
		switch err := uringRegisterNAPI(u.ring, uint32(cfg.BusyPollUsec), true); {
		case errors.Is(err, uring.ErrNotSupported):
			// Before Linux 6.9 (Ubuntu 24.04's 6.8, Debian 12's 6.1):
			// the backend runs with the sockets' SO_BUSY_POLL alone,
			// which polls once per read that finds a socket empty. The
			// socket backend, which auto would fall back to, busy-polls
			// no more (its poll(2) only with net.core.busy_poll set), so
			// io_uring is kept, and the log says what is missing.
			cfg.Log.Warn().Err(err).Msg("rx: receive.busy_poll: this kernel cannot busy-poll for an io_uring ring (IORING_REGISTER_NAPI needs Linux 6.9+ and CONFIG_NET_RX_BUSY_POLL); the io_uring backend runs with the line sockets' SO_BUSY_POLL only, which polls once per read that finds a socket empty")
			u.mode += ", no napi busy poll (kernel)"
		case err != nil:
			return nil, err
		default:
			u.mode += fmt.Sprintf(", napi busy poll %dµs", cfg.BusyPollUsec)
		}
	}
	u.name = BackendUring + " (multishot recvmsg" + u.mode + ")"
	u.socks, err = openLineSockets(&cfg)
	if err != nil {
		return nil, err
	}
	u.hdrs, err = uring.NewMsghdrs(len(u.socks))
	if err != nil {
		return nil, err
	}
	u.armed = make([]bool, len(u.socks))
	u.armTid = make([]int, len(u.socks))
	u.cancelling = make([]bool, len(u.socks))
	u.resetCancel = make([]bool, len(u.socks))
	u.locked = cfg.LockedThread
	for i := range u.hdrs.Hdrs {
		u.hdrs.Hdrs[i].Namelen = nameLen
		u.hdrs.Hdrs[i].SetControllen(controlLen)
	}
	// The line requests are armed by the first Receive, so that they
	// belong to the receiving thread: the kernel finishes each datagram on
	// the thread that submitted its request.
	return u, nil
}

// uringSetup is uring.Setup. Tests replace it to play a kernel that
// refuses some setup flags.
var uringSetup = uring.Setup

// uringRegisterNAPI is Ring.RegisterNAPI. Tests replace it to play a
// kernel without IORING_REGISTER_NAPI.
var uringRegisterNAPI = (*uring.Ring).RegisterNAPI

func notSupported(err error) error {
	if errors.Is(err, uring.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// ProbeUring answers whether the io_uring backend can run here, as the
// first step of its start does (probeMultishot, on a scratch ring and
// socket, nothing received): nil, or an error wrapping ErrNotSupported
// saying what the kernel lacks or refuses (io_uring_setup's EPERM: the
// kernel.io_uring_disabled setting, or a seccomp filter or a security
// module; uring.RefusedWhy). config.CheckHost and feedhandler check ask
// it before a start.
func ProbeUring() error { return probeMultishot() }

// probeMultishot arms a multishot RECVMSG on a scratch ring and socket: a
// kernel without it (before 6.0) rejects the request at submission with
// EINVAL. It also finds kernels without io_uring, the probe opcode, EXT_ARG
// or provided buffer rings.
func probeMultishot() (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("probe multishot recvmsg: %w", notSupported(err))
		}
	}()
	ring, err := uring.Setup(uring.Params{Entries: 4})
	if err != nil {
		return err
	}
	defer ring.Close()
	probe, err := ring.Probe()
	if err != nil {
		return err
	}
	if !probe.Supported(uring.OpRecvmsg) {
		return fmt.Errorf("kernel lacks IORING_OP_RECVMSG: %w", ErrNotSupported)
	}
	if ring.Features()&uring.FeatExtArg == 0 {
		return fmt.Errorf("kernel lacks IORING_FEAT_EXT_ARG (5.11+) for timed waits: %w", ErrNotSupported)
	}
	bufs, err := ring.RegisterBufRing(uringBufGroup, 2, 256)
	if err != nil {
		return err
	}
	defer bufs.Close()
	hdrs, err := uring.NewMsghdrs(1)
	if err != nil {
		return err
	}
	defer hdrs.Close()
	hdrs.Hdrs[0].Namelen = nameLen
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ring.GetSQE().PrepRecvmsgMultishot(fd, &hdrs.Hdrs[0], 0, uringBufGroup, uringProbeTag)
	if _, err := ring.Submit(); err != nil {
		return err
	}
	if c := ring.PeekCQE(); c != nil && c.UserData == uringProbeTag && !c.More() {
		if c.Res == -int32(unix.EINVAL) {
			return fmt.Errorf("rejected with EINVAL (needs Linux 6.0+): %w", ErrNotSupported)
		}
		return unix.Errno(-c.Res)
	}
	ring.GetSQE().PrepCancelFd(fd, uringCancelTag)
	deadline := time.Now().Add(time.Second)
	for ended := false; !ended; {
		if time.Now().After(deadline) {
			return errors.New("cancel did not complete")
		}
		if _, err := ring.Wait(1, 10*time.Millisecond); err != nil {
			return err
		}
		for c := ring.PeekCQE(); c != nil; c = ring.PeekCQE() {
			ended = ended || c.UserData == uringProbeTag && !c.More()
			ring.CQAdvance(1)
		}
	}
	return nil
}

// arm submits a multishot RECVMSG for every line that has none running.
// While a reset (dropped) waits for the lines' requests to end it arms
// none; once they have, it reclaims the buffers first.
func (u *uringRx) arm(tid int) error {
	if u.reclaim && !u.reclaimBuffers() {
		return nil
	}
	n := 0
	for i := range u.socks {
		if u.armed[i] {
			continue
		}
		sqe := u.ring.GetSQE()
		if sqe == nil {
			break
		}
		sqe.PrepRecvmsgMultishot(u.socks[i].fd, &u.hdrs.Hdrs[i], 0, uringBufGroup, uint64(i))
		u.armed[i] = true
		u.cancelling[i] = false
		u.armTid[i] = tid
		n++
	}
	if n == 0 {
		return nil
	}
	// The lines were marked armed before Submit on purpose: if
	// io_uring_enter fails, the prepared SQEs stay queued and the next
	// enter (Wait) submits them; preparing them again would start a second
	// multishot request on the same socket and split its datagrams.
	if _, err := u.ring.Submit(); err != nil {
		return fmt.Errorf("arm multishot recvmsg: %w", err)
	}
	return nil
}

// Backend is made once at the start (name): the handler asks for it at
// every stats line and metrics scrape, and a concatenation here put a
// string on the heap each time.
func (u *uringRx) Backend() string { return u.name }

func (u *uringRx) Stats() Stats {
	s := u.counters.stats()
	// A truncated datagram is a line datagram lost here.
	s.Dropped = u.drops.read(u.socks) + u.truncated.Load()
	s.Extra.Add("rearms", u.rearms.Load())
	s.Extra.Add("enobufs", u.enobufs.Load())
	s.Extra.Add("rehomes", u.rehomes.Load())
	s.Extra.Add("bad_releases", u.badReleases.Load())
	s.Extra.Add("cq_dropped", u.cqDropped.Load())
	u.watch.addStats(&s)
	return s
}

// Receive reaps completions; when there are none it waits for one at most
// the configured timeout.
func (u *uringRx) Receive(pkts []Packet) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed.Load() {
		return 0, ErrClosed
	}
	pkts = pkts[:min(len(pkts), u.batch)]
	// Re-arm ended requests once buffers are back (ENOBUFS ends a
	// multishot request when the buffer ring runs dry).
	if u.ring.Flags()&uring.SetupRDisabled != 0 {
		// LockedThread: this thread becomes the only submitter.
		if err := u.ring.Enable(); err != nil {
			return 0, fmt.Errorf("receive: %w", err)
		}
	}
	tid := 0
	if !u.locked {
		tid = unix.Gettid()
		if err := u.rehome(tid); err != nil {
			return 0, err
		}
	}
	if u.held < int(u.bufs.Entries()) {
		if err := u.arm(tid); err != nil {
			return 0, err
		}
	}
	n := u.reap(pkts)
	if n > 0 {
		u.watch.busy(u.socks)
	}
	if n > 0 || u.lastErr != nil {
		return u.result(n)
	}
	// (0, nil) must mean nothing arrived for the whole timeout: callers
	// treat it as "every line drained". A wait cut short by a signal (Go's
	// preemption sends them often) waits again for the rest.
	now := time.Now()
	u.watch.check(now, u.socks)
	deadline := now.Add(u.timeout)
	u.woke = false // a poll that completed with a batch: the caller has had its round since
	for wait := u.timeout; ; {
		// A request the last reap saw end (ENOBUFS as its first
		// completion, the batch before having stopped just short of it)
		// is re-armed before waiting, or its line would sit out the whole
		// wait with datagrams queued in its socket.
		if u.held < int(u.bufs.Entries()) {
			if err := u.arm(tid); err != nil {
				return 0, err
			}
		}
		if err := u.armWake(); err != nil {
			return 0, err
		}
		if _, err := uringWait(u.ring, 1, wait); err != nil {
			if !errors.Is(err, unix.EBADR) {
				return 0, fmt.Errorf("receive: %w", err)
			}
			if err := u.dropped(err); err != nil {
				return 0, err
			}
		}
		if n := u.reap(pkts); n > 0 || u.lastErr != nil {
			return u.result(n)
		}
		if u.closed.Load() {
			return 0, ErrClosed
		}
		if u.woke {
			u.waitWoken.Add(1)
			return 0, nil
		}
		if wait = time.Until(deadline); wait <= 0 {
			u.waitTimeouts.Add(1)
			return 0, nil
		}
	}
}

// WakeOn sets the file descriptors that also end Receive's wait (Waker).
// The polls of the old set still running are cancelled; the new set's are
// armed when Receive next waits. Both go to the kernel with the next
// io_uring_enter that Receive makes anyway.
func (u *uringRx) WakeOn(fds []int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed.Load() {
		return ErrClosed
	}
	old := u.wake
	changed, err := u.wake.set(fds)
	if !changed {
		return err
	}
	if err := u.cancelWake(old.n); err != nil {
		return err
	}
	return nil
}

// cancelWake cancels the wake polls of the first n entries that run, and
// moves wakeGen on: their completions, and those of any poll of the
// entries still to come, are ignored.
func (u *uringRx) cancelWake(n int) error {
	for i := range n {
		if !u.wakeArmed[i] {
			continue
		}
		sqe, err := u.getSQE()
		if err != nil {
			return fmt.Errorf("cancel wake polls: %w", err)
		}
		sqe.PrepCancelUserData(u.wakeTag(i), uringCancelTag)
	}
	u.wakeArmed, u.wakeFailed = [MaxWakeFds]bool{}, [MaxWakeFds]bool{}
	u.wakeGen = (u.wakeGen + 1) % uringWakeGens
	return nil
}

// getSQE returns a free submission entry. The SQ holds 64 entries, more
// than lines, wake polls and their cancels: when it is full, what is
// queued is submitted and the next taken.
func (u *uringRx) getSQE() (*uring.SQE, error) {
	if sqe := u.ring.GetSQE(); sqe != nil {
		return sqe, nil
	}
	if _, err := u.ring.Submit(); err != nil {
		return nil, err
	}
	if sqe := u.ring.GetSQE(); sqe != nil {
		return sqe, nil
	}
	return nil, errors.New("submission queue full")
}

func (u *uringRx) wakeTag(i int) uint64 {
	return uringWakeTag + u.wakeGen<<uringWakeShift + uint64(i)
}

// armWake prepares a poll for each wake entry that has none running; the
// wait that follows submits them.
func (u *uringRx) armWake() error {
	for i := range u.wake.n {
		if u.wakeArmed[i] || u.wakeFailed[i] {
			continue
		}
		sqe, err := u.getSQE()
		if err != nil {
			return fmt.Errorf("receive: arm wake poll: %w", err)
		}
		sqe.PrepPollAdd(int(u.wake.fds[i]), unix.POLLIN, u.wakeTag(i))
		u.wakeArmed[i] = true
	}
	return nil
}

// wakeDone takes a wake poll's completion: of the set in use, it ends
// the wait (woke) and is armed again at the next; one that failed is
// not, until the set changes (an fd the caller closed under the set
// would otherwise end every wait at once). Another set's is ignored.
func (u *uringRx) wakeDone(c *uring.CQE) {
	tag := c.UserData - uringWakeTag
	i := int(tag & (1<<uringWakeShift - 1))
	if tag>>uringWakeShift != u.wakeGen || i >= u.wake.n {
		return
	}
	u.wakeArmed[i] = false
	if c.Res < 0 || c.Res&(unix.POLLNVAL) != 0 {
		u.wakeFailed[i] = true
		return
	}
	u.woke = true
}

// rehome moves the line requests to the calling thread. The kernel finishes
// each datagram of a request as task work on the thread that submitted it;
// when the Go scheduler has moved the receiving goroutine to another thread,
// that work would wait for (or interrupt) a thread busy elsewhere. The old
// request is cancelled; its remaining completions are delivered in order
// and, once its final completion arrives, arm submits the new one from
// here. No datagram is lost: they wait in the socket buffer meanwhile.
func (u *uringRx) rehome(tid int) error {
	n := 0
	for i := range u.socks {
		if !u.armed[i] || u.cancelling[i] || u.armTid[i] == tid {
			continue
		}
		sqe := u.ring.GetSQE()
		if sqe == nil {
			break
		}
		sqe.PrepCancelFd(u.socks[i].fd, uringCancelTag+uint64(i))
		u.cancelling[i] = true
		u.rehomes.Add(1)
		n++
	}
	if n == 0 {
		return nil
	}
	if _, err := u.ring.Submit(); err != nil {
		return fmt.Errorf("receive: cancel requests of another thread: %w", err)
	}
	return nil
}

// uringWait is Ring.Wait. Tests replace it to play a kernel that drops
// completions (EBADR).
var uringWait = (*uring.Ring).Wait

// droppedLogEvery is how often lost completions are logged at most.
const droppedLogEvery = time.Minute

// dropped answers the wait's EBADR: the kernel lost completions (its CQ
// ring full and no memory for its overflow list) and does not say which.
// A line's lost completion may have been its request's last, the line then
// silent for good; one that named a buffer took the buffer with it. So
// every line's request is cancelled by its user data, and each line is
// re-armed only once its request is known to have ended: its last
// completion seen, or the cancel answered that none was running (ENOENT).
// Never two requests on one socket, which would split its datagrams.
// When no request runs, the buffers the caller does not hold are taken
// back from the kernel (BufRing.Reclaim), those of the lost completions
// with them; arm does that, then re-arms every line. A lost completion
// that carried a datagram is a datagram lost: the gap detector sees it.
func (u *uringRx) dropped(err error) error {
	u.cqDropped.Add(1)
	if now := time.Now(); u.droppedLoggedAt.IsZero() || now.Sub(u.droppedLoggedAt) >= droppedLogEvery {
		u.droppedLoggedAt = now
		u.log.Warn().Err(err).Uint64("times", u.cqDropped.Load()).
			Msg("rx: io_uring dropped completions (its completion ring full and the kernel out of memory for more): every line's receive is cancelled and re-armed, and the buffers taken back; a datagram whose completion was lost is a gap")
	}
	// Lost completions may include a cancel of an earlier reset: the
	// lines it waits for are asked again, and answers to its cancels are
	// ignored from now (resetCancelled).
	u.resetGen++
	for i := range u.socks {
		if !u.armed[i] && !u.resetCancel[i] {
			continue
		}
		sqe, err := u.getSQE()
		if err != nil {
			return fmt.Errorf("receive: cancel requests after dropped completions: %w", err)
		}
		sqe.PrepCancelUserData(uint64(i), uringResetTag+u.resetGen<<uringResetShift+uint64(i))
		u.resetCancel[i] = true
	}
	u.reclaim = true
	// A wake poll's completion may be among those lost: its entry would
	// stay armed, never polled again. Each is cancelled and armed anew.
	if err := u.cancelWake(u.wake.n); err != nil {
		return fmt.Errorf("receive: after dropped completions: %w", err)
	}
	if _, err := u.ring.Submit(); err != nil {
		return fmt.Errorf("receive: cancel requests after dropped completions: %w", err)
	}
	return nil
}

// resetCancelled takes the completion of a reset's cancel (dropped).
func (u *uringRx) resetCancelled(c *uring.CQE) {
	tag := c.UserData - uringResetTag
	line := tag & (1<<uringResetShift - 1)
	if tag>>uringResetShift != u.resetGen || line >= uint64(len(u.socks)) {
		return // an earlier reset's
	}
	u.resetCancel[line] = false
	if c.Res == -int32(unix.ENOENT) {
		// No request of the line's ran: it had ended before the cancel,
		// its last completion seen or lost.
		u.armed[line] = false
	}
}

// reclaimBuffers takes the buffers back once no request runs (dropped):
// false while a line's request may still run (armed, or its reset cancel
// unanswered). Otherwise it fails only as io_uring_register does (ENOMEM,
// which a kernel that dropped completions may be short of): the error is
// returned by Receive and the next Receive tries again, the lines unarmed
// meanwhile.
func (u *uringRx) reclaimBuffers() bool {
	for i := range u.socks {
		if u.armed[i] || u.resetCancel[i] {
			return false
		}
	}
	if err := u.bufs.Reclaim(func(id uint16) bool { return u.lent[id] }); err != nil {
		u.lastErr = fmt.Errorf("receive: after dropped completions: %w", err)
		return false
	}
	u.reclaim = false
	return true
}

func (u *uringRx) result(n int) (int, error) {
	err := u.lastErr
	u.lastErr = nil
	return n, err
}

// reap turns ready completions into packets.
func (u *uringRx) reap(pkts []Packet) int {
	out := 0
	returned := false
	now := int64(0)
	for out < len(pkts) {
		k := u.ring.CQEs(u.cqes[:len(pkts)-out])
		if k == 0 {
			break
		}
		for i := range k {
			c := &u.cqes[i]
			if c.UserData >= uringCancelTag {
				if c.UserData >= uringResetTag {
					u.resetCancelled(c)
				}
				continue
			}
			line := int(c.UserData)
			if line >= len(u.socks) {
				if c.UserData >= uringWakeTag {
					u.wakeDone(c)
				}
				continue
			}
			ls := &u.socks[line]
			if !c.More() {
				u.armed[line] = false
				u.rearms.Add(1)
				switch {
				case c.Res == -int32(unix.ENOBUFS):
					u.enobufs.Add(1)
				case c.Res < 0 && c.Res != -int32(unix.ECANCELED) && c.Res != -int32(unix.EINTR):
					u.lastErr = ls.receiveError("multishot recvmsg", unix.Errno(-c.Res))
				}
			}
			if c.Flags&uring.CQEFBuffer == 0 {
				continue
			}
			id := c.BufID()
			if c.Res < 0 {
				u.bufs.Add(id)
				returned = true
				continue
			}
			o, name, control, payload, err := uring.ParseRecvmsg(u.bufs.Buf(id)[:c.Res], nameLen, controlLen)
			if err != nil {
				u.malformed.Add(1)
				u.bufs.Add(id)
				returned = true
				continue
			}
			rxTime := parseControl(control)
			if o.Flags&unix.MSG_TRUNC != 0 {
				u.truncated.Add(1)
				u.bufs.Add(id)
				returned = true
				continue
			}
			src := addrFromName(name)
			if ls.source.IsValid() && src.Addr() != ls.source {
				u.sourceFiltered.Add(1)
				u.bufs.Add(id)
				returned = true
				continue
			}
			if rxTime == 0 {
				if now == 0 {
					now = clock.Now()
				}
				rxTime = now
			}
			// handle: buffer id + 1, so that a zero Packet holds no buffer.
			pkts[out] = Packet{Data: payload, Line: ls.line, Src: src, RxTime: rxTime, handle: uint64(id) + 1}
			u.bc.add(ls.line, len(payload))
			u.lent[id] = true
			u.held++
			out++
		}
	}
	if returned {
		u.bufs.Advance()
	}
	u.addBatch(&u.bc)
	return out
}

// Release gives the packets' buffers back to the buffer ring.
func (u *uringRx) Release(pkts []Packet) {
	if len(pkts) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bufs == nil {
		return
	}
	for i := range pkts {
		id := pkts[i].handle - 1 // handle 0 (a zero Packet, or released already): none
		// A buffer given back twice (or a packet of another receiver)
		// would let the kernel fill a buffer the caller still reads.
		if id >= uint64(len(u.lent)) || !u.lent[id] {
			u.badReleases.Add(1)
			continue
		}
		pkts[i].handle = 0
		u.lent[id] = false
		u.bufs.Add(uint16(id))
		u.held--
	}
	u.bufs.Advance()
}

func (u *uringRx) Close() error { return u.closer.do(u.close) }

func (u *uringRx) close() error {
	u.closed.Store(true)
	u.mu.Lock() // wait for a Receive in progress (bounded by PollTimeout)
	defer u.mu.Unlock()
	u.cancel()
	return u.teardown()
}

// cancel stops the multishot requests and waits (bounded) until each has
// posted its final completion, so the kernel writes no more buffers.
func (u *uringRx) cancel() {
	if u.ring == nil || u.armed == nil {
		return
	}
	for i := range u.socks {
		if u.armed[i] {
			if sqe := u.ring.GetSQE(); sqe != nil {
				sqe.PrepCancelFd(u.socks[i].fd, uringCancelTag+uint64(i))
			}
		}
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for c := u.ring.PeekCQE(); c != nil; c = u.ring.PeekCQE() {
			if c.UserData < uint64(len(u.socks)) && !c.More() {
				u.armed[c.UserData] = false
			}
			u.ring.CQAdvance(1)
		}
		stillArmed := false
		for _, a := range u.armed {
			stillArmed = stillArmed || a
		}
		if !stillArmed {
			return
		}
		if _, err := u.ring.Wait(1, 10*time.Millisecond); err != nil {
			return
		}
	}
}

func (u *uringRx) teardown() error {
	var errs []error
	if u.socks != nil {
		errs = append(errs, u.drops.closeSockets(u.socks))
	}
	if u.ring != nil {
		errs = append(errs, u.ring.Close())
	}
	if u.bufs != nil {
		errs = append(errs, u.bufs.Close())
		u.bufs = nil
	}
	if u.hdrs != nil {
		errs = append(errs, u.hdrs.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close uring backend: %w", err)
	}
	return nil
}
