package handler

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/internal/procstat"
)

// Exposition renders the pipeline's metrics (the same families as
// Collector), then the process's and the Go runtime's standard ones
// (standard: process_cpu_seconds_total, go_goroutines, ...), in the
// Prometheus text format, version 0.0.4, into a buffer it reuses: a
// scrape in steady state allocates nothing, so that scrapes never make
// the garbage collector run. Histograms carry their classic
// buckets (latency.DefaultBuckets); the native buckets need the protobuf
// format, which Collector serves through client_golang (allocating).
//
// Its ServeHTTP answers /metrics. What net/http itself allocates per
// request is not the Exposition's (docs/TUNING.md gives the figure). A
// scrape renders under the lock and writes its response after releasing
// it, so a slow scraper never delays another scrape.
type Exposition struct {
	h *Handler

	mu     sync.Mutex
	st     Stats
	bufCap int      // the first render's capacity: sizes new buffers
	free   [][]byte // rendering buffers no ServeHTTP is writing

	// Label sets, escaped and rendered once: {feed="..."}, then with the
	// line, shard, kind, cause, state or le label.
	plain  string
	feed   string // feed="..."
	lines  []string
	shards []string
	kinds  [len(badResponseKinds)]string
	causes [len(snapshotErrorCauses)]string
	states [4]string
	files  [len(cgroupFiles)]string
	// The receive backend's counters' names and label sets, by position
	// in rx.Extra; rendered when a name is first seen there.
	counters []namedLabels
	// receive_backend_info's label set, for the backend named (Stats's
	// Backend): rendered again only when that name changes.
	backend namedLabels
	les     []string // per latency.DefaultBuckets bound, then +Inf
	lesNs   []int64
	// The standard process and Go runtime families' reading, and
	// go_gc_duration_seconds's quantile label sets.
	rt        *runtimeSample
	quantiles [len(gcQuantiles)]string
}

// recoveryStates are the values of the recovery_state label, in order.
var recoveryStates = [4]string{StateOff, StateInSync, StateRerequesting, StateSnapshot}

// NewExposition returns an Exposition of h's metrics.
func NewExposition(h *Handler) *Exposition {
	feed := `feed="` + escapeLabel(h.cfg.Feed) + `"`
	e := &Exposition{h: h, plain: "{" + feed + "}", feed: feed}
	with := func(k, v string) string { return "{" + feed + "," + k + `="` + escapeLabel(v) + `"}` }
	for i := 0; i < len(h.cfg.Receive.Lines) && i < MaxLines; i++ {
		e.lines = append(e.lines, with("line", h.cfg.Receive.Lines[i].Name))
	}
	for i := range h.shards {
		e.shards = append(e.shards, with("shard", strconv.Itoa(i)))
	}
	for i, k := range badResponseKinds {
		e.kinds[i] = with("kind", k)
	}
	for i, c := range snapshotErrorCauses {
		e.causes[i] = `{cause="` + escapeLabel(c) + `",` + feed + "}" // expfmt's order: by label name
	}
	for i, s := range recoveryStates {
		e.states[i] = with("state", s)
	}
	for i, f := range cgroupFiles {
		e.files[i] = with("file", f)
	}
	for _, b := range latency.DefaultBuckets {
		e.les = append(e.les, with("le", leText(b)))
		e.lesNs = append(e.lesNs, int64(math.Round(b*1e9)))
	}
	e.les = append(e.les, with("le", "+Inf"))
	e.rt = newRuntimeSample()
	for i, q := range gcQuantiles {
		e.quantiles[i] = with("quantile", q)
	}
	// One render grows the buffer and the Stats copy's slices to size;
	// the buffer is the first one ServeHTTP takes.
	buf := e.AppendText(make([]byte, 0, 32<<10))
	e.bufCap = cap(buf)
	e.free = append(make([][]byte, 0, 4), buf)
	return e
}

