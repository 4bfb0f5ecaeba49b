package rx

import (
	"encoding/binary"
	"errors"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/xsk"
)

// This file holds what the AF_XDP backend follows of its devices while it
// runs: the link notifications, a device's new MAC address, sockets the
// kernel unbound (a device deleted) and the fall back to line sockets once
// a device of the name is back.

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
