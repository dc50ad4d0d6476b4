"""Time travel as keyword arguments: table(system_time=…, valid_time=…),
sql(system_time=…), insert(valid_from=…, valid_to=…)."""

import datetime as dt

import pytest

import strata

UTC = dt.timezone.utc


def system_time_of_last_commit(c, table):
    return c.sql(f"SELECT max(_system_from) FROM {table} FOR ALL SYSTEM_TIME FOR ALL VALID_TIME").fetchall()[0][0]


def test_table_as_of_a_system_time(clocked):
    c = clocked
    c.sql("INSERT INTO acct (_id, bal) VALUES (1, 100)")
    t1 = system_time_of_last_commit(c, "acct")
    c.sql("UPDATE acct SET bal = 150 WHERE _id = 1")
    t2 = system_time_of_last_commit(c, "acct")
    c.sql("UPDATE acct SET bal = 175 WHERE _id = 1")
    t3 = system_time_of_last_commit(c, "acct")
    # The test clock: one commit a day.
    assert t1.tzinfo is not None and t2 - t1 == dt.timedelta(days=1) and t3 - t2 == dt.timedelta(days=1)

    def bal(**kw):
        return [r["bal"] for r in c.table("acct", **kw).arrow().to_pylist()]

    assert bal() == [175]
    assert bal(system_time=t1) == [100]
    assert bal(system_time=t1 + dt.timedelta(hours=12)) == [100]
    assert bal(system_time=t2) == [150]
    # Zoned datetimes are instants; naive ones are UTC; dates and ISO strings work.
    assert bal(system_time=(t2 + dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=-5)))) == [150]
    assert bal(system_time=t2.replace(tzinfo=None)) == [150]
    assert bal(system_time=t2.date()) == [150]  # midnight: the second commit
    assert bal(system_time=(t1 - dt.timedelta(days=1)).date()) == []  # before the first
    assert bal(system_time=t3.isoformat()) == [175]
    # A range of system time: every version seen since t1.
    assert sorted(bal(system_time=(t1, None))) == [100, 150, 175]
    assert sorted(bal(system_time="all")) == [100, 150, 175]
    # The temporal columns come along.
    row = c.table("acct", system_time=t2).arrow().to_pylist()[0]
    assert row["_system_from"] == t2 and row["_system_to"] == t3


def test_valid_time_and_insert_periods(clocked):
    c = clocked
    c.insert("price", {"_id": [1], "p": [10.0]}, valid_from=dt.date(2024, 1, 1))
    c.insert("price", {"_id": [1], "p": [8.0]}, valid_from=dt.datetime(2030, 3, 1, tzinfo=UTC),
             valid_to="2030-04-01T00:00:00Z")

    def p(**kw):
        return [r["p"] for r in c.table("price", **kw).arrow().to_pylist()]

    assert p() == [10.0]
    assert p(valid_time=dt.date(2030, 3, 15)) == [8.0]
    assert p(valid_time=dt.datetime(2030, 4, 1)) == [10.0]
    assert sorted(p(valid_time="all")) == [8.0, 10.0, 10.0]
    assert sorted(p(valid_time=(dt.date(2030, 1, 1), dt.date(2031, 1, 1)))) == [8.0, 10.0, 10.0]
    # Both axes at once: before the promotion was recorded, March 2030 was 10.
    first_commit = c.sql("SELECT min(_system_from) FROM price FOR ALL SYSTEM_TIME FOR ALL VALID_TIME").fetchall()[0][0]
    assert p(system_time=first_commit, valid_time=dt.date(2030, 3, 15)) == [10.0]


def test_sql_with_a_default_coordinate(clocked):
    c = clocked
    c.sql("INSERT INTO a (_id, v) VALUES (1, 'old')")
    t1 = system_time_of_last_commit(c, "a")
    c.sql("UPDATE a SET v = 'new' WHERE _id = 1")
    q = "SELECT v FROM a"
    assert c.sql(q).fetchall() == [("new",)]
    assert c.sql(q, system_time=t1).fetchall() == [("old",)]
    assert c.sql("SELECT v FROM a WHERE _id = ?", [1], system_time=t1).fetchall() == [("old",)]
    # A table's own FOR clause wins over the default.
    assert c.sql("SELECT v FROM a FOR SYSTEM_TIME AS OF NOW()", system_time=t1).fetchall() == [("new",)]


def test_insert_periods_are_checked(con):
    with pytest.raises(strata.InterfaceError, match="valid_from"):
        con.insert("t", {"_id": [1]}, valid_from="yesterday")
    with pytest.raises(strata.Error, match="_valid_from"):
        con.insert("t", {"_id": [1], "_valid_from": [dt.datetime(2024, 1, 1, tzinfo=UTC)]},
                   valid_from=dt.date(2024, 1, 1))
