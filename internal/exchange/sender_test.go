package exchange

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

// loopbackSink is a UDP socket on 127.0.0.1 with a large buffer, standing in
// for a line's receiver.
func loopbackSink(t *testing.T) (*net.UDPConn, uint16) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
			c.SetReadBuffer(32 << 20)
		}
	})
	return c, uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// drain reads sequence numbers until n datagrams or a quiet 300 ms.
func drain(t *testing.T, c *net.UDPConn, n int) []uint32 {
	t.Helper()
	var seqs []uint32
	buf := make([]byte, 2048)
	for len(seqs) < n {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		k, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			t.Fatal(err)
		}
		seqs = append(seqs, binary.BigEndian.Uint32(buf[:k]))
	}
	return seqs
}

func numbered(n int) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = binary.BigEndian.AppendUint32(make([]byte, 0, 4+i%300), uint32(i))
		pkts[i] = pkts[i][:4+i%300]
	}
	return pkts
}

func forever() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		p := []byte("tick")
		for yield(p) {
		}
	}
}

var loopback = netip.MustParseAddr("127.0.0.1")

// sendAll sends pkts with a Sender of cfg and returns its statistics.
func sendAll(t *testing.T, cfg Config, pkts [][]byte) Stats {
	t.Helper()
	s, err := NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Send(context.Background(), Packets(pkts))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestInjection(t *testing.T) {
	const n = 2000
	cases := []struct {
		name string
		line Line
	}{
		{"clean", Line{}},
		{"loss", Line{Loss: 0.2}},
		{"dup", Line{Dup: 0.2}},
		{"reorder", Line{Reorder: 0.2}},
		{"all", Line{Loss: 0.1, Dup: 0.1, Reorder: 0.1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, port := loopbackSink(t)
			l := tc.line
			l.Group, l.Port = loopback, port
			st := sendAll(t, Config{Lines: []Line{l}, Seed: 7}, numbered(n))
			ls := st.Lines[0]
			if st.Input != n || ls.Errors != 0 {
				t.Fatalf("stats %+v", st)
			}
			got := drain(t, c, int(ls.Sent)+1)
			if len(got) != int(ls.Sent) {
				t.Fatalf("received %d datagrams, sender reports %d sent", len(got), ls.Sent)
			}
			seen := make([]int, n)
			late, maxSeq := 0, -1
			for _, q := range got {
				seen[q]++
				if int(q) < maxSeq {
					late++
				}
				maxSeq = max(maxSeq, int(q))
			}
			missing, doubled := 0, 0
			for _, k := range seen {
				switch k {
				case 0:
					missing++
				case 2:
					doubled++
				}
			}
			if uint64(missing) != ls.Dropped || uint64(doubled) != ls.Duplicated || uint64(late) != ls.Reordered {
				t.Fatalf("receiver saw %d missing, %d doubled, %d late; sender injected %+v", missing, doubled, late, ls)
			}
			// The injected counts follow the configured probabilities.
			for _, k := range []struct {
				p   float64
				got uint64
			}{{l.Loss, ls.Dropped}, {l.Dup, ls.Duplicated}, {l.Reorder, ls.Reordered}} {
				if k.p == 0 && k.got != 0 || k.p > 0 && (float64(k.got) < k.p*n/2 || float64(k.got) > k.p*n*1.5) {
					t.Fatalf("probability %v gave %d of %d", k.p, k.got, n)
				}
			}
		})
	}
}

func TestTwoLinesIndependent(t *testing.T) {
	ca, pa := loopbackSink(t)
	cb, pb := loopbackSink(t)
	s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: pa}, {Group: loopback, Port: pb, Loss: 0.3}}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Send(context.Background(), Packets(numbered(500)))
	if err != nil {
		t.Fatal(err)
	}
	a, b := drain(t, ca, 501), drain(t, cb, 501)
	if len(a) != 500 || st.Lines[0].Dropped != 0 {
		t.Fatalf("line A: %d received, stats %+v", len(a), st.Lines[0])
	}
	if len(b) != 500-int(st.Lines[1].Dropped) || st.Lines[1].Dropped == 0 {
		t.Fatalf("line B: %d received, stats %+v", len(b), st.Lines[1])
	}
}

