//! Masking by classification: a column labelled `pii`
//! (`SECURITY LABEL FOR strata ON COLUMN t.c IS 'pii'`) is masked for every
//! role that is neither a superuser nor a member of `strata_unmask`.
//!
//! - **Where.** Every scan of a labelled table in a statement's plan gets a
//!   projection right above it that replaces the column by its mask, below
//!   every filter, join and aggregate: a predicate on the column sees only
//!   the masked value (`WHERE email = 'ada@example.com'` matches nothing).
//!   The change feed and Delta exports mask their batches the same way.
//! - **How** (the label's value): `pii` or `pii:hash` is a keyed hash
//!   (HMAC-SHA-256 with a key kept in the database, never shown): the same
//!   value gives the same mask, so masked columns still join and group;
//!   text becomes 32 hex digits, integers another integer, other types NULL.
//!   `pii:null` is NULL, `pii:redact` is `****` for text and NULL otherwise.
//!   Any other label classifies without masking.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int16Type, Int32Type, Int64Type, Schema};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, Projection, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

/// How a labelled column is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    Hash,
    Null,
    Redact,
}

/// The mask a label asks for (`None`: the label does not mask).
pub fn mask_of(label: &str) -> Option<MaskKind> {
    match label.trim().to_ascii_lowercase().as_str() {
        "pii" | "pii:hash" => Some(MaskKind::Hash),
        "pii:null" => Some(MaskKind::Null),
        "pii:redact" => Some(MaskKind::Redact),
        _ => None,
    }
}

/// The masks one statement applies: table → column → mask.
#[derive(Debug, Clone)]
pub struct Masking {
    pub(crate) key: Arc<Vec<u8>>,
    pub(crate) columns: BTreeMap<String, BTreeMap<String, MaskKind>>,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn hmac(key: &[u8], data: &[u8]) -> ring::hmac::Tag {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Mask every value of `a`.
pub fn mask_array(kind: MaskKind, a: &ArrayRef, key: &[u8]) -> DfResult<ArrayRef> {
    use datafusion::arrow::compute::cast;
    let t = a.data_type().clone();
    let nulls = || Ok(datafusion::arrow::array::new_null_array(&t, a.len()));
    match kind {
        MaskKind::Null => nulls(),
        MaskKind::Redact if is_text(&t) => {
            let out: StringArray = (0..a.len())
                .map(|i| a.is_valid(i).then_some("****"))
                .collect();
            Ok(cast(&out, &t)?)
        }
        MaskKind::Redact => nulls(),
        MaskKind::Hash if is_text(&t) => {
            let s = cast(a, &DataType::Utf8)?;
            let s = s.as_string::<i32>();
            let out: StringArray = s
                .iter()
                .map(|v| v.map(|v| hex(&hmac(key, v.as_bytes()).as_ref()[..16])))
                .collect();
            Ok(cast(&out, &t)?)
        }
        MaskKind::Hash => {
            let h = |bytes: &[u8]| {
                let tag = hmac(key, bytes);
                let mut b = [0u8; 8];
                b.copy_from_slice(&tag.as_ref()[..8]);
                i64::from_le_bytes(b)
            };
            Ok(match &t {
                DataType::Int64 => Arc::new(
                    a.as_primitive::<Int64Type>()
                        .iter()
                        .map(|v| v.map(|v| h(&v.to_le_bytes())))
                        .collect::<Int64Array>(),
                ),
                DataType::Int32 => Arc::new(
                    a.as_primitive::<Int32Type>()
                        .iter()
                        .map(|v| v.map(|v| h(&v.to_le_bytes()) as i32))
                        .collect::<Int32Array>(),
                ),
                DataType::Int16 => Arc::new(
                    a.as_primitive::<Int16Type>()
                        .iter()
                        .map(|v| v.map(|v| h(&v.to_le_bytes()) as i16))
                        .collect::<Int16Array>(),
                ),
                _ => return nulls(),
            })
        }
    }
}

/// The masking function as it appears in a plan: `strata_mask(column)`.
/// The key is held inside, never in the plan's text.
struct MaskFn {
    kind: MaskKind,
    key: Arc<Vec<u8>>,
    signature: Signature,
}

impl std::fmt::Debug for MaskFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "strata_mask({:?})", self.kind)
    }
}
impl PartialEq for MaskFn {
    fn eq(&self, o: &Self) -> bool {
        self.kind == o.kind && self.key == o.key
    }
}
impl Eq for MaskFn {}
impl std::hash::Hash for MaskFn {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.kind as u8).hash(h)
    }
}

