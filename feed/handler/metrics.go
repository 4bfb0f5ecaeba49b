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
// help, type, the label (besides feed) it has, if any (two, comma
// separated, for receive_backend_info), and where its samples come from:
// exactly one of stats, line, shard, each, hist and own is set. The
// constructors below (counter, lineCounter, byLabel, ...) take the name and
// the value together, so a row cannot lack its value;
// TestMetricsHaveOneSource checks the rows.
type metric struct {
	name, help string
	kind       metricKind
	label      string

	stats  func(*Stats) uint64            // one sample, labelled feed alone
	line   func(*LineStats) uint64        // one sample per line (label line)
	shard  func(*ShardStats) uint64       // one sample per book shard (label shard)
	each   func(st *Stats, i int) uint64  // one sample per label value: values[i]
	values []string                       // each's label values, in order
	hist   func(*Stats) *latency.Snapshot // a histogram
	own    ownFamily                      // rendered by a case of its own
}

// ownFamily names a family whose samples come from more than the Stats
// (the clock, the shm writer, the process) or whose label values are not
// known in advance: the Exposition and the Collector each render it by a
// case of its own.
type ownFamily uint8

const (
	notOwn              ownFamily = iota
	ownLineSilence                // per line, from the monotonic clock
	ownBackendEvents              // the receive backend's counters (rx.Extra), by name
	ownBackendInfo                // 1, labelled with the backend and its mode
	ownHeartbeatAge               // the shm header's heartbeat's age, from the clock
	ownCgroupLimits               // the cgroup's memory limits that are set, by file
	ownProcReadable               // whether /proc/self was read
	ownRerequestTimeout           // the re-request client's timeout now, in seconds
)

func counter(name, help string, v func(*Stats) uint64) metric {
	return metric{name: name, help: help, kind: kindCounter, stats: v}
}

func gauge(name, help string, v func(*Stats) uint64) metric {
	return metric{name: name, help: help, kind: kindGauge, stats: v}
}

func lineCounter(name, help string, v func(*LineStats) uint64) metric {
	return metric{name: name, help: help, kind: kindCounter, label: "line", line: v}
}

func shardCounter(name, help string, v func(*ShardStats) uint64) metric {
	return metric{name: name, help: help, kind: kindCounter, label: "shard", shard: v}
}

func shardGauge(name, help string, v func(*ShardStats) uint64) metric {
	return metric{name: name, help: help, kind: kindGauge, label: "shard", shard: v}
}

// byLabel is a family with a sample per value of its label, values[i]'s
// being v(st, i).
func byLabel(name, help string, kind metricKind, label string, values []string, v func(st *Stats, i int) uint64) metric {
	return metric{name: name, help: help, kind: kind, label: label, each: v, values: values}
}

func histogram(name, help string, v func(*Stats) *latency.Snapshot) metric {
	return metric{name: name, help: help, kind: kindHistogram, hist: v}
}

func own(name, help string, kind metricKind, label string, f ownFamily) metric {
	return metric{name: name, help: help, kind: kind, label: label, own: f}
}

