package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestCheck runs `feedhandler check` on this host, in a namespace lab, as
// root and as user nobody with chosen capabilities and locked-memory
// limits: its exit status and lines must say what a start would meet. For
// the locked-memory verdicts the handler is then started under the same
// user, capabilities and limit, and must fail or get through setup as the
// check said.
func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("namespaces, and running as another user with chosen capabilities, need root")
	}
	for _, tool := range []string{"setpriv", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package util-linux)", tool)
		}
	}
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fhk"})
	dir, bin := buildForNobody(t, "fhcheck")
	shmName := shmtest.Name(t, "fhcheck")
	const port = 9481
	var feedOn func(name, shmName, extra string) string
	feed := func(name, extra string) string {
		return feedOn(name, shmName, extra)
	}
	feedOn = func(name, shmName, extra string) string {
		p := filepath.Join(dir, name+".yaml")
		cfg := fmt.Sprintf(`feed: {name: checktest}
lines:
  a: {interface: %s, group: 239.77.2.1, port: 26477}
  b: {interface: %s, group: 239.77.2.2, port: 26478}
shm: {name: %s}
metrics: {listen: "127.0.0.1:%d"}
%s`, lab.DstIf, lab.DstIf, shmName, port, extra)
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// as runs bin with args in the lab's namespace: as root when caps is
	// "root", else as user nobody holding caps ("" = none), under an
	// RLIMIT_MEMLOCK of memlock bytes when it is not 0.
	as := func(caps string, memlock int, args ...string) *exec.Cmd {
		a := []string{"netns", "exec", lab.Dst}
		if memlock != 0 {
			a = append(a, "prlimit", fmt.Sprintf("--memlock=%d", memlock), "--")
		}
		if caps != "root" {
			set := "-all"
			if caps != "" {
				set = "-all,+" + strings.ReplaceAll(caps, ",", ",+")
			}
			a = append(a, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
				"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--")
		}
		return exec.Command("ip", append(a, append([]string{bin}, args...)...)...)
	}
	check := func(t *testing.T, cmd *exec.Cmd, wantCode int, want ...string) string {
		t.Helper()
		code, out, errOut := runExit(t, cmd)
		if code != wantCode {
			t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, wantCode, out, errOut)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("stdout lacks %q:\n%s", w, out)
			}
		}
		return out
	}
	xdpNeed := privilege.Required("xdp", false)
	xdpCaps := capList(xdpNeed)

	t.Run("root", func(t *testing.T) {
		f := feed("root", "")
		// Warnings (unpinned, no recovery, root without user:) but no failure.
		out := check(t, as("root", 0, "check", "--feed", f), 0,
			"ok    config    "+f, "ok    caps      backend auto: this process holds", "ok    memlock   ", "ok    metrics   metrics.listen 127.0.0.1:9481 is free",
			"warn  cores     cores.receive is not set", "warn  recovery  ", "warn  user      user: is unset")
		if strings.Contains(out, "FAIL") {
			t.Errorf("a FAIL line:\n%s", out)
		}
		check(t, as("root", 0, "check", "--strict", "--feed", f), exitNotReady)
		if out := check(t, as("root", 0, "check", "-q", "--feed", f), 0); strings.Contains(out, "ok  ") {
			t.Errorf("-q printed ok lines:\n%s", out)
		}
	})
	t.Run("config-error", func(t *testing.T) {
		f := feed("bad", "receive: {backend: dpdk}\n")
		code, _, errOut := runExit(t, as("root", 0, "check", "--feed", f))
		if code != exitConfig || !strings.Contains(errOut, "receive.backend") {
			t.Errorf("exit %d, stderr %q: want %d naming receive.backend", code, errOut, exitConfig)
		}
	})
	t.Run("live-writer-and-port", func(t *testing.T) {
		w, err := shm.Create(shm.Config{Name: shmName, Instruments: 4, Depth: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		var ln net.Listener
		if err := lab.Do(lab.Dst, func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		check(t, as("root", 0, "check", "--feed", feed("taken", "")), exitNotReady,
			fmt.Sprintf("FAIL  shm       %s: writer pid %d: shm: feed in use by a live writer", shm.Path(shmName), os.Getpid()),
			"FAIL  metrics   metrics.listen 127.0.0.1:9481: ", "address already in use")
	})
	t.Run("foreign-file", func(t *testing.T) {
		// The file the live writer above left, root's, in sticky /dev/shm:
		// user nobody can neither replace nor remove it.
		f := feed("foreign", "receive: {backend: uring}\n")
		check(t, as("", 0, "check", "--feed", f), exitNotReady,
			fmt.Sprintf("FAIL  shm       %s is owned by uid 0 and this process (uid 65534) cannot replace it", shm.Path(shmName)))
		if started, logs := startsThroughSetup(t, as("", 0, "--feed", f)); started || !strings.Contains(logs, "the existing file belongs to uid 0") {
			t.Errorf("the start got through setup (%v), or failed without naming the owner:\n%s", started, logs)
		}
	})
	t.Run("unknown-user", func(t *testing.T) {
		check(t, as("root", 0, "check", "--feed", feed("user", "user: fh-no-such-user\n")), exitNotReady,
			"FAIL  user      user fh-no-such-user: no such user")
	})
	t.Run("nobody-without-caps", func(t *testing.T) {
		fresh := shmtest.Name(t, "fhcheck")
		// xdp: the backend would not start (TestLeastPrivilege shows the
		// start failing so); auto: it would fall back.
		check(t, as("", 0, "check", "--feed", feedOn("xdp", fresh, "receive: {backend: xdp}\n")), exitNotReady,
			"FAIL  caps      backend xdp needs "+xdpNeed.String()+" and this process (uid 65534) lacks "+xdpNeed.String()+": backend xdp would not start")
		check(t, as("", 0, "check", "--feed", feedOn("auto", fresh, "")), 0,
			"warn  caps      backend auto needs", "backend auto would fall back to io_uring")
		check(t, as("", 0, "check", "--feed", feedOn("uring", fresh, "receive: {backend: uring}\n")), 0)
	})
	// 4 MiB of locked memory: a 16 MiB UMEM (the default ring) does not
	// fit, a 2 MiB one (ring_size 512) does.
	const limit = 4 << 20
	for _, c := range []struct {
		name string
		ring int
		fits bool
	}{{"memlock-16MiB", 0, false}, {"memlock-2MiB", 512, true}} {
		t.Run(c.name, func(t *testing.T) {
			extra := "receive: {backend: xdp}\n"
			if c.ring != 0 {
				extra = fmt.Sprintf("receive: {backend: xdp, ring_size: %d}\n", c.ring)
			}
			f := feedOn(c.name, shmtest.Name(t, "fhcheck"), extra)
			if c.fits {
				check(t, as(xdpCaps, limit, "check", "--feed", f), 0, "ok    memlock   the AF_XDP UMEMs pin 2 MiB, within RLIMIT_MEMLOCK 4 MiB")
			} else {
				check(t, as(xdpCaps, limit, "check", "--feed", f), exitNotReady,
					"FAIL  memlock   the AF_XDP UMEMs pin 16 MiB (1 interface(s) x 1 queue(s) x receive.ring_size frames of 4 KiB) and this process's RLIMIT_MEMLOCK is 4 MiB: backend xdp would not start")
			}
			// The real start under the same user, capabilities and limit.
			started, logs := startsThroughSetup(t, as(xdpCaps, limit, "--feed", f))
			if started != c.fits {
				t.Errorf("check said fits=%v, the start got through setup: %v\n%s", c.fits, started, logs)
			}
			if !c.fits && !strings.Contains(logs, "RLIMIT_MEMLOCK") {
				t.Errorf("the start failed for another reason:\n%s", logs)
			}
		})
	}
}

// startsThroughSetup starts the handler and reports whether it logged
// "privileges after setup" (everything opened, privileges shed) before it
// exited or 20 s passed; it then stops it.
func startsThroughSetup(t *testing.T, cmd *exec.Cmd) (bool, string) {
	t.Helper()
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var logs strings.Builder
	started := false
	timeout := time.After(20 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			logs.WriteString(l + "\n")
			if strings.Contains(l, "privileges after setup") {
				started = true
				break wait
			}
		case <-timeout:
			break wait
		}
	}
	cmd.Process.Kill()
	go func() {
		for range lines {
		}
	}()
	cmd.Wait()
	return started, logs.String()
}
