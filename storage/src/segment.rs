//! Segments: immutable Arrow IPC files of rectangles, sorted by entity hash,
//! written as record batches that each carry their own statistics (in the
//! file footer), with a bloom filter beside them and pruning metadata in the
//! manifest. A segment is read in parts: its footer is parsed once, and a scan
//! decodes only the batches (and columns) it needs, zero-copy from a
//! memory-mapped local file (see `reader`).
//!
//! Column order in a segment file: `_iid` (UInt64), `_valid_from`, `_valid_to`,
//! `_system_from`, `_system_to` (Timestamp µs UTC, `OPEN` = i64::MAX), then the
//! table's columns as of the write (`_id` first), then the two view columns
//! `_view_from` (Timestamp µs UTC) and `_view_only` (Boolean) that files
//! written before them lack. The format is specified in docs/format.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray, UInt64Array};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType, UInt64Type};
use arrow::ipc::reader::FileDecoder;
use arrow::ipc::writer::FileWriter;
use arrow::ipc::{Block, MetadataVersion};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{timestamp_type, IID, SYSTEM_FROM, SYSTEM_TO, VALID_FROM, VALID_TO};
use crate::store::Storage;
use crate::temporal::Coordinate;
use crate::time::{Micros, OPEN};

/// Number of leading system columns in a segment file.
pub const SYSTEM_COLUMNS: usize = 5;

/// Trailing column: the system time from which a row belongs to the state
/// read at a past system time (its **view**), which lasts until
/// `_system_to`. It is `_system_from` for a row as first written, the
/// retiring transaction's time for the rows a retirement cuts a rectangle
/// into, and the retired rectangle's own for its view-only copy
/// (docs/format.md). Files without the column: `_system_from`.
pub const VIEW_FROM: &str = "_view_from";
/// Trailing column: the row belongs to views only, not to the
/// decomposition (`FOR ALL SYSTEM_TIME` and system-time ranges skip it): a
/// retired rectangle kept whole for reads at the system times it was
/// believed. Files without the column: false.
pub const VIEW_ONLY: &str = "_view_only";

/// Footer metadata key holding the per-batch statistics (a JSON array).
pub const BATCH_STATS_KEY: &str = "strata:batches";

/// Which part of the bitemporal plane a segment holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A flush of the live index: current and historical rectangles mixed.
    #[default]
    L0,
    /// Compacted rectangles visible at the present: `_system_to` = ∞ and
    /// `_valid_to` = ∞.
    Current,
    /// Compacted rectangles still believed (`_system_to` = ∞) about a bounded
    /// valid period (`_valid_to` < ∞): mostly the valid-time past.
    Bounded,
    /// Compacted superseded rectangles (`_system_to` < ∞).
    History,
}

impl Tier {
    /// The tier a compacted rectangle belongs to.
    pub fn of(valid_to: Micros, system_to: Micros) -> Tier {
        match (system_to == OPEN, valid_to == OPEN) {
            (true, true) => Tier::Current,
            (true, false) => Tier::Bounded,
            (false, _) => Tier::History,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::L0 => "l0",
            Tier::Current => "current",
            Tier::Bounded => "bounded",
            Tier::History => "history",
        }
    }
}

/// Per-column statistics, kept in the manifest (per segment) and in the
/// segment footer (per batch) for pruning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnStats {
    pub name: String,
    pub null_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
}

/// The bounds of a set of rectangles: entity hashes and the four temporal columns.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bounds {
    pub iid_min: u64,
    pub iid_max: u64,
    pub valid_from_min: Micros,
    pub valid_from_max: Micros,
    pub valid_to_min: Micros,
    pub valid_to_max: Micros,
    pub system_from_min: Micros,
    pub system_from_max: Micros,
    pub system_to_min: Micros,
    pub system_to_max: Micros,
    /// The least `_view_from` (absent in statistics written before the
    /// column: `system_from_min` stands for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_from_min: Option<Micros>,
    /// How many rows have a non-empty view (`_view_from` < `_system_to`);
    /// a read as of a system time skips a part with none (the rows a
    /// retirement closes belong to the decomposition only). Absent without
    /// the column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_rows: Option<u64>,
}

impl Bounds {
    /// Could a rectangle within these bounds be visible at `coord`? A read
    /// as of a system time shows the rows whose view holds that time, and a
    /// view never starts before `_system_from`.
    pub fn may_match(&self, coord: &Coordinate) -> bool {
        let system = match coord.system {
            crate::temporal::TimeSelector::AsOf(_) if self.view_rows == Some(0) => false,
            crate::temporal::TimeSelector::AsOf(_) => coord.system.may_match(
                self.view_from_min
                    .map_or(self.system_from_min, |v| v.max(self.system_from_min)),
                self.system_to_max,
            ),
            _ => coord
                .system
                .may_match(self.system_from_min, self.system_to_max),
        };
        system
            && coord
                .valid
                .may_match(self.valid_from_min, self.valid_to_max)
    }

