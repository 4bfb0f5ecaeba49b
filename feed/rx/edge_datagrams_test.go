package rx

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestEdgeDatagrams is one table of odd line datagrams that every backend
// runs: empty ones (a zero-byte recvmsg ends an io_uring multishot request
// without IORING_CQE_F_MORE, with its buffer: it must be delivered and the
// request re-armed) and ones too big for any receive slot between good
// ones (fragmented past the 1500-byte MTU, reassembled by the kernel and
// truncated for the sockets, AF_XDP's kernel sockets included). Every
// other datagram arrives once, in order, byte for byte, and each big one
// counts once in Stats.Dropped.
func TestEdgeDatagrams(t *testing.T) {
	sent := [][]byte{
		[]byte("m0"), {}, make([]byte, 3000), []byte("m1"), {}, {}, []byte("m2"), make([]byte, 3000), []byte("end"),
	}
	want := [][]byte{[]byte("m0"), {}, []byte("m1"), {}, {}, []byte("m2"), []byte("end")}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			sendOdd(t, netlab.Options{Prefix: "fe"}, backend, sent, want, 2)
		})
	}
}

// TestJumboDatagram: on a link with a 9000-byte MTU a line datagram too
// big for a receive slot (2048 bytes) or a UMEM frame (4096) arrives
// whole, unfragmented: every backend loses it, counts it once in
// Stats.Dropped (truncated; AF_XDP: xsk rx_dropped, in the generic mode
// the auto mode falls back to when native XDP refuses the MTU) and
// delivers the datagrams around it.
func TestJumboDatagram(t *testing.T) {
	sent := [][]byte{[]byte("m0"), make([]byte, 5000), []byte("m1"), make([]byte, 8000), []byte("end")}
	want := [][]byte{[]byte("m0"), []byte("m1"), []byte("end")}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			sendOdd(t, netlab.Options{Prefix: "fj", MTU: 9000}, backend, sent, want, 2)
		})
	}
}

// sendOdd sends the datagrams sent (the last one "end") to one line of
// backend in a lab made with o, and fails the test unless it receives
// want, in order, and counts dropped datagrams in Stats.Dropped.
func sendOdd(t *testing.T, o netlab.Options, backend string, sent, want [][]byte, dropped uint64) {
	lab := netlab.ForTest(t, o)
	lines := labLines(lab)[:1]
	r := openBackend(t, lab, backend, Config{Lines: lines, PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	fd := lab.UDPSocket(t, lab.Src)
	to := netip.AddrPortFrom(lines[0].Group, lines[0].Port)
	time.Sleep(20 * time.Millisecond) // joined
	errc := netlab.SendPaced(fd, to, len(sent), 0, func(i int) []byte { return sent[i] })
	var got [][]byte
	pkts := make([]Packet, 4)
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 || string(got[len(got)-1]) != "end"; {
		if time.Now().After(deadline) {
			t.Fatalf("end marker not received; got %q; stats %+v", got, r.Stats())
		}
		n, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			got = append(got, bytes.Clone(p.Data))
		}
		r.Release(pkts[:n])
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Until idle: AF_XDP reads what the kernel reassembled (a
	// fragmented datagram, truncated there) when its rings are empty,
	// after the end marker.
	drainEach(t, r, func(p *Packet) { got = append(got, bytes.Clone(p.Data)) })
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("received %q, want %q", got, want)
	}
	if st := r.Stats(); st.Dropped != dropped {
		t.Errorf("Dropped %d, want %d; backend %s, stats %+v", st.Dropped, dropped, r.Backend(), st)
	}
}
