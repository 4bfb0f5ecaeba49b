package bpf

import (
	"encoding/binary"
	"net/netip"
)

// frameSpec describes a test frame: Ethernet, VLAN tags, IPv4 with options,
// UDP and payload, with knobs to break each header.
type frameSpec struct {
	vlans     []uint16 // TPIDs of VLAN tags, outermost first (0x8100, 0x88a8)
	vids      []uint16 // their VLAN IDs (default 100 each)
	ethType   uint16   // default 0x0800
	ipOptions int      // bytes of IPv4 options (multiple of 4)
	proto     byte     // default 17
	fragOff   uint16   // flags+offset field
	src, dst  netip.AddrPort
	payload   []byte
	version   byte   // default 4
	dstMAC    []byte // default the group's multicast MAC (testGroup's)

	ihlDelta    int // added to IHL (in words)
	totLenDelta int // added to the IPv4 total length
	udpLenDelta int // added to the UDP length
	truncate    int // bytes cut from the end of the frame
	pad         int // Ethernet padding bytes after the IP packet
}

var (
	testGroup  = netip.MustParseAddr("233.54.12.111")
	testSource = netip.MustParseAddr("10.99.0.1")
	// testMAC is the interface's own MAC address (Program.SetMAC) in the
	// tests, otherMAC another host's.
	testMAC  = []byte{0x02, 0, 0, 0, 0, 2}
	otherMAC = []byte{0x02, 0, 0, 0, 0, 9}
)

func (s frameSpec) bytes() []byte {
	b := make([]byte, 0, 128+len(s.payload))
	if s.dstMAC != nil {
		b = append(b, s.dstMAC...)
	} else {
		b = append(b, 0x01, 0x00, 0x5e, 0x36, 0x0c, 0x6f) // testGroup's multicast MAC
	}
	b = append(b, 0x02, 0, 0, 0, 0, 1)
	for i, tpid := range s.vlans {
		vid := uint16(100)
		if i < len(s.vids) {
			vid = s.vids[i]
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 5<<13|vid) // priority 5: not part of the ID
	}
	et := s.ethType
	if et == 0 {
		et = 0x0800
	}
	b = binary.BigEndian.AppendUint16(b, et)
	ipStart := len(b)
	ver := s.version
	if ver == 0 {
		ver = 4
	}
	proto := s.proto
	if proto == 0 {
		proto = 17
	}
	ihl := 5 + s.ipOptions/4 + s.ihlDelta
	udpLen := 8 + len(s.payload)
	totLen := 20 + s.ipOptions + udpLen
	b = append(b, ver<<4|byte(ihl&0x0f), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(totLen+s.totLenDelta))
	b = append(b, 0, 1)
	b = binary.BigEndian.AppendUint16(b, s.fragOff)
	b = append(b, 64, proto, 0, 0)
	var src, dst [4]byte
	if s.src.Addr().Is4() {
		src = s.src.Addr().As4()
	}
	if s.dst.Addr().Is4() {
		dst = s.dst.Addr().As4()
	}
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	for i := 0; i < s.ipOptions; i++ {
		b = append(b, 1) // NOP options
	}
	_ = ipStart
	b = binary.BigEndian.AppendUint16(b, s.src.Port())
	b = binary.BigEndian.AppendUint16(b, s.dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(udpLen+s.udpLenDelta))
	b = append(b, 0, 0)
	b = append(b, s.payload...)
	b = append(b, make([]byte, s.pad)...)
	if s.truncate > 0 {
		b = b[:max(len(b)-s.truncate, 0)]
	}
	return b
}

type frameCase struct {
	name  string
	frame []byte
	class Class // ParseFrame's class
	line  bool  // the program finds a configured line (on the interface)
	// tagged: the frame has a tag of a VLAN ID other than 0, which the
	// kernel gives a VLAN device: the interface's line does not take it
	// (counted in VLANOther). ParseFrame's Datagram.Tagged.
	tagged bool
	// otherHost: to another host's unicast MAC address (not testMAC),
	// which the kernel drops: the line does not take it (OtherHost).
	otherHost bool
}

