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

func TestOwnerOf(t *testing.T) {
	for _, c := range []struct {
		name, prefix string
		owner        leftover.Owner
		ok           bool
	}{
		{"fh-shm-test-26517-s4242-3", "fh-shm-test", leftover.Owner{Pid: 26517, Start: 4242}, true},
		{"fh-shm-test-26517-s4242-3.tmp.26517.x1", "fh-shm-test", leftover.Owner{Pid: 26517, Start: 4242}, true}, // a writer's temporary file, its dot trimmed
		{"fhpriv-4242-s17-1838402", "fhpriv", leftover.Owner{Pid: 4242, Start: 17}, true},                        // MkdirTemp's
		{"fhbenchap-23314-s99", "fhbenchap", leftover.Owner{Pid: 23314, Start: 99}, true},
		// Names without the start (the format before it): the pid alone.
		{"fh-shm-test-26517-3", "fh-shm-test", leftover.Owner{Pid: 26517}, true},
		{"fhhandler-24754-TestScrape-run-to-completion", "fhhandler", leftover.Owner{Pid: 24754}, true},
		{"fhbenchap-23314", "fhbenchap", leftover.Owner{Pid: 23314}, true},
		{"fh-shm-test-26517-3.tmp.26517.x1", "fh-shm-test", leftover.Owner{Pid: 26517}, true},
		{"fhpriv-4242-1838402", "fhpriv", leftover.Owner{Pid: 4242}, true},
		{"fhpriv-4242-s-1", "fhpriv", leftover.Owner{Pid: 4242}, true},   // no digits after s: not a start
		{"fhpriv-4242-s0-1", "fhpriv", leftover.Owner{Pid: 4242}, true},  // no process starts at tick 0
		{"fhpriv-4242-sx1-1", "fhpriv", leftover.Owner{Pid: 4242}, true}, // not digits
		{"fhhandlertest-24754-T", "fhhandler", leftover.Owner{}, false},  // another prefix
		{"fh-shm-test-x-3", "fh-shm-test", leftover.Owner{}, false},
		{"fh-shm-test--3", "fh-shm-test", leftover.Owner{}, false},
		{"fh-shm-test-0-3", "fh-shm-test", leftover.Owner{}, false},
		{"fh-shm-test-s12-3", "fh-shm-test", leftover.Owner{}, false},
		{"fhdemo", "fhdemo", leftover.Owner{}, false},
		{"fhpriv1690478327", "fhpriv", leftover.Owner{}, false}, // os.MkdirTemp's, no owner
	} {
		if o, ok := leftover.OwnerOf(c.name, c.prefix); o != c.owner || ok != c.ok {
			t.Errorf("OwnerOf(%q, %q) = %+v, %v; want %+v, %v", c.name, c.prefix, o, ok, c.owner, c.ok)
		}
	}
}

// TestOwnerRoundTrip: what Self writes, ParseOwner and OwnerOf read back,
// and this process is not Gone.
func TestOwnerRoundTrip(t *testing.T) {
	self := leftover.Self()
	if self.Pid != os.Getpid() || self.Start == 0 {
		t.Fatalf("Self() = %+v, want pid %d and its start", self, os.Getpid())
	}
	if o, rest, ok := leftover.ParseOwner(self.String()); o != self || rest != "" || !ok {
		t.Errorf("ParseOwner(%q) = %+v, %q, %v; want %+v", self, o, rest, ok, self)
	}
	if o, ok := leftover.OwnerOf(prefix+"-"+self.String()+"-x", prefix); o != self || !ok {
		t.Errorf("OwnerOf = %+v, %v; want %+v", o, ok, self)
	}
	if leftover.Gone(self) {
		t.Errorf("Gone(Self()) = true")
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
// made stays.
func TestKilledOwnerSwept(t *testing.T) {
	// This process's own, live: they stay. (Made first: the first
	// MkdirTemp and Name of the prefix in a process sweep it.)
	live := leftover.TempDir(t, prefix)
	liveShm := shmtest.Path(t, prefix)
	if err := os.WriteFile(liveShm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	child, made := killedChild(t)
	leftover.RemoveStale(os.TempDir(), prefix)
	shmtest.RemoveStale(prefix)
	for _, p := range made {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after the sweep: %v, want it removed (its owner is gone)", p, err)
		}
	}
	for _, p := range []string{live, liveShm} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s after the sweep: %v, want it kept (its owner runs)", p, err)
		}
	}
	if err := child.Wait(); err == nil {
		t.Errorf("child: exit 0 after SIGKILL")
	}
}

// killedChild starts TestKilledOwnerChild, reads the paths it made,
// kills it with SIGKILL and returns once it is a zombie (not reaped: the
// caller Waits), with the paths, which it checks exist and removes at the
// test's cleanup.
func killedChild(t *testing.T) (*exec.Cmd, []string) {
	t.Helper()
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
	for _, p := range made {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("before the sweep: %v", err)
		}
	}
	return child, made
}

// TestReusedPidSwept: a name carrying the pid of a live process but
// another start tick (the pid was reused since its owner died) goes; one
// carrying the live process's pid and start stays whatever its
// modification time (an hour before or after now: the wall clock stepped,
// which before made a live owner look gone, the start reckoned as now less
// the time since boot); one of the pid alone (the old format) stays too.
func TestReusedPidSwept(t *testing.T) {
	sleep := exec.Command("sleep", "60")
	if err := deathsig.Start(sleep); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	owner, err := leftover.Process(sleep.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	reused := owner
	reused.Start-- // the pid's earlier holder
	dir := func(o leftover.Owner, tail string) string {
		p := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%s-%s", prefix, o, tail))
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(p) })
		return p
	}
	gone := dir(reused, "reused")
	kept := []string{dir(owner, "past"), dir(owner, "future"), dir(owner, "now"), dir(leftover.Owner{Pid: owner.Pid}, "oldformat")}
	for i, shift := range []time.Duration{-time.Hour, time.Hour} {
		mt := time.Now().Add(shift)
		if err := os.Chtimes(kept[i], mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(kept[3], hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	leftover.RemoveStale(os.TempDir(), prefix)
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("%s after the sweep: %v, want it removed (pid %d started at tick %d now)", gone, err, owner.Pid, owner.Start)
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s after the sweep: %v, want it kept (its owner runs)", p, err)
		}
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
