//! One table's state on a node: its schema, its segments (with deletion
//! vectors), and the live index of rectangles not yet flushed. Applying an
//! event here is where the bitemporal decomposition happens.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use smallvec::{smallvec, SmallVec};

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array,
};
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};

use crate::entity::{hash_column, id_at, id_equals, EntityId};
use crate::error::{Error, Result};
use crate::schema::{
    adapt_array, timestamp_type, TableSchema, ID, SYSTEM_FROM, SYSTEM_TO, VALID_FROM, VALID_TO,
};
use crate::segment::{iid_array, segment_schema, ts_array, Segment, SegmentFile, SYSTEM_COLUMNS};
use crate::temporal::Coordinate;
use crate::time::{Micros, OPEN};

/// Memory of one entity's entry in the live index's by-entity map: the
/// key and list header with the map's spare capacity, plus the list's own
/// allocation (a 16-byte minimum, 32 with the allocator's header).
const LIVE_ENTITY_BYTES: usize = 80;

/// One rectangle in the live index; its values are row `row` of source `src`.
#[derive(Debug, Clone, Copy)]
pub struct Rect {
    pub src: u32,
    pub row: u32,
    pub iid: u64,
    pub vf: Micros,
    pub vt: Micros,
    pub sf: Micros,
    pub st: Micros,
    pub dead: bool,
    /// A piece: may share its entity and `_system_from` with another row
    /// (see `segment::BatchStats::pieces`). Only rows of files written
    /// before view columns, and their replacements, are pieces.
    pub piece: bool,
    /// From when the row belongs to views: reads as of a system time
    /// (`segment::VIEW_FROM`).
    pub vw: Micros,
    /// Belongs to views only, not to the decomposition (`segment::VIEW_ONLY`).
    pub vonly: bool,
}

/// Which rows a scan keeps by their piece flag. A read at a past system
/// time merges pieces (query crate, `merge`), and only pieces can merge, so
/// it reads the pieces (`Only`) apart from the rest (`Without`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PieceSel {
    #[default]
    All,
    Only,
    Without,
}

impl PieceSel {
    #[inline]
    pub fn keeps(self, piece: bool) -> bool {
        match self {
            PieceSel::All => true,
            PieceSel::Only => piece,
            PieceSel::Without => !piece,
        }
    }
}

/// Row-level deletion marks of one segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeletionVector {
    words: Vec<u64>,
    count: usize,
}

impl DeletionVector {
    pub fn with_rows(rows: usize) -> Self {
        DeletionVector {
            words: vec![0; rows.div_ceil(64)],
            count: 0,
        }
    }
    #[inline]
    pub fn contains(&self, row: usize) -> bool {
        self.words[row / 64] & (1 << (row % 64)) != 0
    }
    pub fn insert(&mut self, row: usize) {
        if !self.contains(row) {
            self.words[row / 64] |= 1 << (row % 64);
            self.count += 1;
        }
    }
    pub fn count(&self) -> usize {
        self.count
    }
    /// Marked rows in `[from, to)`.
    pub fn count_range(&self, from: usize, to: usize) -> usize {
        let mut n = 0;
        let mut r = from;
        while r < to {
            if r % 64 == 0 && r + 64 <= to {
                n += self.words[r / 64].count_ones() as usize;
                r += 64;
            } else {
                n += self.contains(r) as usize;
                r += 1;
            }
        }
        n
    }
    pub fn rows(&self) -> usize {
        self.words.len() * 64
    }
    /// Serialized as little-endian u32 row numbers, ascending.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.count * 4);
        for (w, word) in self.words.iter().enumerate() {
            let mut x = *word;
            while x != 0 {
                let b = x.trailing_zeros() as usize;
                out.extend_from_slice(&((w * 64 + b) as u32).to_le_bytes());
                x &= x - 1;
            }
        }
        out
    }
    pub fn from_bytes(rows: usize, b: &[u8]) -> Option<Self> {
        if b.len() % 4 != 0 {
            return None;
        }
        let mut dv = DeletionVector::with_rows(rows);
        for c in b.chunks_exact(4) {
            let r = u32::from_le_bytes(c.try_into().unwrap()) as usize;
            if r >= rows {
                return None;
            }
            dv.insert(r);
        }
        Some(dv)
    }
}

#[derive(Debug, Clone)]
pub struct SegmentEntry {
    pub seg: Arc<Segment>,
    pub deleted: Arc<DeletionVector>,
    /// Object path of the persisted deletion vector, if any.
    pub deleted_path: Option<String>,
    /// The deletion vector changed since it was last persisted.
    pub dirty: bool,
}

/// A live scan's memo of how the sources' schema maps to the table's
/// columns (`TableState::column_map`).
type ColumnMemo = Option<(SchemaRef, Vec<Option<usize>>, bool)>;

#[derive(Debug, Default, Clone)]
pub struct LiveIndex {
    pub sources: Vec<RecordBatch>,
    pub rects: Vec<Rect>,
    by_iid: HashMap<u64, SmallVec<[u32; 2]>, BuildHasherDefault<IidHasher>>,
    pub alive: usize,
    /// Rectangles that are pieces and not dead: whether a past read must
    /// merge (`TableState::may_hold_pieces`) without walking every rectangle.
    pub pieces: usize,
    /// Estimated memory held by the sources and rectangles.
    pub bytes: usize,
}

/// Hashes an entity hash (`_iid`) to itself: it is already a good 64-bit
/// hash, and SipHash over it cost a visible share of a bulk load.
#[derive(Default)]
pub struct IidHasher(u64);

impl std::hash::Hasher for IidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl LiveIndex {
    fn push_source(&mut self, b: RecordBatch) -> u32 {
        let s = self.sources.len() as u32;
        // Consecutive commits nearly always carry the same schema: share
        // the previous source's `Arc`, so a scan over thousands of sources
        // (`source_columns`) recognizes it by pointer, not by comparing
        // every field of every source again.
        let b = match self.sources.last() {
            Some(prev)
                if !Arc::ptr_eq(&prev.schema(), &b.schema()) && *prev.schema() == *b.schema() =>
            {
                b.clone().with_schema(prev.schema()).unwrap_or(b)
            }
            _ => b,
        };
        self.bytes += b.get_array_memory_size();
        self.sources.push(b);
        s
    }
}

#[derive(Debug, Clone)]
pub struct TableState {
    pub name: String,
    /// The table's columns; change it only through [`TableState::set_schema`]
    /// (which drops the shared copies below).
    pub schema: TableSchema,
    pub segments: Vec<SegmentEntry>,
    pub live: LiveIndex,
    /// The system time of the last event applied to the table on this node
    /// since it opened (0: none yet): a cheap "has it changed" mark.
    pub last_write: Micros,
    /// `schema` and its [`output_schema`], shared by every scan until the
    /// schema changes: a point lookup used to rebuild both (every field,
    /// name and metadata map copied) twice per statement.
    shared: std::sync::OnceLock<(Arc<TableSchema>, SchemaRef)>,
}

/// A rectangle piece whose values are a segment row not copied yet: its
/// `src` is `PENDING | k`, `k` indexing `ApplyScratch::pending`.
const PENDING: u32 = 1 << 31;

/// Per-event scratch: decoded segment batches (system columns and `_id`),
/// and segment rows that new pieces take their values from.
struct ApplyScratch<'a> {
    files: &'a SegFiles,
    decoded: HashMap<(usize, usize), RecordBatch>,
    pending: Vec<(usize, u32)>,
}

/// Segment files open for an apply, by segment path.
pub type SegFiles = HashMap<String, Arc<SegmentFile>>;

/// File columns read to find and split an entity's rectangles: the system
/// columns, `_id` (at `SYSTEM_COLUMNS` of the decoded batch) and, if the
/// file has it, `_view_from` (after `_id`).
fn key_columns(file: &SegmentFile) -> Vec<usize> {
    let mut v = vec![0, 1, 2, 3, 4, SYSTEM_COLUMNS];
    v.extend(file.view_column());
    v
}

