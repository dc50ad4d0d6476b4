//! `strata import`: bulk-load CSV or Arrow IPC files into a table through
//! `Db::ingest` (one transaction per `--batch-rows` rows).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use strata::{BulkLoaded, Db};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// Decide from the file: Arrow IPC if it starts with the Arrow magic, else CSV.
    Auto,
    /// CSV with a header line; column types are inferred from the first rows.
    Csv,
    /// Arrow IPC, file or stream format.
    Arrow,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Table to load into (created on first write).
    #[arg(long)]
    table: String,
    /// Column whose values become the rows' `_id` (not needed if the files
    /// already have an `_id` column).
    #[arg(long)]
    id: Option<String>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = ImportFormat::Auto)]
    format: ImportFormat,
    /// Rows per transaction when the table already holds rows or an `_id`
    /// repeats (at most; a transaction also ends once its rows hold a
    /// sixteenth of `--memory-limit`). Into an empty table with unique
    /// `_id`s, the whole import is one transaction written straight into
    /// segments.
    #[arg(long, default_value_t = 500_000)]
    batch_rows: usize,
    /// CSV field delimiter.
    #[arg(long, default_value_t = ',')]
    delimiter: char,
    /// Files to load.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Share of the memory budget one import transaction's rows may hold: the
/// transaction is also encoded for the log and copied into the live index,
/// and flushes and merges run beside it (measured on TPC-H SF 1 lineitem
/// under 512MiB: peak RSS 2.09 GiB with 1 M-row transactions, 1.03 GiB with
/// 200 k-row ones).
const TX_BUDGET_SHARE: usize = 16;

pub async fn run(db: &Db, args: ImportArgs, memory_limit: Option<usize>) -> Result<(), String> {
    if args.batch_rows == 0 {
        return Err("--batch-rows must be at least 1".into());
    }
    if !args.delimiter.is_ascii() {
        return Err(format!(
            "--delimiter must be one ASCII character, got `{}`",
            args.delimiter
        ));
    }
    let started = Instant::now();
    // Into a table that holds no rows: straight into segments, as one
    // transaction (strata_storage::load).
    let mut session = db.session();
    let loaded = session
        .load_batches(&args.table, file_batches(&args))
        .await
        .map_err(|e| e.to_string())?;
    match loaded {
        BulkLoaded::Rows(total) => return finish(db, &args.table, total, started).await,
        BulkLoaded::TableHoldsRows => {}
        BulkLoaded::RepeatedId => eprintln!(
            "note: an `_id` occurs more than once in the input; loading in transactions of \
             --batch-rows rows instead (a later row is a new version of the earlier one)"
        ),
    }
    let mut total = 0u64;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let mut pending_bytes = 0usize;
    let max_bytes = memory_limit.map_or(usize::MAX, |m| (m / TX_BUDGET_SHARE).max(1 << 20));
    for path in &args.files {
        let batches = read_file(path, &args)?;
        for b in batches {
            let b = b.map_err(|e| format!("{}: {e}", path.display()))?;
            let b = with_id(b, args.id.as_deref(), path)?;
            pending_rows += b.num_rows();
            pending_bytes += b.get_array_memory_size();
            pending.push(b);
            if pending_rows >= args.batch_rows || pending_bytes >= max_bytes {
                total += db
                    .ingest(&args.table, std::mem::take(&mut pending), None)
                    .await
                    .map_err(|e| e.to_string())?;
                pending_rows = 0;
                pending_bytes = 0;
            }
        }
    }
    if !pending.is_empty() {
        total += db
            .ingest(&args.table, pending, None)
            .await
            .map_err(|e| e.to_string())?;
    }
    finish(db, &args.table, total, started).await
}

