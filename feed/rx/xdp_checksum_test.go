package rx

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// checksumFrames are raw line frames from the lab's source address: one
// without a UDP checksum (valid), one with a wrong UDP checksum, one with
// a wrong IPv4 header checksum, and a last good one that marks the end.
func checksumFrames(lab *netlab.Lab) (good, badUDP, badIP, last []byte) {
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	good = xdpFrame(src, dst, nil, 0, []byte("good"))
	badUDP = xdpFrame(src, dst, nil, 0, []byte("bad udp checksum"))
	binary.BigEndian.PutUint16(badUDP[14+20+6:], 0x1234) // not the sum: any nonzero value but the one
	badIP = xdpFrame(src, dst, nil, 0, []byte("bad ip checksum"))
	badIP[14+10] ^= 0x40
	last = xdpFrame(src, dst, nil, 0, []byte("last"))
	return good, badUDP, badIP, last
}

// TestXDPChecksums: the AF_XDP backend drops line datagrams whose UDP or
// IPv4 header checksum is wrong and counts them (Malformed,
// xdp_bad_checksum), as the kernel drops them before the socket backends
// see them (checked here on the same frames); NoChecksums delivers them.
func TestXDPChecksums(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	good, badUDP, badIP, last := checksumFrames(lab)
	raw := xdpNewRawSender(t, lab)
	payloads := func(ps []Packet) []string {
		var out []string
		for _, p := range ps {
			out = append(out, string(p.Data))
		}
		return out
	}
	for _, c := range []struct {
		name    string
		backend string
		no      bool
		want    []string
		bad     uint64
	}{
		{"xdp", BackendXDP, false, []string{"good", "last"}, 2},
		{"xdp-no-checksums", BackendXDP, true, []string{"good", "bad udp checksum", "bad ip checksum", "last"}, 0},
		{"kernel", BackendSocket, false, []string{"good", "last"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := Config{PollTimeout: 20 * time.Millisecond, NoChecksums: c.no, Log: zerolog.New(&logs),
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			var r Receiver
			if c.backend == BackendXDP {
				r = xdpOpen(t, lab, cfg)
			} else {
				r = openBackend(t, lab, c.backend, cfg)
			}
			defer r.Close()
			for _, f := range [][]byte{good, badUDP, badIP, last} {
				raw.send(t, f)
			}
			var got []Packet
			buf := make([]Packet, 8)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				n, err := r.Receive(buf)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range buf[:n] {
					p.Data = append([]byte(nil), p.Data...)
					got = append(got, p)
				}
				r.Release(buf[:n])
				if len(got) > 0 && string(got[len(got)-1].Data) == "last" {
					break
				}
			}
			if g := payloads(got); len(g) != len(c.want) || func() bool {
				for i := range g {
					if g[i] != c.want[i] {
						return true
					}
				}
				return false
			}() {
				t.Errorf("received %q, want %q", g, c.want)
			}
			st := r.Stats()
			if b := st.Extra.Get("xdp_bad_checksum"); b != c.bad {
				t.Errorf("xdp_bad_checksum %d, want %d", b, c.bad)
			}
			if c.backend == BackendXDP && st.Malformed != c.bad {
				t.Errorf("Malformed %d, want %d", st.Malformed, c.bad)
			}
			// Two failures, one warning naming the line and the sender.
			warned := strings.Count(logs.String(), "failed its IPv4 or UDP checksum")
			if want := min(int(c.bad), 1); warned != want || want == 1 && !strings.Contains(logs.String(), `"source":"`+lab.SrcIP.String()+`:40001"`) {
				t.Errorf("%d checksum warnings, want %d naming source %s:40001:\n%s", warned, want, lab.SrcIP, logs.String())
			}
		})
	}
}

// TestXDPStatsNeverGoBack: the AF_XDP sums of the programs' counters and
// the sockets' statistics are exported as counters. A kernel read that
// fails keeps the last good reading (and counts the failure), and Stats
// after Close keeps the readings taken before it, so no sum goes back.
func TestXDPStatsNeverGoBack(t *testing.T) {
	r := xdpThreeFrames(t)
	before := r.Stats()
	if v := before.Extra.Get("xdp_redirected"); v != 3 {
		t.Fatalf("xdp_redirected %d before, want 3", v)
	}
	check := func(when string, s Stats, errs bool) {
		t.Helper()
		for _, name := range []string{"xdp_redirected", "xdp_passed", "xsk_rx_dropped", "xdp_bad_checksum"} {
			if s.Extra.Get(name) < before.Extra.Get(name) {
				t.Errorf("%s: %s went back from %d to %d", when, name, before.Extra.Get(name), s.Extra.Get(name))
			}
		}
		if s.Dropped < before.Dropped || s.Malformed < before.Malformed {
			t.Errorf("%s: dropped %d, malformed %d; before %d, %d", when, s.Dropped, s.Malformed, before.Dropped, before.Malformed)
		}
		if e := s.Extra.Get("xdp_stats_read_errors"); (e > 0) != errs {
			t.Errorf("%s: xdp_stats_read_errors %d", when, e)
		}
	}
	check("reads working", r.Stats(), false)

	// The program's maps closed under the receiver: its counters can no
	// longer be read (EBADF from the kernel).
	x := r.(*xdpRx)
	if err := x.ifaces[0].prog.Close(); err != nil {
		t.Fatal(err)
	}
	check("program counters unreadable", r.Stats(), true)

	if err := r.Close(); err != nil {
		t.Logf("close after the program's: %v", err)
	}
	check("after Close", r.Stats(), true)
}

// TestXDPStatsFinalReading: Close reads the kernel counters one last time,
// so what came since the last Stats is in the final stats. Before, a
// receiver whose Stats never ran before Close reported none of it.
func TestXDPStatsFinalReading(t *testing.T) {
	r := xdpThreeFrames(t)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if v := r.Stats().Extra.Get("xdp_redirected"); v != 3 {
		t.Fatalf("after Close: xdp_redirected %d, want the 3 frames redirected", v)
	}
}

// xdpThreeFrames opens the xdp backend on a lab line, sends it a good
// frame, one with a bad UDP checksum and another good one (three
// redirected by the program), and receives the two good ones; it has not
// called Stats.
func xdpThreeFrames(t *testing.T) Receiver {
	t.Helper()
	lab := xdpNewLab(t, netlab.Options{})
	good, badUDP, _, last := checksumFrames(lab)
	raw := xdpNewRawSender(t, lab)
	cfg := Config{PollTimeout: 20 * time.Millisecond, Log: zerolog.Nop(),
		Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
	r := xdpOpen(t, lab, cfg)
	t.Cleanup(func() { r.Close() })
	for _, f := range [][]byte{good, badUDP, last} {
		raw.send(t, f)
	}
	buf := make([]Packet, 8)
	got := 0
	for deadline := time.Now().Add(5 * time.Second); got < 2 && time.Now().Before(deadline); {
		n, err := r.Receive(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
		r.Release(buf[:n])
	}
	if got != 2 {
		t.Fatalf("received %d datagrams, want 2", got)
	}
	return r
}
