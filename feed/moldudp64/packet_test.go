package moldudp64_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/race"
)

var sess = moldudp64.NewSession("20261124A")

// packet builds a downstream packet by hand (not with Builder).
func packet(s moldudp64.Session, seq uint64, count uint16, msgs ...[]byte) []byte {
	b := moldudp64.AppendHeader(nil, s, seq, count)
	for _, m := range msgs {
		b = itch.AppendBlock(b, m)
	}
	return b
}

func TestParseHandBytes(t *testing.T) {
	// Session "ABC" + 7 spaces, seq 0x0102030405060708, count 2, blocks
	// [0003 'S' 01 02] [0001 'D'].
	wire, _ := hex.DecodeString("41424320202020202020" + "0102030405060708" + "0002" + "0003530102" + "000144")
	p, err := moldudp64.Parse(wire)
	if err != nil {
		t.Fatal(err)
	}
	if p.Session.String() != "ABC" || p.Seq != 0x0102030405060708 || p.Count != 2 || p.Heartbeat() || p.EndOfSession() {
		t.Fatalf("parsed %+v", p)
	}
	it := p.Iter()
	var got [][]byte
	var seqs []uint64
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		got = append(got, msg)
		seqs = append(seqs, it.Seq())
	}
	if len(got) != 2 || string(got[0]) != "S\x01\x02" || string(got[1]) != "D" {
		t.Fatalf("messages %q", got)
	}
	if seqs[0] != 0x0102030405060708 || seqs[1] != 0x0102030405060709 || p.Next() != 0x010203040506070A {
		t.Errorf("seqs %x next %x", seqs, p.Next())
	}
	if re := p.Append(nil); !bytes.Equal(re, wire) {
		t.Errorf("Append %x\nwant %x", re, wire)
	}
	if !bytes.Equal(packet(moldudp64.NewSession("ABC"), 0x0102030405060708, 2, []byte("S\x01\x02"), []byte("D")), wire) {
		t.Error("AppendHeader/AppendBlock disagree with the hand bytes")
	}
}

func TestParseHeartbeatAndEnd(t *testing.T) {
	p, err := moldudp64.Parse(packet(sess, 77, 0))
	if err != nil || !p.Heartbeat() || p.EndOfSession() || p.Messages() != 0 || p.Next() != 77 {
		t.Fatalf("heartbeat: %+v %v", p, err)
	}
	p, err = moldudp64.Parse(packet(sess, 78, moldudp64.EndOfSessionCount))
	if err != nil || p.Heartbeat() || !p.EndOfSession() || p.Messages() != 0 || p.Next() != 78 {
		t.Fatalf("end of session: %+v %v", p, err)
	}
	it := p.Iter()
	if _, ok := it.Next(); ok {
		t.Error("end of session iterates messages")
	}
}

