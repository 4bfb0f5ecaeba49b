package bpf

import (
	"net/netip"
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
