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

const MAGIC: &[u8; 8] = b"STRLOG01";

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
}

impl OpKind {
    fn from_u8(v: u8) -> Option<OpKind> {
        Some(match v {
            1 => OpKind::Put,
            2 => OpKind::Delete,
            3 => OpKind::Erase,
            4 => OpKind::CreateTable,
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

    pub fn decode(path: &str, bytes: &[u8]) -> Result<LogRecord> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if bytes.len() < MAGIC.len() + 16 || &bytes[..8] != MAGIC {
            return Err(corrupt("not a Strata log record (bad magic)"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut r = Reader { buf: body, pos: 8 };
        let seq = r.u64().ok_or_else(|| corrupt("truncated"))?;
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
        Ok(LogRecord { seq, txs })
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
        assert_eq!(back.txs[0].system_time, 42);
        assert_eq!(back.txs[0].ops[0].batch.num_rows(), 2);
        let mut torn = bytes.to_vec();
        torn.truncate(torn.len() - 3);
        assert!(LogRecord::decode("x", &torn).is_err());
        let mut flipped = bytes.to_vec();
        flipped[20] ^= 1;
        assert!(LogRecord::decode("x", &flipped).is_err());
    }
}
