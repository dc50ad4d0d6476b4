//! A hash join's integer keys as a bitmap, collected by Strata from the
//! join's build side, for the scan right under the join's probe side.
//!
//! There a filter made of DataFusion's dynamic filter would cost as much as
//! the join's own probe (a hash lookup per row), or, as a list of keys,
//! would cost ~0.4 µs per key to build (DataFusion makes one expression per
//! key), which for TPC-H Q5's 46,000 `orders` keys was more than it saved.
//! A bitmap over the keys' range costs one bit test per row, and collecting
//! it costs one pass over the build side's key column.
//!
//! [`CollectKeysExec`] sits between the join and its build input and
//! copies the key column's values into a [`KeySink`] as the batches go by;
//! when every build partition has ended, the sink turns them into a
//! [`Bits`]. [`KeyBitmap`] is the filter a scan evaluates: the bit test
//! once the bitmap is there, and nothing (every row kept) before, so a scan
//! never waits for it. The sink gives up (keeps every row) when a build
//! partition is dropped before its end, fails, holds more than
//! [`MAX_KEYS`] keys or keys spread wider than [`MAX_BITS`].

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use futures::{Stream, StreamExt};

/// The widest key range a bitmap spans (4 MiB of memory).
pub(crate) const MAX_BITS: u64 = 1 << 25;

/// The most build keys a sink collects (8 bytes each while collecting).
/// TPC-H SF 1's largest filtering build holds 147,000 (Q3); a table joined
/// with itself on its key (1.5 million `orders_h` rows in the bitemporal
/// "state change" query) gives up here, where a bitmap would keep every
/// row anyway: collecting all 1.5 million keys made that query 1.2x
/// slower. (An estimate of the build side against the probe side cannot
/// decide this: a read at a past time has none, and DataFusion's guess
/// for TPC-H Q12's filtered `lineitem`, 31,000 rows, was over half of
/// `orders`' 1.5 million, which kept Q12 from its bitmap.)
pub(crate) const MAX_KEYS: usize = 1 << 20;

/// Whether a column of this type can be filtered by a key bitmap.
pub(crate) fn bitmap_type(t: &DataType) -> bool {
    matches!(t, DataType::Int64 | DataType::Int32 | DataType::Date32)
}

/// A set of integer keys as bits over their range.
#[derive(Debug)]
pub(crate) struct Bits {
    min: i64,
    words: Vec<u64>,
    keys: usize,
}

impl Bits {
    /// The bitmap of `values`, or `None` if their range is wider than
    /// [`MAX_BITS`]. No values: a bitmap that holds nothing.
    pub(crate) fn of(values: &[i64]) -> Option<Bits> {
        let (Some(&min), Some(&max)) = (values.iter().min(), values.iter().max()) else {
            return Some(Bits {
                min: 0,
                words: vec![],
                keys: 0,
            });
        };
        let span = i128::from(max) - i128::from(min) + 1;
        if span > i128::from(MAX_BITS) {
            return None;
        }
        let span = span as u64;
        let mut words = vec![0u64; span.div_ceil(64) as usize];
        for v in values {
            let o = v.wrapping_sub(min) as u64;
            words[(o / 64) as usize] |= 1 << (o % 64);
        }
        Some(Bits {
            min,
            words,
            keys: values.len(),
        })
    }

    #[inline]
    fn test(&self, v: i64) -> bool {
        let o = v.wrapping_sub(self.min) as u64;
        let word = (o / 64) as usize;
        word < self.words.len() && self.words[word] & (1 << (o % 64)) != 0
    }

    /// The rows of `col` whose value is in the set (a NULL never is).
    pub(crate) fn mask(&self, col: &ArrayRef) -> Result<BooleanArray> {
        let hits = match col.data_type() {
            DataType::Int64 => {
                let v = col.as_primitive::<Int64Type>().values();
                BooleanBuffer::collect_bool(v.len(), |i| self.test(v[i]))
            }
            DataType::Int32 => {
                let v = col.as_primitive::<Int32Type>().values();
                BooleanBuffer::collect_bool(v.len(), |i| self.test(i64::from(v[i])))
            }
            DataType::Date32 => {
                let v = col.as_primitive::<Date32Type>().values();
                BooleanBuffer::collect_bool(v.len(), |i| self.test(i64::from(v[i])))
            }
            other => {
                return Err(DataFusionError::Internal(format!(
                    "a key bitmap over {other}"
                )))
            }
        };
        let hits = match col.nulls() {
            Some(n) => &hits & n.inner(),
            None => hits,
        };
        Ok(BooleanArray::new(hits, None))
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} keys from {}, {} bits",
            self.keys,
            self.min,
            self.words.len() * 64
        )
    }
}

