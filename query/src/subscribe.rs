//! `SUBSCRIBE [TO] t [AFTER p | FROM SYSTEM_TIME t] [WITH SNAPSHOT]`: a
//! table's change feed (strata_storage::feed) as a result set that never
//! ends. Embedded users read the stream; the Postgres wire serves it through
//! `COPY (SUBSCRIBE …) TO STDOUT` and cursors (docs/sql.md "SUBSCRIBE").

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use strata_storage::feed::{position, ChangeFeed, FeedStart, OP, POSITION, SYSTEM_TIME};
use strata_storage::time::fmt_micros;
use strata_storage::Micros;

use crate::error::{QueryError, Result};
use crate::session::{Output, Session};
use crate::temporal::{Subscribe, SubscribeStart};

impl Session {
    pub(crate) async fn subscribe(&mut self, s: &Subscribe) -> Result<Output> {
        let engine = self.db.engine.clone();
        if engine.table_output_schema(&s.table).is_none() {
            return Err(QueryError::UndefinedTable(format!(
                "table \"{}\" does not exist: SUBSCRIBE reads an existing table",
                s.table
            )));
        }
        // Where the changes start, and the snapshot (its system time and
        // the position its rows carry: the last transaction it holds).
        let (start, snapshot): (FeedStart, Option<(Micros, i64)>) = match (s.start, s.snapshot) {
            (SubscribeStart::Beginning, false) => (FeedStart::Beginning, None),
            (SubscribeStart::Beginning, true) => {
                let (seq, at) = engine.applied_point();
                let next = position(seq + 1, 0);
                (FeedStart::Position(next), Some((at, next - 1)))
            }
            (SubscribeStart::SystemTime(at), false) => (
                FeedStart::SystemTime {
                    at,
                    inclusive: true,
                },
                None,
            ),
            (SubscribeStart::SystemTime(at), true) => {
                let next = engine.position_at(at, false).await?;
                (FeedStart::Position(next), Some((at, next - 1)))
            }
            (SubscribeStart::After(p), _) => (FeedStart::After(p), None),
        };
        let feed = engine.change_feed(&s.table, start).await?;
        let schema = feed.schema();
        let masking = self.masking.clone();
        let table = s.table.clone();
        let changes = feed_stream(feed).map(move |b| match &masking {
            Some(m) => b.and_then(|b| m.batch(&table, b)),
            None => b,
        });
        let stream: datafusion::execution::SendableRecordBatchStream = match snapshot {
            None => Box::pin(RecordBatchStreamAdapter::new(schema.clone(), changes)),
            Some((at, pos)) => {
                let sql = format!(
                    "SELECT *, _valid_from, _valid_to, _system_from FROM \"{}\" \
                     FOR SYSTEM_TIME AS OF TIMESTAMP '{}' FOR ALL VALID_TIME",
                    s.table.replace('"', "\"\""),
                    fmt_micros(at)
                );
                // (Planned with this statement's masks, by the same check.)
                let rows = match Box::pin(self.execute(&sql, &[])).await?.pop() {
                    Some(Output::Rows { stream, .. }) => stream,
                    _ => {
                        return Err(QueryError::Internal(
                            "the snapshot query returned no rows".into(),
                        ))
                    }
                };
                let out = schema.clone();
                let snap = rows.map(move |b| {
                    b.and_then(|b| snapshot_rows(&b, &out, pos).map_err(|e| e.into()))
                });
                Box::pin(RecordBatchStreamAdapter::new(
                    schema.clone(),
                    snap.chain(changes),
                ))
            }
        };
        Ok(Output::Rows { schema, stream })
    }
}

/// The feed as a stream that ends after its first error.
fn feed_stream(
    feed: ChangeFeed,
) -> impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send {
    // (feed, whether the caught-up marker was sent since the last rows)
    futures::stream::unfold(Some((feed, false)), |state| async move {
        let (mut feed, marked) = state?;
        let next = match feed.try_next().await {
            Ok(Some(b)) => Ok(b),
            // Caught up with the log: an empty batch says so once (a
            // cursor's FETCH n returns what is committed without waiting
            // for more), then wait for the next commit.
            Ok(None) if !marked => {
                let empty = RecordBatch::new_empty(feed.schema());
                return Some((Ok(empty), Some((feed, true))));
            }
            Ok(None) => feed.next().await,
            Err(e) => Err(e),
        };
        match next {
            Ok(b) => Some((Ok(b), Some((feed, false)))),
            Err(e) => Some((
                Err(DataFusionError::External(Box::new(QueryError::from(e)))),
                None,
            )),
        }
    })
}

/// A snapshot batch (the table's columns, then `_valid_from`, `_valid_to`,
/// `_system_from`) as feed rows: `_op = 'snapshot'` at position `pos`, the
/// row's own system time.
fn snapshot_rows(
    b: &RecordBatch,
    out: &SchemaRef,
    pos: i64,
) -> std::result::Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let n = b.num_rows();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(out.fields().len());
    for f in out.fields() {
        let name = f.name().as_str();
        let col: ArrayRef = match name {
            POSITION => Arc::new(Int64Array::from(vec![pos; n])),
            OP => Arc::new(StringArray::from(vec!["snapshot"; n])),
            SYSTEM_TIME => b.column_by_name("_system_from").cloned().ok_or_else(|| {
                datafusion::arrow::error::ArrowError::SchemaError(
                    "snapshot rows lack _system_from".into(),
                )
            })?,
            _ => match b.column_by_name(name) {
                Some(c) => c.clone(),
                None => datafusion::arrow::array::new_null_array(f.data_type(), n),
            },
        };
        cols.push(if col.data_type() == f.data_type() {
            col
        } else {
            datafusion::arrow::compute::cast(&col, f.data_type())?
        });
    }
    RecordBatch::try_new(out.clone(), cols)
}
