package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestCaptureReplaysLiveBooks runs the binary in a lab with capture.path
// set, sends a generated day on two lines that both lose (some packets on
// both: gaps) and duplicate packets, stops it, and replays the capture it
// wrote with `feedhandler replay`: the replayed books (--books-out --depth
// 10) must equal the live ones the handler published (bookview --once
// --json), the replay must miss what the handler declared missing, and
// the capture must hold every datagram the handler counted on each line
// (tshark reading it too, when installed).
//
// The lines do not reorder: a copy arriving later than arbitration.grace
// after both lines moved past it is dropped live (a gap) but applied by
// replay, whose reader holds packets by its own reorder window; the
// capture is faithful, the two arbitrations differ (docs/OPERATIONS.md,
// "Capture to disk").
func TestCaptureReplaysLiveBooks(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reorder   float64
		rerequest bool
		snapshot  snapshotRun
	}{
		{"loss-dups", 0, false, 0},
		// Reordered lines: a late copy can be decided otherwise than the
		// handler decided it by the reader's own window, not by replay
		// --feed, which ticks its arbiter where the handler's receive
		// thread found the lines empty (the capture's batch marks).
		{"reordered", 0.02, false, 0},
		// What both lines lost the handler re-requests: the capture
		// holds the answers where it received them, and replay --feed
		// holds for them and applies them as the handler did: no gap,
		// the live books.
		{"rerequest", 0, true, 0},
		// With a GLIMPSE server and no re-request server the handler
		// repairs every gap by snapshot: delivery frozen, the books
		// rebuilt from it, the spilled lines delivered from its number
		// on. The capture holds where it froze, the snapshot's messages
		// and where it loaded them: replay --feed rebuilds the books
		// there, the live books. Mid-day gaps; and a late join (the
		// handler started while the first third of the day was sent),
		// whose books come from a snapshot alone.
		{"snapshot-gap", 0, false, snapshotGap},
		{"snapshot-late-join", 0, false, snapshotLateJoin},
	} {
		t.Run(tc.name, func(t *testing.T) { captureReplaysLiveBooks(t, tc.reorder, tc.rerequest, tc.snapshot) })
	}
}

// snapshotRun is how captureReplaysLiveBooks uses a snapshot server.
type snapshotRun int

const (
	snapshotGap      snapshotRun = 1 + iota // gaps repaired by snapshot
	snapshotLateJoin                        // the same, the day's first third not sent: a late join
)

