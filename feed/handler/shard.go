package handler

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/latency"
	"github.com/marketfeed/feedhandler/feed/spsc"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// maxMsgLen is the longest ITCH 5.0 message (NOII, 50 bytes) rounded up so a
// slot is 72 bytes.
const maxMsgLen = 54

// slot is one ITCH message handed from the receive thread to a shard, by
// value (no pointers).
type slot struct {
	seq    uint64
	rxTime int64
	n      uint16
	data   [maxMsgLen]byte
}

// ShardStats are one shard's counters.
type ShardStats struct {
	Applied       uint64 // messages applied to its books
	Published     uint64 // snapshots published
	Batches       uint64
	Book          book.Stats
	Ring          spsc.Stats
	PublishErrors uint64
}

// shard owns the books of the locates routed to it: it is their single
// writer, and publishes their snapshots.
type shard struct {
	id    int
	core  int // -1: not pinned
	ring  *spsc.Ring[slot]
	books *book.Books
	w     *shm.Writer
	depth int

	dirty      []uint16 // locates changed in the current batch
	isDirty    []bool   // by locate
	dirtyAll   bool     // a market-wide change: republish every book
	staleSeen  uint64   // stale generation last applied to flags
	stale      *atomic.Uint64
	registered []bool // by locate: announced to the shm writer

	snap     shm.Snapshot
	bids     []shm.Level
	asks     []shm.Level
	bookBids []book.Level
	bookAsks []book.Level
	lastSeq  []uint64 // by locate
	lastRx   []int64  // by locate
	msgs     []uint64 // by locate

	hist latency.Histogram // receive time to publish, per message

	applied atomic.Uint64 // messages applied (read by the pipeline to know it drained)

	// Counters written only by the shard goroutine, copied into stats.
	batches, published, publishErrors uint64

	mu    sync.Mutex // guards stats, copied out every few tens of milliseconds
	stats ShardStats
}

func newShard(id, core int, ringSize int, bcfg book.Config, w *shm.Writer, depth int, stale *atomic.Uint64) (*shard, error) {
	r, err := spsc.New[slot](ringSize)
	if err != nil {
		return nil, err
	}
	bs, err := book.New(bcfg)
	if err != nil {
		return nil, err
	}
	if core >= 0 {
		// A pinned shard owns its core: poll hard before sleeping, so a
		// message waits nanoseconds, not a scheduler tick.
		r.SetBackoff(spsc.Backoff{Spins: 1 << 16, Yields: 1 << 14, MinSleep: time.Microsecond, MaxSleep: 20 * time.Microsecond})
	}
	n := 1 << 16
	return &shard{
		id: id, core: core, ring: r, books: bs, w: w, depth: depth, stale: stale,
		isDirty: make([]bool, n), registered: make([]bool, n),
		lastSeq: make([]uint64, n), lastRx: make([]int64, n), msgs: make([]uint64, n),
		dirty:    make([]uint16, 0, 4096),
		bids:     make([]shm.Level, 0, depth),
		asks:     make([]shm.Level, 0, depth),
		bookBids: make([]book.Level, 0, depth),
		bookAsks: make([]book.Level, 0, depth),
	}, nil
}

// run applies and publishes until the ring is closed and drained.
func (s *shard) run(pinErr chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pinErr <- pin(s.core)
	const batchMax = 256
	lastStats := time.Now()
	for {
		batch := s.ring.PeekWait(batchMax, 50*time.Millisecond)
		if len(batch) == 0 {
			if s.ring.Closed() {
				s.copyStats()
				return
			}
			s.copyStats()
			continue
		}
		for i := range batch {
			m := &batch[i]
			loc, changed := s.books.Apply(itch.Msg(m.data[:m.n]))
			if loc != 0 {
				s.lastSeq[loc] = m.seq
				s.lastRx[loc] = m.rxTime
				s.msgs[loc]++
			}
			if !changed {
				continue
			}
			if loc == 0 {
				s.dirtyAll = true
				continue
			}
			if !s.isDirty[loc] {
				s.isDirty[loc] = true
				s.dirty = append(s.dirty, loc)
			}
		}
		s.publish()
		now := time.Now().UnixNano()
		for i := range batch {
			s.hist.Record(now - batch[i].rxTime)
		}
		s.ring.Release(len(batch))
		s.applied.Add(uint64(len(batch)))
		s.batches++
		if now-lastStats.UnixNano() > int64(50*time.Millisecond) {
			s.copyStats()
			lastStats = time.Now()
		}
	}
}

