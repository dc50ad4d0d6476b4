"""Connections, relations and DB-API cursors over the native engine."""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import pyarrow as pa

from . import _strata
from ._strata import InterfaceError, ProgrammingError

TimePoint = Union[_dt.datetime, _dt.date, str]
#: A time coordinate: a point (AS OF), a ``(start, end)`` pair (FROM start
#: TO end; ``None`` for an open end), or ``"all"``.
TimeSpec = Union[TimePoint, "tuple[Optional[TimePoint], Optional[TimePoint]]", str, None]


def connect(
    database: Optional[str] = None,
    *,
    read_only: bool = False,
    autocommit: bool = False,
    memory_limit: Optional[str] = None,
    test_clock: Optional[str] = None,
) -> "Connection":
    """Open a connection to an embedded Strata database.

    ``database``: a data directory (created if missing; the same directory
    ``strata serve --data-dir`` uses), an object-store URL
    (``s3://bucket/prefix``, with the usual ``AWS_*`` environment
    variables; ``az://``, ``gs://``, ``file://``), or ``None`` /
    ``":memory:"`` for a private in-memory database.

    Connections to the same location in one process share one engine.
    Every connection is its own session (its own transaction block).

    ``read_only``: refuse writes and never write to the store (for reading
    a directory or bucket another process or server writes to).
    ``autocommit``: for DB-API cursors only (PEP 249: off by default, so
    ``cursor.execute`` opens a transaction that ``commit()`` ends).
    ``Connection.sql``, ``.execute``, ``.insert`` and ``.table`` commit
    each statement unless a transaction was opened with ``begin()``.
    ``memory_limit``: the process's budget, as ``strata serve
    --memory-limit`` (``"3GiB"``, ``"50%"``, ``"none"``; default half the
    RAM). ``test_clock``: ``"START,STEP"`` (e.g.
    ``"2024-01-01T00:00:00Z,1d"``): a deterministic system-time clock
    for tests and demos, as ``strata serve --test-clock``.
    """
    if database is not None and not isinstance(database, str):
        database = str(database)  # pathlib.Path
    native = _strata.open_database(
        database, read_only=read_only, memory_limit=memory_limit, test_clock=test_clock
    )
    return Connection(native, autocommit=autocommit)


