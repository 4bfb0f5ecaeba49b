"""The books JSON document of ``feedhandler bookview --once --json``.

Byte for byte what Go's book.WriteBooksJSON writes: one object keyed by
symbol (``SYMBOL#locate`` for a second locate with the same symbol, which a
feed file's writer does not keep: a symbol bound to a second locate moves
there), sorted by key, levels ``[price, shares, orders]`` best first.
"""

_ESC = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
        0x22: '\\"', 0x5C: "\\\\"}


def go_quote(s):
    """strconv.Quote of a symbol's bytes, s as the reader decodes them (UTF-8,
    a byte that is not UTF-8 as a surrogate escape): printable runes as they
    are, the others escaped as Go escapes them (\\xNN for a byte that is not
    UTF-8 or an ASCII control, \\uNNNN or \\UNNNNNNNN for other runes).
    str.isprintable stands for Go's unicode.IsPrint (the same categories;
    their Unicode versions may differ on runes assigned in between)."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if c < 0x80:
            if c in _ESC:
                out.append(_ESC[c])
            elif 0x20 <= c < 0x7F:
                out.append(ch)
            else:
                out.append("\\x%02x" % c)
        elif 0xDC80 <= c <= 0xDCFF:  # surrogateescape: the byte c - 0xDC00
            out.append("\\x%02x" % (c - 0xDC00))
        elif ch.isprintable():
            out.append(ch)
        elif c < 0x10000:
            out.append("\\u%04x" % c)
        else:
            out.append("\\U%08x" % c)
    out.append('"')
    return "".join(out)


def _levels(levels):
    return "[" + ", ".join("[%d, %d, %d]" % (l.price, l.shares, l.orders) for l in levels) + "]"


def book_entries(books, depth=0):
    """(key, bids, asks) for the books with resting orders, as bookview keys them.

    books: Book objects in locate order. depth limits levels per side (0: all
    published levels).
    """
    seen = set()
    out = []
    for b in books:
        if b.bid_count == 0 and b.ask_count == 0:
            continue
        key = b.symbol
        if key in seen:
            key += "#%d" % b.locate
        seen.add(key)
        bids, asks = b.bids, b.asks
        if depth > 0:
            bids, asks = bids[:depth], asks[:depth]
        out.append((key, bids, asks))
    return out


def books_json(entries):
    """The JSON document (str) for (key, bids, asks) entries."""
    entries = sorted(entries, key=lambda e: e[0].encode("utf-8", "surrogateescape"))
    parts = ["{"]
    for i, (key, bids, asks) in enumerate(entries):
        parts.append(",\n" if i else "\n")
        parts.append('%s: {"bids": %s, "asks": %s}' % (go_quote(key), _levels(bids), _levels(asks)))
    parts.append("\n}\n")
    return "".join(parts)
