package book

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// WriteJSON writes the books that have resting orders as one JSON object
// keyed by symbol (without its space padding), in symbol order:
//
//	{"AAPL": {"bids": [[price, shares, orders], ...], "asks": [...]}, ...}
//
// price is the integer ITCH price (4 implied decimals); bids come best
// (highest) first, asks best (lowest) first. depth limits the levels per
// side; 0 writes all. If two locates carry the same symbol the later one is
// keyed "SYMBOL#locate".
func (bs *Books) WriteJSON(w io.Writer, depth int) error {
	var list []JSONBook
	seen := map[string]bool{}
	for b := range bs.All() {
		if b.Orders() == 0 {
			continue
		}
		k := b.Name()
		if seen[k] {
			k += "#" + strconv.Itoa(int(b.locate))
		}
		seen[k] = true
		list = append(list, JSONBook{Key: k, Bids: b.AppendDepth(Bid, nil, depth), Asks: b.AppendDepth(Ask, nil, depth)})
	}
	return WriteBooksJSON(w, list)
}

// JSONBook is one entry of the books JSON document.
type JSONBook struct {
	Key        string  // the symbol without padding, or "SYMBOL#locate"
	Bids, Asks []Level // best first
}

// WriteBooksJSON writes books as the JSON document WriteJSON describes,
// sorted by key. Everything that prints books in this shape (replay
// --books-out, bookview --once --json) goes through it, so the outputs
// compare byte for byte.
func WriteBooksJSON(w io.Writer, books []JSONBook) error {
	slices.SortFunc(books, func(a, b JSONBook) int { return strings.Compare(a.Key, b.Key) })
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteByte('{')
	var buf []byte
	for i, e := range books {
		if i > 0 {
			bw.WriteString(",\n")
		} else {
			bw.WriteByte('\n')
		}
		buf = strconv.AppendQuote(buf[:0], e.Key)
		buf = append(buf, `: {"bids": `...)
		buf = appendLevels(buf, e.Bids)
		buf = append(buf, `, "asks": `...)
		buf = appendLevels(buf, e.Asks)
		buf = append(buf, '}')
		bw.Write(buf)
	}
	bw.WriteString("\n}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write books json: %w", err)
	}
	return nil
}

func appendLevels(buf []byte, levels []Level) []byte {
	buf = append(buf, '[')
	for i, lv := range levels {
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = append(buf, '[')
		buf = strconv.AppendUint(buf, uint64(lv.Price), 10)
		buf = append(buf, ", "...)
		buf = strconv.AppendUint(buf, lv.Shares, 10)
		buf = append(buf, ", "...)
		buf = strconv.AppendUint(buf, uint64(lv.Orders), 10)
		buf = append(buf, ']')
	}
	return append(buf, ']')
}
