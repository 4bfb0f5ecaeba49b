package rx

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// XDPDevice is where the AF_XDP backend receives a line's interface.
type XDPDevice struct {
	Name  string // the interface the program attaches to and the sockets bind
	Index int
	// VLAN is the 802.1Q VLAN ID the program steers when the line's
	// interface is a VLAN device (then Name is its lower device); 0 when
	// the line is on Name itself (frames without a tag, or with
	// priority tags only: VLAN ID 0).
	VLAN uint16
}

// ResolveXDPDevice returns the device the AF_XDP backend uses for a line on
// interface name, read from rtnetlink: name itself, or for an 802.1Q VLAN
// device (ip link add link eth0 name eth0.100 type vlan id 100) its lower
// device and VLAN ID. XDP on the VLAN device itself would run only in
// generic mode on frames the kernel already untagged and handed up, and an
// AF_XDP socket cannot bind there usefully; the physical device is where
// the frames arrive.
//
// A VLAN device whose lower device is a VLAN device too (802.1ad QinQ),
// one with the 802.1ad protocol, one of VLAN ID 0, or one whose lower device
// is in another network namespace is refused with an error wrapping
// ErrNotSupported: the program steers by one 802.1Q tag. The socket
// backends (io_uring, recvmmsg) receive on such a device through the
// kernel, so auto mode falls back to them.
func ResolveXDPDevice(name string) (XDPDevice, error) {
	ifi, err := LookupInterface(name)
	if err != nil {
		return XDPDevice{}, err
	}
	return resolveXDPDevice(name, ifi.Index, readLink)
}

// resolveXDPDevice is ResolveXDPDevice of interface name, of index ifindex,
// reading links with read.
func resolveXDPDevice(name string, ifindex int, read func(ifindex int) (ifLink, error)) (XDPDevice, error) {
	l, err := read(ifindex)
	if err != nil {
		return XDPDevice{}, fmt.Errorf("interface %s: %w", name, err)
	}
	if l.kind != "vlan" {
		return XDPDevice{Name: name, Index: ifindex}, nil
	}
	refuse := func(why string, args ...any) (XDPDevice, error) {
		return XDPDevice{}, fmt.Errorf("interface %s: %w: AF_XDP steers by one 802.1Q tag, and %s (the io_uring and socket backends receive on it)",
			name, ErrNotSupported, fmt.Sprintf(why, args...))
	}
	switch {
	case l.lowerNetns:
		return refuse("its lower device is in another network namespace")
	case l.vlanProto != unix.ETH_P_8021Q:
		return refuse("it is a VLAN device of protocol %#04x (802.1ad)", l.vlanProto)
	case l.vlanID == 0 || l.vlanID > 4094:
		return refuse("it is a VLAN device of VLAN ID %d", l.vlanID)
	case l.lower == 0:
		return refuse("it is a VLAN device without a lower device")
	}
	lower, err := read(l.lower)
	if err != nil {
		return XDPDevice{}, fmt.Errorf("interface %s: lower device %d: %w", name, l.lower, err)
	}
	if lower.kind == "vlan" {
		return refuse("it is a VLAN of VLAN device %s (QinQ)", lower.name)
	}
	return XDPDevice{Name: lower.name, Index: l.lower, VLAN: l.vlanID}, nil
}

// ifLink is what readLink learns of one interface.
type ifLink struct {
	name       string
	kind       string // IFLA_INFO_KIND: "vlan", "veth", ...; "" for a physical device
	lower      int    // IFLA_LINK: the lower device's ifindex
	lowerNetns bool   // IFLA_LINK_NETNSID: the lower device is in another namespace
	vlanID     uint16 // IFLA_VLAN_ID
	vlanProto  uint16 // IFLA_VLAN_PROTOCOL, host order (ETH_P_8021Q, ETH_P_8021AD)
	// IFLA_XDP: how an XDP program is attached (XDP_ATTACHED_*: 0 none,
	// 1 native, 2 generic, 3 offloaded, 4 several) and the program's ID
	// (IFLA_XDP_PROG_ID; 0 with several: see xdpDrvProg, xdpSkbProg).
	xdpAttached            uint8
	xdpProg                uint32
	xdpDrvProg, xdpSkbProg uint32
}

// xdpProgram is an XDP program attached to an interface.
type xdpProgram struct {
	id   uint32
	mode string // native, generic, offloaded
}

// xdpPrograms lists the XDP programs IFLA_XDP says are attached.
func (l ifLink) xdpPrograms() []xdpProgram {
	// enum of uapi linux/if_link.h (XDP_ATTACHED_*), not in x/sys/unix.
	const attachedNone, attachedDrv, attachedSkb, attachedHw = 0, 1, 2, 3
	switch l.xdpAttached {
	case attachedNone:
		return nil
	case attachedDrv:
		return []xdpProgram{{l.xdpProg, "native"}}
	case attachedSkb:
		return []xdpProgram{{l.xdpProg, "generic"}}
	case attachedHw:
		return []xdpProgram{{l.xdpProg, "offloaded"}}
	}
	var progs []xdpProgram // several
	for _, p := range []xdpProgram{{l.xdpDrvProg, "native"}, {l.xdpSkbProg, "generic"}} {
		if p.id != 0 {
			progs = append(progs, p)
		}
	}
	return progs
}

