package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// snapshotMsgs returns about size bytes of snapshot messages (each a
// 2-byte length and the message) and how many.
func snapshotMsgs(size int) ([]byte, uint64) {
	var msgs []byte
	var n uint64
	for len(msgs) < size {
		m := fmt.Appendf(nil, "A message %d%s", n, strings.Repeat("x", int(n%40)))
		msgs = binary.BigEndian.AppendUint16(msgs, uint16(len(m)))
		msgs = append(msgs, m...)
		n++
	}
	return msgs, n
}

// fileSnapshots reads the snapshot frames of a capture file in order:
// "Z" a freeze, "M" a frame of snapshot messages (one letter per run),
// "S" a snapshot loaded, "U" resumed without one, "D" discarded.
func fileSnapshots(t *testing.T, path string) string {
	t.Helper()
	var b strings.Builder
	for _, fr := range readMarkers(t, path) {
		if !fr.Marker {
			continue
		}
		switch p := fr.Payload; {
		case func() bool { _, _, ok := Frozen(p); return ok }():
			b.WriteByte('Z')
		case func() bool { _, ok := SnapshotMessages(p); return ok }():
			if !strings.HasSuffix(b.String(), "M") {
				b.WriteByte('M')
			}
		case func() bool { _, _, ok := Snapshot(p); return ok }():
			b.WriteByte('S')
		case Resumed(p):
			b.WriteByte('U')
		case Discarded(p):
			b.WriteByte('D')
		}
	}
	return b.String()
}

// openRotating opens a capture of files of RotateSize MinRotate in a new
// directory, logging to log (nil: nowhere), and returns it with the
// directory.
func openRotating(t *testing.T, log *bytes.Buffer) (*Capture, string) {
	t.Helper()
	dir := t.TempDir()
	l := zerolog.Nop()
	if log != nil {
		l = zerolog.New(log)
	}
	c, err := Open(Config{Base: filepath.Join(dir, "c.pcap"), Buffer: MinBuffer, RotateSize: MinRotate, Lines: testLines, Log: l})
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

// TestRotateKeepsSnapshotWhole: a rotation due while a snapshot is being
// taken (delivery frozen, the lines' datagrams spilled, its messages
// written) waits for its load, so that the file holding the freeze holds
// the messages and the load too and replays them alone. The next file
// was opened as soon as the file reached RotateSize: the freeze in one
// file, the load in the next, neither replays the snapshot alone.
func TestRotateKeepsSnapshotWhole(t *testing.T) {
	c, dir := openRotating(t, nil)
	msgs, n := snapshotMsgs(200 << 10)
	at := int64(time.Hour) - 1
	c.Freeze(at, 5, false, 0)
	putAll(t, c, 2000) // about 1.5 MB spilled while the snapshot is fetched: past RotateSize
	c.SnapshotMessages(msgs, at+int64(time.Second))
	c.Snapshot(at+int64(time.Second), 100, n)
	putAll(t, c, 2000) // after the load: rotated again
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) < 2 {
		t.Fatalf("files %v: want 2 or more (about 3.3 MB in files of 1 MiB)", names)
	}
	var all []string
	for _, name := range names {
		all = append(all, fileSnapshots(t, name))
	}
	if all[0] != "ZMS" {
		t.Fatalf("the files' snapshot frames %q: want the freeze, the messages and the load all in the first", all)
	}
	for k, s := range all[1:] {
		if s != "" {
			t.Fatalf("file %d's snapshot frames %q: want none (%q)", k+1, s, all)
		}
	}
}

// TestRotateHoldBounded: a freeze that nothing in the file ends (a fetch
// longer than the lines' traffic of twice RotateSize) holds the rotation
// only until the file is twice RotateSize; the next file starts with the
// freeze said again, and holds its rotation the same way.
func TestRotateHoldBounded(t *testing.T) {
	var logs bytes.Buffer
	c, dir := openRotating(t, &logs)
	c.Freeze(int64(time.Hour)-1, 5, false, 0)
	names := heldFiles(t, c, dir, &logs, "a snapshot open")
	for k, name := range names {
		if s := fileSnapshots(t, name); s != "Z" {
			t.Fatalf("file %d's snapshot frames %q: want the freeze (said again in each file)", k, s)
		}
	}
}

