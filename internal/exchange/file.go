package exchange

import (
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// FileSource turns a recorded feed (a BinaryFILE day file, or a pcap/pcapng
// of MoldUDP64, read by package input in sequence order) into MoldUDP64
// packets for Send: messages are packed by a moldudp64.Builder into packets
// of at most MaxPacket bytes numbered from FirstSeq, optionally followed by
// an end-of-session packet.
type FileSource struct {
	in  *input.Reader
	b   *moldudp64.Builder
	eos bool
	err error

	Messages uint64 // messages packed so far
	Sent     uint64 // packets yielded so far
}

// FileOptions shape a FileSource. Zero values pick defaults.
type FileOptions struct {
	Session      string // MoldUDP64 session (default "00000001")
	FirstSeq     uint64 // sequence number of the first message (default 1)
	MaxPacket    int    // packet size limit, header included (default moldudp64.MaxPayload)
	EndOfSession bool   // finish with an end-of-session packet
}

// OpenFile opens path for sending.
func OpenFile(path string, o FileOptions) (*FileSource, error) {
	if o.Session == "" {
		o.Session = "00000001"
	}
	if o.FirstSeq == 0 {
		o.FirstSeq = 1
	}
	if len(o.Session) > len(moldudp64.Session{}) {
		// moldudp64.NewSession would cut it: the packets would carry
		// another session than the one asked for.
		return nil, fmt.Errorf("open feed file %s: session %q longer than %d characters", path, o.Session, len(moldudp64.Session{}))
	}
	if o.MaxPacket != 0 && (o.MaxPacket < moldudp64.HeaderLen+2 || o.MaxPacket > maxUDPPayload) {
		// moldudp64.NewBuilder panics outside its range.
		return nil, fmt.Errorf("open feed file %s: packet size %d outside %d..%d (a MoldUDP64 header and a block length; the largest UDP payload over IPv4)", path, o.MaxPacket, moldudp64.HeaderLen+2, maxUDPPayload)
	}
	in, err := input.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open feed file %s: %w", path, err)
	}
	return &FileSource{in: in, b: moldudp64.NewBuilder(moldudp64.NewSession(o.Session), o.FirstSeq, o.MaxPacket), eos: o.EndOfSession}, nil
}

// Packets yields the packets; each is valid until the next one is asked
// for (Send copies what it keeps). After the loop, Err reports a read error.
func (f *FileSource) Packets() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for {
			msg, err := f.in.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.err = fmt.Errorf("read feed file: %w", err)
				return
			}
			if err := f.b.Add(msg); errors.Is(err, moldudp64.ErrFull) {
				f.Sent++
				if !yield(f.b.Flush()) {
					return
				}
				err = f.b.Add(msg)
				if err != nil {
					f.err = fmt.Errorf("pack message %d: %w", f.Messages+1, err)
					return
				}
			} else if err != nil {
				f.err = fmt.Errorf("pack message %d: %w", f.Messages+1, err)
				return
			}
			f.Messages++
		}
		if f.b.Pending() > 0 {
			f.Sent++
			if !yield(f.b.Flush()) {
				return
			}
		}
		if f.eos {
			f.Sent++
			yield(f.b.EndOfSession())
		}
	}
}

// Err returns the error that ended Packets early, if any.
func (f *FileSource) Err() error { return f.err }

// Close closes the file.
func (f *FileSource) Close() error { return f.in.Close() }
