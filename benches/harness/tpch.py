"""TPC-H: generate with DuckDB's tpch extension, bulk-load into the three
systems, run the 22 queries, check the answers agree."""

import os
import threading
import time

from common import log, median, norm_rows, rows_equal, strata_cli, strata_import

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]

# Strata rows are keyed by `_id`: the table's key, or a packing of a composite key.
ID_EXPR = {
    "region": "r_regionkey",
    "nation": "n_nationkey",
    "supplier": "s_suppkey",
    "customer": "c_custkey",
    "part": "p_partkey",
    "partsupp": "ps_partkey * 1000000 + ps_suppkey",
    "orders": "o_orderkey",
    "lineitem": "l_orderkey * 8 + l_linenumber",
}
PRIMARY_KEY = {
    "region": "r_regionkey",
    "nation": "n_nationkey",
    "supplier": "s_suppkey",
    "customer": "c_custkey",
    "part": "p_partkey",
    "partsupp": "ps_partkey, ps_suppkey",
    "orders": "o_orderkey",
    "lineitem": "l_orderkey, l_linenumber",
}
# The usual secondary indexes of a PostgreSQL TPC-H set-up (foreign keys).
PG_INDEXES = [
    "CREATE INDEX ON lineitem (l_partkey)",
    "CREATE INDEX ON lineitem (l_suppkey)",
    "CREATE INDEX ON orders (o_custkey)",
    "CREATE INDEX ON partsupp (ps_suppkey)",
]


def tpch_extension_path():
    """DuckDB's tpch extension from the `duckdb-extension-tpch` PyPI package
    (the extension server is not reachable from here), or INSTALL as a fallback."""
    import duckdb
    try:
        import duckdb_extension_tpch
        base = os.path.join(os.path.dirname(duckdb_extension_tpch.__file__), "extensions")
        want = "v" + duckdb.__version__
        p = os.path.join(base, want, "tpch.duckdb_extension")
        if os.path.exists(p):
            return p
    except ImportError:
        pass
    return None


def load_tpch_ext(con):
    p = tpch_extension_path()
    if p:
        con.execute(f"LOAD '{p}'")
    else:
        con.execute("INSTALL tpch")
        con.execute("LOAD tpch")


