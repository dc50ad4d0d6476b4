//! Strata: a bitemporal, immutable HTAP database on object storage.
//!
//! `strata::Db` is the embedded engine — the same one `strata serve` runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strata::Error> {
//! let db = strata::Db::open(strata::Config::memory()).await?;
//! db.sql("INSERT INTO people (_id, name) VALUES (1, 'ada')").await?;
//! let batches = db.sql("SELECT name, _valid_from FROM people").await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod flight;
pub mod http;
pub mod kafka;
pub mod lineage;
mod output;
pub mod pgwire;
pub mod serve;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use strata_query::{Database, Output};

pub use config::Config;
pub use output::{format_batches, OutputFormat};
pub use strata_query::{BulkLoaded, QueryError as Error, Session};
pub use strata_storage::{CompactionConfig, Coordinate, GcConfig, StoreLocation, TimeSelector};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often a follower ([`Db::follow`]) looks for a manifest another node
/// published (a flush or a compaction) and adopts it: well inside the
/// collection grace period.
pub const MANIFEST_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The message of a caught panic (`panic!("…")` payloads are `&str` or `String`).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// An open database. Cheap to clone; safe to share across threads and tasks.
#[derive(Clone, Debug)]
pub struct Db {
    inner: Arc<Database>,
}

impl Db {
    /// Open (or create) the database `config` points at: a directory, an
    /// object-store URL, or memory. Replays the log after the latest manifest.
    pub async fn open(config: Config) -> Result<Db> {
        let inner = Database::open_with(config.engine_config(), config.runtime_options()).await?;
        Ok(Db { inner })
    }

    /// Run SQL (one or more statements) and collect the last statement's rows.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.sql_with_params(sql, &[]).await
    }

    /// Run SQL with `$1`, `$2`, … bound by position.
    pub async fn sql_with_params(
        &self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        let mut session = self.session();
        let outs = session.execute(sql, params).await?;
        match outs.into_iter().last() {
            Some(o) => o.collect().await,
            None => Ok(vec![]),
        }
    }

    /// Run one query and stream its rows as they are produced.
    pub async fn sql_stream(
        &self,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<SendableRecordBatchStream> {
        use futures::TryStreamExt;
        let mut session = self.session();
        let outs = session.execute(sql, params).await?;
        match outs.into_iter().last() {
            // Empty batches (a subscription's caught-up marks) are left out.
            Some(Output::Rows { schema, stream }) => Ok(Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema,
                    stream.try_filter(|b| futures::future::ready(b.num_rows() > 0)),
                ),
            )),
            _ => Err(Error::Invalid(
                "sql_stream needs a statement that returns rows".into(),
            )),
        }
    }

    /// Bulk-load Arrow record batches into `table` as one transaction (the
    /// fast path under Flight SQL ingest). Each batch needs an `_id` column;
    /// `valid` gives one valid period (µs since the epoch, `None` = open) for
    /// rows without `_valid_from` / `_valid_to` columns.
    pub async fn ingest(
        &self,
        table: &str,
        batches: Vec<RecordBatch>,
        valid: Option<(Option<i64>, Option<i64>)>,
    ) -> Result<u64> {
        self.session().ingest(table, batches, valid).await
    }

    /// A session: a connection's state, for `BEGIN … COMMIT` blocks.
    pub fn session(&self) -> Session {
        self.inner.session()
    }

    /// Write the live index out as segments now (normally automatic).
    pub async fn flush(&self) -> Result<()> {
        Ok(self.inner.engine().flush().await?)
    }

    /// Pick up transactions other nodes committed to the shared log.
    pub async fn catch_up(&self) -> Result<u64> {
        Ok(self.inner.engine().catch_up().await?)
    }

    /// Follow the shared store in a background task (on the current tokio
    /// runtime), as `strata serve` does: every `every`, apply what other
    /// processes and nodes committed (one GET when there is nothing new);
    /// every [`MANIFEST_CHECK`], adopt a manifest another node published
    /// (one more GET); every minute, log the requests sent to the store.
    /// Failures are logged once and retried. Abort the handle to stop.
    pub fn follow(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let db = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            let engine = db.inner.engine().clone();
            let mut last_manifest_check = std::time::Instant::now();
            let mut last_report = std::time::Instant::now();
            let mut reported = engine.storage().request_counts();
            loop {
                tick.tick().await;
                let mut r = engine.catch_up().await.map(|_| ());
                if r.is_ok() && last_manifest_check.elapsed() >= MANIFEST_CHECK {
                    last_manifest_check = std::time::Instant::now();
                    r = engine.adopt_newer_manifest().await.map(|_| ());
                }
                match r {
                    Ok(()) => {
                        if failing {
                            tracing::info!("following the shared store works again");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("following the shared store failed (will retry): {e}");
                        }
                        failing = true;
                    }
                }
                if last_report.elapsed() >= std::time::Duration::from_secs(60) {
                    last_report = std::time::Instant::now();
                    let now = engine.storage().request_counts();
                    let delta: Vec<String> = now
                        .iter()
                        .zip(reported.iter())
                        .map(|((k, n), (_, before))| format!("{k} {}", n - before))
                        .collect();
                    tracing::info!(
                        "object store requests in the last minute: {}",
                        delta.join(", ")
                    );
                    reported = now;
                }
            }
        })
    }

    #[doc(hidden)]
    pub fn database(&self) -> &Arc<Database> {
        &self.inner
    }
}
