package handler

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestRerequestAnswerWakesQuietLines: a real handler on each backend (in
// a lab namespace, both modes), lines quiet after a gap, arbitration.hold
// 10 s (the receive wait times out after 2.5 s) and a re-request timeout
// of 5 s (a partial answer settles for 500 ms, a tenth of it). Messages 3 to
// 2+lost are lost on both lines, two more follow, then nothing; the
// re-request server (a socket in the lab) answers each request with the
// first message asked alone, as a server capping its answers does.
// Between the first request reaching the server and the range being
// delivered no receive wait ends by its timeout (the receiver's
// wait_timeouts) and no request times out (the client's Timeouts): each
// answer ends the wait it comes in (wait_woken), and the client's settle
// after a partial answer ends the wait through the wake timer, so the
// rest is asked for when due. Nothing else ends those waits for 2.5 s,
// so the answer's own wake is what is checked (with the sockets left out
// of the wake set: 'receive waits ended by timeout between the request
// and the fill: 1, want 0 (woken 0)', each answer read 2.5 s late), and
// the test's goroutine may be held off the CPU for as long without a
// wait running out while the handler waits for its answer (a 1.5 s sleep
// before the answers: passes). Before the re-request
// sockets were waited on, the wait the answer came in ran to its timeout
// ("receive waits ended by timeout between the request and the fill: 1,
// want 0" on every backend and mode, lost 1); before the timer, the
// settle was seen at the next wait's timeout (lost 3: 'receive waits
// ended by timeout between the request and the fill: 2, want 0'). With a
// timeout of 20 ms and a hold of 2 s, as before, the test passed with the
// sockets left out of the wake set (each answer read when the request's
// timeout woke the wait, 20 to 34 ms after it), and failed on a loaded
// machine when its goroutine was held off for a second or so before it
// answered: the client's retries, backing off to 640 ms, outlasted the
// wait's 500 ms ('receive waits ended by timeout between the request and
// the fill: 1, want 0 (woken 7)' with a 1.5 s sleep before the answers).
func TestRerequestAnswerWakesQuietLines(t *testing.T) {
	for _, backend := range []string{rx.BackendSocket, rx.BackendUring, rx.BackendXDP} {
		for _, m := range modes {
			for _, lost := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s/%s/lost=%d", backend, m.mode, lost), func(t *testing.T) { testRerequestAnswerWakes(t, backend, m.mode, m.shards, lost) })
			}
		}
	}
}

