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
//! decoded; a forged one with a valid checksum is decoded from its own bytes
//! (no allocation of a size it claims), validated, and with panics caught,
//! so bad bytes are an error for their caller, never a crash.

use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
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

/// Decode an Arrow IPC stream from a handle or ticket. The bytes came from
/// the client, so nothing in them is trusted:
/// * `StreamDecoder` over the bytes themselves: a message or body length
///   past the end is an error, never an allocation of that size (the
///   `Read`-based `StreamReader` allocates the length a message claims
///   before reading it, and a forged length of hundreds of GiB makes the
///   allocation fail, which aborts the whole process: no panic to catch);
/// * arrow's validation on (the decoder's default), and every column
///   validated in full again before use;
/// * panics inside arrow on inconsistent metadata (`unimplemented!` for an
///   unknown type id, a slice past a buffer) caught: a corrupt ticket is an
///   error for its caller, never a crash.
fn read_ipc(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let corrupt = |detail: String| {
        Status::invalid_argument(format!(
            "corrupt statement handle or ticket: {detail}; use the handle or ticket the server returned, unchanged"
        ))
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_ipc(bytes))) {
        Ok(Ok(decoded)) => Ok(decoded),
        Ok(Err(e)) => Err(corrupt(format!("its Arrow data is invalid ({e})"))),
        Err(panic) => Err(corrupt(format!(
            "its Arrow data is inconsistent ({})",
            crate::panic_message(panic.as_ref())
        ))),
    }
}

fn decode_ipc(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    check_layout(bytes)?;
    let mut buf = Buffer::from(bytes);
    // Validation stays on: `with_skip_validation` is never called.
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !buf.is_empty() {
        if let Some(batch) = decoder.decode(&mut buf)? {
            for column in batch.columns() {
                column.to_data().validate_full()?;
            }
            batches.push(batch);
        }
    }
    decoder.finish()?;
    let schema = decoder
        .schema()
        .ok_or_else(|| ArrowError::IpcError("the stream has no schema".into()))?;
    Ok((schema, batches))
}

/// Walk the stream's framing before decoding it: every message's metadata
/// and body lie within the bytes, and so does every buffer a record or
/// dictionary batch names (arrow slices its body by those without a check
/// and panics past its end).
fn check_layout(bytes: &[u8]) -> Result<(), ArrowError> {
    use arrow::ipc::MessageHeader;
    let bad = |what: String| ArrowError::IpcError(what);
    let mut rest = bytes;
    let u32_at = |rest: &mut &[u8]| -> Result<u32, ArrowError> {
        let (word, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a message length is cut off".into()))?;
        *rest = tail;
        Ok(u32::from_le_bytes(*word))
    };
    while !rest.is_empty() {
        let mut len = u32_at(&mut rest)?;
        if len == u32::MAX {
            len = u32_at(&mut rest)?;
        }
        if len == 0 {
            // The end of the stream (bytes after it are the decoder's error).
            return Ok(());
        }
        let len = len as usize;
        if len > rest.len() {
            return Err(bad(format!(
                "a message of {len} bytes with {} left",
                rest.len()
            )));
        }
        let (meta, tail) = rest.split_at(len);
        let message = arrow::ipc::root_as_message(meta)
            .map_err(|e| bad(format!("a message is not a valid flatbuffer: {e}")))?;
        let body = usize::try_from(message.bodyLength())
            .ok()
            .filter(|b| *b <= tail.len())
            .ok_or_else(|| {
                bad(format!(
                    "a message body of {} bytes with {} left",
                    message.bodyLength(),
                    tail.len()
                ))
            })?;
        let batch = match message.header_type() {
            MessageHeader::RecordBatch => message.header_as_record_batch(),
            MessageHeader::DictionaryBatch => {
                message.header_as_dictionary_batch().and_then(|d| d.data())
            }
            _ => None,
        };
        for b in batch.and_then(|b| b.buffers()).iter().flatten() {
            let end = usize::try_from(b.offset())
                .ok()
                .zip(usize::try_from(b.length()).ok())
                .and_then(|(o, l)| o.checked_add(l));
            if end.is_none_or(|e| e > body) {
                return Err(bad(format!(
                    "a buffer at {} of {} bytes in a body of {body}",
                    b.offset(),
                    b.length()
                )));
            }
        }
        rest = &tail[body..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

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
        // Each byte moved by a little, by the sign bit, by -1: a length
        // grown past the bytes (a body of hundreds of GiB) must be an error,
        // not an allocation of that size that aborts the process.
        for i in MAGIC.len() + 1..forged.len() {
            for delta in [1u8, 97, 0x80, 0xff] {
                let mut b = forged.clone();
                b[i] = b[i].wrapping_add(delta);
                let sum = checksum(&b);
                b.extend_from_slice(&sum.to_le_bytes());
                if let Err(e) = Handle::decode(&b) {
                    assert_eq!(e.code(), tonic::Code::InvalidArgument, "byte {i}");
                    assert!(e.message().contains("corrupt"), "byte {i}: {}", e.message());
                }
            }
        }
    }

    /// A forged ticket whose record batch claims a body far larger than the
    /// ticket: refused as corrupt, nothing that size allocated.
    #[test]
    fn a_forged_body_length_is_an_error_not_an_allocation() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let mut ipc = Vec::new();
        write_ipc(&mut ipc, &batch.schema(), std::slice::from_ref(&batch)).unwrap();
        // The record batch message's bodyLength (an i64 in its flatbuffer):
        // the eight bytes that, set to 2^39, make the body that long.
        let seal = |ipc: &[u8]| {
            let mut h = MAGIC.to_vec();
            h.push(b'R');
            h.extend_from_slice(ipc);
            let sum = checksum(&h);
            h.extend_from_slice(&sum.to_le_bytes());
            h
        };
        let huge = 1i64 << 39;
        let forged = (0..ipc.len() - 8)
            .filter_map(|at| {
                let mut b = ipc.clone();
                b[at..at + 8].copy_from_slice(&huge.to_le_bytes());
                let e = Handle::decode(&seal(&b)).err()?;
                e.message()
                    .contains(&format!("a message body of {huge} bytes"))
                    .then_some(e)
            })
            .next()
            .expect("a bodyLength to forge");
        assert_eq!(forged.code(), tonic::Code::InvalidArgument);
        assert!(forged.message().contains("corrupt"), "{}", forged.message());
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
