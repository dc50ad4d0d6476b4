//! The Kafka sink (`strata serve --kafka-brokers HOST:PORT`): every committed
//! transaction's changes, of every table, published to one Kafka topic as
//! JSON envelopes in the shape Debezium consumers read (docs/ports.md
//! "Kafka").
//!
//! - Key: `{"table": t, "_id": id}`; the partition is a CRC-32 of the key,
//!   so each key's changes keep their order.
//! - Value: `{"before", "after", "op", "source": {…, "position", "index",
//!   "system_time"}, "ts_ms", "strata_op"}`. A put is op `c` with the row
//!   (and its valid-time period) as `after`; a delete is op `d` with the
//!   deleted `_id` and period as `before`; an ERASE is op `d`
//!   (`strata_op: "erase"`) followed by a tombstone (a null value for the
//!   key), so that a compacted topic drops the erased values.
//! - Headers `strata.position` and `strata.index` on every record,
//!   tombstones included.
//!
//! Exactly once, up to duplicates a consumer can drop: at start (and after
//! any error) the sink reads the last record of each partition and resumes
//! from the smallest position among them, sending that transaction again
//! whole; a partition with no record makes it start from the beginning of the
//! log. Records are produced in log order and each log record's batches are
//! acknowledged (acks = all) before the next is read, so the broker holds a
//! prefix of the log plus at most the transactions being sent. A consumer
//! drops a record whose `(position, index)` is not above the last it took
//! for that key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use serde_json::{json, Map, Value};
use strata_storage::feed::position;
use strata_storage::log::{Op, OpKind};
use strata_storage::schema::{ID, VALID_FROM, VALID_TO};
use strata_storage::time::{fmt_micros, Micros, OPEN};
use strata_storage::{Engine, FeedStart};

/// Where and what the sink publishes.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic (created with one partition if missing).
    pub topic: String,
}

/// The default topic.
pub const DEFAULT_TOPIC: &str = "strata.changes";

/// Header with the transaction's log position.
pub const POSITION_HEADER: &str = "strata.position";
/// Header with the change's index within its transaction.
pub const INDEX_HEADER: &str = "strata.index";

/// Bytes of records per produce request.
const REQUEST_BYTES: usize = 512 << 10;

