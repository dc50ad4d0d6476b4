//! Delta Lake exports: `COPY t TO 'dir' (FORMAT delta)`.
//!
//! The Delta table holds what Strata knew at one system time about the
//! table's whole valid-time history: the rows of `SELECT *, _valid_from,
//! _valid_to, _system_from FROM t FOR SYSTEM_TIME AS OF s FOR ALL
//! VALID_TIME`. The first COPY writes version 0 at the node's latest system
//! time; each later COPY is a refresh: it reads the table's change feed after
//! the position the last version recorded, and writes one new version at the
//! new system time that replaces the rows of every `_id` that changed (the
//! files holding them are rewritten without them, and their new versions are
//! added). So Delta version v read by any Delta reader is the Strata table as
//! of the system time in version v's commitInfo, and Delta time travel lines
//! up with Strata's.
//!
//! The log is plain JSON commits (protocol reader version 1, writer version
//! 2, no checkpoints, no deletion vectors). A refresh after an ERASE also
//! deletes every older file of the export that held the erased rows, so no
//! version can return them again; versions that read those files then can no
//! longer be loaded, as after a Delta VACUUM. When the feed cannot be read
//! from the recorded position (the log records were collected, or the table
//! gained a column) the refresh rewrites the whole table in the new version.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::{json, Value};
use strata_storage::feed::{position, FeedStart, OP, POSITION};
use strata_storage::schema::ID;
use strata_storage::time::fmt_micros;
use strata_storage::ErrorKind;

use super::{query_stream, write_parquet, ExportRoot, WrittenFile};
use crate::error::{QueryError, Result};
use crate::session::{Output, Session};

/// Ids per `_id IN (…)` query when a refresh reads the changed rows.
const IDS_PER_QUERY: usize = 1000;

/// An `_id`, for sets of changed ids and file statistics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum IdKey {
    Int(i64),
    Str(String),
}

impl IdKey {
    fn json(&self) -> Value {
        match self {
            IdKey::Int(i) => json!(i),
            IdKey::Str(s) => json!(s),
        }
    }

    fn from_json(v: &Value) -> Option<IdKey> {
        match v {
            Value::Number(n) => n.as_i64().map(IdKey::Int),
            Value::String(s) => Some(IdKey::Str(s.clone())),
            _ => None,
        }
    }

