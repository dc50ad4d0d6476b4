//! Arrow ⇄ Postgres: which OID a result column gets, how a cell is written in
//! text and binary format, and how a bound parameter is read into a
//! `ScalarValue`.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast_with_options;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Decimal256Type, DurationMicrosecondType, Field,
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, IntervalUnit, Schema, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType, UInt32Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormatOptions};
use datafusion::common::ScalarValue;
use pg_interval::Interval;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, Kind, ToSql};
use strata_storage::schema::SqlType;

type BoxErr = Box<dyn StdError + Sync + Send>;

/// Microseconds between 1970-01-01 (Arrow) and 2000-01-01 (Postgres).
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between the two epochs.
const PG_EPOCH_DAYS: i32 = 10_957;

/// How one result column goes over the wire.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub pg: Type,
    kind: ColKind,
}

#[derive(Debug, Clone)]
enum ColKind {
    /// Cast to this canonical Arrow type, then write natively (as the
    /// column's SQL type when it has one: uuid, json, jsonb).
    Native { dt: DataType, tag: Option<SqlType> },
    /// Anything else: Arrow's display text, as `text`.
    Display,
}

/// The canonical Arrow type a column is converted to before encoding, or
/// `None` when it has no Postgres counterpart (written as text).
pub fn canonical(dt: &DataType) -> Option<DataType> {
    use DataType as D;
    Some(match dt {
        // Untyped (`SELECT NULL`, `SELECT $1`): text, as Postgres resolves unknown.
        D::Null => D::Utf8,
        D::Boolean => D::Boolean,
        D::Int8 | D::Int16 | D::UInt8 => D::Int16,
        D::Int32 | D::UInt16 => D::Int32,
        D::Int64 => D::Int64,
        // Postgres's `oid` (the catalogs' object ids).
        D::UInt32 => D::UInt32,
        D::UInt64 => D::Decimal128(20, 0),
        D::Float16 | D::Float32 => D::Float32,
        D::Float64 => D::Float64,
        D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s) => D::Decimal128(*p, *s),
        D::Decimal256(p, s) => D::Decimal256(*p, *s),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => D::Utf8,
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => D::Binary,
        D::Date32 | D::Date64 => D::Date32,
        D::Time32(_) | D::Time64(_) => D::Time64(TimeUnit::Microsecond),
        D::Timestamp(_, tz) => D::Timestamp(TimeUnit::Microsecond, tz.clone()),
        D::Interval(_) => D::Interval(IntervalUnit::MonthDayNano),
        D::Duration(_) => D::Duration(TimeUnit::Microsecond),
        D::Dictionary(_, v) => return canonical(v),
        D::List(f)
        | D::LargeList(f)
        | D::FixedSizeList(f, _)
        | D::ListView(f)
        | D::LargeListView(f) => {
            let inner = canonical(f.data_type())?;
            if matches!(inner, D::List(_)) {
                return None;
            }
            D::List(Arc::new(Field::new("item", inner, true)))
        }
        _ => return None,
    })
}

/// The Postgres type of a canonical Arrow type.
pub fn pg_type_of(canon: &DataType) -> Type {
    use DataType as D;
    match canon {
        D::Null => Type::TEXT,
        D::Boolean => Type::BOOL,
        D::Int16 => Type::INT2,
        D::Int32 => Type::INT4,
        D::Int64 => Type::INT8,
        D::UInt32 => Type::OID,
        D::Float32 => Type::FLOAT4,
        D::Float64 => Type::FLOAT8,
        D::Decimal128(..) | D::Decimal256(..) => Type::NUMERIC,
        D::Utf8 => Type::TEXT,
        D::Binary => Type::BYTEA,
        D::Date32 => Type::DATE,
        D::Time64(_) => Type::TIME,
        D::Timestamp(_, None) => Type::TIMESTAMP,
        D::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        D::Interval(_) | D::Duration(_) => Type::INTERVAL,
        D::List(f) => array_of(&pg_type_of(f.data_type())),
        _ => Type::TEXT,
    }
}

/// The Postgres type to report for an Arrow type (parameters and columns).
pub fn pg_type_for_arrow(dt: &DataType) -> Type {
    canonical(dt).map(|c| pg_type_of(&c)).unwrap_or(Type::TEXT)
}

/// The Postgres type of a text column tagged with a SQL type.
pub fn pg_type_for_tag(tag: SqlType) -> Type {
    match tag {
        SqlType::Uuid => Type::UUID,
        SqlType::Json => Type::JSON,
        SqlType::Jsonb => Type::JSONB,
    }
}

/// The Postgres type of a field: its SQL type tag (uuid, json, jsonb) if it
/// has one, else the type of its Arrow type.
pub fn pg_type_for_field(f: &Field) -> Type {
    match (SqlType::of(f), item_tag(f)) {
        (Some(tag), _) => pg_type_for_tag(tag),
        (None, Some(tag)) => array_of(&pg_type_for_tag(tag)),
        _ => pg_type_for_arrow(f.data_type()),
    }
}

/// The SQL type tag of a list's text items (`uuid[]`, `jsonb[]`), if any.
fn item_tag(f: &Field) -> Option<SqlType> {
    use DataType as D;
    match f.data_type() {
        D::List(item)
        | D::LargeList(item)
        | D::FixedSizeList(item, _)
        | D::ListView(item)
        | D::LargeListView(item) => SqlType::of(item),
        _ => None,
    }
}

pub fn array_of(t: &Type) -> Type {
    match *t {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::OID => Type::OID_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        Type::JSON => Type::JSON_ARRAY,
        Type::JSONB => Type::JSONB_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// Plan how each column of `schema` is sent.
pub fn plan_columns(schema: &Schema) -> Vec<ColumnPlan> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let tag = SqlType::of(f);
            match canonical(f.data_type()) {
                Some(dt) => {
                    let text_items =
                        matches!(&dt, DataType::List(i) if *i.data_type() == DataType::Utf8);
                    let (pg, tag) = match (tag, item_tag(f)) {
                        (Some(t), _) if dt == DataType::Utf8 => (pg_type_for_tag(t), Some(t)),
                        (None, Some(t)) if text_items => (array_of(&pg_type_for_tag(t)), Some(t)),
                        _ => (pg_type_of(&dt), None),
                    };
                    ColumnPlan {
                        name: strata_query::naming::client_name(f.name()).to_string(),
                        pg,
                        kind: ColKind::Native { dt, tag },
                    }
                }
                None => ColumnPlan {
                    name: strata_query::naming::client_name(f.name()).to_string(),
                    pg: Type::TEXT,
                    kind: ColKind::Display,
                },
            }
        })
        .collect()
}

/// RowDescription fields for `plans` in `format`.
pub fn field_infos(
    plans: &[ColumnPlan],
    format: &Format,
    opts: &Arc<FormatOptions>,
) -> Vec<FieldInfo> {
    plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let size = match p.pg {
                Type::BOOL => 1,
                Type::INT2 => 2,
                Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
                Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
                Type::INTERVAL | Type::UUID => 16,
                _ => -1,
            };
            FieldInfo::new(
                p.name.clone(),
                None,
                None,
                p.pg.clone(),
                format.format_for(i),
            )
            .with_format_options(opts.clone())
            .with_type_size(size)
        })
        .collect()
}

fn enc_err(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(format!("cannot encode value: {e}").into())
}

