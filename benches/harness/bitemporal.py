"""Bitemporal history modelled on TPC-BiH.

Start from TPC-H customer / part / orders, then apply a deterministic stream of
business transactions over ten simulated years: new orders, cancellations,
(retroactive) deliveries, payments, promotional price changes (future valid
periods) and availability changes. Strata gets real temporal DML with
simulated system time (`strata serve --test-clock`); PostgreSQL and DuckDB keep
the same history in ordinary tables with explicit period columns (valid_from,
valid_to, sys_from, sys_to), maintained by the application the way people do it
today: retire the overlapped rectangle, re-insert the parts outside the
portion, insert the new version."""

import datetime as dt
import os
import shutil
import random
import time

from common import log, median, norm_rows, rows_equal, strata_import

T0 = dt.datetime(2015, 1, 1)  # initial load (system and valid time)
T1 = dt.datetime(2015, 1, 2)  # first business transaction
END = dt.datetime(2025, 1, 1)
INF = dt.datetime(9999, 12, 31)  # open bound in PostgreSQL / DuckDB
US = dt.timedelta(microseconds=1)

COLS = {
    "customer_h": ["c_name", "c_acctbal", "c_mktsegment"],
    "part_h": ["p_name", "p_retailprice", "p_availqty"],
    "orders_h": ["o_custkey", "o_status", "o_totalprice"],
}
TYPES = {
    "c_name": "VARCHAR", "c_acctbal": "DOUBLE PRECISION", "c_mktsegment": "VARCHAR",
    "p_name": "VARCHAR", "p_retailprice": "DOUBLE PRECISION", "p_availqty": "BIGINT",
    "o_custkey": "BIGINT", "o_status": "VARCHAR", "o_totalprice": "DOUBLE PRECISION",
}
LOAD_ORDER = ["customer_h", "part_h", "orders_h"]
SOURCE = {
    "customer_h": "SELECT c_custkey AS _id, c_name, CAST(c_acctbal AS DOUBLE) AS c_acctbal, c_mktsegment FROM customer",
    "part_h": "SELECT p_partkey AS _id, p_name, CAST(p_retailprice AS DOUBLE) AS p_retailprice, "
              "CAST((SELECT sum(ps_availqty) FROM partsupp WHERE ps_partkey = p_partkey) AS BIGINT) AS p_availqty FROM part",
    "orders_h": "SELECT o_orderkey AS _id, o_custkey, o_orderstatus AS o_status, CAST(o_totalprice AS DOUBLE) AS o_totalprice FROM orders",
}


def ts(t):
    return f"TIMESTAMP '{t.isoformat(sep=' ')}Z'"


def pts(t):
    return f"TIMESTAMP '{t.isoformat(sep=' ')}'"


def day(t):
    return dt.datetime(t.year, t.month, t.day)


# ---------------------------------------------------------------- the stream


