package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
)

// heartbeats has w beat every 50 ms until the test ends, as the handler's
// housekeeping does.
func heartbeats(t *testing.T, w *Writer) {
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	w.Heartbeat()
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				w.Heartbeat()
			}
		}
	}()
}

// TestWaitShortTimeoutsCheckWriter: a follower that waits in a loop with
// a timeout shorter than CheckEvery (or 0) still learns that the writer
// closed the feed, after a first Wait that checked a live writer: the
// check comes due across calls. Before the fix each Wait started its own
// check clock, so such a loop saw only timeouts, for ever.
func TestWaitShortTimeoutsCheckWriter(t *testing.T) {
	for _, timeout := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(timeout.String(), func(t *testing.T) {
			w := testWriter(t, Config{Instruments: 1, Depth: 1})
			r := testReader(t, w.Path())
			f := r.Follow()
			dst := make([]Update, 16)
			if _, err := f.Wait(dst, 0, WaitOptions{CheckEvery: 50 * time.Millisecond}); err != nil {
				t.Fatalf("first Wait, live writer: %v", err)
			}
			w.Close()
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
				_, err := f.Wait(dst, timeout, WaitOptions{CheckEvery: 50 * time.Millisecond})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Fatalf("Wait: %v, want ErrClosed", err)
				}
			}
			t.Fatalf("Wait(%v) for 2 s after Close: only timeouts (Check: %v)", timeout, r.Check())
		})
	}
}

// TestCorruptSlotLengthIsFormat: a slot whose stable length exceeds the
// file's largest snapshot is corrupt (the writer never stores one): Read
// says ErrFormat at once. Before the fix it spun for a second and said
// ErrBusy.
func TestCorruptSlotLengthIsFormat(t *testing.T) {
	w := publishedWriter(t, Config{Instruments: 1, Depth: 1})
	heartbeats(t, w)
	*w.m.slotLen(w.l.slotOff(0)) = uint32(w.l.maxSnapshot) + 64
	r := testReader(t, w.Path())
	if _, err := r.Read(1, make([]byte, r.Info().MaxSnapshot)); !errors.Is(err, ErrFormat) {
		t.Fatalf("read of a slot with length above the largest snapshot: %v, want ErrFormat", err)
	}
}

// TestHeartbeatIntervalBounded: a header whose heartbeat interval is 0,
// negative or above MaxHeartbeatInterval is refused (ErrFormat); before,
// 10 x MaxInt64 wrapped to a stale limit of a second in Go and overflowed
// in C++. Create refuses such an interval too.
func TestHeartbeatIntervalBounded(t *testing.T) {
	for _, v := range []int64{0, -1, int64(MaxHeartbeatInterval) + 1, math.MaxInt64} {
		name := corrupt(t, func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[offHeartbeatEvery:], uint64(v))
			return b
		})
		if _, err := Open(name); !errors.Is(err, ErrFormat) {
			t.Errorf("heartbeat interval %d: open %v, want ErrFormat", v, err)
		}
	}
	if w, err := Create(Config{Name: testName(t), Instruments: 1, Depth: 1, HeartbeatInterval: 2 * time.Hour}); err == nil {
		w.Close()
		t.Error("Create with a heartbeat interval of 2h succeeded")
	}
}

// TestWriterInOtherPidNamespace: a reader in another pid namespace (a
// container) sees no process under the writer's pid. A live writer, whose
// heartbeat is fresh, is not dead to it. Before the fix a gone pid alone
// meant ErrWriterDead.
func TestWriterInOtherPidNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a new pid namespace (CLONE_NEWPID) needs root")
	}
	// Beats every 50 ms against an interval of a second: no scheduling
	// delay of this test makes the heartbeat look old.
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second})
	heartbeats(t, w)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPidNamespaceReader$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FH_PIDNS_READ="+w.Path())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := deathsig.CombinedOutput(cmd)
	if err != nil || !strings.Contains(string(out), "pid-namespace check: <nil>") {
		t.Fatalf("reader in another pid namespace, live writer: %v\n%s", err, out)
	}
	// A writer started there must not take the live writer's file.
	cmd = exec.Command(os.Args[0], "-test.run=^TestPidNamespaceReader$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FH_PIDNS_CREATE="+w.Path())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err = deathsig.CombinedOutput(cmd)
	if err != nil || !strings.Contains(string(out), "pid-namespace create: in use") {
		t.Fatalf("writer in another pid namespace over a live writer's file: %v\n%s", err, out)
	}
}