// oneIf is 1 if b, else 0: a gauge's value for a condition.
func oneIf(b bool) uint64 {
	if b {
		return 1
	}
	return 0
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

// exported are every metric the handler exports, each with its value: the
// one list both the Prometheus Collector and the allocation-free
// Exposition render, the docs' test (TestMetricsDocumented) reads.
var exported = [...]metric{
	lineCounter("line_packets_total", "MoldUDP64 packets received per line.", func(l *LineStats) uint64 { return l.Packets }),
	lineCounter("line_bytes_total", "UDP payload bytes received per line.", func(l *LineStats) uint64 { return l.Bytes }),
	lineCounter("line_duplicates_total", "Packets whose messages were delivered already (by the other line first, or an earlier copy), or declared missing on every line before they came.", func(l *LineStats) uint64 { return l.Duplicates }),
	lineCounter("line_out_of_order_total", "Packets behind the line's own highest sequence number (reordered on the line, or sent again).", func(l *LineStats) uint64 { return l.OutOfOrder }),
	lineCounter("line_gaps_total", "Jumps in the line's own sequence numbers: loss on the line, or reordering (the packet overtaken then counts out of order).", func(l *LineStats) uint64 { return l.LineGaps }),
	lineCounter("line_malformed_total", "Packets rejected by the MoldUDP64 parser.", func(l *LineStats) uint64 { return l.Malformed }),
	lineCounter("line_wrong_session_total", "Packets of another session.", func(l *LineStats) uint64 { return l.WrongSession }),
	lineCounter("line_before_restart_total", "Packets received before a sequence restart was followed but read after it (the line's receive queue was behind): dropped.", func(l *LineStats) uint64 { return l.BeforeRestart }),
	lineCounter("line_stale_end_of_session_total", "End of Session packets of the followed session behind what was received already (late copies, replays, forgeries): ignored.", func(l *LineStats) uint64 { return l.StaleEndOfSession }),
	lineCounter("line_suspect_total", "Packets of the followed session dropped for jumping more than 4194304 sequence numbers ahead (bad input: a corrupted or forged packet), unless three in a row agree, each data packet past the one before (copies of one data packet never confirm).", func(l *LineStats) uint64 { return l.Suspect }),
	lineCounter("line_contradicted_total", "Packets held ahead of the next expected sequence number, that this line brought, dropped because every line that brought them went on below them for the arbitration grace or longer (a corrupt or forged sequence number within 4194304 of the feed's): never applied.", func(l *LineStats) uint64 { return l.Contradicted }),
	counter("gaps_total", "Sequence ranges missing on every line.", func(st *Stats) uint64 { return st.Arbiter.Gaps }),
	counter("gap_messages_total", "Sequence numbers missing on every line.", func(st *Stats) uint64 { return st.Arbiter.GapMessages }),
	counter("ended_join_messages_total", "Messages of a session joined after its end (its End of Session packets the first the lines brought) that no recovery source was set up to fetch: not declared a gap, no books published for them; the handler idles until the next session.", func(st *Stats) uint64 { return st.Arbiter.EndedJoin }),
	counter("gaps_forced_total", "Times gaps were declared at once, without waiting for the other line, because the hold-back buffer (arbitration.max_pending) was full or a packet larger than its slot, and no recovery could take them (the gaps are in gaps_total).", func(st *Stats) uint64 { return st.Arbiter.ForcedByFull }),
	counter("delivered_messages_total", "Messages delivered in sequence order.", func(st *Stats) uint64 { return st.Arbiter.Delivered }),
	counter("filtered_messages_total", "Messages dropped by the symbol filter.", func(st *Stats) uint64 { return st.Filtered }),
	counter("bad_messages_total", "Messages shorter than a type byte and a stock locate (3 bytes): no locate to route them by, dropped before the books.", func(st *Stats) uint64 { return st.BadMessages }),
	counter("receive_dropped_total", "Line datagrams lost before the handler read them: kernel drops (socket buffer or AF_XDP ring full), truncated, AF_XDP frames on a queue without a socket or fragmented.", func(st *Stats) uint64 { return st.Receive.Dropped }),
	counter("receive_malformed_total", "Line datagrams the receive backend received and rejected as malformed (AF_XDP: also failed checksums); not other traffic on the interface (under AF_XDP the backend event counter xdp_malformed counts every malformed frame on it).", func(st *Stats) uint64 { return st.Receive.Malformed }),
	counter("receive_errors_total", "Errors the receiver returned (each logged, at most one line a second): a receive backend failing.", func(st *Stats) uint64 { return st.ReceiveErrors }),
	own("receive_backend_events_total", "The receive backend's own counters by name (xdp_no_socket, xdp_fragmented, truncated, enobufs, xsk_rx_ring_full, ...; docs/OPERATIONS.md): among them the causes of receive_dropped_total besides the sockets' kernel drops.", kindCounter, "counter", ownBackendEvents),
	shardCounter("shard_applied_total", "Messages applied per book shard.", func(sh *ShardStats) uint64 { return sh.Applied }),
	shardCounter("shard_inconsistencies_total", "Inconsistent messages per book shard.", func(sh *ShardStats) uint64 { return sh.Book.Inconsistencies() }),
	shardCounter("shard_long_messages_total", "Messages longer than their type's ITCH 5.0 length per book shard: applied by the type's fields, the bytes after them ignored (fields a revision of the feed appended, or a corrupted type byte); also in shard_inconsistencies_total.", func(sh *ShardStats) uint64 { return sh.Book.Long }),
	shardCounter("shard_unknown_type_messages_total", "Messages of a type ITCH 5.0 does not define per book shard: skipped by their length (an extension of the feed, or a corrupted type byte); not in shard_inconsistencies_total.", func(sh *ShardStats) uint64 { return sh.Book.UnknownType }),
	shardCounter("shard_published_total", "Snapshots published per book shard.", func(sh *ShardStats) uint64 { return sh.Published }),
	shardCounter("shard_publish_errors_total", "Books not published per book shard: no shm slot (full, or a bad symbol), each counted once until the next rebuild.", func(sh *ShardStats) uint64 { return sh.PublishErrors }),
	shardCounter("shard_rebound_total", "Locates whose shm slot was retired because a new session bound them to another symbol (moved to a fresh slot, or to none when no slot is left: also a publish error), or to a symbol the symbol filter leaves out (to none).", func(sh *ShardStats) uint64 { return sh.Rebound }),
	shardCounter("shard_stale_binds_total", "Snapshots not published per book shard: the shm writer refused the binding, another shard's standing in the way (this shard lags a session change, or the other lags a Stock Directory that freed the symbol).", func(sh *ShardStats) uint64 { return sh.StaleBinds }),
	shardCounter("shard_duplicate_symbols_total", "Stock Directory messages per book shard giving one of its locates a symbol another locate holds in the session (bad input; the first announced keeps the symbol, the later locate's book is not published).", func(sh *ShardStats) uint64 { return sh.DuplicateSymbols }),
	shardCounter("shard_ring_full_total", "Hand-offs that found the shard ring full.", func(sh *ShardStats) uint64 { return sh.Ring.Full }),
	shardGauge("shard_ring_high_water", "Largest shard ring occupancy seen.", func(sh *ShardStats) uint64 { return sh.Ring.HighWater }),
	shardGauge("shard_thread_rt_priority", "SCHED_FIFO priority of the thread applying the shard (the receive thread in run to completion); 0: normal scheduling.", func(sh *ShardStats) uint64 { return uint64(sh.Thread.Priority) }),
	own("receive_backend_info", "1, labelled with the receive backend in use (backend: xdp, uring or socket) and how it runs (mode: AF_XDP's per interface attach mode, native or generic, and copy or zero-copy; io_uring's multishot recvmsg; recvmmsg), as the log's receiving line and the stats line's backend say: a start that fell back (AF_XDP to io_uring to recvmmsg) shows another backend.", kindGauge, "backend,mode", ownBackendInfo),
	gauge("receive_thread_rt_priority", "SCHED_FIFO priority of the receive thread; 0: normal scheduling (not asked, or refused: see the log).", func(st *Stats) uint64 { return uint64(st.ReceiveThread.Priority) }),
	own("line_silence_seconds", "Seconds since the line last delivered a packet (since start if never; resolution 20ms).", kindGauge, "line", ownLineSilence),
	gauge("books_stale", "Books flagged PossiblyStale (missing messages of an unrecovered gap, or of a range larger than one re-request being caught up, a late join's start among them; every line silent for 5 s mid-session, until the lines are back with nothing lost; or an order dropped for want of book capacity).", func(st *Stats) uint64 { return uint64(st.StaleBooks()) }),
	gauge("gaps_unrecovered", "Gaps whose messages the books still miss.", func(st *Stats) uint64 { return st.UnrecoveredGaps() }),
	own("shm_heartbeat_age_seconds", "Age of the heartbeat in the shared-memory header.", kindGauge, "", ownHeartbeatAge),
	gauge("shm_slots", "Instrument slots in the shared-memory file (its capacity).", func(st *Stats) uint64 { return uint64(st.Shm.Capacity) }),
	gauge("shm_slots_used", "Instrument slots in use, live and retired; registrations fail when it reaches shm_slots.", func(st *Stats) uint64 { return uint64(st.Shm.Used) }),
	gauge("shm_slots_retired", "Instrument slots retired (a locate bound to another symbol, a symbol moved to another locate): not reused until a restart.", func(st *Stats) uint64 { return uint64(st.Shm.Retired) }),
	gauge("session_ended", "1 once the followed session announced its end (End of Session) and everything before it was delivered: the lines go quiet then.", func(st *Stats) uint64 { return oneIf(st.Ended) }),
	gauge("session_end_announced", "1 once the followed session announced its end (End of Session), whether or not everything before it was delivered: with session_ended 0, the handler is still fetching what came before the end (a join after the end re-requesting the session).", func(st *Stats) uint64 { return oneIf(st.EndAnnounced) }),
	gauge("ready", "1 when /readyz answers ready (receiving, books complete), else 0.", func(st *Stats) uint64 { return oneIf(st.readiness() == readyOK) }),
	own("cgroup_memory_limit_bytes", "The memory limits of the process's cgroup (v2), the smallest of its cgroup's and its ancestors': memory.max (past it the OOM killer kills) and memory.high (past it the kernel throttles and reclaims), each when set; absent on cgroup v1 (the log says why at start).", kindGauge, "file", ownCgroupLimits),
	own("process_metrics_readable", "1 when the process_ families are exported (/proc/self read at this scrape), 0 when they cannot be read (the log says why at start).", kindGauge, "", ownProcReadable),
	counter("recovery_gaps_detected_total", "Sequence ranges missing on every line, handed to recovery or declared.", func(st *Stats) uint64 { return st.Recovery.GapsDetected }),
	counter("recovery_rerequest_recovered_total", "Missing ranges filled while re-requesting (by answers or late copies).", func(st *Stats) uint64 { return st.Recovery.RecoveredByRerequest }),
	counter("recovery_snapshot_recovered_total", "Declared gaps repaired by a snapshot.", func(st *Stats) uint64 { return st.Recovery.RecoveredBySnapshot }),
	gauge("recovery_open_gaps", "Declared gaps not repaired yet (books flagged possibly stale).", func(st *Stats) uint64 { return st.Recovery.Open }),
	counter("recovery_messages_total", "Messages delivered from re-request answers (into the range re-requested, or past it when an answer brought them first).", func(st *Stats) uint64 { return st.Arbiter.RecoveredMessages }),
	counter("recovery_unused_messages_total", "Messages of re-request answers received but not delivered: delivered already (by a line or an earlier answer), held already, no room to hold them, dropped with what was held, or in an answer dropped whole (late, another session, never asked, to a request made before a restart; not a malformed one).", func(st *Stats) uint64 { return st.unusedMessages() }),
	counter("recovery_requests_total", "Re-request packets sent (not those whose write failed or whose socket could not be opened).", func(st *Stats) uint64 { return st.Recovery.Rerequest.Requests }),
	counter("recovery_ahead_requests_total", "Of recovery_requests_total, the re-requests for holes past the range being filled, asked without waiting for it (docs/RECOVERY.md, ranges asked ahead).", func(st *Stats) uint64 { return st.Recovery.Rerequest.Ahead }),
	counter("recovery_answer_times_total", "Re-request answers whose time since their request was measured for the request timeout (answers to a first send only: one to a resend may be the first send's, late).", func(st *Stats) uint64 { return st.Recovery.Rerequest.AnswerTimes }),
	own("recovery_request_timeout_seconds", "The re-request timeout of a first send now, to the server asked now (or that the next range starts with: each server has its own): its answer times measured, smoothed, plus four times their variation, never below recovery.rerequest.timeout nor above 64 times it, and twice that after a timeout until an answer is measured again (each resend of a request doubles its own timeout on top) (docs/RECOVERY.md, request timeout); the configured timeout until an answer is measured.", kindGauge, "", ownRerequestTimeout),
	counter("recovery_retries_total", "Re-requests resent after a timeout.", func(st *Stats) uint64 { return st.Recovery.Rerequest.Retries }),
	counter("recovery_timeouts_total", "Re-requests that got no answer in time.", func(st *Stats) uint64 { return st.Recovery.Rerequest.Timeouts }),
	counter("recovery_failures_total", "Ranges given up after every re-request server was tried.", func(st *Stats) uint64 { return st.Recovery.Rerequest.Failures }),
	counter("recovery_open_errors_total", "Re-requests not sent because a server's new socket, opened after a sequence restart or session change, could not be opened (logged once per run of a server's failures, with the error): the range fails over to the next server or is declared.", func(st *Stats) uint64 { return st.Recovery.Rerequest.OpenErrors }),
	counter("recovery_send_errors_total", "Re-request writes that failed (no route to the server, a firewall refusing it: the next server at once, or the range declared; a send buffer full: written again soon, each failure counted; logged once per run of a server's failures, with the error).", func(st *Stats) uint64 { return st.Recovery.Rerequest.SendErrors }),
	counter("recovery_receive_dropped_total", "Re-request answer datagrams the kernel dropped, the re-request sockets' receive buffer full (SO_MEMINFO; logged once when first seen): their messages are asked again. Raise recovery.rerequest.recv_buffer (cap_net_admin, or net.core.rmem_max).", func(st *Stats) uint64 { return st.Recovery.Rerequest.KernelDrops }),
	counter("recovery_abandoned_total", "Ranges being re-requested when a snapshot started or the session changed: not failed, the snapshot or the new session's rebuild covers them.", func(st *Stats) uint64 { return st.Arbiter.RecoveriesAbandoned }),
	byLabel("recovery_bad_responses_total", "Re-request answers dropped: malformed, another session, never asked, from another IP address than the server's (or port, with source_port: server), or to a request made before a sequence restart or session change.", kindCounter, "kind", badResponseKinds[:], func(st *Stats, k int) uint64 { return badResponses(st)[k] }),
	counter("recovery_late_responses_total", "Re-request answers whose messages had arrived already.", func(st *Stats) uint64 { return st.lateResponses() }),
	counter("recovery_read_errors_total", "Errors reading a re-request socket (none expected): the socket is read again at the next poll.", func(st *Stats) uint64 { return st.Recovery.Rerequest.ReadErrors }),
	counter("recovery_snapshots_total", "Snapshots loaded.", func(st *Stats) uint64 { return st.Recovery.Snapshots }),
	counter("recovery_snapshot_loaded_messages_total", "Messages of the GLIMPSE snapshots loaded, handed to the books: applied (shard_applied_total), not delivered (delivered_messages_total).", func(st *Stats) uint64 { return st.Recovery.SnapshotMessages }),
	counter("recovery_snapshot_failures_total", "Snapshot fetches that failed.", func(st *Stats) uint64 { return st.Recovery.SnapshotFailures }),
	counter("recovery_snapshots_wrong_session_total", "Snapshots of a session the lines have left (the server's current session, asked for with a blank session, is one the lines were on): not loaded; also in recovery_snapshot_failures_total.", func(st *Stats) uint64 { return st.Recovery.SnapshotsWrongSession }),
	counter("recovery_snapshots_discarded_total", "Snapshots fetched for a session replaced meanwhile, not loaded.", func(st *Stats) uint64 { return st.Recovery.SnapshotsDiscarded }),
	counter("recovery_snapshot_spill_overflows_total", "Snapshots loaded with a hole right after them: the spill filled while they downloaded (raise recovery.spill); the hole is a gap, its snapshot waits the retry delay.", func(st *Stats) uint64 { return st.Recovery.SnapshotSpillOverflows }),
	counter("recovery_snapshot_fetches_total", "GLIMPSE snapshot fetches started (a connection and login to the snapshot server each).", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.Fetches }),
	byLabel("recovery_snapshot_fetch_errors_total", "GLIMPSE snapshot fetches failed, by cause: dial (no connection, or no answer to the login, within recovery.snapshot.connect_timeout), login_rejected, session_refused (at the Login Accepted), end_of_session, stalled (nothing but heartbeats for the idle timeout), too_long (no end within recovery.snapshot.max_duration or max_size), closed (the connection lost mid-snapshot), protocol (malformed SoupBinTCP or GLIMPSE data), cancelled (a stop or session change).", kindCounter, "cause", snapshotErrorCauses[:], func(st *Stats, k int) uint64 { return snapshotFetchErrors(st)[k] }),
	counter("recovery_snapshot_bytes_total", "Bytes read from the GLIMPSE server, SoupBinTCP framing included: a download's progress.", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.Soup.Bytes }),
	counter("recovery_snapshot_fetched_messages_total", "ITCH messages of GLIMPSE snapshots fetched, loaded or not.", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.Messages }),
	counter("recovery_snapshot_heartbeats_total", "Server Heartbeats read from the GLIMPSE server.", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.Soup.Heartbeats }),
	counter("recovery_snapshot_debug_packets_total", "SoupBinTCP Debug packets read from the GLIMPSE server: ignored.", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.Soup.Debug }),
	counter("recovery_snapshot_unsequenced_packets_total", "SoupBinTCP Unsequenced Data packets read from the GLIMPSE server during a snapshot, which GLIMPSE does not send: ignored (the first logged).", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.UnsequencedPacket }),
	counter("recovery_snapshot_long_messages_total", "Messages of GLIMPSE snapshots fetched longer than their type's ITCH 5.0 length: applied by the type's fields (also in shard_long_messages_total once the snapshot is loaded).", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.LongMessages }),
	counter("recovery_snapshot_unknown_messages_total", "Messages of GLIMPSE snapshots fetched of a type ITCH 5.0 does not define: skipped.", func(st *Stats) uint64 { return st.Recovery.SnapshotClient.UnknownMessages }),
	gauge("recovery_snapshot_consecutive_failures", "Snapshots failed or refused (or loaded with the spill overflowed, or behind the feed with what they missed declared again) in a row since one was loaded whole, a session change, or the books made whole otherwise: the next waits SnapshotRetry doubled per failure after the first, capped at recovery.snapshot.retry_max.", func(st *Stats) uint64 { return st.Recovery.SnapshotRetryFailures }),
	counter("recovery_spill_dropped_total", "Packets not held while books waited for a snapshot (spill full, or larger than a slot); asked for again after.", func(st *Stats) uint64 { return st.Arbiter.SpillDropped + st.Arbiter.FrozenTooLarge }),
	gauge("recovery_spill_high_water", "Most packets held at once while arbitrating or recovering.", func(st *Stats) uint64 { return st.Arbiter.HeldMax }),
	byLabel("recovery_state", "1 for the current recovery state.", kindGauge, "state", recoveryStates[:], func(st *Stats, k int) uint64 { return oneIf(st.Recovery.State == recoveryStates[k]) }),
	histogram("recovery_time_seconds", "Gap detected to books whole again.", func(st *Stats) *latency.Snapshot { return &st.Recovery.RecoveryTime }),
	counter("session_changes_total", "Times a confirmed session replaced a followed one that was silent or had ended.", func(st *Stats) uint64 { return st.Arbiter.SessionChanges }),
	counter("sequence_regressions_total", "Times every line went back to sequence numbers already delivered, under the same session name, for the line timeout: nothing behind is applied; not ready until new sequence numbers come, unless the restart is followed (sequence_restarts_total).", func(st *Stats) uint64 { return st.Arbiter.Regressions }),
	counter("sequence_restarts_total", "Times the lines went back to sequence number 1 under the same session name and the restarted sequence was followed from 1, the books rebuilt as at a session change (arbitration.sequence_restart: rebuild).", func(st *Stats) uint64 { return st.Arbiter.Restarts }),
	counter("capture_packets_total", "Line datagrams and re-request answers written to the capture file (capture.path).", func(st *Stats) uint64 { return st.Capture.Packets }),
	counter("capture_bytes_total", "Bytes written to the capture file (pcap headers and frames).", func(st *Stats) uint64 { return st.Capture.Bytes }),
	counter("capture_dropped_total", "Line datagrams left out of the capture because its ring was full (never out of the feed): raise capture.buffer, or the disk is too slow.", func(st *Stats) uint64 { return st.Capture.Dropped }),
	counter("capture_write_errors_total", "Failed writes to the capture file (a full disk): logged once per run of failures; the capture goes on.", func(st *Stats) uint64 { return st.Capture.WriteErrors }),
	counter("capture_write_lost_total", "Line datagrams lost from the capture with a failed write.", func(st *Stats) uint64 { return st.Capture.WriteLost }),
	counter("capture_files_total", "Capture files written to: 1, and one more per rotation (capture.rotate_size; a file at its size limit, deleted or truncated).", func(st *Stats) uint64 { return st.Capture.Files }),
	counter("capture_files_deleted_total", "Capture files found deleted, or truncated, while written to (what they held is gone): the capture went on in a new file.", func(st *Stats) uint64 { return st.Capture.Deleted }),
	histogram("latency_seconds", "Receive timestamp to shared-memory publish, per message.", func(st *Stats) *latency.Snapshot { return &st.Latency }),
	histogram("path_latency_seconds", "Receive-thread pickup to shared-memory publish, per message (the handler's own path).", func(st *Stats) *latency.Snapshot { return &st.PathLatency }),
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

