// Package pcaptest reads frames back as feedhandler replay reads a
// capture of them, for the tests that compare a replay with what the
// receive backends delivered.
package pcaptest

import (
	"bytes"
	"io"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// ReadAsCapture writes Ethernet frames into a pcap file in memory, frame
// i at time at(i), and reads it back with pcap.Reader, as feedhandler
// replay reads a capture: the datagrams it returns (their payloads
// copied) and its counts.
func ReadAsCapture(frames [][]byte, at func(i int) int64) ([]pcap.Frame, pcap.Stats, error) {
	var file bytes.Buffer
	w, err := pcap.NewWriter(&file)
	if err != nil {
		return nil, pcap.Stats{}, err
	}
	for i, f := range frames {
		if err := w.WriteFrame(at(i), f); err != nil {
			return nil, pcap.Stats{}, err
		}
	}
	if err := w.Flush(); err != nil {
		return nil, pcap.Stats{}, err
	}
	r, err := pcap.NewReader(&file)
	if err != nil {
		return nil, pcap.Stats{}, err
	}
	var out []pcap.Frame
	for {
		fr, err := r.Next()
		if err == io.EOF {
			return out, r.Stats(), nil
		}
		if err != nil {
			return out, r.Stats(), err
		}
		fr.Payload = bytes.Clone(fr.Payload)
		out = append(out, fr)
	}
}
