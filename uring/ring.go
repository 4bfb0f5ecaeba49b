package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors for io_uring features the running
// kernel (or its io_uring_disabled setting) does not provide.
var ErrNotSupported = errors.New("io_uring feature not supported")

// ErrClosed is returned by operations on a closed Ring.
var ErrClosed = errors.New("io_uring ring closed")

// Params shape a ring. Zero values pick defaults.
type Params struct {
	Entries   uint32 // SQ entries, rounded up to a power of two by the kernel (default 64)
	CQEntries uint32 // CQ entries (default: kernel's 2*Entries); sets SetupCQSize
	Flags     uint32 // Setup* flags, e.g. SetupCoopTaskrun (see the package doc)
}

// Ring is one io_uring instance with its mapped SQ and CQ rings.
type Ring struct {
	fd       int
	flags    uint32
	features uint32

	sqMem, cqMem, sqeMem []byte
	singleMmap           bool

	sqHead, sqTail, sqFlags *uint32
	sqMask, sqEntries       uint32
	sqes                    []SQE
	sqeTail                 uint32 // next SQE to hand out (published to *sqTail on submit)

	cqHead, cqTail *uint32
	cqMask         uint32
	cqEntries      uint32
	cqes           []CQE

	arg getEventsArg
	ts  unix.Timespec

	// rawSubmit: submit may skip the runtime's syscall bookkeeping (see
	// submit). Set for an enabled SINGLE_ISSUER|DEFER_TASKRUN ring.
	rawSubmit bool
}

// Setup creates a ring.
func Setup(p Params) (*Ring, error) {
	if p.Entries == 0 {
		p.Entries = 64
	}
	kp := params{Flags: p.Flags}
	if p.CQEntries != 0 {
		kp.Flags |= SetupCQSize
		kp.CQEntries = p.CQEntries
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(p.Entries), uintptr(unsafe.Pointer(&kp)), 0)
	if errno == unix.EPERM || errno == unix.EACCES || errno == unix.ENOSYS {
		return nil, fmt.Errorf("io_uring_setup: %w", setupRefused(errno))
	}
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", wrapErrno(errno))
	}
	r := &Ring{fd: int(fd), flags: kp.Flags, features: kp.Features}
	r.setRawSubmit()
	if err := r.mapRings(&kp); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mapRings(kp *params) error {
	sqSize := int(kp.SQOff.Array) + int(kp.SQEntries)*4
	cqSize := int(kp.CQOff.CQEs) + int(kp.CQEntries)*int(unsafe.Sizeof(CQE{}))
	single := kp.Features&FeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
		cqSize = sqSize
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring mmap sq ring: %w", err)
	}
	r.singleMmap = single
	if single {
		r.cqMem = r.sqMem
	} else {
		r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("io_uring mmap cq ring: %w", err)
		}
	}
	sqeSize := int(kp.SQEntries) * int(unsafe.Sizeof(SQE{}))
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring mmap sqes: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, kp.SQOff.Head)
	r.sqTail = u32(r.sqMem, kp.SQOff.Tail)
	r.sqFlags = u32(r.sqMem, kp.SQOff.Flags)
	r.sqMask = *u32(r.sqMem, kp.SQOff.RingMask)
	r.sqEntries = *u32(r.sqMem, kp.SQOff.RingEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	// The SQ index array maps ring slot i to SQE i once and for all.
	array := unsafe.Slice(u32(r.sqMem, kp.SQOff.Array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqeTail = atomic.LoadUint32(r.sqTail)
	r.cqHead = u32(r.cqMem, kp.CQOff.Head)
	r.cqTail = u32(r.cqMem, kp.CQOff.Tail)
	r.cqMask = *u32(r.cqMem, kp.CQOff.RingMask)
	r.cqEntries = *u32(r.cqMem, kp.CQOff.RingEntries)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.cqMem[kp.CQOff.CQEs])), r.cqEntries)
	return nil
}

// Fd returns the ring's file descriptor.
func (r *Ring) Fd() int { return r.fd }

