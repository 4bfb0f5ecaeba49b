package rx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

var (
	groupA = netip.MustParseAddr("239.77.0.1")
	groupB = netip.MustParseAddr("239.77.0.2")
)

func labLines(lab *netlab.Lab) []LineConfig {
	return []LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: groupA, Port: 26400},
		{Name: "B", Interface: lab.DstIf, Group: groupB, Port: 26401},
	}
}

// openIn opens a receiver inside the lab's receiving namespace.
func openIn(t testing.TB, lab *netlab.Lab, cfg Config) (Receiver, error) {
	t.Helper()
	var r Receiver
	err := lab.Do(lab.Dst, func() error {
		var err error
		r, err = Open(cfg)
		return err
	})
	return r, err
}

// payload is packet seq of line: 20..1400 bytes, line and seq first, then a
// pattern that differs per line and seq.
func payload(line Line, seq int) []byte {
	size := 20 + (seq*7919+int(line)*13)%1381
	b := make([]byte, size)
	b[0] = byte(line)
	binary.BigEndian.PutUint32(b[1:], uint32(seq))
	for i := 5; i < size; i++ {
		b[i] = byte(seq*31 + i + int(line)*101)
	}
	return b
}

// labSenders opens one sender per line in the lab's sending namespace.
func labSenders(t testing.TB, lab *netlab.Lab, lines []LineConfig, rate float64) []*exchange.Sender {
	t.Helper()
	var senders []*exchange.Sender
	err := lab.Do(lab.Src, func() error {
		for _, lc := range lines {
			s, err := exchange.NewSender(exchange.Config{
				Interface: lab.SrcIf,
				Lines:     []exchange.Line{{Group: lc.Group, Port: lc.Port}},
				Rate:      rate,
			})
			if err != nil {
				return err
			}
			senders = append(senders, s)
		}
		return nil
	})
	for _, s := range senders {
		t.Cleanup(func() { s.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return senders
}

// sendLines sends n packets on every line concurrently, paced, and fails
// the test (from any goroutine) if a sender fails.
func sendLines(t testing.TB, senders []*exchange.Sender, n int) {
	if err := send(senders, n); err != nil {
		t.Error(err)
	}
}

// sendAfter starts sendLines after a short delay (the receiver is joined);
// the test's cleanup waits for it before the senders close.
func sendAfter(t testing.TB, senders []*exchange.Sender, n int) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(20 * time.Millisecond)
		sendLines(t, senders, n)
	}()
	t.Cleanup(func() { <-done })
}

func send(senders []*exchange.Sender, n int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(senders))
	for i, s := range senders {
		wg.Go(func() {
			pkts := make([][]byte, n)
			for seq := range pkts {
				pkts[seq] = payload(Line(i), seq)
			}
			st, err := s.Send(context.Background(), exchange.Packets(pkts))
			if err == nil && (st.Lines[0].Sent != uint64(n) || st.Lines[0].Errors != 0) {
				err = fmt.Errorf("line %d: sender stats %+v", i, st.Lines[0])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// expectLines receives until every line delivered n packets in order, byte
// for byte, with the right Line and Src, or fails after a bounded wait.
func expectLines(t testing.TB, r Receiver, senders []*exchange.Sender, n int) {
	t.Helper()
	if err := receiveLines(r, senders, n); err != nil {
		t.Fatal(err)
	}
}

func receiveLines(r Receiver, senders []*exchange.Sender, n int) error {
	srcs := make([]netip.AddrPort, len(senders))
	for i, s := range senders {
		a, err := s.LocalAddr(0)
		if err != nil {
			return err
		}
		srcs[i] = a
	}
	next := make([]int, len(senders))
	done := func() bool {
		for _, k := range next {
			if k < n {
				return false
			}
		}
		return true
	}
	pkts := make([]Packet, 64)
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("received %v of %d packets per line before the deadline; stats %+v", next, n, r.Stats())
		}
		k, err := r.Receive(pkts)
		if err != nil {
			return err
		}
		for _, p := range pkts[:k] {
			if int(p.Line) >= len(senders) {
				return fmt.Errorf("packet on line %d; %d lines configured", p.Line, len(senders))
			}
			if p.Src != srcs[p.Line] {
				return fmt.Errorf("line %s: source %v, want %v", p.Line, p.Src, srcs[p.Line])
			}
			if len(p.Data) < 5 || Line(p.Data[0]) != p.Line {
				return fmt.Errorf("line %s: packet %x belongs to another line", p.Line, p.Data[:min(len(p.Data), 8)])
			}
			seq := int(binary.BigEndian.Uint32(p.Data[1:]))
			if seq != next[p.Line] {
				return fmt.Errorf("line %s: packet %d, want %d (loss or reordering); stats %+v", p.Line, seq, next[p.Line], r.Stats())
			}
			if !bytes.Equal(p.Data, payload(p.Line, seq)) {
				return fmt.Errorf("line %s packet %d: %d bytes differ from the %d sent", p.Line, seq, len(p.Data), len(payload(p.Line, seq)))
			}
			if d := time.Since(time.Unix(0, p.RxTime)); d < -time.Minute || d > time.Minute {
				return fmt.Errorf("line %s packet %d: receive time %v is %v from now", p.Line, seq, time.Unix(0, p.RxTime), d)
			}
			next[p.Line]++
		}
		r.Release(pkts[:k])
	}
	return nil
}

// openBackend opens backend in the lab, skipping only the AF_XDP row while
// the kernel (or the placeholder adapter) reports it unsupported.
func openBackend(t testing.TB, lab *netlab.Lab, backend string, cfg Config) Receiver {
	t.Helper()
	cfg.Backend = backend
	if cfg.Lines == nil {
		cfg.Lines = labLines(lab)
	}
	r, err := openIn(t, lab, cfg)
	if backend == BackendXDP && errors.Is(err, ErrNotSupported) {
		netlab.SkipOrFail(t, "AF_XDP backend", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var backends = []string{BackendSocket, BackendUring, BackendXDP}

// TestBackendsLab is the one table every backend runs: two lines, 2000
// packets each of 20..1400 bytes, complete, in order, byte for byte; then
// close and reopen on the same ports; no fd or goroutine leaks. Each
// backend runs twice: used from an ordinary goroutine, and from one
// goroutine locked to a thread in the receiving namespace (LockedThread).
func TestBackendsLab(t *testing.T) {
	for _, backend := range backends {
		for _, locked := range []bool{false, true} {
			name := backend
			if locked {
				name += "/locked"
			}
			t.Run(name, func(t *testing.T) {
				fds, goroutines := countFds(), runtime.NumGoroutine()
				func() {
					lab := netlab.ForTest(t, netlab.Options{})
					senders := labSenders(t, lab, labLines(lab), 10000)
					defer func() {
						for _, s := range senders {
							s.Close()
						}
					}()
					cfg := Config{Backend: backend, Lines: labLines(lab), PollTimeout: 50 * time.Millisecond, LockedThread: locked}
					if !locked {
						r := openBackend(t, lab, backend, cfg)
						if err := openTwice(r, func() (Receiver, error) { return openIn(t, lab, cfg) }, senders); err != nil {
							t.Fatal(err)
						}
						return
					}
					err := onLockedThread(lab.Dst, func() error {
						r, err := Open(cfg)
						if err != nil {
							return err
						}
						if backend == BackendUring && !strings.Contains(r.Backend(), "defer taskrun") {
							r.Close()
							return fmt.Errorf("LockedThread uring backend %q does not use DEFER_TASKRUN", r.Backend())
						}
						return openTwice(r, func() (Receiver, error) { return Open(cfg) }, senders)
					})
					if backend == BackendXDP && errors.Is(err, ErrNotSupported) {
						netlab.SkipOrFail(t, "AF_XDP backend", 5, 11, err)
					}
					if err != nil {
						t.Fatal(err)
					}
				}()
				checkLeaks(t, fds, goroutines)
			})
		}
	}
}

// openTwice receives 2000 packets per line on r, closes it, reopens with
// reopen and receives 100 more per line.
func openTwice(r Receiver, reopen func() (Receiver, error), senders []*exchange.Sender) error {
	defer func() { r.Close() }()
	backend := r.Backend()
	sendc := make(chan error, 1)
	go func() { time.Sleep(20 * time.Millisecond); sendc <- send(senders, 2000) }()
	if err := receiveLines(r, senders, 2000); err != nil {
		return fmt.Errorf("%s: %w", backend, err)
	}
	if err := <-sendc; err != nil {
		return err
	}
	st := r.Stats()
	if st.Packets[0] != 2000 || st.Packets[1] != 2000 || st.Dropped != 0 {
		return fmt.Errorf("%s: stats %+v, want 2000 packets per line and no drops", backend, st)
	}
	if err := r.Close(); err != nil {
		return err
	}
	if _, err := r.Receive(make([]Packet, 4)); !errors.Is(err, ErrClosed) {
		return fmt.Errorf("%s: Receive after Close: %v, want ErrClosed", backend, err)
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("%s: second Close: %w", backend, err)
	}
	// Reopen on the same queue and ports.
	r2, err := reopen()
	if err != nil {
		return fmt.Errorf("%s: reopen: %w", backend, err)
	}
	r = r2
	go func() { time.Sleep(20 * time.Millisecond); sendc <- send(senders, 100) }()
	if err := receiveLines(r, senders, 100); err != nil {
		return fmt.Errorf("%s after reopen: %w", backend, err)
	}
	if err := <-sendc; err != nil {
		return err
	}
	return r.Close()
}

// onLockedThread runs fn on a goroutine locked to an OS thread inside
// namespace ns, the way a feed handler's receive loop runs.
func onLockedThread(ns string, fn func() error) error {
	return netlab.Do(ns, fn)
}

// checkLeaks fails when fds or goroutines outlive the test (bounded wait
// for goroutines that are finishing).
func checkLeaks(t *testing.T, fds, goroutines int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		f, g := countFds(), runtime.NumGoroutine()
		if f <= fds && g <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: %d fds and %d goroutines before, %d and %d after", fds, goroutines, f, g)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countFds() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// TestAutoFallback: the auto chain falls back when the kernel or driver
// lacks a feature (veth has no AF_XDP zero-copy: EOPNOTSUPP), logging why,
// and the chosen backend receives.
func TestAutoFallback(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	var logs bytes.Buffer
	r := openBackend(t, lab, BackendAuto, Config{ZeroCopy: "on", Log: zerolog.New(&logs)})
	defer r.Close()
	if got := r.Backend(); !strings.HasPrefix(got, BackendUring) {
		t.Fatalf("auto chose %q, want %s; log:\n%s", got, BackendUring, logs.String())
	}
	for _, w := range []string{`"backend":"xdp"`, `"fallback":"uring"`, "xdp backend unavailable here, falling back to uring"} {
		if !bytes.Contains(logs.Bytes(), []byte(w)) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
	senders := labSenders(t, lab, labLines(lab), 10000)
	sendAfter(t, senders, 50)
	expectLines(t, r, senders, 50)
}

// TestAutoNoFallbackOnConfigErrors: what is wrong with the configuration (a
// queue the interface does not have, a ring size that is not a power of two)
// is returned at once; the chain is only for missing kernel features.
func TestAutoNoFallbackOnConfigErrors(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	cases := []struct {
		name     string
		cfg      Config
		wantErr  string
		wantLogs []string // fallbacks that are right (a missing feature)
	}{
		{"queue 7 on a one-queue veth", Config{Queues: []int{7}}, "open xdp backend", nil},
		{"zero-copy missing, then a bad uring ring size", Config{ZeroCopy: "on", RingSize: 1000},
			"ring size 1000", []string{"xdp backend unavailable here, falling back to uring"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := tc.cfg
			cfg.Backend, cfg.Lines, cfg.Log = BackendAuto, labLines(lab), zerolog.New(&logs)
			r, err := openIn(t, lab, cfg)
			if err == nil {
				r.Close()
				t.Fatalf("auto opened %s; log:\n%s", r.Backend(), logs.String())
			}
			if errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q: want a config error mentioning %q", err, tc.wantErr)
			}
			if n := bytes.Count(logs.Bytes(), []byte("falling back")); n != len(tc.wantLogs) {
				t.Errorf("%d fallbacks logged, want %d:\n%s", n, len(tc.wantLogs), logs.String())
			}
			for _, w := range tc.wantLogs {
				if !bytes.Contains(logs.Bytes(), []byte(w)) {
					t.Errorf("log lacks %q:\n%s", w, logs.String())
				}
			}
		})
	}
}

// An explicit backend does not fall back.
func TestExplicitBackendNoFallback(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{})
	var logs bytes.Buffer
	_, err := openIn(t, lab, Config{Backend: BackendUring, RingSize: 1000, Lines: labLines(lab), Log: zerolog.New(&logs)})
	if err == nil {
		t.Fatal("uring with a bad ring size opened")
	}
	if logs.Len() != 0 {
		t.Fatalf("explicit backend logged a fallback: %s", logs.String())
	}
	if _, err := openIn(t, lab, Config{Backend: "dpdk", Lines: labLines(lab)}); err == nil {
		t.Fatal("unknown backend accepted")
	}
	if _, err := openIn(t, lab, Config{Backend: BackendSocket}); err == nil {
		t.Fatal("no lines accepted")
	}
	bad := labLines(lab)
	bad[0].Interface = "nosuchif0"
	if _, err := openIn(t, lab, Config{Backend: BackendSocket, Lines: bad}); err == nil {
		t.Fatal("missing interface accepted")
	}
}

// TestSourceFilter: a line with Source set drops packets from other sources
// and counts them.
func TestSourceFilter(t *testing.T) {
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			lines := labLines(lab)[:1]
			lines[0].Source = netip.MustParseAddr("10.99.0.77") // not the sender
			senders := labSenders(t, lab, lines, 10000)
			r := openBackend(t, lab, backend, Config{Lines: lines, PollTimeout: 20 * time.Millisecond})
			defer r.Close()
			sendLines(t, senders, 20)
			pkts := make([]Packet, 8)
			deadline := time.Now().Add(10 * time.Second)
			for r.Stats().Extra.Get("source_filtered") < 20 {
				if time.Now().After(deadline) {
					t.Fatalf("stats %+v: want 20 packets filtered", r.Stats())
				}
				n, err := r.Receive(pkts)
				if err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Fatalf("received %d packets from a filtered source", n)
				}
			}
		})
	}
}

// igmpGroups returns the groups /proc/net/igmp lists for interface ifname
// in the lab's namespace ns (read by `ip netns exec ns cat`).
func igmpGroups(t *testing.T, lab *netlab.Lab, ns, ifname string) map[netip.Addr]bool {
	t.Helper()
	b, err := lab.Exec(ns, "cat", "/proc/net/igmp")
	if err != nil {
		t.Fatal(err)
	}
	groups := map[netip.Addr]bool{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && !strings.HasPrefix(line, "\t"):
			// "Idx Device : ...": a 10-character name runs into the colon.
			in = strings.TrimSuffix(f[1], ":") == ifname
		case in && len(f) >= 1 && len(f[0]) == 8:
			var v uint32
			if _, err := fmt.Sscanf(f[0], "%08X", &v); err == nil {
				var a [4]byte
				binary.LittleEndian.PutUint32(a[:], v)
				groups[netip.AddrFrom4(a)] = true
			}
		}
	}
	return groups
}

// TestJoinsGroups: while a socket or io_uring receiver is open the host is
// a member of both lines' groups on the lines' interface (IGMP); after
// Close it is not.
func TestJoinsGroups(t *testing.T) {
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			if g := igmpGroups(t, lab, lab.Dst, lab.DstIf); g[groupA] || g[groupB] {
				t.Fatalf("member before Open: %v", g)
			}
			r := openBackend(t, lab, backend, Config{})
			if g := igmpGroups(t, lab, lab.Dst, lab.DstIf); !g[groupA] || !g[groupB] {
				t.Errorf("groups on %s while open: %v, want %v and %v", lab.DstIf, g, groupA, groupB)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if g := igmpGroups(t, lab, lab.Dst, lab.DstIf); g[groupA] || g[groupB] {
				t.Errorf("still a member after Close: %v", g)
			}
		})
	}
}

