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
	// line, shard, file or le label, and those of each family with a
	// sample per label value (byLabel), by its row in exported.
	plain    string
	feed     string // feed="..."
	lines    []string
	shards   []string
	files    [len(cgroupFiles)]string
	byValues [len(exported)][]string
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
	with := func(k, v string) string { return labelSet(feed, k, v) }
	for i := 0; i < len(h.cfg.Receive.Lines) && i < MaxLines; i++ {
		e.lines = append(e.lines, with("line", h.cfg.Receive.Lines[i].Name))
	}
	for i := range h.shards {
		e.shards = append(e.shards, with("shard", strconv.Itoa(i)))
	}
	for i := range exported {
		m := &exported[i]
		for _, v := range m.values {
			e.byValues[i] = append(e.byValues[i], with(m.label, v))
		}
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

// labelSet renders the label set of feed (feed="...") and the label k="v",
// in expfmt's order: by label name.
func labelSet(feed, k, v string) string {
	kv := k + `="` + escapeLabel(v) + `"`
	if k < "feed" {
		return "{" + kv + "," + feed + "}"
	}
	return "{" + feed + "," + kv + "}"
}

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
		if m.own == ownBackendEvents && st.Receive.Extra.Len() == 0 || m.own == ownCgroupLimits && !e.rt.hasLimit() {
			continue // a family without samples, as client_golang leaves it out
		}
		b = appendHeader(b, "feedhandler_", m.name, m.help, m.kind)
		switch {
		case m.stats != nil:
			b = sampleUint(b, m.name, "", e.plain, m.stats(st))
		case m.line != nil:
			for l, ls := range e.lines {
				b = sampleUint(b, m.name, "", ls, m.line(&st.Arbiter.Lines[l]))
			}
		case m.shard != nil:
			for s := range min(len(st.Shards), len(e.shards)) {
				b = sampleUint(b, m.name, "", e.shards[s], m.shard(&st.Shards[s]))
			}
		case m.each != nil:
			for k, ls := range e.byValues[i] {
				b = sampleUint(b, m.name, "", ls, m.each(st, k))
			}
		case m.hist != nil:
			b = e.histogram(b, m.name, m.hist(st))
		case m.own == ownLineSilence:
			for l, ls := range e.lines {
				b = sampleFloat(b, m.name, "", ls, float64(st.lineSilence(l, mono))/1e9)
			}
		case m.own == ownBackendEvents:
			for i := range st.Receive.Extra.Len() {
				name, v := st.Receive.Extra.At(i)
				b = sampleUint(b, m.name, "", e.counterLabels(i, name), v)
			}
		case m.own == ownBackendInfo:
			b = sampleUint(b, m.name, "", e.backendLabels(st.Backend), 1)
		case m.own == ownHeartbeatAge:
			if hb := h.w.LastHeartbeat(); !hb.IsZero() {
				b = sampleFloat(b, m.name, "", e.plain, float64(now-hb.UnixNano())/1e9)
			}
		case m.own == ownCgroupLimits:
			for i, v := range e.rt.limits {
				if v != procstat.NoLimit {
					b = sampleUint(b, m.name, "", e.files[i], v)
				}
			}
		case m.own == ownProcReadable:
			b = sampleUint(b, m.name, "", e.plain, oneIf(e.rt.procOK))
		case m.own == ownRerequestTimeout:
			b = sampleFloat(b, m.name, "", e.plain, st.Recovery.Rerequest.RTO.Seconds())
		default:
			panic("expose: no samples for " + m.name) // TestMetricsHaveOneSource
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
	c := namedLabels{name, labelSet(e.feed, "counter", name)}
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

// lateResponses counts the re-request answers whose messages had arrived
// already: those the client found the handler had, and those the arbiter
// took in and found delivered.
func (st *Stats) lateResponses() uint64 {
	return st.Recovery.Rerequest.Late + st.Arbiter.RecoveredLate
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
