//! Statement handles and tickets. Both are self-contained: a handle carries
//! the SQL text (and, once bound, the parameter batch), a ticket carries
//! either such a handle or a small, already computed result. No server-side
//! state is needed to use them, so any Strata node can execute a handle that
//! another node created (the Flight SQL "stateless prepared statement"
//! protocol: the DoPut that binds parameters returns the updated handle).
//!
//! Layout: `STRATA\x02` then a kind byte, the payload, and a 64-bit
//! FNV-1a checksum (little-endian) of everything before it.
//! * `Q`: u32 little-endian SQL length, the SQL (UTF-8), then the parameter
//!   batch as an Arrow IPC stream (empty when nothing is bound).
//! * `R`: an Arrow IPC stream holding a finished result.
//!
//! A handle whose checksum does not match is refused before any of it is
//! decoded; a forged one with a valid checksum is decoded with panics
//! caught, so bad bytes are an error for their caller, never a crash.

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tonic::Status;

const MAGIC: &[u8] = b"STRATA\x02";

/// 64-bit FNV-1a.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A decoded handle or ticket.
#[derive(Debug, Clone)]
pub enum Handle {
    /// A statement to run, with its bound parameters (if any).
    Query {
        sql: String,
        params: Option<RecordBatch>,
    },
    /// A result computed when the FlightInfo was asked for (commands and
    /// multi-statement scripts run then, exactly once).
    Results {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
}

impl Handle {
    pub fn encode(&self) -> Result<Bytes, Status> {
        let mut out = MAGIC.to_vec();
        match self {
            Handle::Query { sql, params } => {
                out.push(b'Q');
                let len = u32::try_from(sql.len()).map_err(|_| {
                    Status::invalid_argument("the SQL text is too long (over 4 GiB)")
                })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(sql.as_bytes());
                if let Some(p) = params {
                    write_ipc(&mut out, &p.schema(), std::slice::from_ref(p))?;
                }
            }
            Handle::Results { schema, batches } => {
                out.push(b'R');
                write_ipc(&mut out, schema, batches)?;
            }
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out.into())
    }

    pub fn decode(bytes: &[u8]) -> Result<Handle, Status> {
        let bad = || {
            Status::invalid_argument(
                "not a Strata statement handle or ticket, or one that was altered: use the handle or ticket the server returned, unchanged",
            )
        };
        if bytes.len() < MAGIC.len() + 1 + 8 {
            return Err(bad());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if checksum(body).to_le_bytes() != sum {
            return Err(bad());
        }
        let rest = body.strip_prefix(MAGIC).ok_or_else(bad)?;
        let (&kind, rest) = rest.split_first().ok_or_else(bad)?;
        match kind {
            b'Q' => {
                if rest.len() < 4 {
                    return Err(bad());
                }
                let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                let rest = &rest[4..];
                if rest.len() < len {
                    return Err(bad());
                }
                let sql = std::str::from_utf8(&rest[..len])
                    .map_err(|_| bad())?
                    .to_string();
                let tail = &rest[len..];
                let params = if tail.is_empty() {
                    None
                } else {
                    let (schema, batches) = read_ipc(tail)?;
                    Some(
                        arrow::compute::concat_batches(&schema, &batches).map_err(|e| {
                            Status::invalid_argument(format!("bad parameters: {e}"))
                        })?,
                    )
                };
                Ok(Handle::Query { sql, params })
            }
            b'R' => {
                let (schema, batches) = read_ipc(rest)?;
                Ok(Handle::Results { schema, batches })
            }
            _ => Err(bad()),
        }
    }
}

fn write_ipc(out: &mut Vec<u8>, schema: &Schema, batches: &[RecordBatch]) -> Result<(), Status> {
    let err = |e: arrow::error::ArrowError| Status::internal(format!("encoding a handle: {e}"));
    let mut w = StreamWriter::try_new(out, schema).map_err(err)?;
    for b in batches {
        w.write(b).map_err(err)?;
    }
    w.finish().map_err(err)?;
    Ok(())
}

fn read_ipc(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let err = |e: arrow::error::ArrowError| {
        Status::invalid_argument(format!("corrupt statement handle or ticket: {e}"))
    };
    // The Arrow IPC reader may panic on inconsistent bytes (an offset past
    // its buffer): that is a corrupt handle, not a crash.
    let read = std::panic::catch_unwind(|| {
        let r = StreamReader::try_new(Cursor::new(bytes), None).map_err(err)?;
        let schema: SchemaRef = r.schema();
        let batches = r.collect::<Result<Vec<_>, _>>().map_err(err)?;
        Ok((Arc::clone(&schema), batches))
    });
    read.unwrap_or_else(|_| {
        Err(Status::invalid_argument(
            "corrupt statement handle or ticket: its Arrow data is inconsistent",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn altered_handles_are_refused_before_decoding() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["a", "bb", "ccc"]))],
        )
        .unwrap();
        let h = Handle::Results {
            schema: batch.schema(),
            batches: vec![batch],
        }
        .encode()
        .unwrap();
        // Every single-byte change, every truncation: an error, no panic.
        for i in 0..h.len() {
            let mut b = h.to_vec();
            b[i] ^= 0x5a;
            assert!(Handle::decode(&b).is_err(), "byte {i} altered");
            assert!(Handle::decode(&h[..i]).is_err(), "cut at {i}");
        }
        // A forged ticket with a valid checksum but garbage Arrow data.
        let mut forged = MAGIC.to_vec();
        forged.push(b'R');
        forged.extend_from_slice(&h[MAGIC.len() + 1..h.len() - 8]);
        for i in MAGIC.len() + 1..forged.len() {
            let mut b = forged.clone();
            b[i] = b[i].wrapping_add(97);
            let sum = checksum(&b);
            b.extend_from_slice(&sum.to_le_bytes());
            let _ = Handle::decode(&b);
        }
    }

    #[test]
    fn query_handles_round_trip_with_and_without_parameters() {
        let h = Handle::Query {
            sql: "SELECT $1".into(),
            params: None,
        };
        match Handle::decode(&h.encode().unwrap()).unwrap() {
            Handle::Query { sql, params } => {
                assert_eq!(sql, "SELECT $1");
                assert!(params.is_none());
            }
            other => panic!("{other:?}"),
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap();
        let h = Handle::Query {
            sql: "SELECT ünïcode".into(),
            params: Some(batch.clone()),
        };
        match Handle::decode(&h.encode().unwrap()).unwrap() {
            Handle::Query { sql, params } => {
                assert_eq!(sql, "SELECT ünïcode");
                assert_eq!(params.unwrap(), batch);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused_with_a_clear_message() {
        for bad in [
            &b""[..],
            b"hello",
            b"STRATA\x01Q\xff\xff\xff\xff",
            b"STRATA\x01Z",
        ] {
            let e = Handle::decode(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains("handle"), "{}", e.message());
        }
    }
}