// Features returns the IORING_FEAT_* bits the kernel reported at setup.
func (r *Ring) Features() uint32 { return r.features }

// Flags returns the setup flags in effect.
func (r *Ring) Flags() uint32 { return r.flags }

// SQEntries and CQEntries return the ring sizes chosen by the kernel.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries returns the completion ring size.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// Close unmaps the rings and closes the ring fd, which cancels every
// outstanding request. Close is idempotent.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	var errs []error
	maps := [][]byte{r.sqeMem, r.sqMem}
	if !r.singleMmap {
		maps = append(maps, r.cqMem)
	}
	for _, m := range maps {
		if m == nil {
			continue
		}
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("io_uring munmap: %w", err))
		}
	}
	r.sqeMem, r.cqMem, r.sqMem, r.sqes, r.cqes = nil, nil, nil, nil, nil
	if err := unix.Close(r.fd); err != nil {
		errs = append(errs, fmt.Errorf("io_uring close: %w", err))
	}
	r.fd = -1
	return errors.Join(errs...)
}

// GetSQE returns the next free submission entry, zeroed, or nil when the SQ
// is full (submit first). The entry is handed to the kernel by the next
// Submit or Wait.
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqeTail-head >= r.sqEntries {
		return nil
	}
	sqe := &r.sqes[r.sqeTail&r.sqMask]
	*sqe = SQE{}
	r.sqeTail++
	return sqe
}

// pending publishes the prepared SQEs and returns how many the kernel has
// not consumed yet.
func (r *Ring) pending() uint32 {
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	return r.sqeTail - atomic.LoadUint32(r.sqHead)
}

// Submit hands the prepared SQEs to the kernel without waiting and returns
// how many it consumed.
//
// After a CQ overflow (IORING_SQ_CQ_OVERFLOW: completions the full CQ ring
// had no room for, which the kernel holds back in order) Submit also moves
// what it holds back into the CQ ring as far as there is room, so that
// PeekCQE and CQEs see them. The kernel does that only in an
// io_uring_enter with IORING_ENTER_GETEVENTS, so that call asks for it,
// with no minimum: it does not wait. It takes the runtime's syscall path
// (on a DEFER_TASKRUN ring GETEVENTS also runs the queued task work).
func (r *Ring) Submit() (int, error) {
	if r.fd < 0 {
		return 0, ErrClosed
	}
	n := r.pending()
	if atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 {
		ret, err := r.enter(n, 0, enterGetEvents, 0, 0)
		if err != nil {
			return ret, fmt.Errorf("io_uring_enter submit, flush overflowed completions: %w", err)
		}
		return ret, nil
	}
	if n == 0 {
		return 0, nil
	}
	ret, err := r.submit(n)
	if err != nil {
		return ret, fmt.Errorf("io_uring_enter submit: %w", err)
	}
	return ret, nil
}

// Wait submits the prepared SQEs and blocks until at least minComplete
// completions are ready or timeout passes (timeout <= 0: no limit). A timeout
// or an interrupting signal is not an error: the caller peeks the CQ.
//
// An error wrapping unix.EBADR says the kernel dropped one completion or
// more (IORING_FEAT_NODROP notwithstanding: the CQ ring was full and no
// memory could be had for its overflow list). The kernel says so once, in
// a wait that found the CQ empty, and forgets it; which completions were
// lost it does not say, so the caller must assume any request may have
// ended unseen and any buffer it took be gone with them.
func (r *Ring) Wait(minComplete uint32, timeout time.Duration) (int, error) {
	if r.fd < 0 {
		return 0, ErrClosed
	}
	n := r.pending()
	flags := enterGetEvents
	var argp, argsz uintptr
	if timeout > 0 {
		if r.features&FeatExtArg == 0 {
			return 0, fmt.Errorf("io_uring_enter with timeout: IORING_FEAT_EXT_ARG: %w", ErrNotSupported)
		}
		r.ts = unix.NsecToTimespec(int64(timeout))
		r.arg = getEventsArg{Ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
		flags |= enterExtArg
		argp, argsz = uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg)
	}
	ret, err := r.enter(n, minComplete, flags, argp, argsz)
	if err != nil {
		if errors.Is(err, unix.ETIME) || errors.Is(err, unix.EINTR) {
			return ret, nil
		}
		return ret, fmt.Errorf("io_uring_enter wait: %w", err)
	}
	return ret, nil
}

