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

// lineSilenceNever is what line_silence_seconds counts from for a line that
// never delivered: the handler's start.

// NewCollector returns a Collector for h.
func NewCollector(h *Handler) *Collector {
	c := &Collector{h: h, descs: map[string]*prometheus.Desc{}}
	feed := prometheus.Labels{"feed": h.cfg.Feed}
	add := func(name, help string, labels ...string) {
		c.descs[name] = prometheus.NewDesc("feedhandler_"+name, help, labels, feed)
	}
	add("line_packets_total", "MoldUDP64 packets received per line.", "line")
	add("line_bytes_total", "UDP payload bytes received per line.", "line")
	add("line_duplicates_total", "Packets whose messages the other line delivered first.", "line")
	add("line_out_of_order_total", "Packets behind the line's own highest sequence number.", "line")
	add("line_gaps_total", "Jumps in the line's own sequence numbers.", "line")
	add("line_malformed_total", "Packets rejected by the MoldUDP64 parser.", "line")
	add("line_wrong_session_total", "Packets of another session.", "line")
	add("gaps_total", "Sequence ranges missing on every line.")
	add("gap_messages_total", "Sequence numbers missing on every line.")
	add("delivered_messages_total", "Messages delivered in sequence order.")
	add("filtered_messages_total", "Messages dropped by the symbol filter.")
	add("receive_dropped_total", "Kernel-reported receive drops.")
	add("receive_malformed_total", "Frames the receive backend rejected.")
	add("shard_applied_total", "Messages applied per book shard.", "shard")
	add("shard_inconsistencies_total", "Inconsistent messages per book shard.", "shard")
	add("shard_published_total", "Snapshots published per book shard.", "shard")
	add("shard_ring_full_total", "Hand-offs that found the shard ring full.", "shard")
	add("shard_ring_high_water", "Largest shard ring occupancy seen.", "shard")
	add("line_silence_seconds", "Seconds since the line last delivered a packet (since start if never; resolution 20ms).", "line")
	add("books_stale", "Books flagged PossiblyStale (missing messages of an unrecovered gap).")
	add("gaps_unrecovered", "Gaps whose messages the books still miss.")
	add("shm_heartbeat_age_seconds", "Age of the heartbeat in the shared-memory header.")
	add("ready", "1 when /readyz answers ready (receiving, books complete), else 0.")
	add("recovery_gaps_detected_total", "Sequence ranges missing on every line, handed to recovery or declared.")
	add("recovery_rerequest_recovered_total", "Missing ranges filled while re-requesting (by answers or late copies).")
	add("recovery_snapshot_recovered_total", "Declared gaps repaired by a snapshot.")
	add("recovery_open_gaps", "Declared gaps not repaired yet (books flagged possibly stale).")
	add("recovery_messages_total", "Messages recovered by re-request.")
	add("recovery_requests_total", "Re-request packets sent.")
	add("recovery_retries_total", "Re-requests resent after a timeout.")
	add("recovery_timeouts_total", "Re-requests that got no answer in time.")
	add("recovery_failures_total", "Ranges given up after every re-request server was tried.")
	add("recovery_bad_responses_total", "Re-request answers dropped: malformed, another session or never asked.", "kind")
	add("recovery_late_responses_total", "Re-request answers whose messages had arrived already.")
	add("recovery_snapshots_total", "Snapshots loaded.")
	add("recovery_snapshot_failures_total", "Snapshot fetches that failed.")
	add("recovery_spill_high_water", "Most packets held at once while arbitrating or recovering.")
	add("recovery_state", "1 for the current recovery state.", "state")
	add("recovery_time_seconds", "Gap detected to books whole again.")
	add("session_changes_total", "Times a confirmed session replaced a silent followed one.")
	add("latency_seconds", "Receive timestamp to shared-memory publish, per message.")
	add("path_latency_seconds", "Receive-thread pickup to shared-memory publish, per message (the handler's own path).")
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
	if ok, _ := st.Ready(); ok {
		ready = 1
	}
	gauge("ready", ready)
	ch <- latency.HistogramMetric(c.descs["latency_seconds"], &st.Latency, nil, time.Unix(0, st.Started))
	ch <- latency.HistogramMetric(c.descs["path_latency_seconds"], &st.PathLatency, nil, time.Unix(0, st.Started))
	ch <- latency.HistogramMetric(c.descs["recovery_time_seconds"], &r.RecoveryTime, nil, time.Unix(0, st.Started))
}

// LogStats writes one stats line.
func (h *Handler) LogStats(final bool) {
	st := h.Stats()
	ev := h.log.Info()
	if final {
		ev = ev.Bool("final", true)
	}
	for i := 0; i < len(h.cfg.Receive.Lines) && i < MaxLines; i++ {
		l := st.Arbiter.Lines[i]
		p := "line_" + h.cfg.Receive.Lines[i].Name + "_"
		ev = ev.Uint64(p+"pkts", l.Packets).Uint64(p+"dups", l.Duplicates).Uint64(p+"ooo", l.OutOfOrder).
			Uint64(p+"gaps", l.LineGaps).Uint64(p+"malformed", l.Malformed).Uint64(p+"wrong_session", l.WrongSession)
	}
	var inc, full, hw uint64
	for _, s := range st.Shards {
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
