package handler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
	"github.com/rs/zerolog"
)

// TestReaderSeesRebuiltBooksThroughLoss runs a random day (naiveDay: adds,
// deletes of the best level's last order, executions, cancels, replaces
// that lock or cross the book, trades, trading state, halts, Reg SHO,
// system events, symbols announced along the day) through a run-to-
// completion handler at depths 1 and 10, losing runs of packets now and
// then; each loss is repaired by a snapshot (the day's messages up to
// where the line is, as a GLIMPSE server's state would rebuild the books).
// After every packet, once no gap is open and no republish is under way,
// every instrument read through the Go reader (shm.Reader) must be the
// naive book (every live order in a map) of the messages delivered so far:
// the top levels to the depth (a level deeper than the depth moving into
// view when a better one empties), the level counts, the flags (crossed,
// halted, short-sale restricted, never stale), the trading state, the last
// trade, the volume and the system event. While a gap is open, once its
// flag's republish is done, every book must read flagged possibly stale.
func TestReaderSeesRebuiltBooksThroughLoss(t *testing.T) {
	t.Run("depth=1", func(t *testing.T) { readerThroughLoss(t, 1) })
	t.Run("depth=10", func(t *testing.T) { readerThroughLoss(t, 10) })
}

func readerThroughLoss(t *testing.T, depth int) {
	const locates, maxLoc = 24, 48
	rng := rand.New(rand.NewPCG(192, uint64(depth)))
	msgs := naiveDay(rng, locates, maxLoc, 8_000)
	session := moldudp64.NewSession("LOSSDAY")
	// Packets of 1 to 6 messages: pkts[i] starts at sequence number first[i].
	var pkts [][]byte
	var first []uint64
	for i := 0; i < len(msgs); {
		b := moldudp64.NewBuilder(session, uint64(1+i), 0)
		first = append(first, uint64(1+i))
		for n := 1 + rng.IntN(6); n > 0 && i < len(msgs); n-- {
			if err := b.Add(msgs[i]); err != nil {
				t.Fatal(err)
			}
			i++
		}
		pkts = append(pkts, append([]byte(nil), b.Flush()...))
	}

	var served atomic.Uint64 // the sequence number after the last packet offered
	// A fetch waits for release: the loop below gives it once it has read
	// every book flagged during the open gap (or, that state not reached,
	// after 2000 steps), so that a fetch finishing fast on a loaded machine
	// cannot skip that check (staleSeen).
	release := make(chan struct{}, 1)
	fetch := func(ctx context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return Snapshot{}, ctx.Err()
		}
		next := served.Load()
		for _, m := range msgs[:next-1] {
			if err := fn(m); err != nil {
				return Snapshot{}, err
			}
		}
		return Snapshot{Next: next}, nil
	}
	w, r := shmFeed(t, shm.Config{Instruments: 2 * maxLoc, Depth: depth, SingleWriter: true})
	sh, err := newShard(0, -1, 0, smallBooks, w, depth)
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{log: zerolog.Nop(), mode: ModeRunToCompletion, shards: []*shard{sh}, inline: sh, w: w,
		shardOf: make([]uint8, 1<<16), admission: newAdmission(nil)}
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Hour, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Millisecond})

	nv := &naiveBooks{orders: map[uint64]*naiveOrder{}, byLoc: map[uint16]map[uint64]*naiveOrder{}, instr: map[uint16]*naiveInstr{}}
	applied := uint64(0) // messages applied to nv: sequence numbers 1..applied
	buf := make([]byte, r.Info().MaxSnapshot)
	now := int64(time.Second)
	var lost, compared, deep, emptied, staleSeen int
	step := func() {
		now += int64(2 * time.Millisecond)
		h.arb.Tick(now)
		rec.poll(now)
		h.endBatch()
	}
	for i := 0; i < len(pkts); i++ {
		if i > 10 && rng.IntN(60) == 0 && i+5 < len(pkts) {
			// Lose 1 to 4 packets, then deliver the next: a gap.
			n := 1 + rng.IntN(4)
			lost += n
			i += n
		}
		served.Store(first[i] + uint64(messagesOf(t, pkts[i])))
		h.arb.Offer(0, pkts[i], now)
		step()
		for k := 0; rec.fetching || rec.wantSnap || sh.pub.stale || sh.pub.Sweeping(); k++ {
			if k == 5000 {
				t.Fatalf("packet %d: not whole: fetching %v, wanted %v, stale %v, %+v", i, rec.fetching, rec.wantSnap, sh.pub.stale, rec.stats)
			}
			time.Sleep(100 * time.Microsecond)
			step()
			if k == 2000 {
				select {
				case release <- struct{}{}:
				default:
				}
			}
			if sh.pub.stale && !sh.pub.Sweeping() {
				// A gap is open and its flag reached every book.
				for loc, in := range nv.instr {
					v, err := r.Read(loc, buf)
					if err != nil {
						t.Fatalf("packet %d: locate %d: %v", i, loc, err)
					}
					if v.Flags()&bookfb.FlagsPossiblyStale == 0 {
						t.Fatalf("packet %d: a gap is open (next %d) and locate %d %s is not flagged possibly stale", i, h.arb.Next(), loc, in.name)
					}
					staleSeen++
				}
				select {
				case release <- struct{}{}:
				default:
				}
			}
		}
		for ; applied+1 < h.arb.Next(); applied++ {
			nv.apply(msgs[applied], applied+1, 0)
		}
		for loc, in := range nv.instr {
			v, err := r.Read(loc, buf)
			if err != nil {
				t.Fatalf("packet %d: locate %d: %v", i, loc, err)
			}
			bids, asks := nv.levels(loc, true), nv.levels(loc, false)
			deep += b2i(len(bids) > depth || len(asks) > depth)
			emptied += b2i(len(bids)+len(asks) == 0 && in.msgs > 1)
			what := func(f string, got, want any) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("packet %d (next %d, %d lost, %d snapshots), locate %d %s: reader's %s %v, the naive book's %v",
						i, h.arb.Next(), lost, rec.stats.Snapshots, loc, in.name, f, got, want)
				}
			}
			whatLevels(what, v, in.name, bids, asks, depth)
			what("flags", v.Flags(), in.flags(bids, asks))
			what("trading_state", v.TradingState(), shm.TradingState(in.state))
			what("last trade", [2]uint64{uint64(v.LastTradePrice()), v.LastTradeShares()}, [2]uint64{uint64(in.lastPrice), in.lastShares})
			what("volume", v.Volume(), in.volume)
			what("system_event", v.SystemEvent(), nv.event)
			compared++
		}
	}
	if applied != uint64(len(msgs)) {
		t.Fatalf("%d messages delivered of %d", applied, len(msgs))
	}
	t.Logf("depth %d: %d packets lost, %d snapshots loaded, %d books compared (%d deeper than the depth, %d emptied), %d read flagged during a gap",
		depth, lost, rec.stats.Snapshots, compared, deep, emptied, staleSeen)
	if lost == 0 || rec.stats.Snapshots == 0 || deep == 0 || emptied == 0 || staleSeen == 0 {
		t.Fatal("the day misses a case")
	}
}
