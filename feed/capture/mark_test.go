package capture

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
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
			if t, ok = r.next(t, &rec); ok {
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
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	c.f = &halfFull{File: c.f.(*os.File)} // the drainer has written only the header: no race
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
