package itch_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
)

func TestShortMessageError(t *testing.T) {
	var buf []byte
	buf = vector('S').AppendBlock(buf)  // 14 bytes
	a := vector('A').Append(nil)        // 36 bytes
	buf = itch.AppendBlock(buf, a[:30]) // block at offset 14, 30 bytes
	buf = vector('D').AppendBlock(buf)  // framing intact after it
	var s itch.Scanner
	s.ResetAt(buf, 1000)
	if m, ok := s.Next(); !ok || m.Type() != 'S' {
		t.Fatalf("first message: %v %v", ok, s.Err())
	}
	if _, ok := s.Next(); ok {
		t.Fatal("short 'A' returned")
	}
	err := s.Err()
	var le *itch.LengthError
	if !errors.As(err, &le) || !errors.Is(err, itch.ErrShortMessage) {
		t.Fatalf("err = %v (%T), want *LengthError wrapping ErrShortMessage", err, err)
	}
	if *le != (itch.LengthError{Type: 'A', Offset: 1014, Have: 30, Want: 36}) {
		t.Errorf("LengthError %+v", *le)
	}
	const text = `decode itch message 'A' (AddOrder) at offset 1014: have 30 bytes, want 36: short message`
	if err.Error() != text {
		t.Errorf("error text\n%s\nwant\n%s", err, text)
	}
	if s.Offset() != 1014 || s.Short != 1 {
		t.Errorf("offset %d short %d", s.Offset(), s.Short)
	}
	// Sticky until Resume; then the next block is read.
	if _, ok := s.Next(); ok {
		t.Fatal("Next after error returned a message")
	}
	if !s.Resume() {
		t.Fatal("Resume refused a LengthError")
	}
	if m, ok := s.Next(); !ok || m.Type() != 'D' {
		t.Fatalf("after Resume: %v %v", ok, s.Err())
	}
	if _, ok := s.Next(); ok || s.Err() != nil {
		t.Fatalf("end: %v %v", ok, s.Err())
	}
}

func TestEmptyBlock(t *testing.T) {
	var s itch.Scanner
	s.Reset([]byte{0, 0})
	if _, ok := s.Next(); ok {
		t.Fatal("empty block returned")
	}
	var le *itch.LengthError
	if !errors.As(s.Err(), &le) || le.Want != 1 || le.Have != 0 {
		t.Fatalf("err = %v", s.Err())
	}
	if got := s.Err().Error(); got != `decode itch message '\x00' (empty) at offset 0: have 0 bytes, want 1: short message` {
		t.Errorf("text %q", got)
	}
}

func TestUnknownTypeSkipped(t *testing.T) {
	var buf []byte
	buf = vector('A').AppendBlock(buf)
	buf = itch.AppendBlock(buf, []byte("z-a-new-message-type-of-any-length"))
	buf = itch.AppendBlock(buf, []byte{'~'})
	buf = vector('E').AppendBlock(buf)
	var s itch.Scanner
	s.Reset(buf)
	var types []byte
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		types = append(types, m.Type())
	}
	if s.Err() != nil || string(types) != "AE" {
		t.Fatalf("types %q err %v", types, s.Err())
	}
	if s.Unknown != 2 || s.LastUnknown != '~' || s.Messages != 2 || s.Errors() != 0 {
		t.Errorf("counters %+v", s.Counters)
	}
}

func TestLongMessageAccepted(t *testing.T) {
	m := append(vector('X').Append(nil), 0xAA, 0xBB) // a future field appended
	var s itch.Scanner
	s.Reset(itch.AppendBlock(nil, m))
	got, ok := s.Next()
	if !ok || len(got) != len(m) || itch.OrderCancel(got).CancelledShares() != 0x00050607 {
		t.Fatalf("long message: %v %v", ok, s.Err())
	}
	if s.Long != 1 || s.Messages != 1 {
		t.Errorf("counters %+v", s.Counters)
	}
}

func TestTruncatedBlock(t *testing.T) {
	full := blockStream()
	first := len(vector('S').AppendBlock(nil))
	for cut := first + 1; cut < first+3; cut++ { // length prefix cut, then body cut
		var s itch.Scanner
		s.Reset(full[:cut])
		if m, ok := s.Next(); !ok || m.Type() != 'S' {
			t.Fatalf("cut %d: first message lost", cut)
		}
		if _, ok := s.Next(); ok {
			t.Fatalf("cut %d: truncated block returned", cut)
		}
		var fe *itch.FrameError
		if !errors.As(s.Err(), &fe) || !errors.Is(s.Err(), itch.ErrTruncated) || fe.Offset != int64(first) {
			t.Fatalf("cut %d: err %v", cut, s.Err())
		}
		if s.Resume() {
			t.Errorf("cut %d: Resume accepted a FrameError", cut)
		}
		if len(s.Rest()) != cut-first || s.Truncated != 1 {
			t.Errorf("cut %d: rest %d truncated %d", cut, len(s.Rest()), s.Truncated)
		}
	}
	var s itch.Scanner
	s.Reset(full[:first+2+10])
	s.Next()
	s.Next()
	want := fmt.Sprintf("frame itch block at offset %d: length 39 overruns the 10 byte(s) left after the prefix: truncated block", first)
	if s.Err() == nil || s.Err().Error() != want {
		t.Errorf("error text %q\nwant %q", s.Err(), want)
	}
}