// TestDropAccounting: with a small socket buffer and nobody receiving,
// datagrams overflow; afterwards every datagram sent was either received
// or counted in Stats.Dropped.
//
// "wrapped": the kernel's drop counter is 32 bits per socket. The gauge is
// put where a socket's counter read 2^32-3 last time: the fresh socket's
// count then reads as the counter having wrapped past 2^32, and the total
// must carry on from 2^32-3 (3 drops up to the wrap, then the socket's),
// not fall back to the new socket's small count (a Prometheus counter
// would see a reset).
func TestDropAccounting(t *testing.T) {
	for _, backend := range []string{BackendSocket, BackendUring} {
		for _, wrapped := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/wrapped=%v", backend, wrapped), func(t *testing.T) {
				lab := netlab.ForTest(t, netlab.Options{})
				lines := labLines(lab)[:1]
				senders := labSenders(t, lab, lines, 20000)
				r := openBackend(t, lab, backend, Config{Lines: lines, RecvBuffer: 64 << 10, PollTimeout: 20 * time.Millisecond})
				defer r.Close()
				var before, extra uint64
				if wrapped {
					var g *dropGauge
					switch r := r.(type) {
					case *socketRx:
						g = &r.drops
					case *uringRx:
						g = &r.drops
					}
					before, extra = 1<<32-3, 3
					g.mu.Lock()
					g.last[0], g.total = uint32(before), before
					g.mu.Unlock()
				}
				const n = 2000
				sendLines(t, senders, n)
				received := drainUntilIdle(t, r)
				st := r.Stats()
				if st.Dropped <= before || uint64(received)+st.Dropped-before != n+extra {
					t.Fatalf("received %d, Dropped %d: want some drops since %d, and received + drops since = %d + %d; stats %+v",
						received, st.Dropped, before, n, extra, st)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				if after := r.Stats().Dropped; after != st.Dropped {
					t.Fatalf("Dropped after Close = %d, want the last value %d", after, st.Dropped)
				}
			})
		}
	}
}

