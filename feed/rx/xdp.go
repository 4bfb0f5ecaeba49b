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
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/clock"
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
	// warnedChecksum: the first failed checksum was logged (the receive
	// goroutine's only).
	warnedChecksum bool
	// warnedSource: the first datagram from a source the kernel drops
	// was logged (the receive goroutine's only).
	warnedSource bool
	// warnedOptions: the first datagram with IPv4 options the kernel
	// refuses was logged (the receive goroutine's only).
	warnedOptions bool

	packets, bytes [2]atomic.Uint64
	malformed      atomic.Uint64
	unmatched      atomic.Uint64
	badChecksum    atomic.Uint64 // line datagrams whose IPv4 or UDP checksum failed (bpf.Datagram.ChecksumOK)
	badSource      atomic.Uint64 // line datagrams from a source the kernel drops (bpf.Datagram.SourceOK)
	badOptions     atomic.Uint64 // line datagrams with IPv4 options the kernel refuses (bpf.Datagram.OptionsOK)
	kernelTS       atomic.Uint64 // packets stamped with the program's kernel time
	userTS         atomic.Uint64 // packets stamped in user space (no metadata)
	wakeups        atomic.Uint64 // wakeup syscalls (need_wakeup, busy poll)
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
	// waitTimeouts, waitWoken: Receive calls that ended with nothing, by
	// the poll timeout or by a wake file descriptor (Waker).
	waitTimeouts, waitWoken atomic.Uint64

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

