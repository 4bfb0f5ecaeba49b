package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/leftover"
)

// setupList is .ci/setup's list of checks, between PACKAGES=' and '.
var setupList = regexp.MustCompile(`(?s)\nPACKAGES='\n(.*?)\n'\n`)

// setupChecks returns .ci/setup's list: each check (a command or an
// absolute path) with its Debian package and the targets that install it.
func setupChecks(t *testing.T) map[string][2]string {
	t.Helper()
	data, err := os.ReadFile("../../.ci/setup")
	if err != nil {
		t.Fatal(err)
	}
	m := setupList.FindSubmatch(data)
	if m == nil {
		t.Fatal(".ci/setup: no PACKAGES='...' list")
	}
	checks := map[string][2]string{}
	for _, l := range strings.Split(string(m[1]), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf(".ci/setup: list line %q is not CHECK PACKAGE TARGET...", l)
		}
		checks[f[0]] = [2]string{f[1], strings.Join(f[2:], " ")}
	}
	return checks
}

// lookedUpTools returns the commands the repository's Go files look up
// with exec.LookPath before running them (a test skips when one is
// missing), by name, with a file that does. A name is a string literal
// argument, or a variable ranging over a literal list or map (its keys),
// or a parameter of the function given literals at its calls in the same
// package (deploy's tool(t, "promtool", "prometheus")).
func lookedUpTools(t *testing.T, root string) map[string]string {
	t.Helper()
	tools := map[string]string{}
	pkgs := map[string][]*ast.File{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	literal := func(e ast.Expr) (string, bool) {
		if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
			s, err := strconv.Unquote(b.Value)
			return s, err == nil
		}
		return "", false
	}
	for _, files := range pkgs {
		for _, f := range files {
			file := fset.Position(f.Pos()).Filename
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				var stack []ast.Node
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					if n == nil {
						stack = stack[:len(stack)-1]
						return true
					}
					stack = append(stack, n)
					call, ok := n.(*ast.CallExpr)
					if !ok || len(call.Args) != 1 {
						return true
					}
					sel, ok := call.Fun.(*ast.SelectorExpr)
					if !ok || sel.Sel.Name != "LookPath" {
						return true
					}
					if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "exec" {
						return true
					}
					if s, ok := literal(call.Args[0]); ok {
						tools[s] = file
						return true
					}
					id, ok := call.Args[0].(*ast.Ident)
					if !ok {
						t.Errorf("%s: exec.LookPath(%s): not a name this test can follow", fset.Position(call.Pos()), fmt.Sprintf("%T", call.Args[0]))
						return true
					}
					found := false
					for _, s := range stack {
						r, ok := s.(*ast.RangeStmt)
						if !ok {
							continue
						}
						lit, ok := r.X.(*ast.CompositeLit)
						k, kok := r.Key.(*ast.Ident)
						v, vok := r.Value.(*ast.Ident)
						if !ok || !(kok && k.Name == id.Name || vok && v.Name == id.Name) {
							continue
						}
						for _, e := range lit.Elts {
							if kv, ok := e.(*ast.KeyValueExpr); ok {
								e = kv.Key
							}
							if s, ok := literal(e); ok {
								tools[s] = file
								found = true
							}
						}
					}
					if fn.Type.Params != nil && !found {
						pos := 0
						for _, p := range fn.Type.Params.List {
							for _, name := range p.Names {
								if name.Name == id.Name {
									for s := range literalArgs(files, fn.Name.Name, pos, literal) {
										tools[s] = file
										found = true
									}
								}
								pos++
							}
						}
					}
					if !found {
						t.Errorf("%s: exec.LookPath(%s): no literal names found for it", fset.Position(call.Pos()), id.Name)
					}
					return true
				})
			}
		}
	}
	return tools
}

