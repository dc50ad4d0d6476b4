"""The change feed through psycopg 3 (run by tests/change_feed.rs):

- a COPY (SUBSCRIBE …) TO STDOUT subscriber started before 10,000
  transactions from 4 writers gets every change once, in log order;
- a cursor consumer (DECLARE … CURSOR FOR SUBSCRIBE, FETCH) killed with
  SIGKILL in the middle and resumed AFTER its last saved position misses
  and repeats nothing;
- FROM SYSTEM_TIME gives the history since then, WITH SNAPSHOT the state
  first;
- an ERASE reaches subscribers as an erase, and no later read or replay
  returns the erased values.

Writers: 4 threads, one connection each, one INSERT per transaction."""
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg

from common import DSN, check, eq


def same(got, want, what):
    """eq for long lists: on failure, the first difference, not the lists."""
    if got != want:
        i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        check(False, what, f"{len(got)} items against {len(want)}; first difference at {i}: "
              f"{got[i:i + 3]!r} against {want[i:i + 3]!r}")
    check(True, f"{what} ({len(want)} items)")

N_WRITERS = int(os.environ.get("FEED_WRITERS", "4"))
PER_WRITER = int(os.environ.get("FEED_TXS", "10000")) // N_WRITERS
TOTAL = N_WRITERS * PER_WRITER

if len(sys.argv) > 1 and sys.argv[1] == "consume":
    # The killable consumer: reads through a cursor, appends "position id"
    # per change to a file, flushed (and fsynced) per FETCH, so the file
    # holds exactly what was processed when SIGKILL lands.
    out_path, after = sys.argv[2], sys.argv[3]
    conn = psycopg.connect(DSN)
    cur = conn.cursor()
    start = "" if after == "-" else f" AFTER {int(after)}"
    cur.execute(f"DECLARE feed CURSOR FOR SUBSCRIBE TO orders{start}")
    with open(out_path, "a") as out:
        while True:
            cur.execute("FETCH 50 FROM feed")
            rows = cur.fetchall()
            for pos, _st, op, _id, *_ in rows:
                out.write(f"{pos} {op} {_id}\n")
            out.flush()
            os.fsync(out.fileno())
    sys.exit(0)

setup = psycopg.connect(DSN, autocommit=True)
setup.execute("CREATE TABLE orders (_id BIGINT, writer BIGINT, n BIGINT, note TEXT)")
start_time = setup.execute("SELECT now()").fetchone()[0]

# --- 1. A COPY subscriber started before the writers.
copied = []
copy_ready = threading.Event()
copy_error = []
sub = psycopg.connect(DSN, autocommit=True)


def copy_subscriber():
    try:
        with sub.cursor().copy("COPY (SUBSCRIBE TO orders) TO STDOUT") as cp:
            copy_ready.set()
            for row in cp.rows():
                copied.append(row)
    except psycopg.errors.QueryCanceled:
        pass
    except Exception as e:  # noqa: BLE001
        copy_error.append(e)
        copy_ready.set()


t = threading.Thread(target=copy_subscriber, daemon=True)
t.start()
copy_ready.wait(30)
check(not copy_error, "the COPY subscription started", copy_error)

# --- 2. A cursor consumer in its own process, killed mid-stream.
feed_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"strata-feed-{os.getpid()}.txt")
if os.path.exists(feed_file):
    os.remove(feed_file)
consumer = subprocess.Popen([sys.executable, __file__, "consume", feed_file, "-"])

# --- The writers: 4 connections, one transaction per INSERT.
errors = []


def writer(w):
    try:
        c = psycopg.connect(DSN, autocommit=True)
        for i in range(PER_WRITER):
            c.execute(
                "INSERT INTO orders (_id, writer, n, note) VALUES (%s, %s, %s, %s)",
                (w * PER_WRITER + i, w, i, f"w{w}-{i}"),
            )
        c.close()
    except Exception as e:  # noqa: BLE001
        errors.append(e)


began = time.time()
writers = [threading.Thread(target=writer, args=(w,)) for w in range(N_WRITERS)]
for th in writers:
    th.start()
# Kill the consumer with SIGKILL once it has processed some changes.
killed_at = None
while time.time() - began < 120:
    try:
        n = sum(1 for _ in open(feed_file))
    except FileNotFoundError:
        n = 0
    if n >= TOTAL // 4:
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
        killed_at = n
        break
    time.sleep(0.05)
check(killed_at is not None, "the cursor consumer got a quarter of the changes before it was killed")
for th in writers:
    th.join()
check(not errors, "the writers committed everything", errors)
took = time.time() - began
print(f"{TOTAL} transactions from {N_WRITERS} writers in {took:.1f} s")

# Resume after the last saved position (the file holds what was processed).
lines = open(feed_file).read().split("\n")
saved = [l for l in lines if l.strip()]
last_pos = saved[-1].split()[0]
consumer = subprocess.Popen([sys.executable, __file__, "consume", feed_file, last_pos])

# --- The COPY subscriber catches up with all 10,000.
deadline = time.time() + 120
while len(copied) < TOTAL and time.time() < deadline and not copy_error:
    time.sleep(0.05)
check(not copy_error, "the COPY subscription ran without error", copy_error)
eq(len(copied), TOTAL, "changes the COPY subscriber received")
positions = [int(r[0]) for r in copied]
check(positions == sorted(positions) and len(set(positions)) == TOTAL,
      "one transaction per change, in log (position) order")