func testRerequestAnswerWakes(t *testing.T, backend string, mode Mode, shards []int, lost int) {
	lab := netlab.ForTest(t, netlab.Options{})
	const sess = "WAKE"
	total := uint64(4 + lost)
	var pkts [][]byte
	for seq := uint64(1); seq <= total; seq++ {
		pkts = append(pkts, sessionPacket(sess, seq, orderMsg(sess, 100+seq, seq)))
	}
	srv, server := lab.BoundUDPSocket(t, lab.Src)
	groups := []netip.AddrPort{netip.MustParseAddrPort("239.7.1.1:26500"), netip.MustParseAddrPort("239.7.1.2:26501")}
	senders := labSenders(t, lab, groups)
	// A 5 s timeout: a partial answer settles for 500 ms, then the rest
	// is asked for; nothing times out while the test answers.
	h, recv := startOnLabArb(t, lab, backend, mode, shards, groups, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: 5 * time.Second, Retries: 100},
		Do: func(fn func() error) error { return lab.Do(lab.Dst, fn) }}, "fhwake", ArbiterConfig{Grace: time.Millisecond, Hold: 10 * time.Second})
	// 1, 2, then 3+lost on: 3 to 2+lost lost on both lines.
	sent := slices.Concat(pkts[:2], pkts[2+lost:])
	sendOnLines(t, senders, sent)
	req := make([]byte, 64)
	n, client := netlab.Recv(t, srv, req)
	// Every packet read first: the hole is re-requested Grace after a
	// line moved past it (the wake timer), and the packets after it may
	// come later; the answer must come in a wait, not be read in the
	// round of a packet.
	for i := 0; ; i++ {
		if st := recv.Stats(); st.Packets[0]+st.Packets[1] == 2*uint64(len(sent)) {
			break
		}
		if i == 50_000 {
			t.Fatalf("the lines' %d packets not read in 5 s", 2*len(sent))
		}
		time.Sleep(100 * time.Microsecond)
	}
	timeouts := func() uint64 { return recv.Stats().Extra.Get("wait_timeouts") }
	before, woken := timeouts(), recv.Stats().Extra.Get("wait_woken")
	// Each request answered with its first message alone; the fill is
	// seen well within a wait's 2.5 s (a look every 100 µs), so the
	// timeout of the wait after it is not counted.
	for i := 0; h.delivered.Load() < total; i++ {
		if n > 0 {
			r, err := moldudp64.ParseRequest(req[:n])
			if err != nil || r.Seq < 3 || r.Seq >= 3+uint64(lost) {
				t.Fatalf("request %+v, %v: want one for 3 to %d", r, err, 2+lost)
			}
			if err := unix.Sendto(srv, pkts[r.Seq-1], 0, &unix.SockaddrInet4{Addr: client.Addr().As4(), Port: int(client.Port())}); err != nil {
				t.Fatal(err)
			}
		}
		if i == 200_000 {
			t.Fatalf("delivered %d of %d messages", h.delivered.Load(), total)
		}
		time.Sleep(100 * time.Microsecond)
		n, _, _ = unix.Recvfrom(srv, req, unix.MSG_DONTWAIT)
	}
	after := timeouts()
	if after != before {
		t.Fatalf("receive waits ended by timeout between the request and the fill: %d, want 0 (woken %d)", after-before, recv.Stats().Extra.Get("wait_woken")-woken)
	}
	if w := recv.Stats().Extra.Get("wait_woken"); w == woken {
		t.Fatalf("no receive wait ended by the answer (wait_woken %d)", w)
	}
	// The figure docs/RECOVERY.md quotes: detection to fill (the
	// request at once). The stats are copied as the receive thread goes
	// round, on quiet lines at its wait's timeout: a copy of packet 1 on
	// the lines (a duplicate) has it go round now.
	waitFor(t, "the repair recorded", func() bool {
		sendOnLines(t, senders, pkts[:1])
		return len(h.Stats().Recovery.Events) > 0
	})
	if rq := h.Stats().Recovery.Rerequest; rq.Timeouts != 0 {
		t.Fatalf("requests timed out before their answer was read: %d, want 0 (%d requests, woken %d)", rq.Timeouts, rq.Requests, recv.Stats().Extra.Get("wait_woken")-woken)
	}
	t.Logf("%s %v, %d lost: range repaired in %v", backend, mode, lost, h.Stats().Recovery.Events[0].Took)
	// Stopped now, its wait ended by a datagram rather than its 2.5 s
	// timeout (Stop waits for the receive thread to go round).
	stopped := make(chan error, 1)
	go func() { stopped <- h.Stop() }()
	for i := 0; !h.stop.Load(); i++ {
		if i == 50_000 {
			t.Fatal("Stop did not begin in 5 s")
		}
		time.Sleep(100 * time.Microsecond)
	}
	sendOnLines(t, senders, pkts[:1])
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// wakeRx is a receiver that records the wake set it is given (rx.Waker).
type wakeRx struct {
	scriptRx
	calls int
	set   []int
}

func (w *wakeRx) WakeOn(fds []int) error {
	w.calls++
	w.set = append(w.set[:0], fds...)
	return nil
}