_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _table_ref(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InterfaceError("a table name is a non-empty string")
    if _SIMPLE_NAME.match(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _point_literal(t: TimePoint, what: str) -> str:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is not None:
            t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return "TIMESTAMP '" + t.isoformat(sep=" ") + "Z'"
    if isinstance(t, _dt.date):
        return "DATE '" + t.isoformat() + "'"
    if isinstance(t, str):
        return "TIMESTAMP '" + t.replace("'", "''") + "'"
    raise InterfaceError(
        f"{what}: expected a datetime, date, ISO string, (start, end) pair or 'all', "
        f"got {type(t).__name__}"
    )


def _temporal_clause(axis: str, spec: TimeSpec, what: str) -> str:
    """``FOR SYSTEM_TIME AS OF …`` and friends for one axis."""
    if isinstance(spec, str) and spec.lower() == "all":
        return f"FOR ALL {axis}"
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise InterfaceError(f"{what}: a period is a (start, end) pair")
        start, end = spec
        s = "NULL" if start is None else _point_literal(start, what)
        e = "NULL" if end is None else _point_literal(end, what)
        return f"FOR {axis} FROM {s} TO {e}"
    return f"FOR {axis} AS OF {_point_literal(spec, what)}"


def _micros(t: Optional[TimePoint], what: str) -> Optional[int]:
    if t is None:
        return None
    if isinstance(t, str):
        try:
            t = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise InterfaceError(f"{what}: {t!r} is not an ISO date or timestamp") from None
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        delta = t - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    elif isinstance(t, _dt.date):
        delta = t - _dt.date(1970, 1, 1)
    else:
        raise InterfaceError(f"{what}: expected a datetime, date or ISO string, got {type(t).__name__}")
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _to_arrow_stream(data: Any) -> Any:
    """Something the native ingest reads through ``__arrow_c_stream__``."""
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    mod = type(data).__module__.split(".")[0]
    if mod == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if mod == "polars":
        return data.to_arrow()
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if isinstance(data, Mapping):
        return pa.table(dict(data))
    if isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
        return pa.Table.from_pylist(data)
    raise InterfaceError(
        "insert() takes a pyarrow Table, RecordBatch or RecordBatchReader, a pandas or polars "
        f"DataFrame, a dict of columns or a list of row dicts; got {type(data).__name__}"
    )


# --- `?` placeholders --------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<skip>
        '(?:[^']|'')*'                  # string
      | [Ee]'(?:[^'\\]|\\.|'')*'        # E'' string
      | "(?:[^"]|"")*"                  # quoted identifier
      | --[^\n]*                        # line comment
      | /\*.*?\*/                       # block comment
      | \$(?P<tag>[A-Za-z_]?[A-Za-z0-9_]*)\$.*?\$(?P=tag)\$   # dollar-quoted
    )
    | (?P<q>\?)
    """,
    re.VERBOSE | re.DOTALL,
)


def _bind(sql: str, params: Any) -> tuple[str, Optional[list]]:
    """Turn ``?`` placeholders into ``$1, $2, …`` (outside strings, quoted
    names and comments) and check the parameters are a sequence."""
    if params is None:
        return sql, None
    if isinstance(params, Mapping):
        raise ProgrammingError(
            "named parameters are not supported: strata.paramstyle is 'qmark'; "
            "write ? (or $1, $2, …) and pass a sequence"
        )
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        if isinstance(params, Iterable) and not isinstance(params, (str, bytes)):
            params = list(params)
        else:
            raise ProgrammingError(
                f"parameters are a sequence (tuple or list), got {type(params).__name__}"
            )
    params = list(params)
    n = 0

    def sub(m: re.Match) -> str:
        nonlocal n
        if m.group("q") is None:
            return m.group(0)
        n += 1
        return f"${n}"

    out = _TOKEN.sub(sub, sql)
    if n and n != len(params):
        raise ProgrammingError(
            f"the statement has {n} ? placeholder(s) but {len(params)} parameter(s) were given"
        )
    return out, params


_TX_CONTROL = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT)\b", re.IGNORECASE
)


# --- Relations -----------------------------------------------------------------


class Relation:
    """The rows of a query. The query ran when the relation was made (errors
    surface there); the first read streams those rows, and every later read
    runs the query again (at the present, it may see newer data).

    Read it as ``arrow()`` (pyarrow Table), ``df()`` (pandas), ``pl()``
    (polars), ``fetchall()`` (tuples), ``fetch_record_batch()`` (a
    streaming pyarrow RecordBatchReader), or hand it to anything that takes
    an Arrow stream (``pa.table(rel)``, ``polars.from_arrow``, DuckDB): it
    implements ``__arrow_c_stream__``.
    """

    def __init__(self, con: "Connection", sql: str, params: Optional[list], result: Any) -> None:
        self._con = con
        self._sql = sql
        self._params = params
        self._pending = result
        self._schema: pa.Schema = result.schema()

    def _result(self) -> Any:
        r, self._pending = self._pending, None
        if r is None:
            r = self._con._run(self._sql, self._params)
        return r

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the rows."""
        return self._schema

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return list(self._schema.names)

    @property
    def types(self) -> list[pa.DataType]:
        """The Arrow types of the columns."""
        return list(self._schema.types)

    def arrow(self) -> pa.Table:
        """All rows as a ``pyarrow.Table`` (Arrow buffers handed over, not copied)."""
        return self._result().read_all()

    def df(self) -> Any:
        """All rows as a pandas DataFrame."""
        return self.arrow().to_pandas()

    def pl(self) -> Any:
        """All rows as a polars DataFrame."""
        import polars

        return polars.from_arrow(self.arrow())

    def fetchall(self) -> list[tuple]:
        """All rows as a list of tuples."""
        return _rows(self.arrow())

    def fetchone(self) -> Optional[tuple]:
        """The first row as a tuple (None when there are no rows)."""
        r = self._result()
        while True:
            b = r.next_batch()
            if b is None:
                return None
            if b.num_rows:
                return _rows(b.slice(0, 1))[0]

    def fetch_record_batch(self, rows_per_batch: Optional[int] = None) -> pa.RecordBatchReader:
        """The rows as a ``pyarrow.RecordBatchReader`` that pulls each batch
        from the engine as it is read: results larger than memory stream
        through. ``rows_per_batch`` regroups the engine's batches (default:
        as produced, about 8k rows)."""
        reader = self._result().reader()
        if rows_per_batch is None:
            return reader
        if rows_per_batch <= 0:
            raise InterfaceError("rows_per_batch must be positive")
        return pa.RecordBatchReader.from_batches(
            reader.schema, _rebatch(reader, rows_per_batch)
        )

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow PyCapsule stream interface: the rows, streamed."""
        return self._result().reader().__arrow_c_stream__(requested_schema)

    def show(self, max_rows: int = 20) -> None:
        """Print the first ``max_rows`` rows as a text table."""
        print(self._preview(max_rows))

    def _preview(self, max_rows: int) -> str:
        r = self._result()
        batches, n = [], 0
        while n <= max_rows:
            b = r.next_batch()
            if b is None:
                break
            batches.append(b)
            n += b.num_rows
        t = pa.Table.from_batches(batches, schema=self._schema)
        more = t.num_rows > max_rows
        text = _strata.format_table(t.slice(0, max_rows)).rstrip("\n")
        if more:
            text += f"\n(first {max_rows} rows shown)"
        return text

    def __repr__(self) -> str:
        try:
            return self._preview(10)
        except Exception as e:  # a repr must not raise
            return f"<strata.Relation {self.columns} (preview failed: {e})>"

    def __iter__(self) -> Iterator[tuple]:
        r = self._result()
        while True:
            b = r.next_batch()
            if b is None:
                return
            yield from _rows(b)



def _rebatch(reader: pa.RecordBatchReader, n: int) -> Iterator[pa.RecordBatch]:
    pending: list[pa.RecordBatch] = []
    have = 0
    for b in reader:
        pending.append(b)
        have += b.num_rows
        while have >= n:
            t = pa.Table.from_batches(pending).combine_chunks()
            yield t.slice(0, n).to_batches(max_chunksize=n)[0]
            rest = t.slice(n)
            pending = rest.to_batches() if rest.num_rows else []
            have = rest.num_rows
    if have:
        t = pa.Table.from_batches(pending).combine_chunks()
        yield from t.to_batches(max_chunksize=n)


def _rows(data: Union[pa.Table, pa.RecordBatch]) -> list[tuple]:
    cols = [c.to_pylist() for c in data.columns]
    if not cols:
        return [()] * data.num_rows
    return list(zip(*cols))


# --- Connections -----------------------------------------------------------------


class Connection:
    """A session on an embedded database.

    DuckDB-style: ``sql()`` for queries and commands, ``table()`` for a
    table at any system and valid time, ``insert()`` for bulk loads, each
    committed on its own unless ``begin()`` opened a transaction.

    PEP 249: ``cursor()``, ``commit()``, ``rollback()``, ``close()``.
    Used as a context manager, it commits on success, rolls back on an
    exception, and closes.
    """

    def __init__(self, native_db: Any, *, autocommit: bool = False) -> None:
        self._db = native_db
        self._native = native_db.connect()
        #: PEP 249 cursors open a transaction implicitly unless this is True.
        self.autocommit = autocommit

    # -- plumbing ------------------------------------------------------------

    def _run(self, sql: str, params: Optional[list]) -> Any:
        return self._native.execute(sql, params)

    def _check_open(self) -> None:
        if self._native.closed:
            raise InterfaceError("the connection is closed; open a new one with strata.connect()")

    # -- DuckDB-style API ---------------------------------------------------------

    def sql(
        self,
        query: str,
        params: Optional[Sequence[Any]] = None,
        *,
        system_time: TimeSpec = None,
        valid_time: TimeSpec = None,
    ) -> Optional[Relation]:
        """Run SQL. A query returns a :class:`Relation`; other statements
        run and return None. ``params`` bind ``?`` (or ``$1``, ``$2``, …)
        placeholders. ``system_time`` / ``valid_time`` set the default
        coordinate of every table in the query that has no ``FOR …`` clause
        of its own: a datetime (AS OF), a ``(start, end)`` pair, or
        ``"all"`` (SQL: ``SETTING DEFAULT SYSTEM_TIME AS OF …``)."""
        sql, params = _bind(query, params)
        settings = []
        if system_time is not None:
            settings.append("DEFAULT " + _temporal_clause("SYSTEM_TIME", system_time, "system_time")[4:])
        if valid_time is not None:
            settings.append("DEFAULT " + _temporal_clause("VALID_TIME", valid_time, "valid_time")[4:])
        if settings:
            sql = "SETTING " + ", ".join(settings) + " " + sql
        r = self._run(sql, params)
        if not r.has_rows:
            return None
        return Relation(self, sql, params, r)

    def query(self, query: str, params: Optional[Sequence[Any]] = None, **kw: Any) -> Optional[Relation]:
        """Same as :meth:`sql`."""
        return self.sql(query, params, **kw)

    def table(
        self,
        name: str,
        *,
        system_time: TimeSpec = None,
        valid_time: TimeSpec = None,
    ) -> Relation:
        """Every column of ``name`` (with ``_id``, ``_valid_from``,
        ``_valid_to``, ``_system_from``, ``_system_to``) as of a system time
        and a valid time. Each of ``system_time`` / ``valid_time`` is a
        ``datetime`` or ``date`` (AS OF; naive values are UTC), a ``(start,
        end)`` pair (``None`` for an open end), or ``"all"``; left out, the
        present."""
        clauses = []
        if system_time is not None:
            clauses.append(_temporal_clause("SYSTEM_TIME", system_time, "system_time"))
        if valid_time is not None:
            clauses.append(_temporal_clause("VALID_TIME", valid_time, "valid_time"))
        sql = (
            "SELECT *, _valid_from, _valid_to, _system_from, _system_to FROM "
            + _table_ref(name)
            + (" " + " ".join(clauses) if clauses else "")
        )
        rel = self.sql(sql)
        assert rel is not None
        return rel

    def execute(self, query: str, params: Optional[Sequence[Any]] = None) -> "Cursor":
        """Run one statement (parameters bound to ``?`` or ``$n``) and return
        a cursor over its rows. Commits on its own unless ``begin()``
        opened a transaction (unlike ``cursor().execute()``, which follows
        ``autocommit``)."""
        cur = Cursor(self, implicit_transactions=False)
        return cur.execute(query, params)

    def executemany(self, query: str, seq_of_params: Iterable[Sequence[Any]]) -> "Cursor":
        """Run one statement once per parameter set (see :meth:`execute`)."""
        cur = Cursor(self, implicit_transactions=False)
        return cur.executemany(query, seq_of_params)

    def insert(
        self,
        table: str,
        data: Any,
        *,
        valid_from: Optional[TimePoint] = None,
        valid_to: Optional[TimePoint] = None,
    ) -> int:
        """Bulk-load ``data`` into ``table`` as one transaction (the engine's
        bulk path; the table is created if it does not exist). ``data``: a
        pyarrow Table / RecordBatch / RecordBatchReader, a pandas or polars
        DataFrame, a dict of columns, or a list of row dicts; it needs an
        ``_id`` column. ``valid_from`` / ``valid_to`` give every row the same
        valid period (otherwise ``_valid_from`` / ``_valid_to`` columns, or
        from now on). Returns the number of rows."""
        stream = _to_arrow_stream(data)
        return self._native.ingest(
            table,
            stream,
            _micros(valid_from, "valid_from"),
            _micros(valid_to, "valid_to"),
        )

    def begin(self) -> None:
        """Open a transaction block (``BEGIN``)."""
        self._run("BEGIN", None)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction block is open."""
        return self._native.in_transaction

    @property
    def database(self) -> str:
        """Where the data lives: a directory, a URL, or ":memory:"."""
        return self._db.location

    def flush(self) -> None:
        """Write the live index out as segments now (normally automatic)."""
        self._db.flush()

    def catch_up(self) -> int:
        """Apply what other processes committed to the store now (a
        background task does it every 100 ms); returns the number of
        transactions applied."""
        return self._db.catch_up()

    def duplicate(self) -> "Connection":
        """Another connection (its own session) to the same database; the way
        to a second connection to an in-memory database."""
        self._check_open()
        return Connection(self._db, autocommit=self.autocommit)

    # -- PEP 249 -------------------------------------------------------------------

    def cursor(self) -> "Cursor":
        """A new DB-API cursor on this connection's session."""
        self._check_open()
        return Cursor(self, implicit_transactions=True)

    def commit(self) -> None:
        """Commit the open transaction (nothing to do when none is open)."""
        if self._native.in_transaction:
            self._run("COMMIT", None)

    def rollback(self) -> None:
        """Roll back the open transaction (nothing to do when none is open)."""
        if self._native.in_transaction:
            self._run("ROLLBACK", None)

    def close(self) -> None:
        """Close the session; an uncommitted transaction is rolled back."""
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._native.closed:
            return
        try:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<strata.Connection {self._db.location} ({state})>"


