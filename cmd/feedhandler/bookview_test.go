package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/proto/shm"
)

func testFeed(t *testing.T) string {
	t.Helper()
	name := filepath.Join(shm.Dir, fmt.Sprintf("fh-bookview-test-%d-%s", os.Getpid(), t.Name()))
	w, err := shm.Create(shm.Config{Name: name, Instruments: 8, Depth: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); os.Remove(name) })
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
	want := `{"AAPL":{"bids":[[1500000,300,2],[1499900,100,1]],"asks":[[1500100,200,1]]},"MSFT":{"bids":[[4000000,50,1]],"asks":[]}}` + "\n"
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

// TestBookviewLive runs the refreshing view while a writer publishes, then
// restarts the writer: the view follows the journal and reattaches.
func TestBookviewLive(t *testing.T) {
	name := testFeed(t)
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	v := &viewer{r: r, out: &out, rows: 10, buf: make([]byte, r.Info().MaxSnapshot)}
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
	for i := 0; i < 50; i++ {
		w.Publish(&shm.Snapshot{Locate: 9, Seq: uint64(i), Bids: []shm.Level{{Price: 100, Shares: uint64(i) + 1, Orders: 1}}})
		w.Heartbeat()
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	v.r.Close()
	s := out.String()
	if !strings.Contains(s, "\x1b[H\x1b[2J") || !strings.Contains(s, "NEWCO") || !strings.Contains(s, "[restarted]") {
		t.Fatalf("live view did not show the restarted feed:\n%s", s)
	}
}
