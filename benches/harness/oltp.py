"""Point lookups (prepared, by key; now and as of a past system time) and
single-row write transactions, at 1 and N concurrent clients."""

import json
import multiprocessing as mp
import subprocess
import threading
import time

from common import log, percentile


def _summ(lat, ops, seconds):
    return {"ops": ops, "seconds": seconds, "ops_per_s": ops / seconds if seconds else 0.0,
            "p50_us": percentile(lat, 50) * 1e6 if lat else None,
            "p99_us": percentile(lat, 99) * 1e6 if lat else None}


# ---------------------------------------------------------------- wire clients (one process each)


def _pg_worker(dsn, sql, keys, seconds, offset, write, base, q):
    import psycopg
    try:
        conn = psycopg.connect(dsn, autocommit=True)
        lat = []
        i = offset
        deadline = time.perf_counter() + seconds
        while True:
            t = time.perf_counter()
            if t >= deadline:
                break
            if write:
                k = (base + offset) * 1_000_000_000 + i
                conn.execute(sql, (k, i, f"row {i}"), prepare=True)
            else:
                k = keys[i % len(keys)]
                rows = conn.execute(sql, (k,), prepare=True).fetchall()
                if not rows:
                    raise RuntimeError(f"lookup of key {k} returned no row")
            i += 1
            lat.append(time.perf_counter() - t)
        conn.close()
        q.put(("ok", lat))
    except Exception as e:  # noqa
        q.put(("error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))


def wire_bench(dsn, sql, keys, clients, seconds, write=False, base=0):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_pg_worker, args=(dsn, sql, keys, seconds, c + 1, write, base, q))
             for c in range(clients)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    lat, err = [], None
    for _ in procs:
        kind, v = q.get(timeout=seconds + 120)
        if kind == "ok":
            lat.extend(v)
        else:
            err = v
    for p in procs:
        p.join()
    el = time.perf_counter() - t0
    if err:
        return {"error": err}
    return _summ(lat, len(lat), min(el, seconds) if el > seconds else el)


def duck_bench(con, sql, keys, clients, seconds, write=False, base=0):
    lat_all, errs = [], []

    def work(c):
        cur = con.cursor()
        lat = []
        i = c + 1
        deadline = time.perf_counter() + seconds
        try:
            while True:
                t = time.perf_counter()
                if t >= deadline:
                    break
                if write:
                    cur.execute(sql, [(base + c + 1) * 1_000_000_000 + i, i, f"row {i}"])
                else:
                    rows = cur.execute(sql, [keys[i % len(keys)]]).fetchall()
                    if not rows:
                        raise RuntimeError("lookup returned no row")
                i += 1
                lat.append(time.perf_counter() - t)
        except Exception as e:  # noqa
            errs.append(str(e))
        lat_all.extend(lat)

    ths = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    el = time.perf_counter() - t0
    if errs:
        return {"error": errs[0][:160]}
    return _summ(lat_all, len(lat_all), el)


def embedded_bench(binary, data_dir, sql, keys, clients, seconds):
    r = subprocess.run([binary, "--data-dir", data_dir, "--sql", sql,
                        "--keys", ",".join(str(k) for k in keys[:2000]),
                        "--clients", str(clients), "--seconds", str(seconds)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return {"error": r.stderr.strip()[:200]}
    j = json.loads(r.stdout.strip().splitlines()[-1])
    if j["rows"] < j["ops"]:
        return {"error": f"only {j['rows']} rows for {j['ops']} lookups"}
    return {"ops": j["ops"], "seconds": j["seconds"], "ops_per_s": j["ops"] / j["seconds"],
            "p50_us": j["p50_us"], "p99_us": j["p99_us"]}


def fmt(r):
    if "error" in r:
        return r["error"]
    return f"{r['ops_per_s']:.0f}/s p50 {r['p50_us']:.0f}µs p99 {r['p99_us']:.0f}µs"