// TestRerequestWakeSet: the receiver is given the client's socket and
// the wake timer (a timerfd) when a range is re-requested and nothing once it is filled, told only of a
// change (not at every round), and the rounds in between allocate
// nothing (Handler.syncWake on the receive thread).
func TestRerequestWakeSet(t *testing.T) {
	srv, h, _, rec := scriptedRecovery(t, time.Hour, time.Minute)
	w := &wakeRx{set: make([]int, 0, rx.MaxWakeFds)}
	h.recv = w
	t.Cleanup(h.closeWake)
	rs := &restartScript{h: h, rec: rec, now: time.Now().UnixNano()}
	rs.offer(1, 1, 5, time.Millisecond)
	rs.poll()
	if w.calls != 0 {
		t.Fatalf("in sync: receiver told %d times (%v), want never", w.calls, w.set)
	}
	checkRecWakeIdle(t, "in sync", rec, rs.now, true)
	rs.offer(1, 7, 10, time.Millisecond) // 6 lost
	rs.poll()
	_, from := srv.request(t)
	want := append(rec.client.WakeFds(nil), h.wake.timer)
	if w.calls != 1 || len(want) != 2 || !slices.Equal(w.set, want) {
		t.Fatalf("re-requesting: receiver told %d times, set %v; want once, the client's socket and the wake timer %v", w.calls, w.set, want)
	}
	checkRecWakeIdle(t, "re-requesting", rec, rs.now, false)
	if l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", h.wake.timer)); l != "anon_inode:[timerfd]" {
		t.Fatalf("the wake set's last fd is %q, want a timerfd", l)
	}
	if a, exact := race.AllocsPerRun(t, 50, func() { rs.rec.poll(rs.now); h.syncWake(rs.now) }); exact && a != 0 {
		t.Fatalf("recovery poll and wake set while re-requesting: %v allocations, want 0", a)
	}
	// The timer armed again (timerfd_settime), as after it fired.
	if a, exact := race.AllocsPerRun(t, 50, func() { h.wake.timerAt = 0; h.armWake(rs.now, rec.client.NextDue(), false) }); (exact && a != 0) || h.wake.timerAt <= rs.now {
		t.Fatalf("wake timer armed again: %v allocations (want 0), armed for %d (want after %d)", a, h.wake.timerAt, rs.now)
	}
	if w.calls != 1 {
		t.Fatalf("receiver told %d times with the set unchanged, want once", w.calls)
	}
	srv.answer(t, from, rs.msg(1, 6))
	rs.pollUntilNext(t, 11)
	if w.calls != 2 || len(w.set) != 0 {
		t.Fatalf("filled: receiver told %d times, set %v; want twice, empty", w.calls, w.set)
	}
	checkRecWakeIdle(t, "filled", rec, rs.now, true)
}

// checkRecWakeIdle fails unless recovery.wakeIdle, which lets the receive
// loop skip syncWake, says want at this step of a script (what, now), and
// unless wakeOn has no descriptor and no deadline whenever it says idle: a
// wrong idle leaves the sockets out of the wake set, an answer read at the
// receive wait's timeout on quiet lines.
func checkRecWakeIdle(t *testing.T, what string, rec *recovery, now int64, want bool) {
	t.Helper()
	fds, due := rec.wakeOn(now)
	if idle := rec.wakeIdle(); idle != want || idle && (len(fds) != 0 || due != 0) {
		t.Fatalf("%s: recovery.wakeIdle %v, want %v; wakeOn: fds %v, due %d (0: none); client active %v, ranges ahead %d",
			what, idle, want, fds, due, rec.client.Active(), rec.client.Aheads())
	}
}

// TestRerequestWakeWithoutSockets: after a restart of the sequence (the
// client's Forget) no re-request socket is open until the next request
// is sent; a gap's first request held back by the rate limit has none to
// wake on, and the wake is its token's time (rerequest.Client.NextDue)
// all the same. Before, the client's deadline was taken only with its
// sockets: the request waited for the receive wait's timeout on quiet
// lines. The rate limit's one token refills in 11.6 days of the script's
// clock (RequestsPerSecond 1e-6), which moves a millisecond a poll: the
// polls while the first answer comes on loopback, however many, never
// refill it (at 1 a second, a thousand would have sent 11's request).
func TestRerequestWakeWithoutSockets(t *testing.T) {
	srv := newScriptedServer(t)
	h, _ := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Hour, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Hour, RequestsPerSecond: 1e-6}})
	rs := &restartScript{h: h, rec: rec, now: time.Now().UnixNano()}
	rs.offer(1, 1, 5, time.Millisecond)
	rs.offer(1, 7, 10, time.Millisecond) // 6 lost
	rs.poll()
	_, from := srv.request(t) // the token taken
	srv.answer(t, from, rs.msg(1, 6))
	rs.pollUntilNext(t, 11)
	rec.client.Forget()
	rs.offer(1, 12, 15, time.Millisecond) // 11 lost
	rs.poll()
	if !rec.client.Active() || rec.client.Stats.RateLimited == 0 {
		t.Fatalf("11 not held back by the rate limit: active %v, stats %+v", rec.client.Active(), rec.client.Stats)
	}
	checkRecWakeIdle(t, "rate-limited, no socket", rec, rs.now, false)
	fds, due := rec.wakeOn(rs.now)
	if want := rec.client.NextDue(); len(fds) != 0 || due != want || due <= rs.now {
		t.Fatalf("a rate-limited request with no socket open: wake on %v, due %d (0: none), want no fds and the next token's time, %v from now",
			fds, due, time.Duration(want-rs.now))
	}
}
