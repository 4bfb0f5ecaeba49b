package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

func testFeed(t *testing.T) string {
	t.Helper()
	name := shmtest.Path(t, "fh-bookview-test")
	w, err := shm.Create(shm.Config{Name: name, Instruments: 8, Depth: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Beat like a live writer, so that a slow machine cannot age it.
	stop := make(chan struct{})
	var beating sync.WaitGroup
	beating.Add(1)
	go func() {
		defer beating.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				w.Heartbeat()
			}
		}
	}()
	t.Cleanup(func() { close(stop); beating.Wait(); w.Close() })
	for loc, sym := range map[uint16]string{1: "AAPL", 2: "MSFT", 3: "EMPTY", 4: "QUIET"} {
		if err := w.Register(loc, sym); err != nil {
			t.Fatal(err)
		}
	}
	pub := func(s shm.Snapshot) {
		if err := w.Publish(&s); err != nil {
			t.Fatal(err)
		}
	}
	pub(shm.Snapshot{Locate: 1, Seq: 10, Messages: 5,
		Bids: []shm.Level{{Price: 1500000, Shares: 300, Orders: 2}, {Price: 1499900, Shares: 100, Orders: 1}},
		Asks: []shm.Level{{Price: 1500100, Shares: 200, Orders: 1}}})
	pub(shm.Snapshot{Locate: 2, Seq: 11, Messages: 9, Bids: []shm.Level{{Price: 4000000, Shares: 50, Orders: 1}}})
	// A book that emptied is left out of --json; 4 was never published.
	pub(shm.Snapshot{Locate: 3, Seq: 12, Messages: 2})
	return name
}

