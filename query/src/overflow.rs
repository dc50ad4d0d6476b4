//! Integer arithmetic that fails on overflow, as Postgres's does.
//!
//! DataFusion evaluates `+ - *`, unary minus and `abs` on integers with
//! wrapping kernels (`9223372036854775807 + 1` is `-9223372036854775808`),
//! and its physical planner never asks `BinaryExpr` for its checked mode. An
//! analyzer rule, run after type coercion, replaces that arithmetic on
//! integer operands with calls of the checked functions below (names kept,
//! so result columns read as before). They use arrow's checked kernels and
//! fail with Postgres's words and SQLSTATE: `bigint out of range` /
//! `integer out of range` / `smallint out of range` (22003), `division by
//! zero` (22012). Constant folding evaluates the same functions, so an
//! overflow among literals is the same error, raised when the statement runs
//! (and before a write: DML computes its rows before committing any).
//! Division by zero is also refused for floating-point operands.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::compute::binary;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Int16Type, Int32Type, Int64Type, Int8Type,
};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

/// A value does not fit its type (SQLSTATE 22003) or a division by zero
/// (22012), carried through DataFusion as an external error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArithmeticError {
    #[error("{0}")]
    OutOfRange(String),
    #[error("division by zero")]
    DivisionByZero,
}

impl ArithmeticError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ArithmeticError::OutOfRange(_) => "22003",
            ArithmeticError::DivisionByZero => "22012",
        }
    }
}

/// The Postgres name of an integer type, for `… out of range`.
pub fn int_type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        _ => "bigint",
    }
}

fn is_int(t: &DataType) -> bool {
    t.is_integer()
}

fn out_of_range(t: &DataType) -> DataFusionError {
    DataFusionError::External(Box::new(ArithmeticError::OutOfRange(format!(
        "{} out of range",
        int_type_name(t)
    ))))
}

fn map_arrow(e: ArrowError, t: &DataType) -> DataFusionError {
    match e {
        ArrowError::DivideByZero => {
            DataFusionError::External(Box::new(ArithmeticError::DivisionByZero))
        }
        ArrowError::ArithmeticOverflow(_) => out_of_range(t),
        other => DataFusionError::ArrowError(Box::new(other), None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Neg,
    Abs,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "strata_checked_add",
            Op::Sub => "strata_checked_sub",
            Op::Mul => "strata_checked_mul",
            Op::Div => "strata_checked_div",
            Op::Rem => "strata_checked_rem",
            Op::Neg => "strata_checked_neg",
            Op::Abs => "strata_checked_abs",
        }
    }

    fn binary(op: Operator) -> Option<Op> {
        Some(match op {
            Operator::Plus => Op::Add,
            Operator::Minus => Op::Sub,
            Operator::Multiply => Op::Mul,
            Operator::Divide => Op::Div,
            Operator::Modulo => Op::Rem,
            _ => return None,
        })
    }
}

/// One checked operation on integers (or a division on floats).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Op,
    signature: Signature,
}

