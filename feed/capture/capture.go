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
	"sync"
	"sync/atomic"
	"time"

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
