package shm

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// encodeDirect is what Register and Publish write into a slot.
func encodeDirect(b []byte, s *Snapshot, sym string) []byte {
	writePrefix(b, s.Locate, []byte(sym))
	n := writeSnapshot(b, s, bidsAt(len(sym)), s.PublishTime)
	return b[:n]
}

func viewOf(b []byte) View {
	var v View
	v.Init(b, flatbuffers.GetUOffsetT(b))
	return v
}

func randomSnapshot(rng *rand.Rand, depth int) *Snapshot {
	s := newSnapshot(depth)
	s.Locate = uint16(rng.Uint32())
	s.Seq = rng.Uint64()
	s.ExchangeTime = rng.Uint64()
	s.ReceiveTime = int64(rng.Uint64())
	s.PublishTime = int64(rng.Uint64()) | 1
	s.State = bookfb.TradingState(rng.IntN(5))
	s.Flags = bookfb.Flags(rng.Uint32())
	s.SystemEvent = byte(rng.Uint32())
	s.Bids = s.Bids[:rng.IntN(depth+1)]
	s.Asks = s.Asks[:rng.IntN(depth+1)]
	for _, side := range [][]Level{s.Bids, s.Asks} {
		for i := range side {
			side[i] = Level{Price: rng.Uint32(), Shares: rng.Uint64(), Orders: rng.Uint32()}
		}
	}
	s.BidLevels, s.AskLevels = rng.Uint32(), rng.Uint32()
	s.LastTradePrice, s.LastTradeShares = rng.Uint32(), rng.Uint64()
	s.Volume, s.Messages = rng.Uint64(), rng.Uint64()
	if rng.IntN(4) == 0 {
		// Zero (default) fields, which the builder leaves out.
		*s = Snapshot{Locate: s.Locate, PublishTime: 1, Bids: s.Bids[:0], Asks: s.Asks[:0]}
	}
	return s
}

// TestEncodeMatchesBuilder checks the hand-laid-out slot encoding against
// the generated builder: both decode to the same snapshot, and the direct
// encoding never exceeds maxSnapshotSize.
func TestEncodeMatchesBuilder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		depth := 1 + rng.IntN(40)
		s := randomSnapshot(rng, depth)
		sym := "ABCDEFGH"[:1+rng.IntN(8)]
		buf := make([]byte, maxSnapshotSize(depth))
		for j := range buf {
			buf[j] = 0xAA // garbage from an earlier publish
		}
		direct := encodeDirect(buf, s, sym)
		e := newEncoder(depth)
		ref := e.encode(s, []byte(sym))
		dv, rv := viewOf(direct), viewOf(ref)
		if err := compareView(&dv, s, sym); err != nil {
			t.Fatalf("direct encoding: %v", err)
		}
		if err := compareView(&rv, s, sym); err != nil {
			t.Fatalf("builder encoding: %v", err)
		}
		if uint64(len(direct)) > maxSnapshotSize(len(s.Bids)) && uint64(len(direct)) > maxSnapshotSize(len(s.Asks)) {
			t.Fatalf("depth %d: %d bytes > bound", depth, len(direct))
		}
	}
}

// TestEncodeFlatc has flatc (the schema compiler other languages use)
// decode a slot's FlatBuffer against book.fbs.
func TestEncodeFlatc(t *testing.T) {
	flatc, err := exec.LookPath("flatc")
	if err != nil {
		t.Skip("flatc not installed (Debian flatbuffers-compiler)")
	}
	dir := t.TempDir()
	s := newSnapshot(3)
	fillSnapshot(s, 4242, 7, 3) // 3 bids, 2 asks
	s.PublishTime = 99
	bin := filepath.Join(dir, "snap.fhb")
	if err := os.WriteFile(bin, encodeDirect(make([]byte, maxSnapshotSize(3)), s, "AAPL"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(flatc, "--json", "--strict-json", "--defaults-json", "-o", dir, "../book.fbs", "--", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("flatc: %v\n%s", err, out)
	}
	js, err := os.ReadFile(filepath.Join(dir, "snap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Locate       uint16
		Symbol       string
		Seq          uint64
		PublishTime  int64  `json:"publish_time"`
		TradingState string `json:"trading_state"`
		Bids, Asks   []struct {
			Price, Orders uint32
			Shares        uint64
		}
		Messages uint64
	}
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if got.Locate != 4242 || got.Symbol != "AAPL" || got.Seq != 7 || got.PublishTime != 99 ||
		got.TradingState != s.State.String() || got.Messages != s.Messages ||
		len(got.Bids) != len(s.Bids) || len(got.Asks) != len(s.Asks) ||
		got.Asks[1].Price != s.Asks[1].Price || got.Asks[1].Shares != s.Asks[1].Shares || got.Asks[1].Orders != s.Asks[1].Orders {
		t.Fatalf("flatc decoded\n%s\nwant %+v", js, *s)
	}
}
