package handler

import (
	"strings"
	"testing"
)

func TestStatsReady(t *testing.T) {
	var st Stats
	if ok, why := st.Ready(); ok || why != "no packet received yet" {
		t.Fatalf("fresh: %v %q", ok, why)
	}
	st.Arbiter.Lines[1].Packets = 1
	st.Shards = []ShardStats{{Books: 3}, {Books: 4}}
	if ok, why := st.Ready(); !ok || why != "receiving" {
		t.Fatalf("receiving: %v %q", ok, why)
	}
	st.Shards[1].Stale = true
	if ok, why := st.Ready(); ok || why != "4 book(s) flagged possibly stale" || st.StaleBooks() != 4 {
		t.Fatalf("stale shard: %v %q %d", ok, why, st.StaleBooks())
	}
	st.Arbiter.Gaps, st.Arbiter.GapMessages = 2, 17
	if ok, why := st.Ready(); ok || !strings.HasPrefix(why, "2 unrecovered gap(s) (17 messages missing)") {
		t.Fatalf("gap: %v %q", ok, why)
	}
}
