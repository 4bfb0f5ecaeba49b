package xsk

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors caused by a kernel, driver or
// privilege level that lacks what AF_XDP needs.
var ErrNotSupported = errors.New("af_xdp not supported")

// ErrUnbound is wrapped by Wakeup and Check once the kernel has unbound
// the socket from its device (ENXIO): the device was unregistered (deleted,
// or its driver removed or re-registered it). Nothing arrives on the
// socket again, and poll(2) does not say so (no POLLERR): the device, back
// under the same name or not, needs a new socket and a new XDP program.
// An ENXIO a zero-copy driver's wakeup gives of a bound socket (a queue
// it is reconfiguring) is not ErrUnbound.
var ErrUnbound = errors.New("xsk socket unbound from its device")

// ZeroCopy selects how the socket binds.
type ZeroCopy int

const (
	// ZeroCopyAuto tries XDP_ZEROCOPY and falls back to XDP_COPY when the
	// driver refuses it (EOPNOTSUPP).
	ZeroCopyAuto ZeroCopy = iota
	// ZeroCopyOn requires zero-copy.
	ZeroCopyOn
	// ZeroCopyOff binds in copy mode.
	ZeroCopyOff
)

// Config shapes a socket. Zero values pick the defaults shown.
type Config struct {
	Ifindex int // interface to bind
	Queue   int // rx queue to bind

	// UMEM to take frames from. Sockets sharing a UMEM must be bound to
	// distinct (interface, queue) pairs; each has its own fill and
	// completion rings. Nil: the socket maps its own UMEM and unmaps it on
	// Close.
	UMEM      *UMEM
	FrameSize int // frame size of an own UMEM (default 4096)
	Frames    int // frames taken from the UMEM, at most FillSize (default FillSize)

	RxSize   int // rx ring entries, a power of two (default 2048)
	FillSize int // fill ring entries, a power of two (default 4096)
	CompSize int // completion ring entries, a power of two (default 64, or TxSize)
	TxSize   int // tx ring entries, a power of two; 0 = no tx ring

	// TxFrames are frames taken from the UMEM for transmitting: they are
	// not put on the fill ring; TxFrame returns their addresses.
	TxFrames int

	ZeroCopy ZeroCopy

	// Busy polling: SO_PREFER_BUSY_POLL, SO_BUSY_POLL (BusyPollUsec,
	// default 20) and SO_BUSY_POLL_BUDGET (BusyPollBudget, default 64).
	BusyPoll       bool
	BusyPollUsec   int
	BusyPollBudget int

	// BindTimeout bounds the retries of a bind that fails with EBUSY, as it
	// does while the kernel tears down a socket just closed on the same
	// queue (default 2s).
	BindTimeout time.Duration

	Log zerolog.Logger
}

// Socket is one AF_XDP socket bound to one rx queue. It is not safe for
// concurrent use.
type Socket struct {
	fd       int
	umem     *UMEM
	fill     addrRing
	comp     addrRing
	rx       descRing
	tx       descRing
	first    int // first frame index owned
	frames   int // frames owned for receiving
	txFrames int // frames owned for transmitting, after the receive frames
	zeroCopy bool
	busyPoll bool
	ifindex  int
	queue    int
	closed   bool
	pfd      [1]unix.PollFd
}

func (c *Config) defaults() error {
	if c.RxSize == 0 {
		c.RxSize = 2048
	}
	if c.FillSize == 0 {
		c.FillSize = 4096
	}
	if c.CompSize == 0 {
		c.CompSize = max(64, c.TxSize)
	}
	if c.Frames == 0 {
		c.Frames = c.FillSize
	}
	if c.BusyPollUsec == 0 {
		c.BusyPollUsec = 20
	}
	if c.BusyPollBudget == 0 {
		c.BusyPollBudget = 64
	}
	if c.BindTimeout == 0 {
		c.BindTimeout = 2 * time.Second
	}
	for _, n := range []int{c.RxSize, c.FillSize, c.CompSize} {
		if n <= 0 || n&(n-1) != 0 {
			return fmt.Errorf("ring size %d is not a power of two", n)
		}
	}
	if c.TxSize < 0 || c.TxSize&(c.TxSize-1) != 0 {
		return fmt.Errorf("tx ring size %d is not a power of two", c.TxSize)
	}
	if c.Frames < 1 || c.Frames > c.FillSize {
		return fmt.Errorf("frames %d: want 1..%d (the fill ring size)", c.Frames, c.FillSize)
	}
	if c.TxFrames < 0 || (c.TxFrames > 0 && c.TxSize == 0) {
		return fmt.Errorf("tx frames %d need a tx ring", c.TxFrames)
	}
	if c.Queue < 0 {
		return fmt.Errorf("queue %d out of range", c.Queue)
	}
	return nil
}

