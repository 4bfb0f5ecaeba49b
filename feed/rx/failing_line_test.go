package rx

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestSocketFailingLineNotStarving: line A's socket fails on every call
// (a pipe dup2-ed over its fd: ENOTSOCK); line B's datagrams are read all
// the same, with the error. Before, drain returned at the first line whose
// recvmmsg failed, before rotating its start: a line failing on every call
// kept the other from ever being read.
func TestSocketFailingLineNotStarving(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	lines := labLines(lab)
	r := openBackend(t, lab, BackendSocket, Config{Lines: lines, PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	s := r.(*socketRx)
	bad := s.next % len(s.socks)
	good := 1 - bad
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := unix.Dup2(p[0], s.socks[bad].fd); err != nil { // line bad: recvmmsg fails (ENOTSOCK) on every call
		t.Fatal(err)
	}
	fd := lab.UDPSocket(t, lab.Src)
	to := netip.AddrPortFrom(lines[good].Group, lines[good].Port)
	errc := netlab.SendPaced(fd, to, 10, 0, func(i int) []byte { return []byte("good") })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	pkts := make([]Packet, 8)
	got, errs := 0, 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && got == 0; {
		n, err := r.Receive(pkts)
		if err != nil {
			errs++
			time.Sleep(time.Millisecond)
		}
		got += n
		r.Release(pkts[:n])
	}
	if got == 0 {
		t.Errorf("line %s fails on every call: line %s's 10 queued datagrams never read in 1 s (%d failed calls, each stopped at the failing line)", s.socks[bad].line, s.socks[good].line, errs)
	}
}
