package pcap

import (
	"encoding/binary"
	"time"
)

// Limits of the reader's IPv4 reassembly, the kernel's defaults: a
// datagram whose fragments are not all in within ReassemblyTimeout of its
// first (net.ipv4.ipfrag_time) is dropped, as are fragments while those
// held take more than ReassemblyMemory bytes (net.ipv4.ipfrag_high_thresh)
// or reassemblyQueues datagrams are open; a datagram whose source sent
// ReassemblyMaxDist or more other fragments between two of its own is
// begun again from the fragment that came (net.ipv4.ipfrag_max_dist).
const (
	ReassemblyTimeout = 30 * time.Second
	ReassemblyMemory  = 4 << 20
	ReassemblyMaxDist = 64
	reassemblyQueues  = 1024
	maxDatagram       = 65535 // an IPv4 datagram's largest total length
)

// fragKey names the datagram a fragment belongs to, as the kernel's
// reassembly does (RFC 791): its addresses, identification and protocol.
type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
}

// fragRun is a run of fragments received back to back, the kernel's
// unit of overlap detection (inet_frag_queue_insert).
type fragRun struct{ start, end int }

// fragQueue is one datagram being reassembled.
type fragQueue struct {
	key    fragKey
	first  int64  // the time of its first fragment
	rid    uint32 // its source's fragment count at its last fragment (fragPeer.rid)
	frames uint64 // the frames held for it
	meat   int    // payload bytes held
	length int    // the payload's length as known so far (the last fragment's end once lastIn)
	lastIn bool   // the fragment without MF was received
	hdr    []byte // the IPv4 header of the fragment at offset 0 (empty until it was received)
	srcMAC [6]byte
	runs   []fragRun
	data   []byte // the payload, by offset
}

// reassembly reassembles the IPv4 fragments a Reader reads as the kernel
// does for the sockets of the receive backends (net/ipv4/ip_fragment.c):
// a fragment partly overlapping another of its datagram drops the
// datagram (RFC 5722, as Linux since 4.19), one wholly within what was
// received (a duplicate) is dropped alone; a last fragment whose end
// contradicts what came drops the datagram, and so does a payload over
// 65535 bytes; a More Fragments payload's end is cut to a multiple of 8.
// A fragment that comes after ReassemblyMaxDist or more fragments of its
// source since its datagram's last drops what the datagram held
// (FragmentTooFar) and begins it again, as the kernel's ip_frag_too_far
// and ip_frag_reinit do: the kernel counts a source's fragments of every
// protocol and destination, this the UDP fragments of the capture. The
// memory it holds is bounded (ReassemblyMemory, reassemblyQueues);
// buffers are kept for the next datagrams.
type reassembly struct {
	queues []*fragQueue
	free   []*fragQueue
	peers  map[[4]byte]fragPeer // the sources of the datagrams held
	tooFar uint64               // frames dropped as too far (FragmentTooFar), for the Reader to count
	held   int                  // payload bytes held over all queues
	out    []byte
}

// fragPeer counts the fragments of a source (the kernel's inet_peer
// rid) while it has datagrams held (refs).
type fragPeer struct {
	rid  uint32
	refs int
}

// fragResult is what a fragment did: completed its datagram (done, the
// datagram's whole IPv4 packet in pkt, frames the frames it took), or
// dropped frames frames for reason why (OK: held).
type fragResult struct {
	done   bool
	pkt    []byte
	srcMAC [6]byte
	frames uint64
	why    Reason
}

// expire drops the datagrams whose first fragment came ReassemblyTimeout
// or more before at, returning their frames.
func (ra *reassembly) expire(at int64) uint64 {
	var n uint64
	for i := 0; i < len(ra.queues); {
		if q := ra.queues[i]; at-q.first >= int64(ReassemblyTimeout) {
			n += q.frames
			ra.drop(i)
			continue
		}
		i++
	}
	return n
}

// flush drops every datagram held (the end of the capture), returning
// their frames.
func (ra *reassembly) flush() uint64 {
	var n uint64
	for len(ra.queues) > 0 {
		n += ra.queues[0].frames
		ra.drop(0)
	}
	return n
}

// drop removes queue i, keeping its buffers.
func (ra *reassembly) drop(i int) {
	q := ra.queues[i]
	ra.held -= q.meat
	ra.queues = append(ra.queues[:i], ra.queues[i+1:]...)
	if p := ra.peers[q.key.src]; p.refs > 1 {
		p.refs--
		ra.peers[q.key.src] = p
	} else {
		delete(ra.peers, q.key.src)
	}
	*q = fragQueue{runs: q.runs[:0], data: q.data[:0], hdr: q.hdr[:0]}
	ra.free = append(ra.free, q)
}