    fn sql(&self) -> String {
        match self {
            IdKey::Int(i) => i.to_string(),
            IdKey::Str(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }
}

/// The `_id` values of an array, or `None` for an id type without keys here
/// (then a refresh rewrites the whole table).
fn id_keys(a: &ArrayRef) -> Option<Vec<Option<IdKey>>> {
    match a.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let c = cast(a, &DataType::Int64).ok()?;
            let c = c.as_any().downcast_ref::<Int64Array>()?;
            Some(c.iter().map(|v| v.map(IdKey::Int)).collect())
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let c = cast(a, &DataType::Utf8).ok()?;
            let c = c.as_any().downcast_ref::<StringArray>()?;
            Some(
                c.iter()
                    .map(|v| v.map(|s| IdKey::Str(s.to_string())))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// A file the current version reads.
#[derive(Debug, Clone)]
struct Active {
    size: u64,
    /// `_id` range from the file's statistics.
    range: Option<(IdKey, IdKey)>,
}

/// What the `_delta_log` holds.
#[derive(Debug, Default)]
struct Log {
    /// The latest version; `None`: no table yet.
    version: Option<u64>,
    active: BTreeMap<String, Active>,
    /// Every data file any version added (for purging erased rows).
    ever: Vec<String>,
    schema_string: Option<String>,
    table_id: Option<String>,
    /// The latest commit's Strata table and position.
    strata: Option<(String, i64)>,
}

fn log_dir(base: &Path) -> Path {
    base.clone().join("_delta_log")
}

fn commit_path(base: &Path, version: u64) -> Path {
    log_dir(base).join(format!("{version:020}.json"))
}

fn io(what: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::Io(format!("{what}: {e}"))
}

async fn read_log(store: &Arc<dyn ObjectStore>, root: &ExportRoot, base: &Path) -> Result<Log> {
    let dir = log_dir(base);
    let mut versions = Vec::new();
    let mut listing = store.list(Some(&dir));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| io(&format!("reading {}", root.show(&dir)), e))?;
        let Some(name) = meta.location.filename() else {
            continue;
        };
        if let Some(v) = name
            .strip_suffix(".json")
            .filter(|v| v.len() == 20 && v.bytes().all(|b| b.is_ascii_digit()))
        {
            versions.push(v.parse::<u64>().expect("20 digits"));
        } else if name.contains("checkpoint") {
            return Err(QueryError::Invalid(format!(
                "{} has Delta checkpoints, which Strata's exports never write: another writer changed this \
                 table. Export to a new directory",
                root.show(&dir)
            )));
        }
    }
    versions.sort_unstable();
    let mut log = Log::default();
    for (i, v) in versions.iter().enumerate() {
        if *v != i as u64 {
            return Err(QueryError::Invalid(format!(
                "{}: Delta version {i} is missing; the log is not one Strata wrote. Export to a new directory",
                root.show(&dir)
            )));
        }
        let path = commit_path(base, *v);
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| io(&format!("reading {}", root.show(&path)), e))?
            .bytes()
            .await
            .map_err(|e| io(&format!("reading {}", root.show(&path)), e))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| QueryError::Invalid(format!("{} is not UTF-8 JSON", root.show(&path))))?;
        log.strata = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| {
                QueryError::Invalid(format!("{}: not a Delta commit: {e}", root.show(&path)))
            })?;
            if let Some(add) = action.get("add") {
                let p = add["path"].as_str().unwrap_or_default().to_string();
                let range = add["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .and_then(|s| {
                        Some((
                            IdKey::from_json(s.get("minValues")?.get(ID)?)?,
                            IdKey::from_json(s.get("maxValues")?.get(ID)?)?,
                        ))
                    });
                log.ever.push(p.clone());
                log.active.insert(
                    p,
                    Active {
                        size: add["size"].as_u64().unwrap_or(0),
                        range,
                    },
                );
            } else if let Some(rm) = action.get("remove") {
                log.active.remove(rm["path"].as_str().unwrap_or_default());
            } else if let Some(md) = action.get("metaData") {
                log.schema_string = md["schemaString"].as_str().map(str::to_string);
                log.table_id = md["id"].as_str().map(str::to_string);
            } else if let Some(ci) = action.get("commitInfo") {
                if let (Some(t), Some(p)) = (
                    ci["strata"]["table"].as_str(),
                    ci["strata"]["position"].as_i64(),
                ) {
                    log.strata = Some((t.to_string(), p));
                }
            }
        }
        log.version = Some(*v);
    }
    Ok(log)
}

/// A column's Delta type and the Arrow type its values are written as.
fn delta_type(dt: &DataType) -> (Value, DataType) {
    let simple = |name: &str, t: DataType| (json!(name), t);
    match dt {
        DataType::Boolean => simple("boolean", DataType::Boolean),
        DataType::Int8 => simple("byte", DataType::Int8),
        DataType::Int16 | DataType::UInt8 => simple("short", DataType::Int16),
        DataType::Int32 | DataType::UInt16 => simple("integer", DataType::Int32),
        DataType::Int64 | DataType::UInt32 => simple("long", DataType::Int64),
        DataType::UInt64 => simple("decimal(20,0)", DataType::Decimal128(20, 0)),
        DataType::Float16 | DataType::Float32 => simple("float", DataType::Float32),
        DataType::Float64 => simple("double", DataType::Float64),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => simple("binary", DataType::Binary),
        DataType::Date32 | DataType::Date64 => simple("date", DataType::Date32),
        // Delta's `timestamp` is an instant (UTC); a timestamp without a
        // zone is written as that time in UTC (timestamp_ntz needs reader
        // version 3).
        DataType::Timestamp(_, _) => simple(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => (
            json!(format!("decimal({p},{s})")),
            DataType::Decimal128(*p, *s),
        ),
        DataType::Decimal256(p, s) if *p <= 38 => (
            json!(format!("decimal({p},{s})")),
            DataType::Decimal128(*p, *s),
        ),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => {
            let (t, a) = delta_type(f.data_type());
            (
                json!({"type": "array", "elementType": t, "containsNull": true}),
                DataType::List(Arc::new(Field::new("element", a, true))),
            )
        }
        DataType::Struct(fields) => {
            let (t, a) = delta_struct(fields);
            (t, DataType::Struct(a))
        }
        DataType::Map(entries, sorted) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                let (kt, ka) = delta_type(kv[0].data_type());
                let (vt, va) = delta_type(kv[1].data_type());
                (
                    json!({"type": "map", "keyType": kt, "valueType": vt, "valueContainsNull": true}),
                    DataType::Map(
                        Arc::new(Field::new(
                            "key_value",
                            DataType::Struct(Fields::from(vec![
                                Field::new("key", ka, false),
                                Field::new("value", va, true),
                            ])),
                            false,
                        )),
                        *sorted,
                    ),
                )
            }
            _ => simple("string", DataType::Utf8),
        },
        DataType::Dictionary(_, v) => delta_type(v),
        // Strings, and what Delta has no type for (times of day,
        // intervals, …) as their text.
        _ => simple("string", DataType::Utf8),
    }
}

