"""Errors carry Strata's message and SQLSTATE, in the PEP 249 classes."""

import pytest

import strata


@pytest.mark.parametrize(
    "sql, cls, state",
    [
        ("SELEC 1", strata.ProgrammingError, "42601"),
        ("SELECT * FROM missing", strata.ProgrammingError, "42P01"),
        ("SELECT nope FROM t", strata.ProgrammingError, "42703"),
        ("SELECT 1 / 0", strata.DataError, "22012"),
        ("SELECT CAST('x' AS INT)", strata.DataError, None),  # class 22 (Postgres says 22P02)
        ("SELECT (SELECT _id FROM t)", strata.ProgrammingError, "21000"),
    ],
)
def test_errors_have_their_sqlstate(con, sql, cls, state):
    con.sql("INSERT INTO t (_id) VALUES (1), (2)")
    with pytest.raises(cls) as e:
        rel = con.sql(sql)
        if rel is not None:
            rel.fetchall()
    assert isinstance(e.value, strata.DatabaseError)
    assert e.value.sqlstate and len(e.value.sqlstate) == 5
    if state:
        assert e.value.sqlstate == state, str(e.value)
    assert str(e.value)


def test_hierarchy_is_pep_249():
    assert issubclass(strata.Error, Exception)
    assert issubclass(strata.Warning, Exception)
    for c in (strata.DataError, strata.OperationalError, strata.IntegrityError,
              strata.InternalError, strata.ProgrammingError, strata.NotSupportedError):
        assert issubclass(c, strata.DatabaseError)
    assert issubclass(strata.DatabaseError, strata.Error)
    assert issubclass(strata.InterfaceError, strata.Error)


def test_read_only_refuses_writes(tmp_path):
    w = strata.connect(str(tmp_path / "db"))
    w.sql("INSERT INTO t (_id) VALUES (1)")
    w.close()
    del w
    import gc; gc.collect()
    r = strata.connect(str(tmp_path / "db"), read_only=True)
    assert r.sql("SELECT count(*) FROM t").fetchall() == [(1,)]
    with pytest.raises(strata.OperationalError) as e:
        r.sql("INSERT INTO t (_id) VALUES (2)")
    assert e.value.sqlstate == "25006"


def test_a_failed_transaction_must_be_rolled_back(con):
    con.begin()
    with pytest.raises(strata.ProgrammingError):
        con.sql("SELECT * FROM missing")
    with pytest.raises(strata.Error) as e:
        con.sql("SELECT 1")
    assert e.value.sqlstate in ("25P02", "25000")
    con.rollback()
    assert con.sql("SELECT 1 AS x").fetchall() == [(1,)]


def test_bad_arguments(con):
    with pytest.raises(strata.InterfaceError, match="cannot pass a object"):
        con.sql("SELECT $1", [object()])
    with pytest.raises(strata.ProgrammingError, match="2 \\? placeholder"):
        con.sql("SELECT ?, ?", [1])
    with pytest.raises(strata.ProgrammingError, match="named parameters"):
        con.sql("SELECT ?", {"a": 1})
    with pytest.raises(strata.InterfaceError, match="64 bits"):
        con.sql("SELECT ?", [2**70])
    with pytest.raises(ValueError, match="memory"):
        strata.connect(memory_limit="lots")
    with pytest.raises(strata.InterfaceError, match="system_time"):
        con.table("t", system_time=3.5)
    cur = con.execute("INSERT INTO t (_id) VALUES (1)")
    with pytest.raises(strata.ProgrammingError, match="no rows"):
        cur.fetchall()
