package rx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// flapLab is a lab whose two lines have a link each (line A on the lab's
// veth pair, line B on a second pair) or share the lab's pair (o.RxQueues
// queues); senders stream numbered datagrams on both until the test ends.
type flapLab struct {
	*netlab.Lab
	srcB, dstB string
	lines      []LineConfig
	// tag: byte 5 of the datagrams of senders started from now on
	// (flapReader.tagged counts those not 0).
	tag byte
}

func newFlapLab(t *testing.T) *flapLab {
	t.Helper()
	l := newSharedLab(t, netlab.Options{})
	var err error
	if l.srcB, l.dstB, err = l.AddPair("10.98.0.1/24", "10.98.0.2/24"); err != nil {
		t.Fatal(err)
	}
	l.lines[1].Interface = l.dstB
	return l
}

func newSharedLab(t *testing.T, o netlab.Options) *flapLab {
	t.Helper()
	o.Prefix = "fl"
	lab := netlab.ForTest(t, o)
	return &flapLab{Lab: lab, srcB: lab.SrcIf, dstB: lab.DstIf, lines: []LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: groupA, Port: 26400},
		{Name: "B", Interface: lab.DstIf, Group: groupB, Port: 26401},
	}}
}

// stream sends numbered datagrams on both lines at rate each from the
// lab's sending side until the test's cleanup.
func (l *flapLab) stream(t *testing.T, rate float64) {
	t.Helper()
	for i, ifname := range []string{l.SrcIf, l.srcB} {
		l.sendLine(t, i, ifname, rate)
	}
}

// sendLine sends numbered datagrams of line i out of interface ifname at
// rate until the test's cleanup.
func (l *flapLab) sendLine(t *testing.T, i int, ifname string, rate float64) {
	t.Helper()
	l.sendCount(t, i, ifname, rate, 0)
}

