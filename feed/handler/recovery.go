package handler

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/internal/latency"
)

// Late-join policies (RecoveryConfig.LateJoin).
const (
	LateJoinSnapshot  = "snapshot"  // a start gap larger than one request (MaxRequestMessages): snapshot, re-request without one
	LateJoinRerequest = "rerequest" // re-request everything from the session's first message
	LateJoinOff       = "off"       // declare it a gap: a snapshot fetched at once if configured; without one, instruments announced in it never published
)

// DefaultMaxRerequestGap is RecoveryConfig.MaxRerequestGap's default.
const DefaultMaxRerequestGap = 50_000

// DefaultSnapshotRetry and DefaultSnapshotRetryMax are
// RecoveryConfig.SnapshotRetry's and SnapshotRetryMax's defaults.
const (
	DefaultSnapshotRetry    = 5 * time.Second
	DefaultSnapshotRetryMax = 2 * time.Minute
	// DefaultServerRest and DefaultServerRestMax are
	// RecoveryConfig.ServerRest's and ServerRestMax's defaults.
	DefaultServerRest    = time.Second
	DefaultServerRestMax = 30 * time.Second
)

// Recovery states (RecoveryStats.State).
const (
	StateOff          = "off" // no recovery source configured
	StateInSync       = "in sync"
	StateRerequesting = "re-requesting"
	StateSnapshot     = "snapshot"
)

// SnapshotFunc fetches a snapshot of the books (GLIMPSE over SoupBinTCP in
// production, glimpse.Fetch): it hands each ITCH message of the snapshot to
// fn and says where the snapshot ends. It runs off the receive thread and
// must return when ctx ends.
type SnapshotFunc func(ctx context.Context, session moldudp64.Session, fn func(msg []byte) error) (Snapshot, error)

// Snapshot is what a SnapshotFunc fetched.
type Snapshot struct {
	Next    uint64 // the first MoldUDP64 sequence number the snapshot does not reflect
	Session string // the session the snapshot server logged in to, as it named it ("" if none)
}

// RecoveryConfig says how gaps are repaired. The zero value repairs
// nothing: every gap is declared and the books flagged, as before.
type RecoveryConfig struct {
	Rerequest rerequest.Config // no Servers: no re-request
	// MaxRerequestGap: larger gaps go to the snapshot (default
	// DefaultMaxRerequestGap; with no snapshot every gap is re-requested).
	MaxRerequestGap uint64
	Snapshot        SnapshotFunc // nil: no snapshot recovery
	LateJoin        string       // LateJoinSnapshot (default), LateJoinRerequest, LateJoinOff
	// SnapshotRetry is the wait before another snapshot while books are
	// stale (default 5s; config recovery.snapshot.retry): after the first of consecutive failed or refused
	// snapshots; each further one doubles it, up to SnapshotRetryMax.
	SnapshotRetry time.Duration
	// SnapshotRetryMax caps the wait between consecutive failed or refused
	// snapshots (default DefaultSnapshotRetryMax; below SnapshotRetry: no
	// backoff). The wait is SnapshotRetry again after a snapshot is loaded,
	// at a session change (or sequence restart), and once the books were
	// made whole otherwise.
	SnapshotRetryMax time.Duration
	// ServerRest: after every re-request server failed a range, gaps skip
	// re-request for this long (default DefaultServerRest), doubled per
	// such failure in a row, at most ServerRestMax (default
	// DefaultServerRestMax; below ServerRest: no backoff). Back to
	// ServerRest once a server answers, and at a session change (or
	// sequence restart).
	ServerRest    time.Duration
	ServerRestMax time.Duration
	// Do, if set, runs the creation of the re-request sockets (e.g. inside
	// a network namespace).
	Do func(func() error) error
	// SnapshotStats: the counters Snapshot's GLIMPSE client keeps
	// (glimpse.Config.Stats of GlimpseSnapshot's config; FromConfig sets
	// both; nil: none), read at each Stats (RecoveryStats.SnapshotClient).
	SnapshotStats *glimpse.Stats
}

