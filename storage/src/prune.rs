//! Pruning by user-column statistics: a predicate on one column that no row
//! of a batch (or of a whole segment) can satisfy is decided from the
//! batch's min, max and null count (`segment::ColumnStats`) before any of its
//! data is read. Predicates only ever skip data: a batch they cannot rule
//! out is read and the query's own filter still runs over its rows, so a
//! predicate here may be weaker than the query's, never stronger.
//!
//! What the statistics hold (docs/format.md, "Column statistics"): integers,
//! dates (days) and timestamps (µs) as JSON integers, decimals as their
//! unscaled integer (when it fits in 64 bits), floats as JSON numbers (NaN
//! is not a JSON number: a float batch holding NaN has a null max and is
//! never pruned), text as strings compared byte-wise, as SQL compares it.

use std::cmp::Ordering;

use arrow::datatypes::DataType;
use serde_json::Value;

use crate::segment::{ColumnStats, SegmentFile};

/// A literal as the statistics compare it.
#[derive(Debug, Clone, PartialEq)]
pub enum StatValue {
    /// Integers, dates (days since 1970), timestamps (µs), decimals (unscaled).
    Int(i64),
    Float(f64),
    Str(String),
}

impl StatValue {
    /// Read a statistic as the same kind as `self`; `None` if it is not one.
    fn of_kind(&self, v: &Value) -> Option<StatValue> {
        match self {
            StatValue::Int(_) => v.as_i64().map(StatValue::Int),
            StatValue::Float(_) => v.as_f64().map(StatValue::Float),
            StatValue::Str(_) => v.as_str().map(|s| StatValue::Str(s.to_string())),
        }
    }

    fn cmp(&self, other: &StatValue) -> Option<Ordering> {
        match (self, other) {
            (StatValue::Int(a), StatValue::Int(b)) => Some(a.cmp(b)),
            (StatValue::Float(a), StatValue::Float(b)) => a.partial_cmp(b),
            (StatValue::Str(a), StatValue::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            _ => None,
        }
    }
}

/// A comparison operator, the column on the left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    pub fn flip(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
        }
    }
}

/// What a predicate tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `column op value`
    Cmp(CmpOp, StatValue),
    /// `column IN (values)`
    In(Vec<StatValue>),
    IsNull,
    IsNotNull,
}

/// A predicate on one user column that every row a query returns satisfies.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPredicate {
    pub column: String,
    pub test: Test,
    /// For a decimal column: the scale its values were compared at.
    /// Statistics written at another scale (the column was widened since)
    /// are not used.
    pub decimal_scale: Option<i8>,
}

impl ColumnPredicate {
    /// Could some row described by `stats` (`None`: the column has no
    /// statistics there) out of `rows` satisfy the predicate?
    pub fn may_match(&self, stats: Option<&ColumnStats>, rows: u64) -> bool {
        let Some(s) = stats else {
            return true;
        };
        let all_null = rows > 0 && s.null_count >= rows;
        match &self.test {
            Test::IsNull => s.null_count > 0,
            Test::IsNotNull => !all_null,
            // A comparison with NULL is never true.
            _ if all_null => false,
            _ => {
                // Min and max read as the kind the test compares.
                let (Some(kind), Some(min), Some(max)) = (self.sample(), &s.min, &s.max) else {
                    return true;
                };
                let (Some(min), Some(max)) = (kind.of_kind(min), kind.of_kind(max)) else {
                    return true;
                };
                let within = |v: &StatValue| le(&min, v) && le(v, &max);
                match &self.test {
                    Test::Cmp(CmpOp::Eq, v) => within(v),
                    Test::Cmp(CmpOp::Lt, v) => lt(&min, v),
                    Test::Cmp(CmpOp::LtEq, v) => le(&min, v),
                    Test::Cmp(CmpOp::Gt, v) => lt(v, &max),
                    Test::Cmp(CmpOp::GtEq, v) => le(v, &max),
                    Test::In(vs) => vs.iter().any(within),
                    Test::IsNull | Test::IsNotNull => true,
                }
            }
        }
    }

    /// Is the predicate safe to test against a whole segment's merged
    /// statistics (the manifest's)? Not for floats (older manifests merged
    /// a NaN maximum away) nor decimals (no type recorded beside them).
    pub fn segment_level(&self) -> bool {
        if self.decimal_scale.is_some() {
            return false;
        }
        match &self.test {
            Test::Cmp(_, v) => !matches!(v, StatValue::Float(_)),
            Test::In(vs) => !vs.iter().any(|v| matches!(v, StatValue::Float(_))),
            Test::IsNull | Test::IsNotNull => true,
        }
    }

