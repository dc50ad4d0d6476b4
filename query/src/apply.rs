//! Subqueries DataFusion cannot turn into joins, evaluated once per outer row.
//!
//! DataFusion 55 decorrelates a subquery only when its correlation can be
//! pulled up into a join: equalities with the outer row, under an
//! aggregate. Others — `(SELECT count(*) FROM t AS x WHERE x.b < t.b)`, a
//! condition on the outer row alone, an `EXISTS` inside `OR` or `CASE` —
//! are left in the plan, and its physical planner refuses them ("Physical
//! plan does not support logical expression ScalarSubquery").
//!
//! Strata's query planner ([`StrataQueryPlanner`]) finds the subqueries left
//! in a `Projection` or `Filter` just before physical planning and puts an
//! [`ApplyNode`] under that node: for every row of its input it replaces the
//! subquery's outer references by the row's values, runs the now
//! uncorrelated subquery (planned and optimized like any query), and appends
//! the result as a column the `Projection` or `Filter` reads instead of the
//! subquery. This is the "apply" (or nested-loop) evaluation of SQL's
//! definition, so it answers exactly what the standard asks for:
//!
//! - a scalar subquery gives NULL over no rows, its value over one, and the
//!   error PostgreSQL raises over more than one (SQLSTATE 21000);
//! - `EXISTS` is true when the subquery has a row;
//! - `x IN (subquery)` follows SQL's three-valued logic: true if a value
//!   equals `x`, else NULL if `x` or a value is NULL (and there are values),
//!   else false.
//!
//! Results are cached per distinct tuple of outer values within a stream,
//! so a subquery runs once per distinct correlation, not once per row. It is
//! still a loop: a fallback for shapes that have no join plan, not a fast
//! path.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, DataFusionError, Result, ScalarValue};
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, Filter, LogicalPlan, LogicalPlanBuilder, Projection, Subquery,
    UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    collect, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PhysicalExpr,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

/// The prefix of the columns an [`ApplyNode`] appends.
const COLUMN_PREFIX: &str = "__strata_apply_";

/// Subquery results kept per stream before the cache starts over.
const CACHE_ENTRIES: usize = 16_384;

/// PostgreSQL's words (and SQLSTATE 21000, see crate::error) for a scalar
/// subquery that gives more than one row.
pub const MORE_THAN_ONE_ROW: &str =
    "more than one row returned by a subquery used as an expression";

/// DataFusion's physical planner, with the subqueries it cannot plan moved
/// into [`ApplyNode`]s first.
#[derive(Debug, Default)]
pub struct StrataQueryPlanner;

#[async_trait]
impl QueryPlanner for StrataQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = with_apply_nodes(logical_plan.clone())?;
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ApplyPlanner)])
            .create_physical_plan(&plan, session)
            .await
    }
}

/// A subquery this planner must evaluate. An uncorrelated scalar subquery
/// is not one: DataFusion's own planner runs it once before the plan
/// (`ScalarSubqueryExec`) and reads its value. It also collects those from
/// an [`ApplyNode`]'s expressions, so one taken here ran twice: TPC-H Q15
/// and Q11 read `lineitem` or `partsupp` once more than their plans show.
fn is_subquery(e: &Expr) -> bool {
    match e {
        Expr::ScalarSubquery(sq) => !sq.outer_ref_columns.is_empty(),
        Expr::Exists(_) | Expr::InSubquery(_) => true,
        _ => false,
    }
}

fn holds_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(is_subquery(e))).unwrap_or(false)
}

