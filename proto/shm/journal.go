package shm

import (
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// Update is one change-journal record: locate was published at version.
// Version is the slot's publish count (View.Version), 48 bits.
type Update struct {
	Locate  uint16
	Version uint64
}

// Follower follows the change journal of a Reader. It is not safe for
// concurrent use; each goroutine follows with its own.
type Follower struct {
	r        *Reader
	next     uint64 // position of the next record to read
	lost     uint64
	overruns uint64
	// checked is when Wait last checked the writer (zero: never, so a
	// check is due). It outlives each call, so that a loop of Waits
	// shorter than CheckEvery still checks every CheckEvery.
	checked time.Time
	// The poll's look at the writer's liveness (look): untilLook counts
	// down the empty polls to the next look, lookEvery is how many it
	// counted from, lookedAt the monotonic ns of the last look (0: none).
	untilLook, lookEvery, lookedAt int64
}

// maxLookEvery bounds the empty polls between two of a poll's looks at the
// writer's liveness (docs/SHM.md, "A dead writer, in the poll"): a follower
// polling fast looks every maxLookEvery empty polls, one polling slower
// about once a heartbeat interval, and one that slows down all at once at
// most maxLookEvery of its new polls after its last look.
const maxLookEvery = 1024

// Follow returns a follower positioned at the journal's head: it reports
// publications from now on. To start from a complete picture, call Follow
// first, then Read every instrument, then poll: an update published in
// between shows up in both, never in neither.
func (r *Reader) Follow() *Follower {
	f := &Follower{r: r} // closed: Poll and Wait say so
	if r.m.mem != nil {
		f.next = r.head()
	}
	return f
}

// head is the journal's head, or 0 when the load faulted (the file was
// truncated under the mapping: the follower's Poll says so).
func (r *Reader) head() uint64 {
	defer r.unguardZero(guard())
	return r.m.head()
}

// Lost is the number of records the follower skipped because of overruns.
func (f *Follower) Lost() uint64 { return f.lost }

// Overruns is the number of times Poll returned ErrOverrun.
func (f *Follower) Overruns() uint64 { return f.overruns }

// Pending is the number of records published and not yet polled.
func (f *Follower) Pending() uint64 {
	if f.r.m.mem == nil {
		return 0
	}
	defer f.r.unguardZero(guard())
	return f.r.m.head() - f.next
}

// Poll copies up to len(dst) new journal records into dst without blocking
// and returns how many. A record being written by a publisher ends the batch
// (poll again). When the follower fell more than JournalLen records behind,
// the writer overwrote records it had not read: Poll returns ErrOverrun with
// the records it read before the gap, skips to the newest record, and the
// caller must rescan every instrument (Read or Version) because updates were
// lost. A file re-initialized in place by another writer, whose journal
// head is below the follower's position (or more than JournalLen past
// it), is ErrRestarted (as from Check), not an overrun; with the head in
// between, Poll returns that writer's records, and only Check says
// ErrRestarted ("Following" in docs/SHM.md). Once the writer closed the
// feed, a poll that finds no new record returns ErrClosed (Check's error:
// ErrRestarted first when a new writer replaced the file): the records
// published before the close are delivered first. A writer that died
// (killed, the OOM killer) stores nothing: a poll that finds nothing new
// looks at its heartbeat every few empty polls (about once a heartbeat
// interval, at most every maxLookEvery) and, once the writer is dead as
// Check says it (its pid gone and two heartbeats missed, or the heartbeat
// older than StaleAfter), returns Check's error, ErrWriterDead
// (ErrRestarted first when a new writer replaced the file), and so on
// every empty poll until the writer beats again. It allocates nothing
// (the closed or dead writer aside). A file truncated under the mapping
// is ErrFormat (fault.go).
func (f *Follower) Poll(dst []Update) (n int, err error) {
	if f.r.m.mem == nil {
		return 0, f.r.closedError("poll")
	}
	defer f.r.unguard(guard(), "poll", &err)
	return f.poll(dst)
}

// poll is Poll without the fault guard.
func (f *Follower) poll(dst []Update) (int, error) {
	m, l := &f.r.m, &f.r.l
	head := m.head()
	if head-f.next > l.journalLen {
		return 0, f.overrun(head)
	}
	n := 0
	for n < len(dst) && f.next < head {
		stamp, data := m.record(l, f.next)
		want := f.next + 1
		s1 := atomic.LoadUint64(stamp)
		if s1 != want {
			if s1 != stampBusy && s1 > want {
				return n, f.overrun(m.head())
			}
			// Claimed but not written yet, or being rewritten: a lap
			// later would show in head below.
			if m.head()-f.next > l.journalLen {
				return n, f.overrun(m.head())
			}
			break
		}
		d := atomic.LoadUint64(data)
		if atomic.LoadUint64(stamp) != s1 {
			// A publisher one lap ahead is rewriting the record.
			return n, f.overrun(m.head())
		}
		dst[n] = Update{Locate: uint16(d >> 48), Version: d & versionMask}
		n++
		f.next++
	}
	if n == 0 && len(dst) > 0 {
		if atomic.LoadUint32(m.u32(offState)) == stateClosed {
			return 0, f.stopped(f.r.writerGone())
		}
		// A dead writer stores nothing: a countdown in the follower's
		// own memory, no load of the mapping, brings the look.
		if f.untilLook--; f.untilLook <= 0 {
			return 0, f.look()
		}
	}
	return n, nil
}

// look is a poll's look at the writer's liveness, on its empty path every
// lookEvery polls: Check's liveness test (the clocks, the heartbeat, and
// kill(pid, 0) once two heartbeats are missed), run once, and once that
// says dead, what stopped says of it. It sets the next look lookEvery
// empty polls on, as many as the follower made in a heartbeat interval at
// the rate since the previous look (1 to maxLookEvery), so that a
// follower that polls slowly still looks about once an interval and a
// fast one rarely reads a clock;
// once the writer is dead, at the next empty poll, which says so again
// (or nothing, once it beats again: a stopped process resumed).
func (f *Follower) look() error {
	now := monoNanos()
	if f.lookedAt != 0 {
		f.lookEvery = nextLookEvery(f.lookEvery, now-f.lookedAt, f.r.l.heartbeatEvery)
	}
	f.lookedAt = now
	gone := f.r.writerGone()
	if gone == nil {
		f.untilLook = f.lookEvery
		return nil
	}
	f.lookEvery, f.untilLook = 1, 1
	return f.stopped(gone)
}

// nextLookEvery is how many empty polls a follower makes in interval ns
// at the rate of its last every empty polls, which took elapsed ns:
// between 1 and maxLookEvery.
func nextLookEvery(every, elapsed, interval int64) int64 {
	if elapsed <= 0 {
		return maxLookEvery
	}
	// every <= maxLookEvery and interval <= MaxHeartbeatInterval: no
	// overflow.
	return min(max(max(every, 1)*interval/elapsed, 1), maxLookEvery)
}

// stopped is what a poll that found nothing new returns once the writer
// closed the feed (Close's state, one load on the poll's empty path, none
// per record) or its look found it dead: gone, writerGone's error
// (ErrClosed or ErrWriterDead), after Check's tests of the file
// (checkFile: ErrRestarted when a new writer replaced the file since), so
// that the poll says what Check says without running the liveness test a
// second time; an overrun instead at a hole (atHole).
func (f *Follower) stopped(gone error) error {
	err := f.r.checkFile()
	if err == nil {
		err = gone
	}
	if f.atHole(err) {
		return f.overrun(f.r.m.head())
	}
	return err
}

// atHole reports whether a follower that found nothing new, told err by
// Check, stopped at a record the writer claimed and, closed or dead, will
// never write (a shared-mode publisher stopped between its claim and its
// stores): the records behind it are never delivered, so the follower
// returns an overrun for them (lost: the caller rescans) before err. A
// poll's (stopped) and a wait's check alike.
func (f *Follower) atHole(err error) bool {
	return (errors.Is(err, ErrClosed) || errors.Is(err, ErrWriterDead)) && f.r.m.head() > f.next
}

// overrun skips the follower to head, counting the records it lost, and
// returns ErrOverrun.
//
// A journal that seems to have run ahead may be another writer's: a file
// re-initialized in place by a restarted writer has its head start again,
// below next. Then the follower keeps its position and Poll returns
// ErrRestarted, as Check would: a rescan would read another writer's slots
// through the old file's layout. (On the overrun path only: nothing is
// added per record or per poll.)
func (f *Follower) overrun(head uint64) error {
	if err := f.r.reinitialized("poll"); err != nil {
		return err
	}
	if head > f.next {
		f.lost += head - f.next
	}
	f.next = head
	f.overruns++
	return ErrOverrun
}

// WaitOptions tune Follower.Wait.
type WaitOptions struct {
	// Spin is how many empty polls Wait does before yielding the CPU. A
	// strategy with a dedicated core spins long (lowest latency); zero
	// means 1000.
	Spin int
	// Sleep is how long Wait sleeps between polls once spinning and
	// yielding found nothing; zero means 50µs.
	Sleep time.Duration
	// CheckEvery is how often Wait checks the writer (Reader.Check),
	// counted across calls on the follower: its first Wait checks at
	// once, and a loop of Waits shorter than CheckEvery checks every
	// CheckEvery. Zero means 100ms.
	CheckEvery time.Duration
}

// Wait is Poll that blocks until at least one record arrives or timeout
// passes (then it returns 0, nil). It spins, then yields, then sleeps, and
// checks the writer periodically: a dead, closed or restarted writer ends
// the wait with ErrWriterDead, ErrClosed or ErrRestarted, a file truncated
// under the mapping with ErrFormat (Check, or a poll that faulted on the
// mapping before the check came due). The records the writer published
// before it stopped are delivered first; when a dead or closed writer left
// a record it claimed unwritten (a shared-mode publisher stopped between
// its claim and its stores), the records behind it cannot be, and the wait
// returns ErrOverrun for them (counted in Lost: rescan), then the next wait
// the writer's state. With an empty dst it cannot return a
// record, so it does not block: it returns at once what Poll returns (0,
// nil, or ErrOverrun), as the C++ and Python readers' waits with a capacity
// of 0 do.
func (f *Follower) Wait(dst []Update, timeout time.Duration, opt WaitOptions) (n int, err error) {
	if f.r.m.mem == nil {
		return 0, f.r.closedError("poll")
	}
	defer f.r.unguard(guard(), "wait", &err)
	return f.wait(dst, timeout, opt)
}

func (f *Follower) wait(dst []Update, timeout time.Duration, opt WaitOptions) (int, error) {
	if len(dst) == 0 {
		return f.poll(dst)
	}
	if opt.Spin <= 0 {
		opt.Spin = 1000
	}
	if opt.Sleep <= 0 {
		opt.Sleep = 50 * time.Microsecond
	}
	if opt.CheckEvery <= 0 {
		opt.CheckEvery = 100 * time.Millisecond
	}
	for i := 0; i < opt.Spin; i++ {
		if n, err := f.poll(dst); n > 0 || err != nil {
			return n, err
		}
	}
	start := time.Now()
	for yields := 0; ; yields++ {
		if n, err := f.poll(dst); n > 0 || err != nil {
			return n, err
		}
		t := time.Now()
		if f.checked.IsZero() || t.Sub(f.checked) >= opt.CheckEvery {
			f.checked = t
			if err := f.r.check(); err != nil {
				// Records published before the writer stopped are
				// still delivered first; a truncated file is not
				// read again (its pages fault).
				if errors.Is(err, ErrFormat) {
					return 0, err
				}
				if n, perr := f.poll(dst); n > 0 || perr != nil {
					return n, perr
				}
				if f.atHole(err) {
					// The next wait checks at once and says
					// why.
					f.checked = time.Time{}
					return 0, f.overrun(f.r.m.head())
				}
				return 0, err
			}
		}
		if t.Sub(start) >= timeout {
			return 0, nil
		}
		if yields < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(opt.Sleep)
		}
	}
}
