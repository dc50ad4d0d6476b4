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

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{Expr, ExprSchemable, WindowFunctionDefinition};

/// The type a bigint sum is computed in.
pub const SUM_OF_BIGINT: DataType = DataType::Decimal128(38, 0);

#[derive(Debug, Default)]
pub struct NumericSum;

fn widen(args: &mut [Expr], schema: &DFSchema) -> bool {
    let [arg] = args else {
        return false;
    };
    match arg.get_type(schema) {
        Ok(DataType::Int64 | DataType::UInt64) => {
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