/// Encode a batch as DataRows.
pub fn encode_batch(
    batch: &RecordBatch,
    plans: &[ColumnPlan],
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<DataRow>> {
    if batch.num_columns() != plans.len() {
        return Err(PgWireError::ApiError(
            format!(
                "result has {} columns but {} were described (the table's schema changed; prepare the statement again)",
                batch.num_columns(),
                plans.len()
            )
            .into(),
        ));
    }
    let mut cols: Vec<Col> = Vec::with_capacity(plans.len());
    for (p, a) in plans.iter().zip(batch.columns()) {
        cols.push(match &p.kind {
            ColKind::Native { dt, tag } => {
                let arr = if a.data_type() == dt {
                    a.clone()
                } else {
                    // Not the safe cast: a value the described type cannot
                    // hold is an error, never a NULL.
                    cast_with_options(
                        a,
                        dt,
                        &datafusion::arrow::compute::CastOptions {
                            safe: false,
                            ..Default::default()
                        },
                    )
                    .map_err(enc_err)?
                };
                Col::Native { arr, tag: *tag }
            }
            ColKind::Display => Col::Display(a.clone()),
        });
    }
    let opts = ArrowFormatOptions::default().with_null("");
    let formatters: Vec<Option<ArrayFormatter>> = cols
        .iter()
        .map(|c| match c {
            Col::Display(a) => ArrayFormatter::try_new(a.as_ref(), &opts)
                .map(Some)
                .map_err(enc_err),
            _ => Ok(None),
        })
        .collect::<PgWireResult<_>>()?;
    let mut enc = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        for (c, fmt) in cols.iter().zip(&formatters) {
            match c {
                Col::Native { arr, tag } => encode_cell(&mut enc, arr.as_ref(), r, *tag)?,
                Col::Display(a) => {
                    if a.is_null(r) {
                        enc.encode_field(&None::<&str>)?;
                    } else {
                        let s = fmt.as_ref().expect("formatter").value(r).to_string();
                        enc.encode_field(&s)?;
                    }
                }
            }
        }
        rows.push(enc.take_row());
    }
    Ok(rows)
}

enum Col {
    Native { arr: ArrayRef, tag: Option<SqlType> },
    Display(ArrayRef),
}

fn encode_cell(
    enc: &mut DataRowEncoder,
    arr: &dyn Array,
    r: usize,
    tag: Option<SqlType>,
) -> PgWireResult<()> {
    use DataType as D;
    if arr.is_null(r) {
        return enc.encode_field(&None::<i64>);
    }
    match arr.data_type() {
        D::Null => enc.encode_field(&None::<i64>),
        D::Boolean => enc.encode_field(&arr.as_boolean().value(r)),
        D::Int16 => enc.encode_field(&arr.as_primitive::<Int16Type>().value(r)),
        D::Int32 => enc.encode_field(&arr.as_primitive::<Int32Type>().value(r)),
        D::Int64 => enc.encode_field(&arr.as_primitive::<Int64Type>().value(r)),
        D::UInt32 => enc.encode_field(&arr.as_primitive::<UInt32Type>().value(r)),
        D::Float32 => enc.encode_field(&PgFloat4(arr.as_primitive::<Float32Type>().value(r))),
        D::Float64 => enc.encode_field(&PgFloat8(arr.as_primitive::<Float64Type>().value(r))),
        D::Decimal128(_, s) => {
            let v = arr.as_primitive::<Decimal128Type>().value(r);
            enc.encode_field(&Numeric(format_decimal(&v.to_string(), *s)))
        }
        D::Decimal256(_, s) => {
            let v = arr.as_primitive::<Decimal256Type>().value(r);
            enc.encode_field(&Numeric(format_decimal(&v.to_string(), *s)))
        }
        D::Utf8 => {
            let s = arr.as_string::<i32>().value(r);
            match tag {
                Some(SqlType::Json | SqlType::Jsonb) => enc.encode_field(&JsonText(s)),
                Some(SqlType::Uuid) => enc.encode_field(&UuidText(s)),
                None => enc.encode_field(&s),
            }
        }
        D::Binary => enc.encode_field(&PgBytes(arr.as_binary::<i32>().value(r))),
        D::Date32 => enc.encode_field(&PgDate(arr.as_primitive::<Date32Type>().value(r))),
        D::Time64(_) => enc.encode_field(&PgTime(
            arr.as_primitive::<Time64MicrosecondType>().value(r),
        )),
        D::Timestamp(_, tz) => enc.encode_field(&PgTimestamp {
            us: arr.as_primitive::<TimestampMicrosecondType>().value(r),
            tz: tz.is_some(),
        }),
        D::Interval(_) => enc.encode_field(&mdn_to_interval(
            arr.as_primitive::<IntervalMonthDayNanoType>().value(r),
        )),
        D::Duration(_) => enc.encode_field(&PgInterval(Interval::new(
            0,
            0,
            arr.as_primitive::<DurationMicrosecondType>().value(r),
        ))),
        D::List(_) => {
            let values = arr.as_list::<i32>().value(r);
            encode_list(enc, values.as_ref(), tag)
        }
        other => Err(enc_err(format!("unexpected type {other}"))),
    }
}

fn collect<T>(a: &dyn Array, f: impl Fn(usize) -> T) -> PgArray<T> {
    PgArray(
        (0..a.len())
            .map(|i| if a.is_null(i) { None } else { Some(f(i)) })
            .collect(),
    )
}

/// Write `text` as an element of a text-format array, quoted and escaped
/// the way Postgres's array_out does: quotes when the element is empty, is
/// `NULL` in any case, or holds `{`, `}`, `,`, `"`, `\\` or ASCII white space.
fn push_array_element(out: &mut BytesMut, text: &str) {
    let quote = text.is_empty()
        || text.eq_ignore_ascii_case("null")
        || text.bytes().any(|b| {
            matches!(
                b,
                b'{' | b'}' | b',' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c
            )
        });
    if !quote {
        out.put_slice(text.as_bytes());
        return;
    }
    out.put_u8(b'"');
    for b in text.bytes() {
        if b == b'"' || b == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
}

/// A bytea value: `\x…` (hex) or the escape format, per `bytea_output`.
#[derive(Debug)]
pub struct PgBytes<'a>(pub &'a [u8]);

impl ToSql for PgBytes<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.put_slice(self.0);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::BYTEA
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgBytes<'_> {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        let mut text = String::with_capacity(2 + 2 * self.0.len());
        if o.bytea_output.trim().eq_ignore_ascii_case("escape") {
            for &b in self.0 {
                match b {
                    b'\\' => text.push_str("\\\\"),
                    0x20..=0x7e => text.push(b as char),
                    _ => text.push_str(&format!("\\{b:03o}")),
                }
            }
        } else {
            text.push_str("\\x");
            for b in self.0 {
                text.push_str(&format!("{b:02x}"));
            }
        }
        if is_array(ty) {
            push_array_element(out, &text);
        } else {
            out.put_slice(text.as_bytes());
        }
        Ok(IsNull::No)
    }
}

/// A one-dimensional array. Postgres writes an empty array with no
/// dimensions at all (binary: ndim 0), not as one dimension of length 0.
#[derive(Debug)]
pub struct PgArray<T>(pub Vec<Option<T>>);

impl<T: ToSql> ToSql for PgArray<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        if self.0.is_empty() {
            let member = match ty.kind() {
                Kind::Array(m) => m.oid(),
                _ => return Err(format!("{ty} is not an array type").into()),
            };
            out.put_i32(0); // dimensions
            out.put_i32(0); // has nulls
            out.put_u32(member);
            return Ok(IsNull::No);
        }
        self.0.to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        <Vec<Option<T>> as ToSql>::accepts(ty)
    }
    postgres_types::to_sql_checked!();
}

impl<T: ToSqlText> ToSqlText for PgArray<T> {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        self.0.to_sql_text(ty, out, o)
    }
}

// ---------------------------------------------------------------------------
// Floats: Postgres's float4out / float8out.

/// The decimal digits (no leading or trailing zeros, except a lone `0`) and
/// the decimal exponent of `sci`, a Rust `{:e}` rendering like `-1.25e-7`.
fn sci_parts(sci: &str) -> (bool, String, i32) {
    let (neg, body) = match sci.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, sci),
    };
    let (mant, exp) = body.split_once('e').unwrap_or((body, "0"));
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (neg, digits, exp.parse().unwrap_or(0))
}

