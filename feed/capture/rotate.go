package capture

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/gopacket"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the rotation: when a new file is due and when it waits
// (a snapshot or a re-request open, a hold behind the lines), the switch to
// it, and what a new file says again at its start so that a replay of it
// alone does what the handler did.

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