// openXDP opens the AF_XDP backend. Errors meaning that XDP or AF_XDP cannot
// work here (kernel, driver, privileges, UMEMs above RLIMIT_MEMLOCK:
// xdpMemlock) wrap ErrNotSupported.
func openXDP(cfg Config) (Receiver, error) {
	r, err := newXDPRx(cfg)
	if err != nil {
		err = xdpMemlock(err, cfg)
		if errors.Is(err, bpf.ErrNotSupported) || errors.Is(err, xsk.ErrNotSupported) {
			return nil, fmt.Errorf("open xdp backend: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("open xdp backend: %w", err)
	}
	return r, nil
}

func newXDPRx(cfg Config) (_ *xdpRx, err error) {
	if len(cfg.Lines) == 0 {
		return nil, errors.New("no lines configured")
	}
	zc, err := xdpZeroCopy(cfg.ZeroCopy)
	if err != nil {
		return nil, err
	}
	modes, err := xdpModes(cfg.XDPMode)
	if err != nil {
		return nil, err
	}
	queues := cfg.Queues
	if len(queues) == 0 {
		queues = []int{0}
	}
	ring := xdpRing(cfg)
	r := &xdpRx{
		wakeFD:  -1,
		ctlFD:   -1,
		linkFD:  -1,
		linkPfd: -1,
		batch:   cfg.BatchSize,
		timeout: cfg.PollTimeout,
		spin:    max(cfg.Spin, 0),
		verify:  !cfg.NoChecksums,
		log:     cfg.Log,
	}
	if r.batch <= 0 {
		r.batch = 64
	}
	r.keepP = cfg.KeepP
	if r.timeout <= 0 {
		r.timeout = 100 * time.Millisecond
	}
	defer func() {
		if err != nil {
			r.teardown()
		}
	}()

	if r.ctlFD, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP); err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}

	// Lines, grouped by the device the program attaches to (a VLAN
	// device's lower device), in configuration order.
	byIface := map[string][]int{}
	var names []string
	devs := make([]XDPDevice, len(cfg.Lines))
	for i, lc := range cfg.Lines {
		if !lc.Group.Is4() {
			return nil, fmt.Errorf("line %s: group %v is not IPv4", Line(i), lc.Group)
		}
		if lc.Source.IsValid() && !lc.Source.Is4() {
			return nil, fmt.Errorf("line %s: source %v is not IPv4", Line(i), lc.Source)
		}
		if devs[i], err = xdpResolve(lc.Interface); err != nil {
			return nil, fmt.Errorf("line %s: %w", Line(i), err)
		}
		dev := devs[i]
		for _, l := range r.lines {
			if l.dst == netip.AddrPortFrom(lc.Group, lc.Port) && devs[l.line] == dev {
				if l.source.IsValid() && lc.Source.IsValid() && l.source != lc.Source {
					// Two lines, which the other backends serve; the
					// program keys a line by group and port only.
					return nil, fmt.Errorf("lines %s and %s both use %v:%d on %s, told apart only by their sources: %w", l.line, Line(i), lc.Group, lc.Port, lc.Interface, ErrNotSupported)
				}
				return nil, fmt.Errorf("lines %s and %s both use %v:%d on %s", l.line, Line(i), lc.Group, lc.Port, lc.Interface)
			}
		}
		if _, ok := byIface[dev.Name]; !ok {
			names = append(names, dev.Name)
		}
		byIface[dev.Name] = append(byIface[dev.Name], i)
		r.lines = append(r.lines, xdpLine{vlan: dev.VLAN, dst: netip.AddrPortFrom(lc.Group, lc.Port), source: lc.Source, line: Line(i)})
	}

	for _, name := range names {
		x := &xdpIface{name: name, ifindex: devs[byIface[name][0]].Index}
		r.ifaces = append(r.ifaces, x)
		for _, i := range byIface[name] {
			x.vlans = x.vlans || devs[i].VLAN != 0
		}
		if x.prog, err = bpf.LoadWith(bpf.LoadOptions{VLANLines: x.vlans}); err != nil {
			return nil, err
		}
		// The device's own MAC address: a line frame sent to it (a
		// switch converting multicast to unicast) is the line's, one
		// to another unicast address another host's (xdp_other_host).
		// Followed while the backend runs (followMACs).
		if x.mac, x.ether, err = ifHWAddr(r.ctlFD, x.ifindex); err != nil {
			return nil, fmt.Errorf("interface %s: address: %w", name, err)
		}
		if x.ether {
			if err = x.prog.SetMAC(x.mac[:]); err != nil {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
		}
		for _, i := range byIface[name] {
			r.lines[i].iface = x
			lc := cfg.Lines[i]
			if vlan := devs[i].VLAN; vlan != 0 {
				err = x.prog.SetVLANLine(vlan, lc.Group, lc.Port, uint32(i), lc.Source)
			} else {
				err = x.prog.SetLine(lc.Group, lc.Port, uint32(i), lc.Source)
			}
			if err != nil {
				return nil, err
			}
		}
		if x.vlans {
			xdpWarnVLANOffload(cfg, x.name)
		}
		if err := x.prog.NoMeta(); err != nil {
			cfg.Log.Warn().Err(err).Str("interface", name).
				Msg("rx: xdp: frames carry no kernel timestamp (xdp_no_meta counts them): each is stamped when read, so a queue that was behind gets later stamps")
		}
		x.umem, err = xsk.NewUMEM(xsk.UMEMConfig{FrameSize: xdpFrameSize, Frames: ring * len(queues), Log: cfg.Log})
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		for _, q := range queues {
			if len(r.queues) == xdpMaxSockets {
				return nil, fmt.Errorf("more than %d queues", xdpMaxSockets)
			}
			s, err := xsk.Open(xsk.Config{
				Ifindex:        x.ifindex,
				Queue:          q,
				UMEM:           x.umem,
				Frames:         ring,
				FillSize:       ring,
				RxSize:         ring,
				ZeroCopy:       zc,
				BusyPoll:       cfg.BusyPoll,
				BusyPollUsec:   cfg.BusyPollUsec,
				BusyPollBudget: cfg.BusyPollBudget,
				Log:            cfg.Log,
			})
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
			r.queues = append(r.queues, &xdpQueue{sock: s, iface: x, pending: make([]uint64, 0, r.batch), lent: make([]bool, x.umem.Frames())})
			if err := x.prog.SetSocket(q, s.FD()); err != nil {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
		}
		if err := x.attach(modes, cfg); err != nil {
			return nil, err
		}
		xdpWarnMTU(cfg, x)
	}

	// Keep a socket joined to every group so the host reports membership
	// (IGMP): switches forward nothing to a port that did not join, even
	// though the frames themselves go to the AF_XDP sockets. A VLAN line
	// joins on its VLAN device, so that the report goes out on the VLAN.
	joined := map[string]bool{}
	for i, lc := range cfg.Lines {
		key := lc.Interface + "/" + lc.Group.String()
		if joined[key] || !lc.Group.IsMulticast() {
			continue
		}
		joined[key] = true
		ifi, err := LookupInterface(lc.Interface)
		if err != nil {
			return nil, fmt.Errorf("line %s: %w", Line(i), err)
		}
		fd, err := xdpJoin(lc, ifi.Index)
		if err != nil {
			return nil, fmt.Errorf("line %s: %w", Line(i), err)
		}
		r.joins = append(r.joins, fd)
	}
	warnReversePath(&cfg, true)
	// The spares (fallBack), opened now: in the receiver's network
	// namespace, with the capabilities setup has. One that cannot be
	// opened (the port bound by another socket of the host without
	// SO_REUSEADDR: AF_XDP takes the frames before the UDP layer, so the
	// line itself does not need the port) leaves its line without a
	// fallback, logged: it does not keep the backend from opening.
	spareCfg := cfg
	spareCfg.BusyPoll = false
	for i, lc := range cfg.Lines {
		s := lineSocket{fd: -1}
		if lc.Group.IsMulticast() {
			var serr error
			if s, serr = openBoundSocket(&spareCfg, Line(i)); serr != nil {
				s.fd = -1
				cfg.Log.Warn().Err(serr).Str("line", Line(i).String()).
					Msg("rx: xdp: no fallback socket for the line: should its interface be deleted and created again, the line receives nothing until the handler restarts")
			}
		}
		r.spares = append(r.spares, s)
	}
	r.warnStarvedSockets()

	if r.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, q := range r.queues {
		r.addPfd(q.sock.FD())
		r.busyPoll = r.busyPoll || q.sock.BusyPoll()
	}
	r.addPfd(r.wakeFD)
	if r.linkFD, err = linkNotifications(); err != nil {
		// The checks still run once a poll timeout.
		r.linkFD = -1
		cfg.Log.Warn().Err(err).Msg("rx: xdp: no rtnetlink link notifications: an interface's new MAC address, or its deletion, is seen within a poll timeout, not at once")
	} else {
		r.linkBuf = make([]byte, 16<<10)
		r.linkPfd = r.addPfd(r.linkFD)
	}
	r.joinSpares(cfg)
	r.descs = make([]xsk.Desc, r.batch)
	r.lastProg = make([]bpf.Counters, len(r.ifaces))
	r.lastSock = make([]xsk.Statistics, len(r.queues))
	if r.taiOffset, err = bpf.TAIOffset(); err != nil {
		return nil, err
	}
	r.taiAt = time.Now().UnixNano() + r.taiOffset
	r.metaLen = bpf.MetaLen
	r.backend = r.describe()
	cfg.Log.Info().Str("backend", r.backend).Int("queues", len(r.queues)).Int("lines", len(r.lines)).
		Msg("rx: xdp backend open")
	return r, nil
}

func xdpZeroCopy(s string) (xsk.ZeroCopy, error) {
	switch s {
	case "", "auto":
		return xsk.ZeroCopyAuto, nil
	case "on":
		return xsk.ZeroCopyOn, nil
	case "off":
		return xsk.ZeroCopyOff, nil
	}
	return 0, fmt.Errorf("zero-copy mode %q: want auto, on or off", s)
}

func xdpModes(s string) ([]bpf.Mode, error) {
	switch s {
	case "", "auto":
		return []bpf.Mode{bpf.ModeNative, bpf.ModeGeneric}, nil
	case "native":
		return []bpf.Mode{bpf.ModeNative}, nil
	case "generic":
		return []bpf.Mode{bpf.ModeGeneric}, nil
	}
	return nil, fmt.Errorf("xdp mode %q: want auto, native or generic", s)
}

// attach attaches the program in the first mode the driver accepts. When
// no mode does and the interface has another program attached, the error
// wraps ErrXDPInUse and names that program.
func (x *xdpIface) attach(modes []bpf.Mode, cfg Config) error {
	var err error
	for i, m := range modes {
		x.link, err = x.prog.Attach(x.ifindex, m)
		if err == nil {
			x.mode = m
			return nil
		}
		if i+1 < len(modes) {
			cfg.Log.Info().Err(err).Str("interface", x.name).
				Msgf("rx: xdp %v mode refused, trying %v", m, modes[i+1])
		}
	}
	if held := xdpAttachedPrograms(x.ifindex); held != "" {
		return fmt.Errorf("%w: %w, %s: another process's (a feed handler with AF_XDP on %s?), or one a tool left (ip link set dev %s xdp off removes one no process holds)",
			err, ErrXDPInUse, held, x.name, x.name)
	}
	return err
}

// xdpMaxFrame is the largest frame a UMEM frame takes: the kernel keeps
// XDP_PACKET_HEADROOM (256 bytes) of each in front of the data. A larger
// frame (without multi-buffer, which the program does not take) is
// dropped by the kernel in copy mode and counted in the socket's
// rx_dropped (Stats.Dropped, xsk_rx_dropped); a zero-copy driver refuses
// native XDP with an MTU that lets one through. The largest line datagram
// is xdpMaxFrame less the Ethernet (14), IPv4 (20) and UDP (8) headers:
// 3798 bytes, 4 less for each VLAN tag and less with IPv4 options.
const xdpMaxFrame = xdpFrameSize - unix.XDP_PACKET_HEADROOM

// xdpWarnMTU logs a warning when x's MTU lets frames through that are
// larger than xdpMaxFrame (with up to two VLAN tags): such line datagrams
// are lost, counted in Stats.Dropped only. The feed's datagrams fit a
// 1500-byte MTU; the socket backends lose those over their 2048-byte
// slots the same way (truncated).
func xdpWarnMTU(cfg Config, x *xdpIface) {
	ifi, err := net.InterfaceByIndex(x.ifindex)
	if err != nil || ifi.MTU+14+8 <= xdpMaxFrame {
		return
	}
	cfg.Log.Warn().Str("interface", x.name).Int("mtu", ifi.MTU).
		Msgf("rx: xdp: %s has MTU %d: AF_XDP drops frames over %d bytes (a UMEM frame less the kernel's XDP headroom), so line datagrams over %d bytes (4 less per VLAN tag, less with IPv4 options) are lost, counted in receive_dropped_total (xsk_rx_dropped) (docs/TUNING.md section 6)",
			x.name, ifi.MTU, xdpMaxFrame, xdpMaxFrame-14-20-8)
}

// xdpWarnVLANOffload logs a warning when device name, which has VLAN
// lines, has rx-vlan-offload on: a driver that strips the tag before XDP
// runs hides the VLAN ID from the program, which then passes the lines'
// frames to the kernel (counted in xdp_vlan_untagged).
func xdpWarnVLANOffload(cfg Config, name string) {
	on, err := VLANOffload(name)
	switch {
	case err != nil:
		cfg.Log.Warn().Err(err).Str("interface", name).
			Msg("rx: xdp: VLAN lines: cannot read rx-vlan-offload; a NIC that strips VLAN tags before XDP makes the lines receive nothing (xdp_vlan_untagged counts their frames)")
	case on:
		cfg.Log.Warn().Str("interface", name).
			Msgf("rx: xdp: VLAN lines on %s, which has rx-vlan-offload on: a driver that strips the tag before XDP makes their frames look untagged, passed to the kernel and counted in xdp_vlan_untagged. If they never arrive: ethtool -K %s rxvlan off (docs/TUNING.md section 6)", name, name)
	}
}

// xdpJoin opens a UDP socket joined to lc.Group on interface ifindex. It is
// never bound, so the kernel delivers nothing to it.
func xdpJoin(lc LineConfig, ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("join %v on %s: socket: %w", lc.Group, lc.Interface, err)
	}
	mreq := &unix.IPMreqn{Multiaddr: lc.Group.As4(), Ifindex: int32(ifindex)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("join %v on %s: IP_ADD_MEMBERSHIP: %w", lc.Group, lc.Interface, err)
	}
	return fd, nil
}

func (r *xdpRx) describe() string {
	var b strings.Builder
	b.WriteString(BackendXDP + " (")
	for i, x := range r.ifaces {
		if i > 0 {
			b.WriteString("; ")
		}
		mode := "copy"
		for _, q := range r.queues {
			if q.iface == x && q.sock.ZeroCopy() {
				mode = "zero-copy"
			}
		}
		fmt.Fprintf(&b, "%s %v, %s", x.name, x.mode, mode)
		if x.vlans {
			b.WriteString(", vlans")
			sep := " "
			for _, l := range r.lines {
				if l.iface == x && l.vlan != 0 {
					fmt.Fprintf(&b, "%s%d", sep, l.vlan)
					sep = ","
				}
			}
		}
		if x.umem.HugePages() {
			b.WriteString(", huge pages")
		}
		if x.prog.NoMeta() != nil {
			// The rx -> shm latency then starts at the pickup.
			b.WriteString(", stamped on reading")
		}
	}
	if r.busyPoll {
		b.WriteString(", busy poll")
	}
	if r.spin > 0 {
		fmt.Fprintf(&b, ", spin %v", r.spin)
	}
	b.WriteString(")")
	return b.String()
}

func (r *xdpRx) Backend() string { return r.backend }

// Receive returns the next batch of line datagrams, waiting at most the poll
// timeout (poll(2) on the sockets, or busy polling). It allocates nothing.
func (r *xdpRx) Receive(pkts []Packet) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return 0, ErrClosed
	}
	max := min(len(pkts), r.batch)
	if max == 0 {
		return 0, nil
	}
	var deadline, spinUntil time.Time
	spinWoken, resumed, woke := false, false, false
	for {
		var got int
		if r.kernelDue {
			r.kernelDue = false
			var err error
			if got, err = r.drainKernel(pkts[:max]); err != nil {
				return got, err
			}
		}
		if got < max {
			if len(r.fallbacks) == 0 {
				got += r.drain(pkts[got:max])
			} else {
				k, err := r.drainWithFallbacks(pkts[got:max])
				if got += k; err != nil {
					return got, err
				}
			}
		}
		if got > 0 {
			// Busy: check too, at most once a poll timeout (see
			// busyCheckBatches), or a socket unbound while a line of
			// another device keeps the receiver busy would go unsaid
			// until every line is quiet.
			if r.batches++; r.batches%busyCheckBatches == 0 {
				r.linkEventsUnpolled()
				r.checkBoundAt(time.Now())
				r.kernelDue = len(r.kernel) > 0
			}
			return got, nil
		}
		if woke {
			// A wake file descriptor is ready and the lines, read again
			// since, had nothing.
			r.waitWoken.Add(1)
			return 0, nil
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(r.timeout)
			spinUntil = now.Add(r.spin)
		} else if !now.Before(deadline) {
			r.waitTimeouts.Add(1)
			return 0, nil
		}
		r.checkBoundAt(now)
		if r.busyPoll {
			// Busy poll never sleeps, and its wakeups run the driver's
			// polling (the kernel holds the interrupt back meanwhile):
			// every pass wakes every queue, spin or not.
			if r.closed.Load() {
				return 0, ErrClosed
			}
			for _, q := range r.queues {
				if err := r.wake(q); err != nil {
					return 0, err
				}
			}
			if r.batches++; r.batches%busyCheckBatches == 0 {
				r.linkEventsUnpolled()
				r.kernelDue = len(r.kernel) > 0
			}
			if r.wakeOn.n > 0 {
				// Only while a wake set is given (the handler: a
				// re-request out), and only on a pass that found
				// nothing.
				if n, _ := unix.Poll(r.pfds[r.wakeAt:], 0); n > 0 {
					woke = true
				}
			}
			continue
		}
		if now.Before(spinUntil) {
			// Spin: read the rings again without a syscall. A driver
			// that asks to be woken (need_wakeup, zero-copy) is woken
			// once per Receive, not on every pass: a zero-copy driver
			// may keep the flag set (an empty fill ring) for the whole
			// spin, and a syscall per pass would turn the spin into a
			// syscall loop.
			if r.closed.Load() {
				return 0, ErrClosed
			}
			if !spinWoken {
				spinWoken = true
				if err := r.wakeNeeding(); err != nil {
					return 0, err
				}
			}
			continue
		}
		if !resumed {
			if err := r.wakeNeeding(); err != nil {
				return 0, err
			}
		}
		ms := int((deadline.Sub(now) + time.Millisecond - 1) / time.Millisecond)
		var n int
		var err error
		keepP := r.keepP && runtime.GOMAXPROCS(0) > 1
		if keepP {
			// Sleep keeping the P (pollKeepP), a slice at a time; a
			// slice that ends without a packet goes round the loop,
			// which returns at the deadline.
			n, err = pollKeepP(r.pfds, min(ms, int(xdpPollSlice/time.Millisecond)))
		} else {
			n, err = unix.Poll(r.pfds, ms)
		}
		if err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("receive xdp: poll: %w", err)
		}
		if keepP && n == 0 {
			if err != nil {
				r.keepPIntr.Add(1)
			} else {
				r.keepPSlices.Add(1)
			}
		}
		if r.closed.Load() {
			return 0, ErrClosed
		}
		if n > 0 && r.linkPfd >= 0 && r.pfds[r.linkPfd].Revents&(unix.POLLIN|unix.POLLERR) != 0 {
			r.linkEvents()
		}
		if n > 0 && r.kernelReady() {
			r.kernelDue = true // read first in the next pass
		}
		if n > 0 && wakeReady(r.pfds[r.wakeAt:]) {
			woke = true // the lines are read once more first
		}
		if n == 0 && err == nil && !keepP {
			r.waitTimeouts.Add(1)
			return 0, nil
		}
		// A slice that ended or a signal continues the same wait: the
		// driver was woken for it already.
		resumed = keepP && n == 0
	}
}

