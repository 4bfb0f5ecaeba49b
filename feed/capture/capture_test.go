package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/race"
)

var testLines = []rx.LineConfig{
	{Name: "A", Group: netip.MustParseAddr("239.1.1.1"), Port: 26400, Source: netip.MustParseAddr("10.0.0.9")},
	{Name: "B", Group: netip.MustParseAddr("239.1.1.2"), Port: 26401},
}

// datagram i of a test: its payload says i, its size varies from 1 byte
// to about 1500 so that records wrap the ring at every offset.
func datagram(i int) rx.Packet {
	n := 1 + (i*337)%1500
	b := bytes.Repeat([]byte{byte(i)}, n)
	copy(b, fmt.Sprintf("%08d", i))
	p := rx.Packet{Data: b[:n], Line: rx.Line(i % 2), RxTime: int64(time.Hour) + int64(i)*1001}
	if i%3 != 0 { // the receiver knew the source
		p.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 2, byte(i)}), uint16(4000+i%7))
	}
	return p
}

func readAll(t *testing.T, path string) []pcap.Frame {
	t.Helper()
	out, _ := readAllStats(t, path)
	return out
}

// openCapture opens a capture file for reading, closed at the test's end.
// fileEnd reads the file's last frame: ok when it is the marker frame
// that ends a file the writer closed, for reason.
func fileEnd(t *testing.T, path string) (reason byte, ok bool) {
	t.Helper()
	r := openCapture(t, path)
	r.ReturnMarkers()
	for {
		fr, err := r.Next()
		if err == io.EOF {
			return reason, ok
		}
		if err != nil {
			t.Fatal(err)
		}
		reason, ok = 0, false
		if fr.Marker {
			reason, ok = End(fr.Payload)
		}
	}
}

func openCapture(t *testing.T, path string) *pcap.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readAllStats is readAll, with the reader's counts.
func readAllStats(t *testing.T, path string) ([]pcap.Frame, pcap.Stats) {
	t.Helper()
	return readFrames(t, path, false)
}

// readFrames is readAllStats, with the marker frames when markers.
func readFrames(t *testing.T, path string, markers bool) ([]pcap.Frame, pcap.Stats) {
	t.Helper()
	r := openCapture(t, path)
	if markers {
		r.ReturnMarkers()
	}
	var out []pcap.Frame
	for {
		fr, err := r.Next()
		if err == io.EOF {
			return out, r.Stats()
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out)+1, err)
		}
		fr.Payload = bytes.Clone(fr.Payload)
		out = append(out, fr)
	}
}

// checkFrame compares a frame read back with datagram i.
func checkFrame(t *testing.T, fr pcap.Frame, i int) {
	t.Helper()
	p := datagram(i)
	src := netip.AddrPortFrom(netip.IPv4Unspecified(), p.Src.Port())
	if p.Src.IsValid() {
		src = p.Src
	} else if p.Line == rx.LineA {
		src = netip.AddrPortFrom(testLines[0].Source, 0)
	}
	dst := netip.AddrPortFrom(testLines[p.Line].Group, testLines[p.Line].Port)
	if !bytes.Equal(fr.Payload, p.Data) || fr.Time != p.RxTime || fr.Src != src || fr.Dst != dst {
		t.Fatalf("frame %d: %d bytes %q... at %d from %v to %v; want datagram %d: %d bytes %q... at %d from %v to %v",
			fr.Index, len(fr.Payload), fr.Payload[:min(8, len(fr.Payload))], fr.Time, fr.Src, fr.Dst,
			i, len(p.Data), p.Data[:min(8, len(p.Data))], p.RxTime, src, dst)
	}
}

// TestRoundTrip: datagrams Put in batches, many times the ring's size
// over, are all in the file, in order, with their payload, receive time,
// source and their line's group and port, while the drainer keeps up
// (each batch waits for room). A batch then waits for the ring to be
// empty only when the ring is full; nothing may be dropped.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	const total = 8000 // about 6 MB through a 1 MiB ring
	putAll(t, c, total)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Dropped != 0 || st.Packets != total || st.WriteErrors != 0 {
		t.Fatalf("stats %+v, want %d packets, nothing dropped", st, total)
	}
	frames := readAll(t, path)
	if len(frames) != total {
		t.Fatalf("%d frames in the file, want %d", len(frames), total)
	}
	for i, fr := range frames {
		checkFrame(t, fr, i)
	}
	fi, _ := os.Stat(path)
	if uint64(fi.Size()) != st.Bytes {
		t.Fatalf("file of %d bytes, Stats.Bytes %d", fi.Size(), st.Bytes)
	}
}

