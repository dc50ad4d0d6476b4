//! Postgres's names for unnamed result columns: `SELECT count(*), 1 + 1,
//! x::int` gives columns `count`, `?column?` and `x`, where DataFusion would
//! say `count(*)`, `Int64(1) + Int64(1)` and `t.x`. Clients that read columns
//! by name (and people reading psql) expect the former.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    self, DataType as SqlType, Expr, SelectItem, SetExpr, Statement,
};

/// For each output column of a plain `SELECT` (no `*`), the Postgres name to
/// give it, or None to keep the planner's. None overall if the statement's
/// columns cannot be matched to its select list.
pub fn column_names(stmt: &Statement) -> Option<Vec<Option<String>>> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(expr_name(e)),
            SelectItem::ExprWithAlias { .. } | SelectItem::ExprWithAliases { .. } => Some(None),
            _ => None, // a wildcard: column count unknown here
        })
        .collect()
}

/// Rename `schema`'s fields by `names` (when the counts match).
pub fn rename(schema: &SchemaRef, names: &[Option<String>]) -> SchemaRef {
    if names.len() != schema.fields().len() || names.iter().all(Option::is_none) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| match n {
            Some(n) => f.as_ref().clone().with_name(n.clone()),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn last_ident(n: &ast::ObjectName) -> Option<String> {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(strata_query::ident::normalize)
}

/// The name Postgres gives an unaliased select item; None keeps the planner's
/// (plain column references, which both already name alike).
fn expr_name(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Identifier(_) => return None,
        Expr::CompoundIdentifier(parts) => return parts.last().map(strata_query::ident::normalize),
        Expr::Nested(inner) => return expr_name(inner),
        Expr::Function(f) => last_ident(&f.name).unwrap_or_else(|| "?column?".into()),
        Expr::Cast {
            expr, data_type, ..
        } => match expr_name(expr) {
            Some(n) if n != "?column?" => n,
            None => match expr.as_ref() {
                Expr::Identifier(i) => strata_query::ident::normalize(i),
                _ => type_name(data_type),
            },
            _ => type_name(data_type),
        },
        Expr::TypedString(ts) => type_name(&ts.data_type),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        // A scalar subquery is named by its one column.
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(inner) if inner.projection.len() == 1 => match &inner.projection[0] {
                SelectItem::UnnamedExpr(Expr::Identifier(i)) => strata_query::ident::normalize(i),
                SelectItem::UnnamedExpr(e) => expr_name(e).unwrap_or_else(|| "?column?".into()),
                SelectItem::ExprWithAlias { alias, .. } => strata_query::ident::normalize(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        Expr::Array(_) => "array".into(),
        Expr::Interval(_) => "interval".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        _ => "?column?".into(),
    })
}

/// Postgres's internal name of a declared type (`int4`, `numeric`, …).
fn type_name(t: &SqlType) -> String {
    use SqlType as T;
    match t {
        T::SmallInt(_) | T::Int2(_) => "int2",
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4",
        T::BigInt(_) | T::Int8(_) => "int8",
        T::Real | T::Float4 => "float4",
        T::Double(_) | T::DoublePrecision | T::Float8 | T::Float(_) => "float8",
        T::Numeric(_) | T::Decimal(_) => "numeric",
        T::Boolean | T::Bool => "bool",
        T::Text => "text",
        T::Varchar(_) | T::CharacterVarying(_) => "varchar",
        T::Char(_) | T::Character(_) => "bpchar",
        T::Date => "date",
        T::Time(..) => "time",
        T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => "timestamptz",
        T::Timestamp(..) => "timestamp",
        T::Interval { .. } => "interval",
        T::Bytea => "bytea",
        T::Uuid => "uuid",
        T::JSON => "json",
        T::JSONB => "jsonb",
        T::Array(_) => "array",
        other => return strata_query::ident::fold(&other.to_string()),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Option<Vec<Option<String>>> {
        column_names(&strata_query::sql::parse(sql).unwrap()[0])
    }

    #[test]
    fn postgres_names() {
        let n = |s: &str| Some(s.to_string());
        assert_eq!(
            names("SELECT count(*), 1 + 1, x::int, 'a'::text, name, t.id AS k, CAST(1.5 AS DECIMAL(5,2)), t.v FROM t"),
            Some(vec![n("count"), n("?column?"), n("x"), n("text"), None, None, n("numeric"), n("v")])
        );
        assert_eq!(
            names("SELECT (SELECT count(*) FROM u), (SELECT u.a FROM u), (SELECT b FROM u), (SELECT 1 AS z), (SELECT 1 + 1)"),
            Some(vec![n("count"), n("a"), n("b"), n("z"), n("?column?")])
        );
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(names("SELECT 1 UNION SELECT 2"), None);
    }
}