// TestRotateHoldEndsAtDiscard: a snapshot discarded at a session change
// (Discarded: the new session unfroze delivery, and neither a load nor a
// resume follows) ends the rotation's wait for it, said in the file, and
// the capture goes on in files of RotateSize. Nothing said it: the
// rotation waited until the file held twice RotateSize, and logged that
// neither file replays the snapshot.
func TestRotateHoldEndsAtDiscard(t *testing.T) {
	var logs bytes.Buffer
	c, dir := openRotating(t, &logs)
	c.Freeze(int64(time.Hour)-1, 5, false, 0)
	putAll(t, c, 500)
	c.Discarded(int64(time.Hour) + 1)
	names := heldNoLonger(t, c, dir, &logs, "a snapshot open")
	if s := fileSnapshots(t, names[0]); s != "ZD" {
		t.Fatalf("the first file's snapshot frames %q: want the freeze and the discard", s)
	}
}

// heldNoLonger puts about 1.5 MB more of datagrams to c (of openRotating,
// in dir, logging to logs), a rotation's hold having ended, closes it
// and returns its files, having checked that they are 2 or more and that
// no hold given up was logged (said: what it waited for).
func heldNoLonger(t *testing.T, c *Capture, dir string, logs *bytes.Buffer, said string) []string {
	t.Helper()
	putAll(t, c, 1500) // about 1.5 MB in all: past RotateSize, short of twice it
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) < 2 {
		t.Fatalf("files %v: want 2 (about 1.5 MB in files of 1 MiB, nothing held)", names)
	}
	if strings.Contains(logs.String(), said) {
		t.Fatalf("logged %s at the rotation:\n%s", said, logs.String())
	}
	return names
}