// sendCount is sendLine stopping after count datagrams (0: none), closing
// the returned channel when it stopped.
func (l *flapLab) sendCount(t *testing.T, i int, ifname string, rate float64, count int) <-chan struct{} {
	t.Helper()
	var s *exchange.Sender
	if err := l.Do(l.Src, func() (err error) {
		s, err = exchange.NewSender(exchange.Config{Interface: ifname, Rate: rate, Count: count,
			Lines: []exchange.Line{{Group: l.lines[i].Group, Port: l.lines[i].Port}}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tag := l.tag
	go func() {
		defer close(done)
		s.Send(ctx, func(yield func([]byte) bool) {
			b := make([]byte, 64)
			b[5] = tag
			for seq := uint32(0); ; seq++ {
				b[0] = byte(i)
				binary.BigEndian.PutUint32(b[1:], seq)
				if !yield(b) {
					return
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	return done
}

// flapReader receives from r on a goroutine until stopped, counting
// packets per line and the Receives that returned nothing (idle: every
// line quiet for a poll timeout), and keeping Receive's errors.
type flapReader struct {
	packets [2]atomic.Uint64
	tagged  [2]atomic.Uint64 // packets of a tagged sender (flapLab.tag)
	idle    atomic.Uint64
	mu      sync.Mutex
	errs    []error
	stop    atomic.Bool
	done    chan struct{}
}

func readAll(t *testing.T, r Receiver) *flapReader { return readEvery(t, r, 64, 0) }

// readEvery is readAll receiving at most batch packets per Receive and
// pausing for pause after each call (0: none). The reader reads the
// packets' Data, which Close unmaps: the receiver must be closed after
// the reader stops, by a t.Cleanup registered before readEvery (cleanups
// run last first), not by a defer, which runs before every cleanup.
func readEvery(t *testing.T, r Receiver, batch int, pause time.Duration) *flapReader {
	fr := &flapReader{done: make(chan struct{})}
	go func() {
		defer close(fr.done)
		pkts := make([]Packet, batch)
		for !fr.stop.Load() {
			n, err := r.Receive(pkts)
			for _, p := range pkts[:n] {
				fr.packets[p.Line].Add(1)
				if len(p.Data) > 5 && p.Data[5] != 0 {
					fr.tagged[p.Line].Add(1)
				}
			}
			r.Release(pkts[:n])
			if n == 0 && err == nil {
				fr.idle.Add(1)
			}
			if pause > 0 {
				time.Sleep(pause)
			}
			if err != nil {
				fr.mu.Lock()
				if len(fr.errs) < 10 {
					fr.errs = append(fr.errs, err)
				}
				fr.mu.Unlock()
				if errors.Is(err, ErrClosed) {
					return
				}
			}
		}
	}()
	t.Cleanup(fr.close)
	return fr
}

// close stops the reader and waits for it.
func (fr *flapReader) close() {
	fr.stop.Store(true)
	<-fr.done
}

func (fr *flapReader) errors() []error {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]error(nil), fr.errs...)
}

// waitUntil waits for cond, polling, for at most 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestXDPInterfaceDeleted deletes line A's interface under a bound AF_XDP
// socket while line B, on another interface, keeps sending. The kernel
// unbinds the socket (ENXIO from then on, and poll(2) says nothing): the
// backend must say so once (log, xsk_unbound), retire the socket and go
// on receiving line B, instead of returning the error from every Receive
// (with busy polling, a wakeup per pass: a hot loop of errors) or going
// silent without a word (poll alone).
func TestXDPInterfaceDeleted(t *testing.T) {
	for _, busy := range []bool{false, true} {
		name := "poll"
		if busy {
			name = "busy-poll"
		}
		t.Run(name, func(t *testing.T) {
			l := newFlapLab(t)
			var logs bytes.Buffer // read once the reader stopped
			r := openBackend(t, l.Lab, BackendXDP, Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond,
				BusyPoll: busy, Log: zerolog.New(zerolog.SyncWriter(&logs))})
			t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
			l.stream(t, 2000)
			fr := readAll(t, r)
			waitUntil(t, "packets on both lines", func() bool { return fr.packets[0].Load() > 0 && fr.packets[1].Load() > 0 })

			if _, err := l.Exec(l.Src, "ip", "link", "del", l.SrcIf); err != nil {
				t.Fatal(err)
			}
			b0 := fr.packets[1].Load()
			waitUntil(t, "line B's packets after line A's interface went", func() bool { return fr.packets[1].Load() > b0+200 })
			if errs := fr.errors(); len(errs) > 0 {
				t.Errorf("Receive returned %d+ errors after the interface was deleted, first %v", len(errs), errs[0])
			}
			waitUntil(t, "the unbound socket reported (xsk_unbound)", func() bool { return r.Stats().Extra.Get("xsk_unbound") == 1 })
			fr.close()
			if n := strings.Count(logs.String(), "unbound the AF_XDP socket"); n != 1 {
				t.Errorf("the unbound socket logged %d times, want once:\n%s", n, logs.String())
			}
			if got := r.Stats().Extra.Get("xsk_unbound"); got != 1 {
				t.Errorf("xsk_unbound %d, want 1", got)
			}
		})
	}
}

// TestLinkChangesWhileBound changes the receiving interface under every
// backend while both lines send (both on it, two rx queues, AF_XDP bound
// to both): its MTU down and back, then its rx channels to one and back
// (veth supports ethtool -L). Each backend must keep receiving both lines
// without a receive error, and the XDP program stays attached. The kernel
// refuses to take away a queue an AF_XDP socket is bound to (EINVAL):
// for the xdp backend the channel change must be refused.
func TestLinkChangesWhileBound(t *testing.T) {
	for _, be := range []struct{ name, backend, xdpMode string }{
		{"socket", BackendSocket, ""}, {"uring", BackendUring, ""},
		{"xdp-native", BackendXDP, "native"}, {"xdp-generic", BackendXDP, "generic"},
	} {
		t.Run(be.name, func(t *testing.T) {
			l := newSharedLab(t, netlab.Options{RxQueues: 2})
			cfg := Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond, XDPMode: be.xdpMode}
			if be.backend == BackendXDP {
				cfg.Queues = []int{0, 1}
			}
			r := openBackend(t, l.Lab, be.backend, cfg)
			t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
			l.stream(t, 2000)
			fr := readAll(t, r)
			flowing := func(what string) {
				t.Helper()
				a, b := fr.packets[0].Load(), fr.packets[1].Load()
				waitUntil(t, "both lines receiving "+what, func() bool { return fr.packets[0].Load() > a+100 && fr.packets[1].Load() > b+100 })
			}
			flowing("at first")
			ethtool := func(args ...string) error {
				_, err := l.Exec(l.Dst, "ethtool", append([]string{"-L", l.DstIf}, args...)...)
				return err
			}
			steps := []struct {
				what string
				do   func() error
			}{
				{"after the MTU went to 1400", func() error { return l.SetMTU(1400) }},
				{"after the MTU came back to 1500", func() error { return l.SetMTU(1500) }},
				{"after a change to one rx channel", func() error {
					err := ethtool("rx", "1")
					if be.backend == BackendXDP {
						if err == nil {
							return errors.New("ethtool -L rx 1 went through under an AF_XDP socket bound to queue 1")
						}
						return nil // refused: the queue stays
					}
					return err
				}},
				{"after the change back to two rx channels", func() error { return ethtool("rx", "2") }},
			}
			for _, s := range steps {
				if err := s.do(); err != nil {
					t.Fatalf("%s: %v", s.what, err)
				}
				flowing(s.what)
			}
			if errs := fr.errors(); len(errs) > 0 {
				t.Errorf("Receive returned %d+ errors, first %v", len(errs), errs[0])
			}
			if be.backend == BackendXDP {
				out, err := l.Exec(l.Dst, "ip", "link", "show", "dev", l.DstIf)
				if err != nil || !strings.Contains(string(out), "prog/xdp") {
					t.Errorf("XDP program not attached after the changes (%v):\n%s", err, out)
				}
			}
		})
	}
}

// TestInterfaceRecreated deletes line A's interface and creates it again
// under the same name (a new device, a new ifindex: a driver reload, a
// re-created virtual interface) while line B, on another interface, keeps
// sending. The kernel dropped line A's group membership with the old
// device and the socket says nothing: the socket and io_uring backends
// must report the device gone (logged once, line_interfaces_gone), join
// the group on the new device by themselves (logged once, line_rejoins)
// and receive line A again, without a receive error. The xdp backend's
// AF_XDP socket is unbound by the deletion (xsk_unbound,
// TestXDPInterfaceDeleted); the new device has no XDP program, and the
// handler could not attach one (it drops the capabilities after setup):
// it must fall back to a socket for line A (logged once,
// xdp_socket_fallbacks) and receive it again, without a receive error,
// line B still through AF_XDP (xdpRecreated). Before, line A stayed
// silent until a restart on every backend.
func TestInterfaceRecreated(t *testing.T) {
	for _, c := range []struct {
		backend string
		gone    string   // the counter that says line A's device went
		logged  []string // each logged once
		counter string   // 1 once line A is received on the new device
		more    func(t *testing.T, r Receiver, fr *flapReader, redirected uint64)
	}{
		{BackendSocket, "line_interfaces_gone", []string{"the line's interface is gone", "joined the group on it again"}, "line_rejoins", nil},
		{BackendUring, "line_interfaces_gone", []string{"the line's interface is gone", "joined the group on it again"}, "line_rejoins", nil},
		{BackendXDP, "xsk_unbound", []string{"receiving its lines through sockets"}, "xdp_socket_fallbacks", xdpRecreated},
	} {
		t.Run(c.backend, func(t *testing.T) {
			l := newFlapLab(t)
			var logs bytes.Buffer // read once the reader stopped
			r := openBackend(t, l.Lab, c.backend, Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond,
				Log: zerolog.New(zerolog.SyncWriter(&logs))})
			t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
			l.stream(t, 2000)
			fr := readAll(t, r)
			waitUntil(t, "packets on both lines", func() bool { return fr.packets[0].Load() > 0 && fr.packets[1].Load() > 0 })

			if err := l.DeletePair(); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "line A's device reported gone ("+c.gone+")", func() bool { return r.Stats().Extra.Get(c.gone) == 1 })
			if err := l.Recreate(); err != nil {
				t.Fatal(err)
			}
			l.tag = 1
			l.sendLine(t, 0, l.SrcIf, 2000) // the first sender's interface went with the old device
			b0, redirected := fr.packets[1].Load(), r.Stats().Extra.Get("xdp_redirected")
			waitUntil(t, "line A's packets on the new device", func() bool { return fr.tagged[0].Load() > 200 })
			waitUntil(t, "line B's packets", func() bool { return fr.packets[1].Load() > b0+200 })
			fr.close()
			if errs := fr.errors(); len(errs) > 0 {
				t.Errorf("Receive returned %d+ errors, first %v", len(errs), errs[0])
			}
			for _, msg := range c.logged {
				if n := strings.Count(logs.String(), msg); n != 1 {
					t.Errorf("%q logged %d times, want once:\n%s", msg, n, logs.String())
				}
			}
			if got := r.Stats().Extra.Get(c.counter); got != 1 {
				t.Errorf("%s %d, want 1", c.counter, got)
			}
			if c.more != nil {
				c.more(t, r, fr, redirected)
			}
		})
	}
}

// xdpRecreated is TestInterfaceRecreated's further checks of the xdp
// backend once line A fell back to a socket: line B is still received
// through AF_XDP (xdp_redirected grew from redirected, taken when line A's
// new sender started), and the fallback socket's counters are the
// backend's.
func xdpRecreated(t *testing.T, r Receiver, fr *flapReader, redirected uint64) {
	st := r.Stats()
	if got := st.Extra.Get("xdp_redirected"); got < redirected+200 {
		t.Errorf("xdp_redirected went from %d to %d: line B is not received through AF_XDP any more", redirected, got)
	}
	if st.Packets[0] != fr.packets[0].Load() || st.Packets[1] != fr.packets[1].Load() {
		t.Errorf("Stats().Packets %v, the reader received %d and %d", st.Packets, fr.packets[0].Load(), fr.packets[1].Load())
	}
	// The fallback socket's own counters are the backend's: its line
	// watch's and its source filter's (as counted by the socket backend).
	// Before, the xdp backend's Stats left them out.
	x := r.(*xdpRx)
	f := (*x.fallbackList.Load())[0]
	f.watch.gone.Add(1)
	f.watch.rejoins.Add(2)
	f.sourceFiltered.Add(3)
	f.truncated.Add(4)
	st = r.Stats()
	for name, want := range map[string]uint64{"line_interfaces_gone": 1, "line_rejoins": 2, "source_filtered": 3, "truncated": 4} {
		if got := st.Extra.Get(name); got != want {
			t.Errorf("Extra %q %d, want the fallback socket's %d", name, got, want)
		}
	}
}

// TestInterfaceRecreatedBusy is TestInterfaceRecreated with a receiver
// that never waits: line B sends three times faster than the reader takes
// packets (one per Receive, a millisecond's pause after each), so B's
// queue always holds some and every Receive returns a packet at once.
// Line A's interface is deleted and created again meanwhile. The socket
// and io_uring backends must see it go and join A's group on the new
// device while B keeps them busy: before B's bounded sender ends (10 s of
// it) and with no Receive returning empty-handed; the socket backend must
// deliver line A's datagrams sent to the new device (tagged) by then.
// (io_uring's, not checked: under this overload its line A gets a few
// datagrams a second, B's request taking the buffers as they come back,
// so A's queue from before the deletion comes first.) The xdp backend
// must report its unbound socket (xsk_unbound) the same way. Before, the
// backends looked only when Receive was about to wait: line A stayed
// silent for as long as line B delivered.
func TestInterfaceRecreatedBusy(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			l := newFlapLab(t)
			cfg := Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond}
			if backend == BackendUring {
				// Few buffers, so that line A's completions do not queue
				// behind thousands of line B's.
				cfg.RingSize = 128
			}
			r := openBackend(t, l.Lab, backend, cfg)
			t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
			l.sendLine(t, 0, l.SrcIf, 500)
			const rateB, countB = 3000, 30000
			doneB := l.sendCount(t, 1, l.srcB, rateB, countB)
			fr := readEvery(t, r, 1, time.Millisecond)
			waitUntil(t, "packets on both lines, line B's queue behind", func() bool {
				return fr.packets[0].Load() > 0 && fr.packets[1].Load() > 200
			})
			idle := fr.idle.Load()
			// busyUntil waits for cond while line B keeps the receiver
			// busy: it fails once B's sender ended, or a Receive found
			// nothing (B's queue ran dry: the test no longer tests a busy
			// receiver).
			busyUntil := func(what string, cond func() bool) {
				t.Helper()
				for !cond() {
					select {
					case <-doneB:
						t.Fatalf("line B's sender ended (%d datagrams at %d/s) before %s: the receiver, kept busy by line B, did not look",
							countB, rateB, what)
					default:
					}
					if n := fr.idle.Load() - idle; n != 0 {
						t.Fatalf("%d Receive(s) returned nothing before %s: line B's queue ran dry, the receiver was not kept busy", n, what)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}

			if err := l.DeletePair(); err != nil {
				t.Fatal(err)
			}
			if backend == BackendXDP {
				busyUntil("the unbound socket reported (xsk_unbound)", func() bool { return r.Stats().Extra.Get("xsk_unbound") == 1 })
				return
			}
			busyUntil("line A's interface reported gone", func() bool { return r.Stats().Extra.Get("line_interfaces_gone") == 1 })
			if err := l.Recreate(); err != nil {
				t.Fatal(err)
			}
			l.tag = 1
			l.sendLine(t, 0, l.SrcIf, 500) // the first sender's interface went with the old device
			busyUntil("line A's group joined on the new device", func() bool { return r.Stats().Extra.Get("line_rejoins") == 1 })
			if backend == BackendSocket {
				busyUntil("line A's packets on the new device", func() bool { return fr.tagged[0].Load() > 50 })
			}
			fr.close()
			if errs := fr.errors(); len(errs) > 0 {
				t.Errorf("Receive returned %d+ errors, first %v", len(errs), errs[0])
			}
			if got := r.Stats().Extra.Get("line_rejoins"); got != 1 {
				t.Errorf("line_rejoins %d, want 1", got)
			}
		})
	}
}

// TestXDPPortTaken opens the xdp backend while another socket of the host
// holds line A's port (bound to any address, without SO_REUSEADDR, as a
// tool listening on the port would). AF_XDP takes the line's frames
// before the kernel's UDP layer, so the port does not concern it: the
// backend must open and receive both lines, line A without a fallback
// socket (logged). Before, the spare socket opened for the fallback
// (bound to the line's group and port) made the open fail with EADDRINUSE,
// in auto mode as well: a feature for a rare event kept the handler from
// starting at all.
func TestXDPPortTaken(t *testing.T) {
	l := newFlapLab(t)
	fd := l.UDPSocket(t, l.Dst)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(l.lines[0].Port)}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer // read once the reader stopped
	r := openBackend(t, l.Lab, BackendXDP, Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond,
		Log: zerolog.New(zerolog.SyncWriter(&logs))})
	t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
	l.stream(t, 2000)
	fr := readAll(t, r)
	waitUntil(t, "packets on both lines", func() bool { return fr.packets[0].Load() > 200 && fr.packets[1].Load() > 200 })
	fr.close()
	if errs := fr.errors(); len(errs) > 0 {
		t.Errorf("Receive returned %d+ errors, first %v", len(errs), errs[0])
	}
	if n := strings.Count(logs.String(), "no fallback socket"); n != 1 {
		t.Errorf("the missing fallback socket logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestXDPFallbackBusy: once line A fell back to a socket (its device
// deleted and created again, TestInterfaceRecreated/xdp), line B on AF_XDP
// sends faster than the reader takes packets (one per Receive, 2 ms'
// pause after each: under 500/s; B's sender makes about 800/s on a
// loaded 2-core lab, 3000/s on an idle one). Line A's datagrams must
// still be read, as the socket backend reads a busy line's and a quiet
// line's in turn: before B's bounded sender ends. Before, the fallback
// sockets were read only when the rings left room in the batch: under
// line B's overload never, and line A's datagrams piled up in its socket
// until the kernel dropped them, for as long as B's overload lasted.
func TestXDPFallbackBusy(t *testing.T) {
	l := newFlapLab(t)
	r := openBackend(t, l.Lab, BackendXDP, Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
	fr := readAll(t, r)
	if err := l.DeletePair(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the unbound socket reported (xsk_unbound)", func() bool { return r.Stats().Extra.Get("xsk_unbound") == 1 })
	if err := l.Recreate(); err != nil {
		t.Fatal(err)
	}
	l.tag = 1
	l.sendLine(t, 0, l.SrcIf, 500)
	waitUntil(t, "line A's packets through its fallback socket", func() bool { return fr.tagged[0].Load() > 50 })
	fr.close()

	overload(t, l, r, 1, l.srcB, "the fallback socket was starved by line B's AF_XDP ring")
}

// deletePairB deletes line B's veth pair (newFlapLab), and createPairB
// creates it again under the same names and addresses: new devices, as a
// driver reload of a two-port NIC gives line A's and line B's ports.
func (l *flapLab) deletePairB(t *testing.T) {
	t.Helper()
	labIP(t, "-n", l.Src, "link", "del", l.srcB)
}

func (l *flapLab) createPairB(t *testing.T) {
	t.Helper()
	labIP(t, "-n", l.Src, "link", "add", l.srcB, "type", "veth", "peer", "name", l.dstB, "netns", l.Dst)
	labIP(t, "-n", l.Src, "addr", "add", "10.98.0.1/24", "dev", l.srcB)
	labIP(t, "-n", l.Dst, "addr", "add", "10.98.0.2/24", "dev", l.dstB)
	labIP(t, "-n", l.Src, "link", "set", l.srcB, "up")
	labIP(t, "-n", l.Dst, "link", "set", l.dstB, "up")
	labIP(t, "netns", "exec", l.Src, "ethtool", "-K", l.srcB, "tx", "off")
}

func labIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// TestXDPFallbacksFair: both lines' devices deleted and created again (a
// driver reload of a two-port NIC), so both lines fall back to sockets;
// then line A sends faster than the reader takes packets (one per
// Receive, 2 ms' pause after each). Line B's datagrams must still be read,
// before A's bounded sender ends, as the socket backend reads a busy
// line's and a quiet line's in turn. Before, the fallbacks were read in
// the order they were made, each Receive starting with line A's: B's
// datagrams piled up in its socket until the kernel dropped them.
func TestXDPFallbacksFair(t *testing.T) {
	l := newFlapLab(t)
	r := openBackend(t, l.Lab, BackendXDP, Config{Lines: l.lines, PollTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { r.Close() }) // after the reader stops (readEvery's cleanup, registered later, runs first)
	fr := readAll(t, r)
	if err := l.DeletePair(); err != nil {
		t.Fatal(err)
	}
	l.deletePairB(t)
	waitUntil(t, "both unbound sockets reported (xsk_unbound)", func() bool { return r.Stats().Extra.Get("xsk_unbound") == 2 })
	// Line A's device back first: its fallback is the first made.
	if err := l.Recreate(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "line A fallen back (xdp_socket_fallbacks)", func() bool { return r.Stats().Extra.Get("xdp_socket_fallbacks") == 1 })
	l.createPairB(t)
	waitUntil(t, "line B fallen back (xdp_socket_fallbacks)", func() bool { return r.Stats().Extra.Get("xdp_socket_fallbacks") == 2 })
	l.sendLine(t, 1, l.srcB, 500)
	waitUntil(t, "line B's packets through its fallback socket", func() bool { return fr.packets[1].Load() > 50 })
	fr.close()

	overload(t, l, r, 0, l.SrcIf, "line B's fallback socket was starved by line A's")
}

// overload has line busy send 3000 datagrams/s (30000, from src) to a
// reader that takes one packet per Receive and pauses 2 ms after each,
// and fails, saying starved, unless the other line's datagrams (sent
// meanwhile by the caller's sender) are read, 200 of them, before the
// busy line's sender ends; every Receive must return packets (the busy
// line's queue keeps the receiver busy).
func overload(t *testing.T, l *flapLab, r Receiver, busy int, src, starved string) {
	t.Helper()
	const rate, count = 3000, 30000
	other := 1 - busy
	name := [2]string{"A", "B"}
	done := l.sendCount(t, busy, src, rate, count)
	fr := readEvery(t, r, 1, 2*time.Millisecond)
	waitUntil(t, "line "+name[busy]+"'s packets, its queue behind", func() bool { return fr.packets[busy].Load() > 200 })
	idle, o0 := fr.idle.Load(), fr.packets[other].Load()
	for fr.packets[other].Load() < o0+200 {
		select {
		case <-done:
			t.Fatalf("line %s's sender ended (%d datagrams at %d/s) with %d of line %s's datagrams read meanwhile, want 200: %s",
				name[busy], count, rate, fr.packets[other].Load()-o0, name[other], starved)
		default:
		}
		if n := fr.idle.Load() - idle; n != 0 {
			t.Fatalf("%d Receive(s) returned nothing: line %s's queue ran dry, the receiver was not kept busy", n, name[busy])
		}
		time.Sleep(10 * time.Millisecond)
	}
	fr.close()
	if errs := fr.errors(); len(errs) > 0 {
		t.Errorf("Receive returned %d+ errors, first %v", len(errs), errs[0])
	}
}
