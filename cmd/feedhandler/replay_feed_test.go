package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
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
	day, err := demo.GenerateDay(messages, 20, seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	capPath := filepath.Join(dir, "lines.pcap")
	writeLaggingCapture(t, capPath, day, lost(day), lag)
	return day, dir, capPath
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
		out := filepath.Join(dir, "books.json")
		var report bytes.Buffer
		args = append([]string{"--quiet", "--json", "--settle", "0", "--books-out", out, "--depth", "10"}, args...)
		if err := replay(append(args, capPath), &report, io.Discard); err != nil {
			t.Fatalf("replay %v: %v", args, err)
		}
		var rep replayReport
		if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		books, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return rep, books
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
	day, err := demo.GenerateDay(20_000, 20, 12)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	capPath := filepath.Join(dir, "lines.pcap")
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
	var report bytes.Buffer
	if err := replay([]string{"--quiet", "--json", "--settle", "0", "--feed", feed, capPath}, &report, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep replayReport
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Arbitrated == nil || rep.Arbitrated.Filtered == 0 || rep.WithOrders != 1 || rep.Arbitrated.Delivered != day.Messages {
		t.Fatalf("replay --feed with symbols [%s]: %d instruments with orders, report %+v; want one, the rest filtered", keep, rep.WithOrders, rep.Arbitrated)
	}
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
