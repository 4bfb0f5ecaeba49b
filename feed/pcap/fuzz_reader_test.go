package pcap_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// FuzzReader reads arbitrary files as captures: NewReader fails or the
// reader returns frames until io.EOF or an error, never panicking, with
// at most a frame per 12 bytes of file, its counters adding up at every
// frame (each frame read is a datagram returned or a skip counted), and
// no more memory than its buffers and a frame of MaxSnaplen whatever the
// headers claim.
func FuzzReader(f *testing.F) {
	frame := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	var w bytes.Buffer
	pw, _ := pcap.NewWriter(&w)
	pw.WriteUDP(1, src, group, []byte("one"))
	pw.WriteUDP(2, src, group, []byte("two"))
	pw.Flush()
	f.Add(w.Bytes())
	f.Add(pcapFile(0, pcapRecord(uint32(len(frame)), frame)))
	f.Add(pcapFile(0xFFFFFFFF, pcapRecord(0xFFFFFFF0, frame)))
	f.Add(ngFile(65535, uint32(len(frame)), frame))
	f.Add(ngFile(0, 0xFFFFFFF0, frame))
	// An interface of nanosecond timestamps (if_tsresol 9), then one of
	// 2^-20 s: pcapgo divided by zero for a resolution of 2^-64 s.
	ts := ngBlock(0x0A0D0D0A, le32(0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF))
	ts = append(ts, ngBlock(1, le32(pcap.LinkEthernet, 65535), ngOption(9, []byte{9}), ngOption(0, nil))...)
	ts = append(ts, ngBlock(1, le32(pcap.LinkEthernet, 65535), ngOption(9, []byte{0x80 | 20}), ngOption(0, nil))...)
	f.Add(append(append(ts, ngEPB(0, 1e18, frame)...), ngEPB(1, 1<<40, frame)...))
	// A big-endian section after a little-endian one.
	f.Add(append(ngFile(65535, uint32(len(frame)), frame), beSection(pcap.LinkEthernet, 0xFFFFFFFF, uint32(len(frame)), frame)...))
	cooked := sll2Frame(frame) // link type 276: a byte to pcapgo
	sll2 := pcapFile(65535, pcapRecord(uint32(len(cooked)), cooked))
	binary.LittleEndian.PutUint32(sll2[20:], pcap.LinkLinuxSLL2)
	f.Add(sll2)
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := pcap.NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		frames := 0
		for {
			fr, err := r.Next()
			st := r.Stats()
			if st.Frames != st.Datagrams+st.Malformed() {
				t.Fatalf("stats %+v: frames are not datagrams plus skipped", st)
			}
			if errors.Is(err, io.EOF) || err != nil {
				break
			}
			frames++
			if fr.Index != st.Frames || len(fr.Payload) > pcap.MaxSnaplen || uint64(frames) != st.Datagrams {
				t.Fatalf("frame %d: index %d, %d bytes; stats %+v", frames, fr.Index, len(fr.Payload), st)
			}
			if st.Frames > uint64(len(data)/12+1) {
				t.Fatalf("%d frames from %d bytes", st.Frames, len(data))
			}
		}
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
			t.Fatalf("reading %d bytes allocated %d MiB", len(data), got>>20)
		}
	})
}
