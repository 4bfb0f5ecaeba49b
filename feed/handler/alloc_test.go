package handler

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

func testWriter(t testing.TB) *shm.Writer { return testWriterN(t, 1024) }

// testWriterN is testWriter with n instrument slots.
func testWriterN(t testing.TB, n int) *shm.Writer {
	t.Helper()
	w, err := shm.Create(shm.Config{Name: shmtest.Name(t, "fhhandlertest"), Instruments: n, Depth: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// dayPackets generates n messages as MoldUDP64 packets.
func dayPackets(t testing.TB, n int) [][]byte { return dayPacketsSized(t, n, 0) }

// dayPacketsSized generates n messages as packets of at most maxPacket bytes.
func dayPacketsSized(t testing.TB, n, maxPacket int) [][]byte {
	return dayPacketsSymbols(t, n, maxPacket, 50)
}

// dayPacketsSymbols is dayPacketsSized on a day listing symbols instruments.
func dayPacketsSymbols(t testing.TB, n, maxPacket, symbols int) [][]byte {
	t.Helper()
	return sessionDay(t, "ALLOC", 9, n, maxPacket, symbols)
}

// sessionDay generates a day of n messages (generator seed seed) as the
// packets of session, from sequence number 1.
func sessionDay(t testing.TB, session string, seed uint64, n, maxPacket, symbols int) [][]byte {
	t.Helper()
	g, err := itchgen.New(itchgen.Config{Messages: n, Symbols: symbols, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	b := moldudp64.NewBuilder(moldudp64.NewSession(session), 1, maxPacket)
	var pkts [][]byte
	err = g.Stream(func(m itch.Msg) error {
		if err := b.Add(m); errors.Is(err, moldudp64.ErrFull) {
			pkts = append(pkts, append([]byte(nil), b.Flush()...))
			return b.Add(m)
		} else {
			return err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(pkts, append([]byte(nil), b.Flush()...))
}

// TestHotPathAllocatesNothing drives the pipeline's per-message path by
// hand, without threads: arbiter -> route -> ring -> apply -> publish.
// drainRing applies and publishes everything in s's ring, as the shard
// thread does, without the thread.
func drainRing(s *shard) {
	for {
		batch := s.ring.Peek(256)
		if len(batch) == 0 {
			return
		}
		for i := range batch {
			m := &batch[i]
			loc, changed := s.books.Apply(itch.Msg(m.data[:m.n]))
			s.pub.Applied(loc, changed, m.seq, m.rxTime)
		}
		s.pub.Flush()
		s.ring.Release(len(batch))
	}
}

func TestHotPathAllocatesNothing(t *testing.T) {
	pkts := dayPackets(t, 200_000)
	h, s := oneShardHandler(t, 1<<16, dayBooks)
	h.arb = NewArbiter(ArbiterConfig{}, h.route, h.gap)
	h.gapLog = make(chan moldudp64.Range, 1)
	applyAll := func() { drainRing(s) }
	// Warm up: directory, first orders, every slot registered.
	i := 0
	for ; i < len(pkts)/2; i++ {
		h.arb.Offer(0, pkts[i], int64(i+1))
		applyAll()
	}
	allocs, exact := race.AllocsPerRun(t, 200, func() {
		h.arb.Offer(0, pkts[i], int64(i+1))
		h.arb.Offer(1, pkts[i], int64(i+1)) // the duplicate copy from line B
		applyAll()
		i++
	})
	if exact && allocs != 0 {
		t.Fatalf("offer+route+apply+publish allocates %.1f times per packet", allocs)
	}
	if s.pub.Published == 0 || h.routed == 0 {
		t.Fatalf("nothing published (%d) or routed (%d)", s.pub.Published, h.routed)
	}
	if s.pub.Errors != 0 {
		t.Fatalf("%d publish errors", s.pub.Errors)
	}
}

// TestHotPathWithRecoveryAllocatesNothing: with a re-request client
// configured (and polled after every packet, as the receive loop does) and
// no gap, the per-packet path still allocates nothing.
func TestHotPathWithRecoveryAllocatesNothing(t *testing.T) {
	pkts := dayPackets(t, 100_000)
	h, s := oneShardHandler(t, 1<<16, dayBooks)
	rec := withIdleRecovery(t, h)
	applyAll := func() { drainRing(s) }
	i := 0
	for ; i < len(pkts)/2; i++ {
		h.arb.Offer(0, pkts[i], int64(i+1))
		rec.poll(time.Now().UnixNano())
		applyAll()
	}
	allocs, exact := race.AllocsPerRun(t, 200, func() {
		h.arb.Offer(0, pkts[i], int64(i+1))
		h.arb.Offer(1, pkts[i], int64(i+1))
		rec.poll(time.Now().UnixNano())
		applyAll()
		i++
	})
	if exact && allocs != 0 {
		t.Fatalf("offer+poll+route+apply+publish allocates %.1f times per packet", allocs)
	}
	if h.arb.Stats.Recoveries != 0 || rec.client.Stats.Requests != 0 {
		t.Fatalf("recovery ran without a gap: %+v", rec.client.Stats)
	}
}

// withIdleRecovery gives h an arbiter and a recovery whose re-request
// server (a local socket) is never asked anything, nothing being missing;
// both are closed at cleanup.
func withIdleRecovery(t *testing.T, h *Handler) *recovery {
	t.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return withRecovery(t, h, ArbiterConfig{Spill: 1 << 14}, RecoveryConfig{Rerequest: rerequest.Config{
		Servers: []netip.AddrPort{srv.LocalAddr().(*net.UDPAddr).AddrPort()}}})
}

// TestRunToCompletionAllocatesNothing drives the run-to-completion path as
// the receive thread does, without threads: offer on both lines -> arbiter
// -> apply -> endBatch (conflated publish, latency record), with a
// re-request client polled after every batch and the stats copied out (as
// every 20 ms on the receive thread).
func TestRunToCompletionAllocatesNothing(t *testing.T) {
	pkts := dayPackets(t, 200_000)
	h, s := oneShardHandler(t, 0, dayBooks)
	if s.ring != nil {
		t.Fatal("a run-to-completion shard has a ring")
	}
	h.recv = &scriptRx{}
	rec := withIdleRecovery(t, h)
	batch := func(i int) {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[i], int64(i+1))
		h.arb.Offer(1, pkts[i], int64(i+1)) // the duplicate copy from line B
		h.endBatch()
		now := time.Now().UnixNano()
		h.arb.Tick(now)
		rec.poll(now)
		h.endBatch()
	}
	i := 0
	for ; i < len(pkts)/2; i++ {
		batch(i)
	}
	allocs, exact := race.AllocsPerRun(t, 200, func() {
		batch(i)
		h.copyStats(false)
		i++
	})
	if exact && allocs != 0 {
		t.Fatalf("offer+apply+publish+record+copyStats allocates %.1f times per packet", allocs)
	}
	if s.pub.Published == 0 || s.applied.Load() != h.routed || s.hist.Count() != h.routed {
		t.Fatalf("published %d, applied %d, routed %d, recorded %d", s.pub.Published, s.applied.Load(), h.routed, s.hist.Count())
	}
	if s.pub.Errors != 0 {
		t.Fatalf("%d publish errors", s.pub.Errors)
	}
}

// TestCaptureAllocatesNothing is TestRunToCompletionAllocatesNothing with
// capture on: each batch (the packet from both lines) is first copied into
// the capture's ring, as the receive loop does (captureBatch), and the
// drainer writes it to the file meanwhile. Nothing is dropped: the ring
// has room, so the measured path is the copy.
func TestCaptureAllocatesNothing(t *testing.T) {
	pkts := dayPackets(t, 100_000)
	h, _ := oneShardHandler(t, 0, dayBooks)
	h.recv = &scriptRx{}
	c, err := capture.Open(capture.Config{Path: filepath.Join(t.TempDir(), "c.pcap"),
		Lines: []rx.LineConfig{{Name: "A", Group: netip.MustParseAddr("239.1.1.1"), Port: 1}, {Name: "B", Group: netip.MustParseAddr("239.1.1.2"), Port: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	h.capFile = c
	rec := withIdleRecovery(t, h)
	rxPkts := make([]rx.Packet, 2)
	batch := func(i int) {
		h.pickup = time.Now().UnixNano()
		rxPkts[0] = rx.Packet{Data: pkts[i], Line: rx.LineA, RxTime: int64(i + 1)}
		rxPkts[1] = rx.Packet{Data: pkts[i], Line: rx.LineB, RxTime: int64(i + 1)}
		h.captureBatch(rxPkts, 0)
		h.arb.Offer(0, pkts[i], int64(i+1))
		h.arb.Offer(1, pkts[i], int64(i+1))
		h.endBatch()
		now := time.Now().UnixNano()
		h.arb.Tick(now)
		rec.poll(now)
		h.endBatch()
	}
	i := 0
	for ; i < 1000; i++ {
		batch(i)
	}
	allocs, exact := race.AllocsPerRun(t, 200, func() {
		batch(i)
		i++
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if exact && allocs != 0 {
		t.Fatalf("capture+offer+apply+publish allocates %.1f times per packet", allocs)
	}
	if st := c.Stats(); st.Packets != 2*uint64(i) || st.Dropped != 0 {
		t.Fatalf("capture stats %+v, want %d datagrams written, none dropped", st, 2*i)
	}
}

// TestOpeningAllocatesNothing: the day's opening allocates nothing on the
// run-to-completion thread either: the stock directory, the session's
// start and, above all, the first publish of every book, which binds the
// book's shared-memory slot (shm.Writer.Rebind: its symbol map kept the
// symbol's string, so each binding put Book.Name's string on the heap,
// 15 allocations a packet here). A late join or a session change
// binds as many at once. One packet a run, from the day's first: the first
// two packets (the directory, bound by none, and AllocsPerRun's warm-up)
// are not counted. AllocsPerRun divides by the runs, so it catches an
// allocation made at least once a packet on average (the bindings made 15).
func TestOpeningAllocatesNothing(t *testing.T) {
	const symbols = 1000
	pkts := dayPacketsSymbols(t, 60_000, 0, symbols)
	h, s := oneShardHandler(t, 0, dayBooks)
	h.recv = &scriptRx{}
	rec := withIdleRecovery(t, h)
	n := 0
	packet := func() {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[n], int64(n+1))
		h.arb.Offer(1, pkts[n], int64(n+1))
		h.endBatch()
		rec.poll(h.pickup)
		h.endBatch()
		n++
	}
	packet()
	first := s.pub.Books
	a, exact := race.AllocsPerRun(t, 60, packet)
	if s.pub.Books != symbols || s.pub.Errors != 0 {
		t.Fatalf("after %d packets: %d books bound, want %d; %d publish errors", n, s.pub.Books, symbols, s.pub.Errors)
	}
	if exact && a != 0 {
		t.Fatalf("the opening (%d packets, %d books bound after the first packet's %d) allocated %v times a packet", n, s.pub.Books-first, first, a)
	}
}

// TestModeSelection: two or more shard cores shard, fewer run to
// completion; asking for run to completion with several shard cores is an
// error, not a silent choice.
func TestModeSelection(t *testing.T) {
	for _, c := range []struct {
		mode   Mode
		shards []int
		want   Mode
		err    bool
	}{
		{ModeAuto, nil, ModeRunToCompletion, false},
		{ModeAuto, []int{-1}, ModeRunToCompletion, false},
		{ModeAuto, []int{1}, ModeRunToCompletion, false},
		{ModeAuto, []int{1, 2}, ModeSharded, false},
		{ModeRunToCompletion, []int{3}, ModeRunToCompletion, false},
		{ModeRunToCompletion, []int{1, 2}, 0, true},
		{ModeSharded, nil, ModeSharded, false},
		{Mode(9), nil, 0, true},
	} {
		got, err := c.mode.resolve(c.shards)
		if (err != nil) != c.err || (err == nil && got != c.want) {
			t.Errorf("%v with shard cores %v: got %v, %v; want %v (error %v)", c.mode, c.shards, got, err, c.want, c.err)
		}
	}
	_, err := Start(Config{ShmName: "fhmodetest", Mode: ModeRunToCompletion, ShardCores: []int{0, 1}})
	if err == nil || !strings.Contains(err.Error(), "start handler: run to completion with 2 shard cores") {
		t.Fatalf("Start: %v", err)
	}
}
