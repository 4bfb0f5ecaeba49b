package handler

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketfeed/feedhandler/internal/latency"
)

// Collector exports the pipeline's counters to Prometheus. Each scrape
// takes one Stats copy; nothing is added to the hot path. Every metric
// carries the label feed (Config.Feed), so that handlers of several feeds
// aggregate in one Prometheus.
type Collector struct {
	h     *Handler
	descs map[string]*prometheus.Desc
}

// metric is one exported metric family: its name after "feedhandler_",
// help, type, and the one label (besides feed) it has, if any.
type metric struct {
	name, help string
	kind       metricKind
	label      string
}

type metricKind uint8

const (
	kindCounter metricKind = iota
	kindGauge
	kindHistogram
)

func (k metricKind) String() string {
	switch k {
	case kindCounter:
		return "counter"
	case kindGauge:
		return "gauge"
	}
	return "histogram"
}

// exported are every metric the handler exports, the one list both the
// Prometheus Collector and the allocation-free Exposition describe.
var exported = [...]metric{
	{"line_packets_total", "MoldUDP64 packets received per line.", kindCounter, "line"},
	{"line_bytes_total", "UDP payload bytes received per line.", kindCounter, "line"},
	{"line_duplicates_total", "Packets whose messages the other line delivered first.", kindCounter, "line"},
	{"line_out_of_order_total", "Packets behind the line's own highest sequence number.", kindCounter, "line"},
	{"line_gaps_total", "Jumps in the line's own sequence numbers.", kindCounter, "line"},
	{"line_malformed_total", "Packets rejected by the MoldUDP64 parser.", kindCounter, "line"},
	{"line_wrong_session_total", "Packets of another session.", kindCounter, "line"},
	{"gaps_total", "Sequence ranges missing on every line.", kindCounter, ""},
	{"gap_messages_total", "Sequence numbers missing on every line.", kindCounter, ""},
	{"delivered_messages_total", "Messages delivered in sequence order.", kindCounter, ""},
	{"filtered_messages_total", "Messages dropped by the symbol filter.", kindCounter, ""},
	{"receive_dropped_total", "Kernel-reported receive drops.", kindCounter, ""},
	{"receive_malformed_total", "Frames the receive backend rejected.", kindCounter, ""},
	{"shard_applied_total", "Messages applied per book shard.", kindCounter, "shard"},
	{"shard_inconsistencies_total", "Inconsistent messages per book shard.", kindCounter, "shard"},
	{"shard_published_total", "Snapshots published per book shard.", kindCounter, "shard"},
	{"shard_ring_full_total", "Hand-offs that found the shard ring full.", kindCounter, "shard"},
	{"shard_ring_high_water", "Largest shard ring occupancy seen.", kindGauge, "shard"},
	{"line_silence_seconds", "Seconds since the line last delivered a packet (since start if never; resolution 20ms).", kindGauge, "line"},
	{"books_stale", "Books flagged PossiblyStale (missing messages of an unrecovered gap).", kindGauge, ""},
	{"gaps_unrecovered", "Gaps whose messages the books still miss.", kindGauge, ""},
	{"shm_heartbeat_age_seconds", "Age of the heartbeat in the shared-memory header.", kindGauge, ""},
	{"ready", "1 when /readyz answers ready (receiving, books complete), else 0.", kindGauge, ""},
	{"recovery_gaps_detected_total", "Sequence ranges missing on every line, handed to recovery or declared.", kindCounter, ""},
	{"recovery_rerequest_recovered_total", "Missing ranges filled while re-requesting (by answers or late copies).", kindCounter, ""},
	{"recovery_snapshot_recovered_total", "Declared gaps repaired by a snapshot.", kindCounter, ""},
	{"recovery_open_gaps", "Declared gaps not repaired yet (books flagged possibly stale).", kindGauge, ""},
	{"recovery_messages_total", "Messages recovered by re-request.", kindCounter, ""},
	{"recovery_requests_total", "Re-request packets sent.", kindCounter, ""},
	{"recovery_retries_total", "Re-requests resent after a timeout.", kindCounter, ""},
	{"recovery_timeouts_total", "Re-requests that got no answer in time.", kindCounter, ""},
	{"recovery_failures_total", "Ranges given up after every re-request server was tried.", kindCounter, ""},
	{"recovery_bad_responses_total", "Re-request answers dropped: malformed, another session or never asked.", kindCounter, "kind"},
	{"recovery_late_responses_total", "Re-request answers whose messages had arrived already.", kindCounter, ""},
	{"recovery_snapshots_total", "Snapshots loaded.", kindCounter, ""},
	{"recovery_snapshot_failures_total", "Snapshot fetches that failed.", kindCounter, ""},
	{"recovery_spill_high_water", "Most packets held at once while arbitrating or recovering.", kindGauge, ""},
	{"recovery_state", "1 for the current recovery state.", kindGauge, "state"},
	{"recovery_time_seconds", "Gap detected to books whole again.", kindHistogram, ""},
	{"session_changes_total", "Times a confirmed session replaced a silent followed one.", kindCounter, ""},
	{"latency_seconds", "Receive timestamp to shared-memory publish, per message.", kindHistogram, ""},
	{"path_latency_seconds", "Receive-thread pickup to shared-memory publish, per message (the handler's own path).", kindHistogram, ""},
}

