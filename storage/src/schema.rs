//! Schema on write: the small set of column types Strata stores, how incoming
//! Arrow data is normalized into them, and how a column's type may widen.

use std::sync::Arc;

use arrow::array::{make_array, new_null_array, Array, ArrayRef, AsArray, ListArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::util::display::FormatOptions;

use crate::error::{Error, Result};

pub const ID: &str = "_id";

/// Tables whose names start with this hold the database's own state (roles,
/// grants): written only by the statements that manage it, hidden from
/// catalogs, table lists, change feeds and exports.
pub const RESERVED_PREFIX: &str = "strata$";

/// Is `table` one of the database's own (see [`RESERVED_PREFIX`])?
pub fn is_reserved(table: &str) -> bool {
    table.starts_with(RESERVED_PREFIX)
}
pub const VALID_FROM: &str = "_valid_from";
pub const VALID_TO: &str = "_valid_to";
pub const SYSTEM_FROM: &str = "_system_from";
pub const SYSTEM_TO: &str = "_system_to";
/// The internal entity hash column stored in segments.
pub const IID: &str = "_iid";

pub const TEMPORAL_COLUMNS: [&str; 4] = [VALID_FROM, VALID_TO, SYSTEM_FROM, SYSTEM_TO];

/// The Arrow type of every temporal column: UTC microseconds.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A user-facing SQL-ish name for a type, for error messages.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Utf8 => "TEXT".into(),
        DataType::Binary => "BYTEA".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Time64(_) => "TIME".into(),
        DataType::Decimal128(p, s) => format!("NUMERIC({p},{s})"),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::List(f) => format!("{}[]", type_name(f.data_type())),
        DataType::Struct(fs) => format!(
            "STRUCT({})",
            fs.iter()
                .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other}"),
    }
}

/// Map any incoming Arrow type to the type Strata stores for it.
/// Integers become BIGINT, floats DOUBLE, strings TEXT, timestamps UTC µs.
pub fn normalize_type(dt: &DataType) -> Result<DataType> {
    use DataType::*;
    Ok(match dt {
        Null | Boolean | Int64 | Float64 | Utf8 | Binary | Date32 | Decimal128(_, _) => dt.clone(),
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 | UInt64 => Int64,
        Float16 | Float32 => Float64,
        Utf8View | LargeUtf8 => Utf8,
        BinaryView | LargeBinary | FixedSizeBinary(_) => Binary,
        Date64 => Date32,
        Timestamp(_, None) => Timestamp(TimeUnit::Microsecond, None),
        Timestamp(_, Some(_)) => timestamp_type(),
        Time32(_) | Time64(_) => Time64(TimeUnit::Microsecond),
        Interval(u) => Interval(*u),
        Decimal32(p, s) | Decimal64(p, s) => Decimal128(*p, *s),
        Dictionary(_, v) => normalize_type(v)?,
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => List(
            Arc::new(Field::new("item", normalize_type(f.data_type())?, true)),
        ),
        Struct(fs) => Struct(
            fs.iter()
                .map(|f| Ok(Field::new(f.name(), normalize_type(f.data_type())?, true)))
                .collect::<Result<Fields>>()?,
        ),
        other => {
            return Err(Error::Invalid(format!(
                "values of type {other} cannot be stored yet"
            )))
        }
    })
}