/// The schema a scan of a table produces: the table's columns then the four
/// temporal columns (NULL = open bound).
pub fn output_schema(schema: &TableSchema) -> SchemaRef {
    let mut fields = schema.columns.clone();
    for c in [VALID_FROM, VALID_TO, SYSTEM_FROM, SYSTEM_TO] {
        fields.push(Field::new(c, timestamp_type(), true));
    }
    Arc::new(Schema::new(fields))
}

fn ts_nullable(v: &[i64]) -> ArrayRef {
    let a: arrow::array::TimestampMicrosecondArray =
        v.iter().map(|&x| (x != OPEN).then_some(x)).collect();
    Arc::new(a.with_timezone("UTC"))
}

/// Assemble output rows from table columns of `user` plus temporal values.
fn to_output(
    schema: &TableSchema,
    out: &SchemaRef,
    user: &RecordBatch,
    t: [&[i64]; 4],
) -> Result<RecordBatch> {
    to_output_from(
        schema,
        out,
        user.num_rows(),
        |name| user.column_by_name(name),
        t,
    )
}

/// [`to_output`] with the table columns found by name through `column`
/// (`None`: NULL), all of `n` rows.
fn to_output_from<'a>(
    schema: &TableSchema,
    out: &SchemaRef,
    n: usize,
    column: impl Fn(&str) -> Option<&'a ArrayRef>,
    t: [&[i64]; 4],
) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(out.fields().len());
    for f in &schema.columns {
        cols.push(match column(f.name()) {
            Some(c) => adapt_array(c, f.data_type())?,
            None => new_null_array(f.data_type(), n),
        });
    }
    for v in t {
        cols.push(ts_nullable(v));
    }
    Ok(RecordBatch::try_new(out.clone(), cols)?)
}

/// Entities a scan is restricted to (a point lookup), by hash and value,
/// sorted and without repeats (`Engine::scan_state` builds them so; the
/// segment scan walks them in step with a batch's sorted hashes).
pub type IdFilter = [(u64, EntityId)];

impl TableState {
    pub fn new(name: &str) -> TableState {
        TableState {
            name: name.to_string(),
            schema: TableSchema::default(),
            segments: Vec::new(),
            live: LiveIndex::default(),
            last_write: 0,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Replace the table's columns.
    pub fn set_schema(&mut self, schema: TableSchema) {
        if schema != self.schema {
            self.schema = schema;
            self.shared = std::sync::OnceLock::new();
        }
    }

    /// The table's columns and the scan output schema (its columns plus the
    /// four temporal ones), shared.
    pub fn schemas(&self) -> (Arc<TableSchema>, SchemaRef) {
        let (t, o) = self
            .shared
            .get_or_init(|| (Arc::new(self.schema.clone()), output_schema(&self.schema)));
        debug_assert!(
            **t == self.schema,
            "TableState::schema of `{}` changed without set_schema",
            self.name
        );
        (t.clone(), o.clone())
    }

    /// Segments that applying an event for these entity hashes reads: those
    /// that may hold their open rectangles (for an erase: any rectangle). The
    /// writer opens them before applying.
    pub fn segments_needed(&self, iids: &[u64], all_tiers: bool) -> Vec<Arc<Segment>> {
        self.segments
            .iter()
            .filter(|e| all_tiers || e.seg.has_open_rows())
            .filter(|e| iids.iter().any(|&h| e.seg.may_contain(h)))
            .map(|e| e.seg.clone())
            .collect()
    }

    fn push_rect(&mut self, r: Rect) {
        let i = self.live.rects.len() as u32;
        self.live.rects.push(r);
        // What the index really holds, so that it flushes at its share of
        // the budget: the rectangle (with the vector's growth slack, half
        // its size on average) and its slot in the entity's list; a new
        // entity also costs its hash-map entry and list allocation.
        let mut cost = std::mem::size_of::<Rect>() * 3 / 2 + 4;
        match self.live.by_iid.entry(r.iid) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(i),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(smallvec![i]);
                cost += LIVE_ENTITY_BYTES;
            }
        }
        self.live.alive += 1;
        self.live.pieces += usize::from(r.piece && !r.dead);
        self.live.bytes += cost;
    }

    fn opened(&self, si: usize, scratch: &ApplyScratch) -> Result<Arc<SegmentFile>> {
        let seg = &self.segments[si].seg;
        scratch.files.get(&seg.meta.path).cloned().ok_or_else(|| {
            Error::Internal(format!("segment {} not open before apply", seg.meta.path))
        })
    }

    /// Segment rows (segment-wide numbers) holding entity hash `iid`, with
    /// their key columns: (row, batch of key columns, row in that batch).
    fn segment_rows_of(
        &self,
        si: usize,
        iid: u64,
        scratch: &mut ApplyScratch<'_>,
    ) -> Result<Vec<(usize, RecordBatch, usize)>> {
        let file = self.opened(si, scratch)?;
        let mut out = Vec::new();
        for b in file.batches_of(iid) {
            let batch = match scratch.decoded.get(&(si, b)) {
                Some(x) => x.clone(),
                None => {
                    let x = file.decode(b, Some(&key_columns(&file)))?;
                    scratch.decoded.insert((si, b), x.clone());
                    x
                }
            };
            let iids = batch
                .column(0)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .values();
            let lo = iids.partition_point(|&x| x < iid);
            let hi = iids.partition_point(|&x| x <= iid);
            let base = file.batch_offset(b);
            for r in lo..hi {
                out.push((base + r, batch.clone(), r));
            }
        }
        Ok(out)
    }

    /// Close every open rectangle of entity `id` that overlaps `[a, b)` at
    /// system time `t`, issuing the replacements (see docs/architecture.md).
    fn retire(
        &mut self,
        iid: u64,
        id: &EntityId,
        (a, b): (Micros, Micros),
        t: Micros,
        scratch: &mut ApplyScratch<'_>,
    ) -> Result<()> {
        let mut pieces: Vec<Rect> = Vec::new();
        if let Some(list) = self.live.by_iid.get(&iid) {
            for &ri in list {
                let r = self.live.rects[ri as usize];
                if r.dead || r.st != OPEN || r.vf >= b || a >= r.vt {
                    continue;
                }
                if r.src & PENDING == 0 {
                    let src = &self.live.sources[r.src as usize];
                    let ids = src.column_by_name(ID).expect("source without _id");
                    if !id_equals(ids.as_ref(), r.row as usize, id) {
                        continue;
                    }
                } else if !self.pending_id_equals(r.src, id, scratch)? {
                    continue;
                }
                self.live.rects[ri as usize].dead = true;
                self.live.alive -= 1;
                self.live.pieces -= usize::from(r.piece);
                pieces.extend(split(r, a, b, t));
            }
        }
        for si in 0..self.segments.len() {
            let e = &self.segments[si];
            if !e.seg.has_open_rows() || !e.seg.may_contain(iid) {
                continue;
            }
            for (row, keys, r) in self.segment_rows_of(si, iid, scratch)? {
                let ts = |c: usize| {
                    keys.column(c)
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(r)
                };
                let (vf, vt, sf, st) = (ts(1), ts(2), ts(3), ts(4));
                if st != OPEN || vf >= b || a >= vt || self.segments[si].deleted.contains(row) {
                    continue;
                }
                // An open row is never view-only; without the column its view
                // starts at `_system_from`.
                let vw = if keys.num_columns() > SYSTEM_COLUMNS + 1 {
                    ts(SYSTEM_COLUMNS + 1)
                } else {
                    sf
                };
                if !id_equals(keys.column(SYSTEM_COLUMNS).as_ref(), r, id) {
                    continue;
                }
                Arc::make_mut(&mut self.segments[si].deleted).insert(row);
                self.segments[si].dirty = true;
                let k = scratch.pending.len() as u32;
                scratch.pending.push((si, row as u32));
                let was_piece = self.opened(si, scratch)?.is_piece(row);
                let piece = Rect {
                    src: PENDING | k,
                    row: 0,
                    iid,
                    vf,
                    vt,
                    sf,
                    st: OPEN,
                    dead: false,
                    piece: was_piece,
                    vw,
                    vonly: false,
                };
                pieces.extend(split(piece, a, b, t));
            }
        }
        for p in pieces {
            self.push_rect(p);
        }
        Ok(())
    }