/// The values of `col` (an integer column), NULLs left out, appended to
/// `out`.
fn push_values(col: &ArrayRef, out: &mut Vec<i64>) {
    let mut push = |len: usize, value: &dyn Fn(usize) -> i64| match col.nulls() {
        Some(n) => out.extend((0..len).filter(|&i| n.is_valid(i)).map(value)),
        None => out.extend((0..len).map(value)),
    };
    match col.data_type() {
        DataType::Int64 => {
            let v = col.as_primitive::<Int64Type>().values();
            push(v.len(), &|i| v[i])
        }
        DataType::Int32 => {
            let v = col.as_primitive::<Int32Type>().values();
            push(v.len(), &|i| i64::from(v[i]))
        }
        DataType::Date32 => {
            let v = col.as_primitive::<Date32Type>().values();
            push(v.len(), &|i| i64::from(v[i]))
        }
        _ => {}
    }
}

/// The keys of a join's build side, as its partitions hand them in.
#[derive(Debug)]
pub(crate) struct KeySink {
    /// Build partitions that report (each once: its keys, or a failure).
    parts: usize,
    state: Mutex<SinkState>,
    /// Set once every partition has reported: the bitmap, or `None` (no
    /// filter: a partition failed or the keys do not fit).
    ready: OnceLock<Option<Bits>>,
}

#[derive(Debug, Default)]
struct SinkState {
    keys: Vec<i64>,
    reported: usize,
    failed: bool,
}

impl KeySink {
    pub(crate) fn new(parts: usize) -> Arc<KeySink> {
        Arc::new(KeySink {
            parts: parts.max(1),
            state: Mutex::new(SinkState::default()),
            ready: OnceLock::new(),
        })
    }

    /// A partition's keys (`None`: it failed or gave up).
    fn report(&self, keys: Option<Vec<i64>>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.ready.get().is_some() {
            // A second run of the same plan: the first one's bitmap stands
            // (the same data), or there is none.
            return;
        }
        match keys {
            Some(k) if !s.failed && s.keys.len() + k.len() <= MAX_KEYS => s.keys.extend(k),
            _ => {
                s.failed = true;
                s.keys = Vec::new();
            }
        }
        s.reported += 1;
        if s.reported >= self.parts {
            let bits = match s.failed {
                true => None,
                false => Bits::of(&s.keys),
            };
            s.keys = Vec::new();
            let _ = self.ready.set(bits);
        }
    }

    fn bits(&self) -> Option<&Bits> {
        self.ready.get().and_then(|b| b.as_ref())
    }
}

/// Passes its input (a join's build side) through, copying column `key`'s
/// values into `sink`.
#[derive(Debug)]
pub(crate) struct CollectKeysExec {
    input: Arc<dyn ExecutionPlan>,
    key: usize,
    sink: Arc<KeySink>,
}

impl CollectKeysExec {
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>, key: usize, sink: Arc<KeySink>) -> Self {
        CollectKeysExec { input, key, sink }
    }
}

impl DisplayAs for CollectKeysExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let name = self.input.schema().field(self.key).name().clone();
        write!(f, "StrataCollectKeysExec: key={name}@{}", self.key)?;
        match self.sink.ready.get() {
            Some(Some(b)) => write!(f, ", bitmap=[{}]", b.describe()),
            Some(None) => write!(f, ", bitmap=none"),
            None => Ok(()),
        }
    }
}

impl ExecutionPlan for CollectKeysExec {
    fn name(&self) -> &str {
        "StrataCollectKeysExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(CollectKeysExec {
                input,
                key: self.key,
                sink: self.sink.clone(),
            })),
            _ => Err(DataFusionError::Internal(
                "StrataCollectKeysExec takes exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        Ok(Box::pin(CollectStream {
            schema: input.schema(),
            input,
            key: self.key,
            sink: self.sink.clone(),
            keys: Some(Vec::new()),
            reported: false,
        }))
    }
}

struct CollectStream {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    key: usize,
    sink: Arc<KeySink>,
    /// `None` once this partition gave up collecting.
    keys: Option<Vec<i64>>,
    reported: bool,
}

impl CollectStream {
    fn report(&mut self, keys: Option<Vec<i64>>) {
        if !self.reported {
            self.reported = true;
            self.sink.report(keys);
        }
    }
}