// RecoveryStats count the repair of gaps.
type RecoveryStats struct {
	GapsDetected         uint64 // ranges missing on every line (re-requested or declared)
	RecoveredByRerequest uint64
	RecoveredBySnapshot  uint64 // declared gaps repaired by a snapshot
	Open                 uint64 // declared gaps not repaired yet
	OpenRanges           []moldudp64.Range
	Snapshots            uint64 // snapshots loaded
	SnapshotFailures     uint64
	SnapshotsDiscarded   uint64 // fetched for a session replaced meanwhile, not loaded
	SnapshotMessages     uint64 // messages of the snapshots loaded: applied, not delivered (snapshot_msgs)
	LastSnapshotNext     uint64
	LastSnapshotError    string
	Rerequest            rerequest.Stats
	RecoveryTime         latency.Snapshot // gap detected to books whole again
	SpillMax             uint64           // most packets held at once
	State                string           // "in sync", "re-requesting", "snapshot"
	Events               []RecoveryEvent  // the last maxEvents repairs, oldest first
	// SnapshotSpillOverflows: snapshots loaded with a hole right after
	// them, the oldest packets held while they downloaded dropped (the
	// spill filled): the hole is declared, and its snapshot waits the
	// retry wait (a failed attempt: SnapshotRetryFailures).
	SnapshotSpillOverflows uint64
	// SnapshotsWrongSession: snapshots of a session the lines have left
	// (ErrSnapshotSession), not loaded; also in SnapshotFailures.
	SnapshotsWrongSession uint64
	// SnapshotRetryFailures: consecutive snapshots failed (not those
	// refused at login for a session the lines left: asked again every
	// SnapshotRetry), refused for their content, loaded with the spill
	// overflowed, or loaded behind the feed (ending before where delivery
	// froze for them) with what they missed declared again, since one was
	// loaded whole (or a session change, or the books made whole
	// otherwise); the next waits
	// SnapshotRetry doubled per failure after the first, up to
	// SnapshotRetryMax (SnapshotRetryIn).
	SnapshotRetryFailures uint64
	SnapshotRetryIn       time.Duration // the wait set after the last of them (0: none)
	// SnapshotClient: the counters of the snapshot source's GLIMPSE
	// client (RecoveryConfig.SnapshotStats, read at each Stats; zero
	// without): fetches and their failures by cause, what they read
	// (bytes, heartbeats, Debug and Unsequenced Data packets, which a
	// GLIMPSE server is not expected to send and the client ignores),
	// messages longer than their type's ITCH 5.0 length (applied by its
	// fields; the books count them Long once loaded) and of types ITCH
	// 5.0 does not define (skipped by the client), loaded or not.
	SnapshotClient glimpse.StatsSnapshot
}

// RecoveryEvent is one repaired range: how, and how long after it was
// detected the books were whole again.
type RecoveryEvent struct {
	Range moldudp64.Range
	// Asked: the range handed to re-request (By "re-request"). Range is
	// the part of it recovered: all of it, or less when the arbiter
	// narrowed it (Arbiter.SetNarrowed: it was asked up to a held packet
	// its lines contradicted since, the rest never missing).
	Asked moldudp64.Range
	By    string // "re-request" or "snapshot"
	Took  time.Duration
	// NextSeq is the snapshot's sequence number (By "snapshot").
	NextSeq uint64
}

// maxEvents bounds RecoveryStats.Events.
const maxEvents = 64

func (r *recovery) event(e RecoveryEvent) {
	if len(r.events) == maxEvents {
		copy(r.events, r.events[1:])
		r.events = r.events[:maxEvents-1]
	}
	r.events = append(r.events, e)
}

// maxOpenRanges bounds the declared gaps remembered one by one; beyond it
// they are merged into the last.
const maxOpenRanges = 64

