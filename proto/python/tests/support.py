"""Shared helpers of the Python reader's tests: the Go writer they drive, the
feedhandler binary and generated day, unique feed names, and the recomputation
of a test snapshot from (locate, k) that detects torn reads.

Run from proto/python: ``python3 -m unittest discover -s tests -t .``. The
Go test ``go test ./proto/python`` runs them with everything prebuilt; run
alone, they build what they need with ``go`` (skipping when there is no go
tool, unless FH_SHM_REQUIRE is set).
"""

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PYDIR = os.path.join(REPO, "proto", "python")
REQUIRE = bool(os.environ.get("FH_SHM_REQUIRE"))

_counter = itertools.count(1)
_built = {}


def missing(what):
    """Skip, or fail when FH_SHM_REQUIRE says everything must be there."""
    if REQUIRE:
        raise AssertionError("missing: " + what)
    raise unittest.SkipTest(what)


def _build_dir():
    if "dir" not in _built:
        d = tempfile.mkdtemp(prefix="fh-pytest-")
        atexit.register(shutil.rmtree, d, True)
        _built["dir"] = d
    return _built["dir"]


def _go(*args):
    go = shutil.which("go")
    if go is None:
        missing("no go tool to build the Go writer (set FH_SHM_TESTWRITER, or run go test ./proto/python)")
    subprocess.run([go] + list(args), cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def testwriter():
    """The Go writer: the proto/python test binary (TestHelperProcess)."""
    exe = os.environ.get("FH_SHM_TESTWRITER")
    if exe:
        return exe
    if "writer" not in _built:
        out = os.path.join(_build_dir(), "python.test")
        _go("test", "-c", "-o", out, "./proto/python")
        _built["writer"] = out
    return _built["writer"]


def feedhandler():
    exe = os.environ.get("FH_SHM_FEEDHANDLER")
    if exe:
        return exe
    if "feedhandler" not in _built:
        out = os.path.join(_build_dir(), "feedhandler")
        _go("build", "-o", out, "./cmd/feedhandler")
        _built["feedhandler"] = out
    return _built["feedhandler"]


def day():
    """A generated ITCH day (internal/itchgen): 300k messages, 300 symbols."""
    path = os.environ.get("FH_SHM_DAY")
    if path:
        return path
    if "day" not in _built:
        out = os.path.join(_build_dir(), "day.itch")
        _go("run", "./tools/itchgen", "-n", "300000", "-symbols", "300", "-seed", "11", "-o", out)
        _built["day"] = out
    return _built["day"]


def feed_name(test, tag=""):
    """A unique feed path under /dev/shm (pid + counter); removed, with any
    temporary files of its writers, at the test's cleanup."""
    path = "/dev/shm/fh-pytest-%d-%d%s" % (os.getpid(), next(_counter), tag)

    def clean():
        for p in [path] + glob.glob("/dev/shm/.%s.tmp.*" % os.path.basename(path)):
            try:
                os.remove(p)
            except FileNotFoundError:
                pass

    test.addCleanup(clean)
    return path


# The torn-read tests' readers (proto/shm tornStaleAfter, tornStall): a
# stale limit (s) far beyond any stall of a live writer on a loaded
# machine (a writer that exits is still dead after two heartbeat
# intervals, its pid gone), and the one stall their writer makes inside a
# publish, past the default stale limit and busy timeout (1 s).
TORN_STALE_AFTER = 3600
TORN_STALL = "1500ms"


class Writer:
    """A Go writer process (proto/python TestHelperProcess) in one role."""

    def __init__(self, test, role, name, **env):
        e = dict(os.environ)
        e.update({"FH_SHM_TEST_ROLE": role, "FH_SHM_TEST_NAME": name})
        for k, v in env.items():
            e["FH_SHM_TEST_" + k.upper()] = str(v)
        self.proc = subprocess.Popen([testwriter(), "-test.run=^TestHelperProcess$", "-test.count=1"],
                                     env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        test.addCleanup(self.stop)

    def line(self):
        s = self.proc.stdout.readline()
        if not s:
            raise AssertionError("writer exited: %s" % self.proc.wait())
        return s.strip()

    def expect(self, prefix):
        s = self.line()
        if not s.startswith(prefix):
            raise AssertionError("writer said %r, want %r" % (s, prefix))
        return s

    def cmd(self, text, expect_error=False):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.expect("error" if expect_error else "ok")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def finish(self):
        if self.proc.stdin:
            self.proc.stdin.close()
        rest = self.proc.stdout.read()
        code = self.proc.wait()
        if code != 0:
            raise AssertionError("writer exit %d: %s" % (code, rest))
        return rest

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                f.close()


def control_writer(test, name, **env):
    w = Writer(test, "control", name, **env)
    w.expect("ready")
    return w


def pid_writer(test, name):
    """A control writer with S1 at locate 1, its pid published as the seq,
    beating every 20 ms."""
    w = control_writer(test, name, instruments=1, depth=1)
    w.cmd("register 1 S1")
    w.cmd("publish 1 %d" % w.pid)
    w.cmd("beat")
    return w


def dead_under_pid_namespace(test, w, code, name):
    """Run the Python code (argv[1] is the feed name) as a reader in its own
    pid namespace (a container sharing /dev/shm), which cannot see the
    writer w's pid; kill w once the reader printed its first line, which
    must be "live", then send the reader a line. The rest of the reader's
    output, which must start with "dead "; it must exit 0. Skips without
    root or unshare(1)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        test.skipTest("needs root and unshare(1) to put a reader in its own pid namespace")
    p = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c", code, name],
                         env=dict(os.environ, PYTHONPATH=PYDIR), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    test.addCleanup(lambda: p.poll() is None and p.kill())
    first = p.stdout.readline().strip()
    w.kill()
    out, err = p.communicate("go\n", timeout=60)
    test.assertEqual(p.returncode, 0, err)
    test.assertEqual(first, "live", err)
    test.assertTrue(out.startswith("dead "), out)
    return out


def symbol_of(locate):
    return "S%d" % locate


def fill_snapshot(locate, k, depth):
    """The k-th test snapshot of locate, as the Go fillSnapshot writes it."""
    m32 = 0xFFFFFFFF
    nb = k % (depth + 1)
    na = (k // 3) % (depth + 1)
    return {
        "locate": locate,
        "symbol": symbol_of(locate),
        "seq": k,
        "exchange_time": (k * 3 + locate) & 0xFFFFFFFFFFFFFFFF,
        "receive_time": k * 5,
        "trading_state": k % 5,
        "flags": k & 0xF,
        "system_event": ord("A") + k % 26,
        # Level fields in book.fbs order: price, orders, shares.
        "bids": [((k + 1000 - i) & m32, (i + locate) & m32, k * 7 + i) for i in range(nb)],
        "asks": [((k + 2000 + i) & m32, (i ^ k) & m32, k * 13 + i) for i in range(na)],
        "bid_levels": (nb + k % 7) & m32,
        "ask_levels": (na + k % 11) & m32,
        "last_trade_price": (k ^ locate) & m32,
        "last_trade_shares": k * 17,
        "volume": k * 19,
        "messages": k + locate,
    }


def book_mismatch(book, depth, symbol=None):
    """The first field of book that differs from the snapshot its (locate, seq)
    says it is, or None: a torn copy mixes two publications and shows here.
    symbol: the registered symbol when it is not symbol_of(locate)."""
    want = fill_snapshot(book.locate, book.seq, depth)
    if symbol is not None:
        want["symbol"] = symbol
    for key, w in want.items():
        got = getattr(book, key)
        if key in ("bids", "asks"):
            got = [tuple(l) for l in got]
        if got != w:
            return "locate %d seq %d: %s = %r, want %r" % (book.locate, book.seq, key, got, w)
    if book.publish_time == 0:
        return "locate %d seq %d: publish time not stamped" % (book.locate, book.seq)
    return None


def python_cmd():
    """The interpreter running the tests (Debian's /usr/bin/python3 under go test)."""
    return sys.executable
