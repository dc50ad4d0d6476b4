"""Strata over Arrow Flight SQL with the ADBC Flight SQL driver, pyarrow,
pandas and polars. Run by tests/flight_adbc.rs against a fresh
`strata serve --test-clock 2020-01-01T00:00:00Z,1d --user alice:s3cret`.

Environment: STRATA_FLIGHT_URI (grpc://127.0.0.1:PORT), STRATA_FLIGHT_USER,
STRATA_FLIGHT_PASSWORD. Exits non-zero on the first failed check.
"""

import os
import sys
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

URI = os.environ.get("STRATA_FLIGHT_URI", "grpc://127.0.0.1:9833")
USER = os.environ.get("STRATA_FLIGHT_USER")
PASSWORD = os.environ.get("STRATA_FLIGHT_PASSWORD")

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok {name}", flush=True)
    except Exception as e:  # report every failure, keep going
        failed += 1
        print(f"FAILED {name}: {type(e).__name__}: {e}", flush=True)


def connect(user=USER, password=PASSWORD):
    kwargs = {}
    if user is not None:
        kwargs = {"username": user, "password": password}
    # Strata has no Flight SQL transactions: every call commits by itself.
    return flight_sql.connect(URI, db_kwargs=kwargs, autocommit=True)


conn = connect()


