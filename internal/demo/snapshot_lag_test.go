package demo

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshotLagCatchesUp: the lab's snapshot server lagging the feed
// (Recovery.SnapshotLag) serves the books lag messages behind the sender,
// and all of them once the sender has sent the day's last message. Before,
// it stayed lag behind for ever: a gap lost on both lines in the day's last
// lag messages was beyond every snapshot, and a handler repairing by
// snapshot alone fetched one every retry until the run's timeout (the soak,
// seed 3006: 'handler did not finish in 30s: ... ended true, recovery
// snapshot (gaps 100, by re-request 0, by snapshot 92, open 1)').
func TestSnapshotLagCatchesUp(t *testing.T) {
	progress := filepath.Join(t.TempDir(), "progress")
	rl := &recoveryLab{progress: progress, ends: []uint64{10, 20, 30}, drop: map[int]bool{2: true}}
	for _, c := range []struct{ sent, want uint64 }{
		{0, 0}, {10, 5}, {15, 10},
		{20, 30}, // the last packet dropped on both lines: the day is sent
		{30, 30},
	} {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], c.sent)
		if err := os.WriteFile(progress, b[:], 0o600); err != nil {
			t.Fatal(err)
		}
		if got := rl.lagging(5); got != c.want {
			t.Errorf("sender at %d: the server lagging by 5 serves %d, want %d", c.sent, got, c.want)
		}
	}
}
