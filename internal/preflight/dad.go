package preflight

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// DADFailed reports whether ip is an IPv6 address of the host whose
// duplicate address detection failed (IFA_F_DADFAILED): another host on
// its link has it, and it stays unusable until it is added again. Binding
// it fails with EADDRNOTAVAIL as a tentative address does, but neither a
// restart nor IP_FREEBIND makes it answer: run refuses it (exit 78), and
// check fails it.
func DADFailed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if !ip.Is6() {
		return false
	}
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_INET6)
	if err != nil {
		return false
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		flags := uint32(m.Data[2]) // struct ifaddrmsg's ifa_flags; IFA_FLAGS has them all
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		var addr netip.Addr
		for _, at := range attrs {
			switch at.Attr.Type {
			case syscall.IFA_ADDRESS, syscall.IFA_LOCAL:
				addr, _ = netip.AddrFromSlice(at.Value)
			case ifaFlags:
				if len(at.Value) >= 4 {
					flags = binary.NativeEndian.Uint32(at.Value)
				}
			}
		}
		if addr == ip && flags&ifaFDADFailed != 0 {
			return true
		}
	}
	return false
}

// IFA_FLAGS and IFA_F_DADFAILED (linux/if_addr.h), not in package syscall.
const (
	ifaFlags      = 8
	ifaFDADFailed = 0x08
)

// ListenFreeBind listens on addr (TCP, a literal address) with IP_FREEBIND
// (IPV6_FREEBIND for an IPv6 address; systemd's FreeBind=): the bind takes
// an address the host does not have yet, or cannot use yet (tentative),
// and the port answers once it is up. A port another socket holds (on the
// wildcard address, say) still fails, with EADDRINUSE.
func ListenFreeBind(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var oerr error
		if cerr := c.Control(func(fd uintptr) {
			if strings.HasSuffix(network, "6") {
				oerr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				oerr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
		}); cerr != nil {
			return cerr
		}
		return oerr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}
