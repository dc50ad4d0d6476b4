"""Interleaved A/B of Strata builds on prepared point lookups over the wire
(docs/performance.md, "Point lookups: a segment batch decoded once"): for
each build in turn, serves DIR's TPC-H database (current lookups on
`orders`) or bitemporal database (lookups on `orders_h` as of year 5),
warms up over 2,000 sampled keys, then times N lookups from one psycopg
client and reads the server's CPU time from /proc before and after. Server
CPU per lookup is far steadier than latency on a shared machine.

    python3 benches/harness/lookup_ab.py now|past N DIR BIN [BIN ...]

DIR is the harness's --workdir after `run.py --sf 1 --sections
tpch,bitemporal --workdir DIR` (it holds strata-tpch, strata-bih and
tpch.duckdb). Linux only (/proc).
"""
import datetime as dt
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb
import psycopg
from common import Strata


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ("now", "past"):
        sys.exit(__doc__)
    kind, n, work, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    keys = [r[0] for r in duckdb.connect(os.path.join(work, "tpch.duckdb"), read_only=True).execute(
        "SELECT o_orderkey FROM orders USING SAMPLE 2000 ROWS (reservoir, 42)").fetchall()]
    at = (dt.datetime(2015, 1, 1) + dt.timedelta(days=365 * 5 + 17)).strftime("%Y-%m-%d %H:%M:%S")
    db, sql = {
        "now": ("strata-tpch", "SELECT * FROM orders WHERE _id = %s"),
        "past": ("strata-bih", f"SELECT o_custkey, o_status, o_totalprice FROM orders_h "
                               f"FOR SYSTEM_TIME AS OF TIMESTAMP '{at}' FOR VALID_TIME AS OF TIMESTAMP '{at}' "
                               f"WHERE _id = %s"),
    }[kind]
    hz = os.sysconf("SC_CLK_TCK")
    for rnd in range(2):
        for b in bins:
            srv = Strata(b, os.path.join(work, db))
            try:
                c = psycopg.connect(srv.dsn, autocommit=True)
                for k in keys:
                    c.execute(sql, (k,), prepare=True).fetchall()
                t0, lat = cpu_ticks(srv.proc.pid), []
                for i in range(n):
                    t = time.perf_counter()
                    if not c.execute(sql, (keys[i % len(keys)],), prepare=True).fetchall():
                        raise SystemExit(f"{b}: key {keys[i % len(keys)]} not found")
                    lat.append(time.perf_counter() - t)
                t1 = cpu_ticks(srv.proc.pid)
                c.close()
            finally:
                srv.stop()
            lat.sort()
            print(f"round {rnd} {kind} {b}: server CPU {(t1 - t0) / hz / n * 1e6:.1f} µs/lookup, "
                  f"p50 {lat[n // 2] * 1e6:.0f} µs", flush=True)


if __name__ == "__main__":
    main()
