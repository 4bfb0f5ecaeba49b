package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestRunFeedProcess runs the real binary as users do, `feedhandler --feed
// FILE.yaml`, inside the receiving namespace of a lab: it receives a small
// generated day on two lines, serves /metrics, and on SIGINT shuts down
// gracefully (exit 0, final stats, shared memory marked closed). The
// published books equal a replay of the day. Once per pipeline mode: no
// cores section runs to completion, two shard cores shard. The file's
// shm.slots (not the default 16384) sizes the shared-memory file.
func TestRunFeedProcess(t *testing.T) {
	for _, c := range []struct{ mode, cores string }{
		{"run-to-completion", ""},
		{"sharded", "cores:\n  shards: [0, 1]\n"},
	} {
		t.Run(c.mode, func(t *testing.T) { testRunFeedProcess(t, c.mode, c.cores) })
	}
}

// runTestSlots is the shm.slots of TestRunFeedProcess's feed file: not the
// default, and more than the generated day's symbols.
const runTestSlots = 1000

func testRunFeedProcess(t *testing.T, mode, cores string) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fhr"})

	dir := t.TempDir()
	bin := buildFeedhandler(t, dir)
	day, err := demo.GenerateDay(50_000, 50, 3)
	if err != nil {
		t.Fatal(err)
	}
	shmName := shmtest.Name(t, "fhruntest")
	cfg := fmt.Sprintf(`feed:
  name: runtest
  protocol: itch50-moldudp64
  session: %q
lines:
  a: {interface: %s, group: 239.77.1.1, port: 26477}
  b: {interface: %s, group: 239.77.1.2, port: 26478}
receive:
  backend: socket
arbitration:
  hold: 1s # a loaded CI machine can run line B far behind A; only a loss on both lines is a gap here
shm:
  name: %s
  slots: %d
metrics:
  listen: 127.0.0.1:9477
stats_interval: 100ms
log:
  level: info
  format: json
%s`, day.Session.String(), lab.DstIf, lab.DstIf, shmName, runTestSlots, cores)
	cfgPath := filepath.Join(dir, "feed.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := boundedCommand(t, "ip", "netns", "exec", lab.Dst, bin, "--feed", cfgPath)
	// Wait for the HTTP listener (after "receiving").
	modeSeen := false
	stderr, exited, ready, _ := startLogged(t, cmd, func(l string) bool {
		if strings.Contains(l, `"receiving"`) && strings.Contains(l, `"mode":"`+mode+`"`) {
			modeSeen = true
		}
		return modeSeen && strings.Contains(l, "health on /healthz")
	})
	defer cmd.Process.Kill()
	awaitReady(t, ready, exited, stderr.String, "receiving in mode "+mode)

	// Alive at once; not ready before the first packet.
	if code, body := httpGet(lab, "/healthz"); code != 200 || body != "alive\n" {
		t.Errorf("/healthz before traffic: %d %q, want 200 alive", code, body)
	}
	if code, body := httpGet(lab, "/readyz"); code != 503 || !strings.Contains(body, "not ready: no packet received yet") {
		t.Errorf("/readyz before traffic: %d %q, want 503 not ready: no packet received yet", code, body)
	}

	s := labSender(t, lab, 0.1)
	// First half: line A loses 10%, line B fills in; no gap, ready.
	half := len(day.Packets) / 2
	var halfMsgs uint64
	for _, p := range day.Packets[:half] {
		mp, err := moldudp64.Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		halfMsgs += uint64(mp.Messages())
	}
	if _, err := s.Send(context.Background(), exchange.Packets(day.Packets[:half])); err != nil {
		t.Fatal(err)
	}
	body := waitMetric(t, lab, "feedhandler_delivered_messages_total", halfMsgs, stderr)
	for _, m := range []string{`feedhandler_line_packets_total{feed="runtest",line="A"}`, `feedhandler_line_duplicates_total{feed="runtest",line="B"}`,
		`feedhandler_shard_applied_total{feed="runtest",shard="0"}`, `feedhandler_latency_seconds_bucket{feed="runtest",le="0.001"}`,
		`feedhandler_path_latency_seconds_count{feed="runtest"}`, `feedhandler_line_silence_seconds{feed="runtest",line="B"}`,
		`feedhandler_shm_heartbeat_age_seconds{feed="runtest"}`,
		`feedhandler_gaps_total{feed="runtest"} 0`, `feedhandler_books_stale{feed="runtest"} 0`, `feedhandler_gaps_unrecovered{feed="runtest"} 0`,
		`feedhandler_line_wrong_session_total{feed="runtest",line="A"} 0`, `feedhandler_recovery_state{feed="runtest",state="off"} 1`,
		`feedhandler_recovery_gaps_detected_total{feed="runtest"} 0`, `feedhandler_recovery_open_gaps{feed="runtest"} 0`,
		`feedhandler_session_changes_total{feed="runtest"} 0`} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	promtoolCheckMetrics(t, body)
	if code, rb := httpGet(lab, "/readyz"); code != 200 || rb != "ready: receiving\n" {
		t.Errorf("/readyz after the first half: %d %q, want 200 ready: receiving\nmetrics:\n%s", code, rb, body)
	}
	if v := metricValue(body, "feedhandler_ready"); v != 1 {
		t.Errorf("feedhandler_ready %v, want 1", v)
	}
	if v := metricValue(body, "feedhandler_shm_slots"); v != runTestSlots {
		t.Errorf("feedhandler_shm_slots %v, want shm.slots %d", v, runTestSlots)
	}

	// Second half with three packets missing on both lines: a gap no line
	// fills. Nothing recovers it today, so the handler must stay not ready.
	// (Gap recovery extends this: with a recovery server in the lab the
	// range is filled, and /readyz must turn ready again.)
	rest := append([][]byte(nil), day.Packets[half:half+2]...)
	rest = append(rest, day.Packets[half+5:]...)
	var missing uint64
	for _, p := range day.Packets[half+2 : half+5] {
		mp, _ := moldudp64.Parse(p)
		missing += uint64(mp.Messages())
	}
	if _, err := s.Send(context.Background(), exchange.Packets(rest)); err != nil {
		t.Fatal(err)
	}
	body = waitMetric(t, lab, "feedhandler_delivered_messages_total", day.Messages-missing, stderr)
	if v := metricValue(body, "feedhandler_gaps_total"); v != 1 {
		t.Errorf("gaps_total %v, want 1", v)
	}
	if v := metricValue(body, "feedhandler_gap_messages_total"); v != float64(missing) {
		t.Errorf("gap_messages_total %v, want %d", v, missing)
	}
	wantNotReady := "not ready: 1 unrecovered gap(s)"
	code, rb := httpGet(lab, "/readyz")
	if code != 503 || !strings.Contains(rb, wantNotReady) {
		t.Errorf("/readyz with an unrecovered gap: %d %q, want 503 %q", code, rb, wantNotReady)
	}
	// The stale flag reaches the books through the shard rings: wait for
	// the gauge, then require every published book to be counted.
	body = waitMetric(t, lab, "feedhandler_gaps_unrecovered", 1, stderr)
	for deadline := time.Now().Add(30 * time.Second); !(metricValue(body, "feedhandler_books_stale") > 0); {
		if time.Now().After(deadline) {
			t.Fatalf("no book flagged stale 30s after the gap:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
		body = scrape(t, lab)
	}
	if v := metricValue(body, "feedhandler_ready"); v != 0 {
		t.Errorf("feedhandler_ready %v with an unrecovered gap, want 0", v)
	}
	promtoolCheckMetrics(t, body)

	interruptExits(t, cmd, exited, stderr.String)
	// Started as root without user: in the config: allowed, with a warning.
	if !strings.Contains(stderr.String(), "running as root: set user: in the feed file") {
		t.Errorf("no warning about running as root:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"final":true`) {
		t.Errorf("no final stats line:\n%s", stderr.String())
	}
	r, err := shm.Open(shmName)
	if err == nil {
		if n := r.Info().Instruments; n != runTestSlots {
			t.Errorf("shm file has %d instrument slots, want shm.slots %d", n, runTestSlots)
		}
		err = r.Check()
		r.Close()
	}
	if !errors.Is(err, shm.ErrClosed) {
		t.Errorf("shared memory after shutdown: %v, want %v", err, shm.ErrClosed)
	}
}

// labSender is an exchange sender in the lab's source namespace, sending
// the demo's two lines at 20,000 packets a second, line A losing lossA of
// its packets; closed at cleanup.
func labSender(t *testing.T, lab *netlab.Lab, lossA float64) *exchange.Sender {
	t.Helper()
	var s *exchange.Sender
	if err := lab.Do(lab.Src, func() (err error) {
		s, err = exchange.NewSender(exchange.Config{Interface: lab.SrcIf, Rate: 20000, Lines: []exchange.Line{
			{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port(), Loss: lossA},
			{Group: demo.GroupB.Addr(), Port: demo.GroupB.Port()},
		}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runExit runs cmd and returns its exit status, stdout and stderr; it
// fails the test if cmd did not run.
func runExit(t *testing.T, cmd *child) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), o.String(), e.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, o.String(), e.String()
}

// buildFeedhandler puts the command (built once: built) into dir and
// returns its path.
func buildFeedhandler(t *testing.T, dir string) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = leftover.MkdirTemp("fhbuild")
		if built.err != nil {
			return
		}
		// Bounded: a build that hangs (a locked module cache, a stuck
		// toolchain) fails the tests that need the binary, naming it,
		// rather than the whole package at go test's -timeout.
		bound := waitBound(t)
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		b := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(built.dir, "feedhandler"), ".")
		b.Env = append(os.Environ(), "CGO_ENABLED=0")
		b.Cancel = func() error { killTree(b.Process.Pid); return nil } // go build's compile and link too
		b.WaitDelay = 10 * time.Second
		// Killed with the test binary too (deathsig: Pdeathsig, forked
		// on a thread that never ends).
		if out, err := deathsig.CombinedOutput(b); ctx.Err() == context.DeadlineExceeded {
			built.err = fmt.Errorf("go build of cmd/feedhandler: not done %v after it started, killed (every test that runs the binary fails with this)\n%s", bound.Round(time.Second), out)
		} else if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	bin := filepath.Join(dir, "feedhandler")
	src := filepath.Join(built.dir, "feedhandler")
	if err := os.Link(src, bin); err != nil {
		// Another file system: a copy.
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(bin, b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// built is the binary the package's tests run, built once (CGO_ENABLED=0,
// as make build does) into a directory of its own that TestMain removes;
// buildFeedhandler links it into each test's directory.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// interruptExits sends the handler cmd SIGINT and fails the test unless
// it exits with status 0 (exited brings what Wait returned; it is put
// back for a later reader) within waitBound, a bound on a broken stop; log
// gives what the test prints with the failure.
func interruptExits(t *testing.T, cmd *child, exited chan error, log func() string) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exitsZero(t, exited, "SIGINT", log)
}

// exitsZero fails t unless the child exits 0 within waitBound of a
// signal (named by sig), and puts the exit back for a later reader.
func exitsZero(t *testing.T, exited chan error, sig string, log func() string) {
	t.Helper()
	bound := waitBound(t)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit after %s: %v, want 0 (a graceful stop)\n%s", sig, err, log())
		}
	case <-time.After(bound):
		t.Fatalf("no exit %v after %s:\n%s", bound, sig, log())
	}
}

// awaitReady waits for ready (startLogged), failing t if the child exits
// first (the exit put back) or is not ready within waitBound; what says
// what ready means.
func awaitReady(t *testing.T, ready <-chan struct{}, exited chan error, log func() string, what string) {
	t.Helper()
	bound := waitBound(t)
	select {
	case <-ready:
	case err := <-exited:
		exited <- err
		t.Fatalf("feedhandler exited early: %v\n%s", err, log())
	case <-time.After(bound):
		t.Fatalf("feedhandler not %s after %v:\n%s", what, bound, log())
	}
}

// startLogged starts cmd, its stderr kept in the returned log (written by
// exec's copying goroutine while the test reads it) and read
// a line at a time: ready closes at the first line isReady takes (isReady
// sees every line until then, in order), exited brings what Wait
// returned, and scanned closes once the last line was read, after the
// exit.
func startLogged(t *testing.T, cmd *child, isReady func(line string) bool) (stderr *syncLog, exited chan error, ready, scanned <-chan struct{}) {
	t.Helper()
	stderr = new(syncLog)
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	readyc, scannedc := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scannedc)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		seen := false
		for sc.Scan() {
			if !seen && isReady(sc.Text()) {
				seen = true
				close(readyc)
			}
		}
	}()
	return stderr, exited, readyc, scannedc
}

func scrape(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	_, body := httpGet(lab, "/metrics")
	return body
}

// httpGet fetches path from the handler's metrics listener inside the
// lab's receiving namespace; code 0 when it cannot connect.
func httpGet(lab *netlab.Lab, path string) (int, string) {
	var conn net.Conn
	if err := lab.Do(lab.Dst, func() (err error) {
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9477", 2*time.Second)
		return err
	}); err != nil {
		return 0, ""
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	resp, err := c.Get("http://127.0.0.1:9477" + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitMetric scrapes until the (only) sample of name equals want and
// returns that scrape.
func waitMetric(t *testing.T, lab *netlab.Lab, name string, want uint64, log fmt.Stringer) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	body := scrape(t, lab)
	for metricValue(body, name) != float64(want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %d:\n%s\nlog:\n%s", name, want, body, log.String())
		}
		time.Sleep(100 * time.Millisecond)
		body = scrape(t, lab)
	}
	return body
}

// metricValue returns the value of the first sample of name (any labels)
// in a text exposition, NaN when absent.
func metricValue(body, name string) float64 {
	for _, l := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			if v, err := strconv.ParseFloat(rest[i+1:], 64); err == nil {
				return v
			}
		}
	}
	return math.NaN()
}

// promtoolCheckMetrics runs `promtool check metrics` (Debian package
// prometheus) on a scrape.
func promtoolCheckMetrics(t *testing.T, body string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed (Debian package prometheus): /metrics not linted")
		return
	}
	cmd := boundedCommand(t, "promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestRunSIGHUPKeepsRunning: SIGHUP, the usual request for a reload,
// neither kills the handler nor stops it: it logs that it has no reload and
// goes on, and a SIGTERM afterwards stops it gracefully (exit 0, shm marked
// closed). Before, Go's default action for SIGHUP ended the process at
// once, the shm file left as a dead writer's and, SIGHUP being a clean exit
// to systemd, not restarted by Restart=on-failure.
func TestRunSIGHUPKeepsRunning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lab's namespaces need root")
	}
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fhh"})
	dir := t.TempDir()
	shmName := shmtest.Name(t, "fhhup")
	cfgPath := filepath.Join(dir, "feed.yaml")
	cfg := fmt.Sprintf(`feed: {name: huptest}
lines:
  a: {interface: %s, group: 239.77.3.1, port: 26477}
receive: {backend: socket}
shm: {name: %s}
log: {format: json}
`, lab.DstIf, shmName)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, "ip", "netns", "exec", lab.Dst, os.Args[0], "--feed", cfgPath)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	var log syncLog
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	// waitLog waits for s in the log; false when the process exited first.
	waitLog := func(s string) bool {
		t.Helper()
		for range 400 { // 20 s
			if strings.Contains(log.String(), s) {
				return true
			}
			select {
			case err := <-exited:
				exited <- err
				return strings.Contains(log.String(), s)
			case <-time.After(50 * time.Millisecond):
			}
		}
		t.Fatalf("no %q in the log after 20s:\n%s", s, log.String())
		return false
	}
	if !waitLog("privileges after setup") {
		t.Fatalf("exited during setup: %v\n%s", <-exited, log.String())
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLog("SIGHUP ignored") {
		t.Fatalf("SIGHUP ended the handler: %v\n%s", <-exited, log.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wantGracefulStop(t, exited, shmName, log.String)
}

// wantGracefulStop waits for the exit after a SIGTERM: status 0 and the
// shm file shmName marked closed. log is the process's log so far.
func wantGracefulStop(t *testing.T, exited chan error, shmName string, log func() string) {
	t.Helper()
	exitsZero(t, exited, "SIGTERM", log)
	var out bytes.Buffer
	if err := bookview([]string{"--shm", shmName, "--once", "--json"}, &out); !errors.Is(err, shm.ErrClosed) {
		t.Fatalf("bookview after the stop: %v, want the writer closed", err)
	}
}

// TestRunClosedLogKeepsRunning: a log whose reader went away (stderr a
// pipe whose reader exited: `| tee`, a logger restarted, a supervisor's
// log process) neither kills the handler nor stops it: the lines are lost,
// the feed goes on, and a SIGTERM stops it gracefully (exit 0, shm marked
// closed). Before, Go's default for a write to a broken stdout or stderr
// is to die of SIGPIPE at the next log line (here the SIGHUP's, or the
// stop's), the shm file left as a dead writer's and, SIGPIPE being a clean
// exit to systemd, not restarted by Restart=on-failure.
func TestRunClosedLogKeepsRunning(t *testing.T) {
	shmName := shmtest.Name(t, "fhpipe169")
	cfgPath := loFeedFile(t, "pipetest", "239.77.3.169:26169", shmName, "stats_interval: 100ms\n")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := inNetns(t, loNetns(t, "fhpipe"), os.Args[0], "--feed", cfgPath)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer cmd.Process.Kill()
	var log strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() && !strings.Contains(log.String(), "privileges after setup") {
		log.WriteString(sc.Text() + "\n")
	}
	if !strings.Contains(log.String(), "privileges after setup") {
		t.Fatalf("exited during setup: %v\n%s", cmd.Wait(), log.String())
	}
	pr.Close() // the log's reader goes away
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Each is a log line written to the closed pipe, as is every stats
	// line (stats_interval).
	for _, sig := range []os.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatalf("%v: %v (exited: %v)", sig, err, <-exited)
		}
	}
	wantGracefulStop(t, exited, shmName, log.String)
}

