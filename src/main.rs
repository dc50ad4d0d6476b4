//! The `strata` binary: `strata sql` (embedded REPL or one statement) and
//! `strata serve` (the network front ends).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod import;

/// mimalloc instead of the system allocator (see Cargo.toml, feature `mimalloc`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use strata::config::{parse_test_clock, DEFAULT_DATA_DIR};
use strata::{format_batches, Config, Db, OutputFormat, Session};
use strata_query::Output;

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Strata: a bitemporal, immutable HTAP database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct StoreArgs {
    /// Data directory (created if missing).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Object store URL (s3://bucket/prefix); overrides --data-dir.
    #[arg(long, env = "STRATA_STORE_URL")]
    store_url: Option<String>,
    /// Deterministic clock for tests: START,STEP (e.g. 2020-01-01T00:00:00Z,1d).
    #[arg(long, env = "STRATA_TEST_CLOCK")]
    test_clock: Option<String>,
    /// Flush the live index to segments past this many rows.
    #[arg(long, env = "STRATA_FLUSH_ROWS", default_value_t = 1_000_000)]
    flush_rows: usize,
    /// Memory budget (3GiB, 512MiB, 50%, none) [default: 50% of the RAM].
    #[arg(long, env = "STRATA_MEMORY_LIMIT")]
    memory_limit: Option<String>,
    /// Directory for query spill files [default: the system temp dir].
    #[arg(long, env = "STRATA_SPILL_DIR")]
    spill_dir: Option<PathBuf>,
    /// Disk cache directory for a remote store.
    #[arg(long, env = "STRATA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Disk cache size limit (10GiB, bytes; 0 turns it off) [default: 10GiB].
    #[arg(long, env = "STRATA_CACHE_SIZE")]
    cache_size: Option<String>,
    /// How long superseded segments stay readable for queries already
    /// running (10min, 0s) [default: 10min].
    #[arg(long, env = "STRATA_GC_GRACE")]
    gc_grace: Option<String>,
    /// How long log records already in segments are kept (24h, 0s) [default: 24h].
    #[arg(long, env = "STRATA_LOG_RETENTION")]
    log_retention: Option<String>,
    /// Where COPY … TO 'file' (FORMAT parquet | delta) may write: a
    /// directory or an object store URL [default: none].
    #[arg(long, env = "STRATA_EXPORT_ROOT")]
    export_root: Option<String>,
}

impl StoreArgs {
    fn config(&self) -> Result<Config, String> {
        let mut c = match &self.store_url {
            Some(u) => Config::url(u),
            None => Config::dir(&self.data_dir),
        };
        if let Some(tc) = &self.test_clock {
            let (s, st) = parse_test_clock(tc)?;
            c = c.with_test_clock(s, st);
        }
        if let Some(m) = &self.memory_limit {
            c = c.with_memory_limit(strata::config::parse_memory_limit(m)?);
        }
        if let Some(d) = &self.spill_dir {
            c = c.with_spill_dir(d);
        }
        if let Some(d) = &self.cache_dir {
            c = c.with_cache_dir(d);
        }
        if let Some(n) = &self.cache_size {
            c = c.with_cache_size(strata::config::parse_size(n, "--cache-size")?);
        }
        if let Some(g) = &self.gc_grace {
            c = c.with_gc_grace(strata::config::parse_duration(g, "--gc-grace")?);
        }
        if let Some(r) = &self.log_retention {
            c = c.with_log_retention(strata::config::parse_duration(r, "--log-retention")?);
        }
        if let Some(r) = &self.export_root {
            c = c.with_export_root(r);
        }
        Ok(c.with_flush_rows(self.flush_rows))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open a database embedded: run one statement with -c, or an interactive shell.
    Sql {
        #[command(flatten)]
        store: StoreArgs,
        /// Run this SQL and exit.
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Run the server over one database: the Postgres wire protocol
    /// (--pg-port, default 5432) and Arrow Flight SQL (--flight-port,
    /// default 9833) listeners.
    Serve(strata::serve::ServeArgs),
    /// Bulk-load CSV or Arrow IPC files into a table.
    ///
    /// Into a table that holds no rows, the whole import is one transaction
    /// (all or nothing) whose rows are written straight into segments. Into
    /// a table with rows, or when an `_id` repeats in the input, rows are
    /// committed in transactions of `--batch-rows`.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: import::ImportArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Planning and evaluating a deep expression recurse; big stacks (only
    // touched pages are committed) keep a statement near the depth limit
    // (strata_query::MAX_EXPR_DEPTH) from overflowing a worker.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(strata_query::THREAD_STACK_BYTES)
        .build()
        .expect("tokio runtime");
    // On a thread with a worker's big stack, not on the main thread's.
    let main = || {
        rt.block_on(async {
            match cli.command {
                Command::Sql {
                    store,
                    command,
                    format,
                } => run_sql(store, command, format).await,
                Command::Serve(args) => strata::serve::run(args).await,
                Command::Import { store, args } => {
                    let config = store.config()?;
                    let budget = config.memory_limit;
                    let db = Db::open(config).await.map_err(|e| e.to_string())?;
                    import::run(&db, args, budget).await
                }
            }
        })
    };
    let r = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("strata-main".into())
            .stack_size(strata_query::THREAD_STACK_BYTES)
            .spawn_scoped(s, main)
            .expect("start the main thread")
            .join()
    })
    .unwrap_or_else(|_| Err("internal error: the command panicked".into()));
    // Work still running (a statement cancelled at shutdown but busy in a
    // CPU-bound step) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sql(
    store: StoreArgs,
    command: Option<String>,
    format: OutputFormat,
) -> Result<(), String> {
    let db = Db::open(store.config()?).await.map_err(|e| e.to_string())?;
    let mut session = db.session();
    match command {
        Some(sql) => run_and_print(&mut session, &sql, format).await,
        None if std::io::stdin().is_terminal() => repl(session, format).await,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| e.to_string())?;
            run_script(&mut session, &text, format).await
        }
    }
}

