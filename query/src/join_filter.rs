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
//! and the join then runs as it would without the filter. The join's own
//! filter is placed only where the nearest boundary above the scan is an
//! aggregate or a lower join's build, not a lower join's probe
//! ([`place`]); elsewhere, for a single integer key, the scan gets a
//! bitmap of the build keys that Strata collects itself
//! (crate::key_sink), one bit test per row. A scan stream stops
//! evaluating a filter that drops few rows (crate::provider).
//! Through an inner join the filter also follows the join's equal keys to
//! the other side ([`equal_keys`]): in TPC-H Q5 the nations of the region
//! asked about filter `customer` (`c_nationkey = s_nationkey`), not only
//! `supplier`.

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

use std::cell::Cell;

use crate::key_sink::{Bits, CollectKeysExec, KeyBitmap, KeySink};
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
    let filters = Filters {
        dynamic: Arc::new(DynamicFilterPhysicalExpr::new(probe_keys, lit(true))),
        sink: build_key(join).map(|_| {
            KeySink::new(
                datafusion::physical_plan::ExecutionPlanProperties::output_partitioning(
                    join.left(),
                )
                .partition_count(),
            )
        }),
        sink_only: false,
        used_dynamic: Cell::new(false),
        used_sink: Cell::new(false),
    };
    let Some(right) = place(join.right(), &keys, &filters, false)? else {
        return with_one_key_bitmap(join, &keys);
    };
    let mut left = join.left().clone();
    if let (true, Some(sink), Some(key)) = (filters.used_sink.get(), &filters.sink, build_key(join))
    {
        left = Arc::new(CollectKeysExec::new(left, key, sink.clone()));
    }
    let rebuilt = join
        .builder()
        .with_new_children(vec![left, right])?
        .build()?;
    let rebuilt = match filters.used_dynamic.get() {
        true => rebuilt.with_dynamic_filter_expr(filters.dynamic)?,
        false => rebuilt,
    };
    Ok(Some(Arc::new(rebuilt)))
}

/// A join of several keys whose probe keys cannot all be followed to one
/// scan (one is an aggregate's result: TPC-H Q2's `(p_partkey,
/// ps_supplycost) = (ps_partkey, min(ps_supplycost))`): the scan that
/// produces one of them, an integer key compared with `=`, gets a bitmap
/// of the build side's values of that key alone. A row whose key is not
/// among them matches no build row, whatever its other keys. In Q2 the
/// subquery's `partsupp` then keeps the rows of the 747 parts the outer
/// query wants instead of every part's, before its aggregate.
fn with_one_key_bitmap(
    join: &HashJoinExec,
    probe_keys: &[usize],
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    use datafusion::common::NullEquality;
    if join.on().len() < 2 || join.null_equality() != NullEquality::NullEqualsNothing {
        return Ok(None);
    }
    let parts =
        datafusion::physical_plan::ExecutionPlanProperties::output_partitioning(join.left())
            .partition_count();
    for (k, (l, _)) in join.on().iter().enumerate() {
        let Some(l) = l.downcast_ref::<Column>() else {
            continue;
        };
        let lt = join.left().schema().field(l.index()).data_type().clone();
        let rt = join
            .right()
            .schema()
            .field(probe_keys[k])
            .data_type()
            .clone();
        if lt != rt || !crate::key_sink::bitmap_type(&lt) {
            continue;
        }
        let filters = Filters {
            dynamic: Arc::new(DynamicFilterPhysicalExpr::new(vec![], lit(true))),
            sink: Some(KeySink::new(parts)),
            sink_only: true,
            used_dynamic: Cell::new(false),
            used_sink: Cell::new(false),
        };
        let Some(right) = place(join.right(), &probe_keys[k..=k], &filters, false)? else {
            continue;
        };
        let sink = filters.sink.expect("made above");
        let left = Arc::new(CollectKeysExec::new(join.left().clone(), l.index(), sink));
        let rebuilt = join
            .builder()
            .with_new_children(vec![left, right])?
            .build()?;
        return Ok(Some(Arc::new(rebuilt)));
    }
    Ok(None)
}

