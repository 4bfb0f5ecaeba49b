package capture

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// DefaultBuffer is the ring's size when Config.Buffer is 0: at 1 Gbit/s
// of line traffic (both lines) half a second of the drainer or the disk
// falling behind.
const DefaultBuffer = 64 << 20

// MinBuffer and MaxBuffer bound Config.Buffer.
const (
	MinBuffer = 1 << 20
	MaxBuffer = 1 << 30
)

// MinRotate and MaxRotate bound Config.RotateSize (0: never rotate).
const (
	MinRotate = 1 << 20
	MaxRotate = 1 << 40
)

// flushEvery is how long the drainer lets written datagrams wait in its
// buffer while the ring is quiet: what a crash can lose beyond the ring.
const flushEvery = 200 * time.Millisecond

// pollEvery is how long the drainer sleeps after each pass over the ring.
// The receive thread never wakes it (that would cost the hot path a
// futex): the ring must hold this long of traffic, which it does by far.
const pollEvery = time.Millisecond

// endRecordLen is the size of the record of a file's end frame (mark.go:
// End): a pcap record header and the frame.
const endRecordLen = 16 + 14 + 5

// bufSize is the drainer's write buffer.
const bufSize = 1 << 20

// Config sets up a capture.
type Config struct {
	// Path is the file to create; it must not exist (see FileName). "":
	// FileName(Base, now), or of the next microsecond free when a file
	// has that name, and never earlier than a name of Base's files
	// already there (createUnique).
	Path string
	// Buffer is the ring's size in bytes, rounded up to a power of two,
	// MinBuffer..MaxBuffer (0: DefaultBuffer).
	Buffer int
	// Lines are the feed's lines: a datagram's frame is addressed to its
	// line's group and port, from its source (the line's Source, else
	// 0.0.0.0, when the receiver did not know it).
	Lines []rx.LineConfig
	Log   zerolog.Logger
	// RotateSize: once the file holds at least this many bytes, the
	// writer closes it and goes on in a new one, named by FileName(Base,
	// the time of the switch, or the microsecond after the file before's
	// when the clock stepped back) (MinRotate..MaxRotate; 0: never),
	// once no snapshot nor re-request is open, or at twice RotateSize
	// (holdRotation). Every file starts with its own pcap header and
	// holds whole datagrams only.
	RotateSize int64
	// Base is the name new files are made from (capture.path); "": Path
	// (one of the two must be given).
	Base string
}

// Stats count what a capture did.
type Stats struct {
	Packets     uint64 // datagrams written to the file
	Bytes       uint64 // bytes written to the file (pcap headers and frames)
	Dropped     uint64 // datagrams left out because the ring was full
	WriteErrors uint64 // failed writes to the file
	WriteLost   uint64 // datagrams lost with a failed write
	Files       uint64 // files written to: 1, and one more per rotation (or a file too large, deleted or truncated)
	Deleted     uint64 // files deleted or truncated while written to (then a new one)
}

// Capture is an open capture file and its ring.
type Capture struct {
	ring   ring
	answer [1]rx.Packet // Recovered's, on the receive thread
	path   string
	log    zerolog.Logger
	f      file
	dst    []netip.AddrPort // by line
	src    []netip.Addr     // by line: when the datagram's is unknown

	// The drainer's state.
	pw      *pcapgo.Writer
	buf     memBuf
	endPW   *pcapgo.Writer // a file's end frame, written to it straight (writeEnd)
	endBuf  memBuf
	frame   []byte
	id      uint16
	pending uint64 // datagrams in buf
	off     int64  // bytes of the file known written
	stop    chan struct{}
	done    chan struct{}
	// Close's: the first call closes, the others wait for it.
	closeOnce sync.Once
	closeErr  error
	failing   bool  // the last flush failed
	lastErr   error // its error, for Close
	// Rotation (Config.RotateSize, Base); the drainer's, after Open.
	rotateSize int64
	base       string
	first      string    // the first file (Path)
	rotateFail bool      // the last rotation failed: logged, the file goes on
	lastName   time.Time // the latest time in a name of base's (createUnique)
	header     []byte    // the pcap file header, each new file's first bytes
	gone       bool      // the file was found deleted (logged, counted)
	tooLarge   bool      // the file reached its size limit (EFBIG)
	// The capture's run and the file's index in it, said by the begin
	// frame after each file's header (fileHead); headLen: the header and
	// begin frame's bytes, the buffer's first while the file has none
	// (off 0).
	run, index uint64
	headLen    int
	// snapOpen: the file holds a snapshot's freeze or messages and not
	// yet its load or resume (holdRotation); holdWarned: a rotation held
	// for it, or for a re-request open (reqFiled), past its bound was
	// logged.
	snapOpen, holdWarned bool
	// The freeze open (snapOpen): its time, the arbiter's next sequence
	// number then, and whether it was at a gap with no datagram written
	// since; said again at the start of a file opened inside the snapshot
	// (restateFreeze). snapRestarted: the snapshot's messages were
	// written again from their first in a file opened while they were
	// written (writeSnapshot), once; snapRestart: they are to be
	// (restateFreeze decided it, writeSnapshot does it). snapWriting:
	// writeSnapshot is under way (snapHeld is the drainer's).
	freezeAt                   int64
	freezeFrom                 uint64
	freezeGap                  bool
	snapRestarted, snapRestart bool
	snapWriting                bool
	// The messages of the freeze open (snapOpen) appended to FHRM
	// frames (snapWritten: since the freeze, or since they were started
	// again from the first), and of those the buffer's (snapBuffered,
	// from its byte snapBufAt on): what the files before a new one hold
	// is their difference, said in its restated freeze.
	snapWritten, snapBuffered uint64
	snapBufAt                 int
	// freezeBuffered: the freeze's own frame is in the buffer, not yet
	// written: a new file gets it with the buffer.
	freezeBuffered bool
	// req: the range re-requested last (a Rerequested record) while it
	// is open, as far as the frames appended say: not yet filled to its
	// end by the answers or the lines' datagrams of its session (the
	// session its answers say, else that of the line datagram before
	// it, lastSession), nor given up, nor abandoned for a snapshot, nor
	// dropped at a session change (Discarded), nor declared missing by
	// the arbiter itself (Declared); reqFiled: req as the file's
	// bytes written hold it (at the last flush): a rotation waits for it
	// (holdRotation), and a file opened with one open starts with it said
	// again (restateRerequest).
	req, reqFiled openRequest
	lastSession   moldudp64.Session
	// held: the handler's arbiter holding at its next sequence number
	// behind lines that went back (Behind), until a line datagram of its
	// session brings numbers past it (next 0: none); heldFiled: held as
	// the file's bytes written hold it: a file opened with it open starts
	// with it said again (restateHeld).
	held, heldFiled heldBehind
	// loadDue: a snapshot's messages written (writeSnapshot), its load
	// not yet: the next record (holdRotation).
	loadDue bool
	// lostDrained is the empty poll (mark.go) of a datagram a failed
	// write lost, for the next datagram written (0: none).
	lostDrained int64
	// The datagrams failed writes lost (and what lost marker frames they
	// lost held), for a lost marker frame before the next frame written;
	// lostAt: the first one's receive time.
	lostRing, lostWrite uint64
	lostAt              int64
	// The snapshot's messages handed over (SnapshotMessages): set by the
	// receive thread before it publishes their record, written and let
	// go by the drainer, which then sets snapDone. snapOut: the receive
	// thread's, the buffer handed over and not yet given back
	// (SnapshotBuffer).
	snapHeld   []byte
	snapDone   atomic.Bool
	snapOut    []byte
	snapOutSet bool

	packets, bytes, writeErrs, writeLost, files, deleted atomic.Uint64

	// The file retired last (retire): flushed and closed on a goroutine
	// of its own; retireErr its failure, read once it is done.
	retiring  sync.WaitGroup
	retireErr error
}

