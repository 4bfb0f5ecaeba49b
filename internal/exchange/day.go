package exchange

import (
	"errors"
	"fmt"
	"io"

	"github.com/marketfeed/feedhandler/feed/input"
)

// Day holds a recorded day's ITCH messages in memory, addressable by
// MoldUDP64 sequence number, for a SnapshotServer's Messages.
type Day struct {
	first uint64   // sequence number of the first message
	buf   []byte   // messages back to back
	off   []uint64 // off[i] is where message first+i starts; one more entry marks the end
}

// LoadDay reads every message of a BinaryFILE, pcap or pcapng (as
// OpenFile does) and numbers them from firstSeq (0 means 1).
func LoadDay(path string, firstSeq uint64) (*Day, error) {
	if firstSeq == 0 {
		firstSeq = 1
	}
	in, err := input.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load day %s: %w", path, err)
	}
	defer in.Close()
	d := &Day{first: firstSeq, off: []uint64{0}}
	for {
		m, err := in.Next()
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		if err != nil {
			return nil, fmt.Errorf("load day %s: %w", path, err)
		}
		d.buf = append(d.buf, m...)
		d.off = append(d.off, uint64(len(d.buf)))
	}
}

// Len returns the number of messages.
func (d *Day) Len() int { return len(d.off) - 1 }

// Last returns the sequence number of the last message (first-1 when empty).
func (d *Day) Last() uint64 { return d.first + uint64(d.Len()) - 1 }

// Message returns the message with sequence number seq; false outside the
// day. Its signature fits SnapshotConfig.Messages.
func (d *Day) Message(seq uint64) ([]byte, bool) {
	if seq < d.first || seq-d.first >= uint64(d.Len()) {
		return nil, false
	}
	i := seq - d.first
	return d.buf[d.off[i]:d.off[i+1]:d.off[i+1]], true
}
