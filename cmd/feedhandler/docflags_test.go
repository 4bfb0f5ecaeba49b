package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docFiles are the files whose example commands TestDocsCommandFlags checks.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"../../README.md"}
	for _, pat := range []string{"../../docs/*.md", "../../feeds/*.yaml", "../../deploy/*"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

var (
	// A command up to what ends it in prose or a shell line.
	docFeedhandler = regexp.MustCompile("\\bfeedhandler((?: +[^ `|;#)&>'\"\n]+)+)")
	docTool        = regexp.MustCompile("(?:go run \\./tools/|bin/)(itchgen|e2ebench|rxbench)((?: +[^ `|;#)&>'\"\n]+)*)")
	docPython      = regexp.MustCompile("python3 (?:-m (feedhandler_shm)|\\S*/(snapshot_books)\\.py)((?: +[^ `|;#)&>'\"\n]+)*)")
	docFlag        = regexp.MustCompile(`^\[*(--?[a-z][a-z0-9-]*)`)
	pythonFlagDef  = regexp.MustCompile(`add_argument\("--([a-z0-9-]+)"`)
	toolFlagDef    = regexp.MustCompile(`(?:fs|flag)\.(?:Bool|Int|Int64|Uint|Uint64|Float64|String|Duration|Text|Func|BoolFunc)(?:Var)?\((?:&[A-Za-z.]+, )?"([a-z0-9-]+)"`)
	usageFlag      = regexp.MustCompile(`(?m)^  (-[a-z0-9-]+)`)
)

// pythonCommands are the Python readers' commands the docs show, and the
// file that defines their flags.
var pythonCommands = map[string]string{
	"feedhandler_shm": "proto/python/feedhandler_shm/__main__.py",
	"snapshot_books":  "proto/python/examples/snapshot_books.py",
}

// docCommandFlags returns, per command ("run", "replay", ..., or a tool's
// name), the flags text gives it in its example commands.
func docCommandFlags(text string) map[string][]string {
	out := map[string][]string{}
	add := func(cmd string, args []string) {
		for _, a := range args {
			m := docFlag.FindStringSubmatch(a)
			if m == nil {
				continue
			}
			f, _, _ := strings.Cut(m[1], "=")
			f = "-" + strings.TrimLeft(f, "-")
			if !slices.Contains(out[cmd], f) {
				out[cmd] = append(out[cmd], f)
			}
		}
	}
	for _, m := range docFeedhandler.FindAllStringSubmatch(text, -1) {
		args := strings.Fields(m[1])
		switch {
		case slices.Contains(versionFlags, docFlag.FindString(args[0])):
			// feedhandler's own, in place of a command.
			add("feedhandler", args[:1])
		case strings.HasPrefix(args[0], "-"):
			add("run", args)
		case commands[args[0]] != nil:
			add(args[0], args[1:])
		}
	}
	for _, m := range docTool.FindAllStringSubmatch(text, -1) {
		add(m[1], strings.Fields(m[2]))
	}
	for _, m := range docPython.FindAllStringSubmatch(text, -1) {
		add(m[1]+m[2], strings.Fields(m[3]))
	}
	return out
}

// TestDocCommandFlagsFound pins what docCommandFlags finds.
func TestDocCommandFlagsFound(t *testing.T) {
	got := docCommandFlags("Run `feedhandler replay [--json] [--books-out F] --shm NAME day.itch` or\n" +
		"```sh\nbin/feedhandler --feed f.yaml   # x\nfeedhandler demo --pin=false --rate 1 | tee x\ngo run ./tools/itchgen -n 10 -o d.itch [-pcap d.pcap]\n```\n" +
		"the feedhandler process; `feedhandler bookview --shm NAME --once [--json [--state]]`, `feedhandler --version`\n" +
		"PYTHONPATH=proto/python python3 -m feedhandler_shm --shm NAME [--depth N]   # x\npython3 proto/python/examples/snapshot_books.py --shm NAME --csv F\n")
	want := map[string][]string{
		"replay":   {"-json", "-books-out", "-shm"},
		"run":      {"-feed"},
		"demo":     {"-pin", "-rate"},
		"itchgen":  {"-n", "-o", "-pcap"},
		"bookview": {"-shm", "-once", "-json", "-state"},
		// feedhandler's own flag, not run's.
		"feedhandler": {"-version"},
		// feedhandler_shm: not a feedhandler subcommand (the word
		// follows "python3 -m").
		"feedhandler_shm": {"-shm", "-depth"},
		"snapshot_books":  {"-shm", "-csv"},
	}
	for cmd, flags := range want {
		if !slices.Equal(got[cmd], flags) {
			t.Errorf("%s: found %q, want %q", cmd, got[cmd], flags)
		}
	}
	if len(got) != len(want) {
		t.Errorf("found %v, want %v", got, want)
	}
}

// TestDocsCommandFlags: every flag an example command in README.md,
// docs/*.md, feeds/*.yaml and deploy/ gives a feedhandler subcommand
// (`feedhandler replay --shm NAME FILE`) or a tool (`go run ./tools/itchgen
// -n 1000000`) is one the command defines. TestReadmeListsCommands checks
// that every subcommand is shown and TestMakeTargets the make targets; no
// test read the flags, so a renamed or removed flag left the docs' commands
// failing with "flag provided but not defined".
func TestDocsCommandFlags(t *testing.T) {
	defined := map[string][]string{}
	flagsOf := func(cmd string) []string {
		if f, ok := defined[cmd]; ok {
			return f
		}
		var flags []string
		if cmd == "feedhandler" {
			for _, f := range versionFlags { // TestVersion runs each
				flags = append(flags, "-"+strings.TrimLeft(f, "-"))
			}
		} else if src, ok := pythonCommands[cmd]; ok {
			b, err := os.ReadFile("../../" + src)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range pythonFlagDef.FindAllStringSubmatch(string(b), -1) {
				flags = append(flags, "-"+m[1])
			}
		} else if commands[cmd] != nil {
			_, errOut, err := runCommand(t, cmd, "-h")
			if err != nil {
				t.Fatalf("feedhandler %s -h: %v\n%s", cmd, err, errOut)
			}
			for _, m := range usageFlag.FindAllStringSubmatch(errOut, -1) {
				flags = append(flags, m[1])
			}
		} else {
			srcs, _ := filepath.Glob("../../tools/" + cmd + "/*.go")
			for _, src := range srcs {
				if strings.HasSuffix(src, "_test.go") {
					continue
				}
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range toolFlagDef.FindAllStringSubmatch(string(b), -1) {
					flags = append(flags, "-"+m[1])
				}
			}
		}
		if len(flags) == 0 {
			t.Fatalf("%s: no flags found", cmd)
		}
		defined[cmd] = append(flags, "-h", "-help")
		return defined[cmd]
	}
	checked := 0
	for _, file := range docFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for cmd, flags := range docCommandFlags(string(b)) {
			for _, f := range flags {
				checked++
				if !slices.Contains(flagsOf(cmd), f) {
					name := "feedhandler " + cmd
					if commands[cmd] == nil {
						name = cmd
					}
					t.Errorf("%s gives %s the flag %s, which it does not define (it has %s)", strings.TrimPrefix(file, "../../"), name, f, strings.Join(flagsOf(cmd), " "))
				}
			}
		}
	}
	// README's synopses ("Running it") show each command with every flag
	// it has, unless the line says [flags] (some shown, as its -h usage line says; -h lists them):
	// replay's lacked --quiet, --settle, --max-orders, --max-levels,
	// --overflow and --cpuprofile, bookview's --state, --wait, --rows and
	// --interval, and nothing failed.
	synopses := 0
	for _, line := range readmeSynopses(t) {
		if strings.Contains(line, "[flags]") {
			continue
		}
		for cmd, shown := range docCommandFlags(line) {
			synopses++
			for _, f := range flagsOf(cmd) {
				if f != "-h" && f != "-help" && !slices.Contains(shown, f) {
					t.Errorf("README.md's synopsis of feedhandler %s lacks its flag -%s (or say [flags]): %s", cmd, f, line)
				}
			}
		}
	}
	if synopses < 5 {
		t.Errorf("only %d of README.md's synopses checked: the pattern no longer matches them", synopses)
	}
	t.Logf("%d flags checked", checked)
	if checked < 30 {
		t.Errorf("only %d flags found in the docs' commands: the patterns no longer match them", checked)
	}
}

