package capture

import (
	"encoding/binary"
	"sync/atomic"

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
const (
	recHeader = 32
	wrapMark  = ^uint32(0)
)

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
	_    cacheLine
	head atomic.Uint64 // published by the producer after each batch
	_    cacheLine
	tail atomic.Uint64 // published by the consumer
	_    cacheLine
	// Producer-local: its head and its last read of tail, and the empty
	// poll not yet written with a datagram (put's drainedAt).
	pHead, pTail uint64
	drainedAt    int64
	dropped      atomic.Uint64 // datagrams that did not fit (written by the producer)
	_            cacheLine
}

// put copies pkts into the ring and publishes them; a datagram that does
// not fit is counted in dropped. drainedAt (0: none) is the time of the
// empty poll before the batch: it goes with the first datagram written,
// carried to the next batch when none of this one fits. It runs on the
// receive thread: no allocation, no lock, one atomic store per batch (and
// a load of tail only when the cached one says the ring is full).
func (r *ring) put(pkts []rx.Packet, drainedAt int64) {
	head, tail, size := r.pHead, r.pTail, r.size
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
		if head+total-tail > size {
			tail = r.tail.Load()
			if head+total-tail > size {
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
	}
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
}

// next reads the record at tail t (t < head) and returns the tail after it.
func (r *ring) next(t uint64, rec *record) (uint64, bool) {
	pos := t & r.mask
	b := r.buf[pos:]
	n := binary.LittleEndian.Uint32(b[0:4])
	if n == wrapMark {
		return t + r.size - pos, false
	}
	rec.line, rec.srcOK = b[4], b[5] == 1
	rec.srcPort = binary.LittleEndian.Uint16(b[6:8])
	rec.rxTime = int64(binary.LittleEndian.Uint64(b[8:16]))
	rec.drained = int64(binary.LittleEndian.Uint64(b[24:32]))
	copy(rec.src[:], b[16:20])
	rec.payload = b[recHeader : recHeader+int(n)]
	return t + recordSize(int(n)), true
}
