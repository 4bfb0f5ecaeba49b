package handler

import (
	"strings"
	"testing"
)

// TestMetricsHaveOneSource: every row of exported says where its samples
// come from, in one way, and its label is the one that way gives: a row
// without a value fails here, not at a scrape.
func TestMetricsHaveOneSource(t *testing.T) {
	names := map[string]bool{}
	for _, m := range exported {
		if names[m.name] {
			t.Errorf("%s: two rows", m.name)
		}
		names[m.name] = true
		var sources []string
		for _, s := range []struct {
			set  bool
			name string
		}{
			{m.stats != nil, "stats"}, {m.line != nil, "line"}, {m.shard != nil, "shard"},
			{m.each != nil, "each"}, {m.hist != nil, "hist"}, {m.own != notOwn, "own"},
		} {
			if s.set {
				sources = append(sources, s.name)
			}
		}
		switch {
		case len(sources) != 1:
			t.Errorf("%s: its samples come from %v: want exactly one of stats, line, shard, each, hist, own", m.name, sources)
		case m.stats != nil && m.label != "", m.hist != nil && m.label != "",
			m.line != nil && m.label != "line", m.shard != nil && m.label != "shard",
			m.each != nil && (m.label == "" || strings.Contains(m.label, ",")):
			t.Errorf("%s: label %q, its samples from %s", m.name, m.label, sources[0])
		case (m.each != nil) != (len(m.values) > 0):
			t.Errorf("%s: %d label values, its samples from %s", m.name, len(m.values), sources[0])
		case (m.hist != nil) != (m.kind == kindHistogram):
			t.Errorf("%s: a %s, its samples from %s", m.name, m.kind, sources[0])
		}
	}
}

// metricNamed is exported's row called name.
func metricNamed(t testing.TB, name string) *metric {
	t.Helper()
	for i := range exported {
		if exported[i].name == name {
			return &exported[i]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// scalar is the value of the metric name, one without a label besides
// feed, in st: its row's.
func scalar(t testing.TB, st *Stats, name string) uint64 {
	t.Helper()
	m := metricNamed(t, name)
	if m.stats == nil {
		t.Fatalf("%s: not one sample of the Stats", name)
	}
	return m.stats(st)
}