// TestWriterSamePidOtherNamespace: a live writer that is pid 1 of its
// pid namespace (a container's entry point) holds the feed, and a second
// writer, pid 1 of another namespace (a second container sharing
// /dev/shm: a rolling update's new pod), creates the same feed. The file's
// pid is the creator's own pid there, which says nothing of the writer:
// Create must refuse the live writer's file (ErrInUse), as it does across
// namespaces under any other pid. Before the fix it took the file for one
// of its own and replaced it.
func TestWriterSamePidOtherNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a new pid namespace (CLONE_NEWPID) needs root")
	}
	name := testName(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), roleEnv+"=hold", "FH_SHM_TEST_NAME="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	a := startCmd(t, cmd)
	a.waitLine(t, "ready")
	r := testReader(t, name)
	if pid := r.Info().WriterPid; pid != 1 {
		t.Fatalf("the holding writer is pid %d of its namespace, want 1", pid)
	}
	cmd = exec.Command(os.Args[0], "-test.run=^TestPidNamespaceReader$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FH_PIDNS_CREATE="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := deathsig.CombinedOutput(cmd)
	if err != nil || !strings.Contains(string(out), "pid-namespace create: in use") {
		t.Fatalf("a writer, pid 1 of another namespace, over a live pid 1's file: %v\n%s", err, out)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("the live writer's file: %v", err)
	}
}

// TestPidNamespaceReader is TestWriterInOtherPidNamespace's reader, run in
// a new pid namespace; it does nothing otherwise.
func TestPidNamespaceReader(t *testing.T) {
	if path := os.Getenv("FH_PIDNS_CREATE"); path != "" {
		w, err := Create(Config{Name: path, Instruments: 1, Depth: 1})
		if errors.Is(err, ErrInUse) {
			fmt.Println("pid-namespace create: in use:", err)
		} else {
			fmt.Println("pid-namespace create:", err)
			if w != nil {
				w.Close()
			}
		}
		os.Exit(0)
	}
	path := os.Getenv("FH_PIDNS_READ")
	if path == "" {
		return
	}
	r, err := Open(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	if kerr := syscall.Kill(r.l.pid, 0); !errors.Is(kerr, syscall.ESRCH) {
		fmt.Printf("the writer's pid %d is visible here (%v): not another pid namespace\n", r.l.pid, kerr)
		os.Exit(1)
	}
	fmt.Printf("pid-namespace check: %v\n", r.Check())
	os.Exit(0)
}

// TestDeadWriterPidGone: a writer that died (its pid gone) and stopped
// beating is dead once two heartbeats are missed, before the stale limit.
func TestDeadWriterPidGone(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 50 * time.Millisecond})
	w.Heartbeat()
	r, err := OpenWith(w.Path(), OpenOptions{StaleAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A pid no process has: the reader's view of a writer that died.
	r.l.pid = deadPid(t)
	w.Heartbeat()
	if err := r.Check(); err != nil {
		t.Fatalf("fresh heartbeat: %v, want alive (the pid alone does not say)", err)
	}
	time.Sleep(150 * time.Millisecond)
	if err := r.Check(); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("pid gone, heartbeat 150ms old at 50ms: %v, want ErrWriterDead", err)
	}
}

// waitDead waits until r finds its writer, killed, dead: its pid is gone
// and, a reader cannot tell more from the pid, two heartbeats missed.
func waitDead(t *testing.T, r *Reader) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = r.Check(); errors.Is(err, ErrWriterDead) {
			return
		}
	}
	t.Fatalf("killed writer: %v, want ErrWriterDead within 5 s", err)
}

