package main

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// writeLaggingCapture writes day's packets as a capture of two lines in
// receive-time order: line A every 100 µs with packet lost missing, line B
// the same packets lag later.
func writeLaggingCapture(t *testing.T, path string, day *demo.Day, lost int, lag time.Duration) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("10.1.2.3:40000")
	t0 := time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
	type frame struct {
		ts   int64
		dst  netip.AddrPort
		data []byte
	}
	var frames []frame
	for i, p := range day.Packets {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		if i != lost {
			frames = append(frames, frame{ts, demo.GroupA, p})
		}
		frames = append(frames, frame{ts + int64(lag), demo.GroupB, p})
	}
	// In receive-time order, as the handler read them (a stable sort: A
	// before B at the same time).
	slices.SortStableFunc(frames, func(a, b frame) int { return cmp.Compare(a.ts, b.ts) })
	for _, fr := range frames {
		if err := w.WriteUDP(fr.ts, src, fr.dst, fr.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// laggingDay generates a day of messages (20 symbols, seed) and writes it
// to dir/lines.pcap (writeLaggingCapture; lost: which packet A lost).
func laggingDay(t *testing.T, messages int, seed uint64, lost func(*demo.Day) int, lag time.Duration) (*demo.Day, string, string) {
	t.Helper()
	day, dir, capPath := dayDir(t, messages, seed)
	writeLaggingCapture(t, capPath, day, lost(day), lag)
	return day, dir, capPath
}

// dayDir generates a day of messages (20 symbols, seed) and returns it, a
// test directory and the path of a capture in it, dir/lines.pcap (not
// written).
func dayDir(t *testing.T, messages int, seed uint64) (*demo.Day, string, string) {
	t.Helper()
	day, err := demo.GenerateDay(messages, 20, seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return day, dir, filepath.Join(dir, "lines.pcap")
}

// writeDemoFeed writes dir/feed.yaml: day's session on the demo's two
// lines, with extra.
func writeDemoFeed(t *testing.T, dir string, day *demo.Day, extra string) string {
	t.Helper()
	feed := filepath.Join(dir, "feed.yaml")
	cfg := fmt.Sprintf(`feed: {name: replaytest, session: %q}
lines:
  a: {interface: lo, group: %s, port: %d}
  b: {interface: lo, group: %s, port: %d}
%sshm: {name: replaytest}
`, day.Session.String(), demo.GroupA.Addr(), demo.GroupA.Port(), demo.GroupB.Addr(), demo.GroupB.Port(), extra)
	if err := os.WriteFile(feed, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return feed
}

// TestReplayFeedArbitratesAsLive: line B lags line A by 50 ms, and A lost
// one packet. The handler, with arbitration.hold 200ms, waits for B's copy:
// no gap, the books whole. replay --feed arbitrates as it did, so its
// books are the reference's; replay without it holds for its own 10 ms and
// declares the packet missing.
func TestReplayFeedArbitratesAsLive(t *testing.T) {
	day, dir, capPath := laggingDay(t, 20_000, 11, func(day *demo.Day) int { return len(day.Packets) / 2 }, 50*time.Millisecond)
	feed := writeDemoFeed(t, dir, day, "arbitration: {hold: 200ms}\n")
	var want bytes.Buffer
	if err := day.Books.WriteJSON(&want, 10); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (replayReport, []byte) {
		t.Helper()
		return replayBooks(t, append(args, capPath)...)
	}

	rep, books := run("--feed", feed)
	a := rep.Arbitrated
	if a == nil {
		t.Fatal("no arbitrated section in the report of replay --feed")
	}
	if rep.InputGaps != 0 || rep.Messages != day.Messages || !bytes.Equal(books, want.Bytes()) {
		t.Errorf("replay --feed: %d gaps (%d missing), %d of %d messages applied, books equal to the reference: %v; want the live handler's: no gap, every message",
			rep.InputGaps, rep.InputMissing, rep.Messages, day.Messages, bytes.Equal(books, want.Bytes()))
	}
	if n := uint64(len(day.Packets)); a.Datagrams != [2]uint64{n - 1, n} || a.Other != 0 || a.Resets != 0 {
		t.Errorf("replay --feed: %+v; want %d datagrams on A, %d on B, none other, no session change", *a, n-1, n)
	}

	// Without --feed the reader's own window (10 ms) gives up on the packet
	// B brings 50 ms late: this capture tells the two apart.
	rep, books = run()
	if rep.InputGaps == 0 || bytes.Equal(books, want.Bytes()) {
		t.Errorf("replay without --feed: %d gaps, books equal to the reference: %v; want the packet declared missing (the capture tests nothing otherwise)",
			rep.InputGaps, bytes.Equal(books, want.Bytes()))
	}
}

// TestReplayFeedSymbols: the feed's symbols filter the replay's books as
// they filter the live handler's.
func TestReplayFeedSymbols(t *testing.T) {
	day, dir, capPath := dayDir(t, 20_000, 12)
	writeLaggingCapture(t, capPath, day, -1, time.Millisecond)
	keep := strings.TrimSpace(day.Symbols[3].String())
	feed := filepath.Join(dir, "feed.yaml")
	cfg := fmt.Sprintf(`feed: {name: replaytest}
lines:
  a: {interface: lo, group: %s, port: %d}
  b: {interface: lo, group: %s, port: %d}
symbols: [%s]
shm: {name: replaytest}
`, demo.GroupA.Addr(), demo.GroupA.Port(), demo.GroupB.Addr(), demo.GroupB.Port(), keep)
	if err := os.WriteFile(feed, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := replayFeedJSON(t, feed, capPath)
	if rep.Arbitrated == nil || rep.Arbitrated.Filtered == 0 || rep.WithOrders != 1 || rep.Arbitrated.Delivered != day.Messages {
		t.Fatalf("replay --feed with symbols [%s]: %d instruments with orders, report %+v; want one, the rest filtered", keep, rep.WithOrders, rep.Arbitrated)
	}
}

// TestReplayFeedNeedsNoPassword: replay --feed takes the feed's lines,
// arbitration and books and logs in nowhere, so the snapshot server's
// password (password_env unset here, a password_file missing) is neither
// read nor required: a capture replays on a desk's box without the
// production secret. Before, 'replay: --feed: ...: recovery.snapshot.
// password_env: environment variable ... is not set' (feeds/nasdaq.yaml
// without FEEDHANDLER_GLIMPSE_PASSWORD). Its key is still checked.
func TestReplayFeedNeedsNoPassword(t *testing.T) {
	day, dir, capPath := dayDir(t, 10_000, 13)
	writeLaggingCapture(t, capPath, day, -1, time.Millisecond)
	for _, pw := range []string{"password_env: FEEDHANDLER_TEST_UNSET_PW_H249", "password_file: " + filepath.Join(dir, "missing.pw")} {
		feed := writeDemoFeed(t, dir, day, "recovery:\n  snapshot: {server: 10.1.2.3:26401, username: u, "+pw+"}\n")
		rep := replayFeedJSON(t, feed, capPath)
		if rep.Arbitrated == nil || rep.Arbitrated.Delivered != day.Messages {
			t.Errorf("replay --feed with %s: %+v; want every message delivered (%d)", pw, rep.Arbitrated, day.Messages)
		}
	}
	feed := writeDemoFeed(t, dir, day, "recovery:\n  snapshot: {server: 10.1.2.3:26401, username: u, password_file: rel.pw}\n")
	err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, capPath}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "recovery.snapshot.password_file") {
		t.Errorf("replay --feed with a relative password_file: %v; want refused at recovery.snapshot.password_file", err)
	}
}

// replayFeedJSON runs replay --json --feed feed of capPath and returns its
// report.
func replayFeedJSON(t *testing.T, feed, capPath string) replayReport {
	t.Helper()
	var report bytes.Buffer
	if err := replay([]string{"--quiet", "--json", "--settle", "0", "--feed", feed, capPath}, &report, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep replayReport
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestReplayFeedRefuses: --feed replays captures only, and sets the books'
// capacities itself.
func TestReplayFeedRefuses(t *testing.T) {
	dir := t.TempDir()
	feed := filepath.Join(dir, "feed.yaml")
	if err := os.WriteFile(feed, []byte("feed: {name: x}\nlines:\n  a: {interface: lo, group: 233.54.12.111, port: 26400}\nshm: {name: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	day := filepath.Join(dir, "day.itch")
	if err := os.WriteFile(day, []byte{0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'O'}, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--feed", feed, day}, "not a pcap or pcapng capture"},
		{[]string{"--feed", feed, "--max-orders", "1000", day}, "--max-orders with --feed"},
		{[]string{"--feed", filepath.Join(dir, "missing.yaml"), day}, "--feed"},
	} {
		err := replay(append([]string{"--quiet", "--settle", "0"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("replay %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

// TestReplayFeedCutShm: a capture cut mid-record (copied while the
// handler wrote it) stops replay --feed with its error, and the books
// applied until then are all published to --shm, as replay without --feed
// publishes them: bookview prints what --books-out holds.
func TestReplayFeedCutShm(t *testing.T) {
	day, dir, capPath := laggingDay(t, 5_000, 12, func(*demo.Day) int { return -1 }, 0)
	whole, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(capPath, whole[:len(whole)-7], 0o644); err != nil {
		t.Fatal(err)
	}
	feed := writeDemoFeed(t, dir, day, "")
	name := shmtest.Name(t, "fh-h159-cutshm")
	booksOut := filepath.Join(dir, "books.json")
	err = replay([]string{"--quiet", "--settle", "0", "--feed", feed, "--shm", name, "--books-out", booksOut, "--depth", "10", capPath}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("replay --feed of a cut capture: %v, want its unexpected EOF", err)
	}
	want, err := os.ReadFile(booksOut)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_ = bookview([]string{"--shm", name, "--once", "--json"}, &got) // the writer is not live: exit status 3
	if len(want) < 100 || !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("bookview --once --json differs from replay --books-out --depth 10:\nbookview: %.400s\nreplay:   %.400s", got.Bytes(), want)
	}
}

// TestReplayFeedFailedReceives: a capture written as the handler writes
// it (capture.Put, capture.Failed) where line A lost a packet, line B
// brings its copy 5 ms late, and the receive calls failed for 29 ms once
// A's next packet showed the hole (the datagrams queued meanwhile read in
// one batch after): the live arbiter, advanced by the failures past
// arbitration.line_timeout (25ms), took the lines as dead and declared the
// packet missing before B's copy was read. replay --feed advances its
// arbiter there too (the capture's marker frame): the same gap, and
// failed_receives 1; without the marker frame, B's copy fills the hole.
func TestReplayFeedFailedReceives(t *testing.T) {
	day, dir, capPath := dayDir(t, 20_000, 11)
	lines := []rx.LineConfig{{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port()}, {Group: demo.GroupB.Addr(), Port: demo.GroupB.Port()}}
	c, err := capture.Open(capture.Config{Path: capPath, Lines: lines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	lost := len(day.Packets) / 2
	t0 := time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
	var pkts []rx.Packet
	for i, p := range day.Packets {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		if i != lost {
			pkts = append(pkts, rx.Packet{Line: rx.LineA, Data: p, RxTime: ts})
		}
		pkts = append(pkts, rx.Packet{Line: rx.LineB, Data: p, RxTime: ts + int64(5*time.Millisecond)})
	}
	slices.SortStableFunc(pkts, func(a, b rx.Packet) int { return cmp.Compare(a.RxTime, b.RxTime) })
	shown := t0 + int64(lost+1)*int64(100*time.Microsecond) // A's packet after the lost one
	failFrom, failTo := shown+int64(time.Millisecond), shown+int64(30*time.Millisecond)
	for i := 0; i < len(pkts); {
		switch p := pkts[i]; {
		case p.RxTime <= shown || p.RxTime > failTo: // read one by one, an empty poll before each
			c.Put(pkts[i:i+1], p.RxTime-1)
			i++
		default: // queued while the receive calls failed: read in one batch after
			c.Failed(failFrom, 0)
			c.Failed(failTo, 0)
			n := i + 1
			for n < len(pkts) && pkts[n].RxTime <= failTo {
				n++
			}
			c.Put(pkts[i:n], 0)
			i = n
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	feed := writeDemoFeed(t, dir, day, "arbitration: {hold: 20ms, line_timeout: 25ms}\n")
	rep := replayFeedJSON(t, feed, capPath)
	a := rep.Arbitrated
	if a == nil || a.Failed != 1 || a.Skipped != 0 || a.Marked != a.Datagrams[0]+a.Datagrams[1] || rep.InputGaps != 1 {
		t.Fatalf("replay --feed: %d gaps (%d missing), report %+v; want the live arbiter's gap, 1 run of failed receive calls, every datagram marked, no frame skipped",
			rep.InputGaps, rep.InputMissing, a)
	}
	var text bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, capPath}, &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "the capture's batch marks, 1 runs of failed receive calls\n") {
		t.Errorf("replay --feed's text report does not count the run of failed receive calls:\n%s", text.String())
	}
}

// TestReplayFeedCaptureLost: a capture whose ring was full (one batch of
// a day on both lines, several times the ring) says how many datagrams it
// left out, and replay --feed reports them beside the gaps they make.
func TestReplayFeedCaptureLost(t *testing.T) {
	day, dir, capPath := dayDir(t, 60_000, 13)
	lines := []rx.LineConfig{{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port()}, {Group: demo.GroupB.Addr(), Port: demo.GroupB.Port()}}
	c, err := capture.Open(capture.Config{Path: capPath, Lines: lines, Log: zerolog.Nop(), Buffer: capture.MinBuffer})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
	var pkts []rx.Packet
	for i, p := range day.Packets {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		pkts = append(pkts, rx.Packet{Line: rx.LineA, Data: p, RxTime: ts}, rx.Packet{Line: rx.LineB, Data: p, RxTime: ts + 1000})
	}
	c.Put(pkts, t0-1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	feed := writeDemoFeed(t, dir, day, "")
	rep := replayFeedJSON(t, feed, capPath)
	if a := rep.Arbitrated; st.Dropped == 0 || a == nil || a.CaptureLost != st.Dropped || a.Skipped != 0 || rep.InputGaps == 0 {
		t.Fatalf("capture %+v; replay --feed: %d gaps, report %+v: want capture_lost the %d dropped, gaps, no frame skipped", st, rep.InputGaps, a, st.Dropped)
	}
	var text bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, capPath}, &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("the capture left out %d datagrams (its ring full, a failed write)", st.Dropped); !strings.Contains(text.String(), want) {
		t.Errorf("replay --feed's text report does not say %q:\n%s", want, text.String())
	}
}

// TestReplayFeedSymbolsReassigned: replay --feed ends a subscribed
// symbol's book when a Stock Directory message gives its locate to a
// symbol the feed's symbols leave out, as the handler does
// (handler.TestFilterLocateReassigned): AAPL is neither in --books-out nor
// found in --shm, the instrument its locate went to neither, and the
// locate of a symbol left out given to a subscribed one (IBM) is followed
// from then on.
func TestReplayFeedSymbolsReassigned(t *testing.T) {
	dir := t.TempDir()
	dirMsg := func(loc uint16, sym string) []byte {
		return (&itch.StockDirectoryFields{Header: itch.Header{Locate: loc}, Stock: itch.NewSymbol(sym), MarketCategory: 'Q',
			FinancialStatus: 'N', RoundLotSize: 100, RoundLotsOnly: 'N', Authenticity: 'P'}).Append(nil)
	}
	add := func(loc uint16, sym string, ref uint64, price uint32) []byte {
		return (&itch.AddOrderFields{Header: itch.Header{Locate: loc}, OrderRef: ref, Side: 'B', Shares: 100, Stock: itch.NewSymbol(sym), Price: price}).Append(nil)
	}
	day := &demo.Day{Session: moldudp64.NewSession("REASSIGN")}
	b := moldudp64.NewBuilder(day.Session, 1, 0)
	for _, ms := range [][][]byte{
		{dirMsg(5, "AAPL"), dirMsg(6, "MSFT"), dirMsg(7, "ZZZZ"), add(5, "AAPL", 1, 1000), add(6, "MSFT", 2, 2000), add(7, "ZZZZ", 3, 3000)},
		{dirMsg(5, "YYYY"), add(5, "YYYY", 4, 4000), dirMsg(7, "IBM"), add(7, "IBM", 5, 5000)},
	} {
		for _, m := range ms {
			if err := b.Add(m); err != nil {
				t.Fatal(err)
			}
		}
		day.Packets = append(day.Packets, append([]byte(nil), b.Flush()...))
	}
	capPath := filepath.Join(dir, "lines.pcap")
	writeLaggingCapture(t, capPath, day, -1, time.Millisecond)
	feed := writeDemoFeed(t, dir, day, "symbols: [AAPL, MSFT, IBM]\n")
	name := shmtest.Name(t, "fh-h163-reassign")
	booksOut := filepath.Join(dir, "books.json")
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, "--shm", name, "--books-out", booksOut, capPath}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(booksOut)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for sym, want := range map[string]bool{"AAPL": false, "YYYY": false, "ZZZZ": false, "MSFT": true, "IBM": true} {
		_, inShm := r.Lookup(sym)
		if _, inOut := doc[sym]; inOut != want || inShm != want {
			t.Errorf("%s in --books-out %v, in --shm %v; want %v", sym, inOut, inShm, want)
		}
	}
}

// TestReplayFeedCaptureCut: a capture the handler closed ends with the
// end's marker frame, and replay --feed says "stopped"; the same file cut
// at a whole record, as a handler killed between two flushes leaves it
// (nothing else in it can say), is reported "cut", in the text too.
func TestReplayFeedCaptureCut(t *testing.T) {
	day, dir, capPath := dayDir(t, 20_000, 17)
	captureDay(t, capPath, day)
	feed := writeDemoFeed(t, dir, day, "")
	if rep := replayFeedJSON(t, feed, capPath); rep.Arbitrated == nil || rep.Arbitrated.CaptureEnd != "stopped" {
		t.Fatalf("replay --feed of a capture closed: report %+v, want capture_end stopped", rep.Arbitrated)
	}
	// Cut after the whole records of the first half of the packets.
	b, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	off, half := 24, uint64(len(day.Packets)/2)
	// The begin frame first.
	off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	for range 2 * half { // two frames a packet
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	cut := filepath.Join(dir, "cut.pcap")
	if err := os.WriteFile(cut, b[:off], 0o644); err != nil {
		t.Fatal(err)
	}
	rep := replayFeedJSON(t, feed, cut)
	if a := rep.Arbitrated; a == nil || a.CaptureEnd != "cut" || a.Datagrams != [2]uint64{half, half} {
		t.Fatalf("replay --feed of a capture cut at a whole record: report %+v, want capture_end cut, half the datagrams", a)
	}
	var text bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, cut}, &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "the capture does not end as the handler ends one"; !strings.Contains(text.String(), want) {
		t.Errorf("replay --feed's text report of a cut capture does not say %q:\n%s", want, text.String())
	}
	// Cut inside the next record, as a handler killed during a write
	// leaves it (a write cut short by the signal): the replay stops with
	// the reader's error, and the capture is cut all the same, its
	// datagrams up to there replayed as at a whole record.
	for _, in := range []int{5, 16 + 20} { // in the record's header, in its frame
		if err := os.WriteFile(cut, b[:off+in], 0o644); err != nil {
			t.Fatal(err)
		}
		var report bytes.Buffer
		err := replay([]string{"--quiet", "--json", "--settle", "0", "--feed", feed, cut}, &report, io.Discard)
		var rep replayReport
		if jerr := json.Unmarshal(report.Bytes(), &rep); jerr != nil {
			t.Fatal(jerr)
		}
		if a := rep.Arbitrated; !errors.Is(err, io.ErrUnexpectedEOF) || a == nil || a.CaptureEnd != "cut" || a.Datagrams != [2]uint64{half, half} {
			t.Fatalf("replay --feed of a capture cut %d bytes into a record: %v, report %+v; want the reader's unexpected EOF, capture_end cut, half the datagrams", in, err, a)
		}
	}
}

// TestReplayFeedLiveRecovery: a capture whose handler repaired a packet
// lost on both lines by re-request, got only the first of two others
// answered before it gave up their range, and loaded a snapshot, holds
// the answers, the give-up and the snapshot's marker frames. replay
// --feed holds for the answers and applies them, and gives up where the
// handler did, as the handler did: the one packet never answered is the
// one gap. It says what the live handler's recovery brought, in the JSON
// and the text report (the snapshot's messages are not in the capture: a
// capture of a handler before they were, an FHRS frame alone).
func TestReplayFeedLiveRecovery(t *testing.T) {
	day, dir, capPath := dayDir(t, 20_000, 19)
	c, t0 := demoCapture(t, capPath)
	whole, part := len(day.Packets)/3, 2*len(day.Packets)/3
	msgs := func(i int) uint64 {
		p, err := moldudp64.Parse(day.Packets[i])
		if err != nil || p.Messages() == 0 {
			t.Fatalf("packet %d: %v, %d messages: want a packet of messages", i, err, p.Messages())
		}
		return uint64(p.Messages())
	}
	for i, b := range day.Packets {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		// The answers 20 packets (2 ms) after their gap, past the
		// lines' grace: the arbiter held for them.
		switch i {
		case whole + 20:
			c.Recovered(day.Packets[whole], ts, 0)
		case part + 20:
			c.Recovered(day.Packets[part], ts, 0)
		case part + 30:
			c.GaveUp(ts, 0) // part+1 never answered: given up
		}
		if i == whole || i == part || i == part+1 {
			continue
		}
		c.Put([]rx.Packet{{Line: rx.LineA, Data: b, RxTime: ts}, {Line: rx.LineB, Data: b, RxTime: ts + 1000}}, ts-1)
	}
	c.Snapshot(t0+int64(len(day.Packets))*int64(100*time.Microsecond), 5, 4)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	feed := writeDemoFeed(t, dir, day, "")
	rep := replayFeedJSON(t, feed, capPath)
	want := liveRecovery{Answers: 2, AnswerMessages: msgs(whole) + msgs(part), GaveUp: 1, Snapshots: 1, SnapshotMessages: 4}
	if a := rep.Arbitrated; a == nil || a.LiveRecovery != want || a.Other != 0 || rep.InputMissing != msgs(part+1) || a.Delivered != day.Messages-msgs(part+1) {
		t.Fatalf("replay --feed: %d missing, report %+v; want live_recovery %+v, the answers no line's datagrams (other 0), the %d messages never answered missing, the rest delivered",
			rep.InputMissing, a, want, msgs(part+1))
	}
	var text bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, capPath}, &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("the handler received 2 re-request answers (%d messages), replayed where it received them, and gave up 1 re-requests there; it loaded 1 snapshots (4 messages), 1 of which the capture does not hold", msgs(whole)+msgs(part)); !strings.Contains(text.String(), want) {
		t.Errorf("replay --feed's text report does not say %q:\n%s", want, text.String())
	}
}

// captureDay writes a capture of day's packets at capPath, on both lines,
// every one 100 us after the one before, B 1 us after A.
func captureDay(t *testing.T, capPath string, day *demo.Day) {
	t.Helper()
	c, t0 := demoCapture(t, capPath)
	for i, p := range day.Packets {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		c.Put([]rx.Packet{{Line: rx.LineA, Data: p, RxTime: ts}, {Line: rx.LineB, Data: p, RxTime: ts + 1000}}, ts-1)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// demoCapture opens a capture of the demo's two lines at capPath, and
// returns it with the receive time the tests' datagrams start at.
func demoCapture(t *testing.T, capPath string) (*capture.Capture, int64) {
	t.Helper()
	lines := []rx.LineConfig{{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port()}, {Group: demo.GroupB.Addr(), Port: demo.GroupB.Port()}}
	c, err := capture.Open(capture.Config{Path: capPath, Lines: lines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return c, time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
}

// lateJoinSnapshot returns a snapshot of a late join at day's packet k:
// the messages of its first k+10 packets (each a 2-byte length and the
// message) and how many, the sequence number delivery resumes at after
// it, and packet k's.
func lateJoinSnapshot(t *testing.T, day *demo.Day, k int) (snap []byte, n, next, first uint64) {
	t.Helper()
	parse := func(i int) *moldudp64.Packet {
		p, err := moldudp64.Parse(day.Packets[i])
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	for i := range k + 10 {
		it := parse(i).Iter()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			snap = binary.BigEndian.AppendUint16(snap, uint16(len(msg)))
			snap = append(snap, msg...)
			n++
		}
	}
	return snap, n, parse(k + 10).Seq, parse(k).Seq
}

// TestReplayFeedSnapshotLateJoin: a capture of a late join repaired by
// snapshot, as the handler writes it: the freeze at the start gap (before
// the batch it was declared in), 20 packets spilled while the snapshot
// downloaded, then the snapshot's messages (the day's first third and 10
// packets more, here as messages) and its Snapshot frame. replay --feed
// freezes there, rebuilds the books from the snapshot, drops the spilled
// packets it covers and delivers the rest: the day's books, nothing
// missing after the snapshot. (Where the handler declared the start gap,
// so that the replay declares it too, the freeze's time says: here the
// first datagram's, before the arbiter's grace ran out, so the replay
// freezes at its next empty poll, the gap undeclared;
// TestCaptureReplaysLiveBooks has the handler's own.)
func TestReplayFeedSnapshotLateJoin(t *testing.T) {
	day, dir, capPath := dayDir(t, 20_000, 23)
	c, t0 := demoCapture(t, capPath)
	k := len(day.Packets) / 3
	snap, n, next, first := lateJoinSnapshot(t, day, k)
	if first <= 1 || next <= first {
		t.Fatalf("packets %d and %d at sequence numbers %d and %d: want a start gap, and a snapshot past it", k, k+10, first, next)
	}
	for i := k; i < len(day.Packets); i++ {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		if i == k {
			c.Freeze(ts, 1, true, 0)
		}
		c.Put([]rx.Packet{{Line: rx.LineA, Data: day.Packets[i], RxTime: ts}, {Line: rx.LineB, Data: day.Packets[i], RxTime: ts + 1000}}, ts-1)
		if i == k+20 {
			c.SnapshotMessages(snap, ts+50_000)
			c.Snapshot(ts+50_000, next, n)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rep, got, want := replayDayBooks(t, dir, day, capPath)
	if a := rep.Arbitrated; a == nil || a.LiveRecovery.SnapshotsReplayed != 1 || rep.InputMissing != 0 || a.Delivered != day.Messages-(next-1) {
		t.Errorf("replay --feed: %d missing, report %+v; want the snapshot replayed, nothing missing, the %d messages after it delivered", rep.InputMissing, a, day.Messages-(next-1))
	}
	if !bytes.Equal(got, want) {
		t.Errorf("replay --feed's books are not the day's:\ngot:  %.400s\nwant: %.400s", got, want)
	}
}

// replayDayBooks replays capPaths (a capture's files) with --feed (day's feed, written in dir)
// and returns its report, its books (10 levels a side, JSON) and day's.
func replayDayBooks(t *testing.T, dir string, day *demo.Day, capPaths ...string) (rep replayReport, got, want []byte) {
	t.Helper()
	feed := writeDemoFeed(t, dir, day, "")
	rep, got = replayBooks(t, append([]string{"--feed", feed}, capPaths...)...)
	var w bytes.Buffer
	if err := day.Books.WriteJSON(&w, 10); err != nil {
		t.Fatal(err)
	}
	return rep, got, w.Bytes()
}

// replayBooks replays with args (after --quiet --json --settle 0) and
// returns its report and books (10 levels a side, JSON).
func replayBooks(t *testing.T, args ...string) (replayReport, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "books.json")
	var js bytes.Buffer
	args = append([]string{"--quiet", "--json", "--settle", "0", "--books-out", out, "--depth", "10"}, args...)
	if err := replay(args, &js, io.Discard); err != nil {
		t.Fatalf("replay %v: %v", args, err)
	}
	var rep replayReport
	if err := json.Unmarshal(js.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return rep, got
}

// noSessionFeed writes dir/feed.yaml: day's feed without feed.session
// (the session chosen by confirmation, so that the lines may change it).
func noSessionFeed(t *testing.T, dir string, day *demo.Day) string {
	t.Helper()
	feed := writeDemoFeed(t, dir, day, "")
	b, err := os.ReadFile(feed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(feed, bytes.Replace(b, []byte(", session: \""+day.Session.String()+"\""), nil, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return feed
}

// TestReplayFeedSkippedByReason: replay --feed counts a capture's skipped
// frames by reason, as replay without it does (JSON skipped_by_reason, the
// text's arbitrated line). Before, a bare count: "(5 frames skipped)".
func TestReplayFeedSkippedByReason(t *testing.T) {
	day, dir, capPath := dayDir(t, 5_000, 13)
	writeLaggingCapture(t, capPath, day, -1, time.Millisecond)
	b, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}) {
		t.Fatalf("pcap magic % x: want little-endian nanosecond pcap", b[:4])
	}
	const tcp = 5
	off := 24
	for range tcp {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		b[off+16+14+9] = 6 // Ethernet, then the IPv4 header's protocol: TCP
		off += 16 + incl
	}
	if err := os.WriteFile(capPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	feed := writeDemoFeed(t, dir, day, "")
	rep := replayFeedJSON(t, feed, capPath)
	if a := rep.Arbitrated; a == nil || a.Skipped != tcp || len(a.SkippedBy) != 1 || a.SkippedBy[pcap.NotUDP.String()] != tcp {
		t.Fatalf("replay --feed: report %+v; want %d frames skipped, by reason {%s: %d}", a, tcp, pcap.NotUDP, tcp)
	}
	var stdout bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", feed, capPath}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("(%d frames skipped: %s %d)", tcp, pcap.NotUDP, tcp); !strings.Contains(stdout.String(), want) {
		t.Fatalf("text report lacks %q:\n%s", want, stdout.String())
	}
}

// TestReplayFeedFileStartsFrozen: a late join's capture (as in
// TestReplayFeedSnapshotLateJoin) rotated while the snapshot is fetched,
// the rotation's wait for it given up at twice rotate_size (a third
// line's traffic, no line of the feed's, fills the file): the next file
// starts frozen and holds the spilled datagrams, the snapshot's messages
// and its load. replay --feed of that file alone freezes at its start as
// the handler was frozen, rebuilds the books from the snapshot and
// delivers the rest: the day's books. The file did not say it started
// frozen: the replay delivered the spilled datagrams to empty books and
// passed over the load ("not held"), other books than the live ones.
// Both files replayed in order (the first ends frozen, the second says
// the freeze again) are the day's books too.
func TestReplayFeedFileStartsFrozen(t *testing.T) {
	day, dir, _ := dayDir(t, 5_000, 23)
	c, t0 := rotatingDemoCapture(t, dir, true)
	k := len(day.Packets) / 3
	snap, n, next, _ := lateJoinSnapshot(t, day, k)
	ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
	c.Freeze(ts(k), 1, true, 0)
	other := make([]rx.Packet, 16)
	for i := 0; c.Stats().Files < 2; i++ {
		if i == 20_000 {
			t.Fatalf("no rotation inside the snapshot: %+v", c.Stats())
		}
		for j := range other {
			other[j] = rx.Packet{Line: 2, Data: bytes.Repeat([]byte{'x'}, 1400), RxTime: ts(k)}
		}
		c.Put(other, 0)
		time.Sleep(time.Millisecond) // the writer takes it: one rotation in this traffic
	}
	captureLateJoin(t, c, day, k, ts, snap, n, next)
	names, _ := filepath.Glob(filepath.Join(dir, "lines-*.pcap"))
	if len(names) != 2 {
		t.Fatalf("files %v: want 2, the second from inside the snapshot to the end", names)
	}
	last := names[len(names)-1]
	rep, got, want := replayDayBooks(t, dir, day, last)
	a := rep.Arbitrated
	if a == nil || a.LiveRecovery.Snapshots != 1 || a.LiveRecovery.SnapshotsReplayed != 1 || rep.InputMissing != 0 {
		t.Errorf("replay --feed of %s (the last of %d files): %d missing, report %+v; want the snapshot replayed, nothing missing", filepath.Base(last), len(names), rep.InputMissing, a)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("replay --feed's books are not the day's:\ngot:  %.300s\nwant: %.300s", got, want)
	}
	// The capture's second file, alone: said, and that its books were
	// rebuilt from the snapshot it holds, not that they lack the first's.
	if a == nil || a.CaptureStart != captureContinued {
		t.Errorf("replay --feed of %s alone: report %+v; want capture_start %q", filepath.Base(last), a, captureContinued)
	}
	_, text, err := replayFiles(t, writeDemoFeed(t, dir, day, ""), last)
	if want := "were not given: until the books were rebuilt from a snapshot it holds"; err != nil || !strings.Contains(text, want) {
		t.Errorf("replay --feed of %s alone: %v; the text report does not say %q:\n%s", filepath.Base(last), err, want, text)
	}
	rep, got, _ = replayDayBooks(t, dir, day, names...)
	if a := rep.Arbitrated; a == nil || a.LiveRecovery.SnapshotsReplayed != 1 || rep.InputMissing != 0 || !bytes.Equal(got, want) {
		t.Errorf("replay --feed of both files: %d missing, report %+v, books the day's %v; want the snapshot replayed, nothing missing, the day's books", rep.InputMissing, a, bytes.Equal(got, want))
	}
}

// captureLateJoin puts day's packets from the kth on to c, on both lines
// (received at ts), the snapshot snap (n messages, delivery resuming at
// sequence number next) loaded after 20 of them, and closes c.
func captureLateJoin(t *testing.T, c *capture.Capture, day *demo.Day, k int, ts func(int) int64, snap []byte, n, next uint64) {
	t.Helper()
	for i := k; i < len(day.Packets); i++ {
		c.Put([]rx.Packet{{Line: rx.LineA, Data: day.Packets[i], RxTime: ts(i)}, {Line: rx.LineB, Data: day.Packets[i], RxTime: ts(i) + 1000}}, ts(i)-1)
		if i == k+20 {
			c.SnapshotMessages(snap, ts(i)+50_000)
			c.Snapshot(ts(i)+50_000, next, n)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// rotatingDemoCapture opens a capture of the demo's two lines in files
// of capture.MinRotate, dir/lines-*.pcap, and returns it with the receive
// time the tests' datagrams start at. other: a third line, of no line of
// the feed's (line 2: traffic that makes files rotate).
func rotatingDemoCapture(t *testing.T, dir string, other bool) (*capture.Capture, int64) {
	t.Helper()
	lines := []rx.LineConfig{{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port()}, {Group: demo.GroupB.Addr(), Port: demo.GroupB.Port()}}
	if other {
		lines = append(lines, rx.LineConfig{Group: netip.MustParseAddr("239.9.9.9"), Port: 9})
	}
	c, err := capture.Open(capture.Config{Base: filepath.Join(dir, "lines.pcap"), Lines: lines, Log: zerolog.Nop(), RotateSize: capture.MinRotate})
	if err != nil {
		t.Fatal(err)
	}
	return c, time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
}

// rotatedDay captures a day of 60000 messages on both lines in files of
// capture.MinRotate, nothing dropped, and returns it, its directory and
// the files in the order written.
func rotatedDay(t *testing.T) (*demo.Day, string, []string) {
	t.Helper()
	day, dir, _ := dayDir(t, 60_000, 29)
	c, t0 := rotatingDemoCapture(t, dir, false)
	for i, p := range day.Packets {
		ts := t0 + int64(i)*int64(100*time.Microsecond)
		c.Put([]rx.Packet{{Line: rx.LineA, Data: p, RxTime: ts}, {Line: rx.LineB, Data: p, RxTime: ts + 1000}}, ts-1)
		if i%200 == 0 {
			time.Sleep(time.Millisecond) // the writer keeps up: nothing dropped
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "lines-*.pcap"))
	if len(names) < 2 || c.Stats().Dropped != 0 {
		t.Fatalf("files %v, stats %+v: want 2 or more, nothing dropped", names, c.Stats())
	}
	return day, dir, names
}

// TestReplayFeedRotatedFiles: a day captured in files of rotate_size,
// given to replay --feed in the order written (their names' order), is
// replayed as one capture: the day's books, nothing missing, the end of
// the last file's. replay took one INPUT only, and a file after the first
// alone misses the orders added before it; mergecap -a joins them
// without their batch marks. A file given after one that does not end
// in the next file (the handler stopped) is refused.
func TestReplayFeedRotatedFiles(t *testing.T) {
	day, dir, names := rotatedDay(t)
	rep, got, want := replayDayBooks(t, dir, day, names...)
	if a := rep.Arbitrated; a == nil || rep.InputMissing != 0 || a.Delivered != day.Messages || a.CaptureEnd != captureStopped {
		t.Errorf("replay --feed of %d files: %d missing, report %+v; want the day's %d messages delivered, nothing missing, the capture stopped", len(names), rep.InputMissing, a, day.Messages)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("replay --feed of the %d files: books not the day's:\ngot:  %.300s\nwant: %.300s", len(names), got, want)
	}
	feed := writeDemoFeed(t, dir, day, "")
	err := replay([]string{"--quiet", "--json", "--settle", "0", "--feed", feed, names[len(names)-1], names[0]}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ends stopped, not in the next file") {
		t.Errorf("replay --feed of the last file then the first: %v, want refused (the last ends stopped)", err)
	}
}

// TestReplayFeedChecksumsAsConfigured: a capture whose first frames fail
// their IPv4 header checksum (a sender on the host with checksum offload
// leaves them so) replays as the AF_XDP path receives it: with
// receive.verify_checksums false every datagram is taken, as live; with
// it true (the default) those are skipped as bad checksum.
func TestReplayFeedChecksumsAsConfigured(t *testing.T) {
	day, dir, capPath := dayDir(t, 5_000, 17)
	writeLaggingCapture(t, capPath, day, -1, time.Millisecond)
	b, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	const bad = 4 // both lines' copies of the first two packets
	off := 24
	for range bad {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		b[off+16+14+10] ^= 0xff // Ethernet, then the IPv4 header checksum
		off += 16 + incl
	}
	if err := os.WriteFile(capPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		extra   string
		skipped uint64
	}{
		{"receive: {verify_checksums: false}\n", 0},
		{"", bad},
	} {
		feed := writeDemoFeed(t, dir, day, tc.extra)
		rep := replayFeedJSON(t, feed, capPath)
		a := rep.Arbitrated
		if a == nil || a.Skipped != tc.skipped || a.SkippedBy[pcap.BadChecksum.String()] != tc.skipped {
			t.Errorf("feed %q: report %+v; want %d frames skipped as %s", tc.extra, a, tc.skipped, pcap.BadChecksum)
		}
	}
}

// TestReplayFeedSnapshotAcrossFiles: a late join's snapshot larger than
// twice rotate_size spans three files or more: the first holds the freeze
// and the messages up to twice rotate_size, the second (its freeze said
// again) the messages again from the first up to twice rotate_size, the
// later ones the rest, then the load. replay --feed of the files in order
// rebuilds the books from the snapshot (the day's books, nothing
// missing); the replay from the second file on loads it too (its
// messages written again from the first; the datagrams spilled before it
// are the first file's, missing there). The third file's freeze said
// again started the snapshot's messages anew: the replay held only the
// third file's part, and resumed without the snapshot.
func TestReplayFeedSnapshotAcrossFiles(t *testing.T) {
	day, dir, _ := dayDir(t, 150_000, 31)
	c, t0 := rotatingDemoCapture(t, dir, false)
	k := len(day.Packets) * 2 / 3
	snap, n, next, _ := lateJoinSnapshot(t, day, k)
	if len(snap) < 5*capture.MinRotate/2 {
		t.Fatalf("a snapshot of %d bytes: want 2.5 MiB or more (files of 1 MiB)", len(snap))
	}
	ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
	c.Freeze(ts(k), 1, true, 0)
	captureLateJoin(t, c, day, k, ts, snap, n, next)
	names, _ := filepath.Glob(filepath.Join(dir, "lines-*.pcap"))
	if len(names) < 3 || c.Stats().Dropped != 0 {
		t.Fatalf("files %v, stats %+v: want 3 or more (a snapshot of %d bytes in files of 1 MiB), nothing dropped", names, c.Stats(), len(snap))
	}
	rep, got, want := replayDayBooks(t, dir, day, names...)
	a := rep.Arbitrated
	if a == nil || a.LiveRecovery.Snapshots != 1 || a.LiveRecovery.SnapshotsReplayed != 1 || rep.InputMissing != 0 {
		t.Errorf("replay --feed of the %d files: %d missing, report %+v; want the snapshot replayed, nothing missing", len(names), rep.InputMissing, a)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("replay --feed of the %d files: books not the day's:\ngot:  %.300s\nwant: %.300s", len(names), got, want)
	}
	rep, _, _ = replayDayBooks(t, dir, day, names[1:]...)
	if a := rep.Arbitrated; a == nil || a.LiveRecovery.SnapshotsReplayed != 1 {
		t.Errorf("replay --feed from the second of %d files: report %+v; want the snapshot replayed", len(names), a)
	}
}

// TestReplayFeedNamesEveryFile: replay --feed of a capture's files names
// them all, in its JSON report (files) and its text one; and a replay
// stopped in a later file (the last one torn, as a handler killed during
// a write leaves it) names that file in its error. The report named the
// first file only, and the error the first file for a tear in the last.
func TestReplayFeedNamesEveryFile(t *testing.T) {
	day, dir, names := rotatedDay(t)
	feed := writeDemoFeed(t, dir, day, "")
	var report, text bytes.Buffer
	args := append([]string{"--quiet", "--settle", "0", "--feed", feed}, names...)
	if err := replay(append([]string{"--json"}, args...), &report, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep replayReport
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.File != names[0] || !slices.Equal(rep.Files, names) {
		t.Errorf("replay --feed of %d files: report's file %q, files %q; want the first, and all of them in order", len(names), rep.File, rep.Files)
	}
	if err := replay(args, &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if !strings.Contains(text.String(), name) {
			t.Errorf("replay --feed of %d files: the text report does not name %s:\n%s", len(names), name, text.String())
		}
	}
	last := names[len(names)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-3); err != nil { // torn inside its last record
		t.Fatal(err)
	}
	text.Reset()
	err = replay(args, &text, io.Discard)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "replay "+last+" ") {
		t.Errorf("replay --feed with the last of %d files torn: %v; want the reader's unexpected EOF, naming %s", len(names), err, last)
	}
	if !strings.Contains(text.String(), "capture cut") {
		t.Errorf("replay --feed with the last file torn: the text report does not say the capture is cut:\n%s", text.String())
	}
}
