package capture

import (
	"encoding/binary"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
)

// Batch marks. A replay of a capture arbitrates the lines as the live
// handler did only if it knows where the handler's receive thread found
// every line empty (an empty poll, after which the arbiter takes the lines
// as drained up to then: Arbiter.Tick). A busy thread reads datagrams
// milliseconds apart in one batch with no empty poll between them; an idle
// one polls empty between datagrams microseconds apart. The receive times
// alone do not tell the two apart, so a capture records it:
//
//   - the file header's sigfigs field (0 in the files of other tools) is
//     FileMark: this file's frames carry marks;
//   - each frame's Ethernet source address, which a socket does not hand
//     over (the frames' headers are synthetic), is the mark: its first
//     byte is markFrame (a locally administered unicast address), with
//     markDrained set when the receive thread found every line empty
//     since the datagram before; then, when set, the time from that empty
//     poll (the last of them) to the datagram's receive time, a signed
//     40-bit count of nanoseconds, big-endian, saturated at about ±549 s.
//     The empty poll of a datagram left out of the file (the ring full, a
//     failed write) goes with the next datagram written.
//
// Nor do the datagrams tell where a receive call failed with nothing read
// (the arbiter's clock moved on without the lines drained:
// Arbiter.Advance). A run of such calls between two datagrams is a marker
// frame of its own before the next datagram (Failed): an Ethernet frame of
// pcap.EtherMarker, not an IP datagram, from 06:00:00:00:00:00 (or the
// mark of an empty poll before the run, as a datagram's) to
// 06:00:00:00:00:00, stamped with the run's last failed call, whose
// payload is failedTag then the run's first failed call, ns since the
// Unix epoch, big-endian. A recovery step during a run (a freeze at a gap
// one of its calls declared, a resume or load, an answer, a re-request or
// its giving up) cuts it: the calls before the step are a frame before
// the step's, those after it a run of their own, so that a replay
// advances at the calls before the step first (capture files from before
// wrote the run whole before the next batch, after the steps). Other
// tools show it as a frame of an unknown EtherType; a replay that does
// not know it passes over it.
//
// Datagrams left out of the file (the ring full, a failed write) are a
// marker frame too, before the next frame written (Lost): from and to
// 06:00:00:00:00:00, stamped with the first one's receive time, whose
// payload is lostTag, then how many the ring had no room for and how many
// a failed write lost, unsigned 64-bit, big-endian (counted with them:
// the other marker frames left out, but for a file's end). A replay cannot
// replay them, but it can say that a gap there may be the capture's.
//
// A file rewritten by another tool (mergecap, editcap) has a header of its
// own: its frames are read as unmarked.
const (
	// FileMark is the pcap file header's sigfigs field in a capture
	// whose frames carry batch marks ("FHB1").
	FileMark = pcap.MarkedSigfigs

	markFrame   = 0x06 // locally administered, unicast: a marked frame
	markDrained = 0x08 // an empty poll came before this datagram
	markMask    = 0xF7 // the first byte, markDrained aside
	maxDelta    = 1<<39 - 1
)

// markMAC returns the mark of a datagram received at rxTime; drained is
// the time of the empty poll before it (0: none since the datagram before).
func markMAC(rxTime, drained int64) [6]byte {
	if drained == 0 {
		return [6]byte{markFrame}
	}
	d := min(max(rxTime-drained, -maxDelta), maxDelta)
	return [6]byte{markFrame | markDrained, byte(d >> 32), byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)}
}

// Mark reads the batch mark of a frame received at rxTime from its
// Ethernet source address, in a file whose header carries FileMark:
// marked reports that it is a mark; drained is when the live handler last
// found every line empty before the datagram (0: not since the datagram
// before).
func Mark(mac [6]byte, rxTime int64) (drained int64, marked bool) {
	if mac[0]&markMask != markFrame {
		return 0, false
	}
	if mac[0]&markDrained == 0 {
		return 0, mac == [6]byte{markFrame}
	}
	return rxTime - markDelta(mac), true
}

