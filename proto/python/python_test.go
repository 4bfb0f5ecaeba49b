// Package python_test runs the Python reader's tests (proto/python/tests)
// against the Go writer, and is the writer those tests drive: the test
// binary re-executed with FH_SHM_TEST_ROLE set (TestHelperProcess).
//
// The tests use Debian's /usr/bin/python3 when it exists, else python3 from
// PATH, and skip only when there is no python3 or it lacks the flatbuffers
// module (Debian package python3-flatbuffers).
package python_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

const roleEnv = "FH_SHM_TEST_ROLE"

// TestHelperProcess is not a test: it is the writer process the Python tests
// start (FH_SHM_TESTWRITER) with FH_SHM_TEST_ROLE set.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	var err error
	switch role {
	case "control":
		err = controlWriter()
	case "stress":
		err = stressWriter()
	case "latency":
		err = latencyWriter()
	case "flip":
		err = flipWriter()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func create() (*shm.Writer, error) {
	return shm.Create(shm.Config{
		Name:              os.Getenv("FH_SHM_TEST_NAME"),
		Instruments:       envInt("FH_SHM_TEST_INSTRUMENTS", 8),
		Depth:             envInt("FH_SHM_TEST_DEPTH", 5),
		JournalLen:        envInt("FH_SHM_TEST_JOURNAL", 0),
		HeartbeatInterval: time.Duration(envInt("FH_SHM_TEST_HEARTBEAT_MS", 100)) * time.Millisecond,
		// One goroutine publishes: the single-writer journal of the
		// handler's default mode, unless FH_SHM_TEST_SHARED is set.
		SingleWriter: os.Getenv("FH_SHM_TEST_SHARED") == "",
	})
}

// controlWriter creates a feed and runs the commands on its stdin, one per
// line, answering each with "ok ..." or "error ...":
//
//	register LOCATE SYMBOL
//	publish LOCATE K      the K-th snapshot of LOCATE (fillSnapshot); prints the version
//	burst N               N snapshots round-robin over the registered locates
//	beat                  heartbeat every 20ms from now on
//	lockslot LOCATE       make LOCATE's seqlock odd, as a writer that stopped
//	                      inside Publish leaves it
//	claim                 claim the journal's next record and write nothing, as a
//	                      shared-mode publisher stopped between its claim and
//	                      its stores leaves it (FH_SHM_TEST_SHARED)
//	close                 close the feed (the file stays)
//	exit                  exit without closing (a crashed writer)
//
// End of input also exits without closing.
func controlWriter() error {
	w, err := create()
	if err != nil {
		return err
	}
	depth := w.Info().Depth
	s := &shm.Snapshot{Bids: make([]shm.Level, depth), Asks: make([]shm.Level, depth)}
	var locates []uint16
	var k, epoch uint64
	var beat sync.Once
	fmt.Printf("ready %d\n", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		reply := "ok"
		switch f[0] {
		case "register":
			loc, _ := strconv.Atoi(f[1])
			if err = w.Register(uint16(loc), f[2]); err == nil {
				locates = append(locates, uint16(loc))
			}
		case "rebind": // each one a new session (epoch)
			loc, _ := strconv.Atoi(f[1])
			epoch++
			_, _, err = w.Rebind(uint16(loc), f[2], epoch)
		case "publish":
			loc, _ := strconv.Atoi(f[1])
			kk, _ := strconv.ParseUint(f[2], 10, 64)
			fillSnapshot(s, uint16(loc), kk, depth)
			err = w.Publish(s)
		case "burst":
			n, _ := strconv.Atoi(f[1])
			for i := 0; i < n && err == nil; i++ {
				k++
				fillSnapshot(s, locates[int(k)%len(locates)], k, depth)
				err = w.Publish(s)
			}
		case "beat":
			beat.Do(func() {
				go func() {
					for range time.Tick(20 * time.Millisecond) {
						w.Heartbeat()
					}
				}()
			})
		case "lockslot":
			loc, _ := strconv.Atoi(f[1])
			err = lockSlot(w.Path(), uint16(loc))
		case "claim":
			err = claimRecord(w.Path())
		case "close":
			err = w.Close()
		case "exit":
			os.Exit(0)
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			reply = "error " + err.Error()
		}
		fmt.Println(reply)
	}
	os.Exit(0)
	return nil
}

// lockSlot increments the seqlock word of locate's slot in the file at
// path through a second mapping (the offsets of docs/SHM.md), leaving it odd:
// what a writer that died or stopped inside Publish leaves behind.
func lockSlot(path string, locate uint16) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	le := binary.LittleEndian
	index, slots, slotSize := le.Uint64(mem[64:]), le.Uint64(mem[88:]), uint64(le.Uint32(mem[36:]))
	v := le.Uint32(mem[index+4*uint64(locate):])
	if v == 0 {
		return fmt.Errorf("locate %d not registered", locate)
	}
	off := slots + uint64(v-1)*slotSize
	if seq := le.Uint64(mem[off:]); seq&1 == 0 {
		le.PutUint64(mem[off:], seq+1)
	}
	return nil
}

