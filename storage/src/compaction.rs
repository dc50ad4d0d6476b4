//! Compaction's room: level-0 flush segments are merged into size-targeted
//! segments, with **current** rectangles (`_system_to` = ∞) apart from
//! **historical** ones, and dead rows (deletion vectors) dropped, so that a
//! query at the present reads the current tier and level 0 only.
//!
//! Policy (docs/architecture.md has the why):
//! - level 0: once `fanout` flush segments exist, all of them are merged and
//!   split into a current and a historical output (level 1);
//! - current: size-tiered — `fanout` small segments (under half the target
//!   size) of one level merge into the next level; a segment with more than
//!   half of its rows dead is rewritten alone;
//! - history: only runs of small segments adjacent in system time merge, and
//!   only while the output stays within the target size, so old history,
//!   once in target-sized segments, is never rewritten again, and a read at a
//!   past system time prunes the history of later times by segment bounds.
//!
//! A compaction's output is a pure function of its inputs (segments, their
//! deletion vectors, the table's columns): any node may run it, the object
//! names derive from the inputs, and it is published like a flush, by the
//! manifest's conditional create. A node that loses the race adopts the
//! winner's manifest and its own output becomes garbage for collection.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType, UInt64Type};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::manifest::table_dir;
use crate::schema::{adapt_array, TableSchema};
use crate::segment::{
    segment_schema, Bloom, Segment, SegmentEncoder, SegmentFile, SegmentMeta, Tier, BATCH_ROWS,
    SYSTEM_COLUMNS, VIEW_FROM, VIEW_ONLY,
};
use crate::table::{DeletionVector, SegmentEntry, TableState};

/// Compaction settings.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// Target size of a compacted segment file.
    pub target_bytes: u64,
    /// How many segments of a level merge into the next.
    pub fanout: usize,
    /// Compact in a background task after flushes (otherwise only on `CHECKPOINT`).
    pub background: bool,
    /// Bytes of input segments one level-0 merge may take (it decodes its
    /// inputs and builds its output in memory, about twice this); `None`:
    /// an eighth of the engine's memory budget, no bound without one. The
    /// other merges are bounded by `target_bytes` already.
    pub max_job_bytes: Option<u64>,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            target_bytes: 100 << 20,
            fanout: 4,
            background: true,
            max_job_bytes: None,
        }
    }
}

/// One planned merge of some segments of one table.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    table: String,
    schema: TableSchema,
    inputs: Vec<SegmentEntry>,
    /// `None`: level-0 input, split into current and history.
    out_tier: Option<Tier>,
    level: u32,
}

/// The result of running a job, before it is published.
pub(crate) struct Output {
    segments: Vec<(SegmentMeta, Bloom)>,
    /// Per input, per input row: `segment << 32 | row` of its copy in the
    /// output, or `u64::MAX` for a dead row that was dropped.
    row_map: Vec<Vec<u64>>,
}

const DROPPED: u64 = u64::MAX;

