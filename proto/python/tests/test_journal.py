"""Following the change journal: records in order, overrun when the reader
falls more than a journal length behind, and resynchronisation after it."""

import mmap
import threading
import time
import unittest

import feedhandler_shm as shm
from feedhandler_shm import layout

from . import support


class JournalTest(unittest.TestCase):
    def test_poll_overrun_resync(self):
        journal = 16
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=2, depth=1, journal=journal)
        w.cmd("register 1 S1")
        w.cmd("register 2 S2")
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        self.assertEqual(f.poll(), [])
        for k in range(1, 7):
            w.cmd("publish %d %d" % (1 + k % 2, k))
        self.assertEqual(f.pending(), 6)
        got = f.poll(max_records=4) + f.poll()
        self.assertEqual(got, [(2, 1), (1, 1), (2, 2), (1, 2), (2, 3), (1, 3)])
        self.assertEqual(f.poll(), [])

        # Fall behind by more than the journal holds.
        w.cmd("burst %d" % (journal + 5))
        with self.assertRaises(shm.OverrunError) as cm:
            f.poll()
        self.assertEqual((cm.exception.lost, cm.exception.updates), (journal + 5, []))
        self.assertEqual((f.lost, f.overruns), (journal + 5, 1))
        # Resynchronise: every slot whose version moved is read again, and
        # holds exactly the writer's last publication.
        seen = {1: 3, 2: 3}
        changed = [loc for loc in (1, 2) if r.version(loc) != seen[loc]]
        self.assertEqual(sorted(changed), [1, 2])
        for loc in changed:
            b = r.read(loc)
            self.assertIsNone(support.book_mismatch(b, 1))
            self.assertEqual(b.version, r.version(loc))
        # burst publishes k = 1..21 into [1, 2][k % 2]: the last k of
        # locate 2 is 21, of locate 1 20.
        self.assertEqual(r.read(2).seq, journal + 5)
        self.assertEqual(r.read(1).seq, journal + 4)
        # After the overrun the follower continues from the head.
        w.cmd("publish 1 100")
        self.assertEqual(f.poll(), [shm.Update(1, r.version(1))])
        self.assertEqual(r.read(1).seq, 100)

    def test_overrun_keeps_records_before_the_gap(self):
        # Read part of the journal, then let it lap the rest.
        journal = 8
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1, journal=journal)
        w.cmd("register 3 S3")
        with shm.open(name) as r:
            f = r.follow()
            w.cmd("burst 5")
            self.assertEqual(len(f.poll(max_records=2)), 2)
            w.cmd("burst 20")
            with self.assertRaises(shm.OverrunError) as cm:
                f.poll()
            self.assertEqual(cm.exception.lost, 23)
            self.assertEqual(f.pending(), 0)

    def test_hole_of_stopped_writer_is_overrun(self):
        """A shared-mode writer claimed a journal record, never wrote it, and
        stopped (died, or closed) after two more records: wait reports the
        hole and the records behind it lost (OverrunError), then the
        writer's state, as Go and C++ do. Before, it raised WriterDeadError
        (ClosedError) with nothing lost and the records pending for ever."""
        for how, err in (("dead", shm.WriterDeadError), ("closed", shm.ClosedError)):
            with self.subTest(how):
                name = support.feed_name(self, "-" + how)
                w = support.control_writer(self, name, instruments=2, depth=1, shared=1)
                w.cmd("register 1 S1")
                w.cmd("register 2 S2")
                w.cmd("beat")
                r = shm.open(name)
                self.addCleanup(r.close)
                f = r.follow()
                w.cmd("publish 1 1")
                w.cmd("claim")
                w.cmd("publish 1 2")
                w.cmd("publish 2 3")
                if how == "dead":
                    w.kill()
                else:
                    w.cmd("close")
                self.assertEqual(f.wait(timeout=60, check_every=0.001), [shm.Update(1, 1)])
                with self.assertRaises(shm.OverrunError) as cm:
                    f.wait(timeout=60, check_every=0.001)
                self.assertEqual((cm.exception.lost, cm.exception.updates, f.lost, f.overruns, f.pending()),
                                 (3, [], 3, 1, 0))
                with self.assertRaises(err):
                    f.wait(timeout=60, check_every=0.001)
                self.assertEqual((r.version(1), r.version(2)), (2, 1))

    def test_head_going_backwards_is_overrun(self):
        """A journal head below the follower's position (a corrupt file: the
        writer's head only grows) is an overrun, as in Go and C++, whose
        head - next wraps as a uint64: no record lost, the follower moves to
        the head. Before, poll returned [] and pending() was negative."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1, journal=16)
        w.cmd("register 1 S1")
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        for k in range(1, 4):
            w.cmd("publish 1 %d" % k)
        self.assertEqual(len(f.poll()), 3)
        fd = open(name, "r+b")
        self.addCleanup(fd.close)
        mm = mmap.mmap(fd.fileno(), 0)
        self.addCleanup(mm.close)
        layout.U64.pack_into(mm, layout.OFF_HEAD, 1)
        for call in (f.poll, lambda: f.wait(timeout=0)):
            with self.assertRaises(shm.OverrunError) as cm:
                call()
            self.assertEqual((cm.exception.lost, cm.exception.updates), (0, []))
            self.assertEqual(f.pending(), 0)  # at the head, 1
            # The head back at 3: records 2 and 3 (positions 1, 2) are
            # still in the ring; then backwards again.
            layout.U64.pack_into(mm, layout.OFF_HEAD, 3)
            self.assertEqual(f.poll(), [shm.Update(1, 2), shm.Update(1, 3)])
            layout.U64.pack_into(mm, layout.OFF_HEAD, 1)
        self.assertEqual((f.lost, f.overruns), (0, 2))
        self.assertEqual(f.pending(), (1 - 3) & ((1 << 64) - 1))  # as Go's and C++'s uint64

    def test_wait_max_records_zero(self):
        """wait with max_records 0 can return no record, so it returns at once
        what poll returns ([] or OverrunError), as Go's Wait with an empty
        slice and C++'s with a capacity of 0 do. Before, it waited its whole
        timeout (here an hour)."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1, journal=16)
        w.cmd("register 1 S1")
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()

        def wait():
            result = []

            def run():
                try:
                    result.append(f.wait(timeout=3600, max_records=0))
                except shm.ShmError as e:
                    result.append(e)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(60)
            self.assertFalse(t.is_alive(), "wait(max_records=0, timeout=3600) had not returned after 60 s")
            return result[0]

        self.assertEqual(wait(), [])
        w.cmd("publish 1 1")
        self.assertEqual(wait(), [])
        w.cmd("burst 20")
        self.assertIsInstance(wait(), shm.OverrunError)

    def test_slow_follower_resynchronises(self):
        """A reader process falls behind a writer at full speed on purpose,
        sees overruns, rescans, and ends with exactly the writer's final books."""
        name = support.feed_name(self)
        instruments, depth, journal = 8, 5, 4096
        # The writer runs until this reader has seen both an overrun and
        # in-order updates (at least 1 s), then is stopped by closing its
        # stdin; 60 s bounds the run on a machine too loaded to get there.
        # A live writer the machine stalls is not dead to this reader
        # (support.TORN_STALE_AFTER), and a slot it held odd for over a
        # second (BusyError) is read at the next rescan.
        w = support.Writer(self, "stress", name, instruments=instruments, depth=depth, journal=journal,
                           duration="60s")
        w.expect("ready")
        r = shm.open(name, stale_after=support.TORN_STALE_AFTER)
        self.addCleanup(r.close)
        f = r.follow()
        last = {}

        def read(loc):
            """r.read(loc), None for a slot busy over a second."""
            try:
                return r.read(loc)
            except shm.BusyError:
                return None

        def rescan():
            for loc in r.locates():
                try:
                    b = r.read(loc)
                except (shm.NoDataError, shm.BusyError):
                    continue
                self.assertIsNone(support.book_mismatch(b, depth))
                self.assertGreaterEqual(b.version, last.get(loc, 0))
                last[loc] = b.version

        rescan()
        updates = 0
        it = 0
        start = time.monotonic()
        stopping = False
        while True:
            it += 1
            if not stopping and f.overruns > 0 and updates > 0 and time.monotonic() - start >= 1:
                w.proc.stdin.close()  # the writer stops and closes the feed
                stopping = True
            if it % 2:
                # Let the writer lap the journal (unless it stops first).
                while f.pending() <= journal and r.state()[0] == "live":
                    pass
            try:
                ups = f.wait(timeout=0.01, spin=10, check_every=0.001)
            except shm.OverrunError as e:
                ups = e.updates
                for u in ups:
                    b = read(u.locate)
                    if b is not None:
                        self.assertGreaterEqual(b.version, u.version)
                rescan()
                continue
            except shm.ClosedError:
                break
            for u in ups:
                updates += 1
                b = read(u.locate)
                if b is None:
                    continue
                self.assertIsNone(support.book_mismatch(b, depth))
                self.assertGreaterEqual(b.version, u.version)
                last[u.locate] = b.version
        rescan()
        published = int(w.expect("published").split()[1])
        w.finish()
        self.assertGreater(f.overruns, 0)
        self.assertGreater(f.lost, 0)
        self.assertGreater(updates, 0)
        # Final books: the last k the writer published into each locate.
        for loc in range(instruments):
            k = published - (published - loc) % instruments
            self.assertEqual(r.read(loc).seq, k, "locate %d" % loc)
        print("slow follower: updates %d overruns %d lost %d published %d"
              % (updates, f.overruns, f.lost, published))


if __name__ == "__main__":
    unittest.main()
