package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setupRing creates a ring or skips when the kernel truly lacks io_uring.
func setupRing(t testing.TB, p Params) *Ring {
	t.Helper()
	r, err := Setup(p)
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("kernel lacks io_uring (or io_uring_disabled is set): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestNopRoundTrip(t *testing.T) {
	for _, flags := range []uint32{0, SetupCoopTaskrun, SetupSingleIssuer | SetupDeferTaskrun} {
		t.Run(fmt.Sprintf("flags=%#x", flags), func(t *testing.T) {
			// SINGLE_ISSUER and the task-run flags tie the ring to the
			// thread that submits: stay on one.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			r := setupRing(t, Params{Entries: 8, Flags: flags})
			if r.SQEntries() != 8 {
				t.Fatalf("SQEntries = %d, want 8", r.SQEntries())
			}
			// Several laps around the ring, to exercise index wrap.
			for lap := range 5 {
				for i := range 8 {
					sqe := r.GetSQE()
					if sqe == nil {
						t.Fatalf("lap %d: GetSQE %d returned nil on an empty ring", lap, i)
					}
					sqe.PrepNop(uint64(lap*100 + i))
				}
				if r.GetSQE() != nil {
					t.Fatal("GetSQE on a full SQ returned an entry")
				}
				n, err := r.Wait(8, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if n != 8 {
					t.Fatalf("submitted %d, want 8", n)
				}
				for i := range 8 {
					cqe := r.PeekCQE()
					if cqe == nil {
						t.Fatalf("lap %d: completion %d missing", lap, i)
					}
					if cqe.UserData != uint64(lap*100+i) || cqe.Res != 0 {
						t.Fatalf("lap %d: cqe %+v, want user data %d res 0", lap, *cqe, lap*100+i)
					}
					r.CQAdvance(1)
				}
				if r.PeekCQE() != nil {
					t.Fatal("extra completion")
				}
			}
		})
	}
}

func TestWaitTimeout(t *testing.T) {
	r := setupRing(t, Params{Entries: 4})
	start := time.Now()
	n, err := r.Wait(1, 20*time.Millisecond)
	if err != nil || n != 0 {
		t.Fatalf("Wait on an idle ring = %d, %v; want 0, nil after the timeout", n, err)
	}
	if time.Since(start) < 10*time.Millisecond {
		t.Fatalf("Wait returned after %v, before its timeout", time.Since(start))
	}
}

func TestProbe(t *testing.T) {
	r := setupRing(t, Params{Entries: 4})
	p, err := r.Probe()
	if err != nil {
		t.Fatal(err)
	}
	if !p.Supported(OpNop) {
		t.Fatal("probe says NOP is unsupported")
	}
	if p.LastOp < OpRecv {
		t.Fatalf("probe last op %d < RECV (%d) on a kernel that has PROBE (5.6+)", p.LastOp, OpRecv)
	}
}

func TestClosedRing(t *testing.T) {
	r := setupRing(t, Params{Entries: 4})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Submit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
}

// setupRecvmsg registers on r a buffer ring of group, with entries
// buffers of bufSize bytes, and makes one msghdr, for a RECVMSG test; both
// are closed at cleanup. It skips only where the kernel lacks buffer rings
// (before 5.19).
func setupRecvmsg(t *testing.T, r *Ring, group uint16, entries uint32, bufSize int) (*BufRing, *Msghdrs) {
	t.Helper()
	br, err := r.RegisterBufRing(group, entries, bufSize)
	if errors.Is(err, ErrNotSupported) {
		netlab.SkipOrFail(t, "IORING_REGISTER_PBUF_RING", 5, 19, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	hdrs, err := NewMsghdrs(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hdrs.Close() })
	return br, hdrs
}

// udpPair returns a bound, non-blocking UDP socket on loopback and a
// connected sender to it; both are closed at cleanup.
func udpPair(t *testing.T) (rfd int, send *net.UDPConn) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fd, c
}

// waitCQEs waits (bounded) until at least n completions are ready.
func waitCQEs(t *testing.T, r *Ring, n uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.CQReady() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d completions ready after 5s, want %d", r.CQReady(), n)
		}
		if _, err := r.Wait(n-r.CQReady(), 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecvmsgMultishotENOBUFS runs a multishot RECVMSG over a four-buffer
// ring: four datagrams complete with F_MORE, the fifth ends the request
// with ENOBUFS (no F_MORE); after the buffers come back a re-armed request
// receives what stayed queued in the socket.
func TestRecvmsgMultishotENOBUFS(t *testing.T) {
	r := setupRing(t, Params{Entries: 8})
	br, hdrs := setupRecvmsg(t, r, 7, 4, 256)
	msg := &hdrs.Hdrs[0]
	msg.Namelen = unix.SizeofSockaddrInet4

	fd, send := udpPair(t)
	arm := func() {
		sqe := r.GetSQE()
		sqe.PrepRecvmsgMultishot(fd, msg, 0, br.Group(), 42)
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	}
	arm()
	const total = 10
	for i := range total {
		if _, err := send.Write(fmt.Appendf(nil, "datagram %02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	laddr := send.LocalAddr().(*net.UDPAddr)
	got := 0
	var held []uint16
	check := func(c CQE) {
		t.Helper()
		if c.UserData != 42 || c.Flags&CQEFBuffer == 0 {
			t.Fatalf("cqe %+v: want user data 42 and a buffer", c)
		}
		out, name, _, payload, err := ParseRecvmsg(br.Buf(c.BufID())[:c.Res], int(msg.Namelen), 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("datagram %02d", got); string(payload) != want || int(out.PayloadLen) != len(want) {
			t.Fatalf("payload %q (len %d), want %q", payload, out.PayloadLen, want)
		}
		if len(name) != unix.SizeofSockaddrInet4 || int(name[2])<<8|int(name[3]) != laddr.Port {
			t.Fatalf("source name %x, want port %d", name, laddr.Port)
		}
		got++
		held = append(held, c.BufID())
	}
	cqes := make([]CQE, 16)
	// Four buffers: four completions with F_MORE, then ENOBUFS without it.
	waitCQEs(t, r, 5)
	n := r.CQEs(cqes)
	if n != 5 {
		t.Fatalf("%d completions, want 5 (4 buffers + ENOBUFS)", n)
	}
	for _, c := range cqes[:4] {
		if !c.More() {
			t.Fatalf("cqe %+v lacks F_MORE while buffers remained", c)
		}
		check(c)
	}
	if end := cqes[4]; end.Res != -int32(unix.ENOBUFS) || end.More() {
		t.Fatalf("5th cqe %+v, want res -ENOBUFS without F_MORE", end)
	}
	// Return the buffers, re-arm, drain the rest (re-arming each time the
	// ring runs dry again).
	deadline := time.Now().Add(5 * time.Second)
	for got < total {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d", got, total)
		}
		for _, id := range held {
			br.Add(id)
		}
		held = held[:0]
		br.Advance()
		arm()
		for armed := true; armed && got < total; {
			waitCQEs(t, r, 1)
			n := r.CQEs(cqes)
			for _, c := range cqes[:n] {
				if c.Res < 0 {
					if c.Res != -int32(unix.ENOBUFS) || c.More() {
						t.Fatalf("cqe %+v: unexpected error", c)
					}
					armed = false
					continue
				}
				check(c)
			}
		}
	}
}

func TestRegisterBufRingBadSize(t *testing.T) {
	r := setupRing(t, Params{Entries: 4})
	if _, err := r.RegisterBufRing(1, 3, 64); err == nil {
		t.Fatal("3 entries (not a power of two) accepted")
	}
	if _, err := r.RegisterBufRing(1, MaxBufRingEntries*2, 64); err == nil {
		t.Fatal("too many entries accepted")
	}
}

func TestParseRecvmsg(t *testing.T) {
	b := make([]byte, 16+16+4+5)
	b[0] = 16 // namelen
	b[8] = 5  // payloadlen
	copy(b[36:], "hello")
	out, name, control, payload, err := ParseRecvmsg(b, 16, 4)
	if err != nil || out.PayloadLen != 5 || len(name) != 16 || len(control) != 0 || string(payload) != "hello" {
		t.Fatalf("got %+v %d %d %q %v", out, len(name), len(control), payload, err)
	}
	if _, _, _, _, err := ParseRecvmsg(b[:20], 16, 4); !errors.Is(err, ErrShortRecvmsg) {
		t.Fatalf("short buffer: %v", err)
	}
	// A truncated datagram reports its full length but yields what fit.
	b[8] = 9
	if _, _, _, p, _ := ParseRecvmsg(b, 16, 4); string(p) != "hello" {
		t.Fatalf("truncated payload %q", p)
	}
}

func TestNopAllocs(t *testing.T) {
	r := setupRing(t, Params{Entries: 4})
	cqes := make([]CQE, 4)
	allocs, exact := race.AllocsPerRun(t, 100, func() {
		r.GetSQE().PrepNop(1)
		if _, err := r.Wait(1, time.Second); err != nil {
			t.Fatal(err)
		}
		if r.CQEs(cqes) != 1 {
			t.Fatal("no completion")
		}
	})
	if exact && allocs != 0 {
		t.Fatalf("NOP submit+wait+reap allocates %v times, want 0", allocs)
	}
}

func BenchmarkNop(b *testing.B) {
	r := setupRing(b, Params{Entries: 64})
	cqes := make([]CQE, 64)
	b.ReportAllocs()
	for b.Loop() {
		r.GetSQE().PrepNop(1)
		if _, err := r.Wait(1, 0); err != nil {
			b.Fatal(err)
		}
		r.CQEs(cqes)
	}
}

func TestMain(m *testing.M) {
	// Start the runtime's netpoller (epoll fd + eventfd) before counting.
	if c, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	before := countFds()
	code := m.Run()
	if after := countFds(); code == 0 && after > before {
		fmt.Fprintf(os.Stderr, "fd leak: %d open fds before the tests, %d after\n", before, after)
		code = 1
	}
	os.Exit(code)
}

func countFds() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestBufRingTailWrap recycles a four-buffer ring more than 2^16 times, so
// the 16-bit ring tail wraps, and checks every datagram lands intact.
func TestBufRingTailWrap(t *testing.T) {
	r := setupRing(t, Params{Entries: 8})
	br, hdrs := setupRecvmsg(t, r, 3, 4, 64)
	fd, send := udpPair(t)
	armed := false
	cqes := make([]CQE, 8)
	msg := make([]byte, 8)
	const total = 1<<16 + 1000
	for seq := 0; seq < total; {
		if !armed {
			r.GetSQE().PrepRecvmsgMultishot(fd, &hdrs.Hdrs[0], 0, br.Group(), 1)
			armed = true
		}
		for i := range 4 {
			binary.BigEndian.PutUint64(msg, uint64(seq+i))
			if _, err := send.Write(msg); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		for deadline := time.Now().Add(5 * time.Second); got < 4; {
			if time.Now().After(deadline) {
				t.Fatalf("seq %d: %d of 4 datagrams", seq, got)
			}
			if _, err := r.Wait(1, 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			for _, c := range cqes[:r.CQEs(cqes)] {
				if !c.More() {
					armed = false
				}
				if c.Res < 0 {
					if c.Res != -int32(unix.ENOBUFS) {
						t.Fatalf("seq %d: cqe %+v", seq, c)
					}
					continue
				}
				_, _, _, p, err := ParseRecvmsg(br.Buf(c.BufID())[:c.Res], 0, 0)
				if err != nil || len(p) != 8 || binary.BigEndian.Uint64(p) != uint64(seq+got) {
					t.Fatalf("seq %d: payload %x, %v", seq+got, p, err)
				}
				br.Add(c.BufID())
				got++
			}
			br.Advance()
			if !armed && got < 4 {
				r.GetSQE().PrepRecvmsgMultishot(fd, &hdrs.Hdrs[0], 0, br.Group(), 1)
				armed = true
			}
		}
		seq += 4
	}
}

// BenchmarkSubmitNop is the cost of one io_uring_enter that does not wait
// (a NOP, completed inline, then reaped from the CQ without a syscall):
// raw is Submit on a SINGLE_ISSUER|DEFER_TASKRUN ring (a raw syscall, the calling thread
// keeps its P), syscall the same call through the runtime's
// entersyscall/exitsyscall.
func BenchmarkSubmitNop(b *testing.B) {
	for _, raw := range []bool{true, false} {
		name := "syscall"
		if raw {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			r := setupRing(b, Params{Entries: 64, Flags: SetupSingleIssuer | SetupDeferTaskrun})
			if !r.rawSubmit {
				b.Fatal("Submit on a SINGLE_ISSUER|DEFER_TASKRUN ring is not raw")
			}
			cqes := make([]CQE, 64)
			b.ReportAllocs()
			for b.Loop() {
				r.GetSQE().PrepNop(1)
				var err error
				if raw {
					_, err = r.Submit()
				} else {
					_, err = r.enter(r.pending(), 0, 0, 0, 0)
				}
				if err != nil {
					b.Fatal(err)
				}
				if r.CQEs(cqes) != 1 {
					b.Fatal("NOP not completed inline")
				}
			}
		})
	}
}

// TestSubmitRawOnlySingleIssuer checks which rings submit with a raw
// syscall (only an enabled SINGLE_ISSUER|DEFER_TASKRUN ring), that each path submits, and
// the kernel's part of the raw path's premise: on a SINGLE_ISSUER ring a
// thread other than the issuer is refused (EEXIST), so only the issuer
// ever makes the raw call do work.
func TestSubmitRawOnlySingleIssuer(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cqes := make([]CQE, 8)
	nop := func(r *Ring) error {
		r.GetSQE().PrepNop(7)
		if _, err := r.Submit(); err != nil {
			return err
		}
		if n := r.CQEs(cqes); n != 1 {
			return fmt.Errorf("%d completions after a NOP submit, want 1", n)
		}
		return nil
	}
	for _, c := range []struct {
		flags uint32
		raw   bool
	}{
		{0, false},
		{SetupCoopTaskrun, false},
		{SetupSingleIssuer, false}, // task work on the way back from the call
		{SetupSingleIssuer | SetupDeferTaskrun, true},
		{SetupSingleIssuer | SetupDeferTaskrun | SetupRDisabled, false}, // raw once enabled
	} {
		r := setupRing(t, Params{Entries: 8, Flags: c.flags})
		if r.rawSubmit != c.raw {
			t.Errorf("flags %#x: raw submit %v, want %v", c.flags, r.rawSubmit, c.raw)
		}
		if c.flags&SetupRDisabled != 0 {
			if err := r.Enable(); err != nil {
				t.Fatal(err)
			}
			if !r.rawSubmit {
				t.Errorf("flags %#x: raw submit off after Enable", c.flags)
			}
		}
		if err := nop(r); err != nil {
			t.Errorf("flags %#x: %v", c.flags, err)
		}
	}

	r := setupRing(t, Params{Entries: 8, Flags: SetupSingleIssuer | SetupDeferTaskrun})
	other := make(chan error)
	go func() {
		runtime.LockOSThread() // a thread of its own, never the issuer's
		other <- nop(r)
	}()
	if err := <-other; !errors.Is(err, unix.EEXIST) {
		t.Fatalf("submit from another thread on a SINGLE_ISSUER ring: %v, want EEXIST", err)
	}
	if _, err := r.Submit(); err != nil { // the issuer takes the refused NOP
		t.Fatal(err)
	}
	if n := r.CQEs(cqes); n != 1 {
		t.Fatalf("%d completions on the issuer, want 1", n)
	}
}

// TestSubmitFlushesCQOverflow: completions that found the CQ ring full
// (IORING_SQ_CQ_OVERFLOW; the kernel keeps them, in order) reach the ring
// at the next Submit once there is room, even with nothing to submit,
// without a Wait. The kernel moves them only in an io_uring_enter with
// IORING_ENTER_GETEVENTS.
func TestSubmitFlushesCQOverflow(t *testing.T) {
	for _, flags := range []uint32{0, SetupCoopTaskrun, SetupSingleIssuer | SetupDeferTaskrun} {
		t.Run(fmt.Sprintf("flags=%#x", flags), func(t *testing.T) {
			runtime.LockOSThread() // SINGLE_ISSUER: one thread submits
			defer runtime.UnlockOSThread()
			r := setupRing(t, Params{Entries: 4, CQEntries: 4})
			// Three rounds of four NOPs into a four-entry CQ: the last
			// eight overflow.
			for round := range 3 {
				for i := range 4 {
					r.GetSQE().PrepNop(uint64(round*4 + i))
				}
				if _, err := r.Submit(); err != nil {
					t.Fatal(err)
				}
			}
			if atomic.LoadUint32(r.sqFlags)&sqCQOverflow == 0 {
				t.Fatal("12 completions into a 4-entry CQ ring: IORING_SQ_CQ_OVERFLOW not set")
			}
			cqes := make([]CQE, 4)
			for next := 0; next < 12; {
				n := r.CQEs(cqes)
				if n == 0 {
					t.Fatalf("completion %d of 12 not in the CQ ring after Submit (overflow flag %v)",
						next, atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0)
				}
				for _, c := range cqes[:n] {
					if c.UserData != uint64(next) {
						t.Fatalf("completion %+v, want user data %d", c, next)
					}
					next++
				}
				if _, err := r.Submit(); err != nil { // nothing to submit
					t.Fatal(err)
				}
			}
			if atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 {
				t.Fatal("IORING_SQ_CQ_OVERFLOW still set after every completion was read")
			}
		})
	}
}

// TestBufRingReclaim: buffers the kernel took for completions the caller
// never saw (Wait's EBADR) are out of the ring for good; Reclaim, with no
// request running, gives every buffer back but the ones the caller says
// it holds. The multishot request is ended by PrepCancelUserData, which
// answers 0 when it found the request and -ENOENT when none runs.
func TestBufRingReclaim(t *testing.T) {
	r := setupRing(t, Params{Entries: 8})
	br, hdrs := setupRecvmsg(t, r, 9, 4, 256)
	msg := &hdrs.Hdrs[0]
	fd, send := udpPair(t)
	arm := func() {
		r.GetSQE().PrepRecvmsgMultishot(fd, msg, 0, br.Group(), 42)
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
	}
	arm()
	for i := range 2 {
		if _, err := send.Write(fmt.Appendf(nil, "lost %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cqes := make([]CQE, 16)
	waitCQEs(t, r, 2)
	var lost []uint16 // the completions "dropped": their buffers are gone
	for _, c := range cqes[:r.CQEs(cqes)] {
		lost = append(lost, c.BufID())
	}
	if len(lost) != 2 {
		t.Fatalf("%d completions, want 2", len(lost))
	}
	cancel := func(want int32) {
		t.Helper()
		r.GetSQE().PrepCancelUserData(42, 43)
		n := uint32(1)
		if want == 0 {
			n = 2 // and the request's last
		}
		waitCQEs(t, r, n)
		for _, c := range cqes[:r.CQEs(cqes)] {
			switch {
			case c.UserData == 43 && c.Res == want:
			case c.UserData == 42 && !c.More() && c.Res == -int32(unix.ECANCELED) && want == 0:
			default:
				t.Fatalf("cqe %+v after a cancel by user data: want the cancel's (res %d) and the request's end", c, want)
			}
		}
	}
	cancel(0)
	cancel(-int32(unix.ENOENT))
	// The caller holds lost[0]: three buffers come back.
	if err := br.Reclaim(func(id uint16) bool { return id == lost[0] }); err != nil {
		t.Fatal(err)
	}
	arm()
	for i := range 4 {
		if _, err := send.Write(fmt.Appendf(nil, "after %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitCQEs(t, r, 4)
	ids := map[uint16]bool{}
	n := r.CQEs(cqes)
	for i, c := range cqes[:n] {
		if i < 3 && (!c.More() || c.Flags&CQEFBuffer == 0 || c.BufID() == lost[0] || ids[c.BufID()]) {
			t.Fatalf("cqe %d %+v: want a buffer not held nor given twice, with F_MORE (ids so far %v, held %d)", i, c, ids, lost[0])
		}
		ids[c.BufID()] = true
	}
	if n != 4 || cqes[3].Res != -int32(unix.ENOBUFS) || cqes[3].More() {
		t.Fatalf("%d completions %+v: want three datagrams in the three free buffers, then ENOBUFS", n, cqes[:n])
	}
}
