package race

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestEveryAllocationCountKnowsTheRaceBuild: every count of allocations in
// the repository goes through AllocsPerRun, so that make test's race step
// (go test -race over every package but RACE_SKIP's, no test skipped by
// name) asserts none of them and skips none of the tests that hold them.
// A file that uses testing.AllocsPerRun (called or as a value), or drops
// AllocsPerRun's exact (assigned to _, or the call a statement of its
// own), is named with its line.
func TestEveryAllocationCountKnowsTheRaceBuild(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	self, err := filepath.Abs("race.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var bad []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (d.Name() == "testdata" || d.Name() == "vendor" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || path == self {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		at := func(n ast.Node) string {
			return rel + ":" + strconv.Itoa(fset.Position(n.Pos()).Line)
		}
		isCount := func(e ast.Expr) bool {
			c, ok := e.(*ast.CallExpr)
			if !ok {
				return false
			}
			s, ok := c.Fun.(*ast.SelectorExpr)
			return ok && s.Sel.Name == "AllocsPerRun" && !isIdent(s.X, "testing")
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if isIdent(n.X, "testing") && n.Sel.Name == "AllocsPerRun" {
					bad = append(bad, at(n)+": testing.AllocsPerRun, not race.AllocsPerRun")
				}
			case *ast.ExprStmt:
				if isCount(n.X) {
					bad = append(bad, at(n)+": race.AllocsPerRun's count and exact dropped")
				}
			case *ast.AssignStmt:
				if len(n.Rhs) == 1 && len(n.Lhs) == 2 && isCount(n.Rhs[0]) && isIdent(n.Lhs[1], "_") {
					bad = append(bad, at(n)+": race.AllocsPerRun's exact dropped (assigned to _)")
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("walked %d Go files under %s: not the repository", files, root)
	}
	for _, b := range bad {
		t.Error(b)
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// TestAllocsPerRunExactOutsideTheRaceBuild: the plain build's count is
// exact (asserted), the race build's is not; both count what f allocates.
func TestAllocsPerRunExactOutsideTheRaceBuild(t *testing.T) {
	var sink []byte
	n, exact := AllocsPerRun(t, 10, func() { sink = make([]byte, 64<<10) })
	if exact == Enabled {
		t.Fatalf("exact %v in a build with the race detector %v", exact, Enabled)
	}
	if n < 1 || len(sink) == 0 {
		t.Fatalf("a 64 KiB make counted %v allocations a run, want 1 or more", n)
	}
}
