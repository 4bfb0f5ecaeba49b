package rx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/uring"
)

// TestUringDroppedCompletions: when the kernel drops completions (its CQ
// ring full and no memory for the overflow list: the wait's EBADR), the
// lost one may be a line request's last (no F_MORE), the line then never
// re-armed and silent, or one that named a buffer, the buffer then out of
// the ring for good. The kernel cannot drop a completion on demand, so a
// hook on the wait plays it on the real ring: it cancels line A's
// multishot request and consumes the cancel's and the request's last
// completion, consumes the completion of a datagram of line B (its buffer
// gone), and returns EBADR as io_uring_enter does. Every line must then
// still receive, each datagram once, in order; every buffer of the ring
// must still be there (all of them held at once); and the drop be counted
// and logged. Twice (LockedThread, where a cancelled request's last
// completion comes only in a wait): the next wait drops line B's last
// completion, which the reset after the first drop waits for, and returns
// EBADR again.
func TestUringDroppedCompletions(t *testing.T) {
	for _, tc := range []struct{ locked, twice bool }{{false, false}, {true, false}, {true, true}} {
		locked := tc.locked
		t.Run(fmt.Sprintf("locked=%v,twice=%v", tc.locked, tc.twice), func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{Prefix: "h246"})
			lines := labLines(lab)
			senders := labSenders(t, lab, lines, 10000)
			var logs bytes.Buffer
			const bufs = 32
			cfg := Config{Backend: BackendUring, Lines: lines, RingSize: bufs, BatchSize: 8, PollTimeout: 20 * time.Millisecond,
				LockedThread: locked, Log: zerolog.New(&logs)}
			wait := uringWait
			defer func() { uringWait = wait }()
			err := onLockedThread(lab.Dst, func() (err error) {
				r, err := Open(cfg)
				if err != nil {
					return err
				}
				defer r.Close()
				// Arm the lines (nothing arrives), then receive.
				if n, err := r.Receive(make([]Packet, 1)); n != 0 || err != nil {
					return fmt.Errorf("first Receive: %d, %v", n, err)
				}
				if err := send(senders, 20); err != nil {
					return err
				}
				if err := receiveLines(r, senders, 20); err != nil {
					return err
				}
				var hookErr error
				hooked, drops := false, 1
				uringWait = func(ring *uring.Ring, _ uint32, _ time.Duration) (int, error) {
					uringWait, hooked = wait, true
					hookErr = dropCompletions(ring, senders[LineB])
					if tc.twice {
						uringWait = func(ring *uring.Ring, _ uint32, _ time.Duration) (int, error) {
							uringWait = wait
							hookErr = dropResetCompletions(ring)
							return 0, fmt.Errorf("io_uring_enter wait: %w", unix.EBADR)
						}
						drops = 2
					}
					return 0, fmt.Errorf("io_uring_enter wait: %w", unix.EBADR)
				}
				pkts := make([]Packet, 8)
				for !hooked {
					// Without handling, Receive returned the error
					// (and the caller retries): go on to see the lines.
					n, err := r.Receive(pkts)
					if err != nil && !errors.Is(err, unix.EBADR) {
						return err
					}
					if n != 0 {
						return fmt.Errorf("received %d packets with nothing sent", n)
					}
				}
				if hookErr != nil {
					return hookErr
				}
				defer func() {
					if hookErr != nil {
						err = errors.Join(err, hookErr)
					}
				}()
				// After the drop: every line receives, each datagram once.
				if err := send(senders, 50); err != nil {
					return err
				}
				if err := receiveOnce(r, 50); err != nil {
					return err
				}
				// Every buffer is in the ring: all of them held at once.
				if err := send(senders, bufs/2); err != nil {
					return err
				}
				held := make([]Packet, 0, bufs)
				for idle := 0; len(held) < bufs && idle < 20; {
					n, err := r.Receive(pkts)
					if err != nil {
						return err
					}
					if n == 0 {
						idle++
					}
					held = append(held, pkts[:n]...)
				}
				r.Release(held)
				if len(held) != bufs {
					return fmt.Errorf("held %d packets at once after the dropped completions, want all %d buffers; stats %+v", len(held), bufs, r.Stats())
				}
				if st := r.Stats(); st.Extra.Get("cq_dropped") != uint64(drops) || st.Extra.Get("bad_releases") != 0 {
					return fmt.Errorf("stats %+v: want cq_dropped %d and no bad release", st, drops)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "io_uring dropped completions") {
				t.Errorf("log %q: want the dropped completions at warn", logs.String())
			}
		})
	}
}

