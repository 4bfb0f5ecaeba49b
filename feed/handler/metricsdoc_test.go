package handler

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// metricToken is a metric named in the docs: feedhandler_NAME, with its
// label in braces when given, or a prefix (feedhandler_recovery_*).
var metricToken = regexp.MustCompile(`feedhandler_([a-z0-9_]+)(\*|\{([a-z_,]+)\})?`)

// standardToken is a standard family named in the docs (process_*,
// go_*), a summary's with its _sum or _count.
var standardToken = regexp.MustCompile(`\b(?:process|go)_[a-z0-9_]+`)

// notMetrics are feedhandler_ names that are not metrics: the Python
// reader's module and the C++ reader's CMake package.
var notMetrics = map[string]bool{"shm": true, "shm_reader": true}

// typedToken is a metric named with its type after it, in prose:
// "`recovery_time_seconds` histogram".
var typedToken = regexp.MustCompile("`(?:feedhandler_)?([a-z0-9_]+)(?:\\{[a-z_]+\\})?` (summary|histogram|counter|gauge)\\b")

// Every metric the handler exports has a row in docs/OPERATIONS.md's
// metrics table, with its type and label; every feedhandler_ metric the
// docs, the README and the alerting rules name is one the handler exports,
// with the label it has.
func TestMetricsDocumented(t *testing.T) {
	byName := map[string]metric{}
	for _, m := range exported {
		byName[m.name] = m
	}
	// Exported by cmd/feedhandler's answers while the handler sets up
	// (before there is a Handler), then by none: documented, not in
	// exported. cmd/feedhandler's TestRunAnswersWhileStarting reads it.
	byName["starting"] = metric{name: "starting", kind: kindGauge}
	// name -> type column of its row
	rows := map[string]string{}
	ops, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	std := map[string]standardMetric{}
	for _, m := range standard {
		std[m.name] = m
	}
	stdRows := map[string]bool{}
	for _, l := range strings.Split(string(ops), "\n") {
		cells := strings.Split(l, "|")
		if len(cells) >= 4 && (strings.HasPrefix(strings.TrimSpace(cells[1]), "`process_") || strings.HasPrefix(strings.TrimSpace(cells[1]), "`go_")) {
			typ := strings.TrimSpace(cells[2])
			for _, name := range standardToken.FindAllString(cells[1], -1) {
				m, ok := std[name]
				switch {
				case stdRows[name]:
					t.Errorf("docs/OPERATIONS.md's metrics tables have %s in two rows", name)
				case !ok:
					t.Errorf("docs/OPERATIONS.md's metrics tables have %s, which the handler does not export", name)
				case m.kind.String() != typ:
					t.Errorf("docs/OPERATIONS.md: %s is a %s, the table says %q", name, m.kind, typ)
				}
				stdRows[name] = true
			}
			continue
		}
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`feedhandler_") {
			continue
		}
		typ := strings.TrimSpace(cells[2])
		for _, m := range metricToken.FindAllStringSubmatch(cells[1], -1) {
			name, label := m[1], m[3]
			if _, twice := rows[name]; twice {
				t.Errorf("docs/OPERATIONS.md's metrics table has feedhandler_%s in two rows: one meaning a metric", name)
			}
			rows[name] = typ
			e, ok := byName[name]
			switch {
			case !ok:
				t.Errorf("docs/OPERATIONS.md's metrics table has feedhandler_%s, which the handler does not export", name)
			case e.kind.String() != typ:
				t.Errorf("docs/OPERATIONS.md: feedhandler_%s is a %s, the table says %q", name, e.kind, typ)
			case e.label != label:
				t.Errorf("docs/OPERATIONS.md: feedhandler_%s has label %q besides feed, the table gives %q", name, e.label, label)
			}
		}
	}
	for _, m := range exported {
		if _, ok := rows[m.name]; !ok {
			t.Errorf("feedhandler_%s (%s: %s) has no row in docs/OPERATIONS.md's metrics table", m.name, m.kind, m.help)
		}
	}

	for _, m := range standard {
		if !stdRows[m.name] {
			t.Errorf("%s (%s: %s) has no row in docs/OPERATIONS.md's metrics tables", m.name, m.kind, m.help)
		}
	}

	files := []string{"../../README.md", "../../deploy/alerts.yml", "../../deploy/alerts_test.yml", "../../deploy/feedhandler@.service"}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("docs: %v %v", docs, err)
	}
	for _, f := range append(files, docs...) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricToken.FindAllStringSubmatch(string(text), -1) {
			name, label := m[1], m[3]
			if notMetrics[name] {
				continue
			}
			if m[2] == "*" || strings.HasSuffix(name, "_") {
				found := false
				for _, e := range exported {
					found = found || strings.HasPrefix(e.name, name)
				}
				if !found {
					t.Errorf("%s: feedhandler_%s*: no metric has that prefix", f, name)
				}
				continue
			}
			e, ok := byName[name]
			if !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if h, found := byName[strings.TrimSuffix(name, suffix)]; found && strings.HasSuffix(name, suffix) && h.kind == kindHistogram {
						e, ok = h, true
					}
				}
			}
			switch {
			case !ok:
				t.Errorf("%s: feedhandler_%s is not a metric the handler exports", f, name)
			case label != "" && label != e.label:
				t.Errorf("%s: feedhandler_%s{%s}: its label is %q", f, name, label, e.label)
			}
		}
		for _, name := range standardToken.FindAllString(string(text), -1) {
			_, ok := std[name]
			for _, m := range standard {
				ok = ok || strings.HasSuffix(name, "_") && strings.HasPrefix(m.name, name)
			}
			for _, suffix := range []string{"_sum", "_count"} {
				m, found := std[strings.TrimSuffix(name, suffix)]
				ok = ok || found && strings.HasSuffix(name, suffix) && m.kind == kindSummary
			}
			if !ok {
				t.Errorf("%s: %s is not a metric the handler exports", f, name)
			}
		}
		for _, m := range typedToken.FindAllStringSubmatch(string(text), -1) {
			if e, ok := byName[m[1]]; ok && e.kind.String() != m[2] {
				t.Errorf("%s: %q: feedhandler_%s is a %s", f, m[0], m[1], e.kind)
			}
		}
	}
}
