package rx

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/xsk"
)

// TestXDPSpinWakesOncePerReceive plays a zero-copy driver that keeps
// need_wakeup set for the whole spin (an empty fill ring): an idle Receive
// that spins and then blocks makes at most one wakeup syscall per queue
// while spinning and one before poll(2), not one per pass of the spin.
// veth has no zero-copy mode and in copy mode the kernel never sets the
// flag, so the test sets it through xdpNeedWakeup; the sockets, the rings
// and the wakeup syscalls are real.
func TestXDPSpinWakesOncePerReceive(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 30 * time.Millisecond, Spin: 20 * time.Millisecond})
	defer r.Close()
	orig := xdpNeedWakeup
	xdpNeedWakeup = func(*xsk.Socket) bool { return true }
	defer func() { xdpNeedWakeup = orig }()

	const calls = 3
	w0 := r.Stats().Extra.Get("xdp_wakeups")
	pkts := make([]Packet, 4)
	for range calls {
		n, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		r.Release(pkts[:n]) // nothing is sent: n is 0
	}
	queues := len(r.(*xdpRx).queues)
	if got, limit := r.Stats().Extra.Get("xdp_wakeups")-w0, uint64(calls*2*queues); got > limit {
		t.Fatalf("%d idle Receive calls spinning with need_wakeup set made %d wakeup syscalls, want at most %d (one per queue while spinning, one before poll)",
			calls, got, limit)
	}
}

// TestXDPFillDeferred: frames given back while the fill ring has no room
// are kept and counted, not lost. A fresh socket's fill ring holds all of
// its frames, so it has no room; giving back more addresses (here a copy of
// frames the ring holds: the kernel never sees them) must leave them
// pending, counted in xsk_fill_deferred.
func TestXDPFillDeferred(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 10 * time.Millisecond})
	defer r.Close()
	x := r.(*xdpRx)
	q := x.queues[0]
	q.pending = append(q.pending[:0], 0, 2048, 4096)
	x.mu.Lock()
	x.flush(q)
	x.mu.Unlock()
	if got := r.Stats().Extra.Get("xsk_fill_deferred"); got != 3 || len(q.pending) != 3 {
		t.Fatalf("after a flush into a full fill ring: xsk_fill_deferred %d, %d addresses pending; want 3 and 3", got, len(q.pending))
	}
	q.pending = q.pending[:0] // never give the kernel frames twice
}
