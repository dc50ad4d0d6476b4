//! Segments: immutable Arrow IPC files of rectangles, sorted by entity hash,
//! with a bloom filter beside them and pruning metadata in the manifest.
//!
//! Column order in a segment file: `_iid` (UInt64), `_valid_from`, `_valid_to`,
//! `_system_from`, `_system_to` (Timestamp µs UTC, `OPEN` = i64::MAX), then the
//! table's columns as of the flush (`_id` first).

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimestampMicrosecondType, UInt64Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::schema::{timestamp_type, IID, SYSTEM_FROM, SYSTEM_TO, VALID_FROM, VALID_TO};
use crate::store::Storage;
use crate::time::Micros;

/// Number of leading system columns in a segment file.
pub const SYSTEM_COLUMNS: usize = 5;

/// Per-column statistics kept in the manifest for pruning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnStats {
    pub name: String,
    pub null_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
}

/// What the manifest records about one segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    /// Object path of the Arrow IPC file.
    pub path: String,
    /// Object path of the bloom filter over `_iid`.
    pub bloom_path: String,
    pub rows: u64,
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
    pub columns: Vec<ColumnStats>,
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
    Arc::new(Schema::new(fields))
}

/// Decoded contents of a segment, cached in memory once read.
#[derive(Debug)]
pub struct SegmentData {
    /// The whole file as one batch (system columns first).
    pub batch: RecordBatch,
}

impl SegmentData {
    pub fn iids(&self) -> &[u64] {
        self.batch.column(0).as_primitive::<UInt64Type>().values()
    }
    pub fn ts(&self, col: usize) -> &[i64] {
        self.batch
            .column(col)
            .as_primitive::<TimestampMicrosecondType>()
            .values()
    }
    /// The table columns (`_id` and user columns) of the segment.
    pub fn user(&self) -> RecordBatch {
        let idx: Vec<usize> = (SYSTEM_COLUMNS..self.batch.num_columns()).collect();
        self.batch.project(&idx).expect("projection in range")
    }
    /// Row range holding entity hash `iid` (rows are sorted by `_iid`).
    pub fn rows_of(&self, iid: u64) -> std::ops::Range<usize> {
        let iids = self.iids();
        let lo = iids.partition_point(|&x| x < iid);
        let hi = iids.partition_point(|&x| x <= iid);
        lo..hi
    }
}

/// A segment: its metadata, bloom filter, and lazily loaded data.
#[derive(Debug)]
pub struct Segment {
    pub meta: SegmentMeta,
    pub bloom: Bloom,
    data: tokio::sync::OnceCell<Arc<SegmentData>>,
}

impl Segment {
    pub fn new(meta: SegmentMeta, bloom: Bloom) -> Segment {
        Segment {
            meta,
            bloom,
            data: tokio::sync::OnceCell::new(),
        }
    }

    pub fn with_data(meta: SegmentMeta, bloom: Bloom, data: SegmentData) -> Segment {
        let s = Segment::new(meta, bloom);
        let _ = s.data.set(Arc::new(data));
        s
    }

    pub fn may_contain(&self, iid: u64) -> bool {
        iid >= self.meta.iid_min && iid <= self.meta.iid_max && self.bloom.may_contain(iid)
    }

    pub fn loaded(&self) -> Option<&Arc<SegmentData>> {
        self.data.get()
    }

    pub async fn load(&self, storage: &Storage) -> Result<Arc<SegmentData>> {
        let d = self
            .data
            .get_or_try_init(|| async {
                let bytes = storage
                    .get(&self.meta.path)
                    .await?
                    .ok_or_else(|| Error::Corrupt {
                        path: self.meta.path.clone(),
                        reason: "segment listed in the manifest is missing".into(),
                    })?;
                let batch = read_ipc_file(&self.meta.path, bytes)?;
                if batch.num_rows() as u64 != self.meta.rows {
                    return Err(Error::Corrupt {
                        path: self.meta.path.clone(),
                        reason: format!(
                            "segment has {} rows, manifest says {}",
                            batch.num_rows(),
                            self.meta.rows
                        ),
                    });
                }
                Ok::<_, Error>(Arc::new(SegmentData { batch }))
            })
            .await?;
        Ok(d.clone())
    }
}

pub fn read_ipc_file(path: &str, bytes: Bytes) -> Result<RecordBatch> {
    let reader = FileReader::try_new(Cursor::new(bytes), None).map_err(|e| Error::Corrupt {
        path: path.into(),
        reason: format!("not an Arrow IPC file: {e}"),
    })?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// Rows per record batch inside a segment file.
const BATCH_ROWS: usize = 65_536;

/// Encode a segment batch (already sorted by `_iid`) as an Arrow IPC file and
/// compute its metadata and bloom filter.
pub fn encode(
    path: &str,
    bloom_path: &str,
    batch: &RecordBatch,
) -> Result<(Bytes, SegmentMeta, Bloom)> {
    let mut buf = Vec::new();
    {
        let mut w = FileWriter::try_new(&mut buf, &batch.schema())?;
        let mut off = 0;
        while off < batch.num_rows() {
            let n = BATCH_ROWS.min(batch.num_rows() - off);
            w.write(&batch.slice(off, n))?;
            off += n;
        }
        w.finish()?;
    }
    let iids = batch.column(0).as_primitive::<UInt64Type>();
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
    let columns = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .skip(SYSTEM_COLUMNS)
        .map(|(i, f)| column_stats(f.name(), batch.column(i)))
        .collect();
    let meta = SegmentMeta {
        path: path.to_string(),
        bloom_path: bloom_path.to_string(),
        rows: batch.num_rows() as u64,
        iid_min: iids.values().first().copied().unwrap_or(0),
        iid_max: iids.values().last().copied().unwrap_or(0),
        valid_from_min: vf0,
        valid_from_max: vf1,
        valid_to_min: vt0,
        valid_to_max: vt1,
        system_from_min: sf0,
        system_from_max: sf1,
        system_to_min: st0,
        system_to_max: st1,
        columns,
    };
    Ok((Bytes::from(buf), meta, Bloom::build(iids.values())))
}

fn column_stats(name: &str, col: &ArrayRef) -> ColumnStats {
    use arrow::compute::kernels::aggregate as agg;
    use serde_json::Value;
    let (min, max) = match col.data_type() {
        DataType::Int64 => {
            let a = col.as_primitive::<arrow::datatypes::Int64Type>();
            (agg::min(a).map(Value::from), agg::max(a).map(Value::from))
        }
        DataType::Float64 => {
            let a = col.as_primitive::<arrow::datatypes::Float64Type>();
            (agg::min(a).map(Value::from), agg::max(a).map(Value::from))
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            (
                agg::min_string(a).map(Value::from),
                agg::max_string(a).map(Value::from),
            )
        }
        DataType::Timestamp(_, _) => {
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
}
