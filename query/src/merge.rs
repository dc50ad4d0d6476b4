//! Reads at a past system time show each version whole.
//!
//! Storage keeps rectangles: when a transaction at T overrides part of an
//! older version's valid period, the version is stored as pieces that all
//! keep its `_system_from` — the overridden part closed at T, the rest still
//! open. A read at a system time S before T must not show those cuts (they
//! are dates learned only at T), so at such a coordinate the pieces visible
//! at S of one entity with the same `_system_from`, adjacent valid periods
//! and equal values are read as one row: its valid period the union of
//! theirs, its `_system_to` the earliest of theirs (the row is then a true
//! rectangle of the plane: those values held over that valid period from
//! `_system_from` until the first later change to any part of it).
//!
//! The merge runs over the whole scan (pieces of one version may sit in
//! different segments and the live index): the rows visible at S over all of
//! valid time, sorted by (`_id`, `_system_from`, `_valid_from`) — a sort
//! DataFusion can spill — then one streaming pass that merges neighbours,
//! applies the valid-time selector to the merged periods and projects.
//! Reads at the latest system time (where every visible piece is open and
//! pieces of one version are never neighbours) and system-time ranges / ALL
//! (which show the decomposition) do not merge.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{filter_record_batch, interleave};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, LexRequirement, OrderingRequirements, PhysicalExpr,
    PhysicalSortExpr, PhysicalSortRequirement,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use strata_storage::schema::{ID, SYSTEM_FROM, SYSTEM_TO, VALID_FROM, VALID_TO};
use strata_storage::{Coordinate, Micros, TimeSelector, OPEN};

/// Does a read at `coord` merge pieces? Only AS OF a system time before
/// `latest` (the last committed transaction, or an open transaction's
/// provisional time).
pub fn needed(coord: &Coordinate, latest: Micros) -> bool {
    matches!(coord.system, TimeSelector::AsOf(s) if s < latest)
}

/// The coordinate to scan for a merged read: the same system time, all of
/// valid time (the selector applies to the merged periods).
pub fn scan_coordinate(coord: &Coordinate) -> Coordinate {
    Coordinate {
        system: coord.system,
        valid: TimeSelector::All,
    }
}

/// `input` (every column of the table, rows visible at S over all valid
/// time) sorted and merged; the output has `projection`'s columns. Pieces
/// merge only within one entity, so with `partitions` > 1 the rows are
/// hash-partitioned by `_id` and each partition sorted and merged apart.
pub fn plan(
    input: Arc<dyn ExecutionPlan>,
    valid: TimeSelector,
    projection: Option<&Vec<usize>>,
    partitions: usize,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let partitions = partitions.max(1);
    let schema = input.schema();
    let key = |name: &str| -> DfResult<PhysicalSortExpr> {
        let i = schema.index_of(name)?;
        Ok(PhysicalSortExpr::new_default(
            Arc::new(Column::new(name, i)) as Arc<dyn PhysicalExpr>,
        ))
    };
    let ordering = LexOrdering::new([key(ID)?, key(SYSTEM_FROM)?, key(VALID_FROM)?])
        .ok_or_else(|| DataFusionError::Internal("empty merge ordering".into()))?;
    let id: Arc<dyn PhysicalExpr> = Arc::new(Column::new(ID, schema.index_of(ID)?));
    let input: Arc<dyn ExecutionPlan> = if partitions > 1 {
        Arc::new(RepartitionExec::try_new(
            input,
            Partitioning::Hash(vec![id.clone()], partitions),
        )?)
    } else {
        input
    };
    let sorted =
        Arc::new(SortExec::new(ordering.clone(), input).with_preserve_partitioning(partitions > 1));
    let projection = projection.cloned();
    let out_schema = match &projection {
        Some(p) => Arc::new(schema.project(p)?),
        None => schema.clone(),
    };
    let props = Arc::new(PlanProperties::new(
        EquivalenceProperties::new(out_schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ));
    Ok(Arc::new(MergePiecesExec {
        input: sorted,
        ordering,
        valid,
        projection,
        out_schema,
        props,
        id,
        partitions,
    }))
}

/// Merges the sorted pieces of each version (see the module comment).
#[derive(Debug)]
pub struct MergePiecesExec {
    input: Arc<dyn ExecutionPlan>,
    /// (`_id`, `_system_from`, `_valid_from`): what the input must be sorted by.
    ordering: LexOrdering,
    valid: TimeSelector,
    projection: Option<Vec<usize>>,
    out_schema: SchemaRef,
    props: Arc<PlanProperties>,
    /// `_id` of the input: the partitioning key when `partitions` > 1.
    id: Arc<dyn PhysicalExpr>,
    partitions: usize,
}

impl DisplayAs for MergePiecesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MergePiecesExec: valid={:?}", self.valid)
    }
}

