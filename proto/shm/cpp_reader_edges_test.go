package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
)

// Edge cases of the C++ reader (proto/cpp/include/feedhandler/shm_reader.hpp)
// that an audit found: the writer check of a loop of short waits, a writer
// in another pid namespace, a slot length above the maximum snapshot, and
// the heartbeat arithmetic of a corrupt header. The driver is built with
// AddressSanitizer and UBSan, so signed overflow aborts it (the session
// then ends and the test fails naming the command).
//
// Helpers here start with cppEdge: package shm's test helpers are shared.

// cppEdgeBin builds the session driver with the sanitizers (the flags of
// TestCppTornReads' asan build, so the cache holds one binary for both).
func cppEdgeBin(t *testing.T) string {
	t.Helper()
	return cppbuild.Build(t, cppDriver, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
		"-fno-omit-frame-pointer")
}

// cppEdgeSetHeartbeat stores a heartbeat age old in w's header, as a writer
// that last beat then. A reader judges a heartbeat by whether it changes,
// on its own clock (liveness): only its look at open goes by the realtime
// age, so a test that makes the heartbeat older has the session open
// again; one that makes it fresh does not need to (it changed).
func cppEdgeSetHeartbeat(w *Writer, age time.Duration) {
	atomic.StoreInt64(w.m.i64(offHeartbeat), time.Now().Add(-age).UnixNano())
}

// TestCppEdgeWaitChecksAcrossCalls: the follower's writer checks run on a
// clock of the follower, not of each wait call. Before, every wait started
// its own clock and checked only after check_every within that call: a
// loop of waits shorter than check_every (or of 0) never checked, and
// never reported a closed writer.
func TestCppEdgeWaitChecksAcrossCalls(t *testing.T) {
	bin := cppEdgeBin(t)

	// The first wait of a follower checks at once (once its spin found
	// nothing), whatever its timeout.
	t.Run("first wait", func(t *testing.T) {
		w := testWriter(t, Config{Instruments: 1, Depth: 1})
		w.Close()
		s := startSession(t, bin, w.Path())
		s.expect("open", "open Ok")
		s.expect("follow", "follow Ok")
		s.expect("waitloop 0 0 0", "waitloop ErrClosed n 0 calls 1 ")
	})

	// After a first loop that checked a live writer, a loop of waits
	// sees the close: 20 ms waits with the default check_every (100 ms),
	// and waits of 0 with a check_every of 1.5 s (the check comes due
	// across calls).
	for _, c := range []struct{ name, live, wantLive, closed string }{
		{"short waits", "waitloop 20 100 0", "waitloop Ok n 0 ", "waitloop 20 3000 0"},
		{"every check_every", "waitloop 0 0 1500", "waitloop Ok n 0 calls 1 ", "waitloop 0 5000 1500"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 2 * time.Second})
			s := startSession(t, bin, w.Path())
			s.expect("open", "open Ok")
			s.expect("follow", "follow Ok")
			s.expect(c.live, c.wantLive)
			w.Close()
			t.Log(s.expect(c.closed, "waitloop ErrClosed n 0 "))
		})
	}
}

// TestCppEdgeDeadPidFreshHeartbeat: a pid that is gone (kill ESRCH) means a
// dead writer only once its heartbeat is also older than two intervals;
// before that the heartbeat's stale limit decides (a reader in another pid
// namespace sees no process under a live writer's pid). The same rule
// holds for a slot a writer left odd: held by a writer that still beats,
// it is Busy, not WriterDead. Before, ESRCH alone was WriterDead.
func TestCppEdgeDeadPidFreshHeartbeat(t *testing.T) {
	bin := cppEdgeBin(t)
	// Interval 2s: two intervals 4s, the stale limit 20s.
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 2 * time.Second})
	*w.m.u32(offWriterPid) = uint32(deadPid(t))
	cppEdgeSetHeartbeat(w, 0)
	s := startSession(t, bin, w.Path())
	s.expect("open", "open Ok")
	s.expect("check", "check Ok")
	s.expect("follow", "follow Ok")
	s.expect("wait 1", "wait Ok n 0")
	cppEdgeSetHeartbeat(w, 3*time.Second) // 1.5 intervals
	s.expect("open", "open Ok")
	s.expect("check", "check Ok")
	cppEdgeSetHeartbeat(w, 5*time.Second) // 2.5 intervals, pid gone
	s.expect("open", "open Ok")
	s.expect("check", "check ErrWriterDead")
	s.expect("follow", "follow Ok")
	s.expect("wait 1", "wait ErrWriterDead n 0")
	cppEdgeSetHeartbeat(w, 0)
	s.expect("check", "check Ok")

	// The slot held odd (inside a publish): read's slow path asks the same.
	seq := w.m.slotSeq(w.l.slotOff(0))
	atomic.StoreUint64(seq, atomic.LoadUint64(seq)|1)
	s.expect("read 1", "read ErrBusy")
	cppEdgeSetHeartbeat(w, 5*time.Second)
	s.expect("open", "open Ok")
	s.expect("read 1", "read ErrWriterDead")
}

