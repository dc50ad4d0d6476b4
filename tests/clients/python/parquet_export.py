"""COPY … TO STDOUT (FORMAT parquet) read back by pyarrow, polars and DuckDB
(run by tests/export.rs): the same rows as the query, nested columns,
decimals and timestamps with zone included, at the present and at a past
system time; psql's \\copy writes the file. Prints the export rate beside
DuckDB's own COPY … TO … (FORMAT parquet) of the same rows."""
import datetime as dt
import decimal
import io
import os
import subprocess
import tempfile
import time

import duckdb
import polars as pl
import psycopg
import pyarrow.parquet as pq

from common import DSN, PORT, check, eq

conn = psycopg.connect(DSN, autocommit=True)
conn.execute(
    "CREATE TABLE items (_id BIGINT, name TEXT, price NUMERIC(10,2), at TIMESTAMPTZ, day DATE, "
    "ok BOOLEAN, score DOUBLE PRECISION, tags TEXT[])"
)
T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
rows = [
    (1, "ada", decimal.Decimal("12.34"), T0, dt.date(2024, 2, 29), True, 1.5, ["a", "b"]),
    (2, "bob", decimal.Decimal("-0.01"), T0 + dt.timedelta(days=1), dt.date(1999, 12, 31), False, None, []),
    (3, None, None, None, None, None, -2.25, None),
]
for r in rows:
    conn.execute(
        "INSERT INTO items (_id, name, price, at, day, ok, score, tags) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", r
    )
# A nested column: a struct per row.
conn.execute("INSERT INTO nested (_id, addr, n) VALUES (1, named_struct('city', 'Oslo', 'zip', 150), 1)")
conn.execute("INSERT INTO nested (_id, addr, n) VALUES (2, named_struct('city', 'Lima', 'zip', NULL), 2)")
before = conn.execute("SELECT max(_system_from) FROM items").fetchone()[0]
conn.execute("UPDATE items SET price = 99.99 WHERE _id = 1")


def export(sql):
    """The Parquet bytes of COPY (sql) TO STDOUT (FORMAT parquet)."""
    buf = io.BytesIO()
    with conn.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT parquet)") as cp:
        for chunk in cp:
            buf.write(chunk)
    return buf.getvalue()


tmp = tempfile.mkdtemp()


def readers(data, name):
    """The rows as pyarrow, polars and DuckDB read them (lists of dicts)."""
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    a = pq.read_table(path).to_pylist()
    p = pl.read_parquet(path).to_dicts()
    d = duckdb.connect()
    cur = d.execute(f"SELECT * FROM read_parquet('{path}')")
    cols = [c[0] for c in cur.description]
    k = [dict(zip(cols, r)) for r in cur.fetchall()]
    return path, a, p, k


def norm(v):
    """Compare across readers: tz-aware datetimes in UTC."""
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.timezone.utc)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v


query = "SELECT _id, name, price, at, day, ok, score, tags FROM items ORDER BY _id"
want = [dict(zip(["_id", "name", "price", "at", "day", "ok", "score", "tags"], r))
        for r in conn.execute(query).fetchall()]
path, a, p, k = readers(export(query), "items.parquet")
for label, got in [("pyarrow", a), ("polars", p), ("DuckDB", k)]:
    eq([{c: norm(v) for c, v in r.items()} for r in got], [{c: norm(v) for c, v in r.items()} for r in want],
       f"{label} reads the rows the query returns")
schema = pq.read_schema(path)
eq(str(schema.field("price").type), "decimal128(10, 2)", "a decimal stays a decimal")
eq(str(schema.field("at").type), "timestamp[us, tz=UTC]", "a timestamptz stays a timestamp with zone")

# At a past system time: the coordinate is part of the query.
past = f"SELECT _id, price FROM items FOR SYSTEM_TIME AS OF TIMESTAMP '{before.isoformat()}' ORDER BY _id"
_, a, p, k = readers(export(past), "past.parquet")
eq([r["price"] for r in a], [decimal.Decimal("12.34"), decimal.Decimal("-0.01"), None], "pyarrow: prices as of then")
eq([r["price"] for r in k], [decimal.Decimal("12.34"), decimal.Decimal("-0.01"), None], "DuckDB: prices as of then")

# Nested columns and the temporal ones, from a whole table.
_, a, p, k = readers(export("SELECT *, _valid_from, _system_from FROM nested ORDER BY _id"), "nested.parquet")
eq([r["addr"] for r in a], [{"city": "Oslo", "zip": 150}, {"city": "Lima", "zip": None}], "pyarrow: a struct column")
eq([r["addr"] for r in p], [{"city": "Oslo", "zip": 150}, {"city": "Lima", "zip": None}], "polars: a struct column")
eq([r["addr"] for r in k], [{"city": "Oslo", "zip": 150}, {"city": "Lima", "zip": None}], "DuckDB: a struct column")
check(all(r["_valid_from"] is not None for r in a), "temporal columns exported")

# An empty result is still a valid file with the columns.
_, a, _, _ = readers(export("SELECT _id, name FROM items WHERE _id < 0"), "empty.parquet")
eq(a, [], "an empty result is an empty file")

# psql's \copy writes the bytes to a client-side file.
out = os.path.join(tmp, "psql.parquet")
subprocess.run(
    ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(PORT), "-U", "strata", "-d", "strata", "-c",
     f"\\copy (SELECT _id, name, price FROM items ORDER BY _id) TO '{out}' WITH (FORMAT parquet)"],
    check=True,
)
eq(pq.read_table(out).column("name").to_pylist(), ["ada", "bob", None], "psql \\copy … (FORMAT parquet)")

# Mistakes get clear errors.
for sql, code, words in [
    ("COPY items FROM STDIN (FORMAT parquet)", "0A000", "Flight SQL"),
    ("COPY items TO STDOUT (FORMAT parquet, HEADER)", "22023", "do not apply"),
    ("COPY (SUBSCRIBE TO items) TO STDOUT (FORMAT parquet)", "0A000", "never ends"),
    ("COPY items TO STDOUT (FORMAT orc)", "22023", "parquet"),
]:
    try:
        with conn.cursor().copy(sql) as cp:
            for _ in cp:
                pass
        check(False, f"{sql} fails")
    except psycopg.Error as e:
        check(e.sqlstate == code and words in str(e), f"{sql}: {e.sqlstate} {e}")
eq(conn.execute("SELECT 1").fetchone()[0], 1, "the connection works after the errors")

# Export rate beside DuckDB's, same rows (200,000 of them).
N = int(os.environ.get("EXPORT_ROWS", "200000"))
conn.execute(
    "INSERT INTO big (_id, k, note, amount) SELECT x, x % 97, 'row ' || x, CAST(x AS DOUBLE) / 7 "
    f"FROM generate_series(0, {N - 1}) AS g(x)"
)
t = time.time()
data = export("SELECT _id, k, note, amount FROM big")
strata_s = time.time() - t
eq(pq.read_metadata(io.BytesIO(data)).num_rows, N, "rows exported")
d = duckdb.connect()
d.execute(f"CREATE TABLE big AS SELECT x AS _id, x % 97 AS k, 'row ' || x AS note, x / 7 AS amount "
          f"FROM range({N}) t(x)")
t = time.time()
d.execute(f"COPY big TO '{os.path.join(tmp, 'duck.parquet')}' (FORMAT parquet)")
duck_s = time.time() - t
print(f"parquet export of {N:,} rows: Strata {N / strata_s:,.0f} rows/s over the wire, "
      f"DuckDB {N / duck_s:,.0f} rows/s to a local file")
print("parquet export: all checks passed")