// file is what the drainer writes to: an *os.File (a test's in
// TestWriteCutBack).
type file interface {
	Write([]byte) (int, error)
	Truncate(int64) error
	Seek(int64, int) (int64, error)
	Stat() (os.FileInfo, error)
	Sync() error
	Close() error
}

// memBuf is the drainer's buffer: pcapgo writes into it, and it never
// fails, so a failed write to the file loses only what it held.
type memBuf struct{ b []byte }

func (m *memBuf) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }

// RingBytes is the size of the ring Open maps and touches for a
// Config.Buffer of buffer bytes (0: DefaultBuffer), rounded up to a power
// of two: what the process holds for the capture from its start (the
// feed file's memory bound counts it).
func RingBytes(buffer int) int64 {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return 1 << bits.Len(uint(buffer-1))
}

// Open creates the file, writes the pcap header, maps the ring (its pages
// touched now, not by the receive thread) and starts the drainer.
func Open(cfg Config) (*Capture, error) {
	size := cfg.Buffer
	if size == 0 {
		size = DefaultBuffer
	}
	if size < MinBuffer || size > MaxBuffer {
		return nil, fmt.Errorf("open capture: buffer of %d bytes out of range (%d..%d)", size, MinBuffer, MaxBuffer)
	}
	if cfg.RotateSize != 0 && (cfg.RotateSize < MinRotate || cfg.RotateSize > MaxRotate) {
		return nil, fmt.Errorf("open capture: rotate size of %d bytes out of range (%d..%d, or 0)", cfg.RotateSize, MinRotate, MaxRotate)
	}
	if cfg.Path == "" && cfg.Base == "" {
		return nil, errors.New("open capture: no file named (Path or Base)")
	}
	size = int(RingBytes(size))
	c := &Capture{path: cfg.Path, first: cfg.Path, log: cfg.Log, stop: make(chan struct{}), done: make(chan struct{}),
		frame: make([]byte, 0, 2048), rotateSize: cfg.RotateSize, base: cfg.Base}
	if c.base == "" {
		c.base = cfg.Path
	}
	for _, l := range cfg.Lines {
		c.dst = append(c.dst, netip.AddrPortFrom(l.Group, l.Port))
		src := l.Source
		if !src.Is4() {
			src = netip.IPv4Unspecified()
		}
		c.src = append(c.src, src)
	}
	var f *os.File
	var err error
	opened := now()
	if cfg.Path == "" {
		f, c.path, c.lastName, err = createUnique(c.base, opened, latestName(c.base))
		c.first, opened = c.path, c.lastName
	} else if f, err = createFile(cfg.Path); err == nil {
		c.lastName = latestName(c.base) // the next file's name sorts after Path's
	}
	if err != nil {
		return nil, err
	}
	c.f = f
	c.buf.b = make([]byte, 0, bufSize+2*(1<<16))
	c.pw = pcapgo.NewWriterNanos(&c.buf)
	c.endPW = pcapgo.NewWriterNanos(&c.endBuf)
	err = c.pw.WriteFileHeader(pcap.Snaplen, layers.LinkTypeEthernet) // into memory
	if err == nil {
		// The frames carry batch marks (mark.go): said in sigfigs, which
		// pcapgo writes as 0 in its byte order (little-endian).
		binary.LittleEndian.PutUint32(c.buf.b[12:16], FileMark)
	}
	c.header = append([]byte(nil), c.buf.b...)
	// The file's first frame says its place in the capture (mark.go:
	// Begin): the buffer starts with it and the header (headLen), which a
	// failed write keeps together for the next (flush).
	var run [8]byte
	rand.Read(run[:]) // never fails (crypto/rand)
	c.run = binary.BigEndian.Uint64(run[:])
	c.buf.b = append(c.buf.b[:0], c.fileHead(0, "", opened)...)
	c.headLen = len(c.buf.b)
	if err == nil {
		// A disk full at start fails the write as it would later: logged
		// and counted, the header kept for the first write that succeeds
		// (flush); the feed starts.
		c.flushLogged()
	}
	if err != nil {
		f.Close()
		os.Remove(c.path)
		return nil, fmt.Errorf("open capture %s: write header: %w", c.path, err)
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		f.Close()
		os.Remove(c.path)
		return nil, fmt.Errorf("open capture %s: map a ring of %d bytes: %w", c.path, size, err)
	}
	for i := 0; i < len(mem); i += 4096 { // MAP_POPULATE is best effort
		mem[i] = 0
	}
	c.ring.buf, c.ring.size, c.ring.mask, c.ring.keep = mem, uint64(size), uint64(size-1), eventRoom
	c.files.Store(1)
	go c.drain()
	return c, nil
}

func createFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("open capture: %w (a capture is never overwritten)", err)
		}
		return nil, fmt.Errorf("open capture: %w", err)
	}
	return f, nil
}

// Path is the capture's first file (with RotateSize, later ones are
// logged as they are opened, "capture: next file").
func (c *Capture) Path() string { return c.first }

// BufferSize is the ring's size in bytes.
func (c *Capture) BufferSize() int { return int(c.ring.size) }

// Put copies the datagrams of a batch into the ring, to be written to the
// file. Only one goroutine may call it (the receive thread), and not after
// Close. It never blocks and allocates nothing; a datagram the ring has no
// room for is left out of the capture and counted. drainedAt is when the
// receive thread last found every line empty (an empty poll) since the
// batch before, 0 when it did not: the file marks the batch with it, so
// that a replay ticks the arbiter where the handler did (mark.go).
func (c *Capture) Put(pkts []rx.Packet, drainedAt int64) { c.ring.put(pkts, drainedAt) }

// Failed notes a receive call that failed with nothing read at now (where
// the receive thread called Arbiter.Advance); drainedAt is Put's for the
// next batch so far (the empty poll since the batch before, 0: none). The
// run of failures since the latest empty poll goes to the file before the
// next batch, a marker frame (mark.go), so that a replay advances the
// arbiter where the handler did. The receive thread only, as Put: a few
// stores, nothing written until the next Put.
func (c *Capture) Failed(now, drainedAt int64) { c.ring.failed(now, drainedAt) }

// Recovered copies a re-request answer the receive thread received at
// rxTime (the MoldUDP64 packet, data) into the ring, to be written to the
// file apart from the lines' datagrams (mark.go: Answer), so that a replay
// can tell what recovery repaired live. drainedAt is Put's for the next
// batch so far (the empty poll since the batch before, 0: none): the
// answer's frame carries it (mark.go: Drained), so that a replay ticks
// the arbiter there before it offers the answer, as the handler did (the
// batch's mark comes after). The receive thread only, as Put; it
// allocates nothing. An answer the ring has no room for is left out,
// counted as a datagram's.
func (c *Capture) Recovered(data []byte, rxTime, drainedAt int64) {
	c.answer[0] = rx.Packet{Data: data, Line: answerLine, RxTime: rxTime}
	c.ring.answer(c.answer[:], drainedAt)
	c.answer[0].Data = nil
}

