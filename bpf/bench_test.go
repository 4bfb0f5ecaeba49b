package bpf

import (
	"net/netip"
	"strconv"
	"testing"
)

func benchFrame() []byte {
	return frameSpec{src: netip.AddrPortFrom(testSource, 40000), dst: netip.AddrPortFrom(testGroup, 26400),
		payload: make([]byte, 200), vlans: []uint16{0x8100}}.bytes()
}

func BenchmarkParseFrame(b *testing.B) {
	frame := benchFrame()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	n := 0
	for b.Loop() {
		d, _ := ParseFrame(frame)
		n += len(d.Payload)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
}

// BenchmarkProgram runs the program in the kernel (BPF_PROG_TEST_RUN with
// repeat) on a VLAN-tagged line frame; the kernel measures the time.
func BenchmarkProgram(b *testing.B) {
	p := loadForTest(b)
	if err := p.SetLine(testGroup, 26400, 0, netip.Addr{}); err != nil {
		b.Fatal(err)
	}
	benchProgram(b, p)
}

// benchProgram runs p on benchFrame in the kernel, 10,000 times a call,
// and reports the kernel's time a frame.
func benchProgram(b *testing.B, p *Program) {
	frame := benchFrame()
	var total float64
	runs := 0
	for b.Loop() {
		_, d, err := p.XDP().Benchmark(frame, 10000, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += float64(d.Nanoseconds())
		runs++
	}
	b.ReportMetric(total/float64(runs), "ns/frame")
}

// BenchmarkProgramVLANLine is BenchmarkProgram with the line on the
// frame's VLAN (SetVLANLine): the program reads the tag and looks the line
// up by it. "other vlan" is a frame on VLAN 100 while the pair has a line
// on the interface and one on VLAN 200: two lookups.
func BenchmarkProgramVLANLine(b *testing.B) {
	for _, tc := range []struct {
		name string
		vlan uint16
	}{{"same vlan", 100}, {"other vlan", 200}} {
		b.Run(tc.name, func(b *testing.B) {
			p := loadWithForTest(b, LoadOptions{VLANLines: true})
			if err := p.SetVLANLine(tc.vlan, testGroup, 26400, 0, netip.Addr{}); err != nil {
				b.Fatal(err)
			}
			if err := p.SetLine(testGroup, 26400, 1, netip.Addr{}); err != nil {
				b.Fatal(err)
			}
			benchProgram(b, p)
		})
	}
}

// BenchmarkChecksumOK verifies the IPv4 and UDP checksums of a line
// datagram: 300 bytes is a packet of about 8 ITCH messages (the paced
// benchmark's), 1400 a full one.
func BenchmarkChecksumOK(b *testing.B) {
	for _, n := range []int{300, 1400} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			frame := frameSpec{src: netip.AddrPortFrom(testSource, 40000), dst: netip.AddrPortFrom(testGroup, 26400),
				payload: make([]byte, n)}.bytes()
			seal(frame, 14)
			d, _ := ParseFrame(frame)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			ok := true
			for b.Loop() {
				ok = ok && d.ChecksumOK()
			}
			if !ok {
				b.Fatal("checksum fails")
			}
		})
	}
}
