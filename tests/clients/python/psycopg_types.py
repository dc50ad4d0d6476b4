"""psycopg 3 against strata serve: uuid, json and jsonb columns round-trip as
Python objects (uuid.UUID, dict/list) in text and binary format, and
parameters of those types compare with the columns."""
import uuid

import psycopg
from psycopg.types.json import Json, Jsonb

from common import DSN, check, eq

U1 = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
U2 = uuid.UUID("b1ffcd00-0000-4000-8000-0000000000ff")

with psycopg.connect(DSN, autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE psy_docs (_id BIGINT, u UUID, j JSON, b JSONB)")
    # psycopg sends uuid.UUID, Json and Jsonb with their OIDs (2950, 114, 3802).
    cur.execute(
        "INSERT INTO psy_docs (_id, u, j, b) VALUES (%s, %s, %s, %s)",
        (1, U1, Json({"name": "ada", "tags": ["x", "y"]}), Jsonb({"b": 1, "a": [1, 2, {"c": None}]})),
    )
    # Binary parameters (%b).
    cur.execute(
        "INSERT INTO psy_docs (_id, u, j, b) VALUES (%b, %b, %b, %b)",
        (2, U2, Json([1, 2.5, "three"]), Jsonb({"k": "é"})),
    )
    cur.execute("INSERT INTO psy_docs (_id) VALUES (3)")

    # The described types.
    cur.execute("SELECT u, j, b FROM psy_docs WHERE _id = 1")
    eq([d.type_code for d in cur.description], [2950, 114, 3802], "type OIDs of uuid, json, jsonb columns")
    row = cur.fetchone()
    eq(row[0], U1, "uuid column loads as uuid.UUID (text format)")
    check(isinstance(row[0], uuid.UUID), "uuid value is a uuid.UUID", type(row[0]))
    eq(row[1], {"name": "ada", "tags": ["x", "y"]}, "json column loads as a dict (text format)")
    eq(row[2], {"a": [1, 2, {"c": None}], "b": 1}, "jsonb column loads as a dict (text format)")

    # Binary results.
    bcur = conn.cursor(binary=True)
    bcur.execute("SELECT _id, u, j, b FROM psy_docs ORDER BY _id")
    rows = bcur.fetchall()
    eq(
        rows,
        [
            (1, U1, {"name": "ada", "tags": ["x", "y"]}, {"a": [1, 2, {"c": None}], "b": 1}),
            (2, U2, [1, 2.5, "three"], {"k": "é"}),
            (3, None, None, None),
        ],
        "binary results of uuid, json, jsonb",
    )

    # Parameters compare with the columns: uuid.UUID, a uuid string in
    # another spelling, a Jsonb document with another key order.
    cur.execute("SELECT _id FROM psy_docs WHERE u = %s", (U2,))
    eq(cur.fetchall(), [(2,)], "WHERE u = uuid.UUID parameter")
    cur.execute("SELECT _id FROM psy_docs WHERE u = %b", (U1,))
    eq(cur.fetchall(), [(1,)], "WHERE u = binary uuid parameter")
    cur.execute("SELECT _id FROM psy_docs WHERE u = %s", (str(U1).upper(),))
    eq(cur.fetchall(), [(1,)], "WHERE u = upper-case uuid text")
    cur.execute("SELECT _id FROM psy_docs WHERE b = %s", (Jsonb({"k": "é"}),))
    eq(cur.fetchall(), [(2,)], "WHERE b = Jsonb parameter")
    cur.execute("SELECT _id FROM psy_docs WHERE u IN (%s, %s) ORDER BY _id", (U1, U2))
    eq(cur.fetchall(), [(1,), (2,)], "WHERE u IN (uuid params)")

    # Casts in SQL.
    cur.execute("SELECT %s::uuid, '{\"a\": 1}'::jsonb, CAST('[1]' AS json)", (str(U1).upper(),))
    eq(cur.fetchone(), (U1, {"a": 1}, [1]), "casts to uuid, jsonb, json")

    # Bad values: InvalidTextRepresentation (22P02), nothing written.
    for sql, params, what in [
        ("INSERT INTO psy_docs (_id, u) VALUES (%s, %s), (%s, %s)", (4, str(U1), 5, "not-a-uuid"), "bad uuid text"),
        ("INSERT INTO psy_docs (_id, j) VALUES (%s, %s)", (4, "{oops"), "bad json text"),
        ("SELECT 'zz'::uuid", None, "bad uuid cast"),
    ]:
        try:
            cur.execute(sql, params)
            check(False, f"{what} is rejected")
        except psycopg.errors.InvalidTextRepresentation as e:
            check("invalid input syntax" in str(e), f"{what}: 22P02 with a clear message", str(e))
    cur.execute("SELECT count(*) FROM psy_docs")
    eq(cur.fetchone()[0], 3, "nothing half-written")

print("psycopg types: all checks passed")