    pub fn may_contain(&self, iid: u64) -> bool {
        self.iid_min <= iid && iid <= self.iid_max
    }

    fn of(batch: &RecordBatch) -> Bounds {
        let iids = batch.column(0).as_primitive::<UInt64Type>().values();
        let ts = |i: usize| {
            batch
                .column(i)
                .as_primitive::<TimestampMicrosecondType>()
                .values()
        };
        let min_max = |v: &[i64]| {
            (
                v.iter().copied().min().unwrap_or(0),
                v.iter().copied().max().unwrap_or(0),
            )
        };
        let (vf0, vf1) = min_max(ts(1));
        let (vt0, vt1) = min_max(ts(2));
        let (sf0, sf1) = min_max(ts(3));
        let (st0, st1) = min_max(ts(4));
        let view = batch.schema().index_of(VIEW_FROM).ok();
        let view_from_min = view.map(|i| min_max(ts(i)).0);
        let view_rows =
            view.map(|i| ts(i).iter().zip(ts(4)).filter(|(vw, st)| vw < st).count() as u64);
        Bounds {
            iid_min: iids.first().copied().unwrap_or(0),
            iid_max: iids.last().copied().unwrap_or(0),
            valid_from_min: vf0,
            valid_from_max: vf1,
            valid_to_min: vt0,
            valid_to_max: vt1,
            system_from_min: sf0,
            system_from_max: sf1,
            system_to_min: st0,
            system_to_max: st1,
            view_from_min,
            view_rows,
        }
    }
}

/// What the manifest records about one segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    /// Object path of the Arrow IPC file.
    pub path: String,
    /// Object path of the bloom filter over `_iid`.
    pub bloom_path: String,
    pub rows: u64,
    #[serde(default)]
    pub tier: Tier,
    /// Compaction level within the tier (0 for flushes).
    #[serde(default)]
    pub level: u32,
    /// Size of the segment file in bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Number of record batches in the file.
    #[serde(default)]
    pub batches: u32,
    #[serde(flatten)]
    pub bounds: Bounds,
    pub columns: Vec<ColumnStats>,
    /// Rows flagged as version pieces (see `BatchStats::pieces`); `None` for
    /// a segment written before pieces were flagged, whose rows all count
    /// as pieces.
    #[serde(default)]
    pub pieces: Option<u64>,
}

impl SegmentMeta {
    /// Could the segment hold rows flagged as pieces?
    pub fn may_hold_pieces(&self) -> bool {
        self.pieces != Some(0)
    }
    /// Could the segment hold rows not flagged as pieces?
    pub fn may_hold_whole(&self) -> bool {
        self.pieces.is_some_and(|p| p < self.rows)
    }
}

/// Statistics of one record batch of a segment (in the file footer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchStats {
    pub rows: u32,
    #[serde(flatten)]
    pub bounds: Bounds,
    pub columns: Vec<ColumnStats>,
    /// Rows of this batch (ascending, from 0) that are **pieces**: rows
    /// that may share their entity and `_system_from` with another row of
    /// the table (a version split by a later transaction, or an entity
    /// written twice in one transaction). Only pieces can merge at a past
    /// system time (docs/format.md). `None` (a file written before the
    /// flag): every row counts as a piece.
    #[serde(default)]
    pub pieces: Option<Vec<u32>>,
}

/// A bloom filter over entity hashes (the hashes are already uniform, so the
/// probe positions are derived from the hash itself by double hashing).
#[derive(Debug, Clone)]
pub struct Bloom {
    words: Vec<u64>,
}

const BLOOM_PROBES: u64 = 7;

impl Bloom {
    pub fn build(iids: &[u64]) -> Bloom {
        let bits = (iids.len().max(1) * 10).next_power_of_two().max(64);
        let mut b = Bloom {
            words: vec![0; bits / 64],
        };
        for &h in iids {
            b.insert(h);
        }
        b
    }

    fn positions(&self, h: u64) -> impl Iterator<Item = usize> {
        let mask = (self.words.len() * 64 - 1) as u64;
        let h1 = h;
        let h2 = h.rotate_left(32) | 1;
        (0..BLOOM_PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) & mask) as usize)
    }

    fn insert(&mut self, h: u64) {
        let pos: Vec<usize> = self.positions(h).collect();
        for p in pos {
            self.words[p / 64] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, h: u64) -> bool {
        self.positions(h)
            .all(|p| self.words[p / 64] & (1 << (p % 64)) != 0)
    }

    pub fn size_bytes(&self) -> usize {
        self.words.len() * 8
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.words.len() * 8);
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        Bytes::from(out)
    }

    pub fn from_bytes(path: &str, b: &[u8]) -> Result<Bloom> {
        if b.is_empty() || b.len() % 8 != 0 || !(b.len() / 8).is_power_of_two() {
            return Err(Error::Corrupt {
                path: path.into(),
                reason: "bloom filter size is not a power of two of 64-bit words".into(),
            });
        }
        Ok(Bloom {
            words: b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        })
    }
}

