"""Parquet export rate beside DuckDB's (docs/ports.md "Measured"):

    python3 benches/harness/export.py BIN STRATA_DIR DUCKDB_FILE [--table lineitem] [--runs 3]

Over the same table loaded in both (for example the TPC-H data that
`run.py --sf 1` leaves in /tmp/bench-sf1):

- Strata, server side: `COPY t TO 'f.parquet' (FORMAT parquet)` under
  `--export-root` (a reader node over STRATA_DIR, so nothing is written to
  the store);
- Strata, to the client: `COPY (SELECT * FROM t) TO STDOUT (FORMAT parquet)`
  read by psycopg into a file (what `\\copy … (FORMAT parquet)` does);
- DuckDB: `COPY t TO 'f.parquet' (FORMAT parquet)`, its own threads.

Each the median of --runs, in rows/s, with the ratio to DuckDB. Both write
Snappy-compressed files with row groups of 122,880 rows.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb
import psycopg
import pyarrow.parquet as pq
from common import Strata, median


def timed(f, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("strata_dir")
    ap.add_argument("duckdb_file")
    ap.add_argument("--table", default="lineitem")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    out = tempfile.mkdtemp(prefix="strata-export-")
    s = Strata(a.binary, a.strata_dir, extra_args=["--role", "reader", "--export-root", out])
    try:
        conn = psycopg.connect(s.dsn, autocommit=True)
        rows = conn.execute(f"SELECT count(*) FROM {a.table}").fetchone()[0]

        def server():
            conn.execute(f"COPY {a.table} TO 'strata.parquet' (FORMAT parquet)")

        def client():
            with open(os.path.join(out, "client.parquet"), "wb") as f, conn.cursor().copy(
                    f"COPY (SELECT * FROM {a.table}) TO STDOUT (FORMAT parquet)") as cp:
                for chunk in cp:
                    f.write(chunk)

        t_server = timed(server, a.runs)
        t_client = timed(client, a.runs)
    finally:
        s.stop()
    d = duckdb.connect(a.duckdb_file, read_only=True)
    duck_path = os.path.join(out, "duckdb.parquet")

    def duck():
        d.execute(f"COPY {a.table} TO '{duck_path}' (FORMAT parquet)")

    t_duck = timed(duck, a.runs)
    for name in ("strata.parquet", "client.parquet", "duckdb.parquet"):
        n = pq.ParquetFile(os.path.join(out, name)).metadata.num_rows
        assert n == rows, f"{name}: {n} rows, want {rows}"
    size = {n: os.path.getsize(os.path.join(out, n)) >> 20 for n in ("strata.parquet", "duckdb.parquet")}
    print(f"{a.table}: {rows:,} rows, median of {a.runs}")
    print(f"  strata COPY TO 'file' (server)   {t_server:7.2f} s  {rows / t_server:12,.0f} rows/s  {t_server / t_duck:5.2f}x DuckDB  {size['strata.parquet']} MiB")
    print(f"  strata COPY TO STDOUT (client)   {t_client:7.2f} s  {rows / t_client:12,.0f} rows/s  {t_client / t_duck:5.2f}x DuckDB")
    print(f"  duckdb COPY TO 'file'            {t_duck:7.2f} s  {rows / t_duck:12,.0f} rows/s  {size['duckdb.parquet']} MiB")


if __name__ == "__main__":
    main()