// claimRecord adds 1 to the journal head of the file at path through a
// second mapping (header offset 384, docs/SHM.md), as a shared-mode
// publisher's claim does, and writes no record.
func claimRecord(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	atomic.AddUint64((*uint64)(unsafe.Pointer(&mem[384])), 1)
	return nil
}

// stressWriter publishes in a tight loop into every registered locate
// (S0..S7), heartbeating, then closes the feed: the Go torn-read stress
// writer (proto/shm TestCrossProcess). It stops after FH_SHM_TEST_DURATION
// or when its stdin reaches end of file, whichever comes first, so a test
// on a loaded machine can run it until it has seen what it needs. With
// FH_SHM_TEST_STALL set it stalls that long once, half a second in,
// between Begin and Commit of a publish: a live writer a loaded machine
// left without a CPU, with no heartbeat and a slot held odd meanwhile.
func stressWriter() error {
	d, err := time.ParseDuration(os.Getenv("FH_SHM_TEST_DURATION"))
	if err != nil {
		return err
	}
	stall, _ := time.ParseDuration(os.Getenv("FH_SHM_TEST_STALL"))
	w, err := create()
	if err != nil {
		return err
	}
	var stop atomic.Bool
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	info := w.Info()
	for loc := 0; loc < info.Instruments; loc++ {
		if err := w.Register(uint16(loc), fmt.Sprintf("S%d", loc)); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	s := &shm.Snapshot{Bids: make([]shm.Level, info.Depth), Asks: make([]shm.Level, info.Depth)}
	var k uint64
	stallAt := time.Now().Add(time.Second / 2)
	for deadline := time.Now().Add(d); time.Now().Before(deadline) && !stop.Load(); {
		for i := 0; i < 1024; i++ {
			k++
			fillSnapshot(s, uint16(k%uint64(info.Instruments)), k, info.Depth)
			if err := w.Publish(s); err != nil {
				return err
			}
		}
		if stall > 0 && time.Now().After(stallAt) {
			k++
			fillSnapshot(s, uint16(k%uint64(info.Instruments)), k, info.Depth)
			var p shm.Pending
			if err := w.Begin(shm.Slot{}, s, len(s.Bids), len(s.Asks), &p); err != nil {
				return err
			}
			copy(p.Bids, s.Bids)
			copy(p.Asks, s.Asks)
			time.Sleep(stall)
			w.Commit(&p)
			stall = 0
		}
		w.Heartbeat()
	}
	fmt.Printf("published %d\n", k)
	return w.Close()
}

// flipWriter maps the file FH_SHM_TEST_NAME (4096 bytes, created) and, for
// FH_SHM_TEST_DURATION, stores k * 0x0101010101010101 at offset 256 and
// k * 0x01010101 at offset 264 (atomically, one store each) for k cycling
// through 0..255: a reader whose loads of those words are not single
// aligned loads sees a value with unequal bytes.
func flipWriter() error {
	d, err := time.ParseDuration(os.Getenv("FH_SHM_TEST_DURATION"))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(os.Getenv("FH_SHM_TEST_NAME"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(4096); err != nil {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	w64 := (*uint64)(unsafe.Pointer(&mem[256]))
	w32 := (*uint32)(unsafe.Pointer(&mem[264]))
	fmt.Println("ready")
	var n uint64
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		for i := 0; i < 1<<16; i++ {
			n++
			k := n & 0xff
			atomic.StoreUint64(w64, k*0x0101010101010101)
			atomic.StoreUint32(w32, uint32(k)*0x01010101)
		}
	}
	fmt.Printf("stores %d\n", n)
	return nil
}

// latencyWriter publishes FH_SHM_TEST_COUNT depth-10 snapshots of locate 1,
// spaced 20µs apart (as BenchmarkPublishToReader), after its reader says
// "go" on stdin, then closes the feed.
func latencyWriter() error {
	w, err := create()
	if err != nil {
		return err
	}
	depth := w.Info().Depth
	if err := w.Register(1, "AAPL"); err != nil {
		return err
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	s := &shm.Snapshot{Bids: make([]shm.Level, depth), Asks: make([]shm.Level, depth)}
	n := envInt("FH_SHM_TEST_COUNT", 10000)
	for k := 1; k <= n; k++ {
		fillSnapshot(s, 1, uint64(k), depth)
		if err := w.Publish(s); err != nil {
			return err
		}
		if k%1024 == 0 {
			w.Heartbeat()
		}
		for t0 := time.Now(); time.Since(t0) < 20*time.Microsecond; {
		}
	}
	return w.Close()
}

// fillSnapshot makes the k-th snapshot of locate, every field derived from
// (locate, k), as proto/shm's test helper of the same name: the Python
// tests recompute it (tests/support.py fill_snapshot) to detect torn reads.
func fillSnapshot(s *shm.Snapshot, locate uint16, k uint64, depth int) {
	nb := int(k % uint64(depth+1))
	na := int((k / 3) % uint64(depth+1))
	s.Locate = locate
	s.Seq = k
	s.ExchangeTime = k*3 + uint64(locate)
	s.ReceiveTime = int64(k * 5)
	s.PublishTime = 0
	s.State = bookfb.TradingState(k % 5)
	s.Flags = bookfb.Flags(k & 0xF)
	s.SystemEvent = byte('A' + k%26)
	s.Bids = s.Bids[:nb]
	s.Asks = s.Asks[:na]
	for i := range s.Bids {
		s.Bids[i] = shm.Level{Price: uint32(k) + 1000 - uint32(i), Shares: k*7 + uint64(i), Orders: uint32(i) + uint32(locate)}
	}
	for i := range s.Asks {
		s.Asks[i] = shm.Level{Price: uint32(k) + 2000 + uint32(i), Shares: k*13 + uint64(i), Orders: uint32(i) ^ uint32(k)}
	}
	s.BidLevels = uint32(nb) + uint32(k%7)
	s.AskLevels = uint32(na) + uint32(k%11)
	s.LastTradePrice = uint32(k) ^ uint32(locate)
	s.LastTradeShares = k * 17
	s.Volume = k * 19
	s.Messages = k + uint64(locate)
}

// python returns Debian's /usr/bin/python3 when present, else python3 from
// PATH; it skips the test when there is none or flatbuffers is missing.
func python(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			t.Skip("python3 not found (Debian: python3, python3-flatbuffers)")
		}
	}
	if out, err := exec.Command(py, "-c", "import flatbuffers").CombinedOutput(); err != nil {
		t.Skipf("%s has no flatbuffers module (Debian package python3-flatbuffers): %v\n%s", py, err, out)
	}
	return py
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// tools builds the feedhandler command and writes a generated day once per
// test binary; returns the binary and the day file.
func tools(t testing.TB) (feedhandler, day string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = leftover.MkdirTemp("fh-pytest")
		if buildErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("building the feedhandler command for the Python tests: %w", err)
			return
		}
		out, err := exec.Command(goTool, "build", "-o", filepath.Join(buildDir, "feedhandler"), "../../cmd/feedhandler").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build feedhandler: %v\n%s", err, out)
			return
		}
		g, err := itchgen.New(itchgen.Config{Messages: 300_000, Symbols: 300, Seed: 11})
		if err != nil {
			buildErr = err
			return
		}
		f, err := os.Create(filepath.Join(buildDir, "day.itch"))
		if err != nil {
			buildErr = err
			return
		}
		if err := g.Write(f); err != nil {
			buildErr = err
		}
		f.Close()
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "feedhandler"), filepath.Join(buildDir, "day.itch")
}

