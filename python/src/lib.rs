//! The native half of the `strata` Python package: the same engine
//! `strata serve` runs (`strata::Db`), opened in the Python process.
//!
//! The Python half (`python/strata/`) builds the user-facing API (relations,
//! DB-API 2.0, pandas and polars) on the three classes here:
//!
//! - [`Database`]: one open database, shared by every connection of the
//!   process that opens the same location;
//! - [`Connection`]: a session (transaction state, settings) on it;
//! - [`Result`]: what one statement gave: a command tag, or rows that stream
//!   out as Arrow record batches through the C stream interface.
//!
//! Every call that runs the engine releases the GIL, and wakes every 100 ms
//! to let Python run its signal handlers, so Ctrl-C cancels a long query.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use arrow::array::RecordBatchReader;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi_stream::ArrowArrayStreamReader;
use arrow::record_batch::{RecordBatch, RecordBatchIterator};
use arrow_pyarrow::{FromPyArrow, IntoPyArrow, ToPyArrow};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parking_lot::Mutex;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDate, PyDateTime, PyFloat, PyInt, PyString, PyTime};
use strata_query::{Output, Session};

// ---------------------------------------------------------------------------
// Exceptions: the PEP 249 hierarchy, raised with Strata's message and SQLSTATE.
// ---------------------------------------------------------------------------

pyo3::create_exception!(strata, Warning, PyException, "PEP 249 warning.");
pyo3::create_exception!(
    strata,
    Error,
    PyException,
    "Base class of every Strata error; `.sqlstate` holds the SQLSTATE code."
);
pyo3::create_exception!(strata, InterfaceError, Error, "Misuse of the Python API.");
pyo3::create_exception!(
    strata,
    DatabaseError,
    Error,
    "An error the database reported."
);
pyo3::create_exception!(
    strata,
    DataError,
    DatabaseError,
    "Bad data: out of range, division by zero, invalid value (SQLSTATE class 22)."
);
pyo3::create_exception!(strata, OperationalError, DatabaseError, "The database could not do it now: read-only node, out of memory, timeout, I/O (classes 25, 40, 53, 57, 58).");
pyo3::create_exception!(
    strata,
    IntegrityError,
    DatabaseError,
    "A constraint was violated (class 23)."
);
pyo3::create_exception!(
    strata,
    InternalError,
    DatabaseError,
    "A bug in Strata (class XX)."
);
pyo3::create_exception!(
    strata,
    ProgrammingError,
    DatabaseError,
    "Wrong SQL: syntax, unknown table or column, type mismatch (classes 42, 26, 34, 21)."
);
pyo3::create_exception!(
    strata,
    NotSupportedError,
    DatabaseError,
    "A feature Strata does not have (class 0A)."
);

/// The exception for an engine error: the PEP 249 class its SQLSTATE falls
/// in, with `.sqlstate` set.
fn db_err(e: strata::Error) -> PyErr {
    let state = e.sqlstate();
    let msg = e.to_string();
    sql_err(state, msg)
}

fn sql_err(state: &str, msg: String) -> PyErr {
    let class = &state[..2.min(state.len())];
    let err = match class {
        "22" => DataError::new_err(msg),
        "23" => IntegrityError::new_err(msg),
        "42" | "26" | "34" | "21" | "3F" => ProgrammingError::new_err(msg),
        "0A" => NotSupportedError::new_err(msg),
        "25" | "40" | "53" | "54" | "55" | "57" | "58" | "08" => OperationalError::new_err(msg),
        "XX" => InternalError::new_err(msg),
        _ => DatabaseError::new_err(msg),
    };
    Python::attach(|py| {
        let _ = err.value(py).setattr("sqlstate", state);
    });
    err
}

fn arrow_err(e: ArrowError) -> PyErr {
    sql_err("XX000", format!("arrow: {e}"))
}

// ---------------------------------------------------------------------------
// The runtime, and running engine work without the GIL.
// ---------------------------------------------------------------------------

