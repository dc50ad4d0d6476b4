//! Semi and anti joins pushed below the joins they filter.
//!
//! Why: DataFusion 55 decorrelates `x IN (SELECT …)` and `EXISTS (…)` into a
//! semi (or anti) join above the whole `FROM` list. In TPC-H Q18
//! (`FROM customer, orders, lineitem WHERE o_orderkey IN (SELECT l_orderkey
//! … HAVING sum(l_quantity) > 300) AND …`) that is
//! `LeftSemi(Inner(Inner(customer, orders), lineitem), subquery)`: every
//! lineitem row is joined to its order before the semi join keeps the few
//! dozen orders that qualify. None of DataFusion's rules moves a semi join
//! down, so the query ran several times slower than it needs to.
//!
//! What: this optimizer rule, run after DataFusion's own rules (so after the
//! subqueries became semi/anti joins and the cross joins became inner
//! joins), rewrites
//!
//! ```text
//! Semi(Join(A, B, on, filter), S, keys, f)  =>  Join(Semi(A, S, keys, f), B, on, filter)
//! Semi(Join(A, B, on, filter), S, keys, f)  =>  Join(A, Semi(B, S, keys, f), on, filter)
//! ```
//!
//! (`Semi` is `LeftSemi` or `LeftAnti`) when every column of the left-hand
//! keys and every left-input column of `f` belongs to the side the semi join
//! moves into, and repeats on the moved semi join so that it sinks as deep
//! as it can through nested joins. A semi or anti join decides for each left
//! row from that row's own values, and the decision then depends only on the
//! columns of one side; in a join that side's row is the same in every output
//! row it takes part in (and such a row is never null-extended), so keeping
//! or dropping the output rows is the same as keeping or dropping that side's
//! rows before the join. Both forms have the same schema: a semi join outputs
//! exactly its left input's fields, and the join above is rebuilt over
//! inputs of unchanged schemas.
//!
//! The sides it moves into: both sides of an `Inner` join, the left
//! (preserved) side of a `Left` join, the right (preserved) side of a
//! `Right` join.
//!
//! When it does not apply (the plan is left as it is):
//! * a semi join that is not worth moving (see [`movable`]): one with a
//!   filter beyond its equi-keys, or whose subquery side does not aggregate;
//! * a null-aware anti join (`NOT IN` semantics; its NULL handling is left
//!   to DataFusion exactly as planned), and any other join type of the top
//!   join (mark joins, right semi/anti joins);
//! * the null-extended side of an outer join, any side of a `Full` join, and
//!   inputs other than joins (projections, filters, aliases);
//! * keys or filter that read columns of both sides, a column name that
//!   resolves in more than one of the inputs, or no column it can place;
//! * volatile expressions (`random()`: moving them changes how often, and
//!   for which rows, they are evaluated) and expressions holding subqueries.
//! * if, against expectation, the rebuilt plan's schema differs from the
//!   original's field by field.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result as DfResult};
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, Projection};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub struct SemiJoinPushdown;

impl OptimizerRule for SemiJoinPushdown {
    fn name(&self) -> &str {
        "strata_semi_join_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Join(join) => sink(join),
            plan => Ok(Transformed::no(plan)),
        }
    }
}

/// The side of a join a semi join moves into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Left,
    Right,
}

/// Pushes the semi/anti join `semi` into its left input as deep as it
/// goes; the plan unchanged when it cannot move at all.
fn sink(semi: Join) -> DfResult<Transformed<LogicalPlan>> {
    if !movable(&semi) {
        return Ok(Transformed::no(LogicalPlan::Join(semi)));
    }
    match semi.left.as_ref() {
        LogicalPlan::Join(child) => {
            let Some(side) = target_side(&semi, child) else {
                return Ok(Transformed::no(LogicalPlan::Join(semi)));
            };
            let child = child.clone();
            let (into, other) = match side {
                Side::Left => (Arc::clone(&child.left), Arc::clone(&child.right)),
                Side::Right => (Arc::clone(&child.right), Arc::clone(&child.left)),
            };
            let moved = Arc::new(sink(with_left(&semi, into)?)?.data);
            let (left, right) = match side {
                Side::Left => (moved, other),
                Side::Right => (other, moved),
            };
            let rebuilt = LogicalPlan::Join(Join::try_new(
                left,
                right,
                child.on,
                child.filter,
                child.join_type,
                child.join_constraint,
                child.null_equality,
                child.null_aware,
            )?);
            Ok(checked(semi, rebuilt))
        }
        // A projection of bare columns (as `optimize_projections` leaves
        // between joins): the semi join reads the same qualified columns
        // below it. It moves through only if it then moves into a join.
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            let moved = sink(with_left(&semi, Arc::clone(&p.input))?)?;
            if !moved.transformed {
                return Ok(Transformed::no(LogicalPlan::Join(semi)));
            }
            let rebuilt =
                LogicalPlan::Projection(Projection::try_new(p.expr.clone(), Arc::new(moved.data))?);
            Ok(checked(semi, rebuilt))
        }
        _ => Ok(Transformed::no(LogicalPlan::Join(semi))),
    }
}