/// Rewrites every `Projection` and `Filter` whose expressions still hold a
/// subquery to read it from an [`ApplyNode`] below it.
fn with_apply_nodes(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut next = 0usize;
    plan.transform_up(|node| match node {
        LogicalPlan::Projection(p) if p.expr.iter().any(holds_subquery) => {
            let mut subs = Vec::new();
            let exprs = p
                .expr
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let new = take_subqueries(e.clone(), &mut subs, &mut next)?;
                    if new == *e {
                        return Ok(new);
                    }
                    // Keep the output column's qualifier and name (one
                    // alias, not an alias of the user's alias).
                    let (q, f) = p.schema.qualified_field(i);
                    let base = match new {
                        Expr::Alias(a) => *a.expr,
                        e => e,
                    };
                    Ok(base.alias_qualified(q.cloned(), f.name()))
                })
                .collect::<Result<Vec<_>>>()?;
            let apply = ApplyNode::try_new(p.input.as_ref().clone(), subs)?;
            let input = LogicalPlan::Extension(Extension {
                node: Arc::new(apply),
            });
            Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(exprs, Arc::new(input))?,
            )))
        }
        LogicalPlan::Filter(f) if holds_subquery(&f.predicate) => {
            let mut subs = Vec::new();
            let predicate = take_subqueries(f.predicate.clone(), &mut subs, &mut next)?;
            let keep: Vec<Expr> = f
                .input
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            let apply = ApplyNode::try_new(f.input.as_ref().clone(), subs)?;
            let input = LogicalPlan::Extension(Extension {
                node: Arc::new(apply),
            });
            let filtered = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(input))?);
            Ok(Transformed::yes(LogicalPlan::Projection(
                Projection::try_new(keep, Arc::new(filtered))?,
            )))
        }
        other => Ok(Transformed::no(other)),
    })
    .data()
}

/// Replaces each outermost subquery in `e` by a column `__strata_apply_N`,
/// collecting the subqueries in order.
fn take_subqueries(e: Expr, subs: &mut Vec<(String, Expr)>, next: &mut usize) -> Result<Expr> {
    e.transform_down(|e| {
        if !is_subquery(&e) {
            return Ok(Transformed::no(e));
        }
        let name = format!("{COLUMN_PREFIX}{next}");
        *next += 1;
        subs.push((name.clone(), e));
        Ok(Transformed::new(
            Expr::Column(Column::from_name(name)),
            true,
            TreeNodeRecursion::Jump,
        ))
    })
    .data()
}

/// Its input's rows, each with the value of every subquery for that row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApplyNode {
    input: LogicalPlan,
    /// (column name, the subquery expression).
    subqueries: Vec<(String, Expr)>,
    schema: DFSchemaRef,
}

impl ApplyNode {
    fn try_new(input: LogicalPlan, subqueries: Vec<(String, Expr)>) -> Result<Self> {
        let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> = input
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .collect();
        for (name, e) in &subqueries {
            let ty = match e {
                Expr::ScalarSubquery(sq) => sq.subquery.schema().field(0).data_type().clone(),
                _ => DataType::Boolean,
            };
            fields.push((None, Arc::new(Field::new(name, ty, true))));
        }
        let schema = DFSchema::new_with_metadata(fields, input.schema().metadata().clone())?;
        Ok(Self {
            input,
            subqueries,
            schema: Arc::new(schema),
        })
    }
}

impl PartialOrd for ApplyNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.input.partial_cmp(&other.input) {
            Some(Ordering::Equal) => self.subqueries.partial_cmp(&other.subqueries),
            o => o,
        }
    }
}

impl UserDefinedLogicalNodeCore for ApplyNode {
    fn name(&self) -> &str {
        "StrataApply"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.subqueries.iter().map(|(_, e)| e.clone()).collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StrataApply: per row of the input, ")?;
        for (i, (name, e)) in self.subqueries.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{name} = {e}")?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let names = self.subqueries.iter().map(|(n, _)| n.clone());
        ApplyNode::try_new(inputs.swap_remove(0), names.zip(exprs).collect())
    }
}

/// Plans [`ApplyNode`]s as [`ApplyExec`]s.
#[derive(Debug)]
struct ApplyPlanner;

