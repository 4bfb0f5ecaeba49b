package main

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/preflight"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestCheck runs `feedhandler check` on this host, in a namespace lab, as
// root and as a user of its own (ownUID) with chosen capabilities and
// locked-memory limits: its exit status and lines must say what a start would meet. For
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
	// as runs bin with args in the lab's namespace (bounded by t, the
	// subtest that waits for it): as root when caps is
	// "root", else as the test's own user (uid and gid uid) holding caps
	// ("" = none), under an RLIMIT_MEMLOCK of memlock bytes when it is not
	// 0. Not nobody: locked memory is charged per user, over all its
	// processes, and any test of the host may run a feedhandler as nobody
	// meanwhile (TestLeastPrivilege, TestRunLinkEvents, this test in
	// another run); the check rightly counts it ('warn memlock ... this
	// uid runs other feedhandler processes (pids [N])' where
	// memlock-same-user wanted ok), and its UMEM counts against the
	// memlock starts' limit.
	uid := ownUID(t)
	as := func(t *testing.T, caps string, memlock int, args ...string) *child {
		a := []string{"netns", "exec", lab.Dst}
		if memlock != 0 {
			a = append(a, "prlimit", fmt.Sprintf("--memlock=%d", memlock), "--")
		}
		if caps != "root" {
			set := "-all"
			if caps != "" {
				set = "-all,+" + strings.ReplaceAll(caps, ",", ",+")
			}
			a = append(append(append(a, "setpriv"), deathsig.SetprivUser(strconv.Itoa(uid), strconv.Itoa(uid))...), "--no-new-privs",
				"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--")
		}
		return boundedCommand(t, "ip", append(a, append([]string{bin}, args...)...)...)
	}
	check := func(t *testing.T, cmd *child, wantCode int, want ...string) string {
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
		out := check(t, as(t, "root", 0, "check", "--feed", f), 0,
			"ok    config    "+f, "ok    caps      backend auto: this process holds", "ok    memlock   ", "ok    metrics   metrics.listen 127.0.0.1:9481 is free",
			"warn  cores     cores.receive is not set", "warn  recovery  ", "warn  user      user: is unset")
		if strings.Contains(out, "FAIL") {
			t.Errorf("a FAIL line:\n%s", out)
		}
		// The metadata probe, as bpf.ProbeMeta answers it in this process.
		wantMeta := "ok    xdp-meta  "
		if errors.Is(bpf.ProbeMeta(), bpf.ErrNoMetaHelper) {
			wantMeta = "warn  xdp-meta  "
		}
		if !strings.Contains(out, wantMeta) {
			t.Errorf("no %q line:\n%s", wantMeta, out)
		}
		// What the veth's driver reports (netdev netlink), against what the
		// start then does: native XDP attaches, zero-copy is refused.
		if !strings.Contains(out, "warn  driver    "+lab.DstIf+": the driver reports no AF_XDP zero-copy") || strings.Contains(out, "no native XDP") {
			t.Errorf("driver lines: want no zero-copy and native XDP:\n%s", out)
		}
		started, logs := startsThroughSetup(t, as(t, "root", 0, "--feed", f))
		if !started || !strings.Contains(logs, "driver refused zero-copy") || strings.Contains(logs, "native mode refused") {
			t.Errorf("the start (through setup: %v) did not bind as the check said (native XDP, zero-copy refused):\n%s", started, logs)
		}
		check(t, as(t, "root", 0, "check", "--strict", "--feed", f), exitNotReady)
		if out := check(t, as(t, "root", 0, "check", "-q", "--feed", f), 0); strings.Contains(out, "ok  ") {
			t.Errorf("-q printed ok lines:\n%s", out)
		}
	})
	t.Run("config-error", func(t *testing.T) {
		f := feed("bad", "receive: {backend: dpdk}\n")
		code, _, errOut := runExit(t, as(t, "root", 0, "check", "--feed", f))
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
		check(t, as(t, "root", 0, "check", "--feed", feed("taken", "")), exitNotReady,
			fmt.Sprintf("FAIL  shm       %s: writer pid %d: shm: feed in use by a live writer", shm.Path(shmName), os.Getpid()),
			"FAIL  metrics   metrics.listen 127.0.0.1:9481: ", "address already in use")
	})
	t.Run("foreign-file", func(t *testing.T) {
		// The file the live writer above left, root's, in sticky /dev/shm:
		// the test's user can neither replace nor remove it, and no
		// restart changes that. A config error (config.CheckHost), for
		// check and run alike: exit 78, file:line: shm.name (check's on
		// a FAIL line, with the host's findings). Before, check
		// printed a FAIL line and exited 1 where run exited 78. So is an
		// shm.group the user is not in (chown(2) to it is refused).
		f := feed("foreign", "receive: {backend: uring}\n")
		g := feedOn("shm-group", shmtest.Name(t, "fhcheck"), "receive: {backend: uring}\n")
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(g, []byte(strings.Replace(string(b), "}\nmetrics:", ", group: root}\nmetrics:", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ feed, want string }{
			{f, fmt.Sprintf(":5: shm.name: %s is owned by uid 0 and this process (uid %d) cannot replace it", shm.Path(shmName), uid)},
			{g, fmt.Sprintf(":5: shm.group: root (gid 0): this process (uid %d) is not a member and lacks cap_chown", uid)},
		} {
			for _, args := range [][]string{{"check", "--feed", tc.feed}, {"--feed", tc.feed}} {
				code, out, errOut := runExit(t, as(t, "", 0, args...))
				if errOut = out + errOut; code != exitConfig || !strings.Contains(errOut, tc.feed+tc.want) {
					t.Errorf("%v: exit %d, want %d with %q:\n%s", args, code, exitConfig, tc.feed+tc.want, errOut)
				}
			}
		}
	})
	t.Run("unknown-user", func(t *testing.T) {
		// A config error (config.CheckHost), as run reports it before
		// starting anything: exit 78, file:line: field.
		f := feed("user", "user: fh-no-such-user\n")
		for _, args := range [][]string{{"check", "--feed", f}, {"--feed", f}} {
			code, out, errOut := runExit(t, as(t, "root", 0, args...))
			errOut = out + errOut // check's FAIL line on stdout, run's error on stderr
			if want := ": user: no such user named \"fh-no-such-user\""; code != exitConfig || !strings.Contains(errOut, f+":") || !strings.Contains(errOut, want) {
				t.Errorf("%v: exit %d, want %d with %q:\n%s", args, code, exitConfig, want, errOut)
			}
		}
	})
	t.Run("user-without-caps", func(t *testing.T) {
		fresh := shmtest.Name(t, "fhcheck")
		// xdp: the backend would not start (TestLeastPrivilege shows the
		// start failing so); auto: it would fall back.
		check(t, as(t, "", 0, "check", "--feed", feedOn("xdp", fresh, "receive: {backend: xdp}\n")), exitConfig,
			fmt.Sprintf("FAIL  caps      backend xdp needs %s and this process (uid %d) lacks %[1]s: backend xdp would not start", xdpNeed, uid))
		check(t, as(t, "", 0, "check", "--feed", feedOn("auto", fresh, "")), 0,
			"warn  caps      backend auto needs", "backend auto would fall back to io_uring")
		check(t, as(t, "", 0, "check", "--feed", feedOn("uring", fresh, "receive: {backend: uring}\n")), 0)
	})
	t.Run("memlock-same-user", func(t *testing.T) {
		// Locked memory is charged per user: with another handler of the
		// same uid running, a UMEM that fits the limit alone is not ok.
		f := feedOn("same-user-xdp", shmtest.Name(t, "fhcheck"), "receive: {backend: xdp, ring_size: 512}\n")
		check(t, as(t, xdpCaps, 4<<20, "check", "--feed", f), 0, "ok    memlock   the AF_XDP UMEMs pin 2 MiB, within RLIMIT_MEMLOCK 4 MiB")
		other := feedOn("same-user-other", shmtest.Name(t, "fhcheck"), "receive: {backend: uring}\n")
		b, err := os.ReadFile(other)
		if err != nil {
			t.Fatal(err)
		}
		// Its own metrics port: the check's must stay free.
		if err := os.WriteFile(other, []byte(strings.Replace(string(b), fmt.Sprint(port), fmt.Sprint(port+1), 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		started, logs, stop := startHandler(t, as(t, "", 0, "--feed", other))
		defer stop()
		if !started {
			t.Fatalf("the other handler did not start:\n%s", logs)
		}
		check(t, as(t, xdpCaps, 4<<20, "check", "--feed", f), 0, "warn  memlock   the AF_XDP UMEMs pin 2 MiB, within RLIMIT_MEMLOCK 4 MiB, but", "this uid runs other feedhandler processes")
		// A 4 MiB UMEM fits the 4 MiB limit alone, not beside the other
		// handler's io_uring rings: the start fails at receive.backend
		// saying so, exit 1 (a restart starts once the other stops), and
		// auto does not fall back on it. Before, the bare ENOBUFS.
		full := feedOn("same-user-full", shmtest.Name(t, "fhcheck"), "receive: {ring_size: 1024}\n")
		check(t, as(t, xdpCaps, 4<<20, "check", "--feed", full), 0, "warn  memlock   the AF_XDP UMEMs pin 4 MiB, within RLIMIT_MEMLOCK 4 MiB, but")
		started, logs = startsThroughSetup(t, as(t, xdpCaps, 4<<20, "--feed", full))
		want := full + ": receive.backend: start handler: open receiver (auto): open xdp backend: " // no line: auto is the default
		if started || !strings.Contains(logs, want) || !strings.Contains(logs, "that fits alone, so locked memory the uid holds elsewhere takes the rest") ||
			strings.Contains(logs, "no restart changes") {
			t.Errorf("a UMEM that fits the limit alone, beside another handler of the uid: started %v, want %q saying it fits alone:\n%s", started, want, logs)
		}
	})
	// Verdicts against real starts under the same user, capabilities and
	// limit: where the check FAILs, the start must fail (or, for
	// SCHED_FIFO, run without it) for the reason the check gives; where it
	// passes, the start must get through setup. 4 MiB of locked memory: a
	// 16 MiB UMEM (the default ring) does not fit, a 2 MiB one
	// (ring_size 512) does.
	const limit = 4 << 20
	for _, c := range []struct {
		name, caps, extra string
		memlock           int    // RLIMIT_MEMLOCK; 0 = limit
		fail              string // the FAIL line's start; "" = no FAIL line
		refused           bool   // a FAIL run refuses as a config error: check exits 78 too
		startErr          string // in the start's log when it fails; "" = it gets through setup
		warn, startLog    string // a warn line, and what the start's log then holds
	}{
		{name: "memlock-16MiB-xdp", caps: xdpCaps, extra: "receive: {backend: xdp}\n", refused: true,
			fail:     "FAIL  memlock   the AF_XDP UMEMs pin 16 MiB (1 interface(s) x 1 queue(s) x receive.ring_size frames of 4 KiB) and this process's RLIMIT_MEMLOCK is 4 MiB, without cap_ipc_lock: backend xdp would not start (raise it: LimitMEMLOCK= in the unit, ulimit -l; or grant cap_ipc_lock",
			startErr: "receive.backend: start handler: open xdp backend: interface " + lab.DstIf + ": open xsk on ifindex"},
		// auto falls back to io_uring on the UMEM's ENOBUFS, saying why.
		// Before, the check said FAIL and the start exited 1.
		{name: "memlock-16MiB-auto", caps: xdpCaps,
			warn:     "warn  memlock   the AF_XDP UMEMs pin 16 MiB (1 interface(s) x 1 queue(s) x receive.ring_size frames of 4 KiB) and this process's RLIMIT_MEMLOCK is 4 MiB, without cap_ipc_lock: backend auto would fall back to io_uring (raise it: LimitMEMLOCK= in the unit, ulimit -l; or grant cap_ipc_lock",
			startLog: "AF_XDP charges its UMEMs (16 MiB) to RLIMIT_MEMLOCK, 4096 KiB here"},
		{name: "memlock-2MiB", caps: xdpCaps, extra: "receive: {backend: xdp, ring_size: 512}\n"},
		// What the kernel charges is the UMEM, to the page: a limit of
		// exactly rx.XDPLockedBytes starts, one page less does not.
		{name: "memlock-exact", caps: xdpCaps, extra: "receive: {backend: xdp, ring_size: 512}\n", memlock: 2 << 20},
		{name: "memlock-page-short", caps: xdpCaps, extra: "receive: {backend: xdp, ring_size: 512}\n", memlock: 2<<20 - 4096, refused: true,
			fail: "FAIL  memlock   the AF_XDP UMEMs pin 2 MiB", startErr: "RLIMIT_MEMLOCK"},
		// io_uring charges its rings (rx.UringLockedBytes: 208 KiB at the
		// default ring) to RLIMIT_MEMLOCK without cap_ipc_lock: check
		// said nothing of it, and the start exited 78 (uring) or went
		// on to the sockets (auto).
		{name: "memlock-64KiB-uring", extra: "receive: {backend: uring}\n", memlock: 64 << 10, refused: true,
			fail:     "FAIL  memlock   the io_uring rings pin 208 KiB (4096 buffers, receive.ring_size) and this process's RLIMIT_MEMLOCK is 64 KiB, without cap_ipc_lock: backend uring would not start",
			startErr: "io_uring charges its rings to RLIMIT_MEMLOCK, 64 KiB here"},
		{name: "memlock-64KiB-auto", memlock: 64 << 10,
			warn:     "warn  memlock   the io_uring rings pin 208 KiB (4096 buffers, receive.ring_size) and this process's RLIMIT_MEMLOCK is 64 KiB, without cap_ipc_lock: backend auto, falling back from AF_XDP, would fall back to the sockets (recvmmsg) too",
			startLog: "io_uring charges its rings to RLIMIT_MEMLOCK, 64 KiB here"},
		{name: "memlock-uring-exact", extra: "receive: {backend: uring}\n", memlock: 208 << 10},
		// The veth's driver reports no AF_XDP zero-copy.
		{name: "zero-copy-on", caps: "root", extra: "receive: {backend: xdp, zero_copy: \"on\"}\n", refused: true,
			fail: "FAIL  driver    " + lab.DstIf + ": the driver reports no AF_XDP zero-copy", startErr: "operation not supported"},
		// SO_PREFER_BUSY_POLL needs cap_net_admin on every backend.
		{name: "busy-poll-without-net_admin", extra: "receive: {busy_poll: true}\n", refused: true,
			fail: "FAIL  caps      backend auto needs", startErr: "SO_PREFER_BUSY_POLL"},
		// SCHED_FIFO refused: the start goes on under normal scheduling.
		{name: "rt-priority-refused", extra: "receive: {backend: uring}\ncores: {receive: 0, rt_priority: 10}\n",
			fail: "FAIL  realtime  cores.rt_priority 10: operation not permitted (priority 10 needs cap_sys_nice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := feedOn(c.name, shmtest.Name(t, "fhcheck"), c.extra)
			wantCode := 0
			if c.fail != "" {
				wantCode = exitNotReady
			}
			if c.refused {
				wantCode = exitConfig
			}
			lim := cmp.Or(c.memlock, limit)
			out := check(t, as(t, c.caps, lim, "check", "--feed", f), wantCode, c.fail, c.warn)
			if c.fail == "" && strings.Contains(out, "FAIL") {
				t.Errorf("a FAIL line:\n%s", out)
			}
			started, logs := startsThroughSetup(t, as(t, c.caps, lim, "--feed", f))
			switch {
			case c.startErr == "" && !started:
				t.Errorf("the check passed, the start did not get through setup:\n%s", logs)
			case c.startLog != "" && !strings.Contains(logs, c.startLog):
				t.Errorf("the start's log lacks %q:\n%s", c.startLog, logs)
			case c.startErr != "" && (started || !strings.Contains(logs, c.startErr)):
				t.Errorf("the check failed with %q; the start got through setup (%v) or failed without %q:\n%s", c.fail, started, c.startErr, logs)
			case strings.HasPrefix(c.name, "rt-") && !strings.Contains(logs, "rt_priority_asked"):
				t.Errorf("the start did not report SCHED_FIFO refused:\n%s", logs)
			}
		})
	}
}

// ownUID returns a uid for this test alone: 1,000,000 plus this process's
// pid (no two live test processes share it), after checking that no
// process runs under it.
func ownUID(t *testing.T) int {
	t.Helper()
	uid := 1_000_000 + os.Getpid()
	m, _ := filepath.Glob("/proc/[0-9]*/status")
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if _, v, _ := strings.Cut(string(b), "\nUid:\t"); strings.HasPrefix(v, strconv.Itoa(uid)+"\t") {
			t.Fatalf("uid %d, meant for this test alone, runs %s", uid, filepath.Dir(p))
		}
	}
	return uid
}

// startsThroughSetup starts the handler and reports whether it logged
// "privileges after setup" (everything opened, privileges shed) before it
// exited or 20 s passed; it then stops it.
func startsThroughSetup(t *testing.T, cmd *child) (bool, string) {
	t.Helper()
	started, logs, stop := startHandler(t, cmd)
	stop()
	return started, logs
}

// startHandler is startsThroughSetup without the stop: the caller calls
// stop.
func startHandler(t *testing.T, cmd *child) (started bool, logs string, stop func()) {
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
	var b strings.Builder
	timeout := time.After(20 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			b.WriteString(l + "\n")
			if strings.Contains(l, "privileges after setup") {
				started = true
				break wait
			}
		case <-timeout:
			break wait
		}
	}
	go func() {
		for range lines {
		}
	}()
	return started, b.String(), func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// TestCheckExitLineAgreesWithSummary: the line check prints on stderr when
// it exits 1 counts what its summary on stdout does; with --strict and
// warnings alone it said "N check(s) failed" under "0 failed, N
// warning(s)".
func TestCheckExitLineAgreesWithSummary(t *testing.T) {
	cfg := &config.Config{}
	warn := preflight.Finding{Level: preflight.Warn, Topic: "cores", Msg: "not set"}
	fail := preflight.Finding{Level: preflight.Fail, Topic: "shm", Msg: "live writer"}
	refused := preflight.Finding{Level: preflight.Fail, Topic: "memlock", Msg: "too low", Config: true}
	ok := preflight.Finding{Level: preflight.OK, Topic: "shm", Msg: "fine"}
	for _, tc := range []struct {
		name     string
		findings []preflight.Finding
		strict   bool
		want     string // the error; "" for none
	}{
		{"warnings", []preflight.Finding{warn, warn, ok}, false, ""},
		{"warnings strict", []preflight.Finding{warn, warn, ok}, true, "0 check(s) failed and 2 warned (--strict fails warnings too)"},
		{"failure", []preflight.Finding{fail, warn, ok}, false, "1 check(s) failed"},
		{"failure strict", []preflight.Finding{fail, warn, ok}, true, "1 check(s) failed and 1 warned (--strict fails warnings too)"},
		{"failure strict without warnings", []preflight.Finding{fail, ok}, true, "1 check(s) failed"},
		// A FAIL run refuses as a config error: exit 78, as run's.
		{"config failure", []preflight.Finding{fail, refused, warn}, true, "2 check(s) failed (1 that run refuses as a config error, exit 78: no restart fixes it) and 1 warned (--strict fails warnings too)"},
	} {
		var out strings.Builder
		err := printChecks(&out, cfg, tc.findings, tc.strict, false)
		got := ""
		if err != nil {
			got = err.Error()
			code := exitNotReady
			if strings.Contains(tc.name, "config") {
				code = exitConfig
			}
			var ec interface{ ExitCode() int }
			if !errors.As(err, &ec) || ec.ExitCode() != code {
				t.Errorf("%s: %v: not exit %d", tc.name, err, code)
			}
		}
		if got != tc.want {
			t.Errorf("%s: check's error %q, want %q; its summary:\n%s", tc.name, got, tc.want, out.String())
		}
	}
}

// TestCheckReportsEveryProblem: check reports every problem it can find in
// one run, as a FAIL line each (file:line: field), where it stopped at the
// first: on a copy of feeds/nasdaq.yaml with the snapshot password's
// variable unset it printed the password's line alone, and with it set, the
// interfaces, the core, the group and the user. run still stops at the
// first, exit 78; a file that cannot be read (an unknown key) still stops
// check before any finding, with all its errors at once.
func TestCheckReportsEveryProblem(t *testing.T) {
	b, err := os.ReadFile("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// What this host lacks, whatever host it is.
	yaml := string(b)
	for _, r := range [][2]string{
		{"interface: ens1f0 ", "interface: fhck-none-a"},
		{"interface: ens1f1\n", "interface: fhck-none-b\n"},
		{"  receive: 2 ", "  receive: 65535 "},
		{"group: marketdata ", "group: fh-no-such-group-ck "},
		{"user: feedhandler ", "user: fh-no-such-user-ck "},
	} {
		if !strings.Contains(yaml, r[0]) {
			t.Fatalf("feeds/nasdaq.yaml has no %q", r[0])
		}
		yaml = strings.Replace(yaml, r[0], r[1], 1)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "nasdaq.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := func(args ...string) *child {
		c := boundedCommand(t, os.Args[0], args...)
		c.Env = []string{"FEEDHANDLER_TEST_AS_COMMAND=1"}
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "FEEDHANDLER_GLIMPSE_PASSWORD=") {
				c.Env = append(c.Env, e)
			}
		}
		return c
	}
	password := f + ":161: recovery.snapshot.password_env: environment variable FEEDHANDLER_GLIMPSE_PASSWORD is not set (set it, e.g. in the unit's EnvironmentFile=, /etc/feedhandler/FEED.env, root-only: docs/OPERATIONS.md section 2)"
	want := []string{
		f + `:23: lines.a.interface: no interface "fhck-none-a" on this host`,
		f + `:33: lines.b.interface: no interface "fhck-none-b" on this host`,
		f + ":76: cores.receive: CPU 65535 is not one this process may run on",
		f + `:109: shm.group: look up group "fh-no-such-group-ck": no such group`,
		password,
	}
	if os.Geteuid() == 0 { // checked only where the switch happens
		want = append(want, f+`:224: user: no such user named "fh-no-such-user-ck"`)
	}
	code, out, errOut := runExit(t, cmd("check", "--feed", f))
	if code != exitConfig {
		t.Errorf("check: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitConfig, out, errOut)
	}
	for i, w := range want {
		if !strings.Contains(out, "FAIL  config    "+w) {
			t.Errorf("check: stdout lacks %q:\n%s\nstderr:\n%s", "FAIL  config    "+w, out, errOut)
		} else if i > 0 && strings.Index(out, w) < strings.Index(out, want[i-1]) {
			t.Errorf("check: %q before %q, not in the file's order:\n%s", w, want[i-1], out)
		}
	}
	// The file's line above them says it was read, not "ok" (it said
	// "ok    config" above the FAIL config lines).
	if read := "read  config    " + f + ": feed nasdaq-totalview"; !strings.HasPrefix(out, read) || strings.Contains(out, "ok    config") {
		t.Errorf("check: stdout does not start with %q, or says \"ok    config\":\n%s", read, out)
	}
	// The host's findings follow (the clock's is always said), and none
	// says again what a config line said.
	if !strings.Contains(out, "  clock     ") || strings.Contains(out, "CPU 65535 is not isolated") {
		t.Errorf("check: the host's findings, once each:\n%s", out)
	}
	if sum := fmt.Sprintf("(%d that run refuses as a config error", len(want)); !strings.Contains(errOut, sum) {
		t.Errorf("check: stderr lacks %q:\n%s", sum, errOut)
	}

	// run stops at the first, as before: the password's, alone.
	code, _, errOut = runExit(t, cmd("--feed", f))
	if code != exitConfig || strings.TrimSpace(errOut) != password {
		t.Errorf("run: exit %d, stderr:\n%s\nwant %d and only %q", code, errOut, exitConfig, password)
	}

	// A file that cannot be read stops check, every error at once, and
	// no finding.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(yaml, "  protocol: ", "  protocl: ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runExit(t, cmd("check", "--feed", bad))
	if code != exitConfig || out != "" || !strings.Contains(errOut, bad+":17: feed.protocl: unknown field") ||
		!strings.Contains(errOut, strings.Replace(password, f, bad, 1)) {
		t.Errorf("check of a file with an unknown key: exit %d, stdout:\n%s\nstderr:\n%s\nwant %d, nothing on stdout, the key's and the password's errors", code, out, errOut, exitConfig)
	}
}
