package shmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/leftover"
)

// TestNameRemoved: Name's cleanup removes the file and its writer's
// temporary files (t.Cleanup runs however the test ends).
func TestNameRemoved(t *testing.T) {
	var paths []string
	t.Run("creates", func(t *testing.T) {
		name := Name(t, "fh-shmtest-test")
		if !strings.HasPrefix(name, fmt.Sprintf("fh-shmtest-test-%s-", leftover.Self())) || !strings.HasSuffix(name, "-TestNameRemoved-creates") {
			t.Errorf("Name: %q", name)
		}
		paths = []string{filepath.Join(Dir, name), filepath.Join(Dir, "."+name+".tmp.1.x")}
		for _, p := range paths {
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after the test: %v, want it removed", p, err)
			os.Remove(p)
		}
	}
}

// TestRemoveStale: the files of a gone pid go, those of a live one stay.
func TestRemoveStale(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid // reaped: gone (unless reused since)
	_, err := os.Stat(fmt.Sprintf("/proc/%d", dead))
	deadGone := os.IsNotExist(err)
	const prefix = "fh-shmtest-stale"
	files := map[string]bool{ // name -> removed
		fmt.Sprintf("%s-%d-1-T", prefix, dead):                 true,
		fmt.Sprintf(".%s-%d-1-T.tmp.%d.x", prefix, dead, dead): true,
		fmt.Sprintf("%s-%d", prefix, dead):                     true,
		fmt.Sprintf("%s-%d-1-T", prefix, os.Getpid()):          false,
		fmt.Sprintf("%sx-%d-1-T", prefix, dead):                false,
	}
	for name := range files {
		p := filepath.Join(Dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	if deadGone {
		if n := RemoveStale(prefix); n != 3 {
			t.Errorf("RemoveStale removed %d files, want 3", n)
		}
	} else {
		t.Logf("pid %d was reused: only the live files are checked", dead)
		RemoveStale(prefix)
	}
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(Dir, name))
		if deadGone && removed != os.IsNotExist(err) {
			t.Errorf("%s: stat %v, want removed %v", name, err, removed)
		}
	}
}
