package handler

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// batchRx returns its script in batches as large as the caller's, then
// idles like a real backend.
type batchRx struct {
	mu     sync.Mutex
	script []rx.Packet
	closed bool
}

func (r *batchRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, rx.ErrClosed
	}
	if len(r.script) == 0 {
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
		r.mu.Lock()
		return 0, nil
	}
	n := copy(pkts, r.script)
	r.script = r.script[n:]
	return n, nil
}
func (r *batchRx) Release([]rx.Packet) {}
func (r *batchRx) Backend() string     { return "batch" }
func (r *batchRx) Stats() rx.Stats     { return rx.Stats{} }
func (r *batchRx) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

// TestCaptureFullRingLeavesFeedWhole: with the smallest capture ring and
// receive batches of 4096 datagrams of up to 1400 bytes (several times the
// ring), the capture drops datagrams (counted: written + dropped = every
// datagram received, the file holding exactly those written), while the
// feed loses nothing: every message delivered, the published books equal
// the reference. In both modes: the receive thread captures either way.
func TestCaptureFullRingLeavesFeedWhole(t *testing.T) { forEachMode(t, testCaptureFullRing) }

func testCaptureFullRing(t *testing.T, mode Mode, shards []int) {
	pkts := dayPackets(t, 100_000)
	ref, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var script []rx.Packet
	now := time.Now().UnixNano()
	for i, ms := range dayMessages(t, pkts) {
		for _, m := range ms {
			ref.Apply(itch.Msg(m))
		}
		script = append(script, rx.Packet{Data: pkts[i], Line: rx.LineA, RxTime: now}, rx.Packet{Data: pkts[i], Line: rx.LineB, RxTime: now})
	}
	received := len(script)
	dir := t.TempDir()
	name := shmtest.Name(t, "fh-capture")
	r := &batchRx{script: script}
	h, err := Start(Config{
		Receive:       rx.Config{Lines: testCaptureLines, BatchSize: 4096},
		Arbiter:       ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond},
		Book:          book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
		Mode:          mode,
		ShardCores:    shards,
		ShmName:       name,
		CapturePath:   filepath.Join(dir, "feed.pcap"),
		CaptureBuffer: capture.MinBuffer,
		Open:          func(rx.Config) (rx.Receiver, error) { return r, nil },
		Log:           zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	waitFor(t, "every message applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == 100_000 && st.Applied() == st.Routed
	})
	compareShm(t, name, ref, false)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	st := h.Stats()
	c := st.Capture
	if c.Dropped == 0 || c.Packets+c.Dropped != uint64(received) || c.WriteErrors != 0 {
		t.Fatalf("capture stats %+v: want datagrams dropped, written + dropped = %d received, no write error", c, received)
	}
	if st.Arbiter.Gaps != 0 || st.Arbiter.Delivered != 100_000 {
		t.Fatalf("the feed lost messages: %d gaps, %d delivered", st.Arbiter.Gaps, st.Arbiter.Delivered)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "feed-*.pcap"))
	if len(files) != 1 {
		t.Fatalf("capture files %v, want one feed-<time>.pcap", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames uint64
	for ; ; frames++ {
		if _, err := pr.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("frame %d: %v", frames+1, err)
		}
	}
	if frames != c.Packets {
		t.Fatalf("%d frames in %s, the capture counted %d written", frames, files[0], c.Packets)
	}
}

var testCaptureLines = []rx.LineConfig{
	{Name: "A", Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
	{Name: "B", Group: netip.MustParseAddr("239.1.1.2"), Port: 26401},
}