    /// Does the segment row behind a pending piece hold entity `id`?
    fn pending_id_equals(
        &self,
        src: u32,
        id: &EntityId,
        scratch: &mut ApplyScratch<'_>,
    ) -> Result<bool> {
        let (si, row) = scratch.pending[(src & !PENDING) as usize];
        let file = self.opened(si, scratch)?;
        let (b, r) = file.locate(row as usize);
        let keys = match scratch.decoded.get(&(si, b)) {
            Some(x) => x.clone(),
            None => {
                let x = file.decode(b, Some(&key_columns(&file)))?;
                scratch.decoded.insert((si, b), x.clone());
                x
            }
        };
        Ok(id_equals(keys.column(SYSTEM_COLUMNS).as_ref(), r, id))
    }

    /// Copy the values of the segment rows new pieces point at into live
    /// sources (one per segment), and point the pieces at them.
    fn materialize_pending(
        &mut self,
        first_rect: usize,
        scratch: &mut ApplyScratch<'_>,
    ) -> Result<()> {
        if scratch.pending.is_empty() {
            return Ok(());
        }
        // Per segment: its distinct rows, ascending.
        let mut per_seg: HashMap<usize, Vec<u32>> = HashMap::new();
        for &(si, row) in &scratch.pending {
            per_seg.entry(si).or_default().push(row);
        }
        let mut located: HashMap<(usize, u32), (u32, u32)> = HashMap::new();
        let mut segs: Vec<usize> = per_seg.keys().copied().collect();
        segs.sort_unstable();
        for si in segs {
            let mut rows = per_seg.remove(&si).unwrap();
            rows.sort_unstable();
            rows.dedup();
            let file = self.opened(si, scratch)?;
            let user_cols: Vec<usize> = (SYSTEM_COLUMNS..file.user_end()).collect();
            let mut parts: Vec<RecordBatch> = Vec::new();
            let mut i = 0;
            while i < rows.len() {
                let (b, _) = file.locate(rows[i] as usize);
                let base = file.batch_offset(b);
                let end = base + file.stats[b].rows as usize;
                let mut idx = Vec::new();
                while i < rows.len() && (rows[i] as usize) < end {
                    idx.push(rows[i] - base as u32);
                    i += 1;
                }
                let batch = file.decode(b, Some(&user_cols))?;
                parts.push(arrow::compute::take_record_batch(
                    &batch,
                    &UInt32Array::from(idx),
                )?);
            }
            let schema = parts[0].schema();
            let source = arrow::compute::concat_batches(&schema, &parts)?;
            let src = self.live.push_source(source);
            for (k, &row) in rows.iter().enumerate() {
                located.insert((si, row), (src, k as u32));
            }
        }
        for r in &mut self.live.rects[first_rect..] {
            if r.src & PENDING != 0 {
                let (si, row) = scratch.pending[(r.src & !PENDING) as usize];
                let (src, k) = located[&(si, row)];
                r.src = src;
                r.row = k;
            }
        }
        scratch.pending.clear();
        Ok(())
    }

    /// Apply one (prepared) event committed at system time `t`. The segments
    /// it reads (`segments_needed`) must be open.
    pub fn apply(&mut self, op: &crate::log::Op, t: Micros, files: &SegFiles) -> Result<()> {
        use crate::log::OpKind;
        let mut scratch = ApplyScratch {
            files,
            decoded: HashMap::new(),
            pending: Vec::new(),
        };
        let first = self.live.rects.len();
        let r = match op.kind {
            OpKind::Put => self.apply_put(&op.batch, t, &mut scratch),
            OpKind::Delete => self.apply_delete(&op.batch, t, &mut scratch),
            OpKind::Erase => self.apply_erase(&op.batch, &mut scratch),
            OpKind::Load => {
                // Segments written by a bulk load into this (then empty)
                // table: they join the table as written.
                let metas = crate::load::load_segments(op)?;
                self.declare_columns(&op.batch)?;
                for meta in metas {
                    let rows = meta.rows as usize;
                    self.segments.push(SegmentEntry {
                        seg: Arc::new(crate::segment::Segment::new(meta)),
                        deleted: Arc::new(DeletionVector::with_rows(rows)),
                        deleted_path: None,
                        dirty: false,
                    });
                }
                Ok(())
            }
            OpKind::CreateTable => self.declare_columns(&op.batch),
        };
        r?;
        self.last_write = self.last_write.max(t);
        self.materialize_pending(first, &mut scratch)
    }

    /// Merge the columns an event's batch declares into the table's.
    fn declare_columns(&mut self, batch: &RecordBatch) -> Result<()> {
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let merged = self.schema.merged(&self.name, &fields)?;
        self.set_schema(merged);
        Ok(())
    }

