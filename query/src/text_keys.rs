//! Grouping by short text as by an integer.
//!
//! DataFusion groups by one text column through a byte map (hash every
//! string, compare its bytes) and by several through a row of columns; a
//! few distinct one-letter statuses cost as much per row as a million
//! distinct names. In the time-travel queries of the bitemporal harness
//! (`GROUP BY o_status`) the map and the hashing were 38% of the CPU, and
//! in TPC-H Q1 (`GROUP BY l_returnflag, l_linestatus`) grouping took two
//! thirds more time than grouping by one integer column.
//!
//! This logical rule rewrites such an aggregate to group by a `UInt64` key
//! (DataFusion's primitive group map, one hash of an integer per row) and
//! turns the key back into text above it:
//!
//! ```text
//! Aggregate: groupBy=[a, b], aggr=[…]
//! ⇒ Projection: strata_text_of(k, 1) AS a, strata_text_of(k, 2) AS b, …
//!     Aggregate: groupBy=[strata_text_key(a, b) AS k], aggr=[…]
//! ```
//!
//! The key is exact for every text. A text of up to 7 bytes (up to 3 when
//! two columns share one key) is packed into the key's bits with its
//! length; a longer one gets a number from an interner the key and its
//! inverse share, made afresh each time a query is optimized (the plan is
//! optimized for every execution). NULL has a code of its own, so NULLs
//! still form one group.
//!
//! The rule applies only where it pays: to a grouping column read straight
//! from a Strata table whose segment statistics (least and greatest value)
//! are short texts (`Engine::text_stat_len`). Those are a hint only, which
//! is why long texts are still handled exactly: through the interner,
//! which costs a lookup per long value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder, UInt64Array};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, HashMap, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Projection, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use parking_lot::RwLock;

/// Texts of this many bytes or fewer are packed into a whole key.
const WHOLE: usize = 7;
/// … and into half a key, when two columns share one.
const HALF: usize = 3;

/// Long texts and their numbers, shared by the key and its inverse.
#[derive(Debug, Default)]
struct Interner {
    inner: RwLock<Texts>,
}

#[derive(Debug, Default)]
struct Texts {
    numbers: HashMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
}

impl Texts {
    fn number(&mut self, s: &str) -> DfResult<u32> {
        if let Some(n) = self.numbers.get(s) {
            return Ok(*n);
        }
        // The top bit marks a number; all ones is NULL in half a key.
        let n = u32::try_from(self.texts.len())
            .ok()
            .filter(|n| *n < 0x7fff_ffff)
            .ok_or_else(|| {
                DataFusionError::ResourcesExhausted(
                    "grouping by text: more than 2^31 distinct long values".into(),
                )
            })?;
        self.texts.push(s.into());
        self.numbers.insert(s.into(), n);
        Ok(n)
    }
}

/// How a text sits in a key: the whole key, or its upper or lower half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Whole,
    High,
    Low,
}

impl Slot {
    fn from_arg(n: i64) -> Option<Slot> {
        match n {
            0 => Some(Slot::Whole),
            1 => Some(Slot::High),
            2 => Some(Slot::Low),
            _ => None,
        }
    }

    fn arg(self) -> i64 {
        match self {
            Slot::Whole => 0,
            Slot::High => 1,
            Slot::Low => 2,
        }
    }

    /// Bits of the code, and bytes packed in it.
    fn bits(self) -> u32 {
        if self == Slot::Whole {
            64
        } else {
            32
        }
    }

    fn capacity(self) -> usize {
        if self == Slot::Whole {
            WHOLE
        } else {
            HALF
        }
    }

    fn null(self) -> u64 {
        u64::MAX >> (64 - self.bits())
    }

    fn number(self, n: u32) -> u64 {
        (1u64 << (self.bits() - 1)) | u64::from(n)
    }

    /// The code of this slot in `key`.
    fn code(self, key: u64) -> u64 {
        match self {
            Slot::Whole => key,
            Slot::High => key >> 32,
            Slot::Low => key & 0xffff_ffff,
        }
    }
}