/// Digits `d` times 10^(exp - len(d) + 1), as Postgres prints it: plain
/// when `-4 <= exp < plain_below`, else `d.ddde+XX` (at least two exponent
/// digits) — the rule of C's `%g`, which Postgres's shortest output keeps.
fn render_float(neg: bool, d: &str, exp: i32, plain_below: i32) -> String {
    let mut out = String::with_capacity(d.len() + 8);
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= plain_below {
        out.push_str(&d[..1]);
        if d.len() > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if d.len() <= int_len {
            out.push_str(d);
            out.extend(std::iter::repeat_n('0', int_len - d.len()));
        } else {
            out.push_str(&d[..int_len]);
            out.push('.');
            out.push_str(&d[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(d);
    }
    out
}

/// A float as Postgres writes it in text. With `extra_float_digits > 0`
/// (the default 1, and 3 as JDBC and psycopg set it): the shortest digits
/// that read back as the same value. Otherwise `%.Ng` with N = 15 (float8)
/// or 6 (float4) plus `extra_float_digits`.
pub fn pg_float_text(v: f64, single: bool, extra_float_digits: i8) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let base: i32 = if single { 6 } else { 15 };
    if extra_float_digits > 0 {
        let sci = if single {
            format!("{:e}", v as f32)
        } else {
            format!("{v:e}")
        };
        let (neg, d, exp) = sci_parts(&sci);
        return render_float(neg, &d, exp, base);
    }
    let precision = (base + extra_float_digits as i32).max(1);
    let sci = format!("{:.*e}", precision as usize - 1, v);
    let (neg, d, exp) = sci_parts(&sci);
    render_float(neg, &d, exp, precision)
}

/// A float8 value.
#[derive(Debug)]
pub struct PgFloat8(pub f64);

impl ToSql for PgFloat8 {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        self.0.to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::FLOAT8
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgFloat8 {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        out.put_slice(pg_float_text(self.0, false, o.extra_float_digits).as_bytes());
        Ok(IsNull::No)
    }
}

/// A float4 value.
#[derive(Debug)]
pub struct PgFloat4(pub f32);

impl ToSql for PgFloat4 {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        self.0.to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::FLOAT4
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgFloat4 {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        out.put_slice(pg_float_text(self.0 as f64, true, o.extra_float_digits).as_bytes());
        Ok(IsNull::No)
    }
}

fn encode_list(enc: &mut DataRowEncoder, a: &dyn Array, tag: Option<SqlType>) -> PgWireResult<()> {
    let json = matches!(tag, Some(SqlType::Json | SqlType::Jsonb));
    use DataType as D;
    match a.data_type() {
        D::Boolean => enc.encode_field(&collect(a, |i| a.as_boolean().value(i))),
        D::Int16 => enc.encode_field(&collect(a, |i| a.as_primitive::<Int16Type>().value(i))),
        D::Int32 => enc.encode_field(&collect(a, |i| a.as_primitive::<Int32Type>().value(i))),
        D::Int64 => enc.encode_field(&collect(a, |i| a.as_primitive::<Int64Type>().value(i))),
        D::UInt32 => enc.encode_field(&collect(a, |i| a.as_primitive::<UInt32Type>().value(i))),
        D::Float32 => enc.encode_field(&collect(a, |i| {
            PgFloat4(a.as_primitive::<Float32Type>().value(i))
        })),
        D::Float64 => enc.encode_field(&collect(a, |i| {
            PgFloat8(a.as_primitive::<Float64Type>().value(i))
        })),
        D::Decimal128(_, s) => enc.encode_field(&collect(a, |i| {
            Numeric(format_decimal(
                &a.as_primitive::<Decimal128Type>().value(i).to_string(),
                *s,
            ))
        })),
        D::Decimal256(_, s) => enc.encode_field(&collect(a, |i| {
            Numeric(format_decimal(
                &a.as_primitive::<Decimal256Type>().value(i).to_string(),
                *s,
            ))
        })),
        D::Utf8 if json => {
            enc.encode_field(&collect(a, |i| JsonText(a.as_string::<i32>().value(i))))
        }
        D::Utf8 if tag == Some(SqlType::Uuid) => {
            enc.encode_field(&collect(a, |i| UuidText(a.as_string::<i32>().value(i))))
        }
        D::Utf8 => enc.encode_field(&collect(a, |i| a.as_string::<i32>().value(i))),
        D::Binary => enc.encode_field(&collect(a, |i| PgBytes(a.as_binary::<i32>().value(i)))),
        D::Date32 => enc.encode_field(&collect(a, |i| {
            PgDate(a.as_primitive::<Date32Type>().value(i))
        })),
        D::Time64(_) => enc.encode_field(&collect(a, |i| {
            PgTime(a.as_primitive::<Time64MicrosecondType>().value(i))
        })),
        D::Timestamp(_, tz) => enc.encode_field(&collect(a, |i| PgTimestamp {
            us: a.as_primitive::<TimestampMicrosecondType>().value(i),
            tz: tz.is_some(),
        })),
        D::Interval(_) => enc.encode_field(&collect(a, |i| {
            mdn_to_interval(a.as_primitive::<IntervalMonthDayNanoType>().value(i))
        })),
        D::Duration(_) => enc.encode_field(&collect(a, |i| {
            PgInterval(Interval::new(
                0,
                0,
                a.as_primitive::<DurationMicrosecondType>().value(i),
            ))
        })),
        other => Err(enc_err(format!("unexpected array element type {other}"))),
    }
}

fn mdn_to_interval(v: IntervalMonthDayNano) -> PgInterval {
    PgInterval(Interval::new(v.months, v.days, v.nanoseconds / 1000))
}

/// An interval, written as Postgres's EncodeInterval does in each
/// IntervalStyle (`postgres`, `iso_8601`, `sql_standard`, `postgres_verbose`).
#[derive(Debug)]
pub struct PgInterval(pub Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.put_i64(self.0.microseconds);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgInterval {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        let style = o.interval_style.trim().to_ascii_lowercase();
        let text = match style.as_str() {
            "postgres" | "" => interval_postgres(&self.0),
            "iso_8601" => interval_iso(&self.0),
            "sql_standard" => interval_sql_standard(&self.0),
            "postgres_verbose" => interval_verbose(&self.0),
            _ => return self.0.to_sql_text(ty, out, o),
        };
        if is_array(ty) {
            push_array_element(out, &text);
        } else {
            out.put_slice(text.as_bytes());
        }
        Ok(IsNull::No)
    }
}

/// Years, months, days, hours, minutes, seconds and microseconds of an
/// interval, each carrying its own sign (C's truncating division).
fn interval_fields(iv: &Interval) -> [i64; 7] {
    let us = iv.microseconds;
    [
        (iv.months / 12) as i64,
        (iv.months % 12) as i64,
        iv.days as i64,
        us / 3_600_000_000,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000,
    ]
}

/// `SS[.ffffff]` with trailing zeros dropped; two digits when `fill`.
fn interval_seconds(sec: i64, micros: i64, fill: bool) -> String {
    let mut s = if fill {
        format!("{:02}", sec.unsigned_abs())
    } else {
        sec.unsigned_abs().to_string()
    };
    if micros != 0 {
        let f = format!(".{:06}", micros.unsigned_abs());
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

fn interval_postgres(iv: &Interval) -> String {
    let [year, mon, day, hour, min, sec, us] = interval_fields(iv);
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    for (v, unit) in [(year, "year"), (mon, "mon"), (day, "day")] {
        if v == 0 {
            continue;
        }
        if !is_zero {
            out.push(' ');
        }
        if is_before && v > 0 {
            out.push('+');
        }
        out.push_str(&format!("{v} {unit}{}", if v != 1 { "s" } else { "" }));
        is_before = v < 0;
        is_zero = false;
    }
    if is_zero || hour != 0 || min != 0 || sec != 0 || us != 0 {
        let minus = hour < 0 || min < 0 || sec < 0 || us < 0;
        if !is_zero {
            out.push(' ');
        }
        if minus {
            out.push('-');
        } else if is_before {
            out.push('+');
        }
        out.push_str(&format!(
            "{:02}:{:02}:{}",
            hour.unsigned_abs(),
            min.unsigned_abs(),
            interval_seconds(sec, us, true)
        ));
    }
    out
}

fn interval_sql_standard(iv: &Interval) -> String {
    let [mut year, mut mon, mut day, mut hour, mut min, mut sec, mut us] = interval_fields(iv);
    let all = [year, mon, day, hour, min, sec, us];
    let has_negative = all.iter().any(|v| *v < 0);
    let has_positive = all.iter().any(|v| *v > 0);
    let has_year_month = year != 0 || mon != 0;
    let has_day_time = day != 0 || hour != 0 || min != 0 || sec != 0 || us != 0;
    // Postgres's "sql_standard_value": one sign, and not both kinds of field.
    let mixed_signs = has_negative && has_positive;
    let mixed_fields = has_year_month && has_day_time;
    let standard = !mixed_signs && !mixed_fields;
    let mut out = String::new();
    if has_negative && standard {
        // One sign in front of the whole value.
        out.push('-');
        for v in [
            &mut year, &mut mon, &mut day, &mut hour, &mut min, &mut sec, &mut us,
        ] {
            *v = -*v;
        }
    }
    if !has_negative && !has_positive {
        out.push('0');
    } else if !standard {
        // Mixed signs or fields: every part carries its sign.
        let ys = if year < 0 || mon < 0 { '-' } else { '+' };
        let ds = if day < 0 { '-' } else { '+' };
        let ts = if hour < 0 || min < 0 || sec < 0 || us < 0 {
            '-'
        } else {
            '+'
        };
        out.push_str(&format!(
            "{ys}{}-{} {ds}{} {ts}{}:{:02}:{}",
            year.unsigned_abs(),
            mon.unsigned_abs(),
            day.unsigned_abs(),
            hour.unsigned_abs(),
            min.unsigned_abs(),
            interval_seconds(sec, us, true)
        ));
    } else if has_year_month {
        out.push_str(&format!("{year}-{mon}"));
    } else if day != 0 {
        out.push_str(&format!(
            "{day} {hour}:{min:02}:{}",
            interval_seconds(sec, us, true)
        ));
    } else {
        out.push_str(&format!(
            "{hour}:{min:02}:{}",
            interval_seconds(sec, us, true)
        ));
    }
    out
}

fn interval_verbose(iv: &Interval) -> String {
    let [year, mon, day, hour, min, sec, us] = interval_fields(iv);
    let mut out = String::from("@");
    let mut is_zero = true;
    let mut is_before = false;
    for (v, unit) in [
        (year, "year"),
        (mon, "mon"),
        (day, "day"),
        (hour, "hour"),
        (min, "min"),
    ] {
        if v == 0 {
            continue;
        }
        // The first non-zero part decides "ago"; later parts are relative to it.
        let shown = if is_zero {
            is_before = v < 0;
            v.abs()
        } else if is_before {
            -v
        } else {
            v
        };
        out.push_str(&format!(
            " {shown} {unit}{}",
            if shown == 1 { "" } else { "s" }
        ));
        is_zero = false;
    }
    if sec != 0 || us != 0 {
        out.push(' ');
        if sec < 0 || (sec == 0 && us < 0) {
            if is_zero {
                is_before = true;
            } else if !is_before {
                out.push('-');
            }
        } else if is_before {
            out.push('-');
        }
        out.push_str(&interval_seconds(sec, us, false));
        out.push_str(if sec.abs() != 1 || us != 0 {
            " secs"
        } else {
            " sec"
        });
        is_zero = false;
    }
    if is_zero {
        out.push_str(" 0");
    }
    if is_before {
        out.push_str(" ago");
    }
    out
}

fn interval_iso(iv: &Interval) -> String {
    let [year, mon, day, hour, min, sec, us] = interval_fields(iv);
    if [year, mon, day, hour, min, sec, us].iter().all(|v| *v == 0) {
        return "PT0S".into();
    }
    let mut out = String::from("P");
    for (v, u) in [(year, 'Y'), (mon, 'M'), (day, 'D')] {
        if v != 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    if hour != 0 || min != 0 || sec != 0 || us != 0 {
        out.push('T');
    }
    for (v, u) in [(hour, 'H'), (min, 'M')] {
        if v != 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    if sec != 0 || us != 0 {
        if sec < 0 || us < 0 {
            out.push('-');
        }
        out.push_str(&interval_seconds(sec, us, false));
        out.push('S');
    }
    out
}

/// `12345` with scale 2 → `123.45`; works on the decimal string of any width.
pub fn format_decimal(v: &str, scale: i8) -> String {
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let mut out = String::with_capacity(digits.len() + 3);
    if neg {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(digits);
        if digits != "0" {
            out.extend(std::iter::repeat_n('0', (-scale) as usize));
        }
    } else {
        let scale = scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits.to_string()
        };
        let (i, f) = padded.split_at(padded.len() - scale);
        out.push_str(i);
        out.push('.');
        out.push_str(f);
    }
    out
}

// ---------------------------------------------------------------------------
// Wire wrappers: each writes Postgres's own text form and its binary form.

fn is_array(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Array(_))
}

/// A numeric as its plain decimal string (`-12.340`).
#[derive(Debug)]
pub struct Numeric(pub String);

impl ToSql for Numeric {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        numeric_to_binary(&self.0, out)?;
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for Numeric {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// Postgres binary numeric: ndigits, weight, sign, dscale, base-10000 digits.
pub fn numeric_to_binary(s: &str, out: &mut BytesMut) -> Result<(), BoxErr> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid numeric `{s}`").into());
    }
    let int = int.trim_start_matches('0');
    let dscale = frac.len();
    // Left-pad the integer part and right-pad the fraction to whole groups of 4.
    let int_pad = (4 - int.len() % 4) % 4;
    let int_s = format!("{}{}", "0".repeat(int_pad), int);
    let frac_pad = (4 - frac.len() % 4) % 4;
    let frac_s = format!("{}{}", frac, "0".repeat(frac_pad));
    let group = |c: &[u8]| -> i16 { c.iter().fold(0i16, |a, d| a * 10 + (d - b'0') as i16) };
    let mut digits: Vec<i16> = int_s.as_bytes().chunks(4).map(group).collect();
    let mut weight = digits.len() as i16 - 1;
    digits.extend(frac_s.as_bytes().chunks(4).map(group));
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if neg && !digits.is_empty() { 0x4000 } else { 0 });
    out.put_u16(dscale as u16);
    for d in digits {
        out.put_i16(d);
    }
    Ok(())
}

/// Decode a binary numeric into its plain decimal string.
pub fn numeric_from_binary(b: &[u8]) -> Result<String, String> {
    if b.len() < 8 {
        return Err("numeric value too short".into());
    }
    let rd16 = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
    let ndigits = rd16(0) as usize;
    let weight = rd16(2) as i32;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]) as usize;
    if sign == 0xC000 {
        return Err("NaN cannot be stored as a decimal".into());
    }
    if sign == 0xD000 || sign == 0xF000 {
        return Err("infinity cannot be stored as a decimal".into());
    }
    if b.len() < 8 + 2 * ndigits {
        return Err("numeric value truncated".into());
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| rd16(8 + 2 * i)).collect();
    let digit_at = |g: i32| -> i16 {
        // group g has weight (weight - g)
        if g < 0 || g as usize >= digits.len() {
            0
        } else {
            digits[g as usize]
        }
    };
    let mut int = String::new();
    if weight >= 0 {
        for w in (0..=weight).rev() {
            let g = weight - w;
            let d = digit_at(g);
            if int.is_empty() {
                if d != 0 {
                    int.push_str(&d.to_string());
                }
            } else {
                int.push_str(&format!("{d:04}"));
            }
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut w = -1;
    while frac.len() < dscale {
        let g = weight - w;
        frac.push_str(&format!("{:04}", digit_at(g)));
        w -= 1;
    }
    frac.truncate(dscale);
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    s.push_str(&int);
    if dscale > 0 {
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Days since 1970-01-01.
#[derive(Debug)]
pub struct PgDate(pub i32);

impl ToSql for PgDate {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.put_i32(match self.0 {
            i32::MAX | i32::MIN => self.0,
            d => d - PG_EPOCH_DAYS,
        });
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgDate {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        match self.0 {
            i32::MAX => out.put_slice(b"infinity"),
            i32::MIN => out.put_slice(b"-infinity"),
            d => {
                let date =
                    NaiveDate::from_num_days_from_ce_opt(d + 719_163).ok_or("date out of range")?;
                let style = DateStyle::parse(&o.date_style);
                let (mut text, bc) = style.date(&date);
                if bc {
                    text.push_str(" BC");
                }
                if is_array(ty) {
                    push_array_element(out, &text);
                } else {
                    out.put_slice(text.as_bytes());
                }
            }
        }
        Ok(IsNull::No)
    }
}

/// Postgres's DateStyle: the output style and whether days come before
/// months (`DMY`) in the SQL and Postgres styles.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DateStyle {
    Iso,
    Sql { dmy: bool },
    Postgres { dmy: bool },
    German,
}

impl DateStyle {
    /// `ISO, MDY`, `SQL, DMY`, `Postgres`, `German`, ... (unknown words are
    /// ignored; German alone implies DMY, like Postgres).
    fn parse(s: &str) -> DateStyle {
        let mut style = "ISO".to_string();
        let mut dmy = None;
        for tok in s
            .split([',', ' '])
            .map(|t| t.trim().to_ascii_uppercase())
            .filter(|t| !t.is_empty())
        {
            match tok.as_str() {
                "ISO" | "SQL" | "POSTGRES" | "GERMAN" => style = tok,
                "DMY" | "EURO" | "EUROPEAN" => dmy = Some(true),
                "MDY" | "YMD" | "US" | "NONEURO" | "NONEUROPEAN" => dmy = Some(false),
                _ => {}
            }
        }
        match style.as_str() {
            "SQL" => DateStyle::Sql {
                dmy: dmy.unwrap_or(false),
            },
            "POSTGRES" => DateStyle::Postgres {
                dmy: dmy.unwrap_or(false),
            },
            "GERMAN" => DateStyle::German,
            _ => DateStyle::Iso,
        }
    }

    /// A date as this style writes it alone, and whether it is BC (the
    /// caller appends ` BC` after everything else).
    fn date(self, d: &NaiveDate) -> (String, bool) {
        let y = d.year();
        let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
        let (m, day) = (d.month(), d.day());
        let text = match self {
            DateStyle::Iso => format!("{year:04}-{m:02}-{day:02}"),
            DateStyle::Sql { dmy: true } => format!("{day:02}/{m:02}/{year:04}"),
            DateStyle::Sql { dmy: false } => format!("{m:02}/{day:02}/{year:04}"),
            DateStyle::Postgres { dmy: true } => format!("{day:02}-{m:02}-{year:04}"),
            DateStyle::Postgres { dmy: false } => format!("{m:02}-{day:02}-{year:04}"),
            DateStyle::German => format!("{day:02}.{m:02}.{year:04}"),
        };
        (text, bc)
    }

    /// A timestamp (local time) as this style writes it; `zone` is the
    /// UTC offset in seconds and the zone's abbreviation, for timestamptz.
    fn timestamp(self, t: &NaiveDateTime, zone: Option<(i32, &str)>) -> String {
        let d = t.date();
        let (date, bc) = self.date(&d);
        let mut clock = t.format("%H:%M:%S").to_string();
        push_frac(&mut clock, t.nanosecond() / 1000);
        let mut s = match self {
            DateStyle::Iso => {
                let mut s = format!("{date} {clock}");
                if let Some((off, _)) = zone {
                    push_offset(&mut s, off);
                }
                s
            }
            DateStyle::Sql { .. } | DateStyle::German => {
                let mut s = format!("{date} {clock}");
                if let Some((_, abbrev)) = zone {
                    s.push(' ');
                    s.push_str(abbrev);
                }
                s
            }
            DateStyle::Postgres { dmy } => {
                let y = d.year();
                let year = if y <= 0 { 1 - y } else { y };
                let day_month = if dmy {
                    format!("{:02} {}", d.day(), d.format("%b"))
                } else {
                    format!("{} {:02}", d.format("%b"), d.day())
                };
                let mut s = format!("{} {day_month} {clock} {year:04}", d.format("%a"));
                if let Some((_, abbrev)) = zone {
                    s.push(' ');
                    s.push_str(abbrev);
                }
                s
            }
        };
        if bc {
            s.push_str(" BC");
        }
        s
    }
}

/// A session TimeZone: a tz database zone, or a fixed offset.
#[derive(Debug, Clone)]
pub enum SessionZone {
    Named(chrono_tz::Tz),
    /// Seconds east of UTC and the abbreviation shown by the SQL, Postgres
    /// and German DateStyles (may be empty, as in Postgres).
    Fixed {
        east: i32,
        abbrev: String,
    },
}

impl SessionZone {
    /// The name `SHOW TimeZone` gives: tz database names in their own case.
    pub fn canonical(&self, original: &str) -> String {
        match self {
            SessionZone::Named(z) => z.name().to_string(),
            SessionZone::Fixed { .. } => original.to_string(),
        }
    }
}

/// The UTC offset (seconds east) and abbreviation (`CET`, `EDT`, `LMT`) of
/// the session time zone `tz` at `at`. Zones that do not parse count as UTC.
pub fn session_zone(at: &DateTime<chrono::Utc>, tz: &str) -> (i32, String) {
    use chrono::{Offset, TimeZone};
    use chrono_tz::OffsetName;
    match parse_time_zone(tz) {
        Some(SessionZone::Named(z)) => {
            let off = z.offset_from_utc_datetime(&at.naive_utc());
            let secs = off.fix().local_minus_utc();
            let abbrev = match off.abbreviation() {
                Some(a) => a.to_string(),
                None => {
                    let mut s = String::new();
                    push_offset(&mut s, secs);
                    s
                }
            };
            (secs, abbrev)
        }
        Some(SessionZone::Fixed { east, abbrev }) => (east, abbrev),
        None => (0, "UTC".into()),
    }
}

/// A TimeZone setting as Postgres reads it: a number is hours east of UTC
/// (`+02`, `-5`, `5.5`); a tz database name in any case (`Europe/Berlin`,
/// `utc`, `EST5EDT`); or a POSIX zone without daylight rules, whose offset
/// counts hours *west* (`UTC+3` is three hours behind UTC, `+05:30`,
/// `GMT-05:30`). None for anything else.
pub fn parse_time_zone(tz: &str) -> Option<SessionZone> {
    if let Ok(hours) = tz.parse::<f64>() {
        if hours.is_finite() && hours.abs() < 24.0 {
            let east = (hours * 3600.0).round() as i32;
            let mut abbrev = String::new();
            push_offset(&mut abbrev, east);
            return Some(SessionZone::Fixed { east, abbrev });
        }
        return None;
    }
    if let Ok(z) = tz.parse::<chrono_tz::Tz>() {
        return Some(SessionZone::Named(z));
    }
    if let Some(z) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|z| z.name().eq_ignore_ascii_case(tz))
    {
        return Some(SessionZone::Named(*z));
    }
    // POSIX: [abbreviation of 3+ letters] [+|-]hh[:mm[:ss]]
    let letters = tz.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    if letters != 0 && letters < 3 {
        return None;
    }
    let (abbrev, rest) = tz.split_at(letters);
    let (sign, rest) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => (1, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let nums: Vec<i32> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
    let west =
        nums[0] * 3600 + nums.get(1).copied().unwrap_or(0) * 60 + nums.get(2).copied().unwrap_or(0);
    if nums[0] > 24 || nums.get(1).is_some_and(|m| *m > 59) || nums.get(2).is_some_and(|s| *s > 59)
    {
        return None;
    }
    Some(SessionZone::Fixed {
        east: -sign * west,
        abbrev: abbrev.to_string(),
    })
}

/// `+01`, `-05`, `+05:30`, `+00:53:28`: how Postgres writes a UTC offset.
fn push_offset(s: &mut String, off: i32) {
    s.push(if off < 0 { '-' } else { '+' });
    let a = off.unsigned_abs();
    let (h, m, sec) = (a / 3600, a / 60 % 60, a % 60);
    s.push_str(&format!("{h:02}"));
    if m != 0 || sec != 0 {
        s.push_str(&format!(":{m:02}"));
    }
    if sec != 0 {
        s.push_str(&format!(":{sec:02}"));
    }
}

/// Microseconds since midnight.
#[derive(Debug)]
pub struct PgTime(pub i64);

impl ToSql for PgTime {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.put_i64(self.0);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIME
    }
    postgres_types::to_sql_checked!();
}

fn push_frac(out: &mut String, micros: u32) {
    if micros != 0 {
        let f = format!(".{micros:06}");
        out.push_str(f.trim_end_matches('0'));
    }
}

impl ToSqlText for PgTime {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u32;
        let t = NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, micros * 1000)
            .ok_or("time out of range")?;
        let mut s = t.format("%H:%M:%S").to_string();
        push_frac(&mut s, micros);
        out.put_slice(s.as_bytes());
        Ok(IsNull::No)
    }
}

/// Microseconds since 1970-01-01 UTC; `tz` for timestamptz. i64::MAX/MIN are ±infinity.
#[derive(Debug)]
pub struct PgTimestamp {
    pub us: i64,
    pub tz: bool,
}

impl ToSql for PgTimestamp {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.put_i64(match self.us {
            i64::MAX | i64::MIN => self.us,
            us => us
                .checked_sub(PG_EPOCH_US)
                .ok_or("timestamp out of range")?,
        });
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgTimestamp {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        match self.us {
            i64::MAX => out.put_slice(b"infinity"),
            i64::MIN => out.put_slice(b"-infinity"),
            us => {
                let dt = DateTime::from_timestamp_micros(us).ok_or("timestamp out of range")?;
                let style = DateStyle::parse(&o.date_style);
                // timestamptz shows in the session's TimeZone, with its
                // offset (ISO) or abbreviation (the other styles).
                let s = if self.tz {
                    let (off, abbrev) = session_zone(&dt, &o.time_zone);
                    let local = dt.naive_utc() + chrono::Duration::seconds(off as i64);
                    style.timestamp(&local, Some((off, &abbrev)))
                } else {
                    style.timestamp(&dt.naive_utc(), None)
                };
                if is_array(ty) {
                    push_array_element(out, &s);
                } else {
                    out.put_slice(s.as_bytes());
                }
            }
        }
        Ok(IsNull::No)
    }
}

/// A JSON document held as text.
#[derive(Debug)]
pub struct JsonText<'a>(pub &'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for JsonText<'_> {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        self.0.to_sql_text(ty, out, o)
    }
}

