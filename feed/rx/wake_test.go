package rx

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestWakeOnEndsWait: on quiet lines, with a poll timeout of 250 ms (a
// hold of 1 s), a datagram to a wake file descriptor (a re-request
// client's socket, in the lab's receiving namespace) ends Receive's wait:
// (0, nil), counted in wait_woken, with no wait ended by its timeout
// (wait_timeouts). Each backend, as the handler runs it: on a locked
// thread in the receiving namespace (io_uring: SINGLE_ISSUER|
// DEFER_TASKRUN), AF_XDP also keeping its P (run to completion) and
// busy polling. The set changes (another socket, as after a session
// change) and, emptied, the wait ends by its timeout again. Before
// (no Waker), each wait ended by its timeout: wait_timeouts 1 a round.
func TestWakeOnEndsWait(t *testing.T) {
	type variant struct {
		backend string
		keepP   bool
		busy    bool
	}
	variants := []variant{{backend: BackendSocket}, {backend: BackendUring}, {backend: BackendXDP}, {backend: BackendXDP, keepP: true}, {backend: BackendXDP, busy: true}}
	for _, v := range variants {
		name := v.backend
		if v.keepP {
			name += "/keep-p"
		}
		if v.busy {
			name += "/busy-poll"
		}
		t.Run(name, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			// Two sockets a re-request client would hold (its socket
			// before and after a session change), and the server's.
			wake1, addr1 := lab.BoundUDPSocket(t, lab.Dst)
			wake2, addr2 := lab.BoundUDPSocket(t, lab.Dst)
			srv := lab.UDPSocket(t, lab.Dst)
			cfg := Config{Backend: v.backend, Lines: labLines(lab), PollTimeout: 250 * time.Millisecond, LockedThread: true, KeepP: v.keepP, BusyPoll: v.busy}
			err := onLockedThread(lab.Dst, func() error {
				r, err := Open(cfg)
				if err != nil {
					return err
				}
				defer r.Close()
				w, ok := r.(Waker)
				if !ok {
					return fmt.Errorf("%s: no Waker", r.Backend())
				}
				pkts := make([]Packet, 8)
				buf := make([]byte, 64)
				// round receives once with fds set, a datagram sent to
				// to while Receive waits, and says how the wait ended.
				round := func(fds []int, to int, toAddr unix.Sockaddr) (timeouts, woken uint64, err error) {
					if err := w.WakeOn(fds); err != nil {
						return 0, 0, err
					}
					before := r.Stats().Extra
					sent := make(chan error, 1)
					go func() {
						time.Sleep(20 * time.Millisecond) // most likely while Receive waits; either way the count holds
						sent <- unix.Sendto(srv, []byte("answer"), 0, toAddr)
					}()
					n, err := r.Receive(pkts)
					if serr := <-sent; serr != nil {
						return 0, 0, serr
					}
					if err != nil || n != 0 {
						return 0, 0, fmt.Errorf("Receive on quiet lines: %d, %v", n, err)
					}
					after := r.Stats().Extra
					for { // the caller reads what woke it
						if _, _, err := unix.Recvfrom(to, buf, unix.MSG_DONTWAIT); err != nil {
							break
						}
					}
					return after.Get("wait_timeouts") - before.Get("wait_timeouts"), after.Get("wait_woken") - before.Get("wait_woken"), nil
				}
				sa1 := &unix.SockaddrInet4{Addr: addr1.Addr().As4(), Port: int(addr1.Port())}
				sa2 := &unix.SockaddrInet4{Addr: addr2.Addr().As4(), Port: int(addr2.Port())}
				for i, c := range []struct {
					fds  []int
					to   int
					sa   unix.Sockaddr
					what string
				}{
					{[]int{wake1}, wake1, sa1, "first socket"},
					{[]int{wake1}, wake1, sa1, "first socket again (set unchanged)"},
					{[]int{wake2}, wake2, sa2, "second socket (set changed)"},
					{[]int{wake1, wake2}, wake1, sa1, "both"},
				} {
					timeouts, woken, err := round(c.fds, c.to, c.sa)
					if err != nil {
						return fmt.Errorf("round %d (%s): %w", i, c.what, err)
					}
					if timeouts != 0 || woken != 1 {
						return fmt.Errorf("round %d (%s): waits ended by timeout %d, by the wake socket %d; want 0 and 1", i, c.what, timeouts, woken)
					}
				}
				// Emptied: a datagram to the old socket no longer wakes it.
				timeouts, woken, err := round(nil, wake1, sa1)
				if err != nil {
					return err
				}
				if timeouts != 1 || woken != 0 {
					return fmt.Errorf("no wake set: waits ended by timeout %d, by a wake socket %d; want 1 and 0", timeouts, woken)
				}
				if err := w.WakeOn(make([]int, MaxWakeFds+1)); err == nil {
					return fmt.Errorf("WakeOn %d fds: no error", MaxWakeFds+1)
				}
				return nil
			})
			if v.backend == BackendXDP && errors.Is(err, ErrNotSupported) {
				netlab.SkipOrFail(t, "AF_XDP backend", 5, 11, err)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWakeOnAllocs: WakeOn, changing the set or not, and a Receive that a
// wake file descriptor ends allocate nothing on every backend (the
// handler sets the re-request sockets at each request and clears them at
// each fill, on the receive thread).
func TestWakeOnAllocs(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			wake1, addr1 := lab.BoundUDPSocket(t, lab.Dst)
			wake2, _ := lab.BoundUDPSocket(t, lab.Dst)
			srv := lab.UDPSocket(t, lab.Dst)
			r := openBackend(t, lab, backend, Config{Lines: labLines(lab), PollTimeout: 250 * time.Millisecond})
			defer r.Close()
			w := r.(Waker)
			one, two, both := []int{wake1}, []int{wake2}, []int{wake1, wake2}
			sets := [][]int{one, one, two, both, nil}
			i := 0
			if a, exact := race.AllocsPerRun(t, 100, func() {
				if err := w.WakeOn(sets[i%len(sets)]); err != nil {
					t.Fatal(err)
				}
				i++
			}); exact && a != 0 {
				t.Fatalf("WakeOn: %v allocations per call, want 0", a)
			}
			// A datagram left unread: every Receive is woken at once.
			if err := unix.Sendto(srv, []byte("answer"), 0, &unix.SockaddrInet4{Addr: addr1.Addr().As4(), Port: int(addr1.Port())}); err != nil {
				t.Fatal(err)
			}
			if err := w.WakeOn(one); err != nil {
				t.Fatal(err)
			}
			pkts := make([]Packet, 8)
			before := r.Stats().Extra.Get("wait_woken")
			if a, exact := race.AllocsPerRun(t, 20, func() {
				if n, err := r.Receive(pkts); n != 0 || err != nil {
					t.Fatalf("Receive: %d, %v", n, err)
				}
			}); exact && a != 0 {
				t.Fatalf("Receive woken: %v allocations per call, want 0", a)
			}
			if got := r.Stats().Extra.Get("wait_woken") - before; got != 21 {
				t.Fatalf("%d of 21 Receive calls woken", got)
			}
		})
	}
}
