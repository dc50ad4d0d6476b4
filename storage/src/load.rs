//! Bulk load: rows written straight into segments, committed by one small
//! log record that names them (`OpKind::Load`).
//!
//! The ordinary write path copies a load's rows three times: into the log
//! record, into a level-0 segment when the live index is flushed, and into
//! the current tier when compaction merges level 0; and it resolves every
//! row against the live index on the way. A load into a table that holds no
//! versions has nothing to resolve against: each row is one rectangle,
//! `[_valid_from, _valid_to) × [t, ∞)`. So [`BulkLoad`] sorts each chunk of
//! rows by entity hash and writes it as a segment of the tier compaction
//! would have put it in (current, or bounded for rows with a closed valid
//! period), and the commit is one transaction of one event listing those
//! segments. The rows are written once.
//!
//! The rules that keep this equal to the ordinary path:
//! - The writer lock is held from the start of the load to its commit, so
//!   the system time chosen at the start stays after every commit of this
//!   node; a commit by another node in between makes the load's commit fail
//!   (nothing is loaded; load again).
//! - The table must hold no versions, at the start and at the commit.
//! - Every `_id` must occur once. A repeated one (an update inside the
//!   load) is found while sorting; the load then commits nothing and says
//!   so ([`LoadOutcome::Repeated`]): the caller loads the ordinary way,
//!   where the later row supersedes the earlier.
//! - A load smaller than [`MIN_ROWS`] writes nothing and hands its batches
//!   back ([`LoadOutcome::Small`]): small segments would only be merged
//!   again.
//!
//! What it costs elsewhere: a change feed replays a load from its segments,
//! so it can replay one only while those segments are the table's as
//! written (not yet merged or rewritten by compaction or an erase); reads
//! at a system time inside the load's run see the rows once it commits
//! (their system time is the load's start); and the conflict check forgets
//! the writes before a load (transactions that read before it retry).

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::interleave;
use arrow::datatypes::Schema;

use crate::engine::{CommitInfo, Engine, TxRequest};
use crate::entity::{hash_column, id_at};
use crate::error::{Error, Result};
use crate::log::{Op, OpKind, LOAD_SEGMENTS_KEY};
use crate::manifest::table_dir;
use crate::schema::{adapt_array, TableSchema, ID};
use crate::segment::{
    iid_array, segment_schema, ts_array, Bloom, SegmentEncoder, SegmentMeta, Tier, BATCH_ROWS,
};
use crate::store::{ObjectSink, Storage};
use crate::time::{Micros, OPEN};

/// Loads of fewer rows go through the ordinary commit path.
pub const MIN_ROWS: usize = 65_536;

/// The segments a `Load` event names.
pub(crate) fn load_segments(op: &Op) -> Result<Vec<SegmentMeta>> {
    let json = op
        .batch
        .schema()
        .metadata()
        .get(LOAD_SEGMENTS_KEY)
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "a bulk load event for `{}` names no segments",
                op.table
            ))
        })?;
    serde_json::from_str(&json).map_err(|e| {
        Error::Invalid(format!(
            "a bulk load event for `{}` has an unreadable segment list: {e}",
            op.table
        ))
    })
}

/// How a load ended.
#[derive(Debug)]
pub enum LoadOutcome {
    /// Committed: every row is in the table.
    Loaded { rows: u64, commit: CommitInfo },
    /// Fewer than [`MIN_ROWS`] rows: nothing was written. The batches, as
    /// given, are to be committed the ordinary way.
    Small(Vec<RecordBatch>),
    /// An `_id` occurs more than once: nothing was committed (the segments
    /// written so far are deleted). Load the ordinary way.
    Repeated,
}

/// A segment written by one chunk, before the commit.
struct Written {
    path: String,
    sink: ObjectSink,
    meta: SegmentMeta,
    bloom: Bloom,
}

/// What one chunk's task produced.
struct Chunk {
    segments: Vec<Written>,
    /// The chunk's entity hashes, ascending (for the check across chunks).
    iids: Vec<u64>,
    repeated: bool,
}