/// The schema of a segment file for a table schema.
pub fn segment_schema(table_fields: &[Field]) -> Arc<Schema> {
    let mut fields = vec![
        Field::new(IID, DataType::UInt64, false),
        Field::new(VALID_FROM, timestamp_type(), false),
        Field::new(VALID_TO, timestamp_type(), false),
        Field::new(SYSTEM_FROM, timestamp_type(), false),
        Field::new(SYSTEM_TO, timestamp_type(), false),
    ];
    fields.extend(table_fields.iter().cloned());
    fields.push(Field::new(VIEW_FROM, timestamp_type(), false));
    fields.push(Field::new(VIEW_ONLY, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// An opened segment file: the bytes (memory-mapped when local) and its
/// parsed footer. Decoding a batch builds arrays that point into the bytes.
#[derive(Debug)]
pub struct SegmentFile {
    path: String,
    buf: Buffer,
    schema: SchemaRef,
    version: MetadataVersion,
    blocks: Vec<Block>,
    dictionaries: Vec<Block>,
    /// First row of each batch; `offsets[batches]` = rows.
    offsets: Vec<usize>,
    pub stats: Vec<BatchStats>,
    /// Index of `_view_from` (`_view_only` follows it), if the file has them.
    view: Option<usize>,
    /// Per batch, per file column: already decoded once from these bytes
    /// with arrow's validation (offsets within their buffers, UTF-8, …).
    /// The bytes of an open file never change, so later decodes of those
    /// columns skip it: for a point lookup, which takes a few rows out of a
    /// batch of up to `BATCH_ROWS`, validating the whole batch's strings
    /// again on every lookup was ~95% of the work (1.3 ms per `SELECT *`
    /// of a TPC-H order, SF 1).
    validated: Vec<Vec<AtomicBool>>,
    /// Per batch, every column decoded once for point lookups
    /// ([`SegmentFile::decoded`]).
    decoded: Vec<std::sync::OnceLock<RecordBatch>>,
}

impl SegmentFile {
    pub fn open(path: &str, bytes: Bytes) -> Result<SegmentFile> {
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_string(),
            reason,
        };
        let buf = Buffer::from(bytes);
        if buf.len() < 10 {
            return Err(corrupt("segment file too short".into()));
        }
        let trailer: [u8; 10] = buf[buf.len() - 10..].try_into().unwrap();
        let footer_len = arrow::ipc::reader::read_footer_length(trailer)
            .map_err(|e| corrupt(format!("not an Arrow IPC file: {e}")))?;
        if footer_len + 10 > buf.len() {
            return Err(corrupt("footer length beyond the file".into()));
        }
        let footer_bytes = &buf[buf.len() - 10 - footer_len..buf.len() - 10];
        let footer = arrow::ipc::root_as_footer(footer_bytes)
            .map_err(|e| corrupt(format!("bad Arrow IPC footer: {e}")))?;
        let fb_schema = footer
            .schema()
            .ok_or_else(|| corrupt("Arrow IPC footer without a schema".into()))?;
        let schema = Arc::new(arrow::ipc::convert::fb_to_schema(fb_schema));
        let blocks: Vec<Block> = footer
            .recordBatches()
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let dictionaries: Vec<Block> = footer
            .dictionaries()
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let mut stats_json = None;
        if let Some(kv) = footer.custom_metadata() {
            for e in kv.iter() {
                if e.key() == Some(BATCH_STATS_KEY) {
                    stats_json = e.value().map(|s| s.to_string());
                }
            }
        }
        let version = footer.version();
        for b in blocks.iter().chain(dictionaries.iter()) {
            let end = (b.offset() as i128) + b.metaDataLength() as i128 + b.bodyLength() as i128;
            if b.offset() < 0 || end > buf.len() as i128 {
                return Err(corrupt("a batch lies beyond the end of the file".into()));
            }
        }
        let mut f = SegmentFile {
            path: path.to_string(),
            buf,
            schema,
            version,
            blocks,
            dictionaries,
            offsets: vec![],
            stats: vec![],
            view: None,
            validated: vec![],
            decoded: vec![],
        };
        if f.schema.fields().len() < SYSTEM_COLUMNS + 1
            || f.schema.field(0).name() != IID
            || f.schema.field(SYSTEM_COLUMNS).name() != crate::schema::ID
        {
            return Err(corrupt("not a Strata segment (unexpected columns)".into()));
        }
        if let Ok(i) = f.schema.index_of(VIEW_FROM) {
            let n = f.schema.fields().len();
            let ok = i + 2 == n
                && matches!(f.schema.field(i).data_type(), DataType::Timestamp(_, _))
                && f.schema.field(i + 1).name() == VIEW_ONLY
                && f.schema.field(i + 1).data_type() == &DataType::Boolean;
            if !ok {
                return Err(corrupt(format!(
                    "`{VIEW_FROM}` and `{VIEW_ONLY}` must be the last two columns (timestamp, boolean)"
                )));
            }
            f.view = Some(i);
        }
        let stats: Vec<BatchStats> = match stats_json {
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| corrupt(format!("bad batch statistics in the footer: {e}")))?,
            // A segment written before batch statistics: derive them once.
            None => {
                let mut v = Vec::with_capacity(f.blocks.len());
                for i in 0..f.blocks.len() {
                    let b = f.decode(i, Some(&[0, 1, 2, 3, 4]))?;
                    v.push(BatchStats {
                        rows: b.num_rows() as u32,
                        bounds: Bounds::of(&b),
                        columns: vec![],
                        pieces: None,
                    });
                }
                v
            }
        };
        if stats.len() != f.blocks.len() {
            return Err(corrupt(format!(
                "footer has statistics for {} batches, file has {}",
                stats.len(),
                f.blocks.len()
            )));
        }
        for (i, st) in stats.iter().enumerate() {
            if let Some(p) = &st.pieces {
                if p.windows(2).any(|w| w[0] >= w[1]) || p.last().is_some_and(|&r| r >= st.rows) {
                    return Err(corrupt(format!(
                        "batch {i}: piece rows are not ascending row numbers within the batch"
                    )));
                }
            }
        }
        let mut offsets = Vec::with_capacity(stats.len() + 1);
        let mut o = 0usize;
        for s in &stats {
            offsets.push(o);
            o += s.rows as usize;
        }
        offsets.push(o);
        f.offsets = offsets;
        f.stats = stats;
        let columns = f.schema.fields().len();
        f.validated = (0..f.blocks.len())
            .map(|_| (0..columns).map(|_| AtomicBool::new(false)).collect())
            .collect();
        f.decoded = (0..f.blocks.len())
            .map(|_| std::sync::OnceLock::new())
            .collect();
        Ok(f)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn num_batches(&self) -> usize {
        self.blocks.len()
    }

    /// Index of the `_view_from` column (`_view_only` is the next), if the
    /// file was written with them.
    pub fn view_column(&self) -> Option<usize> {
        self.view
    }

    /// End of the table's columns (`SYSTEM_COLUMNS..user_end()`): the view
    /// columns, or the end of the file's columns.
    pub fn user_end(&self) -> usize {
        self.view.unwrap_or(self.schema.fields().len())
    }

    pub fn rows(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }

    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// First row (segment-wide) of batch `i`.
    pub fn batch_offset(&self, i: usize) -> usize {
        self.offsets[i]
    }

    /// The batch holding segment row `row`, and the row within it.
    pub fn locate(&self, row: usize) -> (usize, usize) {
        let b = self.offsets.partition_point(|&o| o <= row) - 1;
        (b, row - self.offsets[b])
    }

    /// Per row of batch `b`: is it a piece (`BatchStats::pieces`)?
    pub fn piece_mask(&self, b: usize) -> Vec<bool> {
        let st = &self.stats[b];
        match &st.pieces {
            None => vec![true; st.rows as usize],
            Some(p) => {
                let mut m = vec![false; st.rows as usize];
                for &r in p {
                    m[r as usize] = true;
                }
                m
            }
        }
    }

    /// Is segment row `row` a piece (`BatchStats::pieces`)?
    pub fn is_piece(&self, row: usize) -> bool {
        let (b, r) = self.locate(row);
        match &self.stats[b].pieces {
            None => true,
            Some(p) => p.binary_search(&(r as u32)).is_ok(),
        }
    }

    /// Batches whose entity-hash range includes `iid` (rows are sorted by `_iid`).
    pub fn batches_of(&self, iid: u64) -> std::ops::Range<usize> {
        let lo = self.stats.partition_point(|s| s.bounds.iid_max < iid);
        let hi = self.stats.partition_point(|s| s.bounds.iid_min <= iid);
        lo..hi.max(lo)
    }

    /// Bytes of batch `i`'s message and body.
    pub fn batch_bytes(&self, i: usize) -> usize {
        let b = &self.blocks[i];
        b.metaDataLength() as usize + b.bodyLength() as usize
    }

    /// Batch `i` with every column, decoded on first use and kept while the
    /// file is open. For point lookups, which take a few rows of a batch:
    /// parsing the batch's IPC message and building its arrays again on
    /// every lookup cost more than finding the rows. The arrays are views of
    /// the file's bytes (no copy), so keeping them costs a few hundred bytes
    /// per column; the first use validates the whole batch once.
    pub fn decoded(&self, i: usize) -> Result<RecordBatch> {
        if let Some(b) = self.decoded[i].get() {
            return Ok(b.clone());
        }
        let b = self.decode(i, None)?;
        Ok(self.decoded[i].get_or_init(|| b).clone())
    }

    /// Decode batch `i`, only the given file columns (all if `None`).
    pub fn decode(&self, i: usize, projection: Option<&[usize]>) -> Result<RecordBatch> {
        let all: Vec<usize>;
        let columns = match projection {
            Some(p) => p,
            None => {
                all = (0..self.schema.fields().len()).collect();
                &all
            }
        };
        let seen = &self.validated[i];
        let known = columns
            .iter()
            .all(|&c| seen.get(c).is_some_and(|v| v.load(Ordering::Acquire)));
        let mut d = FileDecoder::new(self.schema.clone(), self.version);
        if let Some(p) = projection {
            d = d.with_projection(p.to_vec());
        }
        if known {
            // SAFETY: these columns of this batch (and the dictionaries,
            // read by every decode) were validated by an earlier decode of
            // the same immutable bytes (`validated`).
            d = unsafe { d.with_skip_validation(true) };
        }
        let corrupt = |e: arrow::error::ArrowError| Error::Corrupt {
            path: self.path.clone(),
            reason: format!("bad record batch: {e}"),
        };
        for b in &self.dictionaries {
            let data = self.block_buf(b);
            d.read_dictionary(b, &data).map_err(corrupt)?;
        }
        let block = &self.blocks[i];
        let data = self.block_buf(block);
        let batch = d
            .read_record_batch(block, &data)
            .map_err(corrupt)?
            .ok_or_else(|| Error::Corrupt {
                path: self.path.clone(),
                reason: format!("batch {i} is empty"),
            })?;
        let want = self.offsets[i + 1] - self.offsets[i];
        if batch.num_rows() != want {
            return Err(Error::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "batch {i} has {} rows, its statistics say {want}",
                    batch.num_rows()
                ),
            });
        }
        if !known {
            for &c in columns {
                if let Some(v) = seen.get(c) {
                    v.store(true, Ordering::Release);
                }
            }
        }
        Ok(batch)
    }

    fn block_buf(&self, b: &Block) -> Buffer {
        let len = b.metaDataLength() as usize + b.bodyLength() as usize;
        self.buf.slice_with_length(b.offset() as usize, len)
    }

    /// Index of a column in the file, by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.schema.index_of(name).ok()
    }
}

