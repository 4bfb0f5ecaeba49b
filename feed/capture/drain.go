package capture

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/gopacket"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
)

// This file holds the drainer: the goroutine that takes the ring's records
// and encodes each as a pcap frame in its buffer (a datagram's, an answer's,
// or a marker frame), and the frames of the datagrams left out and of a
// file's end.

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
