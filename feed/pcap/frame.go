package pcap

import (
	"encoding/binary"
	"net/netip"

	"github.com/marketfeed/feedhandler/bpf"
)

// Reason says why a frame was not returned as a UDP datagram.
type Reason uint8

// Reasons a frame is skipped.
const (
	OK              Reason = iota
	Truncated              // a header (Ethernet, VLAN, IPv4, UDP) or the datagram is cut short
	BadLength              // inconsistent IPv4 header/total length or UDP length
	NotIPv4                // another EtherType (ARP, IPv6, ...) or IP version
	NotUDP                 // another IP protocol
	Fragment               // an IPv4 fragment (MF set or fragment offset non-zero) of a datagram not reassembled: DecodeFrame's for every fragment; a Reader's for those of a datagram incomplete at the end of the capture or ReassemblyTimeout after its first fragment
	BadLinkType            // a link type the reader does not decode
	BadChecksum            // the IPv4 header checksum or the UDP checksum (when set) fails: the kernel drops such a datagram, the handler's AF_XDP path too
	BadSource              // from 0.0.0.0, multicast, 255.255.255.255 or loopback (bpf.SourceOK): the kernel's input route drops it, the AF_XDP path too
	BadOptions             // IPv4 options the kernel refuses (bpf.OptionsOK: malformed, a source route, CIPSO): dropped so, the AF_XDP path too
	FragmentOverlap        // an IPv4 fragment overlapping another of its datagram, or contradicting its length: the kernel drops the datagram (a duplicate fragment alone)
	FragmentLimit          // an IPv4 fragment that came while the reassembly held ReassemblyMemory bytes or its most datagrams: the kernel drops it so
	FragmentTooFar         // the IPv4 fragments held of a datagram whose source sent ReassemblyMaxDist or more other fragments between two of its own: the kernel drops them (net.ipv4.ipfrag_max_dist)
	NumReasons
)