def run(sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table()


def update(sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def test_query_to_arrow_pandas_polars():
    update(
        "INSERT INTO people (_id, name, age, score) VALUES "
        "(1, 'ada', 36, 1.5), (2, 'bob', 40, 2.25), (3, 'cy', 51, NULL)"
    )
    t = run("SELECT _id, name, age, score FROM people ORDER BY _id")
    assert isinstance(t, pa.Table), type(t)
    assert t.column_names == ["_id", "name", "age", "score"], t.column_names
    assert t.column("name").to_pylist() == ["ada", "bob", "cy"], t
    assert t.column("score").to_pylist() == [1.5, 2.25, None], t
    with conn.cursor() as cur:
        cur.execute("SELECT name, age FROM people WHERE age > 37 ORDER BY age")
        df = cur.fetch_df()
    assert isinstance(df, pd.DataFrame)
    assert df["name"].tolist() == ["bob", "cy"], df
    assert df["age"].tolist() == [40, 51], df
    pl_df = pl.from_arrow(run("SELECT name, age FROM people"))
    assert pl_df.filter(pl.col("age") > 39).height == 2, pl_df
    # DB-API rows too
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM people")
        assert cur.fetchone()[0] == 3


def test_prepared_statement_with_parameters():
    t = run("SELECT name FROM people WHERE age > $1 ORDER BY _id", (38,))
    assert t.column("name").to_pylist() == ["bob", "cy"], t
    t = run("SELECT name FROM people WHERE name = ? OR age = ?", ("ada", 51))
    assert sorted(t.column("name").to_pylist()) == ["ada", "cy"], t
    # the same statement, re-executed with other parameters
    with conn.cursor() as cur:
        sql = "SELECT count(*) AS n FROM people WHERE age >= $1"
        cur.execute(sql, (40,))
        assert cur.fetchone()[0] == 2
        cur.execute(sql, (99,))
        assert cur.fetchone()[0] == 0
    # a prepared INSERT, many parameter rows
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO people (_id, name, age) VALUES ($1, $2, $3)",
            [(10, "dee", 60), (11, "eve", 61), (12, "fay", 62)],
        )
    t = run("SELECT count(*) AS n FROM people WHERE age >= 60")
    assert t.column("n").to_pylist() == [3], t


def test_bulk_ingest_million_rows():
    n = 1_000_000
    ids = pa.array(range(n), type=pa.int64())
    a = pc.divide(pc.cast(ids, pa.float64()), 4.0)
    b = pa.array([f"row{i % 1000}" for i in range(n)])
    table = pa.table({"_id": ids, "a": a, "b": b})
    started = time.time()
    with conn.cursor() as cur:
        loaded = cur.adbc_ingest("bulk", table.to_batches(max_chunksize=100_000), mode="create")
    took = time.time() - started
    print(f"   ingested {n} rows in {took:.2f}s ({n / took:,.0f} rows/s)", flush=True)
    assert loaded == n, loaded
    t = run("SELECT count(*) AS n, sum(a) AS s, count(DISTINCT b) AS d, max(_id) AS m FROM bulk")
    assert t.column("n").to_pylist() == [n], t
    assert t.column("s").to_pylist() == [sum(range(n)) / 4.0], t
    assert t.column("d").to_pylist() == [1000], t
    assert t.column("m").to_pylist() == [n - 1], t
    # append mode adds rows; create on an existing table is refused
    with conn.cursor() as cur:
        more = pa.table({"_id": pa.array([n, n + 1], pa.int64()), "a": [0.5, 0.25], "b": ["x", "y"]})
        assert cur.adbc_ingest("bulk", more, mode="append") == 2
        try:
            cur.adbc_ingest("bulk", more, mode="create")
            raise AssertionError("create on an existing table should fail")
        except adbc_driver_manager.Error as e:
            assert "already exists" in str(e), e
    assert run("SELECT count(*) AS n FROM bulk").column("n").to_pylist() == [n + 2]


def test_catalog_metadata():
    objs = conn.adbc_get_objects().read_all().to_pylist()
    assert [c["catalog_name"] for c in objs] == ["strata"], objs
    schemas = objs[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["public"], schemas
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    for want in ["people", "bulk"]:
        assert want in tables, tables.keys()
    cols = [c["column_name"] for c in (tables["people"]["table_columns"] or [])]
    assert "name" in cols and "_system_from" in cols, cols
    schema = conn.adbc_get_table_schema("people")
    assert schema.field("name").type == pa.string(), schema
    assert schema.field("age").type == pa.int64(), schema
    assert pa.types.is_timestamp(schema.field("_valid_from").type), schema
    assert "TABLE" in conn.adbc_get_table_types()
    info = conn.adbc_get_info()
    assert info.get("vendor_name") == "Strata", info


def test_time_travel():
    update("INSERT INTO prices (_id, sym, price) VALUES (1, 'ACME', 10.0)")
    update("UPDATE prices SET price = 11.0 WHERE _id = 1")
    update("UPDATE prices SET price = 12.5 WHERE _id = 1")
    hist = run(
        "SELECT price, _system_from FROM prices FOR ALL SYSTEM_TIME ORDER BY _system_from"
    )
    assert hist.column("price").to_pylist() == [10.0, 11.0, 12.5], hist
    froms = hist.column("_system_from").to_pylist()
    # as the database knew it just after the first version
    t = run(
        "SELECT price FROM prices FOR SYSTEM_TIME AS OF $1",
        (froms[0],),
    )
    assert t.column("price").to_pylist() == [10.0], t
    t = run(
        f"SELECT price FROM prices FOR SYSTEM_TIME AS OF TIMESTAMP '{froms[1].isoformat()}'"
    )
    assert t.column("price").to_pylist() == [11.0], t
    assert run("SELECT price FROM prices").column("price").to_pylist() == [12.5]


def test_subscribe_streams_changes_as_they_commit():
    update("CREATE TABLE feed_t (_id BIGINT, v TEXT)")
    update("INSERT INTO feed_t (_id, v) VALUES (1, 'a')")
    sub = connect()
    cur = sub.cursor()
    cur.execute("SUBSCRIBE TO feed_t")
    reader = cur.fetch_record_batch()
    names = reader.schema.names
    assert names[:6] == ["_position", "_system_time", "_op", "_id", "_valid_from", "_valid_to"], names
    first = reader.read_next_batch().to_pylist()
    assert [(r["_op"], r["_id"], r["v"]) for r in first] == [("put", 1, "a")], first
    # The stream stays open: the next commit arrives on it.
    update("UPDATE feed_t SET v = 'b' WHERE _id = 1")
    nxt = reader.read_next_batch().to_pylist()
    assert [(r["_op"], r["_id"], r["v"]) for r in nxt] == [("put", 1, "b")], nxt
    assert nxt[0]["_position"] > first[0]["_position"]
    # Resuming after a saved position, with a parameter.
    cur2 = conn.cursor()
    cur2.execute("SUBSCRIBE TO feed_t AFTER $1", (first[0]["_position"],))
    again = cur2.fetch_record_batch().read_next_batch().to_pylist()
    assert [r["v"] for r in again] == ["b"], again


def test_errors_are_clear():
    try:
        run("SELEC 1")
        raise AssertionError("bad SQL should fail")
    except adbc_driver_manager.Error as e:
        msg = str(e)
        assert "syntax error" in msg and "SELEC" in msg, msg
        assert isinstance(e, adbc_driver_manager.ProgrammingError), type(e)
    try:
        run("SELECT * FROM no_such_table")
        raise AssertionError("unknown table should fail")
    except adbc_driver_manager.Error as e:
        assert "no_such_table" in str(e) and "does not exist" in str(e), e
    # the connection still works after errors
    assert run("SELECT 1 AS one").column("one").to_pylist() == [1]


def test_wrong_password_is_refused():
    if USER is None:
        return
    try:
        c = connect(USER, "wrong-password")
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        raise AssertionError("a wrong password should be refused")
    except adbc_driver_manager.Error as e:
        assert "password authentication failed" in str(e), e


for name, fn in list(globals().items()):
    if name.startswith("test_") and callable(fn):
        check(name, fn)

conn.close()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