    /// The value kind the test compares, if any (for reading min and max).
    fn sample(&self) -> Option<&StatValue> {
        match &self.test {
            Test::Cmp(_, v) => Some(v),
            Test::In(vs) => vs.first(),
            _ => None,
        }
    }

    /// Are `file`'s statistics for this column usable (a decimal column
    /// stored at the scale the predicate compares at)?
    fn usable_in(&self, file: &SegmentFile) -> bool {
        let Some(scale) = self.decimal_scale else {
            return true;
        };
        match file.schema().field_with_name(&self.column) {
            Ok(f) => matches!(f.data_type(), DataType::Decimal128(_, s) if *s == scale),
            Err(_) => true,
        }
    }
}

/// `a < b`, or true when they cannot be compared (cannot rule out).
fn lt(a: &StatValue, b: &StatValue) -> bool {
    a.cmp(b).is_none_or(|o| o == Ordering::Less)
}

/// `a <= b`, or true when they cannot be compared.
fn le(a: &StatValue, b: &StatValue) -> bool {
    a.cmp(b).is_none_or(|o| o != Ordering::Greater)
}

/// The rows of `col` that satisfy `p`, as a bitmap (a NULL never does),
/// evaluated with Arrow's vectorized kernels; `None` when the predicate
/// cannot be evaluated on this column's type (the literal does not convert
/// to it exactly, e.g. a decimal stored at another scale): the rows are then
/// kept, and the query's own filter decides.
pub fn evaluate(
    p: &ColumnPredicate,
    col: &arrow::array::ArrayRef,
) -> crate::error::Result<Option<arrow::buffer::BooleanBuffer>> {
    use arrow::array::{Array, BooleanArray};
    use arrow::compute::kernels::cmp;
    let ty = col.data_type();
    let bits = |a: BooleanArray| -> arrow::buffer::BooleanBuffer {
        match a.nulls() {
            Some(n) => a.values() & n.inner(),
            None => a.values().clone(),
        }
    };
    let not_null = || match col.logical_nulls() {
        Some(n) => n.into_inner(),
        None => arrow::buffer::BooleanBuffer::new_set(col.len()),
    };
    Ok(Some(match &p.test {
        Test::IsNull => !&not_null(),
        Test::IsNotNull => not_null(),
        Test::Cmp(CmpOp::Eq, StatValue::Str(x)) if *ty == DataType::Utf8 => {
            utf8_equal(col, x.as_bytes())
        }
        Test::Cmp(op, v) => {
            let Some(lit) = literal_array(v, ty, p.decimal_scale) else {
                return Ok(None);
            };
            let lit = arrow::array::Scalar::new(lit);
            let r = match op {
                CmpOp::Eq => cmp::eq(col, &lit),
                CmpOp::Lt => cmp::lt(col, &lit),
                CmpOp::LtEq => cmp::lt_eq(col, &lit),
                CmpOp::Gt => cmp::gt(col, &lit),
                CmpOp::GtEq => cmp::gt_eq(col, &lit),
            }?;
            bits(r)
        }
        // One comparison kernel per value: worth it for a short list only. A
        // long one (`x IN (…5,000 values)`) is left to the query's filter,
        // which probes a hash set once per row.
        Test::In(vs) if vs.len() > MAX_IN_EVALUATED => return Ok(None),
        Test::In(vs) => {
            let mut acc: Option<arrow::buffer::BooleanBuffer> = None;
            for v in vs {
                let m = match v {
                    StatValue::Str(x) if *ty == DataType::Utf8 => utf8_equal(col, x.as_bytes()),
                    _ => {
                        let Some(lit) = literal_array(v, ty, p.decimal_scale) else {
                            return Ok(None);
                        };
                        bits(cmp::eq(col, &arrow::array::Scalar::new(lit))?)
                    }
                };
                acc = Some(match acc {
                    Some(a) => &a | &m,
                    None => m,
                });
            }
            match acc {
                Some(a) => a,
                None => return Ok(None),
            }
        }
    }))
}