// Open creates a socket, maps its rings, binds it to cfg.Queue of
// cfg.Ifindex (negotiating zero-copy per cfg.ZeroCopy, retrying on EBUSY)
// and gives all its frames to the kernel on the fill ring.
func Open(cfg Config) (*Socket, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("open xsk on ifindex %d queue %d: %w", cfg.Ifindex, cfg.Queue, err)
	}
	u := cfg.UMEM
	if u == nil {
		var err error
		u, err = NewUMEM(UMEMConfig{FrameSize: cfg.FrameSize, Frames: cfg.Frames + cfg.TxFrames, Log: cfg.Log})
		if err != nil {
			return nil, fmt.Errorf("open xsk on ifindex %d queue %d: %w", cfg.Ifindex, cfg.Queue, err)
		}
		u.implicit = true
	}
	s, err := open(cfg, u)
	if err != nil {
		if u.implicit {
			u.Close()
		}
		return nil, fmt.Errorf("open xsk on ifindex %d queue %d: %w", cfg.Ifindex, cfg.Queue, err)
	}
	mode := "copy"
	if s.zeroCopy {
		mode = "zero-copy"
	}
	cfg.Log.Info().Int("ifindex", cfg.Ifindex).Int("queue", cfg.Queue).Str("mode", mode).
		Bool("shared_umem", !u.implicit && u.owner != s).Bool("busy_poll", s.busyPoll).
		Int("frames", s.frames).Msg("xsk bound")
	return s, nil
}