// NewCollector returns a Collector for h.
func NewCollector(h *Handler) *Collector {
	c := &Collector{h: h, descs: map[string]*prometheus.Desc{}}
	feed := prometheus.Labels{"feed": h.cfg.Feed}
	for _, m := range exported {
		var labels []string
		if m.label != "" {
			labels = []string{m.label}
		}
		c.descs[m.name] = prometheus.NewDesc("feedhandler_"+m.name, m.help, labels, feed)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.h.Stats()
	counter := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	for i := 0; i < len(c.h.cfg.Receive.Lines) && i < MaxLines; i++ {
		l := st.Arbiter.Lines[i]
		name := c.h.cfg.Receive.Lines[i].Name
		counter("line_packets_total", l.Packets, name)
		counter("line_bytes_total", l.Bytes, name)
		counter("line_duplicates_total", l.Duplicates, name)
		counter("line_out_of_order_total", l.OutOfOrder, name)
		counter("line_gaps_total", l.LineGaps, name)
		counter("line_malformed_total", l.Malformed, name)
		counter("line_wrong_session_total", l.WrongSession, name)
	}
	counter("gaps_total", st.Arbiter.Gaps)
	counter("gap_messages_total", st.Arbiter.GapMessages)
	counter("delivered_messages_total", st.Arbiter.Delivered)
	counter("filtered_messages_total", st.Filtered)
	counter("receive_dropped_total", st.Receive.Dropped)
	counter("receive_malformed_total", st.Receive.Malformed)
	for i, s := range st.Shards {
		id := strconv.Itoa(i)
		counter("shard_applied_total", s.Applied, id)
		counter("shard_inconsistencies_total", s.Book.Inconsistencies(), id)
		counter("shard_published_total", s.Published, id)
		counter("shard_ring_full_total", s.Ring.Full, id)
		ch <- prometheus.MustNewConstMetric(c.descs["shard_ring_high_water"], prometheus.GaugeValue, float64(s.Ring.HighWater), id)
	}
	r := st.Recovery
	counter("recovery_gaps_detected_total", r.GapsDetected)
	counter("recovery_rerequest_recovered_total", r.RecoveredByRerequest)
	counter("recovery_snapshot_recovered_total", r.RecoveredBySnapshot)
	ch <- prometheus.MustNewConstMetric(c.descs["recovery_open_gaps"], prometheus.GaugeValue, float64(r.Open))
	counter("recovery_messages_total", r.Rerequest.Messages)
	counter("recovery_requests_total", r.Rerequest.Requests)
	counter("recovery_retries_total", r.Rerequest.Retries)
	counter("recovery_timeouts_total", r.Rerequest.Timeouts)
	counter("recovery_failures_total", r.Rerequest.Failures)
	counter("recovery_bad_responses_total", r.Rerequest.Malformed, "malformed")
	counter("recovery_bad_responses_total", r.Rerequest.WrongSession, "wrong_session")
	counter("recovery_bad_responses_total", r.Rerequest.Unasked, "unasked")
	counter("recovery_late_responses_total", r.Rerequest.Late+st.Arbiter.RecoveredLate)
	counter("recovery_snapshots_total", r.Snapshots)
	counter("recovery_snapshot_failures_total", r.SnapshotFailures)
	ch <- prometheus.MustNewConstMetric(c.descs["recovery_spill_high_water"], prometheus.GaugeValue, float64(st.Arbiter.HeldMax))
	for _, state := range []string{StateOff, StateInSync, StateRerequesting, StateSnapshot} {
		v := 0.0
		if state == r.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.descs["recovery_state"], prometheus.GaugeValue, v, state)
	}
	counter("session_changes_total", st.Arbiter.SessionChanges)
	now := time.Now().UnixNano()
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	for i := 0; i < len(c.h.cfg.Receive.Lines) && i < MaxLines; i++ {
		since := st.LastPacket[i]
		if since == 0 {
			since = st.Started
		}
		gauge("line_silence_seconds", float64(now-since)/1e9, c.h.cfg.Receive.Lines[i].Name)
	}
	gauge("books_stale", float64(st.StaleBooks()))
	gauge("gaps_unrecovered", float64(st.UnrecoveredGaps()))
	if hb := c.h.w.LastHeartbeat(); !hb.IsZero() {
		gauge("shm_heartbeat_age_seconds", float64(now-hb.UnixNano())/1e9)
	}
	ready := 0.0
	if st.readiness() == readyOK {
		ready = 1
	}
	gauge("ready", ready)
	ch <- latency.HistogramMetric(c.descs["latency_seconds"], &st.Latency, nil, time.Unix(0, st.Started))
	ch <- latency.HistogramMetric(c.descs["path_latency_seconds"], &st.PathLatency, nil, time.Unix(0, st.Started))
	ch <- latency.HistogramMetric(c.descs["recovery_time_seconds"], &r.RecoveryTime, nil, time.Unix(0, st.Started))
}

