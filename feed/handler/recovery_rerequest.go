package handler

import (
	"cmp"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/clock"
)

// This file holds the recovery's re-request side: a missing range handed to
// the client (missing, rerequest, catchUp, narrowed), its answers handed to
// the arbiter (recovered), a range filled, the rest after every server
// failed, and the logs of
// the re-request sockets' buffer, request cap, kernel drops and bad
// answers.

// logRecvBuffer logs, once, a re-request socket granted less receive
// buffer than asked (rerequest.Client.RecvBufferShort): the process lacks
// cap_net_admin, so net.core.rmem_max caps it (about 208 KiB by default),
// too small for the answer to a request of tens of thousands of messages.
func (r *recovery) logRecvBuffer() {
	if got := r.client.RecvBufferShort(); got > 0 {
		r.h.log.Warn().Int("recv_buffer", cmp.Or(r.cfg.Rerequest.RecvBuffer, rerequest.DefaultRecvBuffer)).Int("granted", got).
			Msg("recovery: the re-request sockets' receive buffer is capped by net.core.rmem_max (SO_RCVBUFFORCE needs cap_net_admin): the answer to a large request may overflow it, its packets dropped by the kernel and asked again; grant cap_net_admin or raise net.core.rmem_max")
	}
}

// logRequestCap logs, once, requests capped below MaxRequestMessages
// (rerequest.Client.RequestMessages): the answer to a full request, a
// packet per message, would overflow the re-request sockets' receive
// buffer, and what the kernel drops is asked again. A large gap takes
// more requests in turn.
func (r *recovery) logRequestCap() {
	if got, asked := r.client.RequestMessages(), r.client.MaxRequestMessages(); got < asked {
		r.h.log.Info().Int("max_request_messages", asked).Int("request_messages", got).Int("answer_packet_truesize", rerequest.AnswerPacketTruesize).
			Msg("recovery: re-requests ask for fewer messages than max_request_messages: the answer, a packet per message, must fit the re-request sockets' receive buffer (raise recovery.rerequest.recv_buffer for more)")
	}
}

// logKernelDrops logs, once, the first answer datagrams the kernel dropped
// on the re-request sockets (rerequest.Stats.KernelDrops, read when the
// counters are copied): their receive buffer was full, so what it refused
// is asked again and the recovery takes longer. A request asks no more
// than the buffer granted holds at a packet per message (RequestMessages),
// so drops mean larger packets than AnswerPacketTruesize assumes, answers
// to several requests at once (retries), or a buffer capped by
// net.core.rmem_max.
func (r *recovery) logKernelDrops() {
	if r.dropsLogged || r.client.Stats.KernelDrops == 0 {
		return
	}
	r.dropsLogged = true
	r.h.log.Warn().Uint64("dropped", r.client.Stats.KernelDrops).Int("recv_buffer", cmp.Or(r.cfg.Rerequest.RecvBuffer, rerequest.DefaultRecvBuffer)).
		Int("request_messages", r.client.RequestMessages()).
		Msg("recovery: the kernel dropped re-request answers, the re-request sockets' receive buffer full: they are asked again (feedhandler_recovery_receive_dropped_total); raise recovery.rerequest.recv_buffer, past net.core.rmem_max with cap_net_admin (SO_RCVBUFFORCE) or else by raising rmem_max")
}

