package handler

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// dayBooks hold the days of dayPackets.
var dayBooks = book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16}

// smallBooks hold a test's few hand-made instruments and orders.
var smallBooks = book.Config{MaxOrders: 1 << 12, MaxLocates: 64, MaxLevels: 1 << 10}

// oneShardHandler is a Handler with one shard (not pinned) of books cfg
// publishing into a test shm file, every locate routed to it. With ring 0
// it runs to completion (the shard applies inline); otherwise it is
// sharded, the shard's ring having ring slots, and the test applies what
// the ring holds (drainRing) or runs the shard's loop. It has no arbiter:
// see withRecovery.
func oneShardHandler(t testing.TB, ring int, cfg book.Config) (*Handler, *shard) {
	t.Helper()
	w := testWriter(t)
	s, err := newShard(0, -1, ring, cfg, w, 10)
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{log: zerolog.Nop(), mode: ModeSharded, shards: []*shard{s}, w: w,
		shardOf: make([]uint8, 1<<16), admission: newAdmission(nil)}
	if ring == 0 {
		h.mode, h.inline = ModeRunToCompletion, s
	}
	return h, s
}

// dirMsg is a Stock Directory message announcing sym at locate 7.
func dirMsg(sym string) []byte { return filterDir(7, sym) }

// withRecovery gives h an arbiter of ac and a recovery of rc, wired as
// Start wires them (delivery to h.route, gaps to h.gap, session changes to
// h.sessionChanged, missing ranges to the recovery). The recovery is closed
// at cleanup.
func withRecovery(t testing.TB, h *Handler, ac ArbiterConfig, rc RecoveryConfig) *recovery {
	t.Helper()
	return withRecoveryTo(t, h, ac, rc, h.route)
}

// withRecoveryTo is withRecovery delivering to deliver.
func withRecoveryTo(t testing.TB, h *Handler, ac ArbiterConfig, rc RecoveryConfig, deliver Deliver) *recovery {
	t.Helper()
	h.gapLog = make(chan moldudp64.Range, 8)
	h.sessionLog = make(chan [2]moldudp64.Session, 8)
	h.arb = NewArbiter(ac, deliver, h.gap)
	h.arb.SetSessionFunc(h.sessionChanged)
	rec, err := newRecovery(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.close() })
	h.arb.idleAfterEnd = rec.idleAfterEnd()
	h.rec = rec
	h.arb.SetMissing(rec.missing)
	h.arb.SetNarrowed(rec.narrowed)
	return rec
}

// loggedRecovery is a one-line handler (Grace 1 µs, Hold 1 ms, the line
// never timed out) with recovery rc, logging into the buffer returned.
func loggedRecovery(t *testing.T, rc RecoveryConfig) (*Handler, *bytes.Buffer, *recovery) {
	t.Helper()
	h, _ := oneShardHandler(t, 0, smallBooks)
	logs := new(bytes.Buffer)
	h.log = zerolog.New(logs)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Hour, Grace: time.Microsecond, Hold: time.Millisecond}, rc)
	return h, logs, rec
}

// scriptedServer is a re-request server on loopback that answers only
// what the test sends, where the test says.
type scriptedServer struct{ conn *net.UDPConn }

func newScriptedServer(t *testing.T) *scriptedServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &scriptedServer{conn: conn}
}

func (s *scriptedServer) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// request reads the next request (sent already: the deadline only keeps a
// broken test from hanging) and where it came from.
func (s *scriptedServer) request(t *testing.T) (moldudp64.Request, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 64)
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := s.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no request: %v", err)
	}
	req, err := moldudp64.ParseRequest(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return req, from
}

func (s *scriptedServer) answer(t *testing.T, to netip.AddrPort, pkt []byte) {
	t.Helper()
	if _, err := s.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		t.Fatal(err)
	}
}

// scriptedRecovery is a one-line handler (run to completion: what is at
// stake is on the receive thread) re-requesting from a scriptedServer,
// with the arbiter's LineTimeout and the client's Timeout given.
func scriptedRecovery(t *testing.T, lineTimeout, timeout time.Duration) (*scriptedServer, *Handler, *shard, *recovery) {
	t.Helper()
	return scriptedSnapshotRecovery(t, lineTimeout, timeout, nil)
}

// scriptedSnapshotRecovery is scriptedRecovery with snapshots from snap
// too (nil: none).
func scriptedSnapshotRecovery(t *testing.T, lineTimeout, timeout time.Duration, snap SnapshotFunc) (*scriptedServer, *Handler, *shard, *recovery) {
	t.Helper()
	srv := newScriptedServer(t)
	h, sh := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: lineTimeout, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: timeout}, Snapshot: snap})
	return srv, h, sh, rec
}

// orderMsg is the message of sequence number seq of a session announcing
// sym at locate 7: the directory at 1, then a buy order ref priced by seq.
func orderMsg(sym string, ref, seq uint64) []byte {
	if seq == 1 {
		return dirMsg(sym)
	}
	add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: ref, Side: 'B', Shares: 100,
		Stock: itch.NewSymbol(sym), Price: uint32(1000 + seq)}
	return add.Append(nil)
}
