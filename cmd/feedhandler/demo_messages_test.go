package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/internal/demo"
)

// TestDemoSummaryMessages: the summary's messages line says what sets its
// numbers apart. It said '1000000 sent, 836030 delivered in order, 838779
// applied' and nothing more: the late join's messages were not delivered
// (the snapshot stood in for them) and the snapshot's were applied.
func TestDemoSummaryMessages(t *testing.T) {
	res := &demo.Result{Backend: "xdp", Stats: handler.Stats{Mode: handler.ModeRunToCompletion}}
	res.Stats.Arbiter.Delivered = 836030
	res.Stats.Shards = []handler.ShardStats{{Applied: 838779}}
	res.Stats.Recovery.Snapshots = 1
	res.Stats.Recovery.SnapshotMessages = 2749
	var out bytes.Buffer
	printDemo(&out, &demo.Day{Messages: 1_000_000}, res, 0, demo.Options{}, "")
	want := "messages             1000000 sent, 836030 delivered in order (from the lines and re-requests; snapshots stood in for the other 163970), 838779 applied (those and the snapshots' 2749 messages)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("demo summary lacks %q:\n%s", want, out.String())
	}
	// Sharded, a System Event is applied once per book thread.
	res.Stats.Shards = []handler.ShardStats{{Applied: 838000}, {Applied: 781}}
	out.Reset()
	printDemo(&out, &demo.Day{Messages: 1_000_000}, res, 0, demo.Options{}, "")
	if want := "838781 applied (those, the snapshots' 2749 messages and a System Event once per book thread)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("sharded demo summary lacks %q:\n%s", want, out.String())
	}
}

// TestDocStatsAppliedSnapshot: OPERATIONS.md's stats line said applied and
// delivered were equal in run to completion for the same input, though a
// snapshot's messages are applied and not delivered (the demo's summary:
// '169195 delivered in order ..., 170898 applied (those and the snapshots'
// 1703 messages)', run to completion; TestSnapshotMessagesNotLiveLatency
// in feed/handler checks it).
func TestDocStatsAppliedSnapshot(t *testing.T) {
	flat := operationsText(t)
	if want := "the messages a snapshot loads (the books' state at its sequence number, in place of the messages before it) are applied, not delivered (`TestSnapshotMessagesNotLiveLatency`)"; !strings.Contains(flat, want) {
		t.Errorf("docs/OPERATIONS.md's stats line does not say %q", want)
	}
	if bad := "they are equal for the same input)"; strings.Contains(flat, bad) {
		t.Errorf("docs/OPERATIONS.md's stats line says %q, snapshots aside", bad)
	}
}