// dropCompletions plays the kernel dropping completions on ring, whose line
// requests are armed and whose lines are quiet: line A's request ends
// (cancelled) and its last completion is lost, then a datagram sent on
// line B has its completion, and its buffer, lost.
func dropCompletions(ring *uring.Ring, lineB *exchange.Sender) error {
	const cancelTag = 7 << 40
	ring.GetSQE().PrepCancelUserData(uint64(LineA), cancelTag)
	lost := func(what string, want func(c *uring.CQE) bool, n int) error {
		for tries := 0; n > 0; tries++ {
			if tries == 100 {
				return fmt.Errorf("drop %s: %d completions not seen", what, n)
			}
			if _, err := ring.Wait(1, 20*time.Millisecond); err != nil {
				return err
			}
			for c := ring.PeekCQE(); c != nil; c = ring.PeekCQE() {
				if !want(c) {
					return fmt.Errorf("drop %s: unexpected completion %+v", what, *c)
				}
				ring.CQAdvance(1)
				n--
			}
		}
		return nil
	}
	err := lost("line A's end", func(c *uring.CQE) bool {
		return c.UserData == cancelTag && c.Res == 0 || c.UserData == uint64(LineA) && !c.More() && c.Res == -int32(unix.ECANCELED)
	}, 2)
	if err != nil {
		return err
	}
	if _, err := lineB.Send(context.Background(), exchange.Packets([][]byte{payload(LineB, 1000)})); err != nil {
		return err
	}
	return lost("a datagram of line B", func(c *uring.CQE) bool {
		return c.UserData == uint64(LineB) && c.More() && c.Flags&uring.CQEFBuffer != 0
	}, 1)
}

// dropResetCompletions plays the kernel dropping the last completion of
// line B's request, which the backend cancelled after the first drop.
func dropResetCompletions(ring *uring.Ring) error {
	for tries, n := 0, 1; n > 0; tries++ {
		if tries == 100 {
			return errors.New("drop line B's last completion: not seen")
		}
		if _, err := ring.Wait(1, 20*time.Millisecond); err != nil {
			return err
		}
		for c := ring.PeekCQE(); c != nil; c = ring.PeekCQE() {
			if c.UserData != uint64(LineB) || c.More() || c.Res != -int32(unix.ECANCELED) {
				return fmt.Errorf("drop line B's last completion: unexpected completion %+v", *c)
			}
			ring.CQAdvance(1)
			n--
		}
	}
	return nil
}

// receiveOnce receives n datagrams a line (sequence numbers 0 to n-1), each
// once and in order, or fails after a bounded number of empty polls.
func receiveOnce(r Receiver, n int) error {
	next := make([]int, 2)
	pkts := make([]Packet, 8)
	for idle := 0; next[LineA] < n || next[LineB] < n; {
		if idle == 100 {
			return fmt.Errorf("received %v of %d datagrams a line (A, B) after the dropped completions; stats %+v", next, n, r.Stats())
		}
		k, err := r.Receive(pkts)
		if err != nil {
			return err
		}
		if k == 0 {
			idle++
		}
		for _, p := range pkts[:k] {
			if seq := int(binary.BigEndian.Uint32(p.Data[1:])); seq != next[p.Line] || !bytes.Equal(p.Data, payload(p.Line, seq)) {
				return fmt.Errorf("line %s: datagram %d, want %d (each once, in order)", p.Line, seq, next[p.Line])
			}
			next[p.Line]++
		}
		r.Release(pkts[:k])
	}
	return nil
}