// literalArgs returns the string literals given as argument pos to calls
// of the function name in files.
func literalArgs(files []*ast.File, name string, pos int, literal func(ast.Expr) (string, bool)) map[string]bool {
	out := map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if id, ok := call.Fun.(*ast.Ident); ok && id.Name == name && pos < len(call.Args) {
					if s, ok := literal(call.Args[pos]); ok {
						out[s] = true
					}
				}
			}
			return true
		})
	}
	return out
}

// TestSetupInstallsLookedUpTools: every command a test looks up before
// running it (and skips without) is in .ci/setup's list for the test
// target, so that make test on a fresh machine installs it rather than
// skipping the test; and every package of that list is named in the
// README's "Two commands", which says what make test and make demo
// install. Go itself is the one exception: .ci/setup checks it apart.
func TestSetupInstallsLookedUpTools(t *testing.T) {
	checks := setupChecks(t)
	tools := lookedUpTools(t, "../..")
	for _, want := range []string{"tshark", "promtool", "python3"} {
		if tools[want] == "" {
			t.Fatalf("found no exec.LookPath(%q): the source walk broke (found %v)", want, tools)
		}
	}
	names := make([]string, 0, len(tools))
	for name := range tools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "go" {
			continue
		}
		c, ok := checks[name]
		if !ok || !strings.Contains(" "+c[1]+" ", " test ") {
			t.Errorf("%s looks up %s, which .ci/setup does not install for make test: the test skips on a machine without it; add it to .ci/setup's list with its Debian package", tools[name], name)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Two commands")
	section, _, _ = strings.Cut(section, "\n## ")
	for check, c := range checks {
		if !strings.Contains(section, "`"+c[0]+"`") {
			t.Errorf(".ci/setup installs %s (for %s); README.md's \"Two commands\" does not name it", c[0], check)
		}
	}
}

// TestCheckGenerateFindsNewFiles runs make check-generate in a scratch
// repository with the Makefile, where "generation" (GO=a script) changes
// nothing committed but writes a file git does not track, as flatc does
// for a table added to book.fbs whose output was never committed: the
// target must fail. git diff --exit-code alone does not see untracked
// files. A file the repository's .gitignore ignores (__pycache__; what
// docs/SHM.md's `pip install proto/python` leaves in the tree: build/ and
// the egg-info, which made check-generate fail) is not one.
func TestCheckGenerateFindsNewFiles(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile("../../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) ([]byte, error) {
		cmd := boundedCommand(t, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "GIT_CONFIG_GLOBAL=/dev/null")
		return cmd.CombinedOutput()
	}
	files := map[string]string{
		"Makefile":          string(mk),
		".gitignore":        string(ignore),
		"proto/bookfb/A.go": "package bookfb\n",
		// The fake go: `go generate ./...` writes what its argument names.
		"fakego": "#!/bin/sh\nmkdir -p \"$(dirname \"$NEWFILE\")\" && echo x > \"$NEWFILE\"\n",
	}
	for name, text := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"commit", "-q", "-m", "x"}} {
		if out, err := run("git", args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for _, tc := range []struct {
		newFile string
		fail    bool
	}{
		{"proto/bookfb/B.go", true},
		{"proto/python/__pycache__/x.pyc", false},
		{"proto/python/build/lib/feedhandler_shm/reader.py", false},
		{"proto/python/feedhandler_shm.egg-info/PKG-INFO", false},
		{"bpf/steer_bpfel.o", true},
	} {
		out, err := run("make", "-s", "check-generate", "GO="+filepath.Join(dir, "fakego"), "NEWFILE="+tc.newFile)
		if failed := err != nil; failed != tc.fail {
			t.Errorf("make check-generate with %s generated and not committed: failed %v, want %v\n%s", tc.newFile, failed, tc.fail, out)
		}
		if out, err := run("git", "clean", "-q", "-f", "-d", "-x"); err != nil {
			t.Fatalf("git clean: %v\n%s", err, out)
		}
	}
}

// TestGitignoreDocBuilds: what docs/SHM.md's build commands, run from the
// top of the repository, leave in the tree is ignored by its .gitignore,
// so git status stays clean: `cmake -S proto/cpp -B build/cpp` makes
// build/ (it did not: an untracked build/ after installing the C++ reader),
// `pip install proto/python` proto/python/build/ and the egg-info, the
// offline install .venv/.
func TestGitignoreDocBuilds(t *testing.T) {
	ignore, err := os.ReadFile("../../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".gitignore"), ignore, 0o644); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) error {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null")
		return cmd.Run()
	}
	if err := git("init", "-q"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"build/cpp/CMakeCache.txt", "proto/python/build/lib/feedhandler_shm/reader.py",
		"proto/python/feedhandler_shm.egg-info/PKG-INFO", ".venv/bin/python"} {
		if err := git("check-ignore", "-q", "--no-index", f); err != nil {
			t.Errorf(".gitignore does not ignore %s (git check-ignore: %v)", f, err)
		}
	}
}

