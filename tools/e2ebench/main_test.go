package main

import (
	"strings"
	"testing"
	"time"
)

// TestRowSaysWhatItMeasured: a row whose runs all failed (demo.Run gave no
// result: the backend would not open, the lab could not be built) shows no
// figures and says the runs failed; before, its medians of no run printed
// as 0s latencies and 0 pkt/s sent, as if measured. A row with some failed
// runs gives the medians of the others and says how many failed.
func TestRowSaysWhatItMeasured(t *testing.T) {
	var none rowRuns
	none.failed = 3
	line := none.line("run-to-completion", "xdp", "50000", 3)
	columns := strings.Count(header, "\t")
	if n := strings.Count(line, "\t"); n != columns {
		t.Errorf("all runs failed: %d columns, the header has %d: %q", n, columns, line)
	}
	if strings.Contains(line, "0s") || !strings.Contains(line, "3 failed") {
		t.Errorf("all runs failed: %q", line)
	}
	some := rowRuns{failed: 1, match: 2, sent: []float64{49000, 50000}, p50: []float64{float64(3 * time.Microsecond), float64(5 * time.Microsecond)},
		p99: []float64{1e4, 1e4}, p999: []float64{1e4, 1e4}, mx: []float64{1e5, 1e5}, q50: []float64{1e3, 1e3}, q99: []float64{1e3, 1e3}, q999: []float64{1e3, 1e3},
		gaps: []float64{0, 0}, lost: []float64{0, 0}, drops: []float64{0, 0}, slips: []float64{0, 0}, wait: []float64{1.25, 3}}
	line = some.line("sharded", "socket", "max", 3)
	if n := strings.Count(line, "\t"); n != columns {
		t.Errorf("one of three runs failed: %d columns, the header has %d: %q", n, columns, line)
	}
	if !strings.Contains(line, "\t3.0%\t") {
		t.Errorf("rx wait: want the median 3.0%%: %q", line)
	}
	if !strings.Contains(line, "5µs") || !strings.Contains(line, "2/3 identical, 1 failed") {
		t.Errorf("one of three runs failed: %q", line)
	}
}

// TestRowsAlignWithHeader: every column of a row printed on its own ends
// where the header's does (in runes: "µs"), and the last (books) starts
// where the header's does. Before, a tabwriter flushed after each row
// aligned the header with the first row only, and later rows came out two
// spaces a cell.
func TestRowsAlignWithHeader(t *testing.T) {
	// ends lists where a word ends before the last column, and where the
	// last column starts.
	last := strings.LastIndex(strings.TrimSuffix(header, "\t"), "\t") + 1
	ends := func(s string) (e []int, books int) {
		r := []rune(s)
		books = len([]rune(aligned(header))) - len([]rune(header[last:len(header)-1]))
		for i := 0; i < books-2; i++ {
			if r[i] != ' ' && r[i+1] == ' ' {
				e = append(e, i)
			}
		}
		return e, books
	}
	hdr, books := ends(aligned(header))
	want := make(map[int]bool, len(hdr))
	for _, e := range hdr {
		want[e] = true
	}
	some := rowRuns{match: 3, sent: []float64{82059}, p50: []float64{391168}, p99: []float64{3719168}, p999: []float64{4751360}, mx: []float64{5450398},
		q50: []float64{1352}, q99: []float64{14912}, q999: []float64{49408}, gaps: []float64{0}, lost: []float64{0}, drops: []float64{0}, slips: []float64{535}, wait: []float64{29.3}}
	var none rowRuns
	none.failed = 3
	for _, line := range []string{some.line("sharded", "xdp", "100000", 3), none.line("run-to-completion", "socket", "max", 3)} {
		row := aligned(line)
		got, _ := ends(row)
		if len(got) != strings.Count(header, "\t")-1 {
			t.Errorf("%d cells before books, want %d:\n%s\n%s", len(got), strings.Count(header, "\t")-1, aligned(header), row)
		}
		for _, e := range got {
			if !want[e] {
				t.Errorf("a cell ends at column %d, where no header column does:\n%s\n%s", e, aligned(header), row)
				break
			}
		}
		if r := []rune(row); len(r) <= books || r[books-1] != ' ' || r[books] == ' ' {
			t.Errorf("books does not start at column %d:\n%s\n%s", books, aligned(header), row)
		}
	}
}