// recovery is the recovery state machine. It lives with the arbiter on the
// receive thread: the arbiter asks it for missing ranges (missing), the
// receive loop polls it without blocking (poll), and only the snapshot
// fetch runs on a goroutine of its own, handing its result over a channel
// and waking the receive wait (snapDone).
type recovery struct {
	h      *Handler
	cfg    RecoveryConfig
	client *rerequest.Client

	restUntil int64 // re-request skipped until then (every server failed)
	// restFails: ranges every server failed in a row, no answer since;
	// restWait: the rest set after the last (ServerRest when none), the
	// longest restUntil is from the time it was set.
	restFails uint64
	restWait  time.Duration
	// badLogged: the re-request answers dropped as bad (the client's
	// Stats.Bad) when they were last logged, at badLoggedAt (0: never).
	badLogged   uint64
	badLoggedAt int64
	// dropsLogged: the kernel's drops on the re-request sockets were
	// logged (logKernelDrops).
	dropsLogged bool
	// badFrom holds the last bad answer's source as text for its log
	// line: netip.AddrPort.String would put a string on the heap each
	// time (room for any IPv4 address and port, made at the start).
	badFrom []byte
	started int64 // when the current recovery began (0: none)

	open    []moldudp64.Range // declared gaps not repaired
	openAt  []int64           // when each was detected
	cur     moldudp64.Range   // the range being re-requested, as handed (missing)
	upTo    uint64            // where the arbiter narrowed cur to (narrowed; 0: not): asked and reported (recovering)
	handed  moldudp64.Range   // the last range missing handed (counted in GapsDetected there)
	events  []RecoveryEvent
	stats   RecoveryStats
	hist    latency.Histogram
	lastRec int64

	// Snapshot.
	wantSnap bool
	snapAt   int64 // no snapshot before this time
	// snapFails: consecutive snapshot attempts failed or refused (or
	// loaded with the spill overflowed, or lagging: lagPending); snapWait: the wait set after the
	// last (SnapshotRetry when none), the longest snapAt and lagUntil are
	// from the time they were set (see retryIn).
	snapFails uint64
	snapWait  time.Duration
	// refusals: snapshots refused in a row at login for a session the
	// lines left (not in snapFails); refusalLogged: when one was last
	// logged.
	refusals      uint64
	refusalLogged int64
	// unseqWarned: the GLIMPSE client's Unsequenced Data packets were
	// logged (warnUnsequenced).
	unseqWarned bool
	// lagged: what the last snapshot missed of what the books had been
	// brought to when it was fetched (the server lagged the feed), found
	// missing again after its load. A
	// snapshot for a range overlapping it waits until lagUntil (the server
	// may still lag); one for another range does not.
	lagged   moldudp64.Range
	lagUntil int64
	// lagPending: the last snapshot loaded lagged the feed, not counted
	// in the backoff yet. It is a failed attempt once what it missed is
	// declared again (no re-request repaired it: a snapshot must fetch it
	// again), then waits from lagAt (its load) the backoff's wait; the
	// backoff restarts if the recovery ends with nothing open instead.
	lagPending bool
	lagAt      int64
	fetching   bool
	snapRes    chan snapResult
	// snapDone: an eventfd the fetch's goroutine writes once its result
	// is on snapRes, in the receive wait's wake set while it fetches
	// (wakeOn), so that on quiet lines the result is taken when it comes,
	// not at the wait's timeout; read when the result is taken. -1: none
	// (made at the first fetch on a receiver that can wake; snapDoneFailed:
	// it could not be, logged once).
	snapDone       int
	snapDoneFailed bool
	// again: poll took a fetch's result after its looks at the recovery's
	// end and at books whole (a snapshot refused resumes delivery, which
	// may make them whole): the next poll looks, at once (nextDue), not
	// at the wait's timeout on quiet lines.
	again bool
	// snapBuf is the buffer snapshots are downloaded into, kept from one
	// to the next at the size of the largest (the spin of a market): a
	// new one each time was that much garbage per snapshot. Handed to the
	// fetch (startSnapshot) and back once its result is taken
	// (loadSnapshot); one fetch at a time. With a capture, a snapshot
	// loaded hands it to the capture's writer, and the next fetch takes
	// it back from there once written (capture.SnapshotBuffer), else a
	// new one.
	snapBuf []byte
	// snapKeep is the largest snapBuf kept for the next fetch: what a
	// snapshot of the books needs (glimpse.BufferBytes of every shard's
	// orders and the locates). A fetch that grew its buffer past it (a
	// server that never ended its snapshot, up to
	// recovery.snapshot.max_size, or a snapshot of more orders than the
	// books hold) leaves it to the collector (keepSnapBuf), not held at
	// that size for the rest of the process.
	snapKeep int64
	cancel   context.CancelFunc
	snapGaps uint64 // open gaps when the fetch began
	// snapDropped: the arbiter's SpillDropped when the fetch began.
	snapDropped uint64
	// snapFrom: the arbiter's next sequence number when the fetch began
	// (delivery frozen there): a snapshot ending before it is behind the
	// feed (see loadSnapshot).
	snapFrom uint64
	// early: a fetched snapshot ahead of everything the lines brought,
	// held (delivery still frozen, fetching still set) from earlyAt until
	// the lines reach its sequence number, for at most the arbiter's
	// LineTimeout (see loadSnapshot).
	early   *snapResult
	earlyAt int64
	// gen counts session changes; a fetch is tagged with the gen it began
	// in, and its result is discarded when the session changed meanwhile.
	gen uint64

	// pendingWhole: the books were emptied (session change), or are behind
	// the lines while a range one request cannot fill is re-requested (a
	// late join's start, catchUp), and must be flagged until the session
	// is whole up to the lines.
	pendingWhole bool
	// tried: a snapshot was fetched since the last session change (its
	// snapshot is no longer needed once the session is whole otherwise).
	tried bool

	// left: the sessions the lines left (sessionChanged), the newest at
	// nLeft-1 (mod sessionsKept), handed to the SnapshotFunc in its ctx
	// (linesLeftKey).
	left  [sessionsKept]moldudp64.Session
	nLeft int

	// wakeBuf takes the re-request sockets to wake the receive wait on
	// (wakeOn, Handler.syncWake), one per server.
	wakeBuf []int

	// ahead: the holes past the range being filled asked ahead
	// (askAhead), not yet reached by delivery, handed to missing nor
	// declared; aheadBuf takes those found at a look, at aheadAt;
	// aheadFilled counts those delivery passed (RecoveredByRerequest).
	ahead       [maxAheadGaps]aheadGap
	nAhead      int
	aheadBuf    [rerequest.MaxAhead]moldudp64.Range
	aheadAt     int64
	aheadFilled uint64
}