/// The filters one join hands down: its dynamic filter (for scans where
/// any form of it pays), and the sink of its build keys, when there is a
/// single integer key (for the scan right under its probe side). With
/// `sink_only`, the dynamic filter is not the one of the keys followed
/// and only the sink is placed.
struct Filters {
    dynamic: Arc<DynamicFilterPhysicalExpr>,
    sink: Option<Arc<KeySink>>,
    sink_only: bool,
    used_dynamic: Cell<bool>,
    used_sink: Cell<bool>,
}

/// The column of `join`'s build side whose values a [`KeySink`] can
/// collect: the one key, a plain column of an integer type, compared with
/// `=` (NULLs never match).
fn build_key(join: &HashJoinExec) -> Option<usize> {
    use datafusion::common::NullEquality;
    let [(l, r)] = join.on() else {
        return None;
    };
    let l = l.downcast_ref::<Column>()?;
    let r = r.downcast_ref::<Column>()?;
    let lt = join.left().schema().field(l.index()).data_type().clone();
    let rt = join.right().schema().field(r.index()).data_type().clone();
    (join.null_equality() == NullEquality::NullEqualsNothing
        && lt == rt
        && crate::key_sink::bitmap_type(&lt))
    .then_some(l.index())
}

/// `plan` with `filter` given to the scan that produces its columns `cols`
/// (the filter's children, in order); `None` if the columns cannot be
/// followed to one scan through operators that keep the answer unchanged,
/// or if the nearest aggregate or join passed on the way down is not an
/// aggregate or a join's build side (`worth`) and the key cannot be a
/// bitmap. Only those cost more per row than the join's own filter: with
/// just a repartition between (or nothing), it repeats the join's probe
/// per row, and on TPC-H SF 1 Q3 and Q18 ran 1.2-1.3x slower so (the
/// filter of a partitioned join hashes every row to route it to its
/// partition's table). There the scan gets the join's key sink instead.
fn place(
    plan: &Arc<dyn ExecutionPlan>,
    cols: &[usize],
    filter: &Filters,
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
        let schema = scan.schema();
        let children: Vec<Arc<dyn PhysicalExpr>> = cols
            .iter()
            .map(|&i| Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        if worth && !filter.sink_only {
            let remapped =
                (filter.dynamic.clone() as Arc<dyn PhysicalExpr>).with_new_children(children)?;
            filter.used_dynamic.set(true);
            return Ok(Some(Arc::new(scan.with_dynamic_filter(remapped))));
        }
        // Right above its join's probe input only a bitmap of the keys is
        // cheaper than the join's own probe (crate::key_sink).
        let Some(sink) = &filter.sink else {
            return Ok(None);
        };
        if cols.len() != 1 || !crate::key_sink::bitmap_type(schema.field(cols[0]).data_type()) {
            return Ok(None);
        }
        let key = children.into_iter().next().expect("one key");
        filter.used_sink.set(true);
        return Ok(Some(Arc::new(scan.with_dynamic_filter(Arc::new(
            KeyBitmap::of_sink(key, sink.clone()),
        )))));
    }
    if plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
        || plan.downcast_ref::<CollectKeysExec>().is_some()
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
    filter: &Filters,
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
    let Some(side) = side else {
        return Ok(None);
    };
    let (mut left, mut right) = (j.left().clone(), j.right().clone());
    let mut placed = false;
    match side {
        JoinSide::Left if left_ok => {
            if let Some(l) = place(&left, &mapped, filter, true)? {
                (left, placed) = (l, true);
            }
        }
        JoinSide::Right if right_ok => {
            if let Some(r) = place(&right, &mapped, filter, false)? {
                (right, placed) = (r, true);
            }
        }
        _ => {}
    }
    // An inner join's output rows carry equal values in each pair of key
    // columns, so a filter on one side's keys holds for the other side's
    // equal keys too: TPC-H Q5's `s_nationkey IN (the region's nations)`
    // also filters `customer` through `c_nationkey = s_nationkey`.
    if let Some(other) = equal_keys(j, side, &mapped) {
        match side {
            JoinSide::Left => {
                if let Some(r) = place(&right, &other, filter, false)? {
                    (right, placed) = (r, true);
                }
            }
            _ => {
                if let Some(l) = place(&left, &other, filter, true)? {
                    (left, placed) = (l, true);
                }
            }
        }
    }
    if !placed {
        return Ok(None);
    }
    // The builder keeps the lower join's own dynamic filter.
    Ok(Some(
        j.builder()
            .with_new_children(vec![left, right])?
            .build_exec()?,
    ))
}

