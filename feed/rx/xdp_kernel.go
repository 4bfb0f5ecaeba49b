package rx

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The AF_XDP backend's kernel path. The steering program passes to the
// kernel what of a line it cannot redirect: the IPv4 fragments of a line
// datagram (the first names the line, the others carry no UDP header;
// xdp_fragmented counts the first), which the kernel reassembles, and
// line frames on an rx queue without an AF_XDP socket (xdp_no_socket).
// The socket and io_uring backends get those datagrams through their
// line sockets; so does this backend, through the lines' spare sockets
// (fallBack's), joined to their groups on the lines' interfaces at open:
// the device's kernel sockets (xdpIface.kernel), read as the socket
// backend reads its sockets. Nothing else of a line reaches them: the
// program redirects every other frame of the line to the AF_XDP sockets,
// and a line with a source has its socket joined to that source alone
// (MCAST_JOIN_SOURCE_GROUP), as the program passes the frames of the
// line's group and port from other sources. Receive reads them off the
// rings' path, in the pass after poll(2) said one is readable (they are
// in its set: a datagram that came while the rings kept Receive busy
// ends its next wait at once) and, busy, once every busyCheckBatches
// batches or busy-poll passes (kernelDue): no syscall more while they
// are empty. Their datagrams carry the kernel's receive time
// (SO_TIMESTAMPNS: a reassembled datagram's is its last fragment's) and
// come in their own batches, so a datagram the kernel delivered may come
// after ring frames that arrived after it (the arbiter orders a line by
// sequence number). Counted in Stats().Extra "xdp_kernel_delivered".
//
// A line whose group is a unicast address has no spare socket, so its
// fragmented datagrams and its frames on a queue without an AF_XDP socket
// stay lost (Stats.Dropped; the kernel, finding no socket on the port,
// answers them with ICMP port unreachable). Such a line exists only in
// this backend's Config (the MAC-following tests' probes): the feed's
// configuration refuses a group that is not multicast ("not an IPv4
// multicast address") and so do the socket and io_uring backends
// (openBoundSocket), so no backend delivers what this one would match. A
// socket bound to the address and port would receive exactly those (the
// program redirects the line's other frames), but fallBack joins the
// spares to their groups, which a unicast socket cannot: left undone
// while the handler has no unicast line.

// joinSpares joins every multicast line's spare socket to the line's
// group on its interface and makes each device's joined spares its
// kernel sockets, polled with the rings. A join that fails leaves its
// line without (logged): its fragmented datagrams are lost, counted in
// Stats.Dropped as before.
func (r *xdpRx) joinSpares(cfg Config) {
	for _, x := range r.ifaces {
		var socks []lineSocket
		lines := 0
		for _, l := range r.lines {
			if l.iface != x {
				continue
			}
			lines++
			s := r.spares[l.line]
			if s.fd < 0 {
				continue
			}
			if err := joinLine(s); err != nil {
				cfg.Log.Warn().Err(err).Str("line", l.line.String()).
					Msg("rx: xdp: the line's socket could not join its group: the line's fragmented datagrams, which the kernel reassembles, are lost (receive_dropped_total, xdp_fragmented)")
				continue
			}
			socks = append(socks, s)
		}
		r.kernelCovers = append(r.kernelCovers, lines > 0 && len(socks) == lines)
		if len(socks) == 0 {
			continue
		}
		x.kernel = newSocketRx(Config{BatchSize: r.batch, PollTimeout: r.timeout, Log: r.log}, socks)
		r.kernel = append(r.kernel, x.kernel)
		r.kernelList = append(r.kernelList, x.kernel)
		for _, s := range socks {
			x.kernelPfds = append(x.kernelPfds, r.addPfd(s.fd))
		}
	}
}

// joinLine joins s to its line's group on its interface: from the line's
// source alone when it has one (the program passes the frames of the
// line's group and port from other sources to the kernel).
func joinLine(s lineSocket) error {
	if !s.source.IsValid() {
		if err := membership(s.fd, unix.IP_ADD_MEMBERSHIP, s.group, s.ifindex); err != nil {
			return fmt.Errorf("join %v on %s: IP_ADD_MEMBERSHIP: %w", s.group, s.ifname, err)
		}
		return nil
	}
	if err := unix.SetsockoptString(s.fd, unix.IPPROTO_IP, unix.MCAST_JOIN_SOURCE_GROUP, groupSourceReq(s.ifindex, s.group, s.source)); err != nil {
		return fmt.Errorf("join %v from %v on %s: MCAST_JOIN_SOURCE_GROUP: %w", s.group, s.source, s.ifname, err)
	}
	return nil
}

// groupSourceReq encodes a struct group_source_req (linux/in.h) of
// interface ifindex, IPv4 group and source, as the kernel of a 64-bit
// machine reads it: the index, padding to 8 bytes, then two struct
// sockaddr_storage of 128 bytes.
func groupSourceReq(ifindex int, group, source netip.Addr) string {
	var b [8 + 2*128]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(ifindex))
	for i, a := range [2]netip.Addr{group, source} {
		off := 8 + i*128
		binary.NativeEndian.PutUint16(b[off:], unix.AF_INET)
		v := a.As4()
		copy(b[off+4:], v[:])
	}
	return string(b[:])
}

// drainKernel reads the kernel sockets (joinSpares) into pkts, starting
// with a different device each call; the first error comes with what
// they brought.
func (r *xdpRx) drainKernel(pkts []Packet) (int, error) {
	r.kernelNext++
	return drainInTurn(r.kernel, r.kernelNext, pkts, "xdp kernel socket")
}

// kernelReady reports whether the last poll(2) found one of the kernel
// sockets readable (or in error, which a read reports).
func (r *xdpRx) kernelReady() bool {
	for _, x := range r.ifaces {
		for _, i := range x.kernelPfds {
			if r.pfds[i].Revents != 0 {
				return true
			}
		}
	}
	return false
}

// retireKernel stops reading x's kernel sockets, whose fds fallBack takes
// for its fallback: out of the poll set and of the readers, their drop
// counters read a last time (Stats keeps their counts).
func (r *xdpRx) retireKernel(x *xdpIface) {
	if x.kernel == nil {
		return
	}
	for _, i := range x.kernelPfds {
		r.pfds[i].Fd = -1
	}
	x.kernelPfds = nil
	for i, k := range r.kernel {
		if k == x.kernel {
			r.kernel = append(r.kernel[:i], r.kernel[i+1:]...)
			break
		}
	}
	x.kernel.drops.detach(x.kernel.socks)
	x.kernel = nil
}

// detach reads the sockets' drop counters a last time and forgets their
// fds, which another owner closes: the total stays as it is.
func (g *dropGauge) detach(socks []lineSocket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.update(socks)
	for i := range socks {
		socks[i].fd = -1
	}
}
