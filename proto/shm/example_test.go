package shm_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// exampleFeed is a feed path private to this process, named after it
// (internal/leftover) so that a later run removes one whose test binary
// was killed before its deferred Remove.
func exampleFeed() string {
	leftover.SweepOnce(shm.Dir, "fh-shm-example")
	return filepath.Join(shm.Dir, "fh-shm-example-"+leftover.Self().String())
}

// The writer side, as the pipeline uses it.
func ExampleWriter() {
	name := exampleFeed()
	w, err := shm.Create(shm.Config{Name: name, Instruments: 100, Depth: 10})
	if err != nil {
		panic(err)
	}
	defer shm.Remove(name)
	defer w.Close()
	w.Register(13, "AAPL")

	// Reused for every publish; Bids and Asks have capacity Depth.
	snap := shm.Snapshot{Bids: make([]shm.Level, 0, 10), Asks: make([]shm.Level, 0, 10)}
	snap.Locate = 13
	snap.Seq = 1042
	snap.State = bookfb.TradingStateTrading
	snap.Bids = append(snap.Bids[:0], shm.Level{Price: 1892500, Shares: 300, Orders: 2})
	snap.Asks = append(snap.Asks[:0], shm.Level{Price: 1892600, Shares: 100, Orders: 1})
	if err := w.Publish(&snap); err != nil {
		panic(err)
	}
	w.Heartbeat()

	r, err := shm.Open(name)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	fmt.Println(r.Instruments(), r.Version(13))
	// Output: [{13 AAPL}] 1
}

// A strategy reads the latest book of a symbol into its own buffer.
func ExampleReader_Read() {
	name := exampleFeed()
	w, _ := shm.Create(shm.Config{Name: name, Instruments: 100, Depth: 10})
	defer shm.Remove(name)
	defer w.Close()
	w.Register(13, "AAPL")
	w.Publish(&shm.Snapshot{Locate: 13, Seq: 7,
		Bids: []shm.Level{{Price: 1892500, Shares: 300, Orders: 2}, {Price: 1892400, Shares: 50, Orders: 1}},
		Asks: []shm.Level{{Price: 1892600, Shares: 100, Orders: 1}}})

	r, err := shm.Open(name)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot) // reused for every Read
	locate, _ := r.Lookup("AAPL")
	v, err := r.Read(locate, buf)
	if err != nil {
		panic(err)
	}
	bid, _ := v.Bid(0)
	ask, _ := v.Ask(0)
	fmt.Printf("%s seq %d version %d: %d bid levels, best %d x %d / %d x %d\n",
		v.Symbol(), v.Seq(), v.Version, v.BidsLength(), bid.Shares, bid.Price, ask.Shares, ask.Price)
	// Output: AAPL seq 7 version 1: 2 bid levels, best 300 x 1892500 / 100 x 1892600
}

// A strategy follows the change journal and reads what changed.
func ExampleFollower_Wait() {
	name := exampleFeed()
	w, _ := shm.Create(shm.Config{Name: name, Instruments: 100, Depth: 10})
	defer shm.Remove(name)
	w.Register(13, "AAPL")
	w.Register(14, "MSFT")

	r, err := shm.Open(name)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	f := r.Follow()

	// The writer publishes three snapshots, then closes the feed.
	for i, loc := range []uint16{13, 14, 13} {
		w.Publish(&shm.Snapshot{Locate: loc, Seq: uint64(100 + i)})
	}
	w.Close()

	buf := make([]byte, r.Info().MaxSnapshot)
	updates := make([]shm.Update, 64)
	for {
		n, err := f.Wait(updates, time.Second, shm.WaitOptions{})
		if errors.Is(err, shm.ErrOverrun) {
			// Fell behind: rescan every instrument (compare r.Version).
			continue
		}
		if err != nil {
			fmt.Println("stop:", errors.Is(err, shm.ErrClosed))
			return
		}
		for _, u := range updates[:n] {
			v, err := r.Read(u.Locate, buf)
			if err != nil {
				panic(err)
			}
			fmt.Printf("%s version %d seq %d\n", v.Symbol(), u.Version, v.Seq())
		}
	}
	// Output:
	// AAPL version 1 seq 102
	// MSFT version 1 seq 101
	// AAPL version 2 seq 102
	// stop: true
}

// Errors are sentinels: a strategy started before the feed handler waits.
func ExampleOpen_notExist() {
	_, err := shm.Open(exampleFeed() + "-never-created")
	fmt.Println(errors.Is(err, shm.ErrNotExist))
	// Output: true
}
