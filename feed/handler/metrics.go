package handler

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/internal/procstat"
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
// help, type, and the label (besides feed) it has, if any: two, comma
// separated, for receive_backend_info.
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
	kindSummary
)

func (k metricKind) String() string {
	switch k {
	case kindCounter:
		return "counter"
	case kindGauge:
		return "gauge"
	case kindSummary:
		return "summary"
	}
	return "histogram"
}

// exported are every metric the handler exports, the one list both the
// Prometheus Collector and the allocation-free Exposition describe.
var exported = [...]metric{
	{"line_packets_total", "MoldUDP64 packets received per line.", kindCounter, "line"},
	{"line_bytes_total", "UDP payload bytes received per line.", kindCounter, "line"},
	{"line_duplicates_total", "Packets whose messages were delivered already (by the other line first, or an earlier copy), or declared missing on every line before they came.", kindCounter, "line"},
	{"line_out_of_order_total", "Packets behind the line's own highest sequence number (reordered on the line, or sent again).", kindCounter, "line"},
	{"line_gaps_total", "Jumps in the line's own sequence numbers: loss on the line, or reordering (the packet overtaken then counts out of order).", kindCounter, "line"},
	{"line_malformed_total", "Packets rejected by the MoldUDP64 parser.", kindCounter, "line"},
	{"line_wrong_session_total", "Packets of another session.", kindCounter, "line"},
	{"line_before_restart_total", "Packets received before a sequence restart was followed but read after it (the line's receive queue was behind): dropped.", kindCounter, "line"},
	{"line_stale_end_of_session_total", "End of Session packets of the followed session behind what was received already (late copies, replays, forgeries): ignored.", kindCounter, "line"},
	{"line_suspect_total", "Packets of the followed session dropped for jumping more than 4194304 sequence numbers ahead (bad input: a corrupted or forged packet), unless three in a row agree, each data packet past the one before (copies of one data packet never confirm).", kindCounter, "line"},
	{"line_contradicted_total", "Packets held ahead of the next expected sequence number, that this line brought, dropped because every line that brought them went on below them for the arbitration grace or longer (a corrupt or forged sequence number within 4194304 of the feed's): never applied.", kindCounter, "line"},
	{"gaps_total", "Sequence ranges missing on every line.", kindCounter, ""},
	{"gap_messages_total", "Sequence numbers missing on every line.", kindCounter, ""},
	{"ended_join_messages_total", "Messages of a session joined after its end (its End of Session packets the first the lines brought) that no recovery source was set up to fetch: not declared a gap, no books published for them; the handler idles until the next session.", kindCounter, ""},
	{"gaps_forced_total", "Times gaps were declared at once, without waiting for the other line, because the hold-back buffer (arbitration.max_pending) was full or a packet larger than its slot, and no recovery could take them (the gaps are in gaps_total).", kindCounter, ""},
	{"delivered_messages_total", "Messages delivered in sequence order.", kindCounter, ""},
	{"filtered_messages_total", "Messages dropped by the symbol filter.", kindCounter, ""},
	{"bad_messages_total", "Messages shorter than a type byte and a stock locate (3 bytes): no locate to route them by, dropped before the books.", kindCounter, ""},
	{"receive_dropped_total", "Line datagrams lost before the handler read them: kernel drops (socket buffer or AF_XDP ring full), truncated, AF_XDP frames on a queue without a socket or fragmented.", kindCounter, ""},
	{"receive_malformed_total", "Line datagrams the receive backend received and rejected as malformed (AF_XDP: also failed checksums); not other traffic on the interface (under AF_XDP the backend event counter xdp_malformed counts every malformed frame on it).", kindCounter, ""},
	{"receive_errors_total", "Errors the receiver returned (each logged, at most one line a second): a receive backend failing.", kindCounter, ""},
	{"receive_backend_events_total", "The receive backend's own counters by name (xdp_no_socket, xdp_fragmented, truncated, enobufs, xsk_rx_ring_full, ...; docs/OPERATIONS.md): among them the causes of receive_dropped_total besides the sockets' kernel drops.", kindCounter, "counter"},
	{"shard_applied_total", "Messages applied per book shard.", kindCounter, "shard"},
	{"shard_inconsistencies_total", "Inconsistent messages per book shard.", kindCounter, "shard"},
	{"shard_long_messages_total", "Messages longer than their type's ITCH 5.0 length per book shard: applied by the type's fields, the bytes after them ignored (fields a revision of the feed appended, or a corrupted type byte); also in shard_inconsistencies_total.", kindCounter, "shard"},
	{"shard_unknown_type_messages_total", "Messages of a type ITCH 5.0 does not define per book shard: skipped by their length (an extension of the feed, or a corrupted type byte); not in shard_inconsistencies_total.", kindCounter, "shard"},
	{"shard_published_total", "Snapshots published per book shard.", kindCounter, "shard"},
	{"shard_publish_errors_total", "Books not published per book shard: no shm slot (full, or a bad symbol), each counted once until the next rebuild.", kindCounter, "shard"},
	{"shard_rebound_total", "Locates whose shm slot was retired because a new session bound them to another symbol (moved to a fresh slot, or to none when no slot is left: also a publish error), or to a symbol the symbol filter leaves out (to none).", kindCounter, "shard"},
	{"shard_stale_binds_total", "Snapshots not published per book shard: the shm writer refused the binding, another shard's standing in the way (this shard lags a session change, or the other lags a Stock Directory that freed the symbol).", kindCounter, "shard"},
	{"shard_duplicate_symbols_total", "Stock Directory messages per book shard giving one of its locates a symbol another locate holds in the session (bad input; the first announced keeps the symbol, the later locate's book is not published).", kindCounter, "shard"},
	{"shard_ring_full_total", "Hand-offs that found the shard ring full.", kindCounter, "shard"},
	{"shard_ring_high_water", "Largest shard ring occupancy seen.", kindGauge, "shard"},
	{"shard_thread_rt_priority", "SCHED_FIFO priority of the thread applying the shard (the receive thread in run to completion); 0: normal scheduling.", kindGauge, "shard"},
	{"receive_backend_info", "1, labelled with the receive backend in use (backend: xdp, uring or socket) and how it runs (mode: AF_XDP's per interface attach mode, native or generic, and copy or zero-copy; io_uring's multishot recvmsg; recvmmsg), as the log's receiving line and the stats line's backend say: a start that fell back (AF_XDP to io_uring to recvmmsg) shows another backend.", kindGauge, "backend,mode"},
	{"receive_thread_rt_priority", "SCHED_FIFO priority of the receive thread; 0: normal scheduling (not asked, or refused: see the log).", kindGauge, ""},
	{"line_silence_seconds", "Seconds since the line last delivered a packet (since start if never; resolution 20ms).", kindGauge, "line"},
	{"books_stale", "Books flagged PossiblyStale (missing messages of an unrecovered gap, or of a range larger than one re-request being caught up, a late join's start among them; every line silent for 5 s mid-session, until the lines are back with nothing lost; or an order dropped for want of book capacity).", kindGauge, ""},
	{"gaps_unrecovered", "Gaps whose messages the books still miss.", kindGauge, ""},
	{"shm_heartbeat_age_seconds", "Age of the heartbeat in the shared-memory header.", kindGauge, ""},
	{"shm_slots", "Instrument slots in the shared-memory file (its capacity).", kindGauge, ""},
	{"shm_slots_used", "Instrument slots in use, live and retired; registrations fail when it reaches shm_slots.", kindGauge, ""},
	{"shm_slots_retired", "Instrument slots retired (a locate bound to another symbol, a symbol moved to another locate): not reused until a restart.", kindGauge, ""},
	{"session_ended", "1 once the followed session announced its end (End of Session) and everything before it was delivered: the lines go quiet then.", kindGauge, ""},
	{"session_end_announced", "1 once the followed session announced its end (End of Session), whether or not everything before it was delivered: with session_ended 0, the handler is still fetching what came before the end (a join after the end re-requesting the session).", kindGauge, ""},
	{"ready", "1 when /readyz answers ready (receiving, books complete), else 0.", kindGauge, ""},
	{"cgroup_memory_limit_bytes", "The memory limits of the process's cgroup (v2), the smallest of its cgroup's and its ancestors': memory.max (past it the OOM killer kills) and memory.high (past it the kernel throttles and reclaims), each when set; absent on cgroup v1 (the log says why at start).", kindGauge, "file"},
	{"process_metrics_readable", "1 when the process_ families are exported (/proc/self read at this scrape), 0 when they cannot be read (the log says why at start).", kindGauge, ""},
	{"recovery_gaps_detected_total", "Sequence ranges missing on every line, handed to recovery or declared.", kindCounter, ""},
	{"recovery_rerequest_recovered_total", "Missing ranges filled while re-requesting (by answers or late copies).", kindCounter, ""},
	{"recovery_snapshot_recovered_total", "Declared gaps repaired by a snapshot.", kindCounter, ""},
	{"recovery_open_gaps", "Declared gaps not repaired yet (books flagged possibly stale).", kindGauge, ""},
	{"recovery_messages_total", "Messages delivered from re-request answers (into the range re-requested, or past it when an answer brought them first).", kindCounter, ""},
	{"recovery_unused_messages_total", "Messages of re-request answers received but not delivered: delivered already (by a line or an earlier answer), held already, no room to hold them, dropped with what was held, or in an answer dropped whole (late, another session, never asked, to a request made before a restart; not a malformed one).", kindCounter, ""},
	{"recovery_requests_total", "Re-request packets sent (not those whose write failed or whose socket could not be opened).", kindCounter, ""},
	{"recovery_retries_total", "Re-requests resent after a timeout.", kindCounter, ""},
	{"recovery_timeouts_total", "Re-requests that got no answer in time.", kindCounter, ""},
	{"recovery_failures_total", "Ranges given up after every re-request server was tried.", kindCounter, ""},
	{"recovery_open_errors_total", "Re-requests not sent because a server's new socket, opened after a sequence restart or session change, could not be opened (logged once per run of a server's failures, with the error): the range fails over to the next server or is declared.", kindCounter, ""},
	{"recovery_send_errors_total", "Re-requests whose write failed (no route to the server, a firewall refusing it; logged once per run of a server's failures, with the error): timed out as unanswered, then the next server or the range declared.", kindCounter, ""},
	{"recovery_receive_dropped_total", "Re-request answer datagrams the kernel dropped, the re-request sockets' receive buffer full (SO_MEMINFO; logged once when first seen): their messages are asked again. Raise recovery.rerequest.recv_buffer (cap_net_admin, or net.core.rmem_max).", kindCounter, ""},
	{"recovery_abandoned_total", "Ranges being re-requested when a snapshot started or the session changed: not failed, the snapshot or the new session's rebuild covers them.", kindCounter, ""},
	{"recovery_bad_responses_total", "Re-request answers dropped: malformed, another session, never asked, from another IP address than the server's (or port, with source_port: server), or to a request made before a sequence restart or session change.", kindCounter, "kind"},
	{"recovery_late_responses_total", "Re-request answers whose messages had arrived already.", kindCounter, ""},
	{"recovery_read_errors_total", "Errors reading a re-request socket (none expected): the socket is read again at the next poll.", kindCounter, ""},
	{"recovery_snapshots_total", "Snapshots loaded.", kindCounter, ""},
	{"recovery_snapshot_loaded_messages_total", "Messages of the GLIMPSE snapshots loaded, handed to the books: applied (shard_applied_total), not delivered (delivered_messages_total).", kindCounter, ""},
	{"recovery_snapshot_failures_total", "Snapshot fetches that failed.", kindCounter, ""},
	{"recovery_snapshots_wrong_session_total", "Snapshots of a session the lines have left (the server's current session, asked for with a blank session, is one the lines were on): not loaded; also in recovery_snapshot_failures_total.", kindCounter, ""},
	{"recovery_snapshots_discarded_total", "Snapshots fetched for a session replaced meanwhile, not loaded.", kindCounter, ""},
	{"recovery_snapshot_spill_overflows_total", "Snapshots loaded with a hole right after them: the spill filled while they downloaded (raise recovery.spill); the hole is a gap, its snapshot waits the retry delay.", kindCounter, ""},
	{"recovery_snapshot_fetches_total", "GLIMPSE snapshot fetches started (a connection and login to the snapshot server each).", kindCounter, ""},
	{"recovery_snapshot_fetch_errors_total", "GLIMPSE snapshot fetches failed, by cause: dial (no connection, or no answer to the login, within recovery.snapshot.connect_timeout), login_rejected, session_refused (at the Login Accepted), end_of_session, stalled (nothing but heartbeats for the idle timeout), too_long (no end within recovery.snapshot.max_duration or max_size), closed (the connection lost mid-snapshot), protocol (malformed SoupBinTCP or GLIMPSE data), cancelled (a stop or session change).", kindCounter, "cause"},
	{"recovery_snapshot_bytes_total", "Bytes read from the GLIMPSE server, SoupBinTCP framing included: a download's progress.", kindCounter, ""},
	{"recovery_snapshot_fetched_messages_total", "ITCH messages of GLIMPSE snapshots fetched, loaded or not.", kindCounter, ""},
	{"recovery_snapshot_heartbeats_total", "Server Heartbeats read from the GLIMPSE server.", kindCounter, ""},
	{"recovery_snapshot_debug_packets_total", "SoupBinTCP Debug packets read from the GLIMPSE server: ignored.", kindCounter, ""},
	{"recovery_snapshot_unsequenced_packets_total", "SoupBinTCP Unsequenced Data packets read from the GLIMPSE server during a snapshot, which GLIMPSE does not send: ignored (the first logged).", kindCounter, ""},
	{"recovery_snapshot_long_messages_total", "Messages of GLIMPSE snapshots fetched longer than their type's ITCH 5.0 length: applied by the type's fields (also in shard_long_messages_total once the snapshot is loaded).", kindCounter, ""},
	{"recovery_snapshot_unknown_messages_total", "Messages of GLIMPSE snapshots fetched of a type ITCH 5.0 does not define: skipped.", kindCounter, ""},
	{"recovery_snapshot_consecutive_failures", "Snapshots failed or refused (or loaded with the spill overflowed, or behind the feed with what they missed declared again) in a row since one was loaded whole, a session change, or the books made whole otherwise: the next waits SnapshotRetry doubled per failure after the first, capped at recovery.snapshot.retry_max.", kindGauge, ""},
	{"recovery_spill_dropped_total", "Packets not held while books waited for a snapshot (spill full, or larger than a slot); asked for again after.", kindCounter, ""},
	{"recovery_spill_high_water", "Most packets held at once while arbitrating or recovering.", kindGauge, ""},
	{"recovery_state", "1 for the current recovery state.", kindGauge, "state"},
	{"recovery_time_seconds", "Gap detected to books whole again.", kindHistogram, ""},
	{"session_changes_total", "Times a confirmed session replaced a followed one that was silent or had ended.", kindCounter, ""},
	{"sequence_regressions_total", "Times every line went back to sequence numbers already delivered, under the same session name, for the line timeout: nothing behind is applied; not ready until new sequence numbers come, unless the restart is followed (sequence_restarts_total).", kindCounter, ""},
	{"sequence_restarts_total", "Times the lines went back to sequence number 1 under the same session name and the restarted sequence was followed from 1, the books rebuilt as at a session change (arbitration.sequence_restart: rebuild).", kindCounter, ""},
	{"capture_packets_total", "Line datagrams and re-request answers written to the capture file (capture.path).", kindCounter, ""},
	{"capture_bytes_total", "Bytes written to the capture file (pcap headers and frames).", kindCounter, ""},
	{"capture_dropped_total", "Line datagrams left out of the capture because its ring was full (never out of the feed): raise capture.buffer, or the disk is too slow.", kindCounter, ""},
	{"capture_write_errors_total", "Failed writes to the capture file (a full disk): logged once per run of failures; the capture goes on.", kindCounter, ""},
	{"capture_write_lost_total", "Line datagrams lost from the capture with a failed write.", kindCounter, ""},
	{"capture_files_total", "Capture files written to: 1, and one more per rotation (capture.rotate_size; a file at its size limit, deleted or truncated).", kindCounter, ""},
	{"capture_files_deleted_total", "Capture files found deleted, or truncated, while written to (what they held is gone): the capture went on in a new file.", kindCounter, ""},
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
			labels = strings.Split(m.label, ",")
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

// Collect implements prometheus.Collector. It takes each value where the
// Exposition does (lineValue, shardValue, scalar, ...), so the two agree.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.h.Stats()
	now, mono := time.Now().UnixNano(), monoNow()
	lines := min(len(c.h.cfg.Receive.Lines), MaxLines)
	for i := range exported {
		m := &exported[i]
		d := c.descs[m.name]
		vt := prometheus.CounterValue
		if m.kind == kindGauge {
			vt = prometheus.GaugeValue
		}
		emit := func(v float64, labels ...string) { ch <- prometheus.MustNewConstMetric(d, vt, v, labels...) }
		switch {
		case m.name == "line_silence_seconds":
			for l := range lines {
				emit(float64(st.lineSilence(l, mono))/1e9, c.h.cfg.Receive.Lines[l].Name)
			}
		case m.label == "line":
			for l := range lines {
				emit(float64(lineValue(&st.Arbiter.Lines[l], m.name)), c.h.cfg.Receive.Lines[l].Name)
			}
		case m.label == "shard":
			for s := range st.Shards {
				emit(float64(shardValue(&st.Shards[s], m.name)), strconv.Itoa(s))
			}
		case m.label == "kind":
			for k, v := range badResponses(&st) {
				emit(float64(v), badResponseKinds[k])
			}
		case m.label == "cause":
			for k, v := range snapshotFetchErrors(&st) {
				emit(float64(v), snapshotErrorCauses[k])
			}
		case m.label == "counter":
			for i := range st.Receive.Extra.Len() {
				name, v := st.Receive.Extra.At(i)
				emit(float64(v), name)
			}
		case m.name == "receive_backend_info":
			backend, mode := backendLabels(st.Backend)
			emit(1, backend, mode)
		case m.label == "state":
			for _, s := range recoveryStates {
				v := 0.0
				if s == st.Recovery.State {
					v = 1
				}
				emit(v, s)
			}
		case m.name == "shm_heartbeat_age_seconds":
			if hb := c.h.w.LastHeartbeat(); !hb.IsZero() {
				emit(float64(now-hb.UnixNano()) / 1e9)
			}
		case m.label == "file":
			cg, _ := procstat.SelfCgroupMemory()
			for i, v := range cgroupLimits(cg) {
				if v != procstat.NoLimit {
					emit(float64(v), cgroupFiles[i])
				}
			}
		case m.name == "process_metrics_readable":
			v := 0.0
			var p procstat.Process
			if r, err := procstat.Self(); err == nil && r.Read(&p) == nil {
				v = 1
			}
			emit(v)
		case m.kind == kindHistogram:
			ch <- latency.HistogramMetric(d, histogramOf(&st, m.name), nil, time.Unix(0, st.Started))
		default:
			emit(float64(scalar(&st, m.name)))
		}
	}
}

