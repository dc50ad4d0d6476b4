//! Negative zero equals zero.
//!
//! Arrow compares floating-point values by IEEE 754's *totalOrder*, in which
//! `-0.0` sorts before `+0.0` and is not equal to it (NaN equals NaN and
//! sorts above everything, as in PostgreSQL). SQL, and PostgreSQL, compare by
//! value: `-0 = 0` is true, `ORDER BY` puts them together and breaks the tie on
//! the next key, `GROUP BY` / `DISTINCT` / `PARTITION BY` / join keys put
//! them in one group. A `-0` is easy to make (`x * 0` for a negative `x`,
//! `-(0.0)`, `round(-0.4)`), so without this rule such queries answer wrong.
//!
//! This analyzer rule (it runs after type coercion) fixes the places where the
//! difference shows:
//!
//! - a comparison with a constant zero is rewritten into a range that holds
//!   both zeros (`f = 0` is `f >= -0.0 AND f <= 0.0`, `f < 0` is `f < -0.0`,
//!   …), which keeps statistics pruning working; a comparison with any other
//!   constant already agrees with SQL under totalOrder;
//! - other float comparisons, float join keys, `IN` lists, sort keys, window
//!   partition and order keys, and grouping keys wrap both sides in
//!   `strata_float_key(x)`, which maps `-0.0` to `+0.0` and leaves every other
//!   value alone (grouping keys keep their output name; a group of zeros shows
//!   `0`);
//! - `SELECT DISTINCT` over float columns normalizes them first.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{InList, ScalarFunction, Sort, WindowFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Distinct, Expr, ExprSchemable, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatKey {
    signature: Signature,
}

impl ScalarUDFImpl for FloatKey {
    fn name(&self) -> &str {
        "strata_float_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Float64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return plan_err!("strata_float_key takes one argument");
        };
        Ok(match arg {
            ColumnarValue::Scalar(ScalarValue::Float64(Some(v))) if *v == 0.0 => {
                ColumnarValue::Scalar(ScalarValue::Float64(Some(0.0)))
            }
            ColumnarValue::Scalar(ScalarValue::Float32(Some(v))) if *v == 0.0 => {
                ColumnarValue::Scalar(ScalarValue::Float32(Some(0.0)))
            }
            ColumnarValue::Scalar(s) => ColumnarValue::Scalar(s.clone()),
            ColumnarValue::Array(a) => ColumnarValue::Array(normalize(a)),
        })
    }
}

fn normalize(a: &ArrayRef) -> ArrayRef {
    match a.data_type() {
        DataType::Float64 => {
            let p = a.as_primitive::<Float64Type>();
            if !p
                .values()
                .iter()
                .any(|v| v.to_bits() == (-0.0f64).to_bits())
            {
                return a.clone();
            }
            Arc::new(p.unary::<_, Float64Type>(|v| if v == 0.0 { 0.0 } else { v }))
        }
        DataType::Float32 => {
            let p = a.as_primitive::<Float32Type>();
            if !p
                .values()
                .iter()
                .any(|v| v.to_bits() == (-0.0f32).to_bits())
            {
                return a.clone();
            }
            Arc::new(p.unary::<_, Float32Type>(|v| if v == 0.0 { 0.0 } else { v }))
        }
        _ => a.clone(),
    }
}

static FLOAT_KEY: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::new_from_impl(FloatKey {
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Float64]),
                TypeSignature::Exact(vec![DataType::Float32]),
            ],
            Volatility::Immutable,
        ),
    }))
});

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64 | DataType::Float16)
}

fn key(e: Expr) -> Expr {
    if matches!(&e, Expr::ScalarFunction(f) if f.name() == "strata_float_key") {
        return e;
    }
    if let Some(z) = zero_literal(&e) {
        return z;
    }
    Expr::ScalarFunction(ScalarFunction::new_udf(FLOAT_KEY.clone(), vec![e]))
}

/// `Some(+0 of the same type)` when `e` is a constant float zero (either sign).
fn zero_literal(e: &Expr) -> Option<Expr> {
    match e {
        Expr::Literal(ScalarValue::Float64(Some(v)), m) if *v == 0.0 => {
            Some(Expr::Literal(ScalarValue::Float64(Some(0.0)), m.clone()))
        }
        Expr::Literal(ScalarValue::Float32(Some(v)), m) if *v == 0.0 => {
            Some(Expr::Literal(ScalarValue::Float32(Some(0.0)), m.clone()))
        }
        _ => None,
    }
}

