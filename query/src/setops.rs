//! `INTERSECT ALL` and `EXCEPT ALL` with SQL's multiplicities.
//!
//! DataFusion plans `l INTERSECT ALL r` as a semi join of `l` with `r` on
//! every column (NULLs equal) and `l EXCEPT ALL r` as the anti join: every
//! copy of a row of `l` that occurs in `r` is kept (or dropped), where SQL
//! keeps `min(m, n)` copies (or `max(m - n, 0)`) of a row that occurs `m`
//! times in `l` and `n` times in `r`.
//!
//! This analyzer rule numbers the copies of each distinct row on both sides
//! (`row_number() OVER (PARTITION BY every column)`) and joins on the
//! columns and that number: the `k`-th copy on the left meets the `k`-th on
//! the right, so a semi join keeps copies `1..=min(m, n)` and an anti join
//! keeps copies `n+1..=m`. A projection drops the number again.
//!
//! The plain (distinct) forms are planned as the same joins over a
//! `DISTINCT` left side, and need no numbering; they are recognized by that
//! and left alone. Only the set-operation join has no filter and compares
//! NULLs as equal: a join written in SQL, or made from a subquery, compares
//! them as SQL does, so it cannot be mistaken for one.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, NullEquality, Result as DfResult};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, Join, JoinType, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::AnalyzerRule;

const LEFT_COPY: &str = "__strata_copy_l";
const RIGHT_COPY: &str = "__strata_copy_r";

#[derive(Debug, Default)]
pub struct SetOpMultiplicity;

impl AnalyzerRule for SetOpMultiplicity {
    fn name(&self) -> &str {
        "strata_set_op_multiplicity"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        Ok(plan.transform_up_with_subqueries(number_copies)?.data)
    }
}

/// Whether `plan` is the join DataFusion plans for `INTERSECT ALL` /
/// `EXCEPT ALL`.
fn is_all_set_op(plan: &LogicalPlan) -> bool {
    let LogicalPlan::Join(j) = plan else {
        return false;
    };
    matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
        && j.null_equality == NullEquality::NullEqualsNull
        && j.filter.is_none()
        && !j.null_aware
        && !j.on.is_empty()
        && j.on.len() == j.left.schema().fields().len()
        && j.on.len() == j.right.schema().fields().len()
        && !matches!(j.left.as_ref(), LogicalPlan::Distinct(_))
        // Already numbered (the rule's own output).
        && j.left.schema().field_with_unqualified_name(LEFT_COPY).is_err()
}

/// `plan` with a column numbering the copies of each distinct row.
fn numbered(plan: LogicalPlan, name: &str) -> DfResult<(LogicalPlan, Vec<Column>)> {
    let cols: Vec<Column> = plan.schema().columns();
    let by: Vec<Expr> = cols.iter().cloned().map(Expr::Column).collect();
    let n = row_number().partition_by(by).build()?.alias(name);
    let plan = LogicalPlanBuilder::from(plan).window(vec![n])?.build()?;
    Ok((plan, cols))
}

fn number_copies(plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    if !is_all_set_op(&plan) {
        return Ok(Transformed::no(plan));
    }
    let LogicalPlan::Join(j) = plan else {
        unreachable!("checked above")
    };
    let (left, lcols) = numbered(Arc::unwrap_or_clone(j.left), LEFT_COPY)?;
    let (right, _) = numbered(Arc::unwrap_or_clone(j.right), RIGHT_COPY)?;
    let keep: Vec<Expr> = lcols.into_iter().map(Expr::Column).collect();
    // The keys as type coercion left them (a side may be cast), and the
    // copy numbers.
    let mut on = j.on;
    on.push((
        Expr::Column(Column::from_name(LEFT_COPY)),
        Expr::Column(Column::from_name(RIGHT_COPY)),
    ));
    let join = Join::try_new(
        Arc::new(left),
        Arc::new(right),
        on,
        None,
        j.join_type,
        j.join_constraint,
        NullEquality::NullEqualsNull,
        false,
    )?;
    let plan = LogicalPlanBuilder::from(LogicalPlan::Join(join))
        .project(keep)?
        .build()?;
    Ok(Transformed::yes(plan))
}
