//! Tables as DataFusion sees them: a catalog whose tables are Strata tables
//! read at one temporal coordinate, scanned as streams of visible rectangles.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::new_null_array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session as DfSession, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use futures::StreamExt;
use std::collections::HashMap;
use strata_storage::log::Op;
use strata_storage::schema::{TableSchema, ID};
use strata_storage::time::Micros;
use strata_storage::{
    CmpOp, ColumnPredicate, Coordinate, Engine, EntityId, StatValue, TableScan, Test,
};

/// The coordinates a query reads at, by table reference name.
#[derive(Debug, Clone)]
pub struct QueryTimes {
    /// Default coordinate for table references without a temporal clause.
    pub default: Coordinate,
    /// Coordinates of rewritten table references (`FOR SYSTEM_TIME …`), by synthetic name.
    pub overrides: Vec<(String, String, Coordinate)>,
    /// Inside `BEGIN … COMMIT`: the transaction's writes so far.
    pub pending: Option<Arc<PendingWrites>>,
}

/// The writes of an open transaction, which the transaction's own reads see
/// (applied at its provisional system time on a private copy of each table).
#[derive(Debug)]
pub struct PendingWrites {
    /// Prepared (validated, normalized) at `system_time`.
    pub ops: Vec<Op>,
    pub system_time: Micros,
    /// Table schemas with the transaction's writes.
    pub schemas: HashMap<String, TableSchema>,
}

impl QueryTimes {
    /// A table's schema as this query sees it.
    pub fn table_schema(&self, engine: &Engine, table: &str) -> Option<TableSchema> {
        match &self.pending {
            Some(p) => p.schemas.get(table).cloned(),
            None => engine.table_schema(table),
        }
    }
}

/// The `strata` catalog with one schema, `public`.
#[derive(Debug)]
pub struct StrataCatalog {
    pub schema: Arc<StrataSchema>,
}

impl CatalogProvider for StrataCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec!["public".to_string()]
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == "public").then(|| self.schema.clone() as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
pub struct StrataSchema {
    pub engine: Arc<Engine>,
    /// The coordinates of the statement being planned. A context (and this
    /// schema) is reused across statements; the slot is set before each
    /// planning, and table providers copy what they need out of it.
    pub times: Arc<parking_lot::RwLock<Arc<QueryTimes>>>,
}

impl StrataSchema {
    fn times(&self) -> Arc<QueryTimes> {
        self.times.read().clone()
    }

    fn provider(&self, table: &str, coord: Coordinate) -> Option<Arc<dyn TableProvider>> {
        let times = self.times();
        let ts = times.table_schema(&self.engine, table)?;
        // All columns, the temporal ones included; `SELECT *` leaves those
        // out by a rewrite before planning (crate::wildcard).
        let schema = planner_schema(&ts);
        Some(Arc::new(StrataTable {
            engine: self.engine.clone(),
            table: table.to_string(),
            coord,
            schema,
            pending: times.pending.clone(),
        }))
    }
}

#[async_trait]
impl SchemaProvider for StrataSchema {
    fn table_names(&self) -> Vec<String> {
        match &self.times().pending {
            Some(p) => {
                let mut names: Vec<String> = p.schemas.keys().cloned().collect();
                names.sort();
                names
            }
            None => self.engine.table_names(),
        }
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let times = self.times();
        if let Some((_, table, coord)) = times.overrides.iter().find(|(n, _, _)| n == name) {
            return match self.provider(table, *coord) {
                Some(p) => Ok(Some(p)),
                None => Err(unknown_table(&self.engine, table)),
            };
        }
        Ok(self.provider(name, times.default))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.times().table_schema(&self.engine, name).is_some()
    }
}

/// A table's columns as the planner sees them: the stored types, except
/// TIME (stored in microseconds, Postgres's precision) is offered in
/// nanoseconds, DataFusion's unit for TIME literals — it cannot compare the
/// two units. Scans cast (`ScanPartition`); writes store microseconds again.
pub fn planner_schema(ts: &TableSchema) -> SchemaRef {
    planner_schema_of(strata_storage::table::output_schema(ts))
}

/// [`planner_schema`] from the table's storage output schema (as
/// `Engine::table_output_schema` shares it): the same `Arc` back when no
/// column needs another type.
pub fn planner_schema_of(stored: SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    if !stored
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Time64(TimeUnit::Microsecond)))
    {
        return stored;
    }
    let fields: Vec<Field> = stored
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Time64(TimeUnit::Microsecond) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Time64(TimeUnit::Nanosecond)),
            _ => f.as_ref().clone(),
        })
        .collect();
    std::sync::Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()))
}