// TestFullRingDrops: a batch larger than the ring keeps what fits and
// counts the rest dropped (the drainer cannot free anything before the
// batch is published); the file holds exactly the datagrams kept, and the
// next batch, once the drainer emptied the ring, is captured whole.
func TestFullRingDrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]rx.Packet, 2000) // about 1.5 MB
	var fit uint64
	kept := 0
	for i := range big {
		big[i] = datagram(i)
		if n := recordSize(len(big[i].Data)); fit+n <= MinBuffer-eventRoom {
			fit += n
			kept++
		}
	}
	c.Put(big, 0)
	if d := c.Stats().Dropped; d == 0 || d > uint64(len(big)-kept) {
		// The ring keeps the datagrams that fit in the order given:
		// after the first that does not, smaller ones may still fit.
		t.Fatalf("dropped %d of %d, want 1..%d (those past %d bytes)", d, len(big), len(big)-kept, MinBuffer-eventRoom)
	}
	for k := 0; c.ring.tail.Load() != c.ring.pHead; k++ {
		if k > 10000 {
			t.Fatal("the drainer does not empty the ring")
		}
		time.Sleep(time.Millisecond)
	}
	next := []rx.Packet{datagram(5000), datagram(5001)}
	c.Put(next, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	frames := readAll(t, path)
	if st.Packets+st.Dropped != uint64(len(big)+2) || uint64(len(frames)) != st.Packets {
		t.Fatalf("stats %+v, %d frames; want packets+dropped = %d, frames = packets", st, len(frames), len(big)+2)
	}
	// A datagram after a dropped one may still fit: the frames are the
	// datagrams kept, in order, told apart by their receive times.
	last := -1
	for _, fr := range frames {
		i := int((fr.Time - int64(time.Hour)) / 1001)
		if i <= last {
			t.Fatalf("frame %d is datagram %d, after datagram %d", fr.Index, i, last)
		}
		checkFrame(t, fr, i)
		last = i
	}
	if last != 5001 {
		t.Fatalf("the last frame is datagram %d, want 5001", last)
	}
}

// TestPutAllocs: Put allocates nothing, with room in the ring and with
// the ring full (every datagram dropped).
func TestPutAllocs(t *testing.T) {
	c, err := Open(Config{Path: filepath.Join(t.TempDir(), "c.pcap"), Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkts := []rx.Packet{datagram(1), datagram(2), datagram(3)}
	if a, exact := race.AllocsPerRun(t, 100, func() { c.Put(pkts, 0) }); exact && a != 0 {
		t.Fatalf("Put: %v allocations, want 0", a)
	}
	answer := datagram(4).Data
	if a, exact := race.AllocsPerRun(t, 100, func() { c.Recovered(answer, 1, 0); c.Snapshot(2, 3, 4); c.GaveUp(5, 0) }); exact && a != 0 {
		t.Fatalf("Recovered, Snapshot and GaveUp: %v allocations, want 0", a)
	}
	full := make([]rx.Packet, 1500)
	for i := range full {
		full[i] = datagram(2 * i) // even: line A, and long enough to fill the ring
	}
	if a, exact := race.AllocsPerRun(t, 10, func() { c.Put(full, 0) }); exact && a != 0 {
		t.Fatalf("Put with the ring full: %v allocations, want 0", a)
	}
	if c.Stats().Dropped == 0 {
		t.Fatal("no datagram dropped: the ring was never full")
	}
}

// TestFileName: a start's file never overwrites another's, and Open
// refuses an existing file.
func TestFileName(t *testing.T) {
	at := time.Date(2026, 12, 6, 9, 30, 0, 250000999, time.FixedZone("x", 3600))
	for base, want := range map[string]string{
		"/var/lib/fh/nasdaq.pcap": "/var/lib/fh/nasdaq-20261206T083000.250000Z.pcap",
		"cap":                     "cap-20261206T083000.250000Z.pcap",
		"a.b/c.pcapng":            "a.b/c-20261206T083000.250000Z.pcapng",
	} {
		if got := FileName(base, at); got != want {
			t.Errorf("FileName(%q) = %q, want %q", base, got, want)
		}
	}
	path := filepath.Join(t.TempDir(), "c.pcap")
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Path: path, Lines: testLines}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Open of an existing file: %v, want it refused", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Fatalf("the existing file was changed: %q", b)
	}
}