// LogStats writes one stats line. In steady state it allocates nothing
// with a JSON logger (zerolog's ConsoleWriter, the console format, decodes
// and re-encodes every line and allocates), so that the stats logger never
// makes the garbage collector run.
func (h *Handler) LogStats(final bool) {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	st := &h.logSt
	h.StatsInto(st)
	if h.logKeys == nil {
		for i := 0; i < len(h.cfg.Receive.Lines) && i < MaxLines; i++ {
			p := "line_" + h.cfg.Receive.Lines[i].Name + "_"
			h.logKeys = append(h.logKeys, [6]string{p + "pkts", p + "dups", p + "ooo", p + "gaps", p + "malformed", p + "wrong_session"})
		}
	}
	ev := h.log.Info()
	if final {
		ev = ev.Bool("final", true)
	}
	for i, k := range h.logKeys {
		l := &st.Arbiter.Lines[i]
		ev = ev.Uint64(k[0], l.Packets).Uint64(k[1], l.Duplicates).Uint64(k[2], l.OutOfOrder).
			Uint64(k[3], l.LineGaps).Uint64(k[4], l.Malformed).Uint64(k[5], l.WrongSession)
	}
	var inc, full, hw uint64
	for i := range st.Shards {
		s := &st.Shards[i]
		inc += s.Book.Inconsistencies()
		full += s.Ring.Full
		hw = max(hw, s.Ring.HighWater)
	}
	ev.Str("backend", st.Backend).
		Uint64("next_seq", st.NextSeq).
		Uint64("delivered", st.Arbiter.Delivered).Uint64("applied", st.Applied()).
		Uint64("gaps", st.Arbiter.Gaps).Uint64("gap_msgs", st.Arbiter.GapMessages).
		Uint64("inconsistencies", inc).Uint64("ring_full", full).Uint64("ring_hwm", hw).
		Uint64("rx_dropped", st.Receive.Dropped).
		Str("recovery", st.Recovery.State).Uint64("gaps_detected", st.Recovery.GapsDetected).
		Uint64("recovered_rerequest", st.Recovery.RecoveredByRerequest).Uint64("recovered_snapshot", st.Recovery.RecoveredBySnapshot).
		Uint64("gaps_open", st.Recovery.Open).Uint64("recovered_msgs", st.Recovery.Rerequest.Messages).
		Uint64("requests", st.Recovery.Rerequest.Requests).Uint64("retries", st.Recovery.Rerequest.Retries).
		Uint64("timeouts", st.Recovery.Rerequest.Timeouts).Uint64("bad_responses", st.Recovery.Rerequest.Bad()).
		Uint64("late_responses", st.Recovery.Rerequest.Late+st.Arbiter.RecoveredLate).
		Uint64("snapshots", st.Recovery.Snapshots).Uint64("spill_hwm", st.Arbiter.HeldMax).
		Int64("recovery_p50_ns", st.Recovery.RecoveryTime.Quantile(0.5)).Int64("recovery_p99_ns", st.Recovery.RecoveryTime.Quantile(0.99)).
		Int64("lat_p50_ns", st.Latency.Quantile(0.5)).Int64("lat_p99_ns", st.Latency.Quantile(0.99)).
		Int64("lat_p999_ns", st.Latency.Quantile(0.999)).Int64("lat_max_ns", st.Latency.Max).
		Int64("path_p50_ns", st.PathLatency.Quantile(0.5)).Int64("path_p99_ns", st.PathLatency.Quantile(0.99)).
		Msg("stats")
}