/// "table `x` does not exist", with the closest existing name when there is one.
pub fn unknown_table(engine: &Engine, name: &str) -> DataFusionError {
    let hint = crate::error::closest(name, &engine.table_names())
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default();
    DataFusionError::Plan(format!("table `{name}` does not exist{hint}"))
}

/// One Strata table at one temporal coordinate.
#[derive(Debug)]
pub struct StrataTable {
    engine: Arc<Engine>,
    table: String,
    coord: Coordinate,
    /// The table's columns, then the four temporal columns.
    schema: SchemaRef,
    /// An open transaction's writes, which its reads see.
    pending: Option<Arc<PendingWrites>>,
}

/// `_id = lit` / `lit = _id` / `_id IN (lits)`: the ids a filter pins down.
fn id_filter(e: &Expr) -> Option<Vec<EntityId>> {
    fn lit_id(e: &Expr) -> Option<EntityId> {
        match e {
            Expr::Literal(v, _) => scalar_id(v),
            Expr::Cast(c) => lit_id(&c.expr),
            Expr::TryCast(c) => lit_id(&c.expr),
            _ => None,
        }
    }
    fn is_id(e: &Expr) -> bool {
        matches!(e, Expr::Column(c) if c.name == ID)
    }
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            if is_id(&b.left) {
                lit_id(&b.right).map(|i| vec![i])
            } else if is_id(&b.right) {
                lit_id(&b.left).map(|i| vec![i])
            } else {
                None
            }
        }
        Expr::InList(l) if !l.negated && is_id(&l.expr) => l.list.iter().map(lit_id).collect(),
        // DataFusion's simplifier turns a short `_id IN (a, b, c)` into
        // `_id = a OR _id = b OR _id = c`: still a lookup of those ids
        // (before, it read the whole table).
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let mut ids = id_filter(&b.left)?;
            ids.extend(id_filter(&b.right)?);
            Some(ids)
        }
        _ => None,
    }
}