class Cursor:
    """A PEP 249 cursor. Rows are fetched from the engine batch by batch as
    they are asked for. Beyond PEP 249: ``arrow()``, ``df()``, ``pl()`` and
    ``fetch_record_batch()`` read the rest of the result as Arrow."""

    def __init__(self, connection: Connection, *, implicit_transactions: bool) -> None:
        self.connection = connection
        self._implicit = implicit_transactions
        self.arraysize = 1
        self._result: Any = None
        self._rows: list[tuple] = []
        self._pos = 0
        self._description: Optional[list[tuple]] = None
        self._rowcount = -1
        self._closed = False

    @property
    def description(self) -> Optional[list[tuple]]:
        """Per column: (name, type_code, display_size, internal_size,
        precision, scale, null_ok); ``type_code`` is the Arrow type's name
        and compares equal to ``strata.STRING``, ``NUMBER``, … None after a
        statement without rows."""
        return self._description

    @property
    def rowcount(self) -> int:
        """Rows a command changed; -1 for queries (and before execute)."""
        return self._rowcount

    lastrowid = None

    def _check(self) -> None:
        if self._closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check_open()

    def execute(self, operation: str, parameters: Optional[Sequence[Any]] = None) -> "Cursor":
        """Run one statement; ``?`` (or ``$n``) placeholders are bound to
        ``parameters``."""
        self._check()
        sql, params = _bind(operation, parameters)
        con = self.connection
        if (
            self._implicit
            and not con.autocommit
            and not _TX_CONTROL.match(sql)
            and not con._native.in_transaction
        ):
            con._run("BEGIN", None)
        r = con._run(sql, params)
        self._set_result(r)
        return self

    def executemany(self, operation: str, seq_of_parameters: Iterable[Sequence[Any]]) -> "Cursor":
        """Run the statement once per parameter set; ``rowcount`` is the total."""
        self._check()
        total = 0
        for p in seq_of_parameters:
            self.execute(operation, p)
            if self._rowcount > 0:
                total += self._rowcount
        self._result = None
        self._description = None
        self._rows, self._pos = [], 0
        self._rowcount = total
        return self

    def _set_result(self, r: Any) -> None:
        self._rows, self._pos = [], 0
        if r.has_rows:
            self._result = r
            self._description = [_describe(f) for f in r.schema()]
            self._rowcount = -1
        else:
            self._result = None
            self._description = None
            self._rowcount = r.rowcount

    def _fill(self) -> bool:
        """Fetch the next non-empty batch into the row buffer."""
        if self._result is None:
            if self._description is None:
                raise ProgrammingError("the last statement returned no rows to fetch")
            return False
        while True:
            b = self._result.next_batch()
            if b is None:
                self._result = None
                return False
            if b.num_rows:
                self._rows, self._pos = _rows(b), 0
                return True

    def fetchone(self) -> Optional[tuple]:
        """The next row, or None."""
        self._check()
        if self._pos >= len(self._rows) and not self._fill():
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: Optional[int] = None) -> list[tuple]:
        """The next ``size`` rows (default ``arraysize``)."""
        self._check()
        n = self.arraysize if size is None else size
        out: list[tuple] = []
        while len(out) < n:
            if self._pos >= len(self._rows) and not self._fill():
                break
            take = self._rows[self._pos : self._pos + (n - len(out))]
            self._pos += len(take)
            out.extend(take)
        return out

    def fetchall(self) -> list[tuple]:
        """Every remaining row."""
        self._check()
        out = self._rows[self._pos :]
        self._rows, self._pos = [], 0
        if self._result is None:
            if self._description is None:
                raise ProgrammingError("the last statement returned no rows to fetch")
            return out
        rest = self._result.read_all()
        self._result = None
        return out + _rows(rest)

    def _rest_as_arrow(self) -> pa.Table:
        self._check()
        if self._description is None:
            raise ProgrammingError("the last statement returned no rows to fetch")
        if self._pos < len(self._rows):
            raise InterfaceError("arrow() after fetchone/fetchmany: read the rest with fetchall()")
        if self._result is None:
            return self._result_schema_empty()
        t = self._result.read_all()
        self._result = None
        return t

    def _result_schema_empty(self) -> pa.Table:
        names = [d[0] for d in self._description or []]
        return pa.table({n: pa.array([], pa.null()) for n in names})

    def arrow(self) -> pa.Table:
        """The remaining rows as a pyarrow Table."""
        return self._rest_as_arrow()

    def df(self) -> Any:
        """The remaining rows as a pandas DataFrame."""
        return self._rest_as_arrow().to_pandas()

    def pl(self) -> Any:
        """The remaining rows as a polars DataFrame."""
        import polars

        return polars.from_arrow(self._rest_as_arrow())

    def fetch_record_batch(self) -> pa.RecordBatchReader:
        """The remaining rows as a streaming pyarrow RecordBatchReader."""
        self._check()
        if self._result is None or self._pos < len(self._rows):
            raise InterfaceError("fetch_record_batch() needs a query whose rows were not read yet")
        r, self._result = self._result, None
        return r.reader()

    def setinputsizes(self, sizes: Any) -> None:
        """PEP 249; does nothing."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """PEP 249; does nothing."""

    def close(self) -> None:
        """Close the cursor (the connection stays open)."""
        self._closed = True
        self._result = None
        self._rows = []

    def __iter__(self) -> Iterator[tuple]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _describe(f: pa.Field) -> tuple:
    t = f.type
    precision = scale = None
    if pa.types.is_decimal(t):
        precision, scale = t.precision, t.scale
    return (f.name, str(t), None, None, precision, scale, f.nullable)
