//! The transaction log: one immutable object per committed group of
//! transactions at `log/<seq:020>`, written with a conditional create. The
//! record format is in docs/format.md.

use std::io::Cursor;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::time::Micros;

/// The current record format: carries the writer's nonce after the seq.
const MAGIC: &[u8; 8] = b"STRLOG02";
/// The first format (no nonce): still read.
const MAGIC_V1: &[u8; 8] = b"STRLOG01";

/// Bytes of a writer nonce.
pub const NONCE_LEN: usize = 16;

/// Who wrote a log record: 16 random bytes, new for every commit attempt
/// (one group at one seq). A writer whose conditional create failed
/// ambiguously (timeout, dropped response, an `AlreadyExists` from a
/// store client that retried its own request) reads the record back and
/// compares it: its own nonce means the group committed. Records of the
/// first format carry none (all zeros), which no writer draws.
pub type Nonce = [u8; NONCE_LEN];

/// A fresh writer nonce: 128 bits hashed from the process's random hash
/// keys, the time, the process id and a counter. Never all zeros.
pub fn new_nonce() -> Nonce {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut buf = Vec::with_capacity(48);
    for salt in 0..2u64 {
        let mut h = keys.build_hasher();
        h.write_u64(salt);
        h.write_u64(count);
        buf.extend_from_slice(&h.finish().to_le_bytes());
    }
    buf.extend_from_slice(&nanos.to_le_bytes());
    buf.extend_from_slice(&std::process::id().to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    let mut n = xxhash_rust::xxh3::xxh3_128(&buf).to_le_bytes();
    if n == [0; NONCE_LEN] {
        n[0] = 1;
    }
    n
}

/// What a row-level event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// Put rows: `_id`, optional `_valid_from` / `_valid_to`, user columns.
    Put = 1,
    /// Delete over a valid period: `_id`, `_valid_from`, `_valid_to`.
    Delete = 2,
    /// Remove entities from all time: `_id`.
    Erase = 3,
    /// Declare a table and columns: an empty batch carrying the schema.
    CreateTable = 4,
    /// A bulk load: rows already written as segments (`crate::load`). An
    /// empty batch carrying the table's columns, whose schema metadata
    /// [`LOAD_SEGMENTS_KEY`] lists the segments (JSON `SegmentMeta`s).
    Load = 5,
}

/// Schema metadata key of a [`OpKind::Load`] event: the loaded segments.
pub const LOAD_SEGMENTS_KEY: &str = "strata:load";

impl OpKind {
    fn from_u8(v: u8) -> Option<OpKind> {
        Some(match v {
            1 => OpKind::Put,
            2 => OpKind::Delete,
            3 => OpKind::Erase,
            4 => OpKind::CreateTable,
            5 => OpKind::Load,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Op {
    pub kind: OpKind,
    pub table: String,
    pub batch: RecordBatch,
}

/// One transaction: its events, all at one system time.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub system_time: Micros,
    pub ops: Vec<Op>,
}

/// One log object: a group of transactions committed together.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub seq: u64,
    /// The writer's nonce for this commit attempt (all zeros in a record
    /// of the first format).
    pub nonce: Nonce,
    pub txs: Vec<Transaction>,
}

pub fn log_path(seq: u64) -> String {
    format!("log/{seq:020}")
}

/// The sequence number of a log object path (`log/<seq:020>`).
pub fn seq_of(path: &str) -> Option<u64> {
    let name = path.strip_prefix("log/")?;
    if name.len() != 20 {
        return None;
    }
    name.parse().ok()
}

fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
        if batch.num_rows() > 0 || batch.num_columns() == 0 {
            w.write(batch)?;
        }
        w.finish()?;
    }
    Ok(buf)
}

fn ipc_batch(bytes: &[u8]) -> Result<RecordBatch> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema: SchemaRef = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(match batches.len() {
        0 => RecordBatch::new_empty(schema),
        1 => batches.into_iter().next().unwrap(),
        _ => arrow::compute::concat_batches(&schema, &batches)?,
    })
}

