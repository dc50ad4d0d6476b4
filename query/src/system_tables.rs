//! Strata's own system tables, for operators: `strata_cache` (the disk cache
//! of a remote store). Found unqualified from `public`, like `pg_class`, and
//! rebuilt from the live counters each time a statement names them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;
use strata_storage::Engine;

/// Names of the system tables this module serves.
pub const TABLES: &[&str] = &["strata_cache"];

/// The system table called `name`, or `None` if there is none.
pub(crate) fn provider(
    name: &str,
    engine: &Arc<Engine>,
) -> DfResult<Option<Arc<dyn TableProvider>>> {
    match name {
        "strata_cache" => Ok(Some(strata_cache(engine)?)),
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