/// The predicates on single columns that a pushed-down filter implies, for
/// skipping segments and batches by their statistics
/// (`strata_storage::prune`): `col op literal` (=, <, <=, >, >=, either
/// side), `col BETWEEN a AND b`, `col IN (literals)`, `col IS [NOT] NULL`,
/// and conjunctions of these. Empty when the filter is of no use there.
fn column_predicates(e: &Expr, schema: &SchemaRef) -> Vec<ColumnPredicate> {
    use datafusion::arrow::datatypes::DataType;
    let column = |e: &Expr| -> Option<(String, DataType)> {
        match e {
            Expr::Column(c) => {
                let f = schema.field_with_name(&c.name).ok()?;
                Some((c.name.clone(), f.data_type().clone()))
            }
            _ => None,
        }
    };
    let literal = |e: &Expr, ty: &DataType| -> Option<(StatValue, Option<i8>)> {
        match e {
            Expr::Literal(v, _) => stat_value(ty, v),
            _ => None,
        }
    };
    let pred = |name: String, test: Test, scale: Option<i8>| ColumnPredicate {
        column: name,
        test,
        decimal_scale: scale,
    };
    let cmp = |op: Operator| match op {
        Operator::Eq => Some(CmpOp::Eq),
        Operator::Lt => Some(CmpOp::Lt),
        Operator::LtEq => Some(CmpOp::LtEq),
        Operator::Gt => Some(CmpOp::Gt),
        Operator::GtEq => Some(CmpOp::GtEq),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            let mut v = column_predicates(&b.left, schema);
            v.extend(column_predicates(&b.right, schema));
            v
        }
        Expr::BinaryExpr(b) => {
            let Some(op) = cmp(b.op) else {
                return vec![];
            };
            let (col, lit, op) = match (column(&b.left), column(&b.right)) {
                (Some(c), None) => (c, &b.right, op),
                (None, Some(c)) => (c, &b.left, op.flip()),
                _ => return vec![],
            };
            match literal(lit, &col.1) {
                Some((v, scale)) => vec![pred(col.0, Test::Cmp(op, v), scale)],
                None => vec![],
            }
        }
        Expr::Between(b) if !b.negated => {
            let Some((name, ty)) = column(&b.expr) else {
                return vec![];
            };
            let mut v = Vec::new();
            if let Some((lo, scale)) = literal(&b.low, &ty) {
                v.push(pred(name.clone(), Test::Cmp(CmpOp::GtEq, lo), scale));
            }
            if let Some((hi, scale)) = literal(&b.high, &ty) {
                v.push(pred(name, Test::Cmp(CmpOp::LtEq, hi), scale));
            }
            v
        }
        Expr::InList(l) if !l.negated && !l.list.is_empty() => {
            let Some((name, ty)) = column(&l.expr) else {
                return vec![];
            };
            let mut values = Vec::with_capacity(l.list.len());
            let mut scale = None;
            for x in &l.list {
                // One literal the statistics cannot compare: no predicate.
                let Some((v, s)) = literal(x, &ty) else {
                    return vec![];
                };
                scale = s;
                values.push(v);
            }
            vec![pred(name, Test::In(values), scale)]
        }
        Expr::IsNull(c) => column(c)
            .map(|(n, _)| vec![pred(n, Test::IsNull, None)])
            .unwrap_or_default(),
        Expr::IsNotNull(c) => column(c)
            .map(|(n, _)| vec![pred(n, Test::IsNotNull, None)])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// A literal compared with a column of type `ty`, as the statistics hold
/// such values (with the decimal scale it is at); `None` for a NULL, or a
/// literal of another type than the column's (the comparison would cast).
fn stat_value(
    ty: &datafusion::arrow::datatypes::DataType,
    v: &ScalarValue,
) -> Option<(StatValue, Option<i8>)> {
    use datafusion::arrow::datatypes::{DataType as D, TimeUnit};
    let int = |v: &ScalarValue| -> Option<i64> {
        match v {
            ScalarValue::Int64(x) => *x,
            ScalarValue::Int32(x) => x.map(i64::from),
            ScalarValue::Int16(x) => x.map(i64::from),
            ScalarValue::Int8(x) => x.map(i64::from),
            ScalarValue::UInt32(x) => x.map(i64::from),
            ScalarValue::UInt16(x) => x.map(i64::from),
            ScalarValue::UInt8(x) => x.map(i64::from),
            ScalarValue::UInt64(x) => x.and_then(|x| i64::try_from(x).ok()),
            _ => None,
        }
    };
    match ty {
        D::Int64 | D::Int32 | D::Int16 | D::Int8 | D::UInt32 | D::UInt16 | D::UInt8 => {
            int(v).map(|x| (StatValue::Int(x), None))
        }
        D::Float64 | D::Float32 => match v {
            ScalarValue::Float64(Some(x)) => Some((StatValue::Float(*x), None)),
            ScalarValue::Float32(Some(x)) => Some((StatValue::Float(*x as f64), None)),
            _ => None,
        },
        D::Utf8 | D::LargeUtf8 | D::Utf8View => match v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Some((StatValue::Str(s.clone()), None)),
            _ => None,
        },
        D::Timestamp(TimeUnit::Microsecond, _) => match v {
            ScalarValue::TimestampMicrosecond(Some(x), _) => Some((StatValue::Int(*x), None)),
            _ => None,
        },
        D::Date32 => match v {
            ScalarValue::Date32(Some(d)) => Some((StatValue::Int(i64::from(*d)), None)),
            _ => None,
        },
        D::Decimal128(_, scale) => match v {
            ScalarValue::Decimal128(Some(x), _, s) if s == scale => i64::try_from(*x)
                .ok()
                .map(|x| (StatValue::Int(x), Some(*scale))),
            _ => None,
        },
        _ => None,
    }
}