// The token bucket never lets more than Burst + Rate*elapsed packets out.
// TestPacingCount: spinning or sleeping only, the sender never goes faster
// than its bucket allows.
func TestPacingCount(t *testing.T) {
	for _, c := range []Config{{}, {Deadline: true}, {Deadline: true, Pin: true}} {
		t.Run(fmt.Sprintf("deadline=%v,pin=%v", c.Deadline, c.Pin), func(t *testing.T) { testPacingCount(t, c) })
	}
}

func testPacingCount(t *testing.T, c Config) {
	_, port := loopbackSink(t)
	const rate, count = 4000.0, 200
	c.Lines, c.Rate, c.Burst, c.Count = []Line{{Group: loopback, Port: port}}, rate, 1, count
	s, err := NewSender(c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Send(context.Background(), forever())
	if err != nil {
		t.Fatal(err)
	}
	if st.Input != count || st.Lines[0].Sent != count {
		t.Fatalf("took %d, sent %d; want Count %d", st.Input, st.Lines[0].Sent, count)
	}
	if minimum := time.Duration(float64(count-1) / rate * float64(time.Second)); st.Elapsed < minimum {
		t.Fatalf("%d packets at %v/s in %v, faster than the bucket allows (%v)", count, rate, st.Elapsed, minimum)
	}
}

func TestPacingDuration(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		t.Run(fmt.Sprintf("deadline=%v", deadline), func(t *testing.T) {
			_, port := loopbackSink(t)
			const rate, burst = 2000.0, 4
			d := 100 * time.Millisecond
			s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: port}}, Rate: rate, Burst: burst, Duration: d, Deadline: deadline})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			st, err := s.Send(context.Background(), forever())
			if err != nil {
				t.Fatal(err)
			}
			if st.Input == 0 || float64(st.Input) > burst+rate*st.Elapsed.Seconds() {
				t.Fatalf("took %d packets in %v at %v/s burst %d", st.Input, st.Elapsed, rate, burst)
			}
			if deadline && (st.MaxBurst > burst || st.Lines[0].Sent != st.Input) {
				t.Fatalf("deadline pacing: %d packets taken, %d sent, a write of %d (burst %d)", st.Input, st.Lines[0].Sent, st.MaxBurst, burst)
			}
		})
	}
}

// TestDeadlineSenderRestoresThread: Pin and Deadline change the sending
// thread's affinity and timer slack only for the Send.
func TestDeadlineSenderRestoresThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &before); err != nil {
		t.Fatal(err)
	}
	slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, port := loopbackSink(t)
	s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: port}}, Rate: 10000, Count: 50, Deadline: true, Pin: true, CPU: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := s.Send(context.Background(), forever()); err != nil || st.Lines[0].Sent != 50 {
		t.Fatalf("send: %+v %v", st, err)
	}
	if err := unix.SchedGetaffinity(0, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("affinity after Send %v, before %v", after, before)
	}
	if got, _ := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); got != slack {
		t.Errorf("timer slack after Send %d, before %d", got, slack)
	}
}