func TestCountersAdd(t *testing.T) {
	a := itch.Counters{Messages: 1, Unknown: 2, LastUnknown: 'z', Short: 3}
	b := itch.Counters{Messages: 10, Long: 1, Truncated: 4}
	b.Add(&a)
	if b != (itch.Counters{Messages: 11, Long: 1, Unknown: 2, LastUnknown: 'z', Short: 3, Truncated: 4}) {
		t.Errorf("%+v", b)
	}
}

// readLikeBook reads the fields a book needs from each message and returns a
// checksum, so the compiler cannot drop the reads.
func readLikeBook(m itch.Msg) uint64 {
	switch m.Type() {
	case itch.TypeAddOrder:
		a := itch.AddOrder(m)
		s := a.Stock()
		return a.OrderRef() + uint64(a.Shares()) + uint64(a.Price()) + uint64(a.Side()) + uint64(a.Locate()) + uint64(s[0])
	case itch.TypeAddOrderMPID:
		a := itch.AddOrderMPID(m)
		return a.OrderRef() + uint64(a.Shares()) + uint64(a.Price()) + uint64(a.Side()) + uint64(a.Attribution()[0])
	case itch.TypeOrderDelete:
		return itch.OrderDelete(m).OrderRef()
	case itch.TypeOrderReplace:
		u := itch.OrderReplace(m)
		return u.OriginalOrderRef() + u.NewOrderRef() + uint64(u.Shares()) + uint64(u.Price())
	case itch.TypeOrderExecuted:
		e := itch.OrderExecuted(m)
		return e.OrderRef() + uint64(e.ExecutedShares()) + e.MatchNumber()
	case itch.TypeOrderExecutedWithPrice:
		c := itch.OrderExecutedWithPrice(m)
		return c.OrderRef() + uint64(c.ExecutedShares()) + uint64(c.ExecutionPrice()) + uint64(c.Printable())
	case itch.TypeOrderCancel:
		x := itch.OrderCancel(m)
		return x.OrderRef() + uint64(x.CancelledShares())
	case itch.TypeNOII:
		i := itch.NOII(m)
		return i.PairedShares() + i.ImbalanceShares() + uint64(i.NearPrice()) + uint64(i.Stock()[0])
	case itch.TypeTrade:
		p := itch.Trade(m)
		return uint64(p.Shares()) + uint64(p.Price()) + p.MatchNumber()
	case itch.TypeStockDirectory:
		r := itch.StockDirectory(m)
		return uint64(r.RoundLotSize()) + uint64(r.Stock()[0])
	default:
		// Every other type: decode all fields through the view.
		return m.Timestamp() + uint64(m.Locate())
	}
}

// TestZeroAlloc proves that scanning and reading every type through its
// view, Fields() included, allocates nothing.
func TestZeroAlloc(t *testing.T) {
	buf := blockStream()
	buf = itch.AppendBlock(buf, []byte("zzz unknown"))
	var s itch.Scanner
	var sum uint64
	allocs, exact := race.AllocsPerRun(t, 100, func() {
		s.Reset(buf)
		for m, ok := s.Next(); ok; m, ok = s.Next() {
			sum += readLikeBook(m)
			sum += fieldsOf(m)
		}
		if s.Err() != nil {
			panic(s.Err())
		}
	})
	if exact && allocs != 0 {
		t.Errorf("scan + decode of every type: %v allocs per run, want 0", allocs)
	}
	var c itch.Counters
	dst := make([]byte, 0, 4096)
	allocs, exact = race.AllocsPerRun(t, 100, func() {
		dst = dst[:0]
		for _, v := range vectors {
			dst = v.AppendBlock(dst)
		}
		it := dst
		for len(it) > 2 {
			n := int(it[0])<<8 | int(it[1])
			if m, ok := c.Accept(it[2 : 2+n]); ok {
				sum += m.Timestamp()
			}
			it = it[2+n:]
		}
	})
	if exact && allocs != 0 {
		t.Errorf("encode + Accept: %v allocs per run, want 0", allocs)
	}
	_ = sum
}