// TestCppEdgePidNamespace: a C++ reader in its own pid namespace (as in a
// container) sees no process under the writer's pid. A live writer that
// beats is alive all the same; one that stopped beating for two intervals
// is dead (its pid is gone, as far as this reader can tell). Before,
// check() said WriterDead at once.
func TestCppEdgePidNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the C++ reader runs in a new pid namespace (CLONE_NEWPID)")
	}
	newPid := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	probe := exec.Command("true")
	probe.SysProcAttr = newPid
	if err := probe.Run(); err != nil {
		t.Skipf("cannot create a pid namespace here (CLONE_NEWPID): %v", err)
	}
	bin := cppEdgeBin(t)
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 2 * time.Second})
	cppEdgeSetHeartbeat(w, 0)
	cmd := exec.Command(bin, "session", w.Path())
	cmd.Env = append(os.Environ(), "FH_CPP_DRIVER=session in a new pid namespace")
	cmd.SysProcAttr = newPid
	s := &session{t: t, c: startCmd(t, cmd)}
	s.expect("open", fmt.Sprintf("open Ok pid %d ", os.Getpid()))
	s.expect("check", "check Ok")
	s.expect("follow", "follow Ok")
	s.expect("wait 1", "wait Ok n 0")
	cppEdgeSetHeartbeat(w, 5*time.Second) // 2.5 intervals
	s.expect("open", "open Ok")
	s.expect("check", "check ErrWriterDead")
	cppEdgeSetHeartbeat(w, 0)
	s.expect("check", "check Ok")
}

// TestCppEdgeCorruptLen: a slot whose sequence is even and whose length is
// above max_snapshot is corrupt (the writer never stores such a length,
// and the aligned 4-byte load cannot tear): read says Format at once.
// Before, it retried for a second and said Busy.
func TestCppEdgeCorruptLen(t *testing.T) {
	bin := cppEdgeBin(t)
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 2 * time.Second})
	s := startSession(t, bin, w.Path())
	s.expect("open", "open Ok")
	s.expect("read 1", "read Ok seq 1 version 1")
	lenp := w.m.slotLen(w.l.slotOff(0))
	good := atomic.LoadUint32(lenp)
	for _, n := range []uint32{uint32(w.l.maxSnapshot) + 1, uint32(w.l.maxSnapshot) + 64, math.MaxUint32} {
		atomic.StoreUint32(lenp, n)
		s.expect("read 1", "read ErrFormat")
	}
	atomic.StoreUint32(lenp, good)
	s.expect("read 1", "read Ok seq 1 version 1")
}

