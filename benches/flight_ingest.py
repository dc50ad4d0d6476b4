#!/usr/bin/env python3
"""Bulk-load throughput: Strata's Flight SQL ingest (ADBC adbc_ingest) next to
PostgreSQL COPY (psycopg) and DuckDB's Arrow ingest, for rows of
(_id bigint, a double, b text). Not run in CI.

    cargo build --release
    python3 benches/flight_ingest.py --rows 1000000 5000000

Each system gets a fresh, empty store and the same rows, prepared before the
clock starts (an Arrow table for Strata and DuckDB, CSV text for COPY). Only
the load is timed. Strata and PostgreSQL run locally on loopback with their
default durability (fsync on); DuckDB runs in-process into a database file.
PostgreSQL is used if initdb/pg_ctl are found (PG_BIN, /usr/local/bin,
/usr/lib/postgresql/*/bin); DuckDB if `import duckdb` works.
"""

import argparse
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_table(n):
    ids = pa.array(range(n), type=pa.int64())
    a = pc.multiply(pc.cast(ids, pa.float64()), 0.5)
    b = pc.binary_join_element_wise("row", pc.cast(pc.bit_wise_and(ids, 1023), pa.string()), "")
    return pa.table({"_id": ids, "a": a, "b": b})


def start_strata(binary, data_dir):
    p = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--pg-port", "0", "--flight-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline()
        if "flight sql listening on" in line:
            port = int(line.strip().rsplit(":", 1)[1])
            return p, port
        if not line and p.poll() is not None:
            break
    p.kill()
    raise SystemExit("strata serve did not start")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_strata(binary, table, chunk):
    import adbc_driver_flightsql.dbapi as flight_sql

    data = tempfile.mkdtemp(prefix="strata-ingest-")
    proc, port = start_strata(binary, data)
    try:
        conn = flight_sql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
        batches = table.to_batches(max_chunksize=chunk)
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            n = cur.adbc_ingest("bulk", batches, mode="create")
            took = time.perf_counter() - t0
            cur.execute("SELECT count(*) FROM bulk")
            count = cur.fetchone()[0]
        conn.close()
        assert n == table.num_rows == count, (n, count)
        return took, peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def find_pg_bin():
    cands = [os.environ.get("PG_BIN", ""), "/usr/local/bin"] + sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), reverse=True
    )
    for d in cands:
        if d and os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def bench_postgres(table):
    try:
        import psycopg
    except ImportError:
        return None, "psycopg not installed"
    pg_bin = find_pg_bin()
    if not pg_bin:
        return None, "no initdb/pg_ctl found"
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    data = tempfile.mkdtemp(prefix="pg-ingest-")
    os.chmod(data, 0o777)
    pgdata = os.path.join(data, "pgdata")
    sock = data
    port = 54329
    run = lambda *a: subprocess.run(as_user + list(a), check=True, capture_output=True)
    try:
        run(os.path.join(pg_bin, "initdb"), "-D", pgdata, "-U", "bench", "--auth=trust", "-E", "UTF8")
        run(
            os.path.join(pg_bin, "pg_ctl"), "-D", pgdata, "-w", "-l", os.path.join(data, "log"),
            "-o", f"-p {port} -k {sock} -c listen_addresses=''", "start",
        )
        csv = io.BytesIO()
        pacsv.write_csv(table, csv, pacsv.WriteOptions(include_header=False))
        payload = csv.getvalue()
        with psycopg.connect(host=sock, port=port, user="bench", dbname="postgres", autocommit=True) as c:
            c.execute("CREATE TABLE bulk (_id bigint, a double precision, b text)")
            t0 = time.perf_counter()
            with c.cursor() as cur:
                with cur.copy("COPY bulk (_id, a, b) FROM STDIN (FORMAT csv)") as copy:
                    step = 8 << 20
                    for i in range(0, len(payload), step):
                        copy.write(payload[i : i + step])
            took = time.perf_counter() - t0
            count = c.execute("SELECT count(*) FROM bulk").fetchone()[0]
        assert count == table.num_rows, count
        return took, None
    except subprocess.CalledProcessError as e:
        return None, f"postgres failed: {e.stderr.decode(errors='replace')[-300:]}"
    finally:
        subprocess.run(
            as_user + [os.path.join(pg_bin, "pg_ctl"), "-D", pgdata, "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def bench_duckdb(table):
    try:
        import duckdb
    except ImportError:
        return None, "duckdb not installed"
    data = tempfile.mkdtemp(prefix="duckdb-ingest-")
    try:
        con = duckdb.connect(os.path.join(data, "bench.duckdb"))
        con.execute("CREATE TABLE bulk (_id BIGINT, a DOUBLE, b VARCHAR)")
        con.register("src", table)
        t0 = time.perf_counter()
        con.execute("INSERT INTO bulk SELECT * FROM src")
        con.execute("CHECKPOINT")
        took = time.perf_counter() - t0
        count = con.execute("SELECT count(*) FROM bulk").fetchone()[0]
        con.close()
        assert count == table.num_rows, count
        return took, None
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--strata", default=os.environ.get("STRATA_BIN", os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "strata")))
    ap.add_argument("--chunk", type=int, default=100_000, help="rows per record batch sent")
    ap.add_argument("--skip", nargs="*", default=[], choices=["postgres", "duckdb"])
    args = ap.parse_args()
    if not os.path.exists(args.strata):
        raise SystemExit(f"no strata binary at {args.strata}: cargo build --release, or pass --strata")
    print(f"{'system':<28}{'rows':>10}{'seconds':>10}{'rows/s':>14}  notes")
    for n in args.rows:
        table = make_table(n)
        took, rss = bench_strata(args.strata, table, args.chunk)
        print(f"{'strata flight sql ingest':<28}{n:>10}{took:>10.2f}{n / took:>14,.0f}  server peak RSS {rss:.0f} MiB", flush=True)
        if "postgres" not in args.skip:
            took, why = bench_postgres(table)
            if took is None:
                print(f"{'postgresql copy':<28}{n:>10}{'-':>10}{'-':>14}  skipped: {why}")
            else:
                print(f"{'postgresql copy (csv)':<28}{n:>10}{took:>10.2f}{n / took:>14,.0f}", flush=True)
        if "duckdb" not in args.skip:
            took, why = bench_duckdb(table)
            if took is None:
                print(f"{'duckdb arrow ingest':<28}{n:>10}{'-':>10}{'-':>14}  skipped: {why}")
            else:
                print(f"{'duckdb arrow ingest':<28}{n:>10}{took:>10.2f}{n / took:>14,.0f}  in-process", flush=True)


if __name__ == "__main__":
    sys.exit(main())
