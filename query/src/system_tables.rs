//! Strata's own system tables, for operators: `strata_cache` (the disk cache
//! of a remote store), `strata_requests` (requests sent to the object store,
//! by kind) and `strata_segments` (every segment per table and tier). Found unqualified from `public`, like `pg_class`, and
//! rebuilt from the live counters each time a statement names them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;
use strata_storage::Engine;

/// Names of the system tables this module serves.
pub const TABLES: &[&str] = &["strata_cache", "strata_requests", "strata_segments"];

/// The system table called `name`, or `None` if there is none.
pub(crate) fn provider(
    name: &str,
    engine: &Arc<Engine>,
) -> DfResult<Option<Arc<dyn TableProvider>>> {
    match name {
        "strata_cache" => Ok(Some(strata_cache(engine)?)),
        "strata_segments" => Ok(Some(strata_segments(engine)?)),
        "strata_requests" => Ok(Some(strata_requests(engine)?)),
        _ => Ok(None),
    }
}

fn strata_cache_schema() -> SchemaRef {
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("dir", DataType::Utf8, false),
        i("limit_bytes"),
        i("used_bytes"),
        i("files"),
        i("pinned"),
        i("hits"),
        i("misses"),
        i("evictions"),
        i("evicted_bytes"),
        i("fetched_bytes"),
        i("uncached_reads"),
        // NULL before the first read.
        Field::new("hit_rate", DataType::Float64, true),
    ]))
}

/// One row when the store has a disk cache; no rows for a local directory
/// or memory store (nothing is cached: files are read in place).
fn strata_cache(engine: &Arc<Engine>) -> DfResult<Arc<dyn TableProvider>> {
    let schema = strata_cache_schema();
    let stats: Vec<_> = engine.storage().cache_stats().into_iter().collect();
    let int = |f: fn(&strata_storage::CacheStats) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            stats
                .iter()
                .map(|s| i64::try_from(f(s)).unwrap_or(i64::MAX)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            stats.iter().map(|s| s.dir.as_str()),
        )),
        int(|s| s.limit_bytes),
        int(|s| s.used_bytes),
        int(|s| s.files),
        int(|s| s.pinned),
        int(|s| s.hits),
        int(|s| s.misses),
        int(|s| s.evictions),
        int(|s| s.evicted_bytes),
        int(|s| s.fetched_bytes),
        int(|s| s.uncached_reads),
        Arc::new(Float64Array::from_iter(stats.iter().map(|s| s.hit_rate()))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per segment: table, tier (`l0`, `current`, `bounded`, `history`),
/// level, rows, dead rows, bytes, batches, its system-time bounds, whether its
/// file is open (mapped) now, and its object path.
fn strata_segments(engine: &Arc<Engine>) -> DfResult<Arc<dyn TableProvider>> {
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        i("level"),
        i("rows"),
        i("dead_rows"),
        i("bytes"),
        i("batches"),
        Field::new("open", DataType::Boolean, false),
        Field::new("path", DataType::Utf8, false),
    ]));
    let segs = engine.segments_info();
    let int = |f: fn(&strata_storage::SegmentInfo) -> u64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            segs.iter().map(|s| i64::try_from(f(s)).unwrap_or(i64::MAX)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            segs.iter().map(|s| s.table.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(segs.iter().map(|s| s.tier))),
        int(|s| s.level as u64),
        int(|s| s.rows),
        int(|s| s.dead_rows),
        int(|s| s.bytes),
        int(|s| s.batches as u64),
        Arc::new(datafusion::arrow::array::BooleanArray::from(
            segs.iter().map(|s| s.open).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter_values(
            segs.iter().map(|s| s.path.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// One row per request kind (GET, HEAD, PUT, LIST, DELETE, COPY): the
/// requests this node sent to its object store since it started, what S3,
/// GCS and Azure bill by. Reads of a local directory's segments are memory
/// maps, not requests; reads served by the disk cache are not requests.
fn strata_requests(engine: &Arc<Engine>) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("requests", DataType::Int64, false),
    ]));
    let counts = engine.storage().request_counts();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            counts.iter().map(|(k, _)| *k),
        )),
        Arc::new(Int64Array::from_iter_values(
            counts
                .iter()
                .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX)),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
