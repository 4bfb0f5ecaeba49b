"""python3 -m feedhandler_shm --shm NAME: print every published book as JSON.

The output is byte for byte what ``feedhandler bookview --shm NAME --once
--json`` prints. The writer's state goes to stderr when it is not live, and
the exit status says it: 0 live, 3 closed, 4 dead, 5 restarted (the books
printed are the last ones of the old file). --allow-stopped exits 0 for
those (the state still goes to stderr). The state is taken before the books
are read, as bookview takes it: a file truncated under the reader is an
error before any book is read. Errors opening or reading: 1; usage: 2.
"""

import argparse
import sys

from . import booksjson
from .errors import ShmError
from .reader import open_wait

EXIT_STATE = {"live": 0, "closed": 3, "dead": 4, "restarted": 5}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m feedhandler_shm",
                                description="Print the books published in shared memory as JSON "
                                            "(same bytes as feedhandler bookview --once --json).")
    p.add_argument("--shm", required=True, metavar="NAME", help="feed name under /dev/shm, or a path")
    p.add_argument("--depth", type=int, default=0, help="levels per side (0: every published level)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for the feed to appear")
    p.add_argument("--allow-stopped", action="store_true",
                   help="exit 0 when the writer is closed, dead or restarted (state still on stderr)")
    p.add_argument("--once", action="store_true", help="accepted for bookview compatibility (always once)")
    p.add_argument("--json", action="store_true", help="accepted for bookview compatibility (always JSON)")
    args = p.parse_args(argv)
    if args.depth < 0:
        p.error("--depth %d is negative" % args.depth)
    try:
        with open_wait(args.shm, args.wait) as r:
            # The writer's state first, as bookview --once takes it: a file
            # truncated under the mapping is an error (FormatError) before
            # any book is read from it.
            state, message = r.state()
            text = booksjson.books_json(booksjson.book_entries(r.books(), args.depth))
    except ShmError as e:
        print("feedhandler_shm: %s" % e, file=sys.stderr)
        return 1
    sys.stdout.write(text)
    sys.stdout.flush()
    if state != "live":
        print("feedhandler_shm: writer %s: %s" % (state, message), file=sys.stderr)
        if not args.allow_stopped:
            return EXIT_STATE[state]
    return 0


if __name__ == "__main__":
    sys.exit(main())