// submit is io_uring_enter without IORING_ENTER_GETEVENTS. On a
// SINGLE_ISSUER|DEFER_TASKRUN ring it is a raw syscall (no entersyscall/exitsyscall): the
// issuing thread keeps its P, so sysmon cannot retake it from a call the
// hypervisor stretches (docs/TUNING.md, "Syscalls on the hot path", says
// when it would), and no call pays the runtime's bookkeeping. Only there is the call short and sleepless in
// practice: the kernel refuses (EEXIST) a thread other than the issuer (the
// thread that set the ring up, or that enabled it with Enable) before it
// does anything else; task work of a DEFER_TASKRUN ring runs only in a wait
// (Wait), not here; and the issuer's io_uring task context, whose first
// allocation (GFP_KERNEL, with its io-wq) can sleep, exists after its first
// submit. What is left is ctx->uring_lock, which an io-wq worker may hold:
// a raw call that sleeps there only keeps its P meanwhile.
//
// Any other ring takes the runtime's path (Syscall6). A SINGLE_ISSUER ring
// without DEFER_TASKRUN runs its completions' task work on the way back
// from any syscall, under ctx->uring_lock. On a ring without SINGLE_ISSUER
// any thread may submit, and the first submit of each new thread (after the Go scheduler
// moved the goroutine, see feed/rx's rehome) allocates that thread's task
// context and io-wq; and the completions queued as task work for the
// thread run before the call returns, under ctx->uring_lock. Either can
// sleep, and a thread asleep in a raw syscall holds its P, idle, from every
// other goroutine.
// setRawSubmit sets rawSubmit from the ring's flags: an enabled
// SINGLE_ISSUER|DEFER_TASKRUN ring (see submit).
func (r *Ring) setRawSubmit() {
	r.rawSubmit = r.flags&(SetupSingleIssuer|SetupDeferTaskrun|SetupRDisabled) == SetupSingleIssuer|SetupDeferTaskrun
}

func (r *Ring) submit(toSubmit uint32) (int, error) {
	var ret uintptr
	var errno unix.Errno
	if r.rawSubmit {
		ret, _, errno = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), 0, 0, 0, 0)
	} else {
		ret, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), 0, 0, 0, 0)
	}
	if errno != 0 {
		return 0, errno
	}
	return int(ret), nil
}

// enter is io_uring_enter through the runtime's blocking-syscall path: it
// may wait (GETEVENTS with a minimum and a timeout).
func (r *Ring) enter(toSubmit, minComplete, flags uint32, argp, argsz uintptr) (int, error) {
	ret, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
		uintptr(minComplete), uintptr(flags), argp, argsz)
	if errno != 0 {
		return 0, errno
	}
	return int(ret), nil
}

// PeekCQE returns the oldest unread completion, or nil. The entry stays
// valid until CQAdvance.
func (r *Ring) PeekCQE() *CQE {
	head := *r.cqHead
	if head == atomic.LoadUint32(r.cqTail) {
		return nil
	}
	return &r.cqes[head&r.cqMask]
}

// CQAdvance marks n completions as read.
func (r *Ring) CQAdvance(n uint32) {
	atomic.StoreUint32(r.cqHead, *r.cqHead+n)
}

// CQReady returns how many completions are waiting.
func (r *Ring) CQReady() uint32 {
	return atomic.LoadUint32(r.cqTail) - *r.cqHead
}

// CQEs copies up to len(dst) waiting completions into dst, marks them read
// and returns how many it copied.
func (r *Ring) CQEs(dst []CQE) int {
	head := *r.cqHead
	ready := atomic.LoadUint32(r.cqTail) - head
	n := min(int(ready), len(dst))
	for i := range n {
		dst[i] = r.cqes[(head+uint32(i))&r.cqMask]
	}
	if n > 0 {
		atomic.StoreUint32(r.cqHead, head+uint32(n))
	}
	return n
}