#[async_trait]
impl ExtensionPlanner for ApplyPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<ApplyNode>() else {
            return Ok(None);
        };
        let state = session
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("apply: not a SessionState".into()))?
            .clone();
        let input_schema = node.input.schema();
        let mut subs = Vec::with_capacity(node.subqueries.len());
        for (_, e) in &node.subqueries {
            let (subquery, kind) = match e {
                Expr::ScalarSubquery(sq) => (sq, Kind::Scalar),
                Expr::Exists(ex) => (
                    &ex.subquery,
                    Kind::Exists {
                        negated: ex.negated,
                    },
                ),
                Expr::InSubquery(ins) => (
                    &ins.subquery,
                    Kind::In {
                        expr: planner.create_physical_expr(
                            &ins.expr,
                            input_schema,
                            session,
                            planning_ctx,
                        )?,
                        negated: ins.negated,
                    },
                ),
                other => {
                    return Err(DataFusionError::Internal(format!(
                        "apply: not a subquery: {other}"
                    )))
                }
            };
            subs.push(Sub::new(subquery, kind, input_schema)?);
        }
        let input = Arc::clone(&physical_inputs[0]);
        let schema: SchemaRef = Arc::new(node.schema.as_arrow().clone());
        let props = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Some(Arc::new(ApplyExec {
            input,
            subs: Arc::new(subs),
            state: Arc::new(state),
            schema,
            props: Arc::new(props),
        })))
    }
}

#[derive(Debug)]
enum Kind {
    Scalar,
    Exists {
        negated: bool,
    },
    In {
        expr: Arc<dyn PhysicalExpr>,
        negated: bool,
    },
}

/// One subquery of an [`ApplyExec`].
#[derive(Debug)]
struct Sub {
    kind: Kind,
    plan: LogicalPlan,
    /// The outer columns it reads: (column, index in the input).
    refs: Vec<(Column, usize)>,
    /// Its value's type (scalar subqueries).
    ty: DataType,
}

impl Sub {
    fn new(sq: &Subquery, kind: Kind, input: &DFSchema) -> Result<Self> {
        let mut refs: Vec<(Column, usize)> = Vec::new();
        collect_outer_refs(&sq.subquery, &mut |c: &Column| {
            if refs.iter().any(|(r, _)| r == c) {
                return;
            }
            if let Ok(i) = input.index_of_column(c) {
                refs.push((c.clone(), i));
            }
        })?;
        let ty = sq.subquery.schema().field(0).data_type().clone();
        Ok(Self {
            kind,
            plan: sq.subquery.as_ref().clone(),
            refs,
            ty,
        })
    }
}

