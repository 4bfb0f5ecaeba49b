package handler

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestSnapshotTimeoutsFromConfig: recovery.snapshot.connect_timeout,
// idle_timeout, max_duration and max_size reach the GLIMPSE client that
// FromConfig's snapshot source runs, each against a server that trips
// it: one that never answers the login, one silent after it, one that
// heartbeats and never ends the snapshot, one that streams messages and
// never ends it. The error names the value configured; without the
// wiring the client's defaults (5 s, 15 s, 10 min, 2 GiB) apply instead.
func TestSnapshotTimeoutsFromConfig(t *testing.T) {
	t.Setenv("FH_TEST_SNAPSHOT_PASSWORD", "p")
	for _, tc := range []struct {
		key, value string
		serve      func(net.Conn) // after the login request; nil: never accepted
		want       error
		says       string
		cause      string // recovery_snapshot_fetch_errors_total's
	}{
		{"connect_timeout", "100ms", nil, nil, "not logged in within 100ms", "dial"},
		{"idle_timeout", "2s", func(c net.Conn) {}, glimpse.ErrStalled, "(2s)", "stalled"},
		{"max_duration", "1s", func(c net.Conn) {
			hb := soupbintcp.AppendPacket(nil, soupbintcp.TypeServerHeartbeat, nil)
			for {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write(hb); err != nil {
					return
				}
			}
		}, glimpse.ErrTooLong, "no End of Snapshot 1s after the login", "too_long"},
		{"max_size", "1MiB", func(c net.Conn) {
			// 2 MiB of messages, never ended; the client stops reading
			// at 1 MiB (the writes block until it goes).
			var b []byte
			for len(b) < 2<<20 {
				b = soupbintcp.AppendPacket(b, soupbintcp.TypeSequencedData, filterAdd(7, "AAA", 1, 1000))
			}
			c.Write(b) //nolint:errcheck // the client goes before the end
		}, glimpse.ErrTooLong, "within 1048576 bytes of messages", "too_long"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if tc.serve != nil {
				go snapshotScript(ln, tc.serve)
			} // else: the kernel completes the handshake, nothing reads the login
			rc := snapshotFromConfig(t, ln, "    "+tc.key+": "+tc.value+"\n")
			snap := rc.Snapshot
			// A bound for the test only, far above the values configured.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = snap(ctx, moldudp64.Session{}, func([]byte) error { return nil })
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%s: %s: fetch error %v; want %v saying %q", tc.key, tc.value, err, tc.want, tc.says)
			}
			// Counted under the cause recovery_snapshot_fetch_errors_total
			// gives it (snapshotFetchErrors).
			var st Stats
			st.Recovery.SnapshotClient = rc.SnapshotStats.Snapshot()
			causes := snapshotFetchErrors(&st)
			if i := slices.Index(snapshotErrorCauses[:], tc.cause); i < 0 || causes[i] != 1 {
				t.Errorf("%s: fetch errors by cause %v (%v); want 1 %s", tc.key, causes, snapshotErrorCauses, tc.cause)
			}
		})
	}
}