func TestBookviewJSON(t *testing.T) {
	name := testFeed(t)
	var out bytes.Buffer
	if err := bookview([]string{"--shm", name, "--once", "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	want := `{
"AAPL": {"bids": [[1500000, 300, 2], [1499900, 100, 1]], "asks": [[1500100, 200, 1]]},
"MSFT": {"bids": [[4000000, 50, 1]], "asks": []}
}
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestBookviewText(t *testing.T) {
	name := testFeed(t)
	var out bytes.Buffer
	if err := bookview([]string{"--shm", name, "--once"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	// Header, column titles, then instruments by activity: MSFT (9
	// messages), AAPL (5), EMPTY (2); QUIET has no snapshot.
	if len(lines) < 5 || !strings.HasPrefix(lines[2], "MSFT") || !strings.HasPrefix(lines[3], "AAPL") ||
		!strings.Contains(lines[3], "150.0000") || !strings.HasPrefix(lines[4], "EMPTY") || strings.Contains(out.String(), "QUIET") {
		t.Fatalf("unexpected view:\n%s", out.String())
	}
	out.Reset()
	if err := bookview([]string{"--shm", name, "--once", "--symbol", "AAPL"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "149.9900 | ") || !strings.Contains(out.String(), "150.0100") {
		t.Fatalf("unexpected ladder:\n%s", out.String())
	}
}

func TestBookviewMissing(t *testing.T) {
	err := bookview([]string{"--shm", "fh-bookview-never-created", "--once"}, &bytes.Buffer{})
	if !errors.Is(err, shm.ErrNotExist) {
		t.Fatalf("missing feed: %v", err)
	}
}

// openViewer opens the feed file name and returns its reader, closed at
// the test's end, and a viewer of it writing to out, ten rows a side.
func openViewer(t *testing.T, name string, out io.Writer) (*shm.Reader, *viewer) {
	t.Helper()
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, &viewer{r: r, out: out, rows: 10, buf: make([]byte, r.Info().MaxSnapshot)}
}

// TestBookviewLive runs the refreshing view while a writer publishes, then
// restarts the writer: the view follows the journal and reattaches. The
// writer keeps publishing until the view shows it (bounded), so a slow
// machine cannot make the test flaky.
func TestBookviewLive(t *testing.T) {
	name := testFeed(t)
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncLog{}
	v := &viewer{r: r, out: out, rows: 10, buf: make([]byte, r.Info().MaxSnapshot)}
	stop := make(chan os.Signal)
	done := make(chan error, 1)
	go func() { done <- v.live(name, 20*time.Millisecond, stop) }()

	// A restarted writer: new file, one instrument that trades a lot.
	w, err := shm.Create(shm.Config{Name: name, Instruments: 2, Depth: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Register(9, "NEWCO")
	shown := func() bool {
		s := out.String()
		return strings.Contains(s, "\x1b[H\x1b[2J") && strings.Contains(s, "NEWCO") && strings.Contains(s, "[restarted]")
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !shown() && time.Now().Before(deadline); i++ {
		w.Publish(&shm.Snapshot{Locate: 9, Seq: uint64(i), Bids: []shm.Level{{Price: 100, Shares: uint64(i) + 1, Orders: 1}}})
		w.Heartbeat()
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	if err := await(t, "the live view's return after its stop", done); err != nil {
		t.Fatal(err)
	}
	v.r.Close()
	if !shown() {
		t.Fatalf("live view did not show the restarted feed:\n%s", out.String())
	}
}

// TestBookviewMatchesReplay publishes books built by the book package into
// shared memory and checks that `bookview --once --json` prints exactly what
// book.Books.WriteJSON (`replay --books-out`) prints at the same depth.
func TestBookviewMatchesReplay(t *testing.T) {
	const depth = 4
	bs, err := book.New(book.Config{MaxOrders: 1 << 12, MaxLocates: 64, MaxLevels: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// One symbol per locate: the shm writer keeps one live entry per
	// symbol (a symbol registered at a second locate moves there), so a
	// second AAPL locate ("AAPL#9" in book.WriteJSON) has no counterpart
	// in a feed file.
	syms := map[uint16]string{3: "AAPL", 5: "ZVZZT", 7: "MSFT", 9: "NVDA", 11: "EMPTY", 12: "GONE"}
	for loc, s := range syms {
		var sym itch.Symbol
		copy(sym[:], s+"        ")
		bs.Announce(loc, sym)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ref := uint64(0)
	for loc := range syms {
		if loc == 11 {
			continue
		}
		for i := 0; i < 40; i++ {
			ref++
			side := book.Bid
			if rng.IntN(2) == 0 {
				side = book.Ask
			}
			if loc == 5 {
				side = book.Ask // one-sided book
			}
			price := uint32(1000000 + rng.IntN(8)*100)
			if side == book.Ask {
				price += 2000
			}
			bs.AddOrder(loc, ref, side, uint32(1+rng.IntN(500)), price)
			if loc == 12 {
				bs.Delete(loc, ref) // emptied book
			}
		}
	}
	var want bytes.Buffer
	if err := bs.WriteJSON(&want, depth); err != nil {
		t.Fatal(err)
	}

	name := shmtest.Path(t, "fh-bookview-test")
	w, err := shm.Create(shm.Config{Name: name, Instruments: 16, Depth: depth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for b := range bs.All() {
		if err := w.Register(b.Locate(), b.Name()); err != nil {
			t.Fatal(err)
		}
		var levels []book.Level
		s := shm.Snapshot{Locate: b.Locate()}
		for _, l := range b.AppendDepth(book.Bid, levels[:0], depth) {
			s.Bids = append(s.Bids, shm.Level(l))
		}
		for _, l := range b.AppendDepth(book.Ask, levels[:0], depth) {
			s.Asks = append(s.Asks, shm.Level(l))
		}
		if err := w.Publish(&s); err != nil {
			t.Fatal(err)
		}
	}
	var got bytes.Buffer
	w.Heartbeat()
	if err := bookview([]string{"--shm", name, "--once", "--json"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("bookview --json:\n%s\nbook.WriteJSON:\n%s", got.String(), want.String())
	}
	if !strings.Contains(got.String(), `"NVDA"`) || strings.Contains(got.String(), "GONE") || strings.Contains(got.String(), "EMPTY") {
		t.Fatalf("unexpected books:\n%s", got.String())
	}
}

// TestBookviewLiveTruncated: the feed file truncated under the live view
// (an operator's truncate; the writer never does) ends the view with the
// reader's ErrFormat, as microprice ends with status 1 (5813744). Before,
// the view took it for a stopped writer and went on reading every book
// from the mapping, past the end of the file: a fault (SIGBUS; here, with
// SetPanicOnFault, a panic the view's goroutine recovers and reports).
func TestBookviewLiveTruncated(t *testing.T) {
	name := testFeed(t)
	out := &syncLog{}
	r, v := openViewer(t, name, out)
	stop := make(chan os.Signal)
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("faulted: %v", p)
			}
		}()
		// A refresh every 200ms: the truncation below comes just after
		// the first one, while the view waits on the journal, not while
		// it reads the books after a Check that passed.
		done <- v.live(name, 200*time.Millisecond, stop)
	}()
	for i := 0; !strings.Contains(out.String(), "AAPL"); i++ {
		if i == 2000 {
			t.Fatalf("the live view never showed the feed:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	f, err := os.OpenFile(r.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	// The header page stays (the writer's heartbeat goroutine writes it);
	// the directory, journal and slots are cut off.
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	defer f.Truncate(st.Size())
	select {
	case err := <-done:
		if !errors.Is(err, shm.ErrFormat) {
			t.Fatalf("live view on a feed file truncated under it: %v, want an error wrapping ErrFormat", err)
		}
	case <-time.After(60 * time.Second):
		close(stop)
		t.Fatalf("live view still running 60s after the feed file's truncation: %v", <-done)
	}
}

// TestBookviewTextColumns: each numeric column's values end where its
// title ends (right-aligned, as the titles are), ASK SIZE too, whose
// sizes were printed left-aligned under its title's start.
func TestBookviewTextColumns(t *testing.T) {
	name := testFeed(t)
	var out bytes.Buffer
	if err := bookview([]string{"--shm", name, "--once"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	var head, aapl string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "SYMBOL"):
			head = l
		case strings.HasPrefix(l, "AAPL"):
			aapl = l
		}
	}
	if head == "" || aapl == "" {
		t.Fatalf("no titles or no AAPL row:\n%s", out.String())
	}
	from := 0 // the titles in order, each found after the one before
	for _, c := range []struct{ title, value string }{
		{"BID SIZE", "300"}, {"BID", "150.0000"}, {"ASK", "150.0100"}, {"ASK SIZE", "200"},
	} {
		i := strings.Index(head[from:], " "+c.title+" ")
		end := from + i + 1 + len(c.title)
		from = end
		if i < 0 || end > len(aapl) || !strings.HasSuffix(aapl[:end], " "+c.value) {
			t.Errorf("column %s: its value %s does not end where its title ends:\n%s\n%s", c.title, c.value, head, aapl)
		}
	}
}
