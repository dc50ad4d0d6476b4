"""TPC-H over data loaded by each load path (issue 16 item 6): `strata
import` (Arrow IPC files), Flight SQL ingest (ADBC `adbc_ingest`, the same
Arrow tables DuckDB generated, decimals kept, sent in 40,000-row batches: the driver refuses messages over 16 MiB)
and `COPY … FROM STDIN (FORMAT csv)` (psycopg, CSV with `_id` written from
the same tables), each into a fresh data directory and then `CHECKPOINT`.
Then the 22 queries run on a `strata serve` of each, interleaved, and the
script prints each path's load time, the medians, the ratio of each path to
the import-loaded data, and whether every answer equals the import-loaded
one. Not run in CI.

    python3 benches/harness/load_paths.py STRATA_BIN [SF] [ITERATIONS]
"""

import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tpch  # noqa: E402
from common import Strata, norm_rows, rows_equal  # noqa: E402

import adbc_driver_flightsql.dbapi as flight_sql  # noqa: E402
import psycopg  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402

binary = sys.argv[1]
sf = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
iters = int(sys.argv[3]) if len(sys.argv) > 3 else 3
d, schema, queries, _ = tpch.generate(os.path.expanduser("~/.cache/strata-bench"), sf)
work = tempfile.mkdtemp(prefix="strata-load-paths-")


def arrow_table(t):
    with pa.memory_map(f"{d}/{t}.arrow") as f:
        return ipc.open_file(f).read_all()


def checkpoint(data_dir):
    subprocess.run([binary, "sql", "--data-dir", data_dir, "-c", "CHECKPOINT"], check=True,
                   capture_output=True)


def flight_server(data_dir):
    """`strata serve` with Flight SQL on a known free port: (process, port)."""
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    proc = subprocess.Popen([binary, "serve", "--data-dir", data_dir, "--pg-port", "0", "--flight-port",
                             str(port), "--http-port", "0"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("strata serve did not open its Flight SQL port")


loads = {}
try:
    # strata import
    t0 = time.time()
    tpch.load_strata(binary, f"{work}/import", d)
    loads["import"] = time.time() - t0

    # Flight SQL ingest
    proc, port = flight_server(f"{work}/flight")
    conn = flight_sql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
    tables = {t: arrow_table(t) for t in tpch.TABLES}
    t0 = time.time()
    with conn.cursor() as cur:
        for t in tpch.TABLES:
            reader = pa.RecordBatchReader.from_batches(
                tables[t].schema, tables[t].to_batches(max_chunksize=40_000))
            cur.adbc_ingest(t, reader, mode="create")
    loads["flight"] = time.time() - t0
    conn.close()
    proc.terminate()
    proc.wait()
    checkpoint(f"{work}/flight")

    # COPY FROM STDIN
    csv = {}
    for t in tpch.TABLES:
        buf = pa.BufferOutputStream()
        pacsv.write_csv(tables[t], buf)
        csv[t] = buf.getvalue().to_pybytes()
    del tables
    srv = Strata(binary, f"{work}/copy")
    t0 = time.time()
    with psycopg.connect(srv.dsn, autocommit=True) as c:
        for t in tpch.TABLES:
            c.execute(tpch.ddl(t, [("_id", "BIGINT")] + schema[t]).replace(" NOT NULL", ""))
            with c.cursor().copy(f"COPY {t} FROM STDIN (FORMAT csv, HEADER true)") as cp:
                data = csv[t]
                for off in range(0, len(data), 1 << 20):
                    cp.write(data[off:off + (1 << 20)])
    loads["copy"] = time.time() - t0
    srv.stop()
    del csv
    checkpoint(f"{work}/copy")

    servers = {p: Strata(binary, f"{work}/{p}") for p in ("import", "flight", "copy")}
    runners = {p: tpch.PgRunner(p, s.dsn, 600, pg_timeout=False) for p, s in servers.items()}
    for r in runners.values():
        for t in tpch.TABLES:
            r.run(f"SELECT count(*) FROM {t}")
    print(f"TPC-H SF {sf}, {iters} iterations, {binary}\n")
    print("| load path | load s |")
    print("|---|---:|")
    for p, s in loads.items():
        print(f"| {p} | {s:.1f} |")
    print()
    print("| query | import ms | flight ms | copy ms | flight/import | copy/import | answers |")
    print("|---|---:|---:|---:|---:|---:|---|")
    logs = {"flight": [], "copy": []}
    for n, q in queries.items():
        times = {p: [] for p in runners}
        ans = {}
        for i in range(iters):
            for p, r in runners.items():
                rows_, el = r.run(q)
                times[p].append(el)
                if i == 0:
                    ans[p] = norm_rows(rows_)
        med = {p: statistics.median(v) * 1000 for p, v in times.items()}
        same = all(rows_equal(ans["import"], ans[p])[0] for p in ("flight", "copy"))
        for p in logs:
            logs[p].append(math.log(med[p] / med["import"]))
        print(f"| Q{n} | {med['import']:.1f} | {med['flight']:.1f} | {med['copy']:.1f} | "
              f"{med['flight'] / med['import']:.2f} | {med['copy'] / med['import']:.2f} | "
              f"{'equal' if same else 'DIFFER'} |")
    print(f"| geometric mean | | | | {math.exp(statistics.mean(logs['flight'])):.2f} | "
          f"{math.exp(statistics.mean(logs['copy'])):.2f} | |")
    for s in servers.values():
        s.stop()
finally:
    shutil.rmtree(work, ignore_errors=True)
