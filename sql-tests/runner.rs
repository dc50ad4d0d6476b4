//! The sqllogictest runner: the executable SQL spec of Strata.
//!
//! Finds every `sql-tests/**/*.slt` file and runs each against a fresh
//! `strata::Db`, through `strata::Session`. Run it with
//!
//! ```text
//! cargo test --test sqllogictests                 # every file
//! cargo test --test sqllogictests -- core/insert  # files whose path contains a filter
//! STRATA_SLT_S3=0 cargo test --test sqllogictests # skip the S3 pass (quick local runs)
//! ```
//!
//! # The S3 pass
//!
//! Every file under the directories in [`S3_DIRS`] (`core/` and `temporal/`)
//! runs a second time against a real S3-compatible server: moto, started
//! once by the runner (`tests/support/s3.rs`, which says how to install it),
//! each file on a fresh prefix of its one bucket, through the disk cache (a
//! temp cache directory per file) like any remote store. A `storage = dir`
//! file's `.restart` reopens the same prefix. Each result line names the
//! store the run used (`memory`, `dir` or the `s3://` URL).
//!
//! Records that only hold on one kind of store take the S3 pass's label:
//! `skipif s3` leaves a record out of the S3 pass, `onlyif s3` runs it only
//! there. Files that cannot run on S3 at all are listed, with the reason, in
//! [`S3_SKIP`] (and show as `skip` in the output).
//!
//! `STRATA_SLT_S3` chooses: unset or `1` runs both passes (what CI does),
//! `0` skips the S3 pass, `only` runs just the S3 pass.
//!
//! # File header
//!
//! Comment lines of the form `# strata: key = value` anywhere before the first
//! record choose the database a file runs against:
//!
//! | key          | value                                   | default                        |
//! |--------------|-----------------------------------------|--------------------------------|
//! | `test-clock` | `START,STEP` as for `strata sql --test-clock` | `2020-01-01T00:00:00Z,1d` |
//! | `flush-rows` | flush the live index past this many rows | `1000000`                     |
//! | `storage`    | `memory` or `dir` (a fresh temp dir)     | `memory`                       |
//!
//! The default clock gives the first transaction system time
//! 2020-01-01T00:00:00Z, and every later one a day more.
//!
//! # Runner commands
//!
//! A `statement ok` whose SQL is one of these is handled by the runner:
//!
//! - `.flush`   — write the live index out as segments now (`Db::flush`);
//! - `.restart` — drop the database and open it again from its directory
//!   (`storage = dir` only); every connection gets a new session.
//!
//! # Results
//!
//! Values render as text: NULL as `NULL`, the empty string as `(empty)`,
//! booleans `true`/`false`, timestamps in RFC 3339 (`2020-01-01T00:00:00Z`),
//! structs `{a: 1, b: x}`, lists `[1, 2]`. Column types are checked
//! strictly: `I` integer, `R` float or decimal, `T` text, `B` boolean,
//! `D` date / time / timestamp, `?` anything else (structs, lists, …).
//! Errors render as `<message> [SQLSTATE <code>]`, so `statement error` regexes
//! can match the message, the code, or both.
//!
//! Engine name is `strata`: `skipif strata` leaves a record out (used for
//! known bugs, next to a `# BUG:` comment that says what is expected). With
//! `STRATA_SLT_KNOWN_BUGS=1` in the environment those records run too, to see
//! which known bugs are still there.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{ColumnType, DBOutput, Record, RecordOutput, Runner};
use strata::{Config, Db, Session, StoreLocation};
use strata_query::Output;

#[path = "../tests/support/s3.rs"]
mod s3;

/// The directories (relative to `sql-tests/`) whose files also run on S3.
const S3_DIRS: [&str; 2] = ["core/", "temporal/"];

