"""Change-feed throughput and lag (docs/ports.md "Measured"):

    python3 benches/harness/feed.py BIN [--rows N] [--subscribers 1,10]

For each subscriber count S, a fresh `strata serve` (BIN, over a temporary
directory) and:

- **catch-up rate**: N rows loaded in transactions of 1,000 rows, then S
  subscribers started at the beginning of the log (`COPY (SUBSCRIBE TO t)
  TO STDOUT`, psycopg, one process each) read them all: rows/s per
  subscriber and in total;
- **lag**: once S new subscribers have read that history, one writer commits 1,000 single-row transactions, one every
  2 ms, every subscriber
  notes when the row arrives: p50 / p99 of (arrival - the commit's system
  time, `_system_time`, which the server assigns before its log write) in
  ms: durability, apply and delivery.

Subscribers are processes (not threads), so the Python client is not the
bottleneck it would be under the GIL.
"""
import argparse
import faulthandler
import datetime as dt
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import psycopg
from common import Strata


def subscriber(dsn, want, q, mode, history=0):
    """Read `want` changes; report (first row time, last row time, lags)."""
    conn = psycopg.connect(dsn, autocommit=True)
    n = 0
    lags = []
    t_first = None
    caught = history == 0
    if caught and mode == "lag":
        q.put(("caught", None))
    with conn.cursor().copy("COPY (SUBSCRIBE TO t) TO STDOUT") as cp:
        q.put(("ready", None))
        for data in cp:
            now = time.time()
            if t_first is None:
                t_first = now
            for line in bytes(data).split(b"\n"):
                if not line:
                    continue
                n += 1
                if mode == "lag":
                    f = line.split(b"\t")
                    if f[7] == b"lag":
                        committed = dt.datetime.fromisoformat(f[1].decode()).timestamp()
                        lags.append((now - committed) * 1000)
            if not caught and n >= history:
                caught = True
                q.put(("caught", None))
            if os.environ.get("FEED_DEBUG") and n % 500 == 0:
                print("subscriber", n, file=sys.stderr, flush=True)
            if n >= want:
                break
        t_last = time.time()
        q.put(("done", (t_first, t_last, n, lags)))
        # Leave without ending the COPY (it never ends): the server stops
        # the stream when the connection is gone.
        q.close()
        q.join_thread()
        os._exit(0)


def main():
    faulthandler.dump_traceback_later(int(os.environ.get("FEED_DUMP", "0")) or 10**6)
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--subscribers", default="1,10")
    a = ap.parse_args()
    for s in [int(x) for x in a.subscribers.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            srv = Strata(a.bin, d)
            try:
                run(srv.dsn, s, a.rows)
            finally:
                srv.stop()


def start(dsn, s, want, mode, history=0):
    q = mp.Queue()
    procs = [mp.Process(target=subscriber, args=(dsn, want, q, mode, history)) for _ in range(s)]
    for p in procs:
        p.start()
    for _ in procs:
        assert q.get(timeout=60)[0] == "ready"
    return q, procs


def finish(q, procs):
    out = [q.get(timeout=600)[1] for _ in procs]
    for p in procs:
        p.join(30)
    return out


def run(dsn, s, rows):
    c = psycopg.connect(dsn, autocommit=True)
    c.execute("CREATE TABLE t (_id BIGINT, k BIGINT, note TEXT)")
    per = 1000
    for i in range(0, rows, per):
        c.execute(
            "INSERT INTO t (_id, k, note) SELECT x, x % 97, 'row ' || x "
            f"FROM generate_series({i}, {i + per - 1}) AS g(x)"
        )
    t0 = time.time()
    q, procs = start(dsn, s, rows, "rate")
    res = finish(q, procs)
    end = max(r[1] for r in res)
    got = sum(r[2] for r in res)
    print(f"subscribers={s} catch-up: {rows:,} rows each, {got / (end - t0):,.0f} rows/s in total, "
          f"{rows / (end - t0):,.0f} rows/s per subscriber (from start to the last subscriber's last row)",
          flush=True)
    # Lag: subscribers from the end of the log.
    q, procs = start(dsn, s, rows + 1000, "lag", history=rows)
    for _ in procs:  # every subscriber has read the history
        assert q.get(timeout=600)[0] == "caught"
    time.sleep(0.5)
    for i in range(1000):
        c.execute("INSERT INTO t (_id, k, note) VALUES (%s, 0, 'lag')", (rows + i,))
        time.sleep(0.002)
    res = finish(q, procs)
    lags = sorted(x for r in res for x in r[3])
    print(f"subscribers={s} lag over {len(lags)} deliveries: p50 {statistics.median(lags):.2f} ms, "
          f"p99 {lags[int(len(lags) * 0.99)]:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