/// A constant (a literal, or a cast of one) and whether it is zero.
fn constant(e: &Expr) -> Option<bool> {
    let lit = match e {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => v,
            _ => return None,
        },
        Expr::TryCast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => v,
            _ => return None,
        },
        _ => return None,
    };
    if lit.is_null() {
        return Some(false);
    }
    let zero = match lit {
        ScalarValue::Float64(Some(v)) => *v == 0.0,
        ScalarValue::Float32(Some(v)) => *v == 0.0,
        ScalarValue::Float16(Some(v)) => v.to_f32() == 0.0,
        ScalarValue::Decimal128(Some(v), _, _) => *v == 0,
        ScalarValue::Decimal256(Some(v), _, _) => v.to_i128() == Some(0),
        ScalarValue::Int8(Some(0))
        | ScalarValue::Int16(Some(0))
        | ScalarValue::Int32(Some(0))
        | ScalarValue::Int64(Some(0))
        | ScalarValue::UInt8(Some(0))
        | ScalarValue::UInt16(Some(0))
        | ScalarValue::UInt32(Some(0))
        | ScalarValue::UInt64(Some(0)) => true,
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.trim().parse::<f64>().is_ok_and(|v| v == 0.0),
        _ => false,
    };
    Some(zero)
}

fn float_lit(t: &DataType, negative: bool) -> Expr {
    let v = if negative { -0.0 } else { 0.0 };
    match t {
        DataType::Float32 => Expr::Literal(ScalarValue::Float32(Some(v as f32)), None),
        _ => Expr::Literal(ScalarValue::Float64(Some(v)), None),
    }
}

fn bin(l: Expr, op: Operator, r: Expr) -> Expr {
    Expr::BinaryExpr(BinaryExpr::new(Box::new(l), op, Box::new(r)))
}

const COMPARISONS: [Operator; 8] = [
    Operator::Eq,
    Operator::NotEq,
    Operator::Lt,
    Operator::LtEq,
    Operator::Gt,
    Operator::GtEq,
    Operator::IsDistinctFrom,
    Operator::IsNotDistinctFrom,
];

/// Rewrite one comparison, or `IN` list, whose operands are floats.
fn comparison(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if COMPARISONS.contains(&op) => {
            let t = left.get_type(schema)?;
            if !is_float(&t) || !is_float(&right.get_type(schema)?) {
                return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            }
            match (constant(&left), constant(&right)) {
                // Two constants: folded later, by value. Rare; normalize both.
                (Some(_), Some(_)) => Ok(Transformed::yes(bin(key(*left), op, key(*right)))),
                // A non-zero constant: totalOrder agrees with SQL.
                (None, Some(false)) | (Some(false), None) => {
                    Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                        left,
                        op,
                        right,
                    })))
                }
                (None, Some(true)) => Ok(Transformed::yes(zero_range(*left, op, &t))),
                (Some(true), None) => {
                    let op2 = op.swap().unwrap_or(op);
                    Ok(Transformed::yes(zero_range(*right, op2, &t)))
                }
                (None, None) => Ok(Transformed::yes(bin(key(*left), op, key(*right)))),
            }
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let floaty = is_float(&expr.get_type(schema)?);
            if !floaty {
                return Ok(Transformed::no(Expr::InList(InList {
                    expr,
                    list,
                    negated,
                })));
            }
            let list = list.into_iter().map(key).collect();
            Ok(Transformed::yes(Expr::InList(InList {
                expr: Box::new(key(*expr)),
                list,
                negated,
            })))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// `x op 0` as a range over totalOrder that treats both zeros as zero.
fn zero_range(x: Expr, op: Operator, t: &DataType) -> Expr {
    let neg = || float_lit(t, true);
    let pos = || float_lit(t, false);
    match op {
        Operator::Eq => bin(x.clone(), Operator::GtEq, neg()).and(bin(x, Operator::LtEq, pos())),
        Operator::NotEq => bin(x.clone(), Operator::Lt, neg()).or(bin(x, Operator::Gt, pos())),
        Operator::Lt => bin(x, Operator::Lt, neg()),
        Operator::LtEq => bin(x, Operator::LtEq, pos()),
        Operator::Gt => bin(x, Operator::Gt, pos()),
        Operator::GtEq => bin(x, Operator::GtEq, neg()),
        // IS [NOT] DISTINCT FROM 0: null-safe, so compare normalized values.
        op => bin(key(x), op, pos()),
    }
}

fn key_if_float(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    if is_float(&e.get_type(schema)?) {
        Ok(Transformed::yes(key(e)))
    } else {
        Ok(Transformed::no(e))
    }
}

fn sort_keys(sorts: Vec<Sort>, schema: &DFSchema) -> DfResult<(Vec<Sort>, bool)> {
    let mut changed = false;
    let mut out = Vec::with_capacity(sorts.len());
    for s in sorts {
        let t = key_if_float(s.expr, schema)?;
        changed |= t.transformed;
        out.push(Sort {
            expr: t.data,
            asc: s.asc,
            nulls_first: s.nulls_first,
        });
    }
    Ok((out, changed))
}

/// Window functions' PARTITION BY and ORDER BY keys.
fn window_keys(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    e.transform_up(|e| match e {
        Expr::WindowFunction(mut w) => {
            let WindowFunction { params, .. } = w.as_mut();
            let mut changed = false;
            let mut parts = Vec::with_capacity(params.partition_by.len());
            for p in std::mem::take(&mut params.partition_by) {
                let t = key_if_float(p, schema)?;
                changed |= t.transformed;
                parts.push(t.data);
            }
            params.partition_by = parts;
            let (order, c) = sort_keys(std::mem::take(&mut params.order_by), schema)?;
            params.order_by = order;
            changed |= c;
            Ok(Transformed::new_transformed(
                Expr::WindowFunction(w),
                changed,
            ))
        }
        other => Ok(Transformed::no(other)),
    })
}

