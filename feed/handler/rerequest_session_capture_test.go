package handler

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// TestSessionChangeWhileRerequestCaptured: a range being re-requested
// (its FHRQ frame written) when the lines change session is dropped with
// the old session (the arbiter's RecoveriesAbandoned: neither filled nor
// given up, no gap declared), and the capture says so where the session
// changed (capture.Discarded), so that its rotation, held for the range,
// is no longer, and no later file says the range again. The capture said
// nothing: the range stayed open in it, the rotation held to twice
// rotate_size and every file after restated a range of the old session.
func TestSessionChangeWhileRerequestCaptured(t *testing.T) {
	_, h, _, rec := scriptedRecovery(t, 10*time.Millisecond, time.Hour) // never answered, never given up
	dir := t.TempDir()
	c, err := capture.Open(capture.Config{Base: filepath.Join(dir, "feed.pcap"), Lines: testCaptureLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	h.capFile = c
	now := rerequestFifth(t, h, rec, "OLD")
	now += int64(time.Second) // OLD silent past LineTimeout
	for seq := uint64(1); seq <= 4; seq++ {
		h.arb.Offer(0, sessionPacket("NEW", seq, orderMsg("NEW", seq, seq)), now)
	}
	h.capFile = nil
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if h.arb.Session() != moldudp64.NewSession("NEW") || h.arb.Stats.RecoveriesAbandoned != 1 {
		t.Fatalf("following %q, %d recoveries abandoned: want NEW, the re-request of OLD abandoned", h.arb.Session(), h.arb.Stats.RecoveriesAbandoned)
	}
	if got := recoveryFrames(t, dir); got != "QD" {
		t.Fatalf("the capture's recovery frames %q: want QD, the range re-requested, then dropped at the session change", got)
	}
}

// recoveryFrames reads the one capture file in dir (openOneCapture) and
// returns its recovery's marker frames, a letter each: Q re-requested, G
// given up, Z frozen, D discarded (capture.Discarded), U resumed, S
// snapshot loaded.
func recoveryFrames(t *testing.T, dir string) string {
	t.Helper()
	pr, _ := openOneCapture(t, dir)
	pr.ReturnMarkers()
	var got []byte
	for {
		fr, err := pr.Next()
		if err != nil {
			return string(got)
		}
		p := fr.Payload
		if !fr.Marker {
			continue
		}
		_, _, q := capture.Rerequest(p)
		_, _, z := capture.Frozen(p)
		_, _, s := capture.Snapshot(p)
		for _, f := range []struct {
			ok     bool
			letter byte
		}{{q, 'Q'}, {capture.GaveUp(p), 'G'}, {z, 'Z'}, {capture.Discarded(p), 'D'}, {capture.Resumed(p), 'U'}, {s, 'S'}} {
			if f.ok {
				got = append(got, f.letter)
			}
		}
	}
}

// TestSpillOverflowEndsCapturedRerequest: a range being re-requested
// (never answered, never given up by the client) is declared missing by
// the arbiter itself once its spill is full (SpillOverflows: it gives
// the recovery up rather than lose what arrives), and the capture's
// range ends there too (capture.Declared): a rotation due goes on. The
// capture was told nothing: the range stayed open in it, the rotation
// held to twice rotate_size, and the next file said the range again,
// which a replay of it alone held for
// (TestReplayFeedRerequestSpillOverflow in cmd/feedhandler).
func TestSpillOverflowEndsCapturedRerequest(t *testing.T) {
	srv := newScriptedServer(t)
	h, _ := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: 10 * time.Millisecond, Grace: time.Microsecond, Hold: time.Millisecond, MaxPending: 16},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Hour}}) // never answered, never given up
	dir := t.TempDir()
	c, err := capture.Open(capture.Config{Base: filepath.Join(dir, "feed.pcap"), Lines: testCaptureLines, Log: zerolog.Nop(), RotateSize: capture.MinRotate})
	if err != nil {
		t.Fatal(err)
	}
	h.capFile = c
	now := rerequestFifth(t, h, rec, "S")
	for seq := uint64(7); seq <= 6+16; seq++ { // 6 and these: one more than the spill holds
		now += int64(time.Microsecond)
		h.arb.Offer(0, sessionPacket("S", seq, orderMsg("S", seq, seq)), now)
	}
	if _, busy := h.arb.Recovering(); busy || h.arb.Stats.SpillOverflows != 1 {
		t.Fatalf("recovering %v, %d spill overflows: want the range given up by the arbiter, its spill full", busy, h.arb.Stats.SpillOverflows)
	}
	// A rotation's worth and a half of line datagrams, one batch (the
	// writer takes it in one pass): due at 1 MiB.
	data, batch := make([]byte, 1400), make([]rx.Packet, 1100)
	for i := range batch {
		batch[i] = rx.Packet{Line: rx.LineA, Data: data, RxTime: now + int64(i+1)*int64(time.Microsecond)}
	}
	c.Put(batch, 0)
	h.capFile = nil
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Files != 2 || st.Dropped != 0 {
		t.Fatalf("capture stats %+v: want 2 files (the rotation at 1 MiB not held: the range ended at the overflow), nothing dropped", st)
	}
}

// rerequestFifth offers packets 1 to 4 and 6 of session s, one message
// each, and ticks until the handler re-requests 5; it returns the time
// then.
func rerequestFifth(t *testing.T, h *Handler, rec *recovery, s string) int64 {
	t.Helper()
	now := int64(time.Second)
	for _, seq := range []uint64{1, 2, 3, 4, 6} { // 5 lost
		now += int64(time.Millisecond)
		h.arb.Offer(0, sessionPacket(s, seq, orderMsg(s, seq, seq)), now)
	}
	for i := 0; ; i++ {
		if _, busy := h.arb.Recovering(); busy {
			return now
		}
		if i == 100 {
			t.Fatalf("5 not re-requested: %+v", rec.stats)
		}
		now += int64(time.Millisecond)
		h.arb.Tick(now)
		rec.poll(now)
	}
}
