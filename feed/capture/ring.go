package capture

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// A record in the ring is a recHeader-byte header, then the payload, padded
// to a multiple of 8 bytes:
//
//	0:4   payload length (wrapMark: the rest of the ring up to its end is unused)
//	4     line
//	5     1 when the source below is known
//	6:8   source port
//	8:16  receive timestamp, ns since the Unix epoch
//	16:20 source IPv4 address
//	20:24 unused
//	24:32 when the receive thread last found every line empty before this
//	      datagram, ns since the Unix epoch (0: not since the datagram
//	      before; see Mark)
//
// A run of receive calls that failed (Capture.Failed) is a record of its
// own, a header alone: length failMark, 8:16 its last failed call, 16:24
// its first, 24:32 the empty poll before it, as a datagram's. So are the
// datagrams the ring had no room for: length lostMark, 8:16 the receive
// time of the first, 16:24 how many; and a snapshot loaded
// (Capture.Snapshot): length snapMark, 8:16 when, 16:24 the sequence
// number delivery resumed at, 24:32 its messages; a re-request given up
// (Capture.GaveUp): length giveUpMark, 8:16 when, 24:32 the empty poll
// before it; delivery frozen for a snapshot (Capture.Freeze): freezeMark,
// 4 1 at a gap, 8:16 when, 16:24 the arbiter's next sequence number,
// 24:32 the empty poll before it; resumed without one (Capture.Resumed):
// resumeMark, 8:16 when; a snapshot's messages handed over whole
// (Capture.SnapshotMessages): snapRefMark, 8:16 when, 16:24 their bytes
// (the drainer writes them from the buffer handed over); the snapshot
// being fetched discarded at a session change (Capture.Discarded):
// discardMark, 8:16 when; a range re-requested (Capture.Rerequested):
// requestMark, 8:16 when, 16:24 its first sequence number, 24:32 its
// count; the arbiter holding behind lines that went back
// (Capture.Behind): behindMark, 8:16 when, 16:24 its next sequence
// number (0: no longer), 24:32 and 4:6 its session's 10 bytes; the
// range re-requested declared missing by the arbiter itself
// (Capture.Declared): declareMark, 8:16 when. A
// re-request answer (Capture.Recovered) is a datagram of line answerLine
// (droppedLine: one the arbiter dropped, Capture.RecoveredDropped), a
// chunk of a snapshot's messages copied (Capture.SnapshotMessages, a
// buffer not handed over) one of line snapLine.
const (
	recHeader   = 32
	wrapMark    = ^uint32(0)
	failMark    = wrapMark - 1
	lostMark    = wrapMark - 2
	snapMark    = wrapMark - 3
	giveUpMark  = wrapMark - 4
	freezeMark  = wrapMark - 5
	resumeMark  = wrapMark - 6
	snapRefMark = wrapMark - 7
	discardMark = wrapMark - 8
	requestMark = wrapMark - 9
	behindMark  = wrapMark - 10
	declareMark = wrapMark - 11
	answerLine  = 0xFE
	snapLine    = 0xFD
	droppedLine = 0xFC // an answer the arbiter had no room for (Capture.RecoveredDropped)
)

// eventRoom is the ring space the lines' datagrams (and re-request
// answers, snapshot chunks copied, lost and failed records) leave free
// for the records of events (Capture.Freeze, Snapshot, Resumed, GaveUp,
// a snapshot's messages handed over): 128 of them written while the ring
// is full of datagrams, where a replay needs them to rebuild the live
// books (a freeze or a load left out, it stays frozen or loads nothing).
const eventRoom = 4096

// recordSize is the ring space a payload of n bytes takes.
func recordSize(n int) uint64 { return uint64(recHeader+n+7) &^ 7 }

// cacheLine keeps the producer's and the consumer's indices apart.
type cacheLine [64]byte

// ring is a single-producer/single-consumer byte ring. head and tail count
// bytes ever written and read; the producer owns head, the consumer tail.
type ring struct {
	buf  []byte
	size uint64 // len(buf), a power of two
	mask uint64
	keep uint64 // the room kept for events (eventRoom; 0 in tests of the ring alone)
	_    cacheLine
	head atomic.Uint64 // published by the producer after each batch
	_    cacheLine
	tail atomic.Uint64 // published by the consumer
	_    cacheLine
	// Producer-local: its head and its last read of tail, and the empty
	// poll not yet written with a datagram (put's drainedAt); the run of
	// failed receive calls since the batch before (failed: 0, none), and
	// the empty poll before it.
	pHead, pTail        uint64
	drainedAt           int64
	failFirst, failLast int64
	failDrained         int64
	// The datagrams left out since the last lost record written (how
	// many, the first's receive time), and whether a run of failures or
	// they wait for a record (put's one test).
	lost      uint64
	lostFirst int64
	marks     bool
	dropped   atomic.Uint64 // datagrams that did not fit (written by the producer)
	_         cacheLine
}

