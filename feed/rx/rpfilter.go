package rx

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// inputRoute asks the kernel for the input route of a datagram from
// source to group arriving on interface ifindex (RTM_GETROUTE with
// RTA_IIF: `ip route get GROUP from SOURCE iif DEV`): nil when it would
// take it, the kernel's error when it would drop it: a source that fails
// the reverse path filter (rp_filter), a martian source, or a group not
// joined on the interface. The group must be joined first.
func inputRoute(group, source netip.Addr, ifindex int) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("rtnetlink: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink: bind: %w", err)
	}
	const attrLen = unix.NLA_HDRLEN + 4
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofRtMsg+3*attrLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	rtm := req[unix.NLMSG_HDRLEN:]
	rtm[0] = unix.AF_INET
	rtm[1] = 32 // dst_len
	rtm[2] = 32 // src_len
	attrs := rtm[unix.SizeofRtMsg:]
	put := func(i int, typ uint16, val [4]byte) {
		a := attrs[i*attrLen:]
		binary.NativeEndian.PutUint16(a[0:], attrLen)
		binary.NativeEndian.PutUint16(a[2:], typ)
		copy(a[unix.NLA_HDRLEN:], val[:])
	}
	put(0, unix.RTA_DST, group.As4())
	put(1, unix.RTA_SRC, source.As4())
	var iif [4]byte
	binary.NativeEndian.PutUint32(iif[:], uint32(ifindex))
	put(2, unix.RTA_IIF, iif)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink: RTM_GETROUTE: %w", err)
	}
	buf := make([]byte, 1<<14)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("rtnetlink: RTM_GETROUTE: %w", err)
	}
	b := buf[:n]
	if len(b) < unix.NLMSG_HDRLEN+4 {
		return fmt.Errorf("rtnetlink: RTM_GETROUTE: short answer")
	}
	switch binary.NativeEndian.Uint16(b[4:]) {
	case unix.NLMSG_ERROR:
		if e := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); e != 0 {
			return unix.Errno(-e)
		}
	case unix.RTM_NEWROUTE:
		return nil
	}
	return fmt.Errorf("rtnetlink: RTM_GETROUTE: no route in the answer")
}

// rpFilter returns the reverse path filter that applies to interface
// name (the larger of conf/all and conf/NAME: 0 off, 1 strict, 2 loose),
// or -1 when it cannot be read.
func rpFilter(name string) int {
	v := -1
	for _, k := range []string{"all", name} {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + k + "/rp_filter")
		if err != nil {
			return -1
		}
		var x int
		if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &x); err != nil {
			return -1
		}
		v = max(v, x)
	}
	return v
}

// sysctlConfKey is the interface's name in a net.ipv4.conf sysctl key as
// sysctl(8) and sysctl.d(5) take it: a dot separates the key's parts, so a
// dot in the name (a VLAN interface, eth0.100) is written as a slash
// (net.ipv4.conf.eth0/100.rp_filter).
func sysctlConfKey(name string) string { return strings.ReplaceAll(name, ".", "/") }

// warnReversePath logs a warning for each line with a configured source
// that the kernel would not take datagrams from on the line's interface
// (inputRoute, once the lines' groups are joined): most often the reverse
// path filter, strict (rp_filter 1) without a route back to the source
// through that interface, or loose (2) without any. The socket backends
// then receive nothing on the line; AF_XDP takes its frames before that
// check, but its fallback sockets would not. Lines without a source
// cannot be checked before their datagrams arrive.
func warnReversePath(cfg *Config, xdp bool) {
	for i, lc := range cfg.Lines {
		if !lc.Source.IsValid() || !lc.Source.Is4() || !lc.Group.Is4() || !lc.Group.IsMulticast() {
			continue
		}
		ifi, err := LookupInterface(lc.Interface)
		if err != nil {
			continue
		}
		err = inputRoute(lc.Group, lc.Source, ifi.Index)
		if err == nil {
			continue
		}
		what := "the line receives nothing from it under this backend"
		if xdp {
			what = "AF_XDP takes the line's frames before that check, but the socket backends, and AF_XDP's fallback sockets after a device is re-created, would receive nothing from it"
		}
		cfg.Log.Warn().Err(err).Str("line", Line(i).String()).Stringer("source", lc.Source).Stringer("group", lc.Group).
			Str("interface", lc.Interface).Int("rp_filter", rpFilter(lc.Interface)).
			Msgf("rx: the kernel drops datagrams from %v to %v arriving on %s (ip route get %v from %v iif %s fails: the reverse path filter, without a route back to the source through %s): %s. Add that route, or set net.ipv4.conf.%s.rp_filter=2 (loose, with some route to the source) or 0, with net.ipv4.conf.all.rp_filter no higher: the larger of the two applies (docs/OPERATIONS.md)",
				lc.Source, lc.Group, lc.Interface, lc.Group, lc.Source, lc.Interface, lc.Interface, what, sysctlConfKey(lc.Interface))
	}
}

// CheckReversePath asks the kernel, for each line with a configured
// source, whether it would take that source's datagrams to the line's
// group on the line's interface (as the backends do at start, see
// warnReversePath; here each group is joined on a socket of its own for
// the question, then left). It returns one error per line it would drop
// them for, naming the line; lines without a source, and interfaces not
// found, are skipped. For feedhandler check.
func CheckReversePath(lines []LineConfig) []error {
	var errs []error
	for i, lc := range lines {
		if !lc.Source.IsValid() || !lc.Source.Is4() || !lc.Group.Is4() || !lc.Group.IsMulticast() {
			continue
		}
		ifi, err := LookupInterface(lc.Interface)
		if err != nil {
			continue
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %s: %w", Line(i), err))
			continue
		}
		if err := membership(fd, unix.IP_ADD_MEMBERSHIP, lc.Group, ifi.Index); err != nil {
			unix.Close(fd)
			errs = append(errs, fmt.Errorf("line %s: join %v on %s: %w", Line(i), lc.Group, lc.Interface, err))
			continue
		}
		err = inputRoute(lc.Group, lc.Source, ifi.Index)
		unix.Close(fd)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %s: the kernel drops datagrams from %v to %v arriving on %s (ip route get %v from %v iif %s: %w; rp_filter %d)",
				Line(i), lc.Source, lc.Group, lc.Interface, lc.Group, lc.Source, lc.Interface, err, rpFilter(lc.Interface)))
		}
	}
	return errs
}
