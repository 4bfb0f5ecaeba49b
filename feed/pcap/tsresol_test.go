package pcap_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// ngOption returns a little-endian pcapng option, padded to 4 bytes.
func ngOption(code uint16, v []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return append(b, make([]byte, (4-len(v)%4)%4)...)
}

// ngEPB returns an Enhanced Packet Block of interface iface, timestamp
// ts in its units, holding frame.
func ngEPB(iface uint32, ts uint64, frame []byte) []byte {
	pad := make([]byte, (4-len(frame)%4)%4)
	return ngBlock(6, le32(iface, uint32(ts>>32), uint32(ts), uint32(len(frame)), uint32(len(frame))), frame, pad)
}

// TestNgTimestampResolutions: a pcapng section of interfaces of other link
// types and timestamp units each (microseconds by default, nanoseconds,
// 2^-20 and 2^-32 s, 10^-12 s with an if_tsoffset), frames interleaved,
// reads each frame's time exactly in its interface's units and decodes it
// by its interface's link type. pcapgo scaled a binary fraction by an
// integer factor: 2^-20 s as 953 ns, 2^-32 s as a quarter of a ns.
func TestNgTimestampResolutions(t *testing.T) {
	eth := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	cooked := sll2Frame(eth)
	eoo := ngOption(0, nil)
	idb := func(link uint16, opts ...[]byte) []byte {
		return ngBlock(1, append([][]byte{le32(uint32(link), 65535)}, append(opts, eoo)...)...)
	}
	b := ngBlock(0x0A0D0D0A, le32(0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF))
	b = append(b, ngBlock(1, le32(pcap.LinkEthernet, 65535))...)
	b = append(b, idb(pcap.LinkLinuxSLL2, ngOption(9, []byte{9}))...)
	b = append(b, idb(pcap.LinkIPv4, ngOption(9, []byte{0x80 | 20}))...)
	b = append(b, idb(pcap.LinkEthernet, ngOption(9, []byte{0x80 | 32}))...)
	b = append(b, idb(pcap.LinkEthernet, ngOption(9, []byte{12}), ngOption(14, binary.LittleEndian.AppendUint64(nil, 1_700_000_000)))...)
	b = append(b, ngEPB(0, 1_700_000_000_123_456, eth)...)
	b = append(b, ngEPB(1, 1_700_000_000_123_456_789, cooked)...)
	b = append(b, ngEPB(2, 1_700_000_000<<20|1<<19, eth[14:])...)
	b = append(b, ngEPB(3, 1_700_000_000<<32|3<<30, eth)...)
	b = append(b, ngEPB(4, 2_000_000_000_123, eth)...) // 2.000000000123 s after the offset
	b = append(b, ngEPB(3, 1_700_000_001<<32|(1<<32-1), eth)...)
	want := []int64{1_700_000_000_123_456_000, 1_700_000_000_123_456_789, 1_700_000_000_500_000_000,
		1_700_000_000_750_000_000, 1_700_000_002_000_000_000, 1_700_000_001_999_999_999}
	readTimes(t, b, want)
}

// readTimes reads the capture b and wants its datagrams to read
// "payload", at the times want, and no more.
func readTimes(t *testing.T, b []byte, want []int64) {
	t.Helper()
	r, err := pcap.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		fr, err := r.Next()
		if err != nil {
			t.Fatalf("datagram %d: %v (skipped %v)", i+1, err, r.Stats().Skipped)
		}
		if fr.Time != w || string(fr.Payload) != "payload" {
			t.Errorf("datagram %d: time %d, payload %q; want %d", i+1, fr.Time, fr.Payload, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after %d datagrams: %v", len(want), err)
	}
}

// TestNgTimestampResolutionTooFine: an interface whose if_tsresol is
// finer than a 64-bit timestamp can count (10^-64 or 2^-64 s and finer;
// libpcap refuses above 10^-19 and 2^-63) is an error, not a panic.
func TestNgTimestampResolutionTooFine(t *testing.T) {
	eth := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	for _, res := range []byte{20, 64, 127, 0x80 | 64, 0xFF} {
		b := ngBlock(0x0A0D0D0A, le32(0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF))
		b = append(b, ngBlock(1, le32(pcap.LinkEthernet, 65535), ngOption(9, []byte{res}), ngOption(0, nil))...)
		b = append(b, ngEPB(0, 1, eth)...)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("if_tsresol %#x: panic: %v", res, p)
				}
			}()
			r, err := pcap.NewReader(bytes.NewReader(b))
			if err == nil {
				_, err = r.Next()
			}
			if err == nil {
				t.Errorf("if_tsresol %#x: read a frame, want an error", res)
			} else {
				t.Logf("if_tsresol %#x: %v", res, err)
			}
		}()
	}
}

// TestNgSimplePacketBlockTime: a Simple Packet Block carries no timestamp;
// its frame takes the time of the frame before it (any block's with a
// timestamp, a skipped frame's too), the Unix epoch (0) when none came
// before it, so that replay --feed's arbitration, clocked by the frames'
// times, never sees time run back to year 1 (Go's zero time, which
// pcapgo gives it) and forward again.
func TestNgSimplePacketBlockTime(t *testing.T) {
	eth := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	tcp := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	tcp[14+9] = 6
	spb := func(frame []byte) []byte {
		pad := make([]byte, (4-len(frame)%4)%4)
		return ngBlock(3, le32(uint32(len(frame))), frame, pad)
	}
	b := ngBlock(0x0A0D0D0A, le32(0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF))
	b = append(b, ngBlock(1, le32(pcap.LinkEthernet, 0), ngOption(9, []byte{9}), ngOption(0, nil))...)
	b = append(b, spb(eth)...)
	b = append(b, ngEPB(0, 1_700_000_000_000_000_001, eth)...)
	b = append(b, spb(eth)...)
	b = append(b, ngEPB(0, 1_700_000_000_000_000_002, tcp)...) // skipped, not UDP
	b = append(b, spb(eth)...)
	b = append(b, spb(eth)...)
	readTimes(t, b, []int64{0, 1_700_000_000_000_000_001, 1_700_000_000_000_000_001, 1_700_000_000_000_000_002, 1_700_000_000_000_000_002})
}