// addPfd adds fd to the file descriptors Receive polls, before the wake
// entries, and returns its index in pfds.
func (r *xdpRx) addPfd(fd int) int {
	i := r.wakeAt
	r.pfds = slices.Insert(r.pfds, i, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	r.wakeAt++
	return i
}

// WakeOn sets the file descriptors that also end Receive's wait (Waker):
// polled with the sockets. Busy polling, which never sleeps, polls them
// (without waiting) once a pass while there are any; spinning (Config.Spin)
// sees them when it stops, at most Spin later.
func (r *xdpRx) WakeOn(fds []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed, err := r.wakeOn.set(fds)
	if changed {
		r.pfds = slices.Grow(r.pfds[:r.wakeAt], r.wakeOn.n)[:r.wakeAt+r.wakeOn.n]
		r.wakeOn.pollFds(r.pfds[r.wakeAt:])
	}
	return err
}

// xdpResolve finds the device and VLAN of a line's interface. Tests replace
// it to play VLAN devices on a kernel without 802.1Q support
// (CONFIG_VLAN_8021Q), where none can be made.
var xdpResolve = ResolveXDPDevice

// xdpNeedWakeup reads a socket's need_wakeup flag. Tests replace it to play
// a zero-copy driver that keeps the flag set (veth has no zero-copy mode,
// and in copy mode the kernel never sets it).
var xdpNeedWakeup = (*xsk.Socket).NeedWakeup

// wakeNeeding wakes the sockets whose driver asks for it.
func (r *xdpRx) wakeNeeding() error {
	for _, q := range r.queues {
		if xdpNeedWakeup(q.sock) {
			if err := r.wake(q); err != nil {
				return err
			}
		}
	}
	return nil
}

// wake makes the wakeup syscall on q's socket, counted in
// Stats().Extra "xdp_wakeups". A socket the kernel unbound is not woken:
// the wakeup that finds it unbound unbinds q (and is not an error).
func (r *xdpRx) wake(q *xdpQueue) error {
	if q.unbound {
		return nil
	}
	r.wakeups.Add(1)
	if err := q.sock.Wakeup(); err != nil {
		if errors.Is(err, xsk.ErrUnbound) {
			r.unbind(q, err)
			return nil
		}
		return fmt.Errorf("receive xdp: %w", err)
	}
	return nil
}

// linkEvents reads the link notifications waiting on linkFD and, when one
// is of a device of r (an address changed, the device deleted) or, with a
// device whose sockets the kernel unbound, of any device (the new one may
// be back), makes the next checkBoundAt run the checks at once: the
// interval in which line frames to a device's new MAC address count in
// xdp_other_host, lost to their lines, is then the time the receive
// thread takes to wake, not up to a poll timeout. Receive calls it when
// poll(2) says linkFD is readable or has an error: rtnetlink's ENOBUFS
// may be pending with no notification queued (POLLERR alone), which
// every poll reports at once until a read takes it; and, busy (returning
// packets without waiting, or busy polling), every busyCheckBatches
// batches or passes (linkEventsUnpolled). Reads a bounded number of
// datagrams; an overrun (ENOBUFS: notifications lost) counts as one of
// r's.
func (r *xdpRx) linkEvents() {
	ours := false
	for range 64 {
		n, err := unix.Read(r.linkFD, r.linkBuf)
		if errors.Is(err, unix.ENOBUFS) {
			ours = true
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		ours = ours || r.linkOfOurs(r.linkBuf[:n])
	}
	if ours {
		r.checkedAt = time.Time{}
	}
}

// linkEventsUnpolled reads the link notifications (linkEvents) where
// Receive does not wait in poll(2), which would say they are there: a
// receiver that returns batches without waiting, and a busy-polling one,
// which never waits. Called every busyCheckBatches batches returned and
// busy-poll passes: one read (EAGAIN, mostly) in that many, so that such
// a receiver too follows a device's new MAC address (or its deletion)
// within that many batches or passes, not a poll timeout later.
func (r *xdpRx) linkEventsUnpolled() {
	if r.linkFD >= 0 {
		r.linkEvents()
	}
}

// linkOfOurs reports whether the rtnetlink datagram b holds a link message
// (RTM_NEWLINK, RTM_DELLINK) of one of r's devices, or of any device
// while one of r's has every socket unbound (fallBack waits for it).
func (r *xdpRx) linkOfOurs(b []byte) bool {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		if (typ == unix.RTM_NEWLINK || typ == unix.RTM_DELLINK) && l >= unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg {
			idx := int(int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN+4:])))
			for _, x := range r.ifaces {
				if x.ifindex == idx || r.allUnbound(x) {
					return true
				}
			}
		}
		b = b[min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b)):]
	}
	return false
}