// RecoveredDropped is Recovered for an answer the receive thread's
// arbiter had no room to hold (its spill full: Arbiter.OfferRecovered's
// dropped): written as Recovered writes it (a replay's arbiter, in the
// same state, drops it too), but the range re-requested is not filled by
// it: its numbers are still missing live, asked again, and the rotation
// still waits for them (holdRotation). Before, they were counted filled:
// the range was taken as filled at the answer before them, and the file
// rotated while the handler still held behind it.
func (c *Capture) RecoveredDropped(data []byte, rxTime, drainedAt int64) {
	c.answer[0] = rx.Packet{Data: data, Line: droppedLine, RxTime: rxTime}
	c.ring.answer(c.answer[:], drainedAt)
	c.answer[0].Data = nil
}

// Snapshot notes a snapshot the receive thread loaded at now (the books
// rebuilt from it), delivery resuming at sequence number next, of
// messages messages: a marker frame (mark.go: Snapshot), for its messages
// are not in the file. The receive thread only, as Put.
func (c *Capture) Snapshot(now int64, next, messages uint64) {
	c.ring.event(snapMark, 0, now, next, messages)
}

// GaveUp notes that the receive thread gave up at now the range it was
// re-requesting (Arbiter.Abandon: declared missing, what was held behind
// it delivered): a marker frame (mark.go: GaveUp), so that a replay of the
// answers gives it up there too. drainedAt is Recovered's: the frame
// carries the empty poll before it (mark.go: Drained). The receive thread
// only, as Put.
func (c *Capture) GaveUp(now, drainedAt int64) {
	c.ring.event(giveUpMark, 0, now, 0, uint64(drainedAt))
}

// Freeze notes that the receive thread froze delivery at now to fetch a
// snapshot (Arbiter.Freeze), its arbiter's next sequence number from;
// atGap: as the arbiter declared a gap at now (during a batch, written
// before it), else between batches: a marker frame (mark.go: Frozen), so
// that a replay spills the lines from there as the handler did.
// drainedAt is Recovered's: the frame carries the empty poll before it
// (mark.go: Drained), which a replay ticks at before it freezes. The
// receive thread only, as Put.
func (c *Capture) Freeze(now int64, from uint64, atGap bool, drainedAt int64) {
	var g byte
	if atGap {
		g = 1
	}
	c.ring.event(freezeMark, g, now, from, uint64(drainedAt))
}

// Rerequested notes that the receive thread re-requested at now the range
// of count sequence numbers from first (its arbiter's MissingFunc took
// it: the arbiter holds what follows it for the answers): a marker frame
// (mark.go: Rerequest), written before the batch the arbiter asked in (or
// the frames of the round it asked in), so that a replay holds for the
// ranges the handler re-requested, and for no other, whether answers
// came or not. The receive thread only, as Put.
func (c *Capture) Rerequested(now int64, first, count uint64) {
	c.ring.event(requestMark, 0, now, first, count)
}

// Behind notes that the receive thread's arbiter holds at now, at its
// next sequence number next of session (the session it follows, its own
// state: not that of the line datagram before, which may be a stray
// sender's), behind lines that went back to numbers it
// delivered (a sequence restart held, arbitration.sequence_restart:
// hold, or lines replaying the session's middle: nothing behind next is
// applied until they bring it); next 0: a session change or restart
// ended it. Nothing is written for it; a file opened while it holds says
// it again at its start (restateHeld), so that a replay of that file
// alone holds at next too. The receive thread only, as Put; once a hold.
func (c *Capture) Behind(now int64, next uint64, session moldudp64.Session) {
	c.ring.behind(now, next, session)
}

// Declared notes that the receive thread's arbiter declared missing at
// now the range re-requested (Rerequested) itself, neither filled nor
// given up by the re-request client: its spill full while it held the
// lines behind the range (Arbiter.Offer gives the recovery up rather
// than lose what arrives, ArbiterStats.SpillOverflows), the range a gap
// and what was held delivered. Nothing is written for it (a replay's
// arbiter, in the same state, gives it up there too); the range is no
// longer open, so that a rotation held for it (holdRotation) goes on and
// no later file says it again. Before, the range stayed open: the
// rotation held to twice RotateSize and the next file said it again,
// which a replay of that file alone held for. The receive thread only,
// as Put.
func (c *Capture) Declared(now int64) {
	c.ring.event(declareMark, 0, now, 0, 0)
}

// Resumed notes that the receive thread resumed delivery at now without
// loading a snapshot (Arbiter.Unfreeze(0): it failed, or was refused): a
// marker frame (mark.go: Resumed). The receive thread only, as Put.
func (c *Capture) Resumed(now int64) {
	c.ring.event(resumeMark, 0, now, 0, 0)
}

// Discarded notes that the receive thread dropped at now, as the lines
// changed session (or restarted their sequence), the recovery it had in
// progress: the snapshot it froze delivery for (Freeze), the new
// session's lock unfreezing delivery (Arbiter's), neither a load nor a
// resume to follow; or the range it was re-requesting (Rerequested),
// neither filled nor given up, the arbiter having forgotten it with the
// session (no gap declared): a marker frame (mark.go: Discarded), so that
// a rotation held for the snapshot or the range (holdRotation) is no
// longer, no later file says the range again, and a replay knows the
// freeze ended. The receive thread only, as Put.
func (c *Capture) Discarded(now int64) {
	c.ring.event(discardMark, 0, now, 0, 0)
}

// SnapshotMessages hands the messages of a snapshot the receive thread
// is loading at now (msgs: each a 2-byte big-endian length and the
// message, as the handler holds them) to the writer, which writes them in
// marker frames of at most MaxSnapshotChunk bytes of whole messages
// (mark.go: SnapshotMessages) before the Snapshot frame that follows, so
// that a replay rebuilds the books from them. It never waits for the disk
// nor copies the snapshot: kept reports that the capture holds msgs until
// the writer wrote them, the caller not to touch it until SnapshotBuffer
// hands it back. The writer still writing the snapshot before (the disk
// behind by a whole snapshot), it copies what fits in the ring now and
// leaves the rest out (counted in Stats.Dropped: the file's FHRM frames
// then do not hold the snapshot's count, which a replay says); kept is
// false. A message longer than MaxSnapshotChunk (no ITCH message is) is
// left out. The receive thread only, as Put; it allocates nothing.
func (c *Capture) SnapshotMessages(msgs []byte, now int64) (kept bool) {
	if len(msgs) == 0 {
		return false
	}
	r := &c.ring
	r.flushFailed() // the calls that failed before the load come before it
	var b []byte
	if !c.snapOutSet || c.snapDone.Load() {
		b = r.reserve(r.size) // in the room kept for events
	}
	if b == nil {
		c.copySnapshot(msgs, now)
		return false
	}
	c.snapHeld, c.snapOut, c.snapOutSet = msgs, msgs, true
	c.snapDone.Store(false)
	binary.LittleEndian.PutUint32(b[0:4], snapRefMark)
	binary.LittleEndian.PutUint64(b[8:16], uint64(now))
	binary.LittleEndian.PutUint64(b[16:24], uint64(len(msgs)))
	r.head.Store(r.pHead) // publishes snapHeld with the record
	return true
}