func open(cfg Config, u *UMEM) (*Socket, error) {
	first, err := u.take(cfg.Frames + cfg.TxFrames)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	owner := u.owner
	u.mu.Unlock()

	type attempt struct {
		flags uint16
		name  string
	}
	var attempts []attempt
	switch {
	case owner != nil:
		attempts = []attempt{{unix.XDP_SHARED_UMEM, "shared umem"}}
	case cfg.ZeroCopy == ZeroCopyOn:
		attempts = []attempt{{unix.XDP_ZEROCOPY | unix.XDP_USE_NEED_WAKEUP, "zero-copy"}}
	case cfg.ZeroCopy == ZeroCopyOff:
		attempts = []attempt{{unix.XDP_COPY | unix.XDP_USE_NEED_WAKEUP, "copy"}}
	default:
		attempts = []attempt{
			{unix.XDP_ZEROCOPY | unix.XDP_USE_NEED_WAKEUP, "zero-copy"},
			{unix.XDP_COPY | unix.XDP_USE_NEED_WAKEUP, "copy"},
		}
	}
	var s *Socket
	for i, a := range attempts {
		// After a refused zero-copy bind the UMEM is registered again on
		// a fresh socket, while the kernel may still count the first
		// registration against RLIMIT_MEMLOCK: it releases it from a
		// work queue after the socket closes. Wait that out rather than
		// fail on a limit that fits the UMEM once.
		s, err = bindRetry(cfg, u, owner, a.flags, i > 0 && owner == nil)
		if err == nil {
			break
		}
		if i+1 < len(attempts) && errors.Is(err, unix.EOPNOTSUPP) {
			cfg.Log.Info().Err(err).Int("ifindex", cfg.Ifindex).Int("queue", cfg.Queue).
				Msgf("xsk: driver refused %s, trying %s", a.name, attempts[i+1].name)
			continue
		}
		u.giveBack(first, cfg.Frames+cfg.TxFrames)
		return nil, err
	}
	s.first, s.frames, s.txFrames = first, cfg.Frames, cfg.TxFrames
	u.mu.Lock()
	if u.owner == nil {
		u.owner = s
	}
	u.mu.Unlock()

	// Every owned frame goes to the kernel.
	var batch [64]uint64
	for f := 0; f < s.frames; {
		n := 0
		for ; n < len(batch) && f < s.frames; n, f = n+1, f+1 {
			batch[n] = uint64(s.first+f) * uint64(u.frameSize)
		}
		if s.fill.put(batch[:n]) != n {
			s.Close()
			return nil, errors.New("fill ring smaller than the frames owned")
		}
	}
	if opts, err := options(s.fd); err == nil {
		s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	if cfg.BusyPoll {
		if err := s.setBusyPoll(cfg.BusyPollUsec, cfg.BusyPollBudget); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// bindRetry creates, maps and binds a socket with the given bind flags,
// starting over while bind reports EBUSY (a socket on the queue is still
// being torn down) and, with noBufs, while registering the UMEM reports
// ENOBUFS (an earlier registration of it not yet uncharged). A failed bind
// destroys the socket's rings in the kernel, so every try uses a fresh
// socket.
func bindRetry(cfg Config, u *UMEM, owner *Socket, flags uint16, noBufs bool) (*Socket, error) {
	deadline := time.Now().Add(cfg.BindTimeout)
	for tries := 1; ; tries++ {
		s, err := setup(cfg, u, owner, flags)
		if err == nil {
			if tries > 1 {
				cfg.Log.Debug().Int("tries", tries).Msg("xsk bind succeeded after EBUSY")
			}
			return s, nil
		}
		retry := errors.Is(err, unix.EBUSY) || noBufs && errors.Is(err, unix.ENOBUFS)
		if !retry || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func setup(cfg Config, u *UMEM, owner *Socket, flags uint16) (_ *Socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, wrap("create af_xdp socket", err)
	}
	s := &Socket{fd: fd, umem: u, ifindex: cfg.Ifindex, queue: cfg.Queue}
	defer func() {
		if err != nil {
			s.unmapAndClose()
		}
	}()
	if owner == nil {
		reg := u.reg()
		if err := registerUMEM(fd, &reg); err != nil {
			return nil, wrap(fmt.Sprintf("register umem (%d bytes)", len(u.mem)), err)
		}
	}
	sizes := []struct {
		opt  int
		n    int
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillSize, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, cfg.CompSize, "completion"},
		{unix.XDP_RX_RING, cfg.RxSize, "rx"},
		{unix.XDP_TX_RING, cfg.TxSize, "tx"},
	}
	for _, r := range sizes {
		if r.n == 0 {
			continue
		}
		if err := setRingSize(fd, r.opt, uint32(r.n)); err != nil {
			return nil, wrap("set "+r.name+" ring size", err)
		}
	}
	off, err := mmapOffsets(fd)
	if err != nil {
		return nil, wrap("get mmap offsets", err)
	}
	mmap := func(pgoff int64, o unix.XDPRingOffset, n, entry int) ([]byte, error) {
		mem, err := unix.Mmap(fd, pgoff, int(o.Desc)+n*entry, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, wrap("mmap ring", err)
		}
		return mem, nil
	}
	mem, err := mmap(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.FillSize, 8)
	if err != nil {
		return nil, err
	}
	s.fill.init(mem, off.Fr, uint32(cfg.FillSize))
	if mem, err = mmap(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, cfg.CompSize, 8); err != nil {
		return nil, err
	}
	s.comp.init(mem, off.Cr, uint32(cfg.CompSize))
	descSize := int(unsafe.Sizeof(unix.XDPDesc{}))
	if mem, err = mmap(unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RxSize, descSize); err != nil {
		return nil, err
	}
	s.rx.init(mem, off.Rx, uint32(cfg.RxSize))
	if cfg.TxSize > 0 {
		if mem, err = mmap(unix.XDP_PGOFF_TX_RING, off.Tx, cfg.TxSize, descSize); err != nil {
			return nil, err
		}
		s.tx.init(mem, off.Tx, uint32(cfg.TxSize))
	}
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(cfg.Ifindex), QueueID: uint32(cfg.Queue)}
	if owner != nil {
		sa.SharedUmemFD = uint32(owner.fd)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, wrap(fmt.Sprintf("bind (flags %#x)", flags), err)
	}
	s.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	return s, nil
}

func wrap(op string, err error) error {
	if notSupported(err) {
		return fmt.Errorf("%s: %w (%w)", op, err, ErrNotSupported)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (s *Socket) setBusyPoll(usec, budget int) error {
	opts := []struct {
		opt  int
		v    int
		name string
	}{
		{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"},
		{unix.SO_BUSY_POLL, usec, "SO_BUSY_POLL"},
		{unix.SO_BUSY_POLL_BUDGET, budget, "SO_BUSY_POLL_BUDGET"},
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
			return wrap("set "+o.name, err)
		}
	}
	s.busyPoll = true
	return nil
}

// FD returns the socket's file descriptor, for the XSKMAP.
func (s *Socket) FD() int { return s.fd }

// Queue returns the rx queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// BusyPoll reports whether busy polling is enabled on the socket.
func (s *Socket) BusyPoll() bool { return s.busyPoll }

// UMEM returns the UMEM the socket's frames live in.
func (s *Socket) UMEM() *UMEM { return s.umem }

// Frames returns how many frames the socket owns for receiving.
func (s *Socket) Frames() int { return s.frames }

// TxFrame returns the UMEM address of transmit frame i (0 <= i <
// Config.TxFrames). Write the frame with UMEM().Data, send it with Transmit
// and wait for its address to come back from Completed before reusing it.
func (s *Socket) TxFrame(i int) uint64 {
	if i < 0 || i >= s.txFrames {
		panic(fmt.Sprintf("xsk: tx frame %d out of range [0,%d)", i, s.txFrames))
	}
	return uint64(s.first+s.frames+i) * uint64(s.umem.frameSize)
}

// Receive takes up to len(descs) received frames off the rx ring without
// blocking and returns how many. The frames belong to the caller until it
// gives their addresses back with Fill. It allocates nothing.
func (s *Socket) Receive(descs []Desc) int {
	return s.rx.take(descs)
}

// Data returns the bytes of a received frame: a view into the UMEM, valid
// until the frame's address is given back with Fill.
func (s *Socket) Data(d Desc) []byte { return s.umem.Data(d.Addr, d.Len) }

// Meta returns the n bytes in front of a received frame's data, where the
// kernel delivers the metadata the XDP program put before the frame (see
// UMEM.Meta). It allocates nothing.
func (s *Socket) Meta(d Desc, n int) []byte { return s.umem.Meta(d.Addr, n) }

// Fill gives frames back to the kernel for receiving (the fill ring) and
// returns how many it took; all of them when the caller only returns frames
// it got from this socket. Addresses may be those of a Desc (the kernel
// aligns them to their frame).
func (s *Socket) Fill(addrs []uint64) int {
	return s.fill.put(addrs)
}

// NeedWakeup reports whether the kernel asks to be woken (Wakeup or Wait)
// to keep filling the rx ring.
func (s *Socket) NeedWakeup() bool { return s.fill.needWakeup() }

// Wakeup kicks the kernel's receive processing without blocking; with busy
// polling it runs one busy-poll round. Its error wraps ErrUnbound only
// when the kernel unbound the socket: a zero-copy driver that answers
// ENXIO of a queue it is reconfiguring (the socket still bound) gives an
// error that does not.
func (s *Socket) Wakeup() error {
	if err := wakeSyscall(s.fd); err != nil {
		return s.wakeError("wake", err)
	}
	return nil
}

// Check asks the kernel whether the socket is still bound to its device:
// nil while it is, an error wrapping ErrUnbound once it is not. On a
// socket without a tx ring it asks the socket layer alone (boundProbe),
// never the driver, and wakes nothing; with a tx ring it is the wakeup
// syscall (a recvfrom that reads nothing), as Wakeup. It never blocks and
// allocates nothing while bound.
func (s *Socket) Check() error {
	if s.tx.mem == nil {
		if err := boundProbe(s.fd); err != nil {
			return fmt.Errorf("check xsk queue %d: %w (%w)", s.queue, err, ErrUnbound)
		}
		return nil
	}
	if err := wakeSyscall(s.fd); err != nil {
		return s.wakeError("check", err)
	}
	return nil
}

// wakeSyscall is wakeup. Tests replace it to play a zero-copy driver's
// ndo_xsk_wakeup answering ENXIO of a bound socket (veth has no
// zero-copy, and in copy mode the kernel never asks the driver).
var wakeSyscall = wakeup

// wakeError wraps the error of a wakeup made for op. ENXIO wraps
// ErrUnbound when the socket layer confirms it (boundProbe, on a socket
// without a tx ring, where it cannot transmit): the driver's
// ndo_xsk_wakeup answers ENXIO too, of a socket still bound (mlx5 while a
// channel is reopened without its XSK state, igc without its pool), and
// taking that for an unbinding would retire a socket that works again
// once the driver is done. With a tx ring (no caller on the receive
// path) ENXIO is taken as the kernel's.
func (s *Socket) wakeError(op string, err error) error {
	if errors.Is(err, unix.ENXIO) {
		if s.tx.mem == nil && boundProbe(s.fd) == nil {
			return fmt.Errorf("%s xsk queue %d: the driver: %w (the socket is still bound: a queue being reconfigured?)", op, s.queue, err)
		}
		return fmt.Errorf("%s xsk queue %d: %w (%w)", op, s.queue, err, ErrUnbound)
	}
	return fmt.Errorf("%s xsk queue %d: %w", op, s.queue, err)
}

// Wait blocks until the rx ring has frames or timeout passes (poll(2));
// it reports whether frames are ready. It allocates nothing.
func (s *Socket) Wait(timeout time.Duration) (bool, error) {
	if s.rx.available(1) > 0 {
		return true, nil
	}
	for {
		n, err := unix.Poll(s.pfd[:], int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll xsk queue %d: %w", s.queue, err)
		}
		return n > 0 && s.rx.available(1) > 0, nil
	}
}

// Transmit puts up to len(descs) frames on the tx ring, kicks the kernel
// and returns how many it took. The frames stay the kernel's until their
// addresses come back from Completed.
func (s *Socket) Transmit(descs []Desc) (int, error) {
	if s.tx.mem == nil {
		return 0, fmt.Errorf("transmit on xsk queue %d: socket has no tx ring", s.queue)
	}
	n := s.tx.put(descs)
	if n > 0 {
		// Copy mode transmits only from sendto; zero-copy needs it when
		// the kernel asks for a wakeup.
		if !s.zeroCopy || s.tx.needWakeup() {
			if err := kickTx(s.fd); err != nil {
				return n, fmt.Errorf("transmit on xsk queue %d: %w", s.queue, err)
			}
		}
	}
	return n, nil
}

// Completed takes up to len(addrs) addresses of transmitted frames off the
// completion ring and returns how many.
func (s *Socket) Completed(addrs []uint64) int {
	return s.comp.take(addrs)
}

// Statistics are the kernel's counters for one socket (XDP_STATISTICS).
type Statistics struct {
	RxDropped          uint64 // frames dropped in copy mode (fill ring empty, too big); zero-copy NIC drops are not here
	RxInvalidDescs     uint64 // invalid descriptors on the fill ring
	TxInvalidDescs     uint64 // invalid descriptors on the tx ring
	RxRingFull         uint64 // frames dropped because the rx ring was full
	FillRingEmptyDescs uint64 // times a buffer was wanted and the fill ring was empty: per dropped frame in copy mode, per driver refill in zero-copy
	TxRingEmptyDescs   uint64 // times the tx ring was empty when woken
}

// Statistics reads the socket's kernel counters.
func (s *Socket) Statistics() (Statistics, error) {
	st, err := statistics(s.fd)
	if err != nil {
		return Statistics{}, fmt.Errorf("read xsk statistics of queue %d: %w", s.queue, err)
	}
	return Statistics{
		RxDropped:          st.Rx_dropped,
		RxInvalidDescs:     st.Rx_invalid_descs,
		TxInvalidDescs:     st.Tx_invalid_descs,
		RxRingFull:         st.Rx_ring_full,
		FillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:   st.Tx_ring_empty_descs,
	}, nil
}

// Close unmaps the rings and closes the socket; a socket-owned UMEM is
// unmapped too. Frames held by the caller become invalid.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.unmapAndClose()
	if rerr := s.umem.release(s); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("close xsk queue %d: %w", s.queue, err)
	}
	return nil
}

func (s *Socket) unmapAndClose() error {
	errs := []error{s.fill.unmap(), s.comp.unmap(), s.rx.unmap(), s.tx.unmap()}
	if s.fd >= 0 {
		errs = append(errs, unix.Close(s.fd))
		s.fd = -1
	}
	return errors.Join(errs...)
}
