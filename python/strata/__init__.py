"""Strata embedded in Python: the bitemporal, immutable HTAP database in
your process, with results as Arrow, pandas or polars.

    >>> import strata
    >>> con = strata.connect("./strata-data")       # or None for memory, or "s3://bucket/prefix"
    >>> con.sql("INSERT INTO people (_id, name) VALUES (1, 'ada')")
    >>> con.sql("SELECT name, _valid_from FROM people").df()
    >>> con.table("people", system_time=datetime(2024, 1, 1, tzinfo=timezone.utc)).arrow()

It is the same engine and on-disk format as ``strata serve``: a data
directory written by the server can be opened here, and a server on the same
directory sees what this process commits (and the other way round, within
about 100 ms).

The module is also a PEP 249 (DB-API 2.0) driver: ``strata.connect()``
returns a connection with ``cursor()``, ``commit()`` and ``rollback()``;
``paramstyle`` is ``"qmark"`` (``?``), and ``$1``-style placeholders work
too.
"""

from __future__ import annotations

from ._strata import (  # noqa: F401  (re-exported)
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
    __version__,
)
from ._connection import Connection, Cursor, Relation, connect
from ._types import (  # noqa: F401  (PEP 249 type objects and constructors)
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
)

# Errors raised by the database carry their SQLSTATE; API misuse has none.
Error.sqlstate = None

#: PEP 249: the DB-API level this module implements.
apilevel = "2.0"
#: PEP 249: threads may share the module and connections, not cursors.
#: (A connection runs one statement at a time; other threads wait.)
threadsafety = 2
#: PEP 249: ``?`` placeholders (``$1``, ``$2``, … also work).
paramstyle = "qmark"

__all__ = [
    "connect",
    "Connection",
    "Cursor",
    "Relation",
    "apilevel",
    "threadsafety",
    "paramstyle",
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "Date",
    "Time",
    "Timestamp",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
    "Binary",
    "STRING",
    "BINARY",
    "NUMBER",
    "DATETIME",
    "ROWID",
]