/// Calls `f` with every outer reference in `plan`, nested subqueries included.
fn collect_outer_refs(plan: &LogicalPlan, f: &mut dyn FnMut(&Column)) -> Result<()> {
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::OuterReferenceColumn(_, c) = e {
                    f(c);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

/// `plan` with the outer references in `values` replaced by literals.
fn substitute(plan: &LogicalPlan, values: &HashMap<Column, ScalarValue>) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up(|node| {
            node.map_expressions(|e| e.transform_up(|e| substitute_expr(e, values)))
        })
        .data()
}

fn substitute_subquery(sq: Subquery, values: &HashMap<Column, ScalarValue>) -> Result<Subquery> {
    let plan = substitute(&sq.subquery, values)?;
    let outer_ref_columns = sq
        .outer_ref_columns
        .into_iter()
        .filter(|e| !matches!(e, Expr::OuterReferenceColumn(_, c) if values.contains_key(c)))
        .collect();
    Ok(Subquery {
        subquery: Arc::new(plan),
        outer_ref_columns,
        spans: sq.spans,
    })
}

fn substitute_expr(e: Expr, values: &HashMap<Column, ScalarValue>) -> Result<Transformed<Expr>> {
    Ok(match e {
        Expr::OuterReferenceColumn(_, ref c) if values.contains_key(c) => {
            Transformed::yes(Expr::Literal(values[c].clone(), None))
        }
        Expr::ScalarSubquery(sq) => {
            Transformed::yes(Expr::ScalarSubquery(substitute_subquery(sq, values)?))
        }
        Expr::Exists(mut ex) => {
            ex.subquery = substitute_subquery(ex.subquery, values)?;
            Transformed::yes(Expr::Exists(ex))
        }
        Expr::InSubquery(mut ins) => {
            ins.subquery = substitute_subquery(ins.subquery, values)?;
            Transformed::yes(Expr::InSubquery(ins))
        }
        other => Transformed::no(other),
    })
}

/// What a subquery gave for one tuple of outer values.
#[derive(Clone)]
enum Outcome {
    Scalar(ScalarValue),
    Exists(bool),
    /// The values of an IN subquery, and whether one of them is NULL.
    Values(Arc<Vec<ScalarValue>>, bool),
}

/// Runs `sub` for the outer values `key`.
async fn run(sub: &Sub, key: &[ScalarValue], state: &SessionState) -> Result<Outcome> {
    let values: HashMap<Column, ScalarValue> = sub
        .refs
        .iter()
        .zip(key)
        .map(|((c, _), v)| (c.clone(), v.clone()))
        .collect();
    let plan = substitute(&sub.plan, &values)?;
    // A scalar subquery needs two rows to know it has too many; EXISTS one.
    let fetch = match sub.kind {
        Kind::Scalar => Some(2),
        Kind::Exists { .. } => Some(1),
        Kind::In { .. } => None,
    };
    let plan = match fetch {
        Some(n) => LogicalPlanBuilder::from(plan).limit(0, Some(n))?.build()?,
        None => plan,
    };
    let plan = state.optimize(&plan)?;
    let physical = state
        .query_planner()
        .create_physical_plan(&plan, state)
        .await?;
    let batches = collect(physical, state.task_ctx()).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    Ok(match sub.kind {
        Kind::Scalar => match rows {
            0 => Outcome::Scalar(ScalarValue::try_from(&sub.ty)?),
            1 => {
                let b = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
                Outcome::Scalar(ScalarValue::try_from_array(b.column(0), 0)?)
            }
            _ => return Err(DataFusionError::Execution(MORE_THAN_ONE_ROW.into())),
        },
        Kind::Exists { .. } => Outcome::Exists(rows > 0),
        Kind::In { .. } => {
            let mut vals = Vec::with_capacity(rows);
            let mut null = false;
            for b in &batches {
                for i in 0..b.num_rows() {
                    let v = ScalarValue::try_from_array(b.column(0), i)?;
                    if v.is_null() {
                        null = true;
                    } else {
                        vals.push(v);
                    }
                }
            }
            Outcome::Values(Arc::new(vals), null)
        }
    })
}

/// Physical form of [`ApplyNode`].
pub struct ApplyExec {
    input: Arc<dyn ExecutionPlan>,
    subs: Arc<Vec<Sub>>,
    state: Arc<SessionState>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl fmt::Debug for ApplyExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyExec")
            .field("subqueries", &self.subs.len())
            .finish()
    }
}

impl DisplayAs for ApplyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StrataApplyExec: subqueries={} (run per distinct outer row)",
            self.subs.len()
        )
    }
}

impl ExecutionPlan for ApplyExec {
    fn name(&self) -> &str {
        "StrataApplyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut r = TreeNodeRecursion::Continue;
        for sub in self.subs.iter() {
            if let Kind::In { expr, .. } = &sub.kind {
                r = f(expr)?;
                if r == TreeNodeRecursion::Stop {
                    break;
                }
            }
        }
        Ok(r)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        let props = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&self.schema)),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(ApplyExec {
            input,
            subs: Arc::clone(&self.subs),
            state: Arc::clone(&self.state),
            schema: Arc::clone(&self.schema),
            props: Arc::new(props),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let subs = Arc::clone(&self.subs);
        let state = Arc::clone(&self.state);
        let schema = Arc::clone(&self.schema);
        let out_schema = Arc::clone(&schema);
        let caches: Vec<HashMap<Key, Outcome>> = subs.iter().map(|_| HashMap::new()).collect();
        let stream = futures::stream::unfold((input, caches), move |(mut input, mut caches)| {
            let subs = Arc::clone(&subs);
            let state = Arc::clone(&state);
            let schema = Arc::clone(&schema);
            async move {
                let batch = match input.next().await? {
                    Ok(b) => b,
                    Err(e) => return Some((Err(e), (input, caches))),
                };
                let out = apply_batch(&batch, &subs, &mut caches, &state, &schema).await;
                Some((out, (input, caches)))
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)))
    }
}

