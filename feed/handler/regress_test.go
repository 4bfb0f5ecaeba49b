package handler

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestArbiterSequenceRestart: both lines deliver a day's first 60
// packets, then go back to sequence number 1 under the same session name
// (a publisher restarted, or replays the session from its start). Nothing
// behind is delivered again; once both lines brought only such packets for
// LineTimeout the restart is counted once and Behind is set; when the
// replay passes what was delivered, the new messages flow and Behind
// clears.
func TestArbiterSequenceRestart(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	day := packets(t, testSession, 100, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(time.Hour)
	offer := func(pkts [][]byte, step time.Duration) {
		for _, p := range pkts {
			now += int64(step)
			a.Offer(0, p, now)
			a.Offer(1, p, now)
		}
	}
	offer(day[:60], time.Millisecond)
	delivered := s.got
	if delivered != totalMessages(t, day[:60]) {
		t.Fatalf("delivered %d of %d", delivered, totalMessages(t, day[:60]))
	}
	// The restart: 1 to 40 again, over 2 s.
	offer(day[:40], 50*time.Millisecond)
	a.refreshBehind()
	if s.got != delivered || a.Stats.Regressions != 1 || !a.Stats.Behind {
		t.Fatalf("after the restart: delivered %d (want %d), regressions %d, behind %v", s.got, delivered, a.Stats.Regressions, a.Stats.Behind)
	}
	// A quiet spell: heartbeats with the restarted sequence number keep it
	// behind, and do not count it again.
	p40, err := moldudp64.Parse(day[40])
	if err != nil {
		t.Fatal(err)
	}
	hb := moldudp64.AppendHeader(nil, testSession, p40.Seq, 0)
	for range 30 {
		now += int64(100 * time.Millisecond)
		a.Offer(0, hb, now)
		a.Offer(1, hb, now)
	}
	if a.refreshBehind(); a.Stats.Regressions != 1 || !a.Stats.Behind {
		t.Fatalf("heartbeats: regressions %d, behind %v", a.Stats.Regressions, a.Stats.Behind)
	}
	// The replay goes on past what was delivered: the rest is new.
	offer(day[40:], time.Millisecond)
	a.refreshBehind()
	if want := totalMessages(t, day); s.got != want || a.Stats.Behind || a.Stats.Regressions != 1 || len(s.gaps) != 0 {
		t.Fatalf("caught up: delivered %d of %d, behind %v, regressions %d, gaps %v", s.got, want, a.Stats.Behind, a.Stats.Regressions, s.gaps)
	}
}

// TestArbiterBehindNotRegression: what is behind but is no restart is
// never counted: the slower line's copies, one line that goes back while
// the other brings new packets, and a restart shorter than LineTimeout.
func TestArbiterBehindNotRegression(t *testing.T) {
	rng := rand.New(rand.NewPCG(73, 74))
	day := packets(t, testSession, 400, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(time.Hour)
	// Line B trails A by 5 packets, over 1.5 s.
	for i := range 100 {
		now += int64(15 * time.Millisecond)
		a.Offer(0, day[i], now)
		if i >= 5 {
			a.Offer(1, day[i-5], now)
		}
	}
	// Line B goes back to 1 for 2 s while A goes on.
	for i := 100; i < 200; i++ {
		now += int64(20 * time.Millisecond)
		a.Offer(0, day[i], now)
		a.Offer(1, day[i-100], now)
	}
	// Both lines go back for 0.5 s, then go on.
	for i := range 25 {
		now += int64(20 * time.Millisecond)
		a.Offer(0, day[i], now)
		a.Offer(1, day[i], now)
	}
	for i := 200; i < 400; i++ {
		now += int64(time.Millisecond)
		a.Offer(0, day[i], now)
		a.Offer(1, day[i], now)
	}
	a.refreshBehind()
	if want := totalMessages(t, day); s.got != want || a.Stats.Regressions != 0 || a.Stats.Behind {
		t.Fatalf("delivered %d of %d, regressions %d, behind %v", s.got, want, a.Stats.Regressions, a.Stats.Behind)
	}
}

// TestArbiterStrayCopiesNotRegression: on one line, in an idle spell
// (heartbeats only, nothing new), two stray late copies of old packets
// come 2 s apart. Each is behind, but the heartbeats between them are not:
// no restart, however long the spell.
func TestArbiterStrayCopiesNotRegression(t *testing.T) {
	rng := rand.New(rand.NewPCG(75, 76))
	day := packets(t, testSession, 50, 5, rng)
	a, _ := newTestArbiter(t, ArbiterConfig{Lines: 1, LineTimeout: time.Second})
	now := int64(time.Hour)
	for _, p := range day {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
	}
	hb := moldudp64.AppendHeader(nil, testSession, a.Next(), 0)
	beat := func(n int) {
		for range n {
			now += int64(100 * time.Millisecond)
			a.Offer(0, hb, now)
		}
	}
	beat(5)
	a.Offer(0, day[10], now)
	beat(20)
	a.Offer(0, day[11], now)
	beat(20)
	a.Offer(0, day[12], now)
	if a.refreshBehind(); a.Stats.Regressions != 0 || a.Stats.Behind {
		t.Fatalf("stray copies in an idle spell: regressions %d, behind %v", a.Stats.Regressions, a.Stats.Behind)
	}
}

// TestSequenceRestartNotReady: through the real threads, in both modes, a
// restart under the same session name makes the handler not ready, with
// its reason, and counts in feedhandler_sequence_regressions_total; the
// books keep what was delivered; new sequence numbers make it ready again.
func TestSequenceRestartNotReady(t *testing.T) { forEachMode(t, testSequenceRestartNotReady) }

func testSequenceRestartNotReady(t *testing.T, mode Mode, shards []int) {
	pkts := dayPacketsSized(t, 2000, 200)
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	play := func(pkts [][]byte, step time.Duration) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, b := range pkts {
			now += int64(step)
			r.script = append(r.script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
		}
	}
	play(pkts[:40], time.Microsecond)
	h, err := Start(Config{
		Feed:       "itch",
		Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Arbiter:    ArbiterConfig{LineTimeout: time.Second},
		Book:       book.Config{MaxOrders: 1 << 14, MaxLocates: 1024, MaxLevels: 1 << 12},
		Mode:       mode,
		ShardCores: shards,
		ShmName:    shmtest.Name(t, "fhregress"),
		Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	first := totalMessages(t, pkts[:40])
	waitFor(t, "the first 40 packets applied", func() bool {
		st := h.Stats()
		ok, _ := st.Ready()
		return st.Arbiter.Delivered == first && st.Applied() == st.Routed && ok
	})
	play(pkts[:20], 100*time.Millisecond) // back to 1, for 2 s
	waitFor(t, "not ready", func() bool { ok, _ := h.Ready(); return !ok })
	st := h.Stats()
	if _, why := st.Ready(); !strings.Contains(why, "same session name") || st.Arbiter.Delivered != first || st.Arbiter.Regressions != 1 {
		t.Fatalf("after the restart: %q, delivered %d (want %d), regressions %d", why, st.Arbiter.Delivered, first, st.Arbiter.Regressions)
	}
	if text := string(NewExposition(h).AppendText(nil)); !strings.Contains(text, "\nfeedhandler_sequence_regressions_total{feed=\"itch\"} 1\n") {
		t.Fatalf("no regression in the metrics:\n%s", grepLines(text, "regressions"))
	}
	play(pkts[20:], time.Microsecond) // the replay goes on past what was delivered
	all := totalMessages(t, pkts)
	waitFor(t, "everything applied and ready", func() bool {
		st := h.Stats()
		ok, _ := st.Ready()
		return st.Arbiter.Delivered == all && st.Applied() == st.Routed && ok
	})
}

// grepLines returns text's lines that contain s.
func grepLines(text, s string) string {
	var out []string
	for l := range strings.Lines(text) {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
