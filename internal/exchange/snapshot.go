package exchange

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// SnapshotConfig shapes a SnapshotServer: the lab's GLIMPSE 5.0 server over
// SoupBinTCP 3.00.
type SnapshotConfig struct {
	Listen             string                          // host:port, e.g. 127.0.0.1:0 or an address in a lab namespace
	Username, Password string                          // the one account accepted
	Session            string                          // MoldUDP64 session (10 chars), also the SoupBinTCP session
	Messages           func(seq uint64) ([]byte, bool) // the day's ITCH message with MoldUDP64 sequence number seq (1-based); false past the end
	Position           func() uint64                   // highest sequence number the live sender has reached; the snapshot reflects 1..Position() (nil: the whole day)
	FirstSeq           uint64                          // added: sequence number of the day's first message (0 means 1)

	// Fault injection for tests.
	RejectLogin bool // answer every login with Login Rejected 'A'
	StallAfter  int  // stop sending after N messages, keep the connection open (heartbeats go on)
	CloseAfter  int  // close the connection after N messages
	Garbage     bool // after N/2 messages of the snapshot (N = StallAfter or CloseAfter, else 10), send bytes that are not SoupBinTCP

	// Added beyond the fixed contract; zero values pick the defaults.
	HeartbeatInterval time.Duration // server heartbeats when idle (default 1 s)
	PeerTimeout       time.Duration // a client silent this long is dropped (default 15 s)
	FollowInterval    time.Duration // Serve applies the day up to Position this often, so a login only builds (default 10 ms; <0: only at login)
}

// SnapshotStats count what a SnapshotServer did.
type SnapshotStats struct {
	Connections   uint64 // accepted TCP connections
	Logins        uint64 // logins accepted
	Rejected      uint64 // logins rejected
	BadLogins     uint64 // connections that sent no valid Login Request
	Snapshots     uint64 // snapshots sent whole (Snapshot message included)
	Messages      uint64 // ITCH messages sent in snapshots
	Builds        uint64 // snapshot builds (a build is reused while the position does not move)
	Faults        uint64 // connections cut short by fault injection
	LastPosition  uint64 // position of the last snapshot (its NextSeq - 1)
	LastOpen      uint64 // open orders in the last snapshot
	LastBuildTime time.Duration
}

// SnapshotServer serves GLIMPSE snapshots of the books at the live sender's
// position. NewSnapshotServer listens; Serve accepts (run it in a
// goroutine); Close stops it and waits for its connections.
type SnapshotServer struct {
	cfg SnapshotConfig
	ln  net.Listener

	mu    sync.Mutex // guards st, cache and stats
	st    bookState
	cache *snapshotBytes
	stats SnapshotStats

	soup    soupbintcp.Stats
	conns   sync.WaitGroup
	connMu  sync.Mutex
	active  map[*soupbintcp.ServerConn]struct{}
	closed  atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	serving sync.WaitGroup
}

// snapshotBytes is one built snapshot: framed SoupBinTCP Sequenced Data
// packets, the Snapshot message last. It is immutable once built.
type snapshotBytes struct {
	pos      uint64 // the snapshot reflects 1..pos
	buf      []byte
	messages int // ITCH messages (Snapshot message excluded)
	open     int
}

