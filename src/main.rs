//! The `strata` binary: `strata sql` (embedded REPL or one statement) and
//! `strata serve` (the network front ends).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod import;
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
    /// Run the server: the Postgres wire protocol listener over one database.
    Serve(strata::serve::ServeArgs),
    /// Bulk-load CSV or Arrow IPC files into a table.
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = rt.block_on(async {
        match cli.command {
            Command::Sql {
                store,
                command,
                format,
            } => run_sql(store, command, format).await,
            Command::Serve(args) => strata::serve::run(args).await,
            Command::Import { store, args } => {
                let db = Db::open(store.config()?).await.map_err(|e| e.to_string())?;
                import::run(&db, args).await
            }
        }
    });
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
            let mut sql = String::new();
            std::io::stdin()
                .read_to_string(&mut sql)
                .map_err(|e| e.to_string())?;
            run_and_print(&mut session, &sql, format).await
        }
    }
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
                let t = line.trim();
                if buf.is_empty() && t.starts_with('\\') {
                    let _ = rl.add_history_entry(t);
                    match t {
                        "\\q" => break,
                        "\\dt" => {
                            let sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1";
                            if let Err(e) = run_and_print(&mut session, sql, format).await {
                                eprintln!("error: {e}");
                            }
                        }
                        _ => eprintln!("unknown command {t}: try \\q or \\dt"),
                    }
                    continue;
                }
                buf.push_str(&line);
                buf.push('\n');
                if t.ends_with(';') {
                    let sql = std::mem::take(&mut buf);
                    let _ = rl.add_history_entry(sql.trim());
                    if let Err(e) = run_and_print(&mut session, &sql, format).await {
                        eprintln!("error: {e}");
                    }
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