// Probe reports which opcodes the kernel supports.
type Probe struct {
	LastOp uint8
	ops    [256]bool
}

// Supported reports whether opcode op is supported.
func (p *Probe) Supported(op uint8) bool { return p.ops[op] }

// Probe asks the kernel which opcodes it supports (IORING_REGISTER_PROBE).
func (r *Ring) Probe() (*Probe, error) {
	var kp probe
	if err := r.register(registerProbe, unsafe.Pointer(&kp), uint32(len(kp.Ops))); err != nil {
		if errors.Is(err, unix.EINVAL) {
			err = fmt.Errorf("%w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("io_uring register probe: %w", err)
	}
	p := &Probe{LastOp: kp.LastOp}
	for i := 0; i < int(kp.OpsLen) && i < len(kp.Ops); i++ {
		p.ops[kp.Ops[i].Op] = kp.Ops[i].Flags&probeOpSupported != 0
	}
	return p, nil
}

func (r *Ring) register(op uint32, arg unsafe.Pointer, nrArgs uint32) error {
	if r.fd < 0 {
		return ErrClosed
	}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uintptr(op), uintptr(arg), uintptr(nrArgs), 0, 0)
	if errno != 0 {
		return wrapErrno(errno)
	}
	return nil
}

// RegisterNAPI turns on NAPI busy polling for the ring
// (IORING_REGISTER_NAPI, Linux 6.9+): a Wait that finds no completion
// first polls, for up to busyPollUsec microseconds, the NAPI instances
// (NIC queues) of the sockets the ring's requests read, and only then
// sleeps. The ring learns those instances from its own requests (dynamic
// tracking); a socket whose packets came through no NAPI instance adds
// nothing to poll. With prefer, the kernel also holds off the queues'
// interrupts while the thread polls them (as SO_PREFER_BUSY_POLL). A
// kernel without the call returns an error wrapping ErrNotSupported.
//
// A SINGLE_ISSUER ring must be registered before Enable, or from its
// issuer.
func (r *Ring) RegisterNAPI(busyPollUsec uint32, prefer bool) error {
	arg := napiArg{BusyPollTo: busyPollUsec}
	if prefer {
		arg.PreferBusyPoll = 1
	}
	if err := r.register(registerNAPI, unsafe.Pointer(&arg), 1); err != nil {
		if errors.Is(err, unix.EINVAL) {
			// Before 6.9 the opcode is unknown: EINVAL.
			err = fmt.Errorf("%w: %w", ErrNotSupported, err)
		}
		return fmt.Errorf("io_uring register NAPI busy polling: %w", err)
	}
	return nil
}

// UnregisterNAPI turns NAPI busy polling off and returns the settings it
// had (IORING_UNREGISTER_NAPI).
func (r *Ring) UnregisterNAPI() (busyPollUsec uint32, prefer bool, err error) {
	var arg napiArg
	if err := r.register(unregisterNAPI, unsafe.Pointer(&arg), 1); err != nil {
		return 0, false, fmt.Errorf("io_uring unregister NAPI busy polling: %w", err)
	}
	return arg.BusyPollTo, arg.PreferBusyPoll != 0, nil
}

// wrapErrno turns the errnos that mean "io_uring is unavailable here" into
// errors wrapping ErrNotSupported (and the errno).
func wrapErrno(errno unix.Errno) error {
	switch errno {
	case unix.ENOSYS, unix.EPERM, unix.EOPNOTSUPP:
		return fmt.Errorf("%w: %w", ErrNotSupported, errno)
	}
	return errno
}

// Enable starts a ring set up with SetupRDisabled
// (IORING_REGISTER_ENABLE_RINGS). With SetupSingleIssuer the calling
// thread becomes the ring's only submitter.
func (r *Ring) Enable() error {
	if err := r.register(registerEnableRings, nil, 0); err != nil {
		return fmt.Errorf("io_uring enable rings: %w", err)
	}
	r.flags &^= SetupRDisabled
	r.setRawSubmit()
	return nil
}
