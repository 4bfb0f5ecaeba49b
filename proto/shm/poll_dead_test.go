package shm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
	"github.com/marketfeed/feedhandler/internal/race"
)

// pollUntil polls f up to polls times while each poll returns nothing
// and no error; it returns how many it made and the last poll's error.
func pollUntil(f *Follower, dst []Update, polls int) (int, error) {
	for i := 1; ; i++ {
		n, err := f.Poll(dst)
		if n != 0 || err != nil || i == polls {
			return i, err
		}
	}
}

// holdFollower starts a hold writer process (it beats every 50 ms, its
// interval 100 ms) under a new name, opens a reader and a follower of it,
// and polls a while (its looks find the writer live).
func holdFollower(t *testing.T) (name string, a *child, r *Reader, f *Follower) {
	t.Helper()
	name = testName(t)
	a = startHold(t, name)
	r = testReader(t, name)
	f = r.Follow()
	if n, err := pollUntil(f, make([]Update, 4), 2*maxLookEvery); err != nil {
		t.Fatalf("poll of a live writer: %v after %d polls", err, n)
	}
	return name, a, r, f
}

// TestPollSaysDead: a writer process killed with SIGKILL stores nothing
// (no state, no last heartbeat), and a follower that only polls (no Check,
// no Wait) learns it within the bound docs/SHM.md gives ("A dead writer,
// in the poll"): once the heartbeat is two intervals old on the reader's
// clock (its pid gone), at most maxLookEvery empty polls later; every
// empty poll says so from then on, and a writer restarted under the name
// is ErrRestarted. The reader's clock is stepped past the limit, so that
// the bound is counted in polls, not timed. Before, Poll returned 0, nil
// for ever: the dead writer's last books looked like a quiet market.
func TestPollSaysDead(t *testing.T) {
	// The hold writer's interval is 100 ms: its pid gone, two intervals
	// make it dead. Three are stepped.
	const step = 3 * 100 * time.Millisecond

	t.Run("killed", func(t *testing.T) {
		name, a, r, f := holdFollower(t)
		dst := make([]Update, 4)
		// Killed after it beat (every 50 ms) since the follower's last
		// look, as a loaded machine makes it at random; the look sees a
		// new heartbeat and places it by its realtime age, so both clocks
		// are stepped, as the time passing would. (The monotonic clock
		// alone: that age was a few milliseconds, and the writer live to
		// every poll of the bound.)
		time.Sleep(120 * time.Millisecond)
		a.cmd.Process.Kill() // SIGKILL
		a.cmd.Wait()
		stepClock(t, &realNanos)(step)
		stepClock(t, &monoNanos)(step)
		n, err := pollUntil(f, dst, maxLookEvery+1)
		if !errors.Is(err, ErrWriterDead) {
			t.Fatalf("poll after SIGKILL, heartbeat %v older: %v after %d polls; want ErrWriterDead within %d", step, err, n, maxLookEvery+1)
		}
		t.Logf("dead after %d polls: %v", n, err)
		for range 3 {
			if n, err := f.Poll(dst); n != 0 || !errors.Is(err, ErrWriterDead) {
				t.Fatalf("the next poll: %d, %v; want ErrWriterDead again", n, err)
			}
		}
		if err := r.Check(); !errors.Is(err, ErrWriterDead) {
			t.Fatalf("check: %v", err)
		}
		buf := make([]byte, r.Info().MaxSnapshot)
		if v, err := r.Read(1, buf); err != nil || v.Seq() != uint64(a.cmd.Process.Pid) {
			t.Fatalf("the dead writer's last book: %v, seq %d", err, v.Seq())
		}
		startHold(t, name)
		if n, err := f.Poll(dst); n != 0 || !errors.Is(err, ErrRestarted) {
			t.Fatalf("poll after a restart: %d, %v; want ErrRestarted", n, err)
		}
	})

	// Killed and restarted before the follower's poll looked: the old
	// file's writer is dead and its name another file's, which the poll
	// says first, as Check orders them.
	t.Run("killed and restarted", func(t *testing.T) {
		name, a, _, f := holdFollower(t)
		dst := make([]Update, 4)
		a.cmd.Process.Kill()
		a.cmd.Wait()
		b := startHold(t, name)
		stepClock(t, &monoNanos)(step)
		if n, err := pollUntil(f, dst, maxLookEvery+1); !errors.Is(err, ErrRestarted) {
			t.Fatalf("poll after SIGKILL and a restart: %v after %d polls; want ErrRestarted within %d", err, n, maxLookEvery+1)
		}
		r2 := testReader(t, name)
		if pid := r2.Info().WriterPid; pid != b.cmd.Process.Pid {
			t.Fatalf("opened again: pid %d, want the restarted writer's %d", pid, b.cmd.Process.Pid)
		}
		f2 := r2.Follow()
		if n, err := pollUntil(f2, dst, 2*maxLookEvery); err != nil {
			t.Fatalf("poll of the restarted writer: %v after %d polls", err, n)
		}
	})

	// A quiet writer that beats is never dead to a poll, whatever the
	// reader's clock did between the beats: the look goes by whether the
	// heartbeat changed.
	t.Run("quiet, clock stepped between beats", func(t *testing.T) {
		w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: 100 * time.Millisecond})
		w.Heartbeat()
		r := testReader(t, w.Path())
		f := r.Follow()
		dst := make([]Update, 4)
		mono := stepClock(t, &monoNanos)
		looks := 0
		for range 20 {
			mono(time.Hour)
			w.Heartbeat()
			at := f.lookedAt
			if n, err := pollUntil(f, dst, maxLookEvery+1); err != nil {
				t.Fatalf("poll of a beating writer, reader's clock an hour on: %v after %d polls", err, n)
			}
			if f.lookedAt != at {
				looks++
			}
		}
		if looks < 20 {
			t.Fatalf("%d looks in 20 rounds of %d polls", looks, maxLookEvery+1)
		}
		// Polls that look allocate nothing either.
		if a, exact := race.AllocsPerRun(t, 10, func() { pollUntil(f, dst, maxLookEvery+1) }); exact && a != 0 {
			t.Errorf("%d empty polls, a look among them, allocate %.1f times", maxLookEvery+1, a)
		}
	})
}

