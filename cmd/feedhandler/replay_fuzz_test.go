package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
)

// fuzzCapture is a capture of both of fc's lines (a session's packets,
// each on A then B) written by pcap.Writer; marked: with the batch marks'
// file header (FHB1) and source addresses.
func fuzzCapture(fc *config.Config, marked bool) []byte {
	var buf bytes.Buffer
	w, _ := pcap.NewWriter(&buf)
	src := netip.MustParseAddrPort("10.0.0.1:5000")
	a := netip.AddrPortFrom(fc.Lines[0].Group, fc.Lines[0].Port)
	b := netip.AddrPortFrom(fc.Lines[1].Group, fc.Lines[1].Port)
	bl := moldudp64.NewBuilder(moldudp64.NewSession("FUZZ000001"), 1, 1400)
	at := int64(1_765_000_000_000_000_000)
	for i := range 6 {
		add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: uint64(i + 1), Side: 'B', Shares: 1, Price: 1}
		bl.Add(add.Append(nil))
		p := bytes.Clone(bl.Flush())
		w.WriteUDP(at, src, a, p)
		w.WriteUDP(at+5000, src, b, p)
		at += 20_000
	}
	w.Flush()
	f := buf.Bytes()
	if marked {
		binary.LittleEndian.PutUint32(f[12:16], capture.FileMark)
		for off, i := 24, 0; off+16 <= len(f); i++ {
			n := int(binary.LittleEndian.Uint32(f[off+8:]))
			mac := f[off+16+6 : off+16+12]
			if i%2 == 0 {
				copy(mac, []byte{0x0e, 0, 0, 0, 0x03, 0xe8}) // drained 1 µs before
			} else {
				copy(mac, []byte{0x06, 0, 0, 0, 0, 0})
			}
			off += 16 + n
		}
	}
	return f
}

// FuzzReplayFeed replays any file as a capture through replay --feed's
// arbitrated path (input reader, batch marks, the handler's Replayer, the
// books): nothing panics, every datagram read goes to a line or to Other,
// marks are read only in a file whose header says FHB1, and each message
// the arbiter delivered is applied, filtered or counted bad.
func FuzzReplayFeed(f *testing.F) {
	fc, err := config.Load("../../feeds/demo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fuzzCapture(fc, false))
	f.Add(fuzzCapture(fc, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := input.NewReader(bytes.NewReader(data), input.Options{})
		if err != nil {
			return
		}
		bs, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 32})
		if err != nil {
			t.Fatal(err)
		}
		rp := replayer{bs: bs, quiet: true}
		arb, err := newArbitrated(fc, "fuzz.pcap", in, &rp)
		if err != nil {
			return
		}
		err = arb.run()
		rep := arb.report()
		cs := in.CaptureStats()
		if rep.Datagrams[0]+rep.Datagrams[1]+rep.Other != cs.Datagrams {
			t.Fatalf("datagrams %v + other %d, read %d (%v)", rep.Datagrams, rep.Other, cs.Datagrams, err)
		}
		if rep.Marked > rep.Datagrams[0]+rep.Datagrams[1] || rep.Marked != 0 && in.CaptureSigfigs() != capture.FileMark {
			t.Fatalf("marked %d of %v, sigfigs %#x", rep.Marked, rep.Datagrams, in.CaptureSigfigs())
		}
		if err == nil && rp.n+rep.Filtered+arb.r.BadMessages() != rep.Delivered {
			t.Fatalf("delivered %d: applied %d, filtered %d, bad %d", rep.Delivered, rp.n, rep.Filtered, arb.r.BadMessages())
		}
	})
}

// FuzzApplyFile: applyFile, which frames a mapped BinaryFILE's blocks
// itself (through unsafe pointers) and prefetches ahead, applies the same
// messages, counts the same odd blocks and ends with the same error as a
// plain itch.Scanner loop, on any input, read from the end of a mapping
// whose next page is PROT_NONE (a read past the input faults).
func FuzzApplyFile(f *testing.F) {
	add := itch.AddOrderFields{Header: itch.Header{Locate: 1}, OrderRef: 1, Side: 'B', Shares: 1, Price: 1}
	a := add.Append(nil)
	f.Add(itch.AppendBlock(itch.AppendBlock(nil, a), []byte{'z', 1}))
	f.Add(append(itch.AppendBlock(nil, a), 0, 36, 'A', 0))
	f.Add(append(itch.AppendBlock(nil, a[:20]), 0, 0, 0))
	f.Add(itch.AppendBlock(itch.AppendBlock(nil, append(a, 7)), a))
	f.Add([]byte{0, 12})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := book.Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 32}
		want, ws, wantN := scanApply(cfg, data)
		got, _ := book.New(cfg)
		rp := replayer{bs: got, quiet: true}
		var gs itch.Scanner
		err := rp.applyFile(guardedCopy(t, data), &gs)
		if rp.n != uint64(wantN) || got.Stats() != want.Stats() {
			t.Fatalf("applied %d, want %d; stats %+v, want %+v", rp.n, wantN, got.Stats(), want.Stats())
		}
		if gs.Unknown != ws.Unknown || gs.Short != ws.Short || gs.Long != ws.Long || gs.Truncated != ws.Truncated {
			t.Fatalf("counters %+v, want %+v", gs.Counters, ws.Counters)
		}
		if fmt.Sprint(err) != fmt.Sprint(ws.Err()) {
			t.Fatalf("error %v, want %v", err, ws.Err())
		}
	})
}
