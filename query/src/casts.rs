//! `uuid`, `json` and `jsonb` in SQL.
//!
//! Strata stores these types as text (Arrow `Utf8`) and tags the column's
//! field with its SQL type (see `strata_storage::schema::SqlType`). This
//! module makes the SQL side match:
//!
//! - a [`TypePlanner`] maps `UUID`, `JSON` and `JSONB` (in `CAST`, `::` and
//!   typed literals such as `UUID '…'`) to a tagged text field, so DataFusion
//!   plans the cast and the result column carries the type;
//! - a [`FunctionRewrite`] (run by DataFusion's analyzer before type
//!   coercion) turns each such cast into a call of `strata_uuid` /
//!   `strata_json` / `strata_jsonb`, which check the value (SQLSTATE 22P02 on
//!   bad input) and normalize it as the column would;
//! - the same rewrite brings a text literal compared with a uuid or jsonb
//!   value (`u = 'A0EEBC99-…'`, `u IN ('…')`) into that type first, so that
//!   comparisons follow the type and not the spelling.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::{Cast, InList, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast;
use strata_storage::schema::SqlType;

use crate::error::Result;

/// The SQL type a declared column type or cast target is tagged with.
pub fn sql_tag(t: &ast::DataType) -> Option<SqlType> {
    match t {
        ast::DataType::Uuid => Some(SqlType::Uuid),
        ast::DataType::JSON => Some(SqlType::Json),
        ast::DataType::JSONB => Some(SqlType::Jsonb),
        ast::DataType::Custom(name, mods) if mods.is_empty() => {
            // `pg_catalog.uuid`, `"uuid"`
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(crate::ident::normalize))
                .collect();
            match parts
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice()
            {
                ["uuid"] | ["pg_catalog", "uuid"] => Some(SqlType::Uuid),
                ["json"] | ["pg_catalog", "json"] => Some(SqlType::Json),
                ["jsonb"] | ["pg_catalog", "jsonb"] => Some(SqlType::Jsonb),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The stored field of a column declared `name t` (`CREATE TABLE`): the
/// Arrow type of `sql_type`, tagged for uuid / json / jsonb.
pub fn column_field(name: &str, t: &ast::DataType) -> Result<Field> {
    Ok(match sql_tag(t) {
        Some(tag) => tag.field(name),
        None => Field::new(name, crate::sql::sql_type(t)?, true),
    })
}

/// Register the type planner, the conversion functions and the rewrite.
pub fn register(state: &mut SessionState) -> DfResult<()> {
    for tag in [SqlType::Uuid, SqlType::Json, SqlType::Jsonb] {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(Conform::new(tag))))?;
    }
    state.register_function_rewrite(Arc::new(TypedText))?;
    *state = SessionStateBuilder::new_from_existing(state.clone())
        .with_type_planner(Arc::new(Types))
        .build();
    Ok(())
}

/// `UUID`, `JSON`, `JSONB` as tagged text.
#[derive(Debug)]
struct Types;

impl TypePlanner for Types {
    fn plan_type_field(&self, t: &ast::DataType) -> DfResult<Option<FieldRef>> {
        if let Some(dt) = timestamp_micros(t) {
            return Ok(Some(Arc::new(Field::new("", dt, true))));
        }
        Ok(sql_tag(t).map(|tag| Arc::new(tag.field(""))))
    }
}

/// `TIMESTAMP [WITH TIME ZONE]` (in casts and typed literals) in
/// microseconds, Postgres's precision and what storage keeps. DataFusion
/// plans them in nanoseconds, which end in 2262 (Postgres goes to 294276 AD).
/// An explicit precision of 0 or 3 keeps DataFusion's seconds or milliseconds.
fn timestamp_micros(t: &ast::DataType) -> Option<DataType> {
    use datafusion::arrow::datatypes::TimeUnit;
    let ast::DataType::Timestamp(precision, tz) = t else {
        return None;
    };
    if !matches!(precision, None | Some(6) | Some(9)) {
        return None;
    }
    Some(match tz {
        ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => {
            strata_storage::schema::timestamp_type()
        }
        _ => DataType::Timestamp(TimeUnit::Microsecond, None),
    })
}

fn function_name(tag: SqlType) -> &'static str {
    match tag {
        SqlType::Uuid => "strata_uuid",
        SqlType::Json => "strata_json",
        SqlType::Jsonb => "strata_jsonb",
    }
}

