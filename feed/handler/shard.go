package handler

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/internal/spsc"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// maxMsgLen is the longest ITCH 5.0 message (NOII, 50 bytes) rounded up so a
// slot is 80 bytes.
const maxMsgLen = 54

// slot is one ITCH message handed from the receive thread to a shard, by
// value (no pointers).
type slot struct {
	seq    uint64
	rxTime int64 // receive timestamp of its packet (the backend's: kernel or first user-space sight)
	pickup int64 // when the receive thread took the batch that made it deliverable
	kind   uint8 // 0: an ITCH message; else a marker (markerStale)
	n      uint8
	data   [maxMsgLen]byte
}

// Marker slots, ordered with the messages.
const (
	// markerStale: a gap was declared before this point: books may be
	// missing messages from here on.
	markerStale = 1 + iota
	// markerRebuild: a snapshot follows: flag and publish the books as
	// they are, empty them, and publish nothing until markerRebuilt.
	markerRebuild
	// markerRebuilt: the snapshot is loaded: publish every book.
	markerRebuilt
	// markerWhole: no gap is open any more: clear the stale flag.
	markerWhole
)

// ShardStats are one shard's counters.
type ShardStats struct {
	Applied       uint64 // messages applied to its books
	Published     uint64 // snapshots published
	Batches       uint64
	Book          book.Stats
	Ring          spsc.Stats
	PublishErrors uint64
	Stale         bool // the shard's books are flagged PossiblyStale (an unrecovered gap)
	Books         int  // books the shard has published (registered in shm)
}

// shard owns the books of the locates routed to it: it is their single
// writer, and publishes their snapshots.
type shard struct {
	id    int
	core  int // -1: not pinned
	ring  *spsc.Ring[slot]
	books *book.Books
	pub   *Publisher

	hist     latency.Histogram // receive timestamp to publish, per message
	histPath latency.Histogram // pickup by the receive thread to publish: the handler's own path

	applied atomic.Uint64 // messages applied (read by the pipeline to know it drained)

	batches    uint64 // written only by the shard goroutine, copied into stats
	rebuilding bool   // between markerRebuild and markerRebuilt: publish nothing

	mu    sync.Mutex // guards stats, copied out every few tens of milliseconds
	stats ShardStats
}

func newShard(id, core int, ringSize int, bcfg book.Config, w *shm.Writer, depth int) (*shard, error) {
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
	return &shard{id: id, core: core, ring: r, books: bs, pub: NewPublisher(w, bs, depth)}, nil
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
			s.copyStats()
			if s.ring.Closed() {
				return
			}
			continue
		}
		msgs := 0
		for i := range batch {
			m := &batch[i]
			if m.kind != 0 {
				s.marker(m)
				continue
			}
			loc, changed := s.books.Apply(itch.Msg(m.data[:m.n]))
			s.pub.Applied(loc, changed, m.seq, m.rxTime)
			msgs++
		}
		if !s.rebuilding {
			s.pub.Flush()
		}
		now := time.Now().UnixNano()
		s.record(batch, now)
		s.ring.Release(len(batch))
		s.applied.Add(uint64(msgs))
		s.batches++
		if now-lastStats.UnixNano() > int64(50*time.Millisecond) {
			s.copyStats()
			lastStats = time.Now()
		}
	}
}

// record adds the batch's messages to the latency histograms, one Record
// per run of messages that share their timestamps (a packet's messages).
func (s *shard) record(batch []slot, now int64) {
	for i := 0; i < len(batch); {
		if batch[i].kind != 0 {
			i++
			continue
		}
		rxTime, pickup := batch[i].rxTime, batch[i].pickup
		j := i + 1
		for j < len(batch) && batch[j].kind == 0 && batch[j].rxTime == rxTime && batch[j].pickup == pickup {
			j++
		}
		s.hist.RecordN(now-rxTime, j-i)
		s.histPath.RecordN(now-pickup, j-i)
		i = j
	}
}

// marker acts on a control slot. Markers are not messages: they are not
// counted as applied.
func (s *shard) marker(m *slot) {
	switch m.kind {
	case markerStale:
		s.pub.SetStale(true)
	case markerRebuild:
		// Readers keep the last whole books, flagged, until the new
		// ones are complete.
		s.pub.SetStale(true)
		s.pub.Flush()
		s.books.Reset()
		s.rebuilding = true
	case markerRebuilt:
		s.rebuilding = false
		s.pub.MarkAllDirty()
	case markerWhole:
		s.pub.SetStale(false)
	}
}

// copyStats publishes the shard's counters for other goroutines. It runs
// every few tens of milliseconds, never per message.
func (s *shard) copyStats() {
	bst := s.books.Stats()
	rst := s.ring.Stats()
	s.mu.Lock()
	s.stats.Applied = s.applied.Load()
	s.stats.Batches, s.stats.Published, s.stats.PublishErrors = s.batches, s.pub.Published, s.pub.Errors
	s.stats.Book = bst
	s.stats.Ring = rst
	s.stats.Stale, s.stats.Books = s.pub.stale, s.pub.Books
	s.mu.Unlock()
}

func (s *shard) statsCopy() ShardStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Ring = s.ring.Stats()
	return st
}