/// A uuid held as text (lowercase, hyphenated: how Strata stores it).
#[derive(Debug)]
pub struct UuidText<'a>(pub &'a str);

impl ToSql for UuidText<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxErr> {
        out.put_slice(&uuid_bytes(self.0).ok_or_else(|| invalid("uuid", self.0))?);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::UUID
    }
    postgres_types::to_sql_checked!();
}

impl ToSqlText for UuidText<'_> {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        o: &FormatOptions,
    ) -> Result<IsNull, BoxErr> {
        self.0.to_sql_text(ty, out, o)
    }
}

/// The 16 bytes of a uuid in any form Postgres accepts.
fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let n = strata_storage::schema::normalize_uuid(s)?;
    let hex: Vec<u8> = n.bytes().filter(|c| *c != b'-').collect();
    let mut b = [0u8; 16];
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::from_str_radix(std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?, 16).ok()?;
    }
    Some(b)
}

// ---------------------------------------------------------------------------
// Parameters.

/// The Arrow type a parameter of Postgres type `ty` is read as.
pub fn arrow_for_pg(ty: &Type) -> DataType {
    match ty.kind() {
        Kind::Array(member) => {
            DataType::List(Arc::new(Field::new("item", arrow_for_pg(member), true)))
        }
        _ => match *ty {
            Type::BOOL => DataType::Boolean,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => DataType::Int64,
            Type::FLOAT4 | Type::FLOAT8 => DataType::Float64,
            Type::NUMERIC => DataType::Decimal128(38, 10),
            Type::BYTEA => DataType::Binary,
            Type::DATE => DataType::Date32,
            Type::TIME => DataType::Time64(TimeUnit::Microsecond),
            Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
            Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
            _ => DataType::Utf8,
        },
    }
}

