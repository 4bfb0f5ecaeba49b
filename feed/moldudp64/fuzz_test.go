package moldudp64_test

import (
	"bytes"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// FuzzParsePacket: Parse never panics, fails only with the documented
// sentinels and with refParse's (the same error for every datagram, as
// TestParseEveryCut for the cuts of one packet), and an accepted packet
// accounts for every byte and re-encodes to the datagram. The Tracker is
// fed every accepted packet and must keep its expectation monotonic
// within a session.
func FuzzParsePacket(f *testing.F) {
	m := []byte("A-message")
	f.Add(packet(sess, 1, 2, m, m))
	f.Add(packet(sess, 9, 0))
	f.Add(packet(sess, 9, moldudp64.EndOfSessionCount))
	f.Add(packet(sess, 1, 3, m, m))
	f.Add(append(packet(sess, 1, 1, m), 0))
	f.Add(packet(sess, 1<<64-1, 1, m))
	f.Fuzz(func(t *testing.T, data []byte) {
		var pe moldudp64.ParseErrors
		p, err := moldudp64.Parse(data)
		pe.Count(err)
		if pe.Other != 0 {
			t.Fatalf("undocumented error %v", err)
		}
		if _, rerr := refParse(data); err != rerr {
			t.Fatalf("Parse: %v, refParse: %v", err, rerr)
		}
		if r, err := moldudp64.ParseRequest(data); err == nil && !bytes.Equal(r.Append(nil), data) {
			t.Fatalf("request re-encodes to %x", r.Append(nil))
		}
		if err != nil {
			return
		}
		if moldudp64.HeaderLen+len(p.Blocks) != len(data) {
			t.Fatalf("blocks %d of %d bytes", len(p.Blocks), len(data))
		}
		if !bytes.Equal(p.Append(nil), data) {
			t.Fatal("re-encoded packet differs")
		}
		it := p.Iter()
		n, size := 0, 0
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			n++
			size += 2 + len(msg)
		}
		if n != p.Messages() || size != len(p.Blocks) {
			t.Fatalf("iterated %d messages / %d bytes, packet says %d / %d", n, size, p.Messages(), len(p.Blocks))
		}
		var tr moldudp64.Tracker
		v := tr.TrackPacket(p)
		if v.Kind == moldudp64.KindMalformed || v.Next < p.Seq {
			t.Fatalf("valid packet tracked as %+v", v)
		}
		if v2 := tr.TrackPacket(p); v2.Kind != moldudp64.KindDuplicate && p.Messages() > 0 {
			t.Fatalf("second copy tracked as %+v", v2)
		}
	})
}

// FuzzTracker drives a Tracker and the naive map-based model with the same
// packets, decoded from the input 4 bytes at a time: a signed offset from the
// expected sequence number and a message count (bit 15 set: heartbeat). Every
// Verdict and the Missing list must match.
func FuzzTracker(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 0, 10, 0, 5, 0xff, 0xf0, 0, 3, 0, 0, 0x80, 0})
	f.Add([]byte{0x10, 0, 0, 1, 0xe0, 0, 0, 100, 0xf0, 0, 0, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr moldudp64.Tracker
		ref := naiveTracker{seen: map[uint64]bool{}}
		for len(data) >= 4 {
			off := int64(int16(uint16(data[0])<<8 | uint16(data[1])))
			raw := uint16(data[2])<<8 | uint16(data[3])
			data = data[4:]
			count := raw & 0x7F
			if raw&0x8000 != 0 {
				count = 0
			}
			base := int64(max(ref.next, 1))
			seq := uint64(max(base+off, 1))
			want := ref.track(seq, count)
			got := tr.Track(sess, seq, count)
			if got != want {
				t.Fatalf("Track(%d, %d) = %+v\nmodel %+v", seq, count, got, want)
			}
		}
		if got, want := tr.Missing(nil), ref.missing(); !rangesEqual(got, want) {
			t.Fatalf("Missing = %v\nmodel %v", got, want)
		}
	})
}
