package exchange

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

func TestFileSource(t *testing.T) {
	var msgs [][]byte
	for i := range 300 {
		f := itch.SystemEventFields{Header: itch.Header{Locate: uint16(i), Timestamp: uint64(i) * 1000}, EventCode: 'O'}
		msgs = append(msgs, f.Append(nil))
	}
	path := filepath.Join(t.TempDir(), "day.itch")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := dayfile.NewWriter(file)
	for _, m := range msgs {
		if err := w.WriteMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	file.Close()

	src, err := OpenFile(path, FileOptions{Session: "TEST", FirstSeq: 10, MaxPacket: 200, EndOfSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var got [][]byte
	next, packets, eos := uint64(10), 0, false
	for p := range src.Packets() {
		pkt, err := moldudp64.Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > 200 {
			t.Fatalf("packet of %d bytes > MaxPacket 200", len(p))
		}
		if pkt.Session != moldudp64.NewSession("TEST") || pkt.Seq != next {
			t.Fatalf("packet session %q seq %d, want TEST %d", pkt.Session, pkt.Seq, next)
		}
		if pkt.EndOfSession() {
			eos = true
			continue
		}
		it := pkt.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			got = append(got, bytes.Clone(m))
		}
		next += uint64(pkt.Count)
		packets++
	}
	if err := src.Err(); err != nil {
		t.Fatal(err)
	}
	if !eos || len(got) != len(msgs) || src.Messages != uint64(len(msgs)) || src.Sent != uint64(packets+1) {
		t.Fatalf("eos %v, %d messages in %d packets (source says %d in %d), want %d", eos, len(got), packets, src.Messages, src.Sent, len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}

// TestFileSourcePacketSize: a packet size that cannot hold a MoldUDP64
// header and a block, or that no IPv4 datagram carries, is an error from
// OpenFile (feedhandler send -max-packet), not a panic in the builder.
func TestFileSourcePacketSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.itch")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{-1, 10, 21, 65508, 70000} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("packet size %d: panic %v", size, p)
				}
			}()
			src, err := OpenFile(path, FileOptions{MaxPacket: size})
			if err == nil {
				src.Close()
				t.Fatalf("packet size %d accepted", size)
			}
		}()
	}
	for _, size := range []int{0, 22, 1400, 65507} {
		src, err := OpenFile(path, FileOptions{MaxPacket: size})
		if err != nil {
			t.Fatalf("packet size %d: %v", size, err)
		}
		src.Close()
	}
}

// TestFileSourceSessionLength: a session name longer than MoldUDP64's 10
// characters is an error (feedhandler send -session), not cut to its first
// 10 in the packets.
func TestFileSourceSessionLength(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.itch")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if src, err := OpenFile(path, FileOptions{Session: "SESSION0001X"}); err == nil {
		src.Close()
		t.Fatal("session of 12 characters accepted")
	}
	src, err := OpenFile(path, FileOptions{Session: "SESSION001"})
	if err != nil {
		t.Fatalf("session of 10 characters: %v", err)
	}
	src.Close()
}