// frameCases is the one table of frames that drives both the program (via
// BPF_PROG_TEST_RUN) and ParseFrame.
func frameCases() []frameCase {
	line := netip.AddrPortFrom(testGroup, 26400)
	src := netip.AddrPortFrom(testSource, 40000)
	pl := []byte("moldudp64 payload bytes")
	arp := append(make([]byte, 12), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	return []frameCase{
		{"line", frameSpec{src: src, dst: line, payload: pl}.bytes(), ClassUDP, true, false, false},
		{"line empty payload", frameSpec{src: src, dst: line}.bytes(), ClassUDP, true, false, false},
		{"line ip options", frameSpec{src: src, dst: line, payload: pl, ipOptions: 12}.bytes(), ClassUDP, true, false, false},
		{"line max ip options", frameSpec{src: src, dst: line, payload: pl, ipOptions: 40}.bytes(), ClassUDP, true, false, false},
		{"line priority tag", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}, vids: []uint16{0}}.bytes(), ClassUDP, true, false, false},
		{"line 802.1ad priority tag", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x88a8}, vids: []uint16{0}}.bytes(), ClassUDP, true, false, false},
		{"line two priority tags", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x88a8, 0x8100}, vids: []uint16{0, 0}}.bytes(), ClassUDP, true, false, false},
		{"line priority tag options", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}, vids: []uint16{0}, ipOptions: 8}.bytes(), ClassUDP, true, false, false},
		{"line on vlan 100", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}}.bytes(), ClassUDP, true, true, false},
		{"line on 802.1ad 100", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x88a8}}.bytes(), ClassUDP, true, true, false},
		{"line qinq", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x88a8, 0x8100}}.bytes(), ClassUDP, true, true, false},
		{"line qinq outer priority", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x88a8, 0x8100}, vids: []uint16{0, 100}}.bytes(), ClassUDP, true, true, false},
		{"line qinq inner priority", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x88a8, 0x8100}, vids: []uint16{100, 0}}.bytes(), ClassUDP, true, true, false},
		{"line vlan options", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}, ipOptions: 8}.bytes(), ClassUDP, true, true, false},
		{"line first fragment on vlan 100", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}, fragOff: 0x2000}.bytes(), ClassOther, false, true, false},
		{"line to the interface's MAC", frameSpec{src: src, dst: line, payload: pl, dstMAC: testMAC}.bytes(), ClassUDP, true, false, false},
		{"line to broadcast", frameSpec{src: src, dst: line, payload: pl, dstMAC: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}.bytes(), ClassUDP, true, false, false},
		{"line to another group's MAC", frameSpec{src: src, dst: line, payload: pl, dstMAC: []byte{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}}.bytes(), ClassUDP, true, false, false},
		{"line to another host", frameSpec{src: src, dst: line, payload: pl, dstMAC: otherMAC}.bytes(), ClassUDP, true, false, true},
		{"line to an unset MAC", frameSpec{src: src, dst: line, payload: pl, dstMAC: make([]byte, 6)}.bytes(), ClassUDP, true, false, true},
		{"line options to another host", frameSpec{src: src, dst: line, payload: pl, dstMAC: otherMAC, ipOptions: 8}.bytes(), ClassUDP, true, false, true},
		{"line priority tag to another host", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}, vids: []uint16{0}, dstMAC: otherMAC}.bytes(), ClassUDP, true, false, true},
		{"line on vlan 100 to another host", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100}, dstMAC: otherMAC}.bytes(), ClassUDP, true, true, true},
		{"line first fragment to another host", frameSpec{src: src, dst: line, payload: pl, fragOff: 0x2000, dstMAC: otherMAC}.bytes(), ClassOther, false, false, true},
		{"other port to another host", frameSpec{src: src, dst: netip.AddrPortFrom(testGroup, 26401), payload: pl, dstMAC: otherMAC}.bytes(), ClassUDP, false, false, false},
		{"line ethernet padding", frameSpec{src: src, dst: line, payload: []byte{1}, pad: 17}.bytes(), ClassUDP, true, false, false},
		{"three vlan tags", frameSpec{src: src, dst: line, payload: pl, vlans: []uint16{0x8100, 0x8100, 0x8100}}.bytes(), ClassOther, false, false, false},
		{"other port", frameSpec{src: src, dst: netip.AddrPortFrom(testGroup, 26401), payload: pl}.bytes(), ClassUDP, false, false, false},
		{"other group", frameSpec{src: src, dst: netip.AddrPortFrom(netip.MustParseAddr("233.54.12.112"), 26400), payload: pl}.bytes(), ClassUDP, false, false, false},
		{"arp", arp, ClassOther, false, false, false},
		{"ipv6", frameSpec{src: src, dst: line, payload: pl, ethType: 0x86dd}.bytes(), ClassOther, false, false, false},
		{"igmp", frameSpec{src: src, dst: line, payload: pl, proto: 2}.bytes(), ClassOther, false, false, false},
		{"first fragment", frameSpec{src: src, dst: line, payload: pl, fragOff: 0x2000}.bytes(), ClassOther, false, false, false},
		{"later fragment", frameSpec{src: src, dst: line, payload: pl, fragOff: 0x0010}.bytes(), ClassOther, false, false, false},
		{"ethernet only", frameSpec{}.bytes()[:14], ClassMalformed, false, false, false},
		{"truncated vlan", frameSpec{vlans: []uint16{0x8100}}.bytes()[:16], ClassMalformed, false, false, false},
		{"truncated ip header", frameSpec{src: src, dst: line}.bytes()[:14+19], ClassMalformed, false, false, false},
		{"ip version 6 in ipv4", frameSpec{src: src, dst: line, payload: pl, version: 6}.bytes(), ClassMalformed, false, false, false},
		{"ihl too small", frameSpec{src: src, dst: line, payload: pl, ihlDelta: -1}.bytes(), ClassMalformed, false, false, false},
		{"total length beyond frame", frameSpec{src: src, dst: line, payload: pl, totLenDelta: 1}.bytes(), ClassMalformed, false, false, false},
		{"total length below ihl", frameSpec{src: src, dst: line, payload: pl, totLenDelta: -(8 + len(pl) + 1)}.bytes(), ClassMalformed, false, false, false},
		{"truncated udp header", frameSpec{src: src, dst: line}.bytes()[:14+20+7], ClassMalformed, false, false, false},
		{"truncated options", frameSpec{src: src, dst: line, ipOptions: 40}.bytes()[:14+40], ClassMalformed, false, false, false},
		{"udp length beyond ip", frameSpec{src: src, dst: line, payload: pl, udpLenDelta: 1}.bytes(), ClassMalformed, false, false, false},
		{"udp length below header", frameSpec{src: src, dst: line, payload: pl, udpLenDelta: -(len(pl) + 1)}.bytes(), ClassMalformed, false, false, false},
		{"frame cut in payload", frameSpec{src: src, dst: line, payload: pl, truncate: 3}.bytes(), ClassMalformed, false, false, false},
	}
}
