package handler

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// TestRerequestOpenErrorLogged: after a restart of the sequence (the
// client's Forget), the server's new socket cannot be opened (the
// socket-creation hook, RecoveryConfig.Do, fails: a namespace gone, no
// descriptors left). A gap is re-requested: nothing is sent, the range is
// given up after the retries and declared. The failure is logged once, at
// error level with the error, and counted (open errors, not send errors);
// after a socket opens again, a new failure is logged again. Before, it was
// counted as a send error only, which nothing shows, and not logged.
func TestRerequestOpenErrorLogged(t *testing.T) {
	srv := newScriptedServer(t)
	gone := errors.New("namespace gone")
	fail := false
	h, logs, rec := loggedRecovery(t, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Millisecond, Retries: 2},
		ServerRest: time.Millisecond,
		Do: func(fn func() error) error {
			if fail {
				return gone
			}
			return fn()
		}})
	gap := gapRerequested(t, h, rec)
	gap() // asked from the socket of New, answered by nobody: declared
	rec.client.Forget()
	fail = true
	gap()
	gap()
	st := rec.client.Stats
	lines := strings.Count(logs.String(), "re-request socket not opened")
	if lines != 1 || !strings.Contains(logs.String(), gone.Error()) || st.OpenErrors != 6 || st.SendErrors != 0 || h.arb.Stats.Gaps != 3 {
		t.Fatalf("after a restart, two gaps re-requested, 3 requests each, with no socket to send them: logged %d times (want once, with %q): %q; open errors %d (want 6), send errors %d (want 0), gaps %d (want 3)",
			lines, gone, logs.String(), st.OpenErrors, st.SendErrors, h.arb.Stats.Gaps)
	}
	fail = false
	gap() // a socket opens: the run of failures is over
	rec.client.Forget()
	fail = true
	gap()
	if lines := strings.Count(logs.String(), "re-request socket not opened"); lines != 2 {
		t.Fatalf("a second run of failures, after a socket opened: logged %d times in all, want 2: %q", lines, logs.String())
	}
	var all Stats
	all.Arbiter = h.arb.Stats
	rec.copyStats(&all.Recovery)
	if got := scalar(t, &all, "recovery_open_errors_total"); got != 9 {
		t.Fatalf("recovery_open_errors_total %d, want 9", got)
	}
}

// gapRerequested returns a func that offers h's line 3 packets, loses 2,
// offers one more, and polls rec until the re-request of the 2 is over
// (filled or declared), its clock 10 ms further at each poll.
func gapRerequested(t *testing.T, h *Handler, rec *recovery) func() {
	pkt := func(seq uint64) []byte {
		b := moldudp64.NewBuilder(moldudp64.NewSession("OPN"), seq, 0)
		b.Add(orderMsg("OPN", seq, seq))
		return append([]byte(nil), b.Flush()...)
	}
	now := time.Now().UnixNano()
	seq := uint64(1)
	return func() {
		t.Helper()
		for i := range 6 {
			if i < 3 || i == 5 {
				now += int64(time.Millisecond)
				h.arb.Offer(0, pkt(seq), now)
			}
			seq++
		}
		for i := 0; ; i++ {
			if i == 100 {
				t.Fatalf("re-request not over: %+v", rec.client.Stats)
			}
			now += int64(10 * time.Millisecond)
			h.arb.Tick(now)
			rec.poll(now)
			if _, busy := h.arb.Recovering(); !busy && !rec.client.Active() {
				return
			}
		}
	}
}

// TestRerequestSendErrorLogged: the host cannot send to the re-request
// server (a broadcast address without SO_BROADCAST: every sendto fails
// with EACCES, as a firewall's refusal or a missing route fail). Two gaps
// are re-requested, three requests each, none sent, and declared. The
// failure is logged once, at error level with the error, and counted in
// feedhandler_recovery_send_errors_total. Before, it was counted in
// Stats.SendErrors only, which nothing showed, and never logged: an
// operator saw timeouts, as for a server down, without the host's reason.
func TestRerequestSendErrorLogged(t *testing.T) {
	h, logs, rec := loggedRecovery(t, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("255.255.255.255:9")},
		Timeout: time.Millisecond, Retries: 2}, ServerRest: time.Millisecond})
	gap := gapRerequested(t, h, rec)
	gap()
	gap()
	lines := strings.Count(logs.String(), "re-request not sent")
	if lines != 1 || !strings.Contains(logs.String(), unix.EACCES.Error()) || h.arb.Stats.Gaps != 2 {
		t.Fatalf("two gaps re-requested, every write refused: logged %d times (want once, with %q): %q; gaps %d (want 2)",
			lines, unix.EACCES.Error(), logs.String(), h.arb.Stats.Gaps)
	}
	var all Stats
	all.Arbiter = h.arb.Stats
	rec.copyStats(&all.Recovery)
	// One write a gap: EACCES is not retried (rerequest's
	// TestFailoverAtOnceOnSendError).
	if got := scalar(t, &all, "recovery_send_errors_total"); got != 2 || all.Recovery.Rerequest.Requests != 0 {
		t.Fatalf("recovery_send_errors_total %d (want 2), requests %d (want 0)", got, all.Recovery.Rerequest.Requests)
	}
}

// TestRerequestRecvBufferCappedLogged: the re-request sockets ask a
// receive buffer of 256 MiB, above any net.core.rmem_max (never changed). Opened
// with cap_net_admin nothing is logged; opened on a thread without it
// (what a process without it gets), at the start or after a restart (the
// process dropped its capabilities since), the buffer granted, rmem_max,
// is logged once at warn level with the remedy, however many polls
// follow. Before, the buffer was capped silently.
func TestRerequestRecvBufferCappedLogged(t *testing.T) {
	if eff, err := privilege.Effective(); err != nil || eff&privilege.NetAdmin == 0 {
		t.Skipf("needs cap_net_admin, to compare with and without it (effective %v, %v)", eff, err)
	}
	rc := RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, RecvBuffer: 1 << 28}}
	const capped = "receive buffer is capped by net.core.rmem_max"
	const want = `"granted":` // rmem_max (rerequest's TestRecvBufferForce)
	for _, tc := range []struct {
		name          string
		start, reopen bool // without cap_net_admin
	}{{"with cap_net_admin", false, false}, {"started without", true, false}, {"reopened without", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := oneShardHandler(t, 0, smallBooks)
			var logs bytes.Buffer
			h.log = zerolog.New(&logs)
			h.arb = NewArbiter(ArbiterConfig{}, h.route, h.gap)
			var rec *recovery
			var err error
			start := func() { rec, err = newRecovery(h, rc) }
			if tc.start {
				if e := privilege.WithoutOnThread(privilege.NetAdmin, start); e != nil {
					t.Fatal(e)
				}
			} else {
				start()
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rec.close()
			now := time.Now().UnixNano()
			if tc.reopen {
				rec.client.Forget()
				if e := privilege.WithoutOnThread(privilege.NetAdmin, func() {
					rec.client.Want(moldudp64.NewSession("RCVBUF"), moldudp64.Range{First: 1, Count: 5}, now)
					rec.poll(now)
				}); e != nil {
					t.Fatal(e)
				}
			}
			for range 5 {
				now += int64(20 * time.Millisecond)
				rec.poll(now)
			}
			n := strings.Count(logs.String(), capped)
			if wantN := map[bool]int{false: 0, true: 1}[tc.start || tc.reopen]; n != wantN || (n == 1 && !strings.Contains(logs.String(), want)) {
				t.Fatalf("logged %d times (want %d, with %s): %s", n, wantN, want, logs.String())
			}
		})
	}
}