// publish writes a snapshot of every book changed in this batch (conflated:
// one snapshot per book per batch, always of its latest state).
func (s *shard) publish() {
	if g := s.stale.Load(); g != s.staleSeen {
		s.staleSeen = g
		s.dirtyAll = true
	}
	if s.dirtyAll {
		s.dirtyAll = false
		for b := range s.books.All() {
			if loc := b.Locate(); !s.isDirty[loc] {
				s.isDirty[loc] = true
				s.dirty = append(s.dirty, loc)
			}
		}
	}
	for _, loc := range s.dirty {
		s.isDirty[loc] = false
		if b := s.books.Book(loc); b != nil {
			s.publishBook(b)
		}
	}
	s.dirty = s.dirty[:0]
}

func (s *shard) publishBook(b *book.Book) {
	loc := b.Locate()
	if !s.registered[loc] {
		if err := s.w.Register(loc, b.Name()); err != nil {
			s.publishErrors++
			return
		}
		s.registered[loc] = true
	}
	sn := &s.snap
	sn.Locate = loc
	sn.Seq = s.lastSeq[loc]
	sn.ExchangeTime = b.Timestamp()
	sn.ReceiveTime = s.lastRx[loc]
	sn.PublishTime = 0
	sn.State = tradingState(b.TradingState())
	sn.Flags = 0
	if s.staleSeen != 0 {
		sn.Flags |= bookfb.FlagsPossiblyStale
	}
	if b.RegSHO() == '1' {
		sn.Flags |= bookfb.FlagsShortSaleRestricted
	}
	if h := b.OperationalHalt(); h == 'H' {
		sn.Flags |= bookfb.FlagsOperationalHalt
	}
	sn.SystemEvent, _ = s.books.SystemEvent()
	s.bookBids = b.AppendDepth(book.Bid, s.bookBids[:0], s.depth)
	s.bookAsks = b.AppendDepth(book.Ask, s.bookAsks[:0], s.depth)
	s.bids = s.bids[:0]
	for _, l := range s.bookBids {
		s.bids = append(s.bids, shm.Level(l))
	}
	s.asks = s.asks[:0]
	for _, l := range s.bookAsks {
		s.asks = append(s.asks, shm.Level(l))
	}
	if len(s.bids) > 0 && len(s.asks) > 0 && s.bids[0].Price >= s.asks[0].Price {
		sn.Flags |= bookfb.FlagsCrossed
	}
	sn.Bids, sn.Asks = s.bids, s.asks
	sn.BidLevels = uint32(b.Levels(book.Bid))
	sn.AskLevels = uint32(b.Levels(book.Ask))
	sn.LastTradePrice, sn.LastTradeShares, sn.Volume = b.Last()
	sn.Messages = s.msgs[loc]
	if err := s.w.Publish(sn); err != nil {
		s.publishErrors++
		return
	}
	s.published++
}

func tradingState(c byte) bookfb.TradingState {
	switch c {
	case 'H':
		return bookfb.TradingStateHalted
	case 'P':
		return bookfb.TradingStatePaused
	case 'Q':
		return bookfb.TradingStateQuotationOnly
	case 'T':
		return bookfb.TradingStateTrading
	}
	return bookfb.TradingStateUnknown
}

// copyStats publishes the shard's counters for other goroutines. It runs
// every few tens of milliseconds, never per message.
func (s *shard) copyStats() {
	bst := s.books.Stats()
	rst := s.ring.Stats()
	s.mu.Lock()
	s.stats.Applied = s.applied.Load()
	s.stats.Batches, s.stats.Published, s.stats.PublishErrors = s.batches, s.published, s.publishErrors
	s.stats.Book = bst
	s.stats.Ring = rst
	s.mu.Unlock()
}

func (s *shard) statsCopy() ShardStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Ring = s.ring.Stats()
	return st
}
