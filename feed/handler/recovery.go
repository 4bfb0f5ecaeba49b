package handler

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
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

// ErrSnapshotSession: the snapshot server's current session, which a blank
// GLIMPSE session logs in to, is a session the lines have left.
var ErrSnapshotSession = errors.New("snapshot of a session the lines have left")

// AnySnapshotSession, as the GLIMPSE session (glimpse.Config.Session,
// `recovery.snapshot.session`), logs in to the server's current session
// whatever its name, never compared with the lines' (see GlimpseSnapshot).
const AnySnapshotSession = "*"

// sessionsKept: how many of the lines' past sessions GlimpseSnapshot
// remembers to compare a snapshot's session with.
const sessionsKept = 8

// linesLeftKey is the context key under which the recovery hands its
// SnapshotFunc the sessions it saw the lines leave (the last sessionsKept,
// a []moldudp64.Session), whether or not a snapshot was asked under them:
// GlimpseSnapshot compares the server's session with them too.
type linesLeftKey struct{}

// GlimpseSnapshot returns a SnapshotFunc fetching GLIMPSE 5.0 snapshots
// over SoupBinTCP with cfg. An empty cfg.Session logs in to the server's
// current session (SoupBinTCP's blank Requested Session), as the config's
// `session: ""` says: a name that changes daily does not belong in a
// config file. No Nasdaq specification says that the GLIMPSE server's
// SoupBinTCP session carries the TotalView-ITCH MoldUDP64 session's name
// (docs/GLIMPSE.md, "Which session"), so a server naming its session
// otherwise is loaded. The name is compared only where it can be: a server
// whose current session is one the lines were on before (in this
// process's calls, or left at a session change the recovery saw: ctx's
// linesLeftKey) names its sessions as the lines do and is still on the
// numbering they left, its snapshot possibly behind them where no sequence
// number tells it apart (loaded, its books went out under the feed's name,
// flagged whole): an error wrapping ErrSnapshotSession, refused at the
// Login Accepted, before the snapshot is downloaded. The first join of
// a process has no such past: a server there on the previous day's
// session is not told apart. AnySnapshotSession compares nothing; a
// session named in cfg.Session is checked by glimpse against the Login
// Accepted. A snapshot that arrives after the feed's session changed is
// discarded (recovery's gen).
func GlimpseSnapshot(cfg glimpse.Config) SnapshotFunc {
	compare := strings.TrimSpace(cfg.Session) == ""
	if cfg.Session == AnySnapshotSession {
		cfg.Session = ""
	}
	var (
		mu   sync.Mutex
		left [sessionsKept]moldudp64.Session // the lines' past sessions, newest at n-1 (mod sessionsKept)
		n    int
	)
	return func(ctx context.Context, lines moldudp64.Session, fn func(msg []byte) error) (Snapshot, error) {
		mu.Lock()
		if n == 0 || left[(n-1)%sessionsKept] != lines {
			left[n%sessionsKept] = lines
			n++
		}
		past := left
		mu.Unlock()
		c := cfg
		if compare {
			// Refused at the Login Accepted, which names the session,
			// before the snapshot is downloaded.
			own := cfg.CheckSession
			c.CheckSession = func(session string) error {
				if own != nil {
					if err := own(session); err != nil {
						return err
					}
				}
				if session == "" || session == strings.TrimSpace(lines.String()) {
					return nil
				}
				// The sessions this source was asked under, and those the
				// recovery saw the lines leave (asked or not).
				told, _ := ctx.Value(linesLeftKey{}).([]moldudp64.Session)
				for _, s := range append(past[:], told...) {
					if s != (moldudp64.Session{}) && s != lines && session == strings.TrimSpace(s.String()) {
						return fmt.Errorf("%w: the server's current session is %q, which the lines left for %q",
							ErrSnapshotSession, session, strings.TrimSpace(lines.String()))
					}
				}
				return nil
			}
		}
		res, err := glimpse.Fetch(ctx, c, fn)
		if err != nil {
			return Snapshot{}, fmt.Errorf("snapshot from %s: %w", cfg.Addr, err)
		}
		return Snapshot{Next: res.NextSeq, Session: res.Session}, nil
	}
}

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
// fetch runs on a goroutine of its own, handing its result over a channel.
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
	// (syncWake), one per server; waking is the set the receiver has.
	wakeBuf []int
	waking  [rx.MaxWakeFds]int
	nWaking int
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
	r := &recovery{h: h, cfg: cfg, snapRes: make(chan snapResult, 1), open: make([]moldudp64.Range, 0, maxOpenRanges),
		snapWait: cfg.SnapshotRetry, restWait: cfg.ServerRest, badFrom: make([]byte, 0, len("255.255.255.255:65535")),
		snapKeep: glimpse.BufferBytes(int64(h.cfg.Book.MaxOrders)*int64(max(len(h.cfg.ShardCores), 1)), int64(h.cfg.Book.MaxLocates))}
	if len(cfg.Rerequest.Servers) > 0 {
		c, err := rerequest.New(cfg.Rerequest, cfg.Do)
		if err != nil {
			return nil, err
		}
		r.client = c
		r.wakeBuf = make([]int, 0, len(cfg.Rerequest.Servers))
		r.logRecvBuffer()
		r.logRequestCap()
	}
	return r, nil
}

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