/// Read one bound parameter of type `ty` (text or binary) as a ScalarValue.
pub fn decode_param(ty: &Type, binary: bool, raw: Option<&[u8]>) -> Result<ScalarValue, String> {
    let Some(raw) = raw else {
        return ScalarValue::try_from(&arrow_for_pg(ty)).map_err(|e| e.to_string());
    };
    if let Kind::Array(member) = ty.kind() {
        let elems = if binary {
            binary_array_elements(raw)?
                .into_iter()
                .map(|e| decode_param(member, true, e))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let s = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
            parse_text_array(s)?
                .into_iter()
                .map(|e| decode_param(member, false, e.as_deref().map(str::as_bytes)))
                .collect::<Result<Vec<_>, _>>()?
        };
        let elem_dt = elems
            .iter()
            .find(|v| !v.is_null())
            .map(|v| v.data_type())
            .unwrap_or_else(|| arrow_for_pg(member));
        let elems = elems
            .into_iter()
            .map(|v| {
                if v.data_type() == elem_dt {
                    Ok(v)
                } else {
                    v.cast_to(&elem_dt)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        return Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &elems, &elem_dt,
        )));
    }
    if binary {
        decode_binary(ty, raw)
    } else {
        let s = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8 in parameter: {e}"))?;
        decode_text(ty, s)
    }
}