/// What `plan` would merge next for `t`, if anything.
pub(crate) fn plan(t: &TableState, cfg: &CompactionConfig, force: bool) -> Option<Job> {
    let fanout = cfg.fanout.max(2);
    let small = |e: &SegmentEntry| e.seg.meta.bytes < cfg.target_bytes / 2;
    let dead = |e: &SegmentEntry| e.deleted.count();
    let job = |inputs: Vec<SegmentEntry>, out_tier: Option<Tier>, level: u32| Job {
        table: t.name.clone(),
        schema: t.schema.clone(),
        inputs,
        out_tier,
        level,
    };
    let of_tier = |tier: Tier| -> Vec<SegmentEntry> {
        t.segments
            .iter()
            .filter(|e| e.seg.meta.tier == tier)
            .cloned()
            .collect()
    };
    let l0 = of_tier(Tier::L0);
    if l0.len() >= fanout || (force && !l0.is_empty()) {
        return Some(job(l0_chunk(l0, cfg.max_job_bytes), None, 1));
    }
    // Current and bounded tiers: size-tiered.
    for tier in [Tier::Current, Tier::Bounded] {
        let cur = of_tier(tier);
        if force {
            let inputs: Vec<SegmentEntry> = cur
                .iter()
                .filter(|e| small(e) || dead(e) > 0)
                .cloned()
                .collect();
            if inputs.len() >= 2 || inputs.iter().any(|e| dead(e) > 0) {
                let level = inputs.iter().map(|e| e.seg.meta.level).max().unwrap_or(0) + 1;
                return Some(job(inputs, Some(tier), level));
            }
            continue;
        }
        let mut by_level: HashMap<u32, Vec<SegmentEntry>> = HashMap::new();
        for e in cur.iter().filter(|e| small(e)) {
            by_level
                .entry(e.seg.meta.level)
                .or_default()
                .push(e.clone());
        }
        let mut levels: Vec<u32> = by_level.keys().copied().collect();
        levels.sort_unstable();
        for l in levels {
            let v = &by_level[&l];
            if v.len() >= fanout {
                return Some(job(v.clone(), Some(tier), l + 1));
            }
        }
        if let Some(e) = cur.iter().find(|e| dead(e) * 2 > e.seg.meta.rows as usize) {
            return Some(job(vec![e.clone()], Some(tier), e.seg.meta.level));
        }
    }
    // History tier: runs of small segments adjacent in system time.
    // Small here is under a quarter of the target: a history segment that
    // size is never merged again, and keeps its own system-time bounds.
    let small = |e: &SegmentEntry| e.seg.meta.bytes < cfg.target_bytes / 4;
    let mut hist = of_tier(Tier::History);
    hist.sort_by_key(|e| (e.seg.meta.bounds.system_from_min, e.seg.meta.path.clone()));
    let need = if force { 2 } else { fanout };
    let mut run: Vec<SegmentEntry> = Vec::new();
    let mut run_bytes = 0u64;
    let mut found: Option<Vec<SegmentEntry>> = None;
    for e in hist {
        if small(&e) && run_bytes + e.seg.meta.bytes <= cfg.target_bytes {
            run_bytes += e.seg.meta.bytes;
            run.push(e);
            continue;
        }
        if run.len() >= need {
            found = Some(std::mem::take(&mut run));
            break;
        }
        run.clear();
        run_bytes = 0;
        if small(&e) {
            run_bytes = e.seg.meta.bytes;
            run.push(e);
        }
    }
    if found.is_none() && run.len() >= need {
        found = Some(run);
    }
    if let Some(run) = found {
        let level = run.iter().map(|e| e.seg.meta.level).max().unwrap_or(0) + 1;
        return Some(job(run, Some(Tier::History), level));
    }
    None
}

/// The oldest level-0 segments (by system time) whose bytes fit `max`, at
/// least two (or the one there is), so that a bulk load's backlog of
/// flushes is merged a bounded piece at a time, not decoded all at once.
/// Any subset may merge: a row a later flush retired is already marked in
/// its own segment's deletion vector.
fn l0_chunk(mut l0: Vec<SegmentEntry>, max: Option<u64>) -> Vec<SegmentEntry> {
    let Some(max) = max else {
        return l0;
    };
    l0.sort_by(|a, b| {
        (a.seg.meta.bounds.system_from_min, &a.seg.meta.path)
            .cmp(&(b.seg.meta.bounds.system_from_min, &b.seg.meta.path))
    });
    let mut bytes = 0u64;
    let mut n = 0;
    for e in &l0 {
        if n >= 2 && bytes + e.seg.meta.bytes > max {
            break;
        }
        bytes += e.seg.meta.bytes;
        n += 1;
    }
    l0.truncate(n);
    l0
}

