package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

func TestPublishRead(t *testing.T) {
	const depth = 10
	w := testWriter(t, Config{Instruments: 8, Depth: depth})
	for loc := uint16(1); loc <= 5; loc++ {
		if err := w.Register(loc*100, symbolOf(loc*100)); err != nil {
			t.Fatal(err)
		}
	}
	r := testReader(t, w.Path())
	buf := make([]byte, r.Info().MaxSnapshot)
	s := newSnapshot(depth)
	for k := uint64(0); k < 50; k++ {
		loc := uint16(100 * (1 + k%5))
		fillSnapshot(s, loc, k, depth)
		if k%2 == 0 {
			s.PublishTime = int64(k) + 1
		}
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
		v, err := r.Read(loc, buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := compareView(&v, s, symbolOf(loc)); err != nil {
			t.Fatal(err)
		}
		if want := k/5 + 1; v.Version != want || r.Version(loc) != want {
			t.Fatalf("version %d/%d, want %d", v.Version, r.Version(loc), want)
		}
		if b := v.Bytes(); string(b[4:8]) != string(FileIdentifier[:]) {
			t.Fatalf("file identifier missing")
		}
	}
	w.Heartbeat()
	if err := r.Check(); err != nil {
		t.Fatalf("live writer: %v", err)
	}
	ins := r.Instruments()
	if len(ins) != 5 || ins[2] != (Instrument{Locate: 300, Symbol: "S300"}) {
		t.Fatalf("instruments %v", ins)
	}
	if loc, ok := r.Lookup("S400"); !ok || loc != 400 {
		t.Fatalf("lookup S400 = %d %v", loc, ok)
	}
	if _, ok := r.Lookup("NOPE"); ok {
		t.Fatal("lookup of unknown symbol succeeded")
	}
	// Instruments registered after the reader opened (the stock directory
	// arrives during the day) show up.
	if err := w.Register(9, "NOPE"); err != nil {
		t.Fatal(err)
	}
	if loc, ok := r.Lookup("NOPE"); !ok || loc != 9 || len(r.Instruments()) != 6 {
		t.Fatalf("lookup of a late instrument: %d %v", loc, ok)
	}
	v, err := r.ReadSymbol("S200", buf)
	if err != nil || v.Locate() != 200 {
		t.Fatalf("read S200: %v %d", err, v.Locate())
	}
	info := r.Info()
	if info.WriterPid != os.Getpid() || info.Depth != depth || info.Instruments != 8 || info.Generation != w.Info().Generation {
		t.Fatalf("info %+v", info)
	}
}

func TestRegister(t *testing.T) {
	w := testWriter(t, Config{Instruments: 2, Depth: 1})
	if err := w.Register(7, "AAPL    "); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(7, "AAPL"); err != nil {
		t.Fatalf("re-register same symbol: %v", err)
	}
	if err := w.Register(7, "MSFT"); err == nil {
		t.Fatal("re-register with another symbol succeeded")
	}
	if err := w.Register(8, "TOOLONGSYM"); err == nil {
		t.Fatal("9-byte symbol accepted")
	}
	if err := w.Register(8, "MSFT"); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(9, "IBM"); !errors.Is(err, ErrFull) {
		t.Fatalf("third instrument in 2 slots: %v, want ErrFull", err)
	}
	r := testReader(t, w.Path())
	if got := r.Instruments(); len(got) != 2 || got[0].Symbol != "AAPL" {
		t.Fatalf("instruments %v", got)
	}
}

func TestErrors(t *testing.T) {
	const depth = 2
	w := testWriter(t, Config{Instruments: 4, Depth: depth})
	if err := w.Register(1, "A"); err != nil {
		t.Fatal(err)
	}
	r := testReader(t, w.Path())
	buf := make([]byte, r.Info().MaxSnapshot)
	if _, err := r.Read(1, buf); !errors.Is(err, ErrNoData) {
		t.Errorf("read before publish: %v, want ErrNoData", err)
	}
	if _, err := r.Read(2, buf); !errors.Is(err, ErrUnknownLocate) {
		t.Errorf("read unknown locate: %v, want ErrUnknownLocate", err)
	}
	s := newSnapshot(depth + 1)
	fillSnapshot(s, 2, 1, depth)
	if err := w.Publish(s); !errors.Is(err, ErrUnknownLocate) {
		t.Errorf("publish unknown locate: %v, want ErrUnknownLocate", err)
	}
	fillSnapshot(s, 1, 1, depth)
	s.Bids = s.Bids[:depth+1]
	if err := w.Publish(s); !errors.Is(err, ErrTooDeep) {
		t.Errorf("publish %d levels at depth %d: %v, want ErrTooDeep", depth+1, depth, err)
	}
	fillSnapshot(s, 1, 1, depth)
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(1, buf[:10]); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("read into 10 bytes: %v, want ErrShortBuffer", err)
	}
	if _, err := r.ReadSymbol("B", buf); !errors.Is(err, ErrUnknownLocate) {
		t.Errorf("read unknown symbol: %v, want ErrUnknownLocate", err)
	}
	if _, err := Create(Config{Name: testName(t), Instruments: 1, Depth: 1, JournalLen: 3}); err == nil {
		t.Error("journal length 3 accepted")
	}
	if _, err := Create(Config{Name: testName(t), Instruments: 0, Depth: 1}); err == nil {
		t.Error("0 instruments accepted")
	}
}

