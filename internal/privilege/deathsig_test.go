package privilege

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/marketfeed/feedhandler/internal/deathsig"

	"golang.org/x/sys/unix"
)

// switchEnv, in a test binary this package's tests start, makes it switch
// to user nobody and then print its parent-death signal ("report"), or
// print its pid and wait for its parent's death ("wait"); parentEnv makes
// it start a "wait" child and wait for it.
const (
	switchEnv = "PRIVILEGE_TEST_SWITCH"
	parentEnv = "PRIVILEGE_TEST_PARENT"
)

func TestMain(m *testing.M) {
	switch os.Getenv(switchEnv) {
	case "report":
		if _, _, err := SwitchUser("nobody"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		sig, err := heldDeathsig()
		fmt.Printf("uid %d pdeathsig %d %v\n", os.Getuid(), sig, err)
		os.Exit(0)
	case "wait":
		if _, _, err := SwitchUser("nobody"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Printf("switched %d\n", os.Getpid())
		time.Sleep(5 * time.Minute) // bounded: the test kills it when it outlives its parent
		os.Exit(0)
	}
	if os.Getenv(parentEnv) != "" {
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), switchEnv+"=wait", parentEnv+"=")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := deathsig.Run(c); err != nil {
			fmt.Println(err)
		}
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// heldDeathsig is the parent-death signal of deathsig.OnThread's thread,
// where keepDeathsig sets it.
func heldDeathsig() (sig int, err error) {
	deathsig.OnThread(func() {
		var s int32
		err = unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&s)), 0, 0, 0)
		sig = int(s)
	})
	return sig, err
}

// TestSwitchUserKeepsDeathsig: a child started as root with a parent-death
// signal (deathsig.Start's SIGKILL) that switches to nobody still has it.
func TestSwitchUserKeepsDeathsig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to user nobody needs root")
	}
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), switchEnv+"=report")
	out, err := deathsig.Output(c)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := fmt.Sprintf("uid 65534 pdeathsig %d <nil>\n", syscall.SIGKILL); string(out) != want {
		t.Errorf("child says %q, want %q", out, want)
	}
}

// TestSwitchUserDiesWithParent: a child that switched to nobody dies when
// its parent is killed after the switch.
func TestSwitchUserDiesWithParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to user nobody needs root")
	}
	parent := exec.Command(os.Args[0])
	parent.Env = append(os.Environ(), parentEnv+"=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := deathsig.Start(parent); err != nil {
		t.Fatal(err)
	}
	defer parent.Wait()
	defer parent.Process.Kill()
	linec := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		linec <- line
	}()
	var line string
	select {
	case line = <-linec:
	case <-time.After(2 * time.Minute): // a bound, not a threshold: the child prints at once
		t.Fatal("no line from the child in 2 minutes")
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "switched "))
	if err != nil {
		t.Fatalf("child says %q, want 'switched PID'", line)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// A bound, not a threshold: without the signal the child sleeps 5 minutes.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 30_000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd of %d: %v", pid, err)
		}
		if n == 0 {
			unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
			t.Fatalf("child %d, switched to nobody, still runs %.2fs after its parent was killed", pid, time.Since(killed).Seconds())
		}
		return
	}
}