// fieldsOf calls Fields() on the typed view of m (every type).
func fieldsOf(m itch.Msg) uint64 {
	switch m.Type() {
	case itch.TypeSystemEvent:
		return uint64(itch.SystemEvent(m).Fields().EventCode)
	case itch.TypeStockDirectory:
		return uint64(itch.StockDirectory(m).Fields().ETPLeverageFactor)
	case itch.TypeStockTradingAction:
		return uint64(itch.StockTradingAction(m).Fields().Reason[0])
	case itch.TypeRegSHO:
		return uint64(itch.RegSHO(m).Fields().Action)
	case itch.TypeMarketParticipantPosition:
		return uint64(itch.MarketParticipantPosition(m).Fields().MPID[0])
	case itch.TypeMWCBDeclineLevel:
		return itch.MWCBDeclineLevel(m).Fields().Level3
	case itch.TypeMWCBStatus:
		return uint64(itch.MWCBStatus(m).Fields().BreachedLevel)
	case itch.TypeIPOQuotingPeriod:
		return uint64(itch.IPOQuotingPeriod(m).Fields().IPOPrice)
	case itch.TypeLULDAuctionCollar:
		return uint64(itch.LULDAuctionCollar(m).Fields().CollarExtension)
	case itch.TypeOperationalHalt:
		return uint64(itch.OperationalHalt(m).Fields().HaltAction)
	case itch.TypeAddOrder:
		return itch.AddOrder(m).Fields().OrderRef
	case itch.TypeAddOrderMPID:
		return uint64(itch.AddOrderMPID(m).Fields().Attribution[3])
	case itch.TypeOrderExecuted:
		return itch.OrderExecuted(m).Fields().MatchNumber
	case itch.TypeOrderExecutedWithPrice:
		return uint64(itch.OrderExecutedWithPrice(m).Fields().ExecutionPrice)
	case itch.TypeOrderCancel:
		return uint64(itch.OrderCancel(m).Fields().CancelledShares)
	case itch.TypeOrderDelete:
		return itch.OrderDelete(m).Fields().OrderRef
	case itch.TypeOrderReplace:
		return itch.OrderReplace(m).Fields().NewOrderRef
	case itch.TypeTrade:
		return itch.Trade(m).Fields().MatchNumber
	case itch.TypeCrossTrade:
		return itch.CrossTrade(m).Fields().Shares
	case itch.TypeBrokenTrade:
		return itch.BrokenTrade(m).Fields().MatchNumber
	case itch.TypeNOII:
		return uint64(itch.NOII(m).Fields().PriceVariation)
	case itch.TypeRPII:
		return uint64(itch.RPII(m).Fields().InterestFlag)
	case itch.TypeDLCR:
		return itch.DLCR(m).Fields().NearExecTime
	}
	return 0
}

func TestValidate(t *testing.T) {
	c, err := itch.Validate(blockStream())
	if err != nil || c.Messages != uint64(len(vectors)) {
		t.Fatalf("valid stream: %+v %v", c, err)
	}
	var buf []byte
	buf = itch.AppendBlock(buf, vector('A').Append(nil)[:35]) // short
	buf = itch.AppendBlock(buf, []byte("?unknown"))
	buf = vector('D').AppendBlock(buf)
	buf = itch.AppendBlock(buf, vector('E').Append(nil)[:12]) // short
	buf = append(buf, 0, 9, 'D')                              // truncated
	c, err = itch.Validate(buf)
	var le *itch.LengthError
	if !errors.As(err, &le) || le.Type != 'A' || le.Offset != 0 {
		t.Fatalf("first error %v", err)
	}
	want := itch.Counters{Messages: 1, Unknown: 1, LastUnknown: '?', Short: 2, Truncated: 1}
	if c != want {
		t.Errorf("counters %+v, want %+v", c, want)
	}
	stream := blockStream()
	if a, exact := race.AllocsPerRun(t, 50, func() { itch.Validate(stream) }); exact && a != 0 {
		t.Errorf("Validate allocs %v", a)
	}
}

// TestZeroAllocPerType: scanning one block and decoding it through its view
// (every accessor via Fields) allocates nothing, type by type.
func TestZeroAllocPerType(t *testing.T) {
	for _, v := range vectors {
		t.Run(itch.Name(v.Type()), func(t *testing.T) {
			block := v.AppendBlock(nil)
			var s itch.Scanner
			var sum uint64
			allocs, exact := race.AllocsPerRun(t, 100, func() {
				s.Reset(block)
				m, ok := s.Next()
				if !ok {
					panic(s.Err())
				}
				sum += fieldsOf(m) + readLikeBook(m) + uint64(m.Header().Tracking)
			})
			if exact && allocs != 0 {
				t.Errorf("%v allocs, want 0", allocs)
			}
			if sum == 0 {
				t.Error("decoded nothing")
			}
		})
	}
}