// TestFileNameTaken: a file whose name is taken (by the run before: a
// restart in the same microsecond, or a clock stepped back) goes to the
// next microsecond's name that is free, which sorts after the taken ones;
// those are never overwritten.
func TestFileNameTaken(t *testing.T) {
	base := filepath.Join(t.TempDir(), "c.pcap")
	at := time.Date(2026, 12, 6, 9, 30, 0, 999998000, time.UTC) // the taken names cross a second
	var taken []string
	for k := range 3 {
		name := FileName(base, at.Add(time.Duration(k)*time.Microsecond))
		if err := os.WriteFile(name, []byte("the run before"), 0o640); err != nil {
			t.Fatal(err)
		}
		taken = append(taken, name)
	}
	f, name, _, err := createUnique(base, at, time.Time{})
	if err != nil {
		t.Fatalf("a name taken, and the next two: %v, want the next free one", err)
	}
	f.Close()
	if want := FileName(base, at.Add(3*time.Microsecond)); name != want || !slices.IsSorted(append(taken, name)) {
		t.Fatalf("a name taken, and the next two: %s, want %s, sorting after %v", name, want, taken)
	}
	for _, n := range taken {
		if b, _ := os.ReadFile(n); string(b) != "the run before" {
			t.Fatalf("%s overwritten", n)
		}
	}
}

// TestWriteErrors: a write that fails (the disk full: /dev/full's) is
// counted with the datagrams it held and never stops the capture; Close
// still returns, with the error of its last flush: what the stop wrote is
// lost, which its caller (the handler's Stop) must hear.
func TestWriteErrors(t *testing.T) {
	c := openFull(t)
	c.Put([]rx.Packet{datagram(1), datagram(2)}, 0)
	if err := c.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close after its last flush failed: %v, want that write's error (ENOSPC)", err)
	}
	if st := c.Stats(); st.WriteErrors == 0 || st.WriteLost != 2 || st.Packets != 0 {
		t.Fatalf("stats %+v, want a write error losing 2 datagrams", st)
	}
}