impl Stream for CollectStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.input.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(b))) => {
                let key = self.key;
                if let Some(keys) = self.keys.as_mut() {
                    push_values(b.column(key), keys);
                    if keys.len() > MAX_KEYS {
                        self.keys = None;
                        self.report(None);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.report(None),
            Poll::Ready(None) => {
                let keys = self.keys.take();
                self.report(keys);
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl RecordBatchStream for CollectStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for CollectStream {
    fn drop(&mut self) {
        // Dropped before its end (a limit above, a cancel): the keys are
        // not all known, so no bitmap.
        self.report(None);
    }
}

/// `key IN (…)` over integer keys as a bitmap ([`Bits`]) of the keys'
/// range: one subtraction, one comparison and one bit test per row. The
/// bits are either fixed (a join's list of keys made into a bitmap,
/// crate::join_filter::scan_form) or a join's [`KeySink`], read when the
/// scan evaluates it: before the sink is ready, and when it has no bitmap,
/// every row is kept. A NULL key never is.
#[derive(Debug, Clone)]
pub(crate) struct KeyBitmap {
    key: Arc<dyn PhysicalExpr>,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Fixed(Arc<Bits>),
    Sink(Arc<KeySink>),
}

impl KeyBitmap {
    pub(crate) fn fixed(key: Arc<dyn PhysicalExpr>, bits: Bits) -> Self {
        KeyBitmap {
            key,
            source: Source::Fixed(Arc::new(bits)),
        }
    }

    pub(crate) fn of_sink(key: Arc<dyn PhysicalExpr>, sink: Arc<KeySink>) -> Self {
        KeyBitmap {
            key,
            source: Source::Sink(sink),
        }
    }

    fn bits(&self) -> Option<&Bits> {
        match &self.source {
            Source::Fixed(b) => Some(b),
            Source::Sink(s) => s.bits(),
        }
    }

    /// The address of the bits' owner, for equality and hashing.
    fn source_ptr(&self) -> usize {
        match &self.source {
            Source::Fixed(b) => Arc::as_ptr(b) as usize,
            Source::Sink(s) => Arc::as_ptr(s) as usize,
        }
    }
}

impl PartialEq for KeyBitmap {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_ref() == other.key.as_ref() && self.source_ptr() == other.source_ptr()
    }
}

impl Eq for KeyBitmap {}

impl std::hash::Hash for KeyBitmap {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.source_ptr().hash(state);
    }
}

impl fmt::Display for KeyBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Fixed(b) => write!(f, "{} IN BITMAP ({})", self.key, b.describe()),
            Source::Sink(s) => {
                write!(f, "{} IN BUILD KEYS", self.key)?;
                match s.ready.get() {
                    Some(Some(b)) => write!(f, " ({})", b.describe()),
                    Some(None) => write!(f, " (none: every row kept)"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl PhysicalExpr for KeyBitmap {
    fn data_type(&self, _: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let Some(bits) = self.bits() else {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Boolean(Some(true)),
            ));
        };
        let col = self.key.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(ColumnarValue::Array(Arc::new(bits.mask(&col)?)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.key]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let key = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("a key bitmap without its key".into()))?;
        Ok(Arc::new(KeyBitmap {
            key,
            source: self.source.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array};

    #[test]
    fn bits_hold_exactly_their_keys_and_never_a_null() {
        let b = Bits::of(&[-3, 0, 5, 1 << 20]).unwrap();
        let col: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(-3),
            Some(-4),
            None,
            Some(0),
            Some(5),
            Some(6),
            Some(1 << 20),
            Some(i64::MIN),
            Some(i64::MAX),
        ]));
        let m = b.mask(&col).unwrap();
        let got: Vec<bool> = (0..m.len()).map(|i| m.value(i)).collect();
        assert_eq!(
            got,
            [true, false, false, true, true, false, true, false, false]
        );
        let col: ArrayRef = Arc::new(Int32Array::from(vec![0, 1, 5]));
        let m = b.mask(&col).unwrap();
        assert_eq!(
            (0..3).map(|i| m.value(i)).collect::<Vec<_>>(),
            [true, false, true]
        );
        // Too wide a range: no bitmap; no keys: a bitmap of nothing.
        assert!(Bits::of(&[0, 1 << 40]).is_none());
        assert!(Bits::of(&[i64::MIN, i64::MAX]).is_none());
        let empty = Bits::of(&[]).unwrap();
        assert_eq!(empty.mask(&col).unwrap().true_count(), 0);
    }

    #[test]
    fn a_sink_is_ready_when_every_partition_reported_and_gives_up_on_any_failure() {
        let col: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let batch = RecordBatch::try_from_iter([("k", col)]).unwrap();
        let key: Arc<dyn PhysicalExpr> =
            Arc::new(datafusion::physical_expr::expressions::Column::new("k", 0));
        let keep = |f: &KeyBitmap| match f.evaluate(&batch).unwrap() {
            ColumnarValue::Scalar(_) => vec![true; 4],
            ColumnarValue::Array(a) => {
                let a = a.as_boolean();
                (0..4).map(|i| a.value(i)).collect()
            }
        };
        let sink = KeySink::new(2);
        let f = KeyBitmap::of_sink(key.clone(), sink.clone());
        sink.report(Some(vec![2]));
        // One partition still building: every row kept.
        assert_eq!(keep(&f), [true; 4]);
        sink.report(Some(vec![4, 4]));
        assert_eq!(keep(&f), [false, true, false, true]);
        let failed = KeySink::new(2);
        let f = KeyBitmap::of_sink(key, failed.clone());
        failed.report(Some(vec![2]));
        failed.report(None);
        assert_eq!(keep(&f), [true; 4]);
        assert!(f.to_string().contains("every row kept"), "{f}");
    }
}
