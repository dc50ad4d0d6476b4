//! `sum` of integers is `numeric`, as in PostgreSQL.
//!
//! PostgreSQL sums `bigint` into `numeric` (and `integer` / `smallint` into
//! `bigint`), so a sum never overflows and `sum(k) / 3` divides as numeric.
//! DataFusion sums any integer into a wrapping 64-bit integer: a large sum
//! comes back as a wrong, wrapped number, and `sum(k) / 3` is an integer
//! division. This function rewrite (run before type coercion, so the types
//! above the sum are coerced to its new type) casts a 64-bit integer
//! argument of `sum`, as an aggregate or a window function, to
//! `Decimal128(38, 0)`: 38 digits hold the sum of 2^64 values of any bigint
//! and the result is `numeric` on the wire, its name unchanged. Sums of
//! 32-bit and smaller integers stay 64-bit (PostgreSQL's `bigint`), and
//! cannot wrap below 2^32 rows.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, PrimitiveArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Expr, ExprSchemable, WindowFunctionDefinition};

/// The type a bigint sum is computed in.
pub const SUM_OF_BIGINT: DataType = DataType::Decimal128(38, 0);

#[derive(Debug, Default)]
pub struct NumericSum;

/// A bigint as `Decimal128(38, 0)`, the argument of a bigint sum. Every
/// bigint fits, so this is one widening pass; arrow's cast multiplied each
/// value by 10^0 with an overflow check and then checked its precision, a
/// tenth of a simple `sum(bigint)` query's time. Named after its argument
/// alone (as the cast it replaces was), so `sum(x)` keeps its name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BigintAsNumeric {
    signature: Signature,
}

impl Default for BigintAsNumeric {
    fn default() -> Self {
        BigintAsNumeric {
            // Any type: the argument was a bigint when the sum was
            // rewritten, but a subquery's sum below it may since have
            // become numeric too (`sum(s)` over `SELECT sum(v) AS s`).
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for BigintAsNumeric {
    fn name(&self) -> &str {
        "strata_bigint_as_numeric"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(SUM_OF_BIGINT)
    }

    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        match args {
            [a] => Ok(a.schema_name().to_string()),
            _ => Ok(self.name().to_string()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let DataType::Decimal128(p, s) = SUM_OF_BIGINT else {
            unreachable!("SUM_OF_BIGINT is a Decimal128")
        };
        match args.args.first() {
            Some(ColumnarValue::Array(a)) if a.data_type() == &DataType::Int64 => {
                let wide: PrimitiveArray<Decimal128Type> =
                    a.as_primitive::<Int64Type>().unary(i128::from);
                Ok(ColumnarValue::Array(Arc::new(
                    wide.with_precision_and_scale(p, s)?,
                )))
            }
            Some(ColumnarValue::Scalar(ScalarValue::Int64(v))) => Ok(ColumnarValue::Scalar(
                ScalarValue::Decimal128(v.map(i128::from), p, s),
            )),
            // Anything else as the cast this function stands for.
            Some(v) => v.cast_to(&SUM_OF_BIGINT, None),
            None => Err(DataFusionError::Internal(
                "strata_bigint_as_numeric takes one argument".into(),
            )),
        }
    }
}

fn widen(args: &mut [Expr], schema: &DFSchema) -> bool {
    let [arg] = args else {
        return false;
    };
    match arg.get_type(schema) {
        Ok(DataType::Int64) => {
            *arg = Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(BigintAsNumeric::default())),
                vec![arg.clone()],
            ));
            true
        }
        Ok(DataType::UInt64) => {
            *arg = arg
                .clone()
                .cast_to(&SUM_OF_BIGINT, schema)
                .unwrap_or_else(|_| arg.clone());
            true
        }
        _ => false,
    }
}

impl FunctionRewrite for NumericSum {
    fn name(&self) -> &str {
        "strata_numeric_sum"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _: &ConfigOptions,
    ) -> DfResult<Transformed<Expr>> {
        match expr {
            Expr::AggregateFunction(AggregateFunction { func, mut params })
                if func.name() == "sum" =>
            {
                let changed = widen(&mut params.args, schema);
                Ok(Transformed::new_transformed(
                    Expr::AggregateFunction(AggregateFunction { func, params }),
                    changed,
                ))
            }
            Expr::WindowFunction(mut w) if matches!(&w.fun, WindowFunctionDefinition::AggregateUDF(f) if f.name() == "sum") =>
            {
                let changed = widen(&mut w.params.args, schema);
                Ok(Transformed::new_transformed(
                    Expr::WindowFunction(w),
                    changed,
                ))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}
