package pcap_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/pcaptest"
)

// fragments splits an Ethernet frame of one IPv4 datagram into frames of
// fragments of the given payload sizes (netlab.Fragments).
func fragments(frame []byte, sizes ...int) [][]byte { return netlab.Fragments(frame, 14, sizes...) }

// TestReaderReassembles: the reader reassembles IPv4 fragments as the
// kernel does for the socket backends (in any order; a partial overlap
// drops the datagram, a duplicate the fragment alone; an incomplete
// datagram is counted at the end or at the timeout), and counts the
// frames of what it drops by reason.
func TestReaderReassembles(t *testing.T) {
	src := netip.MustParseAddrPort("10.1.2.3:40000")
	dst := netip.MustParseAddrPort("239.255.130.7:26477")
	payload := func(id uint16, n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(int(id) + i)
		}
		return p
	}
	datagram := func(id uint16) []byte { return pcap.AppendUDPFrame(nil, src, dst, id, payload(id, 100)) }
	type timed struct {
		at int64
		f  []byte
	}
	var frames []timed
	add := func(at int64, fs ...[]byte) {
		for _, f := range fs {
			frames = append(frames, timed{at, f})
		}
	}
	inOrder := fragments(datagram(1), 48, 48)         // 108 bytes of UDP: 48, 48, 12
	add(1, inOrder...)                                // delivered
	rev := fragments(datagram(2), 32, 32, 32)         // 32, 32, 32, 12
	add(2, rev[3], rev[1], rev[0], rev[2])            // delivered
	dup := fragments(datagram(3), 56)                 // 56, 52
	add(3, dup[0], dup[0], dup[1])                    // delivered, one duplicate dropped
	over := fragments(datagram(4), 56)                // 56, 52
	overlap := fragments(datagram(4), 48)             // 48, 60: starts inside the first
	add(4, over[0], overlap[1], over[1])              // datagram dropped (2 frames), then the last alone held
	add(5, fragments(datagram(5), 56)[0])             // incomplete at the timeout
	add(5+int64(pcap.ReassemblyTimeout), datagram(6)) // whole, after the timeout
	badSum := fragments(datagram(7), 56)
	badSum[1][len(badSum[1])-1] ^= 1
	binary.BigEndian.PutUint16(badSum[0][14+20+6:], 0x1234) // a UDP checksum that fails
	add(6+int64(pcap.ReassemblyTimeout), badSum...)
	add(7+int64(pcap.ReassemblyTimeout), fragments(datagram(8), 56)[1]) // incomplete at the end

	raw := make([][]byte, len(frames))
	for i, f := range frames {
		raw[i] = f.f
	}
	dgs, st, err := pcaptest.ReadAsCapture(raw, func(i int) int64 { return frames[i].at })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fr := range dgs {
		id := fr.Payload[0]
		if !bytes.Equal(fr.Payload, payload(uint16(id), 100)) || fr.Src != src || fr.Dst != dst {
			t.Errorf("datagram %d: %+v", id, fr.UDP)
		}
		got = append(got, fmt.Sprintf("%d@%d#%d", id, fr.Time, fr.Index))
	}
	want := fmt.Sprint([]string{"1@1#3", "2@2#7", "3@3#10", fmt.Sprintf("6@%d#15", 5+int64(pcap.ReassemblyTimeout))})
	if fmt.Sprint(got) != want {
		t.Errorf("datagrams %v, want %v (id@time#frame)", got, want)
	}
	if st.Frames != uint64(len(frames)) || st.Datagrams != 4 || st.Reassembled != 3 || st.Fragments != 9 {
		t.Errorf("frames %d (want %d), datagrams %d (4), reassembled %d (3), fragments %d (9)", st.Frames, len(frames), st.Datagrams, st.Reassembled, st.Fragments)
	}
	// The overlap: the duplicate, then datagram 4's two frames; the
	// incomplete: 4's last alone (held until the timeout), 5's at the
	// timeout, 8's at the end.
	if st.Skipped[pcap.FragmentOverlap] != 3 || st.Skipped[pcap.Fragment] != 3 || st.Skipped[pcap.BadChecksum] != 2 {
		t.Errorf("skipped %s; want IPv4 fragment incomplete 3, bad checksum 2, IPv4 fragment overlap 3", st.SkippedSummary())
	}
	if n := st.Datagrams - st.Reassembled + st.Fragments + st.Malformed() + st.Markers; n != st.Frames {
		t.Errorf("frames %d, accounted for %d", st.Frames, n)
	}
}

