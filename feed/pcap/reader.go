package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"
)

// Format is the container format of a capture file.
type Format uint8

// Capture formats.
const (
	FormatUnknown Format = iota
	FormatPcap
	FormatPcapNG
)

func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return "unknown"
}

// MaxSnaplen is the longest frame a capture may hold, libpcap's maximum
// (MAXIMUM_SNAPLEN): a pcap file header's or pcapng interface's snaplen
// above it (or 0) is read as it, and a longer frame is an error.
const MaxSnaplen = 262144

// ErrNotCapture reports input that starts with neither a pcap nor a pcapng
// magic number.
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// Detect returns the capture format announced by the first four bytes of a
// file, or FormatUnknown. A gzip header counts as pcap (pcapgo inflates it).
func Detect(magic []byte) Format {
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return FormatPcap
	}
	if len(magic) < 4 {
		return FormatUnknown
	}
	switch binary.LittleEndian.Uint32(magic) {
	case 0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1:
		return FormatPcap
	case 0x0A0D0D0A:
		return FormatPcapNG
	}
	return FormatUnknown
}

// Frame is one UDP datagram read from a capture, or a marker frame.
type Frame struct {
	Index  uint64  // 1-based number of the frame in the file (counting skipped ones)
	Time   int64   // capture timestamp, ns since the Unix epoch
	SrcMAC [6]byte // the Ethernet source address (zero for other link types)
	UDP            // addresses and payload (a view valid until the next call to Next)
	// Marker: the frame is a marker frame (EtherMarker, in a file whose
	// sigfigs is MarkedSigfigs), returned only after ReturnMarkers:
	// Payload is its Ethernet payload, Src and Dst are zero.
	Marker bool
}

// Stats counts what a Reader has seen.
type Stats struct {
	Frames    uint64             // frames read from the file
	Datagrams uint64             // UDP datagrams returned by Next
	Skipped   [NumReasons]uint64 // frames skipped, by Reason (Skipped[OK] stays 0)
	Markers   uint64             // marker frames (not datagrams, not skipped either)
	// Reassembled counts the datagrams (in Datagrams) reassembled from
	// IPv4 fragments, Fragments the frames they took: Frames is
	// Datagrams - Reassembled + Fragments + the skipped + Markers, once
	// Next returned io.EOF (fragments held until then count as
	// skipped, Fragment).
	Reassembled, Fragments uint64
}

// Malformed returns the number of skipped frames.
func (s *Stats) Malformed() uint64 {
	var n uint64
	for _, c := range s.Skipped {
		n += c
	}
	return n
}

// SkippedSummary lists the skipped frames by reason, in Reason order:
// "truncated 3, IPv4 fragment 1" ("" when none).
func (s *Stats) SkippedSummary() string {
	var b []byte
	for why := Reason(1); why < NumReasons; why++ {
		if n := s.Skipped[why]; n > 0 {
			if len(b) > 0 {
				b = append(b, ", "...)
			}
			b = append(b, why.String()...)
			b = append(b, ' ')
			b = strconv.AppendUint(b, n, 10)
		}
	}
	return string(b)
}

// Reader iterates the UDP datagrams of a pcap or pcapng capture.
type Reader struct {
	format  Format
	pcap    *pcapgo.Reader
	ng      *pcapgo.NgReader
	link    int
	guard   *ngGuard // pcapng: the blocks' heads, with the section's interfaces
	sigfigs uint32
	stats   Stats
	markers bool // Next returns marker frames too
	// noChecksums: Next takes datagrams whose checksums fail
	// (VerifyChecksums(false))
	noChecksums bool
	// last: the time of the frame read last, a Simple Packet Block's
	// (pcapng), which has none
	last int64
	// frags: the IPv4 fragments held for their datagrams
	frags reassembly
}