/// `strata_uuid(x)` / `strata_json(x)` / `strata_jsonb(x)`: `x` as text,
/// checked and normalized as a column of that type stores it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Conform {
    tag: SqlType,
    signature: Signature,
}

impl Conform {
    fn new(tag: SqlType) -> Conform {
        Conform {
            tag,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Conform {
    fn name(&self) -> &str {
        function_name(self.tag)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(
            self.tag.field(self.name()).with_nullable(nullable),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.name()
            )));
        };
        let conform = |a: &ArrayRef| -> DfResult<ArrayRef> {
            self.tag
                .conform_array(a, "")
                .map_err(|e| DataFusionError::External(Box::new(e)))
        };
        Ok(match arg {
            ColumnarValue::Array(a) => ColumnarValue::Array(conform(a)?),
            ColumnarValue::Scalar(s) => {
                let out = conform(&s.to_array()?)?;
                ColumnarValue::Scalar(ScalarValue::try_from_array(out.as_ref(), 0)?)
            }
        })
    }
}

/// The analyzer rewrite: casts to uuid / json / jsonb become conversion
/// calls; text literals compared with uuid / jsonb values are converted.
#[derive(Debug)]
struct TypedText;

fn call(tag: SqlType, arg: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(Conform::new(tag))),
        vec![arg],
    ))
}

fn tag_of(e: &Expr, schema: &DFSchema) -> Option<SqlType> {
    let (_, f) = e.to_field(schema).ok()?;
    SqlType::of(&f)
}

fn is_text_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(
            ScalarValue::Utf8(Some(_))
                | ScalarValue::Utf8View(Some(_))
                | ScalarValue::LargeUtf8(Some(_)),
            _
        )
    )
}

/// Types whose values compare by value, not spelling (json has no equality).
fn compares(tag: SqlType) -> bool {
    matches!(tag, SqlType::Uuid | SqlType::Jsonb)
}

impl FunctionRewrite for TypedText {
    fn name(&self) -> &str {
        "strata_typed_text"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> DfResult<Transformed<Expr>> {
        Ok(match expr {
            Expr::Cast(Cast { expr, field }) => match SqlType::of(&field) {
                Some(tag) => Transformed::yes(call(tag, *expr)),
                None => Transformed::no(Expr::Cast(Cast { expr, field })),
            },
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(
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
                let lt = tag_of(&left, schema).filter(|t| compares(*t));
                let rt = tag_of(&right, schema).filter(|t| compares(*t));
                match (lt, rt) {
                    (Some(t), None) if is_text_literal(&right) => {
                        Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                            left,
                            op,
                            right: Box::new(call(t, *right)),
                        }))
                    }
                    (None, Some(t)) if is_text_literal(&left) => {
                        Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                            left: Box::new(call(t, *left)),
                            op,
                            right,
                        }))
                    }
                    _ => Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })),
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) => match tag_of(&expr, schema).filter(|t| compares(*t)) {
                Some(t) if list.iter().any(is_text_literal) => {
                    let list = list
                        .into_iter()
                        .map(|e| if is_text_literal(&e) { call(t, e) } else { e })
                        .collect();
                    Transformed::yes(Expr::InList(InList {
                        expr,
                        list,
                        negated,
                    }))
                }
                _ => Transformed::no(Expr::InList(InList {
                    expr,
                    list,
                    negated,
                })),
            },
            other => Transformed::no(other),
        })
    }
}

/// The Postgres type OID of a uuid / json / jsonb column's field (2950, 114,
/// 3802), for catalogs (`pg_attribute.atttypid`, `format_type`); `None` for
/// any other field (use its Arrow type).
pub fn pg_type_oid(f: &Field) -> Option<i64> {
    SqlType::of(f).map(|t| match t {
        SqlType::Uuid => 2950,
        SqlType::Json => 114,
        SqlType::Jsonb => 3802,
    })
}