// Collect implements prometheus.Collector. It takes each value from its
// row of exported, as the Exposition does, so the two agree.
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
		case m.stats != nil:
			emit(float64(m.stats(&st)))
		case m.line != nil:
			for l := range lines {
				emit(float64(m.line(&st.Arbiter.Lines[l])), c.h.cfg.Receive.Lines[l].Name)
			}
		case m.shard != nil:
			for s := range st.Shards {
				emit(float64(m.shard(&st.Shards[s])), strconv.Itoa(s))
			}
		case m.each != nil:
			for k, v := range m.values {
				emit(float64(m.each(&st, k)), v)
			}
		case m.hist != nil:
			ch <- latency.HistogramMetric(d, m.hist(&st), nil, time.Unix(0, st.Started))
		case m.own == ownLineSilence:
			for l := range lines {
				emit(float64(st.lineSilence(l, mono))/1e9, c.h.cfg.Receive.Lines[l].Name)
			}
		case m.own == ownBackendEvents:
			for i := range st.Receive.Extra.Len() {
				name, v := st.Receive.Extra.At(i)
				emit(float64(v), name)
			}
		case m.own == ownBackendInfo:
			backend, mode := backendLabels(st.Backend)
			emit(1, backend, mode)
		case m.own == ownHeartbeatAge:
			if hb := c.h.w.LastHeartbeat(); !hb.IsZero() {
				emit(float64(now-hb.UnixNano()) / 1e9)
			}
		case m.own == ownCgroupLimits:
			cg, _ := procstat.SelfCgroupMemory()
			for i, v := range cgroupLimits(cg) {
				if v != procstat.NoLimit {
					emit(float64(v), cgroupFiles[i])
				}
			}
		case m.own == ownRerequestTimeout:
			emit(st.Recovery.Rerequest.RTO.Seconds())
		case m.own == ownProcReadable:
			var p procstat.Process
			r, err := procstat.Self()
			emit(float64(oneIf(err == nil && r.Read(&p) == nil)))
		default:
			panic("metrics: no samples for " + m.name) // TestMetricsHaveOneSource
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
		Uint64("late_responses", st.lateResponses()).
		Uint64("snapshots", st.Recovery.Snapshots).Uint64("snapshot_msgs", st.Recovery.SnapshotMessages).Uint64("spill_hwm", st.Arbiter.HeldMax).
		Int64("recovery_p50_ns", st.Recovery.RecoveryTime.Quantile(0.5)).Int64("recovery_p99_ns", st.Recovery.RecoveryTime.Quantile(0.99)).
		Int64("lat_p50_ns", st.Latency.Quantile(0.5)).Int64("lat_p99_ns", st.Latency.Quantile(0.99)).
		Int64("lat_p999_ns", st.Latency.Quantile(0.999)).Int64("lat_max_ns", st.Latency.Max).
		Int64("path_p50_ns", st.PathLatency.Quantile(0.5)).Int64("path_p99_ns", st.PathLatency.Quantile(0.99)).
		Msg("stats")
}