// NewReader reads the file header from r and returns a Reader. r is read
// through a 1 MiB buffer.
func NewReader(r io.Reader) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 1<<16 {
		br = bufio.NewReaderSize(r, 1<<20)
	}
	magic, err := br.Peek(4)
	if err != nil && len(magic) < 2 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("pcap: read file header: %w", err)
	}
	rd := &Reader{format: Detect(magic)}
	switch rd.format {
	case FormatPcap:
		hdr, _ := br.Peek(24)
		if len(hdr) == 24 {
			rd.sigfigs = fileSigfigs(hdr)
		}
		rd.pcap, err = pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcap: read pcap file header: %w", err)
		}
		// pcapgo sizes its frame buffer by the header's snaplen and
		// takes a record up to it: 2^32-1 in a damaged or hostile file,
		// gigabytes for a file of a few bytes. libpcap reads a snaplen of
		// 0 or above its maximum as the maximum; so does this reader.
		// And pcapgo refuses a record longer than a smaller snaplen,
		// which some writers put in the header whatever they write
		// (dpkt's 1500): Wireshark reads such a record whole, tcpdump
		// cut to the snaplen, this reader whole (up to the maximum).
		rd.pcap.SetSnaplen(MaxSnaplen)
		// pcapgo's link type is a byte (layers.LinkType): Linux cooked
		// v2, 276, came back as 20. The header's is read here.
		rd.link = int(rd.pcap.LinkType())
		if lt, ok := fileLinkType(hdr); ok {
			rd.link = lt
		}
	case FormatPcapNG:
		rd.guard = &ngGuard{r: br}
		rd.ng, err = pcapgo.NewNgReader(rd.guard, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("pcap: read pcapng section header: %w", err)
		}
	default:
		return nil, fmt.Errorf("pcap: read file header: magic % x: %w", magic, ErrNotCapture)
	}
	return rd, nil
}

// Format returns the container format of the capture.
func (r *Reader) Format() Format { return r.format }

// Sigfigs returns the pcap file header's sigfigs field: 0 in the files of
// most tools, capture.FileMark in a capture whose frames carry batch
// marks; 0 for pcapng and a gzip-compressed pcap.
func (r *Reader) Sigfigs() uint32 { return r.sigfigs }

// ReturnMarkers makes Next return the marker frames of a file whose
// sigfigs is MarkedSigfigs (Frame.Marker) instead of passing over them.
func (r *Reader) ReturnMarkers() { r.markers = true }

// VerifyChecksums sets whether Next skips a datagram whose IPv4 header
// checksum or UDP checksum fails (BadChecksum): on by default, as the
// kernel and the handler's AF_XDP path drop one; off, Next returns it, as
// that path does with receive.verify_checksums false (a sender on the
// host with checksum offload, whose frames carry partial checksums).
func (r *Reader) VerifyChecksums(on bool) { r.noChecksums = !on }

// fileSigfigs reads sigfigs (bytes 12:16) from a pcap file header, in the
// byte order its magic number gives (0 for a gzip header).
func fileSigfigs(hdr []byte) uint32 {
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xA1B2C3D4, 0xA1B23C4D:
		return binary.LittleEndian.Uint32(hdr[12:16])
	case 0xD4C3B2A1, 0x4D3CB2A1:
		return binary.BigEndian.Uint32(hdr[12:16])
	}
	return 0
}

// fileLinkType reads the link type from a pcap file header (bytes 20:24,
// less the FCS bits above it, as libpcap's LT_LINKTYPE), in the byte order
// its magic number gives; false for a gzip header.
func fileLinkType(hdr []byte) (int, bool) {
	if len(hdr) < 24 {
		return 0, false
	}
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xA1B2C3D4, 0xA1B23C4D:
		return int(binary.LittleEndian.Uint32(hdr[20:24]) & 0x03FFFFFF), true
	case 0xD4C3B2A1, 0x4D3CB2A1:
		return int(binary.BigEndian.Uint32(hdr[20:24]) & 0x03FFFFFF), true
	}
	return 0, false
}

// Next returns the next frame that is a whole IPv4/UDP datagram, counting
// and skipping the others; marker frames (EtherMarker, in a file whose
// sigfigs is MarkedSigfigs) are counted apart (Stats.Markers), and
// returned after ReturnMarkers. It returns io.EOF at the end of the capture; a
// capture cut inside a frame yields an error wrapping io.ErrUnexpectedEOF.
func (r *Reader) Next() (Frame, error) {
	for {
		var data []byte
		var ci gopacket.CaptureInfo
		var err error
		link := r.link
		var at int64
		if r.pcap != nil {
			data, ci, err = r.pcap.ZeroCopyReadPacketData()
			at = ci.Timestamp.UnixNano()
		} else {
			data, ci, err = r.ng.ZeroCopyReadPacketData()
			if err == nil {
				link, at = r.ngFrame(ci)
			}
		}
		if err != nil {
			if err == io.EOF {
				r.stats.Skipped[Fragment] += r.frags.flush()
				return Frame{}, io.EOF
			}
			return Frame{}, fmt.Errorf("pcap: read frame %d: %w", r.stats.Frames+1, err)
		}
		r.stats.Frames++
		r.last = at
		if len(r.frags.queues) > 0 {
			r.stats.Skipped[Fragment] += r.frags.expire(at)
		}
		ip, why := linkPayload(data, link)
		var udp UDP
		if why == OK {
			udp, why = decodeIPv4(ip, r.checks())
		}
		if why == Fragment {
			if fr, ok := r.reassemble(ip, data, link, at); ok {
				return fr, nil
			}
			continue
		}
		if why == NotIPv4 && r.isMarker(data, link) {
			r.stats.Markers++
			if !r.markers {
				continue
			}
			fr := Frame{Index: r.stats.Frames, Time: at, Marker: true}
			copy(fr.SrcMAC[:], data[6:12])
			fr.Payload = data[14:len(data):len(data)]
			return fr, nil
		}
		if why != OK {
			r.stats.Skipped[why]++
			continue
		}
		r.stats.Datagrams++
		fr := Frame{Index: r.stats.Frames, Time: at, UDP: udp}
		if link == LinkEthernet {
			copy(fr.SrcMAC[:], data[6:12]) // DecodeFrame checked the length
		}
		return fr, nil
	}
}

