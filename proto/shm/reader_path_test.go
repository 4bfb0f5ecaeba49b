package shm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRelativePathResolvedAtOpen: a relative path given to Open is
// resolved once, at Open. Before, Check looked the relative name up again
// against the working directory of the moment: a strategy that changed
// directory after Open checked another file (here a file of the same name
// in its new directory: a false ErrRestarted), or none (a real restart of
// the feed read as ErrClosed).
func TestRelativePathResolvedAtOpen(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	heartbeats(t, w)
	dir, base := filepath.Split(w.Path())
	t.Chdir(dir)
	r := testReader(t, "./"+base)
	if r.Path() != w.Path() {
		t.Errorf("Path %q, want %q", r.Path(), w.Path())
	}

	other := t.TempDir()
	decoy := filepath.Join(other, base)
	if err := os.WriteFile(decoy, []byte("not the feed"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)
	if err := r.Check(); err != nil {
		t.Fatalf("Check after chdir to a directory holding another %s: %v", base, err)
	}

	if err := os.Remove(decoy); err != nil {
		t.Fatal(err)
	}
	w.Close()
	testWriter(t, Config{Name: w.Path(), Instruments: 1, Depth: 1})
	if err := r.Check(); !errors.Is(err, ErrRestarted) {
		t.Fatalf("Check after the feed was restarted: %v, want ErrRestarted", err)
	}
}
