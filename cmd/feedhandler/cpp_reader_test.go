package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestCppReaderMatchesBookview: `replay --shm` of a generated day while the
// C++ reader (proto/cpp, shm_driver follow) follows the feed; afterwards
// the books the C++ follower holds, and the books `shm_driver json` reads,
// are byte for byte what `bookview --once --json` prints.
//
// The day reaches replay through a FIFO: the test writes its first 64 KiB,
// waits until the C++ follower has attached to the feed replay created,
// then writes the rest. So the follower follows at least everything after
// the first 64 KiB, whatever the machine's load.
func TestCppReaderMatchesBookview(t *testing.T) {
	bin := cppbuild.Build(t, "tests/shm_driver.cpp")
	day, _ := genDayFile(t, itchgen.Config{Messages: 300_000, Symbols: 300, Seed: 12}, false)
	data, err := os.ReadFile(day)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "day.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	name := shmtest.Name(t, "fh-cppreader")

	follower := boundedCommand(t, bin, "follow", name)
	follower.Stderr = os.Stderr
	out, err := follower.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if follower.ProcessState == nil {
			follower.Process.Kill()
			follower.Wait()
		}
	}()
	replayed := make(chan error, 1)
	go func() {
		replayed <- replay([]string{"--quiet", "--shm", name, fifo}, io.Discard, io.Discard)
	}()
	f := openFIFOWriter(t, fifo, replayed)
	defer f.Close() // on failure: replay reads EOF and returns
	first := min(len(data), 64<<10)
	if _, err := f.Write(data[:first]); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(out)
	if line, err := lines.ReadString('\n'); err != nil || line != "attached\n" {
		t.Fatalf("C++ follower: %q %v", line, err)
	}
	if _, err := f.Write(data[first:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := await(t, "replay's return at the fifo's end", replayed); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(lines)
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Wait(); err != nil {
		t.Fatalf("C++ follower: %v\n%s", err, rest)
	}
	stats, followed, ok := bytes.Cut(rest, []byte("\n"))
	if !ok || !bytes.HasPrefix(stats, []byte("stats ")) {
		t.Fatalf("C++ follower output: %.400s", rest)
	}
	t.Logf("C++ follower: %s", stats)
	if fields := strings.Fields(string(stats)); len(fields) < 3 || fields[2] == "0" {
		t.Fatalf("C++ follower saw no journal update: %s", stats)
	}

	var want bytes.Buffer
	// The replay closed the feed: bookview prints the books and says so
	// with the closed state (exit status 3).
	if err := bookview([]string{"--shm", name, "--once", "--json"}, &want); !errors.Is(err, shm.ErrClosed) {
		t.Fatalf("bookview after replay: %v, want the writer state closed", err)
	}
	if want.Len() < 1000 {
		t.Fatalf("bookview output suspiciously small: %q", want.Bytes())
	}
	if !bytes.Equal(followed, want.Bytes()) {
		t.Fatalf("C++ follower's books differ from bookview --once --json:\nC++:      %.400s\nbookview: %.400s", followed, want.Bytes())
	}
	dump, err := boundedCommand(t, bin, "json", name).Output()
	if err != nil {
		t.Fatalf("shm_driver json: %v\n%s", err, dump)
	}
	if !bytes.Equal(dump, want.Bytes()) {
		t.Fatalf("shm_driver json differs from bookview --once --json:\nC++:      %.400s\nbookview: %.400s", dump, want.Bytes())
	}
}

// openFIFOWriter opens the fifo for writing once its reader, replay
// (whose return replayed brings), opens it. A replay that returns
// without opening it (an error first) fails the test with its error,
// where the open waited for ever.
func openFIFOWriter(t *testing.T, fifo string, replayed <-chan error) *os.File {
	t.Helper()
	type opened struct {
		f   *os.File
		err error
	}
	open := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		open <- opened{f, err}
	}()
	// release ends the open when the test gives up on it: a reader that
	// opens the fifo and is at once gone.
	release := func() {
		if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			r.Close()
		}
		if o := <-open; o.f != nil {
			o.f.Close()
		}
	}
	bound := waitBound(t)
	select {
	case o := <-open:
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.f
	case err := <-replayed:
		release()
		t.Fatalf("replay returned before it opened its fifo: %v", err)
	case <-time.After(bound):
		release()
		t.Fatalf("replay did not open its fifo %s within %v", fifo, bound)
	}
	return nil
}
