package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/handler"
)

// holdSetup makes the command's handler setup never end, as a setup of
// many seconds (gigabytes of books touched) would not within the test: it
// says so on stderr and blocks. For TestRunSignalDuringSetup's child.
func holdSetup() {
	handlerStart = func(handler.Config) (*handler.Handler, error) {
		fmt.Fprintln(os.Stderr, "test: setup held")
		select {}
	}
}

// TestRunSignalDuringSetup: a SIGTERM while the handler sets up is logged at
// once ("stopping once set up"), and a second one exits at once with status
// 130, as it does after the setup. Before, the first said nothing until the
// setup ended and the second was ignored: Ctrl-C twice during a start of
// seconds did nothing.
func TestRunSignalDuringSetup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := "feed:\n  name: fhsig\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n" +
		"receive:\n  backend: socket\nlog:\n  format: json\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "--feed", path)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1", "FEEDHANDLER_TEST_HOLD_SETUP=1")
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var log strings.Builder
	// waitLine waits for a stderr line containing s; a bound on a broken
	// command, not a timing threshold.
	waitLine := func(s string) bool {
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return false
				}
				log.WriteString(l + "\n")
				if strings.Contains(l, s) {
					return true
				}
			case <-timeout:
				return false
			}
		}
	}
	if !waitLine("test: setup held") {
		t.Fatalf("the child did not reach its setup:\n%s", log.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if !waitLine("stopping once set up") {
		t.Fatalf("SIGTERM during the setup: no 'stopping once set up' line within 20 s:\n%s", log.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() {
		for range lines {
		}
		exited <- cmd.Wait()
	}()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("second SIGTERM during the setup: %v, want exit status 130\n%s", err, log.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("second SIGTERM during the setup: still running 20 s later\n%s", log.String())
	}
}
