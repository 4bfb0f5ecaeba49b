package handler

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestStartContextCanceled: a setup whose context ends (the command's
// first SIGINT or SIGTERM) stops at its next step and undoes what it did
// (the shm file removed, a receiver opened closed) instead of setting up
// in full only to stop after: with gigabytes of books that is seconds of
// setup, the receivers opened and the snapshot server logged into for
// nothing, and an operator who signals again meanwhile gets an exit at
// once (status 130) that leaves the shm file behind.
func TestStartContextCanceled(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cancelBefore bool // else cancelled in Open, the last step
	}{
		{"before the setup", true},
		{"while the receivers open", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelBefore {
				cancel()
			}
			name := shmtest.Name(t, "fh-startctx")
			var opened *batchRx
			h, err := StartContext(ctx, Config{
				Receive:    rx.Config{Lines: testCaptureLines, BatchSize: 64},
				Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond},
				Book:       book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
				ShardCores: []int{-1, -1},
				ShmName:    name,
				Open: func(rx.Config) (rx.Receiver, error) {
					cancel()
					opened = &batchRx{}
					return opened, nil
				},
				Log: zerolog.Nop(),
			})
			if h != nil {
				h.Stop()
			}
			_, statErr := os.Stat(shm.Path(name))
			switch {
			case !errors.Is(err, context.Canceled):
				t.Errorf("setup cancelled %s: %v, want context.Canceled", tc.name, err)
			case !os.IsNotExist(statErr):
				t.Errorf("setup cancelled %s: shm file %s left (stat: %v)", tc.name, shm.Path(name), statErr)
			case tc.cancelBefore && opened != nil:
				t.Errorf("setup cancelled before it began: the receivers were opened")
			case opened != nil && !opened.closed:
				t.Errorf("setup cancelled while the receivers open: the receiver was left open")
			}
		})
	}
}