// SnapshotBuffer returns the buffer SnapshotMessages kept last, emptied,
// once the writer has written it (nil until then, or when none was kept):
// the caller's again, to download the next snapshot into. The receive
// thread only.
func (c *Capture) SnapshotBuffer() []byte {
	if !c.snapOutSet || !c.snapDone.Load() {
		return nil
	}
	b := c.snapOut[:0]
	c.snapOut, c.snapOutSet = nil, false
	return b
}

// copySnapshot copies a snapshot's messages into the ring in chunks of
// whole messages (records of snapLine), what does not fit left out.
func (c *Capture) copySnapshot(msgs []byte, now int64) {
	for len(msgs) > 0 {
		var chunk []byte
		chunk, msgs = nextChunk(msgs)
		if len(chunk) > 0 {
			c.answer[0] = rx.Packet{Data: chunk, Line: snapLine, RxTime: now}
			c.ring.answer(c.answer[:], 0)
			c.answer[0].Data = nil
		}
	}
}

// nextChunk returns the first chunk of a snapshot's messages to write, at
// most MaxSnapshotChunk bytes of whole messages, and the rest: an empty
// chunk when the first message is longer (left out) or cut short (the
// rest no whole message, nothing left).
func nextChunk(msgs []byte) (chunk, rest []byte) {
	n := 0
	for n+2 <= len(msgs) {
		m := 2 + int(binary.BigEndian.Uint16(msgs[n:]))
		if n+m > len(msgs) {
			return msgs[:n], nil // cut: the rest is no whole message
		}
		if n+m > MaxSnapshotChunk {
			break
		}
		n += m
	}
	if n == 0 {
		if len(msgs) < 2 {
			return nil, nil
		}
		// One message too long for a frame: left out.
		return nil, msgs[min(len(msgs), 2+int(binary.BigEndian.Uint16(msgs))):]
	}
	return msgs[:n], msgs[n:]
}

// writeSnapshot appends the frames of the snapshot's messages handed over
// (snapHeld), received at at, flushing the buffer as it fills, then gives
// the snapshot's buffer back (snapDone).
func (c *Capture) writeSnapshot(at int64) {
	msgs := c.snapHeld
	c.snapRestarted, c.snapWriting = false, true
	for len(msgs) > 0 {
		var chunk []byte
		chunk, msgs = nextChunk(msgs)
		if len(chunk) == 0 {
			continue
		}
		c.appendSnapMsgs(chunk, at)
		if len(c.buf.b) >= bufSize {
			c.flushLogged()
			if c.snapRestart {
				// A new file (the hold given up, the file full, deleted
				// or truncated) would hold the rest only: a replay of it
				// alone counts the snapshot not held. Written again from
				// the first message, the new file holds it whole after
				// its freeze (restateFreeze decided it, and left the
				// messages buffered out). Once: a snapshot larger than
				// twice RotateSize would restart for ever; a later file
				// says how many of its messages the files before hold.
				c.snapRestart = false
				msgs = c.snapHeld
			}
		}
	}
	c.snapHeld, c.snapWriting = nil, false
	c.snapDone.Store(true)
	c.loadDue = true // its load is the next record: the rotation waits for it
}

// appendSnapMsgs appends a frame of the snapshot's messages, chunk,
// received at at, and counts them (snapWritten, snapBuffered).
func (c *Capture) appendSnapMsgs(chunk []byte, at int64) {
	if c.snapBuffered == 0 {
		c.snapBufAt = len(c.buf.b)
	}
	c.frame = appendSnapMsgsFrame(c.frame[:0], chunk)
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, at), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame)
	var n uint64
	for len(chunk) >= 2 {
		chunk = chunk[min(len(chunk), 2+int(binary.BigEndian.Uint16(chunk))):]
		n++
	}
	c.snapWritten += n
	c.snapBuffered += n
}

// Stats returns the counters; safe from any goroutine.
func (c *Capture) Stats() Stats {
	return Stats{Packets: c.packets.Load(), Bytes: c.bytes.Load(), Dropped: c.ring.dropped.Load(),
		WriteErrors: c.writeErrs.Load(), WriteLost: c.writeLost.Load(), Files: c.files.Load(), Deleted: c.deleted.Load()}
}

// Close writes what the ring still holds, flushes the file to the disk
// (fsync, as a rotation flushes the file before: retire) and closes it,
// and unmaps the ring. Call it once Put is no longer called. It returns
// the error of the last write when that write failed (the end of the
// capture is lost: counted in WriteLost, and said here), and that of
// syncing and closing the file. A Close called again, or at the same time, returns once the first
// one did, with its error.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Capture) close() error {
	close(c.stop)
	<-c.done
	var err error
	if c.failing {
		err = c.lastErr
	}
	c.waitRetired()
	// The last file flushed to the disk, as a rotation flushes the one
	// before (retire): closed, the capture is whole on it.
	if !c.gone {
		if serr := errors.Join(syncFile(c.f), syncDir(c.path)); serr != nil {
			err = errors.Join(err, fmt.Errorf("sync capture %s: %w", c.path, serr))
		}
	}
	if cerr := c.f.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close capture %s: %w", c.path, cerr))
	}
	unix.Munmap(c.ring.buf)
	st := c.Stats()
	c.log.Info().Str("file", c.path).Uint64("packets", st.Packets).Uint64("bytes", st.Bytes).
		Uint64("dropped", st.Dropped).Uint64("write_errors", st.WriteErrors).Uint64("write_lost", st.WriteLost).
		Uint64("files", st.Files).Uint64("files_deleted", st.Deleted).
		Msg("capture closed")
	return err
}

// drain is the drainer goroutine: ring to buffer to file.
func (c *Capture) drain() {
	defer close(c.done)
	r := &c.ring
	var (
		rec        record
		lastFlush  = time.Now()
		seenDrops  uint64
		dropRun    bool
		stopping   bool
		runDropped uint64
	)
	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	for {
		t, head := r.tail.Load(), r.head.Load()
		wrote := t != head
		for t != head {
			var ok bool
			if t, ok = r.next(t, &rec); ok {
				c.write(&rec)
			}
			if len(c.buf.b) >= bufSize {
				r.tail.Store(t)
				c.flushLogged()
				lastFlush = time.Now()
			}
		}
		r.tail.Store(t)
		// One warning per run of drops: a run ends when datagrams are
		// captured again with no new drop.
		if d := r.dropped.Load(); d != seenDrops {
			if !dropRun {
				c.log.Warn().Str("file", c.path).Int("buffer", int(r.size)).
					Msg("capture: ring full, datagrams left out of the capture (not out of the feed): the disk or the drainer is behind; raise capture.buffer")
			}
			runDropped += d - seenDrops
			seenDrops, dropRun = d, true
		} else if dropRun && wrote {
			c.log.Info().Str("file", c.path).Uint64("dropped", runDropped).Msg("capture: capturing again after the ring was full")
			dropRun, runDropped = false, 0
		}
		if stopping {
			if r.lost != 0 {
				// Left out since the last batch written, with no batch
				// after to carry their record: the producer has stopped
				// (Close), its fields are this goroutine's now.
				c.noteLost(r.lostFirst, r.lost, 0)
				c.writeLostFrame()
			}
			c.rotateSize = 0 // no new file at the end
			if c.tooLarge && len(c.buf.b) > 0 {
				c.checkFile() // what is left goes to the next file, which the stop ends
			}
			if !c.tooLarge { // a full file takes no more: it ends cut
				c.writeEndFrame(EndStopped)
			}
			c.flushLogged()
			return
		}
		if len(c.buf.b) > 0 && time.Since(lastFlush) >= flushEvery {
			c.flushLogged()
			lastFlush = time.Now()
		}
		// Sleep after every pass, not only an empty one: a feed trickling
		// in would otherwise keep this goroutine spinning on a CPU the
		// hot thread may need. The ring holds far more than pollEvery
		// of traffic.
		timer.Reset(pollEvery)
		select {
		case <-c.stop:
			// The producer has stopped: one more pass takes what it
			// published last.
			stopping = true
		case <-timer.C:
		}
	}
}

