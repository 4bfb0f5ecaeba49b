package capture

import (
	"encoding/binary"
	"time"

	"github.com/google/gopacket"
)

// This file holds a snapshot's messages: handed over by the receive thread
// (SnapshotMessages, SnapshotBuffer, or copied into the ring), and written by
// the drainer in FHRM frames of whole messages.

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
			c.putApart(chunk, snapLine, now, 0)
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
