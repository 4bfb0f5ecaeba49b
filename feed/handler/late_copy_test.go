package handler

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// TestArbiterLateReadableCopy: line A lost packet 5; line B reordered it
// behind its packet 6, stamped by the kernel 150 µs after its 6 (within
// Grace, 200 µs), but not readable until after an empty poll 216 µs
// after B's 6 (the receiving softirq deferred on a loaded machine: the
// soak's seed 20158). The handler acts on what it can read: at that poll
// both lines have been past the hole for Grace, so it is missing. Without
// recovery it is declared there, and B's copy, read next, is a duplicate:
// one gap of one message, 6 of 7 delivered, the books without 5. With
// re-request the range is asked for at that poll instead, and B's copy
// fills it: no gap, the range counted filled while re-requesting
// (recovery_rerequest_recovered_total: by answers or late copies), the
// client done with it (nothing asked again), and the server's answer
// coming after is late, unused, the books unchanged.
func TestArbiterLateReadableCopy(t *testing.T) {
	for _, withRec := range []bool{false, true} {
		t.Run(fmt.Sprintf("rerequest=%v", withRec), func(t *testing.T) {
			srv := newScriptedServer(t)
			h, sh := oneShardHandler(t, 0, smallBooks)
			var rc RecoveryConfig
			if withRec {
				rc = RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Hour}}
			}
			rec := withRecovery(t, h, ArbiterConfig{Lines: 2, LineTimeout: time.Hour, Grace: 200 * time.Microsecond, Hold: 20 * time.Millisecond}, rc)
			pkt := func(seq uint64) []byte { return sessionPacket("LATE", seq, orderMsg("LATE", 100+seq, seq)) }
			us := int64(time.Microsecond)
			t0 := time.Now().UnixNano()
			for seq := uint64(1); seq <= 4; seq++ {
				h.arb.Offer(0, pkt(seq), t0+int64(seq)*10*us)
				h.arb.Offer(1, pkt(seq), t0+int64(seq)*10*us+us)
			}
			moved := t0 + 60*us
			h.arb.Offer(0, pkt(6), moved)    // A lost 5
			h.arb.Offer(1, pkt(6), moved+us) // B reordered 5 behind 6
			round := func(now int64) {
				h.arb.Tick(now)
				rec.poll(now)
				h.endBatch()
			}
			poll := moved + 216*us
			round(poll) // every line empty: B's 5 not readable yet
			_, asked := h.arb.Recovering()
			switch {
			case !withRec && (h.arb.Next() != 7 || h.arb.Stats.LastGap != moldudp64.Range{First: 5, Count: 1}):
				t.Fatalf("at the empty poll Grace after both lines moved past 5: next %d, last gap %v; want 5 declared", h.arb.Next(), h.arb.Stats.LastGap)
			case withRec && (!asked || h.arb.Stats.Gaps != 0):
				t.Fatalf("at the empty poll Grace after both lines moved past 5: recovering %v, gaps %d; want 5 re-requested", asked, h.arb.Stats.Gaps)
			}
			var from netip.AddrPort
			if withRec {
				var r moldudp64.Request
				r, from = srv.request(t)
				if r.Seq != 5 || r.Count != 1 {
					t.Fatalf("asked %d+%d, want 5+1", r.Seq, r.Count)
				}
			}
			h.arb.Offer(1, pkt(5), moved+150*us) // stamped within Grace, read after the poll
			h.arb.Offer(0, pkt(7), poll+10*us)
			h.arb.Offer(1, pkt(7), poll+11*us)
			round(poll + 20*us)
			var st Stats
			st.Arbiter = h.arb.Stats
			rec.copyStats(&st.Recovery)
			ls := h.arb.Stats.Lines
			orders := sh.books.Book(7).Orders()
			if !withRec {
				// 5 declared: B's copy a duplicate, 6 of 7 delivered.
				if h.arb.Next() != 8 || h.arb.Stats.Delivered != 6 || h.arb.Stats.Gaps != 1 || h.arb.Stats.GapMessages != 1 || ls[1].Duplicates != 7 || ls[1].Won != 0 || orders != 5 || st.Recovery.Open != 1 {
					t.Fatalf("after B's late copy: next %d (want 8), delivered %d (want 6), gaps %d of %d messages (want 1 of 1), B's duplicates %d won %d (want 7, 0), orders %d (want 5: 2 to 7 less 5), open %d (want 1)",
						h.arb.Next(), h.arb.Stats.Delivered, h.arb.Stats.Gaps, h.arb.Stats.GapMessages, ls[1].Duplicates, ls[1].Won, orders, st.Recovery.Open)
				}
				return
			}
			cs := &rec.client.Stats
			if h.arb.Next() != 8 || h.arb.Stats.Delivered != 7 || h.arb.Stats.Gaps != 0 || ls[1].Won != 1 || orders != 6 ||
				st.Recovery.Open != 0 || st.Recovery.RecoveredByRerequest != 1 || rec.client.Active() || cs.Requests != 1 {
				t.Fatalf("after B's late copy: next %d (want 8), delivered %d (want 7), gaps %d (want 0), B won %d (want 1), orders %d (want 6), recovery %s (want 1 filled, none open), client active %v, requests %d (want 1)",
					h.arb.Next(), h.arb.Stats.Delivered, h.arb.Stats.Gaps, ls[1].Won, orders, st.Recovery, rec.client.Active(), cs.Requests)
			}
			srv.answer(t, from, pkt(5))
			now := poll + 20*us
			for i := 0; cs.Late == 0 && h.arb.Stats.RecoveredLate == 0; i++ {
				if i == 2000 {
					t.Fatalf("the answer after the fill not read: client %+v", *cs)
				}
				time.Sleep(time.Millisecond)
				now += int64(time.Millisecond)
				round(now)
			}
			if h.arb.Next() != 8 || h.arb.Stats.Delivered != 7 || sh.books.Book(7).Orders() != 6 || h.arb.Stats.Gaps != 0 || cs.Requests != 1 {
				t.Fatalf("after the answer: next %d, delivered %d, orders %d, gaps %d, requests %d; want 8, 7, 6, 0, 1",
					h.arb.Next(), h.arb.Stats.Delivered, sh.books.Book(7).Orders(), h.arb.Stats.Gaps, cs.Requests)
			}
		})
	}
}
