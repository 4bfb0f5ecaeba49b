package main

import (
	"bufio"
	"context"
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
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// holdSetup makes the command's handler setup wait, as a setup of many
// seconds (gigabytes of books touched) would within the test: it says so
// on stderr and blocks. step: until the context ends, then the real
// setup goes on (handler.StartContext), as a signal between two steps
// finds it; else for ever, as a step that is not cut short (one shard's
// books) does. For TestRunSignalDuringSetup's child.
func holdSetup(step bool) {
	handlerStart = func(ctx context.Context, cfg handler.Config) (*handler.Handler, error) {
		fmt.Fprintln(os.Stderr, "test: setup held")
		if !step {
			select {}
		}
		<-ctx.Done()
		return handler.StartContext(ctx, cfg)
	}
}

// TestRunSignalDuringSetup: a SIGTERM while the handler sets up is logged at
// once ("stopping at its next step") and stops the setup there, undone
// (the shm file removed), exit 0 ("stopped during setup"); during a step
// that is not cut short, a second one exits at once with status 130, as it
// does after the setup. Before 293f1e6 the first said nothing until the
// setup ended and the second was ignored; before the step checks
// (handler.StartContext) the whole setup ran first, receivers opened and
// the snapshot server logged into, and an operator who signalled again
// meanwhile got the exit at once, which leaves the shm file behind.
func TestRunSignalDuringSetup(t *testing.T) {
	ns := loNetns(t, "fhsig") // a setup that goes on opens the line's socket there
	name := shmtest.Name(t, "fhsig")
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n" +
		"receive:\n  backend: socket\nshm:\n  name: " + name + "\nlog:\n  format: json\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hold string
		signals    int
		wantLine   string
		wantExit   int
	}{
		{"a step under way, signalled twice", "1", 2, "second signal: exiting now", 130},
		{"between steps", "step", 1, "stopped during setup", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := inNetns(t, ns, os.Args[0], "--feed", path)
			cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1", "FEEDHANDLER_TEST_HOLD_SETUP="+tc.hold)
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
			// waitLine waits for a stderr line containing s; a bound on a
			// broken command, not a timing threshold.
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
			if !waitLine("signal during setup: stopping at its next step") {
				t.Fatalf("SIGTERM during the setup: no 'stopping at its next step' line within 20 s:\n%s", log.String())
			}
			if tc.signals == 2 {
				cmd.Process.Signal(syscall.SIGTERM)
			}
			if !waitLine(tc.wantLine) {
				t.Fatalf("%d SIGTERM during the setup: no %q line within 20 s:\n%s", tc.signals, tc.wantLine, log.String())
			}
			exited := make(chan error, 1)
			go func() {
				for range lines {
				}
				exited <- cmd.Wait()
			}()
			select {
			case err := <-exited:
				var ee *exec.ExitError
				code := 0
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tc.wantExit {
					t.Fatalf("%d SIGTERM during the setup: exit status %d, want %d\n%s", tc.signals, code, tc.wantExit, log.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%d SIGTERM during the setup: still running 20 s later\n%s", tc.signals, log.String())
			}
			if tc.wantExit == 0 {
				if _, err := os.Stat(shm.Path(name)); !os.IsNotExist(err) {
					t.Errorf("stopped during setup: shm file %s left (stat: %v)", shm.Path(name), err)
				}
			}
		})
	}
}
