"""The decoder and the JSON writer on their own: a corrupt or foreign
snapshot is FormatError (never an out-of-range read or garbage), and the
JSON shape's corner cases match bookview's (checked against the Go command)."""

import struct
import subprocess
import unittest

import feedhandler_shm as shm
from feedhandler_shm import booksjson, layout

from . import support


class DecodeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._cleanups_cls = unittest.TestCase()
        name = support.feed_name(cls._cleanups_cls)
        cls.w = support.control_writer(cls._cleanups_cls, name, instruments=4, depth=4)
        cls.w.cmd("register 2 ABCDEFGH")
        cls.w.cmd("publish 2 14")  # 14 % 5 = 4 bids, (14 // 3) % 5 = 4 asks
        with shm.open(name) as r:
            cls.good, cls.version = r.read_bytes(2)
            cls.depth = r.info.depth

    @classmethod
    def tearDownClass(cls):
        cls._cleanups_cls.doCleanups()

    def test_good(self):
        b = shm.decode(self.good, self.version, self.depth)
        self.assertEqual((b.symbol, b.bid_count, b.ask_count), ("ABCDEFGH", 4, 4))
        self.assertIsNone(support.book_mismatch(b, self.depth, symbol="ABCDEFGH"))

    def test_corrupt(self):
        def patched(off, fmt, value):
            b = bytearray(self.good)
            struct.pack_into(fmt, b, off, value)
            return bytes(b)

        bids = layout.bids_at(8)
        cases = {
            "empty": b"",
            "short": self.good[:100],
            "identifier": patched(4, "<4s", b"XXXX"),
            "vtable": patched(layout.VTABLE_AT + 4, "<H", 99),
            "symbol length": patched(layout.SYMBOL_AT, "<I", 9),
            "bid count over depth": patched(bids, "<I", self.depth + 1),
            "bid count past the copy": patched(bids, "<I", 1000),
            "ask count": patched(bids + 8 + 4 * layout.LEVEL_SIZE, "<I", 1 << 30),
            "truncated": self.good[:-1],
            "bids offset": patched(layout.TABLE_AT + layout.F_BIDS, "<I", 4),
        }
        for label, data in cases.items():
            with self.subTest(label):
                with self.assertRaises(shm.FormatError):
                    shm.decode(data, 1, self.depth)
        # The lower depth bound is the feed's: a depth-3 reader refuses 4 levels.
        with self.assertRaises(shm.FormatError):
            shm.decode(self.good, 1, 3)


class JSONTest(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(booksjson.books_json([]), "{\n}\n")

    def test_quote(self):
        self.assertEqual(booksjson.go_quote('A"B\\C\x01\n'), '"A\\"B\\\\C\\x01\\n"')
        # strconv.Quote("\xc4B\x7f\u00ad\u00e9"): a byte that is not UTF-8
        # (the reader's surrogate escape), DEL, a rune not printable, one
        # printable.
        self.assertEqual(booksjson.go_quote("\udcc4B\x7f\u00ad\u00e9"), '"\\xc4B\\x7f\\u00ad\u00e9"')

    def test_moved_symbol_and_empty_books_match_bookview(self):
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=8, depth=3)
        # One symbol registered at two locates: it moves to the second (the
        # writer retires the first entry and unbinds locate 9, so no
        # SYM#locate key appears), a book with no levels (left out: k = 0
        # mod 4 and k / 3 = 0 mod 4 gives no bids and no asks), one never
        # published (left out).
        for loc, sym, k in ((9, "DUP", 5), (4, "DUP", 7), (6, "B", 5), (7, "EMPTY", 12), (8, "NONE", 0)):
            w.cmd("register %d %s" % (loc, sym))
            if k:
                w.cmd("publish %d %d" % (loc, k))
        w.cmd("close")
        view = subprocess.run([support.feedhandler(), "bookview", "--shm", name, "--once", "--json"],
                              capture_output=True, text=True)
        self.assertEqual(view.returncode, 3, view.stderr)  # the writer closed the feed
        self.assertIn('"DUP"', view.stdout)
        self.assertNotIn('"DUP#', view.stdout)
        self.assertNotIn("EMPTY", view.stdout)
        with shm.open(name) as r:
            self.assertEqual(booksjson.books_json(booksjson.book_entries(r.books())), view.stdout)


    def test_non_ascii_symbols_match_go(self):
        """A symbol with bytes beyond ASCII (UTF-8 here; ITCH sends printable
        ASCII, a writer stores any bytes) reads as the Go reader reads it:
        lookup finds it by the same string, and the JSON is bookview's byte
        for byte (strconv.Quote keeps printable runes, escapes the others).
        Before, the Python reader decoded symbols as ASCII with U+FFFD for
        every other byte: lookup missed the symbol and the JSON key was
        "\\xef\\xbf\\xbd..." where bookview prints the symbol."""
        name = support.feed_name(self)
        w = support.control_writer(self, name, instruments=4, depth=3)
        syms = {1: "\u00c4B", 2: "X\u00ad", 3: "\u00e9t\u00e9"}  # printable, not printable (soft hyphen), printable
        for loc, sym in syms.items():
            w.cmd("register %d %s" % (loc, sym))
            w.cmd("publish %d 5" % loc)
        w.cmd("close")
        view = subprocess.run([support.feedhandler(), "bookview", "--shm", name, "--once", "--json"],
                              capture_output=True)
        self.assertEqual(view.returncode, 3, view.stderr)  # the writer closed the feed
        with shm.open(name) as r:
            for loc, sym in syms.items():
                self.assertEqual(r.lookup(sym), loc, "lookup(%r)" % sym)
                self.assertEqual(r.read(loc).symbol, sym)
            got = booksjson.books_json(booksjson.book_entries(r.books())).encode("utf-8")
        self.assertEqual(got, view.stdout)


if __name__ == "__main__":
    unittest.main()
