package pcap_test

import (
	"bytes"
	"encoding/binary"
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
