package rx

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestXDPKernelTimestamps: every datagram carries the time the steering
// program ran (kernel metadata, CLOCK_REALTIME ns), not the time Receive
// took it off the ring: datagrams that waited in the ring have times from
// before the wait, each after its own send and before Receive returned it.
func TestXDPKernelTimestamps(t *testing.T) {
	if err := bpf.ProbeMeta(); errors.Is(err, bpf.ErrNoMetaHelper) {
		_, _, release := netlab.KernelVersion()
		t.Skipf("kernel %s: %v: no kernel timestamps, frames are stamped on reading", release, err)
	}
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const n = 300
	start := time.Now().UnixNano()
	// Each payload: index, then the time just before it was sent.
	if err := <-snd.sendPaced(n, func(i int) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint64(b, uint64(i))
		binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
		return b
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; r.Stats().Extra.Get("xdp_redirected") < n; i++ {
		if i == 500 {
			t.Fatalf("only %d of %d datagrams redirected", r.Stats().Extra.Get("xdp_redirected"), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// All datagrams are in the ring now; what follows only picks them up.
	queued := time.Now().UnixNano()
	pkts := make([]Packet, 32)
	got := 0
	for got < n {
		k, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		returned := time.Now().UnixNano()
		if k == 0 {
			t.Fatalf("Receive timed out after %d of %d datagrams", got, n)
		}
		for _, p := range pkts[:k] {
			i := int(binary.BigEndian.Uint64(p.Data))
			sent := int64(binary.BigEndian.Uint64(p.Data[8:]))
			if i != got {
				t.Fatalf("datagram %d arrived as number %d", i, got)
			}
			if p.RxTime < start || p.RxTime < sent || p.RxTime > returned {
				t.Fatalf("datagram %d: receive time %d not in [%d (sent), %d (Receive returned)]", i, p.RxTime, sent, returned)
			}
			if p.RxTime > queued {
				t.Fatalf("datagram %d: receive time %d after %d, when it was already in the ring: a user-space time",
					i, p.RxTime, queued)
			}
			got++
		}
		r.Release(pkts[:k])
	}
	st := r.Stats()
	if st.Extra.Get("xdp_kernel_ts") != n || st.Extra.Get("xdp_user_ts") != 0 || st.Extra.Get("xdp_no_meta") != 0 {
		t.Errorf("stats: %d kernel, %d user timestamps, %d frames without metadata; want %d, 0, 0",
			st.Extra.Get("xdp_kernel_ts"), st.Extra.Get("xdp_user_ts"), st.Extra.Get("xdp_no_meta"), n)
	}
}

// TestXDPUserTimestamps: without metadata in front of the frames (as with a
// driver that cannot reserve it) the backend falls back to the time it took
// the batch off the ring, and counts it.
func TestXDPUserTimestamps(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	r.(*xdpRx).metaLen = 0 // read no metadata, as if the driver had none
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const n = 100
	if err := <-snd.sendPaced(n, xdpPayload); err != nil {
		t.Fatal(err)
	}
	for i := 0; r.Stats().Extra.Get("xdp_redirected") < n; i++ {
		if i == 500 {
			t.Fatalf("only %d of %d datagrams redirected", r.Stats().Extra.Get("xdp_redirected"), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	queued := time.Now().UnixNano()
	pkts := make([]Packet, 32)
	for got := 0; got < n; {
		called := time.Now().UnixNano()
		k, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		returned := time.Now().UnixNano()
		if k == 0 {
			t.Fatalf("Receive timed out after %d of %d datagrams", got, n)
		}
		for _, p := range pkts[:k] {
			if p.RxTime < called || p.RxTime > returned || p.RxTime < queued || p.RxTime != pkts[0].RxTime {
				t.Fatalf("datagram %d: receive time %d, want the batch's pickup time in [%d, %d]", got, p.RxTime, called, returned)
			}
			got++
		}
		r.Release(pkts[:k])
	}
	if st := r.Stats(); st.Extra.Get("xdp_kernel_ts") != 0 || st.Extra.Get("xdp_user_ts") != n {
		t.Errorf("stats: %d kernel, %d user timestamps; want 0, %d", st.Extra.Get("xdp_kernel_ts"), st.Extra.Get("xdp_user_ts"), n)
	}
}

// TestXDPBackendSaysStamps: where the kernel refuses the steering program
// its metadata, the backend's description says that frames are stamped on
// reading (the demo and the handler's start log print it), and only there.
func TestXDPBackendSaysStamps(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	noMeta := errors.Is(bpf.ProbeMeta(), bpf.ErrNoMetaHelper)
	if got := strings.Contains(r.Backend(), "stamped on reading"); got != noMeta {
		t.Errorf("backend %q: says stamped on reading %v, want %v (bpf.ProbeMeta: %v)", r.Backend(), got, noMeta, bpf.ProbeMeta())
	}
}