impl ExecutionPlan for MergePiecesExec {
    fn name(&self) -> &'static str {
        "MergePiecesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.partitions > 1 {
            vec![Distribution::KeyPartitioned(vec![self.id.clone()])]
        } else {
            vec![Distribution::SinglePartition]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let req = LexRequirement::new(
            self.ordering
                .iter()
                .cloned()
                .map(PhysicalSortRequirement::from),
        );
        vec![req.map(OrderingRequirements::new)]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "MergePiecesExec takes one input".into(),
            ));
        }
        Ok(Arc::new(MergePiecesExec {
            input: children.swap_remove(0),
            ordering: self.ordering.clone(),
            valid: self.valid,
            projection: self.projection.clone(),
            out_schema: self.out_schema.clone(),
            props: self.props.clone(),
            id: self.id.clone(),
            partitions: self.partitions,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let merger = Merger::new(self.input.schema(), self.valid, self.projection.clone())?;
        let stream = futures::stream::unfold(Some((input, merger)), |state| async move {
            let (mut input, mut m) = state?;
            loop {
                match input.next().await {
                    Some(Ok(b)) => match m.push(&b) {
                        Ok(Some(out)) => return Some((Ok(out), Some((input, m)))),
                        Ok(None) => continue,
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        return match m.finish() {
                            Ok(Some(out)) => Some((Ok(out), None)),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), None)),
                        }
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.out_schema.clone(),
            stream,
        )))
    }
}

/// The version being merged: its first piece, its merged end and `_system_to`.
struct Group {
    key: OwnedRow,
    /// Which batch holds the first piece: 0 = `Merger::start`, 1 = the current one.
    src: usize,
    row: usize,
    vt: Micros,
    st: Micros,
}

/// The streaming merge over rows sorted by (`_id`, `_system_from`, `_valid_from`).
pub struct Merger {
    schema: SchemaRef,
    converter: RowConverter,
    /// Columns that must be equal: `_id`, `_system_from` and the values.
    key_cols: Vec<usize>,
    vf: usize,
    vt: usize,
    st: usize,
    valid: TimeSelector,
    projection: Option<Vec<usize>>,
    open: Option<Group>,
    /// The batch holding the open group's first piece.
    start: Option<RecordBatch>,
}

fn micros(a: &ArrayRef, i: usize, null: Micros) -> Micros {
    let a = a.as_primitive::<TimestampMicrosecondType>();
    if a.is_null(i) {
        null
    } else {
        a.value(i)
    }
}

impl Merger {
    pub fn new(
        schema: SchemaRef,
        valid: TimeSelector,
        projection: Option<Vec<usize>>,
    ) -> DfResult<Merger> {
        let vf = schema.index_of(VALID_FROM)?;
        let vt = schema.index_of(VALID_TO)?;
        let st = schema.index_of(SYSTEM_TO)?;
        let key_cols: Vec<usize> = (0..schema.fields().len())
            .filter(|i| ![vf, vt, st].contains(i))
            .collect();
        let converter = RowConverter::new(
            key_cols
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(Merger {
            schema,
            converter,
            key_cols,
            vf,
            vt,
            st,
            valid,
            projection,
            open: None,
            start: None,
        })
    }

    fn keys(&self, b: &RecordBatch) -> DfResult<Rows> {
        let cols: Vec<ArrayRef> = self.key_cols.iter().map(|&i| b.column(i).clone()).collect();
        Ok(self.converter.convert_columns(&cols)?)
    }

    /// Take one sorted batch; the versions completed so far.
    pub fn push(&mut self, b: &RecordBatch) -> DfResult<Option<RecordBatch>> {
        if b.num_rows() == 0 {
            return Ok(None);
        }
        let rows = self.keys(b)?;
        let (vf, vt, st) = (b.column(self.vf), b.column(self.vt), b.column(self.st));
        let mut done: Vec<(usize, usize, Micros, Micros)> = Vec::new();
        for i in 0..b.num_rows() {
            let row = rows.row(i);
            let from = micros(vf, i, i64::MIN);
            let (to, sys_to) = (micros(vt, i, OPEN), micros(st, i, OPEN));
            if let Some(g) = &mut self.open {
                if g.vt == from && g.vt != OPEN && g.key.row() == row {
                    g.vt = to;
                    g.st = g.st.min(sys_to);
                    continue;
                }
                done.push((g.src, g.row, g.vt, g.st));
            }
            self.open = Some(Group {
                key: row.owned(),
                src: 1,
                row: i,
                vt: to,
                st: sys_to,
            });
        }
        let start = self.start.take();
        let sources: Vec<&RecordBatch> = match &start {
            Some(s) => vec![s, b],
            None => vec![b, b],
        };
        let out = self.build(&sources, &done)?;
        // The open group's first piece stays available for the next batch.
        if let Some(g) = &mut self.open {
            if g.src == 1 {
                g.src = 0;
                self.start = Some(b.clone());
            } else {
                self.start = start;
            }
        }
        Ok(out)
    }

    /// The last version.
    pub fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        let (Some(g), Some(start)) = (self.open.take(), self.start.take()) else {
            return Ok(None);
        };
        self.build(&[&start, &start], &[(0, g.row, g.vt, g.st)])
    }