type snapResult struct {
	gen  uint64 // recovery.gen when the fetch began
	snap Snapshot
	msgs []byte // [u16 length][message] records
	n    uint64
	err  error
	took time.Duration
	// waited: held (recovery.early) for the lines to reach snap.Next.
	waited bool
	// ended: the spin carries System Event 'C', End of Messages ("always
	// the last message sent in any trading day", TotalView-ITCH 5.0): no
	// message follows snap.Next-1 in its numbering.
	ended bool
}

func newRecovery(h *Handler, cfg RecoveryConfig) (*recovery, error) {
	if cfg.MaxRerequestGap == 0 {
		cfg.MaxRerequestGap = DefaultMaxRerequestGap
	}
	if cfg.LateJoin == "" {
		cfg.LateJoin = LateJoinSnapshot
	}
	if cfg.SnapshotRetry <= 0 {
		cfg.SnapshotRetry = DefaultSnapshotRetry
	}
	if cfg.SnapshotRetryMax <= 0 {
		cfg.SnapshotRetryMax = DefaultSnapshotRetryMax
	}
	if cfg.ServerRest <= 0 {
		cfg.ServerRest = DefaultServerRest
	}
	if cfg.ServerRestMax <= 0 {
		cfg.ServerRestMax = DefaultServerRestMax
	}
	r := &recovery{h: h, cfg: cfg, snapRes: make(chan snapResult, 1), snapDone: -1, open: make([]moldudp64.Range, 0, maxOpenRanges),
		snapWait: cfg.SnapshotRetry, restWait: cfg.ServerRest, badFrom: make([]byte, 0, len("255.255.255.255:65535")),
		snapKeep: glimpse.BufferBytes(int64(h.cfg.Book.MaxOrders)*int64(max(len(h.cfg.ShardCores), 1)), int64(h.cfg.Book.MaxLocates))}
	if len(cfg.Rerequest.Servers) > 0 {
		c, err := rerequest.New(cfg.Rerequest, cfg.Do)
		if err != nil {
			return nil, err
		}
		r.client = c
		r.logRecvBuffer()
		r.logRequestCap()
	}
	// The snapshot's eventfd and each server's socket (wakeOn).
	r.wakeBuf = make([]int, 0, 1+len(cfg.Rerequest.Servers))
	return r, nil
}

