package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestRunFeedProcess runs the real binary as users do, `feedhandler --feed
// FILE.yaml`, inside the receiving namespace of a lab: it receives a small
// generated day on two lines, serves /metrics, and on SIGINT shuts down
// gracefully (exit 0, final stats, shared memory marked closed). The
// published books equal a replay of the day. Once per pipeline mode: no
// cores section runs to completion, two shard cores shard.
func TestRunFeedProcess(t *testing.T) {
	for _, c := range []struct{ mode, cores string }{
		{"run-to-completion", ""},
		{"sharded", "cores:\n  shards: [0, 1]\n"},
	} {
		t.Run(c.mode, func(t *testing.T) { testRunFeedProcess(t, c.mode, c.cores) })
	}
}

func testRunFeedProcess(t *testing.T, mode, cores string) {
	lab, err := netlab.New(netlab.Options{Prefix: "fhr"})
	if errors.Is(err, netlab.ErrNotSupported) {
		t.Skipf("no network namespaces here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()

	dir := t.TempDir()
	bin := filepath.Join(dir, "feedhandler")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	day, err := demo.GenerateDay(50_000, 50, 3)
	if err != nil {
		t.Fatal(err)
	}
	shmName := fmt.Sprintf("fhruntest-%d", os.Getpid())
	defer shm.Remove(shmName)
	cfg := fmt.Sprintf(`feed:
  name: runtest
  protocol: itch50-moldudp64
  session: %q
lines:
  a: {interface: %s, group: 239.77.1.1, port: 26477}
  b: {interface: %s, group: 239.77.1.2, port: 26478}
receive:
  backend: socket
shm:
  name: %s
metrics:
  listen: 127.0.0.1:9477
stats_interval: 100ms
log:
  level: info
  format: json
%s`, day.Session.String(), lab.DstIf, lab.DstIf, shmName, cores)
	cfgPath := filepath.Join(dir, "feed.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("ip", "netns", "exec", lab.Dst, bin, "--feed", cfgPath)
	var stderr bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(&stderr, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	defer cmd.Process.Kill()
	// Wait for "receiving".
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), `"receiving"`) && strings.Contains(sc.Text(), `"mode":"`+mode+`"`) {
				seen = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("feedhandler exited early: %v\n%s", err, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("feedhandler not receiving in mode %s after 20s:\n%s", mode, stderr.String())
	}

	var s *exchange.Sender
	if err := lab.Do(lab.Src, func() error {
		s, err = exchange.NewSender(exchange.Config{Interface: lab.SrcIf, Rate: 20000, Lines: []exchange.Line{
			{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port(), Loss: 0.1},
			{Group: demo.GroupB.Addr(), Port: demo.GroupB.Port()},
		}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(context.Background(), exchange.Packets(day.Packets)); err != nil {
		t.Fatal(err)
	}

	// Scrape /metrics from inside the namespace until every message shows.
	want := fmt.Sprintf("feedhandler_delivered_messages_total %d", day.Messages)
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(body, want) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q:\n%s\nlog:\n%s", want, body, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
		body = scrape(t, lab)
	}
	for _, m := range []string{`feedhandler_line_packets_total{line="A"}`, `feedhandler_line_duplicates_total{line="B"}`,
		`feedhandler_shard_applied_total{shard="0"}`, `feedhandler_latency_seconds{quantile="0.99"}`, "feedhandler_gaps_total 0",
		`feedhandler_line_wrong_session_total{line="A"} 0`, `feedhandler_recovery_state{state="off"} 1`,
		"feedhandler_recovery_gaps_detected_total 0", "feedhandler_recovery_open_gaps 0", "feedhandler_session_changes_total 0"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	// Every message delivered: the books in shared memory equal the
	// replay's (a shard may still be publishing its last batch).
	var res *demo.Result
	for {
		res, err = demo.Compare(shmName, day, 10)
		if err == nil && len(res.Mismatches) == 0 && res.Instruments > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("published books differ from the replay: %v %v", err, res.Mismatches)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res.Stale != 0 {
		t.Errorf("%d books flagged stale without a gap", res.Stale)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20s after SIGINT:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"final":true`) {
		t.Errorf("no final stats line:\n%s", stderr.String())
	}
	r, err := shm.Open(shmName)
	if err == nil {
		err = r.Check()
		r.Close()
	}
	if !errors.Is(err, shm.ErrClosed) {
		t.Errorf("shared memory after shutdown: %v, want %v", err, shm.ErrClosed)
	}
}

func scrape(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	var conn net.Conn
	if err := lab.Do(lab.Dst, func() (err error) {
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9477", 2*time.Second)
		return err
	}); err != nil {
		return ""
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
	}}
	resp, err := c.Get("http://127.0.0.1:9477/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