/// Start the sink in the background: it runs until the process ends,
/// reconnecting (and resuming from what the broker holds) after any error.
pub fn spawn(engine: Arc<Engine>, cfg: KafkaSinkConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match publish(&engine, &cfg).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(
                        "kafka sink ({} on {}): {e}; retrying in {} ms",
                        cfg.topic,
                        cfg.brokers.join(","),
                        backoff.as_millis()
                    );
                    eprintln!(
                        "kafka sink: {e}; retrying in {} ms (it resumes from what the broker holds)",
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}

fn kafka_err(what: &str) -> impl Fn(rskafka::client::error::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Connect, find where the broker's copy ends, and publish from there on.
async fn publish(engine: &Arc<Engine>, cfg: &KafkaSinkConfig) -> Result<(), String> {
    let client = ClientBuilder::new(cfg.brokers.clone())
        .client_id("strata")
        .build()
        .await
        .map_err(kafka_err("cannot connect to the brokers"))?;
    let topics = client
        .list_topics()
        .await
        .map_err(kafka_err("cannot list topics"))?;
    let partitions: Vec<i32> = match topics.iter().find(|t| t.name == cfg.topic) {
        Some(t) => t.partitions.iter().copied().collect(),
        None => {
            let controller = client
                .controller_client()
                .map_err(kafka_err("no controller"))?;
            if let Err(e) = controller.create_topic(&cfg.topic, 1, 1, 5_000).await {
                // Another node may have created it meanwhile.
                tracing::info!("kafka sink: creating topic {}: {e}", cfg.topic);
            }
            vec![0]
        }
    };
    if partitions.is_empty() {
        return Err(format!("topic {} has no partitions", cfg.topic));
    }
    let mut clients = Vec::with_capacity(partitions.len());
    for p in &partitions {
        clients.push(
            client
                .partition_client(cfg.topic.clone(), *p, UnknownTopicHandling::Retry)
                .await
                .map_err(kafka_err("cannot open a partition"))?,
        );
    }
    // Where the broker's copy ends.
    let mut resume: Option<i64> = None;
    let mut empty = false;
    for c in &clients {
        match last_position(c).await? {
            Some(p) => resume = Some(resume.map_or(p, |r: i64| r.min(p))),
            None => empty = true,
        }
    }
    let start = match resume {
        Some(p) if !empty => FeedStart::Position(p),
        _ => FeedStart::Beginning,
    };
    let mut feed = engine
        .log_feed(start)
        .await
        .map_err(|e| format!("cannot read the log from where the topic ends: {e}"))?;
    tracing::info!(
        "kafka sink: publishing to {} from position {}",
        cfg.topic,
        feed.next_position()
    );
    loop {
        let (rec, first) = feed
            .next()
            .await
            .map_err(|e| format!("reading the log: {e}"))?;
        let mut per_partition: Vec<Vec<Record>> = vec![Vec::new(); clients.len()];
        for (i, tx) in rec.txs.iter().enumerate().skip(first) {
            let pos = position(rec.seq, i);
            let mut index = 0u64;
            for op in &tx.ops {
                // Roles and grants (password verifiers among them) stay inside.
                if strata_storage::schema::is_reserved(&op.table) {
                    continue;
                }
                for (key, value, idx) in envelopes(op, pos, tx.system_time, &mut index)? {
                    let p = (crc32fast::hash(&key) as usize) % clients.len();
                    per_partition[p].push(Record {
                        key: Some(key),
                        value,
                        headers: BTreeMap::from([
                            (POSITION_HEADER.to_string(), pos.to_string().into_bytes()),
                            (INDEX_HEADER.to_string(), idx.to_string().into_bytes()),
                        ]),
                        timestamp: Utc
                            .timestamp_micros(tx.system_time)
                            .single()
                            .unwrap_or_else(Utc::now),
                    });
                }
            }
        }
        let sends = clients
            .iter()
            .zip(per_partition)
            .map(|(c, records)| produce_all(c, records));
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
}

/// Produce records in order, in requests of about [`REQUEST_BYTES`].
async fn produce_all(c: &PartitionClient, records: Vec<Record>) -> Result<(), String> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for r in records {
        bytes += r.approximate_size();
        batch.push(r);
        if bytes >= REQUEST_BYTES {
            c.produce(std::mem::take(&mut batch), Compression::NoCompression)
                .await
                .map_err(kafka_err("producing"))?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        c.produce(batch, Compression::NoCompression)
            .await
            .map_err(kafka_err("producing"))?;
    }
    Ok(())
}

/// The position in the last record of a partition (None: no record).
async fn last_position(c: &PartitionClient) -> Result<Option<i64>, String> {
    let end = c
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(kafka_err("reading the partition's end"))?;
    let start = c
        .get_offset(OffsetAt::Earliest)
        .await
        .map_err(kafka_err("reading the partition's start"))?;
    if end <= start {
        return Ok(None);
    }
    let (records, _) = c
        .fetch_records(end - 1, 1..16 << 20, 1_000)
        .await
        .map_err(kafka_err("reading the partition's last record"))?;
    let last = records
        .iter()
        .filter(|r| r.offset == end - 1)
        .next_back()
        .or(records.last())
        .ok_or_else(|| {
            format!(
                "the partition's last record (offset {}) could not be read",
                end - 1
            )
        })?;
    let p = last
        .record
        .headers
        .get(POSITION_HEADER)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| {
            format!(
                "the topic's last record (offset {}) has no {POSITION_HEADER} header: the topic holds records \
                 Strata did not write. Give the sink a topic of its own (--kafka-topic)",
                end - 1
            )
        })?;
    Ok(Some(p))
}

/// An op's rows as (key, value, index) records; an erase adds a tombstone
/// per key. `index` numbers the records of one transaction.
#[allow(clippy::type_complexity)]
fn envelopes(
    op: &Op,
    pos: i64,
    system_time: Micros,
    index: &mut u64,
) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>, u64)>, String> {
    let (strata_op, dbz) = match op.kind {
        OpKind::Put => ("put", "c"),
        OpKind::Delete => ("delete", "d"),
        OpKind::Erase => ("erase", "d"),
        OpKind::CreateTable => return Ok(Vec::new()),
        // `LogFeed` gives a bulk load as the puts of its rows.
        OpKind::Load => {
            return Err(format!(
                "a bulk load of table {} reached the sink unexpanded",
                op.table
            ))
        }
    };
    let rows = json_rows(&op.batch, op.kind, system_time)
        .map_err(|e| format!("encoding a change of table {} as JSON: {e}", op.table))?;
    let mut out = Vec::with_capacity(rows.len());
    let now_ms = Utc::now().timestamp_millis();
    for row in rows {
        let id = row.get(ID).cloned().unwrap_or(Value::Null);
        let key = serde_json::to_vec(&json!({"table": op.table, "_id": id})).expect("json");
        let (before, after) = match op.kind {
            OpKind::Put => (Value::Null, Value::Object(row)),
            _ => (Value::Object(row), Value::Null),
        };
        let value = json!({
            "before": before,
            "after": after,
            "source": {
                "version": env!("CARGO_PKG_VERSION"),
                "connector": "strata",
                "name": "strata",
                "db": "strata",
                "schema": "public",
                "table": op.table,
                "ts_ms": system_time.div_euclid(1000),
                "ts_us": system_time,
                "system_time": fmt_micros(system_time),
                "position": pos,
                "index": *index,
                "snapshot": "false",
            },
            "op": dbz,
            "strata_op": strata_op,
            "ts_ms": now_ms,
        });
        out.push((
            key.clone(),
            Some(serde_json::to_vec(&value).expect("json")),
            *index,
        ));
        *index += 1;
        if op.kind == OpKind::Erase {
            out.push((key, None, *index));
            *index += 1;
        }
    }
    Ok(out)
}

/// The rows of a log batch as JSON objects: `_id`, the valid period (an open
/// end as null; a put without `_valid_from` starts at its system time) and,
/// for puts, the values.
fn json_rows(
    b: &RecordBatch,
    kind: OpKind,
    system_time: Micros,
) -> Result<Vec<Map<String, Value>>, String> {
    let n = b.num_rows();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let period = |name: &str, default: Option<Micros>| -> Result<ArrayRef, String> {
        let values: Vec<Option<Micros>> = match b.column_by_name(name) {
            None => vec![default; n],
            Some(c) => {
                let c = cast(c, &DataType::Int64).map_err(|e| e.to_string())?;
                let c = c
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .ok_or("period column")?;
                c.iter()
                    .map(|v| match v {
                        None => default,
                        Some(OPEN) => None,
                        Some(v) => Some(v),
                    })
                    .collect()
            }
        };
        Ok(Arc::new(
            TimestampMicrosecondArray::from(values).with_timezone("UTC"),
        ))
    };
    if let Some(id) = b.column_by_name(ID) {
        fields.push(Field::new(ID, id.data_type().clone(), true));
        cols.push(id.clone());
    }
    if kind != OpKind::Erase {
        fields.push(Field::new(VALID_FROM, ts.clone(), true));
        cols.push(period(VALID_FROM, Some(system_time))?);
        fields.push(Field::new(VALID_TO, ts.clone(), true));
        cols.push(period(VALID_TO, None)?);
    }
    if kind == OpKind::Put {
        for (f, c) in b.schema().fields().iter().zip(b.columns()) {
            if f.name() != ID && f.name() != VALID_FROM && f.name() != VALID_TO {
                fields.push(Field::new(f.name(), f.data_type().clone(), true));
                cols.push(c.clone());
            }
        }
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buf);
        w.write(&batch).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Value> = serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|r| match r {
            Value::Object(m) => m,
            _ => Map::new(),
        })
        .collect())
}