pub fn scalar_id(v: &ScalarValue) -> Option<EntityId> {
    match v {
        ScalarValue::Int64(Some(x)) => Some(EntityId::Int(*x)),
        ScalarValue::Int32(Some(x)) => Some(EntityId::Int(*x as i64)),
        ScalarValue::Int16(Some(x)) => Some(EntityId::Int(*x as i64)),
        ScalarValue::Int8(Some(x)) => Some(EntityId::Int(*x as i64)),
        ScalarValue::UInt32(Some(x)) => Some(EntityId::Int(*x as i64)),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(EntityId::Text(s.clone())),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for StrataTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if id_filter(f).is_some() || !column_predicates(f, &self.schema).is_empty() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Intersect the id sets of all pushed-down id filters.
        let mut ids: Option<Vec<EntityId>> = None;
        for f in filters {
            if let Some(v) = id_filter(f) {
                ids = Some(match ids {
                    None => v,
                    Some(prev) => {
                        let v: std::collections::HashSet<EntityId> = v.into_iter().collect();
                        prev.into_iter().filter(|x| v.contains(x)).collect()
                    }
                });
            }
        }
        let predicates: Vec<ColumnPredicate> = filters
            .iter()
            .flat_map(|f| column_predicates(f, &self.schema))
            .collect();
        if let Some(ids) = &ids {
            self.engine
                .load_blooms_for(&self.table, ids)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        }
        // At a past system time the pieces of each version are merged back
        // (crate::merge). Only rows flagged as pieces can merge: those are
        // scanned over all of valid time with every column, sorted and
        // merged; the other rows are read like any scan, beside them.
        let latest = match &self.pending {
            Some(p) => p.system_time,
            None => self.engine.latest_system_time(),
        };
        let storage_err = |e| DataFusionError::External(Box::new(e));
        if crate::merge::needed(&self.coord, latest) {
            let merge_coord = crate::merge::scan_coordinate(&self.coord);
            let scans = match &self.pending {
                Some(p) => {
                    self.engine
                        .scan_past_with(
                            &self.table,
                            self.coord,
                            merge_coord,
                            ids,
                            &p.ops,
                            p.system_time,
                        )
                        .await
                }
                None => self
                    .engine
                    .scan_past(&self.table, self.coord, merge_coord, ids),
            }
            .map_err(storage_err)?
            .ok_or_else(|| unknown_table(&self.engine, &self.table))?;
            // Pieces are not pruned by value: they merge with their neighbours.
            let whole = scans.whole.with_predicates(predicates);
            let Some(pieces) = scans.pieces else {
                return self.scan_exec(state, whole, projection, limit);
            };
            let whole = self.scan_exec(state, whole, projection, None)?;
            let pieces = Arc::new(pieces);
            let exec = StreamingTableExec::try_new(
                self.schema.clone(),
                self.partitions(state, &pieces, &self.schema),
                None,
                vec![],
                false,
                None,
            )?;
            let exec = Arc::new(StrataScanExec {
                table: self.table.clone(),
                metrics: pieces.metrics.clone(),
                inner: Arc::new(exec),
                stats: Arc::new(datafusion::common::Statistics::new_unknown(&self.schema)),
                pushed: vec![],
                dynamic: vec![],
                dynamic_pruned: Default::default(),
                dynamic_abandoned: Default::default(),
            });
            let merged = crate::merge::plan(
                exec,
                self.coord.valid,
                projection,
                state.config().target_partitions(),
            )?;
            return UnionExec::try_new(vec![whole, merged]);
        }
        let scan = match &self.pending {
            Some(p) => {
                self.engine
                    .scan_with(&self.table, self.coord, ids, &p.ops, p.system_time)
                    .await
            }
            None => self.engine.scan(&self.table, self.coord, ids),
        };
        let scan = scan
            .map_err(storage_err)?
            .ok_or_else(|| unknown_table(&self.engine, &self.table))?
            .with_predicates(predicates);
        self.scan_exec(state, scan, projection, limit)
    }
}

impl StrataTable {
    /// The longest text in the segment statistics of `column` (a hint:
    /// `Engine::text_stat_len`).
    pub fn text_stat_len(&self, column: &str) -> Option<usize> {
        self.engine.text_stat_len(&self.table, column)
    }

    /// The plan reading `scan` (its rows filtered by storage), projected:
    /// storage decodes and filters only the columns the query reads.
    fn scan_exec(
        &self,
        state: &dyn DfSession,
        scan: TableScan,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let out: SchemaRef = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let stats = Arc::new(scan_statistics(&scan, &out));
        let pushed = scan.predicates.iter().map(describe).collect::<Vec<_>>();
        let scan = Arc::new(scan);
        let exec = StreamingTableExec::try_new(
            out.clone(),
            self.partitions(state, &scan, &out),
            None,
            vec![],
            false,
            limit,
        )?;
        Ok(Arc::new(StrataScanExec {
            table: self.table.clone(),
            metrics: scan.metrics.clone(),
            inner: Arc::new(exec),
            stats,
            pushed,
            dynamic: vec![],
            dynamic_pruned: Default::default(),
            dynamic_abandoned: Default::default(),
        }))
    }