/// Files under [`S3_DIRS`] that cannot run on S3 as written, and why. Each
/// shows as `skip` in the output. A file can instead mark its store-specific
/// records with `skipif s3` / `onlyif s3` (the S3 pass's label).
const S3_SKIP: [(&str, &str); 0] = [];

// ---------------------------------------------------------------------------
// Column types

#[derive(Debug, Clone, PartialEq, Eq)]
enum StrataColumnType {
    Integer,
    Float,
    Text,
    Boolean,
    DateTime,
    Any,
}

impl ColumnType for StrataColumnType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'I' => Self::Integer,
            'R' => Self::Float,
            'T' => Self::Text,
            'B' => Self::Boolean,
            'D' => Self::DateTime,
            _ => Self::Any,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Text => 'T',
            Self::Boolean => 'B',
            Self::DateTime => 'D',
            Self::Any => '?',
        }
    }
}

fn column_type(dt: &DataType) -> StrataColumnType {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => {
            StrataColumnType::Integer
        }
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) => StrataColumnType::Float,
        Utf8 | LargeUtf8 | Utf8View => StrataColumnType::Text,
        Boolean => StrataColumnType::Boolean,
        Date32 | Date64 | Time32(_) | Time64(_) | Timestamp(..) => StrataColumnType::DateTime,
        Dictionary(_, v) => column_type(v),
        _ => StrataColumnType::Any,
    }
}

// ---------------------------------------------------------------------------
// The database under test

#[derive(Debug, Clone)]
struct FileSettings {
    test_clock: (i64, i64),
    flush_rows: usize,
    dir: bool,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            // 2020-01-01T00:00:00Z, one day per transaction.
            test_clock: (1_577_836_800_000_000, 86_400_000_000),
            flush_rows: 1_000_000,
            dir: false,
        }
    }
}

impl FileSettings {
    /// Read `# strata: key = value` lines from the top of a file.
    fn parse(script: &str) -> Result<FileSettings, String> {
        let mut s = FileSettings::default();
        for line in script.lines() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            let Some(comment) = t.strip_prefix('#') else {
                break;
            };
            let Some(setting) = comment.trim().strip_prefix("strata:") else {
                continue;
            };
            let (k, v) = setting
                .split_once('=')
                .ok_or_else(|| format!("bad header `{t}`: want `# strata: key = value`"))?;
            let (k, v) = (k.trim(), v.trim());
            match k {
                "test-clock" => s.test_clock = strata::config::parse_test_clock(v)?,
                "flush-rows" => {
                    s.flush_rows = v
                        .parse()
                        .map_err(|e| format!("bad flush-rows `{v}`: {e}"))?
                }
                "storage" => {
                    s.dir = match v {
                        "memory" => false,
                        "dir" => true,
                        _ => return Err(format!("bad storage `{v}`: memory or dir")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown header key `{k}` (test-clock, flush-rows, storage)"
                    ))
                }
            }
        }
        Ok(s)
    }
}

/// Where a file's database lives.
enum Store {
    Memory,
    /// A fresh temp dir (`storage = dir`).
    Dir(tempfile::TempDir),
    /// A fresh prefix on the S3 server, and the disk cache's directory.
    S3 {
        location: StoreLocation,
        cache: tempfile::TempDir,
    },
}

impl Store {
    /// What the result line shows.
    fn describe(&self) -> String {
        match self {
            Store::Memory => "memory".into(),
            Store::Dir(_) => "dir".into(),
            Store::S3 { location, .. } => match location {
                StoreLocation::Custom { name, .. } => name.clone(),
                _ => "s3".into(),
            },
        }
    }
}

/// The database one file runs against, shared by its connections.
struct Shared {
    settings: FileSettings,
    store: Store,
    db: tokio::sync::RwLock<Db>,
    /// Bumped by `.restart`; connections with an older generation reopen their session.
    generation: AtomicU64,
}

