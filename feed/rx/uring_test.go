package rx

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/tools/netlab"
)

// TestUringRearmOnENOBUFS: with a small buffer ring and a consumer that
// starts late, the multishot requests run the ring dry and end with
// ENOBUFS; Receive re-arms them as buffers come back and nothing is lost
// (the datagrams wait in the socket buffers).
func TestUringRearmOnENOBUFS(t *testing.T) {
	lab := newLab(t, netlab.Options{})
	lines := labLines(lab)
	senders := labSenders(t, lab, lines, 10000)
	r := openBackend(t, lab, BackendUring, Config{Lines: lines, RingSize: 128, BatchSize: 64, PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	sendLines(t, senders, 1000) // nobody receives yet: 128 buffers for 2000 datagrams
	expectLines(t, r, senders, 1000)
	st := r.Stats()
	if st.Extra["enobufs"] == 0 || st.Extra["rearms"] < st.Extra["enobufs"] {
		t.Fatalf("stats %+v: want the ring to have run dry (enobufs > 0) and each end re-armed", st)
	}
	if st.Dropped != 0 {
		t.Fatalf("stats %+v: socket drops", st)
	}
}