// checkBoundAt runs checkBound and followUnbound if they last ran a poll
// timeout before now.
func (r *xdpRx) checkBoundAt(now time.Time) {
	if now.Sub(r.checkedAt) >= r.timeout {
		r.checkedAt = now
		r.checkBound()
		r.followUnbound(now)
		r.followMACs()
	}
}

// followMACs gives each device's program the device's MAC address when it
// changed since the program was given it (ip link set dev eth0 address,
// a bond's failover with fail_over_mac, a VM's migration): until then line
// frames sent to the new address (a unicast line, a switch converting
// multicast to unicast) would count in xdp_other_host, lost to their line,
// and the ones to the old address, which the kernel drops now, would be
// taken. Run with checkBound, at most once a poll timeout, or at once
// after a link notification of the device (linkEvents): two ioctls a
// device, allocating nothing unless the address changed. A device whose
// sockets the kernel unbound is gone (its lines, fallen back, read
// through sockets); one not found now is asked again next time.
func (r *xdpRx) followMACs() {
	for _, x := range r.ifaces {
		if !x.ether || x.fallback != nil || r.allUnbound(x) {
			continue
		}
		mac, ether, err := ifHWAddr(r.ctlFD, x.ifindex)
		if err == nil && ether && mac != x.mac {
			r.changeMAC(x, mac)
		}
	}
}