// TestFileNamesSortWhenClockStepsBack: with the clock stepped back an
// hour before every file is made (at each rotation, and at a restart),
// the files' names still sort in the order they were made, each after the
// one before it: ls, a glob and mergecap -a take them in that order. They
// were named by the clock alone, each rotation's sorting first.
func TestFileNamesSortWhenClockStepsBack(t *testing.T) {
	start := time.Date(2026, 12, 6, 9, 30, 0, 0, time.UTC)
	var calls atomic.Int64
	now = func() time.Time { return start.Add(-time.Duration(calls.Add(1)) * time.Hour) }
	t.Cleanup(func() { now = time.Now })
	dir := t.TempDir()
	base := filepath.Join(dir, "c.pcap")
	var order []string
	for run := range 2 { // a restart: the second run's files after the first's
		var logs bytes.Buffer
		c, err := Open(Config{Base: base, Buffer: MinBuffer, RotateSize: MinRotate, Lines: testLines, Log: zerolog.New(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, c.Path())
		putAll(t, c, 3000) // about 2.4 MB: files of 1 MiB
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "capture: next file") {
				i := strings.Index(l, `"file":"`) + len(`"file":"`)
				order = append(order, l[i:i+strings.Index(l[i:], `"`)])
			}
		}
		if st := c.Stats(); st.Files < 2 {
			t.Fatalf("run %d: stats %+v, want 2 files or more", run, st)
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap")) // sorted by name
	if !slices.Equal(names, order) {
		t.Fatalf("the clock stepped back before each file: the files sorted by name\n%s\nin the order made\n%s\nwant the same",
			strings.Join(names, "\n"), strings.Join(order, "\n"))
	}
}

// TestRotateInsideSnapshotMessages: the rotation's wait given up while a
// snapshot's messages are written (the file at twice RotateSize part way
// through them): the next file starts frozen (its freeze said again) and
// holds every message of the snapshot, written again from the first, then
// its load, so that it replays the snapshot alone. It held the rest only:
// a replay counted the snapshot not held.
func TestRotateInsideSnapshotMessages(t *testing.T) {
	c, dir := openRotating(t, nil)
	msgs, n := snapshotMsgs(1536 << 10)
	at := int64(time.Hour) - 1
	c.Freeze(at, 5, false, 0)
	putAll(t, c, 1500)                           // about 1.2 MB
	for i := 0; c.Stats().Packets != 1500; i++ { // all in the file (the quiet ring's flush)
		if i == 5000 {
			t.Fatalf("datagrams not written: %+v", c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	c.SnapshotMessages(msgs, at+int64(time.Second))
	c.Snapshot(at+int64(time.Second), 100, n)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) != 2 {
		t.Fatalf("files %v: want 2, the second opened inside the snapshot's messages", names)
	}
	var got uint64
	for _, fr := range readMarkers(t, names[1]) {
		if m, ok := SnapshotMessages(fr.Payload); fr.Marker && ok {
			for len(m) >= 2 {
				m = m[min(len(m), 2+int(binary.BigEndian.Uint16(m))):]
				got++
			}
		}
	}
	if s := fileSnapshots(t, names[1]); s != "ZMS" || got != n {
		t.Fatalf("the second file's snapshot frames %q with %d messages: want the freeze, the snapshot's %d messages and its load", s, got, n)
	}
}

// TestRotateBetweenMessagesAndLoad: the rotation's wait given up (the file
// at twice RotateSize) after a snapshot's messages were written and before
// its load was (the writer's quiet flush between the two records) waits
// for the load, the next record: the messages and the load stay in one
// file, which replays the snapshot. The next file held the load alone
// after the freeze said again, and no replay loaded the snapshot.
func TestRotateBetweenMessagesAndLoad(t *testing.T) {
	c, dir := openRotating(t, nil)
	msgs, n := snapshotMsgs(700 << 10)
	at := int64(time.Hour) - 1
	c.Freeze(at, 5, false, 0)
	putAll(t, c, 1850) // about 1.5 MB, short of twice RotateSize; with the messages past it
	for i := 0; c.Stats().Packets != 1850; i++ {
		if i == 5000 {
			t.Fatalf("datagrams not written: %+v", c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	c.SnapshotMessages(msgs, at+int64(time.Second))
	for i := 0; c.SnapshotBuffer() == nil; i++ { // the messages written
		if i == 5000 {
			t.Fatal("the snapshot's messages not written")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(2 * flushEvery) // the quiet flush after them
	c.Snapshot(at+int64(time.Second), 100, n)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	var all []string
	for _, name := range names {
		all = append(all, fileSnapshots(t, name))
	}
	// The rotation held for the load may come right after it (an empty
	// next file, under load): the messages and the load share a file.
	if !slices.ContainsFunc(all, func(s string) bool { return strings.Contains(s, "MS") }) {
		t.Fatalf("the files' snapshot frames %q: want the messages and the load in one file", all)
	}
}

// snapshotMsgCount counts the snapshot messages of a file's FHRM frames.
func snapshotMsgCount(t *testing.T, path string) uint64 {
	t.Helper()
	var got uint64
	for _, fr := range readMarkers(t, path) {
		if m, ok := SnapshotMessages(fr.Payload); fr.Marker && ok {
			for len(m) >= 2 {
				m = m[min(len(m), 2+int(binary.BigEndian.Uint16(m))):]
				got++
			}
		}
	}
	return got
}

// TestFileDeletedInsideSnapshotMessages: the file deleted while a
// snapshot's messages are written (noticed at a flush of them, the
// buffer full of them going to the next file): the next file starts
// frozen and holds the snapshot's messages once, from the first, then its
// load, and says no message is in a file before it. It held the buffer's
// messages (from the middle of the snapshot), then all of them again from
// the first: more than the snapshot's count, and no replay loaded it.
func TestFileDeletedInsideSnapshotMessages(t *testing.T) {
	dir := t.TempDir()
	c := openIn(t, dir)
	first := c.Path()
	msgs, n := snapshotMsgs(3 << 20)
	at := int64(time.Hour) - 1
	c.Freeze(at, 5, false, 0)
	putAll(t, c, 100)
	for i := 0; c.Stats().Packets != 100; i++ { // in the file (the quiet ring's flush)
		if i == 5000 {
			t.Fatalf("datagrams not written: %+v", c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	c.SnapshotMessages(msgs, at+int64(time.Second))
	c.Snapshot(at+int64(time.Second), 100, n)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) != 1 || c.Stats().Deleted != 1 {
		t.Fatalf("files %v, stats %+v: want the one after the deleted one", names, c.Stats())
	}
	var before []uint64
	for _, fr := range readMarkers(t, names[0]) {
		if b, ok := FrozenAgain(fr.Payload); fr.Marker && ok {
			before = append(before, b)
		}
	}
	if s, got := fileSnapshots(t, names[0]), snapshotMsgCount(t, names[0]); s != "ZMS" || got != n || !slices.Equal(before, []uint64{0}) {
		t.Fatalf("the new file's snapshot frames %q with %d messages, freeze said again with %v before: want the freeze (0 before), the snapshot's %d messages and its load", s, got, before, n)
	}
}

// TestRotateAfterFailedRotation: a rotation that failed (the next file not
// created: the directory gone) left the end frame it wrote inside the
// file, which went on; the rotation made once the directory is back ends
// the file with an end frame again, so that the file ends in the next
// one and replay --feed takes them in order. It did not: the file's last
// frame was a datagram, read as a file cut short, and the next file
// refused as no continuation of it.
func TestRotateAfterFailedRotation(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "sub", "c.pcap")
	if err := os.Mkdir(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	c, err := Open(Config{Base: base, Buffer: MinBuffer, RotateSize: MinRotate, Lines: testLines, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	first := c.Path()
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(filepath.Dir(base), moved); err != nil {
		t.Fatal(err)
	}
	putAll(t, c, 2000) // about 1.5 MB: past RotateSize, the next file not created
	for i := 0; !strings.Contains(logs.String(), "next file not created"); i++ {
		if i == 5000 {
			t.Fatalf("no failed rotation logged:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Rename(moved, filepath.Dir(base)); err != nil {
		t.Fatal(err)
	}
	putAll(t, c, 500)
	for i := 0; c.Stats().Files < 2; i++ { // the quiet ring's flush rotates
		if i == 5000 {
			t.Fatalf("no rotation once the directory is back: %+v\n%s", c.Stats(), logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "sub", "c-*.pcap"))
	if len(names) < 2 || names[0] != first {
		t.Fatalf("files %v: want the first and one after it", names)
	}
	if reason, ok := fileEnd(t, first); !ok || reason != EndNextFile {
		t.Fatalf("the first file ends with an end frame %v, reason %d: want the next file's (%d)", ok, reason, EndNextFile)
	}
}

// TestFilesSayTheirPlace: every file of a capture starts with its begin
// frame, its first: the capture's run (the same in all its files, another
// in the next Open's), the file's index in it (0, 1, 2, ... in the order
// written) and the name of the file before. Nothing in a rotated file
// said which file came before it: replay --feed of a capture's files with
// one missing from the middle went on across the hole, and a file
// replayed alone could not say it was not the first.
func TestFilesSayTheirPlace(t *testing.T) {
	c, dir := openRotating(t, nil)
	putAll(t, c, 6000) // about 4.5 MB in files of 1 MiB
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(Config{Base: filepath.Join(dir, "c.pcap"), Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, c2, 10)
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) < 4 {
		t.Fatalf("files %v: want 3 or more of the first capture, one of the second", names)
	}
	var run0 uint64
	for k, name := range names {
		frames := readMarkers(t, name)
		run, index, prev, ok := Begin(frames[0].Payload)
		if !frames[0].Marker || !ok {
			t.Fatalf("%s starts with % x: want its begin frame", filepath.Base(name), frames[0].Payload[:min(20, len(frames[0].Payload))])
		}
		last := k == len(names)-1 // the second capture's
		wantIndex, wantPrev := uint64(k), ""
		if k > 0 && !last {
			wantPrev = filepath.Base(names[k-1])
		}
		if last {
			wantIndex = 0
		}
		if k == 0 {
			run0 = run
		}
		if index != wantIndex || prev != wantPrev || (run == run0) == last {
			t.Errorf("%s begins file %d of run %x, after %q; want file %d of run %x (another for the second capture: %v), after %q",
				filepath.Base(name), index, run, prev, wantIndex, run0, last, wantPrev)
		}
		for _, fr := range frames[1:] {
			if _, _, _, ok := Begin(fr.Payload); ok && fr.Marker {
				t.Errorf("%s: a begin frame at frame %d: want one, the first", filepath.Base(name), fr.Index)
			}
		}
	}
}

// TestRotationSyncsFiles: a file the capture went on from is flushed to
// the disk (fsync) before it is let go, and its directory after the next
// file is made; the last file at Close. Nothing was: a power loss after a
// rotation lost what the kernel had not yet written back of the files
// before (up to 30 s of them by default), possibly inside a record, the
// next file going on after the one cut (replay --feed refuses it).
func TestRotationSyncsFiles(t *testing.T) {
	var mu sync.Mutex
	var synced []string
	defer func(f func(interface{ Sync() error }) error) { syncFile = f }(syncFile)
	syncFile = func(f interface{ Sync() error }) error {
		if n, ok := f.(interface{ Name() string }); ok {
			mu.Lock()
			synced = append(synced, n.Name())
			mu.Unlock()
		}
		return f.Sync()
	}
	c, dir := openRotating(t, nil)
	putAll(t, c, 6000) // about 4.5 MB in files of 1 MiB
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) < 3 {
		t.Fatalf("files %v: want 3 or more", names)
	}
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for _, name := range names {
		want = append(want, name, dir) // the file, then its directory (the next file's entry)
	}
	if !slices.Equal(synced, want) {
		t.Errorf("synced %q\nwant   %q", synced, want)
	}
}

// TestFileNameAfterCompressedFiles: the files of a run before, compressed
// since (gzip's name.pcap.gz, which replay reads), still come before the
// next run's first file when the clock stepped back at the restart: its
// name takes the microsecond after theirs. They were not counted as the
// base's files: the new file sorted before them.
func TestFileNameAfterCompressedFiles(t *testing.T) {
	start := time.Date(2026, 12, 6, 9, 30, 0, 0, time.UTC)
	now = func() time.Time { return start.Add(-time.Hour) }
	t.Cleanup(func() { now = time.Now })
	dir := t.TempDir()
	base := filepath.Join(dir, "c.pcap")
	earlier := FileName(base, start) + ".gz"
	if err := os.WriteFile(earlier, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{FileName(base, start.Add(time.Hour)) + "x", FileName(base, start.Add(time.Hour))[:len(dir)+9] + ".pcap"} {
		if err := os.WriteFile(other, nil, 0o600); err != nil { // no file of base's
			t.Fatal(err)
		}
	}
	c, err := Open(Config{Base: base, Buffer: MinBuffer, Lines: testLines, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if want := FileName(base, start.Add(time.Microsecond)); c.Path() != want {
		t.Errorf("the clock an hour behind %s: the capture is %s; want %s, after it", filepath.Base(earlier), filepath.Base(c.Path()), filepath.Base(want))
	}
}

// moldPacket returns a MoldUDP64 packet of session s from seq with n
// messages of 3 bytes.
func moldPacket(s moldudp64.Session, seq uint64, n int) []byte {
	b := moldudp64.AppendHeader(nil, s, seq, uint16(n))
	for range n {
		b = append(b, 0, 3, 'S', 0, 0)
	}
	return b
}

// TestRotateRestatesOpenRerequest: a file opened while a range
// re-requested in the file before is not yet filled (the rotation's wait
// for it given up at twice RotateSize: TestRotateHoldForRerequestBounded)
// starts, after its begin frame, with the range said again
// (RerequestAgain): from the first
// number the answers there did not fill, of the session they say (not a
// stray's datagram before the request); a file opened after the range
// was filled (by an answer or a line's copy), given up or abandoned for a
// snapshot does not. Nothing
// said so: a replay of the later file alone took the range for part of
// its start gap, and its answers as late.
func TestRotateRestatesOpenRerequest(t *testing.T) {
	s := moldudp64.NewSession("SESS000001")
	c, dir := openRotating(t, nil)
	at := int64(time.Hour)
	other := moldudp64.NewSession("OTHER00001")
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(s, 110, 2), RxTime: at}}, 0)
	c.Put([]rx.Packet{{Line: 1, Data: moldPacket(other, 5, 1), RxTime: at}}, 0) // a stray, the line datagram before the request
	c.Rerequested(at+1, 100, 10)
	c.Recovered(moldPacket(s, 100, 4), at+2, 0)                                       // says the session
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(other, 104, 6), RxTime: at + 3}}, 0) // another session's: fills nothing
	putAll(t, c, 4500)                                                                // about 3.6 MB: the rotation's wait for the range given up
	c.Put([]rx.Packet{{Line: 1, Data: moldPacket(s, 104, 6), RxTime: at + 4}}, 0)     // a line's late copy fills the rest
	putAll(t, c, 2000)                                                                // a rotation: nothing open
	c.Rerequested(at+5, 200, 5)
	c.GaveUp(at+6, 0)
	putAll(t, c, 2000) // a rotation: given up
	c.Rerequested(at+7, 300, 5)
	c.Freeze(at+8, 300, false, 0)
	c.Resumed(at + 9)
	putAll(t, c, 2000) // a rotation: abandoned for the snapshot
	checkSaidAgain(t, c, dir, 5, func(payload []byte) (string, bool) {
		first, session, ok := RerequestAgain(payload)
		lo, count, _ := Rerequest(payload)
		return fmt.Sprintf("%d+%d of %d, %s", lo, count, first, session), ok
	}, "104+6 of 100, SESS000001")
}

// checkSaidAgain closes c, a capture in dir, and checks that it wrote
// files or more, of which only the second starts with what said reads
// of a marker frame's payload (ok: a frame it reads), as second, right
// after its begin frame.
func checkSaidAgain(t *testing.T, c *Capture, dir string, files uint64, said func(payload []byte) (string, bool), second string) {
	t.Helper()
	if err := c.Close(); err != nil || c.Stats().Files < files {
		t.Fatalf("close: %v, stats %+v: want %d files or more", err, c.Stats(), files)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	for k, name := range names {
		frames := readMarkers(t, name)
		var got []string
		for _, fr := range frames {
			if s, ok := said(fr.Payload); ok && fr.Marker {
				got = append(got, fmt.Sprintf("frame %d: %s", fr.Index, s))
			}
		}
		want := []string(nil)
		if k == 1 {
			want = []string{fmt.Sprintf("frame %d: %s", frames[1].Index, second)}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s (file %d): said again %q; want %q", filepath.Base(name), k+1, got, want)
		}
	}
}

// TestRotateRestatesHeldRestart: a file opened while the handler's
// arbiter held behind lines that went back (Behind: a sequence restart
// held) starts, after its begin frame, with the hold said again
// (HeldBehind: its next sequence number, and the session the arbiter
// follows, not that of a stray sender's datagram just before the hold);
// one opened after a line of the session
// brought numbers past it does not. Nothing said it: a replay of the
// later file alone followed the restarted numbers from its start
// (TestReplayFeedHeldRestartAcrossFiles).
func TestRotateRestatesHeldRestart(t *testing.T) {
	s := moldudp64.NewSession("SESS000001")
	c, dir := openRotating(t, nil)
	at := int64(time.Hour)
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(s, 500, 10), RxTime: at}}, 0)
	c.Put([]rx.Packet{{Line: 1, Data: moldPacket(s, 1, 10), RxTime: at + 1}}, 0) // back to 1
	c.Put([]rx.Packet{{Line: 1, Data: moldPacket(moldudp64.NewSession("STRAY00001"), 7, 1), RxTime: at + 1}}, 0)
	c.Behind(at+2, 510, s)
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(s, 11, 10), RxTime: at + 3}}, 0)  // behind still
	putAll(t, c, 2000)                                                             // a rotation: held
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(s, 505, 10), RxTime: at + 4}}, 0) // past 510: no longer
	putAll(t, c, 2000)                                                             // a rotation
	checkSaidAgain(t, c, dir, 3, func(payload []byte) (string, bool) {
		next, session, ok := HeldBehind(payload)
		return fmt.Sprintf("%d of %s", next, session), ok
	}, "510 of SESS000001")
}

// rerequestFrames reads a capture file's FHRQ frames, "again lo+count of
// first" for a range said again (RerequestAgain), "first+count" for one
// re-requested, and the first numbers of its answers ("answer seq").
func rerequestFrames(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, fr := range readMarkers(t, path) {
		if !fr.Marker {
			if Answer(fr.SrcMAC) {
				if p, err := moldudp64.Parse(fr.Payload); err == nil {
					out = append(out, fmt.Sprintf("answer %d", p.Seq))
				}
			}
			continue
		}
		lo, count, ok := Rerequest(fr.Payload)
		if !ok {
			continue
		}
		if first, _, again := RerequestAgain(fr.Payload); again {
			out = append(out, fmt.Sprintf("again %d+%d of %d", lo, count, first))
		} else {
			out = append(out, fmt.Sprintf("%d+%d", lo, count))
		}
	}
	return out
}

// waitWritten waits until the capture wrote n datagrams to its files (the
// quiet ring's flush).
func waitWritten(t *testing.T, c *Capture, n uint64) {
	t.Helper()
	for i := 0; c.Stats().Packets != n; i++ {
		if i == 5000 {
			t.Fatalf("datagrams not written: %+v, want %d", c.Stats(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRotateKeepsRerequestWhole: a rotation due while a range
// re-requested is open (the handler holding the lines' datagrams behind
// it) waits until the answer fills it, so that the file holding the
// range's frame holds the datagrams held behind it and the answer too,
// and the next file starts with nothing open (no range said again). The
// next file was opened as soon as the file reached RotateSize: it
// started inside the range (said again) with the answer, and the
// datagrams held behind the range in the file before, so that a replay
// of it alone had them as a gap.
func TestRotateKeepsRerequestWhole(t *testing.T) {
	var logs bytes.Buffer
	s := moldudp64.NewSession("SESS000001")
	c, dir := openRotating(t, &logs)
	at := int64(time.Hour)
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(s, 90, 10), RxTime: at}}, 0)
	c.Rerequested(at+1, 100, 10)
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(s, 110, 2), RxTime: at + 2}}, 0) // held behind the range
	putAll(t, c, 2000)                                                            // about 1.6 MB: past RotateSize
	waitWritten(t, c, 2002)                                                       // a flush past RotateSize, the range open
	c.Recovered(moldPacket(s, 100, 10), at+3, 0)                                  // fills it
	putAll(t, c, 2000)                                                            // a rotation
	if err := c.Close(); err != nil || c.Stats().Files < 2 {
		t.Fatalf("close: %v, stats %+v: want 2 files or more", err, c.Stats())
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	var all [][]string
	for _, name := range names {
		all = append(all, rerequestFrames(t, name))
	}
	if !slices.Equal(all[0], []string{"100+10", "answer 100"}) || slices.ContainsFunc(all[1:], func(f []string) bool { return len(f) != 0 }) {
		t.Fatalf("the files' re-requests and answers %q: want the range and its answer in the first, none after", all)
	}
	if strings.Contains(logs.String(), "a re-request open") {
		t.Fatalf("logged a re-request open at the rotation:\n%s", logs.String())
	}
}

// TestRotateHoldForRerequestBounded: a range re-requested that nothing in
// the file fills, gives up or drops (never answered) holds the rotation
// only until the file is twice RotateSize (logged once a file); the next
// file starts with the range said again, and holds its rotation the same
// way.
func TestRotateHoldForRerequestBounded(t *testing.T) {
	var logs bytes.Buffer
	c, dir := openRerequested(t, &logs)
	names := heldFiles(t, c, dir, &logs, "a re-request open")
	checkRerequests(t, names, []string{"100+10"}, "again 100+10 of 100")
}

// TestRotateHoldEndsAtSessionChange: a range re-requested that the
// handler dropped at a session change (Discarded: the arbiter forgot it
// with the old session, neither filled nor given up) ends the rotation's
// wait for it, and the next file does not say it again. Nothing said it:
// the rotation waited until the file held twice RotateSize, and every
// file after began with a range of the old session said again.
func TestRotateHoldEndsAtSessionChange(t *testing.T) {
	var logs bytes.Buffer
	c, dir := openRerequested(t, &logs)
	putAll(t, c, 500)
	c.Discarded(int64(time.Hour) + 2)
	checkRerequests(t, heldNoLonger(t, c, dir, &logs, "a re-request open"), []string{"100+10"})
}

// TestRotateRerequestFilledOutOfOrder: a range re-requested whose
// answers, and a line's copy, come out of order (the arbiter holds those
// ahead of its next, and delivers them once the range's first numbers
// come: filled) ends the rotation's wait for it once filled, as the
// arbiter took it, and the next file does not say it again. The capture
// counted only what brought the range's first number not yet filled:
// the range stayed open to twice RotateSize, and the files after began
// with it said again, from 107.
func TestRotateRerequestFilledOutOfOrder(t *testing.T) {
	var logs bytes.Buffer
	c, dir := openRerequested(t, &logs)
	s := moldudp64.NewSession("SESS000001")
	c.Recovered(moldPacket(s, 104, 3), int64(time.Hour)+2, 0)
	c.Put([]rx.Packet{{Line: 1, Data: moldPacket(s, 107, 3), RxTime: int64(time.Hour) + 3}}, 0) // the line's copy
	c.Recovered(moldPacket(s, 100, 4), int64(time.Hour)+4, 0)                                   // fills it
	putAll(t, c, 500)
	checkRerequests(t, heldNoLonger(t, c, dir, &logs, "a re-request open"), []string{"100+10", "answer 104", "answer 100"})
}

// openRerequested opens a capture as openRotating does, and puts a
// packet of 90+10 and the re-request of 100+10.
func openRerequested(t *testing.T, logs *bytes.Buffer) (*Capture, string) {
	t.Helper()
	c, dir := openRotating(t, logs)
	c.Put([]rx.Packet{{Line: 0, Data: moldPacket(moldudp64.NewSession("SESS000001"), 90, 10), RxTime: int64(time.Hour)}}, 0)
	c.Rerequested(int64(time.Hour)+1, 100, 10)
	return c, dir
}

// checkRerequests checks that the first of a capture's files has the
// re-requests and answers first (rerequestFrames), and the others later
// each.
func checkRerequests(t *testing.T, names []string, first []string, later ...string) {
	t.Helper()
	for k, name := range names {
		want := later
		if k == 0 {
			want = first
		}
		if got := rerequestFrames(t, name); !slices.Equal(got, want) {
			t.Fatalf("file %d's re-requests %q: want %q", k, got, want)
		}
	}
}

// heldFiles puts about 6 MB of datagrams to c (of openRotating, in dir,
// logging to logs), whose rotation is held by what nothing in them ends,
// closes it and returns its files, having checked that they are 3 or
// more, each at most twice RotateSize and a buffer, and that the hold
// given up was logged (said: what it waited for) once per file after the
// first.
func heldFiles(t *testing.T, c *Capture, dir string, logs *bytes.Buffer, said string) []string {
	t.Helper()
	putAll(t, c, 8000)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "c-*.pcap"))
	if len(names) < 3 {
		t.Fatalf("files %v: want 3 or more (about 6 MB in files of up to 2 MiB)", names)
	}
	for k, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if max := int64(2*MinRotate + bufSize + 1<<16); fi.Size() > max {
			t.Fatalf("file %d of %d bytes: want at most %d (twice RotateSize and a buffer)", k, fi.Size(), max)
		}
	}
	if n := strings.Count(logs.String(), said); n != len(names)-1 {
		t.Fatalf("the held rotation given up logged %d times, want once per file after the first (%d):\n%s", n, len(names)-1, logs.String())
	}
	return names
}