    /// `scan` shared out over the session's target partitions (no more
    /// than it has units of work): every partition reads its share of the
    /// live rows and of every segment's batches (`TableScan::partition_stream`).
    fn partitions(
        &self,
        state: &dyn DfSession,
        scan: &Arc<TableScan>,
        out: &SchemaRef,
    ) -> Vec<Arc<dyn PartitionStream>> {
        let parts = state
            .config()
            .target_partitions()
            .max(1)
            .min(scan.work_units().max(1));
        // The columns as storage holds them (the planner's TIME is in ns).
        let stored: SchemaRef = Arc::new(datafusion::arrow::datatypes::Schema::new(
            out.fields()
                .iter()
                .map(|f| match scan.schema.field_with_name(f.name()) {
                    Ok(s) => s.clone(),
                    Err(_) => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ));
        (0..parts)
            .map(|part| {
                Arc::new(ScanPartition {
                    scan: scan.clone(),
                    schema: out.clone(),
                    stored: stored.clone(),
                    part,
                    parts,
                }) as Arc<dyn PartitionStream>
            })
            .collect()
    }
}

/// What the optimizer is told about a scan (all inexact: rows may be
/// invisible at the coordinate, deleted, or in the live index): the rows of
/// its segments (less their deletion vectors) and live rows, and per column
/// the segments' null counts and min/max (integers, dates, timestamps and
/// text; decimals and floats are left out). Join order and build sides are
/// chosen from these.
pub fn scan_statistics(scan: &TableScan, out: &SchemaRef) -> datafusion::common::Statistics {
    use datafusion::common::stats::Precision;
    use datafusion::common::{ColumnStatistics, Statistics};
    use strata_storage::TimeSelector;
    let live_rows: usize = scan.live.iter().map(|b| b.num_rows()).sum();
    let seg_rows: usize = scan
        .segments
        .iter()
        .map(|(s, d)| (s.meta.rows as usize).saturating_sub(d.count()))
        .sum();
    let rows = live_rows + seg_rows;
    // One row per entity when reading at one point of both axes.
    let point = matches!(scan.coord.system, TimeSelector::AsOf(_))
        && matches!(scan.coord.valid, TimeSelector::AsOf(_));
    let columns = out
        .fields()
        .iter()
        .map(|f| {
            let mut c = ColumnStatistics::new_unknown();
            if f.name() == ID && point {
                c.distinct_count = Precision::Inexact(rows);
            }
            // Live rows have no statistics: then nothing is known.
            if live_rows > 0 || scan.segments.is_empty() {
                return c;
            }
            let mut nulls = 0usize;
            let mut known_nulls = true;
            let (mut lo, mut hi): (Option<ScalarValue>, Option<ScalarValue>) = (None, None);
            let mut known_range = true;
            for (seg, _) in &scan.segments {
                match seg.meta.columns.iter().find(|s| &s.name == f.name()) {
                    // Not in the segment (added since): NULL there.
                    None if !seg.meta.columns.is_empty() => nulls += seg.meta.rows as usize,
                    None => {
                        known_nulls = false;
                        known_range = false;
                    }
                    Some(s) => {
                        nulls += s.null_count as usize;
                        if s.null_count >= seg.meta.rows {
                            continue;
                        }
                        let min = s.min.as_ref();
                        let max = s.max.as_ref();
                        match (
                            stat_scalar(
                                f.data_type(),
                                min.and_then(|v| v.as_i64()),
                                min.and_then(|v| v.as_str()),
                            ),
                            stat_scalar(
                                f.data_type(),
                                max.and_then(|v| v.as_i64()),
                                max.and_then(|v| v.as_str()),
                            ),
                        ) {
                            (Some(a), Some(b)) => {
                                if lo.as_ref().is_none_or(|l| a < *l) {
                                    lo = Some(a);
                                }
                                if hi.as_ref().is_none_or(|h| b > *h) {
                                    hi = Some(b);
                                }
                            }
                            _ => known_range = false,
                        }
                    }
                }
            }
            if known_nulls {
                c.null_count = Precision::Inexact(nulls.min(rows));
            }
            if known_range {
                if let (Some(a), Some(b)) = (lo, hi) {
                    if a <= b {
                        c.min_value = Precision::Inexact(a);
                        c.max_value = Precision::Inexact(b);
                    }
                }
            }
            c
        })
        .collect();
    Statistics {
        num_rows: Precision::Inexact(rows),
        total_byte_size: Precision::Absent,
        column_statistics: columns,
    }
}

/// A segment statistic (docs/format.md, "Column statistics": `int` if it
/// is a JSON integer, `text` if a string) as a value of the planner's column
/// type; `None` where it is not used.
fn stat_scalar(
    ty: &datafusion::arrow::datatypes::DataType,
    int: Option<i64>,
    text: Option<&str>,
) -> Option<ScalarValue> {
    use datafusion::arrow::datatypes::{DataType as D, TimeUnit};
    match ty {
        D::Int64 | D::Int32 | D::Int16 | D::Int8 | D::UInt32 | D::UInt16 | D::UInt8 => {
            ScalarValue::Int64(Some(int?)).cast_to(ty).ok()
        }
        D::Date32 => Some(ScalarValue::Date32(Some(i32::try_from(int?).ok()?))),
        D::Timestamp(TimeUnit::Microsecond, tz) => {
            Some(ScalarValue::TimestampMicrosecond(Some(int?), tz.clone()))
        }
        D::Utf8 => Some(ScalarValue::Utf8(Some(text?.to_string()))),
        D::LargeUtf8 => Some(ScalarValue::LargeUtf8(Some(text?.to_string()))),
        D::Utf8View => Some(ScalarValue::Utf8View(Some(text?.to_string()))),
        _ => None,
    }
}

/// The scan of one Strata table: the streaming scan underneath, plus what the
/// storage engine pruned and read, for `EXPLAIN ANALYZE`.
#[derive(Debug)]
pub struct StrataScanExec {
    table: String,
    metrics: Arc<strata_storage::ScanMetrics>,
    inner: Arc<dyn ExecutionPlan>,
    /// What the optimizer is told about the whole scan ([`scan_statistics`]).
    stats: Arc<datafusion::common::Statistics>,
    /// The predicates storage evaluates in the scan (shown by EXPLAIN).
    pushed: Vec<String>,
    /// Filters a hash join above fills in from its build side while the
    /// query runs; the scan applies them to its rows, so the operators
    /// between see only rows that can still find a match
    /// (crate::join_filter).
    dynamic: Vec<Arc<dyn PhysicalExpr>>,
    /// Rows the dynamic filters removed, and filters a stream stopped
    /// evaluating because they removed too few (`EXPLAIN ANALYZE`).
    dynamic_pruned: Arc<std::sync::atomic::AtomicUsize>,
    dynamic_abandoned: Arc<std::sync::atomic::AtomicUsize>,
}

/// A predicate evaluated in the scan, as EXPLAIN shows it (decimals by
/// their unscaled value and scale).
fn describe(p: &ColumnPredicate) -> String {
    let value = |v: &StatValue| match (v, p.decimal_scale) {
        (StatValue::Int(x), Some(s)) => format!("{x}e-{s}"),
        (StatValue::Int(x), None) => x.to_string(),
        (StatValue::Float(x), _) => x.to_string(),
        (StatValue::Str(x), _) => format!("'{x}'"),
    };
    match &p.test {
        Test::Cmp(op, v) => {
            let op = match op {
                CmpOp::Eq => "=",
                CmpOp::Lt => "<",
                CmpOp::LtEq => "<=",
                CmpOp::Gt => ">",
                CmpOp::GtEq => ">=",
            };
            format!("{} {op} {}", p.column, value(v))
        }
        Test::In(vs) => format!(
            "{} IN ({})",
            p.column,
            vs.iter().map(value).collect::<Vec<_>>().join(", ")
        ),
        Test::IsNull => format!("{} IS NULL", p.column),
        Test::IsNotNull => format!("{} IS NOT NULL", p.column),
    }
}

impl StrataScanExec {
    /// The statistics given to the optimizer for the whole scan.
    pub fn statistics(&self) -> &datafusion::common::Statistics {
        &self.stats
    }

    /// This scan also applying `filter` (a dynamic filter over its
    /// columns) to every batch it returns.
    pub fn with_dynamic_filter(&self, filter: Arc<dyn PhysicalExpr>) -> StrataScanExec {
        let mut dynamic = self.dynamic.clone();
        dynamic.push(filter);
        self.with_dynamic(dynamic)
    }

    /// This scan applying exactly the dynamic filters `dynamic`.
    fn with_dynamic(&self, dynamic: Vec<Arc<dyn PhysicalExpr>>) -> StrataScanExec {
        StrataScanExec {
            table: self.table.clone(),
            metrics: self.metrics.clone(),
            inner: self.inner.clone(),
            stats: self.stats.clone(),
            pushed: self.pushed.clone(),
            dynamic,
            dynamic_pruned: self.dynamic_pruned.clone(),
            dynamic_abandoned: self.dynamic_abandoned.clone(),
        }
    }
}

impl datafusion::physical_plan::DisplayAs for StrataScanExec {
    fn fmt_as(
        &self,
        _t: datafusion::physical_plan::DisplayFormatType,
        f: &mut fmt::Formatter,
    ) -> fmt::Result {
        write!(f, "StrataScanExec: table={}", self.table)?;
        if !self.pushed.is_empty() {
            write!(f, ", predicates=[{}]", self.pushed.join(", "))?;
        }
        if !self.dynamic.is_empty() {
            let shown = self
                .dynamic
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>();
            write!(f, ", dynamic_filters=[{}]", shown.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StrataScanExec {
    fn name(&self) -> &str {
        "StrataScanExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        use datafusion::common::tree_node::TreeNodeRecursion;
        // The producers of dynamic filters (hash joins, aggregates) fill
        // them in only if a consumer below holds them, found by this walk.
        for d in &self.dynamic {
            if _f(d)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(inner) if children.is_empty() => Ok(Arc::new(StrataScanExec {
                table: self.table.clone(),
                metrics: self.metrics.clone(),
                inner,
                stats: self.stats.clone(),
                pushed: self.pushed.clone(),
                dynamic: self.dynamic.clone(),
                dynamic_pruned: self.dynamic_pruned.clone(),
                dynamic_abandoned: self.dynamic_abandoned.clone(),
            })),
            _ => Err(DataFusionError::Internal(
                "StrataScanExec takes exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let stream = self.inner.execute(partition, context)?;
        let schema = stream.schema();
        if self.dynamic.is_empty() {
            return Ok(stream);
        }
        // Read nothing before the joins have filled their filters in. A
        // join fills its filter once its build side is in, and its probe
        // side (where this scan is) waits for that anyway; but a scan under
        // a merge of partitions (`CoalescePartitionsExec`, below a lower
        // join's build) is started as soon as the plan is, and it raced the
        // upper join's build: in TPC-H Q11's subquery the `supplier` scan
        // read every row before `nation`'s key was known. Waiting cannot
        // hang: a join whose partitions are dropped marks its filter
        // complete as they go.
        let waits: Vec<Arc<dyn PhysicalExpr>> = self.dynamic.clone();
        let filled = futures::stream::once(async move {
            use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
            for f in &waits {
                if let Some(d) = f.downcast_ref::<DynamicFilterPhysicalExpr>() {
                    d.wait_complete().await;
                }
            }
        })
        .filter_map(|()| futures::future::ready(None::<DfResult<RecordBatch>>));
        let stream = filled.chain(stream);
        let mut filters = DynamicFilters {
            filters: self.dynamic.clone(),
            forms: vec![None; self.dynamic.len()],
            seen: vec![(0, 0, true); self.dynamic.len()],
            pruned: self.dynamic_pruned.clone(),
            abandoned: self.dynamic_abandoned.clone(),
        };
        let stream = stream.filter_map(move |r| {
            let out = match r {
                Ok(b) => filters.apply(b).transpose(),
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn reset_state(self: Arc<Self>) -> DfResult<Arc<dyn ExecutionPlan>> {
        // A fresh run of the plan: the joins above drop their dynamic
        // filters too (and would not fill these in again).
        Ok(Arc::new(self.with_dynamic(vec![])))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<datafusion::common::Statistics>],
        args: &datafusion::physical_plan::StatisticsArgs,
    ) -> DfResult<Arc<datafusion::common::Statistics>> {
        Ok(match args.partition() {
            None => self.stats.clone(),
            Some(_) => Arc::new(datafusion::common::Statistics::new_unknown(&self.schema())),
        })
    }

    fn metrics(&self) -> Option<datafusion::physical_plan::metrics::MetricsSet> {
        use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder};
        use strata_storage::ScanMetrics as M;
        let set = ExecutionPlanMetricsSet::new();
        let m = &self.metrics;
        for (name, v) in [
            ("segments_total", M::get(&m.segments_total)),
            ("segments_pruned", M::get(&m.segments_pruned)),
            ("segments_read", M::get(&m.segments_read)),
            ("batches_pruned", M::get(&m.batches_pruned)),
            ("batches_read", M::get(&m.batches_read)),
            ("bytes_read", M::get(&m.bytes_read)),
            ("live_rows", M::get(&m.live_rows)),
            (
                "rows_pruned_by_dynamic_filters",
                self.dynamic_pruned
                    .load(std::sync::atomic::Ordering::Relaxed) as u64,
            ),
            (
                "dynamic_filters_abandoned",
                self.dynamic_abandoned
                    .load(std::sync::atomic::Ordering::Relaxed) as u64,
            ),
        ] {
            MetricBuilder::new(&set)
                .global_counter(name)
                .add(v as usize);
        }
        Some(set.clone_inner())
    }
}

/// The dynamic filters as one scan stream applies them. A filter is only
/// worth its cost (for a large build side, a hash probe per row, as costly
/// as the join's own) if it drops rows: one that has seen
/// [`TRIAL_ROWS`] rows and dropped under a fifth of them is no longer
/// evaluated in this stream. Rows it would have dropped reach the join,
/// which drops them: answers are the same either way.
struct DynamicFilters {
    filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Per filter: the form this stream evaluates
    /// ([`crate::join_filter::scan_form`]) of its contents as of a
    /// generation (they change when the join fills them in).
    forms: Vec<Option<(u64, Arc<dyn PhysicalExpr>)>>,
    /// Per filter: rows evaluated, rows dropped, still on.
    seen: Vec<(usize, usize, bool)>,
    pruned: Arc<std::sync::atomic::AtomicUsize>,
    abandoned: Arc<std::sync::atomic::AtomicUsize>,
}

/// Rows a dynamic filter is tried on before a stream judges it.
const TRIAL_ROWS: usize = 50_000;

impl DynamicFilters {
    /// `b` less the rows the filters (as they stand now) rule out; `None`
    /// if no row is left.
    fn apply(&mut self, b: RecordBatch) -> DfResult<Option<RecordBatch>> {
        use datafusion::arrow::array::{Array, BooleanArray};
        use datafusion::arrow::compute::{and, filter_record_batch};
        use datafusion::logical_expr::ColumnarValue;
        use std::sync::atomic::Ordering::Relaxed;
        let rows = b.num_rows();
        let mut keep: Option<BooleanArray> = None;
        for ((f, form), (seen, dropped, on)) in self
            .filters
            .iter()
            .zip(self.forms.iter_mut())
            .zip(self.seen.iter_mut())
        {
            if !*on {
                continue;
            }
            let generation = f.snapshot_generation();
            let expr = match form {
                Some((g, e)) if *g == generation => e.clone(),
                _ => {
                    let now = f.snapshot()?.unwrap_or_else(|| f.clone());
                    let e = crate::join_filter::scan_form(now, &b.schema());
                    *form = Some((generation, e.clone()));
                    e
                }
            };
            let mask = match expr.evaluate(&b)? {
                // Not filled in yet (or nothing to rule out).
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => continue,
                ColumnarValue::Scalar(ScalarValue::Boolean(_)) => {
                    self.pruned.fetch_add(rows, Relaxed);
                    return Ok(None);
                }
                ColumnarValue::Scalar(v) => {
                    return Err(DataFusionError::Internal(format!(
                        "a dynamic filter gave {v}, not a boolean"
                    )))
                }
                ColumnarValue::Array(a) => a
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .cloned()
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "a dynamic filter gave {}, not booleans",
                            a.data_type()
                        ))
                    })?,
            };
            *seen += rows;
            *dropped += rows - mask.true_count();
            if *seen >= TRIAL_ROWS && *dropped * 5 < *seen {
                *on = false;
                self.abandoned.fetch_add(1, Relaxed);
            }
            keep = Some(match keep {
                None => mask,
                Some(k) => and(&k, &mask)?,
            });
        }
        let Some(keep) = keep else {
            return Ok(Some(b));
        };
        let kept = keep.true_count();
        if kept == rows && keep.null_count() == 0 {
            return Ok(Some(b));
        }
        self.pruned.fetch_add(rows - kept, Relaxed);
        if kept == 0 {
            return Ok(None);
        }
        Ok(Some(filter_record_batch(&b, &keep)?))
    }
}

/// A share of a scan (`TableScan::partition_stream`).
struct ScanPartition {
    scan: Arc<TableScan>,
    /// The columns the plan reads, as the planner types them.
    schema: SchemaRef,
    /// The same columns as storage holds them.
    stored: SchemaRef,
    part: usize,
    parts: usize,
}

impl fmt::Debug for ScanPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScanPartition({} of {})", self.part, self.parts)
    }
}

impl PartitionStream for ScanPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let stream = self
            .scan
            .partition_stream(self.part, self.parts, self.stored.clone());
        let out_schema = schema.clone();
        // Segment batches hold up to 65,536 rows; operators above work in
        // the session's batch size (slices are zero-copy).
        let batch_size = ctx.session_config().batch_size().max(1);
        let stream = stream
            .map(move |r| {
                let b = r.map_err(|e| DataFusionError::External(Box::new(e)))?;
                conform(&b, &out_schema)
            })
            .flat_map(move |r| {
                let parts: Vec<DfResult<RecordBatch>> = match r {
                    Ok(b) if b.num_rows() > batch_size => (0..b.num_rows())
                        .step_by(batch_size)
                        .map(|o| Ok(b.slice(o, batch_size.min(b.num_rows() - o))))
                        .collect(),
                    r => vec![r],
                };
                futures::stream::iter(parts)
            });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }
}

/// `b` as the planned columns, by name: the table may have gained columns
/// since planning. A column whose type was widened meanwhile is cast back; a
/// value that no longer fits the planned type is an error, not NULL.
fn conform(b: &RecordBatch, out_schema: &SchemaRef) -> DfResult<RecordBatch> {
    let cols = out_schema
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => {
                let opts = datafusion::arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                datafusion::arrow::compute::cast_with_options(c, f.data_type(), &opts).map_err(
                    |e| {
                        DataFusionError::Execution(format!(
                            "column `{}` changed type while the query ran ({e}); run the query again",
                            f.name()
                        ))
                    },
                )
            }
            None => Ok(new_null_array(f.data_type(), b.num_rows())),
        })
        .collect::<DfResult<Vec<_>>>()?;
    let opts =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        out_schema.clone(),
        cols,
        &opts,
    )?)
}