#[derive(Debug, Default)]
pub struct FloatZero;

impl AnalyzerRule for FloatZero {
    fn name(&self) -> &str {
        "strata_float_zero"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(rewrite_node)
            .map(|t| t.data)
    }
}

fn rewrite_node(plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    // Comparisons anywhere in the node's expressions, against its input schema
    // (a join's condition against both inputs).
    let schema = match &plan {
        LogicalPlan::Join(j) => Arc::new(j.left.schema().join(j.right.schema())?),
        LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            return Ok(Transformed::no(plan))
        }
        p => match p.inputs().first() {
            Some(i) => i.schema().clone(),
            None => return Ok(Transformed::no(plan)),
        },
    };
    let names = NamePreserver::new(&plan);
    let t = plan.map_expressions(|e| {
        let saved = names.save(&e);
        let t = e.transform_up(|e| comparison(e, &schema))?;
        Ok(if t.transformed {
            t.update_data(|e| saved.restore(e))
        } else {
            t
        })
    })?;
    let changed = t.transformed;
    let plan = t.data;
    let t = match plan {
        LogicalPlan::Sort(mut s) => {
            let (order, c) = sort_keys(std::mem::take(&mut s.expr), s.input.schema())?;
            s.expr = order;
            Transformed::new_transformed(LogicalPlan::Sort(s), c)
        }
        LogicalPlan::Join(mut j) => {
            let mut c = false;
            let mut on = Vec::with_capacity(j.on.len());
            for (l, r) in std::mem::take(&mut j.on) {
                if is_float(&l.get_type(j.left.schema())?)
                    && is_float(&r.get_type(j.right.schema())?)
                {
                    c = true;
                    on.push((key(l), key(r)));
                } else {
                    on.push((l, r));
                }
            }
            j.on = on;
            Transformed::new_transformed(LogicalPlan::Join(j), c)
        }
        LogicalPlan::Window(w) => {
            let input = w.input.clone();
            let names = NamePreserver::new_for_projection();
            let mut c = false;
            let mut exprs = Vec::with_capacity(w.window_expr.len());
            for e in w.window_expr {
                let saved = names.save(&e);
                let t = window_keys(e, input.schema())?;
                c |= t.transformed;
                exprs.push(if t.transformed {
                    saved.restore(t.data)
                } else {
                    t.data
                });
            }
            let window = datafusion::logical_expr::Window::try_new(exprs, input)?;
            Transformed::new_transformed(LogicalPlan::Window(window), c)
        }
        LogicalPlan::Aggregate(a) => {
            let input = a.input.clone();
            let names = NamePreserver::new_for_projection();
            let mut c = false;
            let mut groups = Vec::with_capacity(a.group_expr.len());
            for g in a.group_expr {
                if matches!(g, Expr::GroupingSet(_)) {
                    groups.push(g);
                    continue;
                }
                let saved = names.save(&g);
                let t = key_if_float(g, input.schema())?;
                c |= t.transformed;
                groups.push(if t.transformed {
                    saved.restore(t.data)
                } else {
                    t.data
                });
            }
            let agg = datafusion::logical_expr::Aggregate::try_new(input, groups, a.aggr_expr)?;
            Transformed::new_transformed(LogicalPlan::Aggregate(agg), c)
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let schema = input.schema().clone();
            let mut c = false;
            let mut exprs = Vec::with_capacity(schema.fields().len());
            for (q, f) in schema.iter() {
                let col = Expr::Column(datafusion::common::Column::from((q, f)));
                if is_float(f.data_type()) {
                    c = true;
                    exprs.push(key(col).alias_qualified(q.cloned(), f.name()));
                } else {
                    exprs.push(col);
                }
            }
            if c {
                let proj = datafusion::logical_expr::Projection::try_new(exprs, input)?;
                Transformed::yes(LogicalPlan::Distinct(Distinct::All(Arc::new(
                    LogicalPlan::Projection(proj),
                ))))
            } else {
                Transformed::no(LogicalPlan::Distinct(Distinct::All(input)))
            }
        }
        other => Transformed::no(other),
    };
    let transformed = changed || t.transformed;
    Ok(Transformed::new_transformed(t.data, transformed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    #[test]
    fn normalizes_only_negative_zero() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-0.0),
            Some(0.0),
            None,
            Some(-1.5),
            Some(f64::NAN),
        ]));
        let n = normalize(&a);
        let n = n.as_primitive::<Float64Type>();
        assert_eq!(n.value(0).to_bits(), 0.0f64.to_bits());
        assert_eq!(n.value(1).to_bits(), 0.0f64.to_bits());
        assert!(n.is_null(2));
        assert_eq!(n.value(3), -1.5);
        assert!(n.value(4).is_nan());
        let b: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0]));
        assert!(Arc::ptr_eq(&normalize(&b), &b));
    }
}