/// The type a column has after `incoming` is written into a column of type
/// `existing`, or `None` if no lossless conversion exists.
pub fn merge_types(existing: &DataType, incoming: &DataType) -> Option<DataType> {
    use DataType::*;
    if existing == incoming {
        return Some(existing.clone());
    }
    match (existing, incoming) {
        (Null, t) | (t, Null) => Some(t.clone()),
        // An integer written into a DOUBLE column is converted when exact (checked per value).
        (Float64, Int64) => Some(Float64),
        (Timestamp(_, Some(_)), Timestamp(_, None))
        | (Timestamp(_, None), Timestamp(_, Some(_))) => Some(timestamp_type()),
        (Timestamp(_, tz), Date32) => Some(Timestamp(TimeUnit::Microsecond, tz.clone())),
        // Text into a date/time column is read as that type, the way
        // Postgres reads a quoted literal into a typed column; a string that
        // does not parse is refused (`adapt_array` casts without `safe`).
        (Date32 | Timestamp(_, _) | Time64(_) | Interval(_), Utf8) => Some(existing.clone()),
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            let s = (*s1).max(*s2);
            let int_digits = (*p1 as i8 - *s1).max(*p2 as i8 - *s2);
            let p = (int_digits + s) as u8;
            (p <= 38).then_some(Decimal128(p, s))
        }
        // Into a NUMERIC column, integers and floats are converted to its
        // precision and scale (as Postgres does); a value that does not fit
        // is an error, per value (`adapt_array` casts without `safe`).
        (Decimal128(_, _), Int64 | Float64) => Some(existing.clone()),
        (Float64, Decimal128(_, _)) => Some(Float64),
        (List(a), List(b)) => {
            let t = merge_types(a.data_type(), b.data_type())?;
            Some(List(Arc::new(Field::new("item", t, true))))
        }
        (Struct(a), Struct(b)) => {
            let mut fields: Vec<Field> = a.iter().map(|f| f.as_ref().clone()).collect();
            for fb in b.iter() {
                match fields.iter_mut().find(|f| f.name() == fb.name()) {
                    Some(f) => {
                        let t = merge_types(f.data_type(), fb.data_type())?;
                        *f = Field::new(f.name(), t, true);
                    }
                    None => fields.push(Field::new(fb.name(), fb.data_type().clone(), true)),
                }
            }
            Some(Struct(fields.into()))
        }
        _ => None,
    }
}

/// Convert `array` to `target` (a type `merge_types` produced), refusing any
/// value that would not survive the conversion exactly.
pub fn adapt_array(array: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    if array.data_type() == &DataType::Null {
        return Ok(new_null_array(target, array.len()));
    }
    if let (DataType::Struct(_), DataType::Struct(tf)) = (array.data_type(), target) {
        let s = array
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("struct type with a non-struct array");
        let mut cols = Vec::with_capacity(tf.len());
        for f in tf.iter() {
            let col = match s.column_by_name(f.name()) {
                Some(c) => adapt_array(c, f.data_type())?,
                None => new_null_array(f.data_type(), s.len()),
            };
            cols.push(col);
        }
        return Ok(Arc::new(StructArray::try_new(
            tf.clone(),
            cols,
            s.nulls().cloned(),
        )?));
    }
    let opts = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    let out = cast_with_options(array, target, &opts)?;
    // Integer → DOUBLE must round-trip to be lossless.
    if matches!(array.data_type(), DataType::Int64) && matches!(target, DataType::Float64) {
        let back = cast_with_options(&out, &DataType::Int64, &opts)?;
        if back.as_ref() != array.as_ref() {
            return Err(Error::Invalid(
                "integer value too large to store exactly as DOUBLE PRECISION".into(),
            ));
        }
    }
    Ok(out)
}

/// Normalize a whole column (types and nested types) into Strata's stored
/// types, with every null struct's fields null too ([`push_struct_nulls`]).
pub fn normalize_array(array: &ArrayRef) -> Result<ArrayRef> {
    let target = normalize_type(array.data_type())?;
    let out = if &target == array.data_type() {
        array.clone()
    } else if let DataType::UInt64 = array.data_type() {
        let opts = CastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        };
        cast_with_options(array, &target, &opts)
            .map_err(|_| Error::Invalid("unsigned integer value too large for BIGINT".into()))?
    } else {
        adapt_array(array, &target)?
    };
    push_struct_nulls(&out)
}

