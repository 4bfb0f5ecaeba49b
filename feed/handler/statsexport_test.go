package handler

import (
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/latency"
)

// notExported are the numeric fields of Stats (by path, array and slice
// indices left out) that no /metrics sample carries, each with why: what
// an operator has of it instead. A counter added to Stats, or to a struct
// it holds, is exported or listed here, else TestEveryCounterExported
// fails; an entry here for a field that is exported, or that no longer
// exists, fails it too.
var notExported = map[string]string{
	// Positions, identities and modes, not counts.
	"Mode":                      "the pipeline's mode: the receiving line at start",
	"NextSeq":                   "a position, not a count: the stats line's next_seq",
	"Started":                   "a time: line_silence_seconds counts from it (on the monotonic clock)",
	"LastPacket":                "a time: line_silence_seconds is its age (on the monotonic clock)",
	"ReceiveThread.Tid":         "a thread id: the hot thread line at start",
	"ReceiveThread.Core":        "the core pinned to: the hot thread line at start",
	"Shards.Thread.Tid":         "a thread id: the hot thread line at start",
	"Shards.Thread.Core":        "the core pinned to: the hot thread line at start",
	"Arbiter.LastGap.First":     "a range: the gap log line",
	"Arbiter.LastGap.Count":     "a range: the gap log line",
	"Recovery.LastSnapshotNext": "a position: the snapshot loaded log line's next_seq",
	"Recovery.SnapshotRetryIn":  "a wait: logged with each failed snapshot (retry_in); recovery_snapshot_consecutive_failures counts them",
	"Recovery.OpenRanges":       "the ranges of recovery_open_gaps: each logged when declared",
	"Recovery.Events":           "the last repairs: each logged; recovery_time_seconds has their times",

	// Totals of which a metric carries the part that matters, or their
	// sum with others.
	"Routed":                      "the receive thread's hand-offs to the shards: shard_applied_total sums to it once drained",
	"Arbiter.Lines.Messages":      "messages per line, winners and losers: delivered_messages_total, line_duplicates_total say what an operator acts on",
	"Arbiter.Lines.Won":           "packets a line brought first: arbitration detail; line_duplicates_total counts the line's losers",
	"Arbiter.Lines.Heartbeats":    "in line_packets_total: a silent line is line_silence_seconds",
	"Arbiter.Held":                "packets held back a while (normal on A/B lines): recovery_spill_high_water is the pressure",
	"Arbiter.EndOfSession":        "session_ended is the state",
	"Arbiter.Recoveries":          "ranges handed to the recovery source: in recovery_gaps_detected_total",
	"Arbiter.RecoveriesFilled":    "ranges the recovery filled: recovery_rerequest_recovered_total",
	"Arbiter.RecoveriesFailed":    "recovery_failures_total, and the gaps declared (gaps_total)",
	"Arbiter.SpillOverflows":      "a spill full while re-requesting: the range declared and counted in gaps_forced_total",
	"Recovery.SpillMax":           "recovery_spill_high_water (Arbiter.HeldMax, the same count)",
	"Receive.Packets":             "the backend's per-line count: line_packets_total counts them as the arbiter took them",
	"Receive.Bytes":               "the backend's per-line count: line_bytes_total",
	"Receive.Unmatched":           "frames of no line (other traffic): receive_backend_events_total has the backend's own kinds",
	"Shards.Batches":              "a per-mode internal (how the receive thread batched the hand-offs)",
	"Shards.Books":                "shm_slots_used counts the books registered",
	"Shards.Ring.Capacity":        "fixed at start (Config.RingSize)",
	"Shards.Ring.Len":             "an instant's occupancy: shard_ring_high_water",
	"Shards.Ring.Pushed":          "a per-mode internal: shard_applied_total counts what the shard took",
	"Shards.Book.Messages":        "shard_applied_total",
	"Shards.Book.DuplicateSymbol": "shard_duplicate_symbols_total, through ShardStats.DuplicateSymbols, the copy the shard takes with its stats",
	"Shards.Book.Orders":          "a gauge of the books' contents, not of their health",
	"Shards.Book.Levels":          "a gauge of the books' contents, not of their health",
	"Shards.Book.Overflowed":      "a gauge of the order table's use, not an inconsistency",
	"Shards.Book.BrokenUnmatched": "Broken Trades of a match number not remembered: with a bounded trade memory (book.Config.TradeMemory) an old trade's cannot be told from a bad one, nothing to act on; replay reports it (broken_trades_unmatched)",
	"Arbiter.Unconfirmed":         "packets before the first session is confirmed (the first packets of a start): normal; /readyz is not ready meanwhile",
	"RepairedLatency":             "the repaired messages' rx -> shm times: recovery_time_seconds has each repair's time, feedhandler demo prints these",

	// Counted by kind where the sum is exported.
	"Arbiter.Lines.ParseErrors.ShortHeader":      "by kind, in line_malformed_total",
	"Arbiter.Lines.ParseErrors.Overrun":          "by kind, in line_malformed_total",
	"Arbiter.Lines.ParseErrors.Trailing":         "by kind, in line_malformed_total",
	"Arbiter.Lines.ParseErrors.SeqZero":          "by kind, in line_malformed_total",
	"Arbiter.Lines.ParseErrors.SeqOverflow":      "by kind, in line_malformed_total",
	"Arbiter.Lines.ParseErrors.Other":            "by kind, in line_malformed_total",
	"Recovery.Rerequest.ParseErrors.ShortHeader": "by kind, in recovery_bad_responses_total{kind=\"malformed\"}",
	"Recovery.Rerequest.ParseErrors.Overrun":     "by kind, in recovery_bad_responses_total{kind=\"malformed\"}",
	"Recovery.Rerequest.ParseErrors.Trailing":    "by kind, in recovery_bad_responses_total{kind=\"malformed\"}",
	"Recovery.Rerequest.ParseErrors.SeqZero":     "by kind, in recovery_bad_responses_total{kind=\"malformed\"}",
	"Recovery.Rerequest.ParseErrors.SeqOverflow": "by kind, in recovery_bad_responses_total{kind=\"malformed\"}",
	"Recovery.Rerequest.ParseErrors.Other":       "by kind, in recovery_bad_responses_total{kind=\"malformed\"}",

	// The GLIMPSE client's (RecoveryStats.SnapshotClient) parts and internals.
	"Recovery.SnapshotClient.Soup.Packets":        "every packet the GLIMPSE client read: recovery_snapshot_bytes_total is the download's progress; heartbeats, Debug and Unsequenced Data packets have their own",
	"Recovery.SnapshotClient.Soup.Sequenced":      "Sequenced Data packets: recovery_snapshot_fetched_messages_total counts the ITCH messages they carried",
	"Recovery.SnapshotClient.Soup.Unsequenced":    "the same packets as SnapshotClient.UnsequencedPacket: recovery_snapshot_unsequenced_packets_total",
	"Recovery.SnapshotClient.Soup.Sent":           "the client's own writes (login, heartbeats, logout): a server that stops hearing them drops the session, recovery_snapshot_fetch_errors_total{cause=\"closed\"}",
	"Recovery.SnapshotClient.Soup.SentBytes":      "the client's own writes: see Soup.Sent",
	"Recovery.SnapshotClient.Soup.SentHeartbeats": "the client's own heartbeats: see Soup.Sent",
	"Recovery.SnapshotClient.Soup.Empty":          "malformed SoupBinTCP by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.Soup.Oversized":      "malformed SoupBinTCP by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.Soup.Truncated":      "a packet cut by the connection's end: in recovery_snapshot_fetch_errors_total{cause=\"closed\"}",
	"Recovery.SnapshotClient.Soup.UnknownType":    "malformed SoupBinTCP by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.Soup.BadLength":      "malformed SoupBinTCP by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.Soup.BadField":       "malformed SoupBinTCP by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.EmptyMessages":       "bad GLIMPSE data by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.ShortMessages":       "bad GLIMPSE data by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.BadSnapshot":         "bad GLIMPSE data by kind: in recovery_snapshot_fetch_errors_total{cause=\"protocol\"}, the failure's log line names it",
	"Recovery.SnapshotClient.Completed":           "snapshots downloaded whole: recovery_snapshots_total counts those loaded, recovery_snapshot_failures_total and recovery_snapshots_discarded_total the others",

	// The re-request client's own bookkeeping.
	"Recovery.Rerequest.Failovers":   "moves to the next server: recovery_timeouts_total and recovery_failures_total say why",
	"Recovery.Rerequest.RateLimited": "requests that waited for recovery.rerequest.requests_per_second: a pace, not a fault",
	"Recovery.Rerequest.Responses":   "answers taken: recovery_messages_total and recovery_unused_messages_total count their messages",
	"Recovery.Rerequest.Messages":    "recovery_messages_total plus recovery_unused_messages_total",
}

