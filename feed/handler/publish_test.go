package handler

import (
	"testing"
	"unsafe"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestLocStateSize: a message and a publish touch one cache line of the
// Publisher's per-locate state.
func TestLocStateSize(t *testing.T) {
	if s := unsafe.Sizeof(locState{}); s != 32 {
		t.Fatalf("locState is %d bytes, want 32", s)
	}
}

// TestBooksResetRestartsMessages: the snapshot's Messages counts the
// messages applied to its book. After BooksReset (a rebuild, or a new
// session binding the locate to another symbol) the count starts again, as
// the slot's version does; before the fix it carried the old book's count
// (3 + 2 = 5 below).
func TestBooksResetRestartsMessages(t *testing.T) {
	name := shmtest.Name(t, "fh-handler-test")
	w, err := shm.Create(shm.Config{Name: name, Instruments: 4, Depth: 2, SingleWriter: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	bs, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(w, bs, 2)
	buf := make([]byte, r.Info().MaxSnapshot)
	session := func(sym string, msgs int, seq0 uint64) {
		t.Helper()
		bs.Announce(7, itch.NewSymbol(sym))
		for i := range msgs {
			ok := bs.AddOrder(7, uint64(i+1), book.Bid, 100, 1000+uint32(i))
			p.Applied(7, ok, seq0+uint64(i), int64(seq0)+int64(i))
		}
		p.Flush()
		if p.Errors != 0 {
			t.Fatalf("%s: %d publish errors", sym, p.Errors)
		}
		v, err := r.ReadSymbol(sym, buf)
		if err != nil {
			t.Fatal(err)
		}
		if v.Messages() != uint64(msgs) || v.Seq() != seq0+uint64(msgs)-1 || v.Version != 1 {
			t.Fatalf("%s: messages %d seq %d version %d, want %d, %d, 1", sym, v.Messages(), v.Seq(), v.Version, msgs, seq0+uint64(msgs)-1)
		}
	}
	session("SNAP", 3, 10)
	// A new session: the books are emptied, locate 7 is MSFT now.
	bs.Reset()
	p.BooksReset()
	session("MSFT", 2, 1)
	if p.Rebound != 1 {
		t.Fatalf("rebound %d, want 1", p.Rebound)
	}
}

// TestShardLagsSessionChange: two book shards share the writer. Shard A
// saw the new session first (AAPL is its locate 9 now); shard B lags,
// still in the old session, and publishes AAPL's old book at locate 5 for
// the first time (no slot bound yet), which moves AAPL back to 5 and
// retires A's slot. A's next publish must not go into its retired slot,
// where no reader looks: it binds AAPL to 9 again. When B reaches the
// session change (locate 5 is MSFT), AAPL is found at 9 with A's book.
// Before the fix A kept publishing into the retired slot and, once B
// rebound locate 5, AAPL was found nowhere.
func TestShardLagsSessionChange(t *testing.T) {
	name := shmtest.Name(t, "fh-handler-test")
	w, err := shm.Create(shm.Config{Name: name, Instruments: 16, Depth: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	buf := make([]byte, r.Info().MaxSnapshot)
	shard := func() (*book.Books, *Publisher) {
		bs, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
		if err != nil {
			t.Fatal(err)
		}
		return bs, NewPublisher(w, bs, 2)
	}
	bsA, a := shard()
	bsB, b := shard()
	var ref uint64
	add := func(bs *book.Books, p *Publisher, loc uint16, price uint32) {
		t.Helper()
		ref++
		p.Applied(loc, bs.AddOrder(loc, ref, book.Bid, 100, price), ref, 0)
		p.Flush()
	}
	bsA.Announce(9, itch.NewSymbol("AAPL"))
	add(bsA, a, 9, 2000)
	bsB.Announce(5, itch.NewSymbol("AAPL")) // the old session's AAPL
	add(bsB, b, 5, 1000)
	add(bsA, a, 9, 2001)
	// B reaches the session change: locate 5 is MSFT.
	bsB.Reset()
	b.BooksReset()
	bsB.Announce(5, itch.NewSymbol("MSFT"))
	add(bsB, b, 5, 3000)
	loc, ok := r.Lookup("AAPL")
	if !ok || loc != 9 {
		t.Fatalf("AAPL at %d (found %v), want 9", loc, ok)
	}
	v, err := r.Read(9, buf)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := v.Bid(0); string(v.Symbol()) != "AAPL" || l.Price != 2001 {
		t.Fatalf("AAPL read as %q best bid %d, want shard A's 2001", v.Symbol(), l.Price)
	}
	if a.Errors != 0 || b.Errors != 0 {
		t.Fatalf("publish errors: A %d, B %d", a.Errors, b.Errors)
	}
}
