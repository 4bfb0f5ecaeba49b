package itch_test

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// specField is one body field of a message as the ITCH 5.0 specification
// tables give it: its name in the package, its offset and its size.
type specField struct {
	name string
	off  int
	size int
}

// specLayouts is the specification's field table of every message type,
// written out by offset (not summed from sizes as the generator does), so
// that a field placed at a wrong offset or given a wrong width by the
// generator's table disagrees with it.
var specLayouts = map[byte]struct {
	length int
	fields []specField
}{
	'S': {12, []specField{{"EventCode", 11, 1}}},
	'R': {39, []specField{{"Stock", 11, 8}, {"MarketCategory", 19, 1}, {"FinancialStatus", 20, 1},
		{"RoundLotSize", 21, 4}, {"RoundLotsOnly", 25, 1}, {"IssueClassification", 26, 1},
		{"IssueSubType", 27, 2}, {"Authenticity", 29, 1}, {"ShortSaleThreshold", 30, 1},
		{"IPOFlag", 31, 1}, {"LULDRefPriceTier", 32, 1}, {"ETPFlag", 33, 1},
		{"ETPLeverageFactor", 34, 4}, {"InverseIndicator", 38, 1}}},
	'H': {25, []specField{{"Stock", 11, 8}, {"TradingState", 19, 1}, {"Reserved", 20, 1}, {"Reason", 21, 4}}},
	'Y': {20, []specField{{"Stock", 11, 8}, {"Action", 19, 1}}},
	'L': {26, []specField{{"MPID", 11, 4}, {"Stock", 15, 8}, {"PrimaryMarketMaker", 23, 1},
		{"MarketMakerMode", 24, 1}, {"MarketParticipantState", 25, 1}}},
	'V': {35, []specField{{"Level1", 11, 8}, {"Level2", 19, 8}, {"Level3", 27, 8}}}, // Price(8)
	'W': {12, []specField{{"BreachedLevel", 11, 1}}},
	'K': {28, []specField{{"Stock", 11, 8}, {"ReleaseTime", 19, 4}, {"ReleaseQualifier", 23, 1}, {"IPOPrice", 24, 4}}},
	'J': {35, []specField{{"Stock", 11, 8}, {"CollarRefPrice", 19, 4}, {"UpperCollarPrice", 23, 4},
		{"LowerCollarPrice", 27, 4}, {"CollarExtension", 31, 4}}},
	'h': {21, []specField{{"Stock", 11, 8}, {"MarketCode", 19, 1}, {"HaltAction", 20, 1}}},
	'A': {36, []specField{{"OrderRef", 11, 8}, {"Side", 19, 1}, {"Shares", 20, 4}, {"Stock", 24, 8}, {"Price", 32, 4}}},
	'F': {40, []specField{{"OrderRef", 11, 8}, {"Side", 19, 1}, {"Shares", 20, 4}, {"Stock", 24, 8},
		{"Price", 32, 4}, {"Attribution", 36, 4}}},
	'E': {31, []specField{{"OrderRef", 11, 8}, {"ExecutedShares", 19, 4}, {"MatchNumber", 23, 8}}},
	'C': {36, []specField{{"OrderRef", 11, 8}, {"ExecutedShares", 19, 4}, {"MatchNumber", 23, 8},
		{"Printable", 31, 1}, {"ExecutionPrice", 32, 4}}},
	'X': {23, []specField{{"OrderRef", 11, 8}, {"CancelledShares", 19, 4}}},
	'D': {19, []specField{{"OrderRef", 11, 8}}},
	'U': {35, []specField{{"OriginalOrderRef", 11, 8}, {"NewOrderRef", 19, 8}, {"Shares", 27, 4}, {"Price", 31, 4}}},
	'P': {44, []specField{{"OrderRef", 11, 8}, {"Side", 19, 1}, {"Shares", 20, 4}, {"Stock", 24, 8},
		{"Price", 32, 4}, {"MatchNumber", 36, 8}}},
	'Q': {40, []specField{{"Shares", 11, 8}, {"Stock", 19, 8}, {"CrossPrice", 27, 4}, {"MatchNumber", 31, 8}, {"CrossType", 39, 1}}},
	'B': {19, []specField{{"MatchNumber", 11, 8}}},
	'I': {50, []specField{{"PairedShares", 11, 8}, {"ImbalanceShares", 19, 8}, {"ImbalanceDirection", 27, 1},
		{"Stock", 28, 8}, {"FarPrice", 36, 4}, {"NearPrice", 40, 4}, {"CurrentRefPrice", 44, 4},
		{"CrossType", 48, 1}, {"PriceVariation", 49, 1}}},
	'N': {20, []specField{{"Stock", 11, 8}, {"InterestFlag", 19, 1}}},
	'O': {48, []specField{{"Stock", 11, 8}, {"OpenEligibility", 19, 1}, {"MinAllowedPrice", 20, 4},
		{"MaxAllowedPrice", 24, 4}, {"NearExecPrice", 28, 4}, {"NearExecTime", 32, 8},
		{"LowerPriceRangeCollar", 40, 4}, {"UpperPriceRangeCollar", 44, 4}}},
}

