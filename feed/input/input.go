package input

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
)

// Format is the kind of file a Reader reads.
type Format uint8

// File formats.
const (
	FormatBinaryFile Format = iota + 1
	FormatPcap
	FormatPcapNG
)

func (f Format) String() string {
	switch f {
	case FormatBinaryFile:
		return "binaryfile"
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return "unknown"
}

// MaxGaps is how many gaps a session's statistics list (all are counted).
const MaxGaps = 1000

// Options tune a Reader; the zero value accepts everything.
type Options struct {
	Port          uint16     // captures: only datagrams to this UDP port (0: any)
	Group         netip.Addr // captures: only datagrams to this address (invalid: any)
	ReorderWindow int        // captures: packets held back waiting for missing ones (0: 1024; <0: none)
	ReorderDelay  int64      // captures: longest hold in capture time, ns (0: 10 ms)
	// NoChecksums: captures: take datagrams whose IPv4 header or UDP
	// checksum fails (pcap.Reader.VerifyChecksums(false)), as the AF_XDP
	// receive path does with receive.verify_checksums false.
	NoChecksums bool
}

// LineStats counts the MoldUDP64 packets sent to one destination address and
// port (one feed line).
type LineStats struct {
	Dst       netip.AddrPort
	Datagrams uint64 // MoldUDP64 packets
	First     uint64 // of those, packets that delivered messages (this line was first)
}

// SessionStats describes one MoldUDP64 session found in a capture.
type SessionStats struct {
	Session  moldudp64.Session
	FirstSeq uint64 // first sequence number delivered (or announced by a heartbeat)
	Joined   bool   // the capture starts after sequence number 1: FirstSeq-1 messages are not in it, and not counted as a gap
	NextSeq  uint64 // expected sequence number after the last packet
	Messages uint64 // messages delivered
	Tracker  moldudp64.TrackerStats
	Missing  uint64            // runs of missing sequence numbers (adjacent gaps merged)
	Gaps     []moldudp64.Range // the first MaxGaps runs
}

// Stats counts what a Reader has read. For a BinaryFILE only Format,
// Messages, ByType, the timestamps and Codec are filled.
type Stats struct {
	Format         Format
	Gzip           bool        // the file was gzip-compressed
	GzipPadding    uint64      // zero bytes after the last gzip member, ignored (as gzip -d does)
	Messages       uint64      // messages returned by Next
	ByType         [256]uint64 // of those, by type byte
	FirstTimestamp uint64      // timestamp of the first message returned
	LastTimestamp  uint64      // timestamp of the last message returned
	Codec          itch.Counters

	Frames      pcap.Stats            // frames read and skipped by reason
	Filtered    uint64                // datagrams to other ports or groups
	Datagrams   uint64                // datagrams parsed as MoldUDP64
	Malformed   uint64                // datagrams that are not valid MoldUDP64 packets
	ParseErrors moldudp64.ParseErrors // why
	Held        uint64                // packets held back until earlier ones arrived
	Sessions    []SessionStats
	Lines       []LineStats // per destination address, in order of appearance
}

// Gaps returns the number of runs of missing sequence numbers and of
// missing sequence numbers over all sessions.
func (s *Stats) Gaps() (gaps, missing uint64) {
	for i := range s.Sessions {
		gaps += s.Sessions[i].Missing
		missing += s.Sessions[i].Tracker.GapMessages
	}
	return gaps, missing
}

// session is the per-session sequencing state.
type session struct {
	tr      moldudp64.Tracker
	pending []held // pending[head:] sorted by Seq
	head    int
}

type held struct {
	line int              // index into Stats.Lines
	pkt  moldudp64.Packet // Blocks alias buf
	buf  []byte
	time int64 // capture time
}

// Reader iterates the ITCH messages of a file.
type Reader struct {
	opt     Options
	closers []io.Closer  // gzip reader, file
	gz      *gzipMembers // the gzip reader, nil when not gzipped
	day     *dayfile.Reader
	cap     *pcap.Reader
	stats   Stats
	empty   bool // the input held no byte (Empty)
	sess    []session

	// the packet being delivered
	it      moldudp64.Iter
	cur     int // index into sess and stats.Sessions of the current packet
	active  bool
	release []byte   // buffer of a drained held packet, freed on the next call
	free    [][]byte // recycled held-packet buffers
	eof     bool
	now     int64 // capture time of the last datagram
}

// Open opens the file at path and detects its format.
func Open(path string) (*Reader, error) { return OpenOptions(path, Options{}) }

// OpenOptions opens the file at path with options.
func OpenOptions(path string, opt Options) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	r, err := NewReader(f, opt)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open input %s: %w", path, err)
	}
	r.closers = append(r.closers, f)
	return r, nil
}

