"""Lifecycle: each situation the Go reader reports has its own exception here:
missing feed, not a feed, layout version, writer killed, restarted, closed,
stale heartbeat, permission denied, unknown locate, nothing published."""

import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import feedhandler_shm as shm
from feedhandler_shm import layout

from . import support

OFF_HEARTBEAT_INTERVAL = 56  # int64 ns (docs/SHM.md, header)


def wait_state(test, r, want, timeout=30):
    """Poll r.state() until it is want; the state, (name, message)."""
    deadline = time.monotonic() + timeout
    while True:
        st = r.state()
        if st[0] == want:
            return st
        test.assertLess(time.monotonic(), deadline, "reader says %s, want %s" % (st, want))
        time.sleep(0.01)


def invisible_pid():
    """A pid no process of this pid namespace has (os.kill: ESRCH)."""
    for pid in range(layout.MAX_PID, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
    raise AssertionError("every pid exists")


class LifecycleTest(unittest.TestCase):
    def test_error_classes_are_distinct(self):
        classes = [shm.NotExistError, shm.PermissionDeniedError, shm.FormatError, shm.LayoutVersionError,
                   shm.WriterDeadError, shm.RestartedError, shm.ClosedError, shm.OverrunError,
                   shm.UnknownLocateError, shm.NoDataError, shm.BusyError, shm.ReaderClosedError,
                   shm.SystemCallError]
        for a in classes:
            self.assertTrue(issubclass(a, shm.ShmError))
            for b in classes:
                if a is not b:
                    self.assertFalse(issubclass(a, b), "%s is a %s" % (a.__name__, b.__name__))

    def test_system_error_is_not_format(self):
        """A system call that fails for a reason other than the file (here
        EMFILE: no descriptor left) is SystemCallError, an OSError with its
        errno, as Go wraps the os error and C++ says System: not
        FormatError, which says the file is not a feed (a caller would give
        up on a good feed)."""
        import errno
        import resource

        name, _ = self._closed_feed_bytes()
        shm.open(name).close()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest = os.open("/dev/null", os.O_RDONLY)  # the lowest free descriptor
        os.close(lowest)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
        try:
            try:
                shm.open(name).close()
            except shm.ShmError as e:
                err = e
            else:
                err = None
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.assertIsNotNone(err, "open with no descriptor left succeeded")
        self.assertNotIsInstance(err, shm.FormatError, "%s: %s" % (type(err).__name__, err))
        self.assertIsInstance(err, shm.SystemCallError)
        self.assertIsInstance(err, OSError)
        self.assertEqual(err.errno, errno.EMFILE)
        self.assertIn(name, str(err))

    def test_fstat_error_is_system_error(self):
        """fstat of the opened file failing (EIO here, from a stand-in
        os.fstat) is SystemCallError with its errno, as Go wraps the fstat
        error and C++ says System: not a bare OSError that escapes the
        ShmError handlers (python3 -m feedhandler_shm printed a traceback)."""
        import errno
        from unittest import mock

        name, _ = self._closed_feed_bytes()
        with mock.patch("feedhandler_shm.reader.os.fstat", side_effect=OSError(errno.EIO, "Input/output error")):
            try:
                shm.open(name).close()
            except Exception as e:  # noqa: BLE001 - the class is what is tested
                err = e
            else:
                err = None
        self.assertIsNotNone(err, "open with fstat failing succeeded")
        self.assertIsInstance(err, shm.SystemCallError, "%s: %s" % (type(err).__name__, err))
        self.assertEqual(err.errno, errno.EIO)
        self.assertIn(name, str(err))
        shm.open(name).close()  # the descriptor was closed, the file is fine

    def test_file_shrinking_before_mmap_is_format_error(self):
        """A file that shrinks between the open's fstat and its mmap (here a
        stand-in os.fstat reports a page more than the file has) is
        FormatError, the package's error for a truncated file: not the bare
        ValueError of mmap ("mmap length is greater than file size"), which
        escapes the ShmError handlers (python3 -m feedhandler_shm printed a
        traceback)."""
        from unittest import mock

        name, _ = self._closed_feed_bytes()
        real = os.fstat

        def grown(fd):
            st = list(real(fd))
            st[6] += layout.PAGE_SIZE  # st_size
            return os.stat_result(st)

        with mock.patch("feedhandler_shm.reader.os.fstat", side_effect=grown):
            try:
                shm.open(name).close()
            except Exception as e:  # noqa: BLE001 - the class is what is tested
                err = e
            else:
                err = None
        self.assertIsInstance(err, shm.FormatError, "%s: %s" % (type(err).__name__, err))
        self.assertIn(name, str(err))
        shm.open(name).close()  # the descriptor was closed, the file is fine

    def test_open_wait_poll_zero(self):
        """open_wait with a poll of 0 or less waits 1 ms between tries, as Go's
        OpenWait and C++'s open_wait do with 0, not 0 s: a loop of opens that
        holds a core for the whole timeout."""
        from unittest import mock

        class Slept(Exception):
            pass
        name = support.feed_name(self)
        with mock.patch("feedhandler_shm.reader.time.sleep", side_effect=Slept) as sleep:
            with self.assertRaises(Slept):
                shm.open_wait(name, 3600, poll=0)
        self.assertEqual(sleep.call_args.args, (0.001,), "wait between tries of open_wait with poll 0")

    def test_missing_feed(self):
        name = support.feed_name(self)
        with self.assertRaises(shm.NotExistError):
            shm.open(name)
        with self.assertRaises(shm.NotExistError) as cm:
            shm.open_wait(name, timeout=0.01, poll=0.001)
        # How long it waited, and what to check (as Go's OpenWait says it).
        self.assertEqual(str(cm.exception), "open shm %s: waited 10ms: feed does not exist (is the writer, "
                         "feedhandler run, running? its feed config's shm.name must name this file)"
                         % shm.path_of(name))
        # A reader that attaches before the writer exists waits for it.
        w = support.Writer(self, "control", name)
        with shm.open_wait(name, timeout=30, poll=0.001) as r:
            self.assertEqual(r.info.writer_pid, w.pid)
        w.expect("ready")

    def test_not_a_feed(self):
        for label, content in [("zeros", bytes(2 * layout.PAGE_SIZE)), ("short", b"FHBOOKS\x00" + bytes(92)),
                               ("text", b"hello\n" * 1000), ("empty", b"")]:
            with self.subTest(label):
                name = support.feed_name(self)
                with open(name, "wb") as f:
                    f.write(content)
                with self.assertRaises(shm.FormatError) as cm:
                    shm.open(name)
                self.assertIn(name, str(cm.exception))
        # A FIFO: not a feed file, said at once (a plain open would block
        # until a process opened the FIFO for writing).
        fifo = support.feed_name(self)
        os.mkfifo(fifo)

        def blocked(*_):
            raise AssertionError("open of a FIFO still blocked after 10 s")

        old = signal.signal(signal.SIGALRM, blocked)
        signal.alarm(10)
        try:
            with self.assertRaises(shm.FormatError):
                shm.open(fifo)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        # A directory in /dev/shm is not a feed either.
        d = tempfile.mkdtemp(dir="/dev/shm", prefix="fh-pytest-%d-dir" % os.getpid())
        self.addCleanup(os.rmdir, d)
        with self.assertRaises(shm.FormatError):
            shm.open(d)

    def test_rebound_locate(self):
        # A new session binds locate 7 to another symbol: the old slot is
        # retired, the locate reads the new symbol's book, the old symbol
        # is found nowhere.
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=4, depth=2)
        w.cmd("register 7 SNAP")
        w.cmd("publish 7 3")
        with shm.open(name) as r:
            self.assertEqual(r.lookup("SNAP"), 7)
            w.cmd("rebind 7 MSFT")
            w.cmd("publish 7 5")
            self.assertIsNone(r.lookup("SNAP"))
            self.assertEqual(r.lookup("MSFT"), 7)
            self.assertEqual(r.instruments(), [shm.Instrument(7, "MSFT")])
            b = r.read_symbol("MSFT")
            self.assertEqual((b.symbol, b.seq, b.version), ("MSFT", 5, 1))

    def test_symbol_moved(self):
        # A new session moves AAPL from locate 5 to locate 9: the entry of
        # locate 5 is retired and locate 5 unbound, so AAPL is found at 9
        # only and locate 5 no longer reads AAPL's stale book.
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=3, depth=2)
        w.cmd("register 5 AAPL")
        w.cmd("publish 5 3")
        with shm.open(name) as r:
            self.assertEqual(r.lookup("AAPL"), 5)
            w.cmd("rebind 9 AAPL")
            w.cmd("publish 9 5")
            self.assertEqual(r.lookup("AAPL"), 9)
            self.assertEqual(r.instruments(), [shm.Instrument(9, "AAPL")])
            with self.assertRaises(shm.UnknownLocateError):
                r.read(5)
            b = r.read_symbol("AAPL")
            self.assertEqual((b.symbol, b.locate, b.seq, b.version), ("AAPL", 9, 5, 1))
            # No slot left for a third locate: AAPL still leaves locate 9
            # (its book there is stale), though the instrument count stays.
            w.cmd("register 1 MSFT")
            w.cmd("rebind 12 AAPL", expect_error=True)
            self.assertIsNone(r.lookup("AAPL"))
            self.assertEqual(r.lookup("MSFT"), 1)

    def test_read_symbol_rebound_after_lookup(self):
        # A session change between read_symbol's lookup and its read binds
        # the locate found to another symbol, whose book it then holds:
        # read_symbol returns the asked symbol's book from where it is now,
        # or UnknownLocateError when it is nowhere, never MSFT's book as
        # AAPL's (as Go's TestReadSymbolRebindAfterLookup).
        for moved in (False, True):
            with self.subTest(moved=moved):
                name = support.feed_name(self)
                w = support.control_writer(self, name, instruments=4, depth=1)
                w.cmd("register 5 AAPL")
                w.cmd("publish 5 3")
                with shm.open(name) as r:
                    lookup, calls = r.lookup, []

                    def racing(symbol):
                        locate = lookup(symbol)
                        calls.append(locate)
                        if len(calls) == 1:  # the new session, after the lookup
                            w.cmd("rebind 5 MSFT")
                            w.cmd("publish 5 7")
                            if moved:
                                w.cmd("rebind 9 AAPL")
                                w.cmd("publish 9 8")
                        return locate

                    r.lookup = racing
                    if not moved:
                        with self.assertRaises(shm.UnknownLocateError):
                            b = r.read_symbol("AAPL")
                            self.fail("read_symbol(AAPL) read %r seq %d" % (b.symbol, b.seq))
                        continue
                    b = r.read_symbol("AAPL")
                    self.assertEqual((b.symbol, b.locate, b.seq), ("AAPL", 9, 8))

    def _beating_feed(self):
        """A live, beating writer with S1 at locate 1 published (seq 5), and
        a reader of it: (name, writer, reader)."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("register 1 S1")
        w.cmd("publish 1 5")
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        self.assertEqual(r.read(1).seq, 5)
        return name, w, r

    def _copy_in_place(self, src, dst):
        """Write feed file src over dst in place: the same inode and size."""
        with open(src, "rb") as f:
            content = f.read()
        self.assertEqual(len(content), os.path.getsize(dst))
        fd = os.open(dst, os.O_WRONLY)  # no O_TRUNC: the mapping stays covered
        try:
            os.pwrite(fd, content, 0)
        finally:
            os.close(fd)

    def _open_feed_mapped(self, pid):
        """A feed file of writer pid, open, beating every second (stale
        after 10 s), and a writable mapping of it through which the test
        plays the writer's heartbeat."""
        name, b = self._closed_feed_bytes()
        struct.pack_into("<I", b, 32, pid)
        struct.pack_into("<I", b, layout.OFF_STATE, layout.STATE_OPEN)
        struct.pack_into("<q", b, OFF_HEARTBEAT_INTERVAL, 10**9)
        with open(name, "wb") as f:
            f.write(b)
        f = open(name, "r+b")
        self.addCleanup(f.close)
        mm = mmap.mmap(f.fileno(), 0)
        self.addCleanup(mm.close)
        return name, mm

    def _closed_feed_bytes(self):
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("register 1 A")
        w.cmd("publish 1 9")
        w.cmd("close")
        with open(name, "rb") as f:
            return name, bytearray(f.read())

    def test_refused_before_populate(self):
        """open checks the header before it maps the file with MAP_POPULATE: a
        file that is not a feed of this layout (another program's sparse shm
        file under a mistyped name, a feed truncated to a larger size,
        another layout version) is refused without a page of its holes
        allocated. Before, open mapped and populated the whole file first,
        and tmpfs allocated every page of it, for good: 64 MiB of /dev/shm
        kept by the file after the refusal. (Go: TestOpenRefusesBeforePopulate.)"""
        size = 64 << 20
        _, feed = self._closed_feed_bytes()
        header = bytes(feed[:layout.HEADER_SIZE])
        version = bytearray(header)
        version[layout.OFF_LAYOUT_VERSION] = layout.LAYOUT_VERSION + 1
        not_feed = b"not a feed file".ljust(layout.HEADER_SIZE, b"\0")
        for label, first, want in [("not a feed", not_feed, shm.FormatError),
                                   ("size mismatch", header, shm.FormatError),
                                   ("layout version", bytes(version), shm.LayoutVersionError)]:
            with self.subTest(label):
                name = support.feed_name(self)
                with open(name, "wb") as f:
                    f.write(first)
                    f.truncate(size)
                before = os.stat(name).st_blocks * 512
                with self.assertRaises(want):
                    shm.open(name)
                after = os.stat(name).st_blocks * 512
                self.assertEqual(after, before, "open of a %d-byte file allocated %d bytes of it before refusing it"
                                 % (size, after))

    def test_layout_version_mismatch(self):
        name, b = self._closed_feed_bytes()
        b[layout.OFF_LAYOUT_VERSION] = layout.LAYOUT_VERSION + 1
        with open(name, "wb") as f:
            f.write(b)
        with self.assertRaises(shm.LayoutVersionError) as cm:
            shm.open(name)
        self.assertEqual(cm.exception.have, layout.LAYOUT_VERSION + 1)
        self.assertIn("layout version %d" % (layout.LAYOUT_VERSION + 1), str(cm.exception))

    def test_corrupt_header(self):
        for label, patch in [("magic", lambda b: b.__setitem__(0, ord("X"))),
                             ("journal length", lambda b: b.__setitem__(48, 3)),
                             ("slot offset", lambda b: b.__setitem__(88 + 3, 0x7F)),
                             # Writer pid 0, past Linux's largest, and 2**32 - 16
                             # (os.kill would raise OverflowError).
                             ("pid 0", lambda b: b.__setitem__(slice(32, 36), bytes(4))),
                             ("pid past the largest", lambda b: b.__setitem__(slice(32, 36), (layout.MAX_PID + 1).to_bytes(4, "little"))),
                             ("pid 2**32-16", lambda b: b.__setitem__(slice(32, 36), (2**32 - 16).to_bytes(4, "little"))),
                             ("truncated", lambda b: b.__delitem__(slice(len(b) - layout.PAGE_SIZE, None))),
                             # The heartbeat interval: 0, negative, over an hour.
                             ("heartbeat interval 0", lambda b: struct.pack_into("<q", b, OFF_HEARTBEAT_INTERVAL, 0)),
                             ("heartbeat interval -1", lambda b: struct.pack_into("<q", b, OFF_HEARTBEAT_INTERVAL, -1)),
                             ("heartbeat interval 1h+1ns",
                              lambda b: struct.pack_into("<q", b, OFF_HEARTBEAT_INTERVAL, 3600 * 10**9 + 1))]:
            with self.subTest(label):
                name, b = self._closed_feed_bytes()
                patch(b)
                with open(name, "wb") as f:
                    f.write(b)
                with self.assertRaises(shm.FormatError):
                    shm.open(name)
        # An hour exactly is a valid heartbeat interval.
        name, b = self._closed_feed_bytes()
        struct.pack_into("<q", b, OFF_HEARTBEAT_INTERVAL, 3600 * 10**9)
        with open(name, "wb") as f:
            f.write(b)
        with shm.open(name) as r:
            self.assertEqual(r.info.heartbeat_interval_ns, 3600 * 10**9)
            self.assertEqual(r.read(1).seq, 9)

    def test_default_stale_limit_exact(self):
        """The default stale limit is 10 heartbeat intervals (at least 1 s) to
        the nanosecond, as Go's and C++'s integer arithmetic makes it. Before,
        it went through float seconds and was 1 ns short for about a quarter
        of the intervals (100000001 ns among them)."""
        for interval in (100000001, 123456789, 3 * 10**7):
            with self.subTest(interval=interval):
                name, b = self._closed_feed_bytes()
                struct.pack_into("<q", b, OFF_HEARTBEAT_INTERVAL, interval)
                with open(name, "wb") as f:
                    f.write(b)
                with shm.open(name) as r:
                    self.assertEqual(r._stale_ns, max(10 * interval, 10**9))

    def test_stale_after_exact(self):
        """A stale_after given in seconds is that many ns, as Go's StaleAfter
        and C++'s stale_after_ns give it: 1.001 s is 1001000000 ns. Before,
        int() of the float product made it 1 ns short for half the odd
        milliseconds (1.001, 1.003, ...), so the readers disagreed on a
        heartbeat exactly that old."""
        name, _ = self._closed_feed_bytes()
        for seconds, ns in ((1.001, 1001000000), (4.35, 4350000000), (0.000123, 123000), (2, 2 * 10**9)):
            with self.subTest(stale_after=seconds):
                with shm.open(name, stale_after=seconds) as r:
                    self.assertEqual(r._stale_ns, ns)

    def test_writer_killed_then_restarted(self):
        name = support.feed_name(self)
        a = support.pid_writer(self, name)
        r = shm.open(name)
        self.addCleanup(r.close)
        r.check()
        self.assertEqual(r.state(), ("live", ""))
        f = r.follow()
        a.kill()
        # Dead once its heartbeat is two intervals (100 ms) old: a pid gone
        # with a fresh heartbeat may be a live writer in another pid namespace.
        wait_state(self, r, "dead")
        with self.assertRaises(shm.WriterDeadError) as cm:
            r.check()
        # The cause, as Go's Check gives it: the pid and the heartbeat's age.
        self.assertRegex(str(cm.exception), r"^check shm .*: pid %d gone, heartbeat \d+\.\d{3}s old: writer is dead$" % a.pid)
        with self.assertRaises(shm.WriterDeadError):
            f.wait(timeout=60, check_every=0)
        # The dead writer's last book stays readable.
        self.assertEqual(r.read(1).seq, a.pid)

        b = support.control_writer(self, name, instruments=1, depth=1)
        with self.assertRaises(shm.RestartedError):
            r.check()
        self.assertEqual(r.state()[0], "restarted")
        with self.assertRaises(shm.RestartedError):
            f.wait(timeout=60, check_every=0)
        b.cmd("register 1 S1")
        b.cmd("publish 1 %d" % b.pid)
        b.cmd("beat")
        with shm.open(name) as r2:
            r2.check()
            self.assertEqual(r2.info.writer_pid, b.pid)
            self.assertNotEqual(r2.info.generation, r.info.generation)
            self.assertEqual(r2.read(1).seq, b.pid)

    def test_reinitialized_in_place(self):
        """A feed file re-initialized in place (another live writer's file
        copied over it: the same inode and size, another generation) is no
        longer the file the reader opened, whose layout it keeps: check() and
        a follower's wait raise RestartedError (close, open again). Before,
        the readers looked only at the name's inode, and read the new content
        through the old file's layout as the old writer's, alive. (Go:
        TestCheckReinitializedInPlace.)"""
        name, _, r = self._beating_feed()
        other, b, _ = self._beating_feed()
        f = r.follow()
        r.check()
        self._copy_in_place(other, name)
        with self.assertRaises(shm.RestartedError):
            r.check()
        self.assertEqual(r.state()[0], "restarted")
        with self.assertRaises(shm.RestartedError):
            f.wait(timeout=60, check_every=0)
        with shm.open(name) as r2:
            r2.check()
            self.assertEqual(r2.info.writer_pid, b.pid)
            self.assertNotEqual(r2.info.generation, r.info.generation)

    def test_poll_reinitialized_in_place(self):
        """A feed file re-initialized in place by a writer that published less
        than the old one (its journal head below the follower's position)
        makes poll raise RestartedError, not OverrunError, and count no
        overrun. (Go: TestPollReinitializedInPlaceRestarted.)"""
        name, a, r = self._beating_feed()
        for seq in range(6, 12):
            a.cmd("publish 1 %d" % seq)
        f = r.follow()
        other, _, _ = self._beating_feed()
        self._copy_in_place(other, name)
        with self.assertRaises(shm.RestartedError):
            f.poll()
        self.assertEqual(f.overruns, 0)

    def test_cut_past_first_page(self):
        """A feed file cut past its first page and grown back to its size
        keeps its header; the trailer (a copy of the generation in the
        file's last 8 bytes) is zero: check(), a follower's wait and open
        raise FormatError. (Go: TestReaderCutPastFirstPage.)"""
        name, _, r = self._beating_feed()
        f = r.follow()
        r.check()
        size = os.path.getsize(name)
        os.truncate(name, 8192)
        os.truncate(name, size)
        with self.assertRaises(shm.FormatError):
            r.check()
        with self.assertRaises(shm.FormatError):
            f.wait(timeout=60, check_every=0)
        with self.assertRaises(shm.FormatError):
            shm.open(name).close()

    def test_closed(self):
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("register 1 S1")
        w.cmd("publish 1 9")
        r = shm.open(name)
        self.addCleanup(r.close)
        f, g = r.follow(), r.follow()
        w.cmd("publish 1 10")
        w.cmd("close")
        with self.assertRaises(shm.ClosedError):
            r.check()
        self.assertEqual(r.state()[0], "closed")
        # Records published before the close are delivered before the error,
        # by poll too (as Go's and C++'s: before, poll returned [] for ever);
        # a poll with no room returns [].
        self.assertEqual(g.poll(), [shm.Update(1, 2)])
        self.assertEqual(g.poll(max_records=0), [])
        for _ in range(2):
            with self.assertRaises(shm.ClosedError):
                g.poll()
        self.assertEqual(f.wait(timeout=60, check_every=0), [shm.Update(1, 2)])
        with self.assertRaises(shm.ClosedError):
            f.wait(timeout=60, check_every=0)
        # The final book stays readable, also by a reader opening later.
        w.finish()
        with shm.open(name) as r2:
            self.assertEqual(r2.read(1).seq, 10)
        # A new writer under the name: the old file's follower's poll says
        # restarted, as check() orders them.
        support.control_writer(self, name, instruments=1, depth=1)
        with self.assertRaises(shm.RestartedError):
            g.poll()

    def test_relative_path_resolved_at_open(self):
        """A relative path is resolved once, at open. Before, check() looked
        the relative name up again against the working directory of the
        moment: after a chdir to a directory holding a file of the same name
        it raised RestartedError, and after a real restart of the feed it
        raised ClosedError."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("beat")
        feed_dir, base = os.path.split(name)
        other = tempfile.mkdtemp(prefix="fh-pytest-cwd-")
        self.addCleanup(shutil.rmtree, other, True)
        decoy = os.path.join(other, base)
        with open(decoy, "w") as f:
            f.write("not the feed")
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(feed_dir)
        r = shm.open("./" + base)
        self.addCleanup(r.close)
        os.chdir(other)
        r.check()
        self.assertEqual(r.path, name)
        os.remove(decoy)
        w.cmd("close")
        support.control_writer(self, name, instruments=1, depth=1)
        with self.assertRaises(shm.RestartedError):
            r.check()

    def test_relative_path_through_symlinked_cwd(self):
        """A relative name with ".." names the file the kernel resolves it to
        from the working directory (os.getcwd), as the C++ reader (getcwd),
        the Go writer and, since it stopped taking $PWD, the Go reader do:
        from a directory entered through a symbolic link, with $PWD the
        link, "../feed" is the feed beside the link's target, not beside the
        link."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("beat")
        feed_dir, base = os.path.split(name)
        sub = tempfile.mkdtemp(prefix="fh-pytest-sub-", dir=feed_dir)
        self.addCleanup(shutil.rmtree, sub, True)
        links = tempfile.mkdtemp(prefix="fh-pytest-links-")
        self.addCleanup(shutil.rmtree, links, True)
        link = os.path.join(links, "link")
        os.symlink(sub, link)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(link)
        from unittest import mock
        pwd = mock.patch.dict(os.environ, {"PWD": link})
        pwd.start()
        self.addCleanup(pwd.stop)
        r = shm.open("../" + base)
        self.addCleanup(r.close)
        self.assertEqual(r.path, name)
        r.check()

    def test_check_truncated_file(self):
        """A feed file truncated under the reader (an operator's truncate -s 0;
        the writer never truncates) is FormatError from check(), which reads
        nothing past the end of the file. Before, check() read the writer's
        state from the mapping: SIGBUS killed the interpreter for a file
        truncated to 0, and a file that lost its last page read as live.
        The reader runs in a child process, so that a fault fails this test
        only."""
        code = ("import sys, feedhandler_shm as shm\n"
                "r = shm.open(sys.argv[1], stale_after=3600)\n"
                "r.check()\n"
                "print('open', flush=True)\n"
                "sys.stdin.readline()\n"
                "try:\n"
                "    r.check()\n"
                "except shm.FormatError as e:\n"
                "    print('FormatError', e)\n"
                "else:\n"
                "    print('ok')\n")
        # To 0 bytes; by its last page; to 0 after the name was removed
        # (through a descriptor opened before: check() then has only the
        # reader's own descriptor to ask).
        for cut, unlink in ((0, False), (4096, False), (0, True)):
            with self.subTest(cut=cut, unlink=unlink):
                name = support.feed_name(self)
                # No "beat": the writer process must not touch its mapping
                # while the file is short. So its heartbeat ages from the
                # start: the reader allows it an hour (truncation is
                # checked before liveness), else a child slow to start on a
                # loaded machine (over the default 1 s) found it dead.
                support.control_writer(self, name, instruments=1, depth=1)
                p = subprocess.Popen([sys.executable, "-c", code, name], env=dict(os.environ, PYTHONPATH=support.PYDIR),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self.addCleanup(lambda p=p: p.poll() is None and p.kill())
                line = p.stdout.readline().strip()
                if line != "open":
                    p.kill()
                    self.fail("reader printed %r, want 'open'; its stderr: %s" % (line, p.stderr.read()))
                fd = os.open(name, os.O_RDWR)
                self.addCleanup(os.close, fd)
                size = os.fstat(fd).st_size
                if unlink:
                    os.remove(name)
                os.ftruncate(fd, size - cut if cut else 0)
                out, err = p.communicate("go\n", timeout=60)
                os.ftruncate(fd, size)
                self.assertEqual(p.returncode, 0, "reader exit %d: %s" % (p.returncode, err))
                self.assertTrue(out.startswith("FormatError "), out)
                self.assertIn("truncated", out)

    def test_truncated_under_every_call(self):
        """A feed file truncated under the reader between two checks is
        FormatError from every call that reads the mapping (each fstats the
        file first), not a SIGBUS that kills the interpreter. Before, only
        check() looked: a read, a poll, a lookup... of a file cut to 0, or
        of the page cut off, faulted. The reader runs in a child process, so
        that a fault fails this test only."""
        code = ("import sys, feedhandler_shm as shm\n"
                "r = shm.open(sys.argv[1], stale_after=3600)\n"
                "f = r.follow()\n"
                "r.read(1)\n"
                "print('open', flush=True)\n"
                "sys.stdin.readline()\n"
                "calls = [('heartbeat_ns', r.heartbeat_ns), ('instruments', r.instruments),\n"
                "         ('lookup', lambda: r.lookup('S1')), ('locates', r.locates),\n"
                "         ('version', lambda: r.version(1)), ('read', lambda: r.read(1)),\n"
                "         ('read_bytes', lambda: r.read_bytes(1)), ('read_symbol', lambda: r.read_symbol('S1')),\n"
                "         ('books', r.books), ('follow', r.follow), ('pending', f.pending),\n"
                "         ('poll', f.poll), ('wait', lambda: f.wait(timeout=0)), ('check', r.check)]\n"
                "for name, call in calls:\n"
                "    print(name, flush=True)\n"
                "    try:\n"
                "        call()\n"
                "    except shm.FormatError as e:\n"
                "        print('FormatError', e, flush=True)\n"
                "    else:\n"
                "        print('ok', flush=True)\n")
        for cut, unlink in ((0, False), (4096, False), (0, True)):
            with self.subTest(cut=cut, unlink=unlink):
                name = support.feed_name(self)
                # No "beat": the writer process must not touch its mapping
                # while the file is short.
                w = support.control_writer(self, name, instruments=1, depth=1)
                w.cmd("register 1 S1")
                w.cmd("publish 1 4")
                p = subprocess.Popen([sys.executable, "-c", code, name], env=dict(os.environ, PYTHONPATH=support.PYDIR),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                self.addCleanup(lambda p=p: p.poll() is None and p.kill())
                line = p.stdout.readline().strip()
                if line != "open":
                    p.kill()
                    self.fail("reader printed %r, want 'open'; its stderr: %s" % (line, p.stderr.read()))
                fd = os.open(name, os.O_RDWR)
                self.addCleanup(os.close, fd)
                size = os.fstat(fd).st_size
                if unlink:
                    os.remove(name)
                os.ftruncate(fd, size - cut if cut else 0)
                out, err = p.communicate("go\n", timeout=60)
                os.ftruncate(fd, size)
                lines = out.splitlines()
                self.assertEqual(p.returncode, 0, "reader exit %d after %s: %s" % (
                    p.returncode, lines[-1:] or "nothing", err.strip().splitlines()[-1:]))
                for call, result in zip(lines[::2], lines[1::2]):
                    self.assertTrue(result.startswith("FormatError ") and "truncated" in result,
                                    "%s on a truncated file: %s, want FormatError (truncated)" % (call, result))

    def test_open_truncated_after_mmap(self):
        """A feed file truncated between open's mmap and its reads of the
        header is FormatError from open, which fstats the file before it
        reads the mapping, not a SIGBUS that kills the interpreter. The
        reader runs in a child process whose mmap.mmap truncates the file
        right after mapping it."""
        code = ("import mmap, os, sys, feedhandler_shm as shm\n"
                "real = mmap.mmap\n"
                "def cut(fd, length, **kw):\n"
                "    m = real(fd, length, **kw)\n"
                "    w = os.open(sys.argv[1], os.O_RDWR)\n"
                "    os.ftruncate(w, 0)\n"
                "    os.close(w)\n"
                "    return m\n"
                "mmap.mmap = cut\n"
                "try:\n"
                "    shm.open(sys.argv[1])\n"
                "except shm.FormatError as e:\n"
                "    print('FormatError', e)\n"
                "else:\n"
                "    print('ok')\n")
        name = support.feed_name(self)
        # No "beat": the writer process must not touch its mapping while
        # the file is short.
        support.control_writer(self, name, instruments=1, depth=1)
        fd = os.open(name, os.O_RDWR)
        self.addCleanup(os.close, fd)
        size = os.fstat(fd).st_size
        p = subprocess.run([sys.executable, "-c", code, name], env=dict(os.environ, PYTHONPATH=support.PYDIR),
                           capture_output=True, text=True, timeout=60)
        os.ftruncate(fd, size)
        self.assertEqual(p.returncode, 0, "reader exit %d: %s" % (p.returncode, p.stderr))
        self.assertTrue(p.stdout.startswith("FormatError ") and "truncated" in p.stdout, p.stdout)

    def test_liveness_clock_steps(self):
        """The writer is judged by whether its heartbeat changes, timed on the
        reader's monotonic clock; the realtime age counts only at open and to
        place a change within the time since the previous look. Before, the
        age was realtime minus the heartbeat: a writer whose clock is an hour
        behind read as dead while it beat, and with the reader's realtime
        stepped an hour back a writer that stopped beating read as live for
        that hour. The writer process never beats by itself here: the test
        writes the heartbeat into the real file."""
        from feedhandler_shm import reader as reader_mod

        # a live pid: only the stale limit says dead
        name, mm = self._open_feed_mapped(os.getpid())

        with self.subTest("writer an hour behind, advancing"):
            hb = time.time_ns() - 3600 * 10**9
            struct.pack_into("<q", mm, layout.OFF_HEARTBEAT, hb)
            r = shm.open(name)
            self.addCleanup(r.close)
            with self.assertRaises(shm.WriterDeadError):
                r.check()  # the look at open: an hour old by realtime
            for i in range(1, 4):
                struct.pack_into("<q", mm, layout.OFF_HEARTBEAT, hb + i * 10**9)
                r.check()  # before: WriterDeadError

        with self.subTest("reader realtime an hour back, writer stopped"):
            r, real, mono = self._open_fresh_clocks_saved(name, mm)
            reader_mod._real_ns = lambda: real() - 3600 * 10**9
            reader_mod._mono_ns = lambda: mono() + 11 * 10**9  # past the stale limit, heartbeat unchanged
            with self.assertRaises(shm.WriterDeadError):
                r.check()  # before: live, the heartbeat an hour in the future
            struct.pack_into("<q", mm, layout.OFF_HEARTBEAT, time.time_ns())
            r.check()  # it beat again
            reader_mod._real_ns, reader_mod._mono_ns = real, mono

    def _open_fresh_clocks_saved(self, name, mm):
        """A reader of feed name, open and checked just after a beat written
        through mm, and the reader's clocks (reader._real_ns, _mono_ns),
        put back at the test's end, so that the test may replace them."""
        from feedhandler_shm import reader as reader_mod

        struct.pack_into("<q", mm, layout.OFF_HEARTBEAT, time.time_ns())
        r = shm.open(name)
        self.addCleanup(r.close)
        r.check()
        real, mono = reader_mod._real_ns, reader_mod._mono_ns
        self.addCleanup(setattr, reader_mod, "_real_ns", real)
        self.addCleanup(setattr, reader_mod, "_mono_ns", mono)
        return r, real, mono

    def test_liveness_reader_stall(self):
        """A reader that loses the CPU in the middle of a look at the heartbeat
        (a loaded machine, a stopped process) for longer than the stale limit,
        while the writer beats on, does not take its own stall for the
        writer's age. Before, it loaded the heartbeat and then read its
        clocks: the heartbeat it held was as old as its stall, and a stall
        past the stale limit read as WriterDeadError for a writer that never
        missed a beat (Go's TestLivenessReaderStall)."""
        from feedhandler_shm import reader as reader_mod

        # a live pid: only the stale limit (10 s) says dead
        name, mm = self._open_feed_mapped(os.getpid())
        r, real, mono = self._open_fresh_clocks_saved(name, mm)
        off = [0]
        stall = [True]

        def stalled_real():
            # The next reading of the reader's realtime clock comes after a
            # stall of 12 s of both its clocks, at whose end the writer beats.
            if stall[0]:
                stall[0] = False
                off[0] += 12 * 10**9
                struct.pack_into("<q", mm, layout.OFF_HEARTBEAT, real() + off[0])
            return real() + off[0]

        reader_mod._real_ns = stalled_real
        reader_mod._mono_ns = lambda: mono() + off[0]
        r.check()  # before: WriterDeadError, heartbeat 12 s old
        off[0] += 12 * 10**9  # a writer that stops beating is still dead past the stale limit
        with self.assertRaises(shm.WriterDeadError):
            r.check()

    def test_stale_heartbeat(self):
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        # The writer's process lives but it never beats: stale after 0.2 s.
        r = shm.open(name, stale_after=0.2)
        self.addCleanup(r.close)
        time.sleep(0.4)
        with self.assertRaises(shm.WriterDeadError) as cm:
            r.check()
        self.assertIn("heartbeat", str(cm.exception))
        w.cmd("beat")  # every 20 ms from now on
        deadline = time.monotonic() + 30
        while r.state()[0] != "live":
            self.assertLess(time.monotonic(), deadline, "writer beats but reader says %s" % (r.state(),))
            time.sleep(0.01)
        self.assertEqual(r.follow().wait(timeout=0.05, check_every=0), [])

    def test_wait_checks_across_short_waits(self):
        """The writer check's clock is the follower's: the first wait that
        finds nothing checks at once, and a loop of waits shorter than
        check_every (or of timeout 0) still checks every check_every."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        self.assertEqual(f.wait(timeout=0), [])  # live: checked, nothing to say
        w.cmd("close")
        start = time.monotonic()
        while True:
            try:
                f.wait(timeout=0.02)  # default check_every 0.1 s
            except shm.ClosedError:
                break
            self.assertLess(time.monotonic() - start, 5, "a loop of wait(0.02) never reported the close "
                            "(state: %s)" % (r.state(),))
        for label, timeout in (("timeout 0", 0), ("timeout 0.02", 0.02)):
            with self.subTest(label):
                with self.assertRaises(shm.ClosedError):
                    r.follow().wait(timeout=timeout)  # a new follower checks in its first wait

    def test_wait_check_every_zero_is_default(self):
        """check_every=0 means the default 0.1 s, as in Go and C++: a wait of
        0.3 s checks the writer a handful of times, not on every pass (before,
        thousands of times: a stat and a kill every 50 us)."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        checks = [0]
        check = r.check

        def counted():
            checks[0] += 1
            return check()
        r.check = counted
        self.assertEqual(r.follow().wait(timeout=0.3, check_every=0), [])
        self.assertGreaterEqual(checks[0], 1)
        self.assertLess(checks[0], 50, "%d writer checks in a wait of 0.3 s" % checks[0])

    def test_wait_spin_and_sleep_zero_are_defaults(self):
        """spin=0 and sleep=0 mean the defaults, 1000 polls and 50 us, as Go's
        WaitOptions{} and C++'s WaitOptions{} read 0 (one call, three
        readers, one meaning). Before, spin=0 spun no poll and sleep=0 slept
        0 s between polls (a busy loop)."""
        from unittest import mock

        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("beat")
        r = shm.open(name)
        self.addCleanup(r.close)
        f = r.follow()
        polls = [0]
        poll = f.poll

        def counted(max_records):
            polls[0] += 1
            return poll(max_records)
        f.poll = counted
        # timeout 0: the spin's polls, then one more before the timeout.
        self.assertEqual(f.wait(timeout=0, spin=0), [])
        self.assertEqual(polls[0], 1001, "polls of a wait with spin=0, want 1000 spun and 1")

        class Slept(Exception):
            pass
        with mock.patch("feedhandler_shm.reader.time.sleep", side_effect=Slept) as sleep:
            with self.assertRaises(Slept):
                f.wait(timeout=3600, spin=1, sleep=0)
        self.assertEqual(sleep.call_args.args, (50e-6,), "sleep of a wait with sleep=0")

    def test_pid_gone_needs_old_heartbeat(self):
        """A writer pid this process cannot see (kill: ESRCH) is death only
        when the heartbeat is also older than two heartbeat intervals: a live
        writer in another pid namespace keeps beating. With a fresher
        heartbeat, stale_after decides."""
        pid = invisible_pid()
        name, mm = self._open_feed_mapped(pid)
        # A reader for each age: a heartbeat made older under an open reader
        # is a change, which is a beat (liveness); the look at open goes by
        # the realtime age.
        for age, want in ((0, "live"), (1.5, "live"), (2.5, "dead"), (11, "dead")):
            with self.subTest(age=age):
                struct.pack_into("<q", mm, layout.OFF_HEARTBEAT, time.time_ns() - int(age * 1e9))
                r = shm.open(name)
                self.addCleanup(r.close)
                st = r.state()
                self.assertEqual(st[0], want, st)
                if want == "dead":
                    self.assertIn("pid %d gone" % pid, st[1])
        with self.assertRaises(shm.WriterDeadError):
            r.check()

    def test_pid_namespace_live_writer(self):
        """A reader in its own pid namespace (a container sharing /dev/shm)
        sees a live, beating writer as live, and a killed one as dead."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("beat")
        code = ("import sys, time, feedhandler_shm as shm\n"
                "r = shm.open(sys.argv[1])\n"
                "print(r.state()[0], flush=True)\n"
                "sys.stdin.readline()\n"
                "deadline = time.monotonic() + 30\n"
                "while r.state()[0] == 'live' and time.monotonic() < deadline:\n"
                "    time.sleep(0.01)\n"
                "print(*r.state())\n")
        out = support.dead_under_pid_namespace(self, w, code, name)
        self.assertIn("pid %d gone" % w.pid, out)

    def test_slot_length_beyond_max_snapshot(self):
        """A slot of even seq whose length exceeds the file's max_snapshot
        is corrupt (the writer stores no such length): FormatError at once,
        not a second of spinning and BusyError."""
        name, w, r = self._beating_feed()
        f = open(name, "r+b")
        self.addCleanup(f.close)
        mm = mmap.mmap(f.fileno(), 0)
        self.addCleanup(mm.close)
        at = r._slots + r._slot_of(1) * r._slot_size + 8  # the slot's len
        for n in (r.info.max_snapshot + 1, 0xFFFFFFFF):
            with self.subTest(len=n):
                layout.U32.pack_into(mm, at, n)
                for call in (r.read, r.read_bytes):  # before the fix: BusyError after 1 s
                    with self.assertRaises(shm.FormatError) as cm:
                        call(1)
                    self.assertIn("locate 1", str(cm.exception))

    def test_calls_after_close(self):
        """After close(), every method of the Reader and of its Follower
        raises ReaderClosedError (Go: an error wrapping fs.ErrClosed), a
        ShmError and not the writer's ClosedError; close again is a no-op."""
        name, w, r = self._beating_feed()
        f = r.follow()
        r.close()
        r.close()
        calls = [("read", lambda: r.read(1)), ("read_bytes", lambda: r.read_bytes(1)),
                 ("read_symbol", lambda: r.read_symbol("S1")), ("books", r.books), ("check", r.check),
                 ("state", r.state), ("heartbeat_ns", r.heartbeat_ns), ("instruments", r.instruments),
                 ("lookup", lambda: r.lookup("S1")), ("locates", r.locates), ("version", lambda: r.version(1)),
                 ("follow", r.follow), ("Follower", lambda: shm.Follower(r)), ("poll", f.poll), ("pending", f.pending),
                 ("wait", lambda: f.wait(timeout=0)), ("wait spin 0", lambda: f.wait(timeout=0, spin=0))]
        for label, call in calls:
            with self.subTest(label):
                with self.assertRaises(shm.ReaderClosedError) as cm:
                    call()
                self.assertIsInstance(cm.exception, shm.ShmError)
                self.assertNotIsInstance(cm.exception, shm.ClosedError)
                self.assertIn("%s: reader: file already closed" % name, str(cm.exception))
        # What reads nothing from the file still answers.
        self.assertEqual(r.info.writer_pid, w.pid)
        with r:
            pass

    def test_slot_left_locked(self):
        """A slot whose seqlock stays odd: BusyError while the writer lives
        (after a second), WriterDeadError once it is gone, ClosedError when
        the feed was closed; never a hang, never a torn book."""
        name, w, r = self._beating_feed()
        w.cmd("lockslot 1")
        with self.assertRaises(shm.BusyError):
            r.read(1)
        w.kill()
        with self.assertRaises(shm.WriterDeadError):
            r.read(1)
        self.assertEqual(r.version(1), 1)
        # A new writer replaces the file: r still maps the old one, whose
        # writer died inside a publish. That is what the read says, not
        # BusyError (a live writer holding the slot).
        support.control_writer(self, name, instruments=1, depth=1).cmd("beat")
        with self.assertRaises(shm.RestartedError):
            r.check()
        with self.assertRaises(shm.WriterDeadError):
            r.read(1)

        name2 = support.feed_name(self)
        w2 = support.control_writer(self, name2, instruments=1, depth=1)
        w2.cmd("register 1 S1")
        w2.cmd("publish 1 5")
        w2.cmd("lockslot 1")
        w2.cmd("close")
        with shm.open(name2) as r2:
            with self.assertRaises(shm.ClosedError):
                r2.read(1)

    def test_unknown_and_no_data(self):
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=4, depth=2)
        w.cmd("register 1 AAA")
        with shm.open(name) as r:
            with self.assertRaises(shm.NoDataError):
                r.read(1)
            # None: lookup's answer for a symbol not registered, passed on
            # as SHM.md's example does (loc = r.lookup(...); r.read(loc)),
            # is an unknown locate, as Go's Read of Lookup's 0: it was a
            # TypeError from inside the reader ('<=' not supported between
            # instances of 'int' and 'NoneType').
            for bad in (2, 70000, -1, None):
                with self.assertRaises(shm.UnknownLocateError):
                    r.read(bad)
                with self.assertRaises(shm.UnknownLocateError):
                    r.read_bytes(bad)
                self.assertEqual(r.version(bad), 0)
            with self.assertRaises(shm.UnknownLocateError):
                r.read_symbol("BBB")
            self.assertIsNone(r.lookup("BBB"))
            self.assertEqual(r.version(1), 0)
            # Instruments registered after the reader opened show up.
            w.cmd("register 7 BBB")
            w.cmd("publish 7 4")
            self.assertEqual(r.lookup("BBB"), 7)
            self.assertEqual(r.instruments(), [shm.Instrument(1, "AAA"), shm.Instrument(7, "BBB")])
            self.assertEqual(r.read_symbol("BBB").seq, 4)
            self.assertEqual(r.books()[0].locate, 7)

    def test_permission_denied(self):
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("close")
        os.chmod(name, 0o600)
        if os.geteuid() != 0:
            os.chmod(name, 0)
            with self.assertRaises(shm.PermissionDeniedError) as cm:
                shm.open(name)
            self.assertIn("permission denied", str(cm.exception))
            return
        # Root reads anything: open as nobody in a child, with a copy of the
        # package it can read.
        tmp = tempfile.mkdtemp(prefix="fh-pytest-perm-")
        self.addCleanup(shutil.rmtree, tmp, True)
        shutil.copytree(os.path.join(support.PYDIR, "feedhandler_shm"), os.path.join(tmp, "feedhandler_shm"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(tmp):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        code = ("import sys, feedhandler_shm as shm\n"
                "try:\n    shm.open(sys.argv[1])\n"
                "except shm.PermissionDeniedError as e:\n    print('denied:', e); sys.exit(0)\n"
                "except Exception as e:\n    print('other:', type(e).__name__, e); sys.exit(1)\n"
                "print('opened'); sys.exit(1)\n")
        p = subprocess.run([support.python_cmd(), "-c", code, name], cwd=tmp, user=65534, group=65534,
                           extra_groups=[], env={"PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"},
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("permission denied: file mode -rw-------", p.stdout)

    def test_cli_checks_before_reading(self):
        """python3 -m feedhandler_shm takes the writer's state before it reads
        the books, as feedhandler bookview --once does: a file truncated under
        the reader is the check's error, exit 1, and no book is read from it.
        Before, it read the books first (a SIGBUS, until every call fstatted
        the file first: then the error of the first read, not the check's).
        The truncation comes between the open and the first read, through
        open_wait, which the command calls."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=1, depth=1)
        w.cmd("register 1 S1")
        w.cmd("publish 1 4")
        # No "beat": the writer process must not touch its mapping once the
        # file is short (the check looks at the size before liveness).
        code = ("import os, sys, feedhandler_shm.__main__ as cli\n"
                "open_wait = cli.open_wait\n"
                "def cut(name, timeout):\n"
                "    r = open_wait(name, timeout)\n"
                "    fd = os.open(r.path, os.O_RDWR)\n"
                "    os.ftruncate(fd, 0)\n"
                "    os.close(fd)\n"
                "    return r\n"
                "cli.open_wait = cut\n"
                "sys.exit(cli.main(sys.argv[1:]))\n")
        p = subprocess.run([sys.executable, "-c", code, "--shm", name], cwd=support.PYDIR,
                           env=dict(os.environ, PYTHONPATH=support.PYDIR), capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stdout), (1, ""), p.stderr)
        self.assertTrue(p.stderr.startswith("feedhandler_shm: check shm ") and "truncated" in p.stderr,
                        "stderr %r, want the check's error (truncated)" % p.stderr)

    def test_cli_errors(self):
        name = support.feed_name(self)
        p = subprocess.run([support.python_cmd(), "-m", "feedhandler_shm", "--shm", name], cwd=support.PYDIR,
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("feed does not exist", p.stderr)
        self.assertEqual(p.stdout, "")
        # Live, closed, dead: exit status and the state on stderr.
        w = support.control_writer(self, name, instruments=2, depth=2)
        w.cmd("register 1 S1")
        w.cmd("publish 1 4")
        w.cmd("beat")
        cli = [support.python_cmd(), "-m", "feedhandler_shm", "--shm", name]
        live = subprocess.run(cli, cwd=support.PYDIR, capture_output=True, text=True)
        self.assertEqual((live.returncode, live.stderr), (0, ""))
        want = support.fill_snapshot(1, 4, 2)

        def levels(ls):
            return "[" + ", ".join("[%d, %d, %d]" % (p, s, o) for p, o, s in ls) + "]"

        self.assertEqual(live.stdout, '{\n"S1": {"bids": %s, "asks": %s}\n}\n' % (
            levels(want["bids"]), levels(want["asks"])))
        w.kill()
        with shm.open(name) as r:
            wait_state(self, r, "dead")  # two heartbeat intervals after the kill
        dead = subprocess.run(cli, cwd=support.PYDIR, capture_output=True, text=True)
        self.assertEqual(dead.returncode, 4, dead.stderr)
        self.assertIn("writer dead", dead.stderr)
        self.assertEqual(dead.stdout, live.stdout)
        ok = subprocess.run(cli + ["--allow-stopped"], cwd=support.PYDIR, capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0)
        self.assertIn("writer dead", ok.stderr)


if __name__ == "__main__":
    unittest.main()