// drainUntilIdle receives and releases until five Receives in a row
// return nothing, and returns the number received.
func drainUntilIdle(t *testing.T, r Receiver) int { return drainEach(t, r, nil) }

// drainEach is drainUntilIdle calling each (if not nil) with every packet
// before it is released.
func drainEach(t *testing.T, r Receiver, each func(p *Packet)) int {
	t.Helper()
	pkts := make([]Packet, 64)
	received := 0
	for idle := 0; idle < 5; {
		k, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			idle++
		}
		received += k
		for i := range pkts[:k] {
			if each != nil {
				each(&pkts[i])
			}
		}
		r.Release(pkts[:k])
	}
	return received
}

// TestReleaseAfterClose: packets still held when the receiver closes may
// be released after Close (Receiver's contract: it does nothing), on every
// backend; their Data is not read, since under xdp and uring the memory
// behind it is gone.
func TestReleaseAfterClose(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			lines := labLines(lab)[:1]
			senders := labSenders(t, lab, lines, 10000)
			r := openBackend(t, lab, backend, Config{Lines: lines, PollTimeout: 20 * time.Millisecond})
			defer r.Close()
			sendAfter(t, senders, 3)
			pkts := make([]Packet, 8)
			n := 0
			for deadline := time.Now().Add(10 * time.Second); n == 0 && time.Now().Before(deadline); {
				var err error
				if n, err = r.Receive(pkts); err != nil {
					t.Fatal(err)
				}
			}
			if n == 0 {
				t.Fatalf("nothing received; stats %+v", r.Stats())
			}
			before := r.Stats()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			r.Release(pkts[:n])
			if got := r.Stats(); got.Packets != before.Packets || got.Extra.Get("bad_releases") != 0 {
				t.Fatalf("after Close and Release: stats %+v; want the packets of before Close (%v) and no bad releases", got, before.Packets)
			}
		})
	}
}

