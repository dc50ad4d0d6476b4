"""psycopg 3 against strata serve: typed and untyped parameters, text and
binary results, a rolled-back transaction, time travel, catalog introspection."""
import datetime as dt
import decimal
import json
import time
import uuid

import psycopg
from psycopg.types import TypeInfo

from common import DSN, check, eq

conn = psycopg.connect(DSN, autocommit=True)
cur = conn.cursor()

cur.execute(
    "CREATE TABLE py_types (_id BIGINT, i BIGINT, f DOUBLE PRECISION, n NUMERIC(10,2), "
    "b BOOLEAN, t TEXT, by BYTEA, d DATE, ts TIMESTAMP, tstz TIMESTAMPTZ, u UUID, j JSON, arr BIGINT[])"
)
U = uuid.UUID("12345678-1234-5678-1234-567812345678")
row = dict(
    _id=1,
    i=-42,
    f=2.5,
    n=decimal.Decimal("12.34"),
    b=True,
    t="héllo",
    by=b"\x00\x01\xff",
    d=dt.date(2024, 2, 29),
    ts=dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
    tstz=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    u=str(U),
    j=json.dumps({"a": [1, 2]}),
    arr=[1, 2, 3],
)
# Typed parameters: psycopg sends each Python value with its Postgres type.
cur.execute(
    "INSERT INTO py_types (_id, i, f, n, b, t, by, d, ts, tstz, u, j, arr) "
    "VALUES (%(_id)s, %(i)s, %(f)s, %(n)s, %(b)s, %(t)s, %(by)s, %(d)s, %(ts)s, %(tstz)s, %(u)s, %(j)s, %(arr)s)",
    row,
)
# Untyped parameters: text sent as 'unknown', the server infers the column type.
cur.execute(
    "INSERT INTO py_types (_id, i, t, d) VALUES (%s, %s, %s, %s)",
    (2, "7", "two", "2020-01-01"),
)

want = (
    -42,
    2.5,
    decimal.Decimal("12.34"),
    True,
    "héllo",
    b"\x00\x01\xff",
    dt.date(2024, 2, 29),
    dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
)
sql = "SELECT i, f, n, b, t, by, d, ts, tstz, u, j, arr FROM py_types WHERE _id = %s"
for binary in (False, True):
    c = conn.cursor(binary=binary)
    c.execute(sql, (1,))
    got = c.fetchone()
    fmt = "binary" if binary else "text"
    eq(got[:9], want, f"{fmt} results of int, float, numeric, bool, text, bytea, date, timestamp, timestamptz")
    # uuid and json columns come back as Python objects (their Postgres OIDs).
    eq(got[9], U, f"{fmt} uuid column")
    eq(got[10], {"a": [1, 2]}, f"{fmt} json column")
    eq(list(got[11]), [1, 2, 3], f"{fmt} bigint[] column")

cur.execute("SELECT i, t, d FROM py_types WHERE _id = 2")
eq(cur.fetchone(), (7, "two", dt.date(2020, 1, 1)), "untyped parameters took the column types")

# Parameters used in expressions, typed and untyped.
cur.execute("SELECT %s::int + 1, %s || 'x', %s::numeric * 2", (41, "a", decimal.Decimal("1.5")))
eq(cur.fetchone(), (42, "ax", decimal.Decimal("3.0")), "parameters in expressions")

# A transaction that rolls back leaves nothing behind.
conn.autocommit = False
with conn.cursor() as c:
    c.execute("INSERT INTO py_types (_id, t) VALUES (3, 'rolled back')")
    c.execute("SELECT count(*) FROM py_types WHERE _id = 3")
    eq(c.fetchone()[0] in (0, 1), True, "row visible or not inside its own transaction")
conn.rollback()
conn.autocommit = True
cur.execute("SELECT count(*) FROM py_types WHERE _id = 3")
eq(cur.fetchone()[0], 0, "rolled-back insert is absent")

# Time travel: the value before an UPDATE is there AS OF a time before it.
cur.execute("INSERT INTO py_accounts (_id, balance) VALUES (1, 100)")
time.sleep(0.05)
cur.execute("SELECT now()")
before = cur.fetchone()[0]
time.sleep(0.05)
cur.execute("UPDATE py_accounts SET balance = 90 WHERE _id = 1")
cur.execute("SELECT balance FROM py_accounts")
eq(cur.fetchone()[0], 90, "current balance after UPDATE")
cur.execute("SELECT balance FROM py_accounts FOR SYSTEM_TIME AS OF %s", (before,))
eq(cur.fetchone()[0], 100, "balance AS OF before the UPDATE (parameter)")
cur.execute(f"SELECT balance FROM py_accounts FOR SYSTEM_TIME AS OF TIMESTAMP '{before.isoformat()}'")
eq(cur.fetchone()[0], 100, "balance AS OF before the UPDATE (literal)")

# Catalog introspection, as psycopg's own TypeInfo does it.
for name, oid in (("int4", 23), ("text", 25), ("uuid", 2950), ("jsonb", 3802), ("numeric", 1700)):
    info = TypeInfo.fetch(conn, name)
    check(info is not None, f"TypeInfo.fetch({name!r}) found the type")
    eq(info.oid, oid, f"{name} oid")
    check(info.array_oid > 0, f"{name} has an array type", info.array_oid)
check(TypeInfo.fetch(conn, "hstore") is None, "TypeInfo.fetch('hstore') is None (no such type)")

cur.execute(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "WHERE a.attrelid = 'py_types'::regclass AND a.attnum > 0 ORDER BY a.attnum"
)
cols = cur.fetchall()
eq(
    cols,
    [
        ("_id", "bigint"),
        ("i", "bigint"),
        ("f", "double precision"),
        ("n", "numeric(10,2)"),
        ("b", "boolean"),
        ("t", "text"),
        ("by", "bytea"),
        ("d", "date"),
        ("ts", "timestamp without time zone"),
        ("tstz", "timestamp with time zone"),
        ("u", "uuid"),
        ("j", "json"),
        ("arr", "bigint[]"),
    ],
    "pg_attribute + format_type of py_types",
)
cur.execute(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
)
names = [r[0] for r in cur.fetchall()]
check("py_types" in names and "py_accounts" in names, "information_schema.tables lists the tables", names)
cur.execute("SELECT current_database(), current_schema(), version()")
db, schema, version = cur.fetchone()
eq((db, schema), ("strata", "public"), "current_database(), current_schema()")
check(version.startswith("PostgreSQL "), "version() starts with PostgreSQL", version)
print("psycopg: all checks passed")
