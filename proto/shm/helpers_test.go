package shm

import (
	"fmt"
	"testing"

	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// testName returns a unique feed path under /dev/shm, removed at cleanup
// (shmtest.Path).
func testName(t testing.TB) string {
	t.Helper()
	return shmtest.Path(t, "fh-shm-test")
}

func testWriter(t testing.TB, cfg Config) *Writer {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = testName(t)
	}
	w, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func testReader(t testing.TB, name string) *Reader {
	t.Helper()
	r, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// symbolOf is the symbol tests register for a locate.
func symbolOf(locate uint16) string { return fmt.Sprintf("S%d", locate) }

// fillSnapshot makes the k-th snapshot of locate: every field derives from
// (locate, k), so a reader can recompute the whole snapshot from its Seq
// and Locate and detect any mix of two publications (a torn read). bids and
// asks must have capacity depth.
func fillSnapshot(s *Snapshot, locate uint16, k uint64, depth int) {
	nb := int(k % uint64(depth+1))
	na := int((k / 3) % uint64(depth+1))
	s.Locate = locate
	s.Seq = k
	s.ExchangeTime = k*3 + uint64(locate)
	s.ReceiveTime = int64(k * 5)
	s.PublishTime = 0
	s.State = bookfb.TradingState(k % 5)
	s.Flags = bookfb.Flags(k & 0xF)
	s.SystemEvent = byte('A' + k%26)
	s.Bids = s.Bids[:nb]
	s.Asks = s.Asks[:na]
	for i := range s.Bids {
		s.Bids[i] = Level{Price: uint32(k) + 1000 - uint32(i), Shares: k*7 + uint64(i), Orders: uint32(i) + uint32(locate)}
	}
	for i := range s.Asks {
		s.Asks[i] = Level{Price: uint32(k) + 2000 + uint32(i), Shares: k*13 + uint64(i), Orders: uint32(i) ^ uint32(k)}
	}
	s.BidLevels = uint32(nb) + uint32(k%7)
	s.AskLevels = uint32(na) + uint32(k%11)
	s.LastTradePrice = uint32(k) ^ uint32(locate)
	s.LastTradeShares = k * 17
	s.Volume = k * 19
	s.Messages = k + uint64(locate)
}

// checkView recomputes the snapshot from the view's Seq and Locate and
// reports the first field that differs.
func checkView(v *View, depth int) error {
	var want Snapshot
	want.Bids = make([]Level, depth)
	want.Asks = make([]Level, depth)
	fillSnapshot(&want, v.Locate(), v.Seq(), depth)
	return compareView(v, &want, symbolOf(v.Locate()))
}

func compareView(v *View, s *Snapshot, symbol string) error {
	type field struct {
		name      string
		got, want any
	}
	fields := []field{
		{"locate", v.Locate(), s.Locate},
		{"symbol", string(v.Symbol()), symbol},
		{"seq", v.Seq(), s.Seq},
		{"exchange time", v.ExchangeTime(), s.ExchangeTime},
		{"receive time", v.ReceiveTime(), s.ReceiveTime},
		{"state", v.TradingState(), s.State},
		{"flags", v.Flags(), s.Flags},
		{"system event", v.SystemEvent(), s.SystemEvent},
		{"bids", v.BidsLength(), len(s.Bids)},
		{"asks", v.AsksLength(), len(s.Asks)},
		{"bid levels", v.BidLevels(), s.BidLevels},
		{"ask levels", v.AskLevels(), s.AskLevels},
		{"last trade price", v.LastTradePrice(), s.LastTradePrice},
		{"last trade shares", v.LastTradeShares(), s.LastTradeShares},
		{"volume", v.Volume(), s.Volume},
		{"messages", v.Messages(), s.Messages},
	}
	if s.PublishTime != 0 {
		fields = append(fields, field{"publish time", v.PublishTime(), s.PublishTime})
	}
	for _, f := range fields {
		if f.got != f.want {
			return fmt.Errorf("locate %d seq %d: %s = %v, want %v", s.Locate, s.Seq, f.name, f.got, f.want)
		}
	}
	for i := range s.Bids {
		if l, _ := v.Bid(i); l != s.Bids[i] {
			return fmt.Errorf("locate %d seq %d: bid %d = %+v, want %+v", s.Locate, s.Seq, i, l, s.Bids[i])
		}
	}
	for i := range s.Asks {
		if l, _ := v.Ask(i); l != s.Asks[i] {
			return fmt.Errorf("locate %d seq %d: ask %d = %+v, want %+v", s.Locate, s.Seq, i, l, s.Asks[i])
		}
	}
	if v.PublishTime() == 0 {
		return fmt.Errorf("locate %d seq %d: publish time not stamped", s.Locate, s.Seq)
	}
	return nil
}

func newSnapshot(depth int) *Snapshot {
	return &Snapshot{Bids: make([]Level, depth), Asks: make([]Level, depth)}
}
