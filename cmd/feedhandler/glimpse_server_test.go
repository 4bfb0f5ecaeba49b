package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestSendSnapshotListen: `send --snapshot-listen` serves snapshots at the
// position the sender has reached while it sends.
func TestSendSnapshotListen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.itch")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := itchgen.New(itchgen.Config{Messages: 20_000, Symbols: 20, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The sender, its snapshot server and the client in a network
	// namespace of the test's own: send on a thread switched into it (its
	// sockets are opened before it sends), the fetches dialled there.
	ns := loNetns(t, "fhsendsnap")
	udp := listenUDPIn(t, ns)
	defer udp.Close()
	ln := listenIn(t, ns)
	addr := ln.Addr().String()
	ln.Close()
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600) //nolint:errcheck
	done := make(chan error, 1)
	go func() {
		done <- netlab.Do(ns, func() error {
			return sendFile([]string{"-a", udp.LocalAddr().String(), "--rate", "400", "--session", "TESTSESS01",
				"--snapshot-listen", addr, "--snapshot-user", "lab", "--snapshot-password-file", pwFile, "--snapshot-linger", "200ms", path}, io.Discard)
		})
	}()
	var last uint64
	for i := range 3 {
		time.Sleep(300 * time.Millisecond)
		var res glimpse.Result
		err := netlab.Do(ns, func() (err error) {
			res, err = glimpse.Fetch(context.Background(), glimpse.Config{Addr: addr, Username: "lab", Password: "s3cret", IdleTimeout: 5 * time.Second}, func([]byte) error { return nil })
			return err
		})
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if res.Session != "TESTSESS01" || res.NextSeq <= 1 || res.NextSeq < last {
			t.Fatalf("fetch %d: %+v after NextSeq %d", i, res, last)
		}
		last = res.NextSeq
		t.Logf("fetch %d: %+v", i, res)
	}
	if err := await(t, "send's return after its snapshot linger", done); err != nil {
		t.Fatal(err)
	}
}

// TestGlimpseServerUsage: glimpse-server serves until interrupted and takes
// its session from --session; its help said --snapshot-linger kept it
// serving "after the send ends" (it has no send and ignored the flag) and
// that --snapshot-session defaulted to "the MoldUDP64 session".
func TestGlimpseServerUsage(t *testing.T) {
	_, errOut, err := runCommand(t, "glimpse-server", "-h")
	if err != nil {
		t.Fatalf("glimpse-server -h: %v\n%s", err, errOut)
	}
	for _, bad := range []string{"-snapshot-linger", "after the send ends", "the MoldUDP64 session"} {
		if strings.Contains(errOut, bad) {
			t.Errorf("glimpse-server -h says %q:\n%s", bad, errOut)
		}
	}
	if !strings.Contains(errOut, "(default: --session)") {
		t.Errorf("glimpse-server -h does not say --snapshot-session defaults to --session:\n%s", errOut)
	}
	// send's server does stop when the send ends.
	_, errOut, _ = runCommand(t, "send", "-h")
	for _, want := range []string{"-snapshot-linger", "after the send ends", "(default: the MoldUDP64 session)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("send -h lacks %q:\n%s", want, errOut)
		}
	}
}

// TestGlimpsePasswordEnv: the lab server's password variable is the one the
// shipped feed file's recovery.snapshot.password_env names (it was
// FEEDHANDLER_SNAPSHOT_PASSWORD, so a lab server and a handler on
// feeds/nasdaq.yaml needed the password under two names); the old name is
// still read when the new one is unset, and -h names both.
func TestGlimpsePasswordEnv(t *testing.T) {
	cfg, err := config.LoadOffline("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Recovery.Snapshot.PasswordEnv; got != passwordEnv {
		t.Errorf("feeds/nasdaq.yaml's recovery.snapshot.password_env is %s; glimpse-server reads $%s", got, passwordEnv)
	}
	empty := ""
	f := &snapshotFlags{passwordFile: &empty}
	for _, tc := range []struct{ glimpse, old, want string }{
		{"new", "old", "new"},
		{"", "old", "old"},
		{"new", "", "new"},
	} {
		t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", tc.glimpse)
		t.Setenv("FEEDHANDLER_SNAPSHOT_PASSWORD", tc.old)
		if got, err := f.password(); err != nil || got != tc.want {
			t.Errorf("FEEDHANDLER_GLIMPSE_PASSWORD=%q FEEDHANDLER_SNAPSHOT_PASSWORD=%q: password %q, %v; want %q", tc.glimpse, tc.old, got, err, tc.want)
		}
	}
	_, errOut, _ := runCommand(t, "glimpse-server", "-h")
	if !strings.Contains(errOut, "$FEEDHANDLER_GLIMPSE_PASSWORD, else $FEEDHANDLER_SNAPSHOT_PASSWORD") {
		t.Errorf("glimpse-server -h does not name $FEEDHANDLER_GLIMPSE_PASSWORD and the old name:\n%s", errOut)
	}
}
