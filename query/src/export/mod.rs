//! Exports written by the server: `COPY (query) TO 'file.parquet' (FORMAT
//! parquet)` writes one Parquet file, and `COPY t TO 'dir' (FORMAT delta)`
//! writes or refreshes a Delta Lake table (crate::export::delta). Both write
//! only under the export root the server was started with (`--export-root`,
//! a directory or an object store URL): a database that writes wherever a
//! client names is a way into the machine. Without a root, server-side COPY
//! is refused and the error points to psql's `\copy`, which writes on the
//! client (docs/copy.md "Files on the server").

pub mod delta;

use std::path::{Component, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{QueryError, Result};
use crate::session::{Output, Session};

/// Where server-side exports may be written.
#[derive(Debug)]
pub struct ExportRoot {
    store: Arc<dyn ObjectStore>,
    /// The root within `store` (empty for a local directory).
    prefix: Path,
    /// The root as a user names it: a canonical directory or a URL without
    /// a trailing slash.
    shown: String,
    /// The directory, for a local root.
    local: Option<PathBuf>,
}

/// Rows per Parquet row group: DuckDB's size; groups are uploaded as they fill.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// Bytes of encoded Parquet buffered before they go to the store.
const UPLOAD_CHUNK: usize = 8 << 20;

impl ExportRoot {
    /// A local directory (created if missing), `file:///dir`, or an object
    /// store URL (`s3://bucket/prefix`, `az://…`, `gs://…`; settings from the
    /// environment as for the database's own store).
    pub fn open(location: &str) -> Result<ExportRoot> {
        let location = location.trim();
        if location.is_empty() {
            return Err(QueryError::Invalid(
                "--export-root is empty: give a directory or an object store URL (s3://bucket/prefix)"
                    .into(),
            ));
        }
        let dir = match location.strip_prefix("file://") {
            Some(d) => Some(PathBuf::from(d)),
            None if location.contains("://") => None,
            None => Some(PathBuf::from(location)),
        };
        match dir {
            Some(dir) => {
                let bad = |e: std::io::Error| {
                    QueryError::Invalid(format!(
                        "--export-root {}: cannot use it as the export directory: {e}",
                        dir.display()
                    ))
                };
                std::fs::create_dir_all(&dir).map_err(bad)?;
                let dir = std::fs::canonicalize(&dir).map_err(bad)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| QueryError::Invalid(format!("--export-root: {e}")))?;
                Ok(ExportRoot {
                    store: Arc::new(store),
                    prefix: Path::default(),
                    shown: dir.display().to_string(),
                    local: Some(dir),
                })
            }
            None => {
                let (store, prefix) = strata_storage::store::open_remote_url(location)
                    .map_err(|e| QueryError::Invalid(format!("--export-root: {e}")))?;
                Ok(ExportRoot {
                    store: Arc::from(store),
                    prefix,
                    shown: location.trim_end_matches('/').to_string(),
                    local: None,
                })
            }
        }
    }

    /// The root as configured, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The store path of an export target: a path relative to the root, an
    /// absolute path inside a local root, or a URL inside a remote one.
    pub fn resolve(&self, target: &str) -> Result<Path> {
        let t = target.trim();
        if t.is_empty() {
            return Err(QueryError::Invalid(
                "COPY … TO '': name the file to write, relative to the export root".into(),
            ));
        }
        let outside = || {
            QueryError::Privilege(format!(
                "cannot write `{t}`: it is outside the export root {} (--export-root). Name a path relative \
                 to the root, or one inside it",
                self.shown
            ))
        };
        let rest: String = if let Some(abs) = t.strip_prefix("file://") {
            self.inside_local(abs).ok_or_else(outside)?
        } else if t.contains("://") {
            let root = format!("{}/", self.shown);
            if self.local.is_some() {
                return Err(outside());
            }
            t.strip_prefix(&root).ok_or_else(outside)?.to_string()
        } else if std::path::Path::new(t).is_absolute() {
            self.inside_local(t).ok_or_else(outside)?
        } else {
            t.to_string()
        };
        let mut parts: Vec<&str> = Vec::new();
        for p in rest.split('/') {
            match p {
                "" | "." => {}
                ".." => {
                    return Err(QueryError::Privilege(format!(
                        "cannot write `{t}`: `..` may not appear in an export path"
                    )))
                }
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(QueryError::Invalid(format!(
                "cannot write `{t}`: that is the export root itself; name a file or directory in it"
            )));
        }
        let mut path = self.prefix.clone();
        for p in parts {
            let part = object_store::path::PathPart::parse(p).map_err(|e| {
                QueryError::Invalid(format!(
                    "cannot write `{t}`: `{p}` is not a usable name: {e}"
                ))
            })?;
            path = path.join(part);
        }
        Ok(path)
    }

    /// An absolute local path's part below a local root.
    fn inside_local(&self, abs: &str) -> Option<String> {
        let root = self.local.as_ref()?;
        let p = std::path::Path::new(abs);
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return None;
        }
        let rest = p.strip_prefix(root).ok()?;
        Some(rest.to_str()?.to_string())
    }

    /// A store path as the user would name it.
    pub fn show(&self, path: &Path) -> String {
        let below = path
            .as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/');
        format!("{}/{below}", self.shown)
    }

    /// The local file of a store path, for a local root.
    pub(crate) fn local_file(&self, path: &Path) -> Option<PathBuf> {
        self.local
            .as_ref()
            .map(|d| d.join(path.as_ref().trim_start_matches('/')))
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// Server-side COPY formats.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FileFormat {
    Parquet,
    Delta,
}

/// What a finished Parquet file holds.
#[derive(Debug, Clone)]
pub(crate) struct WrittenFile {
    pub path: Path,
    pub rows: u64,
    pub bytes: u64,
}

fn store_error(what: &str, e: object_store::Error) -> QueryError {
    QueryError::Io(format!("{what}: {e}"))
}

/// Parquet writer settings of every export: Snappy, DuckDB's row groups.
pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Write `batches` as one Parquet file at `path`. The file appears whole or
/// not at all: the upload is a multipart one (a temporary file renamed at
/// the end on a local store) and is aborted on any error.
pub(crate) async fn write_parquet<S>(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    schema: SchemaRef,
    mut batches: S,
) -> Result<WrittenFile>
where
    S: futures::Stream<Item = Result<RecordBatch>> + Unpin,
{
    let upload = store
        .put_multipart(path)
        .await
        .map_err(|e| store_error("cannot start writing the export", e))?;
    let mut upload = WriteMultipart::new(upload);
    let result: Result<(u64, ArrowWriter<Vec<u8>>)> = async {
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()))
            .map_err(|e| QueryError::Execution(format!("Parquet: {e}")))?;
        let mut rows = 0u64;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer
                .write(&batch)
                .map_err(|e| QueryError::Execution(format!("Parquet: {e}")))?;
            if writer.inner().len() >= UPLOAD_CHUNK {
                let bytes = std::mem::take(writer.inner_mut());
                upload
                    .wait_for_capacity(4)
                    .await
                    .map_err(|e| store_error("writing the export", e))?;
                upload.put(Bytes::from(bytes));
            }
        }
        Ok((rows, writer))
    }
    .await;
    let (rows, writer) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = upload.abort().await;
            return Err(e);
        }
    };
    let tail = match writer.into_inner() {
        Ok(t) => t,
        Err(e) => {
            let _ = upload.abort().await;
            return Err(QueryError::Execution(format!("Parquet: {e}")));
        }
    };
    upload.put(Bytes::from(tail));
    upload
        .finish()
        .await
        .map_err(|e| store_error("cannot finish writing the export", e))?;
    let bytes = store
        .head(path)
        .await
        .map_err(|e| store_error("the export was written but cannot be read back", e))?
        .size;
    Ok(WrittenFile {
        path: path.clone(),
        rows,
        bytes,
    })
}

