//! `SELECT *` over a Strata table returns `_id` and the user's columns; the
//! four temporal columns are there to be named (`SELECT *, _valid_from`) but
//! are not part of `*`, as in XTDB and SQL:2011 application-time tables.
//!
//! Every Strata table exposes all four temporal columns to the planner, so
//! this is done on the statement before planning: each wildcard whose source
//! is a Strata table gets `EXCLUDE (_valid_from, _valid_to, _system_from,
//! _system_to)`. Wildcards over derived tables and CTEs are left alone: their
//! columns are whatever the inner query chose, temporal ones included.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ExcludeSelectItem, Expr, Ident, JoinConstraint, JoinOperator, ObjectName, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableWithJoins,
    VisitMut, VisitorMut, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::tokenizer::Span;
use strata_storage::schema::TEMPORAL_COLUMNS;

/// Resolves a table reference to the user columns of a Strata table, or
/// `None` when it is not one (a catalog view, an unknown name).
pub(crate) trait StrataTables {
    fn user_columns(&self, name: &ObjectName) -> Option<Vec<String>>;
}

impl<F: Fn(&ObjectName) -> Option<Vec<String>>> StrataTables for F {
    fn user_columns(&self, name: &ObjectName) -> Option<Vec<String>> {
        self(name)
    }
}

/// Rewrite the wildcards of `stmt` (in place) as described in the module docs.
pub(crate) fn hide_temporal_columns(stmt: &mut Statement, tables: &dyn StrataTables) {
    let mut v = Hider {
        tables,
        ctes: Vec::new(),
    };
    let _ = stmt.visit(&mut v);
}

struct Hider<'a> {
    tables: &'a dyn StrataTables,
    /// CTE names in scope, innermost last.
    ctes: Vec<HashSet<String>>,
}

/// What a FROM item is, for wildcard purposes.
enum Source {
    /// A Strata table, with its user columns.
    Strata(Vec<String>),
    /// Anything else (derived table, CTE, function, catalog view).
    Other,
}

