"""Types across the boundary: nested lists and structs, decimals, timestamps
with zones, dates, binary, NULLs; through pyarrow, pandas and polars."""

import datetime as dt
import decimal

import pandas as pd
import polars as pl
import pyarrow as pa

UTC = dt.timezone.utc


def sample() -> pa.Table:
    return pa.table({
        "_id": pa.array([1, 2, 3], pa.int64()),
        "tags": pa.array([["a", "b"], None, []], pa.list_(pa.string())),
        "pt": pa.array([{"x": 1, "y": "q"}, None, {"x": None, "y": "z"}],
                       pa.struct([("x", pa.int64()), ("y", pa.string())])),
        "deep": pa.array([[{"k": [1, 2]}], None, [{"k": None}]],
                         pa.list_(pa.struct([("k", pa.list_(pa.int32()))]))),
        "price": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-99999.99")], pa.decimal128(12, 2)),
        "at": pa.array([dt.datetime(2024, 1, 1, 12, tzinfo=UTC), None,
                        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "naive": pa.array([dt.datetime(2024, 1, 1, 12), None, dt.datetime(2000, 1, 1)], pa.timestamp("us")),
        "d": pa.array([dt.date(2024, 2, 29), None, dt.date(1, 1, 1)], pa.date32()),
        "f": pa.array([1.5, None, -0.0]),
        "i32": pa.array([1, None, -(2**31)], pa.int32()),
        "b": pa.array([True, None, False]),
        "bin": pa.array([b"\x00\x01", None, b""], pa.binary()),
        "s": pa.array(["héllo", None, ""], pa.string()),
    })


def test_pyarrow_round_trip_keeps_types_and_values(con):
    t = sample()
    assert con.insert("t", t) == 3
    back = con.sql("SELECT " + ", ".join(t.column_names) + " FROM t ORDER BY _id").arrow()
    # Strata stores every integer as BIGINT (docs/sql.md), nested ones too.
    expected = [pa.int64() if ty == pa.int32() else ty for ty in t.schema.types]
    expected[t.column_names.index("deep")] = pa.list_(pa.struct([("k", pa.list_(pa.int64()))]))
    assert back.schema.types == expected
    assert back.to_pylist() == t.to_pylist()


def test_nested_values_are_queryable(con):
    con.insert("t", sample())
    rows = con.sql("SELECT _id, tags[1] AS first_tag, pt['y'] AS y, price * 2 AS twice FROM t ORDER BY _id").fetchall()
    assert rows == [(1, "a", "q", decimal.Decimal("2.50")), (2, None, None, None), (3, None, "z", decimal.Decimal("-199999.98"))]


def test_pandas_round_trip(con):
    df = pd.DataFrame({
        "_id": [1, 2, 3],
        "name": ["a", None, "c"],
        "score": [1.5, None, 3.0],
        "when": pd.to_datetime(["2024-01-01T10:00:00+02:00", None, "2024-06-30T00:00:00Z"], utc=True),
        "n": pd.array([1, None, 3], dtype="Int64"),
    })
    assert con.insert("p", df) == 3
    back = con.sql("SELECT _id, name, score, \"when\", n FROM p ORDER BY _id").df()
    assert list(back["name"]) == ["a", None, "c"]
    assert back["score"].isna().tolist() == [False, True, False]
    assert str(back["when"].dtype) == "datetime64[us, UTC]"
    assert back["when"][0] == pd.Timestamp("2024-01-01T08:00:00Z")
    assert pd.isna(back["when"][1])
    assert back["n"].isna().tolist() == [False, True, False]


def test_polars_round_trip_with_nested_types(con):
    df = pl.DataFrame({
        "_id": [1, 2],
        "s": ["x", None],
        "l": [[1, 2], None],
        "st": [{"a": 1, "b": "p"}, {"a": None, "b": None}],
        "ts": [dt.datetime(2024, 1, 1, tzinfo=UTC), None],
        "dec": [decimal.Decimal("1.10"), None],
    }, schema_overrides={"dec": pl.Decimal(10, 2), "ts": pl.Datetime("us", "UTC")})
    assert con.insert("q", df) == 2
    back = con.sql("SELECT _id, s, l, st, ts, dec FROM q ORDER BY _id").pl()
    assert back["s"].to_list() == ["x", None]
    assert back["l"].to_list() == [[1, 2], None]
    assert back["st"].to_list() == [{"a": 1, "b": "p"}, {"a": None, "b": None}]
    ts = back["ts"].to_list()
    assert ts[0] == dt.datetime(2024, 1, 1, tzinfo=UTC) and ts[1] is None
    assert back["dec"].to_list() == [decimal.Decimal("1.10"), None]


def test_nulls_everywhere(con):
    con.sql("INSERT INTO n (_id, a, b) VALUES (1, NULL, NULL), (2, 1, 'x')")
    assert con.sql("SELECT a, b FROM n ORDER BY _id").fetchall() == [(None, None), (1, "x")]
    assert con.sql("SELECT ? IS NULL AS is_null", [None]).fetchall() == [(True,)]