/// The non-null rows of a `Utf8` column equal to `lit`. Arrow's kernel calls
/// `memcmp` once per row: for TPC-H Q10's one-letter `l_returnflag = 'R'`
/// that was 12% of the query's CPU. Here the lengths are compared from the
/// offsets first, and short values byte by byte in place.
fn utf8_equal(col: &arrow::array::ArrayRef, lit: &[u8]) -> arrow::buffer::BooleanBuffer {
    use arrow::array::{Array, AsArray};
    let a = col.as_string::<i32>();
    let offsets = a.value_offsets();
    let values = a.value_data();
    let n = lit.len();
    let eq = match n {
        1 => {
            let b = lit[0];
            arrow::buffer::BooleanBuffer::collect_bool(a.len(), |i| {
                let s = offsets[i] as usize;
                offsets[i + 1] as usize - s == 1 && values[s] == b
            })
        }
        _ if n <= 16 => arrow::buffer::BooleanBuffer::collect_bool(a.len(), |i| {
            let s = offsets[i] as usize;
            offsets[i + 1] as usize - s == n
                && values[s..s + n].iter().zip(lit).all(|(x, y)| x == y)
        }),
        _ => arrow::buffer::BooleanBuffer::collect_bool(a.len(), |i| {
            let s = offsets[i] as usize;
            offsets[i + 1] as usize - s == n && &values[s..s + n] == lit
        }),
    };
    match a.nulls() {
        Some(nulls) => &eq & nulls.inner(),
        None => eq,
    }
}

/// The longest `IN` list [`evaluate`] runs in the scan.
const MAX_IN_EVALUATED: usize = 16;

/// A one-element array of type `ty` holding `v` exactly, if it converts.
fn literal_array(
    v: &StatValue,
    ty: &DataType,
    scale: Option<i8>,
) -> Option<arrow::array::ArrayRef> {
    use arrow::array::*;
    use std::sync::Arc;
    let a: ArrayRef = match (v, ty) {
        (StatValue::Int(x), DataType::Int64) if scale.is_none() => {
            Arc::new(Int64Array::from(vec![*x]))
        }
        (StatValue::Int(x), DataType::Int32) if scale.is_none() => {
            Arc::new(Int32Array::from(vec![i32::try_from(*x).ok()?]))
        }
        (StatValue::Int(x), DataType::Int16) if scale.is_none() => {
            Arc::new(Int16Array::from(vec![i16::try_from(*x).ok()?]))
        }
        (StatValue::Int(x), DataType::Date32) if scale.is_none() => {
            Arc::new(Date32Array::from(vec![i32::try_from(*x).ok()?]))
        }
        (StatValue::Int(x), DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, tz))
            if scale.is_none() =>
        {
            Arc::new(TimestampMicrosecondArray::from(vec![*x]).with_timezone_opt(tz.clone()))
        }
        (StatValue::Int(x), DataType::Decimal128(p, s)) if scale == Some(*s) => Arc::new(
            Decimal128Array::from(vec![i128::from(*x)])
                .with_precision_and_scale(*p, *s)
                .ok()?,
        ),
        (StatValue::Float(x), DataType::Float64) => Arc::new(Float64Array::from(vec![*x])),
        (StatValue::Str(x), DataType::Utf8) => Arc::new(StringArray::from(vec![x.as_str()])),
        (StatValue::Str(x), DataType::LargeUtf8) => {
            Arc::new(LargeStringArray::from(vec![x.as_str()]))
        }
        (StatValue::Str(x), DataType::Utf8View) => {
            Arc::new(StringViewArray::from(vec![x.as_str()]))
        }
        _ => return None,
    };
    Some(a)
}

/// Could batch `b` of `file` hold a row satisfying every predicate?
pub fn batch_may_match(file: &SegmentFile, b: usize, preds: &[ColumnPredicate]) -> bool {
    let st = &file.stats[b];
    preds.iter().all(|p| {
        !p.usable_in(file)
            || p.may_match(
                st.columns.iter().find(|c| c.name == p.column),
                st.rows as u64,
            )
    })
}

