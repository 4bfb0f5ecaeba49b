package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestMarkRoundTrip: every empty poll a mark carries reads back as given,
// before the datagram or after it (a datagram stamped before the poll that
// missed it), and saturated past ±2^39 ns; the other datagrams read back
// as marked with no empty poll; other addresses are no marks.
func TestMarkRoundTrip(t *testing.T) {
	rx := int64(time.Date(2026, 12, 6, 9, 30, 0, 0, time.UTC).UnixNano())
	for _, d := range []int64{1, 999, -1, -40_000, int64(time.Second), -int64(time.Minute), maxDelta, -maxDelta} {
		got, ok := Mark(markMAC(rx, rx-d), rx)
		if !ok || got != rx-d {
			t.Errorf("empty poll %d ns before: read %d ns before (marked %v)", d, rx-got, ok)
		}
	}
	if got, ok := Mark(markMAC(rx, rx-int64(time.Hour)), rx); !ok || rx-got != maxDelta {
		t.Errorf("an hour before: read %d ns before (marked %v), want the saturated %d", rx-got, ok, maxDelta)
	}
	if got, ok := Mark(markMAC(rx, 0), rx); !ok || got != 0 {
		t.Errorf("no empty poll: read %d (marked %v)", got, ok)
	}
	for _, mac := range [][6]byte{{0x02, 0, 10, 0, 0, 9}, {0, 0x1b, 0x21, 1, 2, 3}, {0x06, 1}, {0x0a, 0, 0, 0, 0, 1}} {
		if _, ok := Mark(mac, rx); ok {
			t.Errorf("% x read as a mark", mac)
		}
	}
}

// TestCaptureMarksBatches: the file says it carries marks (FileMark in
// the header's sigfigs, in either byte order), the first datagram of a
// batch after an empty poll carries its time, the others none.
func TestCaptureMarksBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	p := func(i int) rx.Packet { return datagram(i) }
	c.Put([]rx.Packet{p(0), p(1), p(2)}, p(0).RxTime-5000)
	c.Put([]rx.Packet{p(3)}, 0)
	c.Put([]rx.Packet{p(4), p(5)}, p(4).RxTime+700) // stamped before the poll that found the lines empty
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := pcapSigfigs(t, file); got != FileMark {
		t.Fatalf("sigfigs %#x, want FileMark %#x", got, FileMark)
	}
	frames := readAll(t, path)
	want := map[int]int64{0: p(0).RxTime - 5000, 4: p(4).RxTime + 700}
	for i := 0; i < 6; i++ {
		got, ok := Mark(frames[i].SrcMAC, frames[i].Time)
		if !ok || got != want[i] {
			t.Errorf("frame %d: mark % x reads %d (marked %v), want %d", i, frames[i].SrcMAC, got, ok, want[i])
		}
	}
	// Big-endian files (another tool's) say it in their byte order.
	hdr := []byte{0xa1, 0xb2, 0xc3, 0xd4, 0, 2, 0, 4, 0, 0, 0, 0, 0x46, 0x48, 0x42, 0x31, 0, 0, 0xff, 0xff, 0, 0, 0, 1}
	if got := pcapSigfigs(t, hdr); got != FileMark {
		t.Errorf("big-endian header: sigfigs %#x, want %#x", got, FileMark)
	}
}

func pcapSigfigs(t *testing.T, hdr []byte) uint32 {
	t.Helper()
	r, err := pcap.NewReader(bytes.NewReader(hdr))
	if err != nil {
		t.Fatal(err)
	}
	return r.Sigfigs()
}

// TestRingCarriesDroppedMark: a batch dropped whole (the ring full) hands
// its empty poll on to the next datagram written, so the replay still
// ticks before what follows it; a later empty poll replaces it.
func TestRingCarriesDroppedMark(t *testing.T) {
	const size = 4096
	r := &ring{buf: make([]byte, size), size: size, mask: size - 1}
	// drained takes what the ring holds and returns each record's empty poll.
	drained := func() []int64 {
		var out []int64
		var rec record
		for t, head := r.tail.Load(), r.head.Load(); t != head; {
			var ok bool
			if t, ok = r.next(t, &rec); ok && rec.lost == 0 {
				out = append(out, rec.drained)
			}
		}
		r.tail.Store(r.head.Load())
		return out
	}
	big := rx.Packet{Data: make([]byte, size-recHeader-16), RxTime: 10}
	small := []rx.Packet{{Data: []byte("x"), RxTime: 30}, {Data: []byte("y"), RxTime: 31}}
	r.put([]rx.Packet{big}, 5)
	r.put(small, 20) // no room: dropped whole, with the empty poll at 20
	if d := r.dropped.Load(); d != 2 {
		t.Fatalf("dropped %d, want 2", d)
	}
	if got := drained(); !slices.Equal(got, []int64{5}) {
		t.Fatalf("first batch: empty polls %v, want [5]", got)
	}
	r.put(small, 0)
	if got := drained(); !slices.Equal(got, []int64{20, 0}) {
		t.Errorf("the batch after one dropped whole: empty polls %v, want [20 0] (the dropped batch's on its first datagram)", got)
	}
	r.put([]rx.Packet{big}, 40)
	r.put(small, 50) // dropped: 50 waits
	drained()
	r.put(small, 60) // a later empty poll replaces it
	if got := drained(); !slices.Equal(got, []int64{60, 0}) {
		t.Errorf("a later empty poll than the dropped batch's: %v, want [60 0]", got)
	}
}