/// For an inner join with plain equality of non-null keys, the columns of
/// the side opposite `side` that are join keys equal to `cols` (columns of
/// `side`'s input), of the same types; `None` if any of `cols` has no such
/// partner.
fn equal_keys(j: &HashJoinExec, side: JoinSide, cols: &[usize]) -> Option<Vec<usize>> {
    use datafusion::common::NullEquality;
    if *j.join_type() != JoinType::Inner || j.null_equality() != NullEquality::NullEqualsNothing {
        return None;
    }
    let (ls, rs) = (j.left().schema(), j.right().schema());
    cols.iter()
        .map(|&c| {
            j.on().iter().find_map(|(l, r)| {
                let l = l.downcast_ref::<Column>()?;
                let r = r.downcast_ref::<Column>()?;
                if ls.field(l.index()).data_type() != rs.field(r.index()).data_type() {
                    return None;
                }
                match side {
                    JoinSide::Left if l.index() == c => Some(r.index()),
                    JoinSide::Right if r.index() == c => Some(l.index()),
                    _ => None,
                }
            })
        })
        .collect()
}

/// The form of a join's filter a scan evaluates: the same rows kept or
/// more, never fewer (the join still checks every row it gets), at less
/// cost per row.
///
/// A partitioned join fills its filter as `CASE hash(key) % n WHEN 0 THEN
/// F0 WHEN 1 THEN F1 … ELSE false END`, `Fi` the keys of partition `i`.
/// DataFusion evaluates that by hashing every row, evaluating each branch
/// on its rows and stitching the answers back together run by run; with
/// the rows of a batch spread over the partitions at random, the
/// stitching dominated (a third of TPC-H Q17's CPU). The OR of the
/// branches keeps every row the CASE keeps (a row's own branch is among
/// them), and when every branch is an `IN` list of the same key (small
/// build sides), the OR is one `IN` list of all the keys, bounded by
/// their least and greatest: one probe per row, no routing hash.
///
/// With `ELSE true` (a partition whose keys are unknown) the CASE is
/// left as it is; so is anything else this does not recognise.
pub(crate) fn scan_form(
    expr: Arc<dyn PhysicalExpr>,
    schema: &datafusion::arrow::datatypes::Schema,
) -> Arc<dyn PhysicalExpr> {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr};
    // `key IS NULL OR <filter>` (null-equal joins).
    if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        if *b.op() == Operator::Or {
            let right = scan_form(b.right().clone(), schema);
            if Arc::ptr_eq(&right, b.right()) {
                return expr;
            }
            return Arc::new(BinaryExpr::new(b.left().clone(), Operator::Or, right));
        }
        // `bounds AND key IN (…)`, a collected build side's filter.
        return list_bitmap(std::slice::from_ref(&expr)).unwrap_or(expr);
    }
    let Some(case) = expr.downcast_ref::<CaseExpr>() else {
        return list_bitmap(std::slice::from_ref(&expr)).unwrap_or(expr);
    };
    if case.expr().is_none() || bool_literal(case.else_expr()) != Some(false) {
        return expr;
    }
    let mut branches = Vec::with_capacity(case.when_then_expr().len());
    for (_, then) in case.when_then_expr() {
        match bool_literal(Some(then)) {
            Some(false) => continue,
            Some(true) => return lit(true),
            None => branches.push(then.clone()),
        }
    }
    if branches.is_empty() {
        return lit(false);
    }
    if let Some(bitmap) = list_bitmap(&branches) {
        return bitmap;
    }
    if let Some(merged) = merged_in_lists(&branches, schema) {
        return merged;
    }
    branches
        .into_iter()
        .reduce(|a, b| Arc::new(BinaryExpr::new(a, Operator::Or, b)) as Arc<dyn PhysicalExpr>)
        .expect("at least one branch")
}

