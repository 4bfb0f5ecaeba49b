package bpf

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// FuzzParseFrame checks that ParseFrame never panics, returns a payload
// inside the frame, and agrees with the loaded program (BPF_PROG_TEST_RUN)
// on every frame: malformed or not, line or not, on which VLAN (a line on
// the interface and on VLAN 100 share one pair, another pair has only a
// VLAN 100 line), and to which MAC address.
func FuzzParseFrame(f *testing.F) {
	for _, tc := range frameCases() {
		f.Add(tc.frame)
	}
	p, err := LoadWith(LoadOptions{VLANLines: true})
	if err != nil && !errors.Is(err, ErrNotSupported) {
		f.Fatal(err)
	}
	if p != nil {
		defer p.Close()
		for _, err := range []error{
			p.SetLine(testGroup, 26400, 0, netip.Addr{}),
			p.SetVLANLine(100, testGroup, 26400, 1, netip.Addr{}),
			p.SetVLANLine(100, testGroup, 26401, 2, netip.Addr{}),
			p.SetMAC(testMAC),
		} {
			if err != nil {
				f.Fatal(err)
			}
		}
	} else {
		f.Logf("program not loadable here, checking ParseFrame alone: %v", err)
	}
	line := netip.AddrPortFrom(testGroup, 26400)
	vlanOnly := netip.AddrPortFrom(testGroup, 26401)
	f.Add(frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: vlanOnly, vlans: []uint16{0x8100}}.bytes())
	f.Add(frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: vlanOnly, vlans: []uint16{0x8100}, vids: []uint16{200}}.bytes())
	f.Add(frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: vlanOnly}.bytes())
	f.Add(frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: vlanOnly, dstMAC: otherMAC}.bytes())
	f.Add(frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: line, dstMAC: testMAC, vlans: []uint16{0x8100}}.bytes())
	f.Fuzz(func(t *testing.T, frame []byte) {
		d, class := ParseFrame(frame)
		if class == ClassUDP {
			if len(d.Payload) > 0 && !bytes.Contains(frame, d.Payload) {
				t.Fatalf("payload not within the frame")
			}
			// The receive thread's checks after a match read only
			// within the headers (a panic fails the run).
			d.SourceOK()
			d.OptionsOK()
			d.ChecksumOK()
		} else if d.Payload != nil {
			t.Fatalf("class %v with a payload", class)
		}
		// The kernel's test run needs at least an Ethernet header and at
		// most about a page.
		if p == nil || len(frame) < 14 || len(frame) > 3000 {
			return
		}
		before, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		ret, err := p.XDP().Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		after, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		delta := sub(after, before)
		want := Counters{Passed: 1}
		switch {
		case class == ClassMalformed:
			want = Counters{Malformed: 1}
		case frameOtherHost(frame) && (lineFirstFragment(frame, line) || lineFirstFragment(frame, vlanOnly) ||
			class == ClassUDP && (d.Dst == line || d.Dst == vlanOnly)):
			// A pair's frame to another host's MAC address is the
			// kernel's, whatever its tags.
			want = Counters{OtherHost: 1}
		case lineFirstFragment(frame, line) || class == ClassUDP && d.Dst == line:
			// The pair's interface line takes no frame tagged with a
			// VLAN ID other than 0, its VLAN 100 line a single 802.1Q
			// tag of 100.
			vlan, _ := frameVLAN(frame)
			switch {
			case vlan != 100 && frameTagged(frame):
				want = Counters{VLANOther: 1}
			case class == ClassUDP:
				want = Counters{NoSocket: 1}
			default:
				want = Counters{Fragmented: 1}
			}
			if class == ClassUDP && d.Tagged != frameTagged(frame) {
				t.Fatalf("ParseFrame: Tagged %v, want %v", d.Tagged, frameTagged(frame))
			}
		case lineFirstFragment(frame, vlanOnly) || class == ClassUDP && d.Dst == vlanOnly:
			vlan, tags := frameVLAN(frame)
			switch {
			case vlan == 100 && class == ClassUDP:
				want = Counters{NoSocket: 1}
			case vlan == 100:
				want = Counters{Fragmented: 1}
			case tags == 0:
				want = Counters{VLANUntagged: 1}
			default:
				want = Counters{VLANOther: 1}
			}
			if class == ClassUDP && d.VLAN != vlan {
				t.Fatalf("ParseFrame: VLAN %d, want %d", d.VLAN, vlan)
			}
		}
		if ret != VerdictPass || delta != want {
			t.Fatalf("program: verdict %d counters %+v; ParseFrame: %v to %v (want counters %+v)", ret, delta, class, d.Dst, want)
		}
	})
}
