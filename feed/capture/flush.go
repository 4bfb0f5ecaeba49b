package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// This file holds the drainer's writes of its buffer to the file: a failed
// write cut back to the last whole record, what it lost counted and said in
// the next frames, and the rotation a flush may lead to.

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
