package shm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// TestRebind: locate 7 is SNAP, then (a new session) MSFT. A reader that
// looked SNAP up before finds MSFT under locate 7 and SNAP nowhere; the
// snapshot read at locate 7 is MSFT's, at version 1 of its fresh slot. The
// retired slot keeps SNAP's last snapshot. Rebinding to the same symbol is
// a no-op, and with no slot left the locate stays unregistered.
func TestRebind(t *testing.T) {
	w := testWriter(t, Config{Instruments: 3, Depth: 4})
	r := testReader(t, w.Path())
	buf := make([]byte, r.Info().MaxSnapshot)
	pub := func(sym string, price uint32) {
		t.Helper()
		sl, _, err := w.Rebind(7, sym, 1)
		if err != nil {
			t.Fatal(err)
		}
		s := &Snapshot{Locate: 7, Seq: uint64(price), Bids: []Level{{Price: price, Orders: 1, Shares: 100}}, Flags: bookfb.FlagsPossiblyStale}
		var tx Pending
		if err := w.Begin(sl, s, 1, 0, &tx); err != nil {
			t.Fatal(err)
		}
		tx.Bids[0] = s.Bids[0]
		w.Commit(&tx)
	}
	pub("SNAP", 1111)
	if loc, ok := r.Lookup("SNAP"); !ok || loc != 7 {
		t.Fatalf("lookup SNAP = %d %v", loc, ok)
	}
	old, _ := w.Slot(7)
	if sl, retired, err := w.Rebind(7, "SNAP", 1); err != nil || retired || sl != old {
		t.Fatalf("rebind to the same symbol: %v %v %v (slot was %v)", sl, retired, err, old)
	}
	if _, retired, err := w.Rebind(7, "MSFT", 1); err != nil || !retired {
		t.Fatalf("rebind to MSFT: retired %v, %v", retired, err)
	}
	pub("MSFT", 7777)
	if _, ok := r.Lookup("SNAP"); ok {
		t.Fatal("SNAP still found after its locate was rebound")
	}
	if loc, ok := r.Lookup("MSFT"); !ok || loc != 7 {
		t.Fatalf("lookup MSFT = %d %v", loc, ok)
	}
	if ins := r.Instruments(); len(ins) != 1 || ins[0] != (Instrument{Locate: 7, Symbol: "MSFT"}) {
		t.Fatalf("instruments %v", ins)
	}
	v, err := r.ReadSymbol("MSFT", buf)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := v.Bid(0); string(v.Symbol()) != "MSFT" || b.Price != 7777 || v.Version != 1 {
		t.Fatalf("MSFT read as %q bid %v version %d", v.Symbol(), b, v.Version)
	}
	// The retired slot (0) keeps SNAP's last snapshot, published once
	// more (version 2: the retirement's journal record) flagged stale.
	e := w.m.dirEntry(&w.l, 0)
	if !dirIsRetired(e) || string(dirSymbol(e)) != "SNAP" || *w.m.slotSeq(w.l.slotOff(0)) != 4 {
		t.Fatalf("retired entry %q retired %v seq %d", dirSymbol(e), dirIsRetired(e), *w.m.slotSeq(w.l.slotOff(0)))
	}
	// Slot 2 of 3 for AAPL, then none left for another rebind.
	pub("AAPL", 2222)
	if _, _, err := w.Rebind(7, "GOOG", 1); !errors.Is(err, ErrFull) {
		t.Fatalf("rebind with no slot left: %v", err)
	}
	if _, err := r.Read(7, buf); !errors.Is(err, ErrUnknownLocate) {
		t.Fatalf("read of a locate left unbound: %v", err)
	}
	for _, sym := range []string{"SNAP", "MSFT", "AAPL", "GOOG"} {
		if _, err := r.ReadSymbol(sym, buf); !errors.Is(err, ErrUnknownLocate) {
			t.Fatalf("read %s after a failed rebind: %v", sym, err)
		}
	}
}

