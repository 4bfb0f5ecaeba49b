package handler

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestHoleWakesQuietLines: a real handler on each backend (in a lab
// namespace, both modes), arbitration.hold 2 s (the receive wait times out
// after 500 ms), grace 1 ms, lines quiet. Messages 1 to 5 come on both
// lines; then, just after a receive wait timed out (so that the next one
// would run its 500 ms), message 7 on both lines: 6 is lost on both, a
// hole due Grace after both lines moved past it. With a re-request server
// it is re-requested (the request reaches the server; answered, 7 is
// delivered), without a recovery source it is declared and 7 delivered;
// each before any receive wait ends by its timeout (the receiver's
// wait_timeouts), and before the next packet (8, sent only after): the
// wake timer armed for the arbiter's deadline (Arbiter.NextDue) ended the
// wait. Before, the arbiter's deadlines were not on the timer, and the
// hole was acted on when the wait timed out: "receive waits ended by
// timeout between the hole and its request: 1, want 0" on every backend
// and mode, about 500 ms after the hole, where a packet every 100-200 ms
// had it acted on when the next came.
func TestHoleWakesQuietLines(t *testing.T) {
	for _, backend := range []string{rx.BackendSocket, rx.BackendUring, rx.BackendXDP} {
		for _, m := range modes {
			for _, rerequested := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/declared", backend, m.mode)
				if rerequested {
					name = fmt.Sprintf("%s/%s/rerequested", backend, m.mode)
				}
				t.Run(name, func(t *testing.T) { testHoleWakes(t, backend, m.mode, m.shards, rerequested) })
			}
		}
	}
}

