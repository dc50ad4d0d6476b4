//! Comparisons with the constant on the right.
//!
//! DataFusion 55 can turn an outer join's condition into `false` when a
//! comparison in it has its constant first: `a RIGHT JOIN b ON a.k = b.k AND
//! 2 = b.k` infers `a.k = 2` for `a`'s side, and a second filter push-down
//! pass then reduces `a` to no rows, so no row of `b` finds its match (the
//! same condition written `b.k = 2` is answered right). `2 IN (b.k)` is
//! simplified into that same `2 = b.k`. This analyzer rule writes every
//! comparison `constant op expr` as `expr op' constant` (`2 < x` is
//! `x > 2`), and a one-element `constant IN (expr)` as `expr = constant`,
//! which also reads more naturally in EXPLAIN. Names of result columns are
//! kept.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct LiteralsRight;

impl AnalyzerRule for LiteralsRight {
    fn name(&self) -> &str {
        "strata_literals_right"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_keeping_names(plan, flip)
    }
}

/// Rewrite every expression of `plan` (and of its subqueries) bottom-up with
/// `f`, keeping the names of result columns.
pub(crate) fn rewrite_keeping_names(
    plan: LogicalPlan,
    f: fn(Expr) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|e| {
            let saved = names.save(&e);
            let t = e.transform_up(f)?;
            Ok(if t.transformed {
                t.update_data(|e| saved.restore(e))
            } else {
                t
            })
        })
    })
    .map(|t| t.data)
}

fn is_constant(e: &Expr) -> bool {
    matches!(e, Expr::Literal(..))
        || matches!(e, Expr::Cast(c) if matches!(c.expr.as_ref(), Expr::Literal(..)))
}

fn flip(e: Expr) -> DfResult<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if is_constant(&left)
                && !is_constant(&right)
                && matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) =>
        {
            let op = op.swap().unwrap_or(op);
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                right, op, left,
            ))))
        }
        Expr::InList(InList {
            expr,
            mut list,
            negated,
        }) if list.len() == 1 && is_constant(&expr) && !is_constant(&list[0]) => {
            let item = list.pop().expect("one item");
            let op = if negated {
                Operator::NotEq
            } else {
                Operator::Eq
            };
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(item),
                op,
                expr,
            ))))
        }
        other => Ok(Transformed::no(other)),
    }
}
