"""The DuckDB-style API: connect, sql, relations as Arrow / pandas / polars."""

import pyarrow as pa
import pandas as pd
import polars as pl
import pytest

import strata


def seed(con):
    con.sql("INSERT INTO people (_id, name, age) VALUES (1, 'ada', 36), (2, 'bob', NULL), (3, 'cy', 7)")


def test_sql_returns_a_relation_for_queries_and_none_for_commands(con):
    assert con.sql("INSERT INTO people (_id, name) VALUES (1, 'ada')") is None
    rel = con.sql("SELECT _id, name FROM people")
    assert isinstance(rel, strata.Relation)
    assert rel.columns == ["_id", "name"]
    assert rel.types == [pa.int64(), pa.string()]


def test_arrow_df_pl_fetchall_give_the_same_rows(con):
    seed(con)
    q = "SELECT _id, name, age FROM people ORDER BY _id"
    t = con.sql(q).arrow()
    assert isinstance(t, pa.Table)
    assert t.to_pydict() == {"_id": [1, 2, 3], "name": ["ada", "bob", "cy"], "age": [36, None, 7]}
    df = con.sql(q).df()
    assert isinstance(df, pd.DataFrame)
    assert list(df["name"]) == ["ada", "bob", "cy"]
    assert pd.isna(df["age"][1])
    p = con.sql(q).pl()
    assert isinstance(p, pl.DataFrame)
    assert p["age"].to_list() == [36, None, 7]
    assert con.sql(q).fetchall() == [(1, "ada", 36), (2, "bob", None), (3, "cy", 7)]
    assert con.sql(q).fetchone() == (1, "ada", 36)
    assert list(con.sql(q)) == [(1, "ada", 36), (2, "bob", None), (3, "cy", 7)]


def test_a_relation_can_be_read_again(con):
    seed(con)
    rel = con.sql("SELECT count(*) AS n FROM people")
    assert rel.fetchall() == [(3,)]
    con.sql("INSERT INTO people (_id, name) VALUES (4, 'dee')")
    # A second read runs the query again, at the present.
    assert rel.fetchall() == [(4,)]
    assert rel.arrow().column("n").to_pylist() == [4]


def test_arrow_c_stream_interface(con):
    seed(con)
    rel = con.sql("SELECT _id, name FROM people ORDER BY _id")
    t = pa.table(rel)  # pyarrow reads __arrow_c_stream__
    assert t.column("name").to_pylist() == ["ada", "bob", "cy"]
    reader = pa.RecordBatchReader.from_stream(con.sql("SELECT _id FROM people"))
    assert sum(b.num_rows for b in reader) == 3
    p = pl.from_arrow(con.sql("SELECT _id FROM people ORDER BY _id").arrow())
    assert p["_id"].to_list() == [1, 2, 3]


def test_fetch_record_batch_streams_and_rebatches(con):
    rel = con.sql("SELECT value FROM generate_series(1, 100000)")
    reader = rel.fetch_record_batch()
    assert isinstance(reader, pa.RecordBatchReader)
    assert sum(b.num_rows for b in reader) == 100000
    sizes = [b.num_rows for b in con.sql("SELECT value FROM generate_series(1, 2500)").fetch_record_batch(1000)]
    assert sizes == [1000, 1000, 500]
    with pytest.raises(strata.InterfaceError):
        con.sql("SELECT 1").fetch_record_batch(0)


def test_show_and_repr_print_a_table(con, capsys):
    seed(con)
    con.sql("SELECT name FROM people ORDER BY _id").show()
    out = capsys.readouterr().out
    assert "| name |" in out and "| ada  |" in out
    text = repr(con.sql("SELECT value FROM generate_series(1, 50)"))
    assert "| value |" in text and "first 10 rows shown" in text
    con.sql("SELECT value FROM generate_series(1, 30)").show(max_rows=5)
    assert "first 5 rows shown" in capsys.readouterr().out


def test_connections_to_one_directory_share_the_database(tmp_path):
    a = strata.connect(str(tmp_path / "db"))
    b = strata.connect(tmp_path / "db")  # a pathlib.Path works too
    a.sql("INSERT INTO t (_id, v) VALUES (1, 'x')")
    assert b.sql("SELECT v FROM t").fetchall() == [("x",)]
    assert a.database == b.database
    a.close()
    b.close()
    # Reopened after every connection closed: the data is on disk.
    c = strata.connect(str(tmp_path / "db"))
    assert c.sql("SELECT v FROM t").fetchall() == [("x",)]


