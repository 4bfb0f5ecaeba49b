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
	// VLAN is the VLAN ID of the frame's 802.1Q tag when it has exactly
	// one (the VLAN device the kernel would give it to); 0 when it has
	// none, two, or an 802.1ad tag. The program looks up a VLAN line
	// (Program.SetVLANLine) by it.
	VLAN uint16
	// Tagged says the frame has a tag of a VLAN ID other than 0: the
	// kernel gives it to a VLAN device, never to the interface itself,
	// so no line of the interface (Program.SetLine) takes it. Priority
	// tags (VLAN ID 0) it treats as no tag.
	Tagged bool

	ip  []byte // the IPv4 header, options included
	udp []byte // the UDP header and payload: the UDP length's bytes
}

// ChecksumOK verifies the IPv4 header checksum and, when the sender set one
// (not zero), the UDP checksum over the pseudo-header, the UDP header and
// the payload (RFC 768, RFC 1071). The kernel checks both before a socket
// sees a datagram, or trusts a NIC that checked them; an AF_XDP socket gets
// the frame as it came, without either. It allocates nothing.
func (d *Datagram) ChecksumOK() bool { return ChecksumsOK(d.ip, d.udp) }

// ChecksumsOK is ChecksumOK of the IPv4 header ip (options included) and
// the UDP header and payload udp (the UDP length's bytes) of a datagram
// found by other means (a capture's frame of another link type).
func ChecksumsOK(ip, udp []byte) bool {
	if len(ip) < 20 || fold(sum32(ip, 0)) != 0xffff {
		return false
	}
	if len(udp) < 8 || binary.BigEndian.Uint16(udp[6:]) == 0 {
		return len(udp) >= 8 // no UDP checksum: allowed over IPv4
	}
	// Pseudo-header: source and destination address, protocol, UDP length.
	acc := uint64(binary.BigEndian.Uint32(ip[12:])) + uint64(binary.BigEndian.Uint32(ip[16:])) +
		17 + uint64(len(udp))
	return fold(sum32(udp, acc)) == 0xffff
}

// SourceOK reports whether the IPv4 source address is one the kernel takes
// a datagram from: not 0.0.0.0, multicast (224/4), the limited broadcast
// 255.255.255.255, or loopback (127/8). The kernel drops a datagram from
// any of these in its input route before a socket sees it (the "martian
// source" of log_martians; loopback unless route_localnet is set, which
// no feed interface needs); an AF_XDP socket gets the frame as it came.
// It allocates nothing.
func (d *Datagram) SourceOK() bool { return SourceOK(d.Src.Addr()) }

// SourceOK is Datagram.SourceOK of the IPv4 source address src of a
// datagram found by other means (a capture's frame of another link type).
func SourceOK(src netip.Addr) bool {
	a := src.As4()
	switch {
	case a == [4]byte{}, a == [4]byte{255, 255, 255, 255}:
		return false
	case a[0] == 127, a[0]&0xf0 == 224:
		return false
	}
	return true
}

// OptionsOK reports whether the kernel would take a datagram with its
// IPv4 options: true without options. The kernel checks them before a
// socket sees the datagram (ip_options_compile, ip_rcv_options) and drops
// it, with an ICMP parameter problem, when an option's length is below 2
// or runs past the header, when a record route or timestamp option is
// given twice or has its pointer out of place (or a timestamp's overflow
// count is full, unless the addresses are prespecified: the kernel
// leaves that count alone), for a CIPSO option on a host without CIPSO (a feed
// host; a kernel built without NetLabel, which no distribution ships,
// would take a well-formed one), and for a source route, which it never takes to a multicast
// group (nor, with accept_source_route off, the default, to a unicast
// address). Everything after an end of list is ignored, as are options
// it does not know. An AF_XDP socket gets the frame as it came. It
// allocates nothing; a datagram without options costs one comparison.
func (d *Datagram) OptionsOK() bool {
	if len(d.ip) <= 20 {
		return true
	}
	return OptionsOK(d.ip)
}