async fn finish(db: &Db, table: &str, total: u64, started: Instant) -> Result<(), String> {
    db.flush().await.map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {total} rows into {table} in {secs:.2} s ({:.0} rows/s)",
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Every batch of every file, with `_id`, as the bulk load takes them.
fn file_batches(args: &ImportArgs) -> impl Iterator<Item = strata::Result<RecordBatch>> + '_ {
    args.files.iter().flat_map(
        move |path| -> Box<dyn Iterator<Item = strata::Result<RecordBatch>>> {
            match read_file(path, args) {
                Err(e) => Box::new(std::iter::once(Err(strata::Error::Invalid(e)))),
                Ok(batches) => Box::new(batches.map(move |b| {
                    b.map_err(|e| format!("{}: {e}", path.display()))
                        .and_then(|b| with_id(b, args.id.as_deref(), path))
                        .map_err(strata::Error::Invalid)
                })),
            }
        },
    )
}

type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>>;

fn read_file(path: &Path, args: &ImportArgs) -> Result<BatchIter, String> {
    let open = || File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()));
    let mut f = open()?;
    let format = match args.format {
        ImportFormat::Auto => {
            let mut magic = [0u8; 6];
            let n = f.read(&mut magic).map_err(|e| e.to_string())?;
            f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            // IPC file: "ARROW1"; IPC stream: continuation marker 0xFFFFFFFF.
            if (n == 6 && &magic == b"ARROW1") || (n >= 4 && magic[..4] == [0xff; 4]) {
                ImportFormat::Arrow
            } else {
                ImportFormat::Csv
            }
        }
        f => f,
    };
    let bad = |e: arrow::error::ArrowError| format!("{}: {e}", path.display());
    match format {
        ImportFormat::Arrow => {
            let mut magic = [0u8; 6];
            let n = f.read(&mut magic).map_err(|e| e.to_string())?;
            f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
            if n == 6 && &magic == b"ARROW1" {
                let r = arrow::ipc::reader::FileReader::try_new(BufReader::new(f), None)
                    .map_err(bad)?;
                Ok(Box::new(r))
            } else {
                let r = arrow::ipc::reader::StreamReader::try_new(BufReader::new(f), None)
                    .map_err(bad)?;
                Ok(Box::new(r))
            }
        }
        _ => {
            let fmt = arrow::csv::reader::Format::default()
                .with_header(true)
                .with_delimiter(args.delimiter as u8);
            let (schema, _) = fmt
                .infer_schema(BufReader::new(f), Some(10_000))
                .map_err(bad)?;
            let r = arrow::csv::ReaderBuilder::new(Arc::new(schema))
                .with_format(fmt)
                .with_batch_size(65_536)
                .build(BufReader::new(open()?))
                .map_err(bad)?;
            Ok(Box::new(r))
        }
    }
}

/// Add `_id` as a copy of column `id`, if asked; otherwise require `_id`.
fn with_id(b: RecordBatch, id: Option<&str>, path: &Path) -> Result<RecordBatch, String> {
    let schema = b.schema();
    let has_id = schema.index_of("_id").is_ok();
    match id {
        None if has_id => Ok(b),
        None => Err(format!(
            "{}: no `_id` column; every Strata row is keyed by `_id`: name a key column with --id COLUMN",
            path.display()
        )),
        Some(_) if has_id => Err(format!(
            "{}: the file already has an `_id` column; drop --id",
            path.display()
        )),
        Some(col) => {
            let i = schema.index_of(col).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!(
                    "{}: --id names column `{col}`, which the file does not have (columns: {})",
                    path.display(),
                    names.join(", ")
                )
            })?;
            let mut fields: Vec<Field> = vec![Field::new(
                "_id",
                schema.field(i).data_type().clone(),
                false,
            )];
            fields.extend(schema.fields().iter().map(|f| f.as_ref().clone()));
            let mut cols: Vec<ArrayRef> = vec![b.column(i).clone()];
            cols.extend(b.columns().iter().cloned());
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
                .map_err(|e| format!("{}: column `{col}` cannot be the key: {e}", path.display()))
        }
    }
}
