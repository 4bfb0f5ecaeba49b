#!/usr/bin/env python3
"""Snapshot every book of a feed into a pandas DataFrame, or CSV without pandas.

    PYTHONPATH=proto/python python3 proto/python/examples/snapshot_books.py --shm itch
    PYTHONPATH=proto/python python3 proto/python/examples/snapshot_books.py --shm itch --csv books.csv

One row per instrument with something published: top of book, last trade,
volume, and the writer's timestamps. With pandas installed the DataFrame is
printed (or written with --csv); without it, CSV goes to stdout (or --csv).
A strategy starts here: replace the print with its own analysis.
"""

import argparse
import csv
import sys

import feedhandler_shm as shm

COLUMNS = ["symbol", "locate", "version", "seq", "state", "flags", "bid_price", "bid_shares", "bid_orders",
           "ask_price", "ask_shares", "ask_orders", "bid_levels", "ask_levels", "last_trade_price",
           "last_trade_shares", "volume", "messages", "exchange_time", "publish_time"]


def rows(reader):
    """One dict per published book, prices as ITCH integers (4 implied decimals)."""
    out = []
    for b in reader.books():
        bid, ask = b.best_bid(), b.best_ask()
        out.append({
            "symbol": b.symbol, "locate": b.locate, "version": b.version, "seq": b.seq,
            "state": b.trading_state_name(), "flags": "|".join(b.flag_names()),
            "bid_price": bid.price if bid else None, "bid_shares": bid.shares if bid else None,
            "bid_orders": bid.orders if bid else None,
            "ask_price": ask.price if ask else None, "ask_shares": ask.shares if ask else None,
            "ask_orders": ask.orders if ask else None,
            "bid_levels": b.bid_levels, "ask_levels": b.ask_levels,
            "last_trade_price": b.last_trade_price, "last_trade_shares": b.last_trade_shares,
            "volume": b.volume, "messages": b.messages,
            "exchange_time": b.exchange_time, "publish_time": b.publish_time,
        })
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shm", required=True, metavar="NAME", help="feed name under /dev/shm, or a path")
    p.add_argument("--csv", metavar="FILE", help="write CSV here instead of printing")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for the feed to appear")
    p.add_argument("--no-pandas", action="store_true", help="write CSV with the csv module even if pandas is there")
    args = p.parse_args(argv)
    try:
        with shm.open_wait(args.shm, args.wait) as r:
            data = rows(r)
            state, message = r.state()
    except shm.ShmError as e:
        print("snapshot_books: %s" % e, file=sys.stderr)
        return 1
    if state != "live":
        # The books are the writer's last ones; say so.
        print("snapshot_books: writer %s: %s" % (state, message), file=sys.stderr)
    try:
        if args.no_pandas:
            raise ImportError
        import pandas as pd
    except ImportError:
        out = open(args.csv, "w", newline="") if args.csv else sys.stdout
        try:
            w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(data)
        finally:
            if args.csv:
                out.close()
        return 0
    df = pd.DataFrame(data, columns=COLUMNS).set_index("symbol")
    if args.csv:
        df.to_csv(args.csv)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(df)
    return 0


if __name__ == "__main__":
    sys.exit(main())