// NewSnapshotServer validates cfg and listens on cfg.Listen.
func NewSnapshotServer(cfg SnapshotConfig) (*SnapshotServer, error) {
	if cfg.Messages == nil {
		return nil, errors.New("new snapshot server: no Messages")
	}
	if len(cfg.Username) > soupbintcp.UsernameLen || len(cfg.Password) > soupbintcp.PasswordLen || len(cfg.Session) > soupbintcp.SessionLen {
		return nil, fmt.Errorf("new snapshot server: username, password or session longer than %d/%d/%d characters",
			soupbintcp.UsernameLen, soupbintcp.PasswordLen, soupbintcp.SessionLen)
	}
	if cfg.StallAfter < 0 || cfg.CloseAfter < 0 {
		return nil, errors.New("new snapshot server: negative StallAfter or CloseAfter")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("new snapshot server: %w", err)
	}
	s := &SnapshotServer{cfg: cfg, ln: ln, active: map[*soupbintcp.ServerConn]struct{}{}}
	s.st.reset()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Addr returns the listening address.
func (s *SnapshotServer) Addr() net.Addr { return s.ln.Addr() }

// Stats returns the server's counters.
func (s *SnapshotServer) Stats() SnapshotStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// SoupStats returns the SoupBinTCP counters of all connections.
func (s *SnapshotServer) SoupStats() soupbintcp.StatsSnapshot { return s.soup.Snapshot() }

// Serve accepts connections until Close; it returns nil after Close.
func (s *SnapshotServer) Serve() error {
	s.serving.Add(1)
	defer s.serving.Done()
	if s.cfg.FollowInterval >= 0 {
		every := s.cfg.FollowInterval
		if every == 0 {
			every = 10 * time.Millisecond
		}
		s.serving.Add(1)
		go s.follow(every)
	}
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("snapshot server accept: %w", err)
		}
		s.mu.Lock()
		s.stats.Connections++
		s.mu.Unlock()
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.serveConn(c)
		}()
	}
}

// Close stops accepting, closes every connection and waits.
func (s *SnapshotServer) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	err := s.ln.Close()
	s.serving.Wait() // Serve has returned: no conns.Add from now on
	s.connMu.Lock()
	for sc := range s.active {
		sc.Close()
	}
	s.connMu.Unlock()
	s.conns.Wait()
	return err
}

func (s *SnapshotServer) serveConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true) //nolint:errcheck
	}
	sc := soupbintcp.NewServerConn(c, soupbintcp.ServerConfig{
		HeartbeatInterval: s.cfg.HeartbeatInterval, PeerTimeout: s.cfg.PeerTimeout,
		WriteBuffer: 1 << 20, Stats: &s.soup,
	})
	s.connMu.Lock()
	if s.closed.Load() {
		s.connMu.Unlock()
		sc.Close()
		return
	}
	s.active[sc] = struct{}{}
	s.connMu.Unlock()
	defer func() {
		s.connMu.Lock()
		delete(s.active, sc)
		s.connMu.Unlock()
		sc.Close()
	}()

	req, err := sc.ReadLogin()
	if err != nil {
		s.count(func(st *SnapshotStats) { st.BadLogins++ })
		return
	}
	switch {
	case s.cfg.RejectLogin || req.Username != s.cfg.Username || req.Password != s.cfg.Password:
		s.count(func(st *SnapshotStats) { st.Rejected++ })
		sc.Reject(soupbintcp.RejectNotAuthorized) //nolint:errcheck
		return
	case req.Session != "" && req.Session != s.cfg.Session:
		s.count(func(st *SnapshotStats) { st.Rejected++ })
		sc.Reject(soupbintcp.RejectSessionUnavailable) //nolint:errcheck
		return
	}
	// The snapshot is SoupBinTCP sequence 1..messages+1 of this session; a
	// login for a later sequence number resumes within it. Accept first:
	// heartbeats go out while the snapshot is built.
	from := max(req.Sequence, 1)
	if err := sc.Accept(s.cfg.Session, from); err != nil {
		return
	}
	s.count(func(st *SnapshotStats) { st.Logins++ })
	snap := s.snapshot()
	buf := snap.buf
	skip := int(min(from-1, uint64(snap.messages+1)))
	buf = buf[packetsEnd(buf, skip):]

	limit, stall := -1, false
	switch {
	case s.cfg.StallAfter > 0:
		limit, stall = s.cfg.StallAfter, true
	case s.cfg.CloseAfter > 0:
		limit = s.cfg.CloseAfter
	}
	if s.cfg.Garbage {
		n := 10
		if limit > 0 {
			n = limit
		}
		half := packetsEnd(buf, n/2)
		sc.WriteRaw(buf[:half], n/2)                                                //nolint:errcheck
		sc.WriteRaw([]byte("\x00\x09\xeeGARBAGE\x00\xff\xff\xffnot soupbintcp"), 0) //nolint:errcheck
		sc.Flush()                                                                  //nolint:errcheck
		s.count(func(st *SnapshotStats) { st.Faults++ })
		s.linger(sc)
		return
	}
	if limit >= 0 {
		end := packetsEnd(buf, limit)
		s.writeChunks(sc, buf[:end])
		sc.Flush() //nolint:errcheck
		s.count(func(st *SnapshotStats) { st.Faults++ })
		if stall {
			select {
			case <-sc.Gone():
			case <-s.ctx.Done():
			}
		}
		return
	}
	if err := s.writeChunks(sc, buf); err != nil {
		return
	}
	if err := sc.Flush(); err != nil {
		return
	}
	s.count(func(st *SnapshotStats) { st.Snapshots++; st.Messages += uint64(snap.messages) })
	s.linger(sc)
}

