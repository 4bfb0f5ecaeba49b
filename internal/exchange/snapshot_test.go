package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
	"github.com/marketfeed/feedhandler/internal/itchgen"
)

// genDay returns a generated day's messages, index i = sequence number i+1.
func genDay(tb testing.TB, messages, symbols int) [][]byte {
	tb.Helper()
	g, err := itchgen.New(itchgen.Config{Messages: messages, Symbols: symbols, Seed: 9})
	if err != nil {
		tb.Fatal(err)
	}
	var day [][]byte
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		day = append(day, bytes.Clone(m))
	}
	return day
}

func dayFunc(day [][]byte) func(uint64) ([]byte, bool) {
	return func(seq uint64) ([]byte, bool) {
		if seq == 0 || seq > uint64(len(day)) {
			return nil, false
		}
		return day[seq-1], true
	}
}

func newBooks(tb testing.TB) *book.Books {
	tb.Helper()
	bs, err := book.New(book.Config{MaxOrders: 1 << 16, MaxLocates: 1024, MaxLevels: 1 << 15})
	if err != nil {
		tb.Fatal(err)
	}
	return bs
}

// startServer runs a snapshot server on 127.0.0.1 until the test ends.
func startServer(tb testing.TB, cfg SnapshotConfig) *SnapshotServer {
	tb.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Username == "" {
		cfg.Username, cfg.Password, cfg.Session = "lab", "secret", "GEN0000001"
	}
	s, err := NewSnapshotServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	return s
}

