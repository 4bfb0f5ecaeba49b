package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// quietRx is a receiver that never receives anything (the receive loop
// ends at Stop, which needs no rx.ErrClosed).
type quietRx struct{}

func (r *quietRx) Receive([]rx.Packet) (int, error) {
	time.Sleep(time.Millisecond)
	return 0, nil
}
func (r *quietRx) Release([]rx.Packet) {}
func (r *quietRx) Backend() string     { return "quiet" }
func (r *quietRx) Stats() rx.Stats     { return rx.Stats{} }
func (r *quietRx) Close() error        { return nil }

// TestServeShmTruncated: a feed file truncated under the running handler
// ends run's serve by itself (no signal), with an error whose exit status
// is 74, restarted by the unit, not 1 or the runtime's 2 (docs/OPERATIONS.md).
// serve runs in a child process: it drops the process's capabilities,
// which the other tests need.
func TestServeShmTruncated(t *testing.T) {
	if os.Getenv(serveShmLostEnv) != "" {
		serveShmLostChild(t)
		return
	}
	cmd := boundedCommand(t, os.Args[0], "-test.run=^TestServeShmTruncated$", "-test.count=1")
	cmd.Env = append(os.Environ(), serveShmLostEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "serve ended by itself, exit status 74") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

const serveShmLostEnv = "FH_TEST_SERVE_SHM_LOST"

// serveShmLostChild serves a handler whose feed file it truncated, and
// prints how serve ended.
func serveShmLostChild(t *testing.T) {
	name := shmtest.Name(t, "fhserve-shmlost")
	h, err := handler.Start(handler.Config{
		Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Book:        book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
		Mode:        handler.ModeRunToCompletion,
		ReceiveCore: -1,
		ShmName:     name,
		Open:        func(rx.Config) (rx.Receiver, error) { return &quietRx{}, nil },
		Log:         zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(h.ShmPath(), 0); err != nil {
		h.Stop()
		t.Fatal(err)
	}
	// The bound of a test that would otherwise wait for ever, not a
	// threshold: the heartbeat faults within 50 ms.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = serve(ctx, h, nil, &config.Config{StatsInterval: time.Hour}, zerolog.Nop())
	var ec interface{ ExitCode() int }
	if ctx.Err() != nil || !errors.As(err, &ec) {
		t.Fatalf("serve: %v (context %v); want it to end by itself, exit status %d", err, ctx.Err(), exitShmLost)
	}
	fmt.Printf("serve ended by itself, exit status %d: %v\n", ec.ExitCode(), err)
}

const replayShmTruncEnv = "FH_TEST_REPLAY_SHM_TRUNC" // the child's shm name

// TestReplayShmTruncated: the --shm file truncated under a running replay
// (`truncate -s 0`) made its next publish fault with SIGBUS, and the
// process died ("unexpected fault address", "fatal error: fault", exit 2).
// Now the replay stops with an error wrapping shm.ErrTruncated, exit
// status 74, as run does. The replay runs in a child process, which the
// crash killed; its input is a FIFO, truncated between the day's first
// part and the rest.
func TestReplayShmTruncated(t *testing.T) {
	if name := os.Getenv(replayShmTruncEnv); name != "" {
		replayShmTruncChild(t, name)
		return
	}
	name := shmtest.Name(t, "fhreplay-trunc") // removed here: the child may die
	cmd := boundedCommand(t, os.Args[0], "-test.run=^TestReplayShmTruncated$", "-test.count=1")
	cmd.Env = append(os.Environ(), replayShmTruncEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "replay ended, exit status 74, wraps ErrTruncated: true") {
		t.Fatalf("child: %v; want the replay ended with exit status 74:\n%.2000s", err, out)
	}
}

// replayShmTruncChild replays a day from a FIFO with --shm name, truncates
// the file once the replay created it, feeds the rest, and prints how the
// replay ended.
func replayShmTruncChild(t *testing.T, name string) {
	path, _ := genDayFile(t, itchgen.Config{Messages: 100_000, Symbols: 100, Seed: 5}, false)
	day, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "in.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			fmt.Println("open fifo:", err)
			return
		}
		defer f.Close()
		first := len(day) / 10
		if _, err := f.Write(day[:first]); err != nil {
			fmt.Println("write:", err)
			return
		}
		// Bounded: the replay creates the file after it opened the input.
		for i := 0; i < 2000; i++ {
			if _, err := os.Stat(shm.Path(name)); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.Truncate(shm.Path(name), 0); err != nil {
			fmt.Println("truncate:", err)
			return
		}
		f.Write(day[first:]) // fails once the replay stopped reading: the pipe is closed
	}()
	err = replay([]string{"--quiet", "--settle", "0", "--shm", name, fifo}, io.Discard, io.Discard)
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) {
		t.Fatalf("replay: %v; want an error with an exit status", err)
	}
	fmt.Printf("replay ended, exit status %d, wraps ErrTruncated: %v: %v\n", ec.ExitCode(), errors.Is(err, shm.ErrTruncated), err)
}
