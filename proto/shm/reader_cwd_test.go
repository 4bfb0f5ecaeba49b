package shm

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRelativePathThroughSymlinkedCwd: a relative name with ".." opens the
// file the kernel resolves it to from the working directory, as the Go
// writer (which hands the relative name to the kernel), the C++ reader
// (getcwd) and the Python reader (os.getcwd) do. Before, Open resolved it
// with filepath.Abs, whose os.Getwd returns $PWD, the shell's logical
// directory: entered through a symbolic link, "../feed" named the link's
// parent's feed, another file (here none: ErrNotExist). The C++ reader
// is asked too.
func TestRelativePathThroughSymlinkedCwd(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	sub := filepath.Join(real, "sub")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	w := testWriter(t, Config{Name: filepath.Join(real, "feed-helper149"), Instruments: 1, Depth: 1})
	heartbeats(t, w)
	t.Chdir(link)
	t.Setenv("PWD", link) // as a shell that cd'd through the link sets it
	r, err := Open("../feed-helper149")
	if err != nil {
		t.Fatalf("Open(\"../feed-helper149\") from %s (a link to %s): %v", link, sub, err)
	}
	defer r.Close()
	if r.Path() != w.Path() {
		t.Errorf("Path %q, want %q", r.Path(), w.Path())
	}
	// The C++ reader, started in the same directory with the same $PWD,
	// names the same file.
	sess := startSession(t, cppEdgeBin(t), "../feed-helper149")
	sess.expect("open", "open Ok")
	if got := sess.do("path"); got != "path "+w.Path() {
		t.Errorf("C++: %q, want %q, as Go", got, "path "+w.Path())
	}
}