// TestSpecLayouts encodes a message of every type by hand from
// specLayouts (every byte of it distinct from its neighbours, each field
// written big-endian at its offset) and decodes it with the package: with
// Decode, with the typed view's accessors and through a Scanner, between
// blocks of unknown types that the Scanner must skip by their length and
// count. The table's fields must tile the message from offset 11 to its
// length without gap or overlap.
func TestSpecLayouts(t *testing.T) {
	if len(specLayouts) != 23 {
		t.Fatalf("specLayouts has %d types, want 23", len(specLayouts))
	}
	var stream []byte
	var order []byte
	for ty, l := range specLayouts {
		at := itch.HeaderLen
		for _, f := range l.fields {
			if f.off != at {
				t.Fatalf("%q: table: %s at %d, previous field ends at %d", ty, f.name, f.off, at)
			}
			at += f.size
		}
		if at != l.length {
			t.Fatalf("%q: table: fields end at %d, length %d", ty, at, l.length)
		}
		if got := itch.Length(ty); got != l.length {
			t.Errorf("Length(%q) = %d, want %d", ty, got, l.length)
		}
		m := make([]byte, l.length)
		m[0] = ty
		for i := 1; i < len(m); i++ {
			m[i] = byte(i*7 + int(ty)) // distinct from each neighbour: a step of 7
		}
		checkSpecMsg(t, ty, m)
		// An unknown type before each message, of a length the Scanner
		// must skip by its prefix (a type added by a later version).
		stream = itch.AppendBlock(stream, []byte{'z', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
		stream = itch.AppendBlock(stream, m)
		order = append(order, ty)
	}
	var s itch.Scanner
	s.Reset(stream)
	i := 0
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		if i >= len(order) || m.Type() != order[i] || len(m) != specLayouts[order[i]].length {
			t.Fatalf("scan: message %d is %q of %d bytes", i, m.Type(), len(m))
		}
		checkSpecMsg(t, m.Type(), m)
		i++
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(order) || s.Messages != uint64(len(order)) || s.Unknown != uint64(len(order)) || s.LastUnknown != 'z' {
		t.Fatalf("scan: %d messages; counters %+v; want %d messages and %d unknown", i, s.Counters, len(order), len(order))
	}
}

// checkSpecMsg checks every field of m, decoded by the package, against the
// bytes at the specification's offsets.
func checkSpecMsg(t *testing.T, ty byte, m []byte) {
	t.Helper()
	msg := itch.Msg(m)
	if err := itch.Check(msg); err != nil {
		t.Fatalf("%q: Check: %v", ty, err)
	}
	wantHdr := itch.Header{
		Locate:    binary.BigEndian.Uint16(m[1:]),
		Tracking:  binary.BigEndian.Uint16(m[3:]),
		Timestamp: uint64(m[5])<<40 | uint64(m[6])<<32 | uint64(m[7])<<24 | uint64(m[8])<<16 | uint64(m[9])<<8 | uint64(m[10]),
	}
	if h := msg.Header(); h != wantHdr {
		t.Errorf("%q: header %+v, want %+v", ty, h, wantHdr)
	}
	enc, ok := itch.Decode(msg)
	if !ok {
		t.Fatalf("%q: Decode failed", ty)
	}
	fields := reflect.ValueOf(enc).Elem()
	if h := fields.FieldByName("Header").Interface(); h != wantHdr {
		t.Errorf("%q: Fields().Header %+v, want %+v", ty, h, wantHdr)
	}
	view := viewOf(msg)
	for _, f := range specLayouts[ty].fields {
		raw := m[f.off : f.off+f.size]
		fv := fields.FieldByName(f.name)
		if !fv.IsValid() {
			t.Errorf("%q: no field %s", ty, f.name)
			continue
		}
		acc := view.MethodByName(f.name)
		if !acc.IsValid() {
			t.Errorf("%q: view has no accessor %s", ty, f.name)
			continue
		}
		for what, v := range map[string]reflect.Value{"Fields": fv, "view": acc.Call(nil)[0]} {
			if got := wireOf(v, f.size); !bytes.Equal(got, raw) {
				t.Errorf("%q: %s.%s = %v (wire %x), want the bytes at %d..%d: %x", ty, what, f.name, v, got, f.off, f.off+f.size, raw)
			}
		}
	}
}

// wireOf encodes a decoded field value back to its big-endian wire bytes of
// width size (an integer of another width is an error: nil).
func wireOf(v reflect.Value, size int) []byte {
	switch v.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if int(v.Type().Size()) != size {
			return nil
		}
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, v.Uint())
		return b[8-size:]
	case reflect.Array:
		if v.Len() != size {
			return nil
		}
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(v.Index(i).Uint())
		}
		return b
	}
	return nil
}