/// What one line of shell input asks for.
enum Line {
    /// A backslash command was handled; go on.
    Done,
    /// `\q`.
    Quit,
    /// A complete statement (ending in `;`) to run.
    Statement(String),
    /// Part of a statement; more lines follow.
    More,
}

/// The line handling shared by the terminal and piped input: backslash
/// commands at the start of a statement, statements ending with `;`.
async fn shell_line(
    session: &mut Session,
    buf: &mut String,
    line: &str,
    format: OutputFormat,
) -> Result<Line, String> {
    let t = line.trim();
    if buf.trim().is_empty() && t.starts_with('\\') {
        buf.clear();
        return match t {
            "\\q" => Ok(Line::Quit),
            "\\dt" => {
                let sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1";
                run_and_print(session, sql, format).await?;
                Ok(Line::Done)
            }
            _ => Err(format!("unknown command {t}: try \\q or \\dt")),
        };
    }
    buf.push_str(line);
    buf.push('\n');
    if t.ends_with(';') {
        Ok(Line::Statement(std::mem::take(buf)))
    } else {
        Ok(Line::More)
    }
}

/// Piped input: the same backslash commands as the terminal; the first
/// error stops the script (exit status 1), like `psql -v ON_ERROR_STOP=1`.
async fn run_script(session: &mut Session, text: &str, format: OutputFormat) -> Result<(), String> {
    let mut buf = String::new();
    for line in text.lines() {
        match shell_line(session, &mut buf, line, format).await? {
            Line::Quit => return Ok(()),
            Line::Statement(sql) => run_and_print(session, &sql, format).await?,
            Line::Done | Line::More => {}
        }
    }
    // A last statement without `;`.
    if !buf.trim().is_empty() {
        run_and_print(session, &buf, format).await?;
    }
    Ok(())
}

async fn run_and_print(
    session: &mut Session,
    sql: &str,
    format: OutputFormat,
) -> Result<(), String> {
    let outs = session.execute(sql, &[]).await.map_err(|e| e.to_string())?;
    for o in outs {
        match o {
            Output::Command { tag, .. } => {
                if format == OutputFormat::Table {
                    println!("{tag}");
                }
            }
            rows @ Output::Rows { .. } => {
                let schema = match &rows {
                    Output::Rows { schema, .. } => schema.clone(),
                    Output::Command { .. } => unreachable!("matched Rows"),
                };
                let mut batches = rows.collect().await.map_err(|e| e.to_string())?;
                if batches.iter().all(|b| b.num_rows() == 0) {
                    // Keep the header (CSV) and the column box (table) for no rows.
                    batches = vec![datafusion::arrow::record_batch::RecordBatch::new_empty(
                        schema,
                    )];
                }
                print!("{}", format_batches(&batches, format)?);
            }
        }
    }
    Ok(())
}

/// An interactive shell: statements end with `;`, `\q` quits, history is kept.
async fn repl(mut session: Session, format: OutputFormat) -> Result<(), String> {
    use rustyline::error::ReadlineError;
    let mut rl = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".strata_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!(
        "Strata {} — end statements with ';', \\q to quit, \\dt to list tables.",
        env!("CARGO_PKG_VERSION")
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() {
            "strata> "
        } else {
            "   ...> "
        };
        match rl.readline(prompt) {
            Ok(line) => {
                let command = buf.trim().is_empty() && line.trim().starts_with('\\');
                if command {
                    let _ = rl.add_history_entry(line.trim());
                }
                match shell_line(&mut session, &mut buf, &line, format).await {
                    Ok(Line::Quit) => break,
                    Ok(Line::Statement(sql)) => {
                        let _ = rl.add_history_entry(sql.trim());
                        if let Err(e) = run_and_print(&mut session, &sql, format).await {
                            eprintln!("error: {e}");
                        }
                    }
                    Ok(Line::Done | Line::More) => {}
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}