impl Hider<'_> {
    fn is_cte(&self, name: &ObjectName) -> bool {
        name.0.len() == 1
            && name.0[0].as_ident().is_some_and(|i| {
                let n = normal(i);
                self.ctes.iter().any(|s| s.contains(&n))
            })
    }

    fn classify(&self, f: &TableFactor) -> Source {
        match f {
            TableFactor::Table {
                name, args: None, ..
            } if !self.is_cte(name) => match self.tables.user_columns(name) {
                Some(cols) => Source::Strata(cols),
                None => Source::Other,
            },
            _ => Source::Other,
        }
    }

    fn rewrite_select(&self, select: &mut Select) {
        // Each FROM relation: (qualifier, source).
        let mut rels: Vec<(Option<ObjectName>, Source)> = Vec::new();
        let mut using_or_natural = false;
        // The USING columns of all joins, if every such join is USING (not NATURAL).
        let mut using_cols: Option<Vec<String>> = Some(Vec::new());
        for twj in &mut select.from {
            self.collect(twj, &mut rels, &mut using_or_natural, &mut using_cols);
        }
        if rels.is_empty() || !rels.iter().any(|(_, s)| matches!(s, Source::Strata(_))) {
            return;
        }
        let all_strata = rels.iter().all(|(_, s)| matches!(s, Source::Strata(_)));
        let strata_quals: HashSet<String> = rels
            .iter()
            .filter(|(_, s)| matches!(s, Source::Strata(_)))
            .filter_map(|(q, _)| q.as_ref().map(|q| crate::ident::fold(&q.to_string())))
            .collect();
        let mut items = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            match item {
                // One Strata table: exclude by unqualified name.
                SelectItem::Wildcard(mut opts) if all_strata && rels.len() == 1 => {
                    exclude_temporal(&mut opts);
                    items.push(SelectItem::Wildcard(opts));
                }
                // Joined USING (…): the join columns once, then each
                // relation's other columns, as Postgres lists them.
                SelectItem::Wildcard(opts)
                    if using_or_natural
                        && is_plain(&opts)
                        && using_cols.is_some()
                        && rels.iter().all(|(q, _)| q.is_some()) =>
                {
                    let using = using_cols.as_ref().unwrap();
                    for u in using {
                        items.push(SelectItem::UnnamedExpr(Expr::Identifier(
                            Ident::with_quote('"', u.clone()),
                        )));
                    }
                    for (q, src) in &rels {
                        let mut o = WildcardAdditionalOptions::default();
                        if matches!(src, Source::Strata(_)) {
                            exclude_temporal(&mut o);
                        }
                        exclude_names(&mut o, using);
                        items.push(SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(q.clone().unwrap()),
                            o,
                        ));
                    }
                }
                SelectItem::Wildcard(opts)
                    if !using_or_natural
                        && is_plain(&opts)
                        && rels.iter().all(|(q, _)| q.is_some()) =>
                {
                    // Several sources: one qualified wildcard each (an
                    // unqualified EXCLUDE would be ambiguous).
                    for (q, s) in &rels {
                        let mut o = WildcardAdditionalOptions::default();
                        if matches!(s, Source::Strata(_)) {
                            exclude_temporal(&mut o);
                        }
                        items.push(SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(q.clone().unwrap()),
                            o,
                        ));
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(q),
                    mut opts,
                ) if strata_quals.contains(&crate::ident::fold(&q.to_string())) => {
                    exclude_temporal(&mut opts);
                    items.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(q),
                        opts,
                    ));
                }
                other => items.push(other),
            }
        }
        select.projection = items;
    }

    /// The relations of one FROM item, in order, looking through
    /// parenthesized joins (`(a CROSS JOIN b)`), and what its joins' USING /
    /// NATURAL constraints say.
    fn collect(
        &self,
        twj: &mut TableWithJoins,
        rels: &mut Vec<(Option<ObjectName>, Source)>,
        using_or_natural: &mut bool,
        using_cols: &mut Option<Vec<String>>,
    ) {
        self.natural_to_using(twj);
        self.collect_factor(&mut twj.relation, rels, using_or_natural, using_cols);
        for j in &mut twj.joins {
            match constraint(&j.join_operator) {
                Some(JoinConstraint::Using(cols)) => {
                    *using_or_natural = true;
                    if let Some(u) = using_cols.as_mut() {
                        for c in cols {
                            let n =
                                c.0.last()
                                    .and_then(|p| p.as_ident())
                                    .map(normal)
                                    .unwrap_or_else(|| c.to_string());
                            if !u.contains(&n) {
                                u.push(n);
                            }
                        }
                    }
                }
                Some(JoinConstraint::Natural) => {
                    *using_or_natural = true;
                    *using_cols = None;
                }
                _ => {}
            }
            self.collect_factor(&mut j.relation, rels, using_or_natural, using_cols);
        }
    }

    fn collect_factor(
        &self,
        f: &mut TableFactor,
        rels: &mut Vec<(Option<ObjectName>, Source)>,
        using_or_natural: &mut bool,
        using_cols: &mut Option<Vec<String>>,
    ) {
        match f {
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.collect(table_with_joins, rels, using_or_natural, using_cols),
            _ => rels.push((qualifier(f), self.classify(f))),
        }
    }

    /// `a NATURAL JOIN b` of two Strata tables joins on their shared user
    /// columns, not on the (always present) temporal ones.
    fn natural_to_using(&self, twj: &mut TableWithJoins) {
        let mut left: Option<Vec<String>> = match self.classify(&twj.relation) {
            Source::Strata(c) => Some(c),
            Source::Other => None,
        };
        for j in &mut twj.joins {
            let right = match self.classify(&j.relation) {
                Source::Strata(c) => Some(c),
                Source::Other => None,
            };
            if let (Some(l), Some(r), Some(c)) =
                (&left, &right, constraint_mut(&mut j.join_operator))
            {
                if matches!(c, JoinConstraint::Natural) {
                    let shared: Vec<ObjectName> = l
                        .iter()
                        .filter(|n| r.contains(n))
                        .map(|n| ObjectName::from(vec![Ident::with_quote('"', n.clone())]))
                        .collect();
                    *c = if shared.is_empty() {
                        JoinConstraint::None
                    } else {
                        JoinConstraint::Using(shared)
                    };
                }
            }
            // After the first join the left side is a join, not one table.
            left = None;
            let _ = right;
        }
    }
}