// TestReaderFragmentLimit: fragments beyond what the reassembly holds
// (ReassemblyMemory) are dropped, as the kernel drops them, and counted.
func TestReaderFragmentLimit(t *testing.T) {
	src := netip.MustParseAddrPort("10.1.2.3:40000")
	dst := netip.MustParseAddrPort("239.255.130.7:26477")
	const size = 60000
	n := pcap.ReassemblyMemory/size + 2
	var frames [][]byte
	for id := range n {
		frames = append(frames, fragments(pcap.AppendUDPFrame(nil, src, dst, uint16(id), make([]byte, size)), size)[0])
	}
	dgs, st, err := pcaptest.ReadAsCapture(frames, func(int) int64 { return 1 })
	if err != nil || len(dgs) != 0 {
		t.Fatalf("%d datagrams, %v; want none", len(dgs), err)
	}
	held := pcap.ReassemblyMemory / size
	if st.Skipped[pcap.FragmentLimit] != uint64(n-held) || st.Skipped[pcap.Fragment] != uint64(held) {
		t.Errorf("skipped %s; want IPv4 fragment over limit %d, IPv4 fragment incomplete %d", st.SkippedSummary(), n-held, held)
	}
}

// TestReaderFragmentTooFar: a datagram whose source sent
// ReassemblyMaxDist or more fragments between two of its own loses what it held
// (IPv4 fragment too far) and is begun again from the later one, as the
// kernel does (net.ipv4.ipfrag_max_dist); another source's fragments do
// not count. TestReplayDecodesAsLive (feed/rx) checks the kernel.
func TestReaderFragmentTooFar(t *testing.T) {
	src := netip.MustParseAddrPort("10.1.2.3:40000")
	other := netip.MustParseAddrPort("10.1.2.4:40000")
	dst := netip.MustParseAddrPort("239.255.130.7:26477")
	// n fragments of a datagram of 600 bytes.
	pieces := func(from netip.AddrPort, id uint16, n int) [][]byte {
		sizes := make([]int, n)
		for i := range sizes {
			sizes[i] = 8
		}
		sizes[n-1] = 1480
		return fragments(pcap.AppendUDPFrame(nil, from, dst, id, make([]byte, 600)), sizes...)
	}
	var frames [][]byte
	for i, between := range []int{pcap.ReassemblyMaxDist - 1, pcap.ReassemblyMaxDist} {
		pair := fragments(pcap.AppendUDPFrame(nil, src, dst, uint16(10*i+1), make([]byte, 100)), 56)
		frames = append(frames, pair[0])
		frames = append(frames, pieces(other, uint16(10*i+2), 2*between)...) // not src's
		frames = append(frames, pieces(src, uint16(10*i+3), between)...)
		frames = append(frames, pair[1])
	}
	dgs, st, err := pcaptest.ReadAsCapture(frames, func(int) int64 { return 1 })
	if err != nil {
		t.Fatal(err)
	}
	// The first pair and the four datagrams between the pairs; the
	// second pair's first fragment too far, its second incomplete.
	if len(dgs) != 5 || st.Skipped[pcap.FragmentTooFar] != 1 || st.Skipped[pcap.Fragment] != 1 {
		t.Errorf("%d datagrams, skipped %s; want 5, IPv4 fragment too far 1, IPv4 fragment incomplete 1", len(dgs), st.SkippedSummary())
	}
	if n := st.Datagrams - st.Reassembled + st.Fragments + st.Malformed() + st.Markers; n != st.Frames {
		t.Errorf("frames %d, accounted for %d", st.Frames, n)
	}
}

// TestReaderReassemblesPadded: a fragment in a frame padded to Ethernet's
// minimum (60 bytes) is taken to its IPv4 total length, as the kernel
// trims it, not with the padding as its payload (which overlapped the
// next fragment and dropped the datagram).
func TestReaderReassemblesPadded(t *testing.T) {
	src := netip.MustParseAddrPort("10.1.2.3:40000")
	dst := netip.MustParseAddrPort("239.255.130.7:26477")
	p := make([]byte, 100)
	for i := range p {
		p[i] = byte(i)
	}
	fs := fragments(pcap.AppendUDPFrame(nil, src, dst, 1, p), 48, 8, 56) // 48, 8, 52
	fs[1] = append(fs[1], make([]byte, 60-len(fs[1]))...)                // 42 bytes padded to 60
	dgs, st, err := pcaptest.ReadAsCapture(fs, func(int) int64 { return 1 })
	if err != nil {
		t.Fatal(err)
	}
	if len(dgs) != 1 || !bytes.Equal(dgs[0].Payload, p) || st.Reassembled != 1 || st.Fragments != 3 {
		t.Fatalf("%d datagrams, %d reassembled from %d fragments, skipped %s; want the datagram reassembled from 3", len(dgs), st.Reassembled, st.Fragments, st.SkippedSummary())
	}
}