// snapshotFromConfig is FromConfig's recovery for a feed file whose
// snapshot server is ln, its password in FH_TEST_SNAPSHOT_PASSWORD, with
// the snapshot keys more (indented) besides.
func snapshotFromConfig(t *testing.T, ln net.Listener, more string) RecoveryConfig {
	t.Helper()
	text := "feed: {name: t}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\nrecovery:\n  snapshot:\n" +
		"    server: " + ln.Addr().String() + "\n    username: u\n    password_env: FH_TEST_SNAPSHOT_PASSWORD\n" + more
	c, err := config.Parse("t.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return FromConfig(c, zerolog.Nop()).Recovery
}

// snapshotScript accepts one client on ln, reads its login request,
// accepts it (session blank, sequence number 1) and hands the
// connection to serve; it closes it when serve returns and the client
// has gone.
func snapshotScript(ln net.Listener, serve func(net.Conn)) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	buf := make([]byte, 4096)
	if _, err := c.Read(buf); err != nil {
		return
	}
	if _, err := c.Write(soupbintcp.AppendLoginAccepted(nil, "", 1)); err != nil {
		return
	}
	serve(c)
	for { // until the client closes: its heartbeats and logout read
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// TestSnapshotBadInputExported: what the GLIMPSE client of FromConfig's
// snapshot source counts of a snapshot's bad input, messages longer than
// their type (delivered) and of types ITCH 5.0 does not define (skipped,
// never seen by the books), reaches the Stats and /metrics of a handler
// with that config's recovery. Before, the source's client counted into
// counters of its own per fetch, which nothing read. So do its fetches,
// their failures by cause (a second fetch, its login rejected), the bytes
// and messages read, and the heartbeats, Debug and Unsequenced Data
// packets among them: before, only the first two reached /metrics.
func TestSnapshotBadInputExported(t *testing.T) {
	t.Setenv("FH_TEST_SNAPSHOT_PASSWORD", "p")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	unknown := []byte{'@', 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if itch.Known(unknown[0]) {
		t.Fatalf("'%c' is an ITCH 5.0 type", unknown[0])
	}
	msgs := [][]byte{
		append(filterDir(7, "AAA"), "appended"...), // 8 bytes past a Stock Directory's
		unknown,
		filterDir(8, "BBB"),
		append(filterAdd(7, "AAA", 1, 1000), 0, 0), // 2 bytes past an Add Order's
		glimpse.AppendSnapshot(nil, 5),
	}
	// The bytes the client reads: the Login Accepted, then b.
	var b []byte
	b = soupbintcp.AppendPacket(b, soupbintcp.TypeServerHeartbeat, nil)
	b = soupbintcp.AppendPacket(b, soupbintcp.TypeDebug, []byte("spin starts"))
	b = soupbintcp.AppendPacket(b, soupbintcp.TypeUnsequencedData, []byte("?"))
	for _, m := range msgs {
		b = soupbintcp.AppendPacket(b, soupbintcp.TypeSequencedData, m)
	}
	read := len(soupbintcp.AppendLoginAccepted(nil, "", 1)) + len(b)
	go snapshotScript(ln, func(c net.Conn) {
		c.Write(b) //nolint:errcheck // the fetch fails if it does not arrive
	})
	rc := snapshotFromConfig(t, ln, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got int
	snap, err := rc.Snapshot(ctx, moldudp64.Session{}, func([]byte) error { got++; return nil })
	if err != nil || snap.Next != 5 || got != 3 {
		t.Fatalf("fetch: %+v, %d messages, %v; want next 5, 3 messages", snap, got, err)
	}
	// A second fetch, its login rejected ('A': not authorized).
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Read(make([]byte, 4096))                                                   //nolint:errcheck // the login request
		c.Write(soupbintcp.AppendLoginRejected(nil, soupbintcp.RejectNotAuthorized)) //nolint:errcheck
	}()
	if _, err := rc.Snapshot(ctx, moldudp64.Session{}, func([]byte) error { return nil }); !errors.Is(err, glimpse.ErrLoginRejected) {
		t.Fatalf("second fetch: %v; want %v", err, glimpse.ErrLoginRejected)
	}
	read += len(soupbintcp.AppendLoginRejected(nil, soupbintcp.RejectNotAuthorized))

	// A handler with that recovery's counters (and no source: it fetches
	// nothing itself).
	h, err := Start(Config{
		Feed:     "t",
		Receive:  rx.Config{Lines: []rx.LineConfig{{Name: "A"}}},
		Arbiter:  ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond},
		Book:     smallBooks,
		Mode:     ModeRunToCompletion,
		ShmName:  shmtest.Name(t, "fhsnapcount"),
		Recovery: RecoveryConfig{SnapshotStats: rc.SnapshotStats},
		Open:     func(rx.Config) (rx.Receiver, error) { return &scriptRx{errAt: -1}, nil },
		Log:      zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if st := h.Stats().Recovery.SnapshotClient; st.LongMessages != 2 || st.UnknownMessages != 1 {
		t.Errorf("Stats: snapshot long messages %d, unknown %d; want 2, 1", st.LongMessages, st.UnknownMessages)
	}
	samples := sampleValues(t, NewExposition(h).AppendText(nil))
	for name, want := range map[string]float64{
		"recovery_snapshot_long_messages_total": 2, "recovery_snapshot_unknown_messages_total": 1,
		"recovery_snapshot_fetches_total": 2, "recovery_snapshot_bytes_total": float64(read),
		"recovery_snapshot_fetched_messages_total": 3, "recovery_snapshot_heartbeats_total": 1,
		"recovery_snapshot_debug_packets_total": 1, "recovery_snapshot_unsequenced_packets_total": 1,
		`recovery_snapshot_fetch_errors_total{cause="login_rejected",feed="t"}`: 1,
		`recovery_snapshot_fetch_errors_total{cause="protocol",feed="t"}`:       0,
	} {
		series := "feedhandler_" + name
		if !strings.Contains(name, "{") {
			series += `{feed="t"}`
		}
		if v, ok := samples[series]; !ok || v != want {
			t.Errorf("/metrics: %s %v (exposed: %v); want %v", series, v, ok, want)
		}
	}
	if gs := rc.SnapshotStats; t.Failed() && gs != nil {
		t.Logf("the fetches' counters: %+v", gs.Snapshot())
	}
}
