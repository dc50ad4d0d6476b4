#!/usr/bin/env python3
"""Strata's Python package beside DuckDB's Python API, in one process, on the
same data (issue: "Strata in Python").

    python3 benches/harness/python_api.py --sf 1            # builds the package (release) first
    python3 benches/harness/python_api.py --sf 1 --site DIR  # a package already installed into DIR

Measures, median of --iterations (after one warm-up):
- loading TPC-H from Arrow tables (`con.insert` vs DuckDB `CREATE TABLE AS
  SELECT * FROM arrow_table`), rows/s;
- TPC-H Q1 and Q6 to pandas (`.df()`), checked equal;
- a 1 M-row result (four lineitem columns) to a pyarrow Table;
- a 10 M-row result (`generate_series` / `range`) to a pyarrow Table: with
  a per-row copy this would take seconds.
The TPC-H Arrow files come from the harness's cache (benches/harness/tpch.py).
"""

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)


def build_release(site):
    wheels = tempfile.mkdtemp(prefix="strata-wheel-")
    atexit.register(shutil.rmtree, wheels, True)
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "strata-target"))
    subprocess.run(
        ["maturin", "build", "--release", "--compression-method", "stored", "-o", wheels,
         "--manifest-path", os.path.join(ROOT, "python", "Cargo.toml")],
        check=True, env=env,
    )
    wheel = [os.path.join(wheels, w) for w in os.listdir(wheels) if w.endswith(".whl")][0]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--target", site, wheel], check=True)


def duck_arrow(rel):
    """A DuckDB relation as a pyarrow Table (DuckDB 1.5's `.arrow()` gives a
    RecordBatchReader; reading it is part of the time)."""
    out = rel.arrow()
    return out.read_all() if hasattr(out, "read_all") else out


def timed(fn, iterations):
    fn()  # warm-up
    times = []
    out = None
    for _ in range(iterations):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--site", help="directory the strata package is installed in (else: build a release wheel)")
    ap.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "strata-bench"))
    args = ap.parse_args()

    site = args.site
    if not site:
        site = tempfile.mkdtemp(prefix="strata-site-")
        build_release(site)
    sys.path.insert(0, site)

    import duckdb
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc as ipc

    import strata
    from tpch import TABLES, generate

    d, _schema, queries, rows = generate(args.cache_dir, args.sf)
    arrow = {}
    for t in TABLES:
        with pa.memory_map(f"{d}/{t}.arrow") as f:
            arrow[t] = ipc.open_file(f).read_all()

    work = tempfile.mkdtemp(prefix="strata-pybench-")
    # Both databases (several GB at SF 1) go when the process ends, however it ends.
    atexit.register(shutil.rmtree, work, True)
    results = []

    # --- load from Arrow -------------------------------------------------------
    total_rows = sum(arrow[t].num_rows for t in TABLES)
    st = strata.connect(os.path.join(work, "strata"))
    t0 = time.perf_counter()
    for t in TABLES:
        st.insert(t, arrow[t])
    st_load = time.perf_counter() - t0
    dk = duckdb.connect(os.path.join(work, "tpch.duckdb"))
    t0 = time.perf_counter()
    for t in TABLES:
        tbl = arrow[t]  # noqa: F841 (DuckDB scans the Python variable)
        dk.execute(f"CREATE TABLE {t} AS SELECT * FROM tbl")
    dk.execute("CHECKPOINT")
    dk_load = time.perf_counter() - t0
    results.append(("load TPC-H from Arrow (rows/s)", total_rows / st_load, total_rows / dk_load, "rate"))

    # --- Q1 and Q6 to pandas ---------------------------------------------------------
    for n in (1, 6):
        q = queries[n]
        s_t, s_df = timed(lambda: st.sql(q).df(), args.iterations)
        d_t, d_df = timed(lambda: dk.sql(q).df(), args.iterations)
        a = s_df.astype(object).where(pd.notna(s_df), None).values.tolist()
        b = d_df.astype(object).where(pd.notna(d_df), None).values.tolist()
        same = len(a) == len(b) and all(
            all(
                (x == y) or (isinstance(x, (int, float)) and isinstance(y, (int, float)) and abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(y))))
                or (hasattr(x, "__float__") and hasattr(y, "__float__") and abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(y))))
                for x, y in zip(ra, rb)
            )
            for ra, rb in zip(a, b)
        )
        if not same:
            print(f"Q{n}: answers differ\nstrata:\n{s_df}\nduckdb:\n{d_df}")
            sys.exit(1)
        results.append((f"TPC-H Q{n} to pandas (ms)", s_t * 1e3, d_t * 1e3, "time"))

    # --- results to Arrow -----------------------------------------------------------
    q = "SELECT l_orderkey, l_partkey, l_extendedprice, l_shipdate FROM lineitem LIMIT 1000000"
    s_t, s_tab = timed(lambda: st.sql(q).arrow(), args.iterations)
    d_t, d_tab = timed(lambda: duck_arrow(dk.sql(q)), args.iterations)
    assert s_tab.num_rows == d_tab.num_rows == min(1_000_000, rows["lineitem"])
    results.append(("1 M rows (4 lineitem columns) to a pyarrow Table (ms)", s_t * 1e3, d_t * 1e3, "time"))
    s_t, s_tab = timed(lambda: st.sql("SELECT value FROM generate_series(1, 10000000)").arrow(), args.iterations)
    d_t, d_tab = timed(lambda: duck_arrow(dk.sql("SELECT range AS value FROM range(1, 10000001)")), args.iterations)
    assert s_tab.num_rows == d_tab.num_rows == 10_000_000
    results.append(("10 M-row result (one bigint) to a pyarrow Table (ms)", s_t * 1e3, d_t * 1e3, "time"))

    print(f"\nStrata {strata.__version__} (package in {os.path.dirname(strata.__file__)}), "
          f"DuckDB {duckdb.__version__}, TPC-H SF {args.sf}, median of {args.iterations}\n")
    print("| measurement | Strata | DuckDB | Strata/DuckDB |")
    print("|---|---:|---:|---:|")
    for name, s, dd, kind in results:
        if kind == "rate":
            print(f"| {name} | {s:,.0f} | {dd:,.0f} | {s / dd:.2f} |")
        else:
            print(f"| {name} | {s:,.1f} | {dd:,.1f} | {s / dd:.2f} |")


if __name__ == "__main__":
    main()
