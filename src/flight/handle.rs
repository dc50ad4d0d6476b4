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
        if let Some(schema) = message.header_as_schema() {
            check_schema(schema)?;
        }
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

/// Check a schema message the way arrow's conversion reads it: arrow
/// panics (rather than erring) on a field whose type is unknown, whose
/// type table is missing, or whose children do not fit its type.
fn check_schema(schema: arrow::ipc::Schema) -> Result<(), ArrowError> {
    let fields = schema
        .fields()
        .ok_or_else(|| ArrowError::IpcError("a schema has no field list".into()))?;
    for field in fields.iter() {
        if field.type_type() == arrow::ipc::Type::Decimal
            && schema.endianness() == arrow::ipc::Endianness::Big
        {
            return Err(ArrowError::IpcError("a big-endian decimal field".into()));
        }
        check_field(field, 0)?;
    }
    Ok(())
}

fn check_field(field: arrow::ipc::Field, depth: usize) -> Result<(), ArrowError> {
    use arrow::ipc::{DateUnit, IntervalUnit, Precision, TimeUnit, Type, UnionMode};
    let name = field.name().unwrap_or_default();
    let bad = |what: &str| ArrowError::IpcError(format!("field {name:?}: {what}"));
    if depth > 64 {
        return Err(bad("types nested more than 64 deep"));
    }
    let int_ok = |bits: i32| matches!(bits, 8 | 16 | 32 | 64);
    if let Some(d) = field.dictionary() {
        let index = d
            .indexType()
            .ok_or_else(|| bad("a dictionary without an index type"))?;
        if !int_ok(index.bitWidth()) {
            return Err(bad("a dictionary index of an unknown width"));
        }
    }
    let children = |n: Option<usize>| -> Result<(), ArrowError> {
        let got = field.children();
        if let Some(n) = n.filter(|&n| got.map_or(0, |c| c.len()) != n) {
            return Err(bad(&format!("its type needs {n} child field(s)")));
        }
        for c in got.iter().flatten() {
            check_field(c, depth + 1)?;
        }
        Ok(())
    };
    let missing = || bad("its type's parameters are missing");
    match field.type_type() {
        Type::Null
        | Type::Bool
        | Type::Binary
        | Type::BinaryView
        | Type::LargeBinary
        | Type::Utf8
        | Type::Utf8View
        | Type::LargeUtf8 => children(None),
        Type::Int => {
            let t = field.type_as_int().ok_or_else(missing)?;
            if !int_ok(t.bitWidth()) {
                return Err(bad("an integer of an unknown width"));
            }
            children(None)
        }
        Type::FixedSizeBinary => {
            field.type_as_fixed_size_binary().ok_or_else(missing)?;
            children(None)
        }
        Type::FloatingPoint => {
            let t = field.type_as_floating_point().ok_or_else(missing)?;
            if !matches!(
                t.precision(),
                Precision::HALF | Precision::SINGLE | Precision::DOUBLE
            ) {
                return Err(bad("a float of an unknown precision"));
            }
            children(None)
        }
        Type::Date => {
            let t = field.type_as_date().ok_or_else(missing)?;
            if !matches!(t.unit(), DateUnit::DAY | DateUnit::MILLISECOND) {
                return Err(bad("a date of an unknown unit"));
            }
            children(None)
        }
        Type::Time => {
            let t = field.type_as_time().ok_or_else(missing)?;
            if !matches!(
                (t.bitWidth(), t.unit()),
                (32, TimeUnit::SECOND)
                    | (32, TimeUnit::MILLISECOND)
                    | (64, TimeUnit::MICROSECOND)
                    | (64, TimeUnit::NANOSECOND)
            ) {
                return Err(bad("a time of an unknown width or unit"));
            }
            children(None)
        }
        Type::Timestamp | Type::Duration => {
            let unit = match field.type_type() {
                Type::Timestamp => field.type_as_timestamp().map(|t| t.unit()),
                _ => field.type_as_duration().map(|t| t.unit()),
            }
            .ok_or_else(missing)?;
            if !matches!(
                unit,
                TimeUnit::SECOND
                    | TimeUnit::MILLISECOND
                    | TimeUnit::MICROSECOND
                    | TimeUnit::NANOSECOND
            ) {
                return Err(bad("a time unit that is not known"));
            }
            children(None)
        }
        Type::Interval => {
            let t = field.type_as_interval().ok_or_else(missing)?;
            if !matches!(
                t.unit(),
                IntervalUnit::YEAR_MONTH | IntervalUnit::DAY_TIME | IntervalUnit::MONTH_DAY_NANO
            ) {
                return Err(bad("an interval of an unknown unit"));
            }
            children(None)
        }
        Type::List | Type::LargeList | Type::ListView | Type::LargeListView => children(Some(1)),
        Type::FixedSizeList => {
            field.type_as_fixed_size_list().ok_or_else(missing)?;
            children(Some(1))
        }
        Type::Map => {
            field.type_as_map().ok_or_else(missing)?;
            children(Some(1))
        }
        Type::Struct_ => children(None),
        Type::RunEndEncoded => children(Some(2)),
        Type::Decimal => {
            let t = field.type_as_decimal().ok_or_else(missing)?;
            if u8::try_from(t.precision()).is_err()
                || i8::try_from(t.scale()).is_err()
                || !matches!(t.bitWidth(), 32 | 64 | 128 | 256)
            {
                return Err(bad("a decimal of an unknown width, precision or scale"));
            }
            children(None)
        }
        Type::Union => {
            let t = field.type_as_union().ok_or_else(missing)?;
            if !matches!(t.mode(), UnionMode::Dense | UnionMode::Sparse) {
                return Err(bad("a union of an unknown mode"));
            }
            children(None)?;
            if t.typeIds().is_none() && field.children().map_or(0, |c| c.len()) > 128 {
                return Err(bad("a union of more than 128 fields"));
            }
            if let Some(ids) = t.typeIds() {
                let n = field.children().map_or(0, |c| c.len());
                let mut seen = std::collections::HashSet::new();
                if ids.len() != n
                    || !ids
                        .iter()
                        .all(|i| i8::try_from(i).is_ok_and(|i| i >= 0 && seen.insert(i)))
                {
                    return Err(bad("a union whose type ids do not fit its fields"));
                }
            }
            Ok(())
        }
        t => Err(bad(&format!("a type arrow does not know ({t:?})"))),
    }
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

    /// Forged schemas of every kind of type: each altered byte of the schema
    /// is an error found by checking or a schema arrow reads, never one of
    /// arrow's panics (caught, but still a panic the server log shows).
    /// Record batches that do not fit their schema can still reach panics
    /// deep in arrow's reader; those stay caught (read_ipc).
    #[test]
    fn forged_schemas_are_errors_not_panics() {
        use arrow::array::{
            ArrayRef, Decimal128Array, DictionaryArray, Float64Array, ListArray, StructArray,
            TimestampMicrosecondArray,
        };
        use arrow::datatypes::Int32Type;
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
        ]);
        let dict: DictionaryArray<Int32Type> = vec!["x", "y"].into_iter().collect();
        let ts = TimestampMicrosecondArray::from(vec![Some(1), None]).with_timezone("UTC");
        let dec = Decimal128Array::from(vec![Some(12345), None])
            .with_precision_and_scale(10, 2)
            .unwrap();
        let strukt = StructArray::from(vec![(
            Arc::new(Field::new("f", DataType::Float64, true)),
            Arc::new(Float64Array::from(vec![Some(1.5), None])) as ArrayRef,
        )]);
        let batch = RecordBatch::try_from_iter(vec![
            ("l", Arc::new(list) as ArrayRef),
            ("d", Arc::new(dict) as ArrayRef),
            ("t", Arc::new(ts) as ArrayRef),
            ("m", Arc::new(dec) as ArrayRef),
            ("s", Arc::new(strukt) as ArrayRef),
        ])
        .unwrap();
        let h = Handle::Results {
            schema: batch.schema(),
            batches: vec![batch],
        }
        .encode()
        .unwrap();
        let ipc = &h[MAGIC.len() + 1..h.len() - 8];
        // The schema message: a continuation word, a length, the metadata.
        assert_eq!(ipc[..4], [0xff; 4]);
        let len = u32::from_le_bytes(ipc[4..8].try_into().unwrap()) as usize;
        // The schema alone (then the end-of-stream marker).
        let mut schema_only = ipc[..8 + len].to_vec();
        schema_only.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(decode_ipc(&schema_only).is_ok());
        for i in 8..8 + len {
            for delta in [1u8, 2, 7, 97, 0x80, 0xff] {
                let mut b = schema_only.clone();
                b[i] = b[i].wrapping_add(delta);
                let got = std::panic::catch_unwind(|| decode_ipc(&b));
                assert!(got.is_ok(), "byte {i} + {delta}: arrow panicked");
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