fn delta_struct(fields: &Fields) -> (Value, Fields) {
    let mut out = Vec::new();
    let mut arrow = Vec::new();
    for f in fields {
        let (t, a) = delta_type(f.data_type());
        out.push(json!({"name": f.name(), "type": t, "nullable": true, "metadata": {}}));
        arrow.push(Field::new(f.name(), a, true));
    }
    (
        json!({"type": "struct", "fields": out}),
        Fields::from(arrow),
    )
}

/// The Delta schema string of a result and the Arrow schema its files use.
fn delta_schema(schema: &SchemaRef) -> Result<(String, SchemaRef)> {
    for f in schema.fields() {
        if let Some(c) = f.name().chars().find(|c| " ,;{}()\n\t=".contains(*c)) {
            return Err(QueryError::Unsupported(format!(
                "column \"{}\" cannot be a Delta column: names with {c:?} need Delta column mapping \
                 (reader version 2), which Strata's exports do not write. Rename the column, or export a \
                 query with FORMAT parquet",
                f.name()
            )));
        }
    }
    let (t, fields) = delta_struct(schema.fields());
    Ok((t.to_string(), Arc::new(Schema::new(fields))))
}

/// A batch in the export's Arrow types.
fn conform(b: &RecordBatch, to: &SchemaRef) -> Result<RecordBatch> {
    let mut cols = Vec::with_capacity(b.num_columns());
    for (c, f) in b.columns().iter().zip(to.fields()) {
        cols.push(if c.data_type() == f.data_type() {
            c.clone()
        } else {
            cast(c, f.data_type()).map_err(|e| {
                QueryError::Execution(format!(
                    "column \"{}\" cannot be written as Delta type {}: {e}",
                    f.name(),
                    f.data_type()
                ))
            })?
        });
    }
    Ok(RecordBatch::try_new(to.clone(), cols)?)
}

/// A new data file's `add` action (statistics: row count and `_id` range).
fn add_action(base: &Path, f: &WrittenFile, ids: Option<(IdKey, IdKey)>, at_ms: i64) -> Value {
    let mut stats = json!({"numRecords": f.rows});
    if let Some((lo, hi)) = ids {
        stats["minValues"] = json!({ ID: lo.json() });
        stats["maxValues"] = json!({ ID: hi.json() });
        stats["nullCount"] = json!({ ID: 0 });
    }
    json!({"add": {
        "path": relative(base, &f.path),
        "partitionValues": {},
        "size": f.bytes,
        "modificationTime": at_ms,
        "dataChange": true,
        "stats": stats.to_string(),
    }})
}

fn relative(base: &Path, p: &Path) -> String {
    p.as_ref()
        .strip_prefix(base.as_ref())
        .unwrap_or(p.as_ref())
        .trim_start_matches('/')
        .to_string()
}

fn data_path(base: &Path, version: u64, i: usize) -> Path {
    base.clone().join(format!(
        "part-{version:05}-{i:04}-{}.snappy.parquet",
        uuid::Uuid::new_v4()
    ))
}

/// The `_id` range of batches, when their ids have keys.
fn id_range(batches: &[RecordBatch]) -> Option<(IdKey, IdKey)> {
    let mut range: Option<(IdKey, IdKey)> = None;
    for b in batches {
        let col = b.column_by_name(ID)?;
        for k in id_keys(col)? {
            let k = k?;
            range = Some(match range {
                None => (k.clone(), k),
                Some((lo, hi)) => (lo.min(k.clone()), hi.max(k)),
            });
        }
    }
    range
}