    /// Apply a put batch (already normalized: `_id`, `_valid_from`, `_valid_to`, user columns).
    fn apply_put(
        &mut self,
        batch: &RecordBatch,
        t: Micros,
        scratch: &mut ApplyScratch<'_>,
    ) -> Result<()> {
        let ids = batch
            .column_by_name(ID)
            .ok_or_else(|| Error::Invalid(format!("put into `{}` without `_id`", self.name)))?
            .clone();
        let (vf, vt) = valid_columns(batch, t)?;
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| {
                let n = batch.schema().field(i).name().clone();
                n != VALID_FROM && n != VALID_TO
            })
            .collect();
        let user = batch.project(&keep)?;
        self.declare_columns(&user)?;
        let src = self.live.push_source(user);
        let hashes = hash_column(ids.as_ref());
        for row in 0..batch.num_rows() {
            let id = id_at(ids.as_ref(), row);
            self.retire(hashes[row], &id, (vf[row], vt[row]), t, scratch)?;
            self.push_rect(Rect {
                src,
                row: row as u32,
                iid: hashes[row],
                vf: vf[row],
                vt: vt[row],
                sf: t,
                st: OPEN,
                dead: false,
                piece: false,
                vw: t,
                vonly: false,
            });
        }
        Ok(())
    }

    /// Apply a delete batch (`_id`, `_valid_from`, `_valid_to`).
    fn apply_delete(
        &mut self,
        batch: &RecordBatch,
        t: Micros,
        scratch: &mut ApplyScratch<'_>,
    ) -> Result<()> {
        let ids = batch
            .column_by_name(ID)
            .ok_or_else(|| Error::Invalid("delete without `_id`".into()))?
            .clone();
        let (vf, vt) = valid_columns(batch, t)?;
        let hashes = hash_column(ids.as_ref());
        for row in 0..batch.num_rows() {
            let id = id_at(ids.as_ref(), row);
            self.retire(hashes[row], &id, (vf[row], vt[row]), t, scratch)?;
        }
        Ok(())
    }

    /// Hide every rectangle of the given entities, at every system and valid time.
    fn apply_erase(&mut self, batch: &RecordBatch, scratch: &mut ApplyScratch<'_>) -> Result<()> {
        let ids = batch
            .column_by_name(ID)
            .ok_or_else(|| Error::Invalid("erase without `_id`".into()))?
            .clone();
        let hashes = hash_column(ids.as_ref());
        for row in 0..batch.num_rows() {
            let id = id_at(ids.as_ref(), row);
            let iid = hashes[row];
            if let Some(list) = self.live.by_iid.get(&iid).cloned() {
                for ri in list {
                    let r = self.live.rects[ri as usize];
                    if r.dead {
                        continue;
                    }
                    let same = if r.src & PENDING == 0 {
                        let src = &self.live.sources[r.src as usize];
                        id_equals(
                            src.column_by_name(ID).unwrap().as_ref(),
                            r.row as usize,
                            &id,
                        )
                    } else {
                        self.pending_id_equals(r.src, &id, scratch)?
                    };
                    if same {
                        self.live.rects[ri as usize].dead = true;
                        self.live.alive -= 1;
                        self.live.pieces -= usize::from(r.piece);
                    }
                }
            }
            for si in 0..self.segments.len() {
                if !self.segments[si].seg.may_contain(iid) {
                    continue;
                }
                for (row, keys, r) in self.segment_rows_of(si, iid, scratch)? {
                    if !self.segments[si].deleted.contains(row)
                        && id_equals(keys.column(SYSTEM_COLUMNS).as_ref(), r, &id)
                    {
                        Arc::make_mut(&mut self.segments[si].deleted).insert(row);
                        self.segments[si].dirty = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows of the live index visible at `coord`, as output batches.
    pub fn scan_live(
        &self,
        coord: &Coordinate,
        ids: Option<&IdFilter>,
        out: &SchemaRef,
        sel: PieceSel,
    ) -> Result<Vec<RecordBatch>> {
        let mut picked: Vec<u32> = Vec::new();
        let visible = |r: &Rect| {
            !r.dead && sel.keeps(r.piece) && coord.shows(r.vf, r.vt, r.sf, r.st, r.vw, r.vonly)
        };
        match ids {
            Some(ids) => {
                for (h, id) in ids {
                    for &ri in self.live.by_iid.get(h).map(|v| v.as_slice()).unwrap_or(&[]) {
                        let r = &self.live.rects[ri as usize];
                        let src = &self.live.sources[r.src as usize];
                        if visible(r)
                            && id_equals(
                                src.column_by_name(ID).unwrap().as_ref(),
                                r.row as usize,
                                id,
                            )
                        {
                            picked.push(ri);
                        }
                    }
                }
            }
            None => {
                for (i, r) in self.live.rects.iter().enumerate() {
                    if visible(r) {
                        picked.push(i as u32);
                    }
                }
            }
        }
        // Group by source so each source is read with one `take`.
        picked.sort_by_key(|&ri| {
            (
                self.live.rects[ri as usize].src,
                self.live.rects[ri as usize].row,
            )
        });
        // One output batch per `LIVE_SLICE_ROWS` picked rectangles, however
        // many sources (commits) they come from: a live index written by
        // many small transactions is read as a few large batches, not one
        // tiny batch per commit (whose per-batch costs dominated).
        let mut memo = None;
        let mut outv = Vec::with_capacity(picked.len().div_ceil(LIVE_SLICE_ROWS));
        for chunk in picked.chunks(LIVE_SLICE_ROWS) {
            let rect = |ri: u32| &self.live.rects[ri as usize];
            // The chunk's sources in order (`picked` is sorted by source).
            let mut srcs: Vec<u32> = Vec::new();
            let mut idx: Vec<(usize, usize)> = Vec::with_capacity(chunk.len());
            for &ri in chunk {
                let r = rect(ri);
                if srcs.last() != Some(&r.src) {
                    srcs.push(r.src);
                }
                idx.push((srcs.len() - 1, r.row as usize));
            }
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(out.fields().len());
            if let Some(direct) = self.direct_columns(&srcs, &mut memo) {
                // Every source of the chunk holds the table's columns as
                // they are (the common case): read them in place, without
                // a column list per source.
                let source = |s: u32| &self.live.sources[s as usize];
                if let [src] = srcs[..] {
                    let first = idx[0].1;
                    let contiguous = idx.iter().enumerate().all(|(k, &(_, r))| r == first + k);
                    let rows = (!contiguous)
                        .then(|| UInt32Array::from_iter_values(idx.iter().map(|&(_, r)| r as u32)));
                    for &i in &direct {
                        let c = source(src).column(i);
                        cols.push(match &rows {
                            None => c.slice(first, idx.len()),
                            Some(rows) => take(c.as_ref(), rows, None)?,
                        });
                    }
                } else {
                    for &i in &direct {
                        let arrays: Vec<&dyn arrow::array::Array> =
                            srcs.iter().map(|&s| source(s).column(i).as_ref()).collect();
                        cols.push(interleave(&arrays, &idx)?);
                    }
                }
            } else {
                let adapted: Vec<Vec<ArrayRef>> = srcs
                    .iter()
                    .map(|&src| self.source_columns(&self.live.sources[src as usize], &mut memo))
                    .collect::<Result<_>>()?;
                if let [source] = &adapted[..] {
                    let first = idx[0].1;
                    let contiguous = idx.iter().enumerate().all(|(k, &(_, r))| r == first + k);
                    let rows = (!contiguous)
                        .then(|| UInt32Array::from_iter_values(idx.iter().map(|&(_, r)| r as u32)));
                    for c in source {
                        cols.push(match &rows {
                            None => c.slice(first, idx.len()),
                            Some(rows) => take(c.as_ref(), rows, None)?,
                        });
                    }
                } else {
                    for c in 0..self.schema.columns.len() {
                        let arrays: Vec<&dyn arrow::array::Array> =
                            adapted.iter().map(|a| a[c].as_ref()).collect();
                        cols.push(interleave(&arrays, &idx)?);
                    }
                }
            }
            let g = |f: fn(&Rect) -> i64| chunk.iter().map(|&ri| f(rect(ri))).collect::<Vec<_>>();
            for v in [g(|r| r.vf), g(|r| r.vt), g(|r| r.sf), g(|r| r.st)] {
                cols.push(ts_nullable(&v));
            }
            let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(chunk.len()));
            outv.push(RecordBatch::try_new_with_options(out.clone(), cols, &opts)?);
        }
        Ok(outv)
    }

    /// The positions of the table's columns in the sources `srcs`, when
    /// every one of them shares one schema (by pointer: `push_source`
    /// shares it between commits) that holds every column with its current
    /// type. `None` otherwise: [`Self::source_columns`] adapts each source.
    fn direct_columns(&self, srcs: &[u32], memo: &mut ColumnMemo) -> Option<Vec<usize>> {
        let first = self.live.sources.get(*srcs.first()? as usize)?;
        let (mschema, map, exact) = self.column_map(first.schema_ref(), memo);
        if !*exact
            || !srcs
                .iter()
                .all(|&s| Arc::ptr_eq(self.live.sources[s as usize].schema_ref(), mschema))
        {
            return None;
        }
        map.iter().copied().collect()
    }

    /// Where the table's columns are in a source of schema `schema`, and
    /// whether all of them have their current types, memoized in `memo`
    /// for the last schema seen (by pointer; an equal schema under another
    /// pointer takes over the memo).
    fn column_map<'m>(
        &self,
        schema: &SchemaRef,
        memo: &'m mut ColumnMemo,
    ) -> &'m (SchemaRef, Vec<Option<usize>>, bool) {
        match memo {
            Some((s, _, _)) if Arc::ptr_eq(s, schema) => {}
            Some((s, _, _)) if **s == **schema => *s = schema.clone(),
            _ => {
                let map: Vec<Option<usize>> = self
                    .schema
                    .columns
                    .iter()
                    .map(|f| schema.index_of(f.name()).ok())
                    .collect();
                let exact = map
                    .iter()
                    .zip(&self.schema.columns)
                    .all(|(i, f)| i.is_none_or(|i| schema.field(i).data_type() == f.data_type()));
                *memo = Some((schema.clone(), map, exact));
            }
        }
        memo.as_ref().expect("set above")
    }

    /// A live source's columns in the table's current column order and
    /// types (a source written before a column was added or widened has
    /// NULLs or converted values there). `memo` keeps the column mapping of
    /// the last schema seen: consecutive commits nearly always share one,
    /// and looking every column up by name for each of thousands of small
    /// sources cost more than reading them.
    fn source_columns(&self, source: &RecordBatch, memo: &mut ColumnMemo) -> Result<Vec<ArrayRef>> {
        let (_, map, exact) = self.column_map(source.schema_ref(), memo);
        let n = source.num_rows();
        map.iter()
            .zip(&self.schema.columns)
            .map(|(i, f)| match i {
                Some(i) if *exact => Ok(source.column(*i).clone()),
                Some(i) => adapt_array(source.column(*i), f.data_type()),
                None => Ok(new_null_array(f.data_type(), n)),
            })
            .collect()
    }

    /// Encode the live rectangles that survive as a level-0 segment file,
    /// sorted by (`_iid`, `_system_from`, `_valid_from`), a record batch at
    /// a time: the flush holds the live index, the encoded file and one
    /// batch, never a second copy of the whole index. `None` if no
    /// rectangle survives.
    /// `out` makes the output, only once there is something to write.
    pub fn flush_encode<W: std::io::Write>(
        &self,
        out: impl FnOnce() -> Result<W>,
        path: &str,
        bloom_path: &str,
    ) -> Result<Option<(W, crate::segment::SegmentMeta, crate::segment::Bloom)>> {
        let alive: Vec<&Rect> = self.live.rects.iter().filter(|r| !r.dead).collect();
        if alive.is_empty() {
            return Ok(None);
        }
        let out = out()?;
        // Sorted on packed keys, not through the references: comparing
        // (`_iid`, `_system_from`, `_valid_from`, position) in one array is
        // cache-friendly, and the position keeps equal keys in index order
        // (what a stable sort gave).
        let mut keys: Vec<(u64, Micros, Micros, u32)> = alive
            .iter()
            .enumerate()
            .map(|(k, r)| (r.iid, r.sf, r.vf, k as u32))
            .collect();
        keys.sort_unstable();
        let alive: Vec<&Rect> = keys.iter().map(|k| alive[k.3 as usize]).collect();
        drop(keys);
        // Per source: its columns in the table's order and types (a copy
        // only if a type differs), made on first use.
        let mut adapted: Vec<Option<Vec<ArrayRef>>> = vec![None; self.live.sources.len()];
        let mut memo = None;
        let schema = segment_schema(&self.schema.columns);
        let mut enc = crate::segment::SegmentEncoder::to(out, schema.clone())?;
        for chunk in alive.chunks(crate::segment::BATCH_ROWS) {
            // The sources this chunk reads, numbered in order of first use.
            let mut slot: HashMap<u32, usize> = HashMap::new();
            let mut used: Vec<u32> = Vec::new();
            let idx: Vec<(usize, usize)> = chunk
                .iter()
                .map(|r| {
                    let k = *slot.entry(r.src).or_insert_with(|| {
                        used.push(r.src);
                        used.len() - 1
                    });
                    (k, r.row as usize)
                })
                .collect();
            let mut cols: Vec<ArrayRef> = vec![
                iid_array(chunk.iter().map(|r| r.iid).collect()),
                ts_array(chunk.iter().map(|r| r.vf).collect()),
                ts_array(chunk.iter().map(|r| r.vt).collect()),
                ts_array(chunk.iter().map(|r| r.sf).collect()),
                ts_array(chunk.iter().map(|r| r.st).collect()),
            ];
            for &src in &used {
                let cell = &mut adapted[src as usize];
                if cell.is_none() {
                    *cell = Some(self.source_columns(&self.live.sources[src as usize], &mut memo)?);
                }
            }
            for ci in 0..self.schema.columns.len() {
                let refs: Vec<&dyn Array> = used
                    .iter()
                    .map(|&src| adapted[src as usize].as_ref().expect("made above")[ci].as_ref())
                    .collect();
                cols.push(interleave(&refs, &idx)?);
            }
            cols.push(ts_array(chunk.iter().map(|r| r.vw).collect()));
            cols.push(Arc::new(BooleanArray::from(
                chunk.iter().map(|r| r.vonly).collect::<Vec<_>>(),
            )));
            let pieces: Vec<u32> = chunk
                .iter()
                .enumerate()
                .filter(|(_, r)| r.piece)
                .map(|(i, _)| i as u32)
                .collect();
            enc.push(&RecordBatch::try_new(schema.clone(), cols)?, pieces)?;
        }
        enc.finish_into(path, bloom_path, crate::segment::Tier::L0, 0)
            .map(Some)
    }

    /// Does the table hold any version (live or in segments), or has it
    /// ever (a retired rectangle counts)? A bulk load needs it not to.
    pub fn holds_versions(&self) -> bool {
        !self.segments.is_empty() || !self.live.rects.is_empty()
    }

    /// Could a read of this table hold pieces (rows that may merge at a
    /// past system time)?
    pub fn may_hold_pieces(&self) -> bool {
        // Counted as rectangles are added and die: every point lookup at a
        // past system time asks, and walking the live index's rectangles
        // (hundreds of thousands after a stream of updates) was a third of
        // such a lookup's time.
        debug_assert_eq!(
            self.live.pieces,
            self.live
                .rects
                .iter()
                .filter(|r| r.piece && !r.dead)
                .count(),
            "live piece count of `{}`",
            self.name
        );
        self.live.pieces > 0 || self.segments.iter().any(|e| e.seg.meta.may_hold_pieces())
    }

    /// Drop the live index after its rows went into a segment.
    pub fn clear_live(&mut self) {
        self.live = LiveIndex::default();
    }
}

/// The rows that replace open rectangle `r` when `[a, b)` is overridden at
/// `t` (docs/architecture.md, "Reads at a past system time"):
///
/// - the overridden part, closed at `t`. If it is the whole of `r`, it is
///   also `r`'s view (which ends at `t`); otherwise its view is empty
///   (`_view_from` = `t` = `_system_to`): it belongs to the decomposition
///   only;
/// - when `r` is cut (part of it stays open), `r` itself closed at `t` as a
///   view-only row, so that a read as of a time before `t` finds the
///   version whole, if `r` was in a view before `t` at all;
/// - the parts outside `[a, b)`, still open, in views from `t` on.
///
/// A piece's replacements stay pieces (files written before view columns).
fn split(r: Rect, a: Micros, b: Micros, t: Micros) -> Vec<Rect> {
    let mut out = Vec::with_capacity(4);
    let (lo, hi) = (r.vf.max(a), r.vt.min(b));
    let whole = lo == r.vf && hi == r.vt;
    if r.sf < t && lo < hi {
        out.push(Rect {
            vf: lo,
            vt: hi,
            st: t,
            dead: false,
            vw: if whole { r.vw } else { t },
            ..r
        });
    }
    if !whole && r.vw < t {
        out.push(Rect {
            st: t,
            dead: false,
            vonly: true,
            ..r
        });
    }
    if r.vf < a {
        out.push(Rect {
            vt: a,
            st: OPEN,
            dead: false,
            vw: t,
            ..r
        });
    }
    if b < r.vt {
        out.push(Rect {
            vf: b,
            st: OPEN,
            dead: false,
            vw: t,
            ..r
        });
    }
    out
}

/// The valid period of each row: NULL `_valid_from` = `t`, NULL `_valid_to` = open.
pub(crate) fn valid_columns(batch: &RecordBatch, t: Micros) -> Result<(Vec<i64>, Vec<i64>)> {
    let n = batch.num_rows();
    let get = |name: &str, default: i64| -> Result<Vec<i64>> {
        match batch.column_by_name(name) {
            None => Ok(vec![default; n]),
            Some(c) => {
                let c = arrow::compute::cast(
                    c,
                    &DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Microsecond,
                        Some("UTC".into()),
                    ),
                )?;
                let a = c.as_primitive::<TimestampMicrosecondType>();
                Ok((0..n)
                    .map(|i| if a.is_null(i) { default } else { a.value(i) })
                    .collect())
            }
        }
    };
    let vf = get(VALID_FROM, t)?;
    let vt = get(VALID_TO, OPEN)?;
    for i in 0..n {
        if vf[i] >= vt[i] {
            return Err(Error::Invalid(format!(
                "`_valid_from` ({}) must be earlier than `_valid_to` ({})",
                crate::time::fmt_micros(vf[i]),
                crate::time::fmt_micros(vt[i])
            )));
        }
    }
    Ok((vf, vt))
}