// captureReplaysLiveBooks is TestCaptureReplaysLiveBooks with the lines
// reordering packets with probability reorder (0: none), and with a
// re-request server the handler repairs the gaps from (rerequest), or a
// snapshot server (snap).
func captureReplaysLiveBooks(t *testing.T, reorder float64, rerequest bool, snap snapshotRun) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fhc"})
	dir := t.TempDir()
	bin := buildFeedhandler(t, dir)
	day, err := demo.GenerateDay(60_000, 50, 7)
	if err != nil {
		t.Fatal(err)
	}
	shmName := shmtest.Name(t, "fhcapture")
	capDir := filepath.Join(dir, "capture")
	if err := os.Mkdir(capDir, 0o755); err != nil {
		t.Fatal(err)
	}
	recovery := ""
	hist := new(exchange.History) // the day, for the recovery servers
	for _, p := range day.Packets {
		hist.Record(p)
	}
	if rerequest {
		var rr *exchange.RerequestServer
		if err := lab.Do(lab.Src, func() (err error) {
			rr, err = exchange.NewRerequestServer(exchange.RerequestConfig{
				Listen: netip.AddrPortFrom(lab.SrcIP, demo.RerequestPort), Session: day.Session, Message: hist.Message, Seed: 3})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer rr.Close()
		recovery = fmt.Sprintf("recovery: {rerequest: {servers: [\"%s\"]}}\n", rr.Addr())
	}
	var sender atomic.Pointer[exchange.Sender]
	if snap != 0 {
		var srv *exchange.SnapshotServer
		if err := lab.Do(lab.Src, func() (err error) {
			srv, err = exchange.NewSnapshotServer(exchange.SnapshotConfig{
				Listen: netip.AddrPortFrom(lab.SrcIP, 0).String(), Username: "u", Password: "p", Session: day.Session.String(),
				Messages: func(seq uint64) ([]byte, bool) { return hist.Message(nil, seq) },
				Position: func() uint64 {
					if s := sender.Load(); s != nil {
						return s.Sent()
					}
					return 0
				}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go srv.Serve()
		defer srv.Close()
		t.Setenv("FHC_SNAPSHOT_PW", "p") // the handler's, and replay --feed's config load
		recovery = fmt.Sprintf("recovery: {snapshot: {server: \"%s\", username: u, password_env: FHC_SNAPSHOT_PW}}\n", srv.Addr())
	}
	cfg := fmt.Sprintf(`feed: {name: capturetest, session: %q}
lines:
  a: {interface: %s, group: %s, port: %d}
  b: {interface: %s, group: %s, port: %d}
receive: {backend: socket}
arbitration: {hold: 1s}
shm: {name: %s}
metrics: {listen: 127.0.0.1:9477}
capture:
  path: %s
log: {format: json}
%s`, day.Session.String(), lab.DstIf, demo.GroupA.Addr(), demo.GroupA.Port(), lab.DstIf, demo.GroupB.Addr(), demo.GroupB.Port(),
		shmName, filepath.Join(capDir, "lines.pcap"), recovery)
	cfgPath := filepath.Join(dir, "feed.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, "ip", "netns", "exec", lab.Dst, bin, "--feed", cfgPath)
	stderr, exited, ready, finished := startLogged(t, cmd, func(l string) bool { return strings.Contains(l, "health on /healthz") })
	defer cmd.Process.Kill()
	awaitReady(t, ready, exited, stderr.String, "capturing")
	var s *exchange.Sender
	if err := lab.Do(lab.Src, func() (err error) {
		s, err = exchange.NewSender(exchange.Config{Interface: lab.SrcIf, Rate: 20000, Seed: 5, Lines: []exchange.Line{
			{Group: demo.GroupA.Addr(), Port: demo.GroupA.Port(), Loss: 0.05, Dup: 0.05, Reorder: reorder},
			{Group: demo.GroupB.Addr(), Port: demo.GroupB.Port(), Loss: 0.05, Dup: 0.05, Reorder: reorder},
		}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sender.Store(s)
	pkts := day.Packets
	if snap == snapshotLateJoin {
		pkts = pkts[len(pkts)/3:]
	}
	sent, err := s.Send(context.Background(), exchange.Packets(pkts))
	if err != nil {
		t.Fatal(err)
	}
	// The day ends with End of Session: wait until everything before it
	// was delivered or declared missing.
	waitMetric(t, lab, "feedhandler_session_ended", 1, stderr)
	interruptExits(t, cmd, exited, stderr.String)
	<-finished
	var live bytes.Buffer
	var se *writerStateError
	if err := bookview([]string{"--shm", shmName, "--once", "--json"}, &live); !errors.As(err, &se) {
		t.Fatalf("bookview after the stop: %v, want the books and the writer closed", err)
	}
	files, _ := filepath.Glob(filepath.Join(capDir, "lines-*.pcap"))
	if len(files) != 1 {
		t.Fatalf("capture files %v, want one lines-<time>.pcap\n%s", files, stderr.String())
	}
	if live.Len() < 1000 {
		t.Fatalf("live books suspiciously small: %q", live.Bytes())
	}
	liveGapMsgs := finalStat(t, stderr.String(), "gap_msgs")
	if rerequest {
		if liveGapMsgs != 0 {
			t.Errorf("the live handler declared %d messages missing: want every gap repaired by re-request", liveGapMsgs)
		}
	} else if liveGapMsgs == 0 {
		t.Error("no message lost on both lines: the day tested no gap (the sender's seed or loss changed?)")
	}
	replayCapture := func(args ...string) (replayReport, []byte) {
		return replayBooks(t, append(args, files[0])...)
	}
	// Arbitrated as the handler did (--feed, by the capture's batch
	// marks), and with the reader's own reorder window: the same
	// holes, what both lines lost, and the same books. (With
	// reordering on a line the reader's window can decide a late
	// copy otherwise than the handler did: OPERATIONS.md.)
	rep, replayed := replayCapture("--feed", cfgPath)
	if rep.InputMissing != liveGapMsgs {
		t.Errorf("replay --feed misses %d messages (%d gaps), the live handler declared %d missing", rep.InputMissing, rep.InputGaps, liveGapMsgs)
	}
	if !bytes.Equal(live.Bytes(), replayed) {
		t.Errorf("the capture's replay --feed differs from the live books:\nlive:     %.400s\nreplayed: %.400s", live.Bytes(), replayed)
	}
	if a := rep.Arbitrated; a == nil || a.Marked == 0 || a.Marked != a.Datagrams[0]+a.Datagrams[1] {
		t.Errorf("replay --feed: %+v; want every datagram of the live capture arbitrated by its batch mark", a)
	}
	if a := rep.Arbitrated; rerequest && (a == nil || a.LiveRecovery.Answers == 0 || a.Other != 0) {
		t.Errorf("replay --feed: %+v; want the capture's re-request answers (none of a line)", a)
	}
	if a := rep.Arbitrated; snap != 0 && (a == nil || a.LiveRecovery.Snapshots == 0 || a.LiveRecovery.SnapshotsReplayed != a.LiveRecovery.Snapshots) {
		t.Errorf("replay --feed: %+v; want snapshots loaded live, each replayed from the capture", a)
	}
	if snap != 0 {
		snaps := finalStat(t, stderr.String(), "snapshots")
		t.Logf("the live handler loaded %d snapshots, declared %d messages missing", snaps, liveGapMsgs)
	}
	rep, replayed = replayCapture()
	if reorder != 0 || rerequest || snap != 0 {
		t.Logf("without --feed, by the reader's own window: %d messages missing (%d gaps), the live handler declared %d missing; books equal: %v",
			rep.InputMissing, rep.InputGaps, liveGapMsgs, bytes.Equal(live.Bytes(), replayed))
	} else {
		if rep.InputMissing != liveGapMsgs {
			t.Errorf("the replay misses %d messages (%d gaps), the live handler declared %d missing", rep.InputMissing, rep.InputGaps, liveGapMsgs)
		}
		if !bytes.Equal(live.Bytes(), replayed) {
			t.Errorf("the capture's replay differs from the live books:\nlive:     %.400s\nreplayed: %.400s", live.Bytes(), replayed)
		}
	}
	// Both lines are in the capture, their duplicates too.
	r, err := input.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	st := r.Stats()
	var dups uint64
	for _, l := range sent.Lines {
		dups += l.Duplicated
	}
	all := st.Lines
	if rerequest && len(st.Lines) == 3 && st.Lines[2].Dst == netip.AddrPortFrom(netip.IPv4Unspecified(), 0) {
		st.Lines = st.Lines[:2] // the answers' (the reader takes them as a line)
	}
	if len(st.Lines) != 2 || dups == 0 || sent.Lines[0].Dropped == 0 || sent.Lines[1].Dropped == 0 {
		t.Fatalf("capture of %d lines (%+v); the sender duplicated %d, dropped %d and %d: want both lines, losses on both", len(st.Lines), st.Lines, dups, sent.Lines[0].Dropped, sent.Lines[1].Dropped)
	}
	// Every datagram the handler counted on a line is in the capture
	// (nothing dropped from it), from its line's group.
	for i, name := range []string{"A", "B"} {
		pkts := finalStat(t, stderr.String(), "line_"+name+"_pkts")
		want := demo.GroupA
		if i == 1 {
			want = demo.GroupB
		}
		got := st.Lines[0]
		if got.Dst != want {
			got = st.Lines[1]
		}
		if got.Dst != want || pkts == 0 || got.Datagrams != pkts {
			t.Errorf("line %s: %d datagrams to %v in the capture, the handler counted %d packets (stats %+v)", name, got.Datagrams, want, pkts, st.Lines)
		}
	}
	tsharkCheck(t, files[0], all)
	if !strings.Contains(stderr.String(), `"capture closed"`) || !strings.Contains(stderr.String(), `"dropped":0`) {
		t.Errorf("no capture closed line with nothing dropped:\n%s", stderr.String())
	}
}

// finalStat is the value of key in the final stats line of a JSON log.
func finalStat(t *testing.T, log, key string) uint64 {
	t.Helper()
	for _, l := range strings.Split(log, "\n") {
		var rec map[string]any
		if !strings.Contains(l, `"final":true`) || json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		if v, ok := rec[key].(float64); ok {
			return uint64(v)
		}
	}
	t.Fatalf("no %s in a final stats line:\n%s", key, log)
	return 0
}

// tsharkCheck has tshark (Debian package tshark) read the capture: every
// frame but the marker frames (EtherType 0x88b5) an IPv4/UDP datagram to
// one of the lines, as many to each as the replay's reader found.
func tsharkCheck(t *testing.T, path string, lines []input.LineStats) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed (Debian package tshark): the capture not read by it")
		return
	}
	out, err := boundedCommand(t, "tshark", "-r", path, "-T", "fields", "-e", "eth.type", "-e", "ip.dst", "-e", "udp.dstport").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", path, err, out)
	}
	got := map[string]uint64{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		typ, dst, _ := strings.Cut(l, "\t")
		if typ == "0x88b5" {
			continue // a marker frame
		}
		got[strings.ReplaceAll(dst, "\t", ":")]++
	}
	want := map[string]uint64{}
	for _, l := range lines {
		want[l.Dst.String()] = l.Datagrams
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tshark reads %v datagrams by destination, the replay's reader %v", got, want)
	}
}
