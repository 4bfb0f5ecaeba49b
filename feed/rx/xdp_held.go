package rx

// Another process on the xdp backend's interface: its XDP program, which
// keeps this one from attaching (ErrXDPInUse), steering away the
// datagrams of the socket backends' lines (warnXDPSteered), or its
// sockets, to whose group and port this backend's program steers the
// frames away (warnStarvedSockets).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
)

// ErrXDPInUse is wrapped by Open's error when the xdp backend cannot attach
// its program because the interface has another XDP program attached:
// another feed handler receiving on it with AF_XDP (on another queue: on
// the same one its socket is found first, EBUSY), or a program a tool
// attached and left. The kernel refuses a second program in the same mode
// with EBUSY and in the other mode with EEXIST, so the handler's default
// (native mode, else generic) against a handler attached natively failed
// with "file exists" alone. Not a missing feature: auto does not fall back.
var ErrXDPInUse = errors.New("the interface has another XDP program attached")

// xdpAttachedPrograms describes the XDP programs attached to interface
// ifindex, read from rtnetlink (IFLA_XDP), with their names where the
// kernel gives them: `program 12 "xdp_steer" in native mode`, or "" when
// there are none or they cannot be read.
func xdpAttachedPrograms(ifindex int) string {
	l, err := readLink(ifindex)
	if err != nil || l.xdpAttached == 0 {
		return ""
	}
	var b strings.Builder
	for i, p := range l.xdpPrograms() {
		if i > 0 {
			b.WriteString(" and ")
		}
		b.WriteString(p.String())
	}
	if b.Len() == 0 {
		return "of an unknown kind"
	}
	return b.String()
}

// XDPAttachedPrograms describes the XDP programs attached to interface
// ifindex, as `program 12 "xdp_steer" in native mode`, or "" when there
// are none or they cannot be read: while one stays, the xdp backend
// cannot attach its own (ErrXDPInUse). For feedhandler check.
func XDPAttachedPrograms(ifindex int) string { return xdpAttachedPrograms(ifindex) }

// String describes p as `program 12 "xdp_steer" in native mode` (without
// the name when the kernel does not give it).
func (p xdpProgram) String() string {
	name := ""
	if n, err := bpf.ProgramName(p.id); err == nil && n != "" {
		name = fmt.Sprintf(" %q", n)
	}
	return fmt.Sprintf("program %d%s in %s mode", p.id, name, p.mode)
}

// warnXDPSteered logs a warning for each line whose datagrams an XDP
// program on its interface (its lower device, for a VLAN device) takes
// before the kernel: a steering program of another feed handler that
// receives the line's group and port with AF_XDP redirects them to its own
// sockets, so the socket backends receive none of them while it runs, and
// nothing else says why. Another kind of XDP program may redirect or drop
// them too: said with less certainty. Called by the socket backends at
// open; a handler with AF_XDP that starts later is not seen.
func warnXDPSteered(cfg *Config) {
	for i, lc := range cfg.Lines {
		dev, err := xdpResolve(lc.Interface)
		if err != nil {
			continue
		}
		l, err := readLink(dev.Index)
		if err != nil || l.xdpAttached == 0 {
			continue
		}
		for _, p := range l.xdpPrograms() {
			ours, steered, err := bpf.Steers(p.id, lc.Group, lc.Port, dev.VLAN)
			switch {
			case steered:
				cfg.Log.Warn().Str("line", Line(i).String()).Str("interface", dev.Name).Uint32("program", p.id).
					Msgf("rx: line %s receives nothing here: %s on %s, the steering program of another feed handler with AF_XDP on %s, takes %v:%d to its AF_XDP sockets before the kernel sees them, for as long as it runs. Receive the line in that handler, or give that handler receive.backend: uring",
						Line(i), p, dev.Name, dev.Name, lc.Group, lc.Port)
			case ours && err == nil:
				// Another handler's lines, not this one.
			default:
				cfg.Log.Warn().Str("line", Line(i).String()).Str("interface", dev.Name).Uint32("program", p.id).
					Msgf("rx: %s is attached to %s: datagrams of line %s that it redirects or drops never reach this backend's sockets (ip link set dev %s xdp off removes one no process holds)",
						p, dev.Name, Line(i), dev.Name)
			}
		}
	}
}

// warnStarvedSockets logs a warning for each line whose group and port
// other UDP sockets of this network namespace are bound to (or its port
// on any address): a feed handler on the socket or io_uring backend, a
// tool. The steering program takes the line's frames before the kernel,
// so those of them that would receive the line on its interface get
// none of its datagrams while this backend runs, and nothing tells their
// owners why (warnXDPSteered tells those that open after it). Its own
// spares are not counted; a socket joined on another interface only is
// (/proc/net/udp does not say where a socket joined), hence "would".
func (r *xdpRx) warnStarvedSockets() {
	table, err := os.ReadFile("/proc/thread-self/net/udp")
	if err != nil {
		return
	}
	own := map[uint64]bool{}
	for _, s := range r.spares {
		var st unix.Stat_t
		if s.fd >= 0 && unix.Fstat(s.fd, &st) == nil {
			own[st.Ino] = true
		}
	}
	for _, l := range r.lines {
		if n := udpSocketsOn(table, l.dst, own); n > 0 {
			r.log.Warn().Str("line", l.line.String()).Str("interface", l.iface.name).Stringer("group", l.dst.Addr()).Uint16("port", l.dst.Port()).Int("sockets", n).
				Msgf("rx: xdp: %d other socket(s) of this host are bound to %v (or to its port on any address): the steering program takes line %s's frames on %s before the kernel, so any of them that would receive the line there get none of its datagrams while this handler runs (another feed handler with receive.backend uring or socket on %s? a tool?)",
					n, l.dst, l.line, l.iface.name, l.iface.name)
		}
	}
}

// udpSocketsOn counts the sockets of table (/proc/net/udp) bound to dst,
// or to dst's port on any address, whose inodes are not in own.
func udpSocketsOn(table []byte, dst netip.AddrPort, own map[uint64]bool) int {
	n := 0
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		addr, port, ok := strings.Cut(f[1], ":")
		a, aerr := strconv.ParseUint(addr, 16, 32)
		p, perr := strconv.ParseUint(port, 16, 16)
		ino, ierr := strconv.ParseUint(f[9], 10, 64)
		if !ok || aerr != nil || perr != nil || ierr != nil || uint16(p) != dst.Port() || own[ino] {
			continue
		}
		// The kernel prints the address's network-order bytes as one
		// native-order word.
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(a))
		if ip := netip.AddrFrom4(b); ip == dst.Addr() || ip.IsUnspecified() {
			n++
		}
	}
	return n
}
