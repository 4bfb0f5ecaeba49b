package itch_test

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// publishedLengths is the length table of the ITCH 5.0 specification,
// written out independently of the package's generated table.
var publishedLengths = map[byte]int{
	'S': 12, 'R': 39, 'H': 25, 'Y': 20, 'L': 26, 'V': 35, 'W': 12, 'K': 28, 'J': 35, 'h': 21,
	'A': 36, 'F': 40, 'E': 31, 'C': 36, 'X': 23, 'D': 19, 'U': 35, 'P': 44, 'Q': 40, 'B': 19,
	'I': 50, 'N': 20, 'O': 48,
}

func TestLengths(t *testing.T) {
	if len(itch.Types) != 23 || len(publishedLengths) != 23 {
		t.Fatalf("have %d types, table %d; want 23", len(itch.Types), len(publishedLengths))
	}
	for c := 0; c < 256; c++ {
		want := publishedLengths[byte(c)]
		if got := itch.Length(byte(c)); got != want {
			t.Errorf("Length(%q) = %d, want %d", byte(c), got, want)
		}
		if itch.Known(byte(c)) != (want != 0) {
			t.Errorf("Known(%q) = %v", byte(c), itch.Known(byte(c)))
		}
	}
	for _, ty := range itch.Types {
		if publishedLengths[ty] == 0 {
			t.Errorf("Types lists %q, not an ITCH 5.0 type", ty)
		}
		if itch.Name(ty) == "" {
			t.Errorf("Name(%q) empty", ty)
		}
	}
}

// TestLayoutSums checks, for every type, that the encoded message is exactly
// the published length and that the XxxFields struct's field sizes (header
// 11 bytes + body fields) add up to that length.
func TestLayoutSums(t *testing.T) {
	if len(vectors) != 23 {
		t.Fatalf("vectors has %d entries, want one per type (23)", len(vectors))
	}
	seen := map[byte]bool{}
	for _, v := range vectors {
		ty := v.Type()
		if seen[ty] {
			t.Errorf("two vectors of type %q", ty)
		}
		seen[ty] = true
		want := publishedLengths[ty]
		if n := len(v.Append(nil)); n != want {
			t.Errorf("%q: Append wrote %d bytes, want %d", ty, n, want)
		}
		if n := len(v.AppendBlock(nil)); n != want+2 {
			t.Errorf("%q: AppendBlock wrote %d bytes, want %d", ty, n, want+2)
		}
		// Sum of the wire sizes of the body fields.
		sum := itch.HeaderLen
		rv := reflect.ValueOf(v).Elem()
		for i := 1; i < rv.NumField(); i++ { // field 0 is Header
			sum += int(rv.Field(i).Type().Size())
		}
		if sum != want {
			t.Errorf("%q: header + fields = %d bytes, want %d", ty, sum, want)
		}
	}
}

// decodeView returns the typed view of m as a reflect.Value (for calling
// accessors by name) and its Fields() result.
func decodeView(t *testing.T, m itch.Msg) (reflect.Value, any) {
	t.Helper()
	f, ok := itch.Decode(m)
	if !ok {
		t.Fatalf("Decode(%q) failed", m.Type())
	}
	name := itch.Name(m.Type())
	view := viewOf(m)
	if view.Type().Name() != name {
		t.Fatalf("view of %q is %s, want %s", m.Type(), view.Type().Name(), name)
	}
	return view, reflect.ValueOf(f).Elem().Interface()
}