// idleAfterEnd reports whether a join after the session's end is idle
// rather than a gap (Arbiter.idleAfterEnd): nothing would fetch the
// session's messages, no snapshot source and no re-request of a late
// join's start (no server, or late_join off). With a source the ended
// session is fetched as any late join's start: its final books.
func (r *recovery) idleAfterEnd() bool {
	return r.cfg.Snapshot == nil && (r.client == nil || r.cfg.LateJoin == LateJoinOff)
}

// enabled reports whether any source is configured.
func (r *recovery) enabled() bool { return r.client != nil || r.cfg.Snapshot != nil }

// gap is told of every range declared missing (the books are flagged), at
// the arbiter's now: the time missing and poll are given, not the wall
// clock read again.
func (r *recovery) gap(rg moldudp64.Range, now int64) {
	if rg.First < r.handed.First || rg.End() > r.handed.End() {
		// Declared without being handed to missing (the hold-back arena
		// was full, a packet too large while frozen): detected all the same.
		r.stats.GapsDetected++
	}
	if r.nAhead > 0 {
		r.takeAhead(rg) // declared: not filled ahead
	}
	r.addOpen(rg, now)
	if r.cfg.Snapshot != nil {
		r.wantSnap = true
		if rg.First < r.lagged.End() && r.lagged.First < rg.End() {
			if r.lagPending {
				// What the lagging snapshot missed must be fetched by a
				// snapshot again: that load was a failed attempt. A
				// server always a little behind is not downloaded every
				// SnapshotRetry for ever, delivery frozen during each.
				r.lagPending = false
				d := r.retryIn()
				r.lagUntil = max(r.lagUntil, r.lagAt+int64(d))
				r.h.log.Warn().Uint64("first", rg.First).Uint64("count", rg.Count).Uint64("lagged_first", r.lagged.First).
					Uint64("lagged_count", r.lagged.Count).Dur("retry_in", d).Uint64("attempt", r.snapFails).
					Msg("recovery: what the snapshot loaded missed (its server lagged the feed) is declared again; books stay flagged until the next snapshot")
			}
			r.snapAt = max(r.snapAt, r.lagUntil)
		}
		// Fetch it now rather than at the next poll: startSnapshot freezes
		// the arbiter, which then holds what came past the gap instead of
		// delivering it to books the snapshot replaces. (A late join
		// applied a batch of packets to the empty books, every message
		// counted as an unknown locate or reference.)
		if !r.fetching && now >= r.snapAt {
			r.startSnapshot(now, true)
		}
	}
}

// addOpen records rg as open, merged with the open ranges it overlaps or
// touches (a range declared again after a snapshot is counted once),
// detected when the recovery began or else now.
func (r *recovery) addOpen(rg moldudp64.Range, now int64) {
	if r.cur.Count > 0 && rg.First >= r.cur.First && rg.First < r.cur.End() {
		r.cur = moldudp64.Range{} // given up: now an open gap
		if r.h.capFile != nil {
			// Declared by the arbiter: given up by the client (a GaveUp
			// frame follows), or by the arbiter itself, its spill full
			// (none does): the capture's range ends here either way.
			r.h.capFile.Declared(now)
		}
	}
	at := r.started
	if at == 0 {
		at = now
	}
	for i := range r.open {
		o := &r.open[i]
		if rg.First <= o.End() && o.First <= rg.End() {
			first, end := min(o.First, rg.First), max(o.End(), rg.End())
			*o = moldudp64.Range{First: first, Count: end - first}
			return
		}
	}
	if len(r.open) < maxOpenRanges {
		r.open = append(r.open, rg)
		r.openAt = append(r.openAt, at)
		return
	}
	last := &r.open[len(r.open)-1]
	last.Count = max(last.End(), rg.End()) - last.First
}