func TestMissingFile(t *testing.T) {
	name := testName(t)
	_, err := Open(name)
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("open missing: %v, want ErrNotExist", err)
	}
	// A reader attaching before the writer exists waits for it.
	done := make(chan error, 1)
	go func() {
		r, err := OpenWait(name, 10*time.Second, time.Millisecond)
		if err == nil {
			r.Close()
		}
		done <- err
	}()
	time.Sleep(5 * time.Millisecond)
	testWriter(t, Config{Name: name, Instruments: 1, Depth: 1})
	if err := <-done; err != nil {
		t.Fatalf("open wait: %v", err)
	}
	// One that never comes: how long it waited, and what to check.
	never := testName(t)
	_, err = OpenWait(never, 3*time.Millisecond, time.Millisecond)
	want := "open shm " + Path(never) + ": waited 3ms: shm: feed does not exist (" + notExistHint + ")"
	if !errors.Is(err, ErrNotExist) || err.Error() != want {
		t.Fatalf("open wait on a feed never created: %v, want ErrNotExist %q", err, want)
	}
}

// corrupt creates a feed file and patches it.
func corrupt(t *testing.T, patch func(b []byte) []byte) string {
	t.Helper()
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	name := w.Path()
	w.Close()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, patch(b), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLayoutVersionMismatch(t *testing.T) {
	name := corrupt(t, func(b []byte) []byte { b[offLayoutVersion] = LayoutVersion + 1; return b })
	_, err := Open(name)
	if !errors.Is(err, ErrLayoutVersion) {
		t.Fatalf("open version %d: %v, want ErrLayoutVersion", LayoutVersion+1, err)
	}
	t.Log(err)
}

func TestBadFormat(t *testing.T) {
	for _, tc := range []struct {
		name  string
		patch func([]byte) []byte
	}{
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-pageSize] }},
		{"short", func(b []byte) []byte { return b[:100] }},
		{"journal length", func(b []byte) []byte { b[offJournalLen] = 3; return b }},
		{"slot offset", func(b []byte) []byte { b[offSlots+3] = 0x7f; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := corrupt(t, tc.patch)
			if _, err := Open(name); !errors.Is(err, ErrFormat) {
				t.Fatalf("open: %v, want ErrFormat", err)
			}
		})
	}
}

