"""The example script (examples/snapshot_books.py) on a real feed: its CSV
(the fallback without pandas, and pandas' when installed) holds every book."""

import csv
import io
import os
import subprocess
import tempfile
import unittest

from . import support

SCRIPT = os.path.join(support.PYDIR, "examples", "snapshot_books.py")

try:
    import pandas
except ImportError:
    pandas = None


class ExampleTest(unittest.TestCase):
    def setUp(self):
        self.name = support.feed_name(self)
        self.w = support.control_writer(self, self.name, instruments=4, depth=3)
        for loc, k in ((3, 7), (9, 8), (12, 0)):
            self.w.cmd("register %d %s" % (loc, support.symbol_of(loc)))
            if k:
                self.w.cmd("publish %d %d" % (loc, k))
        self.w.cmd("beat")

    def run_script(self, *args):
        env = dict(os.environ, PYTHONPATH=support.PYDIR)
        return subprocess.run([support.python_cmd(), SCRIPT, "--shm", self.name] + list(args), env=env,
                              capture_output=True, text=True)

    def check_rows(self, text):
        rows = list(csv.DictReader(io.StringIO(text)))
        self.assertEqual([r["symbol"] for r in rows], ["S3", "S9"])  # S12: nothing published
        for row in rows:
            want = support.fill_snapshot(int(row["locate"]), int(row["seq"]), 3)
            self.assertEqual(row["symbol"], want["symbol"])
            bid = want["bids"][0] if want["bids"] else ("", "", "")
            ask = want["asks"][0] if want["asks"] else ("", "", "")
            self.assertEqual((row["bid_price"], row["bid_orders"], row["bid_shares"]), tuple(str(x) for x in bid))
            self.assertEqual((row["ask_price"], row["ask_orders"], row["ask_shares"]), tuple(str(x) for x in ask))
            self.assertEqual(int(row["volume"]), want["volume"])
            self.assertEqual(int(row["messages"]), want["messages"])

    def test_csv_without_pandas(self):
        p = self.run_script("--no-pandas")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        self.check_rows(p.stdout)

    def test_pandas(self):
        if pandas is None:
            self.skipTest("pandas not installed (Debian: python3-pandas); the CSV fallback is tested")
        with tempfile.NamedTemporaryFile("r", suffix=".csv") as f:
            p = self.run_script("--csv", f.name)
            self.assertEqual(p.returncode, 0, p.stderr)
            text = f.read()
        # pandas writes ints of a column with missing values as floats.
        self.check_rows(text.replace(".0,", ","))

    def test_closed_feed_says_so(self):
        self.w.cmd("close")
        p = self.run_script("--no-pandas")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("writer closed", p.stderr)
        self.check_rows(p.stdout)


if __name__ == "__main__":
    unittest.main()
