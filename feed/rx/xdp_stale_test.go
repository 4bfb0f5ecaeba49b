package rx

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestXDPStaleCopyRelease: Release of a copy of a packet released already
// (the caller kept the Packet value) must not put its frame on the fill
// ring a second time: the kernel would then fill the frame again while it
// holds the next datagram handed out in it, overwriting a packet the
// caller still reads. It is counted (bad_releases), as the io_uring
// backend does; the same-slice double release TestXDPDoubleRelease checks
// is caught by the cleared handle alone. Also with two queues sharing one
// UMEM (frames tracked per queue by their UMEM-wide index): whichever
// queue a datagram lands on, the 40 that follow the stale release fill
// its 32 frames.
func TestXDPStaleCopyRelease(t *testing.T) {
	for _, queues := range [][]int{{0}, {0, 1}} {
		t.Run(fmt.Sprintf("queues %v", queues), func(t *testing.T) { testXDPStaleCopyRelease(t, queues) })
	}
}

func testXDPStaleCopyRelease(t *testing.T, queues []int) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "xs", RxQueues: len(queues)})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, RingSize: 32, BatchSize: 4, Queues: queues})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	if err := <-snd.sendPaced(1, xdpPayload); err != nil {
		t.Fatal(err)
	}
	first := xdpReceiveOne(t, r)
	stale := first // the caller keeps a copy
	r.Release([]Packet{first})
	r.Release([]Packet{stale})
	if got := r.Stats().Extra.Get("bad_releases"); got != 1 {
		t.Errorf("bad_releases = %d after releasing a stale copy, want 1", got)
	}
	// Hold every datagram that follows, so each frame is used once: 32
	// datagrams fill the 32 frames, then (with those held) 8 more can
	// land only in a frame given back twice, over the datagram it holds.
	var held []Packet
	var want [][]byte
	pkts := make([]Packet, 4)
	for _, batch := range []struct{ first, n int }{{1, 32}, {33, 8}} {
		if err := <-snd.sendPaced(batch.n, func(i int) []byte { return xdpPayload(batch.first + i) }); err != nil {
			t.Fatal(err)
		}
		for idle := 0; idle < 5; {
			n, err := r.Receive(pkts)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				idle++
			}
			for _, p := range pkts[:n] {
				held = append(held, p)
				want = append(want, bytes.Clone(p.Data))
			}
		}
	}
	for i, p := range held {
		if !bytes.Equal(p.Data, want[i]) {
			t.Errorf("held packet %d overwritten while held: %x..., was %x...", i, p.Data[:8], want[i][:8])
		}
	}
	r.Release(held)
}

// xdpReceiveOne receives one datagram within a bounded time.
func xdpReceiveOne(t *testing.T, r Receiver) Packet {
	t.Helper()
	pkts := make([]Packet, 1)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		n, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return pkts[0]
		}
	}
	t.Fatal("nothing received")
	return Packet{}
}