/// A segment: its metadata, its bloom filter (loaded on first need), and its
/// file while it is open (see `reader::OpenFiles`).
#[derive(Debug)]
pub struct Segment {
    pub meta: SegmentMeta,
    bloom: tokio::sync::OnceCell<Bloom>,
    pub(crate) file: parking_lot::Mutex<Option<Arc<SegmentFile>>>,
}

impl Segment {
    pub fn new(meta: SegmentMeta) -> Segment {
        Segment {
            meta,
            bloom: tokio::sync::OnceCell::new(),
            file: parking_lot::Mutex::new(None),
        }
    }

    pub fn with_bloom(meta: SegmentMeta, bloom: Bloom) -> Segment {
        let s = Segment::new(meta);
        let _ = s.bloom.set(bloom);
        s
    }

    /// Could the segment hold entity hash `iid`? Without its bloom filter
    /// loaded, only the hash range answers (conservatively).
    pub fn may_contain(&self, iid: u64) -> bool {
        self.meta.bounds.may_contain(iid) && self.bloom.get().is_none_or(|b| b.may_contain(iid))
    }

    pub fn bloom_loaded(&self) -> bool {
        self.bloom.get().is_some()
    }

    /// Load the bloom filter if it is not in memory yet.
    pub async fn load_bloom(&self, storage: &Storage) -> Result<()> {
        self.bloom
            .get_or_try_init(|| async {
                let b =
                    storage
                        .get(&self.meta.bloom_path)
                        .await?
                        .ok_or_else(|| Error::Corrupt {
                            path: self.meta.bloom_path.clone(),
                            reason: "bloom filter listed in the manifest is missing".into(),
                        })?;
                Bloom::from_bytes(&self.meta.bloom_path, &b)
            })
            .await?;
        Ok(())
    }

