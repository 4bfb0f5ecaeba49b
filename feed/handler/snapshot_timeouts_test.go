package handler

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// TestSnapshotTimeoutsFromConfig: recovery.snapshot.connect_timeout,
// idle_timeout and max_duration reach the GLIMPSE client that
// FromConfig's snapshot source runs, each against a server that trips
// it: one that never answers the login, one silent after it, one that
// heartbeats and never ends the snapshot. The error names the value
// configured; without the wiring the client's defaults (5 s, 15 s,
// 10 min) apply instead.
func TestSnapshotTimeoutsFromConfig(t *testing.T) {
	t.Setenv("FH_TEST_SNAPSHOT_PASSWORD", "p")
	for _, tc := range []struct {
		key, value string
		serve      func(net.Conn) // after the login request; nil: never accepted
		want       error
		says       string
	}{
		{"connect_timeout", "100ms", nil, nil, "not logged in within 100ms"},
		{"idle_timeout", "2s", func(c net.Conn) {}, glimpse.ErrStalled, "(2s)"},
		{"max_duration", "1s", func(c net.Conn) {
			hb := soupbintcp.AppendPacket(nil, soupbintcp.TypeServerHeartbeat, nil)
			for {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write(hb); err != nil {
					return
				}
			}
		}, glimpse.ErrTooLong, "no End of Snapshot 1s after the login"},
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
			text := "feed: {name: t}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\nrecovery:\n  snapshot:\n" +
				"    server: " + ln.Addr().String() + "\n    username: u\n    password_env: FH_TEST_SNAPSHOT_PASSWORD\n" +
				"    " + tc.key + ": " + tc.value + "\n"
			c, err := config.Parse("t.yaml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			snap := FromConfig(c, zerolog.Nop()).Recovery.Snapshot
			// A bound for the test only, far above the values configured.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = snap(ctx, moldudp64.Session{}, func([]byte) error { return nil })
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%s: %s: fetch error %v; want %v saying %q", tc.key, tc.value, err, tc.want, tc.says)
			}
		})
	}
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