/// A tuple of outer values, hashable.
#[derive(Clone, PartialEq, Eq)]
struct Key(Vec<ScalarValue>);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

async fn apply_batch(
    batch: &RecordBatch,
    subs: &[Sub],
    caches: &mut [HashMap<Key, Outcome>],
    state: &SessionState,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (sub, cache) in subs.iter().zip(caches.iter_mut()) {
        let mut outcomes = Vec::with_capacity(n);
        for row in 0..n {
            let key = Key(sub
                .refs
                .iter()
                .map(|(_, i)| ScalarValue::try_from_array(batch.column(*i), row))
                .collect::<Result<Vec<_>>>()?);
            let outcome = match cache.get(&key) {
                Some(o) => o.clone(),
                None => {
                    let o = run(sub, &key.0, state).await?;
                    // Bounded: an outer input of many distinct rows keeps
                    // only the latest results (memory, not correctness).
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(key, o.clone());
                    o
                }
            };
            outcomes.push(outcome);
        }
        let column: ArrayRef = match &sub.kind {
            Kind::Scalar => {
                let values = outcomes.into_iter().map(|o| match o {
                    Outcome::Scalar(v) => v,
                    _ => unreachable!("a scalar subquery's outcome"),
                });
                if n == 0 {
                    datafusion::arrow::array::new_empty_array(&sub.ty)
                } else {
                    ScalarValue::iter_to_array(values)?
                }
            }
            Kind::Exists { negated } => Arc::new(
                outcomes
                    .into_iter()
                    .map(|o| match o {
                        Outcome::Exists(e) => Some(e != *negated),
                        _ => unreachable!("an EXISTS subquery's outcome"),
                    })
                    .collect::<BooleanArray>(),
            ),
            Kind::In { expr, negated } => {
                let left = expr.evaluate(batch)?.into_array(n)?;
                let mut out = Vec::with_capacity(n);
                for (row, o) in outcomes.into_iter().enumerate() {
                    let Outcome::Values(vals, has_null) = o else {
                        unreachable!("an IN subquery's outcome")
                    };
                    let mut x = ScalarValue::try_from_array(&left, row)?;
                    // Type coercion gave both sides one type; cast if not.
                    if let Some(v) = vals.first() {
                        if v.data_type() != x.data_type() && !x.is_null() {
                            x = x.cast_to(&v.data_type())?;
                        }
                    }
                    out.push(in_values(&x, &vals, has_null).map(|b| b != *negated));
                }
                Arc::new(out.into_iter().collect::<BooleanArray>())
            }
        };
        // The subquery's value may differ from the declared type only in
        // nullability or dictionary encoding; cast to be exact.
        let want = schema.field(columns.len()).data_type();
        let column = if column.data_type() == want {
            column
        } else {
            datafusion::arrow::compute::cast(&column, want)?
        };
        debug_assert_eq!(column.len(), n);
        columns.push(column);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// `x IN (values)` with SQL's NULLs: `has_null` says a value was NULL.
fn in_values(x: &ScalarValue, values: &[ScalarValue], has_null: bool) -> Option<bool> {
    if values.is_empty() && !has_null {
        return Some(false);
    }
    if x.is_null() {
        return None;
    }
    if values.iter().any(|v| v == x) {
        return Some(true);
    }
    if has_null {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_follows_three_valued_logic() {
        let one = ScalarValue::Int64(Some(1));
        let two = ScalarValue::Int64(Some(2));
        let null = ScalarValue::Int64(None);
        assert_eq!(in_values(&one, &[one.clone()], false), Some(true));
        assert_eq!(in_values(&one, &[two.clone()], false), Some(false));
        assert_eq!(in_values(&one, &[two.clone()], true), None);
        assert_eq!(in_values(&one, &[one.clone()], true), Some(true));
        assert_eq!(in_values(&null, &[], false), Some(false));
        assert_eq!(in_values(&null, &[two], false), None);
        assert_eq!(in_values(&null, &[], true), None);
    }
}
