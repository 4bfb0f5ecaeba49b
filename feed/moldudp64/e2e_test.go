package moldudp64_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestITCHOverMold encodes ITCH messages, packs them with Builder, drops one
// packet and duplicates another, and checks that Parse + Tracker + Iter +
// itch.Counters.Accept deliver exactly the messages of the packets that
// arrived, each once, in order, with the lost range reported.
func TestITCHOverMold(t *testing.T) {
	b := moldudp64.NewBuilder(sess, 1, 300)
	var pkts [][]byte
	msg := make([]byte, 0, 64)
	for i := range 200 {
		var f itch.Encoder
		switch i % 3 {
		case 0:
			f = &itch.AddOrderFields{Header: itch.Header{Locate: 1, Timestamp: uint64(i)}, OrderRef: uint64(i), Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1000}
		case 1:
			f = &itch.OrderExecutedFields{Header: itch.Header{Locate: 1, Timestamp: uint64(i)}, OrderRef: uint64(i - 1), ExecutedShares: 10, MatchNumber: uint64(i)}
		default:
			f = &itch.OrderDeleteFields{Header: itch.Header{Locate: 1, Timestamp: uint64(i)}, OrderRef: uint64(i - 2)}
		}
		msg = f.Append(msg[:0])
		if err := b.Add(msg); errors.Is(err, moldudp64.ErrFull) {
			pkts = append(pkts, bytes.Clone(b.Flush()))
			b.Add(msg)
		}
	}
	pkts = append(pkts, bytes.Clone(b.Flush()), bytes.Clone(b.EndOfSession()))
	if len(pkts) < 8 {
		t.Fatalf("only %d packets", len(pkts))
	}
	lost, _ := moldudp64.Parse(pkts[3])
	wire := append(append([][]byte{}, pkts[:3]...), pkts[4:]...) // packet 3 lost
	wire = append(wire[:5], append([][]byte{wire[4]}, wire[5:]...)...)

	var tr moldudp64.Tracker
	var c itch.Counters
	var got []uint64 // timestamps = message index
	var gaps []moldudp64.Range
	for _, d := range wire {
		p, err := moldudp64.Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		v := tr.TrackPacket(p)
		if v.Gap.Count != 0 {
			gaps = append(gaps, v.Gap)
		}
		if !v.Apply() {
			continue
		}
		it := p.Iter()
		it.Skip(int(v.Skip))
		for raw, ok := it.Next(); ok; raw, ok = it.Next() {
			m, ok := c.Accept(raw)
			if !ok {
				t.Fatalf("seq %d rejected", it.Seq())
			}
			if m.Timestamp() != it.Seq()-1 {
				t.Fatalf("seq %d carries message %d", it.Seq(), m.Timestamp())
			}
			got = append(got, m.Timestamp())
		}
	}
	if len(gaps) != 1 || gaps[0] != lost.Range() {
		t.Fatalf("gaps %v, want [%v]", gaps, lost.Range())
	}
	if uint64(len(got)) != 200-lost.Range().Count || c.Messages != uint64(len(got)) {
		t.Fatalf("delivered %d, lost %d of 200", len(got), lost.Range().Count)
	}
	if tr.Stats.Duplicates != 1 || tr.Stats.EndOfSession != 1 || !tr.Ended() || tr.Next() != 201 {
		t.Errorf("stats %+v next %d", tr.Stats, tr.Next())
	}
}