// TestWriteLostMarkCarried: the empty poll of a datagram lost to a failed
// write (a disk filling up) goes with the next datagram written, as one
// of a batch the ring had no room for does: the replay still ticks
// before what follows the loss.
func TestWriteLostMarkCarried(t *testing.T) {
	c, path := openHalfFull(t)
	polled := datagram(2).RxTime - 300
	c.Put([]rx.Packet{datagram(1)}, datagram(1).RxTime-100)
	c.Put([]rx.Packet{datagram(2), datagram(3)}, polled) // cut by the write: lost
	writeFailedThenClose(t, c)
	frames := readAll(t, path)
	if st := c.Stats(); st.WriteLost != 2 || len(frames) != 3 {
		t.Fatalf("stats %+v, %d frames; want datagrams 2 and 3 lost, 1, 4 and 5 written", st, len(frames))
	}
	want := []int64{datagram(1).RxTime - 100, polled, 0}
	for k, fr := range frames {
		if got, ok := Mark(fr.SrcMAC, fr.Time); !ok || got != want[k] {
			t.Errorf("frame %d: empty poll %d (marked %v), want %d", k+1, got, ok, want[k])
		}
	}
}

// TestCaptureFailedRuns: the runs of failed receive calls between batches
// go to the file as marker frames before the next batch, each with the
// empty poll before it, the batch's datagram with the one after it (if
// any); a run before an empty poll followed by another run keeps the
// later; Stats.Packets counts the datagrams only. A reader that is not
// asked for marker frames counts them apart, not as skipped frames, and
// tshark reads them as frames of EtherType 0x88b5.
func TestCaptureFailedRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	p := func(i int) rx.Packet { return datagram(i) }
	at := func(i int, d int64) int64 { return p(i).RxTime + d }
	c.Put([]rx.Packet{p(0)}, 0)
	c.Failed(at(0, 10), 0) // a run, no empty poll
	c.Failed(at(0, 20), 0)
	c.Put([]rx.Packet{p(1), p(2)}, 0)
	c.Failed(at(2, 10), 0) // a run before an empty poll, then another
	c.Failed(at(2, 20), 0)
	c.Failed(at(2, 40), at(2, 30))
	c.Failed(at(2, 50), at(2, 30))
	c.Put([]rx.Packet{p(3)}, at(2, 30))
	c.Failed(at(3, 10), 0) // a run, then an empty poll
	c.Put([]rx.Packet{p(4)}, at(3, 20))
	c.Put([]rx.Packet{p(5)}, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Packets != 6 {
		t.Errorf("stats %+v: want 6 datagrams (marker frames are none)", st)
	}

	type ev struct {
		datagram             int // -1: a run of failed calls
		first, last, drained int64
	}
	want := []ev{{-3, 0, 0, 0}, {0, 0, 0, 0}, {-1, at(0, 10), at(0, 20), 0}, {1, 0, 0, 0}, {2, 0, 0, 0},
		{-1, at(2, 40), at(2, 50), at(2, 30)}, {3, 0, 0, 0}, {-1, at(3, 10), at(3, 10), 0}, {4, 0, 0, at(3, 20)}, {5, 0, 0, 0}, {-2, 0, 0, 0}}
	r := openCapture(t, path)
	r.ReturnMarkers()
	var got []ev
	for {
		fr, err := r.Next()
		if err != nil {
			break
		}
		if fr.Marker {
			if reason, ok := End(fr.Payload); ok && reason == EndStopped {
				got = append(got, ev{-2, 0, 0, 0})
				continue
			}
			if _, index, prev, ok := Begin(fr.Payload); ok && index == 0 && prev == "" {
				got = append(got, ev{-3, 0, 0, 0}) // the file's begin frame, its first
				continue
			}
			first, last, drained, ok := Failed(fr.SrcMAC, fr.Payload, fr.Time)
			if !ok {
				t.Fatalf("frame %d: marker % x is no run of failed calls", fr.Index, fr.Payload)
			}
			got = append(got, ev{-1, first, last, drained})
			continue
		}
		drained, _ := Mark(fr.SrcMAC, fr.Time)
		i := slices.IndexFunc([]int{0, 1, 2, 3, 4, 5}, func(i int) bool { return bytes.Equal(fr.Payload, p(i).Data) })
		got = append(got, ev{i, 0, 0, drained})
	}
	if !slices.Equal(got, want) {
		t.Errorf("read %+v\nwant %+v", got, want)
	}

	frames, st := readAllStats(t, path)
	if len(frames) != 6 || st.Malformed() != 0 || st.Markers != 5 {
		t.Errorf("a reader not asked for marker frames: %d datagrams, stats %+v; want 6, 5 markers (the begin, 3 runs, the end), none skipped", len(frames), st)
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: not run")
		return
	}
	out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "eth.type", "-e", "udp.dstport").Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, out)
	}
	if types := strings.Fields(string(out)); len(types) != 17 || strings.Count(string(out), "0x88b5") != 5 || strings.Count(string(out), "0x0800") != 6 {
		t.Errorf("tshark read %q: want 6 frames of 0x0800 with a UDP port, 5 of 0x88b5 (the begin, 3 runs, the end)", out)
	}
}