impl ScalarUDFImpl for MaskFn {
    fn name(&self) -> &str {
        "strata_mask"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let a = match &args.args[0] {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array_of_size(n)?,
        };
        Ok(ColumnarValue::Array(mask_array(self.kind, &a, &self.key)?))
    }
}

impl Masking {
    /// Is anything masked?
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The masks of `table`'s columns.
    pub fn of(&self, table: &str) -> Option<&BTreeMap<String, MaskKind>> {
        self.columns.get(table)
    }

    /// Mask the columns of a batch of `table` (the change feed, exports).
    pub fn batch(&self, table: &str, b: RecordBatch) -> DfResult<RecordBatch> {
        let Some(cols) = self.of(table) else {
            return Ok(b);
        };
        let schema = b.schema();
        let mut arrays = b.columns().to_vec();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (i, f) in schema.fields().iter().enumerate() {
            if let Some(kind) = cols.get(f.name()) {
                arrays[i] = mask_array(*kind, &arrays[i], &self.key)?;
                fields[i] = fields[i].clone().with_nullable(true);
            }
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            arrays,
        )?)
    }

    /// Put a masking projection above every scan of a labelled table in
    /// `plan` (subqueries included). `real` names the table a scan reads
    /// (a temporal clause renames it for planning), or `None` for a scan to
    /// leave as it is (an UPDATE's or DELETE's own read of its target, whose
    /// rows are written back).
    pub fn apply(
        &self,
        plan: LogicalPlan,
        real: &dyn Fn(&str) -> Option<String>,
    ) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let LogicalPlan::TableScan(scan) = &p else {
                return Ok(Transformed::no(p));
            };
            let Some(cols) = real(scan.table_name.table()).and_then(|t| self.of(&t)) else {
                return Ok(Transformed::no(p));
            };
            let schema = scan.projected_schema.clone();
            if !schema.iter().any(|(_, f)| cols.contains_key(f.name())) {
                return Ok(Transformed::no(p));
            }
            let exprs: Vec<Expr> = schema
                .iter()
                .map(|(q, f)| {
                    let c = Expr::Column(Column::new(q.cloned(), f.name()));
                    match cols.get(f.name()) {
                        Some(kind) => {
                            let udf = ScalarUDF::new_from_impl(MaskFn {
                                kind: *kind,
                                key: self.key.clone(),
                                signature: Signature::any(1, Volatility::Immutable),
                            });
                            udf.call(vec![c]).alias_qualified(q.cloned(), f.name())
                        }
                        None => c,
                    }
                })
                .collect();
            Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(exprs, Arc::new(p))?,
            )))
        })
        .map(|t| t.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_equality_and_hide_values() {
        let key = b"k".to_vec();
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("ada"),
            None,
            Some("ada"),
            Some("bob"),
        ]));
        let m = mask_array(MaskKind::Hash, &a, &key).unwrap();
        let m = m.as_string::<i32>();
        assert_eq!(m.value(0), m.value(2));
        assert_ne!(m.value(0), m.value(3));
        assert_eq!(m.value(0).len(), 32);
        assert!(m.is_null(1));
        let other = mask_array(MaskKind::Hash, &a, b"other").unwrap();
        assert_ne!(other.as_string::<i32>().value(0), m.value(0));
        let r = mask_array(MaskKind::Redact, &a, &key).unwrap();
        assert_eq!(r.as_string::<i32>().value(3), "****");
        let n: ArrayRef = Arc::new(Int64Array::from(vec![7, 7, 8]));
        let h = mask_array(MaskKind::Hash, &n, &key).unwrap();
        let h = h.as_primitive::<Int64Type>();
        assert_eq!(h.value(0), h.value(1));
        assert_ne!(h.value(0), 7);
        assert_eq!(
            mask_array(MaskKind::Null, &n, &key).unwrap().null_count(),
            3
        );
        assert_eq!(mask_of("PII"), Some(MaskKind::Hash));
        assert_eq!(mask_of("internal"), None);
    }
}