// BenchmarkPut is the receive thread's cost of capturing: a batch of 32
// datagrams of 1 KiB copied into the ring (of the default size), a
// consumer that keeps up simulated by moving tail after each batch (the
// drainer, writing to disk on this machine, would not keep up with an
// unpaced loop: the figure would be the drop path's).
func BenchmarkPut(b *testing.B) {
	r := &ring{buf: make([]byte, DefaultBuffer), size: DefaultBuffer, mask: DefaultBuffer - 1}
	for i := 0; i < len(r.buf); i += 4096 {
		r.buf[i] = 1
	}
	pkts := make([]rx.Packet, 32)
	for i := range pkts {
		pkts[i] = rx.Packet{Data: make([]byte, 1024), Line: rx.Line(i % 2), RxTime: int64(i),
			Src: netip.MustParseAddrPort("10.0.0.1:4000")}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r.put(pkts, 0)
		r.tail.Store(r.pHead)
		n += len(pkts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/pkt")
	if r.dropped.Load() != 0 {
		b.Fatalf("%d dropped", r.dropped.Load())
	}
}

// syncBuf is a log sink the drainer writes while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDropWarningOncePerRun: a run of drops (a batch overflowing the
// ring, about 700 datagrams dropped) is one warning; once datagrams are
// captured again with no new drop it says so, and the next run warns
// again.
func TestDropWarningOncePerRun(t *testing.T) {
	var log syncBuf
	c, err := Open(Config{Path: filepath.Join(t.TempDir(), "c.pcap"), Buffer: MinBuffer, Lines: testLines, Log: zerolog.New(&log)})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]rx.Packet, 2000)
	for i := range big {
		big[i] = datagram(i)
	}
	drained := func() {
		for k := 0; c.ring.tail.Load() != c.ring.pHead; k++ {
			if k > 10000 {
				t.Fatal("the drainer does not empty the ring")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitLog := func(s string, n int) {
		for k := 0; strings.Count(log.String(), s) < n; k++ {
			if k > 10000 {
				t.Fatalf("%d %q lines in the log, want %d:\n%s", strings.Count(log.String(), s), s, n, log.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	c.Put(big, 0)
	drained()
	waitLog("ring full", 1)
	c.Put(big[:1], 0)
	drained()
	waitLog("capturing again", 1)
	c.Put(big, 0)
	drained()
	waitLog("ring full", 2)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "ring full"); n != 2 {
		t.Fatalf("%d ring-full warnings for two runs of drops:\n%s", n, log.String())
	}
}

// halfFull is a file whose first write of more than a header stops
// half-way with ENOSPC, as a disk filling up does; later writes succeed.
type halfFull struct {
	*os.File
	failed bool
}

func (h *halfFull) Write(p []byte) (int, error) {
	if h.failed || len(p) <= 24 {
		return h.File.Write(p)
	}
	h.failed = true
	n, err := h.File.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	return n, syscall.ENOSPC
}

// writeFailedThenClose waits for the drainer's write to fail (the buffer
// is flushed after flushEvery of quiet), then Puts datagrams 4 and 5 and
// closes the capture.
func writeFailedThenClose(t *testing.T, c *Capture) {
	t.Helper()
	for k := 0; c.Stats().WriteErrors == 0; k++ {
		if k > 10000 {
			t.Fatal("the drainer never flushed")
		}
		time.Sleep(time.Millisecond)
	}
	c.Put([]rx.Packet{datagram(4), datagram(5)}, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteCutBack: a write that stops half-way (a disk filling up) keeps
// the whole records that reached the file (datagram 1 of 1, 2, 3) and
// loses only the rest, counted and logged once; the half record it left
// is cut off, so the file stays readable to its end, and the datagrams
// captured after (the disk has room again) follow it whole.
func TestWriteCutBack(t *testing.T) {
	var log syncBuf
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.New(&log)})
	if err != nil {
		t.Fatal(err)
	}
	c.f = &halfFull{File: c.f.(*os.File)} // the drainer has written only the header: no race
	first := []rx.Packet{datagram(1), datagram(2), datagram(3)}
	c.Put(first, 0)
	writeFailedThenClose(t, c)
	st := c.Stats()
	frames := readAll(t, path)
	if st.WriteErrors != 1 || st.WriteLost != 2 || st.Packets != 3 || len(frames) != 3 {
		t.Fatalf("stats %+v, %d frames in the file; want 1 write error losing datagrams 2 and 3 (cut in half), 1, 4 and 5 written", st, len(frames))
	}
	for k, i := range []int{1, 4, 5} {
		checkFrame(t, frames[k], i)
	}
	if fi, _ := os.Stat(path); uint64(fi.Size()) != st.Bytes {
		t.Fatalf("file of %d bytes, Stats.Bytes %d: the half record was not cut off", fi.Size(), st.Bytes)
	}
	if n := strings.Count(log.String(), "write failed"); n != 1 || !strings.Contains(log.String(), "writing again") {
		t.Fatalf("%d write-failed lines, want 1, then writing again:\n%s", n, log.String())
	}
}

// TestRotate: with RotateSize, the datagrams of a run go to several files,
// each starting with its own header and holding whole datagrams (each
// readable alone), named from the base by the time of the switch, so
// that their names sort in the order they were opened (several fall in
// one second here); read in order they are every datagram once, in order. No file is opened
// at Close for nothing.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "c.pcap")
	first := FileName(base, time.Now())
	var logs bytes.Buffer
	c, err := Open(Config{Path: first, Base: base, Buffer: MinBuffer, RotateSize: MinRotate, Lines: testLines, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	const total = 8000 // about 6 MB: 4 files or more of 1 MiB and a buffer's flush
	putAll(t, c, total)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if st.Files < 3 || uint64(len(names)) != st.Files || st.Packets != total || st.Dropped != 0 {
		t.Fatalf("stats %+v, files %v: want 3 or more files (about 6 MB in files of 1 MiB), each in Files, %d packets", st, names, total)
	}
	// In the order they were opened: the log's "next file" lines.
	order := []string{first}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "capture: next file") {
			i := strings.Index(l, `"file":"`) + len(`"file":"`)
			order = append(order, l[i:i+strings.Index(l[i:], `"`)])
		}
	}
	if len(order) != len(names) {
		t.Fatalf("%d files on disk, %d opened by the log: %v", len(names), len(order), order)
	}
	if !slices.Equal(names, order) { // Glob sorts them by name
		t.Fatalf("the files sorted by name %v, in the order opened %v: want the same (names that sort in time order)", names, order)
	}
	var bytes uint64
	n := 0
	for k, name := range order {
		frames := readAll(t, name) // a header and whole frames, or it fails
		if k < len(order)-1 && len(frames) == 0 {
			t.Fatalf("file %d (%s) holds no datagram", k, name)
		}
		for _, fr := range frames {
			checkFrame(t, fr, n)
			n++
		}
		// Each file ends with the marker frame that says how: the next
		// file, or the stop; one without was cut short.
		want := byte(EndNextFile)
		if k == len(order)-1 {
			want = EndStopped
		}
		if reason, ok := fileEnd(t, name); !ok || reason != want {
			t.Fatalf("file %d (%s) of %d ends with an end frame %v, reason %d: want reason %d", k, name, len(order), ok, reason, want)
		}
		fi, _ := os.Stat(name)
		if k < len(order)-1 && fi.Size() < MinRotate {
			t.Fatalf("file %d (%s) of %d bytes, rotated before RotateSize %d", k, name, fi.Size(), MinRotate)
		}
		bytes += uint64(fi.Size())
	}
	if n != total || bytes != st.Bytes {
		t.Fatalf("%d datagrams and %d bytes in the files, want %d and Stats.Bytes %d", n, bytes, total, st.Bytes)
	}
}

// TestRotateNewFileFails: a next file that cannot be created (the
// directory made read-only... as root, gone) leaves the capture in the
// file it has, logged once, nothing lost.
func TestRotateNewFileFails(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "sub", "c.pcap")
	if err := os.Mkdir(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	first := FileName(base, time.Now())
	var logs bytes.Buffer
	c, err := Open(Config{Path: first, Base: base, Buffer: MinBuffer, RotateSize: MinRotate, Lines: testLines, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	// The directory goes; the open file stays writable.
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(filepath.Dir(base), moved); err != nil {
		t.Fatal(err)
	}
	const total = 4000
	putAll(t, c, total)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Files != 1 || st.Packets != total || st.WriteErrors != 0 {
		t.Fatalf("stats %+v: want one file holding all %d", st, total)
	}
	if n := strings.Count(logs.String(), "next file not created"); n != 1 {
		t.Fatalf("the failed rotations logged %d times, want once:\n%s", n, logs.String())
	}
	frames := readAll(t, filepath.Join(moved, filepath.Base(first)))
	if len(frames) != total {
		t.Fatalf("%d frames in the file, want %d", len(frames), total)
	}
}

// putAll puts datagrams 0..total-1 in batches of 50, each batch waiting
// until the ring has room for it (and a wrap), so nothing is dropped.
func putAll(t *testing.T, c *Capture, total int) {
	t.Helper()
	pkts := make([]rx.Packet, 50)
	for i := 0; i < total; i += len(pkts) {
		var need uint64
		for j := range pkts {
			pkts[j] = datagram(i + j)
			need += recordSize(len(pkts[j].Data)) + 2048
		}
		for k := 0; c.ring.pHead+need-c.ring.tail.Load() > c.ring.size; k++ {
			if k > 10000 {
				t.Fatal("the drainer does not free the ring")
			}
			time.Sleep(time.Millisecond)
		}
		c.Put(pkts, 0)
	}
}

// TestLargestDatagrams: datagrams of 0 bytes and of up to UDP's largest
// (65507) are all in the file: those whose frame is longer than the snap
// length (65535: more than 65493 bytes) cut to it with their whole length
// (tcpdump's way), which the reader counts truncated; none is counted as
// lost to a failed write. tshark, when installed, reads the same lengths.
func TestLargestDatagrams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 65493, 65494, 65507}
	var pkts []rx.Packet
	for i, n := range sizes {
		pkts = append(pkts, rx.Packet{Data: bytes.Repeat([]byte{byte(i)}, n), Line: rx.LineB, RxTime: int64(time.Hour) + int64(i)})
	}
	c.Put(pkts, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Packets != 4 || st.WriteLost != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want 4 packets written, none lost", st)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, len(fr.Payload))
	}
	if st := r.Stats(); fmt.Sprint(got) != "[0 65493]" || st.Frames != 6 || st.Markers != 2 || st.Skipped[pcap.Truncated] != 2 {
		t.Fatalf("the reader read %d frames, datagrams of %v bytes, %v skipped truncated; want 6 frames (the begin and end marker frames), datagrams of [0 65493], 2 truncated",
			st.Frames, got, st.Skipped[pcap.Truncated])
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: the file not read by it")
		return
	}
	out, err := exec.Command("tshark", "-r", path, "-o", "ip.check_checksum:TRUE", "-T", "fields",
		"-e", "frame.len", "-e", "frame.cap_len", "-e", "ip.len", "-e", "ip.checksum.status", "-e", "udp.length").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", path, err, out)
	}
	want := "34\t34\t\t\t\n42\t42\t28\t1\t8\n65535\t65535\t65521\t1\t65501\n65536\t65535\t65522\t1\t65502\n65549\t65535\t65535\t1\t65515\n19\t19\t\t\t\n" // the begin marker frame first, the end's last
	if string(out) != want {
		t.Fatalf("tshark reads (frame.len, cap_len, ip.len, ip checksum status, udp.length)\n%s\nwant\n%s", out, want)
	}
}

// TestDiskFullAtStart: a disk already full when the capture opens (a
// tmpfs of 64 KiB filled up) is a failed write like one during the run:
// Open succeeds (the feed starts), the failure is logged and counted, and
// once the disk has room the file gets its header, then the datagrams
// captured since, readable to its end.
func TestDiskFullAtStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 1<<20), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	var log syncBuf
	path := filepath.Join(dir, "c.pcap")
	c, err := Open(Config{Path: path, Buffer: MinBuffer, Lines: testLines, Log: zerolog.New(&log)})
	if err != nil {
		t.Fatalf("Open on a full disk: %v, want the capture open (a failed write, as during the run)", err)
	}
	c.Put([]rx.Packet{datagram(1)}, 0)
	for k := 0; c.Stats().WriteLost == 0; k++ { // flushed after flushEvery of quiet
		if k > 10000 {
			t.Fatal("the drainer never flushed")
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.Put([]rx.Packet{datagram(2), datagram(3)}, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.WriteErrors == 0 || st.WriteLost != 1 || st.Packets != 2 {
		t.Fatalf("stats %+v, want write errors losing datagram 1, 2 written", st)
	}
	checkAfterFailedWrite(t, path, st, log.String(), 2, "")
}

// sizeLimit is a file that takes at most limit bytes (FAT32's 4 GiB, a
// unit's LimitFSIZE=): a write past it writes up to it and fails EFBIG.
type sizeLimit struct {
	*os.File
	limit int64
}

func (s *sizeLimit) Write(p []byte) (int, error) {
	off, err := s.File.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if off+int64(len(p)) <= s.limit {
		return s.File.Write(p)
	}
	n, err := s.File.Write(p[:max(0, s.limit-off)])
	if err != nil {
		return n, err
	}
	return n, syscall.EFBIG
}

// TestFileTooLarge: a file that reaches the largest size allowed (EFBIG)
// fails every write after; the capture goes on in a new file, as a
// rotation, whatever rotate_size says (here 0), losing only the buffer
// whose write failed (counted). Both files read whole.
func TestFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "c.pcap")
	var log syncBuf
	c, err := Open(Config{Base: base, Buffer: MinBuffer, Lines: testLines, Log: zerolog.New(&log)})
	if err != nil {
		t.Fatal(err)
	}
	first := c.Path()
	// The drainer has written only the header: no race. The first 1 MiB
	// buffer fits, the second does not.
	c.f = &sizeLimit{File: c.f.(*os.File), limit: 3 << 19}
	const total = 4000 // about 3 MB
	putAll(t, c, total)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if st.Files != 2 || len(names) != 2 || st.WriteErrors != 1 || st.WriteLost == 0 || st.Packets+st.WriteLost != total {
		t.Fatalf("stats %+v, files %v: want 2 files, 1 write error, its datagrams lost, the rest (%d in all) written", st, names, total)
	}
	n := 0
	for _, name := range names {
		frames := readAll(t, name)
		if name == first && (len(frames) == 0 || uint64(len(frames)) == st.Packets) {
			t.Fatalf("the first file holds %d of %d datagrams written", len(frames), st.Packets)
		}
		n += len(frames)
	}
	if uint64(n) != st.Packets {
		t.Fatalf("%d datagrams in the files, Stats.Packets %d", n, st.Packets)
	}
	if !strings.Contains(log.String(), "capture: next file") {
		t.Fatalf("no next file logged:\n%s", log.String())
	}
	// The full file ends in the next, so that replay --feed takes them
	// in order: room was left for its end frame.
	if n := 16 + len(appendEndFrame(nil, EndNextFile)); n != endRecordLen {
		t.Fatalf("an end frame's record is %d bytes, endRecordLen %d", n, endRecordLen)
	}
	if reason, ok := fileEnd(t, first); !ok || reason != EndNextFile {
		t.Fatalf("the full file ends with an end frame %v, reason %d: want the next file's (%d)", ok, reason, EndNextFile)
	}
}

// checkAfterFailedWrite checks a capture whose one run of failed writes
// was followed by datagrams next and next+1, written: the file holds
// those two only, as many bytes as Stats.Bytes (why: what a larger file
// means), and the log says the write failed once, then writing again.
func checkAfterFailedWrite(t *testing.T, path string, st Stats, log string, next int, why string) {
	t.Helper()
	frames := readAll(t, path)
	if len(frames) != 2 {
		t.Fatalf("%d frames in the file, want datagrams %d and %d", len(frames), next, next+1)
	}
	checkFrame(t, frames[0], next)
	checkFrame(t, frames[1], next+1)
	if fi, _ := os.Stat(path); uint64(fi.Size()) != st.Bytes {
		t.Fatalf("file of %d bytes, Stats.Bytes %d%s", fi.Size(), st.Bytes, why)
	}
	if n := strings.Count(log, "write failed"); n != 1 || !strings.Contains(log, "writing again") {
		t.Fatalf("%d write-failed lines, want 1, then writing again:\n%s", n, log)
	}
}

// TestFileDeleted: a capture file deleted while written to (a cleanup
// timer that took it) is noticed at the next flush: logged once, counted,
// and the capture goes on in a new file, as a rotation, holding every
// datagram put after the deletion, readable alone. Without it the rest of
// the run went to the deleted file, lost at the stop.
func TestFileDeleted(t *testing.T) {
	dir := t.TempDir()
	c, _, log := putAroundGone(t, dir, os.Remove)
	st := c.Stats()
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) != 1 || st.Files != 2 || st.Deleted != 1 {
		t.Fatalf("stats %+v, files %v after the first was deleted: want a new file holding datagrams 10 to 19, 2 files, 1 deleted", st, names)
	}
	frames := readAll(t, names[0])
	if len(frames) != 10 {
		t.Fatalf("%d frames in the new file, want datagrams 10 to 19", len(frames))
	}
	for k, fr := range frames {
		checkFrame(t, fr, 10+k)
	}
	if n := strings.Count(log.String(), "capture: file deleted"); n != 1 {
		t.Fatalf("%d file-deleted lines, want 1:\n%s", n, log.String())
	}
	// The stop's totals, after the last write, are the close line's (the
	// metrics endpoint is closed before it): every counter, files too.
	closed := log.String()[strings.LastIndex(log.String(), "\n{"):]
	for _, kv := range []string{`"packets":20`, `"files":2`, `"files_deleted":1`, `"write_lost":0`} {
		if !strings.Contains(closed, `"capture closed"`) || !strings.Contains(closed, kv) {
			t.Fatalf("the last line %s, want capture closed with %s", closed, kv)
		}
	}
}

// TestFileTruncated: a capture file cut to nothing while written to (a
// cleanup that empties files instead of deleting them, as logrotate's
// copytruncate does) is noticed at the next write, as a deleted one:
// writing on at the old offset would leave a hole where the header was,
// and the file unreadable from its start. The capture goes on in a new
// file; the cut one is left as it was made (empty).
func TestFileTruncated(t *testing.T) {
	dir := t.TempDir()
	c, first, log := putAroundGone(t, dir, func(path string) error { return os.Truncate(path, 0) })
	st := c.Stats()
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	fi, _ := os.Stat(first)
	if len(names) != 2 || names[0] != first || fi.Size() != 0 || st.Files != 2 || st.Deleted != 1 {
		t.Fatalf("stats %+v, files %v, the first of %d bytes after it was cut to 0: want it left empty, a new file holding datagrams 10 to 19, 2 files, 1 deleted or cut", st, names, fi.Size())
	}
	frames := readAll(t, names[1])
	if len(frames) != 10 {
		t.Fatalf("%d frames in the new file, want datagrams 10 to 19", len(frames))
	}
	for k, fr := range frames {
		checkFrame(t, fr, 10+k)
	}
	if n := strings.Count(log.String(), "capture: file truncated"); n != 1 {
		t.Fatalf("%d file-truncated lines, want 1:\n%s", n, log.String())
	}
}

// putAroundGone opens a capture in dir (dir/c-*.pcap), puts datagrams 0
// to 9 and waits until they are written, does gone to its file (deletes
// or cuts it), puts datagrams 10 to 19 and closes the capture; it returns
// the capture, its first file and its log.
func putAroundGone(t *testing.T, dir string, gone func(path string) error) (*Capture, string, *syncBuf) {
	t.Helper()
	base := filepath.Join(dir, "c.pcap")
	log := new(syncBuf)
	c, err := Open(Config{Base: base, Buffer: MinBuffer, Lines: testLines, Log: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	first := c.Path()
	var batch []rx.Packet
	for i := range 10 {
		batch = append(batch, datagram(i))
	}
	c.Put(batch, 0)
	for k := 0; c.Stats().Packets < 10; k++ { // flushed after flushEvery of quiet
		if k > 10000 {
			t.Fatal("the drainer never flushed")
		}
		time.Sleep(time.Millisecond)
	}
	if err := gone(first); err != nil {
		t.Fatal(err)
	}
	batch = batch[:0]
	for i := 10; i < 20; i++ {
		batch = append(batch, datagram(i))
	}
	c.Put(batch, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return c, first, log
}

// openSmall opens a capture in dir (dir/c-*.pcap) whose first file takes
// datagram 1 (396 bytes in the file), not 2 (sizeLimit).
func openSmall(t *testing.T, dir string) *Capture {
	t.Helper()
	c := openIn(t, dir)
	// The drainer has written only the header: no race.
	c.f = &sizeLimit{File: c.f.(*os.File), limit: 24 + 500}
	return c
}

// openIn opens a capture in dir, dir/c-*.pcap, logging nowhere.
func openIn(t *testing.T, dir string) *Capture {
	t.Helper()
	c, err := Open(Config{Base: filepath.Join(dir, "c.pcap"), Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFileTooLargeAtStop: a file that reaches its size limit with the
// stop's last write loses what did not fit (counted, Close says so), and
// no new file is made for nothing: a file of a header alone would be left
// by every such stop.
func TestFileTooLargeAtStop(t *testing.T) {
	dir := t.TempDir()
	c := openSmall(t, dir)
	c.Put([]rx.Packet{datagram(1), datagram(2)}, 0)
	if err := c.Close(); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Close with its last write too large: %v, want EFBIG", err)
	}
	st := c.Stats()
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) != 1 || st.Files != 1 || st.Packets != 1 || st.WriteLost != 1 {
		t.Fatalf("stats %+v, files %v: want the one file, datagram 1 in it, 2 lost", st, names)
	}
	checkFrame(t, readAll(t, names[0])[0], 1)
}

// TestCloseConcurrent: Closes called at the same time (two stops) all
// return once the capture is closed, with its error (here the last
// write's, the disk full), and so does a Close after.
func TestCloseConcurrent(t *testing.T) {
	c := openFull(t)
	c.Put([]rx.Packet{datagram(1), datagram(2)}, 0)
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- c.Close() }()
	}
	for range 4 {
		if err := <-errs; !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("a Close at the same time as others: %v, want the last write's error (ENOSPC)", err)
		}
	}
	if err := c.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("a Close after: %v, want the last write's error (ENOSPC)", err)
	}
}

// openFull opens a capture that writes to /dev/full (every write fails,
// the disk full) after its header.
func openFull(t *testing.T) *Capture {
	t.Helper()
	c, err := Open(Config{Path: filepath.Join(t.TempDir(), "c.pcap"), Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		c.Close()
		t.Skipf("no /dev/full: %v", err)
	}
	c.f.Close()
	c.f = full // the drainer has not written since Open's header: no race
	return c
}

// TestFileTooLargeBeforeStop: a file found full (EFBIG) by a write
// shortly before the stop, with datagrams put since: the stop writes them
// to the next file, which it ends as stopped. It made the next file
// without the end frame (the full file's stop takes none), read as a
// capture cut by a kill.
func TestFileTooLargeBeforeStop(t *testing.T) {
	dir := t.TempDir()
	c := openSmall(t, dir)
	c.Put([]rx.Packet{datagram(1), datagram(2)}, 0)
	writeFailedThenClose(t, c)
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) != 2 {
		t.Fatalf("files %v: want the full one and the next, datagrams 4 and 5 in it", names)
	}
	if frames := readAll(t, names[1]); len(frames) != 2 {
		t.Fatalf("%d datagrams in the next file, want 4 and 5", len(frames))
	}
	if reason, ok := fileEnd(t, names[1]); !ok || reason != EndStopped {
		t.Fatalf("the next file ends with an end frame %v, reason %d: want the stop's (%d)", ok, reason, EndStopped)
	}
}