// TestCppEdgeHeartbeatBounds: the header's heartbeat interval must be above
// 0 and at most an hour, or open says Format; and no heartbeat value, however
// corrupt, makes the age arithmetic overflow (UBSan aborts the driver on
// signed overflow). Before, an interval of MaxInt64 overflowed 10
// intervals at open, and a heartbeat of MinInt64 overflowed now - heartbeat.
func TestCppEdgeHeartbeatBounds(t *testing.T) {
	bin := cppEdgeBin(t)
	const hour = int64(time.Hour)
	// A header as a live writer of this process left it, interval every.
	header := func(every int64) string {
		return corrupt(t, func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[offHeartbeatEvery:], uint64(every))
			binary.LittleEndian.PutUint32(b[offState:], stateOpen)
			binary.LittleEndian.PutUint32(b[offWriterPid:], uint32(os.Getpid()))
			binary.LittleEndian.PutUint64(b[offHeartbeat:], uint64(time.Now().UnixNano()))
			return b
		})
	}
	for _, every := range []int64{0, -1, -hour, hour + 1, math.MaxInt64, math.MinInt64} {
		s := startSession(t, bin, header(every))
		s.expect("open", "open ErrFormat")
	}
	for _, every := range []int64{1, hour} {
		s := startSession(t, bin, header(every))
		s.expect("open", "open Ok")
		s.expect("check", "check Ok")
	}

	// Corrupt heartbeats under a live writer (this process) and a
	// one-hour interval: the oldest possible one is stale, one in the
	// far future is not (an age below zero). Each is the session's look
	// at open (the realtime age), then unchanged.
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Hour})
	s := startSession(t, bin, w.Path())
	for _, tc := range []struct {
		beat int64
		want string
	}{
		{math.MinInt64, "check ErrWriterDead"},
		{math.MinInt64 + 1, "check ErrWriterDead"},
		{-1, "check ErrWriterDead"},
		{math.MaxInt64, "check Ok"},
	} {
		atomic.StoreInt64(w.m.i64(offHeartbeat), tc.beat)
		s.expect("open", "open Ok")
		if got := s.do("check"); got != tc.want {
			t.Errorf("heartbeat %d: C++ %q, want %q", tc.beat, got, tc.want)
		}
	}
	// read's slow path computes the age too: a slot held odd, the
	// heartbeat MinInt64.
	atomic.StoreInt64(w.m.i64(offHeartbeat), math.MinInt64)
	seq := w.m.slotSeq(w.l.slotOff(0))
	atomic.StoreUint64(seq, atomic.LoadUint64(seq)|1)
	s.expect("open", "open Ok")
	s.expect("read 1", "read ErrWriterDead")
	atomic.StoreUint64(seq, atomic.LoadUint64(seq)+1)
	cppEdgeSetHeartbeat(w, 0)
}