// write appends one datagram's frame to the buffer, or a run of failed
// receive calls' marker frame.
func (c *Capture) write(rec *record) {
	// The record after a snapshot's messages: its load, or it is not to come.
	c.loadDue = false
	if rec.lost != 0 { // the ring's: before the datagrams after them
		c.noteLost(rec.rxTime, rec.lost, 0)
		c.writeLostFrame()
		return
	}
	if c.lostRing|c.lostWrite != 0 {
		c.writeLostFrame()
	}
	if rec.failed {
		c.writeFailed(rec)
		return
	}
	if rec.snapRef {
		c.snapOpen = true
		c.writeSnapshot(rec.rxTime)
		return
	}
	if rec.behind {
		c.held = heldBehind{next: rec.snapNext, session: rec.session, at: rec.rxTime}
		return
	}
	if rec.declare {
		c.req.open = false // the arbiter gave the range up itself: no frame
		return
	}
	if rec.snapshot || rec.gaveUp || rec.freeze || rec.resume || rec.discard || rec.request {
		tag := snapshotTag
		switch {
		case rec.request:
			tag = requestTag
			c.req = openRequest{open: true, first: rec.snapNext, lo: rec.snapNext, end: rec.snapNext + rec.snapMsgs, session: c.lastSession, at: rec.rxTime}
		case rec.gaveUp:
			tag = giveUpTag
			c.req.open = false
		case rec.freeze:
			tag, c.snapOpen = freezeTag, true
			c.req.open = false // a snapshot abandons the re-request (Arbiter.Freeze)
			c.freezeAt, c.freezeFrom, c.freezeGap = rec.rxTime, rec.snapNext, rec.snapMsgs == 1
			c.snapWritten, c.snapBuffered = 0, 0
			c.freezeBuffered = true
		case rec.resume:
			tag = resumeTag
		case rec.discard:
			tag = discardTag
			c.req.open = false // a session change dropped the range too (Arbiter.dropSession)
		}
		if rec.snapshot || rec.resume || rec.discard {
			c.snapOpen = false // the snapshot ends here: a rotation held for it may go
		}
		c.frame = appendCountsFrameFrom(c.frame[:0], markMAC(rec.rxTime, rec.drained), tag, rec.snapNext, rec.snapMsgs)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, rec.rxTime), CaptureLength: len(c.frame), Length: len(c.frame)}
		c.pw.WritePacket(ci, c.frame)
		return
	}
	if rec.line == answerLine || rec.line == droppedLine {
		c.writeAnswer(rec)
		return
	}
	if rec.line == snapLine {
		c.snapOpen = true
		c.appendSnapMsgs(rec.payload, rec.rxTime)
		return
	}
	line := int(rec.line)
	if line >= len(c.dst) {
		return // no such line: the receiver does not produce it
	}
	c.freezeGap = false // a freeze at a gap came before this datagram's batch
	if len(rec.payload) >= moldudp64.HeaderLen {
		c.lastSession = moldudp64.Session(rec.payload[:moldudp64.SessionLen])
	}
	if c.req.open || c.held.next != 0 {
		c.follow(rec.payload)
	}
	src := netip.AddrPortFrom(c.src[line], rec.srcPort)
	if rec.srcOK {
		src = netip.AddrPortFrom(netip.AddrFrom4(rec.src), rec.srcPort)
	}
	if len(rec.payload) > 0xFFFF-20-8 {
		return // more than an IPv4 datagram holds: no receiver hands it over
	}
	c.id++
	c.frame = pcap.AppendUDPFrame(c.frame[:0], src, c.dst[line], c.id, rec.payload)
	drained := rec.drained
	if drained == 0 {
		drained = c.lostDrained // the empty poll of a datagram lost to a write
	}
	c.lostDrained = 0
	mac := markMAC(rec.rxTime, drained)
	copy(c.frame[6:12], mac[:])
	// A frame longer than the snap length (a datagram of more than 65493
	// bytes, up to UDP's 65507) is cut to it, as tcpdump cuts it: in the
	// file with its time, headers and whole length, the datagram marked
	// truncated (replay counts it skipped), not left out unsaid.
	caplen := min(len(c.frame), pcap.Snaplen)
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, rec.rxTime), CaptureLength: caplen, Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame[:caplen]) // into memory: never fails
	c.pending++
}

// writeAnswer appends a re-request answer's frame (mark.go) to the
// buffer: a datagram, from and to 0.0.0.0 port 0, no line's, marked with
// the empty poll before it. One the arbiter dropped (droppedLine) fills
// nothing of the range open.
func (c *Capture) writeAnswer(rec *record) {
	if len(rec.payload) > 0xFFFF-20-8 {
		return
	}
	if rec.line == answerLine { // not one the arbiter dropped (RecoveredDropped)
		c.req.fill(rec.payload, true)
	}
	c.id++
	none := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	c.frame = pcap.AppendUDPFrame(c.frame[:0], none, none, c.id, rec.payload)
	mac := answerMark(rec.rxTime, rec.drained)
	copy(c.frame[6:12], mac[:])
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, rec.rxTime), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame)
	c.pending++
}

// writeFailed appends the marker frame of a run of failed receive calls
// (mark.go) to the buffer: not a datagram (pending, Stats.Packets).
func (c *Capture) writeFailed(rec *record) {
	drained := rec.drained
	if drained == 0 {
		drained = c.lostDrained
	}
	c.lostDrained = 0
	c.frame = appendFailedFrame(c.frame[:0], rec.failFirst, rec.rxTime, drained)
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, rec.rxTime), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame)
}

// writeEndFrame appends the marker frame that ends a file (mark.go),
// stamped now: not a datagram.
func (c *Capture) writeEndFrame(reason byte) {
	if c.lostRing|c.lostWrite != 0 {
		c.writeLostFrame() // what was left out last, before the end
	}
	c.frame = appendEndFrame(c.frame[:0], reason)
	ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame)
}

