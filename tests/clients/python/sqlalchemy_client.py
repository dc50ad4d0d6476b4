"""SQLAlchemy 2 (psycopg dialect) reflection and pandas read_sql against strata serve."""
import datetime as dt

import pandas as pd
from sqlalchemy import create_engine, inspect, text

from common import HOST, PORT, check, eq

# The default engine: on connect SQLAlchemy's psycopg dialect looks hstore up
# with psycopg's TypeInfo inside a SAVEPOINT.
engine = create_engine(
    f"postgresql+psycopg://strata@{HOST}:{PORT}/strata",
    connect_args={"connect_timeout": 10},
)

with engine.begin() as c:
    c.execute(text("CREATE TABLE sa_people (_id BIGINT, name TEXT, age BIGINT, score DOUBLE PRECISION, born DATE)"))
    c.execute(
        text("INSERT INTO sa_people (_id, name, age, score, born) VALUES (:id, :name, :age, :score, :born)"),
        [
            dict(id=1, name="ada", age=36, score=9.5, born=dt.date(1815, 12, 10)),
            dict(id=2, name="alan", age=41, score=8.0, born=dt.date(1912, 6, 23)),
        ],
    )

# A transaction that rolls back.
with engine.connect() as c:
    tx = c.begin()
    c.execute(text("INSERT INTO sa_people (_id, name) VALUES (3, 'nobody')"))
    tx.rollback()
with engine.connect() as c:
    eq(c.execute(text("SELECT count(*) FROM sa_people")).scalar(), 2, "rolled-back insert is absent")

insp = inspect(engine)
tables = insp.get_table_names()
check("sa_people" in tables, "get_table_names() lists sa_people", tables)
check(insp.has_table("sa_people"), "has_table('sa_people')")
check(not insp.has_table("no_such_table"), "has_table('no_such_table') is false")
cols = insp.get_columns("sa_people")
eq(
    [(c["name"], str(c["type"])) for c in cols],
    [("_id", "BIGINT"), ("name", "TEXT"), ("age", "BIGINT"), ("score", "DOUBLE PRECISION"), ("born", "DATE")],
    "get_columns('sa_people') names and types",
)
eq([c["nullable"] for c in cols], [False, True, True, True, True], "nullable: only _id is NOT NULL")
eq(insp.get_schema_names().count("public"), 1, "get_schema_names() has public")
eq(insp.get_view_names(), [], "no views")

df = pd.read_sql("SELECT _id, name, age, score, born FROM sa_people ORDER BY _id", engine)
eq(list(df.columns), ["_id", "name", "age", "score", "born"], "read_sql columns")
eq(df["name"].tolist(), ["ada", "alan"], "read_sql names")
eq(int(df["age"].sum()), 77, "read_sql ages")
df2 = pd.read_sql(text("SELECT name FROM sa_people WHERE age > :a"), engine, params={"a": 40})
eq(df2["name"].tolist(), ["alan"], "read_sql with a parameter")

# Keys and indexes: every table's primary key is _id (index sa_people_pkey);
# there are no other indexes, foreign keys, unique or check constraints.
pk = insp.get_pk_constraint("sa_people")
eq((pk["constrained_columns"], pk["name"]), (["_id"], "sa_people_pkey"), "get_pk_constraint")
eq(insp.get_indexes("sa_people"), [], "get_indexes (the primary key's index is not listed)")
eq(insp.get_foreign_keys("sa_people"), [], "get_foreign_keys")
eq(insp.get_unique_constraints("sa_people"), [], "get_unique_constraints")
eq(insp.get_check_constraints("sa_people"), [], "get_check_constraints")
eq(insp.get_table_comment("sa_people"), {"text": None}, "get_table_comment")
# Table reflection sees the key too.
from sqlalchemy import MetaData, Table

people = Table("sa_people", MetaData(), autoload_with=engine)
eq([c.name for c in people.primary_key.columns], ["_id"], "reflected Table primary key")
# A table created now is reflected with its key at once.
with engine.begin() as c:
    c.execute(text("CREATE TABLE sa_later (_id TEXT, v BIGINT)"))
    c.execute(text("INSERT INTO sa_later (_id, v) VALUES ('a', 1)"))
eq(inspect(engine).get_pk_constraint("sa_later")["name"], "sa_later_pkey", "get_pk_constraint of a new table")

# pd.read_sql_table reflects the whole table (columns, keys, indexes).
df3 = pd.read_sql_table("sa_people", engine)
eq(list(df3.columns), ["_id", "name", "age", "score", "born"], "read_sql_table columns")
df3 = df3.sort_values("_id")
eq(df3["name"].tolist(), ["ada", "alan"], "read_sql_table names")
eq(df3["age"].tolist(), [36, 41], "read_sql_table ages")
eq([str(pd.Timestamp(b).date()) for b in df3["born"]], ["1815-12-10", "1912-06-23"], "read_sql_table dates")
eq(pd.read_sql_table("sa_later", engine, index_col="_id")["v"].to_dict(), {"a": 1}, "read_sql_table index_col")

# Time travel through SQLAlchemy.
with engine.begin() as c:
    before = c.execute(text("SELECT now()")).scalar()
with engine.begin() as c:
    c.execute(text("UPDATE sa_people SET age = 37 WHERE _id = 1"))
with engine.connect() as c:
    eq(c.execute(text("SELECT age FROM sa_people WHERE _id = 1")).scalar(), 37, "age after UPDATE")
    eq(
        c.execute(text("SELECT age FROM sa_people FOR SYSTEM_TIME AS OF :t WHERE _id = 1"), {"t": before}).scalar(),
        36,
        "age AS OF before the UPDATE",
    )
print("sqlalchemy + pandas: all checks passed")
