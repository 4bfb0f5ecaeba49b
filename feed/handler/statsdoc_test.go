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
}