// TestCppEdgeRelativePath: a relative path given to open is resolved once,
// at open (path() is absolute). Before, check() looked the relative name up
// again against the working directory of the moment: after a chdir to a
// directory holding a file of the same name it said Restarted, and after a
// real restart of the feed it said Closed.
func TestCppEdgeRelativePath(t *testing.T) {
	bin := cppEdgeBin(t)
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	heartbeats(t, w)
	dir, base := filepath.Split(w.Path())
	other := t.TempDir()
	decoy := filepath.Join(other, base)
	if err := os.WriteFile(decoy, []byte("not the feed"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSession(t, bin, "./"+base)
	s.expect("chdir "+dir, "chdir Ok")
	s.expect("open", "open Ok")
	if got := s.do("path"); got != "path "+w.Path() {
		t.Errorf("C++ path: %q, want %q", got, "path "+w.Path())
	}
	s.expect("chdir "+other, "chdir Ok")
	s.expect("check", "check Ok")

	if err := os.Remove(decoy); err != nil {
		t.Fatal(err)
	}
	w.Close()
	testWriter(t, Config{Name: w.Path(), Instruments: 1, Depth: 1})
	s.expect("check", "check ErrRestarted")
}

// TestCppEdgeTruncated: a feed file truncated under the reader (an
// operator's `truncate -s 0`; the writer never truncates) is Format from
// check(), which reads nothing past the end of the file (truncations:
// also by the last page, and after the name was removed). Before, check()
// read the writer's state from the mapping: the driver died of SIGBUS for a
// file truncated to 0, and said Ok for one that lost its last page.
func TestCppEdgeTruncated(t *testing.T) {
	bin := cppEdgeBin(t)
	for _, c := range truncations {
		t.Run(c.name, func(t *testing.T) {
			// No heartbeat goroutine: nothing in this process may touch
			// the mapping while the file is short.
			w := testWriter(t, Config{Instruments: 1, Depth: 1})
			w.Heartbeat()
			s := startSession(t, bin, w.Path())
			s.expect("open", "open Ok")
			s.expect("check", "check Ok")
			defer c.cut(t, w.Path(), int64(len(w.m.mem)))()
			s.expect("check", "check ErrFormat")
		})
	}
}

// TestCppEdgeOpenTruncatedWhileOpening is TestOpenTruncatedWhileOpening
// for the C++ reader, without install_truncation_guard: a feed file
// truncated between open's mmap (MAP_POPULATE: milliseconds for a large
// file) and its first load from the mapping is Format from open. Before,
// open read the header from the mapping unasked: the driver died of SIGBUS
// (the Go reader's Open turns the fault into ErrFormat, the Python
// reader's open fstats first).
func TestCppEdgeOpenTruncatedWhileOpening(t *testing.T) {
	bin := cppEdgeBin(t)
	// No heartbeat goroutine: nothing in this process may touch the
	// mapping while the file is short.
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	w.Heartbeat()
	size := int64(len(w.m.mem))
	defer os.Truncate(w.Path(), size) // before the writer's Close stores its state
	s := startSession(t, bin, w.Path())
	s.expect("opencut", "opencut ErrFormat")
	s.expect("check", "check ErrNotOpen") // the refused open left nothing mapped
}

// TestCppEdgeLivenessClockSteps: the C++ reader judges the writer by
// whether its heartbeat changes, timed on its own monotonic clock; the
// realtime age counts only at open and to place a change within the time
// since its previous look. Before, the age was realtime minus the
// heartbeat: a writer whose clock is an hour behind read as dead while it
// beat, and a heartbeat an hour ahead (the reader's clock stepped back)
// kept a writer that stopped beating alive for that hour.
func TestCppEdgeLivenessClockSteps(t *testing.T) {
	bin := cppEdgeBin(t)

	t.Run("writer an hour behind, advancing", func(t *testing.T) {
		// Interval 1s: stale after 10s; the writer's pid (this process)
		// is alive, so only the stale limit says dead.
		w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second})
		hb := time.Now().Add(-time.Hour).UnixNano()
		atomic.StoreInt64(w.m.i64(offHeartbeat), hb)
		s := startSession(t, bin, w.Path())
		s.expect("open", "open Ok")
		s.expect("check", "check ErrWriterDead") // the look at open: an hour old by realtime
		s.expect("follow", "follow Ok")
		for i := 1; i <= 3; i++ {
			atomic.StoreInt64(w.m.i64(offHeartbeat), hb+int64(i)*int64(time.Second))
			s.expect("check", "check Ok") // before: ErrWriterDead
		}
		atomic.StoreInt64(w.m.i64(offHeartbeat), hb+4*int64(time.Second))
		s.expect("wait 0", "wait Ok n 0")
	})

	t.Run("heartbeat an hour ahead, unchanged", func(t *testing.T) {
		// Interval 100ms: stale after 1s of the reader's clock.
		w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 100 * time.Millisecond})
		atomic.StoreInt64(w.m.i64(offHeartbeat), time.Now().Add(time.Hour).UnixNano())
		s := startSession(t, bin, w.Path())
		s.expect("open", "open Ok")
		s.expect("check", "check Ok")
		deadline := time.Now().Add(30 * time.Second)
		for s.do("check") != "check ErrWriterDead" { // before: Ok for an hour
			if time.Now().After(deadline) {
				t.Fatal("a heartbeat that never changes still reads as live after 30s (stale limit 1s)")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestCppEdgeLivenessReaderStall: a C++ reader that loses its CPU in the
// middle of a look at the heartbeat for longer than the stale limit, while
// the writer beats on, does not take its own stall for the writer's age
// (TestLivenessReaderStall for Go). Before, it loaded the heartbeat and
// then read its clocks: a stall past the stale limit read as WriterDead
// for a writer that never missed a beat. The driver moves its own clocks
// (its clock_gettime; session commands stall and skew).
func TestCppEdgeLivenessReaderStall(t *testing.T) {
	bin := cppEdgeBin(t)
	// Interval 1s: stale after 10s; the writer's pid (this process) is
	// alive, so only the stale limit says dead.
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second})
	w.Heartbeat()
	s := startSession(t, bin, w.Path())
	s.expect("open", "open Ok")
	s.expect("check", "check Ok")
	s.expect("stall 12", "stall Ok")
	s.expect("check", "check Ok") // before: ErrWriterDead, the heartbeat 12s old
	s.expect("skew 12", "skew Ok")
	s.expect("check", "check ErrWriterDead") // a writer that stopped beating
}

// cppEdgeGuarded is a feed of AAPL at locate 1, published 3 times, and a
// session of the driver that installed the truncation guard and opened it.
// The writer has no heartbeat goroutine: nothing in this process may touch
// the mapping while a test has the file short.
func cppEdgeGuarded(t *testing.T, bin string) (*Writer, *session) {
	t.Helper()
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	for range 3 {
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	w.Heartbeat()
	sess := startSession(t, bin, w.Path())
	sess.expect("guard", "guard Ok")
	sess.expect("open", "open Ok")
	return w, sess
}

// TestCppEdgeTruncationGuard: with install_truncation_guard, a feed file
// truncated under the reader is Format from a wait whose poll faults
// before its check comes due, and from read, instead of a crash (SIGBUS;
// the guard replaces the mapping with zero pages and the reader's error
// paths say Format). Before, the driver died in the wait's first poll.
//
// Once the guard has replaced the mapping (a read met the truncation), the
// follower's calls read a head of 0, no journal position: pending is 0
// (Go's Pending after a fault), and a poll, also of a follower made after
// the fault, says Format (Go's Poll, Python's poll). Before, pending was 0
// minus the follower's position, 2^64 - 3, and the new follower's polls
// said Ok with no record, for ever. And read_symbol says Format, as read
// does (Go's ReadSymbol: ErrFormat); before, it took lookup's false in the
// zero pages for a symbol not registered: UnknownLocate, which a strategy
// waiting for its symbol retries for ever.
func TestCppEdgeTruncationGuard(t *testing.T) {
	bin := cppEdgeBin(t)
	scenarios := []struct {
		name  string
		after []string // command, reply, ... after the cut
	}{
		{"wait, read, check", []string{"wait 1", "wait ErrFormat n 0", "read 1", "read ErrFormat", "check", "check ErrFormat"}},
		{"follower after the fault", []string{"read 1", "read ErrFormat",
			"stats", "stats overruns 0 lost 0 pending 0",
			"follow", "follow Ok pending 0",
			"poll", "poll ErrFormat n 0",
			"stats", "stats overruns 0 lost 0 pending 0"}},
		{"read_symbol", []string{"readsymbol AAPL", "readsymbol ErrFormat"}},
	}
	for _, c := range truncations {
		for _, sc := range scenarios {
			t.Run(c.name+"/"+sc.name, func(t *testing.T) {
				w, sess := cppEdgeGuarded(t, bin)
				sess.expect("follow", "follow Ok pending 0")
				defer c.cut(t, w.Path(), int64(len(w.m.mem)))()
				for i := 0; i < len(sc.after); i += 2 {
					got := sess.do(sc.after[i])
					if strings.HasPrefix(got, "lookedup ") {
						// readsymbol of a file cut by its last page:
						// the directory is still there, the lookup
						// found the locate; the read faults.
						got = sess.do("")
					}
					if got != sc.after[i+1] {
						t.Fatalf("C++ %s on a truncated file: %q, want %q", sc.after[i], got, sc.after[i+1])
					}
				}
			})
		}
	}
}

// TestCppEdgeReadSymbolClosed: read_symbol on a closed Reader is NotOpen,
// as read is (Go's ReadSymbol: fs.ErrClosed; Python's read_symbol:
// ReaderClosedError). Before, it took lookup's false for a symbol not
// registered: UnknownLocate.
func TestCppEdgeReadSymbolClosed(t *testing.T) {
	_, sess := cppEdgeGuarded(t, cppEdgeBin(t))
	sess.expect("close", "close Ok")
	sess.expect("readsymbol AAPL", "readsymbol ErrNotOpen")
}

// TestCppEdgeTruncationGuardPassesOtherFaults: the guard handles only
// faults inside the Readers' mappings; any other SIGBUS still kills the
// process, by the signal (the disposition before the guard's, here the
// default).
func TestCppEdgeTruncationGuardPassesOtherFaults(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	sess := startSession(t, bin, w.Path())
	sess.expect("guard", "guard Ok")
	sess.expect("open", "open Ok")
	other := filepath.Join(t.TempDir(), "other")
	if _, err := io.WriteString(sess.c.stdin, "faultother "+other+"\n"); err != nil {
		t.Fatal(err)
	}
	for sess.c.out.Scan() {
		t.Errorf("driver: %s", sess.c.out.Text())
	}
	err := sess.c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGBUS {
		t.Fatalf("driver after a fault outside the feed's mapping: %v, want killed by SIGBUS", err)
	}
}

// TestCppEdgeWaitCapacityZero: wait with a capacity of 0 can return no
// record, so it returns at once what poll returns (Ok with n 0, or
// Overrun), as Go's Wait with an empty slice does. Before, it waited its
// whole timeout (here an hour).
func TestCppEdgeWaitCapacityZero(t *testing.T) {
	bin := cppEdgeBin(t)
	w := testWriter(t, Config{Instruments: 1, Depth: 1, JournalLen: 16})
	heartbeats(t, w)
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	sess := startSession(t, bin, w.Path())
	sess.expect("open", "open Ok")
	sess.expect("follow", "follow Ok")
	expect := func(want string) {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			// Not sess.do: its Fatalf must not run outside the test's
			// goroutine.
			if _, err := io.WriteString(sess.c.stdin, "waitcap 0 3600000\n"); err != nil {
				got <- err.Error()
			} else if !sess.c.out.Scan() {
				got <- "driver exited"
			} else {
				got <- sess.c.out.Text()
			}
		}()
		select {
		case g := <-got:
			if g != want {
				t.Errorf("C++ wait with capacity 0: %q, want %q", g, want)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("C++ wait with capacity 0 and a timeout of an hour had not returned after 60s")
		}
	}
	expect("waitcap Ok n 0")
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	expect("waitcap Ok n 0")
	for range 20 {
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	expect("waitcap ErrOverrun n 0")
	sess.expect("waitcap 4 0", "waitcap Ok n 0")
}

// TestCppEdgeRetiredFlagAtomic: the C++ reader loads a directory entry's
// flags byte, whose retired bit the writer sets at any time after the
// entry was published, atomically. The driver (built with ThreadSanitizer)
// stores the byte atomically in one thread, as the writer does from its
// process, while instrument and lookup load it in another. Before, the
// load was plain: a data race, and TSan failed the driver.
func TestCppEdgeRetiredFlagAtomic(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver, "-O1", "-g", "-fsanitize=thread")
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	c := startCpp(t, bin, "retiredrace", w.Path())
	line := c.waitLine(t, "retiredrace")
	c.finish(t)
	if !strings.HasPrefix(line, "retiredrace Ok") {
		t.Fatalf("driver: %s", line)
	}
	t.Log(line)
}

// TestCppEdgeCorruptSymbolLength: a directory entry whose symbol length
// byte says more than 8 (a corrupt file: the writer stores 1 to 8) is
// taken as 8 by every reader: Go's Lookup and Instruments (and Python's)
// and C++'s instrument() clamp it, and C++'s lookup now does too. Before,
// C++'s lookup compared the raw byte and did not find the symbol that its
// own instrument() and the other readers show.
func TestCppEdgeCorruptSymbolLength(t *testing.T) {
	bin := cppEdgeBin(t)
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	if err := w.Register(1, "ABCDEFGH"); err != nil {
		t.Fatal(err)
	}
	w.m.dirEntry(&w.l, 0)[2] = 12
	r := testReader(t, w.Path())
	if loc, ok := r.Lookup("ABCDEFGH"); !ok || loc != 1 {
		t.Fatalf("Go Lookup: %d, %v; want 1, true", loc, ok)
	}
	sess := startSession(t, bin, w.Path())
	sess.expect("open", "open Ok")
	sess.expect("lookup ABCDEFGH", "lookup Ok 1")
}

// TestCppEdgeTruncationGuardKeepsIgnoredSIGBUS: a SIGBUS sent to a process
// (kill -BUS) that ignored SIGBUS before install_truncation_guard is still
// ignored: the guard passes what is not its fault to the disposition it
// replaced, and SIG_IGN is one (with SA_SIGINFO in its flags too, which
// makes sa_sigaction read as SIG_IGN's value, not a handler to call).
func TestCppEdgeTruncationGuardKeepsIgnoredSIGBUS(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	for _, flag := range []string{"", " siginfo"} {
		w := testWriter(t, Config{Instruments: 1, Depth: 1})
		sess := startSession(t, bin, w.Path())
		sess.expect("ignorebus"+flag, "ignorebus Ok")
		sess.expect("guard", "guard Ok")
		sess.expect("open", "open Ok")
		if _, err := io.WriteString(sess.c.stdin, "sendbus\n"); err != nil {
			t.Fatal(err)
		}
		if !sess.c.out.Scan() {
			t.Fatalf("ignorebus%s, guard, then a SIGBUS sent to the driver: %v, want it ignored", flag, sess.c.cmd.Wait())
		}
		if got := sess.c.out.Text(); got != "sendbus survived" {
			t.Errorf("ignorebus%s, guard, sendbus: %q, want \"sendbus survived\"", flag, got)
		}
	}
}

// TestCppEdgeNameCleanedAsGo: a feed name with a slash names the file the
// Go writer and readers name by it, filepath.Clean's: "x/../feed" is
// "feed" even when x does not exist, and "feed/" is "feed". Before, the C++
// reader left the name to the kernel: NotExist for the first, System
// (ENOTDIR) for the second, where Go and Python open the feed.
func TestCppEdgeNameCleanedAsGo(t *testing.T) {
	bin := cppEdgeBin(t)
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	heartbeats(t, w)
	dir, base := filepath.Split(w.Path())
	for _, name := range []string{
		dir + "no-such-dir/../" + base,
		w.Path() + "/",
		dir + "./" + base + "/.",
		"/.." + w.Path(),
	} {
		r, err := Open(name)
		if err != nil {
			t.Fatalf("Go: Open(%q): %v", name, err)
		}
		if r.Path() != w.Path() {
			t.Errorf("Go: Open(%q).Path() = %q, want %q", name, r.Path(), w.Path())
		}
		r.Close()
		s := startSession(t, bin, name)
		if got := s.do("open"); !strings.HasPrefix(got, "open Ok") {
			t.Errorf("C++: open %q: %q, want \"open Ok\", as Go", name, got)
			continue
		}
		if got := s.do("path"); got != "path "+w.Path() {
			t.Errorf("C++: open %q: %q, want %q, as Go", name, got, "path "+w.Path())
		}
	}
}

// TestCppEdgeJournalHoleOfStoppedWriter: TestJournalHoleOfStoppedWriter
// for the C++ follower. A shared-mode writer claimed a journal record,
// never wrote it, and stopped (died, or closed) after two more records:
// the wait reports the hole and the records behind it lost (Overrun), then
// the writer's state. Before, it said WriterDead (Closed) with nothing
// lost and the records pending for ever.
func TestCppEdgeJournalHoleOfStoppedWriter(t *testing.T) {
	bin := cppEdgeBin(t)
	for _, c := range []struct {
		name, want string
		stop       func(w *Writer)
	}{
		{"dead", "wait ErrWriterDead n 0", func(w *Writer) {
			*w.m.u32(offWriterPid) = uint32(deadPid(t))
			cppEdgeSetHeartbeat(w, 5*time.Second) // 2.5 intervals, pid gone
		}},
		{"closed", "wait ErrClosed n 0", func(w *Writer) { w.Close() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 2, Depth: 1, HeartbeatInterval: 2 * time.Second})
			for loc := uint16(1); loc <= 2; loc++ {
				if err := w.Register(loc, symbolOf(loc)); err != nil {
					t.Fatal(err)
				}
			}
			cppEdgeSetHeartbeat(w, 0)
			s := startSession(t, bin, w.Path())
			s.expect("open", "open Ok")
			s.expect("follow", "follow Ok pending 0")
			sn := newSnapshot(1)
			for i, loc := range []uint16{1, 0, 1, 2} {
				if loc == 0 {
					claimUnwritten(w)
					continue
				}
				fillSnapshot(sn, loc, uint64(i+1), 1)
				if err := w.Publish(sn); err != nil {
					t.Fatal(err)
				}
			}
			c.stop(w)
			s.expect("open", "open Ok") // the heartbeat's age is judged at open
			for _, step := range [][2]string{
				{"wait 1", "wait Ok n 1 1:1"},
				{"wait 1", "wait ErrOverrun n 0"},
				{"stats", "stats overruns 1 lost 3 pending 0"},
				{"wait 1", c.want},
			} {
				if got := s.do(step[0]); got != step[1] {
					t.Fatalf("C++ %s: %q, want %q (the hole and the 2 records behind it lost, then the writer's state)", step[0], got, step[1])
				}
			}
		})
	}
}

