package handler

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestEveryLineSilent: both lines deliver a day, then nothing comes (the
// receiver idles, as a real one does with both links down): once every
// line has been silent for allSilentAfter the stats say so and the log
// says it once. Both lines stopped together, so neither is a line silent
// while the other delivers.
func TestEveryLineSilent(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		var logs bytes.Buffer // read once the handler stopped
		h, _, _, _ := startScriptedLog(t, mode, shards, 2000, nil, -1, zerolog.New(zerolog.SyncWriter(&logs)))
		waitFor(t, "every line silent", func() bool { st := h.Stats(); return st.AllSilent })
		st := h.Stats()
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		if st.LineSilent[0] || st.LineSilent[1] {
			t.Errorf("line silent while another delivers: %v, after both stopped together", st.LineSilent)
		}
		if n := strings.Count(logs.String(), "every line silent"); n != 1 {
			t.Errorf("every line silent logged %d times, want once:\n%s", n, logs.String())
		}
		if strings.Contains(logs.String(), "line silent while another line delivers") {
			t.Errorf("a line logged silent while another delivers, after both stopped together:\n%s", logs.String())
		}
	})
}

// TestLineSilentNotACopyInFlight: both lines idle for longer than
// line_timeout (both links were down, or the exchange paused), then line A's
// copy of the next packet arrives and the stats see it before line B's copy
// (the lines' skew, on different paths). Line B is not silent while another
// line delivers: its copy was in flight. It used to be logged silent, and
// receiving again a moment later, after every common silence whose end
// the stats copy saw between the two copies (TestRunLinkEvents saw it).
// A line that stays silent while the other delivers again is (line A
// below).
func TestLineSilentNotACopyInFlight(t *testing.T) {
	pkts := dayPackets(t, 2000)
	const timeout = 50 * time.Millisecond
	both := func(ps [][]byte, lines ...rx.Line) (s []rx.Packet) {
		for _, b := range ps {
			for _, l := range lines {
				s = append(s, rx.Packet{Data: b, Line: l, RxTime: time.Now().UnixNano()})
			}
		}
		return s
	}
	r := &scriptRx{script: both(pkts[:10], rx.LineA, rx.LineB), errAt: -1}
	play := func(ps []rx.Packet) {
		r.mu.Lock()
		r.script = append(r.script, ps...)
		r.mu.Unlock()
	}
	var logs bytes.Buffer // read once the handler stopped
	h, err := Start(Config{
		Receive: rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Arbiter: ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond, LineTimeout: timeout},
		Book:    book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
		ShmName: shmtest.Name(t, "fhsilentcopy"),
		Open:    func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:     zerolog.New(zerolog.SyncWriter(&logs)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	seen := func(a, b uint64) func() bool {
		return func() bool {
			st := h.Stats()
			return st.Arbiter.Lines[0].Packets == a && st.Arbiter.Lines[1].Packets == b
		}
	}
	waitFor(t, "both lines' first packets in the stats", seen(10, 10))
	time.Sleep(2 * timeout) // both lines idle
	play(both(pkts[10:11], rx.LineA))
	waitFor(t, "line A's copy in the stats", seen(11, 10))
	if st := h.Stats(); st.LineSilent[1] {
		t.Errorf("line B silent while its copy is in flight, after both lines were idle")
	}
	play(both(pkts[10:11], rx.LineB))
	waitFor(t, "line B's copy in the stats", seen(11, 11))

	// Line B goes on alone: line A is silent while it delivers.
	for i := 11; !h.Stats().LineSilent[0]; i++ {
		if i == len(pkts) {
			t.Fatalf("line A not silent while line B delivered %d packets", len(pkts)-11)
		}
		play(both(pkts[i:i+1], rx.LineB))
		waitFor(t, "line B's packet in the stats", seen(11, uint64(i+1)))
		time.Sleep(timeout / 5)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), `"line":"B","line_timeout"`) {
		t.Errorf("line B logged silent:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), `"line":"A","line_timeout"`); n != 1 {
		t.Errorf("line A logged silent %d times, want once:\n%s", n, logs.String())
	}
}

// failRx is a receiver whose first calls all fail, then plays its script.
type failRx struct {
	*scriptRx
	left atomic.Int64
}

func (r *failRx) Receive(pkts []rx.Packet) (int, error) {
	if r.left.Add(-1) >= 0 {
		return 0, errTransient
	}
	return r.scriptRx.Receive(pkts)
}

// TestReceiveErrorsNotAStorm: a receiver that fails on every call (the
// receive loop retries each millisecond) is counted in full, and logged at
// most once a receiveErrorEvery, the next line saying how many were not
// logged: a thousand lines a second before.
func TestReceiveErrorsNotAStorm(t *testing.T) {
	const fails = 1500
	r := &failRx{scriptRx: &scriptRx{errAt: -1}}
	r.left.Store(fails)
	var logs bytes.Buffer // read once the handler stopped
	start := time.Now()
	h, err := Start(Config{
		Receive: rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Book:    book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
		ShmName: shmtest.Name(t, "fhrxerr"),
		Open:    func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:     zerolog.New(zerolog.SyncWriter(&logs)),
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every receive error counted", func() bool { return h.Stats().ReceiveErrors == fails })
	elapsed := time.Since(start)
	// and exported: an operator alerts on the metric, not on log lines.
	if text := string(NewExposition(h).AppendText(nil)); !strings.Contains(text, fmt.Sprintf("feedhandler_receive_errors_total{feed=%q} %d\n", h.cfg.Feed, fails)) {
		t.Errorf("the exposition does not count the %d receive errors:\n%s", fails, text)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(logs.String(), `"message":"receive"`)
	if most := int(elapsed/receiveErrorEvery) + 1; lines < 1 || lines > most {
		t.Errorf("%d receive errors in %v logged in %d lines, want 1 to %d", fails, elapsed, lines, most)
	}
	if lines > 1 && !strings.Contains(logs.String(), `"not_logged":`) {
		t.Errorf("no line says how many errors were not logged:\n%s", logs.String())
	}
}

// brokenRx plays its script, then fails on every call until closed: a
// receiver whose device broke under it.
type brokenRx struct{ *scriptRx }

func (r brokenRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	broken := !r.closed && len(r.script) == 0
	r.mu.Unlock()
	if broken {
		return 0, errTransient
	}
	return r.scriptRx.Receive(pkts)
}

// TestReceiveErrorsKeepTimers: packets held behind a gap on both lines,
// then a receiver that fails on every call. The rounds with an error
// still advance the arbiter's clock (without saying the lines were
// drained, TestReceiveErrorNotDrained), so once both lines are dead
// (line_timeout) the gap is declared and the held packets are delivered;
// and the stats go on being copied. Before, an error skipped the rest of
// the round: the packets stayed held and the stats stale for as long as
// the receiver failed.
func TestReceiveErrorsKeepTimers(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		pkts := dayPackets(t, 2000)
		lost := len(pkts) - 3 // two packets held behind it
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		now := time.Now().UnixNano() // every packet's: only a tick advances the hold
		var script []rx.Packet
		for i, b := range pkts {
			if i != lost {
				script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
			}
		}
		r := brokenRx{&scriptRx{script: script, errAt: -1}}
		h := startRx(t, mode, shards, r, shmtest.Name(t, "fhrxbroken"), zerolog.Nop(), nil)
		defer h.Stop()
		waitFor(t, "the receiver failing", func() bool { return h.Stats().ReceiveErrors >= 10 })
		waitFor(t, "the gap declared and the held packets delivered while the receiver fails", func() bool {
			st := h.Stats()
			return st.Arbiter.Gaps == 1 && st.NextSeq == last.Next()
		})
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// stepRx returns its steps in order: a batch of packets, or (0, err) (one
// line's recvmmsg failing before the other line was read, as the socket
// backend's drain returns). Then it idles.
type stepRx struct {
	mu     sync.Mutex
	steps  [][]rx.Packet // nil: an error
	closed bool
}

func (r *stepRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, rx.ErrClosed
	}
	if len(r.steps) == 0 {
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
		r.mu.Lock()
		return 0, nil
	}
	s := r.steps[0]
	r.steps = r.steps[1:]
	if s == nil {
		return 0, errTransient
	}
	return copy(pkts, s), nil
}
func (r *stepRx) Release([]rx.Packet) {}
func (r *stepRx) Backend() string     { return "steps" }
func (r *stepRx) Stats() rx.Stats     { return rx.Stats{} }
func (r *stepRx) Close() error        { r.mu.Lock(); r.closed = true; r.mu.Unlock(); return nil }

// TestReceiveErrorNotDrained: line A lost packet g; line B's copy of it was
// received (stamped) with A's and is still queued when a Receive fails
// before reading line B. (0, err) is not "every line drained": the gap
// must not be declared, B's copy fills it.
func TestReceiveErrorNotDrained(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		pkts := dayPackets(t, 2000)
		g := len(pkts) / 2
		now := time.Now().UnixNano()
		var steps [][]rx.Packet
		for _, b := range pkts[:g] {
			steps = append(steps, []rx.Packet{{Data: b, Line: rx.LineA, RxTime: now}, {Data: b, Line: rx.LineB, RxTime: now}})
		}
		steps = append(steps, []rx.Packet{{Data: pkts[g+1], Line: rx.LineA, RxTime: now}}) // A lost g
		for range 30 {
			steps = append(steps, nil) // 30 failing calls, ~30 ms > Hold
		}
		for _, b := range pkts[g:] {
			steps = append(steps, []rx.Packet{{Data: b, Line: rx.LineB, RxTime: now}})
		}
		r := &stepRx{steps: steps}
		h := startRx(t, mode, shards, r, shmtest.Name(t, "fhrxnotdrained"), zerolog.Nop(), nil)
		defer h.Stop()
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		waitFor(t, "everything delivered", func() bool { return h.Stats().NextSeq == last.Next() })
		if st := h.Stats(); st.Arbiter.Gaps != 0 {
			t.Errorf("gaps %d (%d messages) after a failed Receive: B's queued copy was not waited for", st.Arbiter.Gaps, st.Arbiter.GapMessages)
		}
	})
}

// lockedBuffer is a log sink read while the handler writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNothingReceivedLogged: a handler that receives no packet at all (its
// interface down, a group, port or source that is not the feed's) says so
// in its log once allSilentAfter has passed since the start, each line with
// its interface's state. Before, it logged nothing: no line had delivered,
// so none could fall silent, and only /readyz said "no packet received
// yet".
func TestNothingReceivedLogged(t *testing.T) {
	var logs lockedBuffer
	r := &scriptRx{errAt: -1}
	h, err := Start(Config{
		Receive: rx.Config{Lines: []rx.LineConfig{
			{Name: "A", Interface: "lo", Group: netip.MustParseAddr("239.77.46.5"), Port: 26145},
			{Name: "B", Interface: "fhnosuchif0", Group: netip.MustParseAddr("239.77.46.6"), Port: 26145},
		}},
		Arbiter: ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond},
		Book:    book.Config{MaxOrders: 1 << 10, MaxLocates: 16, MaxLevels: 1 << 10},
		ShmName: shmtest.Name(t, "fhhandler"),
		Open:    func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:     zerolog.New(&logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	const msg = "no packet on any line since the start"
	waitFor(t, "the log to say that nothing was received", func() bool { return strings.Contains(logs.String(), msg) })
	for _, want := range []string{`"line_A":"239.77.46.5:26145 on lo (up)"`, `"line_B":"239.77.46.6:26145 on fhnosuchif0 (route ip+net: no such network interface)"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestBadLineDatagramsLogged: a packet claiming a sequence number 2^40
// ahead on line A (suspect: dropped, never applied), a datagram whose
// message count overruns its length on line B (malformed) and a stale End
// of Session on line A are counted and logged at warn level, one line per
// line that dropped any, with the totals by kind; more within the minute
// are counted, not logged again. Before, a suspect packet or a stale End
// of Session was only counted (feedhandler_line_suspect_total), in no log
// line at all, the stats line included.
func TestBadLineDatagramsLogged(t *testing.T) {
	pkts := dayPacketsSized(t, 2000, 200) // more than 100 packets
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	r.play(&now, pkts[:50], time.Microsecond)
	forged := fixedPackets(t, testSession, 1<<40, 1, 3)[0]
	copy(forged, pkts[0][:moldudp64.SessionLen]) // the day's session
	overrun := append([]byte(nil), pkts[1]...)
	overrun[19]++ // one message more than the datagram holds
	stale := moldudp64.AppendHeader(nil, moldudp64.Session(pkts[0][:moldudp64.SessionLen]), 2, moldudp64.EndOfSessionCount)
	now += int64(time.Microsecond)
	r.script = append(r.script, rx.Packet{Data: forged, Line: rx.LineA, RxTime: now},
		rx.Packet{Data: overrun, Line: rx.LineB, RxTime: now}, rx.Packet{Data: stale, Line: rx.LineA, RxTime: now})
	r.play(&now, pkts[50:100], time.Microsecond)
	var log lockedBuffer
	h, err := Start(Config{
		Feed:        "itch",
		Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Book:        book.Config{MaxOrders: 1 << 14, MaxLocates: 1024, MaxLevels: 1 << 12},
		ReceiveCore: -1,
		ShmName:     shmtest.Name(t, "fhbadlines"),
		Open:        func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:         zerolog.New(&log),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	first := totalMessages(t, pkts[:100])
	waitFor(t, "the first 100 packets delivered", func() bool { return h.Stats().Arbiter.Delivered == first })
	const msg = "line datagrams dropped as bad"
	waitFor(t, "the bad datagrams logged", func() bool { return strings.Count(log.String(), msg) == 2 })
	lines := grepLines(log.String(), msg)
	for _, want := range []string{
		`"line":"A","dropped":2,"malformed":0,"suspect":1,"contradicted":0,"stale_end_of_session":1`,
		`"line":"B","dropped":1,"malformed":1,"suspect":0,"contradicted":0,"stale_end_of_session":0`,
		`"last_suspect_end":1099511627779`,
	} {
		if !strings.Contains(lines, want) {
			t.Errorf("no %s in the log lines:\n%s", want, lines)
		}
	}
	if st := h.Stats().Arbiter; st.Gaps != 0 || st.Lines[0].Suspect != 1 || st.Lines[1].Malformed != 1 || st.Lines[0].StaleEndOfSession != 1 {
		t.Errorf("gaps %d, suspect %d, malformed %d, stale %d; want 0, 1, 1, 1", st.Gaps, st.Lines[0].Suspect, st.Lines[1].Malformed, st.Lines[0].StaleEndOfSession)
	}
	// Within the minute: counted, not logged again.
	r.mu.Lock()
	now += int64(time.Microsecond)
	r.script = append(r.script, rx.Packet{Data: forged, Line: rx.LineB, RxTime: now})
	r.mu.Unlock()
	r.play(&now, pkts[100:], time.Microsecond)
	all := totalMessages(t, pkts)
	waitFor(t, "everything delivered, the second suspect counted", func() bool {
		st := h.Stats().Arbiter
		return st.Delivered == all && st.Lines[1].Suspect == 1
	})
	if n := strings.Count(log.String(), msg); n != 2 {
		t.Errorf("%d log lines of bad datagrams, want 2 (at most one a minute):\n%s", n, grepLines(log.String(), msg))
	}
}

// TestBadLineLogAllocatesNothing: a sender flooding a line with forged
// packets all day has a line logged once a minute on the receive thread
// (logBadLines); it allocates nothing.
func TestBadLineLogAllocatesNothing(t *testing.T) {
	h := &Handler{cfg: Config{Receive: rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}}}, log: jsonLog()}
	h.arb = NewArbiter(ArbiterConfig{Session: testSession}, func(*moldudp64.Packet, int, int64) {}, nil)
	forged := fixedPackets(t, testSession, 1<<40, 1, 3)[0]
	now := int64(time.Hour)
	logged := 0
	flood := func() {
		now += int64(badLineLogEvery)
		h.arb.Offer(0, forged, now)
		h.arbCopy = h.arb.Stats
		h.logBadLines(now)
		logged++
	}
	if a, exact := race.AllocsPerRun(t, 20, flood); exact && a != 0 {
		t.Fatalf("a bad line datagram logged allocates %v times", a)
	}
	if h.badLines.logged[0] != h.arb.Stats.Lines[0].Suspect || h.badLines.loggedAt != now {
		t.Fatalf("logged %d of %d suspect packets, last at %d (want %d)", h.badLines.logged[0], h.arb.Stats.Lines[0].Suspect, h.badLines.loggedAt, now)
	}
}