// NewReader detects the format of the data in rd and returns a Reader over
// it. Close does not close rd.
func NewReader(rd io.Reader, opt Options) (*Reader, error) {
	if opt.ReorderWindow == 0 {
		opt.ReorderWindow = 1024
	}
	if opt.ReorderDelay == 0 {
		opt.ReorderDelay = 10e6
	}
	br := bufio.NewReaderSize(rd, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && len(magic) == 0 {
		if err == io.EOF {
			return &Reader{opt: opt, day: dayfile.NewReader(br), stats: Stats{Format: FormatBinaryFile}, empty: true}, nil
		}
		return nil, fmt.Errorf("detect format: %w", err)
	}
	r := &Reader{opt: opt}
	if len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		// Nasdaq publishes day files gzipped; captures are often kept so.
		zr, err := newGzipMembers(br)
		if err != nil {
			return nil, fmt.Errorf("detect format: gzip: %w", err)
		}
		r.closers = append(r.closers, zr)
		r.gz = zr
		br = bufio.NewReaderSize(zr, 1<<20)
		if magic, err = br.Peek(4); err != nil && len(magic) == 0 {
			if err == io.EOF {
				r.day, r.stats.Format, r.empty = dayfile.NewReader(br), FormatBinaryFile, true
				return r, nil
			}
			return nil, fmt.Errorf("detect format: gzip: %w", err)
		}
		r.stats.Gzip = true
	}
	if what := compressed(magic); what != "" {
		return nil, fmt.Errorf("detect format: first bytes % x: %s: %w", magic, what, ErrUnknownFormat)
	}
	switch pcap.Detect(magic) {
	case pcap.FormatPcap, pcap.FormatPcapNG:
		if r.cap, err = pcap.NewReader(br); err != nil {
			return nil, err
		}
		r.cap.VerifyChecksums(!opt.NoChecksums)
		r.stats.Format = FormatPcap
		if r.cap.Format() == pcap.FormatPcapNG {
			r.stats.Format = FormatPcapNG
		}
	default:
		// A BinaryFILE starts with a record: a length, then a message of a
		// known type at least as long as its type (a System Event 'S', 12).
		if len(magic) >= 3 && (!itch.Known(magic[2]) || int(magic[0])<<8|int(magic[1]) < itch.Length(magic[2])) {
			return nil, fmt.Errorf("detect format: first bytes % x: %w", magic, ErrUnknownFormat)
		}
		r.day = dayfile.NewReader(br)
		r.stats.Format = FormatBinaryFile
	}
	return r, nil
}

// compressed names the compression of a file that starts with magic, and
// how to read it, for the compressions other than gzip that day files and
// captures are kept in ("" for none of them). A bzip2 file ("BZh9") had
// been taken for a BinaryFILE: a first record of 16986 bytes of type 'h'.
func compressed(magic []byte) string {
	tool := ""
	switch {
	case bytes.HasPrefix(magic, []byte("BZh")) && len(magic) >= 4 && '1' <= magic[3] && magic[3] <= '9':
		tool = "bzip2"
	case bytes.HasPrefix(magic, []byte("\xfd7zX")):
		tool = "xz"
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		tool = "zstd"
	case bytes.HasPrefix(magic, []byte("PK\x03\x04")):
		return "a zip archive: extract it first (unzip FILE)"
	default:
		return ""
	}
	return fmt.Sprintf("%s-compressed: decompress it first (%s -d FILE), or pipe it in (%s -dc FILE | feedhandler replay /dev/stdin)", tool, tool, tool)
}

// ErrUnknownFormat reports a file that is neither a capture nor a
// BinaryFILE.
var ErrUnknownFormat = errors.New("not a BinaryFILE, pcap or pcapng")

// Format returns the detected file format.
func (r *Reader) Format() Format { return r.stats.Format }

// Empty reports that the input held no byte at all (after gzip, if
// gzipped): read as a BinaryFILE of no message.
func (r *Reader) Empty() bool { return r.empty }

