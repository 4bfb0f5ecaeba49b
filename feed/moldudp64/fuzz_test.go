package moldudp64_test

import (
	"bytes"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// FuzzParsePacket: Parse never panics, fails only with the documented
// sentinels, and an accepted packet accounts for every byte and re-encodes to
// the datagram. The Tracker is fed every accepted packet and must keep its
// expectation monotonic within a session.
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