// TestCloseTwice: a second Close while the first is under way waits for
// the first and returns its error, on every backend. The test holds the
// lock a Receive in progress holds, so the first Close waits for it; a
// second Close that returns before the test lets go of it returned while
// the first had not yet torn anything down.
func TestCloseTwice(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			r := openBackend(t, lab, backend, Config{Lines: labLines(lab)[:1], PollTimeout: 20 * time.Millisecond})
			var mu *sync.Mutex
			var closed *atomic.Bool
			switch b := r.(type) {
			case *socketRx:
				mu, closed = &b.mu, &b.closed
			case *uringRx:
				mu, closed = &b.mu, &b.closed
			case *xdpRx:
				mu, closed = &b.mu, &b.closed
			default:
				t.Fatalf("backend %s is a %T", backend, r)
			}
			mu.Lock() // a Receive in progress
			held := true
			defer func() {
				if held {
					mu.Unlock()
				}
				r.Close()
			}()
			first, second := make(chan error, 1), make(chan error, 1)
			go func() { first <- r.Close() }()
			for i := 0; !closed.Load(); i++ {
				if i == 20000 {
					t.Fatal("the first Close did not start")
				}
				time.Sleep(time.Millisecond / 2)
			}
			go func() { second <- r.Close() }()
			select {
			case err := <-second:
				t.Fatalf("the second Close returned (%v) while the first waits for the Receive in progress", err)
			case <-time.After(100 * time.Millisecond):
			}
			held = false
			mu.Unlock()
			e1 := <-first
			select {
			case e2 := <-second:
				if e2 != e1 {
					t.Errorf("second Close: %v, first: %v", e2, e1)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the second Close did not return after the first")
			}
			if err := r.Close(); err != e1 {
				t.Errorf("a Close after both: %v, want the first's %v", err, e1)
			}
		})
	}
}

// setRPFilter sets rp_filter to v in the lab's receiving namespace for
// the conf entries keys ("all", "default", an interface).
func setRPFilter(t *testing.T, lab *netlab.Lab, v string, keys ...string) {
	t.Helper()
	if err := lab.Do(lab.Dst, func() error {
		for _, k := range keys {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+k+"/rp_filter", []byte(v), 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