/// A bulk load in progress (see the module docs). Made by
/// [`Engine::begin_load`]; feed it with [`BulkLoad::push`], end it with
/// [`BulkLoad::commit`]. Dropped without a commit, it commits nothing; the
/// segments it wrote are left for collection.
pub struct BulkLoad<'a> {
    engine: &'a Engine,
    _writer: tokio::sync::MutexGuard<'a, ()>,
    table: String,
    system_time: Micros,
    /// Table schemas as the rows so far leave them.
    schemas: HashMap<String, TableSchema>,
    /// Normalized rows not written yet.
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    /// The batches as given, while nothing is written (for `Small`).
    given: Vec<RecordBatch>,
    chunk_bytes: usize,
    in_flight: Option<tokio::task::JoinHandle<Result<Chunk>>>,
    /// Memory bytes of the chunk in flight (to size the next chunks).
    in_flight_bytes: usize,
    /// The size a segment should reach, and the most a chunk may hold.
    target_bytes: usize,
    max_chunk_bytes: usize,
    metas: Vec<SegmentMeta>,
    /// Objects written (segments and blooms), to delete if the load fails.
    objects: Vec<String>,
    chunk_iids: Vec<Vec<u64>>,
    repeated: bool,
    rows: u64,
    tag: String,
    parts: usize,
}

impl Engine {
    /// Start a bulk load into `table`; `None` if the table holds versions
    /// (load it the ordinary way). Holds the writer lock until the load is
    /// committed or dropped: this node's other commits wait.
    pub async fn begin_load(&self, table: &str) -> Result<Option<BulkLoad<'_>>> {
        self.check_writable("load rows")?;
        if table.is_empty() {
            return Err(Error::Invalid("table name must not be empty".into()));
        }
        let writer = self.writer.lock().await;
        self.catch_up_locked().await?;
        let (schema, last) = {
            let s = self.state.read();
            let t = s.tables.get(table);
            if t.is_some_and(|t| t.holds_versions()) {
                return Ok(None);
            }
            (
                t.map(|t| t.schema.clone()).unwrap_or_default(),
                s.last_system_time,
            )
        };
        let system_time = self.clock_now_us().max(last.saturating_add(1));
        // Segments should come out near the compaction target, above half
        // of it (smaller ones would be merged again). The first chunk
        // guesses that a file is as large as the rows in memory; later
        // ones use the ratio the first showed.
        let target_bytes = (self.compaction.target_bytes as usize).max(1 << 20);
        let max_chunk_bytes = self.live_budget_bytes().max(1 << 20);
        let chunk_bytes = target_bytes.min(max_chunk_bytes);
        Ok(Some(BulkLoad {
            engine: self,
            _writer: writer,
            table: table.to_string(),
            system_time,
            schemas: HashMap::from([(table.to_string(), schema)]),
            pending: Vec::new(),
            pending_bytes: 0,
            given: Vec::new(),
            chunk_bytes,
            in_flight: None,
            in_flight_bytes: 0,
            target_bytes,
            max_chunk_bytes,
            metas: Vec::new(),
            objects: Vec::new(),
            chunk_iids: Vec::new(),
            repeated: false,
            rows: 0,
            tag: crate::engine::flush_tag(),
            parts: 0,
        }))
    }
}

