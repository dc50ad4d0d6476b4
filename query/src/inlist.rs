//! `IN` lists that are not plain constants.
//!
//! DataFusion 55's expression simplifier combines two `IN` lists over the same
//! expression as sets: `x IN (a, b) AND x NOT IN (c, d)` becomes `x IN ({a,
//! b} minus {c, d})`, `x IN l1 AND x IN l2` the intersection, and so on. That
//! holds for lists of distinct non-NULL constants only. With a column in a
//! list the "set" compares expressions, not values, and with a NULL the
//! three-valued answer changes: `i0 IN (NULL, k) AND i0 NOT IN (-2, i0)` was
//! simplified to `i0 IN (NULL, k)`, dropping a conjunct that is never true,
//! so `(…) IS NULL` selected every row (found by the differential test).
//!
//! This analyzer rule, which runs before the simplifier, writes each `IN`
//! list holding anything but non-NULL constants as the comparisons it
//! stands for: `x IN (a, b)` as `x = a OR x = b` and `x NOT IN (a, b)` as
//! `x <> a AND x <> b`, which is exactly SQL's definition. Lists of
//! constants, the common case, are left as they are. A volatile `x` (whose
//! value would differ between the comparisons) is left too. Names of result
//! columns are kept.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct InListComparisons;

impl AnalyzerRule for InListComparisons {
    fn name(&self) -> &str {
        "strata_in_list_comparisons"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        crate::literal_right::rewrite_keeping_names(plan, expand)
    }
}

fn plain_constant(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => !v.is_null(),
        Expr::Cast(c) => plain_constant(&c.expr),
        _ => false,
    }
}

fn expand(e: Expr) -> DfResult<Transformed<Expr>> {
    match e {
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) if !list.is_empty() && !list.iter().all(plain_constant) && !expr.is_volatile() => {
            let (op, join) = if negated {
                (Operator::NotEq, Operator::And)
            } else {
                (Operator::Eq, Operator::Or)
            };
            let out = list
                .into_iter()
                .map(|item| Expr::BinaryExpr(BinaryExpr::new(expr.clone(), op, Box::new(item))))
                .reduce(|acc, c| {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(acc), join, Box::new(c)))
                })
                .expect("a non-empty list");
            Ok(Transformed::yes(out))
        }
        other => Ok(Transformed::no(other)),
    }
}
