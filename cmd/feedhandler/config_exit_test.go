package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestConfigErrorExitStatus: deploy/feedhandler@.service names the exit
// status of a config error in RestartPreventExitStatus= so that systemd
// does not restart the handler in a loop on one. Every config error (a
// malformed feed file, a missing one, a missing --feed) must therefore exit
// with a status the unit lists, and a crash (a Go panic) with one it does
// not: Restart=on-failure must restart a crash.
func TestConfigErrorExitStatus(t *testing.T) {
	if os.Getenv("FEEDHANDLER_TEST_PANIC") == "1" {
		panic("a crash")
	}
	prevent := unitRestartPreventExitStatus(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("feed:\n  name: t\n  nmae: x\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A group this host lacks (config.CheckHost): before, the start failed
	// creating the shm file, with exit status 1, and systemd restarted it.
	noGroup := filepath.Join(dir, "nogroup.yaml")
	if err := os.WriteFile(noGroup, []byte("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nshm:\n  group: fh-no-such-group\n"), 0o644); err != nil {
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
		// Before, these exited 2, the Go runtime's crash status, which
		// Restart=on-failure restarts.
		{"mistyped command", []string{"runn", "--feed", bad}, `feedhandler: unknown command "runn"`},
		{"no command", nil, "usage: feedhandler --feed FILE.yaml"},
		// Before, ignored: the handler ran the file (here: its error).
		{"argument after the flags", []string{"--feed", bad, "check"}, `unexpected argument "check": run takes its flags only`},
		{"argument after check's flags", []string{"check", "--feed", bad, "other.yaml"}, `unexpected argument "other.yaml": check takes its flags only`},
		{"unknown shm.group", []string{"--feed", noGroup}, noGroup + ":9: shm.group: look up group \"fh-no-such-group\": no such group"},
	} {
		_, errOut, err := runCommand(t, tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: %v, want exit status %d\n%s", tc.name, err, exitConfig, errOut)
		}
		if ee.ExitCode() != exitConfig || !slices.Contains(prevent, ee.ExitCode()) {
			t.Errorf("%s: exit status %d, want %d, in the unit's RestartPreventExitStatus=%v\n%s", tc.name, ee.ExitCode(), exitConfig, prevent, errOut)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: stderr lacks %q:\n%s", tc.name, tc.want, errOut)
		}
	}

	// A panic, in a child process (this test binary, panicking above).
	cmd := exec.Command(os.Args[0], "-test.run=^TestConfigErrorExitStatus$")
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_PANIC=1")
	var ee *exec.ExitError
	if out, err := cmd.CombinedOutput(); !errors.As(err, &ee) || !strings.Contains(string(out), "panic: a crash") {
		t.Fatalf("panicking child: %v\n%s", err, out)
	}
	if slices.Contains(prevent, ee.ExitCode()) {
		t.Errorf("a Go panic exits %d, which the unit's RestartPreventExitStatus=%v lists: a crash would not be restarted", ee.ExitCode(), prevent)
	}
}

// unitRestartPreventExitStatus returns the exit statuses of
// deploy/feedhandler@.service's RestartPreventExitStatus=.
func unitRestartPreventExitStatus(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile("../../deploy/feedhandler@.service")
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "RestartPreventExitStatus=")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("RestartPreventExitStatus=%s: %q is not a number", v, f)
			}
			codes = append(codes, n)
		}
	}
	if len(codes) == 0 {
		t.Fatal("deploy/feedhandler@.service has no RestartPreventExitStatus=")
	}
	return codes
}

// TestHelpExitsZero: -h on a command prints its flags and exits 0, not as
// an error (a config error's status would stop systemd's restarts).
func TestHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"run", "replay", "send"} {
		_, errOut, err := runCommand(t, cmd, "-h")
		if err != nil {
			t.Errorf("%s -h: %v\n%s", cmd, err, errOut)
		}
		if !strings.Contains(errOut, "\n  -") {
			t.Errorf("%s -h printed no usage:\n%s", cmd, errOut)
		}
	}
}
