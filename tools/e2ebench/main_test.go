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
