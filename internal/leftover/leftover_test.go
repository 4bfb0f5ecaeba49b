package leftover_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

const (
	childEnv = "LEFTOVER_TEST_CHILD"
	prefix   = "fh-leftover-test"
)

func TestPidOf(t *testing.T) {
	for _, c := range []struct {
		name, prefix string
		pid          int
		ok           bool
	}{
		{"fh-shm-test-26517-3", "fh-shm-test", 26517, true},
		{"fhhandler-24754-TestScrape-run-to-completion", "fhhandler", 24754, true},
		{"fhbenchap-23314", "fhbenchap", 23314, true},
		{"fh-shm-test-26517-3.tmp.26517.x1", "fh-shm-test", 26517, true}, // a writer's temporary file, its dot trimmed
		{"fhpriv-4242-1838402", "fhpriv", 4242, true},                    // MkdirTemp's
		{"fhhandlertest-24754-T", "fhhandler", 0, false},                 // another prefix
		{"fh-shm-test-x-3", "fh-shm-test", 0, false},
		{"fh-shm-test--3", "fh-shm-test", 0, false},
		{"fh-shm-test-0-3", "fh-shm-test", 0, false},
		{"fhdemo", "fhdemo", 0, false},
		{"fhpriv1690478327", "fhpriv", 0, false}, // os.MkdirTemp's, no owner
	} {
		if pid, ok := leftover.PidOf(c.name, c.prefix); pid != c.pid || ok != c.ok {
			t.Errorf("PidOf(%q, %q) = %d, %v; want %d, %v", c.name, c.prefix, pid, ok, c.pid, c.ok)
		}
	}
}

// TestKilledOwnerChild is the child of TestKilledOwnerSwept: it makes a
// directory (MkdirTemp) and a feed file with its writer's temporary file
// (shmtest.Name), prints their paths and waits to be killed.
func TestKilledOwnerChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("the child of TestKilledOwnerSwept")
	}
	dir, err := leftover.MkdirTemp(prefix)
	if err != nil {
		t.Fatal(err)
	}
	name := shmtest.Name(t, prefix)
	paths := []string{dir, filepath.Join(dir, "feedhandler"), filepath.Join(shmtest.Dir, name), filepath.Join(shmtest.Dir, "."+name+".tmp.1.x")}
	for _, p := range paths[1:] {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println(strings.Join(paths, " "))
	time.Sleep(time.Minute) // bounded: killed long before
}

// TestKilledOwnerSwept: what a test binary killed by SIGKILL made (a
// directory under the temporary directory, a feed file under /dev/shm and
// its writer's temporary file) is removed by the next sweep of its prefix,
// even before the dead process is reaped (a zombie); what a live process
// made stays, and what carries the pid of a live process that started after
// it was last modified (a reused pid) goes.
func TestKilledOwnerSwept(t *testing.T) {
	// This process's own, live: they stay. (Made first: the first
	// MkdirTemp and Name of the prefix in a process sweep it.)
	live := leftover.TempDir(t, prefix)
	liveShm := shmtest.Path(t, prefix)
	if err := os.WriteFile(liveShm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestKilledOwnerChild$", "-test.v")
	child.Env = append(os.Environ(), childEnv+"=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := deathsig.Start(child); err != nil {
		t.Fatal(err)
	}
	var made []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && strings.HasPrefix(f[0], "/") {
			made = f
			break
		}
	}
	if made == nil {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("the child printed no paths (%v)", sc.Err())
	}
	t.Cleanup(func() {
		for _, p := range made {
			os.RemoveAll(p)
		}
	})
	child.Process.Signal(syscall.SIGKILL)
	// Sweep while the child is a zombie, then again once it is reaped.
	zombie := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			zombie = true
			break
		}
	}
	if !zombie {
		t.Fatalf("child %d not a zombie 30 s after SIGKILL", child.Process.Pid)
	}

	// A live process's pid on something last modified before it started:
	// the pid was reused, the owner is gone. The same pid on something
	// modified now stays.
	sleep := exec.Command("sleep", "60")
	if err := deathsig.Start(sleep); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	reused := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d-reused", prefix, sleep.Process.Pid))
	current := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d-current", prefix, sleep.Process.Pid))
	for _, p := range []string{reused, current} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(p) })
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(reused, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}

	for _, p := range made {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("before the sweep: %v", err)
		}
	}
	leftover.RemoveStale(os.TempDir(), prefix)
	shmtest.RemoveStale(prefix)
	for _, p := range append(made, reused) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after the sweep: %v, want it removed (its owner is gone)", p, err)
		}
	}
	for _, p := range []string{live, liveShm, current} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s after the sweep: %v, want it kept (its owner runs)", p, err)
		}
	}
	if err := child.Wait(); err == nil {
		t.Errorf("child: exit 0 after SIGKILL")
	}
}

const sweepEnv = "LEFTOVER_TEST_SWEEP"

// TestSweepChild is the child of TestSweepInPidNamespace: it sweeps the
// prefix and prints how many it removed.
func TestSweepChild(t *testing.T) {
	if os.Getenv(sweepEnv) != "1" {
		t.Skip("the child of TestSweepInPidNamespace")
	}
	fmt.Printf("removed %d\n", leftover.RemoveStale(os.TempDir(), prefix))
}

// TestSweepInPidNamespace: a test's child in a pid namespace of its own
// (the shm tests' readers and holders run so) does not see this process's
// pid, and would take every owner for gone; it removes nothing.
func TestSweepInPidNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a pid namespace (unshare --pid) needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("unshare (util-linux) not found: %v", err)
	}
	live := leftover.TempDir(t, prefix)
	cmd := exec.Command("unshare", "--pid", "--fork", os.Args[0], "-test.run=^TestSweepChild$", "-test.v")
	cmd.Env = append(os.Environ(), sweepEnv+"=1")
	out, err := deathsig.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "removed 0\n") {
		t.Errorf("the child in a pid namespace of its own says:\n%s\nwant removed 0", out)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("%s, this live process's, after the child's sweep: %v", live, err)
	}
}