impl Interner {
    /// Every row's code for `a` in `slot`.
    fn codes(&self, a: &dyn Array, slot: Slot) -> DfResult<Vec<u64>> {
        let a = a.as_string_opt::<i32>().ok_or_else(|| {
            DataFusionError::Internal(format!("strata_text_key takes text, not {}", a.data_type()))
        })?;
        let cap = slot.capacity();
        let mut out = vec![0u64; a.len()];
        let mut long = Vec::new();
        let data = a.value_data();
        let (len_shift, first_shift) = (8 * cap as u32, 8 * (cap as u32 - 1));
        // Every row as if not NULL (a NULL's offsets may span anything),
        // then the NULLs' codes.
        for (i, (o, w)) in out.iter_mut().zip(a.value_offsets().windows(2)).enumerate() {
            let (start, end) = (w[0] as usize, w[1] as usize);
            let len = end.saturating_sub(start);
            if len <= cap {
                let mut v = (len as u64) << len_shift;
                let mut shift = first_shift;
                for b in &data[start..end] {
                    v |= u64::from(*b) << shift;
                    shift = shift.wrapping_sub(8);
                }
                *o = v;
            } else {
                long.push(i);
            }
        }
        if let Some(nulls) = a.nulls().filter(|n| n.null_count() > 0) {
            for i in (0..a.len()).filter(|i| nulls.is_null(*i)) {
                out[i] = slot.null();
            }
            long.retain(|i| nulls.is_valid(*i));
        }
        if !long.is_empty() {
            // Known texts under the read lock, then the new ones under
            // the write lock (numbered there, if another partition has not).
            let mut new = Vec::new();
            {
                let t = self.inner.read();
                for i in long {
                    match t.numbers.get(a.value(i)) {
                        Some(n) => out[i] = slot.number(*n),
                        None => new.push(i),
                    }
                }
            }
            if !new.is_empty() {
                let mut t = self.inner.write();
                for i in new {
                    out[i] = slot.number(t.number(a.value(i))?);
                }
            }
        }
        Ok(out)
    }

    /// The texts of `keys` in `slot`.
    fn texts(&self, keys: &UInt64Array, slot: Slot) -> DfResult<ArrayRef> {
        let mut b = StringBuilder::with_capacity(keys.len(), keys.len() * 4);
        let t = self.inner.read();
        let cap = slot.capacity();
        let top = 1u64 << (slot.bits() - 1);
        let mut buf = [0u8; WHOLE];
        for i in 0..keys.len() {
            if keys.is_null(i) {
                b.append_null();
                continue;
            }
            let code = slot.code(keys.value(i));
            if code == slot.null() {
                b.append_null();
            } else if code & top != 0 {
                let n = (code & !top) as usize;
                let s = t.texts.get(n).ok_or_else(|| {
                    DataFusionError::Internal(format!("strata_text_of: no text numbered {n}"))
                })?;
                b.append_value(s);
            } else {
                let len = (code >> (8 * cap)) as usize;
                if len > cap {
                    return Err(DataFusionError::Internal(format!(
                        "strata_text_of: {code:#x} is not a text's code"
                    )));
                }
                for (k, byte) in buf.iter_mut().take(len).enumerate() {
                    *byte = (code >> (8 * (cap - 1 - k))) as u8;
                }
                let s = std::str::from_utf8(&buf[..len])
                    .map_err(|e| DataFusionError::Internal(format!("strata_text_of: {e}")))?;
                b.append_value(s);
            }
        }
        Ok(Arc::new(b.finish()))
    }
}

/// Equal when they share one interner: the key and its inverse must.
#[derive(Debug, Clone)]
struct Shared(Arc<Interner>);

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shared {}

impl std::hash::Hash for Shared {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state)
    }
}

/// `strata_text_key(a [, b])`: one or two texts as a `UInt64` key.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextKey {
    signature: Signature,
    interner: Shared,
}