// sessionChanged: the books were emptied for a new session; they stay
// flagged until it is whole (snapshot, or re-request from its start). The
// session the lines left, old, is remembered for GlimpseSnapshot's
// comparison (linesLeftKey), whether or not a snapshot was asked under it.
func (r *recovery) sessionChanged(old, new moldudp64.Session) {
	if old != new && old != (moldudp64.Session{}) {
		r.left[r.nLeft%sessionsKept] = old
		r.nLeft++
	}
	r.open, r.openAt = r.open[:0], r.openAt[:0]
	// A snapshot of the old session in flight is of no use: stop it, and
	// have poll discard its result (it may be complete already).
	r.gen++
	if r.fetching && r.cancel != nil {
		r.cancel()
	}
	if (r.fetching || r.cur.Count > 0) && r.h.capFile != nil {
		// The freeze ends here (the new session's lock unfroze the
		// arbiter) with neither a load nor a resume, or the range being
		// re-requested is dropped (the arbiter forgot it: neither filled
		// nor given up): said in the capture, whose rotation waits for
		// the snapshot's end or the range's, and whose next file would
		// say the range again.
		r.h.capFile.Discarded(clock.Now())
	}
	if r.client != nil {
		r.client.Forget() // an answer of the old numbering is not the new one's
	}
	r.restUntil, r.restFails, r.restWait = 0, 0, r.cfg.ServerRest
	// A re-request of the old session in progress is given up, not filled.
	r.cur, r.handed, r.started = moldudp64.Range{}, moldudp64.Range{}, 0
	r.dropAhead()
	r.pendingWhole, r.tried = true, false
	r.h.pushStale(1)
	if r.cfg.Snapshot != nil {
		r.wantSnap = true
		r.snapAt = 0
	}
	r.lagged, r.lagUntil = moldudp64.Range{}, 0
	// A new numbering: the snapshots refused or failed under the old one
	// say nothing of the new one's; the backoff restarts.
	r.resetRetry()
}