// markDelta reads the time from the empty poll to the frame a mark with
// markDrained set holds: a signed 40-bit count of nanoseconds.
func markDelta(mac [6]byte) int64 {
	u := uint64(mac[1])<<32 | uint64(mac[2])<<24 | uint64(mac[3])<<16 | uint64(mac[4])<<8 | uint64(mac[5])
	return int64(u<<24) >> 24 // sign-extend 40 bits
}

// Drained reads the empty poll the Ethernet source address of a
// re-request answer (Answer) or of a recovery's marker frame (Frozen,
// GaveUp), stamped at rxTime, records: when the live handler found every
// line empty in the round it received the answer, froze or gave up in,
// or since the batch before (0: not since the batch before, or a capture
// written before these frames carried it). The batch after says the same
// empty poll again (Mark): the Arbiter ticked there once.
func Drained(mac [6]byte, rxTime int64) int64 {
	if mac[0]&markDrained == 0 || mac[0]&^(markDrained|answerBit) != markFrame {
		return 0
	}
	return rxTime - markDelta(mac)
}

// failedTag begins the payload of a marker frame of failed receive calls.
var failedTag = [4]byte{'F', 'H', 'R', 'F'}

// appendFailedFrame appends the marker frame of a run of receive calls
// that failed from first to last (ns), after an empty poll at drained (0:
// none since the datagram before).
func appendFailedFrame(b []byte, first, last, drained int64) []byte {
	mac := markMAC(last, drained)
	b = append(b, markFrame, 0, 0, 0, 0, 0)
	b = append(b, mac[:]...)
	b = append(b, pcap.EtherMarker>>8, pcap.EtherMarker&0xFF)
	b = append(b, failedTag[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(first))
}

// Failed reads a marker frame (pcap.Frame.Marker) of a file whose header
// carries FileMark, stamped at rxTime, with the given Ethernet source
// address and payload: ok reports that it is a run of receive calls that
// failed with nothing read, from first to last (ns since the Unix epoch),
// after the empty poll drained (0: none since the datagram before), where
// the live handler called Arbiter.Advance.
func Failed(mac [6]byte, payload []byte, rxTime int64) (first, last, drained int64, ok bool) {
	if len(payload) < 12 || [4]byte(payload[:4]) != failedTag {
		return 0, 0, 0, false
	}
	drained, ok = Mark(mac, rxTime)
	if !ok {
		return 0, 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(payload[4:12])), rxTime, drained, true
}

// lostTag begins the payload of a marker frame of datagrams left out.
var lostTag = [4]byte{'F', 'H', 'R', 'L'}

// appendLostFrame appends the marker frame of datagrams left out, the
// first received at first: ring of them for want of room in the ring,
// write lost with a failed write.
func appendLostFrame(b []byte, ring, write uint64) []byte {
	return appendCountsFrame(b, lostTag, ring, write)
}

// appendCountsFrame appends a marker frame from and to
// 06:00:00:00:00:00 whose payload is tag, then x and y, unsigned 64-bit,
// big-endian.
func appendCountsFrame(b []byte, tag [4]byte, x, y uint64) []byte {
	return appendCountsFrameFrom(b, [6]byte{markFrame}, tag, x, y)
}

// appendCountsFrameFrom is appendCountsFrame's frame from src (the mark
// of the empty poll before it: Drained).
func appendCountsFrameFrom(b []byte, src [6]byte, tag [4]byte, x, y uint64) []byte {
	b = append(b, markFrame, 0, 0, 0, 0, 0)
	b = append(b, src[:]...)
	b = append(b, pcap.EtherMarker>>8, pcap.EtherMarker&0xFF)
	b = append(b, tag[:]...)
	b = binary.BigEndian.AppendUint64(b, x)
	return binary.BigEndian.AppendUint64(b, y)
}

// counts reads the payload of appendCountsFrame's frame of tag.
func counts(payload []byte, tag [4]byte) (x, y uint64, ok bool) {
	if len(payload) < 20 || [4]byte(payload[:4]) != tag {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(payload[4:12]), binary.BigEndian.Uint64(payload[12:20]), true
}

// Lost reads a marker frame's payload (pcap.Frame.Marker) of a file whose
// header carries FileMark: ok reports that it counts datagrams left out of
// the file before the next frame, ring of them because the capture's ring
// was full, write lost with a failed write (the frame's time is the first
// one's receive time).
func Lost(payload []byte) (ring, write uint64, ok bool) { return counts(payload, lostTag) }

// endTag begins the payload of the marker frame that ends a file the
// writer closed: the handler stopped (Close), or the capture went on in
// the next file (a rotation). A file whose last frame is not one was cut
// short: the process killed or crashed, the host down, or the file still
// being written; what the handler received after its last frame is not in
// it, and nothing else in the file can say so (it ends at a whole record,
// the last flush's).
var endTag = [4]byte{'F', 'H', 'R', 'E'}

// End reasons, the byte after endTag.
const (
	EndStopped  = 0 // the handler stopped: Close
	EndNextFile = 1 // the capture went on in the next file (capture.rotate_size)
)

// appendEndFrame appends the marker frame that ends a file, for reason
// (EndStopped, EndNextFile).
func appendEndFrame(b []byte, reason byte) []byte {
	b = append(b, markFrame, 0, 0, 0, 0, 0, markFrame, 0, 0, 0, 0, 0)
	b = append(b, pcap.EtherMarker>>8, pcap.EtherMarker&0xFF)
	b = append(b, endTag[:]...)
	return append(b, reason)
}

// End reads a marker frame's payload (pcap.Frame.Marker) of a file whose
// header carries FileMark: ok reports that it ends the file the writer
// closed, for reason (EndStopped, EndNextFile). Only a file's last frame
// counts: an older writer wrote it before a rotation that could fail, and
// went on in the same file (the writer now ends a file once the next is
// there).
func End(payload []byte) (reason byte, ok bool) {
	if len(payload) < 5 || [4]byte(payload[:4]) != endTag {
		return 0, false
	}
	return payload[4], true
}

// beginTag begins the payload of the marker frame that starts every file
// of a capture, its first frame (after the pcap header): the file's place
// in the capture, so that a replay of a capture's files finds one
// missing, another run's or out of order, and a replay of a file after
// the first alone says what it lacks (the files before it). After the
// tag: the capture's run, a number drawn at Open that every file of it
// carries, and the file's index in it (0 the first, one more a rotation
// or a file found full, deleted or truncated), unsigned 64-bit,
// big-endian; then the name of the file before it (its base name, empty
// for the first), for the message that says it is missing. From and to
// 06:00:00:00:00:00, stamped when the file was opened (its name's time).
// A file of an older writer starts without it: its place cannot be told.
var beginTag = [4]byte{'F', 'H', 'R', 'B'}

// maxPrevious bounds the name of the file before in a begin frame (a
// file name's limit on Linux).
const maxPrevious = 255

// appendBeginFrame appends the marker frame that starts file index of the
// capture run, the file before named previous (a base name).
func appendBeginFrame(b []byte, run, index uint64, previous string) []byte {
	b = appendCountsFrame(b, beginTag, run, index)
	return append(b, previous[:min(len(previous), maxPrevious)]...)
}

// Begin reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that it starts a file of the
// capture run (a number all its files carry), its index-th (0: the
// first), the file before it named previous (its base name as the writer
// named it; "" for the first). Only a file's first frame counts.
func Begin(payload []byte) (run, index uint64, previous string, ok bool) {
	run, index, ok = counts(payload, beginTag)
	if !ok {
		return 0, 0, "", false
	}
	return run, index, string(payload[20:]), true
}

// What the live handler's recovery brought (docs/RECOVERY.md) is no line
// datagram, but a replay without it misses what it repaired: the file
// holds it. A re-request answer (Recovered) is an IPv4/UDP frame
// of its own, from and to 0.0.0.0 port 0 (the server's address is not
// kept; no line's destination, so a replay by lines passes over it),
// whose Ethernet source address is answerMAC, or, when the handler found
// every line empty before it in the round it received the answer in (or
// since the batch before), answerMAC with markDrained set and the time
// from that empty poll to the answer as a datagram's mark holds it
// (Drained; a capture written before then marks no answer so: its answers
// replay as if no empty poll came before them). A snapshot loaded
// (Snapshot) is a marker frame from and to 06:00:00:00:00:00, stamped when
// loaded, whose payload is snapshotTag, then the sequence number delivery
// resumed at and how many messages the snapshot held, unsigned 64-bit,
// big-endian, after the frames of its messages (below: SnapshotMessages).
var answerMAC = [6]byte{markFrame | answerBit}

// answerBit sets a re-request answer's source address apart from a line
// datagram's mark.
const answerBit = 0x10

// answerMark returns the source address of a re-request answer received
// at rxTime after the empty poll drained (0: none).
func answerMark(rxTime, drained int64) [6]byte {
	if drained == 0 {
		return answerMAC
	}
	mac := markMAC(rxTime, drained)
	mac[0] |= answerBit
	return mac
}

// Answer reports whether a datagram of a file whose header carries
// FileMark, with this Ethernet source address, is a re-request answer the
// live handler received (not a line's datagram); Drained reads the empty
// poll before it.
func Answer(mac [6]byte) bool {
	return mac[0]&markMask == answerMAC[0] && (mac[0]&markDrained != 0 || mac == answerMAC)
}

// snapshotTag begins the payload of a marker frame of a snapshot loaded.
var snapshotTag = [4]byte{'F', 'H', 'R', 'S'}

// Snapshot reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that the live handler loaded
// a snapshot there (the books rebuilt from it), of messages messages,
// delivery resuming at sequence number next.
func Snapshot(payload []byte) (next, messages uint64, ok bool) { return counts(payload, snapshotTag) }

// giveUpTag begins the payload of a marker frame of a re-request given
// up: the live handler declared the range it was re-requesting missing
// there (Arbiter.Abandon), with whatever answers came for it before (a
// server that answered part, then went quiet). To 06:00:00:00:00:00,
// from the mark of the empty poll before it, as a datagram's (Drained;
// 06:00:00:00:00:00 when none since the batch before, or in a capture
// from before), stamped when given up; two counts of 0 follow the tag
// (room for later use).
var giveUpTag = [4]byte{'F', 'H', 'R', 'G'}

// GaveUp reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that the live handler gave up
// the range it was re-requesting at the frame's time.
func GaveUp(payload []byte) bool {
	_, _, ok := counts(payload, giveUpTag)
	return ok
}

// requestTag begins the payload of a marker frame of a range the live
// handler re-requested (its arbiter's MissingFunc took it), from and to
// 06:00:00:00:00:00, stamped with the arbiter's time then, then the
// range's first sequence number and count, unsigned 64-bit, big-endian.
// It comes before the frames the arbiter asked in (the batch whose
// datagram, or the empty poll that batch is marked with, declared the
// hole; an answer; a failed call's run), so that a replay holds for the
// ranges the handler re-requested and for no other, answered or not. A
// capture written before these frames has none: a replay takes the
// ranges its answers hold as the re-requested ones.
var requestTag = [4]byte{'F', 'H', 'R', 'Q'}

// Rerequest reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that the live handler
// re-requested there the range of count sequence numbers from first.
func Rerequest(payload []byte) (first, count uint64, ok bool) { return counts(payload, requestTag) }

// appendRerequestAgainFrame appends the frame of a range re-requested
// said again at the start of a file opened while it was open
// (Capture.restateRerequest): Rerequest's counts, the range's first
// number not yet filled by what the files before hold (lo) and how many
// from there to its end, then the first number re-requested, unsigned
// 64-bit, big-endian, and its session (10 bytes) (RerequestAgain).
func appendRerequestAgainFrame(b []byte, lo, count, first uint64, session moldudp64.Session) []byte {
	b = appendCountsFrame(b, requestTag, lo, count)
	b = binary.BigEndian.AppendUint64(b, first)
	return append(b, session[:]...)
}

// RerequestAgain reads a Rerequest frame's payload: ok reports that it is
// a range re-requested said again at the start of a file opened while
// the handler's arbiter held for it (a rotation, or a file found full,
// deleted or truncated): the first number the files before did not fill
// (lo, the arbiter's next there: Rerequest's first) and how many to the
// range's end (Rerequest's count), first the number re-requested, of
// session. A replay of the files in order has the range from the
// file before; one of this file alone starts there. A Rerequest frame
// that is not one says ok false.
func RerequestAgain(payload []byte) (first uint64, session moldudp64.Session, ok bool) {
	if _, _, ok := counts(payload, requestTag); !ok || len(payload) < 28+moldudp64.SessionLen {
		return 0, session, false
	}
	return binary.BigEndian.Uint64(payload[20:28]), moldudp64.Session(payload[28 : 28+moldudp64.SessionLen]), true
}

// What a snapshot brought is in the file too, so that a replay rebuilds
// the books from it as the handler did (Arbiter.Freeze, the books
// rebuilt, Arbiter.Unfreeze):
//
//   - where the handler froze delivery to fetch a snapshot (the live feed
//     spilled from there on): a marker frame whose payload is freezeTag,
//     then the arbiter's next sequence number there and 1 when it froze
//     as its arbiter declared a gap at the frame's time (during the batch
//     the frame comes before, or the tick before it), 0 when between
//     batches (after the tick or failed call of that time, if any),
//     unsigned 64-bit, big-endian (Frozen), stamped with the arbiter's
//     time there, from the mark of the empty poll before it as GaveUp's
//     frame (Drained: a freeze between rounds after an empty poll that
//     declared gaps is replayed after that tick, though the batch after
//     is marked with a later poll); said again at the start of a file
//     opened inside the snapshot, with a third count (FrozenAgain);
//   - where it loaded one, before its Snapshot frame: the snapshot's
//     messages, in marker frames of their own whose payload is
//     snapMsgsTag, then whole messages, each a 2-byte big-endian length
//     and the ITCH message as the snapshot gave it (a GLIMPSE snapshot
//     numbers none: delivery resumes at the Snapshot frame's number), at
//     most MaxSnapshotChunk bytes of them a frame (SnapshotMessages);
//   - where it resumed delivery without loading one (the snapshot failed,
//     or was refused): a marker frame of resumeTag and two counts of 0
//     (Resumed);
//   - where it discarded the snapshot it was fetching, the lines having
//     changed session (the new session's lock unfroze delivery: neither a
//     load nor a resume follows), or the range it was re-requesting
//     (Rerequest): a marker frame of discardTag and two counts of 0
//     (Discarded).
var (
	freezeTag   = [4]byte{'F', 'H', 'R', 'Z'}
	resumeTag   = [4]byte{'F', 'H', 'R', 'U'}
	discardTag  = [4]byte{'F', 'H', 'R', 'D'}
	snapMsgsTag = [4]byte{'F', 'H', 'R', 'M'}
)

// MaxSnapshotChunk bounds the messages of one snapshot marker frame
// (SnapshotMessages): its frame is at most 14+4+MaxSnapshotChunk bytes,
// within the file's snap length (pcap.Snaplen).
const MaxSnapshotChunk = 60000

// Frozen reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that the live handler froze
// delivery to fetch a snapshot, its arbiter's next sequence number then
// from; atGap: as its arbiter declared a gap at the frame's time, else
// between batches. Drained reads the empty poll before it.
func Frozen(payload []byte) (from uint64, atGap, ok bool) {
	from, g, ok := counts(payload, freezeTag)
	return from, g == 1, ok
}

// appendFreezeAgainFrame appends the freeze's marker frame said again at
// the start of a file opened inside the snapshot (Capture.restateFreeze):
// the Frozen frame's counts, from and gap, then before: how many of the
// snapshot's messages the files before hold (FrozenAgain).
func appendFreezeAgainFrame(b []byte, from, gap, before uint64) []byte {
	b = appendCountsFrame(b, freezeTag, from, gap)
	return binary.BigEndian.AppendUint64(b, before)
}

// FrozenAgain reads a Frozen frame's payload: ok reports that it is the
// freeze said again at the start of a file opened while the snapshot was
// taken (a rotation, or a file found full, deleted or truncated), before
// the count of the snapshot's messages (SnapshotMessages) the files
// before it hold: this file's continue from there (0: from the first, a
// replay of the files in order starts them anew). A third unsigned 64-bit
// count after Frozen's, big-endian; an older writer's restated freeze has
// none (ok false: its messages in a later file started anew or not).
func FrozenAgain(payload []byte) (before uint64, ok bool) {
	if _, _, ok := counts(payload, freezeTag); !ok || len(payload) < 28 {
		return 0, false
	}
	return binary.BigEndian.Uint64(payload[20:28]), true
}

// Resumed reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that the live handler resumed
// delivery there without loading a snapshot (Arbiter.Unfreeze(0)).
func Resumed(payload []byte) bool {
	_, _, ok := counts(payload, resumeTag)
	return ok
}

// Discarded reads a marker frame's payload (pcap.Frame.Marker) of a file
// whose header carries FileMark: ok reports that the live handler
// dropped there, the lines having changed session (or restarted their
// sequence), the recovery it had in progress: the snapshot it froze
// delivery for (the arbiter's session change had unfrozen delivery, a
// replay's does the same, and no load or resume follows), or the range
// it was re-requesting (the arbiter forgot it with the session, a
// replay's does the same: no give-up, no gap declared for it).
func Discarded(payload []byte) bool {
	_, _, ok := counts(payload, discardTag)
	return ok
}

// SnapshotMessages reads a marker frame's payload (pcap.Frame.Marker) of
// a file whose header carries FileMark: ok reports that it holds messages
// of the snapshot the next Snapshot frame loads, msgs (each a 2-byte
// big-endian length and the message), in the order the snapshot gave them.
func SnapshotMessages(payload []byte) (msgs []byte, ok bool) {
	if len(payload) < 4 || [4]byte(payload[:4]) != snapMsgsTag {
		return nil, false
	}
	return payload[4:], true
}

// appendSnapMsgsFrame appends a marker frame of snapshot messages.
func appendSnapMsgsFrame(b, msgs []byte) []byte {
	b = append(b, markFrame, 0, 0, 0, 0, 0, markFrame, 0, 0, 0, 0, 0)
	b = append(b, pcap.EtherMarker>>8, pcap.EtherMarker&0xFF)
	b = append(b, snapMsgsTag[:]...)
	return append(b, msgs...)
}

// behindTag begins the payload of the marker frame that says, at the
// start of a file opened while the live handler's arbiter held behind
// lines that went back to numbers it delivered (a sequence restart held,
// arbitration.sequence_restart: hold; lines replaying the session's
// middle), where it held: its next sequence number and 0, unsigned
// 64-bit, big-endian, then the session (10 bytes); from and to
// 06:00:00:00:00:00, stamped when the hold began (HeldBehind). Only said
// again at a file's start: a replay of the files in order holds there
// itself.
var behindTag = [4]byte{'F', 'H', 'R', 'H'}

// appendBehindFrame appends the marker frame of a hold behind the lines
// at next, of session (Capture.restateHeld).
func appendBehindFrame(b []byte, next uint64, session moldudp64.Session) []byte {
	b = appendCountsFrame(b, behindTag, next, 0)
	return append(b, session[:]...)
}

// HeldBehind reads a marker frame's payload (pcap.Frame.Marker) of a
// file whose header carries FileMark: ok reports that the file starts
// where the live handler's arbiter held at sequence number next of
// session, behind lines that went back to numbers it delivered, in a
// file before: a replay of this file alone starts there (what the lines
// bring behind next dropped, as the handler dropped it); one of the files
// in order has it from the file before, and passes over it.
func HeldBehind(payload []byte) (next uint64, session moldudp64.Session, ok bool) {
	next, _, ok = counts(payload, behindTag)
	if !ok || len(payload) < 20+moldudp64.SessionLen {
		return 0, session, false
	}
	return next, moldudp64.Session(payload[20 : 20+moldudp64.SessionLen]), true
}
