//! Postgres names `SELECT a::text` after `a`. DataFusion does too, but then
//! refuses `SELECT a::text FROM t ORDER BY a`: the sort key `a` is added to
//! the projection as a hidden column with the same name ("Projections require
//! unique expression names", apache/datafusion#13558). Tools send exactly this
//! (`SELECT column_name::text … ORDER BY column_name`). Giving such a cast the
//! alias it would be named by anyway lets ORDER BY resolve to the output
//! column, which is also what Postgres does.

use std::ops::ControlFlow;

use crate::sql::ident_name as norm;

use datafusion::sql::sqlparser::ast::{
    Expr, OrderByKind, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut,
};

/// Alias unaliased casts of plain columns in queries that have an ORDER BY.
pub fn alias_sorted_casts(stmt: &mut Statement) {
    let _ = stmt.visit(&mut Aliaser);
}

struct Aliaser;

fn cast_column_name(e: &Expr) -> Option<datafusion::sql::sqlparser::ast::Ident> {
    match e {
        Expr::Cast { expr, .. } => match expr.as_ref() {
            Expr::Identifier(i) => Some(i.clone()),
            Expr::CompoundIdentifier(parts) => parts.last().cloned(),
            Expr::Cast { .. } => cast_column_name(expr),
            _ => None,
        },
        _ => None,
    }
}

fn output_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(norm(alias)),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(norm(i)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => p.last().map(norm),
        // A scalar subquery is named by its one column, as in Postgres
        // (DataFusion does so too, unqualified, so `SELECT a, (SELECT x.a
        // …)` repeats the name `a`).
        SelectItem::UnnamedExpr(Expr::Subquery(q)) => match q.body.as_ref() {
            SetExpr::Select(inner) if inner.projection.len() == 1 => {
                output_name(&inner.projection[0])
            }
            _ => None,
        },
        SelectItem::UnnamedExpr(e) => cast_column_name(e).map(|i| norm(&i)),
        _ => None,
    }
}

impl VisitorMut for Aliaser {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        // The bare names ORDER BY sorts on (the failing case; a name inside
        // an expression still means the input column, as in Postgres).
        let sort_names: Vec<String> = match &query.order_by {
            Some(ob) => match &ob.kind {
                OrderByKind::Expressions(es) => es
                    .iter()
                    .filter_map(|o| match &o.expr {
                        Expr::Identifier(i) => Some(norm(i)),
                        _ => None,
                    })
                    .collect(),
                _ => vec![],
            },
            None => vec![],
        };
        if sort_names.is_empty() {
            return ControlFlow::Continue(());
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let names: Vec<Option<String>> = select.projection.iter().map(output_name).collect();
        for (i, item) in select.projection.iter_mut().enumerate() {
            let SelectItem::UnnamedExpr(e) = item else {
                continue;
            };
            let Some(alias) = cast_column_name(e) else {
                continue;
            };
            if !sort_names.contains(&norm(&alias)) {
                continue;
            }
            // Two items named alike stay as they are (the planner decides).
            let unique = names
                .iter()
                .enumerate()
                .all(|(j, n)| j == i || n.as_deref() != names[i].as_deref());
            if unique {
                *item = SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias,
                };
            }
        }
        ControlFlow::Continue(())
    }
}

/// Marks a planning name given to a repeated output column; what follows it
/// is not part of the column's name (see [`client_name`]).
pub const DUPLICATE_MARK: &str = "\u{1}#";

/// The name a client sees for an output column planned as `name`.
pub fn client_name(name: &str) -> &str {
    match name.find(DUPLICATE_MARK) {
        Some(i) => &name[..i],
        None => name,
    }
}

/// Postgres allows output columns named alike (`SELECT v, 'gen', v`, `SELECT
/// 7 AS c, - c AS c`); DataFusion's projections need distinct names. Every
/// repeat of a name in the outermost select list is planned under the name
/// plus [`DUPLICATE_MARK`] and its position, which the session strips from
/// the result's schema, so clients see the names they wrote.
pub fn unique_output_names(stmt: &mut Statement) {
    let Statement::Query(q) = stmt else {
        return;
    };
    let mut body = q.body.as_mut();
    // A set operation's columns are named by its first SELECT.
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_mut();
    }
    let SetExpr::Select(select) = body else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let Some(name) = output_name(item) else {
            continue;
        };
        if seen.insert(name.clone()) {
            continue;
        }
        let alias = datafusion::sql::sqlparser::ast::Ident::with_quote(
            '"',
            format!("{name}{DUPLICATE_MARK}{}", i + 1),
        );
        *item = match std::mem::replace(
            item,
            SelectItem::UnnamedExpr(Expr::value(datafusion::sql::sqlparser::ast::Value::Null)),
        ) {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                SelectItem::ExprWithAlias { expr, alias }
            }
            other => other,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> String {
        let mut s = crate::sql::parse(sql).unwrap().pop().unwrap();
        alias_sorted_casts(&mut s);
        s.to_string()
    }

    #[test]
    fn aliases_casts_only_where_order_by_needs_it() {
        assert_eq!(
            rewrite("SELECT c.name::text, x FROM t AS c ORDER BY name"),
            "SELECT c.name::TEXT AS name, x FROM t AS c ORDER BY name"
        );
        assert_eq!(
            rewrite("SELECT name::text FROM t"),
            "SELECT name::TEXT FROM t"
        );
        assert_eq!(
            rewrite("SELECT name::text, name FROM t ORDER BY 1"),
            "SELECT name::TEXT, name FROM t ORDER BY 1"
        );
        assert_eq!(
            rewrite("SELECT * FROM (SELECT CAST(a AS INT) FROM t ORDER BY a) AS s"),
            "SELECT * FROM (SELECT CAST(a AS INT) AS a FROM t ORDER BY a) AS s"
        );
    }
}