// put copies pkts into the ring and publishes them; a datagram that does
// not fit is counted in dropped. drainedAt (0: none) is the time of the
// empty poll before the batch: it goes with the first datagram written,
// carried to the next batch when none of this one fits. It runs on the
// receive thread: no allocation, no lock, one atomic store per batch (and
// a load of tail only when the cached one says the ring is full).
func (r *ring) put(pkts []rx.Packet, drainedAt int64) {
	if r.marks {
		drainedAt = r.putMarks(drainedAt)
	}
	head, tail, size := r.pHead, r.pTail, r.size
	limit := size - r.keep
	if drainedAt != 0 {
		r.drainedAt = drainedAt
	}
	var dropped uint64
	for i := range pkts {
		p := &pkts[i]
		need := recordSize(len(p.Data))
		pos := head & r.mask
		total := need
		if size-pos < need { // wrap: skip to the start
			total += size - pos
		}
		if head+total-tail > limit {
			tail = r.tail.Load()
			if head+total-tail > limit {
				if r.lost+dropped == 0 {
					r.lostFirst = p.RxTime
				}
				dropped++
				continue
			}
		}
		if total != need {
			binary.LittleEndian.PutUint32(r.buf[pos:], wrapMark)
			head += size - pos
			pos = 0
		}
		b := r.buf[pos : pos+need]
		binary.LittleEndian.PutUint32(b[0:4], uint32(len(p.Data)))
		b[4] = byte(p.Line)
		b[5] = 0
		if p.Src.Addr().Is4() {
			b[5] = 1
			a := p.Src.Addr().As4()
			copy(b[16:20], a[:])
		}
		binary.LittleEndian.PutUint16(b[6:8], p.Src.Port())
		binary.LittleEndian.PutUint64(b[8:16], uint64(p.RxTime))
		binary.LittleEndian.PutUint64(b[24:32], uint64(r.drainedAt))
		r.drainedAt = 0
		copy(b[recHeader:], p.Data)
		head += need
	}
	r.pTail = tail
	if head != r.pHead {
		r.pHead = head
		r.head.Store(head)
	}
	if dropped != 0 {
		r.dropped.Add(dropped)
		r.lost += dropped
		r.marks = true
	}
}

// failed notes a receive call that failed with nothing read at now;
// drainedAt is the receive loop's: the empty poll since the batch before
// (0: none). A run of failures goes from the first after the latest empty
// poll to the last; an empty poll after a run ends it (then the next
// failure starts another, the one kept: an empty poll ticks the arbiter
// past whatever the failures before it moved).
func (r *ring) failed(now, drainedAt int64) {
	if r.failLast == 0 || drainedAt != r.failDrained {
		r.failFirst, r.failDrained = now, drainedAt
	}
	r.failLast, r.marks = now, true
}

// putMarks writes, before a batch whose empty poll is drainedAt, the
// record of the datagrams left out since the last one (the ring full),
// then the run of failed receive calls since the batch before
// (putFailed), and returns the batch's empty poll left for its first
// datagram. A lost record without room waits for the next batch, its
// count growing.
//
//go:noinline
func (r *ring) putMarks(drainedAt int64) int64 {
	if r.lost != 0 {
		if b := r.reserve(r.size - r.keep); b != nil {
			binary.LittleEndian.PutUint32(b[0:4], lostMark)
			binary.LittleEndian.PutUint64(b[8:16], uint64(r.lostFirst))
			binary.LittleEndian.PutUint64(b[16:24], r.lost)
			r.lost = 0
		}
	}
	if r.failLast != 0 {
		drainedAt = r.putFailed(drainedAt)
	}
	r.marks = r.lost != 0
	r.head.Store(r.pHead)
	return drainedAt
}

// reserve takes a record's header of room in the ring, filling it up to
// limit bytes (the ring's size for an event's record, keep less for
// others), and returns it (nil: no room), published by its caller once
// filled.
func (r *ring) reserve(limit uint64) []byte {
	head, size := r.pHead, r.size
	pos := head & r.mask
	total := uint64(recHeader)
	if size-pos < recHeader {
		total += size - pos
	}
	if head+total-r.pTail > limit {
		r.pTail = r.tail.Load()
		if head+total-r.pTail > limit {
			return nil
		}
	}
	if total != recHeader {
		binary.LittleEndian.PutUint32(r.buf[pos:], wrapMark)
		head += size - pos
		pos = 0
	}
	r.pHead = head + recHeader
	return r.buf[pos : pos+recHeader]
}

