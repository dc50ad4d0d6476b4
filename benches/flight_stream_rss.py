#!/usr/bin/env python3
"""Stream a 10-million-row result through Flight SQL to a client that counts
rows without keeping them, and report the server's peak RSS while it does.
Not run in CI.

    cargo build --release
    python3 benches/flight_stream_rss.py [--rows 10000000]

Two results are streamed:
  1. a generated one: SELECT value, value * 2, 'row' || value FROM generate_series(1, N)
  2. a stored table of N rows (loaded first with Flight SQL ingest).
Before each query the server's peak RSS (VmHWM) is reset through
/proc/PID/clear_refs, so the number reported is the peak during that query.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.compute as pc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def stream_count(conn, sql):
    rows = batches = 0
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        for b in reader:
            rows += b.num_rows
            batches += 1
    return rows, batches, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--strata", default=os.environ.get("STRATA_BIN", os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "strata")))
    args = ap.parse_args()
    n = args.rows
    data = tempfile.mkdtemp(prefix="strata-rss-")
    p = subprocess.Popen(
        [args.strata, "serve", "--data-dir", data, "--pg-port", "0", "--flight-port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    port = None
    while port is None:
        line = p.stdout.readline()
        if not line:
            raise SystemExit("strata serve did not start")
        if "flight sql listening on" in line:
            port = int(line.strip().rsplit(":", 1)[1])
    try:
        conn = flight_sql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
        print(f"server pid {p.pid}; RSS at start {status(p.pid, 'VmRSS'):.0f} MiB")

        ok = reset_peak(p.pid)
        before = status(p.pid, "VmRSS")
        rows, batches, took = stream_count(
            conn, f"SELECT value AS id, value * 2 AS v, 'row' || value AS s FROM generate_series(1, {n})"
        )
        assert rows == n, rows
        print(f"generated: {rows:,} rows in {batches} batches, {took:.2f}s ({rows / took:,.0f} rows/s); "
              f"server RSS before {before:.0f} MiB, peak during {status(p.pid, 'VmHWM'):.0f} MiB"
              + ("" if ok else " (peak not reset: clear_refs unavailable)"))

        chunk = 1_000_000
        with conn.cursor() as cur:
            for start in range(0, n, chunk):
                ids = pa.array(range(start, min(n, start + chunk)), pa.int64())
                t = pa.table({"_id": ids, "v": pc.multiply(ids, 2), "s": pc.cast(ids, pa.string())})
                # the ADBC client sends each batch as one gRPC message (16 MiB limit)
                cur.adbc_ingest("big", t.to_batches(max_chunksize=100_000), mode="create_append")
        print(f"stored table loaded; server RSS now {status(p.pid, 'VmRSS'):.0f} MiB")
        ok = reset_peak(p.pid)
        before = status(p.pid, "VmRSS")
        rows, batches, took = stream_count(conn, "SELECT _id, v, s FROM big")
        assert rows == n, rows
        print(f"stored:    {rows:,} rows in {batches} batches, {took:.2f}s ({rows / took:,.0f} rows/s); "
              f"server RSS before {before:.0f} MiB, peak during {status(p.pid, 'VmHWM'):.0f} MiB")
        conn.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        subprocess.run(["rm", "-rf", data])


if __name__ == "__main__":
    sys.exit(main())
