"""Cross-language equality: ``feedhandler replay --shm`` of a generated day
while this reader follows the journal; afterwards the books it followed, and
``python3 -m feedhandler_shm``, are byte for byte ``bookview --once --json``."""

import os
import shutil
import subprocess
import tempfile
import unittest

import feedhandler_shm as shm
from feedhandler_shm import booksjson

from . import support

try:
    import numpy
except ImportError:
    numpy = None


class ReplayTest(unittest.TestCase):
    def test_follow_replay_matches_bookview(self):
        fh, day = support.feedhandler(), support.day()
        name = support.feed_name(self)
        out = tempfile.mkdtemp(prefix="fh-pytest-replay-")
        self.addCleanup(shutil.rmtree, out, True)
        books_out = os.path.join(out, "books3.json")
        replay = subprocess.Popen([fh, "replay", "--quiet", "--shm", name, "--books-out", books_out,
                                   "--depth", "3", day], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: replay.poll() is None and replay.kill())
        r = shm.open_wait(name, timeout=60, poll=0.001)
        self.addCleanup(r.close)
        f = r.follow()
        books = {}
        followed = rescans = 0

        def rescan():
            for loc in r.locates():
                if books.get(loc) is None or books[loc].version != r.version(loc):
                    try:
                        books[loc] = r.read(loc)
                    except shm.NoDataError:
                        pass

        rescan()
        while True:
            try:
                ups = f.wait(timeout=1.0)
            except shm.OverrunError as e:
                ups = e.updates
                rescans += 1
                rescan()
            except shm.ClosedError:
                break
            for u in ups:
                followed += 1
                b = books.get(u.locate)
                if b is None or b.version < u.version:
                    books[u.locate] = r.read(u.locate)
        err = replay.communicate()[1]
        self.assertEqual(replay.returncode, 0, err)
        got = booksjson.books_json(booksjson.book_entries([books[loc] for loc in sorted(books)]))

        view = subprocess.run([fh, "bookview", "--shm", name, "--once", "--json"], capture_output=True)
        # The replay closed the feed: bookview prints the books and exits 3 (closed).
        self.assertEqual(view.returncode, 3, view.stderr)
        want = view.stdout.decode()
        self.assertGreater(len(want), 1000)
        self.assertEqual(got, want, "followed books differ from bookview --once --json")
        print("followed %d journal records, %d overruns (%d lost), %d books, %d JSON bytes equal"
              % (followed, f.overruns, f.lost, len(books), len(want)))

        # The command-line entry point prints the same bytes; the feed is
        # closed, so it says so on stderr and exits 3 (0 with --allow-stopped).
        cli = [support.python_cmd(), "-m", "feedhandler_shm", "--shm", name]
        p = subprocess.run(cli, cwd=support.PYDIR, capture_output=True, text=True)
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("writer closed", p.stderr)
        self.assertEqual(p.stdout, want)
        p = subprocess.run(cli + ["--once", "--json", "--allow-stopped"], cwd=support.PYDIR, capture_output=True,
                           text=True)
        self.assertEqual((p.returncode, p.stdout), (0, want))
        # --depth 3 is replay --books-out --depth 3 (the shm holds 10 levels).
        p = subprocess.run(cli + ["--depth", "3", "--allow-stopped"], cwd=support.PYDIR, capture_output=True,
                           text=True)
        with open(books_out) as fh3:
            self.assertEqual(p.stdout, fh3.read())

        # Every book: the flatc-generated accessors (Debian's flatbuffers
        # runtime) agree with the fast decoder, and so do NumPy arrays.
        for b in books.values():
            s = b.snapshot()
            self.assertTrue(s.SnapshotBufferHasIdentifier(b.flatbuffer, 0))
            self.assertEqual(
                (s.Locate(), s.Symbol().decode(), s.Seq(), s.ExchangeTime(), s.ReceiveTime(), s.PublishTime(),
                 s.TradingState(), s.Flags(), s.BidLevels(), s.AskLevels(), s.LastTradePrice(),
                 s.LastTradeShares(), s.Volume(), s.Messages(), s.SystemEvent()),
                (b.locate, b.symbol, b.seq, b.exchange_time, b.receive_time, b.publish_time, b.trading_state,
                 b.flags, b.bid_levels, b.ask_levels, b.last_trade_price, b.last_trade_shares, b.volume,
                 b.messages, b.system_event))
            for side, n, get in (("bids", s.BidsLength(), s.Bids), ("asks", s.AsksLength(), s.Asks)):
                levels = [(get(i).Price(), get(i).Orders(), get(i).Shares()) for i in range(n)]
                self.assertEqual(levels, [tuple(l) for l in getattr(b, side)], "%s %s" % (b.symbol, side))

    def test_numpy_arrays(self):
        if numpy is None:
            self.skipTest("NumPy not installed (Debian: python3-numpy)")
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=2, depth=10)
        w.cmd("register 5 S5")
        w.cmd("publish 5 32")  # 32 % 11 = 10 bids, (32 // 3) % 11 = 10 asks
        with shm.open(name) as r:
            b = r.read(5)
            for side in ("bids", "asks"):
                a = getattr(b, side + "_array")()
                self.assertEqual(a.dtype, shm.LEVEL_DTYPE)
                self.assertEqual(len(a), 10)
                self.assertEqual([tuple(int(x) for x in row) for row in a.tolist()],
                                 [tuple(l) for l in getattr(b, side)])
                self.assertEqual(a["price"].tolist(), [l.price for l in getattr(b, side)])
                self.assertEqual(a["shares"].tolist(), [l.shares for l in getattr(b, side)])


if __name__ == "__main__":
    unittest.main()