    /// The file, if it is open now.
    pub fn opened(&self) -> Option<Arc<SegmentFile>> {
        self.file.lock().clone()
    }

    /// Is this segment's file open and holding any current rectangle?
    pub fn has_open_rows(&self) -> bool {
        self.meta.bounds.system_to_max == OPEN
    }
}

/// Rows per record batch inside a segment file.
pub const BATCH_ROWS: usize = 65_536;

/// Counts the bytes written through it.
struct Counted<W> {
    inner: W,
    n: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a segment file one record batch at a time into `W` (memory, or
/// a file being written in place: `store::ObjectSink`), so that a flush or
/// a merge holds one batch at hand, never every batch of the segment
/// decoded at once, nor (on a local store) the encoded file. Batches must
/// come sorted by `_iid`, each at most `BATCH_ROWS` rows, all with the same
/// schema.
pub struct SegmentEncoder<W: std::io::Write = Vec<u8>> {
    writer: FileWriter<Counted<W>>,
    stats: Vec<BatchStats>,
    iids: Vec<u64>,
}

impl SegmentEncoder<Vec<u8>> {
    pub fn new(schema: SchemaRef) -> Result<SegmentEncoder<Vec<u8>>> {
        SegmentEncoder::to(Vec::new(), schema)
    }
}

impl<W: std::io::Write> SegmentEncoder<W> {
    pub fn to(out: W, schema: SchemaRef) -> Result<SegmentEncoder<W>> {
        Ok(SegmentEncoder {
            writer: FileWriter::try_new(Counted { inner: out, n: 0 }, &schema)?,
            stats: Vec::new(),
            iids: Vec::new(),
        })
    }

    /// Append one batch; `pieces` are its piece rows (ascending).
    pub fn push(&mut self, b: &RecordBatch, pieces: Vec<u32>) -> Result<()> {
        self.stats.push(BatchStats {
            rows: b.num_rows() as u32,
            bounds: Bounds::of(b),
            columns: column_stats_of(b),
            pieces: Some(pieces),
        });
        self.iids
            .extend_from_slice(b.column(0).as_primitive::<UInt64Type>().values());
        self.writer.write(b)?;
        Ok(())
    }

    /// Finish the file: the output it was written to, the manifest
    /// metadata and the bloom filter.
    pub fn finish_into(
        mut self,
        path: &str,
        bloom_path: &str,
        tier: Tier,
        level: u32,
    ) -> Result<(W, SegmentMeta, Bloom)> {
        if self.stats.is_empty() {
            return Err(Error::Internal("encoding an empty segment".into()));
        }
        self.writer.write_metadata(
            BATCH_STATS_KEY,
            serde_json::to_string(&self.stats).expect("statistics serialize"),
        );
        self.writer.finish()?;
        let out = self.writer.into_inner()?;
        let stats = self.stats;
        let rows: u64 = stats.iter().map(|s| s.rows as u64).sum();
        let bounds = merge_bounds(stats.iter().map(|s| s.bounds));
        let columns = merge_column_stats(&stats);
        let pieces: u64 = stats
            .iter()
            .map(|s| s.pieces.as_ref().map_or(0, |p| p.len() as u64))
            .sum();
        let meta = SegmentMeta {
            path: path.to_string(),
            bloom_path: bloom_path.to_string(),
            rows,
            tier,
            level,
            bytes: out.n,
            batches: stats.len() as u32,
            bounds,
            columns,
            pieces: Some(pieces),
        };
        Ok((out.inner, meta, Bloom::build(&self.iids)))
    }
}

impl SegmentEncoder<Vec<u8>> {
    /// Finish the file: its bytes, the manifest metadata and the bloom filter.
    pub fn finish(
        self,
        path: &str,
        bloom_path: &str,
        tier: Tier,
        level: u32,
    ) -> Result<(Bytes, SegmentMeta, Bloom)> {
        let (buf, meta, bloom) = self.finish_into(path, bloom_path, tier, level)?;
        Ok((Bytes::from(buf), meta, bloom))
    }
}

/// Encode segment batches (already sorted by `_iid`, each at most
/// `BATCH_ROWS` rows, all with the same schema) as an Arrow IPC file with
/// per-batch statistics in its footer, and compute the manifest metadata
/// and bloom filter. `pieces[i]` lists batch `i`'s piece rows (ascending).
pub fn encode_batches(
    path: &str,
    bloom_path: &str,
    tier: Tier,
    level: u32,
    batches: &[RecordBatch],
    pieces: &[Vec<u32>],
) -> Result<(Bytes, SegmentMeta, Bloom)> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::Internal("encoding an empty segment".into()))?;
    if pieces.len() != batches.len() {
        return Err(Error::Internal(format!(
            "encoding {} batches with piece lists for {}",
            batches.len(),
            pieces.len()
        )));
    }
    let mut enc = SegmentEncoder::new(schema)?;
    for (b, p) in batches.iter().zip(pieces) {
        enc.push(b, p.clone())?;
    }
    enc.finish(path, bloom_path, tier, level)
}