// missing is the arbiter's MissingFunc.
func (r *recovery) missing(rg moldudp64.Range, now int64) bool {
	r.stats.GapsDetected++
	r.handed = rg
	if r.started != 0 && r.cur.Count > 0 {
		// The previous range was filled just now (the arbiter asks for
		// the next one on the same call): a range given up is not kept
		// (addOpen, startSnapshot, sessionChanged), and a range declared
		// before it and still open is another's.
		r.filled(now)
	}
	r.started = now
	if r.nAhead > 0 {
		if at := r.takeAhead(rg); at != 0 {
			// Asked ahead, part of it still missing at its turn: its
			// recovery began when it was found.
			r.started = at
		}
	}
	r.cur = moldudp64.Range{}
	if r.fetching {
		return false // the snapshot will cover it (or leave it open)
	}
	if r.client == nil || now < r.restUntil {
		return false
	}
	if rg.First == 1 && r.h.arb.Stats.Delivered == 0 && rg.Count > uint64(r.client.MaxRequestMessages()) {
		// A late join (a start gap one request cannot fill) is the
		// first join's only. After a session change or a sequence
		// restart the start gap is what the lines brought while the
		// handler confirmed it (its own wait): re-requested, whatever
		// LateJoin says; sessionChanged has a snapshot fetched when
		// one is configured.
		switch r.cfg.LateJoin {
		case LateJoinOff:
			return false
		case LateJoinSnapshot:
			if r.cfg.Snapshot != nil {
				return false
			}
		}
		// late_join rerequest, or snapshot without a snapshot source:
		// re-requested however large (MaxRerequestGap does not apply).
		r.rerequest(rg, now)
		return true
	}
	if r.cfg.Snapshot != nil && rg.Count > r.cfg.MaxRerequestGap {
		return false
	}
	r.rerequest(rg, now)
	return true
}

// rerequest has the client fill rg, which the arbiter asked for at now
// and holds what follows for, and notes it in the capture: a replay holds
// for it too, whether its answers come or not. A range one request cannot
// fill is a catch-up, flagged (catchUp); one it fills is only delayed, a
// round trip, and the books keep their flag.
func (r *recovery) rerequest(rg moldudp64.Range, now int64) {
	if rg.Count > uint64(r.client.MaxRequestMessages()) {
		r.catchUp(rg.First)
	}
	r.client.Want(r.h.arb.Session(), rg, now)
	r.cur, r.upTo = rg, 0
	if r.h.capFile != nil {
		r.h.capFile.Rerequested(now, rg.First, rg.Count)
	}
}

// catchUp flags the books while a range one request cannot fill, first
// on, is re-requested: request after request, the live feed held in the
// spill, what is published is behind the lines by all the range covers (a
// late join's start, hours of the morning; what an outage of the lines
// lost), and a reader must not take it for current. The flag goes in band
// before the range (the books as they were before it are republished
// flagged; a late join's, from the session's first message, are never
// published unflagged) and is cleared, as after a session change
// (pendingWhole), once nothing is open, the range whole and what the spill
// held delivered: the live edge. A range of it given up is declared (gap)
// and keeps the books flagged until a snapshot repairs it. Once per range,
// not per message.
func (r *recovery) catchUp(first uint64) {
	r.h.pushStale(first)
	r.pendingWhole = true
}

// narrowed is the arbiter's NarrowFunc: the range being re-requested ends
// at end, before the end it was handed with (it was asked up to a held
// packet its lines contradicted since, Arbiter.strayEnd). The client asks
// nothing past end from now on (before, up to the old end until the
// arbiter was done: requests and messages an exchange counts, and may
// throttle, for numbers never missing), and the repair reports what was
// recovered, beside what was asked (TestRerequestAsksNarrowedRange).
func (r *recovery) narrowed(end uint64) {
	if r.cur.Count == 0 || end >= r.recovering().End() {
		return
	}
	r.upTo = max(end, r.cur.First)
	r.client.Narrow(r.upTo)
}

// recovering returns the range being re-requested: cur, up to where the
// arbiter narrowed it (narrowed).
func (r *recovery) recovering() moldudp64.Range {
	if r.upTo == 0 || r.upTo >= r.cur.End() {
		return r.cur
	}
	return moldudp64.Range{First: r.cur.First, Count: r.upTo - r.cur.First}
}