// TestWriteCutBackMarkers: a write cut part way with marker frames in its
// buffer counts the datagrams written and lost, not the marker frames:
// written + lost = the datagrams put.
func TestWriteCutBackMarkers(t *testing.T) {
	c, path := openHalfFull(t)
	for i := 1; i <= 3; i++ {
		c.Failed(datagram(i).RxTime-20, 0)
		c.Failed(datagram(i).RxTime-10, 0)
		c.Put([]rx.Packet{datagram(i)}, 0)
	}
	writeFailedThenClose(t, c)
	frames, st := readAllStats(t, path)
	if cs := c.Stats(); cs.Packets+cs.WriteLost != 5 || cs.Packets != uint64(len(frames)) || st.Markers == 0 {
		t.Fatalf("stats %+v, %d datagrams and %d marker frames in the file; want written + lost = the 5 datagrams put, the written in the file", cs, len(frames), st.Markers)
	}
}

// TestRingFailedRuns: a run of failed receive calls is a record of its own
// before the batch, at every offset of the ring (wrapping at its end);
// with no room it is left out, and the empty poll before it goes with the
// batch's first datagram written; an empty poll of a batch dropped whole
// before the run goes with the run. The datagrams left out are a record
// before both (how many, from when), counted on while it has no room.
func TestRingFailedRuns(t *testing.T) {
	const size = 4096
	r := &ring{buf: make([]byte, size), size: size, mask: size - 1}
	take := func() []string {
		var out []string
		var rec record
		for t, head := r.tail.Load(), r.head.Load(); t != head; {
			var ok bool
			if t, ok = r.next(t, &rec); ok && rec.failed {
				out = append(out, fmt.Sprintf("failed %d-%d after %d", rec.failFirst, rec.rxTime, rec.drained))
			} else if ok && rec.lost != 0 {
				out = append(out, fmt.Sprintf("lost %d from %d", rec.lost, rec.rxTime))
			} else if ok {
				out = append(out, fmt.Sprintf("%q after %d", rec.payload, rec.drained))
			}
		}
		r.tail.Store(r.head.Load())
		return out
	}
	for i := int64(1); i < 400; i++ { // 96 bytes a round: every offset of the ring
		r.failed(i*10+1, i*10)
		r.failed(i*10+2, i*10)
		r.put([]rx.Packet{{Data: []byte("abcdefghijklmnopqrstuvwxyz0123456789"), RxTime: i*10 + 3}}, i*10)
		want := []string{fmt.Sprintf("failed %d-%d after %d", i*10+1, i*10+2, i*10), fmt.Sprintf("%q after 0", "abcdefghijklmnopqrstuvwxyz0123456789")}
		if got := take(); !slices.Equal(got, want) {
			t.Fatalf("round %d (head %d): %q, want %q", i, r.pHead, got, want)
		}
	}
	big := rx.Packet{Data: make([]byte, size-recHeader-16), RxTime: 10}
	r = &ring{buf: make([]byte, size), size: size, mask: size - 1} // big fits only at the start
	r.put([]rx.Packet{big}, 0)
	r.put([]rx.Packet{{Data: []byte("x"), RxTime: 11}}, 5) // dropped whole: its empty poll 5 waits
	r.failed(6, 0)                                         // after the batch dropped
	r.put([]rx.Packet{{Data: []byte("y")}}, 7)             // no room for the run either
	take()
	r.failed(8, 0)
	r.put([]rx.Packet{{Data: []byte("z")}}, 0)
	if got, want := take(), []string{"lost 2 from 11", "failed 8-8 after 7", `"z" after 0`}; !slices.Equal(got, want) {
		t.Errorf("after a run left out: %q, want %q (x and y left out, the empty poll at 7 before the run)", got, want)
	}
	r = &ring{buf: make([]byte, size), size: size, mask: size - 1}
	r.put([]rx.Packet{big}, 0)
	r.put([]rx.Packet{{Data: []byte("x"), RxTime: 11}}, 9) // dropped whole
	take()
	r.failed(10, 0)
	r.put([]rx.Packet{{Data: []byte("w")}}, 0)
	if got, want := take(), []string{"lost 1 from 11", "failed 10-10 after 9", `"w" after 0`}; !slices.Equal(got, want) || r.dropped.Load() != 1 {
		t.Errorf("a run after a batch dropped whole: %q (%d dropped), want %q (1)", got, r.dropped.Load(), want)
	}
}

