package handler

import (
	"fmt"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestModesPublishSameSnapshots runs the same input in both modes (sharded:
// two shards) and compares every field of every live snapshot once the
// handler stopped, but the times a run stamps (receive, publish): one day
// with a packet lost on both lines (a gap, declared: no recovery), then,
// after the lines' silence, the next day's session (a rebuild; its
// locates name other symbols). compareShm checks the levels and the stale
// flag against a reference; this checks the rest (sequence number,
// messages, volume, last trade, system event, trading state, every flag)
// and that the two modes agree on which instruments are live.
func TestModesPublishSameSnapshots(t *testing.T) {
	day1 := sessionDay(t, "DAY1", 9, 20_000, 0, 50)
	day2 := sessionDay(t, "DAY2", 10, 20_000, 0, 50)
	var script []rx.Packet
	now := time.Now().UnixNano()
	for d, day := range [][][]byte{day1, day2} {
		rxTime := now + int64(d)*int64(3*time.Second)
		for i, b := range day {
			if d == 0 && i == 100 {
				continue
			}
			script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: rxTime}, rx.Packet{Data: b, Line: rx.LineB, RxTime: rxTime})
		}
	}
	want := totalMessages(t, day1) + totalMessages(t, day2) - totalMessages(t, day1[100:101])
	var got []map[string]string
	for _, m := range modes {
		r := &scriptRx{script: script, errAt: -1}
		name := shmtest.Name(t, "fhmodes")
		h, err := Start(Config{
			Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
			Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond, LineTimeout: time.Second},
			Book:       book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
			Mode:       m.mode,
			ShardCores: m.shards,
			ShmName:    name,
			Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "both days applied", func() bool {
			st := h.Stats()
			return st.Arbiter.Delivered == want && st.Applied() == st.Routed
		})
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		if st := h.Stats(); st.Arbiter.Gaps != 1 || st.Arbiter.SessionChanges != 1 {
			t.Fatalf("%v: gaps %d, session changes %d; want 1 and 1", m.mode, st.Arbiter.Gaps, st.Arbiter.SessionChanges)
		}
		got = append(got, snapshotFields(t, name))
	}
	for sym, a := range got[0] {
		if b, ok := got[1][sym]; !ok || a != b {
			t.Errorf("%s:\n  %v: %s\n  %v: %s", sym, modes[0].mode, a, modes[1].mode, b)
		}
	}
	for sym, b := range got[1] {
		if _, ok := got[0][sym]; !ok {
			t.Errorf("%s live only %v: %s", sym, modes[1].mode, b)
		}
	}
}

// snapshotFields reads every live instrument of feed name: symbol -> its
// snapshot's fields but the receive and publish times, levels included.
func snapshotFields(t *testing.T, name string) map[string]string {
	t.Helper()
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	out := map[string]string{}
	for _, in := range r.Instruments() {
		v, err := r.Read(in.Locate, buf)
		if err != nil {
			t.Fatalf("read %s: %v", in.Symbol, err)
		}
		s := fmt.Sprintf("locate %d seq %d exchange time %d state %d flags %d levels %d/%d last %d x %d volume %d messages %d system event %d",
			v.Locate(), v.Seq(), v.ExchangeTime(), v.TradingState(), v.Flags(), v.BidLevels(), v.AskLevels(),
			v.LastTradePrice(), v.LastTradeShares(), v.Volume(), v.Messages(), v.SystemEvent())
		for i := 0; ; i++ {
			l, ok := v.Bid(i)
			if !ok {
				break
			}
			s += fmt.Sprintf(" bid %+v", l)
		}
		for i := 0; ; i++ {
			l, ok := v.Ask(i)
			if !ok {
				break
			}
			s += fmt.Sprintf(" ask %+v", l)
		}
		out[in.Symbol] = s
	}
	if len(out) == 0 {
		t.Fatal("nothing published")
	}
	return out
}