// leText formats a bucket's upper bound as the text format (version
// 0.0.4) of client_golang's expfmt writes it: the shortest 'g' form, so
// 1 s is le="1" and 1 µs le="1e-06". A label value is part of a series'
// identity, so it must be the same text, not only the same float
// (TestExpositionMatchesCollector compares the text). OpenMetrics writes
// le="1.0"; this exposition does not speak OpenMetrics.
func leText(bound float64) string { return strconv.FormatFloat(bound, 'g', -1, 64) }

// escapeLabel escapes a label value for the text format.
func escapeLabel(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(v)
}

// ServeHTTP answers a scrape with the text format. It renders into a
// buffer of its own, taken from the free list under the lock, and writes
// it after releasing the lock: a scraper that reads slowly holds its
// buffer, not the Exposition. As many buffers exist as scrapes ever ran
// at once, so steady state allocates none.
func (e *Exposition) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	var buf []byte
	if n := len(e.free); n > 0 {
		buf, e.free = e.free[n-1], e.free[:n-1]
	} else {
		buf = make([]byte, 0, e.bufCap)
	}
	buf = e.appendText(buf[:0])
	e.mu.Unlock()

	w.Header()["Content-Type"] = textContentType
	w.Write(buf)

	e.mu.Lock()
	e.free = append(e.free, buf)
	e.mu.Unlock()
}

var textContentType = []string{"text/plain; version=0.0.4; charset=utf-8"}

// AppendText appends the metrics in the text format to dst: with a dst of
// the size of the last one, it allocates nothing.
func (e *Exposition) AppendText(dst []byte) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.appendText(dst)
}

func (e *Exposition) appendText(b []byte) []byte {
	e.h.StatsInto(&e.st)
	e.rt.read() // the standard families, and whether /proc/self was read
	b = e.appendStats(b, &e.st, time.Now().UnixNano(), monoNow())
	return e.appendRuntime(b)
}

// appendStats appends st's metrics at now (Unix ns) and mono (monoNow):
// appendText's rendering of the Stats it took (TestEveryCounterExported
// renders Stats of its own).
func (e *Exposition) appendStats(b []byte, st *Stats, now, mono int64) []byte {
	h := e.h
	for i := range exported {
		m := &exported[i]
		if m.label == "counter" && st.Receive.Extra.Len() == 0 || m.label == "file" && !e.rt.hasLimit() {
			continue // a family without samples, as client_golang leaves it out
		}
		b = appendHeader(b, "feedhandler_", m.name, m.help, m.kind)
		switch {
		case m.name == "line_silence_seconds":
			for l, ls := range e.lines {
				b = sampleFloat(b, m.name, "", ls, float64(st.lineSilence(l, mono))/1e9)
			}
		case m.label == "line":
			for l, ls := range e.lines {
				b = sampleUint(b, m.name, "", ls, lineValue(&st.Arbiter.Lines[l], m.name))
			}
		case m.label == "shard":
			for s := range st.Shards {
				if s >= len(e.shards) {
					break
				}
				b = sampleUint(b, m.name, "", e.shards[s], shardValue(&st.Shards[s], m.name))
			}
		case m.label == "kind":
			for k, v := range badResponses(st) {
				b = sampleUint(b, m.name, "", e.kinds[k], v)
			}
		case m.label == "cause":
			for k, v := range snapshotFetchErrors(st) {
				b = sampleUint(b, m.name, "", e.causes[k], v)
			}
		case m.label == "counter":
			for i := range st.Receive.Extra.Len() {
				name, v := st.Receive.Extra.At(i)
				b = sampleUint(b, m.name, "", e.counterLabels(i, name), v)
			}
		case m.name == "receive_backend_info":
			b = sampleUint(b, m.name, "", e.backendLabels(st.Backend), 1)
		case m.label == "state":
			for k, s := range recoveryStates {
				var v uint64
				if s == st.Recovery.State {
					v = 1
				}
				b = sampleUint(b, m.name, "", e.states[k], v)
			}
		case m.name == "shm_heartbeat_age_seconds":
			if hb := h.w.LastHeartbeat(); !hb.IsZero() {
				b = sampleFloat(b, m.name, "", e.plain, float64(now-hb.UnixNano())/1e9)
			}
		case m.label == "file":
			for i, v := range e.rt.limits {
				if v != procstat.NoLimit {
					b = sampleUint(b, m.name, "", e.files[i], v)
				}
			}
		case m.name == "process_metrics_readable":
			var v uint64
			if e.rt.procOK {
				v = 1
			}
			b = sampleUint(b, m.name, "", e.plain, v)
		case m.kind == kindHistogram:
			b = e.histogram(b, m.name, histogramOf(st, m.name))
		default:
			b = sampleUint(b, m.name, "", e.plain, scalar(st, m.name))
		}
	}
	return b
}