// loFeedFile writes a feed file of one line on lo (group:port), the socket
// backend, shm.name shmName, a JSON log and extra (YAML lines), and
// returns its path. The handler runs it in a network namespace of the
// test's (loNetns), never on the host's lo.
func loFeedFile(t *testing.T, feed, groupPort, shmName, extra string) string {
	t.Helper()
	group, port, _ := strings.Cut(groupPort, ":")
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := fmt.Sprintf("feed: {name: %s}\nlines:\n  a: {interface: lo, group: %s, port: %s}\nreceive: {backend: socket}\nshm: {name: %s}\nlog: {format: json}\n%s",
		feed, group, port, shmName, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunMetricsPortTaken: a metrics.listen port another process holds
// fails the start before the handler starts anything (no "receiving": no
// group joined, no shm file, no snapshot login). The error is at the field
// and says who may hold the port. Before, the port was
// bound after setup, which a restart by systemd then repeated each time.
func TestRunMetricsPortTaken(t *testing.T) {
	ns := loNetns(t, "fhporttaken")
	held := listenIn(t, ns)
	defer held.Close()
	shmName := shmtest.Name(t, "fhport")
	cfgPath := loFeedFile(t, "porttest", "239.77.4.1:26477", shmName, fmt.Sprintf("metrics: {listen: %q}\n", held.Addr().String()))
	_, errOut, err := runCommandIn(t, ns, "--feed", cfgPath)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("exit %v, want status 1 naming the port in use:\n%s", err, errOut)
	}
	// At the field, as the other start errors, with who may hold it: a
	// second feed's file copied from the first keeps its port. Before,
	// "feedhandler run: listen tcp ...: bind: address already in use".
	_, port, _ := net.SplitHostPort(held.Addr().String())
	if want := cfgPath + ":7: metrics.listen: listen tcp " + held.Addr().String() + ": bind: address already in use: another process listens on this port (ss -ltnp 'sport = :" + port + "' names it): another feed's handler"; !strings.Contains(errOut, want) {
		t.Errorf("want the error at the field, %q:\n%s", want, errOut)
	}
	if strings.Contains(errOut, `"receiving"`) {
		t.Errorf("the handler started before the metrics port was found taken:\n%s", errOut)
	}
	if _, err := os.Stat(shm.Path(shmName)); err == nil {
		t.Errorf("%s created", shm.Path(shmName))
	}
}
