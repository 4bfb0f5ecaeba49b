"""Torn reads: a Go writer publishes at full speed (every field derived from
locate and k) while this process reads; no torn copy may be accepted."""

import random
import unittest

import feedhandler_shm as shm
from feedhandler_shm import layout

from . import support


class TornReadTest(unittest.TestCase):
    def test_full_speed_writer(self):
        name = support.feed_name(self)
        instruments, depth = 8, 5
        w = support.Writer(self, "stress", name, instruments=instruments, depth=depth, journal=1 << 16,
                           duration="3s")
        w.expect("ready")
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        rng = random.Random(1)
        last = [0] * instruments
        reads = updates = 0
        # Unprotected copies (no seqlock re-check) of the same slots: how
        # often this writer tears a copy, so that the figure above means
        # something. Not asserted: it depends on scheduling.
        unprotected = torn_unprotected = 0

        def check(loc):
            nonlocal reads
            try:
                b = r.read(loc)
            except shm.NoDataError:
                return  # the writer has not reached this locate yet
            reads += 1
            self.assertIsNone(support.book_mismatch(b, depth))
            self.assertEqual(b.locate, loc)
            self.assertGreaterEqual(b.version, last[loc], "locate %d went back" % loc)
            last[loc] = b.version

        while True:
            loc = rng.randrange(instruments)
            check(loc)
            if reads % 16 == 0 and r.version(loc):
                unprotected += 1
                base = r._slots + r._slot_of(loc) * r._slot_size
                n = layout.U32.unpack_from(r._mv, base + 8)[0]
                raw = r._mm[base + layout.SLOT_HEADER: base + layout.SLOT_HEADER + n]
                try:
                    if support.book_mismatch(shm.decode(raw, 0, depth), depth):
                        torn_unprotected += 1
                except shm.FormatError:
                    torn_unprotected += 1
            try:
                ups = f.wait(timeout=0.01, max_records=4, spin=1, check_every=0.01)
            except shm.OverrunError as e:
                ups = e.updates
            except shm.ClosedError:
                break
            for u in ups:
                updates += 1
                check(u.locate)
                self.assertGreaterEqual(last[u.locate], u.version)
        for loc in range(instruments):
            check(loc)
        published = w.expect("published")
        w.finish()
        self.assertGreater(reads, 1000)
        self.assertGreater(updates, 0)
        print("torn-read stress: %d reads verified, %d updates, writer %s; unprotected copies torn: %d of %d"
              % (reads, updates, published, torn_unprotected, unprotected))


if __name__ == "__main__":
    unittest.main()