/// A sort key of one surviving input row.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    /// Output group: level-0 history keeps one group per input flush, so
    /// that its segments keep narrow system-time bounds.
    group: u32,
    iid: u64,
    sf: i64,
    vf: i64,
    part: u32,
    row: u32,
    /// The row is a piece (`segment::BatchStats::pieces`); carried over.
    piece: bool,
}

/// Decoded inputs: every batch adapted to the table's current columns.
struct Prepared {
    schema: SchemaRef,
    parts: Vec<RecordBatch>,
    /// Per part: (input index, first input row).
    part_origin: Vec<(usize, usize)>,
    /// Surviving rows, sorted, per output tier.
    keys: Vec<(Tier, Vec<Key>)>,
    input_rows: Vec<usize>,
    bytes_per_row: f64,
}

fn prepare(
    files: &[Arc<SegmentFile>],
    dvs: &[Arc<DeletionVector>],
    schema: &TableSchema,
    out_tier: Option<Tier>,
) -> Result<Prepared> {
    let target = segment_schema(&schema.columns);
    let mut parts = Vec::new();
    let mut part_origin = Vec::new();
    let mut by_tier: [Vec<Key>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let slot = |t: Tier| match t {
        Tier::Current | Tier::L0 => 0,
        Tier::Bounded => 1,
        Tier::History => 2,
    };
    let mut bytes = 0usize;
    let mut rows_total = 0usize;
    // Inputs in system-time order, for grouping level-0 history.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| {
        files[i]
            .stats
            .iter()
            .map(|s| s.bounds.system_from_min)
            .min()
            .unwrap_or(0)
    });
    let mut rank = vec![0u32; files.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r as u32;
    }
    for (i, f) in files.iter().enumerate() {
        bytes += f.size_bytes();
        rows_total += f.rows();
        for b in 0..f.num_batches() {
            let base = f.batch_offset(b);
            let n = f.stats[b].rows as usize;
            if (0..n).all(|r| dvs[i].contains(base + r)) {
                continue;
            }
            let batch = f.decode(b, None)?;
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
            for (ci, field) in target.fields().iter().enumerate() {
                let c = if ci < SYSTEM_COLUMNS {
                    batch.column(ci).clone()
                } else {
                    match batch.column_by_name(field.name()) {
                        Some(c) => adapt_array(c, field.data_type())?,
                        // A file written before the view columns: views
                        // start at `_system_from`, no row is view-only.
                        None if field.name() == VIEW_FROM => batch.column(3).clone(),
                        None if field.name() == VIEW_ONLY => {
                            Arc::new(arrow::array::BooleanArray::from(vec![false; n]))
                        }
                        None => arrow::array::new_null_array(field.data_type(), n),
                    }
                };
                cols.push(c);
            }
            let part = parts.len() as u32;
            let adapted = RecordBatch::try_new(target.clone(), cols)?;
            let iids = adapted.column(0).as_primitive::<UInt64Type>().values();
            let ts = |c: usize| {
                adapted
                    .column(c)
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
            };
            let (vf, vt, sf, st) = (ts(1), ts(2), ts(3), ts(4));
            let vw = ts(target.fields().len() - 2);
            let pieces = f.piece_mask(b);
            for r in 0..n {
                if dvs[i].contains(base + r) {
                    continue;
                }
                let tier = out_tier.unwrap_or_else(|| Tier::of(vt[r], st[r]));
                // History rows with an empty view (closed by the retirement
                // that wrote them: the decomposition only) go to their own
                // segments, which reads as of a system time skip
                // (`Bounds::view_rows`).
                let empty_view = u32::from(tier == Tier::History && vw[r] >= st[r]);
                let k = Key {
                    group: if out_tier.is_none() && tier == Tier::History {
                        rank[i] * 2 + empty_view
                    } else {
                        empty_view
                    },
                    iid: iids[r],
                    sf: sf[r],
                    vf: vf[r],
                    part,
                    row: r as u32,
                    piece: pieces[r],
                };
                by_tier[slot(tier)].push(k);
            }
            parts.push(adapted);
            part_origin.push((i, base));
        }
    }
    let mut keys = Vec::new();
    for (tier, mut v) in [Tier::Current, Tier::Bounded, Tier::History]
        .into_iter()
        .zip(by_tier)
    {
        if !v.is_empty() {
            v.sort_unstable();
            keys.push((tier, v));
        }
    }
    Ok(Prepared {
        schema: target,
        parts,
        part_origin,
        keys,
        input_rows: files.iter().map(|f| f.rows()).collect(),
        bytes_per_row: if rows_total == 0 {
            1.0
        } else {
            bytes as f64 / rows_total as f64
        },
    })
}