// TestCppEdgeInfoAfterFailedOpen: info() after an open that failed is
// empty (Info{}), as there is no Go or Python Reader after a failed Open.
// Before, read_header stored the refused header's first fields (version,
// generation, start, writer pid, heartbeat interval) before it refused
// it, and an open refused after a file was open kept that file's Info: a
// caller logging info() on failure named a writer and a generation that
// no open file had.
func TestCppEdgeInfoAfterFailedOpen(t *testing.T) {
	bin := cppEdgeBin(t)
	const empty = "info version 0 generation 0 start 0 pid 0 instruments 0 depth 0 journal 0 slot 0 max 0 every 0"

	// A header refused (its heartbeat interval 0) after its generation
	// and pid were read.
	bad := corrupt(t, func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[offHeartbeatEvery:], 0)
		return b
	})
	s := startSession(t, bin, bad)
	s.expect("open", "open ErrFormat")
	if got := s.do("info"); got != empty {
		t.Errorf("info after a refused header: %q, want %q", got, empty)
	}

	// A file open, then the name replaced by one of another layout
	// version, opened again.
	name := corrupt(t, func(b []byte) []byte { return b })
	good, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s = startSession(t, bin, name)
	s.expect("open", "open Ok")
	if got := s.do("info"); got == empty {
		t.Fatalf("info of an open file: %q", got)
	}
	other := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(other[offLayoutVersion:], LayoutVersion+1)
	tmp := name + ".other"
	if err := os.WriteFile(tmp, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
	s.expect("open", "open ErrLayoutVersion")
	if got := s.do("info"); got != empty {
		t.Errorf("info after an open refused, another file open before: %q, want %q", got, empty)
	}
	s.expect("check", "check ErrNotOpen")
}

