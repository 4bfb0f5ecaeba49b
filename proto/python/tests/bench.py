"""Benchmarks of the Python reader against the Go writer.

    cd proto/python && python3 -m tests.bench      (or: go test -run '^$' -bench Python ./proto/python)

read: consistent read of a depth-10 book, both sides full (seqlock copy,
check, decode of the scalar fields), no writer active; read+levels also
builds both Level lists, read+arrays both NumPy arrays instead (when NumPy
is installed); read_bytes is the seqlock copy alone. Each is the
median of 15 runs of 20000 reads.
publish->read: a Go writer process publishes depth-10 snapshots 20 us apart
(as BenchmarkPublishToReader); this process spins on the journal, reads each
update and subtracts the snapshot's publish_time from its clock.
"""

import os
import statistics
import sys
import time
import timeit
import unittest

import feedhandler_shm as shm

from . import support


class _Case(unittest.TestCase):
    def runTest(self):
        pass


def bench_read(case):
    name = support.feed_name(case)
    w = support.control_writer(case, name, instruments=1, depth=10)
    w.cmd("register 1 AAPL")
    w.cmd("publish 1 32")  # 10 bids, 10 asks
    w.cmd("beat")
    r = shm.open(name)
    case.addCleanup(r.close)
    b = r.read(1)
    assert (b.bid_count, b.ask_count) == (10, 10), b
    out = {}
    number = 20000
    cases = [("read_bytes", "r.read_bytes(1)"), ("read", "r.read(1)"),
             ("read+levels", "b = r.read(1); b.bids; b.asks")]
    if shm.LEVEL_DTYPE is not None:
        cases.append(("read+arrays", "b = r.read(1); b.bids_array(); b.asks_array()"))
    for label, stmt in cases:
        runs = timeit.repeat(stmt, globals={"r": r}, number=number, repeat=15)
        out[label] = statistics.median(runs) / number * 1e9
    return out


def bench_latency(case, count=20000):
    name = support.feed_name(case)
    w = support.Writer(case, "latency", name, instruments=1, depth=10, count=count)
    w.expect("ready")
    r = shm.open(name)
    case.addCleanup(r.close)
    f = r.follow()
    w.proc.stdin.write("go\n")
    w.proc.stdin.flush()
    lat = []
    now = time.time_ns
    while True:
        try:
            ups = f.wait(timeout=1.0, spin=20000)
        except shm.ClosedError:
            break
        except shm.OverrunError as e:
            ups = e.updates
        for u in ups:
            b = r.read(u.locate)
            if b.version == u.version:
                lat.append(now() - b.publish_time)
    w.finish()
    lat.sort()
    return {"n": len(lat), "p50": lat[len(lat) // 2], "p99": lat[len(lat) * 99 // 100], "max": lat[-1]}


def main():
    case = _Case()
    try:
        reads = bench_read(case)
        for k, v in reads.items():
            print("python %-12s %8.0f ns (median)" % (k, v))
        lat = bench_latency(case)
        print("python publish->read n %d p50 %d ns p99 %d ns max %d ns" % (lat["n"], lat["p50"], lat["p99"], lat["max"]))
    finally:
        case.doCleanups()
    print("python %s, %s" % (sys.version.split()[0], sys.executable))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