impl BulkLoad<'_> {
    /// The system time the load's rows get.
    pub fn system_time(&self) -> Micros {
        self.system_time
    }

    /// Add rows (an `_id` column, optional `_valid_from` / `_valid_to`, user
    /// columns), checked and converted as a commit would. Segments are
    /// written, in a blocking task, as chunks fill.
    pub async fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let op = Op {
            kind: OpKind::Put,
            table: self.table.clone(),
            batch: batch.clone(),
        };
        let b = crate::engine::prepare_ops(&mut self.schemas, &[op], self.system_time)?
            .pop()
            .expect("one op in, one out")
            .batch;
        if self.parts == 0 {
            self.given.push(batch);
        }
        self.rows += b.num_rows() as u64;
        self.pending_bytes += b.get_array_memory_size();
        self.pending.push(b);
        if self.pending_bytes >= self.chunk_bytes {
            self.write_chunk().await?;
        }
        Ok(())
    }

    /// Hand the pending rows to a task that sorts and writes them, after
    /// the previous chunk's task is done (two chunks in memory at most).
    async fn write_chunk(&mut self) -> Result<()> {
        let batches = std::mem::take(&mut self.pending);
        let bytes = std::mem::take(&mut self.pending_bytes);
        self.settle().await?;
        self.given.clear();
        if batches.is_empty() || self.repeated {
            return Ok(());
        }
        let schema = self.schemas[&self.table].clone();
        let stem = format!(
            "{}/load-{}-{}-{:05}",
            table_dir(&self.table),
            self.system_time,
            self.tag,
            self.parts
        );
        self.parts += 1;
        let storage = self.engine.storage().clone();
        let t = self.system_time;
        self.in_flight_bytes = bytes;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            write_chunk(&storage, &stem, &schema, &batches, t)
        }));
        Ok(())
    }

    /// Wait for the chunk in flight and publish its objects.
    async fn settle(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let chunk = task
            .await
            .map_err(|e| Error::Internal(format!("bulk load task failed: {e}")))??;
        self.repeated |= chunk.repeated;
        let file_bytes: u64 = chunk.segments.iter().map(|w| w.meta.bytes).sum();
        if file_bytes > 0 && self.in_flight_bytes > 0 {
            let ratio = file_bytes as f64 / self.in_flight_bytes as f64;
            let want = (self.target_bytes as f64 * 0.8 / ratio) as usize;
            self.chunk_bytes = want.clamp(1 << 20, self.max_chunk_bytes);
        }
        let storage = self.engine.storage();
        for w in chunk.segments {
            self.objects.push(w.path.clone());
            storage.finish_sink(&w.path, w.sink).await?;
            self.objects.push(w.meta.bloom_path.clone());
            storage.put(&w.meta.bloom_path, w.bloom.to_bytes()).await?;
            self.metas.push(w.meta);
        }
        self.chunk_iids.push(chunk.iids);
        Ok(())
    }

    /// Write what is left and commit the load (see [`LoadOutcome`]).
    pub async fn commit(mut self) -> Result<LoadOutcome> {
        if self.parts == 0 && (self.rows as usize) < MIN_ROWS {
            return Ok(LoadOutcome::Small(std::mem::take(&mut self.given)));
        }
        let r = self.finish().await;
        if !matches!(r, Ok(LoadOutcome::Loaded { .. })) {
            self.delete_objects().await;
        }
        r
    }

    async fn finish(&mut self) -> Result<LoadOutcome> {
        self.write_chunk().await?;
        self.settle().await?;
        if self.repeated || repeats_across(&self.chunk_iids) {
            return Ok(LoadOutcome::Repeated);
        }
        self.chunk_iids = Vec::new();
        let schema = &self.schemas[&self.table];
        let list = serde_json::to_string(&self.metas)
            .map_err(|e| Error::Internal(format!("segment list: {e}")))?;
        let fields = Schema::new_with_metadata(
            schema.columns.clone(),
            HashMap::from([(LOAD_SEGMENTS_KEY.to_string(), list)]),
        );
        let op = Op {
            kind: OpKind::Load,
            table: self.table.clone(),
            batch: RecordBatch::new_empty(Arc::new(fields)),
        };
        let commit = self
            .engine
            .commit_locked(TxRequest {
                ops: vec![op],
                system_time: Some(self.system_time),
                read_at: None,
            })
            .await?;
        // Publish a manifest naming the segments now: until one does, only
        // the log record does, and a node far behind the log could take
        // them for garbage. The load is committed either way.
        if let Err(e) = self.engine.flush_locked().await {
            tracing::warn!(
                "bulk load into {} committed, but publishing a manifest after it failed \
                 (the next flush will): {e}",
                self.table
            );
        }
        Ok(LoadOutcome::Loaded {
            rows: self.rows,
            commit,
        })
    }

    /// Give up: nothing is committed, and the objects written so far are
    /// deleted.
    pub async fn abort(mut self) {
        self.delete_objects().await;
    }

    /// Best effort: what is not deleted is collected later (nothing names it).
    async fn delete_objects(&mut self) {
        if let Some(task) = self.in_flight.take() {
            let _ = task.await;
        }
        for p in std::mem::take(&mut self.objects) {
            if let Err(e) = self.engine.storage().delete(&p).await {
                tracing::warn!("bulk load could not delete {p}: {e} (collection will)");
            }
        }
    }
}

/// Does an entity hash occur in two chunks? (Each list is ascending and
/// holds no repeats.)
fn repeats_across(lists: &[Vec<u64>]) -> bool {
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, usize, usize)>> = lists
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| std::cmp::Reverse((l[0], i, 0)))
        .collect();
    let mut last = None;
    while let Some(std::cmp::Reverse((v, i, k))) = heap.pop() {
        if last == Some(v) {
            return true;
        }
        last = Some(v);
        if let Some(&n) = lists[i].get(k + 1) {
            heap.push(std::cmp::Reverse((n, i, k + 1)));
        }
    }
    false
}

