package itch_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedUpToDate regenerates the views and encoders into a temporary
// directory and fails when the committed files differ (run go generate).
func TestGeneratedUpToDate(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go toolchain not in PATH")
	}
	dir := t.TempDir()
	out, err := exec.Command(gobin, "run", "gen_messages.go", "-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go run gen_messages.go: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*_gen.go"))
	if len(files) != 4 {
		t.Fatalf("generator wrote %d files, want 4", len(files))
	}
	for _, f := range files {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Base(f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./feed/itch", filepath.Base(f))
		}
	}
}