// changeMAC gives x's program its device's new MAC address mac, and logs
// it (followMACs).
func (r *xdpRx) changeMAC(x *xdpIface, mac [6]byte) {
	if err := x.prog.SetMAC(mac[:]); err != nil {
		if !x.macFailed {
			x.macFailed = true
			r.log.Error().Err(err).Str("interface", x.name).Str("mac", net.HardwareAddr(mac[:]).String()).
				Msg("rx: xdp: the interface's MAC address changed and the program could not be given the new one: line frames sent to it count in xdp_other_host, not delivered; trying again")
		}
		return
	}
	r.log.Warn().Str("interface", x.name).Str("old_mac", net.HardwareAddr(x.mac[:]).String()).
		Str("mac", net.HardwareAddr(mac[:]).String()).
		Msg("rx: xdp: the interface's MAC address changed: line frames sent to the new one are the lines' now, those to the old one other hosts' (xdp_other_host)")
	x.mac, x.macFailed = mac, false
}

// followUnbound falls back to line sockets for a device whose AF_XDP
// sockets the kernel all unbound, once a device of its name is back
// (fallBack), and then follows the fallback sockets' interfaces as the
// socket backend does (lineWatch).
func (r *xdpRx) followUnbound(now time.Time) {
	for _, x := range r.ifaces {
		switch {
		case x.fallback != nil:
			x.fallback.watch.check(now, x.fallback.socks)
		case r.allUnbound(x):
			r.fallBack(x)
		}
	}
}

// allUnbound reports whether the kernel unbound every socket of x.
func (r *xdpRx) allUnbound(x *xdpIface) bool {
	some := false
	for _, q := range r.queues {
		if q.iface == x {
			if !q.unbound {
				return false
			}
			some = true
		}
	}
	return some
}

// fallBack receives the lines of x, a device deleted under the AF_XDP
// sockets (unbind), through their spare sockets once a device of their
// interface's name is back: a new device, without the program, whose
// frames go up the kernel's stack. Attaching the program to it and
// binding new AF_XDP sockets would need the capabilities the handler
// drops after setup (cap_net_admin, cap_bpf, cap_net_raw); joining a
// group needs none, and the spares were opened and bound with the rest.
// Logged, counted in Stats().Extra "xdp_socket_fallbacks"; the lines then
// receive as the socket backend does (recvmmsg, kernel timestamps) until
// the handler restarts. A device not back yet is asked for again next
// time (once a poll timeout).
func (r *xdpRx) fallBack(x *xdpIface) {
	var socks []lineSocket
	var lines []string
	for _, l := range r.lines {
		s := r.spares[l.line]
		if l.iface != x || s.fd < 0 {
			continue
		}
		// Asked through the socket: in its network namespace.
		idx, err := ifIndex(s.fd, s.ifname)
		if err != nil {
			return // not back (yet)
		}
		s.ifindex = idx
		socks = append(socks, s)
		lines = append(lines, l.line.String())
	}
	if len(socks) == 0 {
		return // no multicast line: nothing to join
	}
	for i := range socks {
		if err := membership(socks[i].fd, unix.IP_ADD_MEMBERSHIP, socks[i].group, socks[i].ifindex); err != nil {
			for j := range socks[:i] {
				membership(socks[j].fd, unix.IP_DROP_MEMBERSHIP, socks[j].group, socks[j].ifindex)
			}
			if !x.fallbackFailed {
				x.fallbackFailed = true
				r.log.Error().Err(err).Str("interface", x.name).Str("line", socks[i].line.String()).
					Msg("rx: xdp: the interface is back as a new device, and joining its lines' groups on it failed: trying again")
			}
			return
		}
	}
	r.retireKernel(x) // its sockets are the fallback's now
	for _, s := range socks {
		r.spares[s.line].fd = -1 // the fallback's now
	}
	f := newSocketRx(Config{BatchSize: r.batch, PollTimeout: r.timeout, Log: r.log}, socks)
	x.fallback, x.fallbackFailed = f, false
	r.fallbacks = append(r.fallbacks, f)
	list := append([]*socketRx(nil), r.fallbacks...)
	r.fallbackList.Store(&list)
	for i := range socks {
		r.addPfd(socks[i].fd)
	}
	r.fellBack.Add(1)
	r.log.Warn().Str("interface", x.name).Strs("lines", lines).
		Msg("rx: xdp: the interface is back as a new device, without the XDP program (attaching it needs the capabilities dropped after setup): receiving its lines through sockets (recvmmsg) until the handler restarts")
}

// drainWithFallbacks is drain with fallbacks (fallBack): the rings and
// the fallback sockets take turns at being read first, as the socket
// backend's lines do, so that a line on AF_XDP that fills every batch
// (a reader behind) does not starve a line read through a socket, whose
// datagrams the kernel would drop once its buffer is full.
func (r *xdpRx) drainWithFallbacks(pkts []Packet) (int, error) {
	r.fallbackFirst = !r.fallbackFirst
	if r.fallbackFirst {
		n, err := r.drainFallbacks(pkts)
		if n < len(pkts) {
			n += r.drain(pkts[n:])
		}
		return n, err
	}
	n := r.drain(pkts)
	if n == len(pkts) {
		return n, nil
	}
	k, err := r.drainFallbacks(pkts[n:])
	return n + k, err
}

// drainFallbacks reads the fallback sockets (fallBack) into pkts, as the
// socket backend does; the first error comes with what they brought.
// Starting with a different fallback each call: with two devices fallen
// back (a driver reload of a two-port NIC gives both lines'), the first
// made, filling every batch, would starve the other.
func (r *xdpRx) drainFallbacks(pkts []Packet) (int, error) {
	r.fallbackNext++
	return drainInTurn(r.fallbacks, r.fallbackNext, pkts, "xdp fallback")
}

// drainInTurn reads the socket receivers rs into pkts, starting with
// rs[first%len(rs)]; the first error, wrapped as what's, comes with what
// they brought.
func drainInTurn(rs []*socketRx, first int, pkts []Packet, what string) (int, error) {
	n := 0
	var firstErr error
	for i := range rs {
		if n == len(pkts) {
			break
		}
		k, err := rs[(first+i)%len(rs)].drain(pkts[n:])
		n += k
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, err)
		}
	}
	return n, firstErr
}

// checkBound asks each socket whether the kernel still has it bound to
// its device (xsk.Socket.Check): poll(2) says nothing of an unbound
// socket, which would otherwise go silent for good without a word.
// Receive runs it when it is about to wait and, busy, every
// busyCheckBatches batches, at most once a poll timeout: a syscall per
// socket per poll timeout, off the per-packet path.
func (r *xdpRx) checkBound() {
	for _, q := range r.queues {
		if q.unbound {
			continue
		}
		if err := q.sock.Check(); errors.Is(err, xsk.ErrUnbound) {
			r.unbind(q, err)
		}
	}
}

