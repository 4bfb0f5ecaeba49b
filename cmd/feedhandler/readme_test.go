package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeListsCommands: README.md's "Running it" shows every command
// (run as its usual form, feedhandler --feed FILE).
func TestReadmeListsCommands(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "## Running it")
	if ok {
		section, _, ok = strings.Cut(section, "\n## ")
	}
	if !ok {
		t.Fatal("README.md has no \"## Running it\" section")
	}
	if len(commands) < 5 {
		t.Fatalf("%d commands registered", len(commands))
	}
	for name := range commands {
		shown := "feedhandler " + name + " "
		if name == "run" {
			shown = "feedhandler --feed "
		}
		if !strings.Contains(section, shown) {
			t.Errorf("README.md's \"Running it\" does not show %q (%s)", strings.TrimSpace(shown), commands[name].summary)
		}
	}
}