// writeEnd writes the marker frame that ends the file, for reason, to it
// straight, stamped now: the buffer holds what goes to the next file. A
// failed write is cut back (no half record at the end).
func (c *Capture) writeEnd(reason byte) error {
	c.frame = appendEndFrame(c.frame[:0], reason)
	c.endBuf.b = c.endBuf.b[:0]
	ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.endPW.WritePacket(ci, c.frame) // into memory: never fails
	n, err := c.f.Write(c.endBuf.b)
	if err != nil {
		if n > 0 {
			c.f.Truncate(c.off)
			c.f.Seek(c.off, 0)
		}
		return fmt.Errorf("end capture %s at offset %d: %w", c.path, c.off, err)
	}
	c.off += int64(n)
	c.bytes.Add(uint64(n))
	return nil
}

// noteLost adds datagrams left out of the file, the first received at at.
func (c *Capture) noteLost(at int64, ring, write uint64) {
	if c.lostRing|c.lostWrite == 0 || at < c.lostAt {
		c.lostAt = at
	}
	c.lostRing += ring
	c.lostWrite += write
}

// writeLostFrame appends the marker frame of the datagrams left out (mark.go).
func (c *Capture) writeLostFrame() {
	c.frame = appendLostFrame(c.frame[:0], c.lostRing, c.lostWrite)
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, c.lostAt), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame)
	c.lostRing, c.lostWrite = 0, 0
}

// flushLogged flushes the buffer, logging a failure once per run of them,
// then goes on in a new file when this one reached RotateSize.
func (c *Capture) flushLogged() {
	if len(c.buf.b) > 0 {
		c.checkFile()
	}
	failing := c.failing
	err := c.flush()
	if err == nil && c.rotateSize > 0 && c.off >= c.rotateSize && !c.holdRotation() {
		c.rotate()
	}
	if err != nil {
		if !failing {
			c.log.Error().Err(err).Str("file", c.path).
				Msg("capture: write failed; the datagrams buffered that did not reach the file whole are lost from the capture (not from the feed), capturing goes on")
		}
		c.failing, c.lastErr = true, err
		if errors.Is(err, syscall.EFBIG) && c.off > 0 {
			// The file is as large as the file system (FAT32's 4 GiB) or
			// the unit's LimitFSIZE= lets it be: every later write to it
			// would fail too, with or without rotate_size. The next
			// write goes to a new file (checkFile), made only then: a
			// stop right after leaves no file of a header alone.
			c.tooLarge = true
		}
		return
	}
	if c.failing {
		c.log.Info().Str("file", c.path).Msg("capture: writing again")
		c.failing, c.lastErr = false, nil
	}
}

// holdRotation reports whether a rotation due waits for the snapshot
// open in the file (snapOpen), or for the range re-requested and still
// open as the file holds it (reqFiled).
//
// A snapshot: a file that holds where the handler froze
// delivery holds the snapshot's messages and where it loaded them (or
// resumed without), so that it replays the snapshot alone, as one file
// must (replay --feed takes one). The spilled datagrams, the messages
// and the load then go to it past RotateSize; a snapshot discarded after
// a session change ends it too (Discarded). Bounded: a fetch longer than
// the lines' traffic of RotateSize ends the hold once the file holds
// twice RotateSize (logged once per file): the next file starts in the
// middle of the snapshot, the freeze said again at its start
// (restateFreeze), and holds the rest (the messages written again from
// the first when it was opened while they were written: writeSnapshot),
// so that it replays the snapshot alone; it holds its rotation in turn.
// Between the messages written whole and their load, the next record,
// it waits past the bound too (loadDue).
//
// A re-request: the handler holds the lines' datagrams behind the range
// until its answers (or the lines' copies) fill it, or it gives it up
// (GaveUp), abandons it for a snapshot (Freeze), drops it at a session
// change (Discarded) or its arbiter declares it missing, its spill full
// (Declared). The file that holds the
// range's frame then holds the datagrams held behind it and the answers
// too, so that the next file starts where the handler held nothing, and a
// replay of it alone delivers from its start as the handler did. Bounded
// the same way, at twice RotateSize (a range never answered nor given
// up): the next file starts with the range said again
// (restateRerequest), and a replay of it alone lacks what the handler
// held behind the range in the file before; it holds its rotation in
// turn.
//
// Only a size rotation waits: a file found full (EFBIG), deleted or
// truncated takes nothing more, and the next starts frozen, or inside the
// range, the same way. Once per flush that finds the file past
// RotateSize: nothing per datagram.
func (c *Capture) holdRotation() bool {
	if !c.snapOpen && !c.reqFiled.open {
		return false
	}
	if c.loadDue {
		// The messages written, the load (the receive thread's next
		// record, published right after them) not yet: past the bound
		// too, so that they stay in one file. The next record ends it,
		// whatever it is (the load left out of a full ring: a lost one).
		return true
	}
	if c.off < 2*c.rotateSize {
		return true
	}
	if !c.holdWarned {
		c.holdWarned = true
		if c.snapOpen {
			c.log.Warn().Str("file", c.path).Int64("bytes", c.off).
				Msg("capture: next file opened with a snapshot open (frozen, not yet loaded) at twice rotate_size; it starts frozen (the freeze said again), and replays the snapshot if it holds its messages and load")
		} else {
			c.log.Warn().Str("file", c.path).Int64("bytes", c.off).Uint64("first", c.reqFiled.lo).Uint64("end", c.reqFiled.end).
				Msg("capture: next file opened with a re-request open (not yet filled nor given up) at twice rotate_size; it starts with the range said again, and replayed alone lacks what the handler held behind it")
		}
	}
	return false
}

// checkFile goes on in a new file, as a rotation, when the file reached
// its size limit (EFBIG, at the last write); or was deleted (unlinked: a
// cleanup that took it) while written to: what is written to it is lost;
// or was cut shorter than what was written to it (a cleanup that empties
// files, logrotate's copytruncate): writing on at the old offset would
// leave a hole where its header was, unreadable. One fstat before a flush
// that has something to write; a deletion or a cut is logged and counted
// once per file. A new file that cannot be created (the directory removed
// too) leaves the capture in the old one, tried again at each flush, as a
// rotation that fails.
func (c *Capture) checkFile() {
	if c.tooLarge {
		c.rotate()
		return
	}
	fi, err := c.f.Stat()
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() || st.Nlink != 0 && fi.Size() >= c.off {
		return
	}
	if !c.gone {
		c.gone = true
		c.deleted.Add(1)
		if st.Nlink == 0 {
			c.log.Error().Str("file", c.path).
				Msg("capture: file deleted while written to; what it held is gone, the capture goes on in a new file")
		} else {
			c.log.Error().Str("file", c.path).Int64("size", fi.Size()).Int64("written", c.off).
				Msg("capture: file truncated while written to; what it held is gone, the capture goes on in a new file")
		}
	}
	c.rotate()
}