/// A query's result stream with errors as [`QueryError`]s.
pub(crate) fn query_stream(
    s: SendableRecordBatchStream,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Unpin {
    s.map(|b| b.map_err(QueryError::from))
}

fn format_of(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
    target: &str,
) -> Result<FileFormat> {
    let mut format = None;
    for o in options {
        match o {
            CopyOption::Format(f) => format = Some(f.value.to_ascii_lowercase()),
            other => {
                return Err(QueryError::Unsupported(format!(
                    "COPY option {other} does not apply to a server-side export: it writes Parquet (FORMAT parquet) \
                     or a Delta table (FORMAT delta), with no other options"
                )))
            }
        }
    }
    if let Some(o) = legacy.first() {
        return Err(QueryError::Unsupported(format!(
            "COPY option {o} does not apply to a server-side export: it writes FORMAT parquet or FORMAT delta"
        )));
    }
    let format = format.or_else(|| {
        target
            .to_ascii_lowercase()
            .ends_with(".parquet")
            .then(|| "parquet".to_string())
    });
    match format.as_deref() {
        Some("parquet") => Ok(FileFormat::Parquet),
        Some("delta") => Ok(FileFormat::Delta),
        Some(f @ ("text" | "csv" | "binary")) => Err(QueryError::Unsupported(format!(
            "COPY … TO a server file writes FORMAT parquet or FORMAT delta, not {f}: write {f} on the \
             client with psql's \\copy … TO 'file' (or COPY … TO STDOUT)"
        ))),
        Some(f) => Err(QueryError::Invalid(format!(
            "COPY format \"{f}\" not recognized: a server-side export is FORMAT parquet or FORMAT delta"
        ))),
        None => Err(QueryError::Invalid(
            "COPY … TO a server file needs a format: add (FORMAT parquet) or (FORMAT delta); text and \
             csv are written on the client with psql's \\copy"
                .into(),
        )),
    }
}

impl Session {
    /// `COPY … TO '<file>'` (and the refused `COPY … FROM '<file>'`, `COPY
    /// … TO PROGRAM`) through the session: the one place every front end
    /// reaches.
    pub(crate) async fn copy_file(
        &mut self,
        stmt: &Statement,
        rw: &crate::temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Err(QueryError::Internal("copy_file: not a COPY".into()));
        };
        let file = match target {
            CopyTarget::File { filename } => filename.clone(),
            CopyTarget::Program { .. } => {
                return Err(QueryError::Privilege(
                    "COPY … PROGRAM is not supported: Strata never runs programs for clients".into(),
                ))
            }
            _ => {
                return Err(QueryError::Unsupported(
                    "COPY … TO STDOUT / FROM STDIN is served by the Postgres wire protocol (psql, drivers)".into(),
                ))
            }
        };
        if !to {
            return Err(QueryError::Unsupported(
                "COPY … FROM a server file is not supported: load from the client with psql's \\copy … FROM \
                 (COPY … FROM STDIN), Flight SQL ingest, or `strata import`"
                    .into(),
            ));
        }
        let format = format_of(options, legacy_options, &file)?;
        let db = self.db.clone();
        let root = db.export_root().ok_or_else(|| {
            QueryError::Privilege(
                "server-side COPY … TO a file is off on this server: start it with --export-root DIR (or an \
                 s3:// URL) to allow exports there, or write the file on the client with psql's \
                 \\copy (…) TO 'file' (FORMAT parquet works there too)"
                    .into(),
            )
        })?;
        let path = root.resolve(&file)?;
        match format {
            FileFormat::Parquet => {
                let out = match source {
                    CopySource::Query(q) => {
                        Box::pin(self.query(Statement::Query(q.clone()), rw, params)).await?
                    }
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let table = table_name.to_string();
                        let cols = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let sql = format!("SELECT {cols} FROM {table}");
                        let mut outs = Box::pin(self.execute(&sql, &[])).await?;
                        outs.pop().ok_or_else(|| {
                            QueryError::Internal("COPY: the table's query gave no result".into())
                        })?
                    }
                };
                let Output::Rows { schema, stream } = out else {
                    return Err(QueryError::Unsupported(
                        "COPY (…) TO needs a query that returns rows".into(),
                    ));
                };
                let written = write_parquet(root.store(), &path, schema, query_stream(stream))
                    .await
                    .map_err(|e| match e {
                        QueryError::Io(m) => {
                            QueryError::Io(format!("COPY … TO {}: {m}", root.show(&path)))
                        }
                        e => e,
                    })?;
                Ok(Output::Command {
                    tag: format!("COPY {}", written.rows),
                    rows: written.rows,
                })
            }
            FileFormat::Delta => {
                let CopySource::Table {
                    table_name,
                    columns,
                } = source
                else {
                    return Err(QueryError::Unsupported(
                        "FORMAT delta exports a table, kept up to date from its change feed: write \
                         COPY t TO 'dir' (FORMAT delta). To export a query's rows, use FORMAT parquet"
                            .into(),
                    ));
                };
                if !columns.is_empty() {
                    return Err(QueryError::Unsupported(
                        "FORMAT delta exports every column of the table: drop the column list"
                            .into(),
                    ));
                }
                let table = match table_name.0.last().and_then(|p| p.as_ident()) {
                    Some(i) => crate::ident::normalize(i),
                    None => {
                        return Err(QueryError::Syntax(format!(
                            "COPY: unsupported table name {table_name}"
                        )))
                    }
                };
                let rows = delta::export(self, &table, root, &path).await?;
                Ok(Output::Command {
                    tag: format!("COPY {rows}"),
                    rows,
                })
            }
        }
    }
}
