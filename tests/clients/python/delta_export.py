"""Server-side exports (run by tests/export.rs, the server started with
--export-root STRATA_EXPORT_DIR):

- COPY (query) TO 'file' (FORMAT parquet) at a past system time, read back
  by pyarrow: the same rows as the query;
- COPY t TO 'dir' (FORMAT delta) after each batch of changes, read by the
  deltalake package (and polars) at every version: each version holds the
  rows of `FOR SYSTEM_TIME AS OF <its system time> FOR ALL VALID_TIME`, its
  history matches the exports, time travel by timestamp lands on the right
  version, a refresh with nothing new writes no version, an ERASE leaves no
  file with the erased rows, and a new column rewrites the table;
- the targets and statements a person gets wrong are refused clearly."""
import datetime as dt
import decimal
import glob
import os

import polars as pl
import psycopg
import pyarrow.parquet as pq
from deltalake import DeltaTable

from common import DSN, check, eq

ROOT = os.environ["STRATA_EXPORT_DIR"]
DELTA = os.path.join(ROOT, "acct_delta")
conn = psycopg.connect(DSN, autocommit=True)


def norm(v):
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.timezone.utc)
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def key(r):
    return (r["_id"], r["_valid_from"])


def rows_at(system_time, cols="*, _valid_from, _valid_to, _system_from"):
    """The table as Strata knew it at a system time, all valid time."""
    cur = conn.execute(
        f"SELECT {cols} FROM acct FOR SYSTEM_TIME AS OF TIMESTAMP '{system_time}' FOR ALL VALID_TIME"
    )
    names = [c.name for c in cur.description]
    return sorted(({k: norm(v) for k, v in zip(names, r)} for r in cur.fetchall()), key=key)


def delta_rows(version):
    t = DeltaTable(DELTA, version=version).to_pyarrow_table()
    return sorted(({k: norm(v) for k, v in r.items()} for r in t.to_pylist()), key=key)


def export():
    cur = conn.execute("COPY acct TO 'acct_delta' (FORMAT delta)")
    return cur.rowcount


def history():
    """Strata's record of each version: version -> commitInfo."""
    return {h["version"]: h for h in DeltaTable(DELTA).history()}


def check_version(v, what):
    h = history()[v]
    st = h["strata"]["systemTime"]
    a, b = delta_rows(v), rows_at(st)
    check(a == b, f"Delta version {v} ({what}) = the table as of {st} ({len(b)} rows)",
          [(x, y) for x, y in zip(a, b) if x != y][:3] or (len(a), len(b)))
    # polars reads the same version.
    p = pl.read_delta(DELTA, version=v).to_dicts()
    eq(len(p), len(rows_at(st)), f"polars reads version {v}")
    # Time travel by timestamp: the version's system time lands on it.
    t = dt.datetime.fromisoformat(st.replace("Z", "+00:00"))
    d = DeltaTable(DELTA)
    d.load_as_version(t)
    eq(d.version(), v, f"deltalake load_as_version({st})")
    eq(h["timestamp"], int(t.timestamp() * 1000), f"version {v}'s timestamp is its system time")
    return st


conn.execute(
    "CREATE TABLE acct (_id BIGINT, owner TEXT, balance NUMERIC(12,2), opened TIMESTAMPTZ, tags TEXT[])"
)
T0 = dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
with conn.transaction():
    for i in range(1, 301):
        conn.execute(
            "INSERT INTO acct (_id, owner, balance, opened, tags) VALUES (%s, %s, %s, %s, %s)",
            (i, f"owner {i}", decimal.Decimal(i) / 4, T0 + dt.timedelta(hours=i), [f"t{i % 3}"] if i % 5 else None),
        )

# Version 0: the whole table.
eq(export(), 300, "the first export writes every row")
eq(DeltaTable(DELTA).version(), 0, "the first export is version 0")
eq(DeltaTable(DELTA).protocol().min_reader_version, 1, "reader version 1")
eq(DeltaTable(DELTA).protocol().min_writer_version, 2, "writer version 2")
st0 = check_version(0, "first export")
check(any(f.name == "balance" and str(f.type) == 'PrimitiveType("decimal(12,2)")' for f in DeltaTable(DELTA).schema().fields),
      "balance is a Delta decimal(12,2)")

# Nothing changed: no new version.
eq(export(), 0, "a refresh with no change writes no rows")
eq(DeltaTable(DELTA).version(), 0, "and no version")
# Another table changed: still nothing for this export.
conn.execute("INSERT INTO other (_id, x) VALUES (1, 1)")
eq(export(), 0, "changes to another table write nothing")
eq(DeltaTable(DELTA).version(), 0, "and no version")

# Version 1: updates, deletes, inserts, a valid-time correction.
with conn.transaction():
    conn.execute("UPDATE acct SET owner = owner || ' (updated)' WHERE _id <= 10")
    conn.execute("DELETE FROM acct WHERE _id BETWEEN 11 AND 15")
    for i in range(301, 321):
        conn.execute("INSERT INTO acct (_id, owner, balance) VALUES (%s, %s, %s)", (i, f"new {i}", decimal.Decimal("1.00")))