// rotate closes the file and goes on in a new one with its own header,
// written before the old file is let go (a file without it would be
// unreadable); the buffer is left for the new file. When the old file has
// no header yet (off 0) the buffer starts with it, and the new file gets
// it with the buffer. The old file then ends with the marker frame that
// says the capture goes on in the next (writeEnd), once the next is
// there: not when it was deleted or cut (gone). A
// new file that cannot be created, or an end that cannot be written,
// leaves the old one in use (logged once per run of failures; tried again
// at the next flush): the capture goes on rather than lose datagrams.
func (c *Capture) rotate() {
	f, name, at, err := createUnique(c.base, now(), c.lastName)
	var hdr int
	if err == nil && c.off > 0 {
		// The next file of the capture, after this one; with off 0 this
		// one holds nothing, and the buffer, for the next, starts with
		// this one's header and begin frame: the next takes its place.
		if hdr, err = f.Write(c.fileHead(c.index+1, filepath.Base(c.path), at)); err != nil {
			f.Close()
			os.Remove(name)
			err = fmt.Errorf("write the header of %s: %w", name, err)
		}
	}
	if err == nil && c.off > 0 && !c.gone {
		// A full file's, with the room flush left for it; without,
		// it ends cut, and goes all the same.
		if eerr := c.writeEnd(EndNextFile); eerr != nil && !c.tooLarge {
			f.Close()
			os.Remove(name)
			err = eerr
		}
	}
	if err != nil {
		if !c.rotateFail {
			c.log.Error().Err(err).Str("file", c.path).
				Msg("capture: next file not created; writing on in this one")
		}
		c.rotateFail = true
		return
	}
	c.rotateFail, c.lastName = false, at
	if c.off > 0 {
		c.index++
	}
	old, oldSize := c.path, c.off
	c.retire(c.f, old, !c.gone)
	c.f, c.path, c.off, c.gone, c.tooLarge = f, name, int64(hdr), false, false
	c.holdWarned = false
	if c.snapOpen && !c.freezeBuffered {
		c.restateFreeze() // the new file starts frozen
	}
	if c.reqFiled.open {
		c.restateRerequest() // the new file starts inside a re-request
	}
	if c.heldFiled.next != 0 {
		c.restateHeld() // the new file starts held behind the lines, first
	}
	c.bytes.Add(uint64(hdr))
	c.files.Add(1)
	c.log.Info().Str("file", name).Str("previous", old).Int64("previous_bytes", oldSize).Msg("capture: next file")
}

// restateFreeze puts the marker frame of the freeze open (snapOpen) at
// the start of the new file, before what the buffer holds for it (after
// its pcap header when the buffer starts with it): the file starts inside
// a snapshot (the hold given up, or the file before found full, deleted
// or truncated), and a replay of it alone freezes where it starts, as the
// handler was frozen, spills its datagrams and rebuilds the books from
// the snapshot's messages and load that follow. Without it the replay
// delivered the spilled datagrams and passed over the load. Stamped with
// the freeze's time; at a gap only when no datagram was written since the
// freeze (the batch it was declared in is still to come). It says how
// many of the snapshot's messages the files before hold, the new file's
// continuing from there (mark.go: FrozenAgain), so that a replay of the
// files in order goes on with them: 0 when the messages being written
// (writeSnapshot) are to be written again from the first (once a
// snapshot: snapRestart), those in the buffer then left out of it. Off
// the hot path: once a rotation.
func (c *Capture) restateFreeze() {
	end := len(c.buf.b)
	before := c.snapWritten - c.snapBuffered
	if c.snapWriting && !c.snapRestarted {
		if c.snapBuffered != 0 {
			end = c.snapBufAt // the last of the buffer: written again
		}
		c.snapRestart, c.snapRestarted = true, true
		c.snapWritten, c.snapBuffered, before = 0, 0, 0
	}
	var g uint64
	if c.freezeGap {
		g = 1
	}
	c.frame = appendFreezeAgainFrame(c.frame[:0], c.freezeFrom, g, before)
	c.restate(c.freezeAt, end)
}

// restate puts the marker frame in c.frame, stamped at, at the start of
// the new file (rotate): after its header and begin frame when the
// buffer starts with them (off 0), before the buffer's records up to
// end; those after end are left out (restateFreeze: written again).
func (c *Capture) restate(at int64, end int) {
	p := 0
	if c.off == 0 {
		p = c.headLen // the buffer starts with the file's header and begin frame
	}
	rest := append([]byte(nil), c.buf.b[p:end]...)
	c.buf.b = c.buf.b[:p]
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, at), CaptureLength: len(c.frame), Length: len(c.frame)}
	c.pw.WritePacket(ci, c.frame)
	c.buf.b = append(c.buf.b, rest...)
}

// openRequest is a range re-requested (Capture.Rerequested) from first
// to end, of session, stamped at; open while the answers and the lines'
// datagrams of its session have not filled it to its end (lo: the first
// sequence number not yet filled), nor was it given up or abandoned.
// ahead: the numbers past lo that they brought before lo reached them
// (answers out of order, a line's copy of the range's end), which the
// arbiter holds and delivers once the numbers before them come; sorted,
// merged, nAhead of them.
type openRequest struct {
	open           bool
	first, lo, end uint64
	session        moldudp64.Session
	at             int64
	ahead          [maxAhead]moldudp64.Range
	nAhead         int
}

// maxAhead bounds openRequest.ahead: the runs of numbers a range's
// answers and copies bring out of order, apart. Past it, a run is not
// counted: the range stays open to the rotation's bound (holdRotation),
// said again at the next file's start.
const maxAhead = 8

// fill takes a datagram the file holds, a line's or an answer's (a
// MoldUDP64 packet), of the range's session, that brings numbers of it
// not yet filled: the range is filled, as the arbiter fills it, up to
// the first number none of them brought, whatever the order they came in
// (an answer says the session: the line datagram before the request may
// have been a stray's, and what was counted under it is not the
// range's); filled to its end, it is no longer open. Only while a range
// is open: nothing for a line datagram otherwise.
func (q *openRequest) fill(data []byte, answer bool) {
	if !q.open {
		return
	}
	p, err := moldudp64.Parse(data)
	if err != nil || p.Messages() == 0 {
		return
	}
	rg := p.Range()
	if !rg.Overlaps(moldudp64.Range{First: q.lo, Count: q.end - q.lo}) {
		return
	}
	if answer && p.Session != q.session {
		q.session, q.nAhead = p.Session, 0
	}
	if p.Session != q.session {
		return
	}
	if rg.First > q.lo {
		q.addAhead(rg)
		return
	}
	q.lo = rg.End()
	n := 0
	for n < q.nAhead && q.ahead[n].First <= q.lo {
		q.lo = max(q.lo, q.ahead[n].End())
		n++
	}
	q.nAhead = copy(q.ahead[:], q.ahead[n:q.nAhead])
	q.open = q.lo < q.end
}

// addAhead adds rg, past lo, to the numbers brought ahead, merged with
// those it overlaps or touches; left out when maxAhead runs apart are
// there.
func (q *openRequest) addAhead(rg moldudp64.Range) {
	i := 0
	for i < q.nAhead && q.ahead[i].End() < rg.First {
		i++
	}
	j := i
	for j < q.nAhead && q.ahead[j].First <= rg.End() {
		rg.Count = max(rg.End(), q.ahead[j].End()) - min(rg.First, q.ahead[j].First)
		rg.First = min(rg.First, q.ahead[j].First)
		j++
	}
	if i == j && q.nAhead == maxAhead {
		return
	}
	// ahead[i:j] merged into rg: the rest moves up to i+1.
	n := copy(q.ahead[i+1:], q.ahead[j:q.nAhead])
	q.ahead[i] = rg
	q.nAhead = i + 1 + n
}

