"""A dead writer, in the poll (docs/SHM.md): a writer process killed with
SIGKILL stores nothing, and a follower that only polls (no check(), no wait)
learns it within the bound: once the heartbeat is two intervals old on the
reader's clock (its pid gone), at most MAX_LOOK_EVERY empty polls later. The
reader's monotonic clock is stepped past the limit, so that the bound is
counted in polls, not timed. (Go: TestPollSaysDead; C++:
TestCppPollSaysDead.) Before, poll returned [] for ever: the dead writer's
last books looked like a quiet market."""

import time
import unittest

import feedhandler_shm as shm
from feedhandler_shm import reader as reader_mod

from . import support

# The control writer's heartbeat interval is 100 ms: its pid gone, two
# intervals make it dead. A second is stepped.
STEP_NS = 10**9


def poll_until(f, polls):
    """Poll f polls times, each returning nothing (an exception
    propagates)."""
    for _ in range(polls):
        if f.poll():
            raise AssertionError("poll returned records")


class PollDeadTest(unittest.TestCase):
    def _following(self):
        """A beating control writer with S1 at locate 1, a reader and a
        follower of it that polled a while: (name, writer, reader,
        follower)."""
        name = support.feed_name(self)
        a = support.pid_writer(self, name)
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        poll_until(f, 2 * reader_mod.MAX_LOOK_EVERY)
        return name, a, r, f

    def _killed(self):
        """_following, the writer then killed with SIGKILL, after it beat
        (every 20 ms) since the follower's last look, as a loaded machine
        makes it at random."""
        name, a, r, f = self._following()
        time.sleep(0.05)
        a.kill()
        return name, a, r, f

    def _step_clock(self):
        """Steps both of the reader's clocks STEP_NS on, as that much time
        passing would; returns a function that steps them back. Stepping
        the monotonic clock alone, a beat the writer stored after the
        follower's last look and before its kill (the machine loaded: the
        interval between them longer) was seen by the next look with its
        realtime age, a few milliseconds, and the writer was live to it."""
        real, mono = reader_mod._real_ns, reader_mod._mono_ns

        def back():
            reader_mod._real_ns, reader_mod._mono_ns = real, mono

        self.addCleanup(back)
        reader_mod._real_ns = lambda: real() + STEP_NS
        reader_mod._mono_ns = lambda: mono() + STEP_NS
        return back

    def test_poll_says_dead(self):
        name, a, r, f = self._killed()
        self._step_clock()
        with self.assertRaises(shm.WriterDeadError) as cm:
            poll_until(f, reader_mod.MAX_LOOK_EVERY + 1)
        self.assertIn("pid %d gone" % a.pid, str(cm.exception))
        for _ in range(3):  # every empty poll from then on
            with self.assertRaises(shm.WriterDeadError):
                f.poll()
        with self.assertRaises(shm.WriterDeadError):
            r.check()
        self.assertEqual(r.read(1).seq, a.pid)  # the last book stays readable
        support.control_writer(self, name, instruments=1, depth=1)
        with self.assertRaises(shm.RestartedError):
            f.poll()

    def test_poll_dead_looks_once(self):
        """Once the writer is dead, every empty poll runs the liveness test
        (the clocks, the heartbeat, kill(pid, 0)) once: the look's answer,
        after check()'s tests of the file, not a second liveness test for
        check()'s order. Counted in readings of the realtime clock, which
        only the liveness test reads. (Go: TestPollDeadLooksOnce; C++:
        TestCppPollDeadLooksOnce.)"""
        _, _, _, f = self._killed()
        self._step_clock()
        with self.assertRaises(shm.WriterDeadError):
            poll_until(f, reader_mod.MAX_LOOK_EVERY + 1)
        real = reader_mod._real_ns
        self.addCleanup(setattr, reader_mod, "_real_ns", real)
        reads = []

        def counted():
            reads.append(1)
            return real()

        reader_mod._real_ns = counted
        polls = 10
        for _ in range(polls):
            with self.assertRaises(shm.WriterDeadError):
                f.poll()
        self.assertEqual(len(reads), polls, "liveness tests in %d polls of a dead writer" % polls)

    def test_no_kill_within_two_intervals(self):
        """kill(pid, 0) is asked only once two heartbeats are missed, as in
        Go and C++: a writer whose heartbeat is younger (an interval of an
        hour, the reader's clocks not stepped) is live to check() and to a
        poll's looks without a system call about its pid."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1, heartbeat_ms=3600 * 1000)
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        kills = []
        kill = reader_mod.os.kill

        def counted(pid, sig):
            kills.append(pid)
            return kill(pid, sig)

        reader_mod.os.kill = counted
        self.addCleanup(setattr, reader_mod.os, "kill", kill)
        at = f._looked_at
        poll_until(f, 3 * reader_mod.MAX_LOOK_EVERY)
        r.check()
        reader_mod.os.kill = kill
        self.assertNotEqual(f._looked_at, at, "the polls looked at the writer")
        self.assertEqual(kills, [], "kill(pid, 0) for writer %d, its heartbeat younger than two intervals" % w.pid)

    def test_poll_killed_and_restarted(self):
        """Killed and restarted before the poll looked: the restart is what
        the poll says, as check() orders them."""
        name, _, _, f = self._killed()
        b = support.control_writer(self, name, instruments=1, depth=1)
        b.cmd("beat")
        back = self._step_clock()
        with self.assertRaises(shm.RestartedError):
            poll_until(f, reader_mod.MAX_LOOK_EVERY + 1)
        back()
        with shm.open(name) as r2:
            self.assertEqual(r2.info.writer_pid, b.pid)
            poll_until(r2.follow(), 2 * reader_mod.MAX_LOOK_EVERY)

    def test_poll_quiet_writer_live(self):
        """A writer that publishes nothing more and beats (every 20 ms) is live to
        a follower that polls for longer than the default stale limit (1 s),
        fast and slow; the follower looked at it more than once."""
        _, _, _, f = self._following()
        looks, at = 0, f._looked_at
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 1.5:
            self.assertEqual(f.poll(), [])
            if f._looked_at != at:
                looks, at = looks + 1, f._looked_at
            if i % 2048 >= 1024:
                time.sleep(100e-6)
            i += 1
        self.assertGreaterEqual(looks, 2, "looks at the writer in 1.5 s of polls")

    def test_poll_pid_namespace(self):
        """A follower in its own pid namespace (a container sharing /dev/shm),
        which cannot see the writer's pid, polls a live, beating writer as
        live, and a killed one as dead: the heartbeat tells, not the pid."""
        name = support.feed_name(self)
        w = support.pid_writer(self, name)
        code = ("import sys, time, feedhandler_shm as shm\n"
                "f = shm.open(sys.argv[1]).follow()\n"
                "def polls(seconds):\n"
                "    end = time.monotonic() + seconds\n"
                "    while time.monotonic() < end:\n"
                "        f.poll()\n"
                "        time.sleep(0.001)\n"
                "polls(1.5)\n"
                "print('live', flush=True)\n"
                "sys.stdin.readline()\n"
                "try:\n"
                "    polls(30)\n"
                "except shm.WriterDeadError as e:\n"
                "    print('dead', e)\n")
        support.dead_under_pid_namespace(self, w, code, name)


if __name__ == "__main__":
    unittest.main()
