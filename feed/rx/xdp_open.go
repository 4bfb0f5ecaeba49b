package rx

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/xsk"
)

// This file holds the AF_XDP backend's opening and closing: openXDP and
// newXDPRx (the programs attached, the UMEMs and sockets made, the groups
// joined), the modes, the warnings about the devices' MTU and VLAN offload,
// the memory it pins, and Close with the teardown in reverse order.

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

// xdpResolve finds the device and VLAN of a line's interface. Tests replace
// it to play VLAN devices on a kernel without 802.1Q support
// (CONFIG_VLAN_8021Q), where none can be made.
var xdpResolve = ResolveXDPDevice

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
