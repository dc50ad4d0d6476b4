//! `IN (subquery)` and `NOT IN (subquery)` with SQL's three-valued logic.
//!
//! `x IN (SELECT v …)` is true if some `v = x`; otherwise it is NULL if a
//! `v` is NULL, or if `x` is NULL and the subquery has rows; otherwise
//! false. `NOT IN` is its negation, so a single NULL among the `v` makes
//! `NOT IN` NULL (never true) for every `x` without a match, and over a
//! subquery without rows it is true even for a NULL `x`.
//!
//! DataFusion turns these predicates into joins that get the NULL cases
//! wrong: a correlated `NOT IN` drops an outer row whose subquery is empty,
//! an uncorrelated one with a constant on the left keeps rows it must drop,
//! and in a select list `IN (subquery)` is not planned at all. This
//! analyzer rule (after type coercion, so `x` and `v` have one type) states
//! the logic with `EXISTS` over the same subquery, which DataFusion
//! decorrelates as semi and anti joins:
//!
//! * In a filter (`WHERE`, `HAVING`), where NULL and false both drop the
//!   row, as an operand of `AND` / `OR` at the top: `x IN (S)` stays (a
//!   semi join is right there), and `x NOT IN (S)` becomes
//!   `NOT EXISTS (S WHERE v = x) AND NOT EXISTS (S WHERE v IS NULL) AND
//!   (x IS NOT NULL OR NOT EXISTS (S))`, the first an equi-join.
//! * Anywhere else (select lists, under `NOT`, in `CASE`, compared):
//!   `CASE WHEN EXISTS (S WHERE v = x) THEN true WHEN EXISTS (S WHERE v IS
//!   NULL) OR (x IS NULL AND EXISTS (S)) THEN NULL ELSE false END`, negated
//!   for `NOT IN`, each `EXISTS (…)` as `(SELECT count(*) FROM …) > 0`.
//!
//! A subquery in an inner join's ON condition moves into a filter above the
//! join (DataFusion plans none there); in an outer join's it is refused
//! (0A000), which some shapes were answered wrongly before.
//!
//! `x` moves into the subquery as outer references. Where `x` itself reads
//! an enclosing query's columns or holds a subquery, the predicate is left
//! as DataFusion plans it.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    Column, DFSchema, DataFusionError, ExprSchema, Result as DfResult, ScalarValue,
};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::expr::{Exists, InSubquery};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, merge_schema, split_conjunction_owned};
use datafusion::logical_expr::{
    lit, when, BinaryExpr, Expr, ExprSchemable, Filter, Join, JoinType, LogicalPlan,
    LogicalPlanBuilder, Operator, Subquery,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct InSubqueryNulls;

impl AnalyzerRule for InSubqueryNulls {
    fn name(&self) -> &str {
        "strata_in_subquery_nulls"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = match plan.inputs().as_slice() {
                [] => return Ok(Transformed::no(plan)),
                inputs => merge_schema(inputs),
            };
            match plan {
                LogicalPlan::Filter(mut f) => {
                    let t = in_filter(f.predicate, &schema)?;
                    f.predicate = t.data;
                    Ok(Transformed::new_transformed(
                        LogicalPlan::Filter(f),
                        t.transformed,
                    ))
                }
                LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Sort(_) => {
                    let names = NamePreserver::new(&plan);
                    plan.map_expressions(|e| {
                        let saved = names.save(&e);
                        let t = anywhere(e, &schema)?;
                        Ok(if t.transformed {
                            t.update_data(|e| saved.restore(e))
                        } else {
                            t
                        })
                    })
                }
                LogicalPlan::Join(j) if j.filter.as_ref().is_some_and(has_subquery) => {
                    subquery_in_on(j)
                }
                other => Ok(Transformed::no(other)),
            }
        })
        .map(|t| t.data)
    }
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
        ))
    })
    .unwrap_or(true)
}

/// A subquery in a join's ON condition. DataFusion does not decorrelate
/// subqueries there, and some outer joins were answered wrongly. For an
/// inner join the conditions holding a subquery move into a filter above
/// the join (the same rows); an outer join's are refused.
fn subquery_in_on(mut j: Join) -> DfResult<Transformed<LogicalPlan>> {
    if j.join_type != JoinType::Inner {
        let kind = match j.join_type {
            JoinType::Left => "LEFT",
            JoinType::Right => "RIGHT",
            JoinType::Full => "FULL",
            _ => "outer",
        };
        return Err(DataFusionError::NotImplemented(format!(
            "a subquery in the ON condition of a {kind} JOIN is not supported yet; \
             compute it in a derived table (`JOIN (SELECT …, <subquery> AS flag FROM …) AS t \
             ON … AND t.flag`) or move a condition on one side into that side's WHERE"
        )));
    }
    let filter = j.filter.take().expect("checked by the caller");
    let (with, without): (Vec<Expr>, Vec<Expr>) = split_conjunction_owned(filter)
        .into_iter()
        .partition(has_subquery);
    j.filter = conjunction(without);
    let join = LogicalPlan::Join(j);
    let schema = join.schema().as_ref().clone();
    let predicate = conjunction(with).expect("one condition holds the subquery");
    let predicate = in_filter(predicate, &schema)?.data;
    Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
        predicate,
        Arc::new(join),
    )?)))
}