// add takes fragment b (an IPv4 packet decodeIPv4 called a Fragment and
// fragmentOK passed) of a frame read at time at from srcMAC.
func (ra *reassembly) add(b []byte, at int64, srcMAC [6]byte) fragResult {
	ihl := int(b[0]&0x0F) * 4
	frag := binary.BigEndian.Uint16(b[6:])
	more := frag&0x2000 != 0
	offset := int(frag&0x1FFF) * 8
	payload := b[ihl:]
	end := offset + len(payload)
	key := fragKey{id: binary.BigEndian.Uint16(b[4:]), proto: b[9]}
	copy(key.src[:], b[12:16])
	copy(key.dst[:], b[16:20])

	qi := -1
	for i, q := range ra.queues {
		if q.key == key {
			qi = i
			break
		}
	}
	if ra.held+len(payload) > ReassemblyMemory || qi < 0 && len(ra.queues) == reassemblyQueues {
		return fragResult{frames: 1, why: FragmentLimit}
	}
	if qi < 0 {
		var q *fragQueue
		if n := len(ra.free); n > 0 {
			q, ra.free = ra.free[n-1], ra.free[:n-1]
		} else {
			q = &fragQueue{}
		}
		q.key, q.first = key, at
		ra.queues = append(ra.queues, q)
		qi = len(ra.queues) - 1
		if ra.peers == nil {
			ra.peers = make(map[[4]byte]fragPeer)
		}
		p := ra.peers[key.src]
		p.refs++
		ra.peers[key.src] = p
	}
	q := ra.queues[qi]
	if ra.tooFarFrom(q) {
		// ip_frag_reinit: the fragments held dropped, the datagram begun
		// again (its timer too) with this one.
		ra.tooFar += q.frames
		ra.held -= q.meat
		*q = fragQueue{key: q.key, first: at, rid: q.rid, runs: q.runs[:0], data: q.data[:0], hdr: q.hdr[:0]}
	}
	// The kernel's checks of the fragment's place (ip_frag_queue): an
	// inconsistency drops the datagram.
	bad := func() fragResult {
		n := q.frames + 1
		ra.drop(qi)
		return fragResult{frames: n, why: FragmentOverlap}
	}
	if !more {
		if end < q.length || q.lastIn && end != q.length {
			return bad()
		}
		q.lastIn, q.length = true, end
	} else {
		end &^= 7
		if end > q.length {
			if q.lastIn {
				return bad()
			}
			q.length = end
		}
	}
	if end == offset || ihl+q.length > maxDatagram {
		return bad()
	}
	switch q.insert(offset, end) {
	case insertDup:
		return fragResult{frames: 1, why: FragmentOverlap}
	case insertOverlap:
		return bad()
	}
	if len(q.data) < end {
		q.data = append(q.data, make([]byte, end-len(q.data))...)
	}
	copy(q.data[offset:end], payload)
	q.meat += end - offset
	ra.held += end - offset
	q.frames++
	if offset == 0 {
		q.hdr = append(q.hdr[:0], b[:ihl]...)
		q.srcMAC = srcMAC
	}
	if len(q.hdr) == 0 || !q.lastIn || q.meat != q.length {
		return fragResult{why: OK}
	}
	// Whole: the first fragment's header over the payload, as the
	// kernel's ip_frag_reasm makes it.
	ra.out = append(append(ra.out[:0], q.hdr...), q.data[:q.length]...)
	binary.BigEndian.PutUint16(ra.out[2:], uint16(len(ra.out)))
	binary.BigEndian.PutUint16(ra.out[6:], 0)
	binary.BigEndian.PutUint16(ra.out[10:], 0)
	binary.BigEndian.PutUint16(ra.out[10:], IPv4Checksum(ra.out[:len(q.hdr)]))
	res := fragResult{done: true, pkt: ra.out, srcMAC: q.srcMAC, frames: q.frames}
	ra.drop(qi)
	return res
}

// tooFarFrom counts a fragment of q's source and reports whether
// ReassemblyMaxDist or more others came since q's last (the kernel's
// ip_frag_too_far: this one's count less the last's over max_dist; a
// datagram without a fragment held is not).
func (ra *reassembly) tooFarFrom(q *fragQueue) bool {
	p := ra.peers[q.key.src]
	p.rid++
	ra.peers[q.key.src] = p
	start := q.rid
	q.rid = p.rid
	return q.frames > 0 && p.rid-start > ReassemblyMaxDist
}

// Results of fragQueue.insert.
const (
	inserted = iota
	insertDup
	insertOverlap
)

// insert places payload bytes [offset, end) among q's runs as the
// kernel's inet_frag_queue_insert does: after the last run (appended to
// it when they touch), or between runs as a run of its own; a fragment
// within one run is a duplicate, one that overlaps otherwise an overlap.
func (q *fragQueue) insert(offset, end int) int {
	n := len(q.runs)
	if n == 0 {
		q.runs = append(q.runs, fragRun{offset, end})
		return inserted
	}
	if last := &q.runs[n-1]; last.end < end {
		switch {
		case offset < last.end:
			return insertOverlap
		case offset == last.end:
			last.end = end
		default:
			q.runs = append(q.runs, fragRun{offset, end})
		}
		return inserted
	}
	at := n
	for i, r := range q.runs {
		switch {
		case end <= r.start:
			if at == n {
				at = i
			}
		case offset >= r.end:
		case offset >= r.start && end <= r.end:
			return insertDup
		default:
			return insertOverlap
		}
	}
	q.runs = append(q.runs, fragRun{})
	copy(q.runs[at+1:], q.runs[at:])
	q.runs[at] = fragRun{offset, end}
	return inserted
}

// fragmentOK applies to fragment b (an IPv4 packet decodeIPv4 called a
// Fragment) the checks the kernel makes of every packet before it
// reassembles it (ip_rcv, ip_rcv_finish): its header checksum, its
// source and options. Only UDP is reassembled; another protocol's
// fragment is NotUDP at once.
func fragmentOK(b []byte, c checks) Reason {
	ihl := int(b[0]&0x0F) * 4
	if b[9] != protoUDP {
		return NotUDP
	}
	if why := sourceOK(b[:ihl], c); why != OK {
		return why
	}
	if c&checkSums != 0 && IPv4Checksum(b[:ihl]) != 0 {
		return BadChecksum
	}
	return OK
}