def generate(cache_dir, sf):
    """Generate SF `sf` once into cache_dir/tpch-sf<sf>/: CSV (PostgreSQL,
    DuckDB) and Arrow IPC with `_id` (Strata). Returns (dir, schema, queries, rows)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.ipc as ipc

    d = os.path.join(cache_dir, f"tpch-sf{sf}")
    os.makedirs(d, exist_ok=True)
    gen_db = os.path.join(d, "gen.duckdb")
    done = os.path.join(d, "DONE")
    con = duckdb.connect(gen_db)
    load_tpch_ext(con)
    if not os.path.exists(done):
        log(f"generating TPC-H sf={sf} ...")
        t0 = time.time()
        for t in TABLES:
            con.execute(f"DROP TABLE IF EXISTS {t}")
        con.execute(f"CALL dbgen(sf={sf})")
        for t in TABLES:
            con.execute(f"COPY {t} TO '{d}/{t}.csv' (HEADER, DELIMITER ',')")
            rel = con.execute(f"SELECT {ID_EXPR[t]} AS _id, * FROM {t}")
            reader = rel.fetch_record_batch(200_000)
            with pa.OSFile(f"{d}/{t}.arrow", "wb") as f:
                w = ipc.new_file(f, reader.schema)
                for b in reader:
                    w.write_batch(b)
                w.close()
        open(done, "w").write("ok")
        log(f"generated in {time.time() - t0:.1f}s")
    schema = {t: [(r[0], r[1]) for r in con.execute(f"DESCRIBE {t}").fetchall()] for t in TABLES}
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    queries = {n: q for n, q in con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()}
    con.close()
    return d, schema, queries, rows


def ddl(t, cols):
    return f"CREATE TABLE {t} (" + ", ".join(f"{c} {ty} NOT NULL" for c, ty in cols) + ")"


# ---------------------------------------------------------------- loading


def load_postgres(pg, d, schema):
    import psycopg
    t0 = time.time()
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        for t in TABLES:
            c.execute(f"DROP TABLE IF EXISTS {t}")
            c.execute(ddl(t, schema[t]))
            with c.cursor().copy(f"COPY {t} FROM STDIN (FORMAT csv, HEADER true)") as cp:
                with open(f"{d}/{t}.csv", "rb") as f:
                    while True:
                        buf = f.read(1 << 20)
                        if not buf:
                            break
                        cp.write(buf)
        copy_s = time.time() - t0
        for t in TABLES:
            c.execute(f"ALTER TABLE {t} ADD PRIMARY KEY ({PRIMARY_KEY[t]})")
        for s in PG_INDEXES:
            c.execute(s)
        c.execute("VACUUM ANALYZE")
    return copy_s, time.time() - t0


def load_duckdb(path, d, schema, memory_limit=None):
    import duckdb
    if os.path.exists(path):
        os.remove(path)
    t0 = time.time()
    con = duckdb.connect(path)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    attached = False
    for t in TABLES:
        con.execute(ddl(t, schema[t]))
        if os.path.exists(f"{d}/{t}.csv"):
            con.execute(f"COPY {t} FROM '{d}/{t}.csv' (HEADER)")
        else:
            # The CSVs were deleted to save disk (SF 10, --no-postgres; see
            # README.md): copy from the generation database instead.
            if not attached:
                con.execute(f"ATTACH '{d}/gen.duckdb' AS gen (READ_ONLY)")
                attached = True
            con.execute(f"INSERT INTO {t} SELECT * FROM gen.{t}")
    if attached:
        con.execute("DETACH gen")
    con.execute("CHECKPOINT")
    copy_s = time.time() - t0
    # an index for the point lookups (DuckDB's ART)
    con.execute("CREATE UNIQUE INDEX orders_pk ON orders (o_orderkey)")
    con.execute("CHECKPOINT")
    return con, copy_s, time.time() - t0


# A bulk load with no reader and no follower: the log and superseded
# level-0 segments are deleted as soon as segments cover them (at SF 10 they
# would otherwise need ~2x the data's size in extra disk; docs/operations.md).
BULK_GC = ["--log-retention", "0s", "--gc-grace", "0s"]


def load_strata(binary, data_dir, d, memory_limit=None):
    """Import every table, then settle with CHECKPOINT (compaction and
    collection to completion). Returns (import seconds, checkpoint seconds,
    peak RSS in bytes of the largest import, peak RSS of the checkpoint)."""
    t0 = time.time()
    peak = 0
    for t in TABLES:
        out, rss = strata_import(binary, data_dir, t, f"{d}/{t}.arrow", memory_limit=memory_limit,
                                 extra=BULK_GC)
        peak = max(peak, rss or 0)
        log("  strata:", out, f"(peak RSS {rss / (1 << 20):.0f} MiB)" if rss else "")
    imported = time.time() - t0
    t1 = time.time()
    _, ck_rss = strata_cli(binary, ["sql", "--data-dir", data_dir] + BULK_GC + ["-c", "CHECKPOINT"], [],
                           "strata sql -c CHECKPOINT", memory_limit=memory_limit)
    settled = time.time() - t1
    log(f"  strata: CHECKPOINT in {settled:.1f} s"
        + (f" (peak RSS {ck_rss / (1 << 20):.0f} MiB)" if ck_rss else ""))
    return imported, settled, peak, ck_rss


# ---------------------------------------------------------------- running queries


class Runner:
    """Runs one SQL text on one system with a time limit; returns rows."""

    def __init__(self, name, timeout):
        self.name = name
        self.timeout = timeout


class PgRunner(Runner):
    def __init__(self, name, dsn, timeout, pg_timeout=True):
        super().__init__(name, timeout)
        import psycopg
        self.dsn = dsn
        self.pg_timeout = pg_timeout
        self.connect()

    def connect(self):
        import psycopg
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        if self.pg_timeout:
            self.conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")

    def run(self, sql):
        import psycopg
        result = {}

        def work():
            try:
                cur = self.conn.execute(sql)
                result["rows"] = cur.fetchall() if cur.description else []
            except Exception as e:  # noqa
                result["error"] = e

        th = threading.Thread(target=work, daemon=True)
        t0 = time.perf_counter()
        th.start()
        th.join(self.timeout)
        if th.is_alive():
            try:
                self.conn.cancel_safe(timeout=5)
            except Exception:
                pass
            th.join(10)
            try:
                self.conn.close()
            except Exception:
                pass
            self.connect()
            raise TimeoutError(f"timeout after {self.timeout:.0f}s")
        el = time.perf_counter() - t0
        if "error" in result:
            e = result["error"]
            if isinstance(e, psycopg.errors.QueryCanceled):
                raise TimeoutError(f"timeout after {self.timeout:.0f}s")
            if self.conn.closed:
                self.connect()
            raise e
        return result["rows"], el


class DuckRunner(Runner):
    def __init__(self, name, con, timeout):
        super().__init__(name, timeout)
        self.con = con

    def run(self, sql):
        timer = threading.Timer(self.timeout, self.con.interrupt)
        t0 = time.perf_counter()
        timer.start()
        try:
            rows = self.con.execute(sql).fetchall()
        except Exception as e:
            if time.perf_counter() - t0 >= self.timeout:
                raise TimeoutError(f"timeout after {self.timeout:.0f}s")
            raise
        finally:
            timer.cancel()
        return rows, time.perf_counter() - t0


def err_text(e):
    s = str(e).strip().splitlines()
    s = s[0] if s else type(e).__name__
    return s[:160]


def run_queries(runners, queries, iterations, reference="duckdb"):
    """Run every query on every runner. Returns {qnr: {system: {median, error}}, 'check': ...}."""
    out = {}
    for n, q in queries.items():
        res = {}
        rows_by = {}
        for r in runners:
            times = []
            try:
                for i in range(iterations):
                    rows, el = r.run(q)
                    times.append(el)
                    if i == 0:
                        rows_by[r.name] = norm_rows(rows)
                res[r.name] = {"median": median(times)}
            except TimeoutError as e:
                res[r.name] = {"error": str(e)}
            except Exception as e:  # noqa
                res[r.name] = {"error": "unsupported: " + err_text(e)}
        ref = rows_by.get(reference)
        check = {}
        for name, rows in rows_by.items():
            if name == reference or ref is None:
                continue
            ok, msg = rows_equal(ref, rows)
            check[name] = "ok" if ok else "MISMATCH: " + msg
        res["check"] = check
        out[n] = res
        log(f"  Q{n:02d} " + "  ".join(
            f"{k}={v['median']*1000:.0f}ms" if "median" in v else f"{k}={v['error'][:60]}"
            for k, v in res.items() if k != "check") + f"  {check}")
    return out
