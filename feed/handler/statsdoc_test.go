package handler

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// The stats line's keys docs/RECOVERY.md ("Observability") lists are keys
// of the line the handler logs (lines named A and B).
func TestStatsLineDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/RECOVERY.md")
	if err != nil {
		t.Fatal(err)
	}
	_, para, ok := strings.Cut(string(doc), "Stats line: ")
	if ok {
		para, _, ok = strings.Cut(para, ". ")
	}
	if !ok {
		t.Fatal("docs/RECOVERY.md has no \"Stats line: \" sentence")
	}
	var named []string
	for _, m := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(para, -1) {
		named = append(named, m[1])
	}
	if len(named) < 10 {
		t.Fatalf("docs/RECOVERY.md's stats line sentence names %d keys: %q", len(named), para)
	}

	sink := &lastLine{}
	h, _, _, _ := startScriptedLog(t, ModeRunToCompletion, nil, 1000, nil, -1, zerolog.New(sink))
	defer h.Stop()
	waitFor(t, "the script delivered", func() bool { return h.Stats().Arbiter.Delivered == 1000 })
	var line string
	for range 10 { // another log line may come last
		h.LogStats(false)
		if line, _ = sink.last(); strings.Contains(line, `"message":"stats"`) {
			break
		}
	}
	var keys map[string]any
	if err := json.Unmarshal([]byte(line), &keys); err != nil {
		t.Fatalf("stats line %q: %v", line, err)
	}
	for _, k := range named {
		if _, ok := keys[k]; !ok {
			t.Errorf("docs/RECOVERY.md names %q in the stats line; the line has no such key: %s", k, line)
		}
	}

	// Every key of the line is in docs/OPERATIONS.md's paragraph on it
	// (per line: line_A_ and the key after it) or RECOVERY.md's sentence.
	ops, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, opsPara, ok := strings.Cut(string(ops), "**The stats line.**")
	if ok {
		opsPara, _, ok = strings.Cut(opsPara, "\n\n")
	}
	if !ok {
		t.Fatal("docs/OPERATIONS.md has no \"**The stats line.**\" paragraph")
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([A-Za-z0-9_]+)`").FindAllStringSubmatch(opsPara+para, -1) {
		documented[m[1]] = true
	}
	for k := range keys {
		switch k {
		case "level", "time", "message":
			continue
		}
		name := k
		for _, p := range []string{"line_A_", "line_B_"} {
			if s, ok := strings.CutPrefix(k, p); ok && documented[p] {
				name = s
			}
		}
		if !documented[name] {
			t.Errorf("the stats line's key %q is in neither docs/OPERATIONS.md's \"The stats line\" nor docs/RECOVERY.md's \"Stats line:\"", k)
		}
	}
}

// TestDocLogLevels: the stats line is an info line, so log.level warn (or
// error) hides it, and the privileges-after-setup line with it: a desk
// that set warn to quiet the log lost both without a word in the docs.
// docs/OPERATIONS.md says what each level shows, where the stats line is.
func TestDocLogLevels(t *testing.T) {
	sink := &lastLine{}
	h, _, _, _ := startScriptedLog(t, ModeRunToCompletion, nil, 1000, nil, -1, zerolog.New(sink).Level(zerolog.WarnLevel))
	defer h.Stop()
	waitFor(t, "the script delivered", func() bool { return h.Stats().Arbiter.Delivered == 1000 })
	_, before := sink.last()
	h.LogStats(true)
	if line, n := sink.last(); n != before {
		t.Errorf("log.level warn: the stats line was logged: %s", line)
	}

	ops, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, stats, _ := strings.Cut(string(ops), "**The stats line.**")
	stats, _, _ = strings.Cut(stats, "\n\n")
	_, levels, ok := strings.Cut(string(ops), "**Log levels.**")
	if !ok || !strings.Contains(strings.Join(strings.Fields(stats), " "), "(so not under `log.level: warn` or `error`") {
		t.Fatal("docs/OPERATIONS.md's stats line paragraph does not say that log.level warn hides it, or there is no \"**Log levels.**\" paragraph")
	}
	levels, _, _ = strings.Cut(levels, "\n\n\n")
	rows := map[string]string{}
	for _, l := range strings.Split(levels, "\n") {
		if cells := strings.Split(l, " | "); len(cells) == 2 && strings.HasPrefix(l, "| `") {
			for _, m := range regexp.MustCompile("`([a-z]+)`").FindAllStringSubmatch(cells[0], -1) {
				rows[m[1]] = cells[1]
			}
		}
	}
	for _, level := range []string{"trace", "debug", "info", "warn", "error"} {
		if rows[level] == "" {
			t.Errorf("docs/OPERATIONS.md's log levels table has no row for %s", level)
		}
	}
	for _, hidden := range []string{"No stats line", "no `privileges after setup`"} {
		if !strings.Contains(rows["warn"], hidden) {
			t.Errorf("docs/OPERATIONS.md's log levels table: warn's row does not say %q", hidden)
		}
	}
	for _, shown := range []string{"the stats line", "`privileges after setup`"} {
		if !strings.Contains(rows["info"], shown) {
			t.Errorf("docs/OPERATIONS.md's log levels table: info's row does not say %q", shown)
		}
	}
}