fn bool_literal(e: Option<&Arc<dyn PhysicalExpr>>) -> Option<bool> {
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::Literal;
    match e?.downcast_ref::<Literal>()?.value() {
        ScalarValue::Boolean(Some(b)) => Some(*b),
        _ => None,
    }
}

/// `Fi` = `[bounds AND] key IN (…)` for every branch, one key: a single
/// `key >= least AND key <= greatest AND key IN (all keys)`.
fn merged_in_lists(
    branches: &[Arc<dyn PhysicalExpr>],
    schema: &datafusion::arrow::datatypes::Schema,
) -> Option<Arc<dyn PhysicalExpr>> {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, InListExpr, Literal};
    let (key, lists) = in_lists_of_one_key(branches)?;
    let key = key.clone();
    let list: Vec<Arc<dyn PhysicalExpr>> = lists
        .iter()
        .flat_map(|l| l.list().iter().cloned())
        .collect();
    // Only a plain column gets bounds: a struct of several keys has none
    // that compare.
    let mut least = None::<datafusion::common::ScalarValue>;
    let mut greatest = None::<datafusion::common::ScalarValue>;
    if key.downcast_ref::<Column>().is_some() {
        for v in &list {
            let v = v.downcast_ref::<Literal>()?.value();
            if v.is_null() {
                continue;
            }
            if least.as_ref().is_none_or(|l| v < l) {
                least = Some(v.clone());
            }
            if greatest.as_ref().is_none_or(|g| v > g) {
                greatest = Some(v.clone());
            }
        }
    }
    let member: Arc<dyn PhysicalExpr> =
        Arc::new(InListExpr::try_new(key.clone(), list, false, schema).ok()?);
    Some(match (least, greatest) {
        (Some(l), Some(g)) => {
            let ge = Arc::new(BinaryExpr::new(key.clone(), Operator::GtEq, lit(l)));
            let le = Arc::new(BinaryExpr::new(key, Operator::LtEq, lit(g)));
            let bounds = Arc::new(BinaryExpr::new(ge, Operator::And, le));
            Arc::new(BinaryExpr::new(bounds, Operator::And, member))
        }
        _ => member,
    })
}

/// `[bounds AND] key IN (integer literals)`, or the OR of such `exprs`
/// over one key (the branches of a partitioned join's filter), as a
/// [`KeyBitmap`]: cheaper than the hash set DataFusion probes for a list.
/// `None` unless the key is a column of a 64- or 32-bit integer (or date)
/// type and the keys' range fits a bitmap. A join's filter has this form
/// when its build side had up to 4,096 keys (crate::session).
fn list_bitmap(exprs: &[Arc<dyn PhysicalExpr>]) -> Option<Arc<dyn PhysicalExpr>> {
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::Literal;
    let (key, lists) = in_lists_of_one_key(exprs)?;
    key.downcast_ref::<Column>()?;
    let mut values = Vec::with_capacity(lists.iter().map(|l| l.list().len()).sum());
    for inl in lists {
        for v in inl.list() {
            match v.downcast_ref::<Literal>()?.value() {
                ScalarValue::Int64(Some(x)) => values.push(*x),
                ScalarValue::Int32(Some(x)) | ScalarValue::Date32(Some(x)) => {
                    values.push(i64::from(*x))
                }
                // A NULL in the list never matches under `=`.
                ScalarValue::Int64(None) | ScalarValue::Int32(None) | ScalarValue::Date32(None) => {
                }
                _ => return None,
            }
        }
    }
    Some(Arc::new(KeyBitmap::fixed(key.clone(), Bits::of(&values)?)))
}