/// Encode one output segment from its sorted keys, a record batch at a
/// time (each batch is built, written and dropped before the next).
fn encode_keys<W: std::io::Write>(
    p: &Prepared,
    keys: &[Key],
    out: W,
    path: &str,
    bloom_path: &str,
    tier: Tier,
    level: u32,
) -> Result<(W, SegmentMeta, Bloom)> {
    let mut enc = SegmentEncoder::to(out, p.schema.clone())?;
    for chunk in keys.chunks(BATCH_ROWS) {
        let pieces: Vec<u32> = chunk
            .iter()
            .enumerate()
            .filter(|(_, k)| k.piece)
            .map(|(i, _)| i as u32)
            .collect();
        let idx: Vec<(usize, usize)> = chunk
            .iter()
            .map(|k| (k.part as usize, k.row as usize))
            .collect();
        let mut cols = Vec::with_capacity(p.schema.fields().len());
        for c in 0..p.schema.fields().len() {
            let arrays: Vec<&dyn Array> = p.parts.iter().map(|b| b.column(c).as_ref()).collect();
            cols.push(arrow::compute::interleave(&arrays, &idx)?);
        }
        enc.push(&RecordBatch::try_new(p.schema.clone(), cols)?, pieces)?;
    }
    enc.finish_into(path, bloom_path, tier, level)
}

impl Engine {
    /// Run compaction until its policy has nothing left to merge (`force`:
    /// also every small segment and every segment with dead rows, as
    /// `CHECKPOINT` does). Returns the number of merges published.
    pub async fn compact(&self, force: bool) -> Result<usize> {
        Ok(self.compact_rounds(force, 64).await?.0)
    }

