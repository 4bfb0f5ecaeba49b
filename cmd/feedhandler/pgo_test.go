package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestProfileInlinesHotCalls: default.pgo names call sites by their line
// within a function, so an edit that moves a call in a hot function loses
// the profile's inlining there without a word (the book's add lost search
// and insertRung to a moved call in issue 10's AMD round: 307.9 → 319.5
// instructions a message). The calls each of these functions must inline
// are checked in the compiler's own report (-gcflags=-m): a failure here
// means regenerate the profile (make pgo, then measure) or put the call
// back on its line.
func TestProfileInlinesHotCalls(t *testing.T) {
	want := []struct {
		file, fn string // fn: "Recv.Name" or "Name"
		calls    []string
	}{
		{"book/books.go", "Books.add", []string{"search", "(*Book).insertRung"}},
		{"cmd/feedhandler/replay.go", "replayer.applyFile", []string{"book.(*Books).Apply", "book.(*Books).PrefetchBlocks"}},
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, "go", "build", "-pgo="+filepath.Join(root, "cmd/feedhandler/default.pgo"),
		"-gcflags=-m", "./book", "./cmd/feedhandler")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build -gcflags=-m: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`(?m)^(\S+\.go):(\d+):\d+: inlining call to (\S+)$`)
	for _, w := range want {
		first, last := funcLines(t, filepath.Join(root, w.file), w.fn)
		inlined := map[string]bool{}
		for _, m := range line.FindAllStringSubmatch(string(out), -1) {
			n, _ := strconv.Atoi(m[2])
			if m[1] == w.file && n >= first && n <= last {
				inlined[m[3]] = true
			}
		}
		for _, c := range w.calls {
			if !inlined[c] {
				t.Errorf("%s: %s (lines %d-%d) no longer inlines %s with default.pgo (moved call sites lose the profile's inlining): regenerate the profile or keep the call's line", w.file, w.fn, first, last, c)
			}
		}
	}
}

// funcLines returns the first and last lines of function fn ("Recv.Name"
// for a method) in file.
func funcLines(t *testing.T, file, fn string) (first, last int) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		name := fd.Name.Name
		if fd.Recv != nil && len(fd.Recv.List) == 1 {
			r := fd.Recv.List[0].Type
			if s, ok := r.(*ast.StarExpr); ok {
				r = s.X
			}
			if id, ok := r.(*ast.Ident); ok {
				name = id.Name + "." + name
			}
		}
		if name == fn {
			return fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line
		}
	}
	t.Fatalf("%s: no function %s", file, fn)
	return 0, 0
}