// TestPollQuietWriterLive: a writer process that publishes nothing and
// beats (every 50 ms, interval 100 ms) is live to a follower that polls
// for longer than the default stale limit (1 s), fast and slow.
func TestPollQuietWriterLive(t *testing.T) {
	_, a, _, f := holdFollower(t)
	dst := make([]Update, 4)
	looks, at := 0, f.lookedAt
	start := time.Now()
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		if n, err := f.Poll(dst); n != 0 || err != nil {
			t.Fatalf("poll of a quiet live writer after %v: %d, %v", time.Since(start), n, err)
		}
		if f.lookedAt != at {
			looks, at = looks+1, f.lookedAt
		}
		if i%2048 >= 1024 {
			time.Sleep(100 * time.Microsecond) // slow for a while
		}
	}
	if looks < 2 {
		t.Fatalf("%d looks at the writer in 1.5 s of polls", looks)
	}
	t.Logf("%d looks", looks)
	a.stdin.Close()
	a.finish(t)
}

// TestCppPollSaysDead is TestPollSaysDead and TestPollQuietWriterLive for
// the C++ reader's poll (proto/cpp/tests/shm_driver.cpp's session; its
// skew steps the reader's clocks).
func TestCppPollSaysDead(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	bound := fmt.Sprintf("pollupto %d", maxLookEvery+1)
	// holdPolls is holdSession's session following and polling a while.
	holdPolls := func(t *testing.T) (string, *child, *session) {
		name, a, s := holdSession(t, bin)
		s.expect("follow", "follow Ok")
		s.expect(fmt.Sprintf("pollupto %d", 2*maxLookEvery), fmt.Sprintf("pollupto Ok n 0 polls %d", 2*maxLookEvery))
		return name, a, s
	}

	t.Run("killed", func(t *testing.T) {
		name, a, s := holdPolls(t)
		a.cmd.Process.Kill() // SIGKILL
		a.cmd.Wait()
		s.expect("skew 1", "skew Ok") // past two intervals (100 ms each)
		t.Log(s.expect(bound, "pollupto ErrWriterDead n 0"))
		for range 2 { // every empty poll from then on
			s.expect("poll", "poll ErrWriterDead n 0")
		}
		s.expect("check", "check ErrWriterDead")
		s.expect("read 1", fmt.Sprintf("read Ok seq %d ", a.cmd.Process.Pid))
		startHold(t, name)
		s.expect("poll", "poll ErrRestarted n 0")
	})

	t.Run("killed and restarted", func(t *testing.T) {
		name, a, s := holdPolls(t)
		a.cmd.Process.Kill()
		a.cmd.Wait()
		b := startHold(t, name)
		s.expect("skew 1", "skew Ok")
		s.expect(bound, "pollupto ErrRestarted n 0")
		// The clocks back, or the new writer's heartbeat is a second
		// old by the realtime at open.
		s.expect("skew -1", "skew Ok")
		s.expect("open", fmt.Sprintf("open Ok pid %d", b.cmd.Process.Pid))
		s.expect("follow", "follow Ok")
		s.expect(fmt.Sprintf("pollupto %d", 2*maxLookEvery), "pollupto Ok n 0")
	})

	t.Run("quiet writer live", func(t *testing.T) {
		_, _, s := holdPolls(t)
		got := s.expect("pollfor 1500", "pollfor Ok n 0 looks ")
		if looks, _ := strconv.Atoi(strings.TrimPrefix(got, "pollfor Ok n 0 looks ")); looks < 2 {
			t.Fatalf("%q: want 2 looks or more", got)
		}
		t.Log(got)
	})
}