// TestSetupFindsSbinTools runs .ci/setup demo as a user whose PATH has no
// sbin directory, as Debian gives users: ethtool, installed in /sbin only,
// must count as present, not as missing with 'apt-get install ethtool' to
// fix it.
func TestSetupFindsSbinTools(t *testing.T) {
	if out, err := setupAsNobody(t, "demo", nil); err != nil {
		t.Errorf(".ci/setup demo as nobody with a user's PATH: %v\n%s", err, out)
	}
}

// TestSetupChecksFlatbuffersVersion: .ci/setup test stops, saying why, on
// a machine whose flatc is not 2.0.8 (Debian 13's 23.5.26, here a script
// that says so), rather than letting make test fail in make
// check-generate and every C++ reader test.
func TestSetupChecksFlatbuffersVersion(t *testing.T) {
	out, err := setupAsNobody(t, "test", map[string]string{"flatc": "#!/bin/sh\necho 'flatc version 23.5.26'\n"})
	if err == nil || !strings.Contains(string(out), "flatbuffers 2.0.8 is needed") || !strings.Contains(string(out), "flatc 23.5.26") {
		t.Errorf(".ci/setup test with flatc 23.5.26: %v, want exit 1 naming both versions:\n%s", err, out)
	}
}

// setupAsNobody runs a copy of .ci/setup TARGET as nobody (so that it
// never installs anything), with a user's PATH (no sbin) after a
// directory holding the given commands, and returns its output. Both are
// in a directory nobody can reach (not t.TempDir(), whose parent is 0700;
// nor the clone, which may be under /root). It skips when a tool of the
// target is not installed at all: the script would stop on that first.
func setupAsNobody(t *testing.T, target string, commands map[string]string) ([]byte, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the script as nobody")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed (Debian package util-linux)")
	}
	for check, c := range setupChecks(t) {
		if !strings.Contains(" "+c[1]+" ", " "+target+" ") {
			continue
		}
		dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/sbin")
		if strings.HasPrefix(check, "/") {
			dirs = []string{"/"}
		}
		if !slices.ContainsFunc(dirs, func(d string) bool { _, err := os.Stat(filepath.Join(d, check)); return err == nil }) {
			t.Skipf("%s (%s) is not installed: make %s's setup would install it", check, c[0], target)
		}
	}
	dir := leftover.TempDir(t, "fh-setup")
	script, err := os.ReadFile("../../.ci/setup")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	files := map[string]string{"setup": string(script)}
	for name, text := range commands {
		files[filepath.Join("bin", name)] = text
	}
	for name, text := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := boundedCommand(t, setpriv, append(deathsig.SetprivUser("nobody", "nogroup"), filepath.Join(dir, "setup"), target)...)
	cmd.Env = []string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin:" + filepath.Dir(goBinary(t)), "HOME=/"}
	return cmd.CombinedOutput()
}

// goBinary is the go command on PATH (.ci/setup checks for it first).
func goBinary(t *testing.T) string {
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	return p
}