func TestMain(m *testing.M) {
	// The Python tests name their feeds fh-pytest-PID-N (support.py's
	// feed_name) and remove them at cleanup; a killed run cannot, and
	// leaves them to this.
	shmtest.RemoveStale("fh-pytest")
	leftover.SweepOnce(os.TempDir(), "fh-pytest") // and its build directory
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// runPython runs the Python unittest module (tests/NAME.py) with the writer,
// the feedhandler binary and the day it needs; any failure, error or skip
// fails the test, except the skips of tests for an optional module that is
// not installed (NumPy, pandas: "not installed (Debian: ...)") and of tests
// that need root ("needs root and unshare(1)": a reader in its own pid
// namespace).
func runPython(t *testing.T, module string) string {
	t.Helper()
	py := python(t)
	fh, day := tools(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-m", "unittest", "-v", "tests."+module)
	cmd.Env = append(os.Environ(),
		"PYTHONPATH=.", "PYTHONDONTWRITEBYTECODE=1", "FH_SHM_REQUIRE=1",
		"FH_SHM_TESTWRITER="+exe, "FH_SHM_FEEDHANDLER="+fh, "FH_SHM_DAY="+day)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = deathsig.Run(cmd)
	t.Logf("%s %s:\n%s", py, module, out.String())
	if err != nil {
		t.Fatalf("python tests.%s: %v", module, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "... skipped") && !strings.Contains(line, "not installed (Debian: python3-") &&
			!strings.Contains(line, "needs root and unshare(1)") {
			t.Errorf("python test skipped: %s", line)
		}
	}
	if strings.Contains(out.String(), "Ran 0 tests") {
		t.Errorf("python tests.%s ran no test", module)
	}
	if !strings.Contains(out.String(), "\nOK") {
		t.Errorf("python tests.%s: no OK line", module)
	}
	return out.String()
}

func TestPythonCrossLanguage(t *testing.T) { runPython(t, "test_replay") }
func TestPythonTornReads(t *testing.T)     { runPython(t, "test_torn") }
func TestPythonLifecycle(t *testing.T)     { runPython(t, "test_lifecycle") }
func TestPythonJournal(t *testing.T)       { runPython(t, "test_journal") }
func TestPythonExample(t *testing.T)       { runPython(t, "test_example") }
func TestPythonDecode(t *testing.T)        { runPython(t, "test_decode") }
func TestPythonPollDead(t *testing.T)      { runPython(t, "test_poll_dead") }

// BenchmarkPython runs the Python reader's benchmarks (tests/bench.py)
// against this binary as the writer and reports their medians: a
// consistent read of a depth-10 book (read-ns; read+levels-ns also builds
// both Level lists, read+arrays-ns both NumPy arrays) and publish to read in another process (p50-ns,
// p99-ns). Compare with BenchmarkRead and BenchmarkPublishToReader of
// proto/shm from the same run.
func BenchmarkPython(b *testing.B) {
	py := python(b)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var out []byte
	for b.Loop() {
		cmd := exec.Command(py, "-m", "tests.bench")
		cmd.Env = append(os.Environ(), "PYTHONPATH=.", "PYTHONDONTWRITEBYTECODE=1", "FH_SHM_REQUIRE=1", "FH_SHM_TESTWRITER="+exe)
		if out, err = deathsig.CombinedOutput(cmd); err != nil {
			b.Fatalf("%s -m tests.bench: %v\n%s", py, err, out)
		}
	}
	b.Logf("%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "python" && (f[1] == "read" || f[1] == "read+levels" || f[1] == "read+arrays" || f[1] == "read_bytes"):
			v, _ := strconv.ParseFloat(f[2], 64)
			b.ReportMetric(v, f[1]+"-ns")
		case len(f) >= 9 && f[1] == "publish->read":
			p50, _ := strconv.ParseFloat(f[5], 64)
			p99, _ := strconv.ParseFloat(f[8], 64)
			b.ReportMetric(p50, "p50-ns")
			b.ReportMetric(p99, "p99-ns")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// TestDocPythonInfoAttribute: the Python Reader's info is an attribute
// (a property, as path), where Go's Info and C++'s info are calls, and
// docs/SHM.md's table of the Python names says so. It listed info among
// the methods (lookup, version, heartbeat_ns, check), and r.info() as
// written from it raised "TypeError: 'Info' object is not callable".
func TestDocPythonInfoAttribute(t *testing.T) {
	py := python(t)
	out, err := exec.Command(py, "-c", "import feedhandler_shm as s; print(type(s.Reader.info).__name__)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "property" {
		t.Fatalf("feedhandler_shm.Reader.info: %v %s; want a property (the doc below says an attribute)", err, out)
	}
	doc, err := os.ReadFile("../../docs/SHM.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	for _, want := range []string{"`info` (an attribute, as `path`: `r.info.max_snapshot`", "Python `info.generation`"} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/SHM.md does not say %q", want)
		}
	}
}

// TestDocPythonPossiblyStale: docs/SHM.md's Python example shows how a
// strategy tells a book flagged PossiblyStale (Book.flag_names), as the Go
// and C++ examples do (bookfb.FlagsPossiblyStale, microprice's
// bookfb::Flags_PossiblyStale). It showed b.flags nowhere, and the flags'
// names (flag_names, FLAG_NAMES) were in no document.
func TestDocPythonPossiblyStale(t *testing.T) {
	py := python(t)
	code := "import types, feedhandler_shm as s\n" +
		"b = types.SimpleNamespace(flags=1 | 4 | 64)\n" + // PossiblyStale, Crossed and a bit unknown
		"print(s.Book.flag_names(b))\n"
	out, err := exec.Command(py, "-c", code).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "['PossiblyStale', 'Crossed']" {
		t.Fatalf("Book.flag_names() of flags 1|4|64: %v %s; want ['PossiblyStale', 'Crossed']", err, out)
	}
	doc, err := os.ReadFile("../../docs/SHM.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(doc), "```python\n")
	block, _, _ = strings.Cut(block, "```")
	if want := `"PossiblyStale" in b.flag_names()`; !strings.Contains(block, want) {
		t.Errorf("docs/SHM.md's Python example does not show %s", want)
	}
}

// TestDocPythonLost: docs/SHM.md tells an OverrunError's lost (the records
// that one overrun lost) from Follower.lost (the running total over every
// overrun), both named lost. It said neither, and a strategy summing
// e.lost into its own count next to f.lost counted each overrun twice.
func TestDocPythonLost(t *testing.T) {
	doc, err := os.ReadFile("../../docs/SHM.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(doc), "```python\n")
	block, _, _ = strings.Cut(block, "```")
	if want := "e.lost: this overrun's lost records; f.lost: the running total"; !strings.Contains(block, want) {
		t.Errorf("docs/SHM.md's Python example does not say %q", want)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	if want := "`lost` (the records lost over every overrun, a running total: an `OverrunError`'s `.lost` is that one overrun's)"; !strings.Contains(text, want) {
		t.Errorf("docs/SHM.md's table of the Python names does not say %q", want)
	}
}

// TestDocPythonOfflineInstall runs docs/SHM.md's offline install of the
// Python reader (a venv over the system's site-packages, pip with no build
// isolation and no index) on a copy of proto/python, and imports the
// package from the venv. The page had only 'pip install proto/python',
// which fetches setuptools and flatbuffers from the index.
func TestDocPythonOfflineInstall(t *testing.T) {
	py := python(t)
	doc, err := os.ReadFile("../../docs/SHM.md")
	if err != nil {
		t.Fatal(err)
	}
	var venv, pip string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.Contains(l, "python3 -m venv --system-site-packages ") {
			venv = l
		}
		if strings.Contains(l, "pip install --no-build-isolation --no-index proto/python") {
			pip = l
		}
	}
	if venv == "" || pip == "" {
		t.Fatalf("docs/SHM.md shows no offline install: venv command %q, pip command %q", venv, pip)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "proto"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", ".", filepath.Join(dir, "proto", "python")).CombinedOutput(); err != nil {
		t.Fatalf("copy proto/python: %v\n%s", err, out)
	}
	_ = os.RemoveAll(filepath.Join(dir, "proto", "python", "build"))
	for _, l := range []string{strings.Replace(venv, "/usr/bin/python3", py, 1), pip,
		".venv/bin/python -c 'import feedhandler_shm, bookfb'"} {
		cmd := exec.Command("sh", "-c", l)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PIP_FIND_LINKS=", "PIP_CONFIG_FILE=/dev/null", "PYTHONPATH=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", l, err, out)
		}
	}
}