    /// Up to `rounds` rounds of compaction (each plans once and runs one
    /// merge per table): the merges published, and whether the last round
    /// still made progress (there may be more to do).
    pub(crate) async fn compact_rounds(&self, force: bool, rounds: usize) -> Result<(usize, bool)> {
        let _one = self.compacting.lock().await;
        let mut published = 0;
        let mut more = false;
        for _round in 0..rounds {
            more = false;
            let epoch = self.erase_epoch.load(Ordering::SeqCst);
            let jobs: Vec<Job> = {
                let s = self.state.read();
                s.tables
                    .values()
                    .filter_map(|t| plan(t, &self.compaction, force))
                    .collect()
            };
            if jobs.is_empty() {
                break;
            }
            let mut progressed = false;
            for job in jobs {
                let out = self.run_job(&job).await?;
                if self.publish(&job, out, epoch).await? {
                    published += 1;
                    progressed = true;
                    self.counters.compactions.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.counters
                        .compactions_discarded
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            if !progressed {
                break;
            }
            more = true;
        }
        Ok((published, more))
    }

    /// Merge a job's inputs and write the output segments (not published).
    async fn run_job(&self, job: &Job) -> Result<Output> {
        let mut files = Vec::with_capacity(job.inputs.len());
        for e in &job.inputs {
            let path = e.seg.meta.path.clone();
            let bytes = self
                .storage
                .get_mapped(&path)
                .await?
                .ok_or_else(|| Error::Corrupt {
                    path: path.clone(),
                    reason: "segment listed in the manifest is missing".into(),
                })?;
            let f = tokio::task::spawn_blocking(move || SegmentFile::open(&path, bytes))
                .await
                .map_err(task_failed)??;
            files.push(Arc::new(f));
        }
        let dvs: Vec<Arc<DeletionVector>> = job.inputs.iter().map(|e| e.deleted.clone()).collect();
        // Names derive from the inputs (a pure function of them).
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for e in &job.inputs {
            h.update(e.seg.meta.path.as_bytes());
            h.update(&(e.deleted.count() as u64).to_le_bytes());
        }
        for c in &job.schema.columns {
            h.update(c.name().as_bytes());
            h.update(format!("{:?}", c.data_type()).as_bytes());
        }
        let job_hash = h.digest();
        let prepared = {
            let (files, dvs, schema, tier) =
                (files.clone(), dvs.clone(), job.schema.clone(), job.out_tier);
            tokio::task::spawn_blocking(move || prepare(&files, &dvs, &schema, tier))
                .await
                .map_err(task_failed)??
        };
        let prepared = Arc::new(prepared);
        let rows_per_segment = ((self.compaction.target_bytes as f64 / prepared.bytes_per_row)
            as usize)
            .max(BATCH_ROWS);
        let mut row_map: Vec<Vec<u64>> = prepared
            .input_rows
            .iter()
            .map(|&n| vec![DROPPED; n])
            .collect();
        let mut segments = Vec::new();
        let dir = table_dir(&job.table);
        for (ti, (tier, keys)) in prepared.keys.iter().enumerate() {
            // Cut at group changes, then at the target size.
            let mut cuts: Vec<(usize, usize)> = Vec::new();
            let mut start = 0;
            while start < keys.len() {
                let g = keys[start].group;
                let mut end = start;
                while end < keys.len() && keys[end].group == g && end - start < rows_per_segment {
                    end += 1;
                }
                cuts.push((start, end));
                start = end;
            }
            for (ci, &(from, to)) in cuts.iter().enumerate() {
                let chunk = &keys[from..to];
                let k = segments.len() as u64;
                for (out_row, key) in chunk.iter().enumerate() {
                    let (input, base) = prepared.part_origin[key.part as usize];
                    row_map[input][base + key.row as usize] = (k << 32) | out_row as u64;
                }
                let stem = format!(
                    "{dir}/{}-{:02}-{job_hash:016x}-{ti}{ci:04}",
                    tier.name(),
                    job.level
                );
                let (path, bloom_path) = (format!("{stem}.arrow"), format!("{stem}.bloom"));
                let p = prepared.clone();
                let (tier, level, pth, bpth) = (*tier, job.level, path.clone(), bloom_path.clone());
                let storage = self.storage.clone();
                let (sink, meta, bloom) = tokio::task::spawn_blocking(move || {
                    let keys = &p.keys[ti].1;
                    let sink = storage.sink(&pth)?;
                    encode_keys(&p, &keys[from..to], sink, &pth, &bpth, tier, level)
                })
                .await
                .map_err(task_failed)??;
                self.storage.finish_sink(&path, sink).await?;
                self.storage.put(&bloom_path, bloom.to_bytes()).await?;
                segments.push((meta, bloom));
            }
        }
        Ok(Output { segments, row_map })
    }

    /// Swap a job's inputs for its outputs and publish a manifest. `false`
    /// (the output is discarded) if the inputs changed meanwhile: merged by
    /// another compaction, rewritten by an erase, or replaced by a reload.
    async fn publish(&self, job: &Job, out: Output, epoch: u64) -> Result<bool> {
        let _w = self.writer.lock().await;
        if self.erase_epoch.load(Ordering::SeqCst) != epoch {
            return Ok(false);
        }
        {
            let mut s = self.state.write();
            let Some(t) = s.tables.get_mut(&job.table) else {
                return Ok(false);
            };
            let mut idx = Vec::with_capacity(job.inputs.len());
            for inp in &job.inputs {
                match t
                    .segments
                    .iter()
                    .position(|e| Arc::ptr_eq(&e.seg, &inp.seg))
                {
                    Some(i) => idx.push(i),
                    None => return Ok(false),
                }
            }
            // Rows that commits retired while the job ran: dead in the output too.
            let mut dvs: Vec<DeletionVector> = out
                .segments
                .iter()
                .map(|(m, _)| DeletionVector::with_rows(m.rows as usize))
                .collect();
            let mut dirty = vec![false; dvs.len()];
            for (k, inp) in job.inputs.iter().enumerate() {
                let now = &t.segments[idx[k]].deleted;
                if now.count() == inp.deleted.count() {
                    continue;
                }
                for r in 0..inp.seg.meta.rows as usize {
                    if now.contains(r) && !inp.deleted.contains(r) {
                        let pos = out.row_map[k][r];
                        if pos != DROPPED {
                            dvs[(pos >> 32) as usize].insert((pos & 0xffff_ffff) as usize);
                            dirty[(pos >> 32) as usize] = true;
                        }
                    }
                }
            }
            idx.sort_unstable_by(|a, b| b.cmp(a));
            for i in idx {
                t.segments.remove(i);
            }
            for (((meta, bloom), dv), dirty) in out.segments.into_iter().zip(dvs).zip(dirty) {
                t.segments.push(SegmentEntry {
                    seg: Arc::new(Segment::with_bloom(meta, bloom)),
                    deleted: Arc::new(dv),
                    deleted_path: None,
                    dirty,
                });
            }
        }
        self.flush_locked().await?;
        Ok(true)
    }

    /// Flush, compact until settled (every small or partly dead segment
    /// merged) and collect garbage: the `CHECKPOINT` statement.
    pub async fn checkpoint(&self) -> Result<crate::gc::GcReport> {
        self.flush().await?;
        self.compact(true).await?;
        self.collect_garbage().await
    }
}

/// Compaction rounds the background task runs before it checks whether
/// collection is due.
const BACKGROUND_ROUNDS: usize = 4;

/// Compact in the background after flushes, and collect garbage
/// periodically, for as long as the engine lives.
pub(crate) fn spawn_background(engine: &Arc<Engine>) {
    let weak = Arc::downgrade(engine);
    let wake = engine.wake.clone();
    let interval = engine.gc.interval;
    tokio::spawn(async move {
        let mut last_gc = std::time::Instant::now();
        let mut more = false;
        loop {
            if !more {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            let Some(e) = weak.upgrade() else { break };
            // A few rounds at a time, so that under a steady stream of
            // flushes collection still gets its turn between them.
            more = match e.compact_rounds(false, BACKGROUND_ROUNDS).await {
                Ok((_, more)) => more,
                // A runtime shutting down (the end of `strata import`, of
                // a test) cancels a round's blocking tasks: not a failure.
                Err(Error::Internal(m)) if m == SHUTTING_DOWN => break,
                Err(err) => {
                    tracing::warn!("background compaction failed (will retry): {err}");
                    false
                }
            };
            if last_gc.elapsed() >= interval {
                last_gc = std::time::Instant::now();
                if let Err(err) = e.collect_garbage().await {
                    tracing::warn!("garbage collection failed (will retry): {err}");
                }
            }
        }
    });
}

/// What a compaction round's blocking task ended with, when it did not
/// return.
const SHUTTING_DOWN: &str = "compaction stopped: the runtime is shutting down";

fn task_failed(e: tokio::task::JoinError) -> Error {
    if e.is_cancelled() {
        // Blocking tasks are never aborted: only a runtime shutting down
        // cancels them.
        Error::Internal(SHUTTING_DOWN.into())
    } else {
        Error::Internal(format!("compaction task failed: {e}"))
    }
}
