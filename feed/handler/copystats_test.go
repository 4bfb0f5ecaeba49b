package handler

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// countRx is an idle receiver that counts Receive and Stats calls.
type countRx struct {
	receives, stats atomic.Int64
	closed          atomic.Bool
}

func (r *countRx) Receive([]rx.Packet) (int, error) {
	if r.closed.Load() {
		return 0, rx.ErrClosed
	}
	r.receives.Add(1)
	time.Sleep(time.Millisecond) // an idle poll
	return 0, nil
}
func (r *countRx) Release([]rx.Packet) {}
func (r *countRx) Backend() string     { return "count" }
func (r *countRx) Stats() rx.Stats     { r.stats.Add(1); return rx.Stats{} }
func (r *countRx) Close() error        { r.closed.Store(true); return nil }

// TestCopyStatsWhileReaderHoldsLock: while a reader holds the handler's
// stats lock, the receive thread does not gather the receiver's stats
// (syscalls for the real backends) on every loop pass only to find the lock
// taken; while a reader holds the inline shard's lock, it does not redo the
// handler's part on every pass. Once the lock is free the copies resume.
func TestCopyStatsWhileReaderHoldsLock(t *testing.T) {
	r := &countRx{}
	name := shmtest.Name(t, "fhcopy")
	h, err := Start(Config{
		Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Book:        book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
		Mode:        ModeRunToCompletion,
		ReceiveCore: -1,
		ShmName:     name,
		Open:        func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitFor(t, "the first stats copy", func() bool { return r.stats.Load() > 0 })

	// hold takes lock, lets the receive loop make 100 passes (at least
	// 100 ms: five stats periods) and returns how often it called Stats.
	hold := func(lock interface {
		Lock()
		Unlock()
	}) int64 {
		lock.Lock()
		defer lock.Unlock()
		s0, r0 := r.stats.Load(), r.receives.Load()
		waitFor(t, "100 receive passes", func() bool { return r.receives.Load() >= r0+100 })
		return r.stats.Load() - s0
	}
	if n := hold(&h.mu); n != 0 {
		t.Errorf("the receiver's Stats was called %d times while the handler's stats lock was held, want 0", n)
	}
	if n := hold(&h.inline.mu); n > 1 {
		t.Errorf("the receiver's Stats was called %d times while the shard's stats lock was held, want at most 1", n)
	}
	s0 := r.stats.Load()
	waitFor(t, "a stats copy after the locks were released", func() bool { return r.stats.Load() > s0 })
}
