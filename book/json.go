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
	type entry struct {
		key string
		b   *Book
	}
	var list []entry
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
		list = append(list, entry{k, b})
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteByte('{')
	var buf []byte
	var levels []Level
	for i, e := range list {
		if i > 0 {
			bw.WriteString(",\n")
		} else {
			bw.WriteByte('\n')
		}
		buf = strconv.AppendQuote(buf[:0], e.key)
		buf = append(buf, `: {"bids": `...)
		levels = e.b.AppendDepth(Bid, levels[:0], depth)
		buf = appendLevels(buf, levels)
		buf = append(buf, `, "asks": `...)
		levels = e.b.AppendDepth(Ask, levels[:0], depth)
		buf = appendLevels(buf, levels)
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