// publishedWriter is a writer of cfg with locate 1 ("A") registered and
// one snapshot of depth 1 published in its slot 0.
func publishedWriter(t *testing.T, cfg Config) *Writer {
	t.Helper()
	w := testWriter(t, cfg)
	if err := w.Register(1, "A"); err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestCreateOverKilledWriter: a writer killed and started again at once
// (its heartbeat still fresh, its pid gone) takes the file over: Create
// watches the heartbeat, which no longer beats. Before, the new rule of
// the readers (a gone pid is dead only with two heartbeats missed) made
// Create refuse it (ErrInUse) for two intervals.
func TestCreateOverKilledWriter(t *testing.T) {
	name := testName(t)
	a := startHold(t, name)
	a.cmd.Process.Kill()
	a.cmd.Wait()
	w, err := Create(Config{Name: name, Instruments: 1, Depth: 1})
	if err != nil {
		t.Fatalf("create over a killed writer's file: %v", err)
	}
	w.Close()
}

// TestCreateOverWriterClosingDuringWatch: a writer in another pid
// namespace (pid invisible) closes cleanly while Create watches its
// heartbeat. Close's last heartbeat must not read as "still beating"
// (before the fix: ErrInUse). If the child starts late, Create meets the
// closed file and the test passes without the watch: it cannot fail
// falsely.
func TestCreateOverWriterClosingDuringWatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a new pid namespace (CLONE_NEWPID) needs root")
	}
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 400 * time.Millisecond})
	w.Heartbeat()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPidNamespaceReader$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FH_PIDNS_CREATE="+w.Path())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	start := time.Now()
	done := make(chan struct{})
	var out []byte
	go func() { out, _ = deathsig.CombinedOutput(cmd); close(done) }()
	time.Sleep(700 * time.Millisecond)
	w.Close()
	<-done
	t.Logf("child took %v", time.Since(start))
	if strings.Contains(string(out), "in use") {
		t.Fatalf("Create over a writer that closed cleanly during the watch: %s", out)
	}
}

// TestWaitEmptyDst: Wait with an empty dst can return no record, so it
// returns at once what Poll returns (0 and nil, or ErrOverrun), as the C++
// and Python waits with a capacity of 0 do. Before, it waited its whole
// timeout (here an hour) for records it had no room for.
func TestWaitEmptyDst(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1, JournalLen: 16})
	heartbeats(t, w)
	if err := w.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	r := testReader(t, w.Path())
	f := r.Follow()
	wait := func() (int, error) {
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		go func() {
			n, err := f.Wait(nil, time.Hour, WaitOptions{})
			done <- result{n, err}
		}()
		select {
		case res := <-done:
			return res.n, res.err
		case <-time.After(60 * time.Second):
			t.Fatal("Wait with an empty dst and a timeout of an hour had not returned after 60s")
			return 0, nil
		}
	}
	if n, err := wait(); n != 0 || err != nil {
		t.Errorf("Wait(nil) with nothing published: %d, %v; want 0, nil", n, err)
	}
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	if n, err := wait(); n != 0 || err != nil {
		t.Errorf("Wait(nil) with a record pending: %d, %v; want 0, nil", n, err)
	}
	for range 20 {
		if err := w.Publish(s); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := wait(); n != 0 || !errors.Is(err, ErrOverrun) {
		t.Errorf("Wait(nil) after the journal lapped the follower: %d, %v; want 0, ErrOverrun", n, err)
	}
}

// TestZeroViewLevels: the View a failed Read returns (a symbol not
// registered, nothing published yet) answers Bid and Ask with ok false, as
// C++'s View::bid and View::ask do on an empty View. They panicked (index
// out of range in the flatbuffers runtime), so a strategy that took the
// quick start's `bid, _ := v.Bid(0)` after a Read of an unknown symbol
// crashed.
func TestZeroViewLevels(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2, JournalLen: 16})
	if err := w.Register(1, "S1"); err != nil {
		t.Fatal(err)
	}
	r := testReader(t, w.Path())
	buf := make([]byte, r.Info().MaxSnapshot)
	for _, c := range []struct {
		locate uint16
		want   error
	}{{7, ErrUnknownLocate}, {1, ErrNoData}} {
		v, err := r.Read(c.locate, buf)
		if !errors.Is(err, c.want) {
			t.Fatalf("Read(%d) = %v, want %v", c.locate, err, c.want)
		}
		for i := range 2 {
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("after Read(%d): %v: View.Bid or View.Ask(%d) panicked: %v", c.locate, err, i, p)
					}
				}()
				if l, ok := v.Bid(i); ok || l != (Level{}) {
					t.Errorf("after Read(%d): %v: View.Bid(%d) = %v, %v; want the zero Level, false", c.locate, err, i, l, ok)
				}
				if l, ok := v.Ask(i); ok || l != (Level{}) {
					t.Errorf("after Read(%d): %v: View.Ask(%d) = %v, %v; want the zero Level, false", c.locate, err, i, l, ok)
				}
			}()
		}
	}
}