func TestUnpacedDurationAndCancel(t *testing.T) {
	_, port := loopbackSink(t)
	s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: port}}, Duration: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := s.Send(context.Background(), forever()); err != nil || st.Input == 0 {
		t.Fatalf("unpaced send: %+v %v", st, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Send(ctx, forever()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled send: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Lines: []Line{{Group: loopback, Port: 1, Loss: 2}}},
		{Lines: []Line{{Group: netip.MustParseAddr("ff02::1"), Port: 1}}},
		{Lines: []Line{{Group: loopback, Port: 1}}, Rate: -1},
		{Lines: []Line{{Group: loopback, Port: 1}}, Interface: "no-such-if0"},
	} {
		if s, err := NewSender(cfg); err == nil {
			s.Close()
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// reusedBuffer yields n packets from one buffer that it rewrites for each,
// as FileSource and moldudp64.Builder do: packet i is size(i) bytes, the
// number i then the byte i repeated.
func reusedBuffer(n int, size func(int) int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		k := 0
		for i := range n {
			k = max(k, size(i))
		}
		buf := make([]byte, k)
		for i := range n {
			p := buf[:size(i)]
			binary.BigEndian.PutUint32(p, uint32(i))
			for j := 4; j < len(p); j++ {
				p[j] = byte(i)
			}
			if !yield(p) {
				return
			}
		}
	}
}

// checkReceived reads datagrams until want's are all in or a quiet 300 ms,
// and checks that they are the packets want lists, in that order, each
// whole (reusedBuffer's contents).
func checkReceived(t *testing.T, c *net.UDPConn, want []int, size func(int) int) {
	t.Helper()
	buf := make([]byte, 1<<16)
	for k, i := range want {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d (packet %d): %v", k, len(want), i, err)
		}
		p := buf[:n]
		if got := int(binary.BigEndian.Uint32(p)); got != i || n != size(i) {
			t.Fatalf("datagram %d: packet %d of %d bytes, want packet %d of %d bytes", k, got, n, i, size(i))
		}
		for j := 4; j < n; j++ {
			if p[j] != byte(i) {
				t.Fatalf("datagram %d (packet %d): byte %d is %d, want %d", k, i, j, p[j], byte(i))
			}
		}
	}
}

// TestDeadlineReusedBuffer: with deadline pacing, packets wait in the
// batch while the sender asks its source for the next one; a source that
// reuses one buffer (FileSource, moldudp64.Builder) must still see every
// packet go out once, whole and in order, on every line. Unpaced, every
// write carries Burst packets, so a batch holding references to the
// source's buffer would send the last one Burst times. Packets of up to 40
// kB fill the arena before Burst are queued; a packet larger than any UDP
// payload goes out alone and fails (counted).
func TestDeadlineReusedBuffer(t *testing.T) {
	small := func(i int) int { return 4 + i%300 }
	mixed := func(i int) int {
		if i%5 == 0 {
			return 4 + (i*7919)%40_000
		}
		return small(i)
	}
	oversize := func(i int) int {
		if i == 10 {
			return 70_000
		}
		return small(i)
	}
	for _, tc := range []struct {
		name   string
		rate   float64
		n      int
		size   func(int) int
		errors uint64
	}{
		{"unpaced", 0, 2000, small, 0},
		{"paced", 20_000, 1000, small, 0},
		{"arena full", 0, 1000, mixed, 0},
		{"oversize", 0, 100, oversize, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, pa := loopbackSink(t)
			cb, pb := loopbackSink(t)
			s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: pa}, {Group: loopback, Port: pb}}, Rate: tc.rate, Burst: 8, Deadline: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			st, err := s.Send(context.Background(), reusedBuffer(tc.n, tc.size))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d packets, %d writes of several, at most %d in one", st.Input, st.Bursts, st.MaxBurst)
			var want []int
			for i := range tc.n {
				if tc.size(i) <= maxDatagram {
					want = append(want, i)
				}
			}
			for l, ls := range st.Lines {
				if st.Input != uint64(tc.n) || ls.Sent != uint64(len(want)) || ls.Errors != tc.errors {
					t.Fatalf("line %d: %d packets taken, stats %+v; want %d taken, %d sent, %d errors", l, st.Input, ls, tc.n, len(want), tc.errors)
				}
			}
			if tc.rate == 0 && st.MaxBurst != 8 {
				t.Errorf("unpaced, the largest write carried %d packets, want Burst 8", st.MaxBurst)
			}
			checkReceived(t, ca, want, tc.size)
			checkReceived(t, cb, want, tc.size)
		})
	}
}