/// `semi` over another left input.
fn with_left(semi: &Join, left: Arc<LogicalPlan>) -> DfResult<Join> {
    Join::try_new(
        left,
        Arc::clone(&semi.right),
        semi.on.clone(),
        semi.filter.clone(),
        semi.join_type,
        semi.join_constraint,
        semi.null_equality,
        semi.null_aware,
    )
}

/// `rebuilt` in place of `semi` if their schemas agree field by field.
fn checked(semi: Join, rebuilt: LogicalPlan) -> Transformed<LogicalPlan> {
    if same_fields(&semi.schema, rebuilt.schema()) {
        Transformed::yes(rebuilt)
    } else {
        Transformed::no(LogicalPlan::Join(semi))
    }
}

/// A semi or anti join (not null-aware) worth moving, whose keys may be
/// evaluated elsewhere: nothing volatile, no subquery.
///
/// Worth moving: moving a semi join below a join makes it probe (or, when
/// DataFusion builds on its left input, hash) every row of the input it
/// moves into instead of the join's output. That pays when the subquery side
/// is reduced, not when the join it moves below is the selective one. Two
/// conditions keep it to the first case:
/// * no filter beyond the equi-keys: TPC-H Q21's `EXISTS (… l2.l_suppkey <>
///   l1.l_suppkey)` moved onto all of `lineitem l1` made a 6 M × 6 M semi
///   join where the nation and order-status joins had left a few percent
///   (Q21 went from 1.8× to 6.9× DuckDB's time);
/// * the subquery side holds an aggregation (`GROUP BY … HAVING`,
///   `DISTINCT`): at most one row per key, usually far fewer (Q18 keeps 57
///   orders of 1.5 M), which is the shape that gains.
fn movable(semi: &Join) -> bool {
    matches!(semi.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
        && !semi.null_aware
        && semi.filter.is_none()
        && has_aggregate(&semi.right)
        && semi
            .on
            .iter()
            .flat_map(|(l, r)| [l, r])
            .chain(semi.filter.as_ref())
            .all(|e| !e.is_volatile() && !has_subquery(e))
}

/// The side of `child`, `semi`'s left input, that all the columns the semi
/// join reads of its left input come from, if the semi join may move there.
fn target_side(semi: &Join, child: &Join) -> Option<Side> {
    let allowed: &[Side] = match child.join_type {
        JoinType::Inner => &[Side::Left, Side::Right],
        JoinType::Left => &[Side::Left],
        JoinType::Right => &[Side::Right],
        _ => return None,
    };
    let left_schema = child.left.schema();
    let right_schema = child.right.schema();
    let sub_schema = semi.right.schema();
    // The columns of the semi join's left input it reads: all of those of
    // the left-hand keys, and those of the filter that are not the
    // subquery's. Each must resolve in exactly one place.
    let mut read: HashSet<&Column> = HashSet::new();
    for (l, _) in &semi.on {
        for c in l.column_refs() {
            if sub_schema.has_column(c) {
                return None;
            }
            read.insert(c);
        }
    }
    if let Some(f) = &semi.filter {
        for c in f.column_refs() {
            let in_input = semi.left.schema().has_column(c);
            let in_sub = sub_schema.has_column(c);
            match (in_input, in_sub) {
                (true, false) => {
                    read.insert(c);
                }
                (false, true) => {}
                _ => return None,
            }
        }
    }
    let mut from_left = false;
    let mut from_right = false;
    for c in &read {
        match (left_schema.has_column(c), right_schema.has_column(c)) {
            (true, false) => from_left = true,
            (false, true) => from_right = true,
            _ => return None,
        }
    }
    match (from_left, from_right) {
        (true, true) => None,
        (true, false) => allowed.contains(&Side::Left).then_some(Side::Left),
        (false, true) => allowed.contains(&Side::Right).then_some(Side::Right),
        // No column at all (an uncorrelated EXISTS): any side it may enter.
        (false, false) => allowed.first().copied(),
    }
}

/// Does `plan` aggregate (its output reduced to one row per group)?
fn has_aggregate(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|p| {
        if matches!(p, LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_)) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
                | Expr::OuterReferenceColumn(..)
        ) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Same qualified fields (name, type, nullability, metadata) in the same
/// order.
fn same_fields(a: &DFSchema, b: &DFSchema) -> bool {
    a.fields().len() == b.fields().len() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}
