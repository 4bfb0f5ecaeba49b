// Package input opens any recorded feed file (a Nasdaq BinaryFILE day file,
// a pcap or a pcapng of MoldUDP64 packets, told apart by their magic
// numbers) and iterates its ITCH messages in sequence order:
//
//	r, err := input.Open(path)
//	if err != nil { ... }
//	defer r.Close()
//	for {
//		msg, err := r.Next() // valid until the next call
//		if err == io.EOF {
//			break
//		}
//		if err != nil { ... }
//		...
//	}
//	st := r.Stats()
//
// For captures the Reader decodes Ethernet/IPv4/UDP (package pcap), parses
// MoldUDP64 packets and tracks each session's sequence numbers with a
// moldudp64.Tracker: every sequence number is delivered once, from the first
// copy seen, so a capture holding both the A and the B line yields one clean
// stream. A packet that arrives ahead of the expected sequence number is held
// back (up to Options.ReorderWindow packets and Options.ReorderDelay of
// capture time) until the packets before it arrive, so reordering and A/B
// skew do not become gaps; sequence numbers still missing then are reported
// as gaps (runs of missing sequence numbers, adjacent ones merged). A
// capture whose first packet of a session starts after sequence number 1 is
// taken as joined late (SessionStats.Joined, FirstSeq): what came before is
// not counted as a gap. Heartbeats, duplicates, malformed datagrams and frames are counted.
//
// Gzip-compressed files (as Nasdaq publishes its day files) are inflated on
// the fly, in one member or several; zero bytes after the last member (a
// device's or tool's padding) are ignored, as gzip -d ignores them, and
// counted (Stats.GzipPadding); any other byte after a member that does not
// start another is an error (trailing garbage).
//
// Messages of unknown types and messages shorter than their type's length
// (a BinaryFILE's records of length 0 among them) are counted (Stats.Codec)
// and skipped. The file is read in one streaming
// pass with bounded memory.
package input