// Stats returns the counts so far. The returned value is owned by the
// Reader and changes with later calls to Next.
func (r *Reader) Stats() *Stats {
	if r.cap != nil {
		r.stats.Frames = r.cap.Stats()
	}
	if r.gz != nil {
		r.stats.GzipPadding = r.gz.padding
	}
	for i := range r.sess {
		r.stats.Sessions[i].Tracker = r.sess[i].tr.Stats
		r.stats.Sessions[i].NextSeq = r.sess[i].tr.Next()
	}
	return &r.stats
}

// NextDatagram returns a capture's next UDP datagram as recorded (frames
// that are not whole IPv4/UDP datagrams skipped and counted in
// CaptureStats), or its next marker frame (pcap.Frame.Marker: a record of
// the handler's receive thread, package capture), without Next's filters,
// session tracking or reorder window: for a caller that arbitrates the
// lines itself. It is for captures only, and not to be mixed with Next on
// one Reader.
func (r *Reader) NextDatagram() (pcap.Frame, error) {
	if r.cap == nil {
		return pcap.Frame{}, fmt.Errorf("input: %s is not a capture", r.stats.Format)
	}
	r.cap.ReturnMarkers()
	return r.cap.Next()
}

// CaptureSigfigs returns a pcap capture's file header sigfigs field
// (pcap.Reader.Sigfigs; 0 for a BinaryFILE).
func (r *Reader) CaptureSigfigs() uint32 {
	if r.cap == nil {
		return 0
	}
	return r.cap.Sigfigs()
}

// CaptureStats returns the capture reader's frame counts (zero for a
// BinaryFILE).
func (r *Reader) CaptureStats() pcap.Stats {
	if r.cap == nil {
		return pcap.Stats{}
	}
	return r.cap.Stats()
}

// Close closes the file opened by Open (and the gzip stream, if any).
func (r *Reader) Close() error {
	var err error
	for _, c := range r.closers {
		if e := c.Close(); e != nil && err == nil {
			err = fmt.Errorf("close input: %w", e)
		}
	}
	r.closers = nil
	return err
}

// Next returns the next message, a view valid until the next call. It
// returns io.EOF after the last message.
func (r *Reader) Next() (itch.Msg, error) {
	if r.day != nil {
		for {
			b, err := r.day.Next()
			if err != nil {
				if errors.Is(err, dayfile.ErrEmptyRecord) {
					// Counted and passed over, as replay's scan of a
					// mapped BinaryFILE does (itch.Scanner).
					r.stats.Codec.Accept(nil)
					continue
				}
				return nil, err
			}
			if m, ok := r.stats.Codec.Accept(b); ok {
				r.count(m)
				return m, nil
			}
		}
	}
	if r.release != nil {
		r.free = append(r.free, r.release)
		r.release = nil
	}
	for {
		if r.active {
			b, ok := r.it.Next()
			if ok {
				if m, ok := r.stats.Codec.Accept(b); ok {
					r.stats.Sessions[r.cur].Messages++
					r.count(m)
					return m, nil
				}
				continue
			}
			r.active = false
		}
		if err := r.advance(); err != nil {
			return nil, err
		}
	}
}

func (r *Reader) count(m itch.Msg) {
	ts := m.Timestamp()
	if r.stats.Messages == 0 {
		r.stats.FirstTimestamp = ts
	}
	r.stats.LastTimestamp = ts
	r.stats.Messages++
	r.stats.ByType[m[0]]++
}

// advance makes the next packet with messages to deliver current: a held
// packet whose turn has come, or the next datagram of the file.
func (r *Reader) advance() error {
	for {
		if i := r.ready(); i >= 0 {
			s := &r.sess[i]
			h := s.pop()
			if r.apply(i, h.line, h.pkt) {
				r.release = h.buf
				return nil
			}
			r.free = append(r.free, h.buf)
			continue
		}
		if r.eof {
			return io.EOF
		}
		fr, err := r.cap.Next()
		if err == io.EOF {
			r.eof = true
			continue
		}
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
		if (r.opt.Port != 0 && fr.Dst.Port() != r.opt.Port) || (r.opt.Group.IsValid() && fr.Dst.Addr() != r.opt.Group) {
			r.stats.Filtered++
			continue
		}
		p, err := moldudp64.Parse(fr.Payload)
		if err != nil {
			r.stats.Malformed++
			r.stats.ParseErrors.Count(err)
			continue
		}
		r.stats.Datagrams++
		li := r.line(fr.Dst)
		r.stats.Lines[li].Datagrams++
		i := r.session(p.Session)
		s := &r.sess[i]
		r.now = fr.Time
		if s.tr.Started() && p.Seq > s.tr.Next() && r.opt.ReorderWindow > 0 {
			r.hold(s, li, p, fr.Time)
			r.stats.Held++
			continue
		}
		if r.apply(i, li, p) {
			return nil
		}
	}
}