impl VisitorMut for Hider<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let names: HashSet<String> = query
            .with
            .as_ref()
            .map(|w| w.cte_tables.iter().map(|c| normal(&c.alias.name)).collect())
            .unwrap_or_default();
        self.ctes.push(names);
        self.rewrite_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }
}

impl Hider<'_> {
    /// The SELECTs of one query level (nested queries are visited on their own).
    fn rewrite_set_expr(&self, e: &mut SetExpr) {
        match e {
            SetExpr::Select(s) => self.rewrite_select(s),
            SetExpr::SetOperation { left, right, .. } => {
                self.rewrite_set_expr(left);
                self.rewrite_set_expr(right);
            }
            _ => {}
        }
    }
}

fn normal(i: &Ident) -> String {
    crate::ident::normalize(i)
}

/// A bare `*` (no ILIKE/EXCLUDE/EXCEPT/REPLACE/RENAME/alias options).
pub(crate) fn is_plain(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_alias.is_none()
}

/// The name a relation's columns are qualified by: its alias, else its name.
fn qualifier(f: &TableFactor) -> Option<ObjectName> {
    let alias = match f {
        TableFactor::Table { alias, .. }
        | TableFactor::Derived { alias, .. }
        | TableFactor::Function { alias, .. }
        | TableFactor::UNNEST { alias, .. } => alias.as_ref(),
        _ => None,
    };
    if let Some(a) = alias {
        return Some(ObjectName::from(vec![a.name.clone()]));
    }
    match f {
        TableFactor::Table { name, .. } => Some(name.clone()),
        _ => None,
    }
}

fn exclude_names(o: &mut WildcardAdditionalOptions, extra: &[String]) {
    let mut names: Vec<ObjectName> = match o.opt_exclude.take() {
        Some(ExcludeSelectItem::Single(n)) => vec![n],
        Some(ExcludeSelectItem::Multiple(v)) => v,
        None => vec![],
    };
    for c in extra {
        names.push(ObjectName::from(vec![Ident::with_quote('"', c.clone())]));
    }
    o.opt_exclude = Some(ExcludeSelectItem::Multiple(names));
}

fn exclude_temporal(o: &mut WildcardAdditionalOptions) {
    let mut names: Vec<ObjectName> = match o.opt_exclude.take() {
        Some(ExcludeSelectItem::Single(n)) => vec![n],
        Some(ExcludeSelectItem::Multiple(v)) => v,
        None => vec![],
    };
    for c in TEMPORAL_COLUMNS {
        if !names.iter().any(|n| n.to_string().eq_ignore_ascii_case(c)) {
            names.push(ObjectName::from(vec![Ident {
                value: c.to_string(),
                quote_style: None,
                span: Span::empty(),
            }]));
        }
    }
    o.opt_exclude = Some(ExcludeSelectItem::Multiple(names));
}

fn constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator::*;
    match op {
        Join(c) | Inner(c) | Left(c) | LeftOuter(c) | Right(c) | RightOuter(c) | FullOuter(c)
        | CrossJoin(c) | Semi(c) | LeftSemi(c) | RightSemi(c) | Anti(c) | LeftAnti(c)
        | RightAnti(c) => Some(c),
        _ => None,
    }
}

fn constraint_mut(op: &mut JoinOperator) -> Option<&mut JoinConstraint> {
    use JoinOperator::*;
    match op {
        Join(c) | Inner(c) | Left(c) | LeftOuter(c) | Right(c) | RightOuter(c) | FullOuter(c)
        | CrossJoin(c) | Semi(c) | LeftSemi(c) | RightSemi(c) | Anti(c) | LeftAnti(c)
        | RightAnti(c) => Some(c),
        _ => None,
    }
}
