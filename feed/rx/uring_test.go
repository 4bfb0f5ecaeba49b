package rx

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestUringRearmOnENOBUFS: with a small buffer ring and a consumer that
// starts late, the multishot requests run the ring dry and end with
// ENOBUFS; Receive re-arms them as buffers come back and nothing is lost
// (the datagrams wait in the socket buffers).
//
// With LockedThread (SINGLE_ISSUER|DEFER_TASKRUN): the same burst,
// received on one locked thread.
func TestUringRearmOnENOBUFS(t *testing.T) {
	for _, locked := range []bool{false, true} {
		t.Run(fmt.Sprintf("locked=%v", locked), func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			lines := labLines(lab)
			senders := labSenders(t, lab, lines, 10000)
			cfg := Config{Backend: BackendUring, Lines: lines, RingSize: 128, BatchSize: 64, PollTimeout: 20 * time.Millisecond, LockedThread: locked}
			err := onLockedThread(lab.Dst, func() error {
				r, err := Open(cfg)
				if err != nil {
					return err
				}
				defer r.Close()
				if _, err := r.Receive(make([]Packet, 1)); err != nil { // arms the requests
					return err
				}
				if err := send(senders, 1000); err != nil { // nobody receives yet: 128 buffers for 2000 datagrams
					return err
				}
				if err := receiveLines(r, senders, 1000); err != nil {
					return err
				}
				st := r.Stats()
				// Locked, the kernel fills buffers only while Receive
				// waits, which it does only once every completion is
				// reaped: the ring need not run dry.
				if !locked && st.Extra.Get("enobufs") == 0 || st.Extra.Get("rearms") < st.Extra.Get("enobufs") {
					return fmt.Errorf("stats %+v: want the ring to have run dry (enobufs > 0) and each end re-armed", st)
				}
				if st.Dropped != 0 {
					return fmt.Errorf("stats %+v: socket drops", st)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUringLockedOpenElsewhere: with LockedThread the receiver may be
// opened on one thread (here inside netlab.Do) and used from another,
// locked one, as a feed handler does: the first Receive makes the
// receiving thread the ring's submitter.
func TestUringLockedOpenElsewhere(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	lines := labLines(lab)
	senders := labSenders(t, lab, lines, 10000)
	r := openBackend(t, lab, BackendUring, Config{Lines: lines, LockedThread: true, PollTimeout: 20 * time.Millisecond})
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer r.Close()
		sendc := make(chan error, 1)
		go func() { time.Sleep(20 * time.Millisecond); sendc <- send(senders, 500) }()
		if err := receiveLines(r, senders, 500); err != nil {
			errc <- err
			return
		}
		errc <- <-sendc
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestUringDoubleRelease: releasing a packet twice does not hand its buffer
// to the kernel twice; it is counted instead.
func TestUringDoubleRelease(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	lines := labLines(lab)[:1]
	senders := labSenders(t, lab, lines, 10000)
	r := openBackend(t, lab, BackendUring, Config{Lines: lines, PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	sendLines(t, senders, 1)
	pkts := make([]Packet, 4)
	n := 0
	for deadline := time.Now().Add(5 * time.Second); n == 0 && time.Now().Before(deadline); {
		var err error
		if n, err = r.Receive(pkts); err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		t.Fatal("nothing received")
	}
	r.Release(pkts[:n])
	r.Release(pkts[:n])
	if got := r.Stats().Extra.Get("bad_releases"); got != uint64(n) {
		t.Fatalf("bad_releases = %d after releasing %d packets twice", got, n)
	}
	// The receiver still works and stays in order.
	sendAfter(t, senders, 300) // sequence numbers start at 0 again
	if err := receiveLines(r, senders, 300); err != nil {
		t.Fatal(err)
	}
}

// TestUringRehomeBetweenThreads: without LockedThread, Receive called in
// turn from two OS threads moves the line requests to the calling thread
// each time (cancel, then re-arm once the old request's last completion
// is in): every packet still arrives once, in order, and the moves are
// counted.
func TestUringRehomeBetweenThreads(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fr"})
	lines := labLines(lab)
	senders := labSenders(t, lab, lines, 10000)
	r := openBackend(t, lab, BackendUring, Config{Lines: lines, PollTimeout: 20 * time.Millisecond, BatchSize: 8})
	defer r.Close()
	// Two threads take turns: each runs one call of the receive loop
	// below, then hands over.
	type turn struct{ fn func() }
	threads := [2]chan turn{make(chan turn), make(chan turn)}
	for _, c := range threads {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for tr := range c {
				tr.fn()
			}
		}()
	}
	defer func() {
		for _, c := range threads {
			close(c)
		}
	}()
	calls := 0
	onThread := &switchingReceiver{Receiver: r, run: func(fn func()) {
		done := make(chan struct{})
		threads[calls%2] <- turn{func() { fn(); close(done) }}
		<-done
	}, next: func() { calls++ }}
	sendAfter(t, senders, 1000)
	expectLines(t, onThread, senders, 1000)
	st := r.Stats()
	t.Logf("%d calls, rehomes %d, rearms %d", calls, st.Extra.Get("rehomes"), st.Extra.Get("rearms"))
	if st.Extra.Get("rehomes") == 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v after %d calls on two threads: want rehomes and no drops", st, calls)
	}
}

// switchingReceiver runs each Receive and Release through run (on one of
// the threads).
type switchingReceiver struct {
	Receiver
	run  func(func())
	next func() // after each Receive: the next one runs on the other thread
}

func (s *switchingReceiver) Receive(pkts []Packet) (n int, err error) {
	s.run(func() { n, err = s.Receiver.Receive(pkts) })
	s.next()
	return n, err
}

func (s *switchingReceiver) Release(pkts []Packet) {
	s.run(func() { s.Receiver.Release(pkts) })
}

// TestUringBusyPoll: with BusyPoll the ring busy-polls its sockets' NAPI
// instances in its waits (IORING_REGISTER_NAPI), which the kernel shows in
// the ring's fdinfo; the lines are received as without it. The sockets'
// SO_BUSY_POLL alone polls only one pass in each read that finds a socket
// empty (TestUringBusyPollPollsNAPI).
func TestUringBusyPoll(t *testing.T) {
	for _, locked := range []bool{false, true} {
		t.Run(fmt.Sprintf("locked=%v", locked), func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			onBusyPollUring(t, lab, locked, func(u *uringRx, senders []*exchange.Sender) error {
				r := Receiver(u)
				info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", u.ring.Fd()))
				if err != nil {
					return err
				}
				if !strings.Contains(string(info), "NAPI:\tenabled") || !strings.Contains(string(info), "napi_busy_poll_dt:\t50000") {
					var napi []string
					for _, l := range strings.Split(string(info), "\n") {
						if strings.HasPrefix(l, "NAPI") || strings.HasPrefix(l, "napi") {
							napi = append(napi, l)
						}
					}
					return fmt.Errorf("BusyPoll with 50 µs: the kernel says the ring has %q; want NAPI enabled, 50000 ns", napi)
				}
				if !strings.Contains(r.Backend(), "napi busy poll 50µs") {
					return fmt.Errorf("Backend() = %q, want it to say napi busy poll 50µs", r.Backend())
				}
				sendc := make(chan error, 1)
				go func() { time.Sleep(20 * time.Millisecond); sendc <- send(senders, 500) }()
				if err := receiveLines(r, senders, 500); err != nil {
					return err
				}
				return <-sendc
			})
		})
	}
}

// TestUringBusyPollPollsNAPI: the ring itself busy-polls the NIC queue its
// lines' datagrams come through, as the kernel counts it. The receiving
// veth has a NAPI instance (GRO on) with deferred "interrupts"
// (napi_defer_hard_irqs, gro_flush_timeout: docs/TUNING.md section 3), so
// a busy poller that gives the queue back leaves it to a timer rather than
// to the next packet. The line sockets learn the queue's NAPI id
// (SO_INCOMING_NAPI_ID) from their first datagram, the ring from its
// requests (dynamic tracking), and the receiving namespace's
// BusyPollRxPackets (/proc/net/netstat) counts the datagrams a busy poll
// brought in.
//
// ring: the lines' own SO_BUSY_POLL is cleared, so that every busy-polled
// datagram is the ring's; without the ring's registration it stays 0.
// sockets: the ring is unregistered and the lines keep SO_BUSY_POLL, as
// before the ring was registered: a request's non-blocking read that finds
// its socket empty polls one pass, which brings some in too.
func TestUringBusyPollPollsNAPI(t *testing.T) {
	for _, poller := range []string{"ring", "sockets"} {
		for _, locked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/locked=%v", poller, locked), func(t *testing.T) {
				testBusyPollPolls(t, poller, locked)
			})
		}
	}
}

func testBusyPollPolls(t *testing.T, poller string, locked bool) {
	lab := netlab.ForTest(t, netlab.Options{})
	if out, err := lab.Exec(lab.Dst, "ethtool", "-K", lab.DstIf, "gro", "on"); err != nil {
		t.Fatalf("ethtool -K %s gro on: %v: %s", lab.DstIf, err, out)
	}
	sys := "/sys/class/net/" + lab.DstIf
	if out, err := lab.Exec(lab.Dst, "sh", "-c", "echo 100 > "+sys+"/napi_defer_hard_irqs && echo 1000000 > "+sys+"/gro_flush_timeout"); err != nil {
		t.Fatalf("defer the veth's interrupts: %v: %s", err, out)
	}
	onBusyPollUring(t, lab, locked, func(u *uringRx, senders []*exchange.Sender) error {
		r := Receiver(u)
		switch poller {
		case "ring":
			for _, s := range u.socks {
				if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, 0); err != nil {
					return err
				}
			}
		case "sockets":
			if _, _, err := u.ring.UnregisterNAPI(); err != nil {
				return err
			}
		}
		before, err := busyPollRxPackets()
		if err != nil {
			return err
		}
		sendc := make(chan error, 1)
		go func() { time.Sleep(20 * time.Millisecond); sendc <- send(senders, 1000) }()
		if err := receiveLines(r, senders, 1000); err != nil {
			return err
		}
		if err := <-sendc; err != nil {
			return err
		}
		after, err := busyPollRxPackets()
		if err != nil {
			return err
		}
		var ids []int
		for _, s := range u.socks {
			id, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
			if err != nil {
				return fmt.Errorf("SO_INCOMING_NAPI_ID: %w", err)
			}
			ids = append(ids, id)
		}
		t.Logf("line sockets' NAPI ids %v; BusyPollRxPackets %d -> %d", ids, before, after)
		for i, id := range ids {
			if id == 0 {
				return fmt.Errorf("line %s: SO_INCOMING_NAPI_ID 0: the veth with GRO on gave its datagrams no NAPI id", u.socks[i].line)
			}
		}
		if after == before {
			return fmt.Errorf("%s polling: BusyPollRxPackets stayed %d over 2000 datagrams: nothing was busy-polled (%s)", poller, after, r.Backend())
		}
		return nil
	})
}

// busyPollRxPackets is the calling thread's network namespace's
// BusyPollRxPackets (TcpExt in /proc/net/netstat): datagrams a busy poll,
// not the softirq, took from a NIC queue.
func busyPollRxPackets() (uint64, error) {
	// thread-self: /proc/self/net is the namespace of the process's main
	// thread, not of this one.
	b, err := os.ReadFile("/proc/thread-self/net/netstat")
	if err != nil {
		return 0, err
	}
	ls := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(ls); i += 2 {
		names, vals := strings.Fields(ls[i]), strings.Fields(ls[i+1])
		for j := range names {
			if names[j] == "BusyPollRxPackets" && j < len(vals) {
				return strconv.ParseUint(vals[j], 10, 64)
			}
		}
	}
	return 0, errors.New("/proc/net/netstat has no BusyPollRxPackets")
}

// onBusyPollUring opens the io_uring backend on lab's lines, busy polling
// 50 µs (Config.LockedThread: locked), on a locked thread in the receiving
// namespace, and runs fn with it and the lines' senders (10000 datagrams a
// second each, not started); an error of either fails the test. On a
// kernel whose ring cannot busy-poll (before Linux 6.9: the backend opens
// without it and says so) the test is skipped, from the test's goroutine:
// a Skip on the namespace's thread would leave netlab.Do waiting.
func onBusyPollUring(t *testing.T, lab *netlab.Lab, locked bool, fn func(u *uringRx, senders []*exchange.Sender) error) {
	t.Helper()
	lines := labLines(lab)
	senders := labSenders(t, lab, lines, 10000)
	cfg := Config{Backend: BackendUring, Lines: lines, BusyPoll: true, BusyPollUsec: 50, PollTimeout: 20 * time.Millisecond, LockedThread: locked}
	var noNAPI string
	err := onLockedThread(lab.Dst, func() error {
		r, err := Open(cfg)
		if err != nil {
			return err
		}
		defer r.Close()
		if strings.Contains(r.Backend(), "no napi busy poll (kernel)") {
			noNAPI = r.Backend()
			return nil
		}
		return fn(r.(*uringRx), senders)
	})
	if err != nil {
		t.Fatal(err)
	}
	if noNAPI != "" {
		t.Skipf("the kernel lacks IORING_REGISTER_NAPI (Linux 6.9+): %s", noNAPI)
	}
}