// putFailed writes the run of failed receive calls before a batch whose
// empty poll is drainedAt, and returns the batch's empty poll left for its
// first datagram: none when it was the one before the run. Without room
// the run is left out (the batch will not fit either).
func (r *ring) putFailed(drainedAt int64) int64 {
	before := r.failDrained
	if before == 0 {
		before = r.drainedAt // of a batch dropped whole before the run
	}
	if drainedAt == r.failDrained {
		drainedAt = 0
	}
	if b := r.reserve(r.size - r.keep); b != nil {
		binary.LittleEndian.PutUint32(b[0:4], failMark)
		binary.LittleEndian.PutUint64(b[8:16], uint64(r.failLast))
		binary.LittleEndian.PutUint64(b[16:24], uint64(r.failFirst))
		binary.LittleEndian.PutUint64(b[24:32], uint64(before))
		r.drainedAt = 0
	} else if drainedAt == 0 {
		drainedAt = before // the run left out: its empty poll goes on
	}
	r.failLast = 0
	return drainedAt
}

// flushFailed writes the run of failed receive calls so far, if any,
// before a record of the recovery's (an event, an answer): live the
// arbiter advanced at those calls before the recovery step, which may
// have come at a call of the run (a freeze at a gap it declared) with
// more calls after it. Written with the next batch, the run came after
// the step in the file, and its calls before the step were replayed
// after it (a freeze at a gap the step's call declared, a resume, and a
// freeze at the run's last call: the replay's arbiter advanced at the
// first and last call only, and declared both holes at the last). The
// calls after it start a run of their own. In the room kept for events,
// as the step's record; without room even there it is left out, its
// empty poll kept for the next batch (putFailed). Off the hot path: only
// during a run of failures.
func (r *ring) flushFailed() {
	if r.failLast == 0 {
		return
	}
	keep := r.keep
	r.keep = 0
	if d := r.putFailed(0); d != 0 && r.drainedAt == 0 {
		r.drainedAt = d
	}
	r.keep = keep
	r.head.Store(r.pHead)
}

// record is one datagram read from the ring, valid until the consumer
// moves tail past it.
type record struct {
	line    uint8
	srcOK   bool
	src     [4]byte
	srcPort uint16
	rxTime  int64
	drained int64 // the empty poll before it (0: none since the datagram before)
	payload []byte
	// failed: a run of failed receive calls, from failFirst to rxTime
	// (no payload, line or source). lost: datagrams the ring had no room
	// for, this many, the first received at rxTime. snapshot: a snapshot
	// loaded at rxTime, delivery resuming at snapNext, of snapMsgs
	// messages.
	failed             bool
	failFirst          int64
	lost               uint64
	snapshot, gaveUp   bool
	freeze, resume     bool
	discard            bool // the snapshot being fetched discarded (Capture.Discarded)
	request            bool // a range re-requested, from snapNext, snapMsgs of it (Capture.Rerequested)
	behind             bool // the arbiter holding at snapNext behind the lines (Capture.Behind)
	declare            bool // the range re-requested declared missing by the arbiter (Capture.Declared)
	snapRef            bool // the snapshot's messages handed over (Capture.snapHeld)
	snapNext, snapMsgs uint64
	session            moldudp64.Session // behind's: the arbiter's session
}

