package rx

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/uring"
)

// uringRx is the io_uring backend: one ring, one provided buffer ring, one
// multishot RECVMSG per line socket (user data = line). A completion names
// the buffer holding io_uring_recvmsg_out, the source address, the control
// messages (kernel timestamp, drop counter) and the payload; the packet is a
// view into it until Release gives the buffer id back to the buffer ring.
//
// Setup flags: by default none of SINGLE_ISSUER/DEFER_TASKRUN or
// COOP_TASKRUN, because Receive may be called from any goroutine, hence from
// any OS thread, and those flags make completions depend on the thread that
// submitted (see the uring package doc): the kernel wakes the submitting
// thread once per datagram to finish it. With Config.LockedThread the caller
// guarantees a single thread, and the ring uses SINGLE_ISSUER|DEFER_TASKRUN:
// datagrams are copied into buffers in batches when Receive enters the
// kernel to wait, and the thread is woken once per wait.
type uringRx struct {
	mu     sync.Mutex
	closed atomic.Bool

	ring  *uring.Ring
	bufs  *uring.BufRing
	hdrs  *uring.Msghdrs
	socks []lineSocket
	armed []bool

	batch   int
	timeout time.Duration
	mode    string
	held    int // buffers handed to the caller, not yet released
	cqes    []uring.CQE

	counters
	bc              batchCounts
	rearms, enobufs atomic.Uint64
	lastErr         error
}

const (
	uringBufGroup    = 1
	uringCancelTag   = 1 << 32
	uringProbeTag    = 1 << 33
	defaultUringBufs = 4096
)

func openUring(cfg Config) (r Receiver, err error) {
	bufs := cfg.RingSize
	if bufs <= 0 {
		bufs = defaultUringBufs
	}
	if bufs&(bufs-1) != 0 || bufs > uring.MaxBufRingEntries || bufs < 2*cfg.BatchSize {
		return nil, fmt.Errorf("open uring backend: ring size %d: want a power of two in [2*batch (%d), %d]", bufs, 2*cfg.BatchSize, uring.MaxBufRingEntries)
	}
	u := &uringRx{batch: cfg.BatchSize, timeout: cfg.PollTimeout, cqes: make([]uring.CQE, cfg.BatchSize)}
	defer func() {
		if err != nil {
			u.teardown()
			err = fmt.Errorf("open uring backend: %w", err)
		}
	}()
	params := uring.Params{Entries: 64, CQEntries: uint32(2 * bufs)}
	if cfg.LockedThread {
		params.Flags = uring.SetupSingleIssuer | uring.SetupDeferTaskrun
		u.mode = ", defer taskrun"
	}
	u.ring, err = uring.Setup(params)
	if errors.Is(err, unix.EINVAL) && cfg.LockedThread {
		// DEFER_TASKRUN needs Linux 6.1; run without it.
		params.Flags, u.mode = 0, ""
		u.ring, err = uring.Setup(params)
	}
	if err != nil {
		return nil, notSupported(err)
	}
	probe, err := u.ring.Probe()
	if err != nil {
		return nil, notSupported(err)
	}
	if !probe.Supported(uring.OpRecvmsg) {
		return nil, fmt.Errorf("kernel lacks IORING_OP_RECVMSG: %w", ErrNotSupported)
	}
	if u.ring.Features()&uring.FeatExtArg == 0 {
		return nil, fmt.Errorf("kernel lacks IORING_FEAT_EXT_ARG (5.11+) for timed waits: %w", ErrNotSupported)
	}
	u.bufs, err = u.ring.RegisterBufRing(uringBufGroup, uint32(bufs), slotSize)
	if err != nil {
		return nil, notSupported(err)
	}
	u.socks, err = openLineSockets(&cfg)
	if err != nil {
		return nil, err
	}
	u.hdrs, err = uring.NewMsghdrs(len(u.socks))
	if err != nil {
		return nil, err
	}
	u.armed = make([]bool, len(u.socks))
	for i := range u.hdrs.Hdrs {
		u.hdrs.Hdrs[i].Namelen = nameLen
		u.hdrs.Hdrs[i].SetControllen(controlLen)
	}
	if err := u.probeMultishot(); err != nil {
		return nil, err
	}
	// The line requests are armed by the first Receive, so that they
	// belong to the receiving thread: the kernel finishes each datagram on
	// the thread that submitted its request.
	return u, nil
}

