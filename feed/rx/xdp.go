package rx

// The AF_XDP backend: the steering program of package bpf redirects the
// configured lines' UDP frames to AF_XDP sockets (package xsk), one per
// configured rx queue of each line's interface; Receive parses the frames in
// place and hands out views into the UMEM until Release puts the frames back
// on the fill ring.
//
// Receive times come from the kernel: the steering program stores the
// CLOCK_TAI time at which it ran in XDP metadata in front of each frame
// (bpf.MetaLen bytes, delivered by AF_XDP in copy and zero-copy mode), and
// drain converts it to CLOCK_REALTIME with the TAI offset, read at open and
// again whenever a packet's time is more than xdpTAIRefresh past the last
// read (the offset changes only at leap seconds). A frame without valid
// metadata (a driver that cannot reserve it) gets the time user space took
// it off the ring, once per batch. Stats().Extra counts both
// (xdp_kernel_ts, xdp_user_ts), and the wakeup syscalls Receive and Release
// make (xdp_wakeups).

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/xsk"
)

// Defaults of the AF_XDP backend.
const (
	xdpDefaultRing  = 4096 // fill ring entries and frames per queue
	xdpFrameSize    = 4096 // UMEM frame size: room for a 3506-byte MTU (the native XDP limit on veth)
	xdpMaxSockets   = 1 << 15
	xdpHandleShift  = 48 // Packet handle: (socket index+1) << 48 | UMEM address; 0 = none
	xdpHandleAddrMk = 1<<xdpHandleShift - 1
	xdpTAIRefresh   = int64(time.Second) // re-read the TAI offset after this much packet time
)

// xdpLine is one configured line as the parser matches it.
type xdpLine struct {
	iface  *xdpIface // the line's device: a frame matches only lines of the device it came in on
	vlan   uint16    // the line's 802.1Q VLAN (a VLAN device's line); 0: the device's (no tag, or VLAN ID 0)
	dst    netip.AddrPort
	source netip.Addr // invalid: any
	line   Line
}

// xdpIface is the steering program attached to one device, with the
// UMEM its sockets share. Lines on the device and on its VLAN devices
// share it.
type xdpIface struct {
	name    string
	ifindex int
	vlans   bool // some line is on a VLAN of it: match looks at the VLAN ID
	prog    *bpf.Program
	link    link.Link
	mode    bpf.Mode
	umem    *xsk.UMEM
	// mac: the device's MAC address as the program has it (SetMAC);
	// ether: the device has Ethernet addresses (none else is set or
	// followed). followMACs keeps it the device's; macFailed: setting a
	// new one failed (logged once).
	mac       [6]byte
	ether     bool
	macFailed bool
	// fallback: its lines' sockets once the device came back (fallBack);
	// fallbackFailed: opening them failed (logged once).
	fallback       *socketRx
	fallbackFailed bool
	// kernel: its lines' spare sockets, joined to their groups, through
	// which the kernel delivers what the program passes it of the lines
	// (xdp_kernel.go); nil once fallBack took them, or without any.
	// kernelPfds: their entries in xdpRx.pfds (nil with kernel).
	kernel     *socketRx
	kernelPfds []int
	// warnedNoSocket: the first line frames on a queue without a socket
	// were logged (under xdpRx.statsMu).
	warnedNoSocket bool
}

// xdpQueue is one AF_XDP socket and the frames waiting to go back to its
// fill ring.
type xdpQueue struct {
	sock    *xsk.Socket
	iface   *xdpIface
	pending []uint64 // cap = batch size
	// lent: by UMEM frame index, the frames handed to the caller and not
	// released yet. A Release of anything else (a stale copy of a packet
	// released already) would give the kernel a frame twice: it would
	// then fill it again under a datagram the caller still reads.
	lent []bool
	// unbound: the kernel unbound the socket from its device (see
	// unbind); it is neither woken nor polled again.
	unbound bool
}

