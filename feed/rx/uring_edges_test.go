package rx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/seccomptest"
	"github.com/marketfeed/feedhandler/uring"
)

// TestUringRearmAfterENOBUFSInWait: when the final ENOBUFS completion of a
// line's multishot request is the first completion a Receive reaps (the
// previous batch ended just before it), Receive must re-arm the request
// while buffers are free instead of waiting out PollTimeout with the line
// disarmed and reporting (0, nil) while datagrams sit in the socket.
func TestUringRearmAfterENOBUFSInWait(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	lines := labLines(lab)[:1]
	senders := labSenders(t, lab, lines, 10000)
	cfg := Config{Backend: BackendUring, Lines: lines, RingSize: 32, BatchSize: 4, PollTimeout: 300 * time.Millisecond, LockedThread: true}
	err := onLockedThread(lab.Dst, func() error {
		r, err := Open(cfg)
		if err != nil {
			return err
		}
		defer r.Close()
		pkts := make([]Packet, 4)
		// Arm the request (nothing arrives).
		if n, err := r.Receive(pkts); n != 0 || err != nil {
			return fmt.Errorf("first Receive: %d, %v", n, err)
		}
		// 36 datagrams for 32 buffers: 32 completions, then ENOBUFS; 4
		// datagrams wait in the socket.
		if err := send(senders, 36); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
		next := 0
		for next < 36 {
			start := time.Now()
			n, err := r.Receive(pkts)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("Receive returned nothing after %v with %d of 36 datagrams received; stats %+v", time.Since(start), next, r.Stats())
			}
			for _, p := range pkts[:n] {
				if seq := int(binary.BigEndian.Uint32(p.Data[1:])); seq != next {
					return fmt.Errorf("packet %d, want %d", seq, next)
				}
				next++
			}
			r.Release(pkts[:n])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUringSmallRing: a buffer ring of 16 (allowed: at least twice the
// batch) must open; the completion ring may not be smaller than the
// submission ring (io_uring_setup: EINVAL).
func TestUringSmallRing(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	lines := labLines(lab)[:1]
	senders := labSenders(t, lab, lines, 10000)
	r := openBackend(t, lab, BackendUring, Config{Lines: lines, RingSize: 16, BatchSize: 4, PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	sendAfter(t, senders, 100)
	expectLines(t, r, senders, 100)
}

// TestUringStaleReleaseKeepsHeldBuffer: Release of a packet that holds no
// buffer (a zero Packet, or one released already whose buffer id is lent
// again) must not give a buffer the caller still reads back to the kernel.
// Buffer id 0 is a real buffer, so handle 0 cannot mean "none"; and a
// released packet must forget its buffer (the AF_XDP backend does both).
func TestUringStaleReleaseKeepsHeldBuffer(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	lines := labLines(lab)[:1]
	senders := labSenders(t, lab, lines, 10000)
	r := openBackend(t, lab, BackendUring, Config{Lines: lines, RingSize: 32, BatchSize: 4, PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	// Not sendAfter: a Sender is one goroutine's, and the next send must
	// not start before this one has returned.
	if err := send(senders, 1); err != nil {
		t.Fatal(err)
	}
	held := make([]Packet, 1)
	for deadline := time.Now().Add(5 * time.Second); ; {
		n, err := r.Receive(held)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing received")
		}
	}
	want := string(held[0].Data)
	r.Release(make([]Packet, 1)) // a zero Packet: no buffer behind it
	// 40 more datagrams cycle through all 32 buffers; held[0]'s must not
	// be among them.
	if err := send(senders, 40); err != nil {
		t.Fatal(err)
	}
	pkts := make([]Packet, 4)
	for got, idle := 0, 0; got < 40 && idle < 10; {
		n, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			idle++
		}
		got += n
		r.Release(pkts[:n])
		r.Release(pkts[:n]) // released twice: ignored
	}
	if string(held[0].Data) != want {
		t.Fatalf("held packet overwritten while held: %x..., was %x...", held[0].Data[:8], want[:8])
	}
	r.Release(held)
}

// TestUringDeferTaskrunRefused: a kernel before 6.1 refuses
// SINGLE_ISSUER|DEFER_TASKRUN (EINVAL); with LockedThread the backend
// then runs with COOP_TASKRUN, says so in a log line with the reason (it
// fell back silently before: only Backend() lacked "defer taskrun"), and
// receives.
func TestUringDeferTaskrunRefused(t *testing.T) {
	setup := uringSetup
	defer func() { uringSetup = setup }()
	uringSetup = func(p uring.Params) (*uring.Ring, error) {
		if p.Flags&uring.SetupDeferTaskrun != 0 {
			return nil, fmt.Errorf("io_uring_setup: %w", unix.EINVAL)
		}
		return setup(p)
	}
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fu"})
	lines := labLines(lab)
	senders := labSenders(t, lab, lines, 10000)
	var logs bytes.Buffer
	cfg := Config{Backend: BackendUring, Lines: lines, PollTimeout: 20 * time.Millisecond, LockedThread: true, Log: zerolog.New(&logs)}
	err := onLockedThread(lab.Dst, func() error {
		r, err := Open(cfg)
		if err != nil {
			return err
		}
		defer r.Close()
		if strings.Contains(r.Backend(), "defer taskrun") || !strings.Contains(logs.String(), "refused SINGLE_ISSUER|DEFER_TASKRUN") {
			return fmt.Errorf("backend %q, log %q: want the fallback to COOP_TASKRUN logged", r.Backend(), logs.String())
		}
		sendc := make(chan error, 1)
		go func() { time.Sleep(20 * time.Millisecond); sendc <- send(senders, 200) }()
		if err := receiveLines(r, senders, 200); err != nil {
			return err
		}
		return <-sendc
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUringBusyPollUnsupported: on a kernel without IORING_REGISTER_NAPI
// (before 6.9: EINVAL) busy_poll keeps the io_uring backend, with the line
// sockets' SO_BUSY_POLL only (the socket backend auto would fall back to
// busy-polls no more), and a warning says why in the operator's terms: the
// setting, the kernel version, and what runs instead.
func TestUringBusyPollUnsupported(t *testing.T) {
	register := uringRegisterNAPI
	defer func() { uringRegisterNAPI = register }()
	uringRegisterNAPI = func(*uring.Ring, uint32, bool) error {
		return fmt.Errorf("io_uring register NAPI busy polling: %w: %w", uring.ErrNotSupported, unix.EINVAL)
	}
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fu"})
	var logs bytes.Buffer
	r, err := openIn(t, lab, Config{Backend: BackendUring, Lines: labLines(lab), BusyPoll: true, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatalf("Open on a kernel without IORING_REGISTER_NAPI: %v; want the io_uring backend, with a warning", err)
	}
	defer r.Close()
	if !strings.Contains(r.Backend(), "no napi busy poll (kernel)") {
		t.Errorf("Backend() = %q, want it to say no napi busy poll (kernel)", r.Backend())
	}
	for _, want := range []string{`"level":"warn"`, "receive.busy_poll", "Linux 6.9", "SO_BUSY_POLL only"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q does not say %q", logs.String(), want)
		}
	}
}

// TestAutoRingAboveUringLimit: a ring size above the 32768 buffers a
// provided buffer ring may hold (the kernel's limit) is one AF_XDP takes,
// so it is no configuration error: when AF_XDP is unavailable (here: veth
// has no zero-copy) auto falls back past io_uring to the sockets, logging
// why at each step, and receives. It stopped at io_uring with "ring size
// 65536: want a power of two ..." and opened nothing.
func TestAutoRingAboveUringLimit(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fk"})
	lines := labLines(lab)
	var logs bytes.Buffer
	r := openBackend(t, lab, BackendAuto, Config{Lines: lines, ZeroCopy: "on", RingSize: 2 * uring.MaxBufRingEntries, Log: zerolog.New(&logs)})
	defer r.Close()
	if !strings.HasPrefix(r.Backend(), BackendSocket) {
		t.Fatalf("auto chose %q, want %s; log:\n%s", r.Backend(), BackendSocket, logs.String())
	}
	for _, w := range []string{"falling back to uring", "falling back to socket", "ring size 65536: a provided buffer ring holds at most 32768 buffers"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	senders := labSenders(t, lab, lines, 10000)
	sendAfter(t, senders, 50)
	expectLines(t, r, senders, 50)
}

// TestAutoUringRefusedFallsBack: io_uring_setup refused, whatever the
// errno the refusal takes (EPERM: kernel.io_uring_disabled or a container's
// seccomp profile; EACCES: a security module, SELinux's io_uring class
// since Linux 6.15; ENOSYS: a kernel without io_uring, or a
// sandbox's filter answering as one), makes auto fall back to the sockets
// and log why. Here a seccomp filter on the opening thread refuses it,
// and AF_XDP falls back first (veth has no zero-copy). Before, EACCES was
// no ErrNotSupported: "open receiver (auto): open uring backend: probe
// multishot recvmsg: io_uring_setup: permission denied", nothing opened.
func TestAutoUringRefusedFallsBack(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h202"})
	for _, tc := range []struct {
		errno unix.Errno
		why   string
	}{
		{unix.EPERM, "a seccomp filter"},
		{unix.EACCES, "a security module refuses io_uring_setup"},
		{unix.ENOSYS, "this kernel has no io_uring"},
	} {
		var logs bytes.Buffer
		cfg := Config{Backend: BackendAuto, Lines: labLines(lab), ZeroCopy: "on", Log: zerolog.New(&logs)}
		var r Receiver
		err := netlab.Do(lab.Dst, func() error {
			// Locked twice: netlab.Do's unlock leaves this thread
			// locked, so it exits with its filter instead of going
			// back to the pool.
			runtime.LockOSThread()
			if err := seccomptest.RefuseIOUringSetup(tc.errno, false); err != nil {
				return err
			}
			var err error
			r, err = Open(cfg)
			return err
		})
		if err != nil {
			t.Fatalf("io_uring_setup refused with %v: %v; log:\n%s", tc.errno, err, logs.String())
		}
		r.Close()
		if !strings.HasPrefix(r.Backend(), BackendSocket) {
			t.Errorf("io_uring_setup refused with %v: auto chose %q, want %s", tc.errno, r.Backend(), BackendSocket)
		}
		for _, w := range []string{"uring backend unavailable here, falling back to socket", tc.errno.Error(), tc.why} {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("io_uring_setup refused with %v: log lacks %q:\n%s", tc.errno, w, logs.String())
			}
		}
	}
}
