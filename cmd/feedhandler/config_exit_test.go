package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigErrorExitStatus: deploy/feedhandler@.service has
// RestartPreventExitStatus=2 so that systemd does not restart the handler
// in a loop on a config error. Every config error (a malformed feed file,
// a missing one, a missing --feed) must therefore exit 2, as a usage error
// does, and not 1 (a crash, restarted).
func TestConfigErrorExitStatus(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("feed:\n  name: t\n  nmae: x\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown field", []string{"--feed", bad}, "feed.nmae: unknown field"},
		{"no such file", []string{"--feed", filepath.Join(dir, "none.yaml")}, "no such file"},
		{"no --feed", []string{"run"}, "--feed is required"},
	} {
		_, errOut, err := runCommand(t, tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: %v, want exit status 2\n%s", tc.name, err, errOut)
		}
		if ee.ExitCode() != 2 {
			t.Errorf("%s: exit status %d, want 2 (the unit's RestartPreventExitStatus=2)\n%s", tc.name, ee.ExitCode(), errOut)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: stderr lacks %q:\n%s", tc.name, tc.want, errOut)
		}
	}
}
