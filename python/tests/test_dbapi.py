"""PEP 249 (DB-API 2.0)."""

import datetime as dt
import decimal

import pytest

import strata


def test_module_globals():
    assert strata.apilevel == "2.0"
    assert strata.threadsafety in (1, 2, 3)
    assert strata.paramstyle == "qmark"
    assert strata.Date(2024, 1, 2) == dt.date(2024, 1, 2)
    assert strata.Binary(b"x") == b"x"
    assert isinstance(strata.TimestampFromTicks(0), dt.datetime)


def test_cursor_fetches_and_describes(con):
    con.sql("INSERT INTO t (_id, name, price) VALUES (1, 'a', 1.50::decimal(10,2)), (2, 'b', NULL), (3, 'c', 3.25::decimal(10,2))")
    cur = con.cursor()
    cur.execute("SELECT _id, name, price FROM t ORDER BY _id")
    d = cur.description
    assert [c[0] for c in d] == ["_id", "name", "price"]
    assert d[0][1] == strata.NUMBER and d[1][1] == strata.STRING and d[2][1] == strata.NUMBER
    assert d[1][1] != strata.NUMBER
    assert (d[2][4], d[2][5]) == (10, 2)
    assert cur.rowcount == -1
    assert cur.fetchone() == (1, "a", decimal.Decimal("1.50"))
    cur.arraysize = 5
    assert cur.fetchmany() == [(2, "b", None), (3, "c", decimal.Decimal("3.25"))]
    assert cur.fetchone() is None
    assert cur.fetchmany(3) == []
    cur.execute("SELECT _id FROM t ORDER BY _id")
    assert [r for r in cur] == [(1,), (2,), (3,)]
    cur.execute("SELECT _id FROM t WHERE _id > ?", (1,))
    assert cur.fetchall() == [(2,), (3,)]
    cur.execute("UPDATE t SET name = 'z' WHERE _id >= 2")
    assert cur.description is None and cur.rowcount == 2
    cur.close()
    with pytest.raises(strata.InterfaceError):
        cur.execute("SELECT 1")


def test_large_results_fetch_batch_by_batch(con):
    cur = con.cursor()
    cur.execute("SELECT value FROM generate_series(1, 200000)")
    first = cur.fetchmany(10)
    assert [r[0] for r in first] == list(range(1, 11))
    rest = cur.fetchall()
    assert len(rest) == 199990 and rest[-1] == (200000,)


def test_cursors_open_a_transaction_that_commit_ends(tmp_path):
    con = strata.connect(str(tmp_path / "db"))
    other = strata.connect(str(tmp_path / "db"))
    cur = con.cursor()
    cur.execute("INSERT INTO t (_id, v) VALUES (?, ?)", [1, "x"])
    assert con.in_transaction
    # Not visible to another session before the commit.
    with pytest.raises(strata.ProgrammingError):
        other.sql("SELECT * FROM t")
    con.commit()
    assert not con.in_transaction
    assert other.sql("SELECT v FROM t").fetchall() == [("x",)]
    cur.execute("INSERT INTO t (_id, v) VALUES (2, 'y')")
    con.rollback()
    assert other.sql("SELECT count(*) FROM t").fetchall() == [(1,)]
    # Closing with an open transaction rolls it back.
    cur.execute("INSERT INTO t (_id, v) VALUES (3, 'z')")
    con.close()
    assert other.sql("SELECT count(*) FROM t").fetchall() == [(1,)]


def test_autocommit_and_context_manager(tmp_path):
    path = str(tmp_path / "db")
    with strata.connect(path, autocommit=True) as con:
        con.cursor().execute("INSERT INTO t (_id) VALUES (1)")
        assert not con.in_transaction
    with strata.connect(path) as con:
        con.cursor().execute("INSERT INTO t (_id) VALUES (2)")
    # Committed on a clean exit ...
    assert strata.connect(path).sql("SELECT count(*) FROM t").fetchall() == [(2,)]
    with pytest.raises(RuntimeError):
        with strata.connect(path) as con:
            con.cursor().execute("INSERT INTO t (_id) VALUES (3)")
            raise RuntimeError("boom")
    # ... rolled back on an exception.
    assert strata.connect(path).sql("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_executemany_and_explicit_transaction_statements(con):
    cur = con.cursor()
    cur.executemany("INSERT INTO t (_id, v) VALUES (?, ?)", [(i, f"v{i}") for i in range(10)])
    assert cur.rowcount == 10
    con.commit()
    cur.execute("BEGIN")
    cur.execute("DELETE FROM t WHERE _id < 5")
    cur.execute("COMMIT")
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(5,)]


@pytest.mark.parametrize(
    "value, sql_type",
    [
        (None, None),
        (True, "boolean"),
        (42, "bigint"),
        (-1.25, "double precision"),
        ("héllo 'q'", "text"),
        (b"\x00\xff", "bytea"),
        (dt.date(2024, 2, 29), "date"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 678901), "timestamp"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))), "timestamptz"),
        (decimal.Decimal("-12345.678"), "numeric"),
    ],
)
def test_parameters_round_trip(con, value, sql_type):
    got = con.sql("SELECT ? AS v", [value]).fetchall()[0][0]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        assert got == value  # same instant, shown in UTC
        assert got.utcoffset() == dt.timedelta(0)
    else:
        assert got == value
    con.sql("INSERT INTO p (_id, v) VALUES (1, ?)", [value])
    assert con.sql("SELECT v FROM p WHERE _id = 1").fetchall()[0][0] == value


def test_placeholders_inside_strings_are_left_alone(con):
    assert con.sql("SELECT '?' AS a, ? AS b, \"?\" FROM (SELECT 1 AS \"?\") -- ?\n", [5]).fetchall() == [("?", 5, 1)]
    assert con.sql("SELECT $1 + $1 AS x", [2]).fetchall() == [(4,)]