impl Shared {
    fn config(settings: &FileSettings, store: &Store) -> Config {
        let c = match store {
            Store::Memory => Config::memory(),
            Store::Dir(d) => Config::dir(d.path()),
            Store::S3 { location, cache } => {
                Config::location(location.clone()).with_cache_dir(cache.path())
            }
        };
        c.with_test_clock(settings.test_clock.0, settings.test_clock.1)
            .with_flush_rows(settings.flush_rows)
    }

    /// `s3`: the server and a prefix to run on instead of memory or a temp dir.
    async fn open(
        settings: FileSettings,
        s3: Option<(&s3::S3Server, &str)>,
    ) -> Result<Arc<Shared>, String> {
        let tmp = || tempfile::tempdir().map_err(|e| e.to_string());
        let store = match s3 {
            Some((srv, prefix)) => Store::S3 {
                location: srv.location(prefix),
                cache: tmp()?,
            },
            None if settings.dir => Store::Dir(tmp()?),
            None => Store::Memory,
        };
        let db = Db::open(Shared::config(&settings, &store))
            .await
            .map_err(|e| format!("open the database on {}: {e}", store.describe()))?;
        Ok(Arc::new(Shared {
            settings,
            store,
            db: tokio::sync::RwLock::new(db),
            generation: AtomicU64::new(0),
        }))
    }
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

impl From<strata::Error> for SltError {
    fn from(e: strata::Error) -> Self {
        SltError(format!("{e} [SQLSTATE {}]", e.sqlstate()))
    }
}

/// One `connection` of a file: a session on the shared database.
struct Conn {
    shared: Arc<Shared>,
    generation: u64,
    session: Session,
}

impl Conn {
    async fn new(shared: Arc<Shared>) -> Conn {
        let generation = shared.generation.load(Ordering::SeqCst);
        let session = shared.db.read().await.session();
        Conn {
            shared,
            generation,
            session,
        }
    }