// backendLabels splits a receive backend's name (rx.Receiver's Backend:
// "xdp (ens1f0 native, copy)", "socket (recvmmsg)") into the labels of
// receive_backend_info: the backend and, in parentheses after it, its mode.
func backendLabels(name string) (backend, mode string) {
	backend, mode, _ = strings.Cut(name, " (")
	return backend, strings.TrimSuffix(mode, ")")
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
		Uint64("delivered", st.Arbiter.Delivered).Uint64("applied", st.Applied()).Uint64("bad_msgs", st.BadMessages).
		Uint64("gaps", st.Arbiter.Gaps).Uint64("gap_msgs", st.Arbiter.GapMessages).
		Uint64("inconsistencies", inc).Uint64("ring_full", full).Uint64("ring_hwm", hw).
		Uint64("rx_dropped", st.Receive.Dropped).
		Int("shm_slots_used", st.Shm.Used).Int("shm_slots_retired", st.Shm.Retired).
		Str("recovery", st.Recovery.State).Uint64("gaps_detected", st.Recovery.GapsDetected).
		Uint64("recovered_rerequest", st.Recovery.RecoveredByRerequest).Uint64("recovered_snapshot", st.Recovery.RecoveredBySnapshot).
		Uint64("gaps_open", st.Recovery.Open).Uint64("recovered_msgs", st.Arbiter.RecoveredMessages).
		Uint64("unused_msgs", st.unusedMessages()).
		Uint64("requests", st.Recovery.Rerequest.Requests).Uint64("retries", st.Recovery.Rerequest.Retries).
		Uint64("timeouts", st.Recovery.Rerequest.Timeouts).Uint64("bad_responses", st.Recovery.Rerequest.Bad()).
		Uint64("late_responses", st.Recovery.Rerequest.Late+st.Arbiter.RecoveredLate).
		Uint64("snapshots", st.Recovery.Snapshots).Uint64("snapshot_msgs", st.Recovery.SnapshotMessages).Uint64("spill_hwm", st.Arbiter.HeldMax).
		Int64("recovery_p50_ns", st.Recovery.RecoveryTime.Quantile(0.5)).Int64("recovery_p99_ns", st.Recovery.RecoveryTime.Quantile(0.99)).
		Int64("lat_p50_ns", st.Latency.Quantile(0.5)).Int64("lat_p99_ns", st.Latency.Quantile(0.99)).
		Int64("lat_p999_ns", st.Latency.Quantile(0.999)).Int64("lat_max_ns", st.Latency.Max).
		Int64("path_p50_ns", st.PathLatency.Quantile(0.5)).Int64("path_p99_ns", st.PathLatency.Quantile(0.99)).
		Msg("stats")
}