/// Could a segment with these merged statistics hold such a row?
pub fn segment_may_match(columns: &[ColumnStats], rows: u64, preds: &[ColumnPredicate]) -> bool {
    preds
        .iter()
        .filter(|p| p.segment_level())
        .all(|p| p.may_match(columns.iter().find(|c| c.name == p.column), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(min: Value, max: Value, nulls: u64) -> ColumnStats {
        ColumnStats {
            name: "x".into(),
            null_count: nulls,
            min: Some(min),
            max: Some(max),
        }
    }

    fn p(test: Test) -> ColumnPredicate {
        ColumnPredicate {
            column: "x".into(),
            test,
            decimal_scale: None,
        }
    }

    fn cmp(op: CmpOp, v: i64) -> ColumnPredicate {
        p(Test::Cmp(op, StatValue::Int(v)))
    }

    #[test]
    fn comparisons_against_min_and_max() {
        let s = stats(Value::from(10), Value::from(20), 0);
        let yes = |pr: ColumnPredicate| assert!(pr.may_match(Some(&s), 100), "{pr:?}");
        let no = |pr: ColumnPredicate| assert!(!pr.may_match(Some(&s), 100), "{pr:?}");
        yes(cmp(CmpOp::Eq, 10));
        yes(cmp(CmpOp::Eq, 20));
        no(cmp(CmpOp::Eq, 21));
        no(cmp(CmpOp::Eq, 9));
        no(cmp(CmpOp::Lt, 10));
        yes(cmp(CmpOp::LtEq, 10));
        no(cmp(CmpOp::Gt, 20));
        yes(cmp(CmpOp::GtEq, 20));
        yes(cmp(CmpOp::Gt, 19));
        no(p(Test::In(vec![StatValue::Int(1), StatValue::Int(30)])));
        yes(p(Test::In(vec![StatValue::Int(1), StatValue::Int(15)])));
        no(p(Test::IsNull));
        yes(p(Test::IsNotNull));
    }

    #[test]
    fn nulls_unknowns_and_other_kinds_never_prune_wrongly() {
        // All NULL: no comparison can hold, IS NULL can.
        let all_null = ColumnStats {
            name: "x".into(),
            null_count: 5,
            min: None,
            max: None,
        };
        assert!(!cmp(CmpOp::Eq, 1).may_match(Some(&all_null), 5));
        assert!(p(Test::IsNull).may_match(Some(&all_null), 5));
        assert!(!p(Test::IsNotNull).may_match(Some(&all_null), 5));
        // No statistics, or a NaN maximum (null in JSON): cannot rule out.
        assert!(cmp(CmpOp::Gt, 1_000).may_match(None, 5));
        let nan = stats(Value::from(1.0), Value::Null, 0);
        let f = p(Test::Cmp(CmpOp::Gt, StatValue::Float(1e9)));
        assert!(f.may_match(Some(&nan), 5));
        // A NaN literal compares with nothing: cannot rule out.
        let s = stats(Value::from(1.0), Value::from(2.0), 0);
        assert!(p(Test::Cmp(CmpOp::Eq, StatValue::Float(f64::NAN))).may_match(Some(&s), 5));
        // Text statistics for an integer test: another kind, unknown.
        let txt = stats(Value::from("a"), Value::from("b"), 0);
        assert!(cmp(CmpOp::Eq, 1).may_match(Some(&txt), 5));
        // Text compares byte-wise, as SQL does ('Z' < 'a').
        let t = |v: &str| p(Test::Cmp(CmpOp::Eq, StatValue::Str(v.into())));
        assert!(!t("Z").may_match(Some(&txt), 5));
        assert!(t("ab").may_match(Some(&txt), 5));
        // Floats and decimals are not tested against a segment's merged statistics.
        assert!(!f.segment_level());
        let mut d = cmp(CmpOp::Eq, 1);
        assert!(d.segment_level());
        d.decimal_scale = Some(2);
        assert!(!d.segment_level());
    }

    #[test]
    fn text_equality_in_the_scan_matches_arrows_kernel() {
        use arrow::array::{Array, ArrayRef, StringArray};
        use std::sync::Arc;
        // Values of every length around the short-value paths, empty
        // strings, NULLs, and a sliced array (offsets not from zero).
        let words: Vec<Option<String>> = (0..400)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                _ => Some("Rxy0123456789abcdefghij"[..(i * 5) % 23].to_string()),
            })
            .collect();
        let full: ArrayRef = Arc::new(StringArray::from(words));
        for col in [full.clone(), full.slice(13, 300)] {
            for lit in [
                "",
                "R",
                "Rx",
                "Rxy0123",
                "Rxy0123456789abc",
                "Rxy0123456789abcd",
                "Rxy0123456789abcdefghij",
                "Q",
            ] {
                let pr = p(Test::Cmp(CmpOp::Eq, StatValue::Str(lit.into())));
                let got = evaluate(&pr, &col).unwrap().unwrap();
                let want = arrow::compute::kernels::cmp::eq(
                    &col,
                    &arrow::array::Scalar::new(StringArray::from(vec![lit])),
                )
                .unwrap();
                for i in 0..col.len() {
                    let w = want.is_valid(i) && want.value(i);
                    assert_eq!(got.value(i), w, "row {i} of {col:?} = {lit:?}");
                }
            }
            let pr = p(Test::In(vec![
                StatValue::Str("R".into()),
                StatValue::Str("".into()),
            ]));
            let got = evaluate(&pr, &col).unwrap().unwrap();
            let s = col.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..s.len() {
                assert_eq!(
                    got.value(i),
                    s.is_valid(i) && (s.value(i) == "R" || s.value(i).is_empty())
                );
            }
        }
    }
}