/// Can batch `b` of a segment hold rows visible at `coord` (for these
/// entities)? Decided from the batch statistics and the deletion vector,
/// before reading any of its data.
pub fn batch_may_match(
    file: &SegmentFile,
    b: usize,
    deleted: &DeletionVector,
    coord: &Coordinate,
    ids: Option<&IdFilter>,
    sel: PieceSel,
) -> bool {
    let st = &file.stats[b];
    if !st.bounds.may_match(coord) {
        return false;
    }
    let pieces = st.pieces.as_ref().map_or(st.rows as usize, |p| p.len());
    match sel {
        PieceSel::All => {}
        PieceSel::Only if pieces == 0 => return false,
        PieceSel::Without if pieces == st.rows as usize => return false,
        _ => {}
    }
    if let Some(ids) = ids {
        if ids_between(ids, st.bounds.iid_min, st.bounds.iid_max).is_empty() {
            return false;
        }
    }
    let base = file.batch_offset(b);
    deleted.count() == 0 || deleted.count_range(base, base + st.rows as usize) < st.rows as usize
}

/// The ids of `ids` (sorted, see [`IdFilter`]) whose hash lies in `lo..=hi`.
fn ids_between(ids: &IdFilter, lo: u64, hi: u64) -> &IdFilter {
    debug_assert!(ids.is_sorted(), "an IdFilter is sorted");
    let a = ids.partition_point(|(h, _)| *h < lo);
    let b = ids.partition_point(|(h, _)| *h <= hi);
    &ids[a..b]
}