// TestPollHoleOfDeadWriter: a shared-mode writer claimed a journal record
// and died before writing it, with a record behind it. A poll stops at the
// hole; once its look finds the writer dead, the record behind the hole is
// lost (ErrOverrun: rescan), then the next poll says ErrWriterDead, as
// Wait does (TestJournalHoleOfStoppedWriter).
func TestPollHoleOfDeadWriter(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second})
	if err := w.Register(1, symbolOf(1)); err != nil {
		t.Fatal(err)
	}
	r := testReader(t, w.Path())
	f := r.Follow()
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	claimUnwritten(w)
	if err := w.Publish(s); err != nil {
		t.Fatal(err)
	}
	dst := make([]Update, 4)
	if n, err := pollUntil(f, dst, 2*maxLookEvery); err != nil {
		t.Fatalf("poll at the hole of a live writer: %v after %d polls", err, n)
	}
	stepClock(t, &monoNanos)(time.Hour) // the stale limit: the writer's pid is this process
	if n, err := pollUntil(f, dst, maxLookEvery+1); !errors.Is(err, ErrOverrun) || f.Lost() != 2 {
		t.Fatalf("poll at the hole of a dead writer: %v after %d polls, lost %d; want ErrOverrun, 2 lost", err, n, f.Lost())
	}
	if n, err := f.Poll(dst); n != 0 || !errors.Is(err, ErrWriterDead) {
		t.Fatalf("the next poll: %d, %v; want ErrWriterDead", n, err)
	}
}

// TestPollDeadLooksOnce: once the writer is dead, every empty poll looks
// at it, and runs the liveness test (the clocks, the heartbeat, kill(pid,
// 0)) once: the look's answer, with Check's tests of the file before it
// (ErrRestarted and ErrFormat first), not a second liveness test for
// Check's order. Counted in readings of the realtime clock, which only the
// liveness test reads.
func TestPollDeadLooksOnce(t *testing.T) {
	w := testWriter(t, Config{Instruments: 1, Depth: 1, HeartbeatInterval: time.Second})
	r := testReader(t, w.Path())
	f := r.Follow()
	dst := make([]Update, 4)
	if n, err := pollUntil(f, dst, 2*maxLookEvery); err != nil {
		t.Fatalf("poll of a live writer: %v after %d polls", err, n)
	}
	stepClock(t, &monoNanos)(time.Hour) // the stale limit: the writer's pid is this process
	if n, err := pollUntil(f, dst, maxLookEvery+1); !errors.Is(err, ErrWriterDead) {
		t.Fatalf("poll of a stale writer: %v after %d polls; want ErrWriterDead", err, n)
	}
	var reads int
	orig := realNanos
	realNanos = func() int64 { reads++; return orig() }
	t.Cleanup(func() { realNanos = orig })
	const polls = 10
	for range polls {
		if n, err := f.Poll(dst); n != 0 || !errors.Is(err, ErrWriterDead) {
			t.Fatalf("the next poll: %d, %v; want ErrWriterDead", n, err)
		}
	}
	if reads != polls {
		t.Fatalf("%d polls of a dead writer ran the liveness test %d times; want once a poll", polls, reads)
	}
}

// TestCppPollDeadLooksOnce is TestPollDeadLooksOnce for the C++ reader's
// poll: once its writer is dead, one liveness test (one reading of the
// realtime clock) per empty poll.
func TestCppPollDeadLooksOnce(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	_, a, s := holdSession(t, bin)
	s.expect("follow", "follow Ok")
	s.expect(fmt.Sprintf("pollupto %d", 2*maxLookEvery), fmt.Sprintf("pollupto Ok n 0 polls %d", 2*maxLookEvery))
	a.cmd.Process.Kill() // SIGKILL
	a.cmd.Wait()
	s.expect("skew 1", "skew Ok") // past two intervals (100 ms each)
	s.expect(fmt.Sprintf("pollupto %d", maxLookEvery+1), "pollupto ErrWriterDead n 0")
	if got := s.expect("pollmany 10", "pollmany ErrWriterDead n 0 looks "); got != "pollmany ErrWriterDead n 0 looks 10" {
		t.Fatalf("C++ pollmany 10 of a dead writer: %q; want one liveness test a poll (looks 10)", got)
	}
}
