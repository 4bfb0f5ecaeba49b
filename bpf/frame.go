package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Class is how the steering program classifies a frame, before the line
// lookup.
type Class uint8

const (
	// ClassOther is a well-formed frame that is not an unfragmented IPv4
	// UDP datagram (ARP, IGMP, IPv6, fragments): the kernel gets it.
	ClassOther Class = iota
	// ClassMalformed is a frame whose Ethernet, VLAN, IPv4 or UDP header is
	// truncated or inconsistent.
	ClassMalformed
	// ClassUDP is a well-formed IPv4 UDP datagram.
	ClassUDP
)

func (c Class) String() string {
	switch c {
	case ClassOther:
		return "other"
	case ClassMalformed:
		return "malformed"
	case ClassUDP:
		return "udp"
	}
	return "class?"
}

// Datagram is the UDP datagram found in a frame by ParseFrame.
type Datagram struct {
	Payload []byte         // UDP payload, a view into the frame
	Src     netip.AddrPort // IPv4 source address and UDP source port
	Dst     netip.AddrPort // IPv4 destination (the group) and UDP destination port
}

// ParseFrame is the user-space twin of the program's header checks: it walks
// Ethernet, up to two VLAN tags, IPv4 (with options) and UDP exactly as
// steer.c does and returns the datagram when the class is ClassUDP. It
// allocates nothing.
func ParseFrame(b []byte) (Datagram, Class) {
	const (
		ethHLen  = 14
		vlanHLen = 4
	)
	if len(b) < ethHLen {
		return Datagram{}, ClassMalformed
	}
	proto := binary.BigEndian.Uint16(b[12:])
	off := ethHLen
	for range 2 {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if len(b) < off+vlanHLen {
			return Datagram{}, ClassMalformed
		}
		proto = binary.BigEndian.Uint16(b[off+2:])
		off += vlanHLen
	}
	if proto != 0x0800 {
		return Datagram{}, ClassOther
	}
	if len(b) < off+20 {
		return Datagram{}, ClassMalformed
	}
	ip := b[off:]
	if ip[0]>>4 != 4 {
		return Datagram{}, ClassMalformed
	}
	ihl := int(ip[0]&0x0f) * 4
	totLen := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || totLen < ihl || totLen > len(ip) {
		return Datagram{}, ClassMalformed
	}
	if ip[9] != 17 || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return Datagram{}, ClassOther
	}
	if len(ip) < ihl+8 {
		return Datagram{}, ClassMalformed
	}
	udp := ip[ihl:totLen:totLen]
	if len(udp) < 8 {
		// The program reads the UDP header within the frame; a header
		// beyond the IP total length is then caught by the length check.
		return Datagram{}, ClassMalformed
	}
	udpLen := int(binary.BigEndian.Uint16(udp[4:]))
	if udpLen < 8 || udpLen > len(udp) {
		return Datagram{}, ClassMalformed
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	return Datagram{
		Payload: udp[8:udpLen:udpLen],
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:])),
	}, ClassUDP
}