func viewOf(m itch.Msg) reflect.Value {
	switch m.Type() {
	case itch.TypeSystemEvent:
		return reflect.ValueOf(itch.SystemEvent(m))
	case itch.TypeStockDirectory:
		return reflect.ValueOf(itch.StockDirectory(m))
	case itch.TypeStockTradingAction:
		return reflect.ValueOf(itch.StockTradingAction(m))
	case itch.TypeRegSHO:
		return reflect.ValueOf(itch.RegSHO(m))
	case itch.TypeMarketParticipantPosition:
		return reflect.ValueOf(itch.MarketParticipantPosition(m))
	case itch.TypeMWCBDeclineLevel:
		return reflect.ValueOf(itch.MWCBDeclineLevel(m))
	case itch.TypeMWCBStatus:
		return reflect.ValueOf(itch.MWCBStatus(m))
	case itch.TypeIPOQuotingPeriod:
		return reflect.ValueOf(itch.IPOQuotingPeriod(m))
	case itch.TypeLULDAuctionCollar:
		return reflect.ValueOf(itch.LULDAuctionCollar(m))
	case itch.TypeOperationalHalt:
		return reflect.ValueOf(itch.OperationalHalt(m))
	case itch.TypeAddOrder:
		return reflect.ValueOf(itch.AddOrder(m))
	case itch.TypeAddOrderMPID:
		return reflect.ValueOf(itch.AddOrderMPID(m))
	case itch.TypeOrderExecuted:
		return reflect.ValueOf(itch.OrderExecuted(m))
	case itch.TypeOrderExecutedWithPrice:
		return reflect.ValueOf(itch.OrderExecutedWithPrice(m))
	case itch.TypeOrderCancel:
		return reflect.ValueOf(itch.OrderCancel(m))
	case itch.TypeOrderDelete:
		return reflect.ValueOf(itch.OrderDelete(m))
	case itch.TypeOrderReplace:
		return reflect.ValueOf(itch.OrderReplace(m))
	case itch.TypeTrade:
		return reflect.ValueOf(itch.Trade(m))
	case itch.TypeCrossTrade:
		return reflect.ValueOf(itch.CrossTrade(m))
	case itch.TypeBrokenTrade:
		return reflect.ValueOf(itch.BrokenTrade(m))
	case itch.TypeNOII:
		return reflect.ValueOf(itch.NOII(m))
	case itch.TypeRPII:
		return reflect.ValueOf(itch.RPII(m))
	case itch.TypeDLCR:
		return reflect.ValueOf(itch.DLCR(m))
	}
	panic("no view")
}

