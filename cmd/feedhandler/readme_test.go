package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/itchgen"
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

// TestMakeTargets: every target the Makefile declares .PHONY has a rule
// (a phony name without one makes nothing and succeeds), and every
// `make TARGET` the README and docs name is one of its rules.
func TestMakeTargets(t *testing.T) {
	data, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]bool{}
	var phony []string
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, ".PHONY:"); ok {
			phony = append(phony, strings.Fields(rest)...)
			continue
		}
		if l == "" || l[0] == '\t' || l[0] == '#' || strings.Contains(l, "=") {
			continue
		}
		if name, _, ok := strings.Cut(l, ":"); ok {
			for _, n := range strings.Fields(name) {
				rules[n] = true
			}
		}
	}
	if len(phony) == 0 || !rules["test"] || !rules["demo"] {
		t.Fatalf("Makefile: .PHONY %v, rules %v: the parse broke", phony, rules)
	}
	for _, p := range phony {
		if !rules[p] {
			t.Errorf("Makefile: .PHONY target %q has no rule: make %s succeeds doing nothing", p, p)
		}
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, f := range append(docs, "../../README.md") {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range makeTargetsNamed(string(text)) {
			if !rules[target] {
				t.Errorf("%s names `make %s`; the Makefile has no such target", f, target)
			}
		}
	}
}

var (
	// inlineMake is `make TARGET` in prose.
	inlineMake = regexp.MustCompile("`make ([a-z][a-z-]*)")
	// shellMake is make TARGET as a command of a shell block line: at its
	// start or after && ; || (README's "make demo     # installs ...").
	shellMake = regexp.MustCompile(`(?:^|&&|;|\|\|)\s*(?:sudo\s+)?make\s+([a-z][a-z-]*)`)
)

// makeTargetsNamed returns the make targets text names: `make TARGET` in
// prose, and make TARGET commands in its sh blocks.
func makeTargetsNamed(text string) []string {
	var out []string
	for _, m := range inlineMake.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	rest := text
	for {
		_, after, ok := strings.Cut(rest, "```sh\n")
		if !ok {
			break
		}
		block, tail, _ := strings.Cut(after, "```")
		rest = tail
		for _, l := range strings.Split(block, "\n") {
			for _, m := range shellMake.FindAllStringSubmatch(l, -1) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// TestMakeTargetsNamed: the targets TestMakeTargets checks include those a
// shell block runs (README's quick start: make demo, make test), not only
// `make TARGET` in prose.
func TestMakeTargetsNamed(t *testing.T) {
	text := "Run `make lint` first.\n\n```sh\nmake demo     # builds\nmake test\ncd x && make build\necho make nothing # not a command\n```\n"
	got := strings.Join(makeTargetsNamed(text), " ")
	if want := "lint demo test build"; got != want {
		t.Errorf("make targets named in %q: %q, want %q", text, got, want)
	}
}

// TestPackageDocListsCommands: the command's package comment (go doc)
// lists every command.
func TestPackageDocListsCommands(t *testing.T) {
	data, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, _, ok := strings.Cut(string(data), "\npackage main")
	if !ok {
		t.Fatal("main.go: no package clause")
	}
	for name := range commands {
		shown := "feedhandler " + name + " "
		if name == "run" {
			shown = "feedhandler --feed "
		}
		if !strings.Contains(doc, shown) {
			t.Errorf("main.go's package comment does not list %q", strings.TrimSpace(shown))
		}
	}
}

// TestUsageColumns: feedhandler's usage lists every command with its
// summary in one column; a name longer than the column ran into its
// summary ("glimpse-server serve GLIMPSE ...").
func TestUsageColumns(t *testing.T) {
	var b strings.Builder
	writeUsage(&b)
	_, list, ok := strings.Cut(b.String(), "\ncommands:\n")
	if !ok {
		t.Fatalf("usage has no commands list:\n%s", b.String())
	}
	col, n := -1, 0
	for _, l := range strings.Split(strings.TrimSuffix(list, "\n"), "\n") {
		c := commands[strings.Fields(l)[0]]
		if c == nil || !strings.Contains(l, " "+c.summary) {
			t.Fatalf("usage line %q: not a command and its summary", l)
		}
		i := strings.Index(l, " "+c.summary) + 1
		if col < 0 {
			col = i
		}
		if i != col {
			t.Errorf("usage line %q: summary at column %d, the first line's at %d", l, i, col)
		}
		n++
	}
	if n != len(commands) {
		t.Errorf("usage lists %d commands of %d:\n%s", n, len(commands), b.String())
	}
}

// TestReadmeMicropriceSymbol: README's C++ reader example runs microprice
// on a symbol of the day its itchgen command writes. It named AAPL, which no
// generated day has: on `replay --shm itch day.itch` microprice waited for
// it, then said 'AAPL not registered in /dev/shm/itch: shm: writer closed
// the feed'.
func TestReadmeMicropriceSymbol(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	run := regexp.MustCompile(`(?m)^bin/microprice itch (\S+)`).FindStringSubmatch(string(data))
	gen := regexp.MustCompile(`(?m)^go run \./tools/itchgen -n (\d+) -o day\.itch`).FindStringSubmatch(string(data))
	if run == nil || gen == nil {
		t.Fatalf("README.md has no 'bin/microprice itch SYMBOL' line (%q) or no 'go run ./tools/itchgen -n N -o day.itch' line (%q)", run, gen)
	}
	n, err := strconv.Atoi(gen[1])
	if err != nil {
		t.Fatal(err)
	}
	g, err := itchgen.New(itchgen.Config{Messages: n, Symbols: 500, Seed: 1}) // the command's defaults
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range g.Symbols() {
		if s.String() == run[1] {
			return
		}
	}
	t.Errorf("README.md runs 'bin/microprice itch %s' on the day 'go run ./tools/itchgen -n %d -o day.itch' writes, which has no %s (its first symbols: %v)",
		run[1], n, run[1], g.Symbols()[:3])
}