/// The `IN` lists of `exprs`, each `[bounds AND] key IN (…)` (not negated)
/// over the same key, and that key; `None` if any is another shape.
fn in_lists_of_one_key(
    exprs: &[Arc<dyn PhysicalExpr>],
) -> Option<(
    &Arc<dyn PhysicalExpr>,
    Vec<&datafusion::physical_expr::expressions::InListExpr>,
)> {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, InListExpr};
    let mut key: Option<&Arc<dyn PhysicalExpr>> = None;
    let mut lists = Vec::with_capacity(exprs.len());
    for expr in exprs {
        // The membership test is the right side of `bounds AND membership`.
        let member = match expr.downcast_ref::<BinaryExpr>() {
            Some(b) if *b.op() == Operator::And => b.right(),
            Some(_) => return None,
            None => expr,
        };
        let inl = member.downcast_ref::<InListExpr>()?;
        if inl.negated() {
            return None;
        }
        match key {
            None => key = Some(inl.expr()),
            Some(k) if k == inl.expr() => {}
            Some(_) => return None,
        }
        lists.push(inl);
    }
    Some((key?, lists))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, BooleanArray, Int64Array, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{ColumnarValue, Operator};
    use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, InListExpr};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("route", DataType::UInt64, false),
        ]));
        let k: Vec<Option<i64>> = (0..40)
            .map(|i| if i == 7 { None } else { Some(i) })
            .collect();
        let route: Vec<u64> = (0..40).map(|i| (i * 7 % 3) as u64).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(k)),
                Arc::new(UInt64Array::from(route)),
            ],
        )
        .unwrap()
    }

    fn keys(b: &RecordBatch, e: &Arc<dyn PhysicalExpr>) -> Vec<i64> {
        let ColumnarValue::Array(a) = e.evaluate(b).unwrap() else {
            panic!("not an array")
        };
        let m = a.as_any().downcast_ref::<BooleanArray>().unwrap();
        let k = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..b.num_rows())
            .filter(|&i| m.is_valid(i) && m.value(i))
            .map(|i| k.value(i))
            .collect()
    }

    /// `[bounds AND] k IN (keys)`, as a partitioned join fills a branch.
    fn branch(schema: &Schema, ks: &[i64]) -> Arc<dyn PhysicalExpr> {
        let k: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let inl = Arc::new(
            InListExpr::try_new_from_array(
                k.clone(),
                Arc::new(Int64Array::from(ks.to_vec())),
                false,
                schema,
            )
            .unwrap(),
        );
        let lo = lit(*ks.iter().min().unwrap());
        let hi = lit(*ks.iter().max().unwrap());
        let bounds = Arc::new(BinaryExpr::new(
            Arc::new(BinaryExpr::new(k.clone(), Operator::GtEq, lo)),
            Operator::And,
            Arc::new(BinaryExpr::new(k, Operator::LtEq, hi)),
        ));
        Arc::new(BinaryExpr::new(bounds, Operator::And, inl))
    }

    fn routed(
        branches: Vec<(u64, Arc<dyn PhysicalExpr>)>,
        otherwise: bool,
    ) -> Arc<dyn PhysicalExpr> {
        let route: Arc<dyn PhysicalExpr> = Arc::new(Column::new("route", 1));
        let wt = branches
            .into_iter()
            .map(|(p, f)| (lit(ScalarValue::UInt64(Some(p))), f))
            .collect();
        Arc::new(CaseExpr::try_new(Some(route), wt, Some(lit(otherwise))).unwrap())
    }

    #[test]
    fn a_routed_filter_of_in_lists_becomes_one_in_list_keeping_every_routed_row() {
        let b = batch();
        let s = b.schema();
        // Partition p holds the keys whose route is p (as a join's hash
        // routing guarantees); partition 2 is empty.
        let of = |p: u64| -> Vec<i64> {
            (0..40)
                .filter(|i| (i * 7 % 3) as u64 == p && i % 2 == 0)
                .collect()
        };
        let case = routed(
            vec![
                (0, branch(&s, &of(0))),
                (1, branch(&s, &of(1))),
                (2, lit(false)),
            ],
            false,
        );
        let form = scan_form(case.clone(), &s);
        assert!(form.downcast_ref::<CaseExpr>().is_none(), "{form}");
        assert!(
            !format!("{form}").contains(" OR "),
            "one IN list expected: {form}"
        );
        assert_eq!(keys(&b, &form), keys(&b, &case));
        let mut want: Vec<i64> = of(0).into_iter().chain(of(1)).collect();
        want.sort();
        assert_eq!(keys(&b, &form), want);
    }

    #[test]
    fn other_branches_are_ored_and_unknown_partitions_keep_the_case() {
        let b = batch();
        let s = b.schema();
        let k: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let gt = |v: i64| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(k.clone(), Operator::Gt, lit(v)))
        };
        let case = routed(vec![(0, gt(30)), (1, gt(35))], false);
        let form = scan_form(case.clone(), &s);
        assert!(form.downcast_ref::<CaseExpr>().is_none(), "{form}");
        // A superset of the routed rows: the join drops the rest.
        let (exact, loose) = (keys(&b, &case), keys(&b, &form));
        assert!(exact.iter().all(|k| loose.contains(k)));
        assert_eq!(loose, (31..40).collect::<Vec<_>>());
        // ELSE true: some partition's keys are unknown; nothing to merge.
        let unknown = routed(vec![(0, gt(30))], true);
        assert!(Arc::ptr_eq(&scan_form(unknown.clone(), &s), &unknown));
        // A branch that keeps everything makes the filter keep everything.
        let all = routed(vec![(0, gt(30)), (1, lit(true))], false);
        assert_eq!(bool_literal(Some(&scan_form(all, &s))), Some(true));
    }

    #[test]
    fn integer_key_lists_become_bitmaps_that_keep_exactly_the_listed_keys() {
        let b = batch();
        let s = b.schema();
        let ks = [3i64, 7, 8, 21, 39];
        let direct = branch(&s, &ks);
        let form = scan_form(direct.clone(), &s);
        assert!(form.downcast_ref::<KeyBitmap>().is_some(), "{form}");
        // Row 7's key is NULL: kept by neither.
        assert_eq!(keys(&b, &form), vec![3, 8, 21, 39]);
        assert_eq!(keys(&b, &form), keys(&b, &direct));
        // Keys below zero and far apart, as a partitioned join's branches.
        let wide = routed(
            vec![
                (0, branch(&s, &[-5, 0, 1])),
                (1, branch(&s, &[30, 1 << 20])),
            ],
            false,
        );
        let form = scan_form(wide, &s);
        assert!(form.downcast_ref::<KeyBitmap>().is_some(), "{form}");
        assert_eq!(keys(&b, &form), vec![0, 1, 30]);
        // A range wider than the bitmap's limit stays a list.
        let huge = branch(&s, &[0, 1 << 40]);
        let form = scan_form(huge.clone(), &s);
        assert!(form.downcast_ref::<KeyBitmap>().is_none(), "{form}");
        assert_eq!(keys(&b, &form), vec![0]);
    }
}
