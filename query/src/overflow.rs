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

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type, Int8Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
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
