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

// TestRecordPastSnaplen: a pcap record longer than the file header's
// snaplen (a writer that puts a snaplen in the header whatever it writes,
// dpkt's 1500) is read whole, as Wireshark reads it. pcapgo refused it,
// and replay stopped at the first frame: 'capture length exceeds snap
// length: 84 > 60'.
func TestRecordPastSnaplen(t *testing.T) {
	frame := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload of a frame longer than the snaplen"))
	r, err := pcap.NewReader(bytes.NewReader(pcapFile(60, pcapRecord(uint32(len(frame)), frame), pcapRecord(uint32(len(frame)), frame))))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		fr, err := r.Next()
		if err != nil || string(fr.Payload) != "payload of a frame longer than the snaplen" {
			t.Fatalf("frame %d of %d bytes, snaplen 60: %q, %v", i+1, len(frame), fr.Payload, err)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after 2 frames: %v", err)
	}
}

// ngBlock returns a little-endian pcapng block of type typ and body.
func ngBlock(typ uint32, body ...[]byte) []byte {
	return ngBlockIn(binary.LittleEndian, typ, body...)
}

// ngBlockIn returns a pcapng block of type typ and body in byte order o.
func ngBlockIn(o binary.AppendByteOrder, typ uint32, body ...[]byte) []byte {
	n := 12
	for _, b := range body {
		n += len(b)
	}
	b := o.AppendUint32(nil, typ)
	b = o.AppendUint32(b, uint32(n))
	for _, p := range body {
		b = append(b, p...)
	}
	return o.AppendUint32(b, uint32(n))
}

func le32(v ...uint32) []byte { return u32In(binary.LittleEndian, v...) }

// u32In returns v in byte order o.
func u32In(o binary.AppendByteOrder, v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = o.AppendUint32(b, x)
	}
	return b
}

// ngFile returns a pcapng section of one Ethernet interface of snaplen
// and an Enhanced Packet Block claiming caplen bytes, holding data.
func ngFile(snaplen, caplen uint32, data []byte) []byte {
	shb := ngBlock(0x0A0D0D0A, le32(0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF))
	idb := ngBlock(1, le32(1, snaplen))
	pad := make([]byte, (4-len(data)%4)%4)
	epb := ngBlock(6, le32(0, 0, 0, caplen, caplen), data, pad)
	return append(append(shb, idb...), epb...)
}

// TestNgSnaplenBounded is TestSnaplenBounded for pcapng: an interface's
// snaplen of 2^32-1 made the reader allocate 4 GiB for a frame of a few
// bytes, a packet block claiming 2^32-16 bytes in 48 as much.
func TestNgSnaplenBounded(t *testing.T) {
	frame := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	for _, c := range []struct {
		name            string
		snaplen, caplen uint32
		ok              bool
	}{
		{"snaplen 2^32-1", 0xFFFFFFFF, uint32(len(frame)), true},
		{"snaplen 0", 0, uint32(len(frame)), true},
		{"caplen 2^32-16", 0, 0xFFFFFFF0, false},
		{"caplen past its block", 65535, uint32(len(frame)) + 64, false},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := pcap.NewReader(bytes.NewReader(ngFile(c.snaplen, c.caplen, frame)))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		fr, err := r.Next()
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s: Next allocated %d MiB (%v)", c.name, got>>20, err)
		}
		if c.ok && (err != nil || string(fr.Payload) != "payload") {
			t.Errorf("%s: %q, %v", c.name, fr.Payload, err)
		}
		if !c.ok && (err == nil || err == io.EOF) {
			t.Errorf("%s: %v, want an error", c.name, err)
		}
	}
}

// beBlock returns a big-endian pcapng block of type typ and body.
func beBlock(typ uint32, body ...[]byte) []byte {
	return ngBlockIn(binary.BigEndian, typ, body...)
}

func be32(v ...uint32) []byte { return u32In(binary.BigEndian, v...) }

// beSection returns a big-endian pcapng section (as a big-endian machine
// writes it) of one interface of link type link and snaplen, and a
// packet block claiming caplen bytes, holding frame.
func beSection(link uint16, snaplen, caplen uint32, frame []byte) []byte {
	b := beBlock(0x0A0D0D0A, be32(0x1A2B3C4D, 1<<16, 0xFFFFFFFF, 0xFFFFFFFF))
	b = append(b, beBlock(1, be32(uint32(link)<<16, snaplen))...)
	pad := make([]byte, (4-len(frame)%4)%4)
	return append(b, beBlock(6, be32(0, 0, 5, caplen, uint32(len(frame))), frame, pad)...)
}

// TestNgBigEndian: a big-endian section, alone or after a little-endian
// one (files of two machines joined with cat), is read in its byte order,
// its interfaces its own, its snaplen and captured lengths bounded as a
// little-endian section's. The reader's guard read every block's type
// as little-endian, so that it saw no interface nor packet in a
// big-endian section: every frame was skipped as of an unsupported link
// type, and a snaplen of 2^32-1 went to pcapgo unbounded.
func TestNgBigEndian(t *testing.T) {
	eth := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	ip := eth[14:]
	for _, c := range []struct {
		name   string
		file   []byte
		frames int
		ok     bool
	}{
		{"big-endian", beSection(pcap.LinkIPv4, 65535, uint32(len(ip)), ip), 1, true},
		{"little then big-endian", append(ngFile(65535, uint32(len(eth)), eth), beSection(pcap.LinkIPv4, 65535, uint32(len(ip)), ip)...), 2, true},
		{"big then little-endian", append(beSection(pcap.LinkEthernet, 65535, uint32(len(eth)), eth), ngFile(65535, uint32(len(eth)), eth)...), 2, true},
		{"big-endian, snaplen 2^32-1", beSection(pcap.LinkEthernet, 0xFFFFFFFF, uint32(len(eth)), eth), 1, true},
		{"big-endian, caplen past its block", beSection(pcap.LinkEthernet, 65535, uint32(len(eth))+64, eth), 0, false},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := pcap.NewReader(bytes.NewReader(c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i := range c.frames {
			fr, err := r.Next()
			if err != nil || string(fr.Payload) != "payload" {
				t.Fatalf("%s: frame %d: %q, %v (skipped: %s)", c.name, i+1, fr.Payload, err, st(r))
			}
		}
		_, err = r.Next()
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s: reading allocated %d MiB", c.name, got>>20)
		}
		if c.ok && err != io.EOF {
			t.Errorf("%s: after %d frames: %v, want io.EOF", c.name, c.frames, err)
		}
		if !c.ok && (err == nil || err == io.EOF) {
			t.Errorf("%s: %v, want an error", c.name, err)
		}
	}
}

func st(r *pcap.Reader) string { s := r.Stats(); return s.SkippedSummary() }