fn fixed<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("binary {what} must be {N} bytes, got {}", b.len()))
}

fn decode_binary(ty: &Type, b: &[u8]) -> Result<ScalarValue, String> {
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(fixed::<1>(b, "bool")?[0] != 0)),
        Type::INT2 => ScalarValue::Int64(Some(i16::from_be_bytes(fixed(b, "int2")?) as i64)),
        Type::INT4 => ScalarValue::Int64(Some(i32::from_be_bytes(fixed(b, "int4")?) as i64)),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(fixed(b, "int8")?))),
        Type::OID => ScalarValue::Int64(Some(u32::from_be_bytes(fixed(b, "oid")?) as i64)),
        Type::FLOAT4 => ScalarValue::Float64(Some(f32::from_be_bytes(fixed(b, "float4")?) as f64)),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(b, "float8")?))),
        Type::NUMERIC => decimal_scalar(&numeric_from_binary(b)?)?,
        Type::BYTEA => ScalarValue::Binary(Some(b.to_vec())),
        Type::DATE => {
            let d = i32::from_be_bytes(fixed(b, "date")?);
            ScalarValue::Date32(Some(if d == i32::MAX || d == i32::MIN {
                d
            } else {
                d + PG_EPOCH_DAYS
            }))
        }
        Type::TIME => ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(fixed(b, "time")?))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let v = i64::from_be_bytes(fixed(b, "timestamp")?);
            let us = if v == i64::MAX || v == i64::MIN {
                v
            } else {
                v.checked_add(PG_EPOCH_US).ok_or("timestamp out of range")?
            };
            ScalarValue::TimestampMicrosecond(
                Some(us),
                (*ty == Type::TIMESTAMPTZ).then(|| "UTC".into()),
            )
        }
        Type::INTERVAL => {
            let b: [u8; 16] = fixed(b, "interval")?;
            let us = i64::from_be_bytes(b[0..8].try_into().unwrap());
            let days = i32::from_be_bytes(b[8..12].try_into().unwrap());
            let months = i32::from_be_bytes(b[12..16].try_into().unwrap());
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
                months,
                days,
                nanoseconds: us.saturating_mul(1000),
            }))
        }
        Type::UUID => ScalarValue::Utf8(Some(uuid_string(&fixed::<16>(b, "uuid")?))),
        Type::JSONB => {
            let body = b.strip_prefix(&[1u8]).ok_or("unsupported jsonb version")?;
            let s = std::str::from_utf8(body).map_err(|e| e.to_string())?;
            json_param(SqlType::Jsonb, s)?
        }
        Type::JSON => json_param(
            SqlType::Json,
            std::str::from_utf8(b).map_err(|e| format!("invalid UTF-8 in parameter: {e}"))?,
        )?,
        _ => ScalarValue::Utf8(Some(
            String::from_utf8(b.to_vec())
                .map_err(|e| format!("invalid UTF-8 in parameter: {e}"))?,
        )),
    })
}

