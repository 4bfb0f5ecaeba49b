package moldudp64_test

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// BenchmarkParseTrackIter: parse, track and iterate full 1400-byte packets of
// 36-byte messages (about 36 per packet), the receive path's per-packet work.
func BenchmarkParseTrackIter(b *testing.B) {
	bl := moldudp64.NewBuilder(sess, 1, 0)
	msg := make([]byte, 36)
	msg[0] = 'A'
	var pkts [][]byte
	for len(pkts) < 64 {
		if bl.Add(msg) != nil {
			pkts = append(pkts, append([]byte(nil), bl.Flush()...))
			bl.Add(msg)
		}
	}
	var tr moldudp64.Tracker
	var msgs, sum int
	b.ReportAllocs()
	for b.Loop() {
		tr.Reset()
		for _, d := range pkts {
			p, err := moldudp64.Parse(d)
			if err != nil {
				b.Fatal(err)
			}
			if v := tr.TrackPacket(p); !v.Apply() {
				b.Fatal(v.Kind)
			}
			it := p.Iter()
			for m, ok := it.Next(); ok; m, ok = it.Next() {
				sum += int(m[0])
				msgs++
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(msgs), "ns/msg")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pkts)), "ns/pkt")
}

// BenchmarkBuild packs 36-byte messages into 1400-byte packets.
func BenchmarkBuild(b *testing.B) {
	bl := moldudp64.NewBuilder(sess, 1, 0)
	msg := make([]byte, 36)
	const per = 1000
	b.ReportAllocs()
	for b.Loop() {
		for range per {
			if bl.Add(msg) != nil {
				bl.Flush()
				bl.Add(msg)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/msg")
}