def test_memory_databases_are_private(con):
    other = strata.connect(":memory:")
    con.sql("INSERT INTO t (_id) VALUES (1)")
    with pytest.raises(strata.ProgrammingError) as e:
        other.sql("SELECT * FROM t")
    assert e.value.sqlstate == "42P01"


def test_closed_connection_says_so(con):
    con.close()
    assert con.closed
    with pytest.raises(strata.InterfaceError, match="closed"):
        con.sql("SELECT 1")


def test_insert_from_pyarrow_pandas_polars_dicts(con):
    assert con.insert("a", pa.table({"_id": [1, 2], "v": ["x", "y"]})) == 2
    assert con.insert("a", pa.record_batch({"_id": [3], "v": ["z"]})) == 1
    assert con.insert("b", pd.DataFrame({"_id": [1, 2], "v": [1.5, None]})) == 2
    assert con.insert("c", pl.DataFrame({"_id": [1, 2], "v": ["p", None]})) == 2
    assert con.insert("d", {"_id": [1], "v": [True]}) == 1
    assert con.insert("e", [{"_id": 1, "v": "r"}, {"_id": 2, "v": None}]) == 2
    assert con.sql("SELECT count(*) FROM a").fetchall() == [(3,)]
    assert con.sql("SELECT v FROM b ORDER BY _id").fetchall() == [(1.5,), (None,)]
    assert con.sql("SELECT v FROM c ORDER BY _id").fetchall() == [("p",), (None,)]
    assert con.sql("SELECT v FROM d").fetchall() == [(True,)]
    assert con.sql("SELECT v FROM e ORDER BY _id").fetchall() == [("r",), (None,)]


def test_insert_is_one_transaction_and_bad_input_says_what_is_wrong(con):
    with pytest.raises(strata.InterfaceError, match="DataFrame"):
        con.insert("t", 42)
    with pytest.raises(strata.Error, match="_id"):
        con.insert("t", pa.table({"v": [1, 2]}))
    # Nothing half-written: the table does not exist.
    with pytest.raises(strata.ProgrammingError):
        con.sql("SELECT * FROM t")
    # A reader with a failing second batch loads nothing.
    def batches():
        yield pa.record_batch({"_id": [1], "v": [1]})
        raise ValueError("the source broke")
    reader = pa.RecordBatchReader.from_batches(pa.schema([("_id", pa.int64()), ("v", pa.int64())]), batches())
    with pytest.raises(Exception, match="the source broke"):
        con.insert("t", reader)
    with pytest.raises(strata.ProgrammingError):
        con.sql("SELECT * FROM t")


def test_execute_returns_a_cursor_and_commits(tmp_path):
    con = strata.connect(str(tmp_path / "db"))
    cur = con.execute("INSERT INTO t (_id, v) VALUES (?, ?)", [1, "x"])
    assert cur.rowcount == 1
    assert not con.in_transaction
    assert con.execute("SELECT v FROM t WHERE _id = $1", [1]).fetchall() == [("x",)]
    cur = con.executemany("INSERT INTO t (_id, v) VALUES (?, ?)", [(2, "y"), (3, "z")])
    assert cur.rowcount == 2
    con.close()
    assert strata.connect(str(tmp_path / "db")).sql("SELECT count(*) FROM t").fetchall() == [(3,)]


def test_begin_commit_rollback(con):
    con.sql("INSERT INTO t (_id, v) VALUES (1, 'a')")
    con.begin()
    assert con.in_transaction
    con.sql("INSERT INTO t (_id, v) VALUES (2, 'b')")
    con.rollback()
    assert not con.in_transaction
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(1,)]
    con.begin()
    con.insert("t", pa.table({"_id": [3], "v": ["c"]}))
    con.commit()
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_duplicate_shares_an_in_memory_database(con):
    other = con.duplicate()
    con.sql("INSERT INTO t (_id, v) VALUES (1, 'x')")
    assert other.sql("SELECT v FROM t").fetchall() == [("x",)]
    other.begin()
    other.sql("INSERT INTO t (_id, v) VALUES (2, 'y')")
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(1,)]  # its own session
    other.commit()
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(2,)]