// readmeSynopses returns the lines of README.md's "Running it" code block
// that show a feedhandler command.
func readmeSynopses(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## Running it\n")
	_, block, _ := strings.Cut(section, "```sh\n")
	block, _, ok := strings.Cut(block, "```")
	if !ok {
		t.Fatal("README.md's \"Running it\" has no sh code block")
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, "feedhandler ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestDocsPathsExist: every repository path README.md, docs/*.md,
// feeds/*.yaml and deploy/ name (`deploy/feedhandler@.service`,
// `proto/cpp/examples/microprice.cpp`, `tools/hotcpu/hotcpu.sh`) exists; a
// package's function (`internal/mem.Touch`) names its package's directory.
func TestDocsPathsExist(t *testing.T) {
	path := regexp.MustCompile(`(?:^|[^\w./-])((?:cmd|feed|feeds|docs|deploy|tools|internal|proto|book|bpf|xsk|uring|\.ci)/[\w./@-]*[\w@-])`)
	pkgFunc := regexp.MustCompile(`^(.+)\.[A-Z]\w*$`)
	checked := 0
	for _, file := range docFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range path.FindAllStringSubmatch(string(b), -1) {
			p := m[1]
			checked++
			if _, err := os.Stat("../../" + p); err == nil {
				continue
			}
			if f := pkgFunc.FindStringSubmatch(p); f != nil {
				if st, err := os.Stat("../../" + f[1]); err == nil && st.IsDir() {
					continue
				}
			}
			t.Errorf("%s names %s, which the repository does not have", strings.TrimPrefix(file, "../../"), p)
		}
	}
	t.Logf("%d paths named", checked)
	if checked < 50 {
		t.Errorf("only %d paths found in the docs: the pattern no longer matches them", checked)
	}
}

// sectionFiles are the files whose references to a document's sections
// TestDocsSectionsExist checks: the docs' files and every Go source file
// (comments and messages point to "docs/TUNING.md section 6" too).
func sectionFiles(t *testing.T) []string {
	t.Helper()
	files := docFiles(t)
	err := filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "../.." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var (
	// `docs/RECOVERY.md, "Retry backoff"`, `[GLIMPSE.md](GLIMPSE.md), "The
	// first join"`, `TUNING.md "Replay timing"`.
	docSectionNamed = regexp.MustCompile(`\b([A-Z]+)\.md(?:\]\([^)]*\))?,?(?:\s+(?://|#)?)+(?:section\s+)?"([A-Z][^"%]{2,80})"`)
	// `docs/TUNING.md section 6`, `TUNING.md sec. 6`, `(docs/TUNING.md, 0)`.
	docSectionNumber = regexp.MustCompile(`\b([A-Z]+)\.md,?(?:\s+(?://|#)?)+(?:(?:section|sec\.)\s+([0-9]+)\b|([0-9]+)\))`)
	// A section of the same document or another: `see "Link flaps"`,
	// `("Wall-clock steps" below)`.
	docSectionHere = regexp.MustCompile(`(?:\bsee "([A-Z][^"%]{2,80})"|"([A-Z][^"%]{2,80})" (?:below|above)\b)`)
	// A title's line break, and the comment marker that follows it in a
	// Go source or a unit file.
	docTitleBreak = regexp.MustCompile(`\s*\n\s*(?:(?://|#)\s*)?`)
)

// docSectionStart reports whether text has a section or paragraph that
// begins with title: a heading ("## 5. Monitoring", "### Which session
// (handler.GlimpseSnapshot)"), a paragraph's bold title ("**Retired
// slots.**", "- **Syscalls on the hot path.**") or a paragraph's first
// words.
func docSectionStart(text, title string) bool {
	title = docTitleBreak.ReplaceAllString(title, " ")
	re := regexp.MustCompile(`(?m)^\s*(?:#+\s+(?:[0-9]+\.\s+)?|[-*]\s+)?(?:\*\*)?` + regexp.QuoteMeta(title))
	return re.MatchString(text)
}

// TestDocsSectionsExist: every section a document or a Go source names in
// another document (`docs/RECOVERY.md, "Retry backoff"`, `docs/TUNING.md
// section 6`) or in itself (`see "Link flaps"`, `("Wall-clock steps"
// below)`) is there, as a heading, a paragraph's bold title or its first
// words. TestDocsPathsExist checks the files; a section renamed, renumbered
// or folded into another left its references pointing at nothing.
func TestDocsSectionsExist(t *testing.T) {
	docs := map[string]string{}
	for _, f := range append([]string{"../../README.md"}, must(filepath.Glob("../../docs/*.md"))...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[strings.TrimSuffix(filepath.Base(f), ".md")] = string(b)
	}
	checked := 0
	for _, file := range sectionFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text, name := string(b), strings.TrimPrefix(file, "../../")
		for _, m := range docSectionNamed.FindAllStringSubmatch(text, -1) {
			doc, ok := docs[m[1]]
			if !ok {
				continue // not one of ours: TestDocsPathsExist checks the paths
			}
			checked++
			if !docSectionStart(doc, m[2]) {
				t.Errorf("%s names the section %q of %s.md, which it does not have", name, docTitleBreak.ReplaceAllString(m[2], " "), m[1])
			}
		}
		for _, m := range docSectionNumber.FindAllStringSubmatch(text, -1) {
			doc, ok := docs[m[1]]
			if !ok {
				continue
			}
			n := m[2] + m[3]
			checked++
			if !regexp.MustCompile(`(?m)^## ` + n + `\. `).MatchString(doc) {
				t.Errorf("%s names section %s of %s.md, which it does not have", name, n, m[1])
			}
		}
		for _, m := range docSectionHere.FindAllStringSubmatch(text, -1) {
			title := docTitleBreak.ReplaceAllString(m[1]+m[2], " ")
			checked++
			found := docSectionStart(text, title)
			for _, doc := range docs {
				found = found || docSectionStart(doc, title)
			}
			if !found {
				t.Errorf("%s refers to the section %q, which no document has", name, title)
			}
		}
	}
	t.Logf("%d section references checked", checked)
	if checked < 50 {
		t.Errorf("only %d section references found: the patterns no longer match them", checked)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
