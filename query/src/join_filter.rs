//! Hash joins filter the scans on their probe side.
//!
//! Once a hash join has built its table, it knows every key the probe side
//! can match (DataFusion fills a [`DynamicFilterPhysicalExpr`] with their
//! bounds and the keys themselves). This rule hands that filter to the
//! Strata scan that produces the probe side's key columns, so rows that
//! cannot match are dropped as they are read, before the aggregates and
//! join builds between the scan and the join work on them. In TPC-H Q17
//! the aggregate over all of `lineitem` then sees only the lineitems of the
//! few parts the query asks about.
//!
//! DataFusion's own pass (`FilterPushdown`) does the same, but in release
//! 55 it follows columns by *name*, and a plan with two columns of one name
//! (a table joined twice) could filter the wrong one
//! (apache/datafusion#25296, #25244): Strata leaves that pass out
//! (crate::session). This rule follows columns by *position* and only
//! through operators where a row removed below provably changes nothing
//! above except what the join would drop anyway: projections of bare
//! columns, filters, repartitions and merges, group-by keys of an
//! aggregate, and the preserved side of another join. Anything else (a
//! limit, a sort with a fetch, a window, a union, a computed key) stops it,
//! and the join then runs as it would without the filter. It is placed
//! only where the nearest boundary above the scan is an aggregate or a
//! lower join's build, not a lower join's probe ([`place`]), and a scan
//! stream stops evaluating a filter that drops few rows (crate::provider).

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinSide, JoinType, Result};
use datafusion::physical_expr::expressions::{lit, Column, DynamicFilterPhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::utils::build_join_schema;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{replace_children_if_necessary, ExecutionPlan, PhysicalExpr};

use crate::provider::StrataScanExec;

/// The physical optimizer rule (last in the list: it needs the final joins
/// and partitioning).
#[derive(Debug, Default)]
pub struct JoinFiltersIntoScans;

impl PhysicalOptimizerRule for JoinFiltersIntoScans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !config.optimizer.enable_join_dynamic_filter_pushdown {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            // An optimization only: a join it cannot rebuild runs unfiltered.
            match with_probe_filter(join) {
                Ok(Some(j)) => Ok(Transformed::yes(j)),
                Ok(None) | Err(_) => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "JoinFiltersIntoScans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `join` with a dynamic filter over its probe keys, held by the scan that
/// produces them; `None` if there is no such scan or the join's rows would
/// change.
fn with_probe_filter(join: &HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // Only a probe row without a match may be dropped: not where unmatched
    // probe rows are output (right/full outer, right anti) or decide a
    // mark; anti joins and null-aware joins are left alone too, to be safe.
    let probe_rows_needed = matches!(
        join.join_type(),
        JoinType::Right
            | JoinType::Full
            | JoinType::RightAnti
            | JoinType::RightMark
            | JoinType::LeftAnti
            | JoinType::LeftMark
    );
    #[allow(deprecated)]
    let has_filter = join.dynamic_filter_expr().is_some();
    if probe_rows_needed || join.null_aware || has_filter {
        return Ok(None);
    }
    let mut keys = Vec::with_capacity(join.on().len());
    for (_, probe) in join.on() {
        match probe.downcast_ref::<Column>() {
            Some(c) => keys.push(c.index()),
            None => return Ok(None),
        }
    }
    let probe_keys: Vec<Arc<dyn PhysicalExpr>> = join.on().iter().map(|(_, r)| r.clone()).collect();
    let filter = Arc::new(DynamicFilterPhysicalExpr::new(probe_keys, lit(true)));
    let Some(right) = place(join.right(), &keys, &filter, false)? else {
        return Ok(None);
    };
    let rebuilt = join
        .builder()
        .with_new_children(vec![join.left().clone(), right])?
        .build()?
        .with_dynamic_filter_expr(filter)?;
    Ok(Some(Arc::new(rebuilt)))
}

/// `plan` with `filter` given to the scan that produces its columns `cols`
/// (the filter's children, in order); `None` if the columns cannot be
/// followed to one scan through operators that keep the answer unchanged,
/// or if the nearest aggregate or join passed on the way down is not an
/// aggregate or a join's build side (`worth`). Only those cost more per
/// row than the filter: with just a repartition between (or nothing), the
/// filter repeats the join's own probe per row, and on TPC-H SF 1 Q3 and
/// Q18 ran 1.2-1.3x slower so (the filter of a partitioned join hashes
/// every row to route it to its partition's table).
fn place(
    plan: &Arc<dyn ExecutionPlan>,
    cols: &[usize],
    filter: &Arc<DynamicFilterPhysicalExpr>,
    worth: bool,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // Fewer rows below an operator with a row limit changes which rows it
    // keeps.
    if plan.fetch().is_some() {
        return Ok(None);
    }
    let one_child =
        |child: &Arc<dyn ExecutionPlan>, mapped: Option<Vec<usize>>, costly: bool| -> Result<_> {
            let Some(mapped) = mapped else {
                return Ok(None);
            };
            Ok(match place(child, &mapped, filter, worth || costly)? {
                Some(c) => Some(replace_children_if_necessary(plan.clone(), vec![c])?),
                None => None,
            })
        };
    if let Some(scan) = plan.downcast_ref::<StrataScanExec>() {
        if !worth {
            return Ok(None);
        }
        let schema = scan.schema();
        let children: Vec<Arc<dyn PhysicalExpr>> = cols
            .iter()
            .map(|&i| Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let remapped = (filter.clone() as Arc<dyn PhysicalExpr>).with_new_children(children)?;
        return Ok(Some(Arc::new(scan.with_dynamic_filter(remapped))));
    }
    if plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
    {
        return one_child(plan.children()[0], Some(cols.to_vec()), false);
    }
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        let exprs = p.expr();
        let mapped = cols
            .iter()
            .map(|&i| {
                exprs
                    .get(i)?
                    .expr
                    .downcast_ref::<Column>()
                    .map(|c| c.index())
            })
            .collect();
        return one_child(p.input(), mapped, false);
    }
    if let Some(f) = plan.downcast_ref::<FilterExec>() {
        let mapped = match f.projection() {
            Some(proj) => cols.iter().map(|&i| proj.get(i).copied()).collect(),
            None => Some(cols.to_vec()),
        };
        return one_child(f.input(), mapped, false);
    }
    if let Some(a) = plan.downcast_ref::<AggregateExec>() {
        // Rows of a group the join drops anyway: only grouping columns,
        // and not with grouping sets (their NULLs are not the column's).
        let g = a.group_expr();
        if !g.is_single() || g.expr().is_empty() {
            return Ok(None);
        }
        let mapped = cols
            .iter()
            .map(|&i| {
                g.expr()
                    .get(i)?
                    .0
                    .downcast_ref::<Column>()
                    .map(|c| c.index())
            })
            .collect();
        return one_child(a.input(), mapped, true);
    }
    if let Some(j) = plan.downcast_ref::<HashJoinExec>() {
        return through_join(j, cols, filter);
    }
    Ok(None)
}

/// [`place`] through a hash join below: all of `cols` must come from one
/// side, and a side whose every row reaches the output only through rows
/// that carry its values (the preserved side). Into the build side the
/// filter is worth placing (a smaller hash table); into the probe side only
/// if something costly lies further down, for the lower join probes every
/// row of its probe side with its own hash table anyway, and an upper
/// join's filter evaluated first only adds a second probe per row (TPC-H
/// Q8 ran 4x slower so, its `lineitem` filtered by `orders`' keys right
/// before the `part` join that keeps 0.7% of it).
fn through_join(
    j: &HashJoinExec,
    cols: &[usize],
    filter: &Arc<DynamicFilterPhysicalExpr>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let (left_ok, right_ok) = match j.join_type() {
        JoinType::Inner => (true, true),
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
            (true, false)
        }
        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
            (false, true)
        }
        JoinType::Full => (false, false),
    };
    let (_, indices) = build_join_schema(&j.left().schema(), &j.right().schema(), j.join_type());
    let indices: Vec<_> = match &j.projection {
        Some(p) => p.iter().map(|&i| indices[i].clone()).collect(),
        None => indices,
    };
    let mut side = None;
    let mut mapped = Vec::with_capacity(cols.len());
    for &c in cols {
        let Some(ci) = indices.get(c) else {
            return Ok(None);
        };
        if ci.side == JoinSide::None || side.is_some_and(|s| s != ci.side) {
            return Ok(None);
        }
        side = Some(ci.side);
        mapped.push(ci.index);
    }
    let (left, right) = (j.left().clone(), j.right().clone());
    let children = match side {
        Some(JoinSide::Left) if left_ok => match place(&left, &mapped, filter, true)? {
            Some(l) => vec![l, right],
            None => return Ok(None),
        },
        Some(JoinSide::Right) if right_ok => match place(&right, &mapped, filter, false)? {
            Some(r) => vec![left, r],
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    // The builder keeps the lower join's own dynamic filter.
    Ok(Some(j.builder().with_new_children(children)?.build_exec()?))
}
