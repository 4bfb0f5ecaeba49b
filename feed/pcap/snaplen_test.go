package pcap_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// pcapFile returns a little-endian pcap file header with snaplen and
// Ethernet link type, followed by records.
func pcapFile(snaplen uint32, records ...[]byte) []byte {
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h, 0xA1B2C3D4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], snaplen)
	binary.LittleEndian.PutUint32(h[20:], 1)
	for _, r := range records {
		h = append(h, r...)
	}
	return h
}

// pcapRecord returns a record header claiming caplen bytes, and data.
func pcapRecord(caplen uint32, data []byte) []byte {
	rec := make([]byte, 16)
	binary.LittleEndian.PutUint32(rec[8:], caplen)
	binary.LittleEndian.PutUint32(rec[12:], caplen)
	return append(rec, data...)
}

// TestSnaplenBounded: the reader allocates for a frame no more than a
// frame may hold (pcap.MaxSnaplen, libpcap's maximum), whatever the file
// header's snaplen and the record's length say: a 104-byte file with
// snaplen 2^32-1 and a record of 2^32-16 bytes had it allocate 4 GiB
// (found by FuzzReader). Such a record is an error; the file's frames
// within the bound, in a file of snaplen 2^32-1 or 0, read as any other
// (as libpcap reads them).
func TestSnaplenBounded(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := pcap.NewReader(bytes.NewReader(pcapFile(0xFFFFFFFF, pcapRecord(0xFFFFFFF0, make([]byte, 64)))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("a 104-byte file: Next allocated %d MiB (%v)", got>>20, err)
	}
	if err == nil || err == io.EOF {
		t.Fatalf("a record of 2^32-16 bytes: %v, want an error", err)
	}
	frame := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	for _, snaplen := range []uint32{0xFFFFFFFF, 0} {
		r, err := pcap.NewReader(bytes.NewReader(pcapFile(snaplen, pcapRecord(uint32(len(frame)), frame))))
		if err != nil {
			t.Fatal(err)
		}
		fr, err := r.Next()
		if err != nil || string(fr.Payload) != "payload" {
			t.Fatalf("snaplen %d: %q, %v", snaplen, fr.Payload, err)
		}
	}
}