fn uuid_string(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn invalid(tyname: &str, s: &str) -> String {
    format!("invalid input syntax for type {tyname}: \"{s}\"")
}

fn decode_text(ty: &Type, s: &str) -> Result<ScalarValue, String> {
    let t = s.trim();
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(match t.to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => true,
            "f" | "false" | "n" | "no" | "off" | "0" => false,
            _ => return Err(invalid("boolean", s)),
        })),
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            ScalarValue::Int64(Some(t.parse::<i64>().map_err(|_| invalid(ty.name(), s))?))
        }
        Type::FLOAT4 | Type::FLOAT8 => {
            ScalarValue::Float64(Some(t.parse::<f64>().map_err(|_| invalid(ty.name(), s))?))
        }
        Type::NUMERIC => decimal_scalar(&plain_decimal(t).ok_or_else(|| invalid("numeric", s))?)?,
        Type::BYTEA => ScalarValue::Binary(Some(bytea_from_text(s)?)),
        Type::DATE => ScalarValue::Date32(Some(match t {
            "infinity" => i32::MAX,
            "-infinity" => i32::MIN,
            _ => match NaiveDate::parse_from_str(t, "%Y-%m-%d") {
                Ok(d) => d.num_days_from_ce() - 719_163,
                Err(_) => return cast_text(t, &DataType::Date32, "date"),
            },
        })),
        Type::TIME => {
            let parsed = NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"));
            match parsed {
                Ok(tm) => ScalarValue::Time64Microsecond(Some(
                    tm.num_seconds_from_midnight() as i64 * 1_000_000
                        + (tm.nanosecond() / 1000) as i64,
                )),
                Err(_) => return cast_text(t, &DataType::Time64(TimeUnit::Microsecond), "time"),
            }
        }
        Type::TIMESTAMP => {
            ScalarValue::TimestampMicrosecond(Some(parse_timestamp(t, false)?), None)
        }
        Type::TIMESTAMPTZ => {
            ScalarValue::TimestampMicrosecond(Some(parse_timestamp(t, true)?), Some("UTC".into()))
        }
        Type::INTERVAL => {
            let parsed = Interval::from_postgres(t)
                .ok()
                .or_else(|| Interval::from_iso(t).ok());
            match parsed {
                Some(i) => ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
                    months: i.months,
                    days: i.days,
                    nanoseconds: i.microseconds.saturating_mul(1000),
                })),
                None => {
                    return cast_text(
                        t,
                        &DataType::Interval(IntervalUnit::MonthDayNano),
                        "interval",
                    )
                }
            }
        }
        Type::UUID => ScalarValue::Utf8(Some(
            strata_storage::schema::normalize_uuid(t).ok_or_else(|| invalid("uuid", s))?,
        )),
        Type::JSON => json_param(SqlType::Json, s)?,
        Type::JSONB => json_param(SqlType::Jsonb, s)?,
        _ => ScalarValue::Utf8(Some(s.to_string())),
    })
}

/// A json / jsonb parameter: checked, and for jsonb normalized as stored.
fn json_param(tag: SqlType, s: &str) -> Result<ScalarValue, String> {
    Ok(ScalarValue::Utf8(Some(match tag.conform(s)? {
        Some(n) => n,
        None => s.to_string(),
    })))
}

fn cast_text(t: &str, dt: &DataType, tyname: &str) -> Result<ScalarValue, String> {
    ScalarValue::Utf8(Some(t.to_string()))
        .cast_to(dt)
        .map_err(|_| invalid(tyname, t))
}

fn parse_timestamp(t: &str, tz: bool) -> Result<i64, String> {
    match t.to_ascii_lowercase().as_str() {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let norm = t.replacen('T', " ", 1);
    let norm = match norm.strip_suffix('Z').or_else(|| norm.strip_suffix('z')) {
        Some(n) => format!("{n}+00:00"),
        None => norm,
    };
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(&norm, f) {
            // timestamp without time zone ignores an offset, as Postgres does
            return Ok(if tz {
                d.timestamp_micros()
            } else {
                d.naive_local().and_utc().timestamp_micros()
            });
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(&norm, f) {
            return Ok(d.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(&norm, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros());
    }
    let dt = DataType::Timestamp(TimeUnit::Microsecond, tz.then(|| "UTC".into()));
    match cast_text(
        t,
        &dt,
        if tz {
            "timestamp with time zone"
        } else {
            "timestamp"
        },
    )? {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Ok(v),
        _ => Err(invalid("timestamp", t)),
    }
}

/// `1.5e3` → `1500`, `-0.0100` → `-0.0100`; None if not a number.
pub fn plain_decimal(s: &str) -> Option<String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = format!("{int}{frac}");
    let mut point = int.len() as i32 + exp; // position of the decimal point in `digits`
    if point < 0 {
        digits = format!("{}{}", "0".repeat((-point) as usize), digits);
        point = 0;
    }
    if point as usize > digits.len() {
        digits.push_str(&"0".repeat(point as usize - digits.len()));
    }
    let (i, f) = digits.split_at(point as usize);
    let i = i.trim_start_matches('0');
    let i = if i.is_empty() { "0" } else { i };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(i);
    if !f.is_empty() {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

/// A plain decimal string as Decimal128(38, its scale).
fn decimal_scalar(s: &str) -> Result<ScalarValue, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    if int.len() + frac.len() > 38 {
        return Err(format!("numeric value {s} has more than 38 digits"));
    }
    let digits = format!("{int}{frac}");
    let mut v: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| invalid("numeric", s))?
    };
    if neg {
        v = -v;
    }
    Ok(ScalarValue::Decimal128(Some(v), 38, frac.len() as i8))
}

fn bytea_from_text(s: &str) -> Result<Vec<u8>, String> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
        if !hex.len().is_multiple_of(2) {
            return Err(invalid("bytea", s));
        }
        return (0..hex.len() / 2)
            .map(|i| {
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| invalid("bytea", s))
            })
            .collect();
    }
    // escape format: \\ and \ooo
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else if i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
                i += 4;
            } else {
                return Err(invalid("bytea", s));
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// `{1,2,NULL,"a b"}` → elements (one dimension).
pub fn parse_text_array(s: &str) -> Result<Vec<Option<String>>, String> {
    let t = s.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .ok_or_else(|| format!("malformed array literal: \"{s}\""))?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut cur = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => cur.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => return Err(format!("malformed array literal: \"{s}\"")),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' || c == '}' {
                    return Err("multidimensional arrays are not supported".into());
                }
                if c == '\\' {
                    chars.next();
                    cur.extend(chars.next());
                    continue;
                }
                cur.push(c);
                chars.next();
            }
            cur = cur.trim_end().to_string();
        }
        if !quoted && cur.eq_ignore_ascii_case("null") {
            out.push(None);
        } else {
            out.push(Some(cur));
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(c) => return Err(format!("malformed array literal: unexpected `{c}`")),
        }
    }
    Ok(out)
}