impl Checked {
    fn udf(op: Op) -> ScalarUDF {
        let arity = if matches!(op, Op::Neg | Op::Abs) {
            1
        } else {
            2
        };
        ScalarUDF::new_from_impl(Checked {
            op,
            signature: Signature::any(arity, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let t = args.return_field.data_type().clone();
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = match self.op {
            Op::Neg => numeric::neg(&arrays[0]).map_err(|e| map_arrow(e, &t))?,
            Op::Abs => abs(&arrays[0])?,
            op => {
                let (l, r) = (&arrays[0], &arrays[1]);
                if matches!(op, Op::Div | Op::Rem) && has_zero(l, r)? {
                    return Err(DataFusionError::External(Box::new(
                        ArithmeticError::DivisionByZero,
                    )));
                }
                let r = match op {
                    Op::Add => numeric::add(l, r),
                    Op::Sub => numeric::sub(l, r),
                    Op::Mul => numeric::mul(l, r),
                    Op::Div => numeric::div(l, r),
                    // Postgres: x % -1 is 0, also for the smallest value.
                    Op::Rem => numeric::rem(l, r).or_else(|e| match e {
                        ArrowError::ArithmeticOverflow(_) => rem_minus_one(l, r),
                        e => Err(e),
                    }),
                    Op::Neg | Op::Abs => unreachable!(),
                };
                r.map_err(|e| map_arrow(e, &t))?
            }
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Does a divisor hold a zero where the dividend is not NULL (Postgres's
/// division is strict: NULL / 0 is NULL)?
fn has_zero(l: &ArrayRef, r: &ArrayRef) -> DfResult<bool> {
    use datafusion::arrow::compute::{and, is_not_null};
    let zero = ScalarValue::new_zero(r.data_type())?.to_scalar()?;
    let eq = datafusion::arrow::compute::kernels::cmp::eq(r, &zero)?;
    Ok(and(&eq, &is_not_null(l.as_ref())?)?.true_count() > 0)
}

/// `l % r` where some `r` is -1 and `l` the type's smallest value.
fn rem_minus_one(l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let err = |e: DataFusionError| ArrowError::ComputeError(e.to_string());
    let minus_one = ScalarValue::new_negative_one(r.data_type())
        .and_then(|s| s.to_scalar())
        .map_err(err)?;
    let is_m1 = datafusion::arrow::compute::kernels::cmp::eq(r, &minus_one)?;
    // Where r is -1 the remainder is 0: compute with r replaced by 1.
    let one = ScalarValue::new_one(r.data_type())
        .and_then(|s| s.to_array_of_size(r.len()))
        .map_err(err)?;
    let r2 = datafusion::arrow::compute::kernels::zip::zip(&is_m1, &one, r)?;
    numeric::rem(l, &r2)
}

fn abs(a: &ArrayRef) -> DfResult<ArrayRef> {
    let t = a.data_type().clone();
    macro_rules! signed {
        ($ty:ty) => {{
            let arr = a.as_primitive::<$ty>();
            let out = arr.try_unary::<_, $ty, _>(|v| {
                v.checked_abs()
                    .ok_or_else(|| ArrowError::ArithmeticOverflow(String::new()))
            });
            Arc::new(out.map_err(|e| map_arrow(e, &t))?) as ArrayRef
        }};
    }
    Ok(match &t {
        DataType::Int8 => signed!(Int8Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int64 => signed!(Int64Type),
        t if t.is_unsigned_integer() => a.clone(),
        other => {
            return Err(DataFusionError::Internal(format!(
                "strata_checked_abs on {other}"
            )))
        }
    })
}

/// `+ - *` on two Decimal128 operands, as arrow's kernel computes them
/// (same result type and values), without its per-value overflow check
/// when the operands' largest magnitudes show no value can overflow
/// `i128`: arrow multiplies and adds through `mul_checked` / `add_checked`
/// on every value (a call per value for multiplication), which was a third
/// of TPC-H Q1's time. When the bound does not rule overflow out, arrow's
/// kernel runs as before (and errs as before).
#[derive(Debug, PartialEq, Eq, Hash)]
struct DecimalArith {
    op: Op,
    signature: Signature,
}

impl DecimalArith {
    fn name_of(op: Op) -> &'static str {
        match op {
            Op::Add => "strata_decimal_add",
            Op::Sub => "strata_decimal_sub",
            _ => "strata_decimal_mul",
        }
    }

    fn udf(op: Op) -> ScalarUDF {
        ScalarUDF::new_from_impl(DecimalArith {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        })
    }

    /// The result type arrow's kernel gives (None: not two Decimal128s,
    /// or an operation it refuses, left to it).
    fn result_type(op: Op, l: &DataType, r: &DataType) -> Option<DataType> {
        let (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) = (l, r) else {
            return None;
        };
        let (p1, s1, p2, s2) = (*p1 as i16, *s1 as i16, *p2 as i16, *s2 as i16);
        let (p, s) = match op {
            Op::Add | Op::Sub => {
                let s = s1.max(s2);
                ((s + (p1 - s1).max(p2 - s2) + 1).min(38), s)
            }
            Op::Mul => ((p1 + p2 + 1).min(38), s1 + s2),
            _ => return None,
        };
        (s1 >= 0 && s2 >= 0 && s <= 38 && p >= 1).then(|| DataType::Decimal128(p as u8, s as i8))
    }

    /// The multipliers that bring each side to the result scale.
    fn scale_factors(op: Op, l: &DataType, r: &DataType) -> (i128, i128) {
        match (op, l, r) {
            (Op::Add | Op::Sub, DataType::Decimal128(_, s1), DataType::Decimal128(_, s2)) => {
                let s = (*s1).max(*s2);
                (10i128.pow((s - s1) as u32), 10i128.pow((s - s2) as u32))
            }
            _ => (1, 1),
        }
    }
}

/// The largest magnitude among a decimal operand's values (NULL slots
/// included: harmless, they only make the bound looser).
fn max_magnitude(v: &ColumnarValue) -> DfResult<f64> {
    Ok(match v {
        ColumnarValue::Scalar(ScalarValue::Decimal128(x, _, _)) => {
            x.map_or(0.0, |x| x.unsigned_abs() as f64)
        }
        ColumnarValue::Scalar(_) => f64::INFINITY,
        ColumnarValue::Array(a) => a
            .as_primitive::<Decimal128Type>()
            .values()
            .iter()
            .map(|x| x.unsigned_abs())
            .max()
            .unwrap_or(0) as f64,
    })
}

impl ScalarUDFImpl for DecimalArith {
    fn name(&self) -> &str {
        Self::name_of(self.op)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Self::result_type(self.op, &args[0], &args[1]).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "{} takes two decimals, not {} and {}",
                self.name(),
                args[0],
                args[1]
            ))
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (l, r) = (&args.args[0], &args.args[1]);
        let t = args.return_field.data_type().clone();
        let DataType::Decimal128(p, s) = t else {
            return Err(DataFusionError::Internal(format!(
                "{} returns a decimal, not {t}",
                self.name()
            )));
        };
        let (lm, rm) = Self::scale_factors(self.op, &l.data_type(), &r.data_type());
        // Far below i128::MAX (1.7e38), so float rounding cannot matter.
        const SAFE: f64 = 1e37;
        let (ml, mr) = (max_magnitude(l)?, max_magnitude(r)?);
        let fits = match self.op {
            Op::Mul => ml * mr < SAFE,
            _ => ml * (lm as f64) + mr * (rm as f64) < SAFE,
        };
        if !fits {
            let arrays = ColumnarValue::values_to_arrays(&args.args)?;
            let (la, ra) = (&arrays[0], &arrays[1]);
            let out = match self.op {
                Op::Add => numeric::add_wrapping(la, ra),
                Op::Sub => numeric::sub_wrapping(la, ra),
                _ => numeric::mul_wrapping(la, ra),
            }?;
            return Ok(
                if matches!((l, r), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
                } else {
                    ColumnarValue::Array(out)
                },
            );
        }
        // Each result also fits an i64 when the bound says so: then the
        // arithmetic runs on i64 (one multiply instead of three).
        const SAFE_64: f64 = 9e18;
        let narrow = match self.op {
            Op::Mul => ml * mr < SAFE_64,
            _ => ml * (lm as f64) + mr * (rm as f64) < SAFE_64,
        };
        let out = match (self.op, narrow) {
            (Op::Mul, true) => apply(l, r, |a, b| ((a as i64).wrapping_mul(b as i64)) as i128),
            (Op::Mul, false) => apply(l, r, |a, b| a.wrapping_mul(b)),
            (Op::Add, true) => {
                let (lm, rm) = (lm as i64, rm as i64);
                apply(l, r, move |a, b| {
                    ((a as i64)
                        .wrapping_mul(lm)
                        .wrapping_add((b as i64).wrapping_mul(rm))) as i128
                })
            }
            (Op::Add, false) => apply(l, r, move |a, b| {
                a.wrapping_mul(lm).wrapping_add(b.wrapping_mul(rm))
            }),
            (_, true) => {
                let (lm, rm) = (lm as i64, rm as i64);
                apply(l, r, move |a, b| {
                    ((a as i64)
                        .wrapping_mul(lm)
                        .wrapping_sub((b as i64).wrapping_mul(rm))) as i128
                })
            }
            (_, false) => apply(l, r, move |a, b| {
                a.wrapping_mul(lm).wrapping_sub(b.wrapping_mul(rm))
            }),
        }?;
        Ok(match out {
            ColumnarValue::Array(a) => ColumnarValue::Array(Arc::new(
                a.as_primitive::<Decimal128Type>()
                    .clone()
                    .with_precision_and_scale(p, s)?,
            )),
            ColumnarValue::Scalar(ScalarValue::Decimal128(v, _, _)) => {
                ColumnarValue::Scalar(ScalarValue::Decimal128(v, p, s))
            }
            other => other,
        })
    }
}

/// `f` over the values of two decimal operands (arrays or scalars), NULL
/// where either is; the result's precision and scale are set by the caller.
fn apply(
    l: &ColumnarValue,
    r: &ColumnarValue,
    f: impl Fn(i128, i128) -> i128 + Copy,
) -> DfResult<ColumnarValue> {
    let out: PrimitiveArray<Decimal128Type> = match (l, r) {
        (ColumnarValue::Array(a), ColumnarValue::Array(b)) => binary(
            a.as_primitive::<Decimal128Type>(),
            b.as_primitive::<Decimal128Type>(),
            f,
        )?,
        (ColumnarValue::Array(a), ColumnarValue::Scalar(b)) => match scalar_decimal(b) {
            Some(b) => a.as_primitive::<Decimal128Type>().unary(|a| f(a, b)),
            None => PrimitiveArray::new_null(a.len()),
        },
        (ColumnarValue::Scalar(a), ColumnarValue::Array(b)) => match scalar_decimal(a) {
            Some(a) => b.as_primitive::<Decimal128Type>().unary(|b| f(a, b)),
            None => PrimitiveArray::new_null(b.len()),
        },
        (ColumnarValue::Scalar(a), ColumnarValue::Scalar(b)) => {
            let v = scalar_decimal(a)
                .zip(scalar_decimal(b))
                .map(|(a, b)| f(a, b));
            return Ok(ColumnarValue::Scalar(ScalarValue::Decimal128(v, 38, 0)));
        }
    };
    Ok(ColumnarValue::Array(Arc::new(out)))
}

fn scalar_decimal(v: &ScalarValue) -> Option<i128> {
    match v {
        ScalarValue::Decimal128(x, _, _) => *x,
        _ => None,
    }
}

/// The analyzer rule: integer `+ - * / %`, unary minus and `abs`, and float
/// `/ %`, become the checked functions.
#[derive(Debug, Default)]
pub struct CheckedArithmetic;

impl AnalyzerRule for CheckedArithmetic {
    fn name(&self) -> &str {
        "strata_checked_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = match plan.inputs().as_slice() {
                [] => match &plan {
                    LogicalPlan::TableScan(s) => s.projected_schema.as_ref().clone(),
                    _ => DFSchema::empty(),
                },
                inputs => merge_schema(inputs),
            };
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|e| {
                let saved = names.save(&e);
                let t = e.transform_up(|e| rewrite(e, &schema))?;
                Ok(if t.transformed {
                    t.update_data(|e| saved.restore(e))
                } else {
                    t
                })
            })
        })
        .map(|t| t.data)
    }
}

fn call_decimal(op: Op, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(DecimalArith::udf(op)),
        args,
    ))
}