func TestStaleHeartbeat(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second})
	r := testReader(t, w.Path())
	if err := r.Check(); err != nil {
		t.Fatalf("fresh writer: %v", err)
	}
	// The writer's process is alive (it is this one) but it stopped
	// beating an hour ago, by the reader's clock (liveness).
	step := stepClock(t, &monoNanos)
	step(time.Hour)
	if err := r.Check(); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("stale heartbeat: %v, want ErrWriterDead", err)
	}
	w.Heartbeat()
	if err := r.Check(); err != nil {
		t.Fatalf("after heartbeat: %v", err)
	}
	f := r.Follow()
	if _, err := f.Wait(make([]Update, 1), 20*time.Millisecond, WaitOptions{CheckEvery: time.Nanosecond}); err != nil {
		t.Fatalf("wait on a live idle writer: %v", err)
	}
	step(time.Hour)
	if _, err := f.Wait(make([]Update, 1), time.Minute, WaitOptions{CheckEvery: time.Nanosecond}); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("wait on a stale writer: %v, want ErrWriterDead", err)
	}
	// A writer that died inside Publish leaves its slot odd forever: Read
	// reports the dead writer instead of spinning.
	w.Register(1, "A")
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	w.Publish(s)
	*w.m.slotSeq(w.l.slotOff(0)) |= 1
	if _, err := r.Read(1, make([]byte, r.Info().MaxSnapshot)); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("read a slot a dead writer held: %v, want ErrWriterDead", err)
	}
}

func TestClose(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	w.Register(1, "A")
	s := newSnapshot(1)
	fillSnapshot(s, 1, 9, 1)
	w.Publish(s)
	r := testReader(t, w.Path())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed writer: %v, want ErrClosed", err)
	}
	if err := w.Publish(s); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
	// The final books stay readable, also by a reader opening later.
	r2 := testReader(t, w.Path())
	v, err := r2.Read(1, make([]byte, r2.Info().MaxSnapshot))
	if err != nil || v.Seq() != 9 {
		t.Fatalf("read after close: %v seq %d", err, v.Seq())
	}
}

func TestRestartInProcess(t *testing.T) {
	w1 := testWriter(t, Config{Instruments: 1, Depth: 1})
	name := w1.Path()
	w1.Register(1, "A")
	r := testReader(t, name)
	f := r.Follow()
	// The same process creating the feed again (after a crash-restart the
	// pid differs; TestHelperProcess covers that) replaces the file.
	w2 := testWriter(t, Config{Name: name, Instruments: 1, Depth: 1})
	if err := r.Check(); !errors.Is(err, ErrRestarted) {
		t.Fatalf("after restart: %v, want ErrRestarted", err)
	}
	if _, err := f.Wait(make([]Update, 1), time.Minute, WaitOptions{CheckEvery: time.Nanosecond}); !errors.Is(err, ErrRestarted) {
		t.Fatalf("wait across restart: %v, want ErrRestarted", err)
	}
	w2.Register(1, "A")
	s := newSnapshot(1)
	fillSnapshot(s, 1, 5, 1)
	if err := w2.Publish(s); err != nil {
		t.Fatal(err)
	}
	r2 := testReader(t, name)
	if r2.Info().Generation == r.Info().Generation {
		t.Fatal("restart kept the generation")
	}
	if v, err := r2.Read(1, make([]byte, r2.Info().MaxSnapshot)); err != nil || v.Seq() != 5 {
		t.Fatalf("read reattached: %v seq %d", err, v.Seq())
	}
}

func TestJournalOverrun(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) { testJournalOverrun(t, single) })
	}
}

func testJournalOverrun(t *testing.T, single bool) {
	const journal = 16
	w := testWriter(t, Config{Instruments: 2, Depth: 1, JournalLen: journal, SingleWriter: single})
	w.Register(1, "A")
	w.Register(2, "B")
	r := testReader(t, w.Path())
	f := r.Follow()
	s := newSnapshot(1)
	dst := make([]Update, 4)
	for k := uint64(1); k <= 6; k++ {
		fillSnapshot(s, uint16(1+k%2), k, 1)
		w.Publish(s)
	}
	var got []Update
	for {
		n, err := f.Poll(dst)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		got = append(got, dst[:n]...)
	}
	want := []Update{{2, 1}, {1, 1}, {2, 2}, {1, 2}, {2, 3}, {1, 3}}
	if len(got) != len(want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("updates %v, want %v", got, want)
		}
	}
	for k := uint64(0); k < journal+5; k++ {
		w.Publish(s)
	}
	n, err := f.Poll(dst)
	if !errors.Is(err, ErrOverrun) || n != 0 {
		t.Fatalf("poll after %d records: %d, %v, want ErrOverrun", journal+5, n, err)
	}
	if f.Lost() != journal+5 || f.Overruns() != 1 {
		t.Fatalf("lost %d overruns %d", f.Lost(), f.Overruns())
	}
	w.Publish(s)
	if n, err := f.Poll(dst); err != nil || n != 1 || dst[0] != (Update{1, r.Version(1)}) {
		t.Fatalf("poll after overrun: %d %v %v", n, err, dst[0])
	}
}

