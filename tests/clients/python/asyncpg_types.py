"""asyncpg against strata serve: uuid columns come back as uuid.UUID (asyncpg
picks its codec by the column's type OID), json and jsonb as text by default
and as Python objects with a json codec; parameters of those types bind and
compare (asyncpg sends binary parameters of the types the server describes)."""
import asyncio
import json
import uuid

import asyncpg

from common import HOST, PORT, check, eq

U1 = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
U2 = uuid.UUID("b1ffcd00-0000-4000-8000-0000000000ff")


async def main():
    conn = await asyncpg.connect(host=HOST, port=PORT, user="strata", database="strata", timeout=10)
    await conn.execute("CREATE TABLE apg_docs (_id BIGINT, u UUID, j JSON, b JSONB)")
    await conn.execute(
        "INSERT INTO apg_docs (_id, u, j, b) VALUES ($1, $2, $3, $4)",
        1, U1, '{"name": "ada"}', '{"b": 1, "a": [1, 2]}',
    )
    await conn.execute(
        "INSERT INTO apg_docs (_id, u, j, b) VALUES (2, 'B1FFCD00-0000-4000-8000-0000000000FF', '[1]', '{}')"
    )
    # Binary results with asyncpg's built-in codecs.
    r = await conn.fetchrow("SELECT u, j, b FROM apg_docs WHERE _id = 1")
    check(isinstance(r["u"], uuid.UUID), "uuid column decodes to uuid.UUID", type(r["u"]))
    eq(r["u"], U1, "uuid value")
    eq(r["j"], '{"name": "ada"}', "json column (binary) is its text")
    eq(r["b"], '{"a": [1, 2], "b": 1}', "jsonb column (binary, version 1) is its normalized text")
    st = await conn.prepare("SELECT u, j, b FROM apg_docs")
    eq([a.type.name for a in st.get_attributes()], ["uuid", "json", "jsonb"], "described column types")

    # uuid.UUID parameters compare with the column.
    eq(await conn.fetchval("SELECT _id FROM apg_docs WHERE u = $1", U2), 2, "WHERE u = $1 (uuid.UUID)")
    eq(await conn.fetchval("SELECT u FROM apg_docs WHERE _id = $1", 2), U2, "normalized uuid read back")
    eq(await conn.fetchval("SELECT $1::uuid", str(U2).upper()), U2, "$1::uuid cast")
    U3 = uuid.UUID("c2000000-0000-4000-8000-000000000003")
    await conn.execute("UPDATE apg_docs SET u = $1 WHERE _id = $2", U3, 2)
    eq(await conn.fetchval("SELECT _id FROM apg_docs WHERE u = $1", U3), 2, "UPDATE … SET u = $1 (uuid.UUID)")
    eq(await conn.fetchval("SELECT count(*) FROM apg_docs WHERE u IN ($1, $2)", U1, U3), 2, "u IN ($1, $2)")

    # json / jsonb as Python objects through a codec.
    for t in ("json", "jsonb"):
        await conn.set_type_codec(t, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.execute(
        "INSERT INTO apg_docs (_id, u, j, b) VALUES ($1, $2, $3, $4)",
        3, uuid.UUID(int=3), {"list": [1, 2, None]}, {"z": True, "a": {"n": 1.5}},
    )
    r = await conn.fetchrow("SELECT u, j, b FROM apg_docs WHERE _id = 3")
    eq(dict(r), {"u": uuid.UUID(int=3), "j": {"list": [1, 2, None]}, "b": {"a": {"n": 1.5}, "z": True}},
       "dict round trip through json and jsonb")
    eq(await conn.fetchval("SELECT _id FROM apg_docs WHERE b = $1", {"a": {"n": 1.5}, "z": True}), 3,
       "WHERE b = $1 (dict as jsonb)")

    try:
        await conn.execute("INSERT INTO apg_docs (_id, u) VALUES (9, 'nope')")
        check(False, "a bad uuid is rejected")
    except asyncpg.exceptions.InvalidTextRepresentationError as e:
        check("invalid input syntax for type uuid" in str(e), "bad uuid: 22P02", str(e))
    eq(await conn.fetchval("SELECT count(*) FROM apg_docs"), 3, "nothing half-written")
    await conn.close()
    print("asyncpg types: all checks passed")


asyncio.run(main())