/// Sort one chunk's rows by entity hash and write them as segments: one of
/// the current tier (open valid period) and one of the bounded tier, as
/// compaction would have split them. Runs on a blocking thread.
fn write_chunk(
    storage: &Storage,
    stem: &str,
    schema: &TableSchema,
    batches: &[RecordBatch],
    t: Micros,
) -> Result<Chunk> {
    // Per row: (entity hash, batch, row), and its valid period.
    let mut keys: Vec<(u64, u32, u32)> = Vec::new();
    let mut valid: Vec<(Vec<i64>, Vec<i64>)> = Vec::with_capacity(batches.len());
    for (bi, b) in batches.iter().enumerate() {
        let ids = b
            .column_by_name(ID)
            .ok_or_else(|| Error::Invalid("every loaded row needs an `_id`".into()))?;
        keys.extend(
            hash_column(ids.as_ref())
                .into_iter()
                .enumerate()
                .map(|(r, h)| (h, bi as u32, r as u32)),
        );
        valid.push(crate::table::valid_columns(b, t)?);
    }
    keys.sort_unstable();
    let ids: Vec<&ArrayRef> = batches
        .iter()
        .map(|b| b.column_by_name(ID).expect("checked above"))
        .collect();
    for w in keys.windows(2) {
        let ((h0, b0, r0), (h1, b1, r1)) = (w[0], w[1]);
        if h0 == h1
            && id_at(ids[b0 as usize].as_ref(), r0 as usize)
                == id_at(ids[b1 as usize].as_ref(), r1 as usize)
        {
            return Ok(Chunk {
                segments: Vec::new(),
                iids: Vec::new(),
                repeated: true,
            });
        }
    }
    // Each batch's columns in the table's order and types.
    let columns: Vec<Vec<ArrayRef>> = batches
        .iter()
        .map(|b| {
            schema
                .columns
                .iter()
                .map(|f| match b.column_by_name(f.name()) {
                    Some(c) => adapt_array(c, f.data_type()),
                    None => Ok(new_null_array(f.data_type(), b.num_rows())),
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let seg_schema = segment_schema(&schema.columns);
    let mut segments = Vec::new();
    for tier in [Tier::Current, Tier::Bounded] {
        let rows: Vec<&(u64, u32, u32)> = keys
            .iter()
            .filter(|(_, b, r)| {
                (valid[*b as usize].1[*r as usize] == OPEN) == (tier == Tier::Current)
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let path = format!("{stem}-{}.arrow", tier.name());
        let bloom_path = format!("{stem}-{}.bloom", tier.name());
        let mut enc = SegmentEncoder::to(storage.sink(&path)?, seg_schema.clone())?;
        for part in rows.chunks(BATCH_ROWS) {
            let idx: Vec<(usize, usize)> = part
                .iter()
                .map(|(_, b, r)| (*b as usize, *r as usize))
                .collect();
            let n = part.len();
            let mut cols: Vec<ArrayRef> = vec![
                iid_array(part.iter().map(|k| k.0).collect()),
                ts_array(idx.iter().map(|&(b, r)| valid[b].0[r]).collect()),
                ts_array(idx.iter().map(|&(b, r)| valid[b].1[r]).collect()),
                ts_array(vec![t; n]),
                ts_array(vec![OPEN; n]),
            ];
            for ci in 0..schema.columns.len() {
                let refs: Vec<&dyn Array> = columns.iter().map(|c| c[ci].as_ref()).collect();
                cols.push(interleave(&refs, &idx)?);
            }
            cols.push(ts_array(vec![t; n]));
            cols.push(Arc::new(BooleanArray::from(vec![false; n])));
            enc.push(&RecordBatch::try_new(seg_schema.clone(), cols)?, Vec::new())?;
        }
        let (sink, meta, bloom) = enc.finish_into(&path, &bloom_path, tier, 1)?;
        segments.push(Written {
            path,
            sink,
            meta,
            bloom,
        });
    }
    Ok(Chunk {
        segments,
        iids: keys.into_iter().map(|k| k.0).collect(),
        repeated: false,
    })
}
