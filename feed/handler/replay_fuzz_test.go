package handler

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// replayFuzzOp is one datagram of FuzzReplayer, from 6 input bytes:
//
//	d0 bit 0: line; bits 1-2: Offer, OfferMarked not drained, drained
//	  d5 µs before, drained d5<<32 ns away (either side); bit 3: session;
//	  bits 4-5: data, heartbeat, end of session, d5 bytes of garbage;
//	  bits 6-7: time step scale (ns, µs, ms, s)
//	d1: time step (signed)
//	d2: sequence number offset from the highest sent (signed)
//	d3: unused by the layout, mixed into the garbage
//	d4: message count 0..7 (data)
//	d5: see above
type replayFuzzOp [6]byte

var replayFuzzSessions = [2]moldudp64.Session{moldudp64.NewSession("FUZZA00001"), moldudp64.NewSession("FUZZB00002")}

// FuzzReplayer offers datagrams of two sessions on two lines, with receive
// times and batch marks going any way (a capture's timestamps and source
// addresses are the file's to say): nothing panics, and between session
// changes (and sequence restarts) the messages applied come in strictly
// increasing sequence order, none twice.
func FuzzReplayer(f *testing.F) {
	op := func(d0, d1, d2, d3, d4, d5 byte) []byte { return []byte{d0, d1, d2, d3, d4, d5} }
	// Session A on both lines (B a copy, late), a lost packet; then A ends
	// and session B starts; marked with drains, then an hour's jump back.
	f.Add(slices.Concat(
		op(0x40, 5, 0, 0, 2, 0), op(0x41, 1, 0xfe, 0, 2, 0), op(0x40, 5, 0, 0, 3, 0), op(0x40, 5, 3, 0, 1, 0),
		op(0x41, 1, 0xf8, 0, 3, 0), op(0x40, 20, 0, 0, 1, 0), op(0x60, 1, 0, 0, 0, 0), op(0x68, 1, 0, 0, 2, 0),
		op(0x69, 1, 0xfe, 0, 2, 0), op(0x68, 1, 0, 0, 2, 0), op(0xc8, 100, 0, 0, 1, 0),
	))
	f.Add(slices.Concat(
		op(0x44, 5, 0, 0, 2, 2), op(0x43, 1, 0xfe, 0, 2, 0), op(0x44, 5, 0, 0, 3, 3), op(0x46, 5, 3, 0, 1, 0x80),
		op(0x45, 1, 0xf8, 0, 3, 0x7f), op(0x50, 20, 0, 0, 1, 0), op(0x70, 1, 0, 7, 0, 9), op(0xc0, 0x80, 0, 0, 2, 0),
	))
	f.Add(slices.Concat(
		op(0xc0, 0x7f, 0, 0, 1, 0), op(0xc1, 0x80, 0, 0, 1, 0), op(0xc6, 0x7f, 0, 0, 1, 0xff), op(0x30, 1, 0, 0, 0, 9),
	))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Config{Arbiter: ArbiterConfig{Hold: time.Millisecond, Grace: 200 * time.Microsecond, LineTimeout: 50 * time.Millisecond, MaxPending: 16, SessionConfirm: 2}}
		cfg.Receive.Lines = []rx.LineConfig{
			{Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
			{Group: netip.MustParseAddr("239.1.1.2"), Port: 26400},
		}
		var last uint64 // the sequence number last applied since a reset
		var r *Replayer
		restarts := uint64(0)
		applied := uint64(0)
		r = NewReplayer(cfg, func(msg itch.Msg) {
			applied++
			seq := binary.BigEndian.Uint64(msg[3:11])
			if st := r.Stats(); st.Restarts != restarts {
				restarts, last = st.Restarts, 0
			}
			if seq <= last {
				t.Fatalf("applied sequence number %d after %d", seq, last)
			}
			last = seq
		}, func(uint16) {}, func() { last = 0 })
		at := time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
		var high [2]uint64
		for ; len(data) >= 6; data = data[6:] {
			op := replayFuzzOp(data[:6])
			line := int(op[0] & 1)
			s := int(op[0] >> 3 & 1)
			at += int64(int8(op[1])) * [4]int64{1, 1e3, 1e6, 1e9}[op[0]>>6]
			seq := uint64(max(int64(high[s])+1+int64(int8(op[2])), 1))
			var dgram []byte
			switch op[0] >> 4 & 3 {
			case 0:
				b := moldudp64.NewBuilder(replayFuzzSessions[s], seq, 1400)
				for i := range uint64(op[4] & 7) {
					m := make([]byte, itch.Length(itch.TypeSystemEvent))
					m[0] = itch.TypeSystemEvent
					binary.BigEndian.PutUint64(m[3:11], seq+i)
					m[11] = 'Q'
					if err := b.Add(m); err != nil {
						t.Fatal(err)
					}
				}
				dgram = slices.Clone(b.Flush())
				high[s] = max(high[s], seq+uint64(op[4]&7)-1)
			case 1:
				dgram = moldudp64.AppendHeader(nil, replayFuzzSessions[s], seq, 0)
			case 2:
				dgram = moldudp64.AppendHeader(nil, replayFuzzSessions[s], seq, moldudp64.EndOfSessionCount)
			case 3:
				dgram = moldudp64.AppendHeader(nil, replayFuzzSessions[s], seq, uint16(op[3]))
				for i := range int(op[5]) {
					dgram = append(dgram, op[3]^byte(i))
				}
			}
			switch op[0] >> 1 & 3 {
			case 0:
				r.Offer(line, dgram, at)
			case 1:
				r.OfferMarked(line, dgram, at, 0)
			case 2:
				r.OfferMarked(line, dgram, at, at-int64(op[5])*1e3)
			case 3:
				r.OfferMarked(line, dgram, at, at-int64(int8(op[5]))<<32)
			}
		}
		r.Finish()
		if st := r.Stats(); st.Delivered != r.Delivered || applied+r.Filtered()+r.BadMessages() != r.Delivered {
			t.Fatalf("delivered %d (arbiter %d), applied %d, filtered %d, bad %d", r.Delivered, st.Delivered, applied, r.Filtered(), r.BadMessages())
		}
	})
}