/// One multi-threaded runtime for the process: databases keep background
/// tasks (flushes, compaction, following other nodes) on it.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata")
        .build()
        .expect("start the tokio runtime")
});

/// Run `fut` to completion with the GIL released. Every 100 ms the thread
/// takes the GIL to let Python run signal handlers: a `KeyboardInterrupt`
/// (Ctrl-C) drops the future, which cancels the query, and is raised.
fn run<T: Send, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
{
    py.detach(|| {
        RUNTIME.block_on(async move {
            let mut fut = std::pin::pin!(fut);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.tick().await;
            loop {
                tokio::select! {
                    r = &mut fut => return r,
                    _ = tick.tick() => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })
}

// ---------------------------------------------------------------------------
// Databases: one per location per process.
// ---------------------------------------------------------------------------

/// Databases open in this process, by location: a second `connect()` to the
/// same directory or URL shares the engine (two engines on one directory in
/// one process would each replay and flush the same log).
static OPEN: LazyLock<Mutex<HashMap<String, Weak<Opened>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

struct Opened {
    db: strata::Db,
    key: Option<String>,
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.follower.abort();
        if let Some(k) = &self.key {
            let mut open = OPEN.lock();
            if open.get(k).is_some_and(|w| w.strong_count() == 0) {
                open.remove(k);
            }
        }
    }
}

/// An open database (shared by the connections to one location).
#[pyclass(frozen, module = "strata._strata")]
struct Database {
    inner: Arc<Opened>,
}

/// Open (or create) a database. `location`: a directory, a URL
/// (`s3://bucket/prefix`, `file:///path`), or `None` / `":memory:"` for a
/// private in-memory database.
#[pyfunction]
#[pyo3(signature = (location=None, *, read_only=false, memory_limit=None, test_clock=None))]
fn open_database(
    py: Python<'_>,
    location: Option<String>,
    read_only: bool,
    memory_limit: Option<String>,
    test_clock: Option<String>,
) -> PyResult<Database> {
    let memory = matches!(location.as_deref(), None | Some("") | Some(":memory:"));
    let key = if memory {
        None
    } else {
        let loc = location.clone().unwrap_or_default();
        Some(if loc.contains("://") {
            loc.trim_end_matches('/').to_string()
        } else {
            // The same directory under two spellings is one database.
            let p = std::path::Path::new(&loc);
            std::fs::create_dir_all(p).map_err(|e| {
                OperationalError::new_err(format!("cannot create the data directory {loc}: {e}"))
            })?;
            std::fs::canonicalize(p)
                .map_err(|e| OperationalError::new_err(format!("cannot open {loc}: {e}")))?
                .to_string_lossy()
                .into_owned()
        })
    };
    if let Some(k) = &key {
        if let Some(o) = OPEN.lock().get(k).and_then(|w| w.upgrade()) {
            if o.db.database().engine().read_only() != read_only {
                return Err(InterfaceError::new_err(format!(
                    "{k} is already open in this process {}; connections in one process share one database, so open it the same way",
                    if read_only { "for writing" } else { "read-only" }
                )));
            }
            return Ok(Database { inner: o });
        }
    }
    let mut config = match &key {
        None => strata::Config::memory(),
        Some(k) => strata::Config::url(k),
    };
    config = config.with_read_only(read_only);
    if let Some(m) = memory_limit {
        let limit = strata::config::parse_memory_limit(&m).map_err(PyValueError::new_err)?;
        config = config.with_memory_limit(limit);
    }
    if let Some(c) = test_clock {
        let (start, step) = strata::config::parse_test_clock(&c).map_err(PyValueError::new_err)?;
        config = config.with_test_clock(start, step);
    }
    let db = run(py, async move {
        // Opening spawns the engine's background tasks: inside the runtime.
        RUNTIME
            .spawn(strata::Db::open(config))
            .await
            .map_err(|e| InternalError::new_err(format!("opening the database panicked: {e}")))?
            .map_err(db_err)
    })?;
    let follower = {
        // Pick up what other processes (a `strata serve` on the same
        // directory, other nodes on the bucket) commit, as the server does.
        let _guard = RUNTIME.enter();
        db.follow(Duration::from_millis(100))
    };
    let inner = Arc::new(Opened {
        db,
        key: key.clone(),
        follower,
    });
    if let Some(k) = key {
        OPEN.lock().insert(k, Arc::downgrade(&inner));
    }
    Ok(Database { inner })
}

#[pymethods]
impl Database {
    /// Where the data lives (a canonical directory, a URL, or ":memory:").
    #[getter]
    fn location(&self) -> &str {
        self.inner.key.as_deref().unwrap_or(":memory:")
    }

    #[getter]
    fn read_only(&self) -> bool {
        self.inner.db.database().engine().read_only()
    }

    /// A new session on this database.
    fn connect(&self) -> Connection {
        Connection {
            db: self.inner.clone(),
            session: Arc::new(tokio::sync::Mutex::new(Some(self.inner.db.session()))),
        }
    }

    /// Write the live index out as segments now (normally automatic).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let db = self.inner.db.clone();
        run(py, async move { db.flush().await.map_err(db_err) })
    }

    /// Apply what other processes committed to the store since the last
    /// look (the background follower does this every 100 ms); returns how
    /// many transactions were applied.
    fn catch_up(&self, py: Python<'_>) -> PyResult<u64> {
        let db = self.inner.db.clone();
        run(py, async move { db.catch_up().await.map_err(db_err) })
    }

    fn __repr__(&self) -> String {
        format!("<strata database {}>", self.location())
    }
}

// ---------------------------------------------------------------------------
// Connections.
// ---------------------------------------------------------------------------

/// A session: its transaction block and settings. Statements on one
/// connection run one at a time (a second thread waits its turn).
#[pyclass(frozen, module = "strata._strata")]
struct Connection {
    db: Arc<Opened>,
    /// `None` once closed. Locked inside the engine future, so a statement
    /// cancelled by Ctrl-C leaves the session (and its transaction) as it was.
    session: Arc<tokio::sync::Mutex<Option<Session>>>,
}

fn closed_err() -> PyErr {
    InterfaceError::new_err("the connection is closed; open a new one with strata.connect()")
}

#[pymethods]
impl Connection {
    /// Run SQL (one or more statements; parameters `$1`, `$2`, … bound by
    /// position) and return the last statement's result.
    #[pyo3(signature = (sql, params=None))]
    fn execute(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<Result> {
        let params = params
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| to_scalar(p).map_err(|e| with_param_index(e, i)))
            .collect::<PyResult<Vec<_>>>()?;
        let session = self.session.clone();
        let sql = sql.to_string();
        let outs = run(py, async move {
            let mut g = session.lock().await;
            let s = g.as_mut().ok_or_else(closed_err)?;
            s.execute(&sql, &params).await.map_err(db_err)
        })?;
        Ok(match outs.into_iter().last() {
            Some(Output::Rows { schema, stream }) => Result {
                schema: Some(schema),
                stream: Arc::new(tokio::sync::Mutex::new(Some(stream))),
                tag: "SELECT".into(),
                rowcount: -1,
            },
            other => {
                let (tag, rowcount) = match other {
                    Some(Output::Command { tag, rows }) => (tag, rows as i64),
                    _ => (String::new(), -1),
                };
                Result {
                    schema: None,
                    stream: Arc::new(tokio::sync::Mutex::new(None)),
                    tag,
                    rowcount,
                }
            }
        })
    }

    /// Bulk-load Arrow data (anything with `__arrow_c_stream__`: a
    /// pyarrow Table or RecordBatchReader, ...) into `table` in one
    /// transaction. `valid_from` / `valid_to`: µs since the epoch for rows
    /// without `_valid_from` / `_valid_to` columns.
    #[pyo3(signature = (table, data, valid_from=None, valid_to=None))]
    fn ingest(
        &self,
        py: Python<'_>,
        table: &str,
        data: Bound<'_, PyAny>,
        valid_from: Option<i64>,
        valid_to: Option<i64>,
    ) -> PyResult<u64> {
        let reader = ArrowArrayStreamReader::from_pyarrow_bound(&data)?;
        let batches = reader
            .collect::<std::result::Result<Vec<RecordBatch>, _>>()
            .map_err(|e| DataError::new_err(format!("reading the data to insert: {e}")))?;
        let valid = (valid_from.is_some() || valid_to.is_some()).then_some((valid_from, valid_to));
        let session = self.session.clone();
        let table = table.to_string();
        run(py, async move {
            let mut g = session.lock().await;
            let s = g.as_mut().ok_or_else(closed_err)?;
            s.ingest(&table, batches, valid).await.map_err(db_err)
        })
    }

    /// Whether a transaction block is open (`BEGIN` without its `COMMIT`).
    #[getter]
    fn in_transaction(&self, py: Python<'_>) -> PyResult<bool> {
        let session = self.session.clone();
        run(py, async move {
            let g = session.lock().await;
            Ok(g.as_ref().ok_or_else(closed_err)?.in_transaction())
        })
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> PyResult<bool> {
        let session = self.session.clone();
        run(py, async move { Ok(session.lock().await.is_none()) })
    }

    /// End the session; an open transaction block is rolled back.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let session = self.session.clone();
        run(py, async move {
            session.lock().await.take();
            Ok(())
        })
    }

    /// The database this connection runs on.
    #[getter]
    fn database(&self) -> Database {
        Database {
            inner: self.db.clone(),
        }
    }
}

fn with_param_index(e: PyErr, i: usize) -> PyErr {
    Python::attach(|py| {
        let msg = e.value(py).to_string();
        if e.is_instance_of::<InterfaceError>(py) {
            InterfaceError::new_err(format!("parameter ${}: {msg}", i + 1))
        } else {
            e
        }
    })
}

/// A Python value as a SQL parameter.
fn to_scalar(v: &Bound<'_, PyAny>) -> PyResult<ScalarValue> {
    if v.is_none() {
        return Ok(ScalarValue::Null);
    }
    if v.is_instance_of::<PyBool>() {
        return Ok(ScalarValue::Boolean(Some(v.extract()?)));
    }
    if v.is_instance_of::<PyInt>() {
        return match v.extract::<i64>() {
            Ok(i) => Ok(ScalarValue::Int64(Some(i))),
            Err(_) => Err(InterfaceError::new_err(format!(
                "the integer {v} does not fit in 64 bits; pass it as decimal.Decimal"
            ))),
        };
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(ScalarValue::Float64(Some(v.extract()?)));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(ScalarValue::Utf8(Some(v.extract()?)));
    }
    if v.is_instance_of::<PyBytes>() {
        return Ok(ScalarValue::Binary(Some(v.extract()?)));
    }
    // datetime is a subclass of date: test it first.
    if v.is_instance_of::<PyDateTime>() {
        let aware = !v.getattr("tzinfo")?.is_none();
        if aware {
            let t: chrono::DateTime<chrono::FixedOffset> = v.extract()?;
            return Ok(ScalarValue::TimestampMicrosecond(
                Some(t.timestamp_micros()),
                Some("UTC".into()),
            ));
        }
        let t: chrono::NaiveDateTime = v.extract()?;
        return Ok(ScalarValue::TimestampMicrosecond(
            Some(t.and_utc().timestamp_micros()),
            None,
        ));
    }
    if v.is_instance_of::<PyDate>() {
        let d: chrono::NaiveDate = v.extract()?;
        let days = d
            .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days();
        return Ok(ScalarValue::Date32(Some(days as i32)));
    }
    if v.is_instance_of::<PyTime>() {
        let t: chrono::NaiveTime = v.extract()?;
        let us = chrono::Timelike::num_seconds_from_midnight(&t) as i64 * 1_000_000
            + (chrono::Timelike::nanosecond(&t) / 1000) as i64;
        return Ok(ScalarValue::Time64Microsecond(Some(us)));
    }
    let type_name = v.get_type().fully_qualified_name()?.to_string();
    match type_name.as_str() {
        "decimal.Decimal" => {
            let s: String = v.str()?.extract()?;
            return decimal_scalar(&s);
        }
        "uuid.UUID" => {
            let s: String = v.str()?.extract()?;
            return Ok(ScalarValue::Utf8(Some(s)));
        }
        "datetime.timedelta" => {
            let us: i64 = (v.call_method0("total_seconds")?.extract::<f64>()? * 1e6).round() as i64;
            return Ok(ScalarValue::IntervalMonthDayNano(Some(
                arrow::datatypes::IntervalMonthDayNano::new(0, 0, us * 1000),
            )));
        }
        _ => {}
    }
    Err(InterfaceError::new_err(format!(
        "cannot pass a {type_name} as a SQL parameter; use None, bool, int, float, str, bytes, datetime, date, time, timedelta, Decimal or UUID"
    )))
}

/// `Decimal` text (`-12.340`, `1E+3`) as a Decimal128 scalar.
fn decimal_scalar(s: &str) -> PyResult<ScalarValue> {
    let bad = || InterfaceError::new_err(format!("cannot pass the decimal {s} as a parameter"));
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (s, 0),
    };
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, mantissa.trim_start_matches('+')),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut all: String = format!("{int}{frac}");
    let mut scale = frac.len() as i32 - exp;
    if scale < 0 {
        all.push_str(&"0".repeat((-scale) as usize));
        scale = 0;
    }
    let all = all.trim_start_matches('0');
    let all = if all.is_empty() { "0" } else { all };
    if all.len() > 38 || scale > 38 {
        return Err(InterfaceError::new_err(format!(
            "the decimal {s} has more than 38 digits"
        )));
    }
    let mut v: i128 = all.parse().map_err(|_| bad())?;
    if neg {
        v = -v;
    }
    let precision = (all.len() as i32).max(scale).max(1) as u8;
    Ok(ScalarValue::Decimal128(Some(v), precision, scale as i8))
}