func notSupported(err error) error {
	if errors.Is(err, uring.ErrNotSupported) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// probeMultishot arms a multishot RECVMSG on a scratch socket: a kernel
// without it (before 6.0) rejects the request at submission with EINVAL.
// The request is then cancelled and its completions drained.
func (u *uringRx) probeMultishot() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe multishot recvmsg: socket: %w", err)
	}
	defer unix.Close(fd)
	u.ring.GetSQE().PrepRecvmsgMultishot(fd, &u.hdrs.Hdrs[0], 0, uringBufGroup, uringProbeTag)
	if _, err := u.ring.Submit(); err != nil {
		return fmt.Errorf("probe multishot recvmsg: %w", err)
	}
	if c := u.ring.PeekCQE(); c != nil && c.UserData == uringProbeTag && !c.More() {
		if c.Res == -int32(unix.EINVAL) {
			return fmt.Errorf("multishot recvmsg rejected (EINVAL; needs Linux 6.0+): %w", ErrNotSupported)
		}
		return fmt.Errorf("probe multishot recvmsg: %w", unix.Errno(-c.Res))
	}
	u.ring.GetSQE().PrepCancelFd(fd, uringCancelTag)
	deadline := time.Now().Add(time.Second)
	for ended := false; !ended; {
		if time.Now().After(deadline) {
			return errors.New("probe multishot recvmsg: cancel did not complete")
		}
		if _, err := u.ring.Wait(1, 10*time.Millisecond); err != nil {
			return fmt.Errorf("probe multishot recvmsg: %w", err)
		}
		for c := u.ring.PeekCQE(); c != nil; c = u.ring.PeekCQE() {
			ended = ended || c.UserData == uringProbeTag && !c.More()
			u.ring.CQAdvance(1)
		}
	}
	return nil
}

// arm submits a multishot RECVMSG for every line that has none running.
func (u *uringRx) arm() error {
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
		n++
	}
	if n == 0 {
		return nil
	}
	if _, err := u.ring.Submit(); err != nil {
		return fmt.Errorf("arm multishot recvmsg: %w", err)
	}
	return nil
}

func (u *uringRx) Backend() string { return BackendUring + " (multishot recvmsg" + u.mode + ")" }

func (u *uringRx) Stats() Stats {
	s := u.counters.stats()
	s.Extra["rearms"] = u.rearms.Load()
	s.Extra["enobufs"] = u.enobufs.Load()
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
	if u.held < int(u.bufs.Entries()) {
		if err := u.arm(); err != nil {
			return 0, err
		}
	}
	n := u.reap(pkts)
	if n > 0 || u.lastErr != nil {
		return u.result(n)
	}
	if _, err := u.ring.Wait(1, u.timeout); err != nil {
		return 0, fmt.Errorf("receive: %w", err)
	}
	return u.result(u.reap(pkts))
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
				continue
			}
			line := int(c.UserData)
			if line >= len(u.socks) {
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
					u.lastErr = fmt.Errorf("receive line %s: multishot recvmsg: %w", ls.line, unix.Errno(-c.Res))
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
			rxTime, ovfl, hasOvfl := parseControl(control)
			if hasOvfl {
				u.noteOvfl(ls, ovfl)
			}
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
					now = time.Now().UnixNano()
				}
				rxTime = now
			}
			pkts[out] = Packet{Data: payload, Line: ls.line, Src: src, RxTime: rxTime, handle: uint64(id)}
			u.bc.add(ls.line, len(payload))
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
		u.bufs.Add(uint16(pkts[i].handle))
	}
	u.held -= len(pkts)
	u.bufs.Advance()
}

func (u *uringRx) Close() error {
	if u.closed.Swap(true) {
		return nil
	}
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
		errs = append(errs, closeLineSockets(u.socks))
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