// unbind retires q, whose socket the kernel unbound from its device (the
// device was unregistered: deleted, or re-registered by its driver):
// nothing arrives on it again, and a wakeup of it would fail on every
// call, so it is neither woken nor polled from now on. Logged once,
// counted in Stats().Extra "xsk_unbound"; the lines on the other
// interfaces go on. A device that comes back has neither: its lines are
// then read through sockets (fallBack).
func (r *xdpRx) unbind(q *xdpQueue, err error) {
	q.unbound = true
	for i := range r.queues {
		if r.queues[i] == q {
			r.pfds[i].Fd = -1 // poll(2) skips a negative fd
		}
	}
	r.unbound.Add(1)
	var lines []string
	for _, l := range r.lines {
		if l.iface == q.iface {
			lines = append(lines, l.line.String())
		}
	}
	r.log.Error().Err(err).Str("interface", q.iface.name).Int("ifindex", q.iface.ifindex).Int("queue", q.sock.Queue()).
		Strs("lines", lines).
		Msg("rx: the kernel unbound the AF_XDP socket from its interface (the device was deleted, or its driver re-registered it): these lines receive nothing on it until a device of its name is back (then through sockets, xdp_socket_fallbacks) or the handler restarts")
}

// drain takes what the rx rings hold, round robin over the queues, and
// returns how many packets it put in pkts. Frames that carry no line
// datagram go straight back to the fill ring.
func (r *xdpRx) drain(pkts []Packet) int {
	n := 0
	var userTime int64
	var packets, bytes [2]uint64
	var malformed, unmatched, badChecksum, badSource, badOptions, kernelTS, userTS uint64
	nq := len(r.queues)
	for i := 0; i < nq && n < len(pkts); i++ {
		qi := (r.next + i) % nq
		q := r.queues[qi]
		k := q.sock.Receive(r.descs[:len(pkts)-n])
		if k == 0 {
			continue
		}
		for _, d := range r.descs[:k] {
			// Clear the metadata of every frame, so that stale bytes are
			// never taken for the metadata of a later frame in the buffer.
			meta := q.sock.Meta(d, r.metaLen)
			tai, stamped := bpf.ParseMeta(meta)
			if stamped {
				bpf.ClearMeta(meta)
			}
			dg, class := bpf.ParseFrame(q.sock.Data(d))
			if class != bpf.ClassUDP {
				malformed++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			line, ok := r.match(q.iface, dg)
			if !ok {
				unmatched++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			if !dg.SourceOK() {
				if !r.warnedSource {
					r.warnedSource = true
					r.log.Warn().Str("line", line.String()).Stringer("source", dg.Src).
						Msg("AF_XDP: a line datagram from a source the kernel drops (0.0.0.0, multicast, 255.255.255.255 or loopback) was dropped, as under the socket backends (counted in xdp_bad_source; logged once)")
				}
				badSource++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			if !dg.OptionsOK() {
				if !r.warnedOptions {
					r.warnedOptions = true
					r.log.Warn().Str("line", line.String()).Stringer("source", dg.Src).
						Msg("AF_XDP: a line datagram with IPv4 options the kernel refuses (malformed, a source route, CIPSO) was dropped, as under the socket backends (counted in xdp_bad_ip_options; logged once)")
				}
				badOptions++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			if r.verify && !dg.ChecksumOK() {
				if !r.warnedChecksum {
					r.warnedChecksum = true
					r.log.Warn().Str("line", line.String()).Stringer("source", dg.Src).
						Msg("AF_XDP: a line datagram failed its IPv4 or UDP checksum and was dropped (counted in xdp_bad_checksum; logged once). If every one fails, the sender is on this host with checksum offload (a veth sends partial checksums): receive.verify_checksums: false, docs/TUNING.md section 6")
				}
				badChecksum++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			var rxTime int64
			if stamped {
				rxTime = r.realtime(tai)
				kernelTS++
			} else {
				if userTime == 0 {
					userTime = clock.Now()
				}
				rxTime = userTime
				userTS++
			}
			p := &pkts[n]
			p.Data, p.Line, p.Src, p.RxTime = dg.Payload, line, dg.Src, rxTime
			p.SetHandle(uint64(qi+1)<<xdpHandleShift | d.Addr)
			q.lent[d.Addr/xdpFrameSize] = true
			n++
			if line < 2 {
				packets[line]++
				bytes[line] += uint64(len(dg.Payload))
			}
		}
		r.flush(q)
	}
	r.next = (r.next + 1) % nq
	for i := range packets {
		if packets[i] != 0 {
			r.packets[i].Add(packets[i])
			r.bytes[i].Add(bytes[i])
		}
	}
	if malformed != 0 {
		r.malformed.Add(malformed)
	}
	if unmatched != 0 {
		r.unmatched.Add(unmatched)
	}
	if badChecksum != 0 {
		r.badChecksum.Add(badChecksum)
	}
	if badSource != 0 {
		r.badSource.Add(badSource)
	}
	if badOptions != 0 {
		r.badOptions.Add(badOptions)
	}
	if kernelTS != 0 {
		r.kernelTS.Add(kernelTS)
	}
	if userTS != 0 {
		r.userTS.Add(userTS)
	}
	return n
}

// realtime converts a kernel CLOCK_TAI time to CLOCK_REALTIME, re-reading
// the offset once tai is xdpTAIRefresh past the last read (or before it: a
// clock step). A failed read keeps the old offset until the next refresh.
func (r *xdpRx) realtime(tai int64) int64 {
	if d := tai - r.taiAt; d > xdpTAIRefresh || d < -xdpTAIRefresh {
		if off, err := bpf.TAIOffset(); err == nil {
			r.taiOffset = off
		}
		r.taiAt = tai
	}
	return tai - r.taiOffset
}

// match finds the line of a datagram that came in on iface as the
// steering program does: on a device with VLAN lines a line on the frame's
// VLAN (dg.VLAN, a single 802.1Q tag) first, else, for a frame without a
// tag of a VLAN ID other than 0 (dg.Tagged), the device's line of the
// group and port; the line found alone decides on the source.
func (r *xdpRx) match(iface *xdpIface, dg bpf.Datagram) (Line, bool) {
	var l *xdpLine
	if iface.vlans && dg.VLAN != 0 {
		l = r.lineOf(iface, dg.VLAN, dg.Dst)
	}
	if l == nil && !dg.Tagged {
		l = r.lineOf(iface, 0, dg.Dst)
	}
	if l == nil || l.source.IsValid() && l.source != dg.Src.Addr() {
		return 0, false
	}
	return l.line, true
}

// lineOf returns the line of group and port dst on VLAN vlan of iface (0:
// the device's own), or nil.
func (r *xdpRx) lineOf(iface *xdpIface, vlan uint16, dst netip.AddrPort) *xdpLine {
	for i := range r.lines {
		if l := &r.lines[i]; l.iface == iface && l.vlan == vlan && l.dst == dst {
			return l
		}
	}
	return nil
}

// flush gives q's pending frames back to the kernel, waking the driver
// when it ran out of fill entries and asks for it (need_wakeup; zero-copy
// drivers only).
func (r *xdpRx) flush(q *xdpQueue) {
	if len(q.pending) > 0 {
		if n := q.sock.Fill(q.pending); n < len(q.pending) {
			// No room for the rest: keep them for the next flush, or
			// the socket would lose those frames for good.
			r.fillDeferred.Add(uint64(len(q.pending) - n))
			q.pending = q.pending[:copy(q.pending, q.pending[n:])]
		} else {
			q.pending = q.pending[:0]
		}
		if xdpNeedWakeup(q.sock) {
			r.wake(q) // best effort: the next Receive wakes again
		}
	}
}

// Release returns the packets' frames to their sockets' fill rings. It
// allocates nothing.
func (r *xdpRx) Release(pkts []Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return
	}
	for i := range pkts {
		h := pkts[i].Handle()
		qi := int(h>>xdpHandleShift) - 1
		if qi < 0 || qi >= len(r.queues) {
			continue // a zero Packet, or released already
		}
		pkts[i].SetHandle(0)
		q := r.queues[qi]
		addr := h & xdpHandleAddrMk
		f := addr / xdpFrameSize
		if f >= uint64(len(q.lent)) || !q.lent[f] {
			r.badReleases.Add(1)
			continue
		}
		q.lent[f] = false
		if len(q.pending) == cap(q.pending) {
			r.flush(q)
		}
		q.pending = append(q.pending, addr)
		pkts[i].Data = nil
	}
	for _, q := range r.queues {
		r.flush(q)
	}
}

// Stats reads the receiver's counters, the programs' per-CPU counters and
// the sockets' kernel statistics. It allocates nothing (the handler calls it
// every 20 ms for the life of the process).
func (r *xdpRx) Stats() Stats {
	var s Stats
	for i := range s.Packets {
		s.Packets[i] = r.packets[i].Load()
		s.Bytes[i] = r.bytes[i].Load()
	}
	s.Malformed = r.malformed.Load()
	s.Unmatched = r.unmatched.Load()
	s.Extra.Add("parse_malformed", s.Malformed)
	bad := r.badChecksum.Load()
	s.Extra.Add("xdp_bad_checksum", bad)
	s.Malformed += bad
	// Datagrams from a source the kernel drops before any socket sees it
	// (the socket backends never get them), dropped here: counted as a
	// failed checksum is.
	martian := r.badSource.Load()
	s.Extra.Add("xdp_bad_source", martian)
	s.Malformed += martian
	// And those with IPv4 options the kernel refuses.
	opts := r.badOptions.Load()
	s.Extra.Add("xdp_bad_ip_options", opts)
	s.Malformed += opts
	s.Extra.Add("xdp_kernel_ts", r.kernelTS.Load())
	s.Extra.Add("xdp_user_ts", r.userTS.Load())
	s.Extra.Add("xdp_wakeups", r.wakeups.Load())
	s.Extra.Add("xsk_fill_deferred", r.fillDeferred.Load())
	s.Extra.Add("wait_timeouts", r.waitTimeouts.Load())
	s.Extra.Add("wait_woken", r.waitWoken.Load())
	r.readKernelCounters()
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	for i, c := range r.lastProg {
		// The program's malformed frames are every malformed frame on the
		// interface, the feed's or not, passed to the kernel (which drops
		// them, as it does under the socket backends): xdp_malformed
		// only. Malformed is the feed's own datagrams, as on every
		// backend: the frames the sockets delivered that Receive rejected.
		// Line frames on a queue without a socket go to the kernel, and
		// fragmented line datagrams too (it reassembles them): delivered
		// through the device's kernel sockets (xdp_kernel.go), whose
		// drops are counted below; lost to a device with a line
		// without one.
		if !r.kernelCovers[i] {
			s.Dropped += c.NoSocket + c.Fragmented
		}
		// Not VLANOther and VLANUntagged: a frame of a line's group and
		// port on a VLAN not the line's, or a VLAN line's untagged, is not
		// the line's (the kernel would not give it to the line's device,
		// so the socket backends never see it either): counting it would count another
		// stream's traffic as the feed's loss. Untagged frames are the
		// line's own only when the NIC strips the tag before XDP
		// (rx-vlan-offload): then the line loses every frame, which its
		// gaps and dead-line alerts show, the start and feedhandler check
		// warn of, and xdp_vlan_untagged counts; no frame tells the two
		// cases apart.
		s.Extra.Add("xdp_redirected", c.Redirected)
		s.Extra.Add("xdp_passed", c.Passed)
		s.Extra.Add("xdp_malformed", c.Malformed)
		s.Extra.Add("xdp_no_socket", c.NoSocket)
		s.Extra.Add("xdp_no_meta", c.NoMeta)
		s.Extra.Add("xdp_fragmented", c.Fragmented)
		s.Extra.Add("xdp_vlan_other", c.VLANOther)
		s.Extra.Add("xdp_vlan_untagged", c.VLANUntagged)
		// Nor OtherHost: frames sent to another host's MAC address,
		// which a NIC in promiscuous mode hands up and the kernel drops.
		s.Extra.Add("xdp_other_host", c.OtherHost)
	}
	for _, st := range r.lastSock {
		// A frame that finds the fill ring empty: in copy mode the kernel
		// drops it and counts it twice, in rx_dropped (so in Dropped) and
		// in rx_fill_ring_empty_descs (measured: TestStatistics in package
		// xsk logs RxDropped 68, FillRingEmptyDescs 68). In zero-copy mode
		// the driver's refill finds the fill ring empty and counts that
		// in rx_fill_ring_empty_descs, once per refill attempt, not per
		// frame (also when the NIC still held frames and nothing was
		// lost); the frames the NIC then drops are only in the driver's
		// own counters (ethtool -S, per queue or per interface, any
		// traffic). No counter of the socket says how many line frames
		// were lost, so Dropped leaves them out rather than guess; the
		// lines' gaps show the loss (alert FeedhandlerFillRingEmpty).
		// Not measured: veth has no zero-copy.
		s.Dropped += st.RxDropped + st.RxRingFull
		s.Extra.Add("xsk_rx_dropped", st.RxDropped)
		s.Extra.Add("xsk_rx_invalid_descs", st.RxInvalidDescs)
		s.Extra.Add("xsk_rx_ring_full", st.RxRingFull)
		s.Extra.Add("xsk_fill_ring_empty_descs", st.FillRingEmptyDescs)
	}
	s.Extra.Add("xdp_stats_read_errors", r.statsErrors.Load())
	s.Extra.Add("xsk_unbound", r.unbound.Load())
	s.Extra.Add("bad_releases", r.badReleases.Load())
	// The fallback and kernel sockets' own counters, under the socket
	// backend's names (0 without any, so that the set of names stays
	// fixed); the kernel sockets' datagrams are xdp_kernel_delivered.
	var delivered, filtered, truncated, gone, rejoins uint64
	lists := [2][]*socketRx{r.kernelList}
	if l := r.fallbackList.Load(); l != nil {
		lists[1] = *l
	}
	for k, list := range lists {
		for _, f := range list {
			fs := f.Stats()
			for i := range s.Packets {
				s.Packets[i] += fs.Packets[i]
				s.Bytes[i] += fs.Bytes[i]
				if k == 0 {
					delivered += fs.Packets[i]
				}
			}
			s.Dropped += fs.Dropped
			s.Malformed += fs.Malformed
			s.Unmatched += fs.Unmatched
			filtered += fs.Extra.Get("source_filtered")
			truncated += fs.Extra.Get("truncated")
			gone += fs.Extra.Get("line_interfaces_gone")
			rejoins += fs.Extra.Get("line_rejoins")
		}
	}
	s.Extra.Add("xdp_socket_fallbacks", r.fellBack.Load())
	s.Extra.Add("xdp_kernel_delivered", delivered)
	s.Extra.Add("source_filtered", filtered)
	s.Extra.Add("truncated", truncated)
	s.Extra.Add("line_interfaces_gone", gone)
	s.Extra.Add("line_rejoins", rejoins)
	return s
}

// readKernelCounters refreshes lastProg and lastSock from the programs and
// sockets, keeping the last good reading of any that fails. After Close it
// reads nothing: the readings Close took last stand.
func (r *xdpRx) readKernelCounters() {
	r.life.RLock()
	defer r.life.RUnlock()
	if r.closed.Load() {
		return
	}
	r.refreshKernelCounters()
}

// refreshKernelCounters is readKernelCounters under r.life, held by the
// caller (read by Stats, or written by Close before the teardown).
func (r *xdpRx) refreshKernelCounters() {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	for i, x := range r.ifaces {
		c, err := x.prog.Counters()
		if err != nil {
			r.statsErrors.Add(1)
			continue
		}
		r.lastProg[i] = c
		if c.NoSocket > 0 && !x.warnedNoSocket {
			x.warnedNoSocket = true
			fate := "where no socket is bound to the line, so they are lost (counted in receive_dropped_total, xdp_no_socket; logged once)"
			if r.kernelCovers[i] {
				fate = "which delivers them to the lines' sockets, read between the rings' batches: later than the rings' frames, and dropped when a socket's buffer fills (xdp_no_socket, xdp_kernel_delivered, receive_dropped_total; logged once)"
			}
			r.log.Warn().Str("interface", x.name).Uint64("xdp_no_socket", c.NoSocket).Ints("queues", r.boundQueues(x)).
				Msgf("rx: xdp: line frames arrive on rx queues of %s without an AF_XDP socket: the program gives them to the kernel, %s. The NIC spreads the feed over queues other than receive.queues (RSS, or channels added while running): bind those queues too, or steer the feed's groups to the bound ones (ethtool -N, docs/TUNING.md section 5)", x.name, fate)
		}
	}
	for i, q := range r.queues {
		st, err := q.sock.Statistics()
		if err != nil {
			r.statsErrors.Add(1)
			continue
		}
		r.lastSock[i] = st
	}
}

// boundQueues lists the rx queues of x that have a socket.
func (r *xdpRx) boundQueues(x *xdpIface) []int {
	var qs []int
	for _, q := range r.queues {
		if q.iface == x {
			qs = append(qs, q.sock.Queue())
		}
	}
	return qs
}

// xdpRing is the fill ring's entries, and the UMEM frames, per queue:
// cfg.RingSize rounded up to a power of two, or the default.
func xdpRing(cfg Config) int {
	if cfg.RingSize <= 0 {
		return xdpDefaultRing
	}
	ring := 1
	for ring < cfg.RingSize {
		ring <<= 1
	}
	return ring
}

// XDPLockedBytes is the memory the xdp backend pins for cfg, which the
// kernel charges to RLIMIT_MEMLOCK (per user, over all its processes)
// unless the process holds cap_ipc_lock: one UMEM per device (a VLAN
// device's lines share its lower device's), of xdpFrameSize bytes for each
// ring entry of each queue.
func XDPLockedBytes(cfg Config) int64 {
	ifaces := map[string]bool{}
	for _, l := range cfg.Lines {
		name := l.Interface
		if dev, err := xdpResolve(name); err == nil {
			name = dev.Name
		}
		ifaces[name] = true
	}
	queues := max(len(cfg.Queues), 1)
	return int64(len(ifaces)) * int64(queues) * int64(xdpRing(cfg)) * xdpFrameSize
}

// Close detaches the programs, closes the sockets and unmaps the UMEMs.
// A Receive blocked in poll returns ErrClosed.
func (r *xdpRx) Close() error { return r.closer.do(r.close) }

func (r *xdpRx) close() error {
	r.closed.Store(true)
	if r.wakeFD >= 0 {
		var one = [8]byte{1}
		unix.Write(r.wakeFD, one[:])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.life.Lock()
	defer r.life.Unlock()
	// The last readings: what came since the last Stats is in the final
	// stats too.
	r.refreshKernelCounters()
	if err := r.teardown(); err != nil {
		return fmt.Errorf("close xdp backend: %w", err)
	}
	return nil
}

// teardown releases everything newXDPRx acquired, in reverse order.
func (r *xdpRx) teardown() error {
	var errs []error
	for _, x := range r.ifaces {
		if x.link != nil {
			errs = append(errs, x.link.Close())
			x.link = nil
		}
	}
	for _, q := range r.queues {
		errs = append(errs, q.iface.prog.DeleteSocket(q.sock.Queue()), q.sock.Close())
	}
	r.queues = nil
	for _, x := range r.ifaces {
		if x.umem != nil {
			errs = append(errs, x.umem.Close())
		}
		if x.prog != nil {
			errs = append(errs, x.prog.Close())
		}
	}
	r.ifaces = nil
	for _, fd := range r.joins {
		errs = append(errs, unix.Close(fd))
	}
	r.joins = nil
	for _, f := range r.fallbacks {
		errs = append(errs, f.Close())
	}
	r.fallbacks = nil
	for _, k := range r.kernelList {
		k.drops.detach(k.socks) // the spares' fds, closed next
	}
	errs = append(errs, closeLineSockets(r.spares))
	r.spares = nil
	if r.wakeFD >= 0 {
		errs = append(errs, unix.Close(r.wakeFD))
		r.wakeFD = -1
	}
	if r.ctlFD >= 0 {
		errs = append(errs, unix.Close(r.ctlFD))
		r.ctlFD = -1
	}
	if r.linkFD >= 0 {
		errs = append(errs, unix.Close(r.linkFD))
		r.linkFD = -1
	}
	return errors.Join(errs...)
}

// xdpPollSlice bounds one pollKeepP wait: what a stop of the world waits
// for it when no preemption signal ends it (GODEBUG=asyncpreemptoff=1; a
// collection makes several stops, so it may wait a few slices). A
// variable for the test that lifts it.
var xdpPollSlice = 10 * time.Millisecond