// TestCppErrorText: the C++ reader's error_text says an error's cause as
// the Go and Python readers do: the gone pid and the heartbeat's age of a
// dead writer, the layout versions of a refused file, how long open_wait
// waited for a feed that never came and what to check. Before, C++ said
// only error_message's 'shm: writer is dead'.
func TestCppErrorText(t *testing.T) {
	bin := cppEdgeBin(t)
	// Interval 2s: two intervals 4s, the stale limit 20s.
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 2 * time.Second})
	pid := deadPid(t)
	*w.m.u32(offWriterPid) = uint32(pid)
	s := startSession(t, bin, w.Path())
	cppEdgeSetHeartbeat(w, 5*time.Second) // 2.5 intervals, pid gone
	s.expect("open", "open Ok")
	gone := regexp.MustCompile(`^checktext ErrWriterDead (\S+): pid (\d+) gone, heartbeat 5(\.\d+)?s old: shm: writer is dead$`)
	if got := s.do("checktext"); !gone.MatchString(got) || !strings.Contains(got, fmt.Sprintf(" %s: pid %d ", w.Path(), pid)) {
		t.Errorf("C++ error_text of a dead writer's check: %q, want %v", got, gone)
	}
	*w.m.u32(offWriterPid) = uint32(os.Getpid())
	cppEdgeSetHeartbeat(w, 25*time.Second) // past the stale limit, pid alive
	s.expect("open", "open Ok")
	stale := regexp.MustCompile(`^checktext ErrWriterDead \S+: heartbeat 25(\.\d+)?s old: shm: writer is dead$`)
	if got := s.do("checktext"); !stale.MatchString(got) {
		t.Errorf("C++ error_text of a stale writer's check: %q, want %v", got, stale)
	}

	name := corrupt(t, func(b []byte) []byte { b[offLayoutVersion] = LayoutVersion + 1; return b })
	want := fmt.Sprintf("opentext ErrLayoutVersion %s: layout version %d, this library reads %d: shm: layout version mismatch",
		name, LayoutVersion+1, LayoutVersion)
	startSession(t, bin, name).expect("opentext", want)

	missing := Path(testName(t))
	s = startSession(t, bin, missing)
	s.expect("opentext", fmt.Sprintf("opentext ErrNotExist %s: shm: feed does not exist", missing))
	s.expect("openwait 3", fmt.Sprintf("openwait ErrNotExist %s: waited 3ms: shm: feed does not exist (%s)", missing, notExistHint))
	s.expect("opentext", fmt.Sprintf("opentext ErrNotExist %s: shm: feed does not exist", missing)) // open alone did not wait
}
