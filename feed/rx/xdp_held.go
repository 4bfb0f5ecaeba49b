package rx

// Another process on the xdp backend's interface: its XDP program, which
// keeps this one from attaching (ErrXDPInUse), steering away the
// datagrams of the socket backends' lines (warnXDPSteered), or its
// sockets, to whose group and port this backend's program steers the
// frames away (warnStarvedSockets).

import (
	"errors"
	"fmt"
	"strings"

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
