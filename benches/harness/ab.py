"""Interleaved A/B of two Strata builds on TPC-H (docs/performance.md,
"Scans: parallel by batch ..."): over a data directory and DuckDB file the
harness left (`run.py --workdir DIR`), runs every query on DuckDB, then on
`strata serve` of BEFORE, then of AFTER, ITERATIONS times, and prints a
markdown table of medians, ratios and answer checks. Interleaving keeps a
busy machine's load the same for both builds.

    python3 benches/harness/ab.py BEFORE_BIN AFTER_BIN DIR/strata-tpch DIR/tpch.duckdb 3 [SF]
"""
import sys, os, time, math, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tpch
from common import Strata, norm_rows, rows_equal
import duckdb
base, new, sdir, dfile, iters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
sf = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
d, schema, queries, rows = tpch.generate(os.path.expanduser('~/.cache/strata-bench'), sf)
duck = duckdb.connect(dfile, read_only=True)
sb = Strata(base, sdir); sn = Strata(new, sdir)
R = {"duckdb": tpch.DuckRunner("duckdb", duck, 600), "before": tpch.PgRunner("before", sb.dsn, 600, pg_timeout=False), "after": tpch.PgRunner("after", sn.dsn, 600, pg_timeout=False)}
for r in R.values():
    for t in tpch.TABLES: r.run(f"SELECT count(*) FROM {t}")
out = {}
for n, q in queries.items():
    times = {k: [] for k in R}; ans = {}
    for i in range(iters):
        for k, r in R.items():
            rows_, el = r.run(q); times[k].append(el)
            if i == 0: ans[k] = norm_rows(rows_)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    ok = {k: rows_equal(ans["duckdb"], ans[k])[0] for k in ("before", "after")}
    out[n] = med
    print(f"| Q{n} | {med['duckdb']:.1f} | {med['before']:.1f} | {med['after']:.1f} | {med['before']/med['duckdb']:.2f} | {med['after']/med['duckdb']:.2f} | {med['after']/med['before']:.2f} | {'ok' if all(ok.values()) else 'MISMATCH '+str(ok)} |", flush=True)
g = lambda k: math.exp(statistics.mean(math.log(out[n][k] / out[n]['duckdb']) for n in out))
ga = math.exp(statistics.mean(math.log(out[n]['after'] / out[n]['before']) for n in out))
print(f"| geometric mean (22 queries) | | | | {g('before'):.2f} | {g('after'):.2f} | {ga:.2f} | |")
print("totals ms:", {k: round(sum(out[n][k] for n in out)) for k in R})
print("hash join retries before/after:", sum('hash join ran out' in l for l in sb.stderr_tail), sum('hash join ran out' in l for l in sn.stderr_tail))
sb.stop(); sn.stop()