var reasonNames = [NumReasons]string{"ok", "truncated", "bad length", "not IPv4", "not UDP", "IPv4 fragment incomplete", "unsupported link type", "bad checksum", "martian source", "bad IPv4 options", "IPv4 fragment overlap", "IPv4 fragment over limit", "IPv4 fragment too far"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Link types the reader decodes (the LINKTYPE_ values of pcap and pcapng).
const (
	LinkEthernet  = 1
	LinkRaw       = 101 // raw IP, no link header
	LinkLinuxSLL  = 113 // Linux cooked capture v1
	LinkIPv4      = 228 // raw IPv4
	LinkLinuxSLL2 = 276 // Linux cooked capture v2 (tcpdump -i any since libpcap 1.10)
)

const (
	etherIPv4  = 0x0800
	etherVLAN  = 0x8100
	etherQinQ  = 0x88A8
	etherVLAN2 = 0x9100
	protoUDP   = 17
)

// A capture of the handler's (package capture) says in its pcap file
// header's sigfigs field (0 in the files of other tools) that its frames
// carry batch marks: MarkedSigfigs ("FHB1"). Besides the datagrams such a
// file holds marker frames: Ethernet frames of EtherMarker (IEEE 802's
// Local Experimental EtherType 1), records of the receive thread, not of
// the network; other tools show them as frames of an unknown EtherType.
const MarkedSigfigs uint32 = 0x46484231

// EtherMarker is the EtherType of a marker frame (see MarkedSigfigs).
const EtherMarker = 0x88B5

// UDP is one decoded datagram: its addresses and a view of its payload.
type UDP struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// DecodeFrame decodes one captured frame of the given link type down to its
// UDP payload. The payload is a view into frame. The reason is OK when the
// frame is a whole, unfragmented IPv4/UDP datagram the kernel delivers to
// a socket, as the handler's AF_XDP path does: from a source its input
// route takes (not a martian: BadSource), with IPv4 options it takes
// (BadOptions), and whose checksums hold (the UDP checksum when the sender
// set one: BadChecksum). The kernel does not look at the TTL of a
// datagram for this host: neither does DecodeFrame.
func DecodeFrame(frame []byte, linkType int) (UDP, Reason) {
	return decodeFrame(frame, linkType, checkAll)
}

// checks are the checks of the kernel's that decodeFrame applies.
type checks uint8

const (
	checkSource checks = 1 << iota // martian sources and IPv4 options (BadSource, BadOptions)
	checkSums                      // the checksums (BadChecksum)
	checkAll    = checkSource | checkSums
)

// decodeFrame is DecodeFrame with the kernel's checks in c only.
func decodeFrame(frame []byte, linkType int, c checks) (UDP, Reason) {
	b, why := linkPayload(frame, linkType)
	if why != OK {
		return UDP{}, why
	}
	return decodeIPv4(b, c)
}

// linkPayload returns the IPv4 packet a frame of the link type carries
// (past its link header and up to two VLAN tags), or why there is none.
func linkPayload(frame []byte, linkType int) ([]byte, Reason) {
	var etherType uint16
	var b []byte
	switch linkType {
	case LinkEthernet:
		if len(frame) < 14 {
			return nil, Truncated
		}
		etherType = binary.BigEndian.Uint16(frame[12:])
		b = frame[14:]
	case LinkLinuxSLL:
		if len(frame) < 16 {
			return nil, Truncated
		}
		etherType = binary.BigEndian.Uint16(frame[14:])
		b = frame[16:]
	case LinkLinuxSLL2:
		// Protocol type (2), reserved (2), interface index (4), ARPHRD
		// type (2), packet type (1), address length (1), address (8).
		if len(frame) < 20 {
			return nil, Truncated
		}
		etherType = binary.BigEndian.Uint16(frame[0:])
		b = frame[20:]
	case LinkRaw, LinkIPv4:
		etherType = etherIPv4
		b = frame
	default:
		return nil, BadLinkType
	}
	// VLAN tags: after an Ethernet header, or a cooked one's protocol type
	// when the tag was not taken off by the NIC.
	for tags := 0; etherType == etherVLAN || etherType == etherQinQ || etherType == etherVLAN2; tags++ {
		if tags == 2 {
			return nil, NotIPv4
		}
		if len(b) < 4 {
			return nil, Truncated
		}
		etherType = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	if etherType != etherIPv4 {
		return nil, NotIPv4
	}
	return b, OK
}

func decodeIPv4(b []byte, c checks) (UDP, Reason) {
	if len(b) < 20 {
		if len(b) > 0 && b[0]>>4 != 4 {
			return UDP{}, NotIPv4
		}
		return UDP{}, Truncated
	}
	if b[0]>>4 != 4 {
		return UDP{}, NotIPv4
	}
	ihl := int(b[0]&0x0F) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl {
		return UDP{}, BadLength
	}
	if len(b) < ihl {
		return UDP{}, Truncated
	}
	if len(b) < total {
		return UDP{}, Truncated // snapped or cut capture
	}
	b = b[:total] // drop Ethernet padding
	if frag := binary.BigEndian.Uint16(b[6:]); frag&0x3FFF != 0 {
		return UDP{}, Fragment
	}
	if b[9] != protoUDP {
		return UDP{}, NotUDP
	}
	var src, dst [4]byte
	copy(src[:], b[12:16])
	copy(dst[:], b[16:20])
	u := b[ihl:]
	if len(u) < 8 {
		return UDP{}, Truncated
	}
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	if ulen < 8 || ulen > len(u) {
		return UDP{}, BadLength
	}
	if why := sourceOK(b[:ihl], c); why != OK {
		return UDP{}, why
	}
	if c&checkSums != 0 && !bpf.ChecksumsOK(b[:ihl], u[:ulen]) {
		return UDP{}, BadChecksum
	}
	return UDP{
		Src:     netip.AddrPortFrom(netip.AddrFrom4(src), binary.BigEndian.Uint16(u[0:])),
		Dst:     netip.AddrPortFrom(netip.AddrFrom4(dst), binary.BigEndian.Uint16(u[2:])),
		Payload: u[8:ulen:ulen],
	}, OK
}

// MulticastMAC returns the Ethernet address an IPv4 multicast group maps to:
// 01:00:5e followed by the low 23 bits of the group.
func MulticastMAC(group netip.Addr) [6]byte {
	g := group.As4()
	return [6]byte{0x01, 0x00, 0x5e, g[1] & 0x7F, g[2], g[3]}
}

// hostMAC is a locally administered unicast address derived from an IPv4
// address, for hosts the writer makes up.
func hostMAC(a netip.Addr) [6]byte {
	v := a.As4()
	return [6]byte{0x02, 0x00, v[0], v[1], v[2], v[3]}
}

// IPv4Checksum returns the Internet checksum of an IPv4 header (the one's
// complement of the one's complement sum of its 16-bit words). Computed over
// a header whose checksum field is set, it returns 0 when the header is
// intact.
func IPv4Checksum(hdr []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		sum += uint32(hdr[i])<<8 | uint32(hdr[i+1])
	}
	if len(hdr)%2 == 1 {
		sum += uint32(hdr[len(hdr)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xFFFF + sum>>16
	}
	return ^uint16(sum)
}

// AppendUDPFrame appends an Ethernet II frame carrying an IPv4/UDP datagram
// from src to dst with the given payload and IPv4 identification. The
// destination MAC is the multicast MAC of dst when dst is an IPv4 multicast
// address, otherwise a locally administered address derived from it; the
// source MAC is derived from src. TTL is 32, DF is not set, the IPv4 header
// checksum is computed and the UDP checksum is 0 (none). It does not pad
// short frames to the Ethernet minimum.
func AppendUDPFrame(b []byte, src, dst netip.AddrPort, id uint16, payload []byte) []byte {
	dmac := hostMAC(dst.Addr())
	if dst.Addr().IsMulticast() {
		dmac = MulticastMAC(dst.Addr())
	}
	smac := hostMAC(src.Addr())
	b = append(b, dmac[:]...)
	b = append(b, smac[:]...)
	b = append(b, etherIPv4>>8, etherIPv4&0xFF)
	ip := len(b)
	total := 20 + 8 + len(payload)
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(b,
		0x45, 0, byte(total>>8), byte(total), byte(id>>8), byte(id), 0, 0,
		32, protoUDP, 0, 0,
		s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3])
	sum := IPv4Checksum(b[ip : ip+20])
	b[ip+10], b[ip+11] = byte(sum>>8), byte(sum)
	ulen := 8 + len(payload)
	b = append(b, byte(src.Port()>>8), byte(src.Port()), byte(dst.Port()>>8), byte(dst.Port()),
		byte(ulen>>8), byte(ulen), 0, 0)
	return append(b, payload...)
}

// sourceOK applies to IPv4 header h the kernel's checks of its source and
// options, when c has them (checkSource): BadSource, BadOptions or OK.
func sourceOK(h []byte, c checks) Reason {
	if c&checkSource == 0 {
		return OK
	}
	if !bpf.SourceOK(netip.AddrFrom4([4]byte(h[12:16]))) {
		return BadSource
	}
	if len(h) > 20 && !bpf.OptionsOK(h) {
		return BadOptions
	}
	return OK
}
