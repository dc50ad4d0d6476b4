"""Interleaved A/B of two Strata builds on the bitemporal harness's
`orders_h` aggregates (docs/performance.md, "The live index read as a few
batches"): over the data directory and DuckDB file the harness left
(`run.py --sf 1 --sections bitemporal --workdir DIR`), serves a copy of the
directory with each build, and runs each query on DuckDB (period columns),
BEFORE and AFTER in turn, ITERATIONS times; prints medians (ms), ratios and
whether the answers agree.

    python3 benches/harness/bitemporal_ab.py BEFORE_BIN AFTER_BIN DIR/strata-bih DIR/bih.duckdb 15
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb
import psycopg
from common import Strata


def queries():
    out = []
    for name, t in (("as of year 2", "2017-01-18"), ("as of year 8", "2022-12-28")):
        out.append((
            f"`orders_h` {name} (system and valid time)",
            f"SELECT o_status, count(*), sum(o_totalprice) FROM orders_h FOR SYSTEM_TIME AS OF TIMESTAMP '{t} 00:00:00Z' "
            f"FOR VALID_TIME AS OF TIMESTAMP '{t} 00:00:00Z' GROUP BY o_status",
            f"SELECT o_status, count(*), sum(o_totalprice) FROM orders_h WHERE sys_from <= TIMESTAMP '{t}' "
            f"AND sys_to > TIMESTAMP '{t}' AND valid_from <= TIMESTAMP '{t}' AND valid_to > TIMESTAMP '{t}' GROUP BY o_status",
        ))
    out.append((
        "`orders_h` now",
        "SELECT o_status, count(*), sum(o_totalprice) FROM orders_h GROUP BY o_status",
        "SELECT o_status, count(*), sum(o_totalprice) FROM orders_h WHERE sys_to = TIMESTAMP '9999-12-31' "
        "AND valid_from <= now()::timestamp AND valid_to > now()::timestamp GROUP BY o_status",
    ))
    return out


def main():
    before, after, sdir, dfile, iters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    scratch = tempfile.mkdtemp(prefix="strata-bih-ab-")
    servers = {}
    try:
        for k, binary in (("before", before), ("after", after)):
            d = os.path.join(scratch, k)
            shutil.copytree(sdir, d)
            servers[k] = Strata(binary, d)
        cons = {k: psycopg.connect(s.dsn, autocommit=True) for k, s in servers.items()}
        duck = duckdb.connect(dfile, read_only=True)
        print("| query | DuckDB | before | after | after/before | after/DuckDB | answers |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for name, q, dq in queries():
            times = {"duckdb": [], "before": [], "after": []}
            ans = {}
            for _ in range(iters):
                for k in times:
                    t0 = time.perf_counter()
                    rows = duck.execute(dq).fetchall() if k == "duckdb" else cons[k].execute(q).fetchall()
                    times[k].append((time.perf_counter() - t0) * 1000)
                    ans[k] = sorted((a, b, round(float(c))) for a, b, c in rows)
            m = {k: statistics.median(v) for k, v in times.items()}
            ok = "equal" if ans["before"] == ans["after"] == ans["duckdb"] else "DIFFER"
            print(f"| {name} | {m['duckdb']:.1f} | {m['before']:.1f} | {m['after']:.1f} | "
                  f"{m['after'] / m['before']:.2f} | {m['after'] / m['duckdb']:.2f} | {ok} |", flush=True)
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
