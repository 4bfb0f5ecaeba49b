package pcap_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/race"
)

var (
	src   = netip.MustParseAddrPort("10.1.2.3:40000")
	group = netip.MustParseAddrPort("239.255.130.7:26477")
)

func payload(i int) []byte {
	p := make([]byte, 20+i%1400)
	for j := range p {
		p[j] = byte(i + j)
	}
	return p
}

// ethIPv4UDP builds a frame by hand, independently of AppendUDPFrame:
// optional VLAN tags, IPv4 options of optLen bytes, and the given payload.
func ethIPv4UDP(tags []uint16, optLen int, proto byte, frag uint16, p []byte) []byte {
	var b []byte
	b = append(b, 0x01, 0x00, 0x5e, 0x7f, 0x82, 0x07, 0x02, 0, 10, 1, 2, 3)
	for _, tag := range tags {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, tag)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	ihl := 20 + optLen
	ip := len(b)
	b = append(b, byte(0x40|ihl/4), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ihl+8+len(p)))
	b = append(b, 0x12, 0x34)
	b = binary.BigEndian.AppendUint16(b, frag)
	b = append(b, 1, proto, 0, 0, 10, 1, 2, 3, 239, 255, 130, 7)
	for i := 0; i < optLen; i++ {
		b = append(b, 1) // NOP options
	}
	binary.BigEndian.PutUint16(b[ip+10:], pcap.IPv4Checksum(b[ip:ip+ihl]))
	b = binary.BigEndian.AppendUint16(b, 40000)
	b = binary.BigEndian.AppendUint16(b, 26477)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(p)))
	b = append(b, 0, 0)
	return append(b, p...)
}