// TestDocLateRegistration: a reader that opens a file its writer just
// created (OpenWait returns as soon as it appears) finds no instrument; each
// appears as the writer registers it, and its first publish is a journal
// record of a locate the reader has not looked up. docs/SHM.md says so and
// what to do: its examples looked a symbol up once ("directory scan: do it
// once"), and a strategy written from them, started before the handler,
// followed 112376 records of a demo and read none of its symbols' books.
func TestDocLateRegistration(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2, JournalLen: 16})
	r := testReader(t, w.Path())
	if _, ok := r.Lookup("S1"); ok {
		t.Fatal("Lookup found S1 before the writer registered it")
	}
	buf := make([]byte, r.Info().MaxSnapshot)
	if _, err := r.ReadSymbol("S1", buf); !errors.Is(err, ErrUnknownLocate) {
		t.Fatalf("ReadSymbol before the registration: %v, want ErrUnknownLocate", err)
	}
	f := r.Follow()
	if err := w.Register(1, "S1"); err != nil {
		t.Fatal(err)
	}
	s := Snapshot{Locate: 1, Seq: 3}
	if err := w.Publish(&s); err != nil {
		t.Fatal(err)
	}
	ups := make([]Update, 4)
	if n, err := f.Poll(ups); err != nil || n != 1 || ups[0] != (Update{Locate: 1, Version: 1}) {
		t.Fatalf("Poll after the first publish = %v, %v; want the record {1 1}", ups[:n], err)
	}
	if loc, ok := r.Lookup("S1"); !ok || loc != 1 {
		t.Fatalf("Lookup after the registration = %d, %v; want 1, true", loc, ok)
	}
	doc, err := os.ReadFile("../../docs/SHM.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	for _, want := range []string{
		"| symbol not registered yet: a writer just started (`OpenWait` returns as soon as its file appears, with no instrument)",
		"look it up again: a looked-up-once locate table misses every book registered after it; a new instrument's first publish is a journal record of a locate you have not seen",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/SHM.md's \"Writer liveness, restarts, versions\" does not say %q", want)
		}
	}
	if strings.Contains(text, "directory scan: do it once") {
		t.Error("docs/SHM.md's example says \"directory scan: do it once\": a symbol registered after that is never found")
	}
}

// TestOpenFormatSaysWhy: Open of a file that is no feed says what it found,
// as the Python reader does ("magic b'NOTAFEED': not a feed file",
// "inconsistent header: not a feed file"): it said "open shm
// /dev/shm/NAME: shm: not a feed file" alone, to an operator who mistyped a
// feed's name onto another program's file or met a damaged one.
func TestOpenFormatSaysWhy(t *testing.T) {
	w := testWriter(t, Config{Instruments: 4, Depth: 2, JournalLen: 16})
	feed, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, headerSize)
	copy(junk, "NOTAFEED")
	bad := append([]byte(nil), feed...)
	binary.LittleEndian.PutUint32(bad[offCapacity:], 0)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"junk", junk, `: magic "NOTAFEED": shm: not a feed file`},
		{"capacity 0", bad, ": inconsistent header: shm: not a feed file"},
	} {
		path := testName(t)
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		os.Remove(path)
		if !errors.Is(err, ErrFormat) || !strings.HasSuffix(fmt.Sprint(err), c.want) {
			t.Errorf("Open of a %s file: %v; want ErrFormat ending %q", c.name, err, c.want)
		}
	}
}