// TestDeadlineSendAllocs: queuing a packet copies it into the arena that
// NewSender made; a Send's allocations do not grow with its packets.
func TestDeadlineSendAllocs(t *testing.T) {
	_, port := loopbackSink(t)
	s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: port}}, Burst: 8, Deadline: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pkts := numbered(1000)
	send := func(n int) (float64, bool) {
		return race.AllocsPerRun(t, 10, func() {
			if _, err := s.Send(context.Background(), Packets(pkts[:n])); err != nil {
				t.Fatal(err)
			}
		})
	}
	few, exact := send(10)
	many, _ := send(1000) // as exact as few
	if exact && many != few {
		t.Errorf("a deadline Send of 10 packets allocates %v times, of 1000 %v times", few, many)
	}
}

// TestNewSenderRejectsNaN: a rate or an injection probability that is not
// a number is refused like a negative one (feedhandler send -rate NaN, a
// config typo); a NaN rate passed the range check and Send then paced
// nothing and never returned, -count or not.
func TestNewSenderRejectsNaN(t *testing.T) {
	nan := math.NaN()
	for _, cfg := range []Config{
		{Lines: []Line{{Group: loopback, Port: 9}}, Rate: nan, Count: 5},
		{Lines: []Line{{Group: loopback, Port: 9, Loss: nan}}},
		{Lines: []Line{{Group: loopback, Port: 9, Dup: nan}}},
		{Lines: []Line{{Group: loopback, Port: 9, Reorder: nan}}},
	} {
		if s, err := NewSender(cfg); err == nil {
			s.Close()
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestLinesOnTheirRoutes: two lines whose groups are routed out of two
// interfaces, as a desk's A and B NICs are (feeds/nasdaq.yaml), with no
// Config.Interface: each line's datagrams leave by its own route, from its
// interface's address, and arrive on the receiver's interface of that
// line. Before, every line went through line A's socket, so line B left by
// line A's interface from line A's address, and its receiver got nothing.
func TestLinesOnTheirRoutes(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h258r"})
	srcB, dstB, err := lab.AddPair("10.98.0.1/24", "10.98.0.2/24")
	if err != nil {
		t.Fatal(err)
	}
	groupA, groupB := netip.MustParseAddr("239.77.0.1"), netip.MustParseAddr("239.98.0.1")
	if _, err := lab.Exec(lab.Src, "ip", "route", "add", groupB.String()+"/32", "dev", srcB); err != nil {
		t.Fatal(err)
	}
	// The receivers: a socket per line, joined on that line's interface,
	// each on a port of its own (a multicast socket bound to a port gets
	// every group joined on the host).
	const portA, portB = 26478, 26479
	conns := make([]*net.UDPConn, 2)
	for i, l := range []struct {
		ifName string
		group  netip.Addr
		port   int
	}{{lab.DstIf, groupA, portA}, {dstB, groupB, portB}} {
		if err := lab.Do(lab.Dst, func() error {
			ifi, err := net.InterfaceByName(l.ifName)
			if err != nil {
				return err
			}
			conns[i], err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: l.group.AsSlice(), Port: l.port})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conns[i].Close() })
	}
	const n = 200
	if err := lab.Do(lab.Src, func() error {
		s, err := NewSender(Config{Lines: []Line{{Group: groupA, Port: portA}, {Group: groupB, Port: portB}}, Rate: 20000})
		if err != nil {
			return err
		}
		defer s.Close()
		st, err := s.Send(context.Background(), Packets(numbered(n)))
		if err == nil && (st.Lines[0].Sent != n || st.Lines[1].Sent != n) {
			err = fmt.Errorf("sent %d on line A, %d on line B, want %d each", st.Lines[0].Sent, st.Lines[1].Sent, n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"10.99.0.1", "10.98.0.1"} {
		got, from := 0, map[string]int{}
		buf := make([]byte, 2048)
		for got < n {
			conns[i].SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, a, err := conns[i].ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			got++
			from[a.Addr().String()]++
		}
		if got != n || from[want] != n {
			t.Errorf("line %c: %d of %d datagrams received on its interface, by source %v, want all from %s", 'A'+i, got, n, from, want)
		}
	}
}
