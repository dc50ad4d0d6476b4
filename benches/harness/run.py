#!/usr/bin/env python3
"""Side-by-side benchmark: Strata against DuckDB and PostgreSQL, same machine,
same run, same data, answers checked equal.

    python3 benches/harness/run.py --sf 0.1            # a few minutes
    python3 benches/harness/run.py --sf 1              # within an hour on 2 cores
    python3 benches/harness/run.py --sf 0.01 --iterations 1 --seconds 1   # smoke

Sections: TPC-H (22 queries), bitemporal history (TPC-BiH-like), point
lookups, ingest. Prints a table of medians and Strata/peer ratios; --markdown
writes it to a file, --json the raw numbers. Exits 1 if any answer differs
between systems or a section crashes (queries Strata cannot run yet are
reported as `unsupported: <error>` and do not fail the run).
"""

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PIP_PACKAGES = ["duckdb==1.5.5", "duckdb-extension-tpch==1.5.5", "psycopg[binary]", "pyarrow"]


def ensure_python_packages(no_install):
    missing = []
    for mod in ("duckdb", "duckdb_extension_tpch", "psycopg", "pyarrow"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    try:
        import duckdb
        if duckdb.__version__ != "1.5.5":
            missing.append("duckdb==1.5.5")
    except ImportError:
        pass
    if missing:
        if no_install:
            sys.exit(f"missing Python packages {missing}: pip install {' '.join(PIP_PACKAGES)}")
        print(f"installing {' '.join(PIP_PACKAGES)} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *PIP_PACKAGES], check=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    p.add_argument("--iterations", type=int, default=3, help="timed runs per query (median)")
    p.add_argument("--timeout", type=float, default=300, help="per query time limit, seconds")
    p.add_argument("--seconds", type=float, default=None, help="duration of each lookup/ingest measurement")
    p.add_argument("--clients", default="1,8", help="point-lookup client counts")
    p.add_argument("--writers", default="1,16", help="single-row writer counts")
    p.add_argument("--strata-bin", default=None, help="strata binary (default: $STRATA_BIN, else cargo build --release)")
    p.add_argument("--embedded-bin", default=None,
                   help="bench_embedded example binary (default: $STRATA_EMBEDDED_BIN, else built with the release build)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo")
    p.add_argument("--no-install", action="store_true", help="do not pip install missing packages")
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/strata-bench"), help="generated data cache")
    p.add_argument("--workdir", default=None, help="where the databases live (default: a temp dir, removed)")
    p.add_argument("--sections", default="tpch,bitemporal,lookups,ingest")
    p.add_argument("--json", default=None, help="write raw results here")
    p.add_argument("--markdown", default=None, help="write the result tables here")
    p.add_argument("--memory-limit", default=None,
                   help="memory budget for every system (e.g. 3GiB): `strata serve/import --memory-limit`, "
                        "DuckDB `SET memory_limit`; peak RSS (VmHWM) is reported either way")
    p.add_argument("--no-postgres", action="store_true",
                   help="leave PostgreSQL out (TPC-H section only; for large scale factors)")
    return p.parse_args()


def main():
    a = parse_args()
    ensure_python_packages(a.no_install)
    import psycopg

    import bitemporal
    import oltp
    import tpch
    from common import Postgres, Strata, log, strata_binary

    sections = set(a.sections.split(","))
    if a.no_postgres and sections - {"tpch"}:
        sys.exit(f"--no-postgres runs only the tpch section; add --sections tpch (asked for {a.sections})")
    seconds = a.seconds if a.seconds is not None else (2.0 if a.sf < 0.1 else 5.0)
    clients = [int(x) for x in a.clients.split(",") if x]
    writers = [int(x) for x in a.writers.split(",") if x]
    started = time.time()

    strata_bin = strata_binary(a.strata_bin, build=not a.no_build)
    emb_bin = a.embedded_bin or os.environ.get("STRATA_EMBEDDED_BIN")
    if not emb_bin and not a.no_build and not (a.strata_bin or os.environ.get("STRATA_BIN")):
        log("building the embedded lookup bench (cargo build --release --example bench_embedded) ...")
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        subprocess.run(["cargo", "build", "--release", "--example", "bench_embedded"], cwd=root, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
        emb_bin = os.path.join(target, "release", "examples", "bench_embedded")

    own_workdir = a.workdir is None
    workdir = a.workdir or tempfile.mkdtemp(prefix="strata-bench-")
    os.makedirs(workdir, exist_ok=True)
    R = {"sf": a.sf, "iterations": a.iterations, "started": dt.datetime.utcnow().isoformat() + "Z",
         "machine": machine(), "strata_bin": strata_bin, "failures": []}
    pg = srv = None
    try:
        d, schema, queries, rows = tpch.generate(a.cache_dir, a.sf)
        R["tpch_rows"] = rows
        if not a.no_postgres:
            pg = Postgres(workdir)
            R["machine"]["postgres"] = pg.version()
        import duckdb
        R["machine"]["duckdb"] = duckdb.__version__

        # ---- bulk load (all sections use it)
        log("loading TPC-H ...")
        total_rows = sum(rows.values())
        R["bulk"] = {"rows": total_rows}
        if pg:
            pg_copy, pg_total = tpch.load_postgres(pg, d, schema)
            R["bulk"]["postgres"] = {"seconds": pg_copy, "with_indexes_s": pg_total, "rows_per_s": total_rows / pg_copy}
        duck, dk_copy, dk_total = tpch.load_duckdb(os.path.join(workdir, "tpch.duckdb"), d, schema, a.memory_limit)
        R["bulk"]["duckdb"] = {"seconds": dk_copy, "rows_per_s": total_rows / dk_copy}
        sdir = os.path.join(workdir, "strata-tpch")
        # A kept --workdir holds the last run's database: loading into it
        # again would be a load of updates (every row a new version of an
        # existing one), slower, and would leave history behind the present.
        shutil.rmtree(sdir, ignore_errors=True)
        st_total, st_settle, st_import_rss, st_settle_rss = tpch.load_strata(strata_bin, sdir, d, a.memory_limit)
        R["bulk"]["strata"] = {"seconds": st_total, "rows_per_s": total_rows / st_total,
                               "peak_rss_bytes": st_import_rss, "checkpoint_s": st_settle,
                               "checkpoint_peak_rss_bytes": st_settle_rss}
        log("  bulk rows/s: " + "  ".join(f"{s} {v['rows_per_s']:.0f}" for s, v in R["bulk"].items() if s != "rows"))
        srv = Strata(strata_bin, sdir, memory_limit=a.memory_limit)
        R["strata_open"] = srv.open_report()

        if "tpch" in sections:
            log(f"TPC-H sf={a.sf}, {a.iterations} iteration(s) ...")
            runners = [tpch.DuckRunner("duckdb", duck, a.timeout)]
            if pg:
                runners.append(tpch.PgRunner("postgres", pg.dsn, a.timeout))
            runners.append(tpch.PgRunner("strata", srv.dsn, a.timeout, pg_timeout=False))
            reset_peak_rss(os.getpid())
            for r in runners:  # warm caches: touch every table once
                for t in tpch.TABLES:
                    try:
                        r.run(f"SELECT count(*) FROM {t}")
                    except Exception as e:  # noqa
                        log(f"  warm-up {r.name} {t}: {e}")
            R["tpch"] = tpch.run_queries(runners, queries, a.iterations)
            # Peak resident set (VmHWM) of the server over its whole life (open,
            # warm-up, 22 queries) and of this process (DuckDB runs in it)
            # since the queries began.
            R["peak_rss"] = {"strata serve": peak_rss(srv.pid()), "duckdb (harness process)": peak_rss(os.getpid())}
            log(f"  peak RSS: {R['peak_rss']}")

        keys = [r[0] for r in duck.execute(
            "SELECT o_orderkey FROM orders USING SAMPLE 2000 ROWS (reservoir, 42)").fetchall()]
        if "lookups" in sections:
            log("point lookups (now) ...")
            R["lookups"] = {}
            cur = {}
            for c in clients:
                cur[c] = {
                    "duckdb": oltp.duck_bench(duck, "SELECT * FROM orders WHERE o_orderkey = ?", keys, c, seconds),
                    "postgres": oltp.wire_bench(pg.dsn, "SELECT * FROM orders WHERE o_orderkey = %s", keys, c, seconds),
                    "strata": oltp.wire_bench(srv.dsn, "SELECT * FROM orders WHERE _id = %s", keys, c, seconds),
                }
                if emb_bin:
                    cur[c]["strata_embedded"] = oltp.embedded_bench(
                        emb_bin, sdir, "SELECT * FROM orders WHERE _id = $1", keys, c, seconds)
                log(f"  {c} client(s): " + "  ".join(f"{k}: {oltp.fmt(v)}" for k, v in cur[c].items()))
            R["lookups"]["now"] = cur

        if "bitemporal" in sections:
            log("bitemporal history ...")
            bres, bctx = bitemporal.build(os.path.join(d, "gen.duckdb"), a.sf, workdir, strata_bin, pg)
            R["bitemporal"] = bres
            log(f"  stream: {json.dumps(bres['stream'])}")
            try:
                (R["bitemporal"]["queries"],
                 R["bitemporal"]["all_active"]) = bitemporal.run_queries(bctx, a.iterations, a.timeout)
                if "lookups" in sections:
                    log("point lookups (as of a past system time) ...")
                    s = bitemporal.T0 + dt.timedelta(days=365 * 5 + 17)
                    ts, pts = bitemporal.ts(s), bitemporal.pts(s)
                    hkeys = keys
                    past = {}
                    pq = (f"SELECT o_custkey, o_status, o_totalprice FROM orders_h WHERE id = %s AND sys_from <= {pts} "
                          f"AND sys_to > {pts} AND valid_from <= {pts} AND valid_to > {pts}")
                    sq = (f"SELECT o_custkey, o_status, o_totalprice FROM orders_h FOR SYSTEM_TIME AS OF {ts} "
                          f"FOR VALID_TIME AS OF {ts} WHERE _id = ")
                    bsrv = bctx["strata"]
                    for c in clients:
                        past[c] = {
                            "duckdb": oltp.duck_bench(bctx["duckdb"], pq.replace("%s", "?"), hkeys, c, seconds),
                            "postgres": oltp.wire_bench(pg.dsn, pq, hkeys, c, seconds),
                            "strata": oltp.wire_bench(bsrv.dsn, sq + "%s", hkeys, c, seconds),
                        }
                        if emb_bin:
                            past[c]["strata_embedded"] = oltp.embedded_bench(
                                emb_bin, bsrv.data_dir, sq + "$1", hkeys, c, seconds)
                        log(f"  {c} client(s): " + "  ".join(f"{k}: {oltp.fmt(v)}" for k, v in past[c].items()))
                    R["lookups"]["past"] = past
            finally:
                bctx["strata"].stop()

        if "ingest" in sections:
            log("single-row write transactions ...")
            ing = {}
            with psycopg.connect(pg.dsn, autocommit=True) as c:
                c.execute("CREATE TABLE ins_t (id BIGINT PRIMARY KEY, a BIGINT, b TEXT)")
            duck.execute("CREATE TABLE ins_t (id BIGINT PRIMARY KEY, a BIGINT, b VARCHAR)")
            with psycopg.connect(srv.dsn, autocommit=True) as c:
                c.execute("CREATE TABLE ins_t (_id BIGINT, a BIGINT, b VARCHAR)")
            for w in writers:
                ing[w] = {
                    "duckdb": oltp.duck_bench(duck, "INSERT INTO ins_t VALUES (?, ?, ?)", None, w, seconds, write=True, base=w * 100),
                    "postgres": oltp.wire_bench(pg.dsn, "INSERT INTO ins_t VALUES (%s, %s, %s)", None, w, seconds, write=True, base=w * 100),
                    "strata": oltp.wire_bench(srv.dsn, "INSERT INTO ins_t (_id, a, b) VALUES (%s, %s, %s)", None, w,
                                              seconds, write=True, base=w * 100),
                }
                log(f"  {w} writer(s): " + "  ".join(f"{k}: {oltp.fmt(v)}" for k, v in ing[w].items()))
            # every acknowledged row must be there
            n_pg = psycopg.connect(pg.dsn).execute("SELECT count(*) FROM ins_t").fetchone()[0]
            n_st = psycopg.connect(srv.dsn).execute("SELECT count(*) FROM ins_t").fetchone()[0]
            n_dk = duck.execute("SELECT count(*) FROM ins_t").fetchone()[0]
            want = {s: sum(ing[w][s].get("ops", 0) for w in writers) for s in ("postgres", "strata", "duckdb")}
            got = {"postgres": n_pg, "strata": n_st, "duckdb": n_dk}
            ing["check"] = {s: "ok" if got[s] == want[s] else f"MISMATCH: {got[s]} rows, {want[s]} acknowledged"
                            for s in got}
            R["ingest"] = ing
    except Exception as e:  # noqa
        traceback.print_exc()
        R["failures"].append(f"crash: {type(e).__name__}: {e}")
    finally:
        if srv:
            srv.stop()
        if pg:
            pg.stop()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    R["elapsed_s"] = time.time() - started
    collect_failures(R)
    md = render(R, a)
    print(md)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(R, f, indent=1, default=str)
    if R["failures"]:
        print("FAILURES:\n  " + "\n  ".join(R["failures"]), file=sys.stderr)
        sys.exit(1)


def collect_failures(R):
    for n, r in (R.get("tpch") or {}).items():
        for s, c in r["check"].items():
            if c != "ok":
                R["failures"].append(f"TPC-H Q{n} {s}: {c}")
        for s in ("duckdb", "postgres"):
            if "error" in r.get(s, {}):
                R["failures"].append(f"TPC-H Q{n} {s}: {r[s]['error']}")
    b = R.get("bitemporal") or {}
    for n, r in list((b.get("queries") or {}).items()) + list((b.get("all_active") or {}).items()):
        for s, c in r["check"].items():
            if c != "ok":
                R["failures"].append(f"bitemporal '{n}' {s}: {c}")
    st = b.get("stream", {})
    if st.get("strata", {}).get("failed"):
        R["failures"].append(f"bitemporal stream: {st['strata']['failed']} Strata transactions failed")
    for m in st.get("clock_mismatch", []):
        R["failures"].append(f"bitemporal stream: {m}")
    for kind in ("now", "past"):
        for c, r in ((R.get("lookups") or {}).get(kind) or {}).items():
            for s, v in r.items():
                if "error" in v:
                    R["failures"].append(f"lookups {kind} {c} clients {s}: {v['error']}")
    ing = R.get("ingest") or {}
    for s, c in (ing.get("check") or {}).items():
        if c != "ok":
            R["failures"].append(f"ingest {s}: {c}")
    for w, r in ing.items():
        if w == "check":
            continue
        for s, v in r.items():
            if "error" in v:
                R["failures"].append(f"ingest {w} writers {s}: {v['error']}")


def peak_rss(pid):
    """VmHWM of a live process, in bytes (None if it cannot be read)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss(pid):
    """Start VmHWM over from the current RSS (Linux: `5` to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def gib(n):
    return "-" if n is None else f"{n / (1 << 30):.2f} GiB"


def machine():
    m = {"nproc": os.cpu_count(), "platform": platform.platform()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                m["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                m["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return m


def ms(r):
    if r is None:
        return "-"
    if "error" in r:
        return r["error"]
    return f"{r['median'] * 1000:.1f}"


def ratio(a, b):
    if not a or not b or "median" not in a or "median" not in b or b["median"] <= 0:
        return "-"
    return f"{a['median'] / b['median']:.2f}"


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def query_table(rows, label):
    out = [f"| {label} | DuckDB ms | PostgreSQL ms | Strata ms | Strata/DuckDB | Strata/PostgreSQL | answers |",
           "|---|---:|---:|---:|---:|---:|---|"]
    rd, rp = [], []
    for name, r in rows:
        st, dk, pg = r.get("strata"), r.get("duckdb"), r.get("postgres")
        chk = ", ".join(f"{s}: {c}" for s, c in r["check"].items()) or "-"
        out.append(f"| {name} | {ms(dk)} | {ms(pg)} | {ms(st)} | {ratio(st, dk)} | {ratio(st, pg)} | {chk} |")
        if st and "median" in st:
            if dk and "median" in dk:
                rd.append(st["median"] / dk["median"])
            if pg and "median" in pg:
                rp.append(st["median"] / pg["median"])
    out.append(f"| geometric mean of ratios ({len(rd)} / {len(rp)} queries) | | | | {geomean(rd):.2f} | {geomean(rp):.2f} | |")
    return out


def olt(r):
    if r is None:
        return "-"
    if "error" in r:
        return r["error"]
    return f"{r['ops_per_s']:.0f} ({r['p50_us']:.0f} / {r['p99_us']:.0f})"


def render(R, a):
    m = R["machine"]
    L = [f"Run {R['started']}, {R.get('elapsed_s', 0):.0f} s: `python3 benches/harness/run.py --sf {a.sf} "
         f"--iterations {a.iterations}`", "",
         f"Machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), {m.get('ram_gb', '?')} GB RAM, {m.get('platform')}; "
         f"PostgreSQL {m.get('postgres', '?')}, DuckDB {m.get('duckdb', '?')}."
         + (f" Memory limit {a.memory_limit} (Strata `--memory-limit`, DuckDB `memory_limit`)." if a.memory_limit else ""),
         ""]
    if "bulk" in R:
        b = R["bulk"]
        L += ["### Bulk load (TPC-H, all tables)", "",
              "| | rows | seconds | rows/s | Strata/peer (time) |", "|---|---:|---:|---:|---:|"]
        for s, label in (("duckdb", "DuckDB (COPY FROM csv)"), ("postgres", "PostgreSQL (COPY FROM STDIN, before indexes)"),
                         ("strata", "Strata (`strata import`, Arrow IPC: a bulk load into each empty table)")):
            if s not in b:
                continue
            rr = "-" if s == "strata" or "strata" not in b else f"{b['strata']['seconds'] / b[s]['seconds']:.2f}"
            L.append(f"| {label} | {b['rows']} | {b[s]['seconds']:.2f} | {b[s]['rows_per_s']:.0f} | {rr} |")
        L.append("")
        if b.get("strata", {}).get("peak_rss_bytes"):
            L += [f"Peak RSS of `strata import` (largest table): {gib(b['strata']['peak_rss_bytes'])}.", ""]
        if b.get("strata", {}).get("checkpoint_s") is not None:
            ck = b["strata"]
            L += [f"Then `CHECKPOINT` (compaction and collection to completion, `strata sql`): "
                  f"{ck['checkpoint_s']:.1f} s"
                  + (f", peak RSS {gib(ck['checkpoint_peak_rss_bytes'])}" if ck.get("checkpoint_peak_rss_bytes") else "")
                  + ".", ""]
    if R.get("strata_open"):
        L += [f"Opening the loaded database (`strata serve` startup log): {R['strata_open']}", ""]
    if R.get("peak_rss"):
        L += ["Peak RSS (VmHWM) during TPC-H: " + ", ".join(f"{k} {gib(v)}" for k, v in R["peak_rss"].items()) + ".", ""]
    if R.get("tpch"):
        L += [f"### TPC-H SF {R['sf']} (median of {R['iterations']}, ms)", ""]
        L += query_table([(f"Q{n}", r) for n, r in R["tpch"].items()], "query")
        L.append("")
    b = R.get("bitemporal")
    if b:
        st = b["stream"]
        L += ["### Bitemporal history (TPC-BiH-like)", "",
              f"Initial rows {b.get('initial_rows')}; {st['transactions']} business transactions over ten simulated "
              f"years ({st.get('kinds')}); orders_h holds {st.get('orders_h_rectangles')} rectangles in Strata.", "",
              "| applying the stream | seconds | tx/s |", "|---|---:|---:|"]
        for s in ("duckdb", "postgres", "strata"):
            if s in st:
                L.append(f"| {s} | {st[s]['seconds']:.1f} | {st[s]['tx_per_s']:.0f} |")
        L.append("")
        if b.get("queries"):
            L += query_table(list(b["queries"].items()), "query")
            L.append("")
        if b.get("all_active"):
            L += ["#### For what interval were N contracts all active at once? (by N)", ""]
            L += query_table(list(b["all_active"].items()), "query")
            L.append("")
    lk = R.get("lookups")
    if lk:
        L += ["### Point lookups by key (prepared; ops/s (p50 / p99 µs))", "",
              "| lookup | clients | DuckDB | PostgreSQL | Strata wire | Strata embedded | Strata wire/PostgreSQL p50 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, label in (("now", "orders, current"), ("past", "orders_h, as of year 5")):
            for c, r in (lk.get(kind) or {}).items():
                p, s = r.get("postgres", {}), r.get("strata", {})
                rr = f"{s['p50_us'] / p['p50_us']:.2f}" if "p50_us" in s and "p50_us" in p and p["p50_us"] else "-"
                L.append(f"| {label} | {c} | {olt(r.get('duckdb'))} | {olt(p)} | {olt(s)} | "
                         f"{olt(r.get('strata_embedded'))} | {rr} |")
        L.append("")
    ing = R.get("ingest")
    if ing:
        L += ["### Single-row INSERT transactions (autocommit; tx/s (p50 / p99 µs))", "",
              "| writers | DuckDB | PostgreSQL | Strata wire | Strata/PostgreSQL |", "|---:|---:|---:|---:|---:|"]
        for w, r in ing.items():
            if w == "check":
                continue
            p, s = r.get("postgres", {}), r.get("strata", {})
            rr = f"{s['ops_per_s'] / p['ops_per_s']:.2f}" if "ops_per_s" in s and "ops_per_s" in p else "-"
            L.append(f"| {w} | {olt(r.get('duckdb'))} | {olt(p)} | {olt(s)} | {rr} |")
        L.append(f"\nRows acknowledged = rows found: {ing.get('check')}")
        L.append("")
    if R["failures"]:
        L += ["### Failures", ""] + [f"- {f}" for f in R["failures"]] + [""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
