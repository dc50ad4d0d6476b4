//! Schema on write: the small set of column types Strata stores, how incoming
//! Arrow data is normalized into them, and how a column's type may widen.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, StructArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::util::display::FormatOptions;

use crate::error::{Error, Result};

pub const ID: &str = "_id";
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

/// Normalize a whole column (types and nested types) into Strata's stored types.
pub fn normalize_array(array: &ArrayRef) -> Result<ArrayRef> {
    let target = normalize_type(array.data_type())?;
    if &target == array.data_type() {
        return Ok(array.clone());
    }
    if let DataType::UInt64 = array.data_type() {
        let opts = CastOptions {
            safe: false,
            format_options: FormatOptions::default(),
        };
        return cast_with_options(array, &target, &opts)
            .map_err(|_| Error::Invalid("unsigned integer value too large for BIGINT".into()));
    }
    adapt_array(array, &target)
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
                            existing: type_name(existing),
                            offered: type_name(f.data_type()),
                        }
                    })?;
                    out.columns[i] = Field::new(f.name(), t, true);
                }
                None => out
                    .columns
                    .push(Field::new(f.name(), f.data_type().clone(), true)),
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
    fn int_into_double_must_be_exact() {
        let ok: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        assert!(adapt_array(&ok, &DataType::Float64).is_ok());
        let bad: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX - 1]));
        assert!(adapt_array(&bad, &DataType::Float64).is_err());
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(normalize_array(&s).is_ok());
    }
}