/// Rows of a segment batch holding one of `ids` and passing `keep`, in
/// ascending order. `iids` is the batch's entity-hash column (sorted) and
/// `id_col` its `_id` column. A few ids are found by binary search; many (a
/// long `_id IN (…)`) by one walk over both sorted lists, so the cost is
/// bounded by the batch's length, not ids × log(rows).
fn id_rows(
    iids: &[u64],
    id_col: &dyn Array,
    ids: &IdFilter,
    keep: impl Fn(usize) -> bool,
) -> Vec<u32> {
    let (Some(&first), Some(&last)) = (iids.first(), iids.last()) else {
        return Vec::new();
    };
    let ids = ids_between(ids, first, last);
    let log_rows = usize::BITS - iids.len().leading_zeros();
    let mut rows = Vec::new();
    let matches = |r: usize, id: &EntityId, rows: &mut Vec<u32>| {
        if id_equals(id_col, r, id) && keep(r) {
            rows.push(r as u32);
        }
    };
    if ids.len() * log_rows as usize * 2 > iids.len() {
        // Merge: each row meets the ids of its hash.
        let mut i = 0;
        let mut r = 0;
        while r < iids.len() && i < ids.len() {
            let h = iids[r];
            while i < ids.len() && ids[i].0 < h {
                i += 1;
            }
            let mut j = i;
            while j < ids.len() && ids[j].0 == h {
                matches(r, &ids[j].1, &mut rows);
                j += 1;
            }
            r += 1;
        }
    } else {
        for (h, id) in ids {
            let lo = iids.partition_point(|x| x < h);
            let hi = iids.partition_point(|x| x <= h);
            for r in lo..hi {
                matches(r, id, &mut rows);
            }
        }
    }
    // Rows come in order from the merge; the searches meet them by id.
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// Rows of batch `b` of a segment visible at `coord`, as one output batch.
#[allow(clippy::too_many_arguments)]
pub fn scan_batch(
    schema: &TableSchema,
    out: &SchemaRef,
    file: &SegmentFile,
    b: usize,
    deleted: &DeletionVector,
    coord: &Coordinate,
    ids: Option<&IdFilter>,
    columns: Option<&[String]>,
    sel: PieceSel,
) -> Result<Option<RecordBatch>> {
    if let Some(ids) = ids {
        return lookup_batch(schema, out, file, b, deleted, coord, ids, columns, sel);
    }
    // Only the columns the query reads are decoded (zero-copy) and filtered.
    let fields = file.schema().fields();
    let user_end = file.user_end();
    let mut projection: Vec<usize> = (0..user_end)
        .filter(|&i| {
            i <= SYSTEM_COLUMNS
                || columns.is_none_or(|cols| cols.iter().any(|c| c == fields[i].name()))
        })
        .collect();
    // The view columns, last (absent from older files).
    let view = file.view_column().map(|v| {
        projection.push(v);
        projection.push(v + 1);
        projection.len() - 2
    });
    let data = file.decode(b, Some(&projection))?;
    let n = data.num_rows();
    // Which rows: a mask over the batch.
    let mask: Vec<bool> = (0..n)
        .map(row_visibility(&data, view, file, b, deleted, coord, sel))
        .collect();
    if !mask.iter().any(|&m| m) {
        return Ok(None);
    }
    let filtered = if mask.iter().all(|&m| m) {
        // Every row visible (a batch of current rows read at the present,
        // the common case): no copy.
        data
    } else {
        filter_record_batch(&data, &BooleanArray::from(mask))?
    };
    let ts = |i: usize| {
        filtered
            .column(i)
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec()
    };
    let user_idx: Vec<usize> = (SYSTEM_COLUMNS..view.unwrap_or(filtered.num_columns())).collect();
    let user = filtered.project(&user_idx)?;
    Ok(Some(to_output(
        schema,
        out,
        &user,
        [&ts(1), &ts(2), &ts(3), &ts(4)],
    )?))
}

/// Values of timestamp column `c` of a decoded batch.
fn timestamps(data: &RecordBatch, c: usize) -> &[i64] {
    data.column(c)
        .as_primitive::<TimestampMicrosecondType>()
        .values()
}

/// Whether row `r` of segment batch `b`, decoded as `data` (the temporal
/// columns at 1..=4, `_view_from` at `view` and `_view_only` after it),
/// shows in a scan at `coord`: not deleted, of the pieces `sel` keeps, and
/// inside the coordinate (see [`Coordinate::shows`]).
fn row_visibility<'a>(
    data: &'a RecordBatch,
    view: Option<usize>,
    file: &SegmentFile,
    b: usize,
    deleted: &'a DeletionVector,
    coord: &'a Coordinate,
    sel: PieceSel,
) -> impl Fn(usize) -> bool + 'a {
    let base = file.batch_offset(b);
    let [vf, vt, sf, st] = [1, 2, 3, 4].map(|c| timestamps(data, c));
    let (vw, vonly) = match view {
        Some(v) => (timestamps(data, v), Some(data.column(v + 1).as_boolean())),
        None => (sf, None),
    };
    // Piece flags of the batch's rows, when the scan selects by them.
    let piece_mask = (sel != PieceSel::All).then(|| file.piece_mask(b));
    move |r: usize| {
        !deleted.contains(base + r)
            && piece_mask.as_ref().is_none_or(|m| sel.keeps(m[r]))
            && coord.shows(
                vf[r],
                vt[r],
                sf[r],
                st[r],
                vw[r],
                vonly.is_some_and(|o| o.value(r)),
            )
    }
}

/// [`scan_batch`] for a lookup by id: the rows of `ids` in batch `b`. The
/// batch is decoded once per open file and kept (`SegmentFile::decoded`,
/// zero-copy views of the file's bytes), so a lookup costs a binary search
/// and a slice of the matching rows, not a decode of the batch's message.
#[allow(clippy::too_many_arguments)]
fn lookup_batch(
    schema: &TableSchema,
    out: &SchemaRef,
    file: &SegmentFile,
    b: usize,
    deleted: &DeletionVector,
    coord: &Coordinate,
    ids: &IdFilter,
    columns: Option<&[String]>,
    sel: PieceSel,
) -> Result<Option<RecordBatch>> {
    let data = file.decoded(b)?;
    let ts = |c: usize| timestamps(&data, c);
    let visible = row_visibility(&data, file.view_column(), file, b, deleted, coord, sel);
    let iids = data
        .column(0)
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .values();
    let rows = id_rows(iids, data.column(SYSTEM_COLUMNS).as_ref(), ids, visible);
    let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    // An entity's rows sit together (sorted by hash): usually one run,
    // taken as a zero-copy slice.
    let run = (last - first) as usize + 1 == rows.len();
    let indices = (!run).then(|| UInt32Array::from(rows.clone()));
    let pick = |a: &ArrayRef| -> Result<ArrayRef> {
        Ok(match &indices {
            None => a.slice(first as usize, rows.len()),
            Some(i) => take(a.as_ref(), i, None)?,
        })
    };
    let times = |c: usize| -> Vec<i64> { rows.iter().map(|&r| ts(c)[r as usize]).collect() };
    // The table columns the query reads, by name.
    let fields = file.schema().fields();
    let user_end = file.user_end();
    let mut user: Vec<(&str, ArrayRef)> = Vec::new();
    for (i, f) in fields
        .iter()
        .enumerate()
        .take(user_end)
        .skip(SYSTEM_COLUMNS)
    {
        let name = f.name().as_str();
        if i == SYSTEM_COLUMNS || columns.is_none_or(|cols| cols.iter().any(|c| c == name)) {
            user.push((name, pick(data.column(i))?));
        }
    }
    Ok(Some(to_output_from(
        schema,
        out,
        rows.len(),
        |name| user.iter().find(|(n, _)| *n == name).map(|(_, a)| a),
        [&times(1), &times(2), &times(3), &times(4)],
    )?))
}