// OptionsOK is Datagram.OptionsOK of the IPv4 header ip (options
// included) of a datagram found by other means (a capture's frame of
// another link type).
func OptionsOK(ip []byte) bool {
	const (
		optEnd, optNop       = 0, 1
		optRR, optTS         = 7, 68
		optLSRR, optSSRR     = 131, 137
		optRA, optCIPSO      = 148, 134
		tsAndAddr, tsPrespec = 1, 3
	)
	var rr, ts bool
	for o := ip[min(len(ip), 20):]; len(o) > 0; {
		switch o[0] {
		case optEnd:
			return true
		case optNop:
			o = o[1:]
			continue
		}
		if len(o) < 2 {
			return false
		}
		n := int(o[1])
		if n < 2 || n > len(o) {
			return false
		}
		switch o[0] {
		case optLSRR, optSSRR, optCIPSO:
			return false
		case optRA:
			if n < 4 {
				return false
			}
		case optRR:
			if rr || n < 3 {
				return false
			}
			rr = true
			if p := int(o[2]); p < 4 || p <= n && p+3 > n {
				return false
			}
		case optTS:
			if ts || n < 4 {
				return false
			}
			ts = true
			p := int(o[2])
			switch {
			case p < 5:
				return false
			case p > n: // full: the overflow count goes up, but for prespecified addresses
				if o[3]&0x0f != tsPrespec && o[3]>>4 == 15 {
					return false
				}
			case p+3 > n:
				return false
			case (o[3]&0x0f == tsAndAddr || o[3]&0x0f == tsPrespec) && p+7 > n:
				return false
			}
		}
		o = o[n:]
	}
	return true
}

// sum32 returns the ones' complement sum of b's 16-bit big-endian words
// (a trailing byte padded with zero) added to acc, unfolded: fold it to 16
// bits. acc must be below 2^48.
//
// The words are read 32 bits at a time in the machine's order, with no
// byte swap, into two 64-bit accumulators that cannot overflow below 2^32
// words: the ones' complement sum does not depend on byte order (RFC 1071,
// 2(B)), so the little-endian total, folded to 16 bits, is the big-endian
// sum with its two bytes swapped.
func sum32(b []byte, acc uint64) uint64 {
	var s0, s1 uint64
	for len(b) >= 32 {
		s0 += uint64(binary.LittleEndian.Uint32(b)) + uint64(binary.LittleEndian.Uint32(b[4:])) +
			uint64(binary.LittleEndian.Uint32(b[8:])) + uint64(binary.LittleEndian.Uint32(b[12:]))
		s1 += uint64(binary.LittleEndian.Uint32(b[16:])) + uint64(binary.LittleEndian.Uint32(b[20:])) +
			uint64(binary.LittleEndian.Uint32(b[24:])) + uint64(binary.LittleEndian.Uint32(b[28:]))
		b = b[32:]
	}
	for len(b) >= 4 {
		s0 += uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s1 += uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s1 += uint64(b[0])
	}
	le := fold(s0 + s1)
	return acc + uint64(le>>8|le<<8)
}

// fold reduces a ones' complement sum to 16 bits with end-around carry.
func fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// ParseFrame is the user-space twin of the program's header checks: it walks
// Ethernet, up to two VLAN tags, IPv4 (with options) and UDP exactly as
// steer.c does and returns the datagram when the class is ClassUDP, with the
// VLAN ID the program looks lines up by. It allocates nothing.
func ParseFrame(b []byte) (Datagram, Class) {
	const (
		ethHLen  = 14
		vlanHLen = 4
	)
	if len(b) < ethHLen {
		return Datagram{}, ClassMalformed
	}
	proto := binary.BigEndian.Uint16(b[12:])
	outer := proto  // the first tag's TPID
	var tci uint16  // the last tag's TCI
	var vids uint16 // the tags' VLAN IDs, or'ed
	off := ethHLen
	for range 2 {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if len(b) < off+vlanHLen {
			return Datagram{}, ClassMalformed
		}
		tci = binary.BigEndian.Uint16(b[off:])
		vids |= tci & 0x0fff
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
	var vlan uint16
	if off == ethHLen+vlanHLen && outer == 0x8100 {
		vlan = tci & 0x0fff
	}
	return Datagram{
		VLAN:    vlan,
		Tagged:  vids != 0,
		Payload: udp[8:udpLen:udpLen],
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:])),
		ip:      ip[:ihl:ihl],
		udp:     udp[:udpLen:udpLen],
	}, ClassUDP
}