/// Make the fields of a null struct null as well (in structs at any depth,
/// and inside lists). Arrow lets a struct's children hold any value under a
/// null parent (pyarrow, polars and Parquet readers leave `0` or `''`
/// there), and DataFusion 55's field access (`s['f']`, `get_field`) returns
/// the child as stored (apache/datafusion#25120): without this a field of a
/// NULL struct would read as `0` instead of NULL. Stored data is made
/// canonical once, on write, so that every read path is right.
pub fn push_struct_nulls(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let parent = s.nulls().filter(|n| n.null_count() > 0);
            let mut changed = false;
            let mut cols = Vec::with_capacity(s.num_columns());
            for c in s.columns() {
                let mut c = c.clone();
                if let Some(p) = parent {
                    let merged = NullBuffer::union(Some(p), c.nulls());
                    if merged.as_ref().map(|m| m.null_count()) != c.nulls().map(|n| n.null_count())
                    {
                        let data = c.to_data().into_builder().nulls(merged).build()?;
                        c = make_array(data);
                        changed = true;
                    }
                }
                let pushed = push_struct_nulls(&c)?;
                changed |= !Arc::ptr_eq(&pushed, &c);
                cols.push(pushed);
            }
            if !changed {
                return Ok(array.clone());
            }
            let fields: Fields = fields
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            Ok(Arc::new(StructArray::try_new(
                fields,
                cols,
                s.nulls().cloned(),
            )?))
        }
        DataType::List(f) => {
            let l = array.as_list::<i32>();
            let values = push_struct_nulls(l.values())?;
            if Arc::ptr_eq(&values, l.values()) {
                return Ok(array.clone());
            }
            Ok(Arc::new(ListArray::try_new(
                f.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?))
        }
        _ => Ok(array.clone()),
    }
}

// ---------------------------------------------------------------------------
// SQL types stored as text.

/// The field metadata key that carries a column's SQL type (the Arrow
/// extension type name). Values: [`SqlType::extension_name`].
pub const EXTENSION_NAME: &str = "ARROW:extension:name";

/// SQL types Strata stores as Arrow `Utf8` and tags on the column's `Field`
/// (metadata `ARROW:extension:name`), so that the tag survives the log,
/// segments and manifest, and front ends can report the real type. Values
/// are checked (and normalized) on write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// `uuid`: lowercase, hyphenated (`a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`).
    Uuid,
    /// `json`: any valid JSON text, kept as written.
    Json,
    /// `jsonb`: valid JSON, normalized the way Postgres prints jsonb.
    Jsonb,
}

impl SqlType {
    /// The Arrow extension type name the column's field is tagged with.
    /// `json` uses Arrow's canonical `arrow.json`; Arrow's canonical
    /// `arrow.uuid` is a 16-byte binary, not text, so uuid gets Strata's own.
    pub fn extension_name(self) -> &'static str {
        match self {
            SqlType::Uuid => "strata.uuid",
            SqlType::Json => "arrow.json",
            SqlType::Jsonb => "strata.jsonb",
        }
    }

    /// The Postgres type name (`uuid`, `json`, `jsonb`).
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Uuid => "uuid",
            SqlType::Json => "json",
            SqlType::Jsonb => "jsonb",
        }
    }

    /// The SQL type of an extension name, if it is one of these.
    pub fn from_extension(name: &str) -> Option<SqlType> {
        [SqlType::Uuid, SqlType::Json, SqlType::Jsonb]
            .into_iter()
            .find(|t| t.extension_name() == name)
    }

    /// The SQL type a (text) field is tagged with.
    pub fn of(field: &Field) -> Option<SqlType> {
        if !matches!(
            field.data_type(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) {
            return None;
        }
        field
            .metadata()
            .get(EXTENSION_NAME)
            .and_then(|n| SqlType::from_extension(n))
    }

    /// Field metadata for a column of this type.
    pub fn metadata(self) -> std::collections::HashMap<String, String> {
        [(
            EXTENSION_NAME.to_string(),
            self.extension_name().to_string(),
        )]
        .into()
    }

    /// A nullable text column of this type.
    pub fn field(self, name: impl Into<String>) -> Field {
        Field::new(name, DataType::Utf8, true).with_metadata(self.metadata())
    }

    /// Check one value; `Some(normalized)` when the stored text differs
    /// from `v`, `None` when `v` is stored as is. The error reads like
    /// Postgres's (`invalid input syntax for type uuid: "x"`).
    pub fn conform(self, v: &str) -> std::result::Result<Option<String>, String> {
        match self {
            SqlType::Uuid => {
                let n = normalize_uuid(v).ok_or_else(|| {
                    format!("invalid input syntax for type uuid: \"{}\"", clip(v))
                })?;
                Ok((n != v).then_some(n))
            }
            SqlType::Json => {
                parse_json(v).map_err(|e| {
                    format!("invalid input syntax for type json: \"{}\" ({e})", clip(v))
                })?;
                Ok(None)
            }
            SqlType::Jsonb => {
                let j = parse_json(v).map_err(|e| {
                    format!("invalid input syntax for type json: \"{}\" ({e})", clip(v))
                })?;
                let mut out = String::with_capacity(v.len());
                write_jsonb(&j, &mut out);
                Ok((out != v).then_some(out))
            }
        }
    }

    /// Check and normalize a whole text column of this type. `what` names
    /// the column in errors (e.g. "column `u` of table `t`"; may be empty).
    pub fn conform_array(self, array: &ArrayRef, what: &str) -> Result<ArrayRef> {
        use arrow::array::{AsArray, StringArray};
        let opts = CastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        };
        let a = if array.data_type() == &DataType::Utf8 {
            array.clone()
        } else {
            cast_with_options(array, &DataType::Utf8, &opts)?
        };
        let s = a.as_string::<i32>();
        let mut changed: Vec<(usize, String)> = Vec::new();
        for i in 0..s.len() {
            if s.is_null(i) {
                continue;
            }
            match self.conform(s.value(i)) {
                Ok(Some(n)) => changed.push((i, n)),
                Ok(None) => {}
                Err(e) if what.is_empty() => return Err(Error::InvalidText(e)),
                Err(e) => return Err(Error::InvalidText(format!("{e} in {what}"))),
            }
        }
        if changed.is_empty() {
            return Ok(a);
        }
        let mut next = changed.into_iter().peekable();
        let out: StringArray = (0..s.len())
            .map(|i| {
                if s.is_null(i) {
                    return None;
                }
                match next.peek() {
                    Some((j, _)) if *j == i => next.next().map(|(_, v)| v),
                    _ => Some(s.value(i).to_string()),
                }
            })
            .collect();
        Ok(Arc::new(out))
    }
}