/// Where an output column of a projected scan comes from.
enum OutCol {
    /// A temporal column: this column of the decoded batch (`OPEN` shown as NULL).
    Temporal(usize),
    /// A table column: this column of the decoded batch.
    Stored(usize),
    /// A table column this file lacks (added later): NULL.
    Missing,
}

/// A timestamp column of a segment as a scan shows it: `OPEN` as NULL.
/// Zero-copy when no value is open (closed rows, or `_valid_from`).
fn open_as_null(a: &ArrayRef) -> ArrayRef {
    let p = a.as_primitive::<TimestampMicrosecondType>();
    let vals = p.values();
    if !vals.contains(&OPEN) {
        return Arc::new(p.clone().with_timezone("UTC"));
    }
    let nulls = arrow::buffer::NullBuffer::new(arrow::buffer::BooleanBuffer::collect_bool(
        vals.len(),
        |i| vals[i] != OPEN,
    ));
    // NULL slots hold 0, as the row-by-row builder left them.
    let values: arrow::buffer::ScalarBuffer<i64> = vals
        .iter()
        .map(|&x| if x == OPEN { 0 } else { x })
        .collect();
    Arc::new(arrow::array::TimestampMicrosecondArray::new(values, Some(nulls)).with_timezone("UTC"))
}