// appendHeader appends a family's HELP and TYPE lines.
func appendHeader(b []byte, prefix, name, help string, kind metricKind) []byte {
	b = append(b, "# HELP "...)
	b = append(b, prefix...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, prefix...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, kind.String()...)
	return append(b, '\n')
}

// counterLabels returns the label set of the receive backend's counter i,
// called name.
func (e *Exposition) counterLabels(i int, name string) string {
	if i < len(e.counters) && e.counters[i].name == name {
		return e.counters[i].labels
	}
	c := namedLabels{name, `{counter="` + escapeLabel(name) + `",` + e.feed + "}"} // expfmt's order: by label name
	if i < len(e.counters) {
		e.counters[i] = c
	} else {
		e.counters = append(e.counters, c)
	}
	return c.labels
}

// backendLabels returns receive_backend_info's label set for the receive
// backend called name, rendered once per name.
func (e *Exposition) backendLabels(name string) string {
	if e.backend.labels == "" || e.backend.name != name {
		backend, mode := backendLabels(name)
		e.backend = namedLabels{name, `{backend="` + escapeLabel(backend) + `",` + e.feed + `,mode="` + escapeLabel(mode) + `"}`} // expfmt's order: by label name
	}
	return e.backend.labels
}

// namedLabels is a label value and its rendered label set.
type namedLabels struct{ name, labels string }

// lineValue is the value of a per-line counter.
func lineValue(c *LineStats, name string) uint64 {
	switch name {
	case "line_packets_total":
		return c.Packets
	case "line_bytes_total":
		return c.Bytes
	case "line_duplicates_total":
		return c.Duplicates
	case "line_out_of_order_total":
		return c.OutOfOrder
	case "line_gaps_total":
		return c.LineGaps
	case "line_malformed_total":
		return c.Malformed
	case "line_wrong_session_total":
		return c.WrongSession
	case "line_stale_end_of_session_total":
		return c.StaleEndOfSession
	case "line_before_restart_total":
		return c.BeforeRestart
	case "line_suspect_total":
		return c.Suspect
	case "line_contradicted_total":
		return c.Contradicted
	}
	panic("expose: no value for line metric " + name)
}

// shardValue is the value of a per-shard metric.
func shardValue(sh *ShardStats, name string) uint64 {
	switch name {
	case "shard_applied_total":
		return sh.Applied
	case "shard_inconsistencies_total":
		return sh.Book.Inconsistencies()
	case "shard_long_messages_total":
		return sh.Book.Long
	case "shard_unknown_type_messages_total":
		return sh.Book.UnknownType
	case "shard_published_total":
		return sh.Published
	case "shard_publish_errors_total":
		return sh.PublishErrors
	case "shard_rebound_total":
		return sh.Rebound
	case "shard_stale_binds_total":
		return sh.StaleBinds
	case "shard_duplicate_symbols_total":
		return sh.DuplicateSymbols
	case "shard_ring_full_total":
		return sh.Ring.Full
	case "shard_ring_high_water":
		return sh.Ring.HighWater
	case "shard_thread_rt_priority":
		return uint64(sh.Thread.Priority)
	}
	panic("expose: no value for shard metric " + name)
}

// snapshotErrorCauses are the values of
// recovery_snapshot_fetch_errors_total's cause label, in the order
// snapshotFetchErrors counts them.
var snapshotErrorCauses = [9]string{"dial", "login_rejected", "session_refused", "end_of_session", "stalled", "too_long", "closed", "protocol", "cancelled"}