func TestParseRejects(t *testing.T) {
	m := []byte("D0123456789abcdefgh")
	good := packet(sess, 10, 3, m, m, m)
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, moldudp64.ErrShortHeader},
		{"short header", good[:19], moldudp64.ErrShortHeader},
		{"overrun in last block", good[:len(good)-1], moldudp64.ErrOverrun},
		{"overrun in length prefix", good[:len(good)-len(m)-1], moldudp64.ErrOverrun},
		{"count beyond blocks", packet(sess, 10, 4, m, m, m), moldudp64.ErrOverrun},
		{"header only with count", packet(sess, 10, 1), moldudp64.ErrOverrun},
		{"trailing byte", append(bytes.Clone(good), 0), moldudp64.ErrTrailing},
		{"count below blocks", packet(sess, 10, 2, m, m, m), moldudp64.ErrTrailing},
		{"heartbeat with payload", packet(sess, 10, 0, m), moldudp64.ErrTrailing},
		{"end of session with payload", packet(sess, 10, 0xFFFF, m), moldudp64.ErrTrailing},
		{"seq zero", packet(sess, 0, 1, m), moldudp64.ErrSeqZero},
		{"heartbeat seq zero", packet(sess, 0, 0), moldudp64.ErrSeqZero},
		{"seq wraps", packet(sess, math.MaxUint64-1, 2, m, m), moldudp64.ErrSeqOverflow},
		{"seq at max", packet(sess, math.MaxUint64, 1, m), moldudp64.ErrSeqOverflow},
	}
	var pe moldudp64.ParseErrors
	for _, c := range cases {
		p, err := moldudp64.Parse(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
		if p.Count != 0 || p.Blocks != nil || p.Seq != 0 {
			t.Errorf("%s: rejected packet returned contents %+v", c.name, p)
		}
		pe.Count(err)
	}
	want := moldudp64.ParseErrors{ShortHeader: 2, Overrun: 4, Trailing: 4, SeqZero: 2, SeqOverflow: 2}
	if pe != want || pe.Total() != uint64(len(cases)) {
		t.Errorf("ParseErrors %+v, want %+v", pe, want)
	}
	// The last representable packet: Seq+Count == MaxUint64.
	if p, err := moldudp64.Parse(packet(sess, math.MaxUint64-2, 2, m, m)); err != nil || p.Next() != math.MaxUint64 {
		t.Errorf("last packet: %v next %d", err, p.Next())
	}
	if _, err := moldudp64.Parse(good); err != nil {
		t.Fatal(err)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	r := moldudp64.Request{Session: sess, Seq: 0x1122334455667788, Count: 0xBEEF}
	b := r.Append(nil)
	want, _ := hex.DecodeString("32303236313132344120" + "1122334455667788" + "beef")
	if !bytes.Equal(b, want) {
		t.Fatalf("request %x\nwant %x", b, want)
	}
	got, err := moldudp64.ParseRequest(b)
	if err != nil || got != r {
		t.Fatalf("ParseRequest: %+v %v", got, err)
	}
	for _, n := range []int{0, 19, 21} {
		if _, err := moldudp64.ParseRequest(make([]byte, n)); !errors.Is(err, moldudp64.ErrBadRequest) {
			t.Errorf("ParseRequest(%d bytes): %v", n, err)
		}
	}
}

func TestSession(t *testing.T) {
	s := moldudp64.NewSession("ABC")
	if string(s[:]) != "ABC       " || s.String() != "ABC" {
		t.Errorf("%q", s[:])
	}
	if moldudp64.NewSession("0123456789XYZ").String() != "0123456789" {
		t.Error("long session not cut at 10")
	}
}

func TestIterSkip(t *testing.T) {
	p, err := moldudp64.Parse(packet(sess, 5, 3, []byte("A"), []byte("B"), []byte("C")))
	if err != nil {
		t.Fatal(err)
	}
	it := p.Iter()
	if n := it.Skip(2); n != 2 {
		t.Fatalf("skipped %d", n)
	}
	msg, ok := it.Next()
	if !ok || string(msg) != "C" || it.Seq() != 7 {
		t.Fatalf("after skip: %q %v seq %d", msg, ok, it.Seq())
	}
	if n := it.Skip(5); n != 0 {
		t.Errorf("skip past end: %d", n)
	}
}

func TestParseIterZeroAlloc(t *testing.T) {
	var msgs [][]byte
	for i := range 20 {
		msgs = append(msgs, bytes.Repeat([]byte{byte('A' + i)}, 20+i))
	}
	dgram := packet(sess, 1000, uint16(len(msgs)), msgs...)
	bad := dgram[:len(dgram)-3]
	var sum int
	var pe moldudp64.ParseErrors
	allocs, exact := race.AllocsPerRun(t, 200, func() {
		p, err := moldudp64.Parse(dgram)
		if err != nil {
			panic(err)
		}
		it := p.Iter()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			sum += len(msg) + int(it.Seq())
		}
		_, err = moldudp64.Parse(bad)
		pe.Count(err)
	})
	if exact && allocs != 0 {
		t.Errorf("Parse + iterate: %v allocs, want 0", allocs)
	}
	if pe.Overrun == 0 {
		t.Error("bad packet not rejected")
	}
}