/// Write batches as one data file of version `version`.
async fn write_file(
    root: &ExportRoot,
    base: &Path,
    version: u64,
    i: usize,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(WrittenFile, Option<(IdKey, IdKey)>)> {
    let range = id_range(&batches);
    let path = data_path(base, version, i);
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    let f = write_parquet(root.store(), &path, schema.clone(), stream).await?;
    Ok((f, range))
}

/// Read a data file of the export (only `_id` when `ids_only`).
async fn read_file(
    root: &ExportRoot,
    path: &Path,
    ids_only: bool,
) -> Result<Option<Vec<RecordBatch>>> {
    let bytes = match root.store().get(path).await {
        Ok(g) => g
            .bytes()
            .await
            .map_err(|e| io(&format!("reading {}", root.show(path)), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(io(&format!("reading {}", root.show(path)), e)),
    };
    let bad = |e: &dyn std::fmt::Display| {
        QueryError::Invalid(format!(
            "{} is not a readable Parquet file: {e}",
            root.show(path)
        ))
    };
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    if ids_only {
        let idx = builder
            .schema()
            .index_of(ID)
            .map_err(|_| bad(&"it has no _id column"))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| bad(&e))?;
    let mut out = Vec::new();
    for b in reader {
        out.push(b.map_err(|e| bad(&e))?);
    }
    Ok(Some(out))
}

/// The changes of a refresh: every `_id` the feed touched (and those erased).
struct Changes {
    ids: HashSet<IdKey>,
    erased: HashSet<IdKey>,
}

/// Read `table`'s feed after `after` up to `upto`; `None` when the export
/// must be rewritten whole instead.
async fn read_changes(
    session: &Session,
    table: &str,
    after: i64,
    upto: i64,
) -> Result<Option<Changes>> {
    let engine = session.db.engine().clone();
    let fallback =
        |e: &strata_storage::Error| matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Invalid);
    let mut feed = match engine.change_feed(table, FeedStart::After(after)).await {
        Ok(f) => f,
        Err(e) if fallback(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut changes = Changes {
        ids: HashSet::new(),
        erased: HashSet::new(),
    };
    loop {
        let b = match feed.try_next().await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) if fallback(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let pos = b
            .column_by_name(POSITION)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
        let ops = b
            .column_by_name(OP)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        let (Some(pos), Some(ops), Some(ids)) = (pos, ops, b.column_by_name(ID).and_then(id_keys))
        else {
            return Ok(None);
        };
        for i in 0..b.num_rows() {
            if pos.value(i) > upto {
                return Ok(Some(changes));
            }
            let Some(id) = ids[i].clone() else { continue };
            if ops.value(i) == "erase" {
                changes.erased.insert(id.clone());
            }
            changes.ids.insert(id);
        }
    }
    Ok(Some(changes))
}

/// Run a query and take its rows.
async fn rows_of(
    session: &mut Session,
    sql: &str,
) -> Result<(SchemaRef, datafusion::execution::SendableRecordBatchStream)> {
    match Box::pin(session.execute(sql, &[])).await?.pop() {
        Some(Output::Rows { schema, stream }) => Ok((schema, stream)),
        _ => Err(QueryError::Internal(format!(
            "the export query returned no rows: {sql}"
        ))),
    }
}

/// `COPY table TO 'dir' (FORMAT delta)`: write or refresh the export at
/// `base`. Returns the rows written in the new version's files.
pub(crate) async fn export(
    session: &mut Session,
    table: &str,
    root: &ExportRoot,
    base: &Path,
) -> Result<u64> {
    let engine = session.db.engine().clone();
    if engine.table_output_schema(table).is_none() {
        return Err(QueryError::UndefinedTable(format!(
            "table \"{table}\" does not exist: FORMAT delta exports an existing table"
        )));
    }
    if let Some(cols) = session.masking.as_ref().and_then(|m| m.of(table)) {
        let cols: Vec<&str> = cols.keys().map(String::as_str).collect();
        return Err(QueryError::Privilege(format!(
            "permission denied: table \"{table}\" has columns masked for this role ({}), and a Delta export \
             copies stored rows as they are. Export a query instead: COPY (SELECT * FROM {table}) TO 'file.parquet'",
            cols.join(", ")
        )));
    }
    let store = root.store().clone();
    let log = read_log(&store, root, base).await?;
    let last = match (&log.version, &log.strata) {
        (None, _) => None,
        (Some(_), Some((t, p))) if t == table => Some(*p),
        (Some(_), Some((t, _))) => {
            return Err(QueryError::Invalid(format!(
                "{} is the Delta export of table \"{t}\", not \"{table}\": export each table to its own directory",
                root.show(base)
            )))
        }
        (Some(v), None) => {
            return Err(QueryError::Invalid(format!(
                "{}: Delta version {v} was not written by Strata (its commitInfo has no Strata position), so \
                 Strata cannot tell which changes it holds. Export to a new directory",
                root.show(base)
            )))
        }
    };
    let (seq, at) = engine.applied_point();
    let upto = position(seq + 1, 0) - 1;
    if last.is_some_and(|l| l >= upto) {
        return Ok(0);
    }
    let changes = match last {
        Some(l) => read_changes(session, table, l, upto).await?,
        None => None,
    };
    if changes.as_ref().is_some_and(|c| c.ids.is_empty()) {
        // Only other tables changed: no new version.
        return Ok(0);
    }
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let snapshot = format!(
        "SELECT *, _valid_from, _valid_to, _system_from FROM {quoted} \
         FOR SYSTEM_TIME AS OF TIMESTAMP '{}' FOR ALL VALID_TIME",
        fmt_micros(at)
    );
    let version = log.version.map_or(0, |v| v + 1);
    let at_ms = at.div_euclid(1000);
    // The shape of the rows now; a change of it rewrites the table.
    let (schema, probe) = rows_of(session, &format!("{snapshot} LIMIT 0")).await?;
    drop(probe);
    let (schema_string, file_schema) = delta_schema(&schema)?;
    let changes = changes.filter(|_| log.schema_string.as_deref() == Some(schema_string.as_str()));
    let mut adds: Vec<Value> = Vec::new();
    let mut removes: Vec<String> = Vec::new();
    let mut written: Vec<Path> = Vec::new();
    let mut rows = 0u64;
    let result: Result<()> = async {
        match &changes {
            None => {
                // The whole table.
                let (_, stream) = rows_of(session, &snapshot).await?;
                let fs = file_schema.clone();
                let mut range: Option<(IdKey, IdKey)> = None;
                let mut keyed = true;
                let conformed = query_stream(stream).map(|b| {
                    let b = conform(&b?, &fs)?;
                    match (keyed, id_range(std::slice::from_ref(&b))) {
                        (true, Some((lo, hi))) => {
                            range = Some(match range.take() {
                                None => (lo, hi),
                                Some((a, z)) => (a.min(lo), z.max(hi)),
                            })
                        }
                        (true, None) if b.num_rows() > 0 => keyed = false,
                        _ => {}
                    }
                    Ok(b)
                });
                let path = data_path(base, version, 0);
                written.push(path.clone());
                let f = write_parquet(&store, &path, file_schema.clone(), Box::pin(conformed)).await?;
                let range = if keyed { range } else { None };
                rows += f.rows;
                adds.push(add_action(base, &f, range, at_ms));
                removes.extend(log.active.keys().cloned());
            }
            Some(c) => {
                // The new versions of the changed ids' rows.
                let mut ids: Vec<&IdKey> = c.ids.iter().collect();
                ids.sort();
                let mut fresh = Vec::new();
                for chunk in ids.chunks(IDS_PER_QUERY) {
                    let list = chunk.iter().map(|k| k.sql()).collect::<Vec<_>>().join(", ");
                    let (_, mut stream) =
                        rows_of(session, &format!("{snapshot} WHERE _id IN ({list})")).await?;
                    while let Some(b) = stream.next().await {
                        let b = conform(&b?, &file_schema)?;
                        if b.num_rows() > 0 {
                            fresh.push(b);
                        }
                    }
                }
                // Files holding an old row of a changed id: rewritten without them.
                let mut i = 1;
                for (p, a) in &log.active {
                    if let Some((lo, hi)) = &a.range {
                        if !c.ids.iter().any(|k| k >= lo && k <= hi) {
                            continue;
                        }
                    }
                    let path = Path::from(format!("{}/{p}", base.as_ref()).trim_start_matches('/'));
                    let Some(batches) = read_file(root, &path, false).await? else {
                        return Err(QueryError::Invalid(format!(
                            "{} is missing, but the Delta log's latest version reads it: the export was \
                             changed outside Strata. Export to a new directory",
                            root.show(&path)
                        )));
                    };
                    let mut kept = Vec::new();
                    let mut dropped = 0usize;
                    for b in batches {
                        let ids = b.column_by_name(ID).and_then(id_keys).ok_or_else(|| {
                            QueryError::Invalid(format!("{} has no usable _id column", root.show(&path)))
                        })?;
                        let keep: BooleanArray = ids
                            .iter()
                            .map(|k| Some(!k.as_ref().is_some_and(|k| c.ids.contains(k))))
                            .collect();
                        dropped += keep.false_count();
                        let b = conform(&filter_record_batch(&b, &keep)?, &file_schema)?;
                        if b.num_rows() > 0 {
                            kept.push(b);
                        }
                    }
                    if dropped == 0 {
                        continue;
                    }
                    removes.push(p.clone());
                    if !kept.is_empty() {
                        let (f, range) = write_file(root, base, version, i, &file_schema, kept).await?;
                        i += 1;
                        written.push(f.path.clone());
                        rows += f.rows;
                        adds.push(add_action(base, &f, range, at_ms));
                    }
                }
                if !fresh.is_empty() {
                    let (f, range) = write_file(root, base, version, 0, &file_schema, fresh).await?;
                    written.push(f.path.clone());
                    rows += f.rows;
                    adds.push(add_action(base, &f, range, at_ms));
                }
            }
        }
        Ok(())
    }
    .await;
    let delete_written = |store: Arc<dyn ObjectStore>, written: Vec<Path>| async move {
        for p in written {
            let _ = store.delete(&p).await;
        }
    };
    if let Err(e) = result {
        delete_written(store.clone(), written).await;
        return Err(e);
    }
    // The commit.
    let full = changes.is_none();
    let mut lines: Vec<Value> = vec![json!({"commitInfo": {
        "timestamp": at_ms,
        "operation": if full { "WRITE" } else { "MERGE" },
        "operationParameters": if full {
            json!({"mode": "Overwrite", "partitionBy": "[]"})
        } else {
            json!({"predicate": "_id IN (the ids changed since the last version)"})
        },
        "engineInfo": concat!("Strata/", env!("CARGO_PKG_VERSION")),
        "isBlindAppend": false,
        "strata": {
            "table": table,
            "position": upto,
            "systemTime": fmt_micros(at),
            "changedIds": changes.as_ref().map_or(0, |c| c.ids.len()),
            "erasedIds": changes.as_ref().map_or(0, |c| c.erased.len()),
        },
    }})];
    if version == 0 {
        lines.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
    }
    if version == 0 || log.schema_string.as_deref() != Some(schema_string.as_str()) {
        lines.push(json!({"metaData": {
            "id": log.table_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            "name": table,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string,
            "partitionColumns": [],
            "configuration": {},
            "createdTime": at_ms,
        }}));
    }
    for p in &removes {
        let size = log.active.get(p).map_or(0, |a| a.size);
        lines.push(json!({"remove": {
            "path": p,
            "deletionTimestamp": at_ms,
            "dataChange": true,
            "extendedFileMetadata": true,
            "partitionValues": {},
            "size": size,
        }}));
    }
    lines.extend(adds);
    let mut text = String::new();
    for l in &lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    let commit = commit_path(base, version);
    let put = store
        .put_opts(
            &commit,
            PutPayload::from(Bytes::from(text)),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match put {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            delete_written(store.clone(), written).await;
            return Err(QueryError::Storage(strata_storage::Error::Conflict(format!(
                "another export wrote Delta version {version} of {} at the same time; this one wrote nothing. \
                 Run the COPY again",
                root.show(base)
            ))));
        }
        Err(e) => {
            delete_written(store.clone(), written).await;
            return Err(io(&format!("writing {}", root.show(&commit)), e));
        }
    }
    // A local commit file's time is the version's time for readers that
    // travel by timestamp.
    if let Some(file) = root.local_file(&commit) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(at.max(0) as u64);
        if let Ok(f) = std::fs::File::options().write(true).open(&file) {
            let _ = f.set_modified(t);
        }
    }
    if let Some(c) = &changes {
        if !c.erased.is_empty() {
            purge_erased(root, base, &log.ever, &c.erased).await?;
        }
    }
    Ok(rows)
}

/// Delete every earlier data file that holds a row of an erased `_id`.
async fn purge_erased(
    root: &ExportRoot,
    base: &Path,
    files: &[String],
    erased: &HashSet<IdKey>,
) -> Result<()> {
    for p in files {
        let path = Path::from(format!("{}/{p}", base.as_ref()).trim_start_matches('/'));
        let Some(batches) = read_file(root, &path, true).await? else {
            continue;
        };
        let holds = batches.iter().any(|b| {
            b.column_by_name(ID)
                .and_then(id_keys)
                .is_some_and(|ids| ids.iter().flatten().any(|k| erased.contains(k)))
        });
        if holds {
            root.store().delete(&path).await.map_err(|e| {
                io(
                    &format!("deleting {} (it holds erased rows)", root.show(&path)),
                    e,
                )
            })?;
        }
    }
    Ok(())
}
