package deathsig

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// printEnv, set, makes the test binary print its parent-death signal and
// whether it leads its process group, and exit.
const printEnv = "DEATHSIG_TEST_PRINT"

func TestMain(m *testing.M) {
	if os.Getenv(printEnv) == "1" {
		var sig int32
		err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0)
		pgid, _ := unix.Getpgid(0)
		fmt.Printf("pdeathsig %d %v leader %v\n", sig, err, pgid == os.Getpid())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestStartSetsDeathsig: the child's parent-death signal is SIGKILL, and
// the rest of the caller's SysProcAttr (here Setpgid) is kept.
func TestStartSetsDeathsig(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), printEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := Output(cmd)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := fmt.Sprintf("pdeathsig %d <nil> leader true\n", syscall.SIGKILL); string(out) != want {
		t.Errorf("child says %q, want %q", out, want)
	}
}

// TestStartRefusesAnotherNetns: Start on a thread switched into another
// network namespace fails and starts nothing, rather than start the child
// in the process's namespace (the forking thread's).
func TestStartRefusesAnotherNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a network namespace of the test's own needs root (CAP_SYS_ADMIN)")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread in its own namespace ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		cmd := exec.Command("true")
		err := Start(cmd)
		if err == nil {
			cmd.Wait()
			err = errors.New("started")
		} else if cmd.Process != nil {
			err = fmt.Errorf("%v, yet started pid %d", err, cmd.Process.Pid)
		}
		errc <- err
	}()
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "run it under ip netns exec") {
		t.Errorf("Start on a thread in another network namespace: %v, want a refusal", err)
	}
	// And from an ordinary thread it starts.
	if err := Run(exec.Command("true")); err != nil {
		t.Errorf("Start after: %v", err)
	}
}

// TestUserChangeKeepsDeathsig: a child that runs as another user keeps its
// parent-death signal when setpriv switches it (SetprivUser's flags) and
// when exec.Cmd's Credential does. setpriv --reuid without --pdeathsig keep
// clears it (the kernel does on a uid change), and that child outlived a
// killed parent.
func TestUserChangeKeepsDeathsig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to user nobody needs root")
	}
	// The go test build directory is root's alone: copy the binary where
	// nobody can run it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // TempDir's and its parent's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "deathsig.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("pdeathsig %d <nil> leader false\n", syscall.SIGKILL)
	run := func(name string, cmd *exec.Cmd) {
		t.Helper()
		cmd.Env = append(os.Environ(), printEnv+"=1")
		out, err := Output(cmd)
		if err != nil {
			t.Fatalf("%s: %v: %s", name, err, out)
		}
		if string(out) != want {
			t.Errorf("%s: child says %q, want %q", name, out, want)
		}
	}
	cred := exec.Command(bin)
	cred.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	run("Credential", cred)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skipf("no setpriv (util-linux): %v", err)
	}
	if !setprivKeeps() {
		t.Skip("setpriv has no --pdeathsig (util-linux before 2.33)")
	}
	run("setpriv "+strings.Join(SetprivUser("65534", "65534"), " "),
		exec.Command("setpriv", append(SetprivUser("65534", "65534"), bin)...))
}

// TestOutputRefusesSetStdout: Output and CombinedOutput refuse, as
// exec.Cmd's do, a command whose output the caller set, starting nothing,
// rather than replace the caller's writer.
func TestOutputRefusesSetStdout(t *testing.T) {
	for name, f := range map[string]func(*exec.Cmd) ([]byte, error){"Output": Output, "CombinedOutput": CombinedOutput} {
		var mine strings.Builder
		cmd := exec.Command("echo", "lost")
		cmd.Stdout = &mine
		_, err := f(cmd)
		if err == nil || cmd.Process != nil {
			t.Errorf("%s with Stdout set: %v, started %v, want a refusal", name, err, cmd.Process != nil)
		}
		if mine.Len() != 0 {
			t.Errorf("%s with Stdout set: the caller's writer got %q", name, mine.String())
		}
	}
	cmd := exec.Command("true")
	cmd.Stderr = os.Stderr
	if _, err := CombinedOutput(cmd); err == nil || cmd.Process != nil {
		t.Errorf("CombinedOutput with Stderr set: %v, want a refusal", err)
	}
}
