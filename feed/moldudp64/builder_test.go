package moldudp64_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/race"
)

func TestBuilderPacksAndNumbers(t *testing.T) {
	const max = 200
	b := moldudp64.NewBuilder(sess, 1, max)
	var pkts [][]byte
	var sent [][]byte
	for i := range 100 {
		msg := bytes.Repeat([]byte{byte(i)}, 10+i%30)
		sent = append(sent, msg)
		err := b.Add(msg)
		if errors.Is(err, moldudp64.ErrFull) {
			pkts = append(pkts, bytes.Clone(b.Flush()))
			err = b.Add(msg)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	pkts = append(pkts, bytes.Clone(b.Flush()))
	if b.Flush() != nil {
		t.Error("Flush of an empty builder returned a packet")
	}
	var tr moldudp64.Tracker
	var got [][]byte
	for i, raw := range pkts {
		if len(raw) > max {
			t.Errorf("packet %d: %d bytes > %d", i, len(raw), max)
		}
		p, err := moldudp64.Parse(raw)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if v := tr.TrackPacket(p); v.Kind != moldudp64.KindInOrder {
			t.Fatalf("packet %d: %v", i, v.Kind)
		}
		// Full packets: the next message would not have fitted.
		if i < len(pkts)-1 {
			next := len(sent[len(got)+int(p.Count)])
			if len(raw)+2+next <= max {
				t.Errorf("packet %d flushed with room for %d more bytes", i, max-len(raw))
			}
		}
		it := p.Iter()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			got = append(got, msg)
		}
	}
	if len(got) != len(sent) {
		t.Fatalf("received %d messages, sent %d", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
	if b.Seq() != 101 || tr.Next() != 101 {
		t.Errorf("builder seq %d tracker next %d", b.Seq(), tr.Next())
	}
}

func TestBuilderControlPackets(t *testing.T) {
	b := moldudp64.NewBuilder(sess, 50, 0)
	if err := b.Add([]byte("pending")); err != nil {
		t.Fatal(err)
	}
	hb, err := moldudp64.Parse(b.Heartbeat())
	if err != nil || !hb.Heartbeat() || hb.Seq != 50 || hb.Session != sess {
		t.Fatalf("heartbeat %+v %v", hb, err)
	}
	// The pending packet survives the heartbeat.
	p, err := moldudp64.Parse(b.Flush())
	if err != nil || p.Seq != 50 || p.Count != 1 {
		t.Fatalf("data after heartbeat: %+v %v", p, err)
	}
	end, err := moldudp64.Parse(b.EndOfSession())
	if err != nil || !end.EndOfSession() || end.Seq != 51 {
		t.Fatalf("end of session %+v %v", end, err)
	}
}

func TestBuilderLimits(t *testing.T) {
	b := moldudp64.NewBuilder(sess, 1, 64)
	if err := b.Add(make([]byte, 64-20-2+1)); !errors.Is(err, moldudp64.ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if err := b.Add(make([]byte, 64-20-2)); err != nil {
		t.Errorf("exact fit: %v", err)
	}
	if err := b.Add(nil); !errors.Is(err, moldudp64.ErrFull) || b.Pending() != 1 || b.Len() != 64 {
		t.Errorf("full: %v pending %d len %d", err, b.Pending(), b.Len())
	}
	// Count limit: empty messages, 0xFFFE per packet at most.
	big := moldudp64.NewBuilder(sess, 1, math.MaxUint16)
	n := 0
	for big.Add(nil) == nil {
		n++
	}
	if n != (math.MaxUint16-20)/2 {
		t.Errorf("empty messages per 64 KiB packet: %d", n)
	}
	// Sequence exhaustion near 2^64.
	e := moldudp64.NewBuilder(sess, math.MaxUint64-2, 0)
	if e.Add([]byte("a")) != nil || e.Add([]byte("b")) != nil {
		t.Fatal("last two sequence numbers refused")
	}
	if err := e.Add([]byte("c")); !errors.Is(err, moldudp64.ErrSeqExhausted) {
		t.Errorf("exhausted: %v", err)
	}
	if p, err := moldudp64.Parse(e.Flush()); err != nil || p.Next() != math.MaxUint64 {
		t.Errorf("last packet: %+v %v", p, err)
	}
}

func TestBuilderZeroAlloc(t *testing.T) {
	b := moldudp64.NewBuilder(sess, 1, 0)
	msg := make([]byte, 36)
	allocs, exact := race.AllocsPerRun(t, 1000, func() {
		if err := b.Add(msg); errors.Is(err, moldudp64.ErrFull) {
			b.Flush()
			b.Add(msg)
		}
		if b.Pending() == 7 {
			b.Heartbeat()
		}
	})
	if exact && allocs != 0 {
		t.Errorf("Builder: %v allocs, want 0", allocs)
	}
}

func ExampleBuilder() {
	b := moldudp64.NewBuilder(moldudp64.NewSession("20261124A"), 1, 50)
	var datagrams [][]byte
	for i := range 5 {
		msg := []byte(fmt.Sprintf("message-%d", i)) // 9 bytes: 2 blocks fit a 50-byte packet
		if err := b.Add(msg); errors.Is(err, moldudp64.ErrFull) {
			datagrams = append(datagrams, bytes.Clone(b.Flush()))
			b.Add(msg)
		}
	}
	datagrams = append(datagrams, bytes.Clone(b.Flush()), bytes.Clone(b.Heartbeat()))

	var tr moldudp64.Tracker
	for _, d := range datagrams {
		p, err := moldudp64.Parse(d)
		if err != nil {
			fmt.Println(err)
			continue
		}
		v := tr.TrackPacket(p)
		fmt.Printf("seq %d count %d: %v", p.Seq, p.Count, v.Kind)
		it := p.Iter()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			fmt.Printf(" [%d %s]", it.Seq(), msg)
		}
		fmt.Println()
	}
	// Output:
	// seq 1 count 2: in-order [1 message-0] [2 message-1]
	// seq 3 count 2: in-order [3 message-2] [4 message-3]
	// seq 5 count 1: in-order [5 message-4]
	// seq 6 count 0: heartbeat
}
