package shm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
)

// TestReadmeCppExampleBuilds runs the README's "C++ reader example"
// commands that build microprice, as a newcomer runs them in a fresh clone
// (no bin/ yet: make build makes it), and checks that the program the next
// command runs is there.
func TestReadmeCppExampleBuilds(t *testing.T) {
	cppbuild.Require(t)
	block := docBlock(t, "README.md", "### C++ reader example", "sh")
	var build []string
	var run string
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if run == "" && strings.Contains(l, "g++ ") {
			build = append(build, l)
			continue
		}
		if len(build) == 0 {
			build = append(build, l) // a setup command before the build
			continue
		}
		if run == "" {
			run = strings.Fields(l)[0]
		}
	}
	if len(build) == 0 || run == "" {
		t.Fatalf("README.md's C++ reader example: no g++ command, or no command after it:\n%s", block)
	}
	// A fresh clone: the repository's proto/ and nothing else.
	dir := t.TempDir()
	proto, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(proto, filepath.Join(dir, "proto")); err != nil {
		t.Fatal(err)
	}
	for _, c := range build {
		cmd := exec.Command("sh", "-ec", c)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("README.md's %q in a fresh clone: %v\n%s", c, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, run)); err != nil {
		t.Fatalf("README.md runs %s after building it: %v", run, err)
	}
}

// TestDocShmCppQuickStart builds docs/SHM.md's C++ example ("Using it"),
// in a function returning fs::Error as the page says, with the flags the
// page gives plus the tests' warnings and UndefinedBehaviorSanitizer, and
// runs it against a feed holding its symbol and one that does not. The
// example ignored lookup's and read's answers (an uninitialized locate,
// then v->seq() on the empty View of a failed read): a copy of it on a feed
// without AAPL dereferenced a null pointer ('member call on null pointer of
// type const struct Snapshot'; SIGSEGV in a build without optimization).
func TestDocShmCppQuickStart(t *testing.T) {
	cppbuild.Require(t)
	section := docBlock(t, "docs/SHM.md", "\n### Using it\n", "cpp")
	if !strings.Contains(section, `"itch"`) {
		t.Fatalf("docs/SHM.md's \"Using it\" cpp block opens no \"itch\":\n%s", section)
	}
	var head, body strings.Builder
	for _, l := range strings.SplitAfter(section, "\n") {
		if strings.HasPrefix(l, "#include") || strings.HasPrefix(l, "namespace ") {
			head.WriteString(l)
		} else {
			body.WriteString(l)
		}
	}
	dir := t.TempDir()
	feeds := map[string]string{"with": filepath.Join(dir, "with"), "without": filepath.Join(dir, "without")}
	for name, path := range feeds {
		w := testWriter(t, Config{Name: path, Instruments: 4, Depth: 2, JournalLen: 16})
		sym := "AAPL"
		if name == "without" {
			sym = "MSFT"
		}
		if err := w.Register(1, sym); err != nil {
			t.Fatal(err)
		}
		s := Snapshot{Locate: 1, Seq: 7, Bids: []Level{{Price: 1000, Shares: 100, Orders: 1}}}
		if err := w.Publish(&s); err != nil {
			t.Fatal(err)
		}
		w.Close() // the example's wait returns Closed at once
	}
	src := filepath.Join(dir, "quickstart.cpp")
	prog := head.String() + "#include <cstdio>\n#include <cstdlib>\nstatic fs::Error run(const char* feed) {\n" +
		strings.Replace(body.String(), `"itch"`, "feed", 1) + "  return e;\n}\n" +
		"int main(int, char** argv) { std::printf(\"%s\\n\", fs::error_name(run(argv[1]))); }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "quickstart")
	cmd := exec.Command("g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
		"-fno-sanitize-recover=all", "-I"+filepath.Join(cppbuild.Root(), "include"), src, "-o", bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docs/SHM.md's C++ example: %v\n%s\n%s", err, out, prog)
	}
	for name, want := range map[string]string{"with": "ErrClosed", "without": "ErrUnknownLocate"} {
		out, err := exec.Command(bin, feeds[name]).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("docs/SHM.md's C++ example on a feed %s AAPL: %v, output %q; want %s", name, err, out, want)
		}
	}
}

// docBlock returns the first code block fenced as lang after heading in the
// repository's file doc.
func docBlock(t *testing.T, doc, heading, lang string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("../..", doc))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(text), heading)
	if ok {
		_, section, ok = strings.Cut(section, "```"+lang+"\n")
	}
	if ok {
		section, _, ok = strings.Cut(section, "```")
	}
	if !ok {
		t.Fatalf("%s has no %s block after %q", doc, lang, strings.TrimSpace(heading))
	}
	return section
}

// TestCppExamplesUseTheAPI: the C++ examples (proto/cpp/examples) call the
// reader's documented API and the standard library alone, nothing of the
// header's feedhandler::shm::detail namespace, which docs/SHM.md's API table
// does not list and may change: a strategy copies the example. microprice
// took its clock and its sleep from fs::detail::realtime_ns and sleep_ns.
func TestCppExamplesUseTheAPI(t *testing.T) {
	files, err := filepath.Glob("../cpp/examples/*.cpp")
	if err != nil || len(files) == 0 {
		t.Fatalf("no C++ examples: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "detail::") {
				t.Errorf("%s:%d: %s: the header's detail namespace is not its API (docs/SHM.md)", f, i+1, strings.TrimSpace(l))
			}
		}
	}
}
