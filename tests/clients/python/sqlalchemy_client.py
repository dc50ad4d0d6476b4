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
# pd.read_sql_table reflects primary keys and indexes too; SQLAlchemy's
# query for those trips a DataFusion planner check (ORDER BY inside
# array_agg over an unnest): not covered yet.

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
