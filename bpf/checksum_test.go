package bpf

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/marketfeed/feedhandler/internal/race"
)

// refSum is RFC 1071's ones' complement sum the plain way, 16 bits at a
// time with end-around carry (independent of sum32): b's length is even
// except in the last slice.
func refSum(bs ...[]byte) uint16 {
	var s uint32
	for _, b := range bs {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// seal writes the IPv4 header checksum and the UDP checksum into a frame
// of frameSpec, whose IPv4 header starts at ipOff, as a sender computes
// them (a computed UDP checksum of 0 goes out as 0xffff).
func seal(frame []byte, ipOff int) {
	ip := frame[ipOff:]
	ihl := int(ip[0]&0x0f) * 4
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^refSum(ip[:ihl]))
	udp := ip[ihl:int(binary.BigEndian.Uint16(ip[2:]))]
	binary.BigEndian.PutUint16(udp[6:], 0)
	pseudo := append(append([]byte(nil), ip[12:20]...), 0, 17, 0, 0)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(udp)))
	c := ^refSum(pseudo, udp)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
}

func checksumOK(t *testing.T, frame []byte) bool {
	t.Helper()
	d, class := ParseFrame(frame)
	if class != ClassUDP {
		t.Fatalf("frame does not parse: class %v", class)
	}
	return d.ChecksumOK()
}

// TestChecksumOK: sealed frames of every shape pass; any single flipped
// bit of the IPv4 header, UDP header or payload fails (a ones' complement
// sum catches every single-bit error); a zero UDP checksum means none.
func TestChecksumOK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src, dst := netip.AddrPortFrom(testSource, 40000), netip.AddrPortFrom(testGroup, 26400)
	var lens []int
	for n := 0; n <= 40; n++ {
		lens = append(lens, n)
	}
	lens = append(lens, 199, 300, 1400, 1471)
	for _, n := range lens {
		for _, shape := range []frameSpec{{}, {vlans: []uint16{0x8100}}, {ipOptions: 8}, {pad: 6}} {
			s := shape
			s.src, s.dst = src, dst
			s.payload = make([]byte, n)
			for i := range s.payload {
				s.payload[i] = byte(rng.Uint32())
			}
			frame := s.bytes()
			ipOff := 14 + 4*len(s.vlans)
			seal(frame, ipOff)
			if !checksumOK(t, frame) {
				t.Fatalf("payload %d bytes, %+v: sealed frame fails", n, shape)
			}
			if n > 64 {
				continue
			}
			end := len(frame) - s.pad
			for i := ipOff; i < end; i++ {
				for bit := 0; bit < 8; bit++ {
					frame[i] ^= 1 << bit
					d, class := ParseFrame(frame)
					if class == ClassUDP && d.ChecksumOK() {
						t.Fatalf("payload %d bytes: bit %d of byte %d flipped, checksum still passes", n, bit, i-ipOff)
					}
					frame[i] ^= 1 << bit
				}
			}
			if s.pad > 0 {
				frame[len(frame)-1] ^= 0xff // padding is outside both sums
				if !checksumOK(t, frame) {
					t.Fatalf("payload %d bytes: a change in the Ethernet padding fails the checksum", n)
				}
			}
		}
	}

	// No UDP checksum (0): the payload is not checked, the IPv4 header is.
	frame := frameSpec{src: src, dst: dst, payload: []byte("no udp checksum")}.bytes()
	seal(frame, 14)
	binary.BigEndian.PutUint16(frame[14+20+6:], 0)
	frame[len(frame)-1] ^= 0xff
	if !checksumOK(t, frame) {
		t.Error("UDP checksum 0 (none): fails")
	}
	frame[14+8] ^= 1 // TTL
	if checksumOK(t, frame) {
		t.Error("UDP checksum 0 and a bad IPv4 header checksum: passes")
	}

	// A UDP checksum that computes to 0 goes out as 0xffff: pick the last
	// two payload bytes so that it does.
	frame = frameSpec{src: src, dst: dst, payload: []byte("computes to zero..")}.bytes()
	n := len(frame) // the payload's last two bytes are a whole 16-bit word of the sum
	binary.BigEndian.PutUint16(frame[n-2:], 0)
	seal(frame, 14)
	have := ^binary.BigEndian.Uint16(frame[14+20+6:]) // the sum of all but the checksum field
	binary.BigEndian.PutUint16(frame[n-2:], 0xffff-have)
	seal(frame, 14)
	if got := binary.BigEndian.Uint16(frame[14+20+6:]); got != 0xffff {
		t.Fatalf("construction: checksum field %#04x, want 0xffff", got)
	}
	if !checksumOK(t, frame) {
		t.Error("a UDP checksum sent as 0xffff (computed 0): fails")
	}
}