// reassemble takes fragment ip of frame data (link type link, read at
// at) to its datagram, as the kernel does for the socket backends, and
// returns the datagram when the fragment completed it; a fragment the
// kernel would drop (fragmentOK) or that drops its datagram is counted.
func (r *Reader) reassemble(ip, data []byte, link int, at int64) (Frame, bool) {
	c := r.checks()
	ip = ip[:binary.BigEndian.Uint16(ip[2:])] // no Ethernet padding (decodeIPv4 checked the total length), as the kernel trims it
	if why := fragmentOK(ip, c); why != OK {
		r.stats.Skipped[why]++
		return Frame{}, false
	}
	var mac [6]byte
	if link == LinkEthernet {
		copy(mac[:], data[6:12]) // linkPayload checked the length
	}
	res := r.frags.add(ip, at, mac)
	r.stats.Skipped[FragmentTooFar] += r.frags.tooFar
	r.frags.tooFar = 0
	if res.why != OK {
		r.stats.Skipped[res.why] += res.frames
		return Frame{}, false
	}
	if !res.done {
		return Frame{}, false
	}
	udp, why := decodeIPv4(res.pkt, c)
	if why != OK {
		// Its frames are skipped as a whole datagram is.
		r.stats.Skipped[why] += res.frames
		return Frame{}, false
	}
	r.stats.Datagrams++
	r.stats.Reassembled++
	r.stats.Fragments += res.frames
	return Frame{Index: r.stats.Frames, Time: at, SrcMAC: res.srcMAC, UDP: udp}, true
}

// checks returns the kernel's checks Next applies to a datagram: all of
// them (DecodeFrame's) to a frame of the network, the checksums' only
// when it verifies them (VerifyChecksums); not the source's and
// the options' to a handler's record (a file whose sigfigs is
// MarkedSigfigs), a datagram its receive path took, past those checks,
// or a re-request answer, written from 0.0.0.0.
func (r *Reader) checks() checks {
	c := checkAll
	if r.sigfigs == MarkedSigfigs {
		c = checkSums
	}
	if r.noChecksums {
		c &^= checkSums
	}
	return c
}

// isMarker reports whether a frame that is not IPv4 is a marker frame.
func (r *Reader) isMarker(data []byte, link int) bool {
	return link == LinkEthernet && r.sigfigs == MarkedSigfigs && len(data) >= 14 &&
		binary.BigEndian.Uint16(data[12:]) == EtherMarker
}

// ngFrame returns the link type and the time of the pcapng frame pcapgo
// returned with ci.
func (r *Reader) ngFrame(ci gopacket.CaptureInfo) (link int, at int64) {
	// The guard has read the head of the block of the packet pcapgo
	// returned, and of no block after it: its interfaces are those of the
	// packet's section, and its timestamp the packet's.
	link = -1
	if i := ci.InterfaceIndex; i >= 0 && i < len(r.guard.ifaces) {
		link = r.guard.ifaces[i].link
	}
	if !r.guard.hasTS {
		// A Simple Packet Block: no timestamp (pcapgo gives it Go's
		// zero time, year 1): the frame before it's, or the Unix epoch
		// (0) for a first frame, so that time does not run back.
		return link, r.last
	}
	if link < 0 {
		return link, ci.Timestamp.UnixNano()
	}
	return link, r.guard.ifaces[ci.InterfaceIndex].unixNano(r.guard.ts)
}

// Stats returns the counters so far.
func (r *Reader) Stats() Stats { return r.stats }
