// Package proctest runs a test again in a child process that sees a /proc
// of the processes only, mounted with subset=pid as systemd's
// ProcSubset=pid mounts it (no /proc/stat, /proc/meminfo, ...): in a
// mount namespace of its own (unshare -m, propagation private), so the
// host's /proc is untouched.
package proctest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/deathsig"
)

// childEnv is set in the child's environment.
const childEnv = "PROCTEST_SUBSET_PID_CHILD"

// InSubsetPid reports whether this process is RunInSubsetPid's child.
func InSubsetPid() bool { return os.Getenv(childEnv) != "" }

// RunInSubsetPid runs the test named name (the caller's: the child runs
// -test.run '^name$') in a child under a /proc mounted with subset=pid,
// env added to its environment, and fails t unless the child's test
// passed. The test tells the child by InSubsetPid. It skips only where
// unshare is not installed. The child dies with a killed test binary
// (deathsig: unshare, sh and the test binary it execs keep the signal).
func RunInSubsetPid(t testing.TB, name string, env ...string) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed (Debian package util-linux)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c",
		`mount -t proc -o subset=pid proc /proc && exec "$0" -test.run "^$1\$" -test.v -test.count=1`, exe, name)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	out, err := deathsig.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("child did not pass:\n%s", out)
	}
}
