package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

const writerRoleEnv = "FH_BOOKVIEW_TEST_WRITER"

// TestHelperShmWriter is the writer process of TestBookviewKilledWriter:
// it publishes one book, says "ready", then beats until killed, or until
// its stdin closes (the test binary is gone: no writer beats on forever).
func TestHelperShmWriter(t *testing.T) {
	name := os.Getenv(writerRoleEnv)
	if name == "" {
		t.Skip("helper process of TestBookviewKilledWriter")
	}
	w, err := shm.Create(shm.Config{Name: name, Instruments: 4, Depth: 2})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	w.Register(1, "AAPL")
	w.Publish(&shm.Snapshot{Locate: 1, Seq: 1, Bids: []shm.Level{{Price: 1000000, Shares: 100, Orders: 1}}})
	fmt.Println("ready")
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		w.Heartbeat()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBookviewKilledWriter: `feedhandler bookview --once --json` (the real
// binary) exits 0 while its writer lives, and 4 with the state on stderr
// once the writer was killed with SIGKILL, still printing the last books;
// with --state the JSON carries the state and the exit status is 0.
func TestBookviewKilledWriter(t *testing.T) {
	bin := buildFeedhandler(t, t.TempDir())
	name := shmtest.Path(t, "fh-bookview-killed")
	child := boundedCommand(t, os.Args[0], "-test.run=^TestHelperShmWriter$", "-test.count=1")
	child.Env = append(os.Environ(), writerRoleEnv+"="+name)
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := child.StdinPipe() // held open while the test runs
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("writer process: %q %v", line, err)
	}

	run := func(args ...string) (code int, out, errOut string) {
		t.Helper()
		return runExit(t, boundedCommand(t, bin, append([]string{"bookview", "--shm", name, "--once"}, args...)...))
	}
	wantBooks := "{\n\"AAPL\": {\"bids\": [[1000000, 100, 1]], \"asks\": []}\n}\n"
	if code, out, errOut := run("--json"); code != 0 || out != wantBooks {
		t.Fatalf("live writer: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, wantBooks)
	}
	if code, out, _ := run("--json", "--state"); code != 0 || !strings.Contains(out, `"state":"live"`) {
		t.Fatalf("live writer --state: exit %d, %s", code, out)
	}

	child.Process.Signal(syscall.SIGKILL)
	child.Wait() // reaped: the pid is gone
	// A reader calls it dead once two heartbeats are missed too (a pid
	// alone says nothing across pid namespaces, docs/SHM.md).
	waitWriterDead(t, name)

	code, out, errOut := run("--json")
	if code != exitWriterDead || out != wantBooks || !strings.Contains(errOut, "writer dead") ||
		!strings.Contains(errOut, fmt.Sprintf("pid %d gone", child.Process.Pid)) {
		t.Fatalf("killed writer: exit %d, stdout %q, stderr %q; want %d, the last books, and the state on stderr",
			code, out, errOut, exitWriterDead)
	}
	code, out, errOut = run()
	if code != exitWriterDead || !strings.Contains(out, "writer is dead") {
		t.Fatalf("killed writer, text view: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = run("--json", "--state")
	var doc struct {
		Writer writerState     `json:"writer"`
		Books  json.RawMessage `json:"books"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Writer.State != "dead" ||
		doc.Writer.Pid != child.Process.Pid || !strings.Contains(string(doc.Books), `"AAPL"`) {
		t.Fatalf("killed writer --state: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// waitWriterDead waits until a reader of the feed name finds its killed
// writer dead, for at most 5 s.
func waitWriterDead(t *testing.T, name string) {
	t.Helper()
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = r.Check(); errors.Is(err, shm.ErrWriterDead) {
			return
		}
	}
	t.Fatalf("killed writer: %v, want ErrWriterDead within 5 s", err)
}