// openHalfFull opens a capture whose first write after its header stops
// half-way (halfFull), and returns it and its file.
func openHalfFull(t *testing.T) (*Capture, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	c.f = &halfFull{File: c.f.(*os.File)} // the drainer has written only the header: no race
	return c, path
}

// lostFrames reads a capture's marker frames of datagrams left out: the
// ring's and the failed writes' counts, and where each frame was (the
// number of datagrams before it).
func lostFrames(t *testing.T, path string) (ring, write uint64, at []string) {
	t.Helper()
	r := openCapture(t, path)
	r.ReturnMarkers()
	n := 0
	for {
		fr, err := r.Next()
		if err == io.EOF {
			return ring, write, at
		} else if err != nil {
			t.Fatal(err)
		}
		if !fr.Marker {
			n++
			continue
		}
		if rg, w, ok := Lost(fr.Payload); ok {
			ring, write = ring+rg, write+w
			at = append(at, fmt.Sprintf("%d+%d after %d datagrams, from %d", rg, w, n, fr.Time))
		}
	}
}

// TestCaptureLostMarked: the datagrams a failed write lost are said in the
// file, a marker frame where they were (from the first one's receive
// time), and so are those the ring had no room for: every one counted in
// Stats.Dropped is in a marker frame before the datagrams after it.
func TestCaptureLostMarked(t *testing.T) {
	c, path := openHalfFull(t)
	c.Put([]rx.Packet{datagram(1)}, 0)
	c.Put([]rx.Packet{datagram(2), datagram(3)}, 0) // cut by the write: lost
	writeFailedThenClose(t, c)
	ring, write, at := lostFrames(t, path)
	if want := []string{fmt.Sprintf("0+2 after 1 datagrams, from %d", datagram(2).RxTime)}; ring != 0 || write != 2 || !slices.Equal(at, want) {
		t.Errorf("a failed write: lost marker frames %q, want %q", at, want)
	}

	path = filepath.Join(t.TempDir(), "full.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]rx.Packet, 2000) // 3 MB: several times the ring
	for i := range batch {
		batch[i] = datagram(i)
	}
	c.Put(batch, 0)
	for k := 0; c.ring.tail.Load() != c.ring.head.Load(); k++ { // the drainer made room
		if k > 10000 {
			t.Fatal("the drainer never took the ring")
		}
		time.Sleep(time.Millisecond)
	}
	c.Put(batch[:1], 0)
	c.Put(batch, 0) // dropped in part again, with no batch after
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	ring, write, at = lostFrames(t, path)
	// The first batch's first datagram not in the file: the drops' first.
	frames := readAll(t, path)
	j := 0
	for j < len(frames) && bytes.Equal(frames[j].Payload, batch[j].Data) {
		j++
	}
	var written uint64 // of the first batch: the datagrams before the first marker frame
	if len(at) > 0 {
		fmt.Sscanf(at[0][strings.Index(at[0], "after "):], "after %d", &written)
	}
	want := []string{fmt.Sprintf("%d+0 after %d datagrams, from %d", uint64(len(batch))-written, written, batch[j].RxTime),
		fmt.Sprintf("%d+0 after %d datagrams, from ", uint64(len(batch))-(st.Packets-1-written), st.Packets)}
	if st.Dropped == 0 || ring != st.Dropped || write != 0 || len(at) != 2 || at[0] != want[0] || !strings.HasPrefix(at[1], want[1]) {
		t.Errorf("stats %+v, lost marker frames %q, want %q: one before the datagram after the first batch's drops, one at the end, counting the %d dropped, each from the first of its datagrams", st, at, want, st.Dropped)
	}
}

// TestCaptureRecovery: the re-request answers, ranges re-requested,
// snapshots and re-requests given up the receive thread notes go to the
// file in their order among the lines' datagrams: an answer a datagram
// from and to 0.0.0.0 port 0 marked as one (Answer), its bytes as
// received, no line's, with the empty poll before it (Drained), the empty
// poll before the next batch kept for it; a range re-requested a marker
// frame of its first number and count (Rerequest); a snapshot one with
// its sequence number and message count; a re-request given up one of
// its time. None is read as a line's batch mark.
func TestCaptureRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Lines: testLines, Buffer: MinBuffer, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	at := func(i int) int64 { return int64(1_000_000_000 + i*1000) }
	c.Put([]rx.Packet{{Line: rx.LineA, Data: []byte("line a 1"), RxTime: at(1)}}, at(0))
	c.Recovered([]byte("answer 1"), at(2), 0)
	c.Recovered([]byte("answer 2"), at(2)+500, at(2)+100) // after an empty poll
	c.Rerequested(at(2)+700, 40, 2)
	c.Snapshot(at(3), 42, 7)
	c.GaveUp(at(4), at(4)) // after the empty poll of its round, which marks the batch after too
	c.Put([]rx.Packet{{Line: rx.LineB, Data: []byte("line b 2"), RxTime: at(5)}}, at(4))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Packets != 4 {
		t.Errorf("stats %+v: want 4 datagrams (two lines', two answers)", st)
	}
	r := openCapture(t, path)
	r.ReturnMarkers()
	var got []string
	none := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	for {
		fr, err := r.Next()
		if err != nil {
			break
		}
		drained, marked := Mark(fr.SrcMAC, fr.Time)
		switch {
		case fr.Marker:
			if GaveUp(fr.Payload) {
				x, y, _ := counts(fr.Payload, giveUpTag) // 0, not the snapshot's before it
				got = append(got, fmt.Sprintf("gave up at %d drained %d counts %d %d", fr.Time, Drained(fr.SrcMAC, fr.Time), x, y))
			} else if next, msgs, ok := Snapshot(fr.Payload); ok {
				got = append(got, fmt.Sprintf("snapshot %d %d at %d", next, msgs, fr.Time))
			} else if first, count, ok := Rerequest(fr.Payload); ok {
				got = append(got, fmt.Sprintf("re-requested %d+%d at %d", first, count, fr.Time))
			} else if _, ok := End(fr.Payload); ok {
				got = append(got, "end")
			} else if _, index, _, ok := Begin(fr.Payload); ok {
				got = append(got, fmt.Sprintf("begin %d", index))
			} else {
				got = append(got, fmt.Sprintf("marker % x", fr.Payload))
			}
		case Answer(fr.SrcMAC):
			got = append(got, fmt.Sprintf("answer %q at %d to %v from %v marked %v drained %d", fr.Payload, fr.Time, fr.Dst, fr.Src, marked, Drained(fr.SrcMAC, fr.Time)))
			if fr.Dst != none || fr.Src != none {
				t.Errorf("an answer from %v to %v, want from and to %v", fr.Src, fr.Dst, none)
			}
		default:
			got = append(got, fmt.Sprintf("%q at %d drained %d", fr.Payload, fr.Time, drained))
		}
	}
	want := []string{
		"begin 0",
		fmt.Sprintf("%q at %d drained %d", "line a 1", at(1), at(0)),
		fmt.Sprintf("answer %q at %d to %v from %v marked false drained 0", "answer 1", at(2), none, none),
		fmt.Sprintf("answer %q at %d to %v from %v marked false drained %d", "answer 2", at(2)+500, none, none, at(2)+100),
		fmt.Sprintf("re-requested 40+2 at %d", at(2)+700),
		fmt.Sprintf("snapshot 42 7 at %d", at(3)),
		fmt.Sprintf("gave up at %d drained %d counts 0 0", at(4), at(4)),
		fmt.Sprintf("%q at %d drained %d", "line b 2", at(5), at(4)),
		"end",
	}
	if !slices.Equal(got, want) {
		t.Errorf("read\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCaptureSnapshotMessages: a snapshot loaded goes to the file as the
// freeze before it, its messages in marker frames of whole messages of at
// most MaxSnapshotChunk bytes, in their order, then its Snapshot frame;
// a resume without one is a frame of its own. A snapshot four times the
// ring's size is whole in the file (SnapshotMessages hands it to the
// drainer), and nothing is dropped.
func TestCaptureSnapshotMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Lines: testLines, Buffer: MinBuffer, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	at := func(i int) int64 { return int64(1_000_000_000 + i*1000) }
	var msgs []byte
	var n uint64
	for len(msgs) < 4*MinBuffer {
		m := fmt.Appendf(nil, "A message %d%s", n, strings.Repeat("x", int(n%40)))
		msgs = binary.BigEndian.AppendUint16(msgs, uint16(len(m)))
		msgs = append(msgs, m...)
		n++
	}
	c.Put([]rx.Packet{{Line: rx.LineA, Data: []byte("line a 1"), RxTime: at(1)}}, at(0))
	c.Freeze(at(2), 17, true, 0)
	c.Resumed(at(3))
	c.Freeze(at(4), 18, false, at(4)) // between rounds, after the empty poll of its round
	c.SnapshotMessages(msgs, at(5))
	c.Snapshot(at(5), 99, n)
	c.Put([]rx.Packet{{Line: rx.LineB, Data: []byte("line b 2"), RxTime: at(6)}}, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Dropped != 0 || st.Packets != 2 {
		t.Errorf("stats %+v: want 2 datagrams, none dropped", st)
	}
	r := openCapture(t, path)
	r.ReturnMarkers()
	var got []string
	var read []byte
	chunks := 0
	for {
		fr, err := r.Next()
		if err != nil {
			break
		}
		if !fr.Marker {
			got = append(got, fmt.Sprintf("%q", fr.Payload))
			continue
		}
		if from, atGap, ok := Frozen(fr.Payload); ok {
			got = append(got, fmt.Sprintf("frozen at %d from %d at gap %v drained %d", fr.Time, from, atGap, Drained(fr.SrcMAC, fr.Time)))
		} else if Resumed(fr.Payload) {
			got = append(got, fmt.Sprintf("resumed at %d", fr.Time))
		} else if m, ok := SnapshotMessages(fr.Payload); ok {
			if len(m) > MaxSnapshotChunk || fr.Time != at(5) {
				t.Errorf("a chunk of %d bytes at %d, want at most %d at %d", len(m), fr.Time, MaxSnapshotChunk, at(5))
			}
			if chunks == 0 {
				got = append(got, "messages")
			}
			chunks++
			read = append(read, m...)
		} else if next, k, ok := Snapshot(fr.Payload); ok {
			got = append(got, fmt.Sprintf("snapshot %d %d at %d", next, k, fr.Time))
		} else if _, ok := End(fr.Payload); ok {
			got = append(got, "end")
		}
	}
	want := []string{`"line a 1"`, fmt.Sprintf("frozen at %d from 17 at gap true drained 0", at(2)), fmt.Sprintf("resumed at %d", at(3)),
		fmt.Sprintf("frozen at %d from 18 at gap false drained %d", at(4), at(4)), "messages", fmt.Sprintf("snapshot 99 %d at %d", n, at(5)), `"line b 2"`, "end"}
	if !slices.Equal(got, want) {
		t.Errorf("read\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !bytes.Equal(read, msgs) || chunks < len(msgs)/MaxSnapshotChunk+1 {
		t.Errorf("the file's snapshot messages: %d bytes in %d frames, want the %d bytes loaded", len(read), chunks, len(msgs))
	}
}

// TestSnapshotMessagesAllocs: Freeze, Resumed and SnapshotMessages, on the
// receive thread, allocate nothing.
func TestSnapshotMessagesAllocs(t *testing.T) {
	c, err := Open(Config{Path: filepath.Join(t.TempDir(), "c.pcap"), Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var msgs []byte
	for range 5000 {
		msgs = binary.BigEndian.AppendUint16(msgs, 36)
		msgs = append(msgs, make([]byte, 36)...)
	}
	if a, exact := race.AllocsPerRun(t, 20, func() { c.Freeze(1, 2, true, 0); c.SnapshotMessages(msgs, 3); c.Resumed(4) }); exact && a != 0 {
		t.Fatalf("Freeze, SnapshotMessages and Resumed: %v allocations, want 0", a)
	}
}

// stalled is a capture's file whose writes wait until release is closed
// (a disk stuck: an NFS server gone, a device failing); entered is closed
// at the first write, once the drainer waits in it.
type stalled struct {
	*os.File
	entered, release chan struct{}
	once             sync.Once
}

func (s *stalled) Write(b []byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.File.Write(b)
}

// openStalled opens a capture of a 1 MiB ring at path whose writes wait
// (stalled), and waits for the drainer to be in one: a datagram is Put,
// flushed after flushEvery of quiet.
func openStalled(t *testing.T) (c *Capture, s *stalled, path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Lines: testLines, Buffer: MinBuffer, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s = &stalled{File: c.f.(*os.File), entered: make(chan struct{}), release: make(chan struct{})}
	c.f = s // the drainer has written only the header: no race
	c.Put([]rx.Packet{{Line: rx.LineA, Data: []byte("line a 1"), RxTime: 1}}, 0)
	select {
	case <-s.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the drainer never wrote")
	}
	return c, s, path
}

// TestSnapshotMessagesNeverWait: a snapshot four times the ring's size,
// loaded while the disk is stuck, is handed to the writer whole: the
// receive thread does not wait for room (it waited up to 1 s without
// progress, then left the rest out), and once the disk writes again the
// file holds every message. The buffer is the capture's until written,
// then given back (SnapshotBuffer), for the next download.
func TestSnapshotMessagesNeverWait(t *testing.T) {
	var msgs []byte
	var n uint64
	for len(msgs) < 4*MinBuffer {
		m := fmt.Appendf(nil, "A message %d", n)
		msgs = binary.BigEndian.AppendUint16(msgs, uint16(len(m)))
		msgs = append(msgs, m...)
		n++
	}
	c, s, path := openStalled(t)
	c.Freeze(2, 17, true, 0)
	kept := c.SnapshotMessages(msgs, 3)
	c.Snapshot(3, 99, n)
	back := c.SnapshotBuffer() // the disk still stuck: not written
	close(s.release)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); !kept || back != nil || st.Dropped != 0 {
		t.Fatalf("SnapshotMessages kept %v, the buffer given back before it was written: %v; stats %+v: want kept, not given back, none dropped",
			kept, back != nil, st)
	}
	if b := c.SnapshotBuffer(); cap(b) != cap(msgs) || len(b) != 0 {
		t.Errorf("SnapshotBuffer after the writer wrote it: %d of %d bytes, want the snapshot's buffer (%d), emptied", len(b), cap(b), cap(msgs))
	}
	var read []byte
	for _, fr := range readMarkers(t, path) {
		if m, ok := SnapshotMessages(fr.Payload); ok && fr.Marker {
			read = append(read, m...)
		}
	}
	if !bytes.Equal(read, msgs) {
		t.Errorf("the file's snapshot messages: %d bytes, want the %d loaded", len(read), len(msgs))
	}
}

// readMarkers reads every frame of a capture file, marker frames too.
func readMarkers(t *testing.T, path string) []pcap.Frame {
	t.Helper()
	out, _ := readFrames(t, path, true)
	return out
}

// TestEventsWhenRingFull: where the handler froze delivery, loaded a
// snapshot, resumed without one and gave a re-request up goes to the file
// though the ring is full of the lines' datagrams (the disk stuck): a
// replay without them stays frozen, or loads nothing, and rebuilds other
// books with nothing in the file to say why. They were left out, not
// even counted. The ring keeps room for them that datagrams cannot take;
// past it (200 more given up) they are counted as left out, in a lost
// record the replay reports.
func TestEventsWhenRingFull(t *testing.T) {
	c, s, path := openStalled(t)
	batch := make([]rx.Packet, 64)
	for i := range batch {
		batch[i] = datagram(i)
	}
	for k := 0; c.Stats().Dropped == 0; k++ {
		if k > 10000 {
			t.Fatal("the ring never filled")
		}
		c.Put(batch, 0)
	}
	c.Put(batch, 0) // a lost record, if it fits
	c.Freeze(2, 17, true, 0)
	c.Snapshot(3, 99, 0)
	c.Resumed(4)
	c.GaveUp(5, 0)
	before := c.Stats().Dropped
	for range 200 {
		c.GaveUp(6, 0)
	}
	left := c.Stats().Dropped - before
	c.Put(batch[:1], 0) // the lost record
	close(s.release)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	var lost, gaveUp uint64
	for _, fr := range readMarkers(t, path) {
		ring, _, isLost := Lost(fr.Payload)
		switch _, _, snap := Snapshot(fr.Payload); {
		case !fr.Marker:
		case isLost:
			lost += ring
		case GaveUp(fr.Payload) && fr.Time == 6:
			gaveUp++
		case snap:
			got = append(got, "snapshot")
		case Resumed(fr.Payload):
			got = append(got, "resumed")
		case GaveUp(fr.Payload):
			got = append(got, "gave up")
		default:
			if _, _, ok := Frozen(fr.Payload); ok {
				got = append(got, "frozen")
			}
		}
	}
	if want := []string{"frozen", "snapshot", "resumed", "gave up"}; !slices.Equal(got, want) {
		t.Errorf("the file's events %q, want %q", got, want)
	}
	if st := c.Stats(); left == 0 || gaveUp+left != 200 || lost != st.Dropped {
		t.Errorf("200 more given up: %d in the file, %d left out; the file's lost records count %d, Stats.Dropped %d: want some left out, the rest in the file, every one left out counted in both",
			gaveUp, left, lost, st.Dropped)
	}
}

// TestDocSnapshotCaptureBytes measures what a snapshot costs the capture
// file per order (FHRM frames: a 2-byte length and the message, 34 bytes
// of pcap record and Ethernet header and tag a frame of up to 60000
// bytes), for Add Orders without attribution ('A', 36 bytes) and with
// ('F', 40): the figures docs/TUNING.md gives for sizing the disk.
func TestDocSnapshotCaptureBytes(t *testing.T) {
	const orders = 100_000
	size := func(typ byte) int64 {
		path := filepath.Join(t.TempDir(), "c.pcap")
		c, err := Open(Config{Path: path, Lines: testLines, Buffer: MinBuffer, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []byte
		for i := range orders {
			switch {
			case typ == itch.TypeAddOrder:
				a := itch.AddOrderFields{OrderRef: uint64(i + 1), Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1_000_000}
				msgs = a.AppendBlock(msgs)
			case typ == itch.TypeAddOrderMPID:
				a := itch.AddOrderMPIDFields{OrderRef: uint64(i + 1), Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1_000_000}
				msgs = a.AppendBlock(msgs)
			}
		}
		c.Freeze(1, 1, false, 0)
		c.SnapshotMessages(msgs, 2)
		c.Snapshot(2, 1, uint64(len(msgs)/2))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	empty := size(0)
	doc, err := os.ReadFile("../../docs/TUNING.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	for _, typ := range []byte{itch.TypeAddOrder, itch.TypeAddOrderMPID} {
		per := fmt.Sprintf("%.2f bytes an order ('%c')", float64(size(typ)-empty)/orders, typ)
		t.Log(per)
		if !strings.Contains(text, per) {
			t.Errorf("docs/TUNING.md does not say %q", per)
		}
	}
}

// TestCaptureLostEventsMarked: a failed write that loses the records a
// replay freezes and rebuilds by (here the snapshot loaded, FHRS, after
// the freeze that reached the file) says so in the file, as it says the
// datagrams it loses: without the FHRS a replay stays frozen, its books
// not the live ones, and nothing said the capture was not whole. The
// lost frame counts it with the datagrams a write lost; Stats.WriteLost
// counts datagrams only (TestWriteCutBackMarkers).
func TestCaptureLostEventsMarked(t *testing.T) {
	c, path := openHalfFull(t)
	c.Freeze(datagram(1).RxTime, 17, false, 0)
	c.Snapshot(datagram(1).RxTime, 99, 0) // cut by the write: lost
	writeFailedThenClose(t, c)
	_, write, _ := lostFrames(t, path)
	if st := c.Stats(); write != 1 || st.WriteLost != 0 {
		t.Errorf("the file's lost records count %d lost by a write, Stats.WriteLost %d: want the snapshot's record, 1, and no datagram", write, st.WriteLost)
	}
}

// TestFailedRunBeforeRecoveryStep: a run of failed receive calls with a
// recovery step at one of its calls (a freeze at a gap the call declared,
// noted before the call, a resume after it in the round's poll, an
// answer, a give-up, a range re-requested) goes to the file in pieces:
// the calls before each step, then the step, the calls after it a run of
// their own, each run with the run's empty poll, the batch after without
// it. Written whole before the next batch, the run came after the steps,
// and a replay advanced at its calls before them after them.
func TestFailedRunBeforeRecoveryStep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	p := datagram(0)
	at := func(d int64) int64 { return p.RxTime + d }
	poll := at(5)
	c.Put([]rx.Packet{p}, 0)
	c.Failed(at(10), poll)
	c.Failed(at(20), poll)
	c.Freeze(at(30), 7, true, poll) // declared by the call at 30
	c.Failed(at(30), poll)
	c.Resumed(at(30)) // the round's poll
	c.Failed(at(40), poll)
	c.Rerequested(at(50), 9, 2) // the call at 50 asked
	c.Failed(at(50), poll)
	c.Recovered([]byte("answer"), at(55), poll)
	c.Failed(at(60), poll)
	c.GaveUp(at(60), poll)
	c.Failed(at(70), poll)
	c.Put([]rx.Packet{datagram(1)}, poll)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fr := range readMarkers(t, path) {
		d := fr.Time - p.RxTime
		switch first, last, drained, ok := Failed(fr.SrcMAC, fr.Payload, fr.Time); {
		case ok:
			got = append(got, fmt.Sprintf("failed %d..%d poll %v", first-p.RxTime, last-p.RxTime, drained == poll))
		case !fr.Marker && Answer(fr.SrcMAC):
			got = append(got, fmt.Sprintf("answer %d", d))
		case !fr.Marker:
			drained, _ := Mark(fr.SrcMAC, fr.Time)
			got = append(got, fmt.Sprintf("datagram %d poll %v", d, drained == poll))
		case Resumed(fr.Payload):
			got = append(got, fmt.Sprintf("resumed %d", d))
		case GaveUp(fr.Payload):
			got = append(got, fmt.Sprintf("gave up %d", d))
		default:
			if _, _, ok := Frozen(fr.Payload); ok {
				got = append(got, fmt.Sprintf("frozen %d", d))
			} else if _, _, ok := Rerequest(fr.Payload); ok {
				got = append(got, fmt.Sprintf("re-requested %d", d))
			}
		}
	}
	d1 := datagram(1).RxTime - p.RxTime
	want := []string{"datagram 0 poll false", "failed 10..20 poll true", "frozen 30", "failed 30..30 poll true", "resumed 30",
		"failed 40..40 poll true", "re-requested 50", "failed 50..50 poll true", "answer 55", "failed 60..60 poll true", "gave up 60",
		"failed 70..70 poll true", fmt.Sprintf("datagram %d poll false", d1)}
	if !slices.Equal(got, want) {
		t.Errorf("read\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