// readLink asks rtnetlink for interface ifindex (RTM_GETLINK).
func readLink(ifindex int) (ifLink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return ifLink{}, fmt.Errorf("rtnetlink: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return ifLink{}, fmt.Errorf("rtnetlink: bind: %w", err)
	}
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETLINK)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	req[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(req[unix.NLMSG_HDRLEN+4:], uint32(ifindex))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return ifLink{}, fmt.Errorf("rtnetlink: RTM_GETLINK %d: %w", ifindex, err)
	}
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return ifLink{}, fmt.Errorf("rtnetlink: RTM_GETLINK %d: %w", ifindex, err)
	}
	// The first message answers: the link, or an error.
	b := buf[:n]
	if len(b) < unix.NLMSG_HDRLEN {
		return ifLink{}, fmt.Errorf("rtnetlink: RTM_GETLINK %d: short answer", ifindex)
	}
	l := int(binary.NativeEndian.Uint32(b[0:]))
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		return ifLink{}, fmt.Errorf("rtnetlink: RTM_GETLINK %d: malformed answer", ifindex)
	}
	data := b[unix.NLMSG_HDRLEN:l]
	switch binary.NativeEndian.Uint16(b[4:]) {
	case unix.NLMSG_ERROR:
		if len(data) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(data)); e != 0 {
				return ifLink{}, fmt.Errorf("rtnetlink: RTM_GETLINK %d: %w", ifindex, unix.Errno(-e))
			}
		}
	case unix.RTM_NEWLINK:
		if len(data) >= unix.SizeofIfInfomsg {
			return parseLink(data[unix.SizeofIfInfomsg:])
		}
	}
	return ifLink{}, fmt.Errorf("rtnetlink: RTM_GETLINK %d: no link in the answer", ifindex)
}

// parseLink reads the attributes of an RTM_NEWLINK message.
func parseLink(attrs []byte) (ifLink, error) {
	var l ifLink
	for _, a := range nestedAttrs(attrs) {
		switch a.typ {
		case unix.IFLA_IFNAME:
			l.name = cString(a.val)
		case unix.IFLA_LINK:
			if len(a.val) >= 4 {
				l.lower = int(binary.NativeEndian.Uint32(a.val))
			}
		case unix.IFLA_LINK_NETNSID:
			l.lowerNetns = true
		case unix.IFLA_XDP:
			for _, x := range nestedAttrs(a.val) {
				switch {
				case x.typ == unix.IFLA_XDP_ATTACHED && len(x.val) >= 1:
					l.xdpAttached = x.val[0]
				case x.typ == unix.IFLA_XDP_PROG_ID && len(x.val) >= 4:
					l.xdpProg = binary.NativeEndian.Uint32(x.val)
				case x.typ == unix.IFLA_XDP_DRV_PROG_ID && len(x.val) >= 4:
					l.xdpDrvProg = binary.NativeEndian.Uint32(x.val)
				case x.typ == unix.IFLA_XDP_SKB_PROG_ID && len(x.val) >= 4:
					l.xdpSkbProg = binary.NativeEndian.Uint32(x.val)
				}
			}
		case unix.IFLA_LINKINFO:
			for _, info := range nestedAttrs(a.val) {
				switch info.typ {
				case unix.IFLA_INFO_KIND:
					l.kind = cString(info.val)
				case unix.IFLA_INFO_DATA:
					for _, d := range nestedAttrs(info.val) {
						switch {
						case d.typ == unix.IFLA_VLAN_ID && len(d.val) >= 2:
							l.vlanID = binary.NativeEndian.Uint16(d.val)
						case d.typ == unix.IFLA_VLAN_PROTOCOL && len(d.val) >= 2:
							l.vlanProto = binary.BigEndian.Uint16(d.val)
						}
					}
				}
			}
		}
	}
	if l.name == "" {
		return ifLink{}, errors.New("rtnetlink: RTM_NEWLINK without a name")
	}
	return l, nil
}

// nlAttr is one netlink attribute.
type nlAttr struct {
	typ uint16
	val []byte
}

// nestedAttrs splits the attributes nested in b.
func nestedAttrs(b []byte) []nlAttr {
	var out []nlAttr
	for len(b) >= unix.NLA_HDRLEN {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.NLA_HDRLEN || l > len(b) {
			break
		}
		out = append(out, nlAttr{binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER), b[unix.NLA_HDRLEN:l]})
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
	return out
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// VLANOffload reports whether interface name has rx-vlan-offload on
// (ethtool -k: rx-vlan-offload; ETHTOOL_GFLAGS' ETH_FLAG_RXVLAN): its
// driver may strip 802.1Q tags before XDP sees the frame, so the steering
// program cannot tell a VLAN line's frames by their tag. Drivers differ:
// some keep the tag in the frame for XDP, but the program cannot know.
func VLANOffload(name string) (bool, error) {
	flags, err := ethtoolFlags(name)
	if err != nil {
		return false, fmt.Errorf("interface %s: ethtool flags: %w", name, err)
	}
	const ethFlagRxVLAN = 1 << 8 // ETH_FLAG_RXVLAN, include/uapi/linux/ethtool.h
	return flags&ethFlagRxVLAN != 0, nil
}