func clientCfg(s *SnapshotServer) glimpse.Config {
	return glimpse.Config{Addr: s.Addr().String(), Username: "lab", Password: "secret", ConnectTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
}

// compareBooks checks that got and want hold the same books: every order
// queue (references, shares, in priority order), the trading state and
// the system event; and the books JSON.
func compareBooks(t *testing.T, got, want *book.Books) {
	t.Helper()
	var a, b bytes.Buffer
	if err := got.WriteJSON(&a, 0); err != nil {
		t.Fatal(err)
	}
	if err := want.WriteJSON(&b, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("books JSON differ: %d vs %d bytes", a.Len(), b.Len())
	}
	if ge, _ := got.SystemEvent(); ge != func() byte { e, _ := want.SystemEvent(); return e }() {
		t.Errorf("system event %q, want %q", ge, func() byte { e, _ := want.SystemEvent(); return e }())
	}
	qa := make([]book.OrderInfo, 0, 1<<16)
	qb := make([]book.OrderInfo, 0, 1<<16)
	var la, lb []book.Level
	books, orders := 0, 0
	for wb := range want.All() {
		gb := got.Book(wb.Locate())
		if gb == nil {
			t.Fatalf("locate %d (%s) missing from the snapshot's books", wb.Locate(), wb.Name())
		}
		if gb.Name() != wb.Name() || gb.TradingState() != wb.TradingState() || gb.RegSHO() != wb.RegSHO() || gb.OperationalHalt() != wb.OperationalHalt() {
			t.Fatalf("locate %d: %s state %c/%c/%c, want %s %c/%c/%c", wb.Locate(), gb.Name(), gb.TradingState(), gb.RegSHO(), gb.OperationalHalt(),
				wb.Name(), wb.TradingState(), wb.RegSHO(), wb.OperationalHalt())
		}
		books++
		for _, side := range []book.Side{book.Bid, book.Ask} {
			la = wb.AppendDepth(side, la[:0], 0)
			lb = gb.AppendDepth(side, lb[:0], 0)
			if len(la) != len(lb) {
				t.Fatalf("%s %v: %d levels, want %d", wb.Name(), side, len(lb), len(la))
			}
			for _, lv := range la {
				qa = wb.Queue(side, lv.Price, qa)
				qb = gb.Queue(side, lv.Price, qb)
				if fmt.Sprint(qa) != fmt.Sprint(qb) {
					t.Fatalf("%s %v %d: queue\n got %v\nwant %v", wb.Name(), side, lv.Price, qb, qa)
				}
				orders += len(qa)
			}
		}
	}
	t.Logf("%d books, %d orders compared queue by queue", books, orders)
}

// roundTrip serves the snapshot at pos, fetches it into fresh books,
// applies the rest of the day and compares with a replay of the whole day.
func roundTrip(t *testing.T, day [][]byte, pos uint64) {
	t.Helper()
	var position atomic.Uint64
	position.Store(pos)
	s := startServer(t, SnapshotConfig{Messages: dayFunc(day), Position: position.Load})
	bs := newBooks(t)
	st := new(glimpse.Stats)
	cfg := clientCfg(s)
	cfg.Stats = st
	res, err := glimpse.Fetch(context.Background(), cfg, func(m []byte) error {
		bs.Apply(itch.Msg(m))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantNext := min(pos, uint64(len(day))) + 1
	if res.NextSeq != wantNext || res.Session != "GEN0000001" {
		t.Fatalf("result %+v, want NextSeq %d session GEN0000001", res, wantNext)
	}
	if bs.Stats().Inconsistencies() != 0 {
		t.Fatalf("loading the snapshot: %+v", bs.Stats())
	}
	for seq := res.NextSeq; seq <= uint64(len(day)); seq++ {
		bs.Apply(itch.Msg(day[seq-1]))
	}
	full := newBooks(t)
	for _, m := range day {
		full.Apply(itch.Msg(m))
	}
	if bs.Stats().Inconsistencies() != full.Stats().Inconsistencies() {
		t.Errorf("inconsistencies after the live part: %d, full replay %d", bs.Stats().Inconsistencies(), full.Stats().Inconsistencies())
	}
	compareBooks(t, bs, full)
	ss := s.Stats()
	if ss.Snapshots != 1 || ss.Logins != 1 || uint64(res.Messages) != ss.Messages || st.Completed.Load() != 1 || st.Soup.Malformed() != 0 {
		t.Errorf("server %+v, client %+v messages %d", ss, st.Soup.Snapshot(), res.Messages)
	}
	t.Logf("position %d: %d messages (%d open orders), NextSeq %d", pos, res.Messages, ss.LastOpen, res.NextSeq)
}

func TestSnapshotRoundTrip(t *testing.T) {
	day := genDay(t, 200_000, 100)
	t.Run("40%", func(t *testing.T) { roundTrip(t, day, uint64(len(day))*4/10) })
	t.Run("zero", func(t *testing.T) { roundTrip(t, day, 0) })
	t.Run("end", func(t *testing.T) { roundTrip(t, day, uint64(len(day))) })
	t.Run("past-end", func(t *testing.T) { roundTrip(t, day, uint64(len(day))+1000) })
	t.Run("after-replace", func(t *testing.T) {
		// Right after a 'U' whose new order then rests: its priority is the
		// replacement's, not the original's.
		for i := len(day) / 2; i < len(day); i++ {
			if day[i][0] == itch.TypeOrderReplace {
				roundTrip(t, day, uint64(i+1))
				return
			}
		}
		t.Fatal("no replace in the day")
	})
	t.Run("every-type-boundary", func(t *testing.T) {
		// Just after each kind of order event once, mid-day.
		seen := map[byte]bool{}
		for i := len(day) / 3; i < len(day) && len(seen) < 6; i++ {
			switch typ := day[i][0]; typ {
			case 'E', 'C', 'X', 'D', 'F', 'H':
				if !seen[typ] {
					seen[typ] = true
					t.Run(string(typ), func(t *testing.T) { roundTrip(t, day, uint64(i+1)) })
				}
			}
		}
	})
}

// TestSnapshotFollowsPosition: the server advances its state as the
// position moves and reuses a build while it does not.
func TestSnapshotFollowsPosition(t *testing.T) {
	day := genDay(t, 50_000, 20)
	var position atomic.Uint64
	s := startServer(t, SnapshotConfig{Messages: dayFunc(day), Position: position.Load})
	for _, pos := range []uint64{1000, 1000, 20_000, 45_000, 10_000} {
		position.Store(pos)
		res, err := glimpse.Fetch(context.Background(), clientCfg(s), func([]byte) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if res.NextSeq != pos+1 {
			t.Fatalf("position %d: NextSeq %d", pos, res.NextSeq)
		}
	}
	if b := s.Stats().Builds; b != 4 {
		t.Errorf("%d builds, want 4 (one reused)", b)
	}
}

// TestSnapshotConcurrent: several clients fetch while the position moves;
// each gets a consistent snapshot (books equal a replay up to its NextSeq).
func TestSnapshotConcurrent(t *testing.T) {
	day := genDay(t, 60_000, 30)
	var position atomic.Uint64
	position.Store(10_000)
	s := startServer(t, SnapshotConfig{Messages: dayFunc(day), Position: position.Load, FollowInterval: time.Millisecond})
	stop := make(chan struct{})
	go func() {
		for p := uint64(10_000); p < 60_000; p += 50 {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
				position.Store(p)
			}
		}
	}()
	defer close(stop)
	type got struct {
		res  glimpse.Result
		msgs [][]byte
		err  error
	}
	results := make(chan got, 8)
	for range 8 {
		go func() {
			var g got
			g.res, g.err = glimpse.Fetch(context.Background(), clientCfg(s), func(m []byte) error {
				g.msgs = append(g.msgs, bytes.Clone(m))
				return nil
			})
			results <- g
		}()
	}
	for range 8 {
		g := <-results
		if g.err != nil {
			t.Fatal(g.err)
		}
		snap, want := newBooks(t), newBooks(t)
		for _, m := range g.msgs {
			snap.Apply(itch.Msg(m))
		}
		for _, m := range day[:g.res.NextSeq-1] {
			want.Apply(itch.Msg(m))
		}
		compareBooks(t, snap, want)
	}
}

func TestSnapshotFaults(t *testing.T) {
	day := genDay(t, 50_000, 20)
	base := SnapshotConfig{Messages: dayFunc(day), Position: func() uint64 { return 20_000 }}
	fetch := func(t *testing.T, s *SnapshotServer, idle time.Duration) (glimpse.Result, *glimpse.Stats, time.Duration, error) {
		cfg := clientCfg(s)
		cfg.IdleTimeout = idle
		st := new(glimpse.Stats)
		cfg.Stats = st
		t0 := time.Now()
		res, err := glimpse.Fetch(context.Background(), cfg, func([]byte) error { return nil })
		return res, st, time.Since(t0), err
	}
	t.Run("reject", func(t *testing.T) {
		cfg := base
		cfg.RejectLogin = true
		s := startServer(t, cfg)
		_, st, _, err := fetch(t, s, time.Second)
		var rej *soupbintcp.RejectError
		if !errors.Is(err, glimpse.ErrLoginRejected) || !errors.As(err, &rej) || rej.Reason != 'A' || st.Rejected.Load() != 1 {
			t.Fatalf("err %v, rejected %d", err, st.Rejected.Load())
		}
		t.Log(err)
	})
	t.Run("bad-password", func(t *testing.T) {
		s := startServer(t, base)
		cfg := clientCfg(s)
		cfg.Password = "wrong"
		_, err := glimpse.Fetch(context.Background(), cfg, func([]byte) error { return nil })
		if !errors.Is(err, glimpse.ErrLoginRejected) || bytes.Contains([]byte(err.Error()), []byte("wrong")) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad-session", func(t *testing.T) {
		s := startServer(t, base)
		cfg := clientCfg(s)
		cfg.Session = "OTHER"
		_, err := glimpse.Fetch(context.Background(), cfg, func([]byte) error { return nil })
		var rej *soupbintcp.RejectError
		if !errors.Is(err, glimpse.ErrLoginRejected) || !errors.As(err, &rej) || rej.Reason != 'S' {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("stall", func(t *testing.T) {
		cfg := base
		cfg.StallAfter = 100
		cfg.HeartbeatInterval = 20 * time.Millisecond // heartbeats go on: still a stall
		s := startServer(t, cfg)
		res, st, took, err := fetch(t, s, 300*time.Millisecond)
		if !errors.Is(err, glimpse.ErrStalled) || st.Stalled.Load() != 1 || res.Messages != 100 {
			t.Fatalf("err %v, stalled %d, %d messages", err, st.Stalled.Load(), res.Messages)
		}
		if st.Soup.Heartbeats.Load() == 0 {
			t.Error("no heartbeats during the stall")
		}
		t.Logf("%v after %v", err, took)
	})
	t.Run("stall-silent", func(t *testing.T) {
		cfg := base
		cfg.StallAfter = 100
		cfg.HeartbeatInterval = time.Hour // the server says nothing at all
		s := startServer(t, cfg)
		_, st, took, err := fetch(t, s, 300*time.Millisecond)
		if !errors.Is(err, glimpse.ErrStalled) || st.Stalled.Load() != 1 {
			t.Fatalf("err %v", err)
		}
		t.Logf("%v after %v", err, took)
	})
	t.Run("close", func(t *testing.T) {
		cfg := base
		cfg.CloseAfter = 150
		s := startServer(t, cfg)
		res, st, _, err := fetch(t, s, 5*time.Second)
		if !errors.Is(err, glimpse.ErrProtocol) || st.Closed.Load() != 1 || res.Messages != 150 {
			t.Fatalf("err %v, closed %d, %d messages", err, st.Closed.Load(), res.Messages)
		}
		t.Log(err)
	})
	t.Run("garbage", func(t *testing.T) {
		cfg := base
		cfg.Garbage = true
		s := startServer(t, cfg)
		_, st, _, err := fetch(t, s, 5*time.Second)
		if !errors.Is(err, glimpse.ErrProtocol) || !errors.Is(err, soupbintcp.ErrUnknownType) || st.Soup.UnknownType.Load() != 1 {
			t.Fatalf("err %v, %+v", err, st.Soup.Snapshot())
		}
		t.Log(err)
	})
	t.Run("cancel", func(t *testing.T) {
		cfg := base
		cfg.StallAfter = 100
		s := startServer(t, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		c := clientCfg(s)
		c.IdleTimeout = time.Minute
		t0 := time.Now()
		_, err := glimpse.Fetch(ctx, c, func([]byte) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Fatalf("cancel took %v", d)
		}
	})
	t.Run("cancel-mid-stream", func(t *testing.T) {
		big := openOrderDay(200_000, 100)
		s := startServer(t, SnapshotConfig{Messages: dayFunc(big)})
		s.Prepare()
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		st := new(glimpse.Stats)
		c := clientCfg(s)
		c.Stats = st
		_, err := glimpse.Fetch(ctx, c, func([]byte) error {
			if n++; n == 1000 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || st.Cancelled.Load() != 1 || n > 1000+1<<16 {
			t.Fatalf("err %v after %d messages, cancelled %d", err, n, st.Cancelled.Load())
		}
		t.Logf("%v after %d messages", err, n)
	})
	t.Run("server-close-mid-stall", func(t *testing.T) {
		cfg := base
		cfg.StallAfter = 100
		s := startServer(t, cfg)
		time.AfterFunc(100*time.Millisecond, func() { s.Close() })
		_, _, _, err := fetch(t, s, time.Minute)
		if !errors.Is(err, glimpse.ErrProtocol) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("nobody-listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		st := new(glimpse.Stats)
		_, err = glimpse.Fetch(context.Background(), glimpse.Config{Addr: addr, ConnectTimeout: time.Second, Stats: st}, func([]byte) error { return nil })
		if err == nil || st.DialFailed.Load() != 1 {
			t.Fatalf("err %v", err)
		}
	})
}