/// The elements of a binary array (one dimension).
fn binary_array_elements(b: &[u8]) -> Result<Vec<Option<&[u8]>>, String> {
    let rd = |i: usize| -> Result<i32, String> {
        b.get(i..i + 4)
            .map(|x| i32::from_be_bytes(x.try_into().unwrap()))
            .ok_or_else(|| "binary array truncated".to_string())
    };
    let ndim = rd(0)?;
    if ndim == 0 {
        return Ok(vec![]);
    }
    if ndim != 1 {
        return Err("multidimensional arrays are not supported".into());
    }
    let n = rd(12)?.max(0) as usize;
    let mut pos = 20;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = rd(pos)?;
        pos += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = pos + len as usize;
            out.push(Some(b.get(pos..end).ok_or("binary array truncated")?));
            pos = end;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_roundtrip() {
        for s in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "-0.5",
            "100000000",
            "123456789012345678901234567890.12345678",
            "0.00",
        ] {
            let mut b = BytesMut::new();
            numeric_to_binary(s, &mut b).unwrap();
            let back = numeric_from_binary(&b).unwrap();
            assert_eq!(plain_decimal(&back), plain_decimal(s), "{s} -> {back}");
        }
    }

    #[test]
    fn floats_like_postgres() {
        let f8 = |v: f64, e: i8| pg_float_text(v, false, e);
        assert_eq!(f8(4.0, 1), "4");
        assert_eq!(f8(1.5, 1), "1.5");
        assert_eq!(f8(1e20, 1), "1e+20");
        assert_eq!(f8(1e15, 1), "1e+15");
        assert_eq!(f8(1e14, 1), "100000000000000");
        assert_eq!(f8(1.2345678901234567e-05, 3), "1.2345678901234568e-05");
        assert_eq!(f8(0.0001, 1), "0.0001");
        assert_eq!(f8(-0.0, 1), "-0");
        assert_eq!(f8(f64::NEG_INFINITY, 1), "-Infinity");
        assert_eq!(f8(f64::NAN, 0), "NaN");
        assert_eq!(f8(5e-324, 1), "5e-324");
        assert_eq!(f8(123456789012345678.0, 0), "1.23456789012346e+17");
        assert_eq!(f8(999999999999999.0, -3), "1e+15");
        assert_eq!(f8(0.1, 0), "0.1");
        let f4 = |v: f32, e: i8| pg_float_text(v as f64, true, e);
        assert_eq!(f4(1234567.0, 1), "1.234567e+06");
        assert_eq!(f4(123456.0, 1), "123456");
        assert_eq!(f4(0.1, 1), "0.1");
        assert_eq!(f4(1234567.0, 0), "1.23457e+06");
    }

    #[test]
    fn time_zone_settings() {
        let at = DateTime::from_timestamp(1_577_934_245, 0).unwrap();
        let z = |s: &str| session_zone(&at, s);
        assert_eq!(z("Europe/Berlin"), (3600, "CET".into()));
        assert_eq!(z("europe/berlin"), (3600, "CET".into()));
        assert_eq!(z("UTC+3"), (-3 * 3600, "UTC".into()));
        assert_eq!(z("GMT-05:30"), (5 * 3600 + 1800, "GMT".into()));
        assert_eq!(z("+05:30"), (-(5 * 3600 + 1800), "".into()));
        assert_eq!(z("+02"), (7200, "+02".into()));
        assert_eq!(z("-5"), (-5 * 3600, "-05".into()));
        assert!(parse_time_zone("Mars/Olympus").is_none());
        assert!(parse_time_zone("IST").is_none());
        assert!(parse_time_zone("Z").is_none());
    }

    #[test]
    fn timestamps_in_session_zone() {
        let mut o = FormatOptions::default();
        let text = |us: i64, tz: bool, o: &FormatOptions| {
            let mut b = BytesMut::new();
            PgTimestamp { us, tz }
                .to_sql_text(&Type::TIMESTAMPTZ, &mut b, o)
                .unwrap();
            String::from_utf8(b.to_vec()).unwrap()
        };
        // 2020-01-02 03:04:05.5 UTC
        let us = 1_577_934_245_500_000;
        assert_eq!(text(us, true, &o), "2020-01-02 03:04:05.5+00");
        o.time_zone = "Europe/Berlin".into();
        assert_eq!(text(us, true, &o), "2020-01-02 04:04:05.5+01");
        o.time_zone = "Asia/Kolkata".into();
        assert_eq!(text(us, true, &o), "2020-01-02 08:34:05.5+05:30");
        assert_eq!(text(us, false, &o), "2020-01-02 03:04:05.5");
        let d = NaiveDate::from_ymd_opt(-43, 3, 15).unwrap();
        assert_eq!(DateStyle::Iso.date(&d), ("0044-03-15".to_string(), true));
        assert_eq!(DateStyle::parse("German"), DateStyle::German);
        assert_eq!(DateStyle::parse("SQL, DMY").date(&d).0, "15/03/0044");
    }

    #[test]
    fn intervals_like_postgres() {
        let pg = |m, d, us| interval_postgres(&Interval::new(m, d, us));
        let iso = |m, d, us| interval_iso(&Interval::new(m, d, us));
        assert_eq!(pg(14, 3, 14_706_500_000), "1 year 2 mons 3 days 04:05:06.5");
        assert_eq!(pg(0, -1, 0), "-1 days");
        assert_eq!(pg(0, 0, 0), "00:00:00");
        assert_eq!(pg(1, -1, 0), "1 mon -1 days");
        assert_eq!(pg(0, 0, -1_000_000), "-00:00:01");
        assert_eq!(pg(0, 1, -500_000), "1 day -00:00:00.5");
        assert_eq!(pg(0, -1, 1_000_000), "-1 days +00:00:01");
        assert_eq!(pg(0, 0, 360_000_000_000), "100:00:00");
        assert_eq!(iso(14, 3, 14_706_500_000), "P1Y2M3DT4H5M6.5S");
        assert_eq!(iso(0, 1, -500_000), "P1DT-0.5S");
        assert_eq!(iso(0, 0, 0), "PT0S");
    }

    #[test]
    fn tagged_list_items() {
        use datafusion::arrow::array::{ListArray, StringArray};
        let item = SqlType::Uuid.field("item");
        let field = Field::new("u", DataType::List(Arc::new(item.clone())), true);
        assert_eq!(pg_type_for_field(&field), Type::UUID_ARRAY);
        let schema = Schema::new(vec![field]);
        let plans = plan_columns(&schema);
        assert_eq!(plans[0].pg, Type::UUID_ARRAY);
        let values = StringArray::from(vec![Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), None]);
        let list = ListArray::new(
            Arc::new(item),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([2]),
            Arc::new(values),
            None,
        );
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(list)]).unwrap();
        let opts = Arc::new(FormatOptions::default());
        for (format, want) in [
            (
                Format::UnifiedText,
                b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}".to_vec(),
            ),
            (Format::UnifiedBinary, {
                let mut w = vec![
                    0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0x0b, 0x86, 0, 0, 0, 2, 0, 0, 0, 1,
                ];
                w.extend([0, 0, 0, 16]);
                w.extend(uuid_bytes("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap());
                w.extend([0xff, 0xff, 0xff, 0xff]);
                w
            }),
        ] {
            let fields = Arc::new(field_infos(&plans, &format, &opts));
            let rows = encode_batch(&batch, &plans, &fields).unwrap();
            let mut buf = BytesMut::new();
            use pgwire::messages::Message;
            rows[0].encode(&mut buf).unwrap();
            // DataRow: tag, length, column count, then length + bytes.
            let body = &buf[11..];
            assert_eq!(body, &want[..], "{format:?}");
        }
    }

    #[test]
    fn decimals_format() {
        assert_eq!(format_decimal("12345", 2), "123.45");
        assert_eq!(format_decimal("-5", 3), "-0.005");
        assert_eq!(format_decimal("7", 0), "7");
        assert_eq!(plain_decimal("1.5e3").unwrap(), "1500");
        assert_eq!(plain_decimal("-2.5E-2").unwrap(), "-0.025");
    }

    #[test]
    fn text_arrays() {
        assert_eq!(
            parse_text_array(r#"{1, NULL ,"a,b","x\"y"}"#).unwrap(),
            vec![
                Some("1".into()),
                None,
                Some("a,b".into()),
                Some("x\"y".into())
            ]
        );
        assert!(parse_text_array("{}").unwrap().is_empty());
    }

    #[test]
    fn text_params() {
        assert_eq!(
            decode_param(&Type::INT8, false, Some(b" 42")).unwrap(),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            decode_param(&Type::TIMESTAMPTZ, false, Some(b"2020-01-01 00:00:00+00")).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_577_836_800_000_000), Some("UTC".into()))
        );
        assert_eq!(
            decode_param(
                &Type::TIMESTAMPTZ,
                false,
                Some(b"2020-01-01T01:00:00+01:00")
            )
            .unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_577_836_800_000_000), Some("UTC".into()))
        );
        assert_eq!(
            decode_param(&Type::BYTEA, false, Some(b"\\x0aff")).unwrap(),
            ScalarValue::Binary(Some(vec![10, 255]))
        );
        assert_eq!(
            decode_param(&Type::DATE, false, Some(b"1970-01-02")).unwrap(),
            ScalarValue::Date32(Some(1))
        );
        let l = decode_param(&Type::INT8_ARRAY, false, Some(b"{1,2,NULL}")).unwrap();
        assert_eq!(
            l.data_type(),
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true)))
        );
    }
}