/// Rows of batch `b` of a segment visible at `coord`, with exactly the
/// columns of `out`: a projection (by name) of the table's
/// [`output_schema`]. Only those columns and the temporal ones are decoded
/// (zero-copy), and only the output columns are filtered; a batch whose rows
/// are all visible (current rows read at the present) is not copied at all.
/// Temporal columns the query does not read are never built.
#[allow(clippy::too_many_arguments)]
pub fn scan_batch_projected(
    out: &SchemaRef,
    file: &SegmentFile,
    b: usize,
    deleted: &DeletionVector,
    coord: &Coordinate,
    ids: Option<&IdFilter>,
    sel: PieceSel,
    predicates: &[crate::prune::ColumnPredicate],
) -> Result<Option<RecordBatch>> {
    let fields = file.schema().fields();
    let user_end = file.user_end();
    let mut projection: Vec<usize> = vec![0, 1, 2, 3, 4];
    if ids.is_some() {
        projection.push(SYSTEM_COLUMNS);
    }
    // Position of file column `i` in the decoded batch (added if new).
    fn at(i: usize, projection: &mut Vec<usize>) -> usize {
        match projection.iter().position(|&p| p == i) {
            Some(k) => k,
            None => {
                projection.push(i);
                projection.len() - 1
            }
        }
    }
    let mut srcs = Vec::with_capacity(out.fields().len());
    for f in out.fields() {
        let name = f.name().as_str();
        srcs.push(match name {
            VALID_FROM => OutCol::Temporal(1),
            VALID_TO => OutCol::Temporal(2),
            SYSTEM_FROM => OutCol::Temporal(3),
            SYSTEM_TO => OutCol::Temporal(4),
            _ => match (SYSTEM_COLUMNS..user_end).find(|&i| fields[i].name() == name) {
                Some(i) => OutCol::Stored(at(i, &mut projection)),
                None => OutCol::Missing,
            },
        });
    }
    let view = file
        .view_column()
        .map(|v| (at(v, &mut projection), at(v + 1, &mut projection)));
    // The columns of the predicates evaluated here (decoded even when the
    // plan does not output them).
    let preds: Vec<(usize, &crate::prune::ColumnPredicate)> = if ids.is_some() {
        vec![]
    } else {
        predicates
            .iter()
            .filter_map(|p| {
                let i = (SYSTEM_COLUMNS..user_end).find(|&i| fields[i].name() == &p.column)?;
                Some((at(i, &mut projection), p))
            })
            .collect()
    };
    let data = file.decode(b, Some(&projection))?;
    let base = file.batch_offset(b);
    let n = data.num_rows();
    let ts = |c: usize| {
        data.column(c)
            .as_primitive::<TimestampMicrosecondType>()
            .values()
    };
    let (vf, vt, sf, st) = (ts(1), ts(2), ts(3), ts(4));
    let (vw, vonly) = match view {
        Some((v, o)) => (ts(v), Some(data.column(o).as_boolean())),
        None => (sf, None),
    };
    let no_deletions = deleted.count() == 0 || deleted.count_range(base, base + n) == 0;
    let piece_mask = (sel != PieceSel::All).then(|| file.piece_mask(b));
    let visible = |r: usize| {
        (no_deletions || !deleted.contains(base + r))
            && piece_mask.as_ref().is_none_or(|m| sel.keeps(m[r]))
            && coord.shows(
                vf[r],
                vt[r],
                sf[r],
                st[r],
                vw[r],
                vonly.is_some_and(|o| o.value(r)),
            )
    };
    enum Pick {
        All,
        Rows(UInt32Array),
        Mask(arrow::compute::FilterPredicate),
    }
    let pick = match ids {
        Some(ids) => {
            let iids = data
                .column(0)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .values();
            let rows = id_rows(iids, data.column(SYSTEM_COLUMNS).as_ref(), ids, visible);
            if rows.is_empty() {
                return Ok(None);
            }
            Pick::Rows(UInt32Array::from(rows))
        }
        None => {
            let mut mask = visible_mask(
                coord,
                &file.stats[b].bounds,
                [vf, vt, sf, st, vw],
                vonly,
                (!no_deletions).then_some((deleted, base)),
                piece_mask.as_deref().map(|m| (m, sel)),
            );
            // The pushed-down predicates, on whole columns; the rows they
            // drop are never materialized.
            for (c, p) in &preds {
                if let Some(m) = crate::prune::evaluate(p, data.column(*c))? {
                    mask = &mask & &m;
                }
            }
            match mask.count_set_bits() {
                0 => return Ok(None),
                c if c == n => Pick::All,
                _ => Pick::Mask(
                    arrow::compute::FilterBuilder::new(&BooleanArray::new(mask, None))
                        .optimize()
                        .build(),
                ),
            }
        }
    };
    let select = |a: &ArrayRef| -> Result<ArrayRef> {
        Ok(match &pick {
            Pick::All => a.clone(),
            Pick::Rows(rows) => take(a.as_ref(), rows, None)?,
            Pick::Mask(f) => f.filter(a.as_ref())?,
        })
    };
    let rows = match &pick {
        Pick::All => n,
        Pick::Rows(r) => r.len(),
        Pick::Mask(f) => f.count(),
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(srcs.len());
    for (src, f) in srcs.iter().zip(out.fields()) {
        cols.push(match src {
            OutCol::Temporal(c) => open_as_null(&select(data.column(*c))?),
            OutCol::Stored(c) => adapt_array(&select(data.column(*c))?, f.data_type())?,
            OutCol::Missing => new_null_array(f.data_type(), rows),
        });
    }
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(Some(RecordBatch::try_new_with_options(
        out.clone(),
        cols,
        &opts,
    )?))
}

/// Which rows of a decoded batch show at `coord` (see [`Coordinate::shows`]),
/// as a bitmap, a selector at a time over whole columns (no per-row branch
/// on the coordinate). `columns` are `_valid_from`, `_valid_to`,
/// `_system_from`, `_system_to`, `_view_from`; `deleted` the deletion
/// vector and the batch's first row when some of its rows are deleted;
/// `pieces` the piece flags when the scan selects by them. A batch whose
/// statistics (and view column) prove every row visible — current rows read
/// at the present — is answered without looking at the rows.
fn visible_mask(
    coord: &Coordinate,
    bounds: &crate::segment::Bounds,
    [vf, vt, sf, st, vw]: [&[i64]; 5],
    vonly: Option<&BooleanArray>,
    deleted: Option<(&DeletionVector, usize)>,
    pieces: Option<(&[bool], PieceSel)>,
) -> arrow::buffer::BooleanBuffer {
    use crate::temporal::TimeSelector as T;
    use arrow::buffer::BooleanBuffer;
    let n = vf.len();
    let view_only = vonly.map(|o| o.values());
    let no_view_only = view_only.is_none_or(|o| o.count_set_bits() == 0);
    // Every row within the bounds matches the selector on that axis?
    let all = |sel: T, from_max: Micros, to_min: Micros| match sel {
        T::All => true,
        T::AsOf(t) => from_max <= t && t < to_min,
        T::Range { from: a, to: b } => a < b && from_max < b && a < to_min,
    };
    let system_all = match coord.system {
        T::AsOf(s) => s < bounds.system_to_min && vw.iter().copied().max().is_none_or(|m| m <= s),
        sel => no_view_only && all(sel, bounds.system_from_max, bounds.system_to_min),
    };
    let valid_all = all(coord.valid, bounds.valid_from_max, bounds.valid_to_min);
    if system_all && valid_all && deleted.is_none() && pieces.is_none() {
        return BooleanBuffer::new_set(n);
    }
    let axis = |sel: T, from: &[i64], to: &[i64]| -> Option<BooleanBuffer> {
        match sel {
            T::All => None,
            T::AsOf(t) => Some(BooleanBuffer::collect_bool(n, |r| {
                (from[r] <= t) & (t < to[r])
            })),
            T::Range { from: a, to: b } if a < b => Some(BooleanBuffer::collect_bool(n, |r| {
                (from[r] < b) & (a < to[r])
            })),
            T::Range { .. } => Some(BooleanBuffer::new_unset(n)),
        }
    };
    let mut mask: Option<BooleanBuffer> = None;
    let mut and = |m: BooleanBuffer| {
        mask = Some(match mask.take() {
            Some(x) => &x & &m,
            None => m,
        })
    };
    if !system_all {
        match coord.system {
            T::AsOf(s) => and(BooleanBuffer::collect_bool(n, |r| {
                (vw[r] <= s) & (s < st[r])
            })),
            sel => {
                if let Some(m) = axis(sel, sf, st) {
                    and(m);
                }
                if let Some(o) = view_only.filter(|_| !no_view_only) {
                    and(!o);
                }
            }
        }
    }
    if !valid_all {
        if let Some(m) = axis(coord.valid, vf, vt) {
            and(m);
        }
    }
    if let Some((dv, base)) = deleted {
        and(BooleanBuffer::collect_bool(n, |r| !dv.contains(base + r)));
    }
    if let Some((p, sel)) = pieces {
        and(BooleanBuffer::collect_bool(n, |r| sel.keeps(p[r])));
    }
    mask.unwrap_or_else(|| BooleanBuffer::new_set(n))
}

/// Live batches are handed out to partitions in slices of at most this many rows.
const LIVE_SLICE_ROWS: usize = crate::segment::BATCH_ROWS;

impl crate::engine::TableScan {
    /// How many units of work (live slices, segment batches) this scan has at
    /// most, before batch pruning: a scan is split into no more partitions
    /// than that.
    pub fn work_units(&self) -> usize {
        let live: usize = self
            .live
            .iter()
            .map(|b| b.num_rows().div_ceil(LIVE_SLICE_ROWS))
            .sum();
        let segs: usize = self
            .segments
            .iter()
            .map(|(s, _)| (s.meta.batches as usize).max(1))
            .sum();
        live + segs
    }

    /// Could a row of batch `b` of segment `i` be visible to this scan (by
    /// the batch's statistics, its deletion vector and the scan's predicates)?
    fn batch_kept(&self, i: usize, file: &SegmentFile, b: usize) -> bool {
        batch_may_match(
            file,
            b,
            &self.segments[i].1,
            &self.coord,
            self.ids.as_deref().map(|v| v.as_slice()),
            self.pieces,
        ) && crate::prune::batch_may_match(file, b, &self.predicates)
    }

    /// Partition `part` of `parts` of this scan, with the columns of `out` (a
    /// projection of [`TableScan::schema`] by name). The units of work — the
    /// live rows in slices, then every segment batch not pruned by its
    /// statistics, in segment order — are dealt round-robin, so the
    /// partitions share even a single large segment. Every partition decides
    /// the same batches kept; the partition owning a segment (`i % parts`)
    /// counts it in the metrics.
    pub fn partition_stream(
        self: &Arc<Self>,
        part: usize,
        parts: usize,
        out: SchemaRef,
    ) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        let parts = parts.max(1);
        let mut unit = 0usize;
        let mut live = Vec::new();
        for b in &self.live {
            let mut off = 0;
            while off < b.num_rows() {
                let len = LIVE_SLICE_ROWS.min(b.num_rows() - off);
                if unit % parts == part {
                    live.push(
                        filter_live(&b.slice(off, len), &self.predicates)
                            .and_then(|b| project_by_name(&b, &out)),
                    );
                }
                unit += 1;
                off += len;
            }
        }
        let first_unit = unit;
        let scan = self.clone();
        let opened = futures::stream::iter(0..self.segments.len()).then(move |i| {
            let scan = scan.clone();
            async move {
                let file = scan.open_segment(i).await?;
                let kept: Vec<usize> = (0..file.num_batches())
                    .filter(|&b| scan.batch_kept(i, &file, b))
                    .collect();
                if i % parts == part {
                    let m = &scan.metrics;
                    m.segments_read.fetch_add(1, Ordering::Relaxed);
                    m.batches_pruned
                        .fetch_add((file.num_batches() - kept.len()) as u64, Ordering::Relaxed);
                }
                Ok::<_, Error>((i, file, kept))
            }
        });
        let scan = self.clone();
        let segs = opened
            .scan(first_unit, move |next, r| {
                let r = r.map(|(i, file, kept)| {
                    let start = *next;
                    *next += kept.len();
                    let mine: Vec<usize> = kept
                        .into_iter()
                        .enumerate()
                        .filter(|(k, _)| (start + k) % parts == part)
                        .map(|(_, b)| b)
                        .collect();
                    (i, file, mine)
                });
                futures::future::ready(Some(r))
            })
            .flat_map(move |r| match r {
                Err(e) => futures::stream::iter(vec![Err(e)]).boxed(),
                Ok((i, file, mine)) => {
                    let scan = scan.clone();
                    let out = out.clone();
                    futures::stream::iter(mine)
                        .filter_map(move |b| {
                            let m = &scan.metrics;
                            m.batches_read.fetch_add(1, Ordering::Relaxed);
                            m.bytes_read
                                .fetch_add(file.batch_bytes(b) as u64, Ordering::Relaxed);
                            let r = scan_batch_projected(
                                &out,
                                &file,
                                b,
                                &scan.segments[i].1,
                                &scan.coord,
                                scan.ids.as_deref().map(|v| v.as_slice()),
                                scan.pieces,
                                &scan.predicates,
                            )
                            .transpose();
                            futures::future::ready(r)
                        })
                        .boxed()
                }
            });
        futures::stream::iter(live).chain(segs).boxed()
    }
}

/// The rows of live batch `b` that satisfy `predicates` (those it can
/// evaluate), as in a segment scan.
fn filter_live(
    b: &RecordBatch,
    predicates: &[crate::prune::ColumnPredicate],
) -> Result<RecordBatch> {
    let mut mask: Option<arrow::buffer::BooleanBuffer> = None;
    for p in predicates {
        let Some(col) = b.column_by_name(&p.column) else {
            continue;
        };
        if let Some(m) = crate::prune::evaluate(p, col)? {
            mask = Some(match mask {
                Some(x) => &x & &m,
                None => m,
            });
        }
    }
    match mask {
        Some(m) if m.count_set_bits() < b.num_rows() => {
            Ok(filter_record_batch(b, &BooleanArray::new(m, None))?)
        }
        _ => Ok(b.clone()),
    }
}

/// `b`'s columns named in `out` (NULL for a name it lacks), as `out`.
fn project_by_name(b: &RecordBatch, out: &SchemaRef) -> Result<RecordBatch> {
    let cols = out
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            Some(c) => adapt_array(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), b.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
    Ok(RecordBatch::try_new_with_options(out.clone(), cols, &opts)?)
}