// TestRoundTrip encodes every vector, scans the stream, and compares every
// field: through Fields() and through each named accessor of the view.
func TestRoundTrip(t *testing.T) {
	var s itch.Scanner
	s.Reset(blockStream())
	i := 0
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		want := vectors[i]
		i++
		if m.Type() != want.Type() {
			t.Fatalf("message %d: type %q, want %q", i, m.Type(), want.Type())
		}
		wv := reflect.ValueOf(want).Elem()
		h := wv.Field(0).Interface().(itch.Header)
		if m.Header() != h || m.Locate() != h.Locate || m.Tracking() != h.Tracking || m.Timestamp() != h.Timestamp {
			t.Errorf("%q: header %+v, want %+v", m.Type(), m.Header(), h)
		}
		view, fields := decodeView(t, m)
		if !reflect.DeepEqual(fields, wv.Interface()) {
			t.Errorf("%q: Fields() = %+v\nwant %+v", m.Type(), fields, wv.Interface())
		}
		for _, acc := range []string{"Type", "Locate", "Tracking", "Timestamp", "Header"} {
			got := view.MethodByName(acc).Call(nil)[0].Interface()
			var exp any
			switch acc {
			case "Type":
				exp = want.Type()
			case "Locate":
				exp = h.Locate
			case "Tracking":
				exp = h.Tracking
			case "Timestamp":
				exp = h.Timestamp
			case "Header":
				exp = h
			}
			if got != exp {
				t.Errorf("%q: %s() = %v, want %v", m.Type(), acc, got, exp)
			}
		}
		for j := 1; j < wv.NumField(); j++ {
			name := wv.Type().Field(j).Name
			meth := view.MethodByName(name)
			if !meth.IsValid() {
				t.Errorf("%s has no accessor %s", view.Type().Name(), name)
				continue
			}
			got := meth.Call(nil)[0].Interface()
			if !reflect.DeepEqual(got, wv.Field(j).Interface()) {
				t.Errorf("%q: %s() = %v, want %v", m.Type(), name, got, wv.Field(j).Interface())
			}
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(vectors) || s.Messages != uint64(len(vectors)) {
		t.Fatalf("scanned %d messages (counted %d), want %d", i, s.Messages, len(vectors))
	}
}

// handVectors are messages written out byte by byte from the specification,
// independently of the encoder, as the wire bytes of the matching vectors.
var handVectors = map[byte]string{
	'A': "41" + "2208" + "0b0c" + "1f1aced9f008" + // type, locate, tracking, timestamp 34200000000008
		"0102030405060708" + "42" + "00010203" + // order ref, 'B', shares
		"4141504c20202020" + "0016ed24", // "AAPL    ", price 150.2500
	'E': "45" + "220a" + "0d0e" + "1f1aced9f00a" +
		"2122232425262728" + "00030405" + "3132333435363738", // order ref, executed shares, match
	'U': "55" + "220e" + "1112" + "1f1aced9f00e" +
		"8182838485868788" + "9192939495969798" + // original, new order ref
		"00060708" + "00bc614e", // shares, price 1234.5678
	'R': "52" + "2201" + "0203" + "0002cb4179c8" + // timestamp 12000000456
		"4141504c20202020" + "51" + "4e" + // "AAPL    ", market category 'Q', financial status 'N'
		"00000064" + "4e" + "43" + "5a20" + // round lot 100, round lots only 'N', classification 'C', subtype "Z "
		"50" + "4e" + "59" + "31" + "4e" + // authenticity 'P', SSTI 'N', IPO 'Y', LULD tier '1', ETP 'N'
		"01020304" + "59", // ETP leverage factor, inverse 'Y'
	'P': "50" + "220f" + "1213" + "1f1aced9f00f" +
		"a1a2a3a4a5a6a7a8" + "42" + "00070809" + // order ref, 'B', shares
		"414d5a4e20202020" + "0112a881" + // "AMZN    ", price 1800.0001
		"b1b2b3b4b5b6b7b8", // match number
}

func TestHandVectors(t *testing.T) {
	for ty, hx := range handVectors {
		wire, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		if len(wire) != publishedLengths[ty] {
			t.Fatalf("%q: hand vector is %d bytes, want %d", ty, len(wire), publishedLengths[ty])
		}
		v := vector(ty)
		if got := v.Append(nil); !bytes.Equal(got, wire) {
			t.Errorf("%q: encoded\n%x\nwant\n%x", ty, got, wire)
		}
		if err := itch.Check(wire); err != nil {
			t.Fatalf("%q: Check: %v", ty, err)
		}
		f, _ := itch.Decode(itch.Msg(wire))
		if !reflect.DeepEqual(f, v) {
			t.Errorf("%q: decoded %+v\nwant %+v", ty, f, v)
		}
	}
	// Spot checks through the views, against values read off the spec.
	a := itch.AddOrder(mustHex(t, handVectors['A']))
	if a.OrderRef() != 0x0102030405060708 || a.Side() != 'B' || a.Shares() != 66051 ||
		a.Stock().String() != "AAPL" || a.Price() != 1502500 || a.Timestamp() != 34200000000008 || a.Locate() != 0x2208 {
		t.Errorf("AddOrder view: %+v", a.Fields())
	}
	r := itch.StockDirectory(mustHex(t, handVectors['R']))
	if r.RoundLotSize() != 100 || r.ETPLeverageFactor() != 0x01020304 || r.InverseIndicator() != 'Y' || r.IssueSubType() != [2]byte{'Z', ' '} {
		t.Errorf("StockDirectory view: %+v", r.Fields())
	}
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendKeepsPrefix(t *testing.T) {
	prefix := []byte("prefix")
	for _, v := range vectors {
		dst := append(make([]byte, 0, 8), prefix...) // forces growth
		dst = v.Append(dst)
		if !bytes.HasPrefix(dst, prefix) || !bytes.Equal(dst[len(prefix):], v.Append(nil)) {
			t.Errorf("%q: Append clobbered or misplaced: %x", v.Type(), dst)
		}
		big := make([]byte, 3, 256) // room: no growth, stale bytes after len
		for i := range big[:cap(big)] {
			big[:cap(big)][i] = 0xEE
		}
		big = v.Append(big)
		if !bytes.Equal(big[3:], v.Append(nil)) {
			t.Errorf("%q: Append into a dirty buffer left stale bytes: %x", v.Type(), big[3:])
		}
	}
}

func TestSymbol(t *testing.T) {
	s := itch.NewSymbol("AAPL")
	if string(s[:]) != "AAPL    " || s.String() != "AAPL" || string(s.Trim()) != "AAPL" {
		t.Errorf("NewSymbol: %q %q", s[:], s.String())
	}
	if got := itch.NewSymbol("TOOLONGSYM").String(); got != "TOOLONGS" {
		t.Errorf("long symbol: %q", got)
	}
	if p := itch.NewMPID("GS"); string(p[:]) != "GS  " || p.String() != "GS" {
		t.Errorf("NewMPID: %q", p[:])
	}
}

func TestTimestamp48(t *testing.T) {
	f := itch.OrderDeleteFields{Header: hdr(1, 2, 1<<48|0xABCDEF012345), OrderRef: 9}
	m := itch.OrderDelete(f.Append(nil))
	if m.Timestamp() != 0xABCDEF012345 {
		t.Errorf("timestamp %x: only the low 48 bits must be encoded", m.Timestamp())
	}
	f.Timestamp = itch.MaxTimestamp
	if m := itch.Msg(f.Append(nil)); m.Timestamp() != itch.MaxTimestamp {
		t.Errorf("max timestamp %x", m.Timestamp())
	}
}

func TestCheckAndAccept(t *testing.T) {
	var c itch.Counters
	for _, v := range vectors {
		m := v.Append(nil)
		if err := itch.Check(m); err != nil {
			t.Errorf("Check(%q): %v", v.Type(), err)
		}
		if _, ok := c.Accept(m); !ok {
			t.Errorf("Accept(%q) = false", v.Type())
		}
		if _, ok := c.Accept(append(m, 1, 2)); !ok {
			t.Errorf("Accept(long %q) = false", v.Type())
		}
		if _, ok := c.Accept(m[:len(m)-1]); ok {
			t.Errorf("Accept(short %q) = true", v.Type())
		}
	}
	if _, ok := c.Accept([]byte{'z', 1, 2, 3}); ok {
		t.Error("Accept(unknown) = true")
	}
	if _, ok := c.Accept(nil); ok {
		t.Error("Accept(empty) = true")
	}
	n := uint64(len(vectors))
	want := itch.Counters{Messages: 2 * n, Long: n, Unknown: 1, LastUnknown: 'z', Short: n + 1}
	if c != want {
		t.Errorf("counters %+v, want %+v", c, want)
	}
	if err := itch.Check([]byte{'z'}); err == nil || !strings.Contains(err.Error(), "unknown message type") {
		t.Errorf("Check(unknown) = %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	if _, ok := itch.Decode(itch.Msg{'A', 0, 1}); ok {
		t.Error("Decode(short A) ok")
	}
	if _, ok := itch.Decode(itch.Msg{'z', 0, 1}); ok {
		t.Error("Decode(unknown) ok")
	}
	if _, ok := itch.Decode(nil); ok {
		t.Error("Decode(nil) ok")
	}
}

// TestTimestampShortMsg: Timestamp of a Msg shorter than a header panics
// with an index out of range, even when the bytes past it (the next
// message in the buffer) are within its capacity; a full header reads its
// own bytes only.
func TestTimestampShortMsg(t *testing.T) {
	buf := []byte{'A', 0, 1, 0, 2, 0, 0, 0, 0, 1, 7, 7, 7, 7, 7, 7, 7, 7}
	if got := itch.Msg(buf[:itch.HeaderLen]).Timestamp(); got != 1<<8|7 {
		t.Fatalf("Timestamp of a full header = %#x, want %#x", got, 1<<8|7)
	}
	for n := range itch.HeaderLen {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Timestamp of a %d-byte Msg (capacity %d) did not panic", n, cap(buf))
				}
			}()
			_ = itch.Msg(buf[:n]).Timestamp()
		}()
	}
}
