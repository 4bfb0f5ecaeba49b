package handler

import (
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/shmtest"
)

func TestStatsReady(t *testing.T) {
	var st Stats
	if ok, why := st.Ready(); ok || why != "no packet received yet" {
		t.Fatalf("fresh: %v %q", ok, why)
	}
	st.Arbiter.Lines[1].Packets = 1
	st.Shards = []ShardStats{{Books: 3}, {Books: 4}}
	if ok, why := st.Ready(); !ok || why != "receiving" {
		t.Fatalf("receiving: %v %q", ok, why)
	}
	st.Shards[1].Stale = true
	if ok, why := st.Ready(); ok || why != "4 book(s) flagged possibly stale" || st.StaleBooks() != 4 {
		t.Fatalf("stale shard: %v %q %d", ok, why, st.StaleBooks())
	}
	st.Arbiter.Gaps, st.Arbiter.GapMessages = 2, 17
	if ok, why := st.Ready(); ok || !strings.HasPrefix(why, "2 unrecovered gap(s) (17 messages missing)") {
		t.Fatalf("gap: %v %q", ok, why)
	}
}

// TestStatsReadySilent: every line silent for more than SilentNotReady
// before the session's end is not ready (a path lost: MoldUDP64 sends a
// heartbeat every second while idle); one line heard from, or the session
// ended, is ready. Silence is measured on the monotonic clock: the wall
// clock's times (LastPacket, Started) may say anything after a step.
func TestStatsReadySilent(t *testing.T) {
	now := monoNow() // the times below may be negative: only 0 is never
	wall := time.Now().UnixNano()
	var st Stats
	st.Arbiter.Lines[0].Packets, st.Arbiter.Lines[1].Packets = 10, 10
	st.startMono = now - int64(time.Hour)
	old := now - int64(SilentNotReady) - int64(time.Second)
	st.lastMono = [MaxLines]int64{old, old}
	// The wall clock stepped back an hour since: the wall times say the
	// packets came an hour from now.
	st.Started, st.LastPacket = wall, [MaxLines]int64{wall + int64(time.Hour), wall + int64(time.Hour)}
	if ok, why := st.Ready(); ok || !strings.HasPrefix(why, "every line silent for 6") {
		t.Fatalf("both lines silent 6 s, the wall clock stepped back: %v %q", ok, why)
	}
	st.lastMono[1] = now
	// The wall clock stepped forward an hour: the wall times say an hour ago.
	st.LastPacket[1] = wall - int64(time.Hour)
	if ok, why := st.Ready(); !ok {
		t.Fatalf("line B heard from now, the wall clock stepped forward: %v %q", ok, why)
	}
	st.lastMono[1] = 0 // never: silent since Start, an hour ago
	if ok, _ := st.Ready(); ok {
		t.Fatal("line A silent 6 s, line B never heard from: ready")
	}
	st.Ended = true
	if ok, why := st.Ready(); !ok {
		t.Fatalf("silent after the session's end: %v %q", ok, why)
	}
}

// TestReadySilentLines: through the real threads, both lines go silent in
// the middle of the session (no packet, not even a heartbeat: a path lost).
// After SilentNotReady the handler is not ready, saying why; once a line
// brings packets again it is ready.
func TestReadySilentLines(t *testing.T) {
	day, _, _, _, _ := restartDays(t)
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	r.play(&now, day[:100], time.Microsecond)
	h := startRestart(t, r, RecoveryConfig{}, ModeRunToCompletion, nil, shmtest.Name(t, "fhsilent"))
	waitFor(t, "ready", func() bool { ok, _ := h.Ready(); return ok })
	silentSince := time.Now()
	var why string
	waitFor(t, "not ready: every line silent", func() bool {
		var ok bool
		ok, why = h.Ready()
		return !ok
	})
	if waited := time.Since(silentSince); !strings.HasPrefix(why, "every line silent for ") || waited < SilentNotReady-time.Second {
		t.Fatalf("not ready after %v of silence: %q", waited, why)
	}
	r.play(&now, day[100:110], time.Microsecond)
	waitFor(t, "ready again", func() bool { ok, _ := h.Ready(); return ok })
}