// filled records the re-requested range as repaired, and logs it (an
// operator reads each repair in the log, as each gap declared).
func (r *recovery) filled(now int64) {
	r.hist.Record(now - r.started)
	e := RecoveryEvent{Range: r.recovering(), Asked: r.cur, By: "re-request", Took: time.Duration(now - r.started)}
	r.event(e)
	ev := r.h.log.Info().Uint64("first", e.Range.First).Uint64("count", e.Range.Count).Dur("took", e.Took)
	if e.Asked != e.Range {
		ev = ev.Uint64("asked_count", e.Asked.Count)
	}
	ev.Msg("recovery: range repaired by re-request")
	r.cur = moldudp64.Range{}
}

// badAnswersLogEvery is how often re-request answers dropped as bad are
// logged at most: a server answering every request with another session
// (yesterday's) would write a line per answer.
const badAnswersLogEvery = time.Minute

// logBadAnswers logs the answers dropped as bad since the last such line
// (bad: the client's Stats.Bad now), the last of them described: a clear
// line for what is otherwise only counted (recovery_bad_responses_total).
// It allocates nothing (on the receive thread, and it may recur all day).
func (r *recovery) logBadAnswers(bad uint64, now int64) {
	st, b := &r.client.Stats, r.client.LastBad()
	r.badFrom = b.From.AppendTo(r.badFrom[:0])
	r.h.log.Warn().Uint64("dropped", bad-r.badLogged).Str("last_kind", b.Kind).Bytes("last_from", r.badFrom).
		Str("last_session", b.Session.String()).Uint64("last_seq", b.Seq).Uint16("last_count", b.Count).AnErr("last_error", b.Err).
		Uint64("malformed", st.Malformed).Uint64("wrong_session", st.WrongSession).Uint64("unasked", st.Unasked).
		Uint64("wrong_source", st.WrongSource).Uint64("before_restart", st.BeforeRestart).
		Msg("recovery: re-request answers dropped as bad (totals by kind; logged at most once a minute)")
	r.badLogged, r.badLoggedAt = bad, now
}

// recovered hands a re-request answer to the arbiter.
func (r *recovery) recovered(p moldudp64.Packet) {
	r.restFails = 0 // a server answers: the next failure rests ServerRest
	r.h.pickup = clock.Now()
	raw := r.raw(p)
	dropped := r.h.arb.OfferRecovered(raw, p, r.h.pickup)
	if c := r.h.capFile; c != nil && !dropped {
		c.Recovered(raw, r.h.pickup, r.h.drainedAt) // after the round's empty poll: a replay ticks there first
	} else if c != nil {
		// Not held (the spill full): its numbers are still missing, asked
		// again; the capture's range stays open as the arbiter's does.
		c.RecoveredDropped(raw, r.h.pickup, r.h.drainedAt)
	}
	r.client.Progress(r.h.arb.Next())
}

// raw re-encodes p for the spill (a held packet is kept as bytes).
func (r *recovery) raw(p moldudp64.Packet) []byte {
	r.h.rawBuf = p.Append(r.h.rawBuf[:0])
	return r.h.rawBuf
}

// rest has re-request skipped after every server failed the range being
// recovered, and logs it: ServerRest after the first such failure in a
// row, doubled after each further one, at most ServerRestMax. Servers
// that are down are not asked again every ServerRest all day, each
// range held back their timeouts (300 ms by default) before it is
// declared; the rest is ServerRest again once a server answers.
func (r *recovery) rest(now int64) {
	r.restFails++
	d := doubled(r.cfg.ServerRest, r.cfg.ServerRestMax, r.restFails)
	r.restWait, r.restUntil = d, now+int64(d)
	rg := r.recovering()
	r.h.log.Warn().Uint64("first", rg.First).Uint64("count", rg.Count).Dur("rest", d).Dur("rest_max", max(r.cfg.ServerRestMax, r.cfg.ServerRest)).
		Uint64("failures_in_a_row", r.restFails).
		Msg("recovery: every re-request server failed the range; it is declared, and gaps are declared without a re-request for the rest, doubled per failure in a row up to rest_max, back to its first length once a server answers")
}