// poll drives the state machine; it is called from the receive loop after
// every batch and idle poll. With no recovery in progress it does nothing.
func (r *recovery) poll(now int64) {
	a := r.h.arb
	r.again = false
	// Each deadline was set at most its wait from the time then: one
	// further away means the wall clock stepped back since. It is waited
	// from now rather than for as long as the step.
	r.restUntil = min(r.restUntil, now+int64(r.restWait))
	r.snapAt = min(r.snapAt, now+int64(r.snapWait))
	r.lagUntil = min(r.lagUntil, now+int64(r.snapWait))
	r.earlyAt = min(r.earlyAt, now)
	r.lastRec = min(r.lastRec, now)
	r.badLoggedAt = min(r.badLoggedAt, now)
	if r.client != nil {
		if r.client.Active() || r.client.Aheads() > 0 || now-r.lastRec > int64(10*time.Millisecond) {
			r.lastRec = now
			r.client.Progress(a.Next())
			if r.client.Active() {
				r.askAhead(now)
			}
			ok := r.client.Poll(now, r.recovered)
			if err := r.client.OpenError(); err != nil {
				r.h.log.Error().Err(err).Uint64("open_errors", r.client.Stats.OpenErrors).
					Msg("recovery: re-request socket not opened after a session change or sequence restart; its ranges fail over to the next server or are declared (logged once per server until its socket opens)")
			}
			r.logRecvBuffer() // a socket opened after a restart, capabilities dropped since
			if err := r.client.SendError(); err != nil {
				r.h.log.Error().Err(err).Uint64("send_errors", r.client.Stats.SendErrors).
					Msg("recovery: re-request not sent; its ranges time out, fail over to the next server or are declared (logged once per server until a request to it is sent)")
			}
			if bad := r.client.Stats.Bad(); bad != r.badLogged && (r.badLoggedAt == 0 || now-r.badLoggedAt >= int64(badAnswersLogEvery)) {
				r.logBadAnswers(bad, now)
			}
			if !ok {
				r.rest(now)
				a.Abandon(now)
				if r.h.capFile != nil {
					r.h.capFile.GaveUp(now, r.h.drainedAt) // a replay of the answers gives it up here too, after the round's empty poll
				}
			}
		}
	}
	if r.started != 0 {
		if _, busy := a.Recovering(); !busy && !r.fetching && (r.client == nil || !r.client.Active()) {
			if r.cur.Count > 0 {
				// Filled, whatever else is open (a range declared before
				// it, waiting for a snapshot or, with none, for ever).
				r.filled(now)
			}
			if len(r.open) == 0 && !r.wantSnap {
				// The recovery ended with nothing open (what a snapshot
				// left was re-requested): the backoff restarts.
				r.resetRetry()
			}
			r.started = 0
			r.cur = moldudp64.Range{}
		}
	}
	if r.nAhead > 0 {
		r.reachedAhead(now) // logged after the range before them
	}
	r.stats.RecoveredByRerequest = a.Stats.RecoveriesFilled + r.aheadFilled
	if r.pendingWhole && !r.fetching && (!r.wantSnap || r.tried) && len(r.open) == 0 && a.Next() > 1 {
		if _, busy := a.Recovering(); !busy {
			// Delivered from the new session's first message with nothing
			// declared (the lines, or re-request): whole. The change's
			// snapshot, fetched at once, is no longer wanted if it failed
			// or was refused: asked again (with the backoff) while its
			// server stayed down, it kept whole books flagged.
			if r.wantSnap {
				r.wantSnap = false
				r.resetRetry()
			}
			r.pendingWhole = false
			r.h.markWhole()
		}
	}
	if r.fetching {
		if e := r.early; e != nil {
			// Loaded once the lines reach it, refused once they did not
			// within LineTimeout, discarded if the session changed. The
			// wait is measured by what was read of the lines (their
			// stamps, an empty poll), not by the wall clock: a receive
			// loop behind reads, after LineTimeout, what the lines
			// brought before the snapshot arrived, and a snapshot they
			// reach in it was refused (at every retry, while the loop
			// stayed as far behind).
			if e.gen != r.gen || max(a.Next(), a.maxHigh()) >= e.snap.Next || a.linesClock(now)-r.earlyAt >= int64(a.cfg.LineTimeout) {
				r.early, r.fetching = nil, false
				r.loadSnapshot(*e, now)
				r.again = true
			}
			return
		}
		select {
		case res := <-r.snapRes:
			r.fetching = false
			r.tookSnapshot()
			r.loadSnapshot(res, now)
			r.again = true
		default:
		}
		return
	}
	if r.wantSnap && now >= r.snapAt && r.cfg.Snapshot != nil {
		r.startSnapshot(now, false)
	}
}

// close stops a snapshot in flight and closes the sockets.
func (r *recovery) close() error {
	if r.cancel != nil {
		r.cancel()
	}
	if r.fetching && r.early == nil {
		<-r.snapRes
	}
	r.fetching, r.early = false, nil
	if r.snapDone >= 0 {
		unix.Close(r.snapDone) // the fetch's goroutine wrote it before its result, taken above
		r.snapDone = -1
	}
	if r.client != nil {
		return r.client.Close()
	}
	return nil
}

// copyStats fills st (under the handler's stats lock).
func (r *recovery) copyStats(st *RecoveryStats) {
	keep, keepEv := st.OpenRanges, st.Events
	*st = r.stats
	st.OpenRanges = append(keep[:0], r.open...)
	st.Events = append(keepEv[:0], r.events...)
	st.Open = uint64(len(r.open))
	if r.client != nil {
		r.client.CountKernelDrops()
		r.logKernelDrops()
		st.Rerequest = r.client.Stats
	}
	r.hist.Snapshot(&st.RecoveryTime)
	st.SpillMax = r.h.arb.Stats.HeldMax
	st.State = StateInSync
	if _, busy := r.h.arb.Recovering(); busy {
		st.State = StateRerequesting
	}
	if r.fetching || r.wantSnap && len(r.open) > 0 && r.cfg.Snapshot != nil {
		st.State = StateSnapshot
	}
}

func (s RecoveryStats) String() string {
	return fmt.Sprintf("gaps %d, by re-request %d, by snapshot %d, open %d", s.GapsDetected, s.RecoveredByRerequest, s.RecoveredBySnapshot, s.Open)
}