impl ScalarUDFImpl for TextKey {
    fn name(&self) -> &str {
        "strata_text_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let interner = &self.interner.0;
        let key: Vec<u64> = match arrays.as_slice() {
            [a] => interner.codes(a.as_ref(), Slot::Whole)?,
            [a, b] => {
                let hi = interner.codes(a.as_ref(), Slot::High)?;
                let lo = interner.codes(b.as_ref(), Slot::Low)?;
                hi.into_iter().zip(lo).map(|(h, l)| (h << 32) | l).collect()
            }
            _ => {
                return Err(DataFusionError::Internal(
                    "strata_text_key takes one or two texts".into(),
                ))
            }
        };
        let key = UInt64Array::from(key);
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            && rows == 1
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&key, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(key)))
    }
}

/// `strata_text_of(key, slot)`: the text a key holds in a slot (0: the
/// whole key, 1 and 2: its upper and lower half).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextOf {
    signature: Signature,
    interner: Shared,
}

impl ScalarUDFImpl for TextOf {
    fn name(&self) -> &str {
        "strata_text_of"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let slot = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))) => Slot::from_arg(*n),
            _ => None,
        }
        .ok_or_else(|| {
            DataFusionError::Internal("strata_text_of takes a key and a slot 0, 1 or 2".into())
        })?;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let keys = args.args[0].to_array(args.number_rows)?;
        let keys = keys
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| DataFusionError::Internal("strata_text_of takes a UInt64 key".into()))?;
        let texts = self.interner.0.texts(keys, slot)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &texts, 0,
            )?));
        }
        Ok(ColumnarValue::Array(texts))
    }
}

#[derive(Debug, Default)]
pub struct TextGroupKeys;

