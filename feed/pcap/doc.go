// Package pcap reads packet captures (pcap and pcapng, optionally gzipped
// pcap) holding Ethernet/IPv4/UDP frames, as recorded from a MoldUDP64
// multicast feed, and writes such captures.
//
// The file formats are handled by gopacket's pcapgo; the frame headers are
// decoded by hand (Ethernet with up to two 802.1Q/802.1ad tags, IPv4 with
// options, UDP), without allocating per frame. Besides Ethernet the reader
// accepts the raw-IPv4 and Linux cooked (SLL, and SLL2 as tcpdump -i any
// writes since libpcap 1.10) link types, read from the file itself (pcapgo
// keeps a link type as a byte), per pcapng section.
//
// Reading:
//
//	r, err := pcap.NewReader(f) // detects pcap or pcapng by its magic
//	for {
//		fr, err := r.Next() // fr.Payload is the UDP payload, valid until the next call
//		if err == io.EOF {
//			break
//		}
//		...
//	}
//	st := r.Stats() // frames read, UDP datagrams returned, malformed frames by Reason
//
// IPv4 fragments are reassembled as the kernel reassembles them for a
// socket (reassembly.go): in any order; a partial overlap drops the
// datagram, a duplicate the fragment; a datagram not complete
// ReassemblyTimeout after its first fragment, or at the end of the
// capture, is dropped, and fragments beyond ReassemblyMemory held are;
// so are a datagram's fragments held when its source sent
// ReassemblyMaxDist or more other fragments since its last (net.ipv4.ipfrag_max_dist).
// The datagram comes with its last fragment's time and index
// (Stats.Reassembled, Fragments), the frames of one dropped are counted
// under Fragment, FragmentOverlap, FragmentLimit or FragmentTooFar. DecodeFrame, which
// sees one frame, calls every fragment a Fragment.
//
// Frames that are not a whole IPv4/UDP datagram or a fragment of one, or whose
// IPv4 header checksum or UDP checksum (when the sender set one) fails,
// or that come from a martian source or carry IPv4 options the kernel
// refuses, as the kernel and the handler's AF_XDP path drop them, are skipped and
// counted under a Reason; they never end the iteration. The datagrams of
// a handler's capture (MarkedSigfigs) were taken by its receive path, past
// the source and options checks: those are not made again (its re-request
// answers are written from 0.0.0.0). The marker frames
// of the handler's captures (EtherMarker, MarkedSigfigs) are counted apart
// (Stats.Markers), and returned after Reader.ReturnMarkers. A record longer
// than MaxSnaplen (libpcap's maximum), or than its pcapng block, is an
// error; a snaplen of 0 or above MaxSnaplen is read as MaxSnaplen, as
// libpcap does, and a pcap record longer than its file header's snaplen
// is read whole, as Wireshark does. A pcapng interface whose timestamp resolution is finer
// than a 64-bit timestamp counts (if_tsresol above 10^-19 or 2^-63 s) is
// an error, as in libpcap. A pcapng Simple Packet Block has no timestamp:
// its frame takes the time of the frame before it (the Unix epoch, 0, for
// a capture's first frame), the time replay --feed's arbitration goes
// by.
//
// Writing: Writer builds Ethernet/IPv4/UDP frames (IPv4 header checksum set,
// UDP checksum 0, destination MAC derived from the multicast group) and
// writes them with nanosecond timestamps through pcapgo.Writer.
package pcap
