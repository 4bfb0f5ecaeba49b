package pcap_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// sll2Frame returns frame's IPv4 packet behind a Linux cooked v2 header,
// as tcpdump -i any writes it (libpcap 1.10 and later).
func sll2Frame(eth []byte) []byte {
	h := make([]byte, 20)
	copy(h[0:2], eth[12:14]) // protocol type
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
	h[10], h[11] = 2, 6                  // multicast, 6 address bytes
	copy(h[12:], eth[6:12])
	return append(h, eth[14:]...)
}

// TestReadCookedV2: captures of link type 276, Linux cooked v2, yield
// their datagrams, in pcap and pcapng. pcapgo keeps a link type as a
// byte, so the reader took 276 for 20 and counted every frame as of an
// unsupported link type; and it kept a pcapng file's interfaces by index
// across sections, so a second section (files joined with cat) read its
// frames by the first section's link types.
func TestReadCookedV2(t *testing.T) {
	eth := pcap.AppendUDPFrame(nil, src, group, 1, []byte("payload"))
	cooked := sll2Frame(eth)

	file := pcapFile(65535, pcapRecord(uint32(len(cooked)), cooked), pcapRecord(uint32(len(cooked)), cooked))
	binary.LittleEndian.PutUint32(file[20:], pcap.LinkLinuxSLL2)
	// ng returns a pcapng section of one interface of link type link
	// holding frames.
	ng := func(link uint16, frames ...[]byte) []byte {
		b := ngBlock(0x0A0D0D0A, le32(0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF))
		b = append(b, ngBlock(1, le32(uint32(link), 65535))...)
		for _, f := range frames {
			pad := make([]byte, (4-len(f)%4)%4)
			b = append(b, ngBlock(6, le32(0, 0, 0, uint32(len(f)), uint32(len(f))), f, pad)...)
		}
		return b
	}
	for _, c := range []struct {
		name string
		file []byte
	}{
		{"pcap", file},
		{"pcapng", ng(pcap.LinkLinuxSLL2, cooked, cooked)},
		{"pcapng, cooked v2 then Ethernet", append(ng(pcap.LinkLinuxSLL2, cooked), ng(pcap.LinkEthernet, eth)...)},
		{"pcapng, Ethernet then cooked v2", append(ng(pcap.LinkEthernet, eth), ng(pcap.LinkLinuxSLL2, cooked)...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := pcap.NewReader(bytes.NewReader(c.file))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				fr, err := r.Next()
				if err != nil {
					t.Fatalf("frame %d: %v (skipped %v)", i+1, err, r.Stats().Skipped)
				}
				if string(fr.Payload) != "payload" || fr.Dst != group || fr.Src != src {
					t.Fatalf("frame %d: %+v", i+1, fr)
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after 2 frames: %v", err)
			}
		})
	}
}