// TestChecksumOKAllocs: the receive path calls it for every datagram.
func TestChecksumOKAllocs(t *testing.T) {
	frame := benchFrame()
	seal(frame, 18)
	d, _ := ParseFrame(frame)
	if n, exact := race.AllocsPerRun(t, 100, func() { d.ChecksumOK() }); exact && n != 0 {
		t.Errorf("ChecksumOK allocates %v times", n)
	}
}

// TestSourceOK: the sources the kernel's input route drops for every
// socket (0.0.0.0, 224/4, 255.255.255.255, 127/8) are refused; the edges
// of those ranges and other addresses the kernel takes from (0/8 past
// 0.0.0.0 and 240/4 since Linux 5.x, a subnet broadcast) are not. Nothing
// is allocated.
func TestSourceOK(t *testing.T) {
	for _, c := range []struct {
		src string
		ok  bool
	}{
		{"0.0.0.0", false}, {"224.0.0.0", false}, {"233.54.12.1", false}, {"239.255.255.255", false},
		{"255.255.255.255", false}, {"127.0.0.1", false}, {"127.255.255.255", false},
		{"10.99.0.1", true}, {"0.1.2.3", true}, {"126.255.255.255", true}, {"128.0.0.0", true},
		{"223.255.255.255", true}, {"240.0.0.0", true}, {"255.255.255.254", true}, {"10.99.0.255", true},
	} {
		d := Datagram{Src: netip.AddrPortFrom(netip.MustParseAddr(c.src), 1)}
		if got := d.SourceOK(); got != c.ok {
			t.Errorf("SourceOK from %s: %v, want %v", c.src, got, c.ok)
		}
	}
	d := Datagram{Src: netip.MustParseAddrPort("10.99.0.1:1")}
	if n, exact := race.AllocsPerRun(t, 100, func() { d.SourceOK() }); exact && n != 0 {
		t.Errorf("SourceOK allocates %v times", n)
	}
}

// TestOptionsOK: IPv4 options as the kernel takes or refuses them (the
// lab test TestXDPIPOptions in feed/rx compares a wider set with what the
// kernel delivers to a socket), including an option whose length byte is
// past the options. Nothing is allocated.
func TestOptionsOK(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []byte
		ok   bool
	}{
		{"none", nil, true},
		{"nops", []byte{1, 1, 1, 1}, true},
		{"router alert", []byte{148, 4, 0, 0}, true},
		{"record route full", []byte{7, 7, 8, 10, 99, 0, 1, 0}, true},
		{"timestamp full, overflow 14", []byte{68, 8, 9, 0xe0, 0, 0, 0, 0}, true},
		{"timestamp full, overflow 15", []byte{68, 8, 9, 0xf0, 0, 0, 0, 0}, false},
		{"prespecified timestamp full, overflow 15", []byte{68, 12, 13, 0xf3, 10, 99, 0, 1, 0, 0, 0, 0}, true},
		{"address timestamp full, overflow 15", []byte{68, 12, 13, 0xf1, 10, 99, 0, 1, 0, 0, 0, 0}, false},
		{"end, then garbage", []byte{0, 0xff, 0xff, 0xff}, true},
		{"length byte past the options", []byte{1, 1, 1, 30}, false},
		{"length past the options", []byte{30, 5, 0, 0}, false},
		{"loose source route", []byte{131, 7, 4, 10, 99, 0, 2, 0}, false},
		{"record route pointer 3", []byte{7, 7, 3, 0, 0, 0, 0, 0}, false},
	} {
		f := benchFrame()
		ip := f[18:]
		ihl := 20 + len(c.opts)
		opt := append(append(append([]byte(nil), f[:18+20]...), c.opts...), f[18+20:]...)
		opt[18] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(opt[18+2:], binary.BigEndian.Uint16(ip[2:])+uint16(len(c.opts)))
		d, class := ParseFrame(opt)
		if class != ClassUDP {
			t.Fatalf("%s: class %v", c.name, class)
		}
		if got := d.OptionsOK(); got != c.ok {
			t.Errorf("OptionsOK with %s % x: %v, want %v", c.name, c.opts, got, c.ok)
		}
		if n, exact := race.AllocsPerRun(t, 10, func() { d.OptionsOK() }); exact && n != 0 {
			t.Errorf("OptionsOK with %s allocates %v times", c.name, n)
		}
	}
}
