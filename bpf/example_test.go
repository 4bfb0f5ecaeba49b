package bpf_test

import (
	"encoding/binary"
	"fmt"

	"github.com/marketfeed/feedhandler/bpf"
)

func ExampleParseFrame() {
	// An 802.1Q-tagged Ethernet frame carrying IPv4/UDP 10.0.0.1:5000 ->
	// 233.54.12.111:26400 with the payload "hi".
	frame := []byte{
		0x01, 0x00, 0x5e, 0x36, 0x0c, 0x6f, 0x02, 0, 0, 0, 0, 1, // MACs
		0x81, 0x00, 0x00, 0x64, // VLAN 100
		0x08, 0x00, // IPv4
		0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 233, 54, 12, 111,
		0, 0, 0, 0, 0, 10, 0, 0, 'h', 'i',
	}
	binary.BigEndian.PutUint16(frame[38:], 5000)
	binary.BigEndian.PutUint16(frame[40:], 26400)

	d, class := bpf.ParseFrame(frame)
	fmt.Println(class, d.Src, d.Dst, string(d.Payload))

	_, class = bpf.ParseFrame(frame[:40]) // cut inside the UDP header
	fmt.Println(class)
	// Output:
	// udp 10.0.0.1:5000 233.54.12.111:26400 hi
	// malformed
}

func ExampleParseMeta() {
	// The 12 bytes the program puts in front of a redirected frame, in
	// native byte order: magic, then the CLOCK_TAI time in two halves.
	var meta [bpf.MetaLen]byte
	tai := int64(1_790_000_037_000_000_001)
	binary.NativeEndian.PutUint32(meta[0:], bpf.MetaMagic)
	binary.NativeEndian.PutUint32(meta[4:], uint32(tai&0xffffffff))
	binary.NativeEndian.PutUint32(meta[8:], uint32(tai>>32))

	got, ok := bpf.ParseMeta(meta[:])
	taiOffset := int64(37e9) // from bpf.TAIOffset()
	fmt.Println(ok, got == tai, got-taiOffset)

	bpf.ClearMeta(meta[:]) // before the frame goes back to the kernel
	_, ok = bpf.ParseMeta(meta[:])
	fmt.Println(ok)
	// Output:
	// true true 1790000000000000001
	// false
}
