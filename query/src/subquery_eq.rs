//! Filters that equate a column with a computed expression.
//!
//! A filter `e = k` makes `e` and `k` equivalent in the plan's ordering
//! properties, and DataFusion 55 may then plan a sort above it on `e` in
//! place of `k`. Its final plan check does not always see the equivalence
//! again (through a join, or when `e` holds an uncorrelated scalar subquery,
//! run as a physical `scalar_subquery(<pending>)` expression) and refuses
//! the plan ("does not satisfy order requirements"): the query fails
//! although PostgreSQL answers it. Examples found by the differential test:
//! `WHERE CASE k WHEN 3 THEN (SELECT max(k) FROM t) END IN (k) ORDER BY k`,
//! and `… LEFT JOIN b ON a.k = b.k WHERE CASE WHEN b.b1 THEN nullif(b.k, 3)
//! END IN (b.k)` under a window ordered by `a.k`.
//!
//! This optimizer rule, run after DataFusion's own rules, writes each
//! top-level conjunct of a filter that equates a column with a computed
//! expression (neither a column nor a constant), or that holds a scalar
//! subquery, `a = b`, as `(a = b) IS TRUE`. In a filter the two are the same
//! (a row passes only when the comparison is true), but the second is not an
//! equality, so no ordering equivalence is derived from it. Equalities of
//! two columns (join keys) and of a column and a constant (pruning, point
//! lookups) are left as they are.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub struct SubqueryEqualities;

fn has_scalar_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        if matches!(e, Expr::ScalarSubquery(_)) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn is_column(e: &Expr) -> bool {
    match e {
        Expr::Column(_) => true,
        Expr::Cast(c) => is_column(&c.expr),
        _ => false,
    }
}

fn is_simple(e: &Expr) -> bool {
    is_column(e) || matches!(e, Expr::Literal(..))
}

fn needs_wrapping(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            has_scalar_subquery(e)
                || (is_column(left) && !is_simple(right))
                || (is_column(right) && !is_simple(left))
        }
        _ => false,
    }
}

impl OptimizerRule for SubqueryEqualities {
    fn name(&self) -> &str {
        "strata_subquery_equalities"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = plan else {
            return Ok(Transformed::no(plan));
        };
        if !split_conjunction_owned(filter.predicate.clone())
            .iter()
            .any(needs_wrapping)
        {
            return Ok(Transformed::no(LogicalPlan::Filter(filter)));
        }
        let parts: Vec<Expr> = split_conjunction_owned(filter.predicate)
            .into_iter()
            .map(|c| {
                if needs_wrapping(&c) {
                    Expr::IsTrue(Box::new(c))
                } else {
                    c
                }
            })
            .collect();
        let predicate = conjunction(parts).expect("a filter has a predicate");
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
            predicate,
            Arc::clone(&filter.input),
        )?)))
    }
}
