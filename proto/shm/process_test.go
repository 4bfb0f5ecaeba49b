package shm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
)

// Roles of the test binary re-executed as a separate process.
const roleEnv = "FH_SHM_TEST_ROLE"

const (
	procInstruments = 8
	procDepth       = 5
)

// TestHelperProcess is not a test: it is the body of the writer and reader
// processes the multi-process tests start (os.Args[0] with roleEnv set).
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	name := os.Getenv("FH_SHM_TEST_NAME")
	var err error
	switch role {
	case "writer":
		err = writerProcess(name)
	case "hold":
		err = holdProcess(name)
	case "reader":
		err = readerProcess(name, os.Getenv("FH_SHM_TEST_SLOW") != "")
	case "latency":
		err = latencyProcess(name)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// writerProcess publishes in a tight loop for FH_SHM_TEST_DURATION, then
// 2,000 more snapshots paced 50 µs or more apart, then closes the feed. Its journal is a single writer's (the handler's default
// mode), or with FH_SHM_TEST_SHARED set the one concurrent publishers share.
// With FH_SHM_TEST_STALL set, it stalls that long once, halfway through
// the tight loop, inside a publish (Begin, sleep, Commit): a live writer
// the kernel left without a CPU that long, as a loaded machine does, with
// no heartbeat and a slot held odd meanwhile (stallPublish).
func writerProcess(name string) error {
	d, _ := time.ParseDuration(os.Getenv("FH_SHM_TEST_DURATION"))
	stall, _ := time.ParseDuration(os.Getenv("FH_SHM_TEST_STALL"))
	journal, _ := strconv.Atoi(os.Getenv("FH_SHM_TEST_JOURNAL"))
	w, err := Create(Config{Name: name, Instruments: procInstruments, Depth: procDepth, JournalLen: journal,
		SingleWriter: os.Getenv("FH_SHM_TEST_SHARED") == ""})
	if err != nil {
		return err
	}
	for loc := uint16(0); loc < procInstruments; loc++ {
		if err := w.Register(loc, symbolOf(loc)); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	s := newSnapshot(procDepth)
	var k uint64
	stallAt := time.Now().Add(d / 2)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		for i := 0; i < 1024; i++ {
			k++
			fillSnapshot(s, uint16(k%procInstruments), k, procDepth)
			if err := w.Publish(s); err != nil {
				return err
			}
		}
		if stall > 0 && time.Now().After(stallAt) {
			k++
			if err := stallPublish(w, s, k, stall); err != nil {
				return err
			}
			stall = 0
		}
		w.Heartbeat()
	}
	// Then a paced phase: at full speed a small journal wraps every few
	// microseconds, so whether a reader ever follows an update depends on
	// how the machine schedules it (a loaded 2-CPU box: none, in some
	// runs). One publish every 50 µs or more lets every reader follow the
	// journal, so that "readers make progress" does not depend on luck.
	for i := 0; i < 2000; i++ {
		k++
		fillSnapshot(s, uint16(k%procInstruments), k, procDepth)
		if err := w.Publish(s); err != nil {
			return err
		}
		w.Heartbeat()
		time.Sleep(50 * time.Microsecond)
	}
	fmt.Printf("published %d\n", k)
	return w.Close()
}

// stallPublish publishes the k-th snapshot, sleeping for stall between
// Begin and Commit: readers of its slot find it odd all along, and the
// heartbeat does not move.
func stallPublish(w *Writer, s *Snapshot, k uint64, stall time.Duration) error {
	fillSnapshot(s, uint16(k%procInstruments), k, procDepth)
	var p Pending
	if err := w.Begin(Slot{}, s, len(s.Bids), len(s.Asks), &p); err != nil {
		return err
	}
	copy(p.Bids, s.Bids)
	copy(p.Asks, s.Asks)
	time.Sleep(stall)
	w.Commit(&p)
	return nil
}

// holdProcess creates a feed, publishes one snapshot and waits for its stdin
// to close; it never closes the feed (a killed or crashed writer).
func holdProcess(name string) error {
	w, err := Create(Config{Name: name, Instruments: 1, Depth: 1})
	if err != nil {
		return err
	}
	w.Register(1, symbolOf(1))
	s := newSnapshot(1)
	fillSnapshot(s, 1, uint64(os.Getpid()), 1)
	w.Publish(s)
	fmt.Println("ready")
	go func() {
		for range time.Tick(50 * time.Millisecond) {
			w.Heartbeat()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// startHold starts a hold writer process (holdProcess) under name and
// waits until it published.
func startHold(t testing.TB, name string) *child {
	t.Helper()
	c := startChild(t, "hold", name)
	c.waitLine(t, "ready")
	return c
}

// readerProcess reads random instruments and follows the journal until the
// writer closes the feed, verifying every snapshot; a slow reader lets the
// journal overrun it every other poll.
//
// It is a test of torn copies, not of liveness: a live writer that the
// machine stalls for longer than the default stale limit (1 s) is not
// dead to it (openTornReader), and a slot such a writer held odd for over
// a second (ErrBusy) is read again later.
func readerProcess(name string, slow bool) error {
	r, err := openTornReader(name)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	f := r.Follow()
	dst := make([]Update, 64)
	last := make([]uint64, procInstruments)
	var reads, updates, stale, busy int
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	check := func(loc uint16) error {
		v, err := r.Read(loc, buf)
		if errors.Is(err, ErrNoData) || errors.Is(err, ErrUnknownLocate) {
			// Not published or not registered yet (a reader that
			// attached before the writer).
			return nil
		}
		if errors.Is(err, ErrBusy) {
			busy++
			return nil
		}
		if err != nil {
			return err
		}
		reads++
		if err := checkView(&v, procDepth); err != nil {
			return fmt.Errorf("torn snapshot: %w", err)
		}
		if v.Locate() != loc {
			return fmt.Errorf("read locate %d returned %d", loc, v.Locate())
		}
		if v.Version < last[loc] {
			return fmt.Errorf("locate %d went back from version %d to %d", loc, last[loc], v.Version)
		}
		last[loc] = v.Version
		return nil
	}
	journal := uint64(r.Info().JournalLen)
	for iter, deadline := 0, time.Now().Add(30*time.Second); time.Now().Before(deadline); iter++ {
		if err := check(uint16(rng.IntN(procInstruments))); err != nil {
			return err
		}
		if slow && iter%2 == 0 {
			// Fall behind by more than the journal holds (unless the
			// writer stops first).
			for f.Pending() <= journal && r.Check() == nil {
				time.Sleep(100 * time.Microsecond)
			}
		}
		n, err := f.Wait(dst, time.Millisecond, WaitOptions{Spin: 10, CheckEvery: time.Millisecond})
		if errors.Is(err, ErrClosed) {
			// Final state: every slot consistent.
			for loc := uint16(0); loc < procInstruments; loc++ {
				if err := check(loc); err != nil {
					return err
				}
			}
			fmt.Printf("stats reads %d updates %d overruns %d lost %d stale %d busy %d\n", reads, updates, f.Overruns(), f.Lost(), stale, busy)
			return nil
		}
		if err != nil && !errors.Is(err, ErrOverrun) {
			return err
		}
		for _, u := range dst[:n] {
			updates++
			// The journal says locate reached version u.Version: a
			// read must return that version or a newer one.
			if u.Version < last[u.Locate] {
				stale++
			}
			busy0 := busy
			if err := check(u.Locate); err != nil {
				return err
			}
			if busy == busy0 && last[u.Locate] < u.Version {
				return fmt.Errorf("locate %d: read version %d after journal version %d", u.Locate, last[u.Locate], u.Version)
			}
		}
	}
	return errors.New("writer did not close the feed within 30s")
}

// tornStaleAfter is the stale limit of the torn-read tests' readers (Go,
// C++, Python): far beyond any stall of a live writer on a loaded machine.
// A writer that exits is still dead to them after two heartbeat intervals
// (its pid gone), one that closes the feed ErrClosed.
const tornStaleAfter = time.Hour

// tornStall is how long the torn-read tests' writer stalls once inside a
// publish (writerProcess, FH_SHM_TEST_STALL): past the readers' default
// stale limit and busy timeout, 1 s, which a loaded machine's stall of a
// live writer once exceeded (ErrWriterDead from a wait).
const tornStall = "1500ms"

// openTornReader opens name for a torn-read test's reader, waiting up to
// 10 s for the writer to create it, with the stale limit tornStaleAfter.
func openTornReader(name string) (*Reader, error) {
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, err := OpenWith(name, OpenOptions{StaleAfter: tornStaleAfter})
		if err == nil || !errors.Is(err, ErrNotExist) || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(time.Millisecond)
	}
}

// child is a helper process.
type child struct {
	cmd   *exec.Cmd
	out   *bufio.Scanner
	stdin io.WriteCloser
	lines []string
}

func startChild(t testing.TB, role, name string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "FH_SHM_TEST_NAME="+name)
	cmd.Env = append(cmd.Env, env...)
	return startCmd(t, cmd)
}

// startCmd starts cmd, a Go or C++ helper process, with its stdin and
// stdout piped to the test and SIGKILL as its parent-death signal
// (deathsig.Start: it dies with a killed test binary); at cleanup it closes stdin and kills the
// process if it has not been waited for. Its messages name the last entry
// of cmd.Env.
func startCmd(t testing.TB, cmd *exec.Cmd) *child {
	t.Helper()
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := deathsig.Start(cmd); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: bufio.NewScanner(stdout), stdin: stdin}
	t.Cleanup(func() {
		c.stdin.Close()
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	return c
}

// waitLine reads the child's output up to a line starting with prefix.
func (c *child) waitLine(t testing.TB, prefix string) string {
	t.Helper()
	for c.out.Scan() {
		line := c.out.Text()
		c.lines = append(c.lines, line)
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	t.Fatalf("%s: no %q line; output:\n%s", c.cmd.Env[len(os.Environ())], prefix, strings.Join(c.lines, "\n"))
	return ""
}

// finish waits for the child to exit and fails the test on a nonzero status.
func (c *child) finish(t testing.TB) {
	t.Helper()
	for c.out.Scan() {
		c.lines = append(c.lines, c.out.Text())
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("%s: %v; output:\n%s", c.cmd.Env[len(os.Environ())], err, strings.Join(c.lines, "\n"))
	}
}

// TestCrossProcess runs a writer process publishing in a tight loop and two
// reader processes: every snapshot read must be consistent (checkView
// recomputes all fields from Seq and Locate, so a torn copy fails), readers
// make progress, and the slow reader detects journal overruns. It runs with
// the single-writer journal and with the shared one.
func TestCrossProcess(t *testing.T) {
	t.Run("single", func(t *testing.T) { testCrossProcess(t, "FH_SHM_TEST_SHARED=") })
	t.Run("shared", func(t *testing.T) { testCrossProcess(t, "FH_SHM_TEST_SHARED=1") })
}

func testCrossProcess(t *testing.T, journalMode string) {
	name := testName(t)
	// The slow reader starts before the writer exists and waits for it.
	slow := startChild(t, "reader", name, "FH_SHM_TEST_SLOW=1")
	// The writer stalls once for longer than the readers' default stale
	// limit and busy timeout (1 s), as a loaded machine may stall it:
	// still alive, it is not dead to them, and they read on.
	w := startChild(t, "writer", name, "FH_SHM_TEST_DURATION=2s", "FH_SHM_TEST_JOURNAL=256", "FH_SHM_TEST_STALL="+tornStall, journalMode)
	w.waitLine(t, "ready")
	fast := startChild(t, "reader", name)
	published := w.waitLine(t, "published")
	w.finish(t)
	stats := map[string]map[string]int{}
	for who, c := range map[string]*child{"fast": fast, "slow": slow} {
		line := c.waitLine(t, "stats")
		c.finish(t)
		f := strings.Fields(line)[1:]
		stats[who] = map[string]int{}
		for i := 0; i+1 < len(f); i += 2 {
			stats[who][f[i]], _ = strconv.Atoi(f[i+1])
		}
		t.Logf("%s reader: %s", who, line)
	}
	t.Log("writer: " + published)
	for who, s := range stats {
		if s["reads"] == 0 || s["updates"] == 0 {
			t.Errorf("%s reader made no progress: %v", who, s)
		}
	}
	if stats["slow"]["overruns"] == 0 || stats["slow"]["lost"] == 0 {
		t.Errorf("slow reader saw no journal overrun: %v", stats["slow"])
	}
}

// TestWriterDeathAndRestart: a writer process is killed (its pid is gone:
// ErrWriterDead), a new writer process replaces the file (ErrRestarted; a
// reader that opens again sees the new writer), and creating the feed while
// that writer lives fails with ErrInUse.
func TestWriterDeathAndRestart(t *testing.T) {
	name := testName(t)
	a := startHold(t, name)
	r := testReader(t, name)
	if err := r.Check(); err != nil {
		t.Fatalf("live writer: %v", err)
	}
	if _, err := Create(Config{Name: name, Instruments: 1, Depth: 1}); !errors.Is(err, ErrInUse) {
		t.Fatalf("create over a live writer: %v, want ErrInUse", err)
	}
	a.cmd.Process.Kill()
	a.cmd.Wait()
	waitDead(t, r)
	// The last snapshot of the dead writer stays readable.
	buf := make([]byte, r.Info().MaxSnapshot)
	if v, err := r.Read(1, buf); err != nil || v.Seq() != uint64(a.cmd.Process.Pid) {
		t.Fatalf("read dead writer's snapshot: %v seq %d", err, v.Seq())
	}

	b := startHold(t, name)
	if err := r.Check(); !errors.Is(err, ErrRestarted) {
		t.Fatalf("restarted writer: %v, want ErrRestarted", err)
	}
	r2 := testReader(t, name)
	if err := r2.Check(); err != nil {
		t.Fatalf("reattached: %v", err)
	}
	if pid := r2.Info().WriterPid; pid != b.cmd.Process.Pid {
		t.Fatalf("reattached to pid %d, want %d", pid, b.cmd.Process.Pid)
	}
	if v, err := r2.Read(1, buf); err != nil || v.Seq() != uint64(b.cmd.Process.Pid) {
		t.Fatalf("read new writer's snapshot: %v seq %d", err, v.Seq())
	}
	b.stdin.Close()
	b.finish(t)
}

// latencyProcess follows the journal spinning and measures, for every
// update, the time from the writer's publish timestamp to the moment the
// consistent snapshot is in hand.
func latencyProcess(name string) error {
	r, err := OpenWait(name, 10*time.Second, time.Millisecond)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	f := r.Follow()
	fmt.Println("ready")
	dst := make([]Update, 16)
	lat := make([]int64, 0, 1<<20)
	for {
		n, err := f.Wait(dst, time.Second, WaitOptions{Spin: 1 << 30})
		if errors.Is(err, ErrClosed) {
			break
		}
		if err != nil && !errors.Is(err, ErrOverrun) {
			return err
		}
		for _, u := range dst[:n] {
			v, err := r.Read(u.Locate, buf)
			if err != nil {
				return err
			}
			if v.Version == u.Version && len(lat) < cap(lat) {
				lat = append(lat, now()-v.PublishTime())
			}
		}
	}
	if len(lat) == 0 {
		return errors.New("no samples")
	}
	slices.Sort(lat)
	fmt.Printf("latency n %d p50 %d p99 %d max %d\n", len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	return nil
}

// BenchmarkPublishToReader measures publish-to-visible latency across
// processes: a reader process spins on the journal and, per update, reads
// the snapshot and subtracts its publish timestamp from the current time
// (both CLOCK_REALTIME). Publications are spaced 20µs apart so that the
// figure is latency, not queueing. Reported as p50-ns and p99-ns.
func BenchmarkPublishToReader(b *testing.B) {
	benchPublishToReader(b, func(path string) *child { return startChild(b, "latency", path) })
}

// benchPublishToReader publishes one book every 20µs to the latency reader
// that start runs in another process, and reports the reader's p50 and p99
// of publish -> read.
func benchPublishToReader(b *testing.B, start func(path string) *child) {
	const depth = 10
	w := testWriter(b, Config{Instruments: 1, Depth: depth})
	w.Register(1, "AAPL")
	c := start(w.Path())
	c.waitLine(b, "ready")
	s := newSnapshot(depth)
	var k uint64
	for b.Loop() {
		k++
		fillSnapshot(s, 1, k, depth)
		w.Publish(s)
		if k%1024 == 0 {
			w.Heartbeat()
		}
		for t0 := time.Now(); time.Since(t0) < 20*time.Microsecond; {
		}
	}
	w.Close()
	line := c.waitLine(b, "latency")
	c.finish(b)
	f := strings.Fields(line)
	p50, _ := strconv.ParseFloat(f[4], 64)
	p99, _ := strconv.ParseFloat(f[6], 64)
	b.ReportMetric(p50, "p50-ns")
	b.ReportMetric(p99, "p99-ns")
	b.ReportMetric(0, "ns/op")
}