/// The longest text the segment statistics of every Strata table read
/// under `input` show for a column named `c` (the tables that have one).
fn stat_len(input: &LogicalPlan, c: &Column) -> Option<usize> {
    let mut longest: Option<usize> = None;
    let mut unknown = false;
    let _ = input.apply(|p| {
        if let LogicalPlan::TableScan(scan) = p {
            if scan
                .projected_schema
                .has_column_with_unqualified_name(&c.name)
            {
                let len = datafusion::datasource::source_as_provider(&scan.source)
                    .ok()
                    .and_then(|t| {
                        t.downcast_ref::<crate::provider::StrataTable>()
                            .and_then(|t| t.text_stat_len(&c.name))
                    });
                match len {
                    Some(n) => longest = Some(longest.unwrap_or(0).max(n)),
                    None => unknown = true,
                }
            }
        }
        Ok(if unknown {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if unknown {
        None
    } else {
        longest
    }
}

/// A grouping column to pack: its place among the group expressions and
/// the hinted length of its texts.
struct Candidate {
    at: usize,
    len: usize,
}

impl OptimizerRule for TextGroupKeys {
    fn name(&self) -> &str {
        "strata_text_group_keys"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = plan else {
            return Ok(Transformed::no(plan));
        };
        let schema = agg.input.schema();
        let mut candidates = Vec::new();
        for (at, e) in agg.group_expr.iter().enumerate() {
            let Expr::Column(c) = e else {
                // Grouping sets included: left to DataFusion.
                if matches!(e, Expr::GroupingSet(_)) {
                    return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
                }
                continue;
            };
            if !matches!(e.get_type(schema), Ok(DataType::Utf8)) {
                continue;
            }
            if let Some(len) = stat_len(&agg.input, c).filter(|n| *n <= WHOLE) {
                candidates.push(Candidate { at, len });
            }
        }
        if candidates.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        }
        // Two columns of short texts share a key; the rest get one each.
        let (mut halves, wholes): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.len <= HALF);
        let mut keys: Vec<Vec<usize>> = Vec::new();
        while halves.len() >= 2 {
            let b = halves.pop().map(|c| c.at);
            let a = halves.pop().map(|c| c.at);
            keys.push(a.into_iter().chain(b).collect());
        }
        keys.extend(halves.into_iter().chain(wholes).map(|c| vec![c.at]));
        keys.sort();

        let interner = Shared(Arc::new(Interner::default()));
        let key_fn = Arc::new(ScalarUDF::new_from_impl(TextKey {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
            interner: interner.clone(),
        }));
        let of_fn = Arc::new(ScalarUDF::new_from_impl(TextOf {
            signature: Signature::exact(
                vec![DataType::UInt64, DataType::Int64],
                Volatility::Immutable,
            ),
            interner,
        }));

        // The new group expressions, and where each old one went: a plain
        // group expression, or a slot of a key.
        enum Place {
            Plain(usize),
            Key(usize, Slot),
        }
        let mut groups = Vec::new();
        let mut places: Vec<Option<Place>> = (0..agg.group_expr.len()).map(|_| None).collect();
        for (at, e) in agg.group_expr.iter().enumerate() {
            if let Some(k) = keys.iter().position(|k| k[0] == at) {
                let members = &keys[k];
                let args: Vec<Expr> = members.iter().map(|m| agg.group_expr[*m].clone()).collect();
                let name = format!("__strata_text_key{k}");
                let pos = groups.len();
                groups.push(
                    Expr::ScalarFunction(ScalarFunction::new_udf(key_fn.clone(), args)).alias(name),
                );
                if members.len() == 1 {
                    places[at] = Some(Place::Key(pos, Slot::Whole));
                } else {
                    places[members[0]] = Some(Place::Key(pos, Slot::High));
                    places[members[1]] = Some(Place::Key(pos, Slot::Low));
                }
            } else if !keys.iter().any(|k| k.contains(&at)) {
                places[at] = Some(Place::Plain(groups.len()));
                groups.push(e.clone());
            }
        }
        let n_old = agg.group_expr.len();
        let n_new = groups.len();
        let old_schema = agg.schema.clone();
        let inner = Aggregate::try_new(agg.input.clone(), groups, agg.aggr_expr.clone())?;
        let new_schema = inner.schema.clone();
        let field = |i: usize| {
            let (q, f) = new_schema.qualified_field(i);
            Expr::Column(Column::new(q.cloned(), f.name()))
        };
        let mut exprs = Vec::with_capacity(old_schema.fields().len());
        for (i, place) in places.into_iter().enumerate() {
            let (q, f) = old_schema.qualified_field(i);
            let e = match place {
                Some(Place::Plain(p)) => field(p),
                Some(Place::Key(p, slot)) => Expr::ScalarFunction(ScalarFunction::new_udf(
                    of_fn.clone(),
                    vec![
                        field(p),
                        Expr::Literal(ScalarValue::Int64(Some(slot.arg())), None),
                    ],
                )),
                None => {
                    return Err(DataFusionError::Internal(
                        "strata_text_group_keys lost a group expression".into(),
                    ))
                }
            };
            exprs.push(e.alias_qualified(q.cloned(), f.name()));
        }
        for i in n_old..old_schema.fields().len() {
            let (q, f) = old_schema.qualified_field(i);
            exprs.push(field(n_new + (i - n_old)).alias_qualified(q.cloned(), f.name()));
        }
        let projection = Projection::try_new_with_schema(
            exprs,
            Arc::new(LogicalPlan::Aggregate(inner)),
            old_schema,
        )?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn round_trip(values: &[Option<&str>], slot: Slot) {
        let i = Interner::default();
        let a = StringArray::from(values.to_vec());
        let codes = i.codes(&a, slot).unwrap();
        let keys = UInt64Array::from(
            codes
                .iter()
                .map(|c| match slot {
                    Slot::High => c << 32,
                    _ => *c,
                })
                .collect::<Vec<_>>(),
        );
        let back = i.texts(&keys, slot).unwrap();
        assert_eq!(back.as_string::<i32>(), &a, "{slot:?}");
        // Equal texts have equal codes, different texts different ones.
        for x in 0..values.len() {
            for y in 0..values.len() {
                assert_eq!(values[x] == values[y], codes[x] == codes[y], "{values:?}");
            }
        }
    }

    #[test]
    fn every_text_comes_back_and_codes_are_equal_only_for_equal_texts() {
        let values = [
            Some(""),
            Some("A"),
            Some("A\0"),
            Some("\0"),
            Some("AB"),
            Some("ABC"),
            Some("ABCD"),
            Some("ABCDEFG"),
            Some("ABCDEFGH"),
            Some("é"),
            Some("日本"),
            None,
            Some("ABCDEFGH"),
            Some("A"),
            None,
        ];
        for slot in [Slot::Whole, Slot::High, Slot::Low] {
            round_trip(&values, slot);
        }
    }
}