// gap is told of every range declared missing (the books are flagged), at
// the arbiter's now: the time missing and poll are given, not the wall
// clock read again.
func (r *recovery) gap(rg moldudp64.Range, now int64) {
	if rg.First < r.handed.First || rg.End() > r.handed.End() {
		// Declared without being handed to missing (the hold-back arena
		// was full, a packet too large while frozen): detected all the same.
		r.stats.GapsDetected++
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
		if r.client.Active() || now-r.lastRec > int64(10*time.Millisecond) {
			r.lastRec = now
			r.client.Progress(a.Next())
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
	if r.client != nil {
		r.syncWake()
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
	r.stats.RecoveredByRerequest = a.Stats.RecoveriesFilled
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
			}
			return
		}
		select {
		case res := <-r.snapRes:
			r.fetching = false
			r.loadSnapshot(res, now)
		default:
		}
		return
	}
	if r.wantSnap && now >= r.snapAt && r.cfg.Snapshot != nil {
		r.startSnapshot(now, false)
	}
}

// syncWake gives the receiver the re-request sockets to wait on with the
// lines while a range is being filled (rx.Waker), and none once it is, so
// that on quiet lines an answer is read and applied when it comes rather
// than when the receive wait times out (a quarter of arbitration.hold).
// The sockets change with the client's (a new one after a session change
// or sequence restart, opened at the next request); the receiver is told
// only of a change. With no range being filled it compares two lengths.
// It allocates nothing. A receiver without Waker (a replay) is left as is.
func (r *recovery) syncWake() {
	fds := r.client.WakeFds(r.wakeBuf[:0])
	fds = fds[:min(len(fds), rx.MaxWakeFds)]
	if len(fds) == r.nWaking {
		same := true
		for i, fd := range fds {
			same = same && r.waking[i] == fd
		}
		if same {
			return
		}
	}
	w, ok := r.h.recv.(rx.Waker)
	if !ok {
		return
	}
	if err := w.WakeOn(fds); err != nil {
		r.h.log.Error().Err(err).Msg("recovery: the receive wait does not wake for re-request answers; they are read when the lines bring a packet or the wait times out")
	}
	r.nWaking = copy(r.waking[:], fds)
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

// startSnapshot freezes delivery (the live feed is spilled) and fetches a
// snapshot on a goroutine; atGap: in the arbiter's declaring a gap at now
// (gap), else between batches (poll).
func (r *recovery) startSnapshot(now int64, atGap bool) {
	r.wantSnap = false
	r.fetching, r.tried = true, true
	if r.client != nil {
		r.client.Cancel()
	}
	// The freeze gives the range being re-requested up (the arbiter's
	// RecoveriesAbandoned): not filled. Kept as the range recovered, it
	// was recorded repaired by re-request (an event, a recovery time) at
	// the next missing range once a failed snapshot resumed delivery, the
	// same range found missing again.
	r.cur = moldudp64.Range{}
	if r.started == 0 {
		r.started = now
	}
	r.snapGaps = uint64(len(r.open))
	r.snapFrom = r.h.arb.Next()
	r.snapDropped = r.h.arb.Stats.SpillDropped
	r.h.arb.Freeze()
	if r.h.capFile != nil {
		// Where the live feed is spilled from: a replay freezes there.
		// After the empty poll since the batch before (the round's, when
		// between rounds): a replay ticks there first.
		r.h.capFile.Freeze(now, r.snapFrom, atGap, r.h.drainedAt)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	if r.nLeft > 0 {
		left := make([]moldudp64.Session, 0, sessionsKept)
		for i := max(r.nLeft-sessionsKept, 0); i < r.nLeft; i++ {
			left = append(left, r.left[i%sessionsKept])
		}
		ctx = context.WithValue(ctx, linesLeftKey{}, left)
	}
	fetch, session, gen := r.cfg.Snapshot, r.h.arb.Session(), r.gen
	if r.snapBuf == nil && r.h.capFile != nil {
		// The last one's, once the capture has written it.
		r.snapBuf = r.keepSnapBuf(r.h.capFile.SnapshotBuffer())
	}
	if r.snapBuf == nil {
		r.snapBuf = make([]byte, 0, 1<<20)
	}
	buf := r.snapBuf[:0]
	r.snapBuf = nil // the fetch's until loadSnapshot
	r.h.log.Info().Str("session", session.String()).Msg("recovery: fetching snapshot")
	go func() {
		t0 := time.Now()
		res := snapResult{gen: gen}
		res.msgs = buf
		res.snap, res.err = fetch(ctx, session, func(msg []byte) error {
			if len(msg) > 0xFFFF {
				return errors.New("snapshot message longer than 65535 bytes")
			}
			res.msgs = binary.BigEndian.AppendUint16(res.msgs, uint16(len(msg)))
			res.msgs = append(res.msgs, msg...)
			res.n++
			if len(msg) >= itch.Length('S') && msg[0] == 'S' && msg[11] == 'C' {
				res.ended = true
			}
			return nil
		})
		if res.err == nil && res.snap.Next == 0 {
			res.err = errors.New("snapshot names sequence number 0")
		}
		res.took = time.Since(t0)
		r.snapRes <- res
	}()
}

// retryIn counts one more consecutive failed attempt and returns the wait
// before the next: SnapshotRetry after the first, doubled after each
// further one, at most SnapshotRetryMax (at least SnapshotRetry). A
// server persistently serving a snapshot refused, or down, is not asked
// for a whole snapshot every SnapshotRetry for ever, delivery frozen
// during each download.
func (r *recovery) retryIn() time.Duration {
	r.snapFails++
	d := doubled(r.cfg.SnapshotRetry, r.cfg.SnapshotRetryMax, r.snapFails)
	r.snapWait = d
	r.stats.SnapshotRetryFailures, r.stats.SnapshotRetryIn = r.snapFails, d
	return d
}

// doubled returns base after the first of n failures in a row, twice as
// long after each further one, at most hi (at least base).
func doubled(base, hi time.Duration, n uint64) time.Duration {
	hi = max(hi, base)
	d := base
	for i := uint64(1); i < n && d < hi; i++ {
		if d > hi/2 {
			return hi // no overflow, whatever the cap
		}
		d *= 2
	}
	return min(d, hi)
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

// resetRetry restarts the backoff: the next failure waits SnapshotRetry.
// It ends a run of refusals at login too (refusals): the next is the
// first of another, logged at once.
func (r *recovery) resetRetry() {
	r.snapFails, r.snapWait, r.lagPending = 0, r.cfg.SnapshotRetry, false
	r.refusals = 0
	r.stats.SnapshotRetryFailures, r.stats.SnapshotRetryIn = 0, 0
}

// retrySnapshot has a snapshot asked for again after the backoff's wait
// (retryIn), and returns it.
func (r *recovery) retrySnapshot(now int64) time.Duration {
	d := r.retryIn()
	r.wantSnap = true
	r.snapAt = now + int64(d)
	return d
}

// refuseSnapshot counts and logs a snapshot of another numbering (next:
// its sequence number; ahead: how far the lines are), not loaded: delivery
// resumes, the books stay flagged, and a snapshot is asked for again after
// the backoff's wait (retrySnapshot).
func (r *recovery) refuseSnapshot(now int64, next, ahead uint64, why, msg string) {
	r.stats.SnapshotFailures++
	r.stats.LastSnapshotError = why
	d := r.retrySnapshot(now)
	r.h.log.Warn().Uint64("next_seq", next).Uint64("lines_at", ahead).Dur("retry_in", d).Uint64("attempt", r.snapFails).Msg(msg)
	r.resume(now)
}

// resume resumes delivery without a snapshot loaded (Arbiter.Unfreeze(0)),
// said in the capture (a replay resumes there too).
func (r *recovery) resume(now int64) {
	r.h.arb.Unfreeze(0)
	if r.h.capFile != nil {
		r.h.capFile.Resumed(now)
	}
}

// warnUnsequenced logs once a process, after a fetch, that the GLIMPSE
// server sent Unsequenced Data packets (RecoveryConfig.SnapshotStats):
// GLIMPSE carries every message as Sequenced Data, so a server sending
// these is not behaving as GLIMPSE does (another service at the address,
// a server's change), which the client ignores and counts
// (recovery_snapshot_unsequenced_packets_total).
func (r *recovery) warnUnsequenced() {
	gs := r.cfg.SnapshotStats
	if gs == nil || r.unseqWarned {
		return
	}
	if n := gs.UnsequencedPacket.Load(); n > 0 {
		r.unseqWarned = true
		r.h.log.Warn().Uint64("unsequenced_packets", n).
			Msg("recovery: the GLIMPSE server sent SoupBinTCP Unsequenced Data packets during a snapshot, which GLIMPSE does not send: ignored, the snapshot goes on; counted in recovery_snapshot_unsequenced_packets_total (logged once)")
	}
}

// keepSnapBuf returns buf emptied for the next fetch, or nil (the next
// fetch makes a new one) when its capacity is above snapKeep.
func (r *recovery) keepSnapBuf(buf []byte) []byte {
	if int64(cap(buf)) > r.snapKeep {
		r.h.log.Info().Int("buffer_bytes", cap(buf)).Int64("keep_bytes", r.snapKeep).
			Msg("recovery: snapshot download buffer released: larger than a snapshot of the books needs")
		return nil
	}
	return buf[:0]
}

// loadSnapshot replaces the books with the snapshot and resumes delivery
// from the snapshot's sequence number on.
func (r *recovery) loadSnapshot(res snapResult, now int64) {
	r.warnUnsequenced()
	a := r.h.arb
	// The buffer is free for the next fetch once the books are rebuilt
	// from it: nothing below reads it after rebuild, and only a gap
	// declared by the Unfreeze after it starts the next fetch (or a poll
	// after this returns). A snapshot held for the lines (r.early) keeps
	// it: no fetch starts while it is held (fetching).
	r.snapBuf = r.keepSnapBuf(res.msgs)
	if res.gen != r.gen {
		// Fetched for a session that has been replaced since: its books
		// and sequence numbers are not the new session's. The arbiter
		// follows the new session already (its lock unfroze delivery);
		// sessionChanged asked for a new snapshot.
		r.stats.SnapshotsDiscarded++
		r.h.log.Warn().Err(res.err).Uint64("next_seq", res.snap.Next).
			Msg("recovery: snapshot of a replaced session discarded")
		return
	}
	if res.err != nil {
		if errors.Is(res.err, ErrSnapshotSession) {
			r.stats.SnapshotsWrongSession++
		}
		r.stats.SnapshotFailures++
		r.stats.LastSnapshotError = res.err.Error()
		var d time.Duration
		if errors.Is(res.err, ErrSnapshotSession) {
			// Refused at the server's Login Accepted for a session the
			// lines left: nothing was downloaded (a login's round
			// trip), and the server's rollover to the lines' session is
			// what makes the books whole. Not a failed attempt for the
			// backoff: asked again every SnapshotRetry, not up to
			// SnapshotRetryMax after it. A refusal by the caller's own
			// glimpse.Config.CheckSession (also ErrSessionRefused) says
			// nothing of a rollover: it backs off as a rejected login.
			d = r.cfg.SnapshotRetry
			r.wantSnap = true
			r.snapAt = now + int64(d)
			// A server that stays on the old session all day would log
			// a line every SnapshotRetry (720 an hour): the first of a
			// run, then once a minute, with how many so far.
			r.refusals++
			if r.refusals == 1 || now-r.refusalLogged >= int64(time.Minute) {
				r.refusalLogged = now
				r.h.log.Warn().Err(res.err).Dur("retry_in", d).Uint64("refused", r.refusals).
					Msg("recovery: snapshot server on a session the lines left; asked again, books stay flagged (logged once a minute)")
			}
			r.resume(now)
			return
		}
		r.refusals = 0
		d = r.retrySnapshot(now)
		r.h.log.Warn().Err(res.err).Dur("retry_in", d).Uint64("attempt", r.snapFails).Msg("recovery: snapshot failed; books stay flagged")
		r.resume(now)
		return
	}
	r.refusals = 0
	if r.pendingWhole && len(r.open) == 0 && r.snapFrom > 1 && res.snap.Next < r.snapFrom {
		// A new session (or restarted sequence) delivered from its first
		// message with nothing declared up to where delivery froze for
		// this snapshot (the rule poll marks whole by), and the snapshot
		// behind it: loaded, it would take back what the books had,
		// which no line sends again (declared, the whole books flagged,
		// and the next snapshot of a server lagging as much the same,
		// for as long as it lags). Not loaded: the books are whole.
		r.wantSnap, r.pendingWhole = false, false
		r.resetRetry()
		r.h.log.Info().Uint64("next_seq", res.snap.Next).Uint64("fetched_at", r.snapFrom).
			Msg("recovery: snapshot behind what the new session delivered from its first message; not loaded, books whole")
		r.resume(now)
		r.h.markWhole()
		return
	}
	if ahead := max(a.Next(), a.maxHigh()); res.ended && ahead > res.snap.Next {
		// The snapshot's day ended (End of Messages) before its
		// sequence number, and the lines brought a message at or past
		// it (a line's high is the number it would send next): not its
		// numbering. A GLIMPSE server still on an earlier session (the
		// previous day's) whose end is behind the lines; on a first
		// join its session's name tells nothing (GLIMPSE.md). Not
		// loaded.
		r.refuseSnapshot(now, res.snap.Next, ahead,
			fmt.Sprintf("snapshot of a day that ended (System Event 'C') before sequence number %d, the lines past it at %d: another numbering, not loaded", res.snap.Next, ahead),
			"recovery: snapshot of a day that ended, behind the lines (another numbering: a snapshot server on an earlier session); not loaded, books stay flagged")
		return
	}
	if ahead := max(a.Next(), a.maxHigh()); res.snap.Next > ahead && res.snap.Next-ahead > a.cfg.MaxJump {
		// (Not ahead+MaxJump: it wraps past 2^64 for lines within
		// MaxJump of it, and every snapshot was refused.)
		// Further ahead of everything the lines brought than a jump the
		// arbiter takes at face value: another numbering of the session
		// (a server that did not restart with the publisher, or that is
		// a session ahead), not a state of this feed. Not loaded.
		r.refuseSnapshot(now, res.snap.Next, ahead,
			fmt.Sprintf("snapshot at sequence number %d, more than %d past the lines' %d: another numbering, not loaded", res.snap.Next, a.cfg.MaxJump, ahead),
			"recovery: snapshot far ahead of the lines (another numbering of the session); not loaded, books stay flagged")
		return
	}
	if ahead := max(a.Next(), a.maxHigh()); res.snap.Next > ahead {
		// Ahead of everything the lines brought. A snapshot shows a
		// point of the past: by the time it is downloaded the lines of
		// its feed have normally passed it, or reach it within a line's
		// lag. Another numbering (a snapshot server still on the
		// session the feed left, or that did not restart with the
		// publisher) is not reached: loaded, its books would be flagged
		// whole and every live message below its number dropped as a
		// duplicate, silently. It waits, delivery frozen, for the
		// lines to reach it, at most LineTimeout.
		if !res.waited {
			held := res // on the heap only when held
			held.waited = true
			r.snapBuf = nil // held's until it is loaded or refused
			r.early, r.earlyAt, r.fetching = &held, now, true
			r.h.log.Info().Uint64("next_seq", res.snap.Next).Uint64("lines_at", ahead).
				Msg("recovery: snapshot ahead of the lines; loaded once they reach it")
			return
		}
		r.refuseSnapshot(now, res.snap.Next, ahead,
			fmt.Sprintf("snapshot at sequence number %d, past the lines' %d after waiting %v for them: another numbering, not loaded", res.snap.Next, ahead, a.cfg.LineTimeout),
			"recovery: the lines did not reach the snapshot (another numbering of the session); not loaded, books stay flagged")
		return
	}
	r.h.rebuild(res.msgs, res.snap.Next)
	if r.h.capFile != nil {
		// Its messages, then where it was loaded: a replay rebuilds the
		// books from them there. The capture's writer writes them from
		// the buffer (the receive thread does not wait for the disk):
		// kept, it is the capture's until SnapshotBuffer gives it back.
		if r.h.capFile.SnapshotMessages(res.msgs, now) {
			r.snapBuf = nil
		}
		r.h.capFile.Snapshot(now, res.snap.Next, res.n)
	}
	// Gaps before the snapshot's sequence number are repaired by it. None
	// stays open: delivery resumes at that number (Unfreeze below), so what
	// a gap held past it is missing in the arbiter again, and re-requested
	// or declared (and opened again) like any other range.
	// Each repair's time runs from its range's detection, in the events
	// and in the histogram alike: from the start of the recovery (r.started),
	// the histogram left out a failed attempt and the wait before this
	// one (started anew at each fetch), and had one time per snapshot
	// whatever it repaired.
	end := r.snapFrom
	for i, g := range r.open {
		if g.End() <= res.snap.Next {
			r.stats.RecoveredBySnapshot++
			r.hist.Record(now - r.openAt[i])
			r.event(RecoveryEvent{Range: g, By: "snapshot", Took: time.Duration(now - r.openAt[i]), NextSeq: res.snap.Next})
		}
		end = max(end, g.End())
	}
	// The snapshot is behind the feed when it ends before what the books
	// had been brought to when the fetch began (delivered, or declared:
	// an open range ends there at most), not only before an open range's
	// end: the backoff let delivery go on past the gaps meanwhile, so a
	// server lagging the feed by less than the wait covered every open
	// range and was taken as whole (the backoff restarted), and what it
	// missed, declared again, was fetched at once, back to back, for ever.
	// If what it misses is declared again, the load was a failed attempt
	// (lagPending) and the next snapshot waits (the server may lag still);
	// a snapshot for a later, unrelated gap does not wait.
	lagging := res.snap.Next < end
	if lagging {
		r.lag(res.snap.Next, end, now, r.cfg.SnapshotRetry)
	}
	r.open, r.openAt = r.open[:0], r.openAt[:0]
	r.wantSnap = false // a gap declared during the fetch is covered, or missing again
	// Delivery resumes at the snapshot's number: a range missing after it
	// is found again, whether it is handed to missing (counted there) or
	// declared at once (counted in gap), not covered by one handed before.
	r.handed = moldudp64.Range{}
	r.stats.Snapshots++
	r.stats.SnapshotMessages += res.n
	r.stats.LastSnapshotNext = res.snap.Next
	r.h.log.Info().Uint64("messages", res.n).Uint64("next_seq", res.snap.Next).Dur("took", res.took).
		Bool("behind", lagging).Uint64("fetched_at", r.snapFrom).Str("snapshot_session", res.snap.Session).Str("feed_session", a.Session().String()).
		Msg("recovery: snapshot loaded")
	a.Unfreeze(res.snap.Next)
	if dropped := a.Stats.SpillDropped - r.snapDropped; dropped > 0 && a.pend.n > 0 && a.pend.front().seq > a.next {
		// The spill filled while the snapshot downloaded: the oldest
		// packets held were dropped, and with them what follows the
		// snapshot's number. The hole is found missing, declared (or
		// re-requested) like any other; its snapshot waits the backoff's
		// wait (a failed attempt: SnapshotRetry, doubled per consecutive
		// one). At once, on a feed as busy, it overflowed the same way,
		// and so on for ever, delivery frozen throughout.
		hole := moldudp64.Range{First: a.next, Count: a.pend.front().seq - a.next}
		r.stats.SnapshotSpillOverflows++
		d := r.retryIn()
		r.lag(hole.First, hole.End(), now, d)
		r.h.log.Error().Uint64("dropped", dropped).Int("spill", a.cfg.Spill).Dur("took", res.took).
			Uint64("hole_first", hole.First).Uint64("hole_count", hole.Count).Dur("retry_in", d).Uint64("attempt", r.snapFails).
			Msg("recovery: the spill overflowed while the snapshot downloaded (raise recovery.spill); the hole after it is re-requested if a server can, else declared, books flagged")
	} else if lagging {
		// Counted (retryIn) only if what it missed is declared again
		// (gap); re-requested, the recovery ends with nothing open and
		// the backoff restarts.
		r.lagPending, r.lagAt = true, now
	} else {
		r.resetRetry()
	}
	r.started = 0
	r.pendingWhole = false
	r.h.markWhole()
}

// lag records [first, end) as missed by the snapshot just loaded (the
// server lagged the feed, or the spill overflowed while it downloaded): a
// snapshot for a range overlapping it waits wait from now (SnapshotRetry;
// the backoff's after a spill overflow).
func (r *recovery) lag(first, end uint64, now int64, wait time.Duration) {
	if r.lagUntil <= now {
		r.lagged = moldudp64.Range{}
	}
	if r.lagged.Count > 0 {
		first, end = min(first, r.lagged.First), max(end, r.lagged.End())
	}
	r.lagged = moldudp64.Range{First: first, Count: end - first}
	r.lagUntil = now + int64(wait)
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