    async fn command(&mut self, cmd: &str) -> Result<DBOutput<StrataColumnType>, SltError> {
        match cmd {
            ".flush" => {
                self.shared.db.read().await.flush().await?;
            }
            ".restart" => {
                // On S3 too: the same prefix (and cache directory) again.
                if !self.shared.settings.dir {
                    return Err(SltError(".restart needs `# strata: storage = dir`".into()));
                }
                let mut db = self.shared.db.write().await;
                // Open the new one first: the old engine stays valid until replaced.
                let fresh =
                    Db::open(Shared::config(&self.shared.settings, &self.shared.store)).await?;
                *db = fresh;
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
            }
            other => {
                return Err(SltError(format!(
                    "unknown runner command `{other}` (.flush, .restart)"
                )))
            }
        }
        Ok(DBOutput::StatementComplete(0))
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Conn {
    type Error = SltError;
    type ColumnType = StrataColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<StrataColumnType>, SltError> {
        self.run_local(sql).await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        // STRATA_SLT_KNOWN_BUGS=1 runs the records marked `skipif strata` too,
        // to see which known bugs are still there.
        if std::env::var_os("STRATA_SLT_KNOWN_BUGS").is_some() {
            "strata-known-bugs"
        } else {
            "strata"
        }
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }
}

impl Conn {
    async fn run_local(&mut self, sql: &str) -> Result<DBOutput<StrataColumnType>, SltError> {
        let t = sql.trim().trim_end_matches(';').trim();
        if t.starts_with('.') {
            return self.command(t).await;
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        if generation != self.generation {
            self.session = self.shared.db.read().await.session();
            self.generation = generation;
        }
        let outs = self.session.execute(sql, &[]).await?;
        let mut last = DBOutput::StatementComplete(0);
        for o in outs {
            last = match o {
                Output::Command { rows, .. } => DBOutput::StatementComplete(rows),
                Output::Rows { schema, stream } => {
                    let types = schema
                        .fields()
                        .iter()
                        .map(|f| column_type(f.data_type()))
                        .collect();
                    let batches = Output::Rows { schema, stream }.collect().await?;
                    DBOutput::Rows {
                        types,
                        rows: render(&batches)?,
                    }
                }
            };
        }
        Ok(last)
    }
}

fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for r in 0..b.num_rows() {
            let row = fmts
                .iter()
                .zip(b.columns())
                .map(|(f, c)| {
                    let s = f.value(r).to_string();
                    if s.is_empty() && c.is_valid(r) {
                        "(empty)".to_string()
                    } else {
                        s
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Driving the files

fn find_slt(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_slt(&p, out);
        } else if p.extension().is_some_and(|x| x == "slt") {
            out.push(p);
        }
    }
}

/// What one run of a file gives: (records run, records skipped), or the
/// failures as text; and the store it ran on.
type FileResult = (Result<(usize, usize), Vec<String>>, String);

/// Run one file (on `s3`'s server and prefix if given); every record runs (a
/// failure does not stop the file), and the failures come back as text.
async fn run_file(path: &Path, s3: Option<(&s3::S3Server, &str)>) -> FileResult {
    let store = match s3 {
        Some((srv, prefix)) => srv.url(prefix),
        None => "memory".into(),
    };
    let script = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => return (Err(vec![e.to_string()]), store),
    };
    let settings = match FileSettings::parse(&script) {
        Ok(s) => s,
        Err(e) => return (Err(vec![e]), store),
    };
    let records = match sqllogictest::parse_file::<StrataColumnType>(path) {
        Ok(r) => r,
        Err(e) => return (Err(vec![e.to_string()]), store),
    };
    let shared = match Shared::open(settings, s3).await {
        Ok(s) => s,
        Err(e) => return (Err(vec![e]), store),
    };
    let store = shared.store.describe();
    (run_records(shared, records, s3.is_some()).await, store)
}

async fn run_records(
    shared: Arc<Shared>,
    records: Vec<Record<StrataColumnType>>,
    on_s3: bool,
) -> Result<(usize, usize), Vec<String>> {
    let mut runner = Runner::new(move || {
        let shared = shared.clone();
        async move { Ok::<_, SltError>(Conn::new(shared).await) }
    });
    if on_s3 {
        runner.add_label("s3");
    }
    runner.with_column_validator(sqllogictest::strict_column_validator);
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for r in records {
        if let Record::Halt { .. } = r {
            break;
        }
        let counts = matches!(r, Record::Statement { .. } | Record::Query { .. });
        match runner.run_async(r).await {
            Ok(RecordOutput::Nothing) if counts => skipped += 1,
            Ok(_) => ran += counts as usize,
            Err(e) => failures.push(e.display(false).to_string()),
        }
    }
    runner.shutdown_async().await;
    if failures.is_empty() {
        Ok((ran, skipped))
    } else {
        Err(failures)
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql-tests");
    let (filters, list_only) = parse_args();
    if list_only {
        // `--list` (test listers): this harness-less binary has no unit tests to list.
        return;
    }
    let mut files = Vec::new();
    find_slt(&root, &mut files);
    files.sort();
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            let rel = f
                .strip_prefix(&root)
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            filters.is_empty() || filters.iter().any(|x| rel.contains(x.as_str()))
        })
        .collect();
    // As `strata` does (src/main.rs): statements near the expression depth
    // limit (sql-tests/core/limits.slt) need big stacks to plan, both on the
    // runtime's workers and on the thread that blocks on it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(strata_query::THREAD_STACK_BYTES)
        .build()
        .expect("tokio runtime");
    let files_empty = files.is_empty();
    let root_shown = root.display().to_string();
    let (passed, failed) = std::thread::Builder::new()
        .name("sqllogictests".into())
        .stack_size(strata_query::THREAD_STACK_BYTES)
        .spawn(move || run_files(&rt, &root, &files))
        .expect("start the runner thread")
        .join()
        .expect("the runner thread panicked");
    println!("{passed} passed, {failed} failed (runs of files)");
    if files_empty && filters.is_empty() {
        eprintln!("no .slt files under {}", root_shown);
        std::process::exit(1);
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Which passes `STRATA_SLT_S3` asks for: (the usual one, the S3 one).
fn passes() -> (bool, bool) {
    match std::env::var("STRATA_SLT_S3").as_deref().map(str::trim) {
        Ok("0") | Ok("false") | Ok("off") | Ok("no") => (true, false),
        Ok("only") => (false, true),
        _ => (true, true),
    }
}

/// Run every file on `rt`, then (per `STRATA_SLT_S3`) those under
/// [`S3_DIRS`] again on S3: (files passed, files failed), counting each run.
fn run_files(rt: &tokio::runtime::Runtime, root: &Path, files: &[PathBuf]) -> (usize, usize) {
    let (usual, on_s3) = passes();
    let rel = |f: &PathBuf| f.strip_prefix(root).unwrap_or(f).display().to_string();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report = |rel: &str, start: Instant, (result, store): FileResult| match result {
        Ok((n, skipped)) => {
            passed += 1;
            let skipped = if skipped > 0 {
                format!(", {skipped} skipped")
            } else {
                String::new()
            };
            println!(
                "ok     {rel} on {store} ({n} records{skipped}, {:.2?})",
                start.elapsed()
            );
        }
        Err(errs) => {
            failed += 1;
            println!(
                "FAILED {rel} on {store} ({} failing records, {:.2?})",
                errs.len(),
                start.elapsed()
            );
            for e in errs {
                println!("{}\n", indent(&e));
            }
        }
    };
    let started = Instant::now();
    if usual {
        for f in files {
            let start = Instant::now();
            report(&rel(f), start, rt.block_on(run_file(f, None)));
        }
    }
    let s3_files: Vec<&PathBuf> = files
        .iter()
        .filter(|f| S3_DIRS.iter().any(|d| rel(f).starts_with(d)))
        .collect();
    if on_s3 && !s3_files.is_empty() {
        let usual_took = started.elapsed();
        let s3_started = Instant::now();
        // One server for the whole pass, each file on a prefix of its own.
        let srv = match std::panic::catch_unwind(s3::S3Server::start) {
            Ok(srv) => srv,
            Err(_) => {
                println!(
                    "FAILED the S3 pass: the S3 test server did not start (see above); \
                     STRATA_SLT_S3=0 skips the pass"
                );
                return (passed, failed + 1);
            }
        };
        println!(
            "S3 pass: {} files on moto at {}, one prefix each (STRATA_SLT_S3=0 skips it)",
            s3_files.len(),
            srv.endpoint()
        );
        for f in s3_files {
            if let Some((_, why)) = S3_SKIP.iter().find(|(p, _)| rel(f) == *p) {
                println!("skip   {} on s3: {why}", rel(f));
                continue;
            }
            let start = Instant::now();
            let name = rel(f).trim_end_matches(".slt").replace('/', "-");
            let prefix = srv.fresh_prefix(&format!("slt-{name}"));
            report(
                &rel(f),
                start,
                rt.block_on(run_file(f, Some((&srv, &prefix)))),
            );
        }
        println!(
            "S3 pass took {:.2?} (the usual pass {:.2?})",
            s3_started.elapsed(),
            usual_took
        );
    }
    (passed, failed)
}

/// Path filters from the command line; libtest flags (as `cargo test -- …`
/// passes them to every test binary) are ignored, with their values.
fn parse_args() -> (Vec<String>, bool) {
    const WITH_VALUE: [&str; 7] = [
        "--test-threads",
        "--skip",
        "--format",
        "--color",
        "--logfile",
        "-Z",
        "--shuffle-seed",
    ];
    let mut filters = Vec::new();
    let mut list = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--list" {
            list = true;
        } else if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    (filters, list)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