// TestConcurrentPublishers has shard goroutines publish disjoint locates
// concurrently into one file: every publication appears in
// the shared journal exactly once, in version order per locate.
func TestConcurrentPublishers(t *testing.T) {
	const (
		shards = 4
		each   = 3
		rounds = 2000
		depth  = 3
	)
	w := testWriter(t, Config{Instruments: shards * each, Depth: depth, JournalLen: 1 << 16})
	for loc := uint16(0); loc < shards*each; loc++ {
		w.Register(loc, symbolOf(loc))
	}
	r := testReader(t, w.Path())
	f := r.Follow()
	var wg sync.WaitGroup
	for sh := 0; sh < shards; sh++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newSnapshot(depth)
			for k := uint64(1); k <= rounds; k++ {
				for i := 0; i < each; i++ {
					fillSnapshot(s, uint16(sh*each+i), k, depth)
					if err := w.Publish(s); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	last := make([]uint64, shards*each)
	dst := make([]Update, 100)
	total := 0
	for {
		n, err := f.Poll(dst)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		for _, u := range dst[:n] {
			if u.Version != last[u.Locate]+1 {
				t.Fatalf("locate %d: version %d after %d", u.Locate, u.Version, last[u.Locate])
			}
			last[u.Locate] = u.Version
		}
		total += n
	}
	if total != shards*each*rounds {
		t.Fatalf("%d journal records, want %d", total, shards*each*rounds)
	}
	buf := make([]byte, r.Info().MaxSnapshot)
	for loc := uint16(0); loc < shards*each; loc++ {
		v, err := r.Read(loc, buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkView(&v, depth); err != nil {
			t.Fatal(err)
		}
		if v.Seq() != rounds {
			t.Fatalf("locate %d: final seq %d, want %d", loc, v.Seq(), rounds)
		}
	}
}

func TestAllocs(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) { testAllocs(t, single) })
	}
}

func testAllocs(t *testing.T, single bool) {
	const depth = 10
	w := testWriter(t, Config{Instruments: 4, Depth: depth, SingleWriter: single})
	w.Register(1, "AAPL")
	r := testReader(t, w.Path())
	s := newSnapshot(depth)
	fillSnapshot(s, 1, depth, depth)
	buf := make([]byte, r.Info().MaxSnapshot)
	dst := make([]Update, 16)
	k := uint64(0)
	if a, exact := race.AllocsPerRun(t, 1000, func() {
		k++
		fillSnapshot(s, 1, k, depth)
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
	}); exact && a != 0 {
		t.Errorf("Publish: %v allocs, want 0", a)
	}
	var seq uint64
	if a, exact := race.AllocsPerRun(t, 1000, func() {
		v, err := r.Read(1, buf)
		if err != nil {
			t.Fatal(err)
		}
		seq += v.Seq()
		if l, ok := v.Bid(0); ok {
			seq += uint64(l.Price)
		}
	}); exact && a != 0 {
		t.Errorf("Read: %v allocs, want 0", a)
	}
	f := r.Follow()
	if a, exact := race.AllocsPerRun(t, 1000, func() {
		w.Publish(s)
		if n, err := f.Poll(dst); err != nil || n != 1 {
			t.Fatalf("poll: %d %v", n, err)
		}
	}); exact && a != 0 {
		t.Errorf("Publish+Poll: %v allocs, want 0", a)
	}
	if a, exact := race.AllocsPerRun(t, 1000, func() {
		w.Publish(s)
		if n, err := f.Wait(dst, time.Second, WaitOptions{}); err != nil || n != 1 {
			t.Fatalf("wait: %d %v", n, err)
		}
	}); exact && a != 0 {
		t.Errorf("Publish+Wait: %v allocs, want 0", a)
	}
}

