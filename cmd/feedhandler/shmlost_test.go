package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeShmTruncated$", "-test.count=1")
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
