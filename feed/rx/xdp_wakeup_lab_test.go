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