// ready returns a session whose first held packet is due: next in
// sequence, pushed out by a full window, or flushed at the end of the file;
// -1 when none.
func (r *Reader) ready() int {
	for i := range r.sess {
		s := &r.sess[i]
		if n := len(s.pending) - s.head; n > 0 {
			h := &s.pending[s.head]
			if h.pkt.Seq <= s.tr.Next() || n > r.opt.ReorderWindow || r.eof || r.now-h.time > r.opt.ReorderDelay {
				return i
			}
		}
	}
	return -1
}

// apply tracks p and, when it carries messages to deliver, makes it the
// current packet.
func (r *Reader) apply(i, line int, p moldudp64.Packet) bool {
	s := &r.sess[i]
	st := &r.stats.Sessions[i]
	if !s.tr.Started() && p.Seq > 1 {
		// A capture that starts mid-session: expect its first packet rather
		// than reporting everything before it as a gap.
		s.tr.Expect(p.Session, p.Seq)
		st.Joined = true
	}
	v := s.tr.TrackPacket(p)
	if v.Gap.Count > 0 {
		if n := len(st.Gaps); n > 0 && st.Gaps[n-1].End() == v.Gap.First {
			st.Gaps[n-1].Count += v.Gap.Count // the same run, split by a heartbeat
		} else {
			st.Missing++
			if n < MaxGaps {
				st.Gaps = append(st.Gaps, v.Gap)
			}
		}
	}
	if st.FirstSeq == 0 && (v.Kind == moldudp64.KindInOrder || v.Kind == moldudp64.KindGap || v.Kind == moldudp64.KindHeartbeat || v.Kind == moldudp64.KindEndOfSession) {
		st.FirstSeq = p.Seq
	}
	if !v.Apply() || p.Messages() == 0 {
		return false
	}
	r.stats.Lines[line].First++
	r.it = p.Iter()
	r.it.Skip(int(v.Skip))
	r.cur = i
	r.active = true
	return true
}

func (r *Reader) hold(s *session, line int, p moldudp64.Packet, at int64) {
	var buf []byte
	if n := len(r.free); n > 0 {
		buf = r.free[n-1][:0]
		r.free = r.free[:n-1]
	}
	buf = p.Append(buf)
	q, err := moldudp64.Parse(buf)
	if err != nil {
		panic(fmt.Sprintf("input: reparse held packet: %v", err))
	}
	// After the packets with the same sequence number: first come, first
	// served (and the oldest stays at the head, so the delay bound holds).
	i, _ := slices.BinarySearchFunc(s.pending[s.head:], q.Seq, func(h held, seq uint64) int {
		if h.pkt.Seq <= seq {
			return -1
		}
		return 1
	})
	s.pending = slices.Insert(s.pending, s.head+i, held{line: line, pkt: q, buf: buf, time: at})
}

// pop removes the first held packet.
func (s *session) pop() held {
	h := s.pending[s.head]
	s.pending[s.head] = held{}
	s.head++
	switch {
	case s.head == len(s.pending):
		s.pending, s.head = s.pending[:0], 0
	case s.head >= 256 && s.head*2 >= len(s.pending):
		n := copy(s.pending, s.pending[s.head:])
		clear(s.pending[n:])
		s.pending, s.head = s.pending[:n], 0
	}
	return h
}

// line returns the index of the statistics of destination dst.
func (r *Reader) line(dst netip.AddrPort) int {
	for i := range r.stats.Lines {
		if r.stats.Lines[i].Dst == dst {
			return i
		}
	}
	r.stats.Lines = append(r.stats.Lines, LineStats{Dst: dst})
	return len(r.stats.Lines) - 1
}

// session returns the index of the state for session name s.
func (r *Reader) session(s moldudp64.Session) int {
	for i := range r.sess {
		if r.stats.Sessions[i].Session == s {
			return i
		}
	}
	r.sess = append(r.sess, session{})
	r.stats.Sessions = append(r.stats.Sessions, SessionStats{Session: s})
	return len(r.sess) - 1
}
