package preflight

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The generic netlink family "netdev" (Linux 6.3+,
// Documentation/netlink/specs/netdev.yaml, include/uapi/linux/netdev.h):
// what a driver says it can do with XDP, without attaching anything.
const (
	netdevCmdDevGet       = 1 // NETDEV_CMD_DEV_GET
	netdevAttrIfindex     = 1 // NETDEV_A_DEV_IFINDEX
	netdevAttrXDPFeatures = 3 // NETDEV_A_DEV_XDP_FEATURES, u64 of netdev_xdp_act

	xdpActBasic       = 1 << 0 // NETDEV_XDP_ACT_BASIC
	xdpActRedirect    = 1 << 1 // NETDEV_XDP_ACT_REDIRECT
	xdpActXSKZeroCopy = 1 << 3 // NETDEV_XDP_ACT_XSK_ZEROCOPY
)

// errNoNetdevFamily: the kernel predates the netdev family (before 6.3).
var errNoNetdevFamily = errors.New("no netdev netlink family (Linux 6.3+)")

// xdpFeatures asks the kernel, over generic netlink, which XDP features
// the driver of ifindex reports (NETDEV_XDP_ACT_*).
func xdpFeatures(ifindex int) (uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	name := append([]byte("netdev"), 0)
	attrs, err := genlRequest(fd, unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, nlAttr(unix.CTRL_ATTR_FAMILY_NAME, name))
	if errors.Is(err, unix.ENOENT) {
		return 0, errNoNetdevFamily
	}
	if err != nil {
		return 0, fmt.Errorf("resolve netdev family: %w", err)
	}
	id, ok := attrs[unix.CTRL_ATTR_FAMILY_ID]
	if !ok || len(id) < 2 {
		return 0, errNoNetdevFamily
	}
	var idx [4]byte
	binary.NativeEndian.PutUint32(idx[:], uint32(ifindex))
	attrs, err = genlRequest(fd, binary.NativeEndian.Uint16(id), netdevCmdDevGet, nlAttr(netdevAttrIfindex, idx[:]))
	if err != nil {
		return 0, fmt.Errorf("netdev dev-get: %w", err)
	}
	f, ok := attrs[netdevAttrXDPFeatures]
	if !ok || len(f) < 8 {
		return 0, errors.New("netdev dev-get: no xdp-features attribute")
	}
	return binary.NativeEndian.Uint64(f), nil
}

// nlAttr encodes one netlink attribute, padded to 4 bytes.
func nlAttr(typ uint16, data []byte) []byte {
	b := make([]byte, unix.NLA_HDRLEN, unix.NLA_HDRLEN+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(unix.NLA_HDRLEN+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// genlRequest sends one generic netlink request and returns the attributes
// of its answer, by type.
func genlRequest(fd int, family uint16, cmd uint8, attrs []byte) (map[uint16][]byte, error) {
	const genlHdrLen = 4
	msg := make([]byte, unix.NLMSG_HDRLEN+genlHdrLen, unix.NLMSG_HDRLEN+genlHdrLen+len(attrs))
	msg = append(msg, attrs...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], family)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence number
	msg[unix.NLMSG_HDRLEN] = cmd
	msg[unix.NLMSG_HDRLEN+1] = 1 // family version
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, err
	}
	buf = buf[:n]
	if len(buf) < unix.NLMSG_HDRLEN {
		return nil, errors.New("short netlink answer")
	}
	l := int(binary.NativeEndian.Uint32(buf[0:]))
	typ := binary.NativeEndian.Uint16(buf[4:])
	if l > len(buf) || l < unix.NLMSG_HDRLEN {
		return nil, errors.New("malformed netlink answer")
	}
	if typ == unix.NLMSG_ERROR {
		if l < unix.NLMSG_HDRLEN+4 {
			return nil, errors.New("malformed netlink error")
		}
		if e := int32(binary.NativeEndian.Uint32(buf[unix.NLMSG_HDRLEN:])); e != 0 {
			return nil, unix.Errno(-e)
		}
		return nil, errors.New("netlink: acknowledgement without an answer")
	}
	out := map[uint16][]byte{}
	for a := buf[unix.NLMSG_HDRLEN+genlHdrLen : l]; len(a) >= unix.NLA_HDRLEN; {
		al := int(binary.NativeEndian.Uint16(a[0:]))
		if al < unix.NLA_HDRLEN || al > len(a) {
			break
		}
		out[binary.NativeEndian.Uint16(a[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER)] = a[unix.NLA_HDRLEN:al]
		a = a[min((al+3)&^3, len(a)):]
	}
	return out, nil
}