// snapshotFetchErrors are the GLIMPSE client's failed fetches by cause:
// each fetch that fails counts in one (its Protocol counts the closed
// connections too, which are cause closed, not protocol).
func snapshotFetchErrors(st *Stats) [9]uint64 {
	c := &st.Recovery.SnapshotClient
	protocol := c.Protocol - min(c.Closed, c.Protocol)
	return [9]uint64{c.DialFailed, c.Rejected, c.Refused, c.EndOfSession, c.Stalled, c.TooLong, c.Closed, protocol, c.Cancelled}
}

// badResponseKinds are the values of recovery_bad_responses_total's kind
// label, in the order badResponses counts them.
var badResponseKinds = [5]string{rerequest.BadMalformed, rerequest.BadWrongSession, rerequest.BadUnasked, rerequest.BadWrongSource, rerequest.BadBeforeRestart}

func badResponses(st *Stats) [5]uint64 {
	rr := &st.Recovery.Rerequest
	return [5]uint64{rr.Malformed, rr.WrongSession, rr.Unasked, rr.WrongSource, rr.BeforeRestart}
}

// unusedMessages counts the messages of re-request answers received but
// not delivered: those the arbiter took in and did not deliver, and those
// of the answers the client dropped whole (late, of another session,
// unasked, to a request made before a restart).
func (st *Stats) unusedMessages() uint64 {
	return st.Arbiter.RecoveredUnused + st.Recovery.Rerequest.DroppedMessages
}

// histogramOf is a histogram metric's snapshot.
func histogramOf(st *Stats, name string) *latency.Snapshot {
	switch name {
	case "latency_seconds":
		return &st.Latency
	case "path_latency_seconds":
		return &st.PathLatency
	case "recovery_time_seconds":
		return &st.Recovery.RecoveryTime
	}
	panic("expose: no histogram " + name)
}

