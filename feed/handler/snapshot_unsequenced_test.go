package handler

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// TestSnapshotUnsequencedWarnedOnce: a GLIMPSE server that sends
// SoupBinTCP Unsequenced Data packets during its snapshots, which GLIMPSE
// does not: each snapshot still loads (the packets are ignored), they are
// counted, and the first fetch that read any logs a warning, once a
// process, not once a fetch. Before, the client counted them and nothing
// read the count: an operator never heard of a server behaving otherwise
// than GLIMPSE.
func TestSnapshotUnsequencedWarnedOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var spin []byte
	for _, m := range [][]byte{dirMsg("SNAP"), addMsg7("SNAP", 1, 1111), glimpse.AppendSnapshot(nil, 4000)} {
		spin = soupbintcp.AppendPacket(spin, soupbintcp.TypeUnsequencedData, []byte("not GLIMPSE"))
		spin = soupbintcp.AppendPacket(spin, soupbintcp.TypeSequencedData, m)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil { // the login request
					return
				}
				c.Write(append(soupbintcp.AppendLoginAccepted(nil, "", 1), spin...)) //nolint:errcheck // the fetch fails if it does not arrive
				for {                                                                // until the client's logout closes it
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	st := new(glimpse.Stats)
	h, _, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: ln.Addr().String(), Username: "u", Password: "p", Stats: st}))
	rec.cfg.SnapshotStats = st
	var logs bytes.Buffer
	h.log = zerolog.New(&logs)

	now := int64(time.Second)
	joinLate(h, "ONE", now)
	h.arb.Tick(now + int64(time.Millisecond))
	pollUntilLoaded(t, h, rec, 1, now)
	now += 2 * int64(time.Second)
	joinLate(h, "TWO", now) // a session change: a snapshot of TWO
	h.arb.Tick(now + int64(time.Millisecond))
	pollUntilLoaded(t, h, rec, 2, now)

	if n := st.UnsequencedPacket.Load(); n != 6 {
		t.Errorf("Unsequenced Data packets counted %d, want 6 (3 a snapshot)", n)
	}
	if n := strings.Count(logs.String(), "Unsequenced Data"); n != 1 {
		t.Errorf("two snapshots with Unsequenced Data packets logged %d warnings of them, want 1:\n%s", n, logs.String())
	}
}