func TestWriteReadRoundTrip(t *testing.T) {
	var file bytes.Buffer
	w, err := pcap.NewWriter(&file)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	t0 := time.Date(2026, 11, 24, 14, 30, 0, 0, time.UTC).UnixNano()
	for i := range n {
		if err := w.WriteUDP(t0+int64(i)*1001, src, group, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcap.NewReader(&file)
	if err != nil {
		t.Fatal(err)
	}
	if r.Format() != pcap.FormatPcap {
		t.Fatalf("format %v", r.Format())
	}
	for i := range n {
		fr, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if fr.Src != src || fr.Dst != group || fr.Time != t0+int64(i)*1001 || fr.Index != uint64(i+1) {
			t.Fatalf("frame %d: %+v", i, fr)
		}
		if !bytes.Equal(fr.Payload, payload(i)) {
			t.Fatalf("frame %d: payload differs", i)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
	if st := r.Stats(); st.Frames != n || st.Datagrams != n || st.Malformed() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The writer's frames must decode with gopacket's own layer decoders too,
// with a valid IPv4 checksum and the multicast MAC of the group.
func TestWriterFramesDecodeWithGopacket(t *testing.T) {
	frame := pcap.AppendUDPFrame(nil, src, group, 7, []byte("hello"))
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if eth == nil || ip == nil || udp == nil {
		t.Fatalf("gopacket could not decode: %v", pkt)
	}
	if eth.DstMAC.String() != "01:00:5e:7f:82:07" {
		t.Errorf("dst MAC %v", eth.DstMAC)
	}
	if ip.SrcIP.String() != "10.1.2.3" || ip.DstIP.String() != "239.255.130.7" || ip.Id != 7 || ip.Length != 33 {
		t.Errorf("ip %+v", ip)
	}
	if c := pcap.IPv4Checksum(frame[14:34]); c != 0 {
		t.Errorf("IPv4 header does not check: %#x", c)
	}
	if udp.SrcPort != 40000 || udp.DstPort != 26477 || string(udp.Payload) != "hello" {
		t.Errorf("udp %+v", udp)
	}
}

func TestMulticastMAC(t *testing.T) {
	for _, c := range []struct{ group, mac string }{
		{"239.255.130.7", "01005e7f8207"},
		{"224.0.0.1", "01005e000001"},
		{"233.200.1.2", "01005e480102"}, // high bit of the second byte dropped
	} {
		m := pcap.MulticastMAC(netip.MustParseAddr(c.group))
		if fmt.Sprintf("%x", m[:]) != c.mac {
			t.Errorf("%s: %x, want %s", c.group, m, c.mac)
		}
	}
}

func TestIPv4Checksum(t *testing.T) {
	// Example header from RFC 1071 discussions (checksum 0xb861).
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if c := pcap.IPv4Checksum(h); c != 0xb861 {
		t.Fatalf("checksum %#x, want 0xb861", c)
	}
}

// handFrames returns frames built by hand and the reason each must be
// decoded with (OK ones carry payload "ok<i>").
func handFrames() (frames [][]byte, reasons []pcap.Reason) {
	add := func(f []byte, r pcap.Reason) { frames = append(frames, f); reasons = append(reasons, r) }
	add(ethIPv4UDP(nil, 0, 17, 0, []byte("ok0")), pcap.OK)
	add(ethIPv4UDP([]uint16{100}, 0, 17, 0, []byte("ok1")), pcap.OK)      // 802.1Q
	add(ethIPv4UDP([]uint16{100, 200}, 0, 17, 0, []byte("ok2")), pcap.OK) // QinQ as two 0x8100 tags
	add(ethIPv4UDP(nil, 8, 17, 0, []byte("ok3")), pcap.OK)                // IPv4 options
	add(ethIPv4UDP([]uint16{5}, 40, 17, 0, []byte("ok4")), pcap.OK)       // VLAN + maximal options
	padded := append(ethIPv4UDP(nil, 0, 17, 0, []byte("ok5")), make([]byte, 20)...)
	add(padded, pcap.OK) // Ethernet padding beyond the IPv4 total length
	add(ethIPv4UDP(nil, 0, 17, 0, nil)[:10], pcap.Truncated)
	add(ethIPv4UDP([]uint16{1}, 0, 17, 0, nil)[:16], pcap.Truncated)
	add(ethIPv4UDP(nil, 0, 17, 0, nil)[:30], pcap.Truncated)
	add(ethIPv4UDP(nil, 8, 17, 0, []byte("x"))[:14+28], pcap.Truncated)
	full := ethIPv4UDP(nil, 0, 17, 0, []byte("abcdef"))
	add(full[:len(full)-2], pcap.Truncated) // snapped
	badUDP := ethIPv4UDP(nil, 0, 17, 0, []byte("abcdef"))
	binary.BigEndian.PutUint16(badUDP[14+20+4:], 100)
	add(badUDP, pcap.BadLength)
	shortUDP := ethIPv4UDP(nil, 0, 17, 0, []byte("abcdef"))
	binary.BigEndian.PutUint16(shortUDP[14+20+4:], 7)
	add(shortUDP, pcap.BadLength)
	badIHL := ethIPv4UDP(nil, 0, 17, 0, []byte("abcdef"))
	badIHL[14] = 0x44
	add(badIHL, pcap.BadLength)
	badTotal := ethIPv4UDP(nil, 0, 17, 0, []byte("abcdef"))
	binary.BigEndian.PutUint16(badTotal[14+2:], 10)
	add(badTotal, pcap.BadLength)
	add(ethIPv4UDP(nil, 0, 6, 0, []byte("tcp")), pcap.NotUDP)
	add(ethIPv4UDP(nil, 0, 17, 0x2000, []byte("first fragment")), pcap.Fragment)
	add(ethIPv4UDP(nil, 0, 17, 0x0010, []byte("later fragment")), pcap.Fragment)
	arp := ethIPv4UDP(nil, 0, 17, 0, nil)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	add(arp, pcap.NotIPv4)
	v6 := ethIPv4UDP(nil, 0, 17, 0, nil)
	v6[14] = 0x65
	add(v6, pcap.NotIPv4)
	resum := func(f []byte) []byte {
		ihl := int(f[14]&0x0f) * 4
		binary.BigEndian.PutUint16(f[14+10:], 0)
		binary.BigEndian.PutUint16(f[14+10:], pcap.IPv4Checksum(f[14:14+ihl]))
		return f
	}
	for _, a := range [][4]byte{{0, 0, 0, 0}, {127, 0, 0, 1}, {224, 0, 0, 1}, {255, 255, 255, 255}} {
		martian := ethIPv4UDP(nil, 0, 17, 0, []byte("martian"))
		copy(martian[14+12:], a[:])
		add(resum(martian), pcap.BadSource)
	}
	lsrr := ethIPv4UDP(nil, 8, 17, 0, []byte("source route"))
	copy(lsrr[14+20:], []byte{131, 7, 4, 10, 1, 2, 3, 0})
	add(resum(lsrr), pcap.BadOptions)
	past := ethIPv4UDP(nil, 4, 17, 0, []byte("option past the header"))
	copy(past[14+20:], []byte{148, 40, 0, 0})
	add(resum(past), pcap.BadOptions)
	ttl0 := ethIPv4UDP(nil, 0, 17, 0, []byte("ok6")) // the kernel takes any TTL for itself
	ttl0[14+8] = 0
	add(resum(ttl0), pcap.OK)
	add(ethIPv4UDP(nil, 0, 17, 0, []byte("ok7")), pcap.OK)
	return frames, reasons
}

func TestDecodeFrame(t *testing.T) {
	frames, reasons := handFrames()
	ok := 0
	for i, f := range frames {
		u, why := pcap.DecodeFrame(f, pcap.LinkEthernet)
		if why != reasons[i] {
			t.Errorf("frame %d: reason %v, want %v", i, why, reasons[i])
			continue
		}
		if why == pcap.OK {
			if want := fmt.Sprintf("ok%d", ok); string(u.Payload) != want || u.Src != src || u.Dst != group {
				t.Errorf("frame %d: %+v payload %q, want %q", i, u, u.Payload, want)
			}
			ok++
		}
	}
	if _, why := pcap.DecodeFrame(frames[0], 42); why != pcap.BadLinkType {
		t.Errorf("link type 42: %v", why)
	}
	// Raw IPv4 and Linux SLL carry the same IPv4 packet.
	if u, why := pcap.DecodeFrame(frames[0][14:], pcap.LinkRaw); why != pcap.OK || string(u.Payload) != "ok0" {
		t.Errorf("raw: %v %q", why, u.Payload)
	}
	sll := append(make([]byte, 14), 0x08, 0x00)
	sll = append(sll, frames[0][14:]...)
	if u, why := pcap.DecodeFrame(sll, pcap.LinkLinuxSLL); why != pcap.OK || string(u.Payload) != "ok0" {
		t.Errorf("sll: %v %q", why, u.Payload)
	}
	// Linux cooked v2 (tcpdump -i any since libpcap 1.10): the protocol
	// type first, then 18 bytes; a VLAN tag the NIC left in place follows
	// a cooked header as it follows an Ethernet one.
	sll2 := append([]byte{0x08, 0x00}, make([]byte, 18)...)
	sll2[11] = 2 // packet type: multicast
	if u, why := pcap.DecodeFrame(append(sll2, frames[0][14:]...), pcap.LinkLinuxSLL2); why != pcap.OK || string(u.Payload) != "ok0" || u.Dst != group {
		t.Errorf("sll2: %v %q", why, u.Payload)
	}
	tagged := append([]byte{0x81, 0x00}, sll2[2:]...)
	tagged = append(append(tagged, 0x00, 0x64, 0x08, 0x00), frames[0][14:]...)
	if u, why := pcap.DecodeFrame(tagged, pcap.LinkLinuxSLL2); why != pcap.OK || string(u.Payload) != "ok0" {
		t.Errorf("sll2 with a VLAN tag: %v %q", why, u.Payload)
	}
	if _, why := pcap.DecodeFrame(sll2[:19], pcap.LinkLinuxSLL2); why != pcap.Truncated {
		t.Errorf("sll2 cut in its header: %v", why)
	}
}

// Hand-built frames written into a file: the reader yields the good ones and
// counts the others under their reasons.
func TestReaderCountsMalformed(t *testing.T) {
	frames, reasons := handFrames()
	var file bytes.Buffer
	w, err := pcap.NewWriter(&file)
	if err != nil {
		t.Fatal(err)
	}
	var want [pcap.NumReasons]uint64
	for i, f := range frames {
		if err := w.WriteFrame(int64(i), f); err != nil {
			t.Fatal(err)
		}
		want[reasons[i]]++
	}
	w.Flush()
	r, err := pcap.NewReader(&file)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("ok%d", got); string(fr.Payload) != want {
			t.Errorf("datagram %d: %q, want %q", got, fr.Payload, want)
		}
		got++
	}
	st := r.Stats()
	if got != int(want[pcap.OK]) || st.Datagrams != want[pcap.OK] || st.Frames != uint64(len(frames)) {
		t.Fatalf("got %d datagrams, stats %+v", got, st)
	}
	for why := pcap.Truncated; why < pcap.NumReasons; why++ {
		if st.Skipped[why] != want[why] {
			t.Errorf("%v: %d, want %d", why, st.Skipped[why], want[why])
		}
	}
	if st.Malformed() != uint64(len(frames))-want[pcap.OK] {
		t.Errorf("malformed %d", st.Malformed())
	}
}

func TestReadPcapNG(t *testing.T) {
	var file bytes.Buffer
	ng, err := pcapgo.NewNgWriter(&file, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	// A second interface with raw IPv4 framing.
	raw, err := ng.AddInterface(pcapgo.NgInterface{Name: "raw0", LinkType: layers.LinkTypeRaw, SnapLength: 65535, TimestampResolution: 9})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 24, 14, 30, 0, 0, time.UTC)
	const n = 50
	for i := range n {
		f := pcap.AppendUDPFrame(nil, src, group, uint16(i), payload(i))
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Microsecond), CaptureLength: len(f), Length: len(f)}
		if i%5 == 4 {
			f = f[14:]
			ci.CaptureLength, ci.Length, ci.InterfaceIndex = len(f), len(f), raw
		}
		if err := ng.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	arp := ethIPv4UDP(nil, 0, 17, 0, nil)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	ng.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(arp), Length: len(arp)}, arp)
	if err := ng.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcap.NewReader(&file)
	if err != nil {
		t.Fatal(err)
	}
	if r.Format() != pcap.FormatPcapNG {
		t.Fatalf("format %v", r.Format())
	}
	for i := range n {
		fr, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(fr.Payload, payload(i)) || fr.Dst != group || fr.Time != t0.Add(time.Duration(i)*time.Microsecond).UnixNano() {
			t.Fatalf("frame %d: %+v", i, fr)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
	if st := r.Stats(); st.Datagrams != n || st.Skipped[pcap.NotIPv4] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNotCapture(t *testing.T) {
	_, err := pcap.NewReader(bytes.NewReader([]byte{0, 12, 'S', 0, 0, 0}))
	if !errors.Is(err, pcap.ErrNotCapture) {
		t.Fatalf("got %v", err)
	}
}

func TestTruncatedCapture(t *testing.T) {
	var file bytes.Buffer
	w, _ := pcap.NewWriter(&file)
	w.WriteUDP(1, src, group, payload(1))
	w.WriteUDP(2, src, group, payload(2))
	w.Flush()
	r, err := pcap.NewReader(bytes.NewReader(file.Bytes()[:file.Len()-5]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

// loop serves a capture's frames forever (the header once).
type loop struct {
	hdr, body []byte
	off       int
}

func (l *loop) Read(p []byte) (int, error) {
	n := 0
	if len(l.hdr) > 0 {
		n = copy(p, l.hdr)
		l.hdr = l.hdr[n:]
	}
	for n < len(p) {
		c := copy(p[n:], l.body[l.off:])
		n += c
		l.off = (l.off + c) % len(l.body)
	}
	return n, nil
}

func loopCapture(t testing.TB) *loop {
	var file bytes.Buffer
	w, _ := pcap.NewWriter(&file)
	for i := range 100 {
		w.WriteUDP(int64(i), src, group, payload(i%3*400))
	}
	w.Flush()
	return &loop{hdr: file.Bytes()[:24], body: file.Bytes()[24:]}
}

func TestReaderAllocs(t *testing.T) {
	r, err := pcap.NewReader(loopCapture(t))
	if err != nil {
		t.Fatal(err)
	}
	r.Next()
	if a, exact := race.AllocsPerRun(t, 10000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}); exact && a != 0 {
		t.Fatalf("Next allocates %v times per frame", a)
	}
}

func TestWriterAllocs(t *testing.T) {
	w, _ := pcap.NewWriter(io.Discard)
	p := payload(1000)
	if a, exact := race.AllocsPerRun(t, 10000, func() {
		if err := w.WriteUDP(1, src, group, p); err != nil {
			t.Fatal(err)
		}
	}); exact && a != 0 {
		t.Fatalf("WriteUDP allocates %v times per frame", a)
	}
}

func BenchmarkReader(b *testing.B) {
	r, _ := pcap.NewReader(loopCapture(b))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

func FuzzDecodeFrame(f *testing.F) {
	frames, _ := handFrames()
	for _, fr := range frames[:8] {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		u, why := pcap.DecodeFrame(frame, pcap.LinkEthernet)
		if why == pcap.OK && (len(u.Payload) > len(frame)-42 || !u.Src.IsValid()) {
			t.Fatalf("bad datagram %+v from %d bytes", u, len(frame))
		}
		// An untagged frame is taken as the AF_XDP receive path takes it
		// (which, for line datagrams, takes what the kernel does).
		if len(frame) < 14 || frame[12] != 0x08 || frame[13] != 0x00 {
			return
		}
		d, class := bpf.ParseFrame(frame)
		live := class == bpf.ClassUDP && d.SourceOK() && d.OptionsOK() && d.ChecksumOK()
		if live != (why == pcap.OK) || live && (string(d.Payload) != string(u.Payload) || d.Src != u.Src || d.Dst != u.Dst) {
			t.Fatalf("replay takes it: %v (%v), live: %v (%v)", why == pcap.OK, why, live, class)
		}
	})
}

func Example() {
	var file bytes.Buffer
	w, _ := pcap.NewWriter(&file)
	w.WriteUDP(1_700_000_000_000_000_000, netip.MustParseAddrPort("10.0.0.1:5000"),
		netip.MustParseAddrPort("233.54.12.111:26400"), []byte("moldudp64 packet"))
	w.Flush()

	r, _ := pcap.NewReader(&file)
	fr, _ := r.Next()
	fmt.Println(r.Format(), fr.Src, "->", fr.Dst, len(fr.Payload), "bytes")
	// Output: pcap 10.0.0.1:5000 -> 233.54.12.111:26400 16 bytes
}