// scalar is the value of a metric without a label besides feed.
func scalar(st *Stats, name string) uint64 {
	r := &st.Recovery
	switch name {
	case "gaps_total":
		return st.Arbiter.Gaps
	case "gap_messages_total":
		return st.Arbiter.GapMessages
	case "ended_join_messages_total":
		return st.Arbiter.EndedJoin
	case "gaps_forced_total":
		return st.Arbiter.ForcedByFull
	case "delivered_messages_total":
		return st.Arbiter.Delivered
	case "filtered_messages_total":
		return st.Filtered
	case "bad_messages_total":
		return st.BadMessages
	case "receive_dropped_total":
		return st.Receive.Dropped
	case "receive_malformed_total":
		return st.Receive.Malformed
	case "receive_errors_total":
		return st.ReceiveErrors
	case "books_stale":
		return uint64(st.StaleBooks())
	case "gaps_unrecovered":
		return st.UnrecoveredGaps()
	case "capture_packets_total":
		return st.Capture.Packets
	case "capture_bytes_total":
		return st.Capture.Bytes
	case "capture_dropped_total":
		return st.Capture.Dropped
	case "capture_write_errors_total":
		return st.Capture.WriteErrors
	case "capture_write_lost_total":
		return st.Capture.WriteLost
	case "capture_files_total":
		return st.Capture.Files
	case "capture_files_deleted_total":
		return st.Capture.Deleted
	case "session_ended":
		if st.Ended {
			return 1
		}
		return 0
	case "session_end_announced":
		if st.EndAnnounced {
			return 1
		}
		return 0
	case "ready":
		if st.readiness() == readyOK {
			return 1
		}
		return 0
	case "recovery_gaps_detected_total":
		return r.GapsDetected
	case "recovery_rerequest_recovered_total":
		return r.RecoveredByRerequest
	case "recovery_snapshot_recovered_total":
		return r.RecoveredBySnapshot
	case "recovery_open_gaps":
		return r.Open
	case "recovery_messages_total":
		return st.Arbiter.RecoveredMessages
	case "recovery_unused_messages_total":
		return st.unusedMessages()
	case "recovery_requests_total":
		return r.Rerequest.Requests
	case "recovery_retries_total":
		return r.Rerequest.Retries
	case "recovery_timeouts_total":
		return r.Rerequest.Timeouts
	case "recovery_failures_total":
		return r.Rerequest.Failures
	case "recovery_open_errors_total":
		return r.Rerequest.OpenErrors
	case "recovery_send_errors_total":
		return r.Rerequest.SendErrors
	case "recovery_receive_dropped_total":
		return r.Rerequest.KernelDrops
	case "recovery_abandoned_total":
		return st.Arbiter.RecoveriesAbandoned
	case "recovery_late_responses_total":
		return r.Rerequest.Late + st.Arbiter.RecoveredLate
	case "recovery_read_errors_total":
		return r.Rerequest.ReadErrors
	case "recovery_snapshots_total":
		return r.Snapshots
	case "recovery_snapshot_loaded_messages_total":
		return r.SnapshotMessages
	case "recovery_snapshot_failures_total":
		return r.SnapshotFailures
	case "recovery_snapshots_wrong_session_total":
		return r.SnapshotsWrongSession
	case "recovery_snapshots_discarded_total":
		return r.SnapshotsDiscarded
	case "recovery_snapshot_spill_overflows_total":
		return r.SnapshotSpillOverflows
	case "recovery_snapshot_fetches_total":
		return r.SnapshotClient.Fetches
	case "recovery_snapshot_bytes_total":
		return r.SnapshotClient.Soup.Bytes
	case "recovery_snapshot_fetched_messages_total":
		return r.SnapshotClient.Messages
	case "recovery_snapshot_heartbeats_total":
		return r.SnapshotClient.Soup.Heartbeats
	case "recovery_snapshot_debug_packets_total":
		return r.SnapshotClient.Soup.Debug
	case "recovery_snapshot_unsequenced_packets_total":
		return r.SnapshotClient.UnsequencedPacket
	case "recovery_snapshot_long_messages_total":
		return r.SnapshotClient.LongMessages
	case "recovery_snapshot_unknown_messages_total":
		return r.SnapshotClient.UnknownMessages
	case "recovery_snapshot_consecutive_failures":
		return r.SnapshotRetryFailures
	case "recovery_spill_dropped_total":
		return st.Arbiter.SpillDropped + st.Arbiter.FrozenTooLarge
	case "recovery_spill_high_water":
		return st.Arbiter.HeldMax
	case "session_changes_total":
		return st.Arbiter.SessionChanges
	case "sequence_regressions_total":
		return st.Arbiter.Regressions
	case "sequence_restarts_total":
		return st.Arbiter.Restarts
	case "receive_thread_rt_priority":
		return uint64(st.ReceiveThread.Priority)
	case "shm_slots":
		return uint64(st.Shm.Capacity)
	case "shm_slots_used":
		return uint64(st.Shm.Used)
	case "shm_slots_retired":
		return uint64(st.Shm.Retired)
	}
	panic("expose: no value for metric " + name) // a new entry in exported without a case here
}

// histogram appends a histogram's classic buckets, sum and count, counted
// as HistogramMetric counts them.
func (e *Exposition) histogram(b []byte, name string, s *latency.Snapshot) []byte {
	for i, ns := range e.lesNs {
		b = sampleUint(b, name, "_bucket", e.les[i], s.CountAtOrBelow(ns))
	}
	b = sampleUint(b, name, "_bucket", e.les[len(e.lesNs)], s.Count)
	b = sampleFloat(b, name, "_sum", e.plain, float64(s.Sum)/1e9)
	return sampleUint(b, name, "_count", e.plain, s.Count)
}

// sampleUint appends the sample line feedhandler_<name><suffix><labels> v.
func sampleUint(b []byte, name, suffix, labels string, v uint64) []byte {
	b = sampleName(b, name, suffix, labels)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

func sampleFloat(b []byte, name, suffix, labels string, v float64) []byte {
	return stdSample(append(b, "feedhandler_"...), name, suffix, labels, v)
}

func sampleName(b []byte, name, suffix, labels string) []byte {
	return seriesName(append(b, "feedhandler_"...), name, suffix, labels)
}

// seriesName appends <name><suffix><labels> and the space before the value.
func seriesName(b []byte, name, suffix, labels string) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	b = append(b, labels...)
	return append(b, ' ')
}
