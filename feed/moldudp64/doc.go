// Package moldudp64 parses and builds MoldUDP64 packets and checks their
// sequence numbers.
//
// # Packets
//
// A downstream packet is a 20-byte header (Session, Seq of its first message,
// Count) followed by Count message blocks of [u16 length][message]. Count 0 is
// a heartbeat and EndOfSessionCount (0xFFFF) ends the session; both carry no
// blocks and their Seq is the next expected sequence number.
//
// Parse validates a whole datagram before returning it and allocates
// nothing: a short header, blocks overrunning the datagram, bytes after the
// last block, sequence number 0 and a Seq+Count that wraps past 2^64-1 each
// reject the whole packet with a sentinel error (ErrShortHeader, ErrOverrun,
// ErrTrailing, ErrSeqZero, ErrSeqOverflow) that ParseErrors counts. A caller
// never applies half a packet. Packet.Iter walks the messages in place:
//
//	p, err := moldudp64.Parse(datagram)
//	if err != nil { stats.Count(err); continue }
//	v := tracker.TrackPacket(p)
//	if !v.Apply() { continue }
//	it := p.Iter()
//	it.Skip(int(v.Skip))
//	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
//		if m, ok := counters.Accept(msg); ok { ... } // itch.Counters
//	}
//
// Request is the 20-byte retransmission request (Session, Seq, Count),
// encoded with Append and decoded with ParseRequest.
//
// # Building
//
// Builder packs messages into packets of at most a given size (default
// MaxPayload bytes, header included), numbers them, and emits heartbeat and
// end-of-session packets; it reuses its buffers and allocates nothing in
// steady state.
//
// # Sequencing
//
// Tracker classifies each packet against the expected sequence number and
// returns a Verdict:
//
//   - KindInOrder: starts at the expectation; apply it.
//   - KindGap: starts after it; Verdict.Gap is the missing range, the packet
//     is applied and the expectation moves past it.
//   - KindOverlap: starts before and ends after it; skip Verdict.Skip leading
//     messages (Iter.Skip), apply the rest.
//   - KindDuplicate: entirely before it and already seen; drop it.
//   - KindLate: entirely before it but carrying messages declared missing
//     (Verdict.Filled of them): reported distinctly, marked seen, not applied.
//     Filling gaps (holding early packets for the other line, re-requests) is
//     a layer above the Tracker.
//   - KindHeartbeat, KindEndOfSession: no messages; Seq ahead of the
//     expectation reveals a gap and moves it.
//   - KindMalformed: sequence 0 or a Seq+Count that wraps past 2^64-1
//     (checked arithmetic); nothing changes.
//   - KindStaleSession: a packet of the session the Tracker left at its last
//     change; nothing changes.
//
// The zero Tracker expects sequence 1 of the first session it sees, so a
// late joiner gets a gap [1, seq); Tracker.Expect starts elsewhere. A new
// session name resets it to 1 (Verdict.NewSession, Stats.SessionChanges).
// Every kind is counted in Tracker.Stats. Track allocates nothing.
package moldudp64