conn.execute(
    "UPDATE acct FOR PORTION OF VALID_TIME FROM TIMESTAMP '2030-01-01' TO TIMESTAMP '2031-01-01' "
    "SET owner = 'in 2030' WHERE _id = 100"
)
n = export()
check(n > 0, "the refresh writes the changed rows", n)
eq(DeltaTable(DELTA).version(), 1, "the refresh is version 1")
st1 = check_version(1, "after updates, deletes and inserts")
check(delta_rows(0) == rows_at(st0), "version 0 still reads as before")
h = history()
eq(h[1]["operation"], "MERGE", "a refresh is a MERGE")
eq(h[1]["strata"]["changedIds"], 36, "version 1 changed 10 + 5 + 20 + 1 ids")
check(h[1]["strata"]["position"] > h[0]["strata"]["position"], "positions grow with versions")

# A past system time as Parquet: COPY (query) TO 'file'.
cur = conn.execute(
    f"COPY (SELECT _id, owner, balance, opened, tags FROM acct FOR SYSTEM_TIME AS OF TIMESTAMP '{st0}' "
    "WHERE _id <= 20 ORDER BY _id) TO 'snapshots/first.parquet' (FORMAT parquet)"
)
eq(cur.rowcount, 20, "COPY … TO 'file' reports its rows")
got = [{k: norm(v) for k, v in r.items()} for r in pq.read_table(os.path.join(ROOT, "snapshots/first.parquet")).to_pylist()]
want = conn.execute(
    f"SELECT _id, owner, balance, opened, tags FROM acct FOR SYSTEM_TIME AS OF TIMESTAMP '{st0}' WHERE _id <= 20 ORDER BY _id"
)
names = [c.name for c in want.description]
check(got == [{k: norm(v) for k, v in zip(names, r)} for r in want.fetchall()], "the Parquet file = the query at a past system time")
# The table form, and an absolute path inside the root.
conn.execute(f"COPY acct TO '{ROOT}/snapshots/now.parquet'")
eq(pq.read_table(os.path.join(ROOT, "snapshots/now.parquet")).num_rows, 315, "COPY t TO '/root/…/x.parquet' infers Parquet")

# Version 2: ERASE. No file of the export holds the erased rows any more.
conn.execute("ERASE FROM acct WHERE _id = 7")
export()
eq(DeltaTable(DELTA).version(), 2, "the refresh after an ERASE is version 2")
check_version(2, "after an ERASE")
eq(history()[2]["strata"]["erasedIds"], 1, "version 2 records one erased id")
left = [f for f in glob.glob(os.path.join(DELTA, "*.parquet")) if 7 in pq.read_table(f, columns=["_id"]).column("_id").to_pylist()]
eq(left, [], "no Parquet file of the export holds _id 7")
try:
    DeltaTable(DELTA, version=0).to_pyarrow_table()
    check(False, "version 0 (with the erased rows) can no longer be read")
except Exception as e:  # the files were deleted, as after a VACUUM
    check("not found" in str(e).lower() or "no such file" in str(e).lower() or "notfound" in str(e).lower(),
          "reading version 0 fails: its files are gone", str(e)[:200])

# Version 3: a new column. The table is rewritten with the new schema.
conn.execute("INSERT INTO acct (_id, owner, balance, note) VALUES (500, 'late', 5.00, 'a new column')")
export()
eq(DeltaTable(DELTA).version(), 3, "the refresh after a new column is version 3")
check_version(3, "with a new column")
check("note" in [f.name for f in DeltaTable(DELTA).schema().fields], "version 3 has the new column")
eq(history()[3]["operation"], "WRITE", "a new column rewrites the whole table")

# Mistakes a person makes.
def fails(sql, state, words):
    try:
        conn.execute(sql)
    except psycopg.Error as e:
        eq(e.sqlstate, state, f"{sql!r} fails with SQLSTATE")
        check(all(w in str(e) for w in words), f"{sql!r} says {words}", str(e))
        return
    check(False, f"{sql!r} must fail")


fails("COPY acct TO '/etc/acct.parquet' (FORMAT parquet)", "42501", ["outside the export root", "--export-root"])
fails("COPY acct TO '../acct.parquet' (FORMAT parquet)", "42501", [".."])
fails("COPY acct TO 's3://bucket/acct.parquet' (FORMAT parquet)", "42501", ["outside the export root"])
fails("COPY acct TO 'acct.csv' (FORMAT csv)", "0A000", ["\\copy"])
fails("COPY acct TO 'acct'", "22023", ["FORMAT parquet"])
fails("COPY acct FROM 'acct.parquet'", "0A000", ["FROM a server file"])
fails("COPY (SELECT 1) TO 'q' (FORMAT delta)", "0A000", ["FORMAT parquet"])
fails("COPY nope TO 'nope' (FORMAT delta)", "42P01", ["nope"])
fails("COPY other TO 'acct_delta' (FORMAT delta)", "22023", ["export of table \"acct\""])
fails("COPY acct TO PROGRAM 'cat'", "42501", ["PROGRAM"])
os.makedirs(os.path.join(ROOT, "foreign/_delta_log"))
with open(os.path.join(ROOT, "foreign/_delta_log/00000000000000000000.json"), "w") as f:
    f.write('{"commitInfo":{"timestamp":0}}\n{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}\n')
fails("COPY acct TO 'foreign' (FORMAT delta)", "22023", ["not written by Strata"])
eq(DeltaTable(DELTA).version(), 3, "failed COPYs wrote no version")

print("delta export: all checks passed")
