//! SQL text to statements, and the names and types written in it: the
//! helpers the session, the planner's rules and both wire front ends share.
//! (They live apart from the session so that planning code does not import
//! the session it is called from.)

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{self, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{QueryError, Result};
use crate::temporal;

/// An identifier's name: as written if quoted, else lower-cased.
pub fn ident_name(i: &ast::Ident) -> String {
    crate::ident::normalize(i)
}

/// Rewrite the temporal extensions, then parse each statement.
pub fn rewrite_and_parse(
    sql: &str,
    params: &[ScalarValue],
) -> Result<Vec<(temporal::Rewritten, Statement)>> {
    let mut out = Vec::new();
    for rw in temporal::rewrite(sql, params)? {
        let mut parsed = parse(&rw.sql)?;
        if parsed.len() != 1 {
            return Err(QueryError::Syntax(format!(
                "expected one statement in `{}`",
                rw.sql
            )));
        }
        let stmt = parsed.pop().unwrap();
        out.push((rw, stmt));
    }
    Ok(out)
}

/// Split SQL into statements. A statement nesting deeper than
/// [`crate::depth::MAX_EXPR_DEPTH`] is refused (54001) before it is planned.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    use datafusion::sql::sqlparser::parser::ParserError;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;
    let dialect = PostgreSqlDialect {};
    let syntax = |e: ParserError| match e {
        ParserError::RecursionLimitExceeded => crate::depth::too_nested(),
        e => QueryError::Syntax(e.to_string()),
    };
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(e.into()))?;
    crate::depth::check_tokens(&tokens)?;
    // PostgreSQL's dialect with a bound on the parser's work (see depth.rs).
    let budget = crate::depth::ParseBudget::for_tokens(tokens.len());
    let stmts = Parser::new(&budget)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| {
            if budget.exhausted() {
                crate::depth::too_costly()
            } else {
                syntax(e)
            }
        })?;
    for s in &stmts {
        crate::depth::check_statement(s)?;
    }
    Ok(stmts)
}

/// A table name as Strata resolves it: `t`, `public.t` or `strata.public.t`.
pub fn object_name(n: &ast::ObjectName) -> Result<String> {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| p.as_ident().map(crate::ident::normalize))
            .collect::<Option<_>>()
            .ok_or_else(|| QueryError::Unsupported(format!("unsupported name {n}")))?;
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        [c, s, t] if c == "strata" && s == "public" => Ok(t.clone()),
        _ => Err(QueryError::Invalid(format!(
            "unknown schema in `{n}`: Strata tables live in `public`"
        ))),
    }
}

/// Map a declared SQL column type to the Arrow type Strata stores
/// (`uuid`, `json`, `jsonb` are text; `crate::casts::column_field` tags them).
pub fn sql_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as T;
    Ok(match t {
        T::SmallInt(_)
        | T::Int(_)
        | T::Integer(_)
        | T::BigInt(_)
        | T::Int2(_)
        | T::Int4(_)
        | T::Int8(_)
        | T::TinyInt(_) => DataType::Int64,
        T::Real
        | T::Float(_)
        | T::Double(_)
        | T::DoublePrecision
        | T::Float4
        | T::Float8
        | T::Float64 => DataType::Float64,
        T::Text
        | T::Varchar(_)
        | T::Char(_)
        | T::Character(_)
        | T::CharacterVarying(_)
        | T::String(_)
        | T::Uuid
        | T::JSON
        | T::JSONB => DataType::Utf8,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Date => DataType::Date32,
        T::Timestamp(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => {
                strata_storage::schema::timestamp_type()
            }
            _ => DataType::Timestamp(TimeUnit::Microsecond, None),
        },
        T::Time(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            DataType::Time64(TimeUnit::Microsecond)
        }
        T::Interval { .. } => {
            DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
        }
        T::Bytea | T::Blob(_) | T::Binary(_) | T::Varbinary(_) => DataType::Binary,
        T::Numeric(info) | T::Decimal(info) => match info {
            ast::ExactNumberInfo::PrecisionAndScale(p, s) => {
                DataType::Decimal128(*p as u8, *s as i8)
            }
            ast::ExactNumberInfo::Precision(p) => DataType::Decimal128(*p as u8, 0),
            ast::ExactNumberInfo::None => DataType::Decimal128(38, 10),
        },
        T::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _))
        | T::Array(ast::ArrayElemTypeDef::AngleBracket(inner)) => {
            DataType::List(Arc::new(Field::new("item", sql_type(inner)?, true)))
        }
        other => {
            return Err(QueryError::Unsupported(format!(
                "column type {other} is not supported yet"
            )))
        }
    })
}