def make_stream(base, n_tx, seed=42):
    """A deterministic list of business transactions. `base` holds the
    initial keys: {'customers': [...], 'parts': [...], 'open_orders': [...],
    'max_order': int, 'custkeys': [...]}."""
    rnd = random.Random(seed)
    step_us = int((END - T1) / US) // n_tx
    custs, parts = base["customers"], base["parts"]
    hot_c = custs[: max(5, len(custs) // 100)]
    hot_p = parts[: max(5, len(parts) // 100)]
    open_orders = list(base["open_orders"])
    next_order = base["max_order"] + 1
    txs = []
    for i in range(n_tx):
        t = T1 + dt.timedelta(microseconds=i * step_us)
        r = rnd.random()
        pick_c = lambda: rnd.choice(hot_c) if rnd.random() < 0.5 else rnd.choice(custs)  # noqa
        pick_p = lambda: rnd.choice(hot_p) if rnd.random() < 0.5 else rnd.choice(parts)  # noqa
        if r < 0.30 or not open_orders:
            k = next_order
            next_order += 1
            vals = {"o_custkey": pick_c(), "o_status": "O",
                    "o_totalprice": round(rnd.uniform(1000, 400000), 2)}
            txs.append(("new_order", t, "orders_h", k, day(t), None, vals))
            open_orders.append(k)
        elif r < 0.40:
            k = open_orders.pop(rnd.randrange(len(open_orders)))
            txs.append(("cancel", t, "orders_h", k, day(t), None, {"o_status": ("=", "C")}))
        elif r < 0.60:
            k = open_orders.pop(rnd.randrange(len(open_orders)))
            back = dt.timedelta(days=rnd.randrange(0, 15))
            txs.append(("deliver", t, "orders_h", k, day(t) - back, None, {"o_status": ("=", "F")}))
        elif r < 0.75:
            amount = round(rnd.uniform(10, 5000), 2)
            txs.append(("payment", t, "customer_h", pick_c(), t, None, {"c_acctbal": ("+", amount)}))
        elif r < 0.90:
            a = day(t) + dt.timedelta(days=7)
            txs.append(("promotion", t, "part_h", pick_p(), a, a + dt.timedelta(days=30),
                        {"p_retailprice": ("*", 0.9)}))
        else:
            txs.append(("availability", t, "part_h", pick_p(), day(t), None,
                        {"p_availqty": ("=", rnd.randrange(0, 10000))}))
    return txs, step_us


def strata_sql(tx):
    kind, t, table, key, a, b, vals = tx
    if kind == "new_order":
        cols = ["_id"] + list(vals) + ["_valid_from"]
        lits = [str(key)] + [lit(v) for v in vals.values()] + [ts(a)]
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(lits)})"
    sets = ", ".join(f"{c} = " + (lit(v) if op == "=" else f"{c} {op} {lit(v)}") for c, (op, v) in vals.items())
    if kind == "payment":  # valid from now (the transaction's system time) to infinity
        return f"UPDATE {table} SET {sets} WHERE _id = {key}"
    to = ts(b) if b else "NULL"
    return f"UPDATE {table} FOR PORTION OF VALID_TIME FROM {ts(a)} TO {to} SET {sets} WHERE _id = {key}"


def lit(v):
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


# ---------------------------------------------------------------- period tables (PostgreSQL, DuckDB)


class PeriodDb:
    """PostgreSQL or DuckDB with explicit period columns."""

    def __init__(self, name, con, paramstyle):
        self.name = name
        self.con = con
        self.ps = paramstyle

    def ex(self, sql, params=()):
        if self.ps == "qmark":
            sql = sql.replace("%s", "?")
        return self.con.execute(sql, params)

    def begin(self):
        self.ex("BEGIN")

    def commit(self):
        self.ex("COMMIT")

    def create(self, table):
        cols = ", ".join(f"{c} {TYPES[c]}" for c in COLS[table])
        self.ex(f"DROP TABLE IF EXISTS {table}")
        self.ex(f"CREATE TABLE {table} (id BIGINT NOT NULL, {cols}, valid_from TIMESTAMP NOT NULL, "
                f"valid_to TIMESTAMP NOT NULL, sys_from TIMESTAMP NOT NULL, sys_to TIMESTAMP NOT NULL)")

    def index(self, table):
        self.ex(f"CREATE INDEX {table}_id ON {table} (id, sys_to, valid_from)")
        self.ex(f"CREATE INDEX {table}_sys ON {table} (sys_from, sys_to)")

    def apply(self, tx):
        kind, t, table, key, a, b, vals = tx
        b = b or INF
        cols = COLS[table]
        self.begin()
        rows = self.ex(
            f"SELECT {', '.join(cols)}, valid_from, valid_to, sys_from FROM {table} "
            f"WHERE id = %s AND sys_to = %s AND valid_from < %s AND valid_to > %s",
            (key, INF, b, a)).fetchall()
        ins = []
        for r in rows:
            old = dict(zip(cols, r[: len(cols)]))
            vf, vt, sf = r[len(cols):]
            lo, hi = max(vf, a), min(vt, b)
            self.ex(f"UPDATE {table} SET sys_to = %s, valid_from = %s, valid_to = %s "
                    f"WHERE id = %s AND sys_to = %s AND valid_from = %s", (t, lo, hi, key, INF, vf))
            if vf < a:
                ins.append((old, vf, a, sf))
            if vt > b:
                ins.append((old, b, vt, sf))
            if kind != "new_order":
                new = dict(old)
                for c, (op, v) in vals.items():
                    new[c] = v if op == "=" else (old[c] + v if op == "+" else old[c] * v)
                ins.append((new, lo, hi, t))
        if kind == "new_order":
            ins.append((vals, a, b, t))
        for v, vf, vt, sf in ins:
            self.ex(f"INSERT INTO {table} VALUES (%s, {', '.join(['%s'] * len(cols))}, %s, %s, %s, %s)",
                    (key, *[v[c] for c in cols], vf, vt, sf, INF))
        self.commit()
        return len(rows)


# ---------------------------------------------------------------- queries


def queries(p):
    """(name, strata sql, period-table sql) with the stream's parameters."""
    out = []
    for k in (2, 5, 8):
        s = T0 + dt.timedelta(days=365 * k + 17)
        out.append((f"time travel: orders as of year {k}",
                    f"SELECT o_status, count(*), sum(o_totalprice) FROM orders_h FOR SYSTEM_TIME AS OF {ts(s)} "
                    f"FOR VALID_TIME AS OF {ts(s)} GROUP BY o_status",
                    f"SELECT o_status, count(*), sum(o_totalprice) FROM orders_h WHERE sys_from <= {pts(s)} "
                    f"AND sys_to > {pts(s)} AND valid_from <= {pts(s)} AND valid_to > {pts(s)} GROUP BY o_status"))
    v = T0 + dt.timedelta(days=int(365 * 3.5))
    out.append(("valid-time slice: parts at year 3.5",
                f"SELECT count(*), sum(p_retailprice), sum(p_availqty) FROM part_h FOR VALID_TIME AS OF {ts(v)}",
                f"SELECT count(*), sum(p_retailprice), sum(p_availqty) FROM part_h WHERE sys_to = {pts(INF)} "
                f"AND valid_from <= {pts(v)} AND valid_to > {pts(v)}"))
    k = p["hot_customer"]
    out.append((f"history of one key (customer {k})",
                f"SELECT c_acctbal, _valid_from, _valid_to, _system_from, _system_to FROM customer_h "
                f"FOR ALL SYSTEM_TIME FOR ALL VALID_TIME WHERE _id = {k} ORDER BY _system_from, _valid_from",
                f"SELECT c_acctbal, valid_from, valid_to, sys_from, sys_to FROM customer_h WHERE id = {k} "
                f"ORDER BY sys_from, valid_from"))
    s1, s2 = T0 + dt.timedelta(days=365 * 4), T0 + dt.timedelta(days=365 * 6)
    out.append(("state change between years 4 and 6",
                f"SELECT a.o_status, b.o_status, count(*) FROM orders_h FOR SYSTEM_TIME AS OF {ts(s1)} "
                f"FOR VALID_TIME AS OF {ts(s1)} AS a JOIN orders_h FOR SYSTEM_TIME AS OF {ts(s2)} "
                f"FOR VALID_TIME AS OF {ts(s2)} AS b ON a._id = b._id WHERE a.o_status <> b.o_status "
                f"GROUP BY a.o_status, b.o_status",
                f"SELECT a.o_status, b.o_status, count(*) FROM orders_h a JOIN orders_h b ON a.id = b.id "
                f"WHERE a.sys_from <= {pts(s1)} AND a.sys_to > {pts(s1)} AND a.valid_from <= {pts(s1)} AND a.valid_to > {pts(s1)} "
                f"AND b.sys_from <= {pts(s2)} AND b.sys_to > {pts(s2)} AND b.valid_from <= {pts(s2)} AND b.valid_to > {pts(s2)} "
                f"AND a.o_status <> b.o_status GROUP BY a.o_status, b.o_status"))
    years = [dt.datetime(y, 1, 1) for y in range(2016, 2025)]
    vs = ", ".join(f"({ts(y)})" for y in years)
    vp = ", ".join(f"({pts(y)})" for y in years)
    out.append(("open orders per year (time buckets)",
                f"SELECT y.t, count(*), sum(o.o_totalprice) FROM (VALUES {vs}) AS y(t) JOIN orders_h FOR ALL VALID_TIME AS o "
                f"ON o._valid_from <= y.t AND (o._valid_to IS NULL OR o._valid_to > y.t) "
                f"WHERE o.o_status = 'O' GROUP BY y.t",
                f"SELECT y.t, count(*), sum(o.o_totalprice) FROM (VALUES {vp}) AS y(t) JOIN orders_h o "
                f"ON o.valid_from <= y.t AND o.valid_to > y.t AND o.sys_to = {pts(INF)} "
                f"WHERE o.o_status = 'O' GROUP BY y.t"))
    out.append(all_active(p["contracts"]))
    return out


def all_active(contracts):
    """(name, strata sql, period-table sql) of "for what interval were these
    contracts (orders) all open at once?"""
    keys = ", ".join(str(x) for x in contracts)
    n = len(contracts)
    return (f"interval all {n} contracts active",
            f"SELECT max(lo), min(hi), count(*) FROM (SELECT _id, min(_valid_from) AS lo, "
            f"CASE WHEN count(*) > count(_valid_to) THEN NULL ELSE max(_valid_to) END AS hi FROM orders_h FOR ALL VALID_TIME "
            f"WHERE _id IN ({keys}) AND o_status = 'O' GROUP BY _id) AS x",
            f"SELECT max(lo), min(hi), count(*) FROM (SELECT id, min(valid_from) AS lo, max(valid_to) AS hi "
            f"FROM orders_h WHERE sys_to = {pts(INF)} AND id IN ({keys}) AND o_status = 'O' GROUP BY id) AS x")


# The all-active query as the number of contracts grows (issue 16 item 8).
ALL_ACTIVE_SWEEP = (10, 100, 1000, 5000)


# ---------------------------------------------------------------- driver


def n_transactions(sf):
    return max(300, min(20000, int(50000 * sf)))


def write_arrow(rel, path):
    import pyarrow as pa
    import pyarrow.ipc as ipc
    reader = rel.fetch_record_batch(200_000)
    with pa.OSFile(path, "wb") as f:
        w = ipc.new_file(f, reader.schema)
        for b in reader:
            w.write_batch(b)
        w.close()


def build(gen_db_path, sf, workdir, strata_bin, pg):
    """Load the initial state and apply the stream on all three systems.
    Returns (result dict, context for queries and lookups)."""
    import duckdb
    import psycopg

    from common import Strata
    from tpch import err_text

    res = {"load_s": {}, "stream": {}}
    src = duckdb.connect(gen_db_path, read_only=True)
    base = {
        "customers": [r[0] for r in src.execute("SELECT c_custkey FROM customer ORDER BY 1").fetchall()],
        "parts": [r[0] for r in src.execute("SELECT p_partkey FROM part ORDER BY 1").fetchall()],
        "open_orders": [r[0] for r in src.execute(
            "SELECT o_orderkey FROM orders WHERE o_orderstatus = 'O' ORDER BY 1").fetchall()],
        "max_order": src.execute("SELECT max(o_orderkey) FROM orders").fetchone()[0],
    }
    n_tx = n_transactions(sf)
    txs, step_us = make_stream(base, n_tx)
    kinds = {}
    for tx in txs:
        kinds[tx[0]] = kinds.get(tx[0], 0) + 1
    res["stream"]["transactions"] = n_tx
    res["stream"]["kinds"] = kinds
    rows = {t: src.execute(f"SELECT count(*) FROM ({SOURCE[t]})").fetchone()[0] for t in LOAD_ORDER}
    res["initial_rows"] = rows

    d = os.path.join(workdir, "bih")
    os.makedirs(d, exist_ok=True)
    for t in LOAD_ORDER:
        write_arrow(src.execute(f"SELECT *, TIMESTAMPTZ '{T0.isoformat()}+00' AS _valid_from FROM ({SOURCE[t]})"),
                    f"{d}/{t}.arrow")

    # --- Strata: bulk import as of T0 (test clock), then the stream over
    # Postgres wire with the simulated clock: transaction i commits at T1 + i*step.
    sdir = os.path.join(workdir, "strata-bih")
    # A previous run's database would take the import as updates and the
    # stream twice (every history doubled, answers different).
    shutil.rmtree(sdir, ignore_errors=True)
    t0 = time.time()
    for t in LOAD_ORDER:
        strata_import(strata_bin, sdir, t, f"{d}/{t}.arrow", test_clock=f"{T0.isoformat()}Z,1s")
    res["load_s"]["strata"] = time.time() - t0
    srv = Strata(strata_bin, sdir, test_clock=f"{T1.isoformat()}Z,{step_us}")
    ctx = {"strata": srv, "txs": txs}
    try:
        sc = psycopg.connect(srv.dsn, autocommit=True)
        load_sys = {}
        for t in LOAD_ORDER:
            v = sc.execute(f"SELECT min(_system_from) FROM {t} FOR ALL SYSTEM_TIME FOR ALL VALID_TIME").fetchone()[0]
            load_sys[t] = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        t0 = time.time()
        failed = 0
        for tx in txs:
            try:
                sc.execute(strata_sql(tx))
            except Exception as e:  # noqa
                failed += 1
                if failed <= 3:
                    log("  strata stream error:", err_text(e), "in", strata_sql(tx))
                if sc.closed:
                    sc = psycopg.connect(srv.dsn, autocommit=True)
        el = time.time() - t0
        res["stream"]["strata"] = {"seconds": el, "tx_per_s": n_tx / el, "failed": failed}
        last = {}
        for t in LOAD_ORDER:
            v = sc.execute(f"SELECT max(_system_from) FROM {t} FOR ALL SYSTEM_TIME FOR ALL VALID_TIME").fetchone()[0]
            last[t] = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        for t in LOAD_ORDER:
            want = max([load_sys[t]] + [tx[1] for tx in txs if tx[2] == t])
            if last[t] != want:
                res["stream"].setdefault("clock_mismatch", []).append(
                    f"{t}: strata's last system time {last[t]} != simulated {want}")
        versions = sc.execute("SELECT count(*) FROM orders_h FOR ALL SYSTEM_TIME FOR ALL VALID_TIME").fetchone()[0]
        res["stream"]["orders_h_rectangles"] = versions
        sc.close()

        # --- PostgreSQL and DuckDB: the same history in period tables
        for t in LOAD_ORDER:
            src.execute(f"COPY (SELECT *, TIMESTAMP '{T0}' AS valid_from, TIMESTAMP '{INF}' AS valid_to, "
                        f"TIMESTAMP '{load_sys[t]}' AS sys_from, TIMESTAMP '{INF}' AS sys_to FROM ({SOURCE[t]})) "
                        f"TO '{d}/{t}.csv' (HEADER)")
        src.close()
        pgc = psycopg.connect(pg.dsn, autocommit=True)
        dkc = duckdb.connect(os.path.join(workdir, "bih.duckdb"))
        for name, con, style in (("postgres", pgc, "format"), ("duckdb", dkc, "qmark")):
            db = PeriodDb(name, con, style)
            t0 = time.time()
            for t in LOAD_ORDER:
                db.create(t)
                if name == "postgres":
                    with con.cursor().copy(f"COPY {t} FROM STDIN (FORMAT csv, HEADER true)") as cp:
                        with open(f"{d}/{t}.csv", "rb") as f:
                            while True:
                                buf = f.read(1 << 20)
                                if not buf:
                                    break
                                cp.write(buf)
                else:
                    con.execute(f"COPY {t} FROM '{d}/{t}.csv' (HEADER)")
                db.index(t)
            if name == "postgres":
                con.execute("ANALYZE")
            res["load_s"][name] = time.time() - t0
            t0 = time.time()
            for tx in txs:
                db.apply(tx)
            el = time.time() - t0
            res["stream"][name] = {"seconds": el, "tx_per_s": n_tx / el, "failed": 0}
            if name == "postgres":
                con.execute("ANALYZE")
            ctx[name] = con
    except Exception:
        srv.stop()
        raise
    hot = {}
    for tx in txs:
        if tx[2] == "customer_h":
            hot[tx[3]] = hot.get(tx[3], 0) + 1
    # five orders open at the middle of the simulation
    rnd = random.Random(7)
    mid = T1 + (END - T1) / 2
    created = {tx[3]: tx[1] for tx in txs if tx[0] == "new_order"}
    closed = {tx[3]: tx[1] for tx in txs if tx[0] in ("cancel", "deliver")}
    open_mid = [k for k, t in created.items() if t < mid and closed.get(k, END) > mid]
    # For the sweep: orders open at the middle, from the initial load too
    # (open at T0 and not closed by then).
    pool = sorted(set(open_mid) | {k for k in base["open_orders"] if closed.get(k, END) > mid})
    ctx["params"] = {
        "hot_customer": max(hot, key=lambda k: (hot[k], -k)) if hot else base["customers"][0],
        "contracts": sorted(rnd.sample(open_mid, min(5, len(open_mid)))) or base["open_orders"][:5],
        "sweep": [sorted(random.Random(n).sample(pool, min(n, len(pool)))) for n in ALL_ACTIVE_SWEEP],
    }
    return res, ctx


def run_queries(ctx, iterations, timeout):
    """The bitemporal queries on the three systems: (queries, all-active sweep)."""
    from tpch import DuckRunner, PgRunner
    srv = ctx["strata"]
    runners = [
        ("duckdb", DuckRunner("duckdb", ctx["duckdb"], timeout), 2),
        ("postgres", PgRunner("postgres", ctx["postgres"].info.dsn, timeout), 2),
        ("strata", PgRunner("strata", srv.dsn, timeout, pg_timeout=False), 1),
    ]
    main = run_list(runners, queries(ctx["params"]), iterations)
    sweep = run_list(runners, [all_active(c) for c in ctx["params"].get("sweep", [])], iterations)
    return main, sweep


def run_list(runners, qs, iterations):
    from tpch import err_text
    out = {}
    for name, strata_q, period_q in qs:
        res, rows_by = {}, {}
        for sys_name, r, which in runners:
            q = strata_q if which == 1 else period_q
            times = []
            try:
                for i in range(iterations):
                    rows, el = r.run(q)
                    times.append(el)
                    if i == 0:
                        rows_by[sys_name] = norm_rows(rows)
                res[sys_name] = {"median": median(times)}
            except TimeoutError as e:
                res[sys_name] = {"error": str(e)}
            except Exception as e:  # noqa
                res[sys_name] = {"error": "unsupported: " + err_text(e)}
        check = {}
        ref = rows_by.get("duckdb")
        for s, rows in rows_by.items():
            if s != "duckdb" and ref is not None:
                ok, msg = rows_equal(ref, rows)
                check[s] = "ok" if ok else "MISMATCH: " + msg
        res["check"] = check
        res["rows"] = len(ref) if ref is not None else None
        out[name] = res
        log(f"  {name}: " + "  ".join(
            f"{k}={v['median']*1000:.1f}ms" if "median" in v else f"{k}={v['error'][:70]}"
            for k, v in res.items() if k not in ("check", "rows")) + f"  {check}")
    return out