fn call(op: Op, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(Checked::udf(op)), args))
}

/// The type of `e`. A checked call this rule made has its first
/// argument's type: found by walking down to it, not by `Expr::get_type`,
/// which for a function call works out the fields (names included) of
/// every call below it. The rule asks at each level of a chain like
/// `1+1+…+1`, which made planning one of 1,000 terms take minutes (cubic).
fn type_of(mut e: &Expr, schema: &DFSchema) -> Option<DataType> {
    loop {
        match e {
            Expr::ScalarFunction(f) if f.func.inner().downcast_ref::<Checked>().is_some() => {
                e = f.args.first()?;
            }
            Expr::ScalarFunction(f) if f.func.inner().downcast_ref::<DecimalArith>().is_some() => {
                let op = f.func.inner().downcast_ref::<DecimalArith>()?.op;
                let l = type_of(f.args.first()?, schema)?;
                let r = type_of(f.args.get(1)?, schema)?;
                return DecimalArith::result_type(op, &l, &r);
            }
            other => return other.get_type(schema).ok(),
        }
    }
}

fn rewrite(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let ty = |e: &Expr| type_of(e, schema);
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (lt, rt) = (ty(&left), ty(&right));
            let checked = match (Op::binary(op), &lt, &rt) {
                (Some(o), Some(l), Some(r)) if l == r && is_int(l) => Some(o),
                (Some(o @ (Op::Div | Op::Rem)), Some(l), Some(r)) if l == r && l.is_floating() => {
                    Some(o)
                }
                _ => None,
            };
            // Decimal + - *: the fast path, where it gives what DataFusion
            // would (the same result type as its coercion plans).
            let decimal = match (Op::binary(op), &lt, &rt) {
                (Some(o @ (Op::Add | Op::Sub | Op::Mul)), Some(l), Some(r)) => {
                    DecimalArith::result_type(o, l, r)
                        .filter(|t| {
                            BinaryTypeCoercer::new(l, &op, r)
                                .get_result_type()
                                .is_ok_and(|planned| &planned == t)
                        })
                        .map(|_| o)
                }
                _ => None,
            };
            if let Some(o) = decimal {
                return Ok(Transformed::yes(call_decimal(o, vec![*left, *right])));
            }
            match checked {
                Some(o) => Ok(Transformed::yes(call(o, vec![*left, *right]))),
                None => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                }))),
            }
        }
        Expr::Negative(inner) => match ty(&inner) {
            Some(t) if is_int(&t) && t.is_signed_integer() => {
                Ok(Transformed::yes(call(Op::Neg, vec![*inner])))
            }
            _ => Ok(Transformed::no(Expr::Negative(inner))),
        },
        Expr::ScalarFunction(f)
            if f.func.name() == "abs"
                && f.args.len() == 1
                && ty(&f.args[0]).is_some_and(|t| t.is_signed_integer()) =>
        {
            Ok(Transformed::yes(call(Op::Abs, f.args)))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// Register the checked functions and the rule (after type coercion).
pub fn register(state: &mut SessionState) -> DfResult<()> {
    use datafusion::execution::FunctionRegistry;
    for op in [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Rem,
        Op::Neg,
        Op::Abs,
    ] {
        state.register_udf(Arc::new(Checked::udf(op)))?;
    }
    for op in [Op::Add, Op::Sub, Op::Mul] {
        state.register_udf(Arc::new(DecimalArith::udf(op)))?;
    }
    state.add_analyzer_rule(Arc::new(CheckedArithmetic));
    Ok(())
}

/// A cast failure worded the Postgres way, when it is one: a number that
/// does not fit the target integer type (22003).
pub fn cast_out_of_range(msg: &str) -> Option<ArithmeticError> {
    // arrow: "Can't cast value 3000000000 to type Int32"
    if let Some(rest) = msg.split("Can't cast value ").nth(1) {
        let target = rest.rsplit("to type ").next()?.trim();
        let name = match target {
            "Int8" | "Int16" | "UInt8" => "smallint",
            "Int32" | "UInt16" => "integer",
            "Int64" | "UInt32" | "UInt64" => "bigint",
            _ => return None,
        };
        return Some(ArithmeticError::OutOfRange(format!("{name} out of range")));
    }
    // arrow: "Cannot cast string '3000000000' to value of Int32 type"
    if let Some(rest) = msg.split("Cannot cast string '").nth(1) {
        let (value, tail) = rest.split_once("' to value of ")?;
        let target = tail.split_whitespace().next()?;
        let name = match target {
            "Int16" | "Int8" => "smallint",
            "Int32" => "integer",
            "Int64" => "bigint",
            _ => return None,
        };
        // Only a well-formed integer that does not fit is out of range.
        value.trim().parse::<i128>().ok()?;
        return Some(ArithmeticError::OutOfRange(format!(
            "value \"{value}\" is out of range for type {name}"
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Decimal128Array;
    use datafusion::arrow::datatypes::Field;

    fn dec(v: Vec<Option<i128>>, p: u8, s: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    }

    fn run(op: Op, l: ColumnarValue, r: ColumnarValue, n: usize) -> DfResult<ArrayRef> {
        let t = DecimalArith::result_type(op, &l.data_type(), &r.data_type()).unwrap();
        let out = DecimalArith::udf(op).invoke_with_args(ScalarFunctionArgs {
            arg_fields: vec![
                Arc::new(Field::new("l", l.data_type(), true)),
                Arc::new(Field::new("r", r.data_type(), true)),
            ],
            args: vec![l, r],
            number_rows: n,
            return_field: Arc::new(Field::new("out", t, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?;
        out.to_array(n)
    }

    fn arrow(op: Op, l: &ArrayRef, r: &ArrayRef) -> Result<ArrayRef, ArrowError> {
        match op {
            Op::Add => numeric::add_wrapping(l, r),
            Op::Sub => numeric::sub_wrapping(l, r),
            _ => numeric::mul_wrapping(l, r),
        }
    }

    /// The fast path gives arrow's kernel's type and values, for arrays
    /// and scalars on either side, different scales and NULLs; past the
    /// bound it is arrow's kernel (and its overflow error).
    #[test]
    fn decimal_arithmetic_equals_arrows_kernel() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let n = 1000;
        for (p1, s1, p2, s2) in [
            (15, 2, 15, 2),
            (15, 2, 20, 0),
            (38, 4, 23, 2),
            (10, 0, 12, 6),
            (3, 1, 4, 2),
            (9, 2, 9, 0),
        ] {
            let mut col = |p: u8| -> Vec<Option<i128>> {
                let m = 10i128.pow(p.min(15) as u32);
                (0..n)
                    .map(|i| (i % 17 != 0).then(|| (next() as i128 % m) - m / 2))
                    .collect()
            };
            let (l, r) = (dec(col(p1), p1, s1), dec(col(p2), p2, s2));
            for op in [Op::Add, Op::Sub, Op::Mul] {
                let want = arrow(op, &l, &r).unwrap();
                let got = run(
                    op,
                    ColumnarValue::Array(l.clone()),
                    ColumnarValue::Array(r.clone()),
                    n,
                )
                .unwrap();
                assert_eq!(
                    got.as_ref(),
                    want.as_ref(),
                    "{op:?} ({p1},{s1}) ({p2},{s2})"
                );
                // A scalar on either side.
                let one = ScalarValue::Decimal128(Some(100), p2, s2);
                let want = arrow(op, &l, &one.to_array_of_size(n).unwrap()).unwrap();
                let got = run(
                    op,
                    ColumnarValue::Array(l.clone()),
                    ColumnarValue::Scalar(one.clone()),
                    n,
                )
                .unwrap();
                assert_eq!(got.as_ref(), want.as_ref(), "{op:?} array, scalar");
                let want = arrow(op, &one.to_array_of_size(n).unwrap(), &l).unwrap();
                let got = run(
                    op,
                    ColumnarValue::Scalar(one),
                    ColumnarValue::Array(l.clone()),
                    n,
                )
                .unwrap();
                assert_eq!(got.as_ref(), want.as_ref(), "{op:?} scalar, array");
            }
        }
        // Past the bound: arrow's kernel, overflow error included.
        let big = dec(vec![Some(10i128.pow(37)), None], 38, 0);
        let err = run(
            Op::Mul,
            ColumnarValue::Array(big.clone()),
            ColumnarValue::Array(big.clone()),
            2,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Overflow"), "{err}");
        let small = dec(vec![Some(3), Some(4)], 38, 0);
        let got = run(
            Op::Mul,
            ColumnarValue::Array(big.clone()),
            ColumnarValue::Array(small.clone()),
            2,
        )
        .unwrap();
        assert_eq!(got.as_ref(), arrow(Op::Mul, &big, &small).unwrap().as_ref());
    }
}