// restateRerequest puts the marker frame of the range re-requested and
// still open when the file before ended (reqFiled) at the start of the
// new file, after its begin frame and before what the buffer holds for
// it: the range re-requested in the file before, its answers (or the
// rest of them) in this one (the rotation's wait for them given up at
// its bound, holdRotation, or the file before found full, deleted or
// truncated). A replay of this file alone starts its arbiter at the
// range's first number not yet filled, of its
// session, holding for the answers as the handler held, so that the
// answers here fill it (mark.go: RerequestAgain); without it, the range
// was part of the file's start gap, its answers late, their messages
// missing from the books. A replay of the files in order has it from the
// file before, and passes over it. Off the hot path: once a rotation.
func (c *Capture) restateRerequest() {
	q := &c.reqFiled
	c.frame = appendRerequestAgainFrame(c.frame[:0], q.lo, q.end-q.lo, q.first, q.session)
	c.restate(q.at, len(c.buf.b))
}

// follow takes a line datagram while a range re-requested is open
// (openRequest.fill) or the arbiter holds behind the lines: a datagram
// of the hold's session that brings numbers past its next ends it (the
// arbiter delivers them, or holds them for a gap at next).
func (c *Capture) follow(data []byte) {
	c.req.fill(data, false)
	if c.held.next == 0 {
		return
	}
	if p, err := moldudp64.Parse(data); err == nil && p.Messages() > 0 && p.Session == c.held.session && p.Next() > c.held.next {
		c.held.next = 0
	}
}

// heldBehind is the arbiter holding at next behind lines of session
// that went back (Capture.Behind), from at; open until they bring
// numbers past next (next 0: not open; a sequence number is 1 or more).
type heldBehind struct {
	next    uint64
	session moldudp64.Session
	at      int64
}

// restateHeld puts the marker frame of the hold behind the lines open
// when the file before ended (heldFiled) at the start of the new file,
// first after its begin frame (mark.go: HeldBehind): a replay of the file
// alone starts its arbiter at the hold's next, of its session, and drops
// what the lines bring behind it as the handler did; without it, it
// followed the numbers the lines went back to from the file's start and
// applied what the handler dropped. Off the hot path: once a rotation.
func (c *Capture) restateHeld() {
	h := &c.heldFiled
	c.frame = appendBehindFrame(c.frame[:0], h.next, h.session)
	c.restate(h.at, len(c.buf.b))
}

// fileHead returns the first bytes of the capture's file index, opened at
// at, the file before it named previous: the pcap header, then the begin
// frame (mark.go: Begin). The bytes are endBuf's, until writeEnd. Off the
// hot path: once a file.
func (c *Capture) fileHead(index uint64, previous string, at time.Time) []byte {
	c.endBuf.b = append(c.endBuf.b[:0], c.header...)
	c.frame = appendBeginFrame(c.frame[:0], c.run, index, previous)
	ci := gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(c.frame), Length: len(c.frame)}
	c.endPW.WritePacket(ci, c.frame) // into memory: never fails
	return c.endBuf.b
}

// wholeRecords returns how many of the buffer's first n bytes (those a
// failed write put in the file) are whole records, and how many records
// they are. The buffer starts with the file header and begin frame
// (headLen) when the file has none yet (off 0); then records follow, each a 16-byte pcap record header
// whose bytes 8:12 are the frame's captured length (pcapgo writes them
// little-endian), then the frame. Marker frames are whole records but not
// datagrams: not counted.
func (c *Capture) wholeRecords(n int) (int, uint64) {
	p := 0
	if c.off == 0 {
		if n < c.headLen {
			return 0, 0 // the header and begin frame go together
		}
		p = c.headLen
	}
	var recs uint64
	for p+16 <= n {
		end := p + 16 + int(binary.LittleEndian.Uint32(c.buf.b[p+8:]))
		if end > n {
			break
		}
		if !isMarkerFrame(c.buf.b[p+16 : end]) {
			recs++
		}
		p = end
	}
	return p, recs
}

// isMarkerFrame reports whether a frame the writer made is a marker frame
// (the datagrams' are IPv4).
func isMarkerFrame(f []byte) bool {
	return len(f) >= 14 && binary.BigEndian.Uint16(f[12:14]) == pcap.EtherMarker
}

// keepLostMark keeps the last empty poll marked on the records a failed
// write lost (the buffer's from byte whole on) for the next datagram
// written, as the ring hands on the empty poll of a batch it had no room
// for: the replay still ticks the arbiter before what follows the loss.
// It counts the datagrams lost (and those a lost marker frame among them
// counted) for a marker frame before the next frame written, and the
// other marker frames lost with them (a run of failed receive calls, a
// freeze, a snapshot and its messages, a resume, a re-request given up:
// a replay without them goes astray) in that frame's count too, not in
// Stats.WriteLost (datagrams).
func (c *Capture) keepLostMark(whole int) {
	p := whole
	if c.off == 0 {
		p = max(p, c.headLen)
	}
	for p+16+12 <= len(c.buf.b) {
		r := c.buf.b[p:]
		ts := int64(binary.LittleEndian.Uint32(r[0:4]))*1e9 + int64(binary.LittleEndian.Uint32(r[4:8]))
		end := 16 + int(binary.LittleEndian.Uint32(r[8:12]))
		if d, ok := Mark([6]byte(r[16+6:16+12]), ts); ok && d != 0 {
			c.lostDrained = d
		}
		switch f := r[16:end]; {
		case !isMarkerFrame(f):
			c.noteLost(ts, 0, 1)
		case len(f) >= 14:
			if ring, write, ok := Lost(f[14:]); ok {
				c.noteLost(ts, ring, write) // the count it held, lost with it
			} else if _, ok := End(f[14:]); !ok {
				c.noteLost(ts, 0, 1)
			}
		}
		p += end
	}
}

// flush writes the buffer to the file. A write that fails part way (a
// disk filling up) keeps the whole records that reached the file; the
// file is cut back to the last of them (half a record would end any
// reader there), and only the datagrams after it are counted lost.
func (c *Capture) flush() error {
	if len(c.buf.b) == 0 {
		return nil
	}
	n, err := c.f.Write(c.buf.b)
	if err == nil {
		c.off += int64(n)
		c.bytes.Add(uint64(n))
		c.packets.Add(c.pending)
	} else {
		c.writeErrs.Add(1)
		in := n
		if errors.Is(err, syscall.EFBIG) {
			// The file as large as it may be, at n: its end frame
			// (writeEnd, at the rotation) must fit after the records
			// kept, or it ends cut and replay --feed takes no file
			// after it.
			in = max(0, n-endRecordLen)
		}
		whole, recs := c.wholeRecords(in)
		c.keepLostMark(whole)
		c.off += int64(whole)
		c.bytes.Add(uint64(whole))
		c.packets.Add(recs)
		c.writeLost.Add(c.pending - recs)
		if n > whole {
			if terr := c.f.Truncate(c.off); terr != nil {
				err = errors.Join(err, terr)
			}
			if _, serr := c.f.Seek(c.off, 0); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}
	keep := 0
	if err != nil && c.off == 0 {
		keep = c.headLen // the file has no header yet: keep it, and its begin frame
	}
	c.buf.b, c.pending = c.buf.b[:keep], 0
	c.freezeBuffered, c.snapBuffered = false, 0
	c.reqFiled, c.heldFiled = c.req, c.held
	if err != nil {
		return fmt.Errorf("write capture %s at offset %d: %w", c.path, c.off, err)
	}
	return nil
}
