package glimpse

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// FuzzFetch plays a server that accepts the login and then sends the fuzz
// input as its byte stream: Fetch never panics or hangs, delivers only
// known ITCH messages of at least their type's length (a longer one counted
// in LongMessages), and ends with nil (after a valid Snapshot message) or
// one of the sentinel errors.
func FuzzFetch(f *testing.F) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	good := soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, add.Append(nil))
	good = soupbintcp.AppendPacket(good, soupbintcp.TypeSequencedData, AppendSnapshot(nil, 7))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, []byte("G                   x")))
	f.Add(soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, []byte{'A', 0, 1}))
	f.Add(soupbintcp.AppendPacket(nil, soupbintcp.TypeEndOfSession, nil))
	f.Add([]byte{0, 0})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	inputs := make(chan []byte)
	go func() {
		for data := range inputs {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := soupbintcp.NewServerConn(c, soupbintcp.ServerConfig{HeartbeatInterval: time.Hour})
			if _, err := sc.ReadLogin(); err == nil && sc.Accept("FUZZ", 1) == nil {
				sc.WriteRaw(data, 0) //nolint:errcheck
				sc.Flush()           //nolint:errcheck
			}
			sc.Close()
		}
	}()
	defer close(inputs)
	f.Fuzz(func(t *testing.T, data []byte) {
		inputs <- data
		var st Stats
		var long uint64
		res, err := Fetch(context.Background(), Config{Addr: ln.Addr().String(), IdleTimeout: 2 * time.Second, Stats: &st}, func(m []byte) error {
			if !itch.Known(m[0]) || len(m) < itch.Length(m[0]) {
				t.Fatalf("delivered %q", m)
			}
			if len(m) > itch.Length(m[0]) {
				long++
			}
			return nil
		})
		if st.LongMessages.Load() != long {
			t.Fatalf("delivered %d long messages, counted %d", long, st.LongMessages.Load())
		}
		switch {
		case err == nil:
			if res.NextSeq == 0 || st.Completed.Load() != 1 {
				t.Fatalf("completed with %+v", res)
			}
		case errors.Is(err, ErrProtocol), errors.Is(err, ErrEndOfSession), errors.Is(err, ErrStalled), errors.Is(err, ErrLoginRejected):
		default:
			t.Fatalf("error %v is none of the sentinels", err)
		}
	})
}

// FuzzHandle gives handle (one Sequenced Data payload of a snapshot)
// arbitrary bytes: each payload is an error counted once (empty, short,
// bad Snapshot message, all ErrProtocol), the end with a sequence number,
// an unknown type skipped and counted, or a known ITCH message of at least
// its length to deliver (a longer one counted).
func FuzzHandle(f *testing.F) {
	f.Add(AppendSnapshot(nil, 7))
	f.Add([]byte("G                   0"))
	f.Add([]byte("B00000000000000000000"))
	f.Add([]byte{'A', 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		var st Stats
		next, done, err := handle(&st, p)
		bad := st.EmptyMessages.Load() + st.ShortMessages.Load() + st.BadSnapshot.Load()
		switch {
		case err != nil:
			if !errors.Is(err, ErrProtocol) || bad != 1 || next != 0 || done {
				t.Fatalf("%q: %v, counted %d, next %d done %v", p, err, bad, next, done)
			}
		case done:
			if next == 0 || p[0] != TypeSnapshot || bad != 0 {
				t.Fatalf("%q: done at %d", p, next)
			}
		case next == 0:
			if itch.Known(p[0]) || st.UnknownMessages.Load() != 1 {
				t.Fatalf("%q skipped", p)
			}
		default:
			long := uint64(0)
			if len(p) > itch.Length(p[0]) {
				long = 1
			}
			if next != 1 || !itch.Known(p[0]) || len(p) < itch.Length(p[0]) || st.LongMessages.Load() != long || bad != 0 {
				t.Fatalf("%q delivered (next %d), long counted %d", p, next, st.LongMessages.Load())
			}
		}
	})
}