// ---------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------

/// What one statement gave. Rows are read once, in order: batch by batch
/// (`next_batch`), as a stream for pyarrow (`reader`), or all at once
/// (`read_all`).
#[pyclass(frozen, module = "strata._strata")]
struct Result {
    schema: Option<SchemaRef>,
    stream: Arc<tokio::sync::Mutex<Option<SendableRecordBatchStream>>>,
    tag: String,
    rowcount: i64,
}

impl Result {
    fn no_rows(&self) -> PyErr {
        ProgrammingError::new_err(format!(
            "the statement returned no rows ({}); only queries have rows to fetch",
            if self.tag.is_empty() {
                "empty"
            } else {
                &self.tag
            }
        ))
    }

    /// Take the stream (for reading it all, or handing it to pyarrow).
    fn take_stream(&self, py: Python<'_>) -> PyResult<SendableRecordBatchStream> {
        if self.schema.is_none() {
            return Err(self.no_rows());
        }
        let slot = self.stream.clone();
        run(py, async move { Ok(slot.lock().await.take()) })?
            .ok_or_else(|| InterfaceError::new_err("the rows of this result were already read"))
    }
}

#[pymethods]
impl Result {
    /// Whether the statement returns rows (a query) rather than a command tag.
    #[getter]
    fn has_rows(&self) -> bool {
        self.schema.is_some()
    }