func testHoleWakes(t *testing.T, backend string, mode Mode, shards []int, rerequested bool) {
	lab := netlab.ForTest(t, netlab.Options{})
	const sess = "HOLE"
	var pkts [][]byte
	for seq := uint64(1); seq <= 8; seq++ {
		pkts = append(pkts, sessionPacket(sess, seq, orderMsg(sess, 100+seq, seq)))
	}
	groups := []netip.AddrPort{netip.MustParseAddrPort("239.7.2.1:26510"), netip.MustParseAddrPort("239.7.2.2:26511")}
	senders := labSenders(t, lab, groups)
	send := func(from, to int) { t.Helper(); sendOnLines(t, senders, pkts[from:to]) }
	var rc RecoveryConfig
	srv := -1
	if rerequested {
		var server netip.AddrPort
		srv, server = lab.BoundUDPSocket(t, lab.Src)
		rc = RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: time.Second},
			Do: func(fn func() error) error { return lab.Do(lab.Dst, fn) }}
	}
	h, recv := startOnLab(t, lab, backend, mode, shards, groups, rc, "fhholewake")
	send(0, 5)
	waitFor(t, "messages 1 to 5 delivered", func() bool { return h.delivered.Load() == 5 })
	timeouts := func() uint64 { return recv.Stats().Extra.Get("wait_timeouts") }
	// Just after a wait timed out: the next runs its 500 ms unless woken.
	for t0, i := timeouts(), 0; timeouts() == t0; i++ {
		if i == 20_000 {
			t.Fatal("no receive wait timed out in 2 s of quiet lines")
		}
		time.Sleep(100 * time.Microsecond)
	}
	before, woken := timeouts(), recv.Stats().Extra.Get("wait_woken")
	sent := time.Now()
	send(6, 7) // 6 lost on both lines
	// The hole acted on: re-requested (the request at the server) or
	// declared (7 delivered); a look every 100 µs.
	req := make([]byte, 64)
	var client netip.AddrPort
	n := 0
	for i := 0; ; i++ {
		if rerequested {
			var from unix.Sockaddr
			n, from, _ = unix.Recvfrom(srv, req, unix.MSG_DONTWAIT)
			if sa, ok := from.(*unix.SockaddrInet4); n > 0 && ok {
				client = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
				break
			}
		} else if h.delivered.Load() == 6 { // 1 to 5 and 7
			break
		}
		if i == 50_000 {
			t.Fatalf("hole at 6 not acted on in 5 s (delivered %d)", h.delivered.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
	took := time.Since(sent)
	after := timeouts()
	if after != before {
		t.Fatalf("receive waits ended by timeout between the hole and its request: %d, want 0 (woken %d; acted on after %v)", after-before, recv.Stats().Extra.Get("wait_woken")-woken, took)
	}
	if rerequested {
		r, err := moldudp64.ParseRequest(req[:n])
		if err != nil || r.Seq != 6 || r.Count != 1 {
			t.Fatalf("request %+v, %v: want one for 6", r, err)
		}
		if err := unix.Sendto(srv, pkts[5], 0, &unix.SockaddrInet4{Addr: client.Addr().As4(), Port: int(client.Port())}); err != nil {
			t.Fatal(err)
		}
	}
	// Delivered: 1 to 7, or but 6 declared.
	delivered := uint64(7)
	if !rerequested {
		delivered = 6
	}
	waitFor(t, "message 7 delivered", func() bool { return h.delivered.Load() == delivered })
	send(7, 8) // the next packet
	waitFor(t, "message 8 delivered", func() bool { return h.delivered.Load() == delivered+1 })
	waitFor(t, "the stats copied", func() bool { return h.Stats().Arbiter.Lines[0].Packets == 7 })
	st := h.Stats()
	if rerequested && (st.Arbiter.Gaps != 0 || st.Arbiter.RecoveriesFilled != 1) || !rerequested && (st.Arbiter.Gaps != 1 || st.Arbiter.LastGap != moldudp64.Range{First: 6, Count: 1}) {
		t.Fatalf("gaps %d (last %+v), recoveries filled %d", st.Arbiter.Gaps, st.Arbiter.LastGap, st.Arbiter.RecoveriesFilled)
	}
	what := "declared"
	if rerequested {
		what = "re-requested"
	}
	t.Logf("%s %v: the hole %s %v after the packet past it was sent (grace 1 ms, the wait's timeout 500 ms)", backend, mode, what, took)
}

// labSenders opens, in lab's source namespace, a sender to each of groups
// (1000 packets/s), closed at the test's end.
func labSenders(t *testing.T, lab *netlab.Lab, groups []netip.AddrPort) []*exchange.Sender {
	t.Helper()
	var senders []*exchange.Sender
	if err := lab.Do(lab.Src, func() error {
		for _, g := range groups {
			s, err := exchange.NewSender(exchange.Config{Interface: lab.SrcIf, Lines: []exchange.Line{{Group: g.Addr(), Port: g.Port()}}, Rate: 1000})
			if err != nil {
				return err
			}
			senders = append(senders, s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range senders {
		t.Cleanup(func() { s.Close() })
	}
	return senders
}

// sendOnLines sends pkts with each of senders (on each line).
func sendOnLines(t *testing.T, senders []*exchange.Sender, pkts [][]byte) {
	t.Helper()
	for _, s := range senders {
		if _, err := s.Send(context.Background(), slices.Values(pkts)); err != nil {
			t.Fatal(err)
		}
	}
}

// startOnLab starts a handler with lines A and B on groups (lab's
// destination interface), backend and mode, recovery rc, grace 1 ms and
// hold 2 s (the receive wait times out after 500 ms); it returns it
// (stopped at the test's end) with its receiver. A kernel without AF_XDP
// skips (netlab.SkipOrFail).
func startOnLab(t *testing.T, lab *netlab.Lab, backend string, mode Mode, shards []int, groups []netip.AddrPort, rc RecoveryConfig, shm string) (*Handler, rx.Receiver) {
	t.Helper()
	return startOnLabArb(t, lab, backend, mode, shards, groups, rc, shm, ArbiterConfig{Grace: time.Millisecond, Hold: 2 * time.Second})
}

// startOnLabArb is startOnLab with the arbitration config arb.
func startOnLabArb(t *testing.T, lab *netlab.Lab, backend string, mode Mode, shards []int, groups []netip.AddrPort, rc RecoveryConfig, shm string, arb ArbiterConfig) (*Handler, rx.Receiver) {
	t.Helper()
	var recv rx.Receiver
	h, err := Start(Config{
		Receive: rx.Config{Backend: backend, Lines: []rx.LineConfig{
			{Name: "A", Interface: lab.DstIf, Group: groups[0].Addr(), Port: groups[0].Port()},
			{Name: "B", Interface: lab.DstIf, Group: groups[1].Addr(), Port: groups[1].Port()}}},
		Arbiter:    arb,
		Recovery:   rc,
		Book:       smallBooks,
		Mode:       mode,
		ShardCores: shards,
		ShmName:    shmtest.Name(t, shm),
		Open: func(c rx.Config) (rx.Receiver, error) {
			err := lab.Do(lab.Dst, func() error {
				var err error
				recv, err = rx.Open(c)
				return err
			})
			return recv, err
		},
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	})
	if backend == rx.BackendXDP && errors.Is(err, rx.ErrNotSupported) {
		netlab.SkipOrFail(t, "AF_XDP backend", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	return h, recv
}