/// Encode one sorted batch of any size (split into `BATCH_ROWS` batches);
/// `pieces` are its piece rows, ascending.
pub fn encode(
    path: &str,
    bloom_path: &str,
    tier: Tier,
    level: u32,
    batch: &RecordBatch,
    pieces: &[u32],
) -> Result<(Bytes, SegmentMeta, Bloom)> {
    let mut parts = Vec::new();
    let mut lists = Vec::new();
    let mut off = 0;
    let mut next = 0;
    while off < batch.num_rows() {
        let n = BATCH_ROWS.min(batch.num_rows() - off);
        parts.push(batch.slice(off, n));
        let mut l = Vec::new();
        while next < pieces.len() && (pieces[next] as usize) < off + n {
            l.push(pieces[next] - off as u32);
            next += 1;
        }
        lists.push(l);
        off += n;
    }
    if parts.is_empty() {
        parts.push(batch.clone());
        lists.push(Vec::new());
    }
    encode_batches(path, bloom_path, tier, level, &parts, &lists)
}

fn merge_bounds(it: impl Iterator<Item = Bounds>) -> Bounds {
    let mut out: Option<Bounds> = None;
    for b in it {
        out = Some(match out {
            None => b,
            Some(o) => Bounds {
                iid_min: o.iid_min.min(b.iid_min),
                iid_max: o.iid_max.max(b.iid_max),
                valid_from_min: o.valid_from_min.min(b.valid_from_min),
                valid_from_max: o.valid_from_max.max(b.valid_from_max),
                valid_to_min: o.valid_to_min.min(b.valid_to_min),
                valid_to_max: o.valid_to_max.max(b.valid_to_max),
                system_from_min: o.system_from_min.min(b.system_from_min),
                system_from_max: o.system_from_max.max(b.system_from_max),
                system_to_min: o.system_to_min.min(b.system_to_min),
                system_to_max: o.system_to_max.max(b.system_to_max),
                // A part without the column stands for itself by its
                // `_system_from` minimum.
                view_from_min: match (o.view_from_min, b.view_from_min) {
                    (None, None) => None,
                    (x, y) => Some(
                        x.unwrap_or(o.system_from_min)
                            .min(y.unwrap_or(b.system_from_min)),
                    ),
                },
                view_rows: match (o.view_rows, b.view_rows) {
                    (Some(x), Some(y)) => Some(x + y),
                    _ => None,
                },
            },
        });
    }
    out.unwrap_or(Bounds {
        iid_min: 0,
        iid_max: 0,
        valid_from_min: 0,
        valid_from_max: 0,
        valid_to_min: 0,
        valid_to_max: 0,
        system_from_min: 0,
        system_from_max: 0,
        system_to_min: 0,
        system_to_max: 0,
        view_from_min: None,
        view_rows: None,
    })
}

