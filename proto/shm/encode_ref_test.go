package shm

import (
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// encoder is the reference encoding of a Snapshot with the generated
// FlatBuffers builder; the differential test checks the hand-laid-out
// encoding in encode.go against it.
type encoder struct {
	b *flatbuffers.Builder
}

func newEncoder(depth int) encoder {
	return encoder{b: flatbuffers.NewBuilder(int(maxSnapshotSize(depth)))}
}

// encode builds s with symbol sym and returns the finished bytes, valid until
// the next call. The builder's buffer is sized for the worst case at the
// configured depth, so encode never grows it.
func (e *encoder) encode(s *Snapshot, sym []byte) []byte {
	b := e.b
	b.Reset()
	asks := levelVector(b, s.Asks)
	bids := levelVector(b, s.Bids)
	symbol := b.CreateByteString(sym)
	publish := s.PublishTime
	if publish == 0 {
		publish = now()
	}
	// Fields largest first so that the builder adds no padding.
	bookfb.SnapshotStart(b)
	bookfb.SnapshotAddSeq(b, s.Seq)
	bookfb.SnapshotAddExchangeTime(b, s.ExchangeTime)
	bookfb.SnapshotAddReceiveTime(b, s.ReceiveTime)
	bookfb.SnapshotAddPublishTime(b, publish)
	bookfb.SnapshotAddLastTradeShares(b, s.LastTradeShares)
	bookfb.SnapshotAddVolume(b, s.Volume)
	bookfb.SnapshotAddMessages(b, s.Messages)
	bookfb.SnapshotAddSymbol(b, symbol)
	bookfb.SnapshotAddBids(b, bids)
	bookfb.SnapshotAddAsks(b, asks)
	bookfb.SnapshotAddBidLevels(b, s.BidLevels)
	bookfb.SnapshotAddAskLevels(b, s.AskLevels)
	bookfb.SnapshotAddLastTradePrice(b, s.LastTradePrice)
	bookfb.SnapshotAddLocate(b, s.Locate)
	bookfb.SnapshotAddFlags(b, s.Flags)
	bookfb.SnapshotAddTradingState(b, s.State)
	bookfb.SnapshotAddSystemEvent(b, s.SystemEvent)
	root := bookfb.SnapshotEnd(b)
	b.FinishWithFileIdentifier(root, FileIdentifier[:])
	return b.FinishedBytes()
}

func levelVector(b *flatbuffers.Builder, levels []Level) flatbuffers.UOffsetT {
	b.StartVector(levelSize, len(levels), 8)
	for i := len(levels) - 1; i >= 0; i-- {
		l := &levels[i]
		// bookfb.CreateLevel without its per-struct Prep: StartVector
		// already aligned the whole vector.
		b.PlaceUint64(l.Shares)
		b.PlaceUint32(l.Orders)
		b.PlaceUint32(l.Price)
	}
	return b.EndVector(len(levels))
}