impl LogRecord {
    pub fn encode(&self) -> Result<Bytes> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&(self.txs.len() as u32).to_le_bytes());
        for tx in &self.txs {
            out.extend_from_slice(&tx.system_time.to_le_bytes());
            out.extend_from_slice(&(tx.ops.len() as u32).to_le_bytes());
            for op in &tx.ops {
                out.push(op.kind as u8);
                out.extend_from_slice(&(op.table.len() as u32).to_le_bytes());
                out.extend_from_slice(op.table.as_bytes());
                let blob = ipc_bytes(&op.batch)?;
                out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
                out.extend_from_slice(&blob);
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(Bytes::from(out))
    }

    /// Check magic and checksum; return the body (without the checksum),
    /// the seq, the nonce and the position after them.
    fn header<'a>(path: &str, bytes: &'a [u8]) -> Result<(&'a [u8], u64, Nonce, usize)> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let v1 = bytes.len() >= 8 && &bytes[..8] == MAGIC_V1;
        if bytes.len() < MAGIC.len() + 16 || !(v1 || &bytes[..8] == MAGIC) {
            return Err(corrupt("not a Strata log record (bad magic)"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader { buf: body, pos: 8 };
        let seq = r.u64().ok_or_else(|| corrupt("truncated"))?;
        let mut nonce = [0u8; NONCE_LEN];
        if !v1 {
            nonce.copy_from_slice(r.take(NONCE_LEN).ok_or_else(|| corrupt("truncated"))?);
        }
        Ok((body, seq, nonce, r.pos))
    }

    /// The seq and writer nonce of an encoded record (magic and checksum
    /// checked, transactions not decoded).
    pub fn writer_of(path: &str, bytes: &[u8]) -> Result<(u64, Nonce)> {
        let (_, seq, nonce, _) = LogRecord::header(path, bytes)?;
        Ok((seq, nonce))
    }

    pub fn decode(path: &str, bytes: &[u8]) -> Result<LogRecord> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let (body, seq, nonce, pos) = LogRecord::header(path, bytes)?;
        let mut r = Reader { buf: body, pos };
        let ntx = r.u32().ok_or_else(|| corrupt("truncated"))?;
        let mut txs = Vec::with_capacity(ntx as usize);
        for _ in 0..ntx {
            let system_time = r.u64().ok_or_else(|| corrupt("truncated"))? as i64;
            let nops = r.u32().ok_or_else(|| corrupt("truncated"))?;
            let mut ops = Vec::with_capacity(nops as usize);
            for _ in 0..nops {
                let kind = r
                    .u8()
                    .and_then(OpKind::from_u8)
                    .ok_or_else(|| corrupt("bad op kind"))?;
                let tlen = r.u32().ok_or_else(|| corrupt("truncated"))? as usize;
                let table = r
                    .take(tlen)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .ok_or_else(|| corrupt("bad table name"))?
                    .to_string();
                let blen = r.u64().ok_or_else(|| corrupt("truncated"))? as usize;
                let blob = r.take(blen).ok_or_else(|| corrupt("truncated"))?;
                let batch = ipc_batch(blob)?;
                ops.push(Op { kind, table, batch });
            }
            txs.push(Transaction { system_time, ops });
        }
        Ok(LogRecord { seq, nonce, txs })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array};
    use std::sync::Arc;

    #[test]
    fn round_trip_and_checksum() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter(vec![("_id", ids)]).unwrap();
        let rec = LogRecord {
            seq: 7,
            nonce: new_nonce(),
            txs: vec![Transaction {
                system_time: 42,
                ops: vec![Op {
                    kind: OpKind::Put,
                    table: "t".into(),
                    batch,
                }],
            }],
        };
        let bytes = rec.encode().unwrap();
        let back = LogRecord::decode("x", &bytes).unwrap();
        assert_eq!(back.seq, 7);
        assert_eq!(back.nonce, rec.nonce);
        assert_eq!(LogRecord::writer_of("x", &bytes).unwrap(), (7, rec.nonce));
        assert_eq!(back.txs[0].system_time, 42);
        assert_eq!(back.txs[0].ops[0].batch.num_rows(), 2);
        let mut torn = bytes.to_vec();
        torn.truncate(torn.len() - 3);
        assert!(LogRecord::decode("x", &torn).is_err());
        let mut flipped = bytes.to_vec();
        flipped[20] ^= 1;
        assert!(LogRecord::decode("x", &flipped).is_err());
        assert!(LogRecord::writer_of("x", &flipped).is_err());
    }

    /// A record of the first format (`STRLOG01`, no nonce) still decodes,
    /// with an all-zero nonce.
    #[test]
    fn reads_the_first_format() {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![5]));
        let batch = RecordBatch::try_from_iter(vec![("_id", ids)]).unwrap();
        let rec = LogRecord {
            seq: 3,
            nonce: new_nonce(),
            txs: vec![Transaction {
                system_time: 9,
                ops: vec![Op {
                    kind: OpKind::Put,
                    table: "t".into(),
                    batch,
                }],
            }],
        };
        let v2 = rec.encode().unwrap();
        // The same record as the first format wrote it: old magic, no nonce.
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC_V1);
        v1.extend_from_slice(&v2[8..16]);
        v1.extend_from_slice(&v2[16 + NONCE_LEN..v2.len() - 4]);
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let back = LogRecord::decode("x", &v1).unwrap();
        assert_eq!((back.seq, back.nonce), (3, [0; NONCE_LEN]));
        assert_eq!(back.txs[0].system_time, 9);
        assert_eq!(back.txs[0].ops[0].batch.num_rows(), 1);
        assert_ne!(new_nonce(), new_nonce());
    }
}