// refParse is Parse written plainly, as it was before its walk was
// tuned: TestParseEveryCut holds Parse to it.
func refParse(b []byte) (moldudp64.Packet, error) {
	if len(b) < moldudp64.HeaderLen {
		return moldudp64.Packet{}, moldudp64.ErrShortHeader
	}
	p := moldudp64.Packet{Session: moldudp64.Session(b[:10])}
	p.Seq = uint64(b[10])<<56 | uint64(b[11])<<48 | uint64(b[12])<<40 | uint64(b[13])<<32 |
		uint64(b[14])<<24 | uint64(b[15])<<16 | uint64(b[16])<<8 | uint64(b[17])
	p.Count = uint16(b[18])<<8 | uint16(b[19])
	body := b[moldudp64.HeaderLen:]
	switch {
	case p.Seq == 0:
		return moldudp64.Packet{}, moldudp64.ErrSeqZero
	case p.Count == 0 || p.Count == moldudp64.EndOfSessionCount:
		if len(body) != 0 {
			return moldudp64.Packet{}, moldudp64.ErrTrailing
		}
		return p, nil
	case p.Seq > math.MaxUint64-uint64(p.Count):
		return moldudp64.Packet{}, moldudp64.ErrSeqOverflow
	}
	off := 0
	for range p.Count {
		if off+2 > len(body) {
			return moldudp64.Packet{}, moldudp64.ErrOverrun
		}
		off += 2 + int(body[off])<<8 + int(body[off+1])
	}
	if off > len(body) {
		return moldudp64.Packet{}, moldudp64.ErrOverrun
	}
	if off != len(body) {
		return moldudp64.Packet{}, moldudp64.ErrTrailing
	}
	p.Blocks = body
	return p, nil
}

// TestParseEveryCut: Parse accepts and rejects as refParse, with the same
// error and the same packet, every cut and extension of a packet whose
// blocks are 0, 1, 5 and 300 bytes long (a length prefix with both bytes
// set), under every count from 0 to 6 and the End of Session count.
func TestParseEveryCut(t *testing.T) {
	m300 := bytes.Repeat([]byte{'A'}, 300)
	good := packet(sess, 7, 4, nil, []byte("x"), []byte("hello"), m300)
	for _, count := range []uint16{0, 1, 2, 3, 4, 5, 6, moldudp64.EndOfSessionCount} {
		for n := 0; n <= len(good)+3; n++ {
			b := append(bytes.Clone(good), 0, 0, 1)[:n]
			if n >= moldudp64.HeaderLen {
				b[18], b[19] = byte(count>>8), byte(count)
			}
			p, err := moldudp64.Parse(b)
			rp, rerr := refParse(b)
			if err != rerr || p.Session != rp.Session || p.Seq != rp.Seq || p.Count != rp.Count ||
				!bytes.Equal(p.Blocks, rp.Blocks) || len(p.Blocks) != cap(p.Blocks) {
				t.Fatalf("count %d, %d bytes: Parse %+v %v, want %+v %v", count, n, p, err, rp, rerr)
			}
			// ParseInto, into a packet that holds another: written
			// whole when b is valid (a heartbeat's Blocks emptied), left
			// as it was when not.
			q := stale
			err = moldudp64.ParseInto(&q, b)
			want := rp
			if rerr != nil {
				want = stale
			}
			if err != rerr || q.Session != want.Session || q.Seq != want.Seq || q.Count != want.Count ||
				!bytes.Equal(q.Blocks, want.Blocks) || len(q.Blocks) != cap(q.Blocks) {
				t.Fatalf("count %d, %d bytes: ParseInto %+v %v, want %+v %v", count, n, q, err, want, rerr)
			}
		}
	}
}

// stale is a packet a ParseInto writes over (TestParseEveryCut).
var stale = moldudp64.Packet{Session: moldudp64.NewSession("STALE"), Seq: 99, Count: 1, Blocks: []byte{0, 1, 'z'}[:3:3]}