// TestEveryCounterExported walks Stats, and the structs it holds, by
// reflection: each numeric field, raised in a copy of a running handler's
// Stats, must raise a /metrics sample by as much (a metric of its own, or a
// sum it is in), or be in notExported with the reason. A histogram
// (latency.Snapshot) counts as one field, raised by its Count; the receive
// backend's counters (rx.Extra) by a counter of its own.
func TestEveryCounterExported(t *testing.T) {
	h, _, _, _ := startScripted(t, ModeSharded, []int{-1, -1}, 1000, nil, -1)
	defer h.Stop()
	waitFor(t, "the script delivered", func() bool { return h.Stats().Arbiter.Delivered == 1000 })
	e := NewExposition(h)
	st := h.Stats()
	if len(st.Shards) == 0 {
		t.Fatal("no shard stats")
	}
	const now, mono = 1e18, 1e15
	render := func() map[string]float64 {
		e.mu.Lock()
		defer e.mu.Unlock()
		return sampleValues(t, e.appendStats(nil, &st, now, mono))
	}
	base := render()
	const delta = 1_000_003
	raisedBy := func(by float64) bool {
		for series, v := range render() {
			if d := v - base[series]; d == by || by < 1 && math.Abs(d-by) < 1e-12 {
				return true
			}
		}
		return false
	}
	raised := func(string) bool { return raisedBy(delta) }

	seen := map[string]bool{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Type() {
		case reflect.TypeFor[latency.Snapshot]():
			seen[path] = true
			s := v.Addr().Interface().(*latency.Snapshot)
			keep := *s
			s.Count += delta
			if ok := raised(path); !ok && notExported[path] == "" {
				t.Errorf("Stats.%s (a histogram) is in no /metrics sample, nor in notExported", path)
			} else if ok && notExported[path] != "" {
				t.Errorf("Stats.%s is exported: take it out of notExported", path)
			}
			*s = keep
			return
		case reflect.TypeFor[rx.Extra]():
			seen[path] = true
			x := v.Addr().Interface().(*rx.Extra)
			keep := *x
			x.Add("guard_counter", delta)
			if !raised(path) {
				t.Errorf("Stats.%s: a receive backend counter is in no /metrics sample", path)
			}
			*x = keep
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if !f.IsExported() {
					continue
				}
				walk(v.Field(i), strings.TrimPrefix(path+"."+f.Name, "."))
			}
		case reflect.Array:
			walk(v.Index(0), path)
		case reflect.Slice:
			if v.Len() == 0 {
				// Nothing to raise: a list, not a counter, unless
				// listed it is an error (the test's Stats lack it).
				seen[path] = true
				if notExported[path] == "" {
					t.Errorf("Stats.%s: an empty slice the test cannot raise; give it an element or list it in notExported", path)
				}
				return
			}
			walk(v.Index(0), path)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if seen[path] {
				return // an array's or slice's element: its first only
			}
			seen[path] = true
			var restore func()
			if v.CanUint() {
				old := v.Uint()
				v.SetUint(old + delta)
				restore = func() { v.SetUint(old) }
			} else {
				old := v.Int()
				v.SetInt(old + delta)
				restore = func() { v.SetInt(old) }
			}
			by := float64(delta)
			if v.Type() == reflect.TypeFor[time.Duration]() {
				by /= 1e9 // exported in seconds
			}
			ok := raisedBy(by)
			restore()
			switch why := notExported[path]; {
			case !ok && why == "":
				t.Errorf("Stats.%s (%s) is in no /metrics sample: export it (a row of exported in metrics.go, docs/OPERATIONS.md) or say in notExported why not", path, v.Type())
			case ok && why != "":
				t.Errorf("Stats.%s is exported: take it out of notExported (%q)", path, why)
			}
		}
	}
	walk(reflect.ValueOf(&st).Elem(), "")
	var stale []string
	for path := range notExported {
		if !seen[path] {
			stale = append(stale, path)
		}
	}
	sort.Strings(stale)
	for _, path := range stale {
		t.Errorf("notExported names Stats.%s, which is no numeric field of Stats", path)
	}
}

// sampleValues parses a text exposition into its samples' values by series
// (name and labels).
func sampleValues(t *testing.T, text []byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}