/// The first 80 characters of a value, for error messages.
fn clip(v: &str) -> String {
    if v.chars().count() <= 80 {
        v.to_string()
    } else {
        format!("{}…", v.chars().take(80).collect::<String>())
    }
}

/// A UUID in any form Postgres accepts (upper or lower case, optional
/// braces around it, hyphens optional after any group of four digits) as
/// lowercase hyphenated text; `None` if `s` is not a UUID.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let body = match s.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => s,
    };
    let mut hex = Vec::with_capacity(32);
    let mut prev_hyphen = false;
    for c in body.chars() {
        if c == '-' {
            if hex.is_empty() || hex.len() % 4 != 0 || prev_hyphen || hex.len() == 32 {
                return None;
            }
            prev_hyphen = true;
            continue;
        }
        let d = c.to_digit(16)? as u8;
        hex.push(d);
        prev_hyphen = false;
        if hex.len() > 32 {
            return None;
        }
    }
    if hex.len() != 32 || prev_hyphen {
        return None;
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, d) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(DIGITS[*d as usize] as char);
    }
    Some(out)
}

/// A parsed JSON value. Numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Parse JSON text (RFC 8259, as Postgres's `json` input does).
pub fn parse_json(s: &str) -> std::result::Result<Json, String> {
    let mut p = JsonParser {
        b: s.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i < p.b.len() {
        return Err(format!("unexpected text after the value at byte {}", p.i));
    }
    Ok(v)
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

const JSON_MAX_DEPTH: usize = 1000;

impl JsonParser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> std::result::Result<T, String> {
        match self.b.get(self.i) {
            None => Err(format!("{what}: the input ends too early")),
            Some(_) => Err(format!("{what} at byte {}", self.i)),
        }
    }

    fn lit(&mut self, word: &str, v: Json) -> std::result::Result<Json, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("invalid token")
        }
    }

    fn value(&mut self) -> std::result::Result<Json, String> {
        match self.b.get(self.i) {
            Some(b'{') => self.nested(true),
            Some(b'[') => self.nested(false),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err("expected a JSON value"),
        }
    }

    fn nested(&mut self, object: bool) -> std::result::Result<Json, String> {
        self.depth += 1;
        if self.depth > JSON_MAX_DEPTH {
            return Err(format!("nested deeper than {JSON_MAX_DEPTH} levels"));
        }
        let close = if object { b'}' } else { b']' };
        self.i += 1;
        self.ws();
        let mut items = Vec::new();
        let mut members = Vec::new();
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if object {
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected a string key");
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected `:`");
                    }
                    self.i += 1;
                    self.ws();
                    members.push((k, self.value()?));
                } else {
                    items.push(self.value()?);
                }
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(c) if *c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => {
                        return self.err(if object {
                            "expected `,` or `}`"
                        } else {
                            "expected `,` or `]`"
                        })
                    }
                }
            }
        }
        self.depth -= 1;
        Ok(if object {
            Json::Object(members)
        } else {
            Json::Array(items)
        })
    }

    fn number(&mut self) -> std::result::Result<Json, String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while let Some(b'0'..=b'9') = p.b.get(p.i) {
                p.i += 1;
            }
            p.i - s
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            self.i = start;
            return self.err("invalid number");
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return self.err("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.err("invalid number");
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).expect("ascii");
        Ok(Json::Number(text.to_string()))
    }

    fn hex4(&mut self) -> std::result::Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match h {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("invalid \\u escape"),
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).expect("utf-8 input"));
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(&e) = self.b.get(self.i) else {
                        return self.err("unterminated string");
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return self.err("unpaired Unicode surrogate");
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("unpaired Unicode surrogate");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            if cp == 0 {
                                return self.err("\\u0000 cannot be stored");
                            }
                            match char::from_u32(cp) {
                                Some(c) => out.push(c),
                                None => return self.err("invalid Unicode escape"),
                            }
                        }
                        _ => {
                            self.i -= 1;
                            return self.err("invalid escape");
                        }
                    }
                }
                Some(_) => return self.err("control character in a string"),
                None => return self.err("unterminated string"),
            }
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Write `j` the way Postgres prints `jsonb`: object keys ordered by length
/// then bytes, the last of duplicate keys kept, `", "` and `": "` separators.
pub fn write_jsonb(j: &Json, out: &mut String) {
    match j {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_json_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(v, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            let mut idx: Vec<usize> = (0..members.len()).collect();
            // Stable: among equal keys the input order stays; keep the last.
            idx.sort_by(|&a, &b| {
                let (ka, kb) = (&members[a].0, &members[b].0);
                ka.len()
                    .cmp(&kb.len())
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
            });
            out.push('{');
            let mut first = true;
            for (n, &i) in idx.iter().enumerate() {
                if idx
                    .get(n + 1)
                    .is_some_and(|&j| members[j].0 == members[i].0)
                {
                    continue;
                }
                if !first {
                    out.push_str(", ");
                }
                first = false;
                write_json_string(&members[i].0, out);
                out.push_str(": ");
                write_jsonb(&members[i].1, out);
            }
            out.push('}');
        }
    }
}

