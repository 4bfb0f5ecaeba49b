package handler

import (
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// jsonLog is the handler's logger as the product runs it (log.format:
// json), writing nowhere: what a log line allocates is counted, which
// zerolog.Nop (every event disabled) hides.
func jsonLog() zerolog.Logger { return zerolog.New(io.Discard).With().Timestamp().Logger() }

// TestBadAnswerLogAllocatesNothing: a re-request server answering with
// another session (yesterday's) all day has a line logged once a minute
// on the receive thread (logBadAnswers), the last bad answer described.
// The line allocates nothing: it named the answer's source with
// netip.AddrPort.String, a string on the heap each time.
func TestBadAnswerLogAllocatesNothing(t *testing.T) {
	srv, h, _, rec := scriptedRecovery(t, time.Hour, time.Hour)
	h.log = jsonLog()
	pkt := func(session string, seq uint64) []byte {
		b := moldudp64.NewBuilder(moldudp64.NewSession(session), seq, 0)
		b.Add(orderMsg("BAD", seq, seq))
		return append([]byte(nil), b.Flush()...)
	}
	now := time.Now().UnixNano()
	for seq := uint64(1); seq <= 5; seq++ {
		if seq != 3 {
			now += int64(time.Millisecond)
			h.arb.Offer(0, pkt("BAD", seq), now)
		}
	}
	now += int64(time.Second)
	h.arb.Tick(now)
	rec.poll(now) // 3 is re-requested
	_, from := srv.request(t)
	bad := pkt("OTHER", 3)
	answer := func() {
		want := rec.client.Stats.Bad() + 1
		srv.answer(t, from, bad)
		for i := 0; rec.client.Stats.Bad() != want; i++ {
			if i == 2000 {
				t.Fatalf("the bad answer was not read: %+v", rec.client.Stats)
			}
			time.Sleep(time.Millisecond)
			rec.poll(now)
		}
		now += int64(badAnswersLogEvery) // the next is logged
		rec.poll(now)
	}
	answer()
	if a := testing.AllocsPerRun(20, answer); a != 0 {
		t.Fatalf("a bad re-request answer logged allocates %v times", a)
	}
	if st := rec.client.Stats; st.WrongSession != 22 || rec.badLogged != 22 {
		t.Fatalf("%d answers of another session, %d logged; want 22, 22", st.WrongSession, rec.badLogged)
	}
}