// linger waits for the client to log out (or go) before closing, so that
// the client reads everything before the FIN.
func (s *SnapshotServer) linger(sc *soupbintcp.ServerConn) {
	select {
	case <-sc.Gone():
	case <-s.ctx.Done():
	}
}

func (s *SnapshotServer) writeChunks(sc *soupbintcp.ServerConn, b []byte) error {
	const chunk = 1 << 20
	for len(b) > 0 {
		n := min(chunk, len(b))
		if err := sc.WriteRaw(b[:n], 0); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (s *SnapshotServer) count(f func(*SnapshotStats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// packetsEnd returns the offset after the first n framed packets of b (all
// of b when it holds fewer).
func packetsEnd(b []byte, n int) int {
	off := 0
	for range n {
		if off+2 > len(b) {
			return len(b)
		}
		off += 2 + int(binary.BigEndian.Uint16(b[off:]))
	}
	return min(off, len(b))
}

// follow keeps the state at the live position between logins.
func (s *SnapshotServer) follow(every time.Duration) {
	defer s.serving.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			s.advance(s.position())
			s.mu.Unlock()
		}
	}
}

func (s *SnapshotServer) position() uint64 {
	if s.cfg.Position != nil {
		return s.cfg.Position()
	}
	return 1<<64 - 1
}

// advance applies the day up to pos (s.mu held).
func (s *SnapshotServer) advance(pos uint64) {
	if s.cfg.FirstSeq > 1 && s.st.applied < s.cfg.FirstSeq-1 {
		s.st.applied = s.cfg.FirstSeq - 1
	}
	if pos < s.st.applied {
		s.st.reset() // the position went back (a new day): rebuild from the start
		s.cache = nil
	}
	for s.st.applied < pos && !s.st.ended {
		m, ok := s.cfg.Messages(s.st.applied + 1)
		if !ok {
			s.st.ended = true
			break
		}
		s.st.apply(m)
		s.st.applied++
	}
}

// snapshot returns the snapshot at the current position, building it if
// the position moved.
func (s *SnapshotServer) snapshot() *snapshotBytes {
	pos := s.position()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(pos)
	if s.cache != nil && s.cache.pos == s.st.applied {
		return s.cache
	}
	t0 := time.Now()
	// A served snapshot may still be being written: a build never reuses its buffer.
	snap := s.st.build()
	s.cache = snap
	s.stats.Builds++
	s.stats.LastPosition = snap.pos
	s.stats.LastOpen = uint64(snap.open)
	s.stats.LastBuildTime = time.Since(t0)
	return snap
}

// Prepare applies the day up to the current position and builds the
// snapshot now, so that the first login does not wait for it.
func (s *SnapshotServer) Prepare() { s.snapshot() }

// ---- book state ----

type snapOrder struct {
	ref       uint64
	timestamp uint64
	shares    uint32
	price     uint32
	locate    uint16
	side      byte
	hasMPID   bool
	stock     itch.Symbol
	mpid      itch.MPID
}

type locState struct {
	directory []byte // last 'R'
	trading   []byte // last 'H'
	regSHO    []byte // last 'Y'
	rpii      []byte // last 'N'
	opHalt    [][]byte
	mpp       [][]byte // last 'L' per MPID, in order of first appearance
}

// bookState is the server's own view of the day: every open order in time
// priority (an append-only slice with dead entries, compacted now and
// then), indexed by reference, plus the per-locate state messages.
type bookState struct {
	applied uint64
	ended   bool   // Messages said false past applied
	event   []byte // last 'S'
	orders  []snapOrder
	index   map[uint64]int32
	dead    int
	locs    map[uint16]*locState
	locList []uint16 // locates in order of first appearance
}

func (b *bookState) reset() {
	*b = bookState{index: make(map[uint64]int32), locs: make(map[uint16]*locState)}
}

func (b *bookState) loc(l uint16) *locState {
	ls := b.locs[l]
	if ls == nil {
		ls = &locState{}
		b.locs[l] = ls
		b.locList = append(b.locList, l)
	}
	return ls
}

func keep(dst []byte, m []byte) []byte { return append(dst[:0], m...) }

func (b *bookState) apply(m []byte) {
	if len(m) < itch.HeaderLen || itch.Length(m[0]) == 0 || len(m) < itch.Length(m[0]) {
		return
	}
	msg := itch.Msg(m)
	switch m[0] {
	case itch.TypeSystemEvent:
		b.event = keep(b.event, m)
	case itch.TypeStockDirectory:
		ls := b.loc(msg.Locate())
		ls.directory = keep(ls.directory, m)
	case itch.TypeStockTradingAction:
		ls := b.loc(msg.Locate())
		ls.trading = keep(ls.trading, m)
	case itch.TypeRegSHO:
		ls := b.loc(msg.Locate())
		ls.regSHO = keep(ls.regSHO, m)
	case itch.TypeRPII:
		ls := b.loc(msg.Locate())
		ls.rpii = keep(ls.rpii, m)
	case itch.TypeOperationalHalt:
		ls := b.loc(msg.Locate())
		h := itch.OperationalHalt(msg)
		for i, old := range ls.opHalt {
			if itch.OperationalHalt(old).MarketCode() == h.MarketCode() {
				ls.opHalt[i] = keep(old, m)
				return
			}
		}
		ls.opHalt = append(ls.opHalt, keep(nil, m))
	case itch.TypeMarketParticipantPosition:
		ls := b.loc(msg.Locate())
		p := itch.MarketParticipantPosition(msg)
		for i, old := range ls.mpp {
			if itch.MarketParticipantPosition(old).MPID() == p.MPID() {
				ls.mpp[i] = keep(old, m)
				return
			}
		}
		ls.mpp = append(ls.mpp, keep(nil, m))
	case itch.TypeAddOrder:
		a := itch.AddOrder(msg)
		b.add(snapOrder{ref: a.OrderRef(), timestamp: msg.Timestamp(), shares: a.Shares(), price: a.Price(),
			locate: msg.Locate(), side: a.Side(), stock: a.Stock()})
	case itch.TypeAddOrderMPID:
		a := itch.AddOrderMPID(msg)
		b.add(snapOrder{ref: a.OrderRef(), timestamp: msg.Timestamp(), shares: a.Shares(), price: a.Price(),
			locate: msg.Locate(), side: a.Side(), stock: a.Stock(), hasMPID: true, mpid: a.Attribution()})
	case itch.TypeOrderExecuted:
		e := itch.OrderExecuted(msg)
		b.reduce(e.OrderRef(), e.ExecutedShares())
	case itch.TypeOrderExecutedWithPrice:
		c := itch.OrderExecutedWithPrice(msg)
		b.reduce(c.OrderRef(), c.ExecutedShares())
	case itch.TypeOrderCancel:
		x := itch.OrderCancel(msg)
		b.reduce(x.OrderRef(), x.CancelledShares())
	case itch.TypeOrderDelete:
		b.remove(itch.OrderDelete(msg).OrderRef())
	case itch.TypeOrderReplace:
		u := itch.OrderReplace(msg)
		i, ok := b.index[u.OriginalOrderRef()]
		if !ok {
			return
		}
		o := b.orders[i]
		b.remove(o.ref)
		// The replacement keeps side, stock and attribution, takes the new
		// reference, shares and price, and goes to the back of the queue.
		o.ref, o.shares, o.price, o.timestamp = u.NewOrderRef(), u.Shares(), u.Price(), msg.Timestamp()
		b.add(o)
	}
}

func (b *bookState) add(o snapOrder) {
	if o.shares == 0 {
		return
	}
	if _, dup := b.index[o.ref]; dup {
		b.remove(o.ref)
	}
	b.index[o.ref] = int32(len(b.orders))
	b.orders = append(b.orders, o)
}

func (b *bookState) reduce(ref uint64, shares uint32) {
	i, ok := b.index[ref]
	if !ok {
		return
	}
	o := &b.orders[i]
	if shares >= o.shares {
		b.remove(ref)
		return
	}
	o.shares -= shares
}

func (b *bookState) remove(ref uint64) {
	i, ok := b.index[ref]
	if !ok {
		return
	}
	delete(b.index, ref)
	b.orders[i].shares = 0
	b.dead++
	if b.dead > 1024 && b.dead > len(b.orders)/2 {
		b.compact()
	}
}

func (b *bookState) compact() {
	live := b.orders[:0]
	for _, o := range b.orders {
		if o.shares != 0 {
			b.index[o.ref] = int32(len(live))
			live = append(live, o)
		}
	}
	clear(b.orders[len(live):])
	b.orders = live
	b.dead = 0
}

type emitKey struct {
	key uint64 // locate, side, price from the worst level to the best
	idx int32  // position in orders: time priority within a level
}

// emitOrder returns the live orders grouped by locate and side, levels
// from the worst price to the best, each level's orders in time priority.
// Any order across levels is valid GLIMPSE; worst to best lets a book whose
// ladder keeps the best level last load each level with an append.
func (b *bookState) emitOrder() []emitKey {
	keys := make([]emitKey, 0, len(b.index))
	for i := range b.orders {
		o := &b.orders[i]
		if o.shares == 0 {
			continue
		}
		pk := uint64(o.price) // bids: ascending price is worst first
		var side uint64
		if o.side != 'B' {
			pk, side = uint64(^o.price), 1 // asks: descending price
		}
		keys = append(keys, emitKey{key: uint64(o.locate)<<33 | side<<32 | pk, idx: int32(i)})
	}
	slices.SortFunc(keys, func(x, y emitKey) int {
		if c := cmp.Compare(x.key, y.key); c != 0 {
			return c
		}
		return cmp.Compare(x.idx, y.idx)
	})
	return keys
}

// build writes the snapshot: the system event, per locate its directory,
// trading action, Reg SHO, operational halts, RPII and participant
// positions, then every open order, then the Snapshot
// message naming applied+1. The orders go per locate and side, levels
// from the worst price to the best, time priority within each level.
func (b *bookState) build() *snapshotBytes {
	open := len(b.index)
	buf := make([]byte, 0, 64*len(b.locList)*2+open*(3+itch.Length(itch.TypeAddOrderMPID))+64)
	n := 0
	pkt := func(m []byte) {
		if len(m) == 0 {
			return
		}
		buf = soupbintcp.AppendPacket(buf, soupbintcp.TypeSequencedData, m)
		n++
	}
	pkt(b.event)
	for _, l := range b.locList {
		ls := b.locs[l]
		pkt(ls.directory)
		pkt(ls.trading)
		pkt(ls.regSHO)
		for _, h := range ls.opHalt {
			pkt(h)
		}
		pkt(ls.rpii)
		for _, p := range ls.mpp {
			pkt(p)
		}
	}
	for _, k := range b.emitOrder() {
		o := &b.orders[k.idx]
		hdr := itch.Header{Locate: o.locate, Timestamp: o.timestamp}
		start := len(buf)
		buf = append(buf, 0, 0) // length, set below
		buf = append(buf, soupbintcp.TypeSequencedData)
		if o.hasMPID {
			f := itch.AddOrderMPIDFields{Header: hdr, OrderRef: o.ref, Side: o.side, Shares: o.shares, Stock: o.stock, Price: o.price, Attribution: o.mpid}
			buf = f.Append(buf)
		} else {
			f := itch.AddOrderFields{Header: hdr, OrderRef: o.ref, Side: o.side, Shares: o.shares, Stock: o.stock, Price: o.price}
			buf = f.Append(buf)
		}
		binary.BigEndian.PutUint16(buf[start:], uint16(len(buf)-start-2))
		n++
	}
	var g [glimpse.SnapshotLen]byte
	pkt(glimpse.AppendSnapshot(g[:0], b.applied+1))
	return &snapshotBytes{pos: b.applied, buf: buf, messages: n - 1, open: open}
}