/// A column's type for messages: its SQL type tag, else its Arrow type's name.
pub fn column_type_name(f: &Field) -> String {
    match SqlType::of(f) {
        Some(t) => t.name().to_uppercase(),
        None => type_name(f.data_type()),
    }
}

/// The columns of a table, in order. `_id` is always first once anything is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableSchema {
    pub columns: Vec<Field>,
}

impl TableSchema {
    pub fn arrow(&self) -> SchemaRef {
        Arc::new(Schema::new(self.columns.clone()))
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|f| f.name() == name)
    }

    /// Fold `offered` columns into this schema; returns the widened schema or a
    /// type conflict naming the table, the column and both types.
    pub fn merged(&self, table: &str, offered: &[Field]) -> Result<TableSchema> {
        let mut out = self.clone();
        for f in offered {
            match out.index_of(f.name()) {
                Some(i) => {
                    let existing = out.columns[i].data_type();
                    let t = merge_types(existing, f.data_type()).ok_or_else(|| {
                        Error::TypeConflict {
                            table: table.to_string(),
                            column: f.name().to_string(),
                            existing: column_type_name(&out.columns[i]),
                            offered: column_type_name(f),
                        }
                    })?;
                    // A column keeps its SQL type tag; a column that only
                    // held NULLs so far takes the tag of what is written.
                    let tag = SqlType::of(&out.columns[i]).or_else(|| {
                        (existing == &DataType::Null)
                            .then(|| SqlType::of(f))
                            .flatten()
                    });
                    out.columns[i] = tagged(Field::new(f.name(), t, true), tag);
                }
                None => out.columns.push(tagged(
                    Field::new(f.name(), f.data_type().clone(), true),
                    SqlType::of(f),
                )),
            }
        }
        if let Some(i) = out.index_of(ID) {
            if i != 0 {
                let f = out.columns.remove(i);
                out.columns.insert(0, f);
            }
        }
        Ok(out)
    }
}