// next reads the record at tail t (t < head) and returns the tail after it.
func (r *ring) next(t uint64, rec *record) (uint64, bool) {
	pos := t & r.mask
	b := r.buf[pos:]
	n := binary.LittleEndian.Uint32(b[0:4])
	if n == wrapMark {
		return t + r.size - pos, false
	}
	rec.lost, rec.snapshot, rec.gaveUp, rec.freeze, rec.resume, rec.snapRef, rec.discard, rec.request = 0, false, false, false, false, false, false, false
	rec.behind, rec.declare = false, false
	if n == snapRefMark {
		rec.failed, rec.snapRef = false, true
		rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
		return t + recHeader, true
	}
	if n == giveUpMark || n == resumeMark || n == discardMark || n == declareMark {
		rec.failed, rec.gaveUp, rec.resume, rec.discard, rec.declare = false, n == giveUpMark, n == resumeMark, n == discardMark, n == declareMark
		rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
		rec.snapNext, rec.snapMsgs, rec.drained = 0, 0, 0
		if rec.gaveUp {
			rec.drained = int64(binary.LittleEndian.Uint64(b[24:32]))
		}
		return t + recHeader, true
	}
	if n == snapMark || n == freezeMark || n == requestMark || n == behindMark {
		rec.failed, rec.snapshot, rec.freeze, rec.request, rec.behind = false, n == snapMark, n == freezeMark, n == requestMark, n == behindMark
		rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
		rec.snapNext = binary.LittleEndian.Uint64(b[16:24])
		rec.snapMsgs = binary.LittleEndian.Uint64(b[24:32])
		rec.drained = 0
		if rec.freeze { // its flag: at a gap; then the empty poll before it
			rec.snapMsgs, rec.drained = uint64(b[4]), int64(rec.snapMsgs)
		}
		if rec.behind { // the session, in place of a count
			copy(rec.session[:8], b[24:32])
			copy(rec.session[8:], b[4:6])
			rec.snapMsgs = 0
		}
		return t + recHeader, true
	}
	if n == lostMark {
		rec.failed = false
		rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
		rec.lost = binary.LittleEndian.Uint64(b[16:24])
		return t + recHeader, true
	}
	if n == failMark {
		rec.failed = true
		rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
		rec.failFirst = int64(binary.LittleEndian.Uint64(b[16:24]))
		rec.drained = int64(binary.LittleEndian.Uint64(b[24:32]))
		return t + recHeader, true
	}
	rec.failed = false
	rec.line, rec.srcOK = b[4], b[5] == 1
	rec.srcPort = binary.LittleEndian.Uint16(b[6:8])
	rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
	rec.drained = int64(binary.LittleEndian.Uint64(b[24:32]))
	copy(rec.src[:], b[16:20])
	rec.payload = b[recHeader : recHeader+int(n)]
	return t + recordSize(int(n)), true
}

// answer copies a re-request answer received at rxTime into the ring, a
// datagram of answerLine, apart from the lines' batches, with the empty
// poll before it (drained, 0: none): the empty poll and the marks waiting
// for the next batch stay for it. One that does not fit is left out,
// counted as a datagram's.
func (r *ring) answer(p []rx.Packet, drained int64) {
	r.flushFailed()
	drainedAt, marks := r.drainedAt, r.marks
	r.drainedAt, r.marks = 0, false
	r.put(p, drained)
	r.drainedAt, r.marks = drainedAt, marks || r.marks
}

// event writes a record of its own, a header alone (snapMark at now,
// delivery resuming at next, of messages messages; resumeMark at now;
// giveUpMark at now, messages the empty poll before it; freezeMark at now,
// next the arbiter's, flag 1 at a gap, messages the empty poll before it),
// in the room kept for events (eventRoom). Without room even there it is left out,
// counted as a datagram the ring had no room for (Stats.Dropped, a lost
// record before the next batch), so that the file says it is not whole.
func (r *ring) event(mark uint32, flag byte, now int64, next, messages uint64) {
	b := r.eventRecord(mark, now)
	if b == nil {
		return
	}
	b[4] = flag
	binary.LittleEndian.PutUint64(b[16:24], next)
	binary.LittleEndian.PutUint64(b[24:32], messages)
	r.head.Store(r.pHead)
}

// eventRecord reserves the record of an event of mark at now, in the
// room kept for events, after the run of failed receive calls so far,
// and returns it for its caller to fill and publish; nil when it was
// left out, counted (leftOut).
func (r *ring) eventRecord(mark uint32, now int64) []byte {
	r.flushFailed()
	b := r.reserve(r.size)
	if b == nil {
		r.leftOut(now)
		return nil
	}
	binary.LittleEndian.PutUint32(b[0:4], mark)
	binary.LittleEndian.PutUint64(b[8:16], uint64(now))
	return b
}

// behind writes the event of the arbiter holding at next of session s
// (behindMark at now, the session's first 8 bytes in place of event's
// messages and its last 2 in the header's bytes 4:6), as event.
func (r *ring) behind(now int64, next uint64, s moldudp64.Session) {
	b := r.eventRecord(behindMark, now)
	if b == nil {
		return
	}
	copy(b[4:6], s[8:])
	binary.LittleEndian.PutUint64(b[16:24], next)
	copy(b[24:32], s[:8])
	r.head.Store(r.pHead)
}

// leftOut counts a record of time at the ring had no room for, for a lost
// record before the next batch.
func (r *ring) leftOut(at int64) {
	if r.lost == 0 {
		r.lostFirst = at
	}
	r.lost++
	r.marks = true
	r.dropped.Add(1)
}
