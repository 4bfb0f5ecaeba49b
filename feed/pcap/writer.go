package pcap

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Snaplen is the snapshot length written in capture headers.
const Snaplen = 65535

// Writer writes Ethernet/IPv4/UDP frames to a pcap file with nanosecond
// timestamps, through a 1 MiB buffer. Call Flush at the end.
type Writer struct {
	bw    *bufio.Writer
	pw    *pcapgo.Writer
	frame []byte
	id    uint16
	n     uint64
}

// NewWriter writes a pcap file header (nanosecond resolution, Ethernet,
// snaplen 65535) to w and returns a Writer.
func NewWriter(w io.Writer) (*Writer, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(Snaplen, layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("pcap: write file header: %w", err)
	}
	return &Writer{bw: bw, pw: pw, frame: make([]byte, 0, 2048)}, nil
}

// WriteUDP writes one frame carrying payload from src to dst (see
// AppendUDPFrame), captured at ts ns since the Unix epoch. Successive frames
// get successive IPv4 identifications.
func (w *Writer) WriteUDP(ts int64, src, dst netip.AddrPort, payload []byte) error {
	if len(payload) > Snaplen-14-20-8 {
		return fmt.Errorf("pcap: write frame %d: payload of %d bytes does not fit a frame", w.n+1, len(payload))
	}
	w.id++
	w.frame = AppendUDPFrame(w.frame[:0], src, dst, w.id, payload)
	return w.WriteFrame(ts, w.frame)
}

// WriteFrame writes one raw Ethernet frame captured at ts ns since the Unix
// epoch.
func (w *Writer) WriteFrame(ts int64, frame []byte) error {
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: len(frame), Length: len(frame)}
	if err := w.pw.WritePacket(ci, frame); err != nil {
		return fmt.Errorf("pcap: write frame %d: %w", w.n+1, err)
	}
	w.n++
	return nil
}

// Count returns the number of frames written.
func (w *Writer) Count() uint64 { return w.n }

// Flush writes buffered frames to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("pcap: flush: %w", err)
	}
	return nil
}
