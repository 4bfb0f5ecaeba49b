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
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### C++ reader example")
	if !ok {
		t.Fatal("README.md has no \"### C++ reader example\" section")
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal("README.md's C++ reader example has no sh block")
	}
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
