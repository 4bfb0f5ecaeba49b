package handler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestFollowerLearnsOfRetirement: a strategy that follows the journal
// (shm.Follower) and reads each locate a record names learns that a book
// was retired without a publish of its locate, in both journal modes:
// AAPL's locate 5 withdrawn by the symbol filter (a Stock Directory gave
// it a symbol left out), and, after a rebuild (a new session), MSFT moved
// from locate 6 to locate 9, locate 6 not used again. Each leaves a record
// of the old locate past the version the follower had, and the read it
// makes then says the book is gone (ErrUnknownLocate) or returns its final
// version flagged PossiblyStale, never the old book as live. Before the
// writer journaled retirements the follower got no record of 5 or 6 and
// kept showing both books.
func TestFollowerLearnsOfRetirement(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) {
			w, r := shmFeed(t, shm.Config{Instruments: 8, Depth: 2, SingleWriter: single})
			bs, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
			if err != nil {
				t.Fatal(err)
			}
			p := NewPublisher(w, bs, 2)
			p.BooksReset()
			seq := uint64(0)
			apply := func(msg []byte) {
				seq++
				loc, changed := bs.Apply(itch.Msg(msg))
				p.Applied(loc, changed, seq, int64(seq))
			}
			f := r.Follow()
			ups := make([]shm.Update, 64)
			buf := make([]byte, r.Info().MaxSnapshot)
			seen := map[uint16]uint64{} // the follower's last version of each locate
			// follow polls and reads every locate named, as a strategy
			// does; it returns what each read said: "live", "stale" or
			// the error.
			follow := func() map[uint16]string {
				t.Helper()
				n, err := f.Poll(ups)
				if err != nil {
					t.Fatal(err)
				}
				got := map[uint16]string{}
				for _, u := range ups[:n] {
					if u.Version <= seen[u.Locate] && u.Version != 1 {
						continue // seen already (a rebound locate starts again from 1)
					}
					seen[u.Locate] = u.Version
					v, err := r.Read(u.Locate, buf)
					switch {
					case err != nil:
						got[u.Locate] = err.Error()
					case v.Flags()&bookfb.FlagsPossiblyStale != 0:
						got[u.Locate] = "stale " + string(v.Symbol())
					default:
						got[u.Locate] = "live " + string(v.Symbol())
					}
				}
				return got
			}
			gone := func(how string, got map[uint16]string, loc uint16) {
				t.Helper()
				s, ok := got[loc]
				if !ok {
					t.Fatalf("%s: no record of locate %d: the follower keeps showing its old book (records read: %v)", how, loc, got)
				}
				if _, err := r.Read(loc, buf); !errors.Is(err, shm.ErrUnknownLocate) {
					t.Fatalf("%s: read of locate %d: %v, want ErrUnknownLocate", how, loc, err)
				}
				if strings.HasPrefix(s, "live") {
					t.Fatalf("%s: locate %d read as %q after its retirement", how, loc, s)
				}
			}
			apply(filterDir(5, "AAPL"))
			apply(filterAdd(5, "AAPL", 1, 1000))
			apply(filterDir(6, "MSFT"))
			apply(filterAdd(6, "MSFT", 2, 2000))
			p.Flush()
			if got := follow(); got[5] != "live AAPL" || got[6] != "live MSFT" {
				t.Fatalf("published: %v", got)
			}

			// Locate 5 given to a symbol the filter leaves out.
			if !bs.Withdraw(5) {
				t.Fatal("locate 5 unknown")
			}
			p.Withdrawn(5)
			p.Flush()
			gone("withdrawn", follow(), 5)

			// A new session: MSFT is locate 9; locate 6 is not used.
			bs.Reset()
			p.BooksReset()
			apply(filterDir(9, "MSFT"))
			apply(filterAdd(9, "MSFT", 3, 2100))
			p.Flush()
			got := follow()
			if got[9] != "live MSFT" {
				t.Fatalf("moved: locate 9 read as %q, want MSFT's book", got[9])
			}
			gone("moved", got, 6)
		})
	}
}
