package handler

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
	h := startCapturing(t, Config{
		Receive:    rx.Config{Lines: testCaptureLines, BatchSize: 4096},
		Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond},
		Book:       book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
		Mode:       mode,
		ShardCores: shards,
		ShmName:    name,
	}, dir, r)
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
	pr, file := openOneCapture(t, dir)
	var frames uint64
	for ; ; frames++ {
		if _, err := pr.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("frame %d: %v", frames+1, err)
		}
	}
	if frames != c.Packets {
		t.Fatalf("%d frames in %s, the capture counted %d written", frames, file, c.Packets)
	}
}

// startCapturing starts a handler configured as cfg that receives from r
// and captures to dir/feed.pcap with the smallest ring; stopped at the
// test's end.
func startCapturing(t *testing.T, cfg Config, dir string, r rx.Receiver) *Handler {
	t.Helper()
	cfg.CapturePath, cfg.CaptureBuffer = filepath.Join(dir, "feed.pcap"), capture.MinBuffer
	cfg.Open = func(rx.Config) (rx.Receiver, error) { return r, nil }
	cfg.Log = zerolog.Nop()
	h, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	return h
}

// openOneCapture opens the one capture file in dir (feed-<time>.pcap) for
// reading, closed at the test's end.
func openOneCapture(t *testing.T, dir string) (*pcap.Reader, string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "feed-*.pcap"))
	if len(files) != 1 {
		t.Fatalf("capture files %v, want one feed-<time>.pcap", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	pr, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return pr, files[0]
}

var testCaptureLines = []rx.LineConfig{
	{Name: "A", Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
	{Name: "B", Group: netip.MustParseAddr("239.1.1.2"), Port: 26401},
}

// failStepsRx returns each of its steps in turn, a datagram or a failed call,
// then idles like a real backend.
type failStepsRx struct {
	batchRx
	steps []error // nil: the next datagram of the script
}

func (r *failStepsRx) Receive(pkts []rx.Packet) (int, error) {
	r.mu.Lock()
	if !r.closed && len(r.steps) > 0 {
		err := r.steps[0]
		r.steps = r.steps[1:]
		if err != nil {
			r.mu.Unlock()
			return 0, err
		}
		n := copy(pkts[:1], r.script)
		r.script = r.script[n:]
		r.mu.Unlock()
		return n, nil
	}
	r.mu.Unlock()
	return r.batchRx.Receive(pkts)
}

// TestCaptureFailedReceives: receive calls that fail between two datagrams
// (the loop's Arbiter.Advance) are in the capture, one marker frame
// between the two datagrams, from the first failure to the last, with no
// empty poll before them: what replay --feed advances its arbiter by.
func TestCaptureFailedReceives(t *testing.T) {
	pkts := dayPackets(t, 1000)
	now := time.Now().UnixNano()
	r := &failStepsRx{batchRx: batchRx{script: []rx.Packet{{Data: pkts[0], RxTime: now}, {Data: pkts[1], RxTime: now + 1}}},
		steps: []error{nil, errTransient, errTransient, errTransient, nil}}
	dir := t.TempDir()
	h := startCapturing(t, Config{
		Receive: rx.Config{Lines: testCaptureLines},
		Book:    book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
		ShmName: shmtest.Name(t, "fh-capfail"),
	}, dir, r)
	waitFor(t, "both datagrams read", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.steps) == 0
	})
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	pr, _ := openOneCapture(t, dir)
	pr.ReturnMarkers()
	var got []string
	for {
		fr, err := pr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !fr.Marker {
			got = append(got, "datagram")
			continue
		}
		if reason, ok := capture.End(fr.Payload); ok && reason == capture.EndStopped {
			got = append(got, "end")
			continue
		}
		if _, _, _, ok := capture.Begin(fr.Payload); ok {
			got = append(got, "begin")
			continue
		}
		first, last, drained, ok := capture.Failed(fr.SrcMAC, fr.Payload, fr.Time)
		got = append(got, "failed")
		if !ok || first <= now || last <= first || drained != 0 {
			t.Errorf("marker frame % x from % x at %d: failed %d to %d after the empty poll %d (%v); want 3 failures, at least a millisecond apart, after the first datagram, no empty poll",
				fr.Payload, fr.SrcMAC, fr.Time, first, last, drained, ok)
		}
	}
	if want := []string{"begin", "datagram", "failed", "datagram", "end"}; !slices.Equal(got, want) {
		t.Errorf("capture holds %v, want %v", got, want)
	}
}
