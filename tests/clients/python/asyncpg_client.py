"""asyncpg against strata serve. asyncpg always uses the extended protocol
with binary results and describes every statement; it introspects types it
has no codec for through pg_catalog."""
import asyncio
import datetime as dt
import decimal
import time

import asyncpg

from common import HOST, PORT, check, eq


async def main():
    conn = await asyncpg.connect(host=HOST, port=PORT, user="strata", database="strata", timeout=10)
    await conn.execute(
        "CREATE TABLE apg_types (_id BIGINT, i BIGINT, f DOUBLE PRECISION, n NUMERIC(10,2), b BOOLEAN, "
        "t TEXT, by BYTEA, d DATE, ts TIMESTAMP, tstz TIMESTAMPTZ)"
    )
    ts = dt.datetime(2024, 1, 2, 3, 4, 5, 678000)
    tstz = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    await conn.execute(
        "INSERT INTO apg_types (_id, i, f, n, b, t, by, d, ts, tstz) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        1, -42, 2.5, decimal.Decimal("12.34"), True, "héllo", b"\x00\xff", dt.date(2024, 2, 29), ts, tstz,
    )
    r = await conn.fetchrow("SELECT i, f, n, b, t, by, d, ts, tstz FROM apg_types WHERE _id = $1", 1)
    eq(
        tuple(r),
        (-42, 2.5, decimal.Decimal("12.34"), True, "héllo", b"\x00\xff", dt.date(2024, 2, 29), ts, tstz),
        "binary round trip of int, float, numeric, bool, text, bytea, date, timestamp, timestamptz",
    )
    # Arrays: asyncpg has no built-in codec for int8[]/text[] results and
    # looks the array types up with its recursive introspection query.
    await conn.execute("CREATE TABLE apg_arrays (_id BIGINT, nums BIGINT[], tags TEXT[])")
    await conn.execute("INSERT INTO apg_arrays (_id, nums, tags) VALUES ($1, $2, $3)", 1, [1, 2, 3], ["a", None, "c"])
    r = await conn.fetchrow("SELECT nums, tags FROM apg_arrays WHERE _id = 1")
    eq((list(r["nums"]), list(r["tags"])), ([1, 2, 3], ["a", None, "c"]), "int8[] and text[] round trip")
    eq(await conn.fetchval("SELECT ARRAY[1.5, 2.5]"), [1.5, 2.5], "float8[] result")
    # Parameters whose type comes from an explicit cast.
    eq(await conn.fetchval("SELECT $1::int + 1", 41), 42, "$1::int parameter")
    eq(await conn.fetchval("SELECT $1::text || 'x'", "a"), "ax", "$1::text parameter")
    # A parameter whose type the server infers from a comparison.
    eq(await conn.fetchval("SELECT t FROM apg_types WHERE i = $1", -42), "héllo", "inferred int8 parameter")

    # A transaction that rolls back.
    tr = conn.transaction()
    await tr.start()
    await conn.execute("INSERT INTO apg_types (_id, t) VALUES (9, 'gone')")
    await tr.rollback()
    eq(await conn.fetchval("SELECT count(*) FROM apg_types WHERE _id = 9"), 0, "rolled-back insert is absent")
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO apg_types (_id, t) VALUES (10, 'gone too')")
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    eq(await conn.fetchval("SELECT count(*) FROM apg_types WHERE _id = 10"), 0, "aborted `async with` transaction")

    # Time travel.
    await conn.execute("INSERT INTO apg_accounts (_id, balance) VALUES (1, 100)")
    time.sleep(0.05)
    before = await conn.fetchval("SELECT now()")
    time.sleep(0.05)
    await conn.execute("UPDATE apg_accounts SET balance = 90 WHERE _id = 1")
    eq(await conn.fetchval("SELECT balance FROM apg_accounts"), 90, "balance after UPDATE")
    eq(
        await conn.fetchval("SELECT balance FROM apg_accounts FOR SYSTEM_TIME AS OF $1", before),
        100,
        "balance AS OF before the UPDATE",
    )

    # Catalog introspection: asyncpg's own type lookup by name (set_type_codec
    # introspects the type through pg_type/pg_namespace), then a codec in use.
    await conn.set_type_codec("numeric", encoder=str, decoder=lambda s: "N" + s, schema="pg_catalog", format="text")
    eq(await conn.fetchval("SELECT n FROM apg_types WHERE _id = 1"), "N12.34", "custom codec installed via introspection")
    await conn.reset_type_codec("numeric", schema="pg_catalog")
    tables = await conn.fetch(
        "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1"
    )
    names = [t["relname"] for t in tables]
    check("apg_types" in names and "apg_accounts" in names, "pg_class lists the tables", names)
    cols = await conn.fetch(
        "SELECT column_name, data_type, ordinal_position FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        "apg_types",
    )
    eq(
        [(c["column_name"], c["data_type"]) for c in cols][:4],
        [("_id", "bigint"), ("i", "bigint"), ("f", "double precision"), ("n", "numeric")],
        "information_schema.columns",
    )
    await conn.close()
    print("asyncpg: all checks passed")


asyncio.run(main())
