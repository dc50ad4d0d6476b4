//! Filters that equate a column with an expression over a scalar subquery.
//!
//! DataFusion 55 runs an uncorrelated scalar subquery as a physical
//! expression (`scalar_subquery(<pending>)`), and a filter `e = k` makes
//! `e` and `k` equivalent in the plan's ordering properties. When `e`
//! holds such a subquery (`WHERE CASE k WHEN 3 THEN (SELECT max(k) FROM t)
//! END = k ORDER BY k`, or the same written `… IN (k)`), the sort above the
//! filter is planned on `e` instead of `k`, and the final plan check then
//! refuses the plan ("does not satisfy order requirements"): the query
//! fails although PostgreSQL answers it. Found by the differential test.
//!
//! This optimizer rule, run after DataFusion's own rules, writes each such
//! top-level conjunct of a filter `a = b` as `(a = b) IS TRUE`. In a filter
//! the two are the same (a row passes only when the comparison is true), but
//! the second is not an equality, so no ordering equivalence is derived from
//! it. Other filters are left as they are.

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

fn needs_wrapping(e: &Expr) -> bool {
    matches!(e, Expr::BinaryExpr(BinaryExpr { op: Operator::Eq, .. }) if has_scalar_subquery(e))
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