/// `f` with the metadata of SQL type `tag` (text columns only), and no other.
pub fn tagged(f: Field, tag: Option<SqlType>) -> Field {
    match tag {
        Some(t) if f.data_type() == &DataType::Utf8 => f.with_metadata(t.metadata()),
        _ => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn widening_rules() {
        assert_eq!(
            merge_types(&DataType::Null, &DataType::Utf8),
            Some(DataType::Utf8)
        );
        assert_eq!(
            merge_types(&DataType::Float64, &DataType::Int64),
            Some(DataType::Float64)
        );
        assert_eq!(merge_types(&DataType::Int64, &DataType::Float64), None);
        assert_eq!(merge_types(&DataType::Int64, &DataType::Utf8), None);
    }

    #[test]
    fn conflict_names_everything() {
        let s = TableSchema::default()
            .merged("t", &[Field::new("a", DataType::Int64, true)])
            .unwrap();
        let e = s
            .merged("t", &[Field::new("a", DataType::Utf8, true)])
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("`a`") && m.contains("`t`") && m.contains("BIGINT") && m.contains("TEXT"),
            "{m}"
        );
    }

    #[test]
    fn struct_fields_union() {
        let a = DataType::Struct(vec![Field::new("x", DataType::Int64, true)].into());
        let b = DataType::Struct(vec![Field::new("y", DataType::Utf8, true)].into());
        let m = merge_types(&a, &b).unwrap();
        let DataType::Struct(fs) = &m else { panic!() };
        assert_eq!(fs.len(), 2);
    }

    #[test]
    fn uuid_forms_postgres_accepts() {
        let want = Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_string());
        for ok in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            assert_eq!(normalize_uuid(ok), want, "{ok}");
        }
        for bad in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert_eq!(normalize_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_validation_and_jsonb_form() {
        let jb = |s: &str| {
            SqlType::Jsonb
                .conform(s)
                .map(|n| n.unwrap_or(s.to_string()))
        };
        assert_eq!(
            jb(r#"{"bb":1,"a":2,"a":3}"#).unwrap(),
            r#"{"a": 3, "bb": 1}"#
        );
        assert_eq!(jb(" [1,{},[] , \"x\"] ").unwrap(), r#"[1, {}, [], "x"]"#);
        assert_eq!(jb(r#""\u00e9\n\/""#).unwrap(), "\"é\\n/\"");
        assert_eq!(jb(r#""\ud83d\ude00""#).unwrap(), "\"😀\"");
        assert_eq!(jb("-0.50e+3").unwrap(), "-0.50e+3");
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "tru",
            "nul",
            "\"a",
            "'a'",
            "{a: 1}",
            "[1] 2",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\u0000\"",
            "NaN",
            "\"\t\"",
        ] {
            assert!(SqlType::Json.conform(bad).is_err(), "{bad:?} is not json");
            assert!(SqlType::Jsonb.conform(bad).is_err(), "{bad:?} is not jsonb");
        }
        // json keeps its text.
        assert_eq!(SqlType::Json.conform(r#"{"b":1, "a" : 2}"#).unwrap(), None);
        let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
        assert!(SqlType::Json.conform(&deep).is_err());
    }

    #[test]
    fn tags_survive_merges() {
        let s = TableSchema::default()
            .merged(
                "t",
                &[
                    Field::new(ID, DataType::Int64, true),
                    SqlType::Uuid.field("u"),
                    SqlType::Jsonb.field("b"),
                ],
            )
            .unwrap();
        // Plain text written later, and a new column: the tags stay.
        let s = s
            .merged(
                "t",
                &[
                    Field::new("u", DataType::Utf8, true),
                    Field::new("b", DataType::Utf8, true),
                    Field::new("x", DataType::Int64, true),
                ],
            )
            .unwrap();
        assert_eq!(SqlType::of(&s.columns[1]), Some(SqlType::Uuid));
        assert_eq!(SqlType::of(&s.columns[2]), Some(SqlType::Jsonb));
        let e = s
            .merged("t", &[Field::new("u", DataType::Int64, true)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("UUID") && e.contains("BIGINT"), "{e}");
        // Through the manifest's JSON form.
        let json = serde_json::to_string(&s.columns).unwrap();
        let back: Vec<Field> = serde_json::from_str(&json).unwrap();
        assert_eq!(SqlType::of(&back[1]), Some(SqlType::Uuid));
        // A column that held only NULLs takes the tag of what is written.
        let n = TableSchema::default()
            .merged("t", &[Field::new("j", DataType::Null, true)])
            .unwrap()
            .merged("t", &[SqlType::Json.field("j")])
            .unwrap();
        assert_eq!(SqlType::of(&n.columns[0]), Some(SqlType::Json));
    }

    #[test]
    fn conform_array_names_the_column() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            None,
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"),
        ]));
        let out = SqlType::Uuid.conform_array(&a, "column `u`").unwrap();
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(out.value(0), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert!(out.is_null(1));
        assert_eq!(out.value(2), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12");
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let e = SqlType::Uuid.conform_array(&bad, "column `u`").unwrap_err();
        assert!(matches!(e, Error::InvalidText(_)));
        assert_eq!(
            e.to_string(),
            "invalid input syntax for type uuid: \"x\" in column `u`"
        );
    }

    #[test]
    fn a_null_struct_has_null_fields_once_stored() {
        use arrow::array::{Int64Array, ListArray, StringArray};
        use arrow::buffer::OffsetBuffer;
        // Children with values under the null parent row, as pyarrow builds them.
        let inner = StructArray::try_new(
            vec![Field::new("k", DataType::Int64, true)].into(),
            vec![Arc::new(Int64Array::from(vec![7, 8, 9])) as ArrayRef],
            Some(NullBuffer::from(vec![true, true, false])),
        )
        .unwrap();
        let outer = StructArray::try_new(
            vec![
                Field::new("x", DataType::Int64, false),
                Field::new("y", DataType::Utf8, true),
                Field::new("in", inner.data_type().clone(), true),
            ]
            .into(),
            vec![
                Arc::new(Int64Array::from(vec![1, 0, 3])) as ArrayRef,
                Arc::new(StringArray::from(vec![Some("a"), Some(""), None])),
                Arc::new(inner),
            ],
            Some(NullBuffer::from(vec![true, false, true])),
        )
        .unwrap();
        let out = normalize_array(&(Arc::new(outer.clone()) as ArrayRef)).unwrap();
        let s = out.as_struct();
        assert!(s.is_null(1));
        let x = s.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(x.iter().collect::<Vec<_>>(), vec![Some(1), None, Some(3)]);
        assert!(s.column(1).is_null(1) && s.column(1).is_null(2) && s.column(1).is_valid(0));
        // Two levels down: null where the outer or the inner struct is null.
        let k = s.column(2).as_struct().column(0);
        assert_eq!(
            (k.is_valid(0), k.is_valid(1), k.is_valid(2)),
            (true, false, false)
        );
        // Inside a list too.
        let list = ListArray::try_new(
            Arc::new(Field::new("item", outer.data_type().clone(), true)),
            OffsetBuffer::from_lengths([2, 1]),
            Arc::new(outer),
            None,
        )
        .unwrap();
        let out = normalize_array(&(Arc::new(list) as ArrayRef)).unwrap();
        let v = out.as_list::<i32>().values().as_struct().column(0).clone();
        assert!(v.is_null(1) && v.is_valid(0));
        // Nothing to do: the same array back.
        let plain: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(Arc::ptr_eq(&normalize_array(&plain).unwrap(), &plain));
    }

    #[test]
    fn int_into_double_must_be_exact() {
        let ok: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        assert!(adapt_array(&ok, &DataType::Float64).is_ok());
        let bad: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX - 1]));
        assert!(adapt_array(&bad, &DataType::Float64).is_err());
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(normalize_array(&s).is_ok());
    }
}