    /// The command tag (`INSERT 0 3`, `BEGIN`, `SELECT`).
    #[getter]
    fn tag(&self) -> &str {
        &self.tag
    }

    /// Rows a command changed (-1 for queries).
    #[getter]
    fn rowcount(&self) -> i64 {
        self.rowcount
    }

    /// The result's schema as a `pyarrow.Schema` (None for commands).
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match &self.schema {
            Some(s) => Ok(Some(s.as_ref().to_pyarrow(py)?)),
            None => Ok(None),
        }
    }

    /// The next record batch (`pyarrow.RecordBatch`), or None at the end.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.schema.is_none() {
            return Err(self.no_rows());
        }
        let slot = self.stream.clone();
        let next = run(py, async move {
            let mut g = slot.lock().await;
            let Some(stream) = g.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(Ok(b)) => Ok(Some(b)),
                Some(Err(e)) => {
                    g.take();
                    Err(db_err(e.into()))
                }
                None => {
                    g.take();
                    Ok(None)
                }
            }
        })?;
        next.map(|b| b.to_pyarrow(py)).transpose()
    }

    /// Every remaining row as one `pyarrow.Table`. The batches are handed
    /// over through the Arrow C stream interface: no per-row copies.
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let schema = self.schema.clone().ok_or_else(|| self.no_rows())?;
        let mut stream = self.take_stream(py)?;
        let batches = run(py, async move {
            let mut out = Vec::new();
            while let Some(b) = stream.next().await {
                out.push(b.map_err(|e| db_err(e.into()))?);
            }
            Ok(out)
        })?;
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(RecordBatchIterator::new(
            batches.into_iter().map(Ok),
            schema,
        ));
        reader.into_pyarrow(py)?.call_method0("read_all")
    }

    /// The rows as a `pyarrow.RecordBatchReader` that pulls each batch from
    /// the engine when asked: results larger than memory stream through.
    fn reader<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let schema = self.schema.clone().ok_or_else(|| self.no_rows())?;
        let stream = self.take_stream(py)?;
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(StreamReader {
            schema,
            stream: Some(stream),
        });
        reader.into_pyarrow(py)
    }

    fn __repr__(&self) -> String {
        match &self.schema {
            Some(s) => format!("<strata result: {} columns>", s.fields().len()),
            None => format!("<strata result: {}>", self.tag),
        }
    }
}

