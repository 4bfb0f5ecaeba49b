package handler

import (
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// wedgeRx is an idle receiver whose Receive can be made to hang (a
// receive thread wedged) until released.
type wedgeRx struct {
	countRx
	wedged  atomic.Bool
	held    atomic.Int64 // calls that were held (counted before they wait)
	release chan struct{}
}

func (r *wedgeRx) Receive(p []rx.Packet) (int, error) {
	if r.wedged.Load() {
		r.held.Add(1)
		<-r.release
	}
	return r.countRx.Receive(p)
}

// TestHeartbeatStopsWithHotThread: a receive thread that stops going round
// its loop stops the shm heartbeat, so a reader finds the writer dead, and
// the heartbeat comes back when the thread does. Before, housekeeping beat
// it whatever the hot threads did: a wedged handler's frozen books looked
// alive to every reader and to the heartbeat-age alert.
func TestHeartbeatStopsWithHotThread(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		defer func(d time.Duration) { stallLimit = d }(stallLimit)
		stallLimit = 100 * time.Millisecond
		r := &wedgeRx{release: make(chan struct{})}
		var log lockedBuffer
		name := shmtest.Name(t, "fhalive")
		h, err := Start(Config{
			Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
			Book:        book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
			Mode:        mode,
			ShardCores:  shards,
			ReceiveCore: -1,
			ShmName:     name,
			Open:        func(rx.Config) (rx.Receiver, error) { return r, nil },
			Log:         zerolog.New(&log),
		})
		if err != nil {
			t.Fatal(err)
		}
		released := false
		defer func() {
			if !released {
				close(r.release)
			}
			h.Stop()
		}()
		rd, err := shm.OpenWith(name, shm.OpenOptions{StaleAfter: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		alive := func() bool { return rd.Check() == nil }
		dead := func() bool { return errors.Is(rd.Check(), shm.ErrWriterDead) }
		waitFor(t, "the writer alive", alive)

		r.wedged.Store(true)
		waitFor(t, "the writer dead, its receive thread wedged", dead)
		// Under load the reader can find the heartbeat stale before
		// housekeeping, late itself, has seen the stall and said so (CI:
		// 'no log line says the heartbeat is withheld'): waited for,
		// bounded, as the death is.
		logged := func(what string) func() bool {
			return func() bool { return strings.Contains(log.String(), what) }
		}
		waitFor(t, `a log line saying "shm heartbeat withheld"`, logged("shm heartbeat withheld"))
		r.wedged.Store(false)
		close(r.release)
		released = true
		waitFor(t, "the writer alive again", alive)
		waitFor(t, `a log line saying "shm heartbeat resumed"`, logged("shm heartbeat resumed"))
	})
}

// TestStopTwice: a second Stop while the first is under way waits for the
// first and returns its error. Before, it returned nil at once, with the
// receive thread still running and the shm writer still open.
//
// The first Stop starts once the receive thread is held in Receive: Start
// returns before the thread first looks at the stop flag, and a Stop
// before that ends the thread at once, with nothing to wait for. The test
// stopped then without looking, and read the first Stop's result twice
// when both had returned within 100 ms: under load it hung in that second
// read until the 45 min timeout, every other goroutine gone.
func TestStopTwice(t *testing.T) {
	r := &wedgeRx{release: make(chan struct{})}
	r.wedged.Store(true)
	h, err := Start(Config{
		Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Book:        book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
		Mode:        ModeRunToCompletion,
		ReceiveCore: -1,
		ShmName:     shmtest.Name(t, "fhstop2"),
		Open:        func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(r.release)
			h.Stop()
		}
	}()
	waitFor(t, "the receive thread held in Receive", func() bool { return r.held.Load() > 0 })
	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- h.Stop() }()
	waitFor(t, "the first Stop under way", h.stop.Load)
	go func() { second <- h.Stop() }()
	select {
	case err := <-second:
		t.Errorf("the second Stop returned (%v) while the first waits for the receive thread", err)
		second <- err // for the check below
	case <-time.After(100 * time.Millisecond):
	}
	close(r.release)
	released = true
	var e1 error
	select {
	case e1 = <-first:
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("the first Stop did not return 20 s after the receive thread was released; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	select {
	case e2 := <-second:
		if !errors.Is(e2, e1) && e1 != e2 {
			t.Errorf("second Stop: %v, first: %v", e2, e1)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second Stop did not return after the first")
	}
}
