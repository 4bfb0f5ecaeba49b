package handler

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// waitingForStatsLock reports whether some goroutine is inside the shard's
// copyStats waiting for its stats lock: a traceback (runtime.Stack, every
// goroutine) with sync.(*Mutex).Lock called from copyStats. Only function
// names are read, the shard's own and sync's exported method, not the
// mutex's internal state, which the runtime may change (the Lock frame
// stays in a traceback when it is inlined).
func waitingForStatsLock(buf []byte) bool {
	for _, g := range stacks(buf) {
		lock := bytes.Index(g, []byte("sync.(*Mutex).Lock("))
		stats := bytes.Index(g, []byte(".(*shard).copyStats("))
		if lock >= 0 && stats > lock {
			return true
		}
	}
	return false
}

// holdIdleShard locks shard s's stats lock and waits until its idle thread
// waits for it in its stats copy (waitingForStatsLock; buf holds the
// tracebacks). It returns the unlock, which also runs at the test's end if
// the test has not called it.
func holdIdleShard(t *testing.T, s *shard, buf []byte) (release func()) {
	t.Helper()
	s.mu.Lock()
	locked := true
	release = func() {
		if locked {
			locked = false
			s.mu.Unlock()
		}
	}
	t.Cleanup(release)
	for i := 0; !waitingForStatsLock(buf); i++ {
		if i == 10_000 {
			t.Fatalf("the idle shard %d never waited for its stats lock", s.id)
		}
		time.Sleep(time.Millisecond)
	}
	return release
}

// shardThreads counts the goroutines running a shard's thread
// (shard.run), from a traceback as waitingForStatsLock reads it.
func shardThreads(buf []byte) (n int) {
	for _, g := range stacks(buf) {
		if bytes.Contains(g, []byte(".(*shard).run(")) {
			n++
		}
	}
	return n
}

// stacks is every goroutine's traceback (runtime.Stack into buf), one an
// element.
func stacks(buf []byte) [][]byte {
	n := runtime.Stack(buf, true)
	return bytes.Split(buf[:n], []byte("\n\n"))
}

// TestShardDrainsAfterIdleWait: a message committed to a shard's ring,
// then the ring closed (Stop), while the shard thread is between an idle
// PeekWait that timed out and its look at Closed, is applied before the
// thread ends. The test holds the shard's stats lock so that the thread,
// idle for 50 ms, stops in the stats copy it makes there; the message and
// the close come while it waits.
func TestShardDrainsAfterIdleWait(t *testing.T) {
	_, sh := oneShardHandler(t, 64, smallBooks)
	sh.mu.Lock()
	pinErr, done := make(chan error, 1), make(chan struct{})
	go func() { sh.run(pinErr); close(done) }()
	if err := <-pinErr; err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := 0; !waitingForStatsLock(buf); i++ {
		if i == 10_000 {
			sh.mu.Unlock()
			t.Fatal("the idle shard never waited for its stats lock")
		}
		time.Sleep(time.Millisecond)
	}
	msg := dirMsg("AAPL")
	v := sh.ring.Reserve(1)
	v[0] = slot{seq: 1, n: uint8(copy(v[0].data[:], msg))}
	sh.ring.Commit(1)
	sh.ring.Close()
	sh.mu.Unlock()
	<-done
	if n := sh.applied.Load(); n != 1 {
		t.Fatalf("the shard ended with %d messages applied, %d left in its closed ring; want 1 applied", n, sh.ring.Len())
	}
}