/// A predicate whose NULL drops the row like false does.
fn in_filter(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: op @ (Operator::And | Operator::Or),
            right,
        }) => {
            let l = in_filter(*left, schema)?;
            let r = in_filter(*right, schema)?;
            let changed = l.transformed || r.transformed;
            Ok(Transformed::new_transformed(
                Expr::BinaryExpr(BinaryExpr::new(Box::new(l.data), op, Box::new(r.data))),
                changed,
            ))
        }
        Expr::InSubquery(s) if !s.negated => Ok(Transformed::no(Expr::InSubquery(s))),
        Expr::InSubquery(s) => match Parts::of(&s, schema)? {
            Some(p) => {
                let no_match = not_exists(p.filtered(p.value().eq(p.outer.clone()))?);
                let no_null = not_exists(p.filtered(p.value().is_null())?);
                let mut e = no_match.and(no_null);
                if p.outer_nullable {
                    e = e.and(p.x.clone().is_not_null().or(not_exists(p.plan.clone())));
                }
                Ok(Transformed::yes(e))
            }
            None => Ok(Transformed::no(Expr::InSubquery(s))),
        },
        other => anywhere(other, schema),
    }
}

/// Every `[NOT] IN (subquery)` inside `e`, three-valued.
fn anywhere(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    e.transform_up(|e| match e {
        Expr::InSubquery(s) => match Parts::of(&s, schema)? {
            Some(p) => {
                let matched = any_row(p.filtered(p.value().eq(p.outer.clone()))?)?;
                let mut unknown = any_row(p.filtered(p.value().is_null())?)?;
                if p.outer_nullable {
                    unknown = unknown.or(p.x.clone().is_null().and(any_row(p.plan.clone())?));
                }
                let (hit, miss) = if s.negated {
                    (false, true)
                } else {
                    (true, false)
                };
                let e = when(matched, lit(hit))
                    .when(unknown, lit(ScalarValue::Boolean(None)))
                    .otherwise(lit(miss))?;
                Ok(Transformed::yes(e))
            }
            None => Ok(Transformed::no(Expr::InSubquery(s))),
        },
        other => Ok(Transformed::no(other)),
    })
}

/// Whether `plan` has a row, as a value: DataFusion plans `EXISTS` only as
/// a filter, so `(SELECT count(*) FROM plan) > 0`.
fn any_row(plan: Arc<LogicalPlan>) -> DfResult<Expr> {
    let counted = LogicalPlanBuilder::from(plan.as_ref().clone())
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1i64)).alias("n")])?
        .build()?;
    Ok(Expr::ScalarSubquery(subquery(Arc::new(counted))).gt(lit(0i64)))
}

/// The pieces of `x [NOT] IN (S)`.
struct Parts {
    /// `x`, as the enclosing query reads it.
    x: Expr,
    /// `x` as the subquery reads it (outer references).
    outer: Expr,
    outer_nullable: bool,
    /// `S`, whose first column is `v`.
    plan: Arc<LogicalPlan>,
}

impl Parts {
    fn of(s: &InSubquery, schema: &DFSchema) -> DfResult<Option<Parts>> {
        let x = s.expr.as_ref().clone();
        let mut simple = true;
        x.apply(|e| {
            if matches!(
                e,
                Expr::OuterReferenceColumn(..)
                    | Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::Placeholder(_)
            ) {
                simple = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if !simple || s.subquery.subquery.schema().fields().len() != 1 {
            return Ok(None);
        }
        let outer = x
            .clone()
            .transform(|e| match e {
                Expr::Column(c) => {
                    let field = schema.field_from_column(&c)?.clone();
                    Ok(Transformed::yes(Expr::OuterReferenceColumn(field, c)))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let outer_nullable = x.nullable(schema).unwrap_or(true);
        Ok(Some(Parts {
            x,
            outer,
            outer_nullable,
            plan: s.subquery.subquery.clone(),
        }))
    }

    fn value(&self) -> Expr {
        Expr::Column(Column::from(self.plan.schema().qualified_field(0)))
    }

    /// `S` filtered by `predicate` (over `v` and outer references).
    fn filtered(&self, predicate: Expr) -> DfResult<Arc<LogicalPlan>> {
        Ok(Arc::new(
            LogicalPlanBuilder::from(self.plan.as_ref().clone())
                .filter(predicate)?
                .build()?,
        ))
    }
}

fn subquery(plan: Arc<LogicalPlan>) -> Subquery {
    let outer_ref_columns = plan.all_out_ref_exprs();
    Subquery {
        subquery: plan,
        outer_ref_columns,
        spans: Default::default(),
    }
}

fn not_exists(plan: Arc<LogicalPlan>) -> Expr {
    Expr::Exists(Exists::new(subquery(plan), true))
}