fn json_cmp(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x.cmp(&y)
            } else {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

fn merge_column_stats(stats: &[BatchStats]) -> Vec<ColumnStats> {
    use serde_json::Value;
    let Some(first) = stats.first() else {
        return vec![];
    };
    let mut out: Vec<ColumnStats> = first.columns.clone();
    for s in &stats[1..] {
        for (o, c) in out.iter_mut().zip(&s.columns) {
            o.null_count += c.null_count;
            // A null statistic (a float NaN, which JSON cannot hold) is
            // unknown, and so is anything merged with it.
            o.min = match (o.min.take(), &c.min) {
                (Some(Value::Null), _) | (_, Some(Value::Null)) => Some(Value::Null),
                (Some(a), Some(b)) => Some(if json_cmp(b, &a).is_lt() {
                    b.clone()
                } else {
                    a
                }),
                (a, b) => a.or_else(|| b.clone()),
            };
            o.max = match (o.max.take(), &c.max) {
                (Some(Value::Null), _) | (_, Some(Value::Null)) => Some(Value::Null),
                (Some(a), Some(b)) => Some(if json_cmp(b, &a).is_gt() {
                    b.clone()
                } else {
                    a
                }),
                (a, b) => a.or_else(|| b.clone()),
            };
        }
    }
    out
}

fn column_stats_of(batch: &RecordBatch) -> Vec<ColumnStats> {
    batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .skip(SYSTEM_COLUMNS)
        .filter(|(_, f)| f.name() != VIEW_FROM && f.name() != VIEW_ONLY)
        .map(|(i, f)| column_stats(f.name(), batch.column(i)))
        .collect()
}

fn column_stats(name: &str, col: &ArrayRef) -> ColumnStats {
    use arrow::compute::kernels::aggregate as agg;
    use arrow::datatypes as t;
    use serde_json::Value;
    // Integers of every width, dates and timestamps as JSON integers;
    // decimals as their unscaled integer when it fits in 64 bits (the scale
    // is the column's); floats as numbers (NaN becomes a JSON null: unknown).
    fn int<T: arrow::datatypes::ArrowPrimitiveType>(
        col: &ArrayRef,
    ) -> (Option<Value>, Option<Value>)
    where
        T::Native: Into<i64>,
    {
        let a = col.as_primitive::<T>();
        (
            agg::min(a).map(|v| Value::from(v.into())),
            agg::max(a).map(|v| Value::from(v.into())),
        )
    }
    let (min, max) = match col.data_type() {
        DataType::Int64 => int::<t::Int64Type>(col),
        DataType::Int32 => int::<t::Int32Type>(col),
        DataType::Int16 => int::<t::Int16Type>(col),
        DataType::Int8 => int::<t::Int8Type>(col),
        DataType::UInt32 => int::<t::UInt32Type>(col),
        DataType::UInt16 => int::<t::UInt16Type>(col),
        DataType::UInt8 => int::<t::UInt8Type>(col),
        DataType::Decimal128(_, _) => {
            let a = col.as_primitive::<t::Decimal128Type>();
            let fit = |v: Option<i128>| v.and_then(|v| i64::try_from(v).ok()).map(Value::from);
            match (fit(agg::min(a)), fit(agg::max(a))) {
                (Some(lo), Some(hi)) => (Some(lo), Some(hi)),
                _ => (None, None),
            }
        }
        DataType::Float64 => {
            let a = col.as_primitive::<arrow::datatypes::Float64Type>();
            (agg::min(a).map(Value::from), agg::max(a).map(Value::from))
        }
        DataType::Float32 => {
            let a = col.as_primitive::<t::Float32Type>();
            (
                agg::min(a).map(|v| Value::from(v as f64)),
                agg::max(a).map(|v| Value::from(v as f64)),
            )
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            (
                agg::min_string(a).map(Value::from),
                agg::max_string(a).map(Value::from),
            )
        }
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => {
            let a = col.as_primitive::<TimestampMicrosecondType>();
            (agg::min(a).map(Value::from), agg::max(a).map(Value::from))
        }
        DataType::Date32 => {
            let a = col.as_primitive::<arrow::datatypes::Date32Type>();
            (agg::min(a).map(Value::from), agg::max(a).map(Value::from))
        }
        _ => (None, None),
    };
    ColumnStats {
        name: name.to_string(),
        null_count: col.null_count() as u64,
        min,
        max,
    }
}

/// Build the four temporal columns of a segment from plain vectors.
pub fn ts_array(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

pub fn iid_array(v: Vec<u64>) -> ArrayRef {
    Arc::new(UInt64Array::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn bloom_has_no_false_negatives() {
        let hs: Vec<u64> = (0..10_000u64)
            .map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()))
            .collect();
        let b = Bloom::build(&hs);
        assert!(hs.iter().all(|&h| b.may_contain(h)));
        let fp = (10_000..20_000u64)
            .filter(|i| b.may_contain(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())))
            .count();
        assert!(fp < 300, "false positive rate too high: {fp}/10000");
        let back = Bloom::from_bytes("x", &b.to_bytes()).unwrap();
        assert!(hs.iter().all(|&h| back.may_contain(h)));
    }

    fn sample(n: usize) -> RecordBatch {
        let mut iids: Vec<u64> = (0..n as u64).map(|i| i * 3).collect();
        iids.sort();
        let ts = |v: i64| ts_array(vec![v; n]);
        let schema = segment_schema(&[Field::new("_id", DataType::Int64, true)]);
        RecordBatch::try_new(
            schema,
            vec![
                iid_array(iids),
                ts(1),
                ts(OPEN),
                ts(2),
                ts(OPEN),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                ts(2),
                Arc::new(arrow::array::BooleanArray::from(vec![false; n])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batches_are_read_in_parts_with_their_statistics() {
        let batch = sample(BATCH_ROWS * 2 + 10);
        let (bytes, meta, _) = encode("p", "b", Tier::L0, 0, &batch, &[]).unwrap();
        assert_eq!(meta.batches, 3);
        assert_eq!(meta.rows as usize, batch.num_rows());
        let f = SegmentFile::open("p", bytes).unwrap();
        assert_eq!(f.num_batches(), 3);
        assert_eq!(f.batch_offset(2), BATCH_ROWS * 2);
        assert_eq!(f.locate(BATCH_ROWS + 5), (1, 5));
        // Entity hash 3 * BATCH_ROWS is the first row of batch 1.
        assert_eq!(f.batches_of(3 * BATCH_ROWS as u64), 1..2);
        assert!(f.batches_of(u64::MAX).is_empty());
        let b = f.decode(2, Some(&[0, 5])).unwrap();
        assert_eq!(b.num_columns(), 2);
        assert_eq!(b.num_rows(), 10);
        assert_eq!(
            f.stats[2].columns[0].min,
            Some(serde_json::json!(BATCH_ROWS * 2))
        );
    }

    #[test]
    fn a_batch_decoded_for_lookups_is_kept_and_views_the_file() {
        let batch = sample(BATCH_ROWS + 10);
        let (bytes, _, _) = encode("p", "b", Tier::L0, 0, &batch, &[]).unwrap();
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        let f = SegmentFile::open("p", bytes.clone()).unwrap();
        let a = f.decoded(1).unwrap();
        let b = f.decoded(1).unwrap();
        assert_eq!(a, f.decode(1, None).unwrap());
        assert_eq!(a.num_columns(), batch.num_columns());
        for c in 0..a.num_columns() {
            // The same arrays the second time: not decoded again.
            assert!(
                Arc::ptr_eq(a.column(c), b.column(c)),
                "column {c} decoded twice"
            );
        }
        // No copy of the values: the kept arrays point into the file's bytes.
        let values = a.column(5).to_data().buffers()[0].as_ptr() as usize;
        assert!(range.contains(&values), "the kept `_id` values are a copy");
        assert_eq!(a.num_rows(), 10);
    }

    #[test]
    fn corrupt_files_are_errors() {
        let batch = sample(10);
        let (bytes, _, _) = encode("p", "b", Tier::L0, 0, &batch, &[]).unwrap();
        assert!(SegmentFile::open("p", bytes.slice(0..bytes.len() - 3)).is_err());
        assert!(SegmentFile::open("p", Bytes::from_static(b"short")).is_err());
    }
}