/// A DataFusion stream as a blocking Arrow reader, for the C stream
/// interface. Called by pyarrow (with or without the GIL); each batch is
/// awaited on the runtime.
struct StreamReader {
    schema: SchemaRef,
    stream: Option<SendableRecordBatchStream>,
}

impl Iterator for StreamReader {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream.as_mut()?;
        let next = RUNTIME.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.tick().await;
            loop {
                tokio::select! {
                    n = stream.next() => return Ok(n),
                    _ = tick.tick() => {
                        if Python::attach(|py| py.check_signals()).is_err() {
                            return Err(ArrowError::ExternalError("interrupted (KeyboardInterrupt)".into()));
                        }
                    }
                }
            }
        });
        match next {
            Ok(Some(Ok(b))) => Some(Ok(b)),
            Ok(Some(Err(e))) => {
                self.stream = None;
                let e = strata::Error::from(e);
                Some(Err(ArrowError::ExternalError(
                    format!("{} (SQLSTATE {})", e, e.sqlstate()).into(),
                )))
            }
            Ok(None) => {
                self.stream = None;
                None
            }
            Err(e) => {
                self.stream = None;
                Some(Err(e))
            }
        }
    }
}

impl RecordBatchReader for StreamReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Render batches as the text table `strata sql` prints.
#[pyfunction]
fn format_table(data: Bound<'_, PyAny>) -> PyResult<String> {
    let reader = ArrowArrayStreamReader::from_pyarrow_bound(&data)?;
    let batches = reader
        .collect::<std::result::Result<Vec<RecordBatch>, _>>()
        .map_err(arrow_err)?;
    strata::format_batches(&batches, strata::OutputFormat::Table).map_err(|e| sql_err("XX000", e))
}

#[pymodule]
fn _strata(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Database>()?;
    m.add_class::<Connection>()?;
    m.add_class::<Result>()?;
    m.add_function(wrap_pyfunction!(open_database, m)?)?;
    m.add_function(wrap_pyfunction!(format_table, m)?)?;
    m.add("Warning", py.get_type::<Warning>())?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("InterfaceError", py.get_type::<InterfaceError>())?;
    m.add("DatabaseError", py.get_type::<DatabaseError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("OperationalError", py.get_type::<OperationalError>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("ProgrammingError", py.get_type::<ProgrammingError>())?;
    m.add("NotSupportedError", py.get_type::<NotSupportedError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