    /// Rows for `groups` (source batch, row of the first piece, merged
    /// `_valid_to`, merged `_system_to`), filtered by the valid selector.
    fn build(
        &self,
        sources: &[&RecordBatch],
        groups: &[(usize, usize, Micros, Micros)],
    ) -> DfResult<Option<RecordBatch>> {
        if groups.is_empty() {
            return Ok(None);
        }
        let idx: Vec<(usize, usize)> = groups.iter().map(|g| (g.0, g.1)).collect();
        let open = |v: Micros| (v != OPEN).then_some(v);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for c in 0..self.schema.fields().len() {
            let arr: ArrayRef = if c == self.vt {
                Arc::new(
                    groups
                        .iter()
                        .map(|g| open(g.2))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone_opt(timezone(&self.schema, c)),
                )
            } else if c == self.st {
                Arc::new(
                    groups
                        .iter()
                        .map(|g| open(g.3))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone_opt(timezone(&self.schema, c)),
                )
            } else {
                let arrays: Vec<&dyn Array> =
                    sources.iter().map(|s| s.column(c).as_ref()).collect();
                interleave(&arrays, &idx)?
            };
            cols.push(arr);
        }
        let merged = RecordBatch::try_new(self.schema.clone(), cols)?;
        let vf = merged.column(self.vf);
        let keep: BooleanArray = (0..merged.num_rows())
            .map(|i| Some(self.valid.matches(micros(vf, i, i64::MIN), groups[i].2)))
            .collect();
        let kept = filter_record_batch(&merged, &keep)?;
        let out = match &self.projection {
            Some(p) => kept.project(p)?,
            None => kept,
        };
        Ok((out.num_rows() > 0).then_some(out))
    }
}

fn timezone(schema: &SchemaRef, c: usize) -> Option<Arc<str>> {
    match schema.field(c).data_type() {
        datafusion::arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    }
}

/// Merge the rows of one small read (the point-lookup path): `batches` in
/// `schema` (every column), in any order.
pub fn merge_batches(
    schema: SchemaRef,
    batches: &[RecordBatch],
    valid: TimeSelector,
) -> DfResult<Vec<RecordBatch>> {
    use datafusion::arrow::compute::{
        concat_batches, lexsort_to_indices, take_record_batch, SortColumn,
    };
    let all = concat_batches(&schema, batches)?;
    if all.num_rows() == 0 {
        return Ok(vec![]);
    }
    let sort: Vec<SortColumn> = [ID, SYSTEM_FROM, VALID_FROM]
        .iter()
        .map(|n| -> DfResult<SortColumn> {
            Ok(SortColumn {
                values: all.column(schema.index_of(n)?).clone(),
                options: None,
            })
        })
        .collect::<DfResult<_>>()?;
    let order = lexsort_to_indices(&sort, None)?;
    let sorted = take_record_batch(&all, &order)?;
    let mut m = Merger::new(schema, valid, None)?;
    let mut out = Vec::new();
    out.extend(m.push(&sorted)?);
    out.extend(m.finish()?);
    Ok(out)
}