// TestCppRebind: the C++ reader sees a rebound locate as the Go reader
// does: the old symbol is not found, the new one is at the locate, and
// reading the locate gives the fresh slot's version 1.
func TestCppRebind(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	w := testWriter(t, Config{Instruments: 3, Depth: 2})
	if err := w.Register(7, "SNAP"); err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{Locate: 7, Seq: 3}
	for range 3 {
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	c := startSession(t, bin, w.Path())
	c.expect("open", "open Ok")
	c.expect("lookup SNAP", "lookup Ok 7")
	c.expect("read 7", "read Ok seq 3 version 3")
	if _, _, err := w.Rebind(7, "MSFT", 1); err != nil {
		t.Fatal(err)
	}
	s.Seq = 5
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	c.expect("lookup SNAP", "lookup ErrUnknownLocate")
	c.expect("lookup MSFT", "lookup Ok 7")
	c.expect("read 7", "read Ok seq 5 version 1")
}

// TestSymbolMoved: a new session moves AAPL from locate 5 to locate 9
// (ITCH reassigns locates every session). Binding AAPL to 9 retires the
// entry of locate 5 and unbinds it: one live entry names AAPL, and locate 5
// no longer reads AAPL's stale book. Rebind and Register both move a
// symbol. Before the fix both entries stayed live (two AAPLs in
// Instruments, locate 5 still readable).
func TestSymbolMoved(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2})
	r := testReader(t, w.Path())
	buf := make([]byte, r.Info().MaxSnapshot)
	if err := w.Register(5, "AAPL"); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(&Snapshot{Locate: 5, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if loc, ok := r.Lookup("AAPL"); !ok || loc != 5 {
		t.Fatalf("lookup AAPL = %d %v", loc, ok)
	}
	moved := func(how string, from, to uint16) {
		t.Helper()
		if err := w.Publish(&Snapshot{Locate: to, Seq: uint64(to)}); err != nil {
			t.Fatal(err)
		}
		var aapl []Instrument
		for _, in := range r.Instruments() {
			if in.Symbol == "AAPL" {
				aapl = append(aapl, in)
			}
		}
		if len(aapl) != 1 || aapl[0].Locate != to {
			t.Fatalf("%s: AAPL in instruments %v, want at %d only", how, aapl, to)
		}
		if loc, ok := r.Lookup("AAPL"); !ok || loc != to {
			t.Fatalf("%s: lookup AAPL = %d %v, want %d", how, loc, ok, to)
		}
		if _, err := r.Read(from, buf); !errors.Is(err, ErrUnknownLocate) {
			t.Fatalf("%s: read of the old locate %d: %v, want ErrUnknownLocate", how, from, err)
		}
		if _, err := w.Slot(from); !errors.Is(err, ErrUnknownLocate) {
			t.Fatalf("%s: writer slot of the old locate %d: %v", how, from, err)
		}
		v, err := r.ReadSymbol("AAPL", buf)
		if err != nil || v.Seq() != uint64(to) || v.Locate() != to {
			t.Fatalf("%s: read AAPL: %v seq %d locate %d", how, err, v.Seq(), v.Locate())
		}
	}
	sl, retired, err := w.Rebind(9, "AAPL", 1)
	if err != nil || retired || sl == (Slot{}) {
		t.Fatalf("rebind 9 AAPL: %v %v %v (locate 9 was unbound: nothing of its own retired)", sl, retired, err)
	}
	moved("rebind", 5, 9)
	if u := w.SlotUsage(); u != (SlotUsage{Capacity: 4, Used: 2, Retired: 1}) {
		t.Fatalf("slot usage %+v", u)
	}
	// Locate 5 binds afresh (no retirement of its own: it was unbound).
	if _, retired, err := w.Rebind(5, "MSFT", 1); err != nil || retired {
		t.Fatalf("rebind 5 MSFT: %v %v", retired, err)
	}
	if err := w.Register(11, "AAPL"); err != nil {
		t.Fatal(err)
	}
	moved("register", 9, 11)
	if loc, ok := r.Lookup("MSFT"); !ok || loc != 5 {
		t.Fatalf("lookup MSFT = %d %v", loc, ok)
	}
	if u := w.SlotUsage(); u != (SlotUsage{Capacity: 4, Used: 4, Retired: 2}) {
		t.Fatalf("slot usage %+v", u)
	}
	// Full: the symbol still leaves its old locate (its book there is
	// stale), though the new one cannot be registered.
	if _, _, err := w.Rebind(12, "AAPL", 1); !errors.Is(err, ErrFull) {
		t.Fatalf("rebind with no slot left: %v", err)
	}
	if _, ok := r.Lookup("AAPL"); ok {
		t.Fatal("AAPL still found at its old locate after moving to a locate that found no slot")
	}
	if u := w.SlotUsage(); u != (SlotUsage{Capacity: 4, Used: 4, Retired: 3}) {
		t.Fatalf("slot usage %+v", u)
	}
}

// TestCppSymbolMoved: the C++ reader's lookup scans the directory and takes
// the first live entry; after AAPL moved from locate 5 to 9 it finds 9 (the
// old entry is retired), and locate 5 is unknown. Before the fix it found
// locate 5, AAPL's stale book.
func TestCppSymbolMoved(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	w := testWriter(t, Config{Instruments: 3, Depth: 2})
	if err := w.Register(5, "AAPL"); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(&Snapshot{Locate: 5, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	c := startSession(t, bin, w.Path())
	c.expect("open", "open Ok")
	c.expect("lookup AAPL", "lookup Ok 5")
	if _, _, err := w.Rebind(9, "AAPL", 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(&Snapshot{Locate: 9, Seq: 8}); err != nil {
		t.Fatal(err)
	}
	c.expect("lookup AAPL", "lookup Ok 9")
	c.expect("read 9", "read Ok seq 8 version 1")
	c.expect("read 5", "read ErrUnknownLocate")
}

// TestSlotWarnings: the writer logs once when the used slots (live and
// retired) pass 3/4 of the capacity, and once when they run out, however
// many registrations follow.
func TestSlotWarnings(t *testing.T) {
	var log bytes.Buffer
	w := testWriter(t, Config{Instruments: 8, Depth: 1, Log: zerolog.New(&log)})
	count := func(msg string) int { return strings.Count(log.String(), msg) }
	for loc := uint16(1); loc <= 5; loc++ {
		if err := w.Register(loc, symbolOf(loc)); err != nil {
			t.Fatal(err)
		}
	}
	if log.Len() != 0 {
		t.Fatalf("logged at 5 of 8 slots: %s", log.String())
	}
	// The 6th slot (3/4) comes from a rebind: locate 5 retires its slot.
	if _, retired, err := w.Rebind(5, "MOVED", 1); err != nil || !retired {
		t.Fatalf("rebind: %v %v", retired, err)
	}
	if n := count("over 3/4"); n != 1 || !strings.Contains(log.String(), `"level":"warn"`) {
		t.Fatalf("%d warnings at 6 of 8 slots: %s", n, log.String())
	}
	for loc := uint16(6); loc <= 7; loc++ {
		if err := w.Register(loc, symbolOf(loc)); err != nil {
			t.Fatal(err)
		}
	}
	for loc := uint16(8); loc <= 10; loc++ {
		if err := w.Register(loc, symbolOf(loc)); !errors.Is(err, ErrFull) {
			t.Fatalf("register %d: %v, want ErrFull", loc, err)
		}
	}
	if n, m := count("over 3/4"), count("exhausted"); n != 1 || m != 1 {
		t.Fatalf("%d warnings, %d exhausted errors after 3 registrations into a full file: %s", n, m, log.String())
	}
	if u := w.SlotUsage(); u != (SlotUsage{Capacity: 8, Used: 8, Retired: 1}) {
		t.Fatalf("slot usage %+v", u)
	}
}

// TestRetiredSlotRefusesPublish: a publisher that kept the Slot of a
// locate whose slot was retired since (the locate bound to another symbol,
// or its symbol moved to another locate) gets ErrUnknownLocate from Begin,
// on both Begin paths, instead of writing where no reader looks.
func TestRetiredSlotRefusesPublish(t *testing.T) {
	bothLevelPaths(t, func(t *testing.T) {
		w := testWriter(t, Config{Instruments: 4, Depth: 1})
		r := testReader(t, w.Path())
		kept := func(loc uint16, sym string) Slot {
			t.Helper()
			if err := w.Register(loc, sym); err != nil {
				t.Fatal(err)
			}
			sl, err := w.Slot(loc)
			if err != nil {
				t.Fatal(err)
			}
			return sl
		}
		s5, s7 := kept(5, "AAPL"), kept(7, "SNAP")
		if _, _, err := w.Rebind(9, "AAPL", 1); err != nil { // AAPL moves: slot of 5 retired
			t.Fatal(err)
		}
		if _, _, err := w.Rebind(7, "MSFT", 1); err != nil { // locate 7 rebound: its old slot retired
			t.Fatal(err)
		}
		for _, c := range []struct {
			loc uint16
			sl  Slot
		}{{5, s5}, {7, s7}} {
			for _, pt := range []int64{0, 1} { // 0: Begin's general path; 1: its fast path first
				var p Pending
				err := w.Begin(c.sl, &Snapshot{Locate: c.loc, PublishTime: pt}, 1, 0, &p)
				if !errors.Is(err, ErrUnknownLocate) || !strings.Contains(err.Error(), "retired") {
					t.Fatalf("begin locate %d into its retired slot (publish time %d): %v", c.loc, pt, err)
				}
			}
		}
		if v := r.Version(7); v != 0 {
			t.Fatalf("locate 7 version %d: something was published", v)
		}
		if _, err := r.Read(5, make([]byte, r.Info().MaxSnapshot)); !errors.Is(err, ErrUnknownLocate) {
			t.Fatalf("read 5: %v", err)
		}
	})
}

// TestRebindEpochs: Rebind's rules by epoch. A binding never replaces one
// of a later epoch (a book shard lagging a session change must not take a
// symbol or a locate back), a symbol bound at two locates in one epoch
// keeps its first binding, and a refused Rebind changes nothing: no entry
// retired, no slot used. Before the epochs the old session's binding won
// whenever it came last, retiring the new session's slot.
func TestRebindEpochs(t *testing.T) {
	w := testWriter(t, Config{Instruments: 8, Depth: 1})
	r := testReader(t, w.Path())
	usage := func(used, retired int) {
		t.Helper()
		if u := w.SlotUsage(); u != (SlotUsage{Capacity: 8, Used: used, Retired: retired}) {
			t.Fatalf("slot usage %+v, want used %d retired %d", u, used, retired)
		}
	}
	at := func(sym string, want uint16) {
		t.Helper()
		loc, ok := r.Lookup(sym)
		if want == 0 && ok || want != 0 && (!ok || loc != want) {
			t.Fatalf("lookup %s = %d %v, want %d", sym, loc, ok, want)
		}
	}
	refused := func(loc uint16, sym string, epoch uint64, want error) {
		t.Helper()
		sl, retired, err := w.Rebind(loc, sym, epoch)
		if !errors.Is(err, want) || retired || sl != (Slot{}) {
			t.Fatalf("rebind %d %s at epoch %d: %v %v %v, want %v", loc, sym, epoch, sl, retired, err, want)
		}
	}
	aapl, _, err := w.Rebind(9, "AAPL", 1)
	if err != nil {
		t.Fatal(err)
	}
	// (1) Bound already: the slot stays, whatever the epoch; a later
	// epoch raises the binding's (the refusals below at epoch 1 show it).
	for _, epoch := range []uint64{0, 1, 2} {
		if sl, retired, err := w.Rebind(9, "AAPL", epoch); err != nil || retired || sl != aapl {
			t.Fatalf("rebind 9 AAPL again at epoch %d: %v %v %v", epoch, sl, retired, err)
		}
	}
	usage(1, 0)
	// (2) The locate, bound at epoch 2, is not taken back at epoch 1.
	refused(9, "MSFT", 1, ErrStaleBinding)
	// (3) Nor is the symbol, at another locate; in its own epoch the
	// symbol at a second locate is bad input: the first binding stays.
	refused(5, "AAPL", 1, ErrStaleBinding)
	refused(5, "AAPL", 2, ErrDuplicateSymbol)
	at("AAPL", 9)
	usage(1, 0)
	// Every check comes before any retirement: locate 5 (MSFT, epoch 0)
	// could be rebound at epoch 1, but AAPL (epoch 2) cannot move, so
	// MSFT stays.
	if err := w.Register(5, "MSFT"); err != nil {
		t.Fatal(err)
	}
	refused(5, "AAPL", 1, ErrStaleBinding)
	at("MSFT", 5)
	at("AAPL", 9)
	usage(2, 0)
	if sl, err := w.Slot(9); err != nil || sl != aapl {
		t.Fatalf("slot of 9 after refusals: %v %v", sl, err)
	}
	// (4) A later epoch retires both: locate 5's MSFT and AAPL's locate 9.
	if _, retired, err := w.Rebind(5, "AAPL", 3); err != nil || !retired {
		t.Fatalf("rebind 5 AAPL at epoch 3: %v %v", retired, err)
	}
	at("AAPL", 5)
	at("MSFT", 0)
	usage(3, 2)
	if _, err := w.Slot(9); !errors.Is(err, ErrUnknownLocate) {
		t.Fatalf("slot of 9 after AAPL moved: %v", err)
	}
	// Register knows no epochs: it moves the symbol as before, and its
	// binding has epoch 0.
	if err := w.Register(11, "AAPL"); err != nil {
		t.Fatal(err)
	}
	at("AAPL", 11)
	refused(12, "AAPL", 0, ErrDuplicateSymbol)
	usage(4, 3)
	if _, _, err := w.Rebind(12, "AAPL", 1); err != nil {
		t.Fatal(err)
	}
	at("AAPL", 12)
	usage(5, 4)
}

// TestRebindAllocs: a binding allocates nothing, in every case the
// publishing thread meets: a new locate, a locate already bound to the
// symbol, a locate rebound to another symbol (its entry retired), and a
// symbol that moved to another locate (its old entry retired). The
// publisher binds on its hot thread, at the first publish of each book of
// a session. The symbols are made before the runs, as a book's are.
func TestRebindAllocs(t *testing.T) {
	const n = 200
	w := testWriter(t, Config{Instruments: 8*n + 16, Depth: 4})
	syms := make([]string, 4*n)
	for i := range syms {
		syms[i] = fmt.Sprintf("S%06d ", i) // space padded, as a book's
	}
	k := 0
	bind := func(loc uint16, sym string, wantRetired bool) {
		t.Helper()
		if _, retired, err := w.Rebind(loc, sym, 1); err != nil || retired != wantRetired {
			t.Fatalf("rebind locate %d %q: retired %v, %v; want retired %v", loc, sym, retired, err, wantRetired)
		}
	}
	for _, c := range []struct {
		name  string
		start int // k before the runs
		run   func()
	}{
		{"new locate", 0, func() { k++; bind(uint16(k), syms[k], false) }},
		{"same symbol", 1, func() { bind(uint16(k), syms[k], false) }},
		// locate k+n, bound to syms[k+n] first, is rebound to syms[k+2n]:
		// its entry is retired.
		{"locate rebound", 0, func() {
			k++
			bind(uint16(k+n), syms[k+n], false)
			bind(uint16(k+n), syms[k+2*n], true)
		}},
		// syms[k+3n], bound to locate k+2n, moves to locate k+3n (a new
		// session's locate): the old entry is retired, the new locate had
		// none.
		{"symbol moved", 0, func() {
			k++
			if _, _, err := w.Rebind(uint16(k+2*n), syms[k+3*n], 1); err != nil {
				t.Fatal(err)
			}
			if _, retired, err := w.Rebind(uint16(k+3*n), syms[k+3*n], 2); err != nil || retired {
				t.Fatalf("move %q: retired %v, %v", syms[k+3*n], retired, err)
			}
		}},
	} {
		k = c.start
		if a, exact := race.AllocsPerRun(t, n/2-2, c.run); exact && a != 0 {
			t.Errorf("%s: %v allocs a binding, want 0", c.name, a)
		}
	}
	if got := w.SlotUsage().Used; got == 0 {
		t.Fatal("no slot used")
	}
}

// TestRebindReleasesOldSymbol: a locate rebound to another symbol gives its
// old symbol up: in the same epoch another locate may then take it (it is
// no longer bound anywhere, so not a duplicate), and that binding retires
// nothing more.
func TestRebindReleasesOldSymbol(t *testing.T) {
	w := testWriter(t, Config{Instruments: 8, Depth: 4})
	if _, _, err := w.Rebind(1, "AAPL", 1); err != nil {
		t.Fatal(err)
	}
	if _, retired, err := w.Rebind(1, "MSFT", 1); err != nil || !retired {
		t.Fatalf("rebind locate 1 to MSFT: retired %v, %v", retired, err)
	}
	if _, retired, err := w.Rebind(2, "AAPL", 1); err != nil || retired {
		t.Fatalf("AAPL at locate 2 after locate 1 gave it up: retired %v, %v", retired, err)
	}
	if u := w.SlotUsage(); u.Used != 3 || u.Retired != 1 {
		t.Fatalf("slots %+v, want 3 used, 1 retired", u)
	}
}

// TestReadSymbolRebindAfterLookup: a session change between ReadSymbol's
// lookup and its read (symbolLookedUp stands there) binds the locate found
// to another symbol, whose book the locate then holds. ReadSymbol returns
// the asked symbol's book from where it is now, or ErrUnknownLocate when it
// is nowhere: never another symbol's book under the name asked. Before the
// fix it returned MSFT's book for AAPL.
func TestReadSymbolRebindAfterLookup(t *testing.T) {
	for _, moved := range []bool{false, true} {
		t.Run(fmt.Sprintf("moved=%v", moved), func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 4, Depth: 1})
			r := testReader(t, w.Path())
			buf := make([]byte, r.Info().MaxSnapshot)
			pub := func(locate uint16, sym string, epoch, seq uint64) { rebindAndPublish(t, w, locate, sym, epoch, seq) }
			pub(5, "AAPL", 0, 3)
			calls := 0
			symbolLookedUp = func(symbol string, locate uint16) {
				if calls++; calls > 1 {
					return
				}
				// The new session: locate 5 is MSFT, AAPL (when it
				// moved) locate 9.
				pub(5, "MSFT", 1, 7)
				if moved {
					pub(9, "AAPL", 1, 8)
				}
			}
			t.Cleanup(func() { symbolLookedUp = func(string, uint16) {} })
			v, err := r.ReadSymbol("AAPL", buf)
			if !moved {
				if !errors.Is(err, ErrUnknownLocate) {
					t.Fatalf("ReadSymbol(AAPL) after locate 5 was bound to MSFT: %q seq %d, %v; want ErrUnknownLocate", v.Symbol(), v.Seq(), err)
				}
				return
			}
			if err != nil || string(v.Symbol()) != "AAPL" || v.Locate() != 9 || v.Seq() != 8 {
				t.Fatalf("ReadSymbol(AAPL) after it moved to locate 9: %q locate %d seq %d, %v; want AAPL at 9, seq 8", v.Symbol(), v.Locate(), v.Seq(), err)
			}
		})
	}
}

// TestCppReadSymbolRebindAfterLookup is TestReadSymbolRebindAfterLookup for
// the C++ reader: the driver's read_symbol stops after its lookup
// (FEEDHANDLER_SHM_TEST_LOOKED_UP), the writer rebinds the locate, then
// the read goes on. Before the fix read_symbol returned MSFT's book for
// AAPL ("readsymbol Ok MSFT locate 5 seq 7").
func TestCppReadSymbolRebindAfterLookup(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	for _, moved := range []bool{false, true} {
		t.Run(fmt.Sprintf("moved=%v", moved), func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 4, Depth: 1})
			pub := func(locate uint16, sym string, epoch, seq uint64) { rebindAndPublish(t, w, locate, sym, epoch, seq) }
			pub(5, "AAPL", 0, 3)
			sess := startSession(t, bin, w.Path())
			sess.expect("open", "open Ok")
			sess.expect("readsymbol AAPL", "lookedup 5")
			pub(5, "MSFT", 1, 7)
			want := "readsymbol ErrUnknownLocate"
			if moved {
				pub(9, "AAPL", 1, 8)
				want = "readsymbol Ok AAPL locate 9 seq 8"
			}
			if got := sess.do("go"); got != want {
				t.Fatalf("C++ read_symbol(AAPL), locate 5 bound to MSFT after its lookup: %q, want %q", got, want)
			}
		})
	}
}

// rebindAndPublish binds locate to sym at epoch and publishes its snapshot
// seq.
func rebindAndPublish(t *testing.T, w *Writer, locate uint16, sym string, epoch, seq uint64) {
	t.Helper()
	if _, _, err := w.Rebind(locate, sym, epoch); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(&Snapshot{Locate: locate, Seq: seq}); err != nil {
		t.Fatal(err)
	}
}
