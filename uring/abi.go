package uring

import "unsafe"

// Setup flags (io_uring_params.flags).
const (
	SetupIOPoll         uint32 = 1 << 0
	SetupSQPoll         uint32 = 1 << 1
	SetupSQAff          uint32 = 1 << 2
	SetupCQSize         uint32 = 1 << 3
	SetupClamp          uint32 = 1 << 4
	SetupAttachWQ       uint32 = 1 << 5
	SetupRDisabled      uint32 = 1 << 6
	SetupSubmitAll      uint32 = 1 << 7
	SetupCoopTaskrun    uint32 = 1 << 8
	SetupTaskrunFlag    uint32 = 1 << 9
	SetupSingleIssuer   uint32 = 1 << 12
	SetupDeferTaskrun   uint32 = 1 << 13
	FeatNoDrop          uint32 = 1 << 1
	FeatFastPoll        uint32 = 1 << 5
	FeatExtArg          uint32 = 1 << 8
	FeatSingleMmap      uint32 = 1 << 0
	offSQRing           int64  = 0
	offCQRing           int64  = 0x8000000
	offSQEs             int64  = 0x10000000
	enterGetEvents      uint32 = 1 << 0
	enterExtArg         uint32 = 1 << 3
	sqNeedWakeup        uint32 = 1 << 0
	sqCQOverflow        uint32 = 1 << 1
	registerProbe       uint32 = 8
	registerEnableRings uint32 = 12
	registerPbufRing    uint32 = 22
	unregisterPbufRing  uint32 = 23
	registerNAPI        uint32 = 27
	unregisterNAPI      uint32 = 28
)

// Opcodes used by this module (the kernel knows many more; Probe reports them).
const (
	OpNop         uint8 = 0
	OpPollAdd     uint8 = 6
	OpRecvmsg     uint8 = 10
	OpTimeout     uint8 = 11
	OpAsyncCancel uint8 = 14
	OpRecv        uint8 = 27
)

// SQE flags.
const (
	SQEFixedFile      uint8 = 1 << 0
	SQEIODrain        uint8 = 1 << 1
	SQEIOLink         uint8 = 1 << 2
	SQEIOHardlink     uint8 = 1 << 3
	SQEAsync          uint8 = 1 << 4
	SQEBufferSelect   uint8 = 1 << 5
	SQECQESkipSuccess uint8 = 1 << 6
)

// IoPrio bits of send/recv requests.
const (
	RecvsendPollFirst uint16 = 1 << 0
	RecvMultishot     uint16 = 1 << 1
)

// AsyncCancel flags (SQE.OpFlags of OpAsyncCancel).
const (
	CancelAll uint32 = 1 << 0
	CancelFd  uint32 = 1 << 1
	CancelAny uint32 = 1 << 2
)

// CQE flags.
const (
	CQEFBuffer       uint32 = 1 << 0 // upper 16 bits hold the buffer id
	CQEFMore         uint32 = 1 << 1 // the (multishot) request stays armed
	CQEFSockNonempty uint32 = 1 << 2
	CQEBufferShift          = 16
)

// SQE is a submission queue entry (struct io_uring_sqe, 64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IoPrio      uint16
	Fd          int32
	Off         uint64 // offset, addr2
	Addr        uint64 // buffer or struct address
	Len         uint32
	OpFlags     uint32 // rw_flags, msg_flags, cancel_flags, timeout_flags, ...
	UserData    uint64
	BufIndex    uint16 // buf_index or buf_group
	Personality uint16
	SpliceFdIn  int32 // splice_fd_in, file_index
	Addr3       uint64
	_           uint64
}

// CQE is a completion queue entry (struct io_uring_cqe, 16 bytes).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// BufID returns the provided-buffer id of a completion that consumed one
// (Flags&CQEFBuffer != 0).
func (c *CQE) BufID() uint16 { return uint16(c.Flags >> CQEBufferShift) }

// More reports whether a multishot request stays armed after this completion.
func (c *CQE) More() bool { return c.Flags&CQEFMore != 0 }

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type params struct {
	SQEntries    uint32
	CQEntries    uint32
	Flags        uint32
	SQThreadCPU  uint32
	SQThreadIdle uint32
	Features     uint32
	WQFd         uint32
	Resv         [3]uint32
	SQOff        sqringOffsets
	CQOff        cqringOffsets
}

type getEventsArg struct {
	Sigmask   uint64
	SigmaskSz uint32
	MinWait   uint32
	Ts        uint64
}

type bufReg struct {
	RingAddr    uint64
	RingEntries uint32
	Bgid        uint16
	Flags       uint16
	Resv        [3]uint64
}

// buf is struct io_uring_buf; the ring tail overlays Resv of entry 0.
type buf struct {
	Addr uint64
	Len  uint32
	Bid  uint16
	Resv uint16
}

type probeOp struct {
	Op    uint8
	Resv  uint8
	Flags uint16
	Resv2 uint32
}

type probe struct {
	LastOp uint8
	OpsLen uint8
	Resv   uint16
	Resv2  [3]uint32
	Ops    [256]probeOp
}

const probeOpSupported = 1 << 0

// napiArg is struct io_uring_napi (IORING_(UN)REGISTER_NAPI, Linux 6.9).
// Opcode 0 (IO_URING_NAPI_REGISTER_OP) with OpParam 0
// (IO_URING_NAPI_TRACKING_DYNAMIC) is what 6.9-6.12 knew as padding, so
// one layout serves every kernel that has the call.
type napiArg struct {
	BusyPollTo     uint32 // microseconds
	PreferBusyPoll uint8
	Opcode         uint8
	Pad            [2]uint8
	OpParam        uint32
	Resv           uint32
}

// Compile-time layout checks against the kernel ABI.
var (
	_ [16 - unsafe.Sizeof(napiArg{})]struct{}
	_ [unsafe.Sizeof(napiArg{}) - 16]struct{}
	_ [64 - unsafe.Sizeof(SQE{})]struct{}
	_ [unsafe.Sizeof(SQE{}) - 64]struct{}
	_ [16 - unsafe.Sizeof(CQE{})]struct{}
	_ [unsafe.Sizeof(CQE{}) - 16]struct{}
	_ [120 - unsafe.Sizeof(params{})]struct{}
	_ [unsafe.Sizeof(params{}) - 120]struct{}
	_ [40 - unsafe.Sizeof(bufReg{})]struct{}
	_ [24 - unsafe.Sizeof(getEventsArg{})]struct{}
	_ [16 - unsafe.Sizeof(buf{})]struct{}
)