ids = [int(r[3]) for r in copied]
same(sorted(ids), list(range(TOTAL)), "every transaction's row exactly once")
eq({r[2] for r in copied}, {"put"}, "operations")
for w in range(N_WRITERS):
    ns = [int(r[7]) for r in copied if int(r[6]) == w]
    check(ns == sorted(ns), f"writer {w}'s transactions in its commit order")

# --- The resumed consumer: exactly the rest, nothing twice.
deadline = time.time() + 120
while time.time() < deadline:
    n = sum(1 for l in open(feed_file) if l.strip())
    if n >= TOTAL:
        break
    time.sleep(0.05)
time.sleep(0.5)
consumer.send_signal(signal.SIGKILL)
consumer.wait()
got = [l.split() for l in open(feed_file) if l.strip()]
got_ids = [int(g[2]) for g in got]
eq(len(got_ids), TOTAL, "changes the killed-and-resumed consumer processed")
same(sorted(got_ids), list(range(TOTAL)), "the resumed consumer missed and repeated nothing")
same([int(g[0]) for g in got], positions, "… in the same order as the COPY subscriber")
os.remove(feed_file)

# --- 3. From a past system time: the history since then.
mid = copied[TOTAL // 2]
with psycopg.connect(DSN) as c:
    cur = c.cursor()
    cur.execute("DECLARE since CURSOR FOR SUBSCRIBE TO orders FROM SYSTEM_TIME %s", (mid[1],))
    rows = []
    while len(rows) < TOTAL - TOTAL // 2:
        cur.execute("FETCH 1000 FROM since")
        rows += cur.fetchall()
    same([r[3] for r in rows], [int(r[3]) for r in copied[TOTAL // 2:]],
       "SUBSCRIBE FROM SYSTEM_TIME: the history since then")
    cur.execute("FETCH 10 FROM since WITH (TIMEOUT = '100ms')")
    eq(cur.fetchall(), [], "nothing more (a FETCH with a timeout returns no rows)")
    # WITH SNAPSHOT from the same time: the state then, then the rest.
    cur.execute("DECLARE snap CURSOR FOR SUBSCRIBE TO orders FROM SYSTEM_TIME %s WITH SNAPSHOT", (mid[1],))
    rows = []
    while len(rows) < TOTAL:
        cur.execute("FETCH 2000 FROM snap")
        rows += cur.fetchall()
    snap = [r for r in rows if r[2] == "snapshot"]
    eq(len(snap), TOTAL // 2 + 1, "snapshot rows: the state as of that system time")
    check(all(r[0] == snap[0][0] for r in snap) and rows[len(snap)][0] > snap[0][0],
          "snapshot rows carry the position the changes continue after")
    c.rollback()

# psycopg's named (server-side) cursors: DECLARE … WITHOUT HOLD, FETCH FORWARD.
with psycopg.connect(DSN) as c:
    with c.cursor(name="pycur") as cur:
        cur.execute("SUBSCRIBE TO orders")
        first = cur.fetchmany(100)
        eq(len(first), 100, "a named psycopg cursor fetches a subscription")
        same([r[3] for r in first], [int(r[3]) for r in copied[:100]], "… from the beginning")

# --- 4. ERASE: an erase change, and the values are gone from every read.
victim = int(copied[10][3])
setup.execute("ERASE FROM orders WHERE _id = %s", (victim,))
deadline = time.time() + 30
while len(copied) < TOTAL + 1 and time.time() < deadline:
    time.sleep(0.05)
eq(len(copied), TOTAL + 1, "the subscriber received the erase")
eq((copied[-1][2], int(copied[-1][3])), ("erase", victim), "the erase change")
check(copied[-1][7] is None, "an erase carries no values", copied[-1])
eq(setup.execute("SELECT count(*) FROM orders FOR ALL SYSTEM_TIME WHERE _id = %s", (victim,)).fetchone()[0],
   0, "the erased entity's history, read back")
with psycopg.connect(DSN) as c:
    cur = c.cursor()
    cur.execute("DECLARE again CURSOR FOR SUBSCRIBE TO orders")
    replay = []
    while len(replay) < TOTAL:
        cur.execute("FETCH 5000 FROM again")
        replay += cur.fetchall()
    mine = [r for r in replay if r[3] == victim]
    eq([r[2] for r in mine], ["erase"], "a replay after the erase: the erase, no values")
    c.rollback()

# Cancel ends a COPY subscription (as psql's Ctrl-C does).
sub.cancel()
t.join(10)
check(not t.is_alive(), "a cancel request ended the COPY subscription")

# Errors say what to do.
for sql, code, words in [
    ("SUBSCRIBE TO orders", "0A000", "COPY (SUBSCRIBE"),
    ("DECLARE x CURSOR FOR SUBSCRIBE TO orders", "25P01", "BEGIN"),
    ("DECLARE x CURSOR WITH HOLD FOR SUBSCRIBE TO nope", "42P01", "does not exist"),
    ("FETCH 1 FROM nothing", "34000", "does not exist"),
    ("DECLARE x CURSOR WITH HOLD FOR SUBSCRIBE TO orders AFTER 99999999999999", None, "past the end"),
]:
    try:
        setup.execute(sql)
        check(False, f"{sql} fails")
    except psycopg.Error as e:
        check((code is None or e.sqlstate == code) and words in str(e), f"{sql}: {e.sqlstate} {e}")

print("change feed: all checks passed")
