//! `pg_typeof(expr)`: the Postgres name of the expression's type, as
//! Postgres prints a `regtype` (`bigint`, `text`, `timestamp with time
//! zone`, `uuid`, `integer[]`, …). Strata returns it as text.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [field] = args.arg_fields.as_slice() else {
            return plan_err!("pg_typeof takes one argument");
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(type_name(
            field,
        )))))
    }
}

/// The regtype text of a value of this field's type.
pub fn type_name(field: &datafusion::arrow::datatypes::Field) -> String {
    if field.data_type() == &DataType::Null {
        return "unknown".into();
    }
    if crate::period::period_type() == *field.data_type() {
        return "period".into();
    }
    let (oid, _) = crate::pg_catalog::pg_type_of_field(field);
    crate::pg_catalog::format_type(oid, None).unwrap_or_else(|| "text".into())
}

pub fn register(state: &mut SessionState) -> DfResult<()> {
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgTypeof {
        signature: Signature::any(1, Volatility::Immutable),
    })))?;
    Ok(())
}