// TestTradingState: the four ITCH states and every other byte (Unknown).
func TestTradingState(t *testing.T) {
	states := map[byte]string{'H': "Halted", 'P': "Paused", 'Q': "QuotationOnly", 'T': "Trading"}
	for c := range 256 {
		want, ok := states[byte(c)]
		if !ok {
			want = "Unknown"
		}
		if got := TradingState(byte(c)).String(); got != want {
			t.Errorf("TradingState(%q) = %s, want %s", byte(c), got, want)
		}
	}
}

// TestStaleTemp: a writer that died inside Create left its temporary file;
// the next Create removes it, and leaves a live process's alone (the
// test's parent), and a fresh one whose pid is not visible here (a writer
// inside its Create in another pid namespace; before the fix it was
// removed). An old one under this process's own pid is a dead writer's
// too: this process is inside no Create of the name (the creating pid 1 of
// a container restarted after dying inside Create, the same pid 1 now);
// before the fix kill(2) found the pid alive, so it was never removed, and
// each such death left a feed-sized file in /dev/shm. A fresh one under
// this pid stays (another namespace's pid 1 inside its Create).
func TestStaleTemp(t *testing.T) {
	name := testName(t)
	temp := func(pid int, suffix string) string {
		return filepath.Join(Dir, tempPrefix(name)+strconv.Itoa(pid)+"."+suffix)
	}
	dead := temp(999999999, "abc")
	live := temp(os.Getppid(), "abc")
	elsewhere := temp(999999998, "abc")
	ownOld, ownFresh := temp(os.Getpid(), "old"), temp(os.Getpid(), "fresh")
	for _, f := range []string{dead, live, elsewhere, ownOld, ownFresh} {
		if err := os.WriteFile(f, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(f) })
	}
	old := time.Now().Add(-2 * staleTempAge)
	for _, f := range []string{dead, live, ownOld} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	testWriter(t, Config{Name: name, Instruments: 1, Depth: 1})
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead writer's temporary file: %v, want removed", err)
	}
	if _, err := os.Stat(ownOld); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old temporary file under this process's pid, which is inside no Create: %v, want removed", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live writer's temporary file: %v", err)
	}
	if _, err := os.Stat(elsewhere); err != nil {
		t.Errorf("fresh temporary file of a pid not visible here: %v, want kept", err)
	}
	if _, err := os.Stat(ownFresh); err != nil {
		t.Errorf("fresh temporary file under this process's pid: %v, want kept", err)
	}
}

// TestSlotUsageClose: SlotUsage (metrics, readiness) may run while Close
// unmaps the file, and after. Before the fix it checked closed, then read
// the count from the mapping, which Close could unmap in between (a race
// under -race, a fault without); after Close it reported 0 used. It now
// reads the writer's own counters.
func TestSlotUsageClose(t *testing.T) {
	for range 3000 {
		name := shmtest.Name(t, "slotusage")
		w, err := Create(Config{Name: name, Instruments: 4, Depth: 2, JournalLen: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Register(1, "AAPL"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 1000 {
				_ = w.SlotUsage()
			}
		}()
		w.Close()
		<-done
		if u := w.SlotUsage(); u != (SlotUsage{Capacity: 4, Used: 1}) {
			t.Fatalf("slot usage after close %+v", u)
		}
		Remove(name)
	}
}

// TestFileSize: FileSize, which `feedhandler check` compares with the
// free space of /dev/shm, is the size of the file Create makes.
func TestFileSize(t *testing.T) {
	for _, cfg := range []Config{{Instruments: 4, Depth: 1}, {Instruments: 16384, Depth: 10}, {Instruments: 500, Depth: 20, JournalLen: 1 << 10}} {
		w := testWriter(t, cfg)
		st, err := os.Stat(w.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := FileSize(cfg); got != st.Size() {
			t.Errorf("%+v: FileSize %d, file %d bytes", cfg, got, st.Size())
		}
	}
}