type xdpRx struct {
	mu     sync.Mutex   // serializes Receive, Release and Close
	life   sync.RWMutex // Stats reads the kernel objects under R; Close tears them down under W
	closed atomic.Bool
	closer closer

	ifaces []*xdpIface
	queues []*xdpQueue
	joins  []int // group-joined UDP sockets, one per (interface, group)
	wakeFD int   // eventfd that wakes a blocked Receive on Close
	// ctlFD: a UDP socket opened with the rest, never bound, through
	// which followMACs asks the devices' addresses in the receiver's
	// network namespace (Receive may run on a thread in another).
	ctlFD int
	// linkFD: an rtnetlink socket of the receiver's namespace, joined to
	// the link notifications (RTMGRP_LINK), polled with the rings at
	// pfds[linkPfd] (-1: none): a change of one of the devices (its
	// address, its deletion) runs the checks at once, not a poll timeout
	// later (linkEvents). linkBuf takes its messages.
	linkFD  int
	linkPfd int
	linkBuf []byte
	lines   []xdpLine

	batch    int
	timeout  time.Duration
	spin     time.Duration // poll the rings in user space this long before blocking
	busyPoll bool
	keepP    bool // Config.KeepP: wait in pollKeepP while GOMAXPROCS > 1, not through the runtime
	next     int  // queue to read first (round robin)
	// checkedAt: when checkBound last ran (at most once a poll timeout,
	// when Receive is about to wait, or every busyCheckBatches batches it
	// returned without waiting: batches). batches counts busy-poll passes
	// too, for linkEventsUnpolled.
	checkedAt time.Time
	batches   uint32
	// pfds: what Receive polls, the wake file descriptors (Waker) last,
	// from pfds[wakeAt] (wakeOn; addPfd keeps them there).
	pfds    []unix.PollFd
	wakeAt  int
	wakeOn  wakeSet
	descs   []xsk.Desc
	backend string

	// CLOCK_TAI - CLOCK_REALTIME (ns), and the TAI time it was read at.
	taiOffset, taiAt int64
	metaLen          int  // bytes of metadata read before a frame: bpf.MetaLen (tests: 0, none)
	verify           bool // check line datagrams' checksums (Config.NoChecksums unset)
	log              zerolog.Logger
	// warned: the first line datagram dropped for each reason was
	// logged (the receive goroutine's only).
	warned [lineDrops]bool

	// The counters of every backend: packets and bytes by line,
	// malformed, unmatched, Receive's waits (waitTimeouts, waitWoken:
	// ended with nothing, by the poll timeout or by a wake file
	// descriptor). sourceFiltered and truncated stay 0: Stats adds the
	// fallback and kernel sockets' there.
	counters
	bad      [lineDrops]atomic.Uint64 // line datagrams dropped, by reason (lineDrop)
	kernelTS atomic.Uint64            // packets stamped with the program's kernel time
	userTS   atomic.Uint64            // packets stamped in user space (no metadata)
	wakeups  atomic.Uint64            // wakeup syscalls (need_wakeup, busy poll)
	// fillDeferred counts frames a fill ring did not take at once (kept
	// for the next flush). Never expected: a socket's fill ring has room
	// for all its frames.
	fillDeferred atomic.Uint64
	// pollKeepP returns: ended by a signal (EINTR), and slices that ran
	// out (for the tests).
	keepPIntr, keepPSlices atomic.Uint64

	// lastProg and lastSock are the last good readings of each interface's
	// program counters and each queue's socket statistics (indexed as
	// ifaces and queues). A read that fails, and every Stats after Close,
	// sums them instead: the sums are exported as counters, and one that
	// went back would read as a counter reset, increase() as a burst.
	// statsMu guards them (Stats runs on the stats ticker and on scrapes).
	statsMu     sync.Mutex
	lastProg    []bpf.Counters
	lastSock    []xsk.Statistics
	statsErrors atomic.Uint64 // kernel counter reads that failed
	badReleases atomic.Uint64 // Release of a packet whose frame the caller does not hold (Extra "bad_releases")
	unbound     atomic.Uint64 // sockets the kernel unbound from their device (unbind)

	// spares, by line: a socket bound to each multicast line's group and
	// port but joined to nothing (the kernel delivers it nothing), opened
	// with the rest for fallBack; fd -1: none, or the fallback's now.
	spares []lineSocket
	// fallbacks: the line sockets of the devices whose AF_XDP sockets
	// the kernel unbound and that came back as new devices (fallBack),
	// read by Receive in turn with the rings (drainWithFallbacks); fallbackList is a copy for Stats.
	fallbacks    []*socketRx
	fallbackList atomic.Pointer[[]*socketRx]
	fellBack     atomic.Uint64 // devices fallen back to sockets ("xdp_socket_fallbacks")
	// fallbackFirst: the fallbacks were read before the rings last time
	// (drainWithFallbacks takes turns).
	fallbackFirst bool
	fallbackNext  int // drainFallbacks' first fallback is fallbacks[fallbackNext%len]

	// kernel: the devices' kernel sockets read now (joinSpares,
	// drainKernel); kernelList: all made, fixed at open, for Stats;
	// kernelCovers, by device (as ifaces), fixed at open: every line of
	// it has one, so what the program passes of its lines is not lost.
	// kernelDue: read them first in the next pass (poll(2) said one
	// is readable; busy: every busyCheckBatches batches or busy-poll
	// passes).
	kernel       []*socketRx
	kernelList   []*socketRx
	kernelCovers []bool
	kernelNext   int
	kernelDue    bool
}

func (r *xdpRx) Backend() string { return r.backend }
