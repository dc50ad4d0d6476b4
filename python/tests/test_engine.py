"""Streaming with bounded memory, Ctrl-C, the GIL, and two processes on
one data directory."""

import re
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

import strata
from conftest import run_python


def test_ten_million_rows_stream_in_bounded_memory():
    # In a fresh process, so that its peak RSS is this query's.
    out = run_python(
        """
import resource, pyarrow.compute as pc, strata
con = strata.connect()
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
con.sql("SELECT 1").fetchall()
base = peak_mib()
rel = con.sql("SELECT value, value * 2 AS twice, 'row number ' || value AS label FROM generate_series(1, 10000000)")
rows = total = size = 0
for b in rel.fetch_record_batch():
    rows += b.num_rows
    total += pc.sum(b.column(0)).as_py()
    size += b.nbytes
print(rows, total, size // 2**20, peak_mib() - base)
"""
    )
    assert out.returncode == 0, out.stderr
    rows, total, size_mib, grew_mib = map(int, out.stdout.split())
    assert rows == 10_000_000 and total == 10_000_000 * 10_000_001 // 2
    # The whole result is ~380 MiB of Arrow; streaming holds a few batches.
    assert size_mib > 300, size_mib
    assert grew_mib < size_mib / 2, f"peak RSS grew {grew_mib} MiB for a {size_mib} MiB result"


def test_ten_million_rows_to_arrow(con):
    t0 = time.perf_counter()
    t = con.sql("SELECT value FROM generate_series(1, 10000000)").arrow()
    took = time.perf_counter() - t0
    assert t.num_rows == 10_000_000
    assert t.column(0).chunk(0).to_pylist()[:3] == [1, 2, 3]
    print(f"10M-row result to a pyarrow Table in {took:.2f} s")


def test_ctrl_c_cancels_a_long_query():
    proc = subprocess.Popen(
        [sys.executable, "-c", """
import time, strata
con = strata.connect()
print("ready", flush=True)
t = time.time()
try:
    con.sql("SELECT count(*) FROM generate_series(1, 1000000000000)").fetchall()
    print("finished?!", flush=True)
except KeyboardInterrupt:
    print("interrupted after %.1f s" % (time.time() - t), flush=True)
print(con.sql("SELECT 41 + 1 AS x").fetchall(), flush=True)
"""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "PYTHONPATH": ":".join(p for p in sys.path if p)},
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    m = re.search(r"interrupted after ([0-9.]+) s", out)
    assert m, out + err
    assert float(m.group(1)) < 10
    # The connection still works after the cancelled query.
    assert "[(42,)]" in out


def test_the_gil_is_released_while_the_engine_works(con):
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = count
        t0 = time.perf_counter()
        con.sql("SELECT count(*) FROM generate_series(1, 50000000)").fetchall()
        took = time.perf_counter() - t0
        during = count - before
    finally:
        stop.set()
        t.join()
    # With the GIL held for the whole query the other thread would not move.
    assert during > 1000 * took, (during, took)


def test_threads_share_a_connection_one_statement_at_a_time(con):
    con.sql("CREATE TABLE t (v BIGINT)")
    errors = []

    def work(k):
        try:
            for i in range(20):
                con.sql("INSERT INTO t (_id, v) VALUES (?, ?)", [k * 100 + i, i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(80,)]


def test_a_server_writes_and_an_embedded_reader_sees_it(server):
    psycopg = pytest.importorskip("psycopg")
    data, pg = server
    dsn = f"host=127.0.0.1 port={pg} user=strata dbname=strata connect_timeout=10"
    with psycopg.connect(dsn, autocommit=True) as w:
        w.execute("INSERT INTO events (_id, what) VALUES (1, 'first')")
        reader = strata.connect(str(data), read_only=True)
        assert reader.sql("SELECT what FROM events").fetchall() == [("first",)]
        w.execute("INSERT INTO events (_id, what) VALUES (2, 'second')")
        deadline = time.time() + 10
        while True:
            n = reader.sql("SELECT count(*) FROM events").fetchall()[0][0]
            if n == 2 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert n == 2, "the embedded reader did not see the server's second commit"
        # An embedded writer in another process; the server sees its commit.
        out = run_python(
            f"""
import strata
con = strata.connect({str(data)!r})
con.insert("events", {{"_id": [3], "what": ["from python"]}})
print("ok")
"""
        )
        assert out.returncode == 0 and "ok" in out.stdout, out.stderr
        deadline = time.time() + 10
        while True:
            rows = w.execute("SELECT what FROM events WHERE _id = 3").fetchall()
            if rows or time.time() > deadline:
                break
            time.sleep(0.05)
        assert rows == [("from python",)]
