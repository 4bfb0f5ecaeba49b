"""Torn reads: a Go writer publishes at full speed (every field derived from
locate and k) while this process reads; no torn copy may be accepted."""

import random
import unittest

import feedhandler_shm as shm
from feedhandler_shm import layout

from . import support


class TornReadTest(unittest.TestCase):
    def test_word_loads_are_single_loads(self):
        """The reader's loads of shared words (layout.U64, U32: the seqlock,
        journal stamps, head) never mix bytes of two stores: a Go process
        stores words whose 8 (4) bytes are all equal, at full speed; every
        value read must still have equal bytes (docs/SHM.md, Python reader)."""
        name = support.feed_name(self)
        w = support.Writer(self, "flip", name, duration="1s")
        w.expect("ready")
        with open(name, "rb") as f:
            import mmap
            mm = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)
        mv = memoryview(mm)
        self.addCleanup(mm.close)
        self.addCleanup(mv.release)
        u64, u32 = layout.U64.unpack_from, layout.U32.unpack_from
        seen64, seen32, reads, torn = set(), set(), 0, []
        bytewise = bytewise_torn = 0
        while w.proc.poll() is None and reads < 20_000_000:
            for _ in range(10000):
                a = u64(mv, 256)[0]
                b = u32(mv, 264)[0]
                if a % 0x0101010101010101 or b % 0x01010101:
                    torn.append((hex(a), hex(b)))
                seen64.add(a)
                seen32.add(b)
            reads += 10000
            # Control: the same word read byte by byte (eight loads) does
            # tear; counted, not asserted (it depends on scheduling).
            for _ in range(1000):
                v = int.from_bytes(bytes([mm[256 + i] for i in range(8)]), "little")
                bytewise += 1
                if v % 0x0101010101010101:
                    bytewise_torn += 1
        w.finish()
        self.assertEqual(torn[:5], [], "%d torn word loads of %d" % (len(torn), reads))
        # The probe saw the words change (else it proved nothing).
        self.assertGreater(len(seen64), 2)
        self.assertGreater(len(seen32), 2)
        print("word loads: %d reads, %d distinct 8-byte values, none torn; byte-by-byte control: %d of %d torn"
              % (reads, len(seen64), bytewise_torn, bytewise))

    def test_full_speed_writer(self):
        """Every read and journal update against a writer at full speed is
        consistent. A test of torn copies, not of liveness: the writer
        stalls once for 1.5 s inside a publish, as a loaded machine may
        stall it, and being alive it is not dead to this reader (stale
        limit support.TORN_STALE_AFTER); a slot it held odd for over a
        second (BusyError) is read again later."""
        name = support.feed_name(self)
        instruments, depth = 8, 5
        w = support.Writer(self, "stress", name, instruments=instruments, depth=depth, journal=1 << 16,
                           duration="3s", stall=support.TORN_STALL)
        w.expect("ready")
        r = shm.open(name, stale_after=support.TORN_STALE_AFTER)
        self.addCleanup(r.close)
        f = r.follow()
        rng = random.Random(1)
        last = [0] * instruments
        reads = updates = busy = 0
        # Unprotected copies (no seqlock re-check) of the same slots: how
        # often this writer tears a copy, so that the figure above means
        # something. Not asserted: it depends on scheduling.
        unprotected = torn_unprotected = 0

        def check(loc):
            """Reads loc and checks it; False if its slot was busy."""
            nonlocal reads, busy
            try:
                b = r.read(loc)
            except shm.NoDataError:
                return True  # the writer has not reached this locate yet
            except shm.BusyError:
                busy += 1
                return False
            reads += 1
            self.assertIsNone(support.book_mismatch(b, depth))
            self.assertEqual(b.locate, loc)
            self.assertGreaterEqual(b.version, last[loc], "locate %d went back" % loc)
            last[loc] = b.version
            return True

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
                if check(u.locate):
                    self.assertGreaterEqual(last[u.locate], u.version)
        for loc in range(instruments):
            self.assertTrue(check(loc), "locate %d busy after the writer closed the feed" % loc)
        published = w.expect("published")
        w.finish()
        self.assertGreater(reads, 1000)
        self.assertGreater(updates, 0)
        print("torn-read stress: %d reads verified, %d updates, %d busy, writer %s; unprotected copies torn: %d of %d"
              % (reads, updates, busy, published, torn_unprotected, unprotected))


if __name__ == "__main__":
    unittest.main()
