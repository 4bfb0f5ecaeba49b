package book

import (
	"encoding/json"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/itchgen"
)

// generatedDay returns a BinaryFILE-framed day from the project's generator.
func generatedDay(tb testing.TB, messages, symbols int) ([]byte, int) {
	g, err := itchgen.New(itchgen.Config{Messages: messages, Symbols: symbols, Seed: 7})
	if err != nil {
		tb.Fatal(err)
	}
	var buf []byte
	n := 0
	err = g.Stream(func(m itch.Msg) error {
		buf = itch.AppendBlock(buf, m)
		n++
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return buf, n
}

// TestGeneratedDayDifferential replays a generated day through Apply and the
// reference book, comparing the touched book (levels, queues, BBO, what a
// publisher reads, last trade, states, timestamp), the counters and what
// Apply reports after every message, every book and order at the end, and
// the books JSON.
func TestGeneratedDayDifferential(t *testing.T) {
	buf, msgs := generatedDay(t, 200_000, 40)
	cfg := Config{MaxOrders: 1 << 16, MaxLocates: 64, MaxLevels: 1 << 14, Overflow: 1 << 16, RefTableSize: 1 << 12}
	bs, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := newRefBooks(cfg)
	var s itch.Scanner
	s.Reset(buf)
	n := 0
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		loc, changed := bs.Apply(m)
		o := opOf(m)
		want := r.apply(o)
		n++
		maxOverflowed = max(maxOverflowed, bs.stats.Overflowed)
		if changed != want || (changed && o.kind != 'S' && loc != o.locate) {
			t.Fatalf("message %d (%c): Apply = %d, %v; want %v for locate %d", n, m.Type(), loc, changed, want, o.locate)
		}
		if o.kind == 0 {
			continue
		}
		if err := compareWire(bs, r, o.locate); err != nil {
			t.Fatalf("message %d (%c): %v", n, m.Type(), err)
		}
	}
	if err := s.Err(); err != nil || n != msgs {
		t.Fatalf("scanned %d of %d: %v", n, msgs, err)
	}
	if err := compareWireAll(bs, r); err != nil {
		t.Fatalf("end: %v", err)
	}
	st := bs.Stats()
	if st.Inconsistencies() != 0 || st.Orders == 0 {
		t.Fatalf("generated day: %+v", st)
	}
	t.Logf("%d messages, %d live orders, %d levels, %d in overflow slots at the end", n, st.Orders, st.Levels, st.Overflowed)
	compareJSON(t, bs, r, 0)
	compareJSON(t, bs, r, 3)
}

// booksJSON is the --books-out document.
type booksJSON map[string]struct {
	Bids [][3]uint64 `json:"bids"`
	Asks [][3]uint64 `json:"asks"`
}

// refJSON renders the reference books the way --books-out is specified.
func refJSON(r *refBooks, depth int) booksJSON {
	out := booksJSON{}
	for _, b := range r.books {
		if len(b.sides[Bid])+len(b.sides[Ask]) == 0 {
			continue
		}
		e := out[itch.Symbol(b.symbol).String()]
		for side := Bid; side <= Ask; side++ {
			lv := r.depth(b, side)
			if depth > 0 && len(lv) > depth {
				lv = lv[:depth]
			}
			rows := [][3]uint64{}
			for _, l := range lv {
				rows = append(rows, [3]uint64{uint64(l.Price), l.Shares, uint64(l.Orders)})
			}
			if side == Bid {
				e.Bids = rows
			} else {
				e.Asks = rows
			}
		}
		out[itch.Symbol(b.symbol).String()] = e
	}
	return out
}

func compareJSON(t *testing.T, bs *Books, r *refBooks, depth int) {
	t.Helper()
	var sb strings.Builder
	if err := bs.WriteJSON(&sb, depth); err != nil {
		t.Fatal(err)
	}
	compareJSONText(t, []byte(sb.String()), r, depth)
}

func compareJSONText(t *testing.T, text []byte, r *refBooks, depth int) {
	t.Helper()
	var got booksJSON
	if err := json.Unmarshal(text, &got); err != nil {
		t.Fatalf("books JSON does not parse: %v", err)
	}
	want := refJSON(r, depth)
	if len(got) != len(want) {
		t.Fatalf("books JSON: %d symbols, reference %d", len(got), len(want))
	}
	for sym, w := range want {
		g, ok := got[sym]
		if !ok || !slices.Equal(g.Bids, w.Bids) || !slices.Equal(g.Asks, w.Asks) {
			t.Fatalf("books JSON depth %d, %s:\n got %v\nwant %v", depth, sym, g, w)
		}
	}
}

// TestBooksOutMatchesReference checks a `feedhandler replay --books-out`
// file against the reference book built from the same input. It needs the
// files, so it runs only when told where they are:
//
//	go run ./tools/itchgen -n 5000000 -seed 1 -o /tmp/day5m.itch
//	go run ./cmd/feedhandler replay --books-out /tmp/day5m.json /tmp/day5m.itch
//	BOOK_DAY=/tmp/day5m.itch BOOK_BOOKS_OUT=/tmp/day5m.json go test -run TestBooksOutMatchesReference ./book/
func TestBooksOutMatchesReference(t *testing.T) {
	day, out := os.Getenv("BOOK_DAY"), os.Getenv("BOOK_BOOKS_OUT")
	if day == "" || out == "" {
		t.Skip("set BOOK_DAY=INPUT and BOOK_BOOKS_OUT=JSON (from feedhandler replay --books-out) to run")
	}
	in, err := input.Open(day)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r := newRefBooks(Config{MaxOrders: MaxOrdersLimit, MaxLocates: 65535, MaxLevels: 1<<31 - 1}) // the largest New accepts
	n := 0
	for {
		m, err := in.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		r.apply(opOf(m))
		n++
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	compareJSONText(t, text, r, 0)
	t.Logf("%d messages, %d symbols with orders: identical", n, len(refJSON(r, 0)))
}
