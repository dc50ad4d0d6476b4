//! Rewrites of the Postgres-only syntax clients send (`::regclass`, `OPERATOR(pg_catalog.~)`, `COLLATE`, catalog subqueries) into what DataFusion plans.

use super::*;

pub(super) fn ident_lower(i: &Ident) -> String {
    crate::ident::normalize(i)
}

pub(super) fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p.as_ident() {
            Some(i) => ident_lower(i),
            None => p.to_string(),
        })
        .collect()
}

pub(super) fn call(name: &str, arg: Expr) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

pub(super) fn call2(name: &str, a: Expr, b: Expr) -> Expr {
    let mut f = call(name, a);
    if let Expr::Function(func) = &mut f {
        if let ast::FunctionArguments::List(l) = &mut func.args {
            l.args
                .push(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(b)));
        }
    }
    f
}

/// What a Postgres-only type in a cast becomes.
pub(super) enum CastTo {
    Function(&'static str),
    Type(SqlType),
}

pub(super) fn custom_type(parts: &[String]) -> Option<CastTo> {
    let last = parts.last()?.as_str();
    Some(match last {
        "regclass" => CastTo::Function("__pg_regclass"),
        "regtype" => CastTo::Function("__pg_regtype"),
        "regnamespace" => CastTo::Function("__pg_regnamespace"),
        "regrole" => CastTo::Function("__pg_regrole"),
        "regproc" | "regprocedure" => CastTo::Function("__pg_regproc"),
        "oid" | "xid" | "cid" | "regoper" | "regoperator" | "regconfig" | "regdictionary"
        | "regcollation" => CastTo::Type(SqlType::IntUnsigned(None)),
        "xid8" => CastTo::Type(SqlType::BigInt(None)),
        "name" | "char" | "bpchar" | "cstring" | "unknown" | "pg_node_tree" | "aclitem" => {
            CastTo::Type(SqlType::Text)
        }
        "int2vector" => CastTo::Type(SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(SqlType::SmallInt(None)),
            None,
        ))),
        "oidvector" => CastTo::Type(SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(SqlType::IntUnsigned(None)),
            None,
        ))),
        other if parts.len() > 1 => {
            // `pg_catalog.int4` and the like: the built-in type of that name.
            let t = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(other)
                .ok()?
                .parse_data_type()
                .ok()?;
            if matches!(t, SqlType::Custom(..)) {
                return None;
            }
            CastTo::Type(t)
        }
        _ => return None,
    })
}

pub(super) fn map_type(t: &SqlType) -> Option<SqlType> {
    match t {
        SqlType::Regclass => Some(SqlType::IntUnsigned(None)),
        SqlType::Custom(n, _) => match custom_type(&name_parts(n))? {
            CastTo::Type(t) => Some(t),
            CastTo::Function(_) => Some(SqlType::IntUnsigned(None)),
        },
        SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, size)) => Some(SqlType::Array(
            ast::ArrayElemTypeDef::SquareBracket(Box::new(map_type(inner)?), *size),
        )),
        SqlType::Array(ast::ArrayElemTypeDef::AngleBracket(inner)) => Some(SqlType::Array(
            ast::ArrayElemTypeDef::AngleBracket(Box::new(map_type(inner)?)),
        )),
        _ => None,
    }
}

/// The Arrow type of a cast to a Postgres-only type (`$1::oid[]`,
/// `x::regclass`), for describing parameters; None for other types.
pub fn cast_type(t: &SqlType) -> Option<DataType> {
    // `$1::regclass` and the like take a name (or an OID as text).
    let by_name = match t {
        SqlType::Regclass => true,
        SqlType::Custom(n, _) => matches!(custom_type(&name_parts(n)), Some(CastTo::Function(_))),
        _ => false,
    };
    if by_name {
        return Some(DataType::Utf8);
    }
    fn arrow(t: &SqlType) -> Option<DataType> {
        Some(match t {
            SqlType::IntUnsigned(_) => DataType::UInt32,
            SqlType::BigInt(_) => DataType::Int64,
            SqlType::SmallInt(_) => DataType::Int16,
            SqlType::Text => DataType::Utf8,
            SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _))
            | SqlType::Array(ast::ArrayElemTypeDef::AngleBracket(inner)) => list_of(arrow(inner)?),
            _ => return None,
        })
    }
    arrow(&map_type(t)?)
}

pub(super) fn binary_op(last: &str) -> Option<BinaryOperator> {
    Some(match last {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        _ => return None,
    })
}

pub(super) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "stddev",
    "variance",
    "median",
    "bit_and",
    "bit_or",
];

pub(super) fn has_aggregate(e: &Expr) -> bool {
    // Aggregates of nested subqueries do not count.
    let mut e = e.clone();
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if matches!(
            x,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) || matches!(x, Expr::Function(f) if matches!(f.args, ast::FunctionArguments::Subquery(_)))
        {
            *x = Expr::value(ast::Value::Null);
        }
        ControlFlow::<()>::Continue(())
    });
    let mut found = false;
    let _ = ast::visit_expressions(&e, |x| {
        if let Expr::Function(f) = x {
            if name_parts(&f.name)
                .last()
                .is_some_and(|n| AGGREGATES.contains(&n.as_str()))
                && f.over.is_none()
            {
                found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
}

/// Does every table `q`'s top SELECT reads belong to pg_catalog or
/// information_schema (qualified so, or named like a catalog relation)?
pub(super) fn reads_only_catalogs(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let catalog = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table {
            name, args: None, ..
        } => {
            let parts = name_parts(name);
            match parts.as_slice() {
                [.., s, _] => s == "pg_catalog" || s == "information_schema",
                [n] => SYSTEM_TABLES.iter().any(|(_, t, ..)| t == n),
                _ => false,
            }
        }
        _ => false,
    };
    !sel.from.is_empty()
        && sel
            .from
            .iter()
            .all(|t| catalog(&t.relation) && t.joins.iter().all(|j| catalog(&j.relation)))
}

/// `(SELECT x FROM … WHERE <correlated>)` as a value: Postgres checks at run
/// time that it yields at most one row; DataFusion only plans correlated
/// scalar subqueries that aggregate. Catalog queries (psql's `\d`,
/// SQLAlchemy's reflection) use them to fetch one attribute of one object,
/// so they become `(SELECT first_value(x [ORDER BY …]) FROM … WHERE …)`.
pub(super) fn aggregate_scalar_subquery(q: &mut ast::Query) {
    if q.with.is_some() || q.fetch.is_some() {
        return;
    }
    match &q.limit_clause {
        None => {}
        Some(ast::LimitClause::LimitOffset {
            offset: None,
            limit_by,
            ..
        }) if limit_by.is_empty() => {}
        Some(_) => return,
    }
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return;
    };
    let grouped = match &sel.group_by {
        ast::GroupByExpr::Expressions(v, m) => !v.is_empty() || !m.is_empty(),
        ast::GroupByExpr::All(_) => true,
    };
    if grouped || sel.having.is_some() || sel.distinct.is_some() || sel.projection.len() != 1 {
        return;
    }
    let e = match &mut sel.projection[0] {
        ast::SelectItem::UnnamedExpr(e) => e,
        ast::SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    if has_aggregate(e) {
        return;
    }
    let order = match q.order_by.take() {
        None => vec![],
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(v),
            ..
        }) => v,
        Some(other) => {
            q.order_by = Some(other);
            return;
        }
    };
    let arg = std::mem::replace(e, Expr::value(ast::Value::Null));
    let mut f = call("first_value", arg);
    if let (Expr::Function(func), false) = (&mut f, order.is_empty()) {
        if let ast::FunctionArguments::List(l) = &mut func.args {
            l.clauses.push(ast::FunctionArgumentClause::OrderBy(order));
        }
    }
    *e = f;
    q.limit_clause = None;
}

/// Names the FROM clause of `sel` binds (aliases, else table names).
pub(super) fn bound_names(sel: &ast::Select) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => out.push(ident_lower(&a.name)),
            None => {
                if let Some(l) = name_parts(name).last() {
                    out.push(l.clone())
                }
            }
        },
        ast::TableFactor::Derived { alias: Some(a), .. } => out.push(ident_lower(&a.name)),
        _ => {}
    };
    for t in &sel.from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    out
}

/// Does `e` refer to columns of the enclosing query (qualified by a name
/// the subquery does not bind) and to its own?
pub(super) fn references(e: &Expr, inner: &[String]) -> (bool, bool) {
    let (mut outer, mut own) = (false, false);
    let _ = ast::visit_expressions(e, |x| {
        match x {
            Expr::CompoundIdentifier(p) if p.len() >= 2 => {
                if inner.contains(&ident_lower(&p[p.len() - 2])) {
                    own = true
                } else {
                    outer = true
                }
            }
            Expr::Identifier(_) => own = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (outer, own)
}

pub(super) fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

pub(super) fn and_all(v: Vec<Expr>) -> Option<Expr> {
    v.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    })
}

/// DataFusion decorrelates a scalar subquery only through equality
/// predicates. A predicate on the enclosing row alone (`AND a.atthasdef`), or
/// a comparison other than `=` of an enclosing column with a subquery column
/// (`a.attcollation <> t.typcollation`), is moved out of the subquery:
/// `(SELECT x … WHERE eq AND p_outer)` becomes
/// `CASE WHEN p_outer THEN (SELECT x … WHERE eq) END`, and
/// `outer <> inner` becomes `outer <> (SELECT first_value(inner) … WHERE eq)`.
/// Returns the condition to wrap the subquery in, if any was moved.
pub(super) fn hoist_outer_predicates(q: &mut ast::Query) -> Option<Expr> {
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return None;
    };
    let inner = bound_names(sel);
    let where_ = sel.selection.take()?;
    let mut parts = Vec::new();
    conjuncts(where_.clone(), &mut parts);
    let mut keep = Vec::new();
    let mut hoisted = Vec::new();
    let mut mixed = Vec::new();
    for c in parts {
        let (outer, own) = references(&c, &inner);
        if outer && !own {
            hoisted.push(c);
            continue;
        }
        if let Expr::BinaryOp { left, op, right } = &c {
            if outer
                && own
                && matches!(
                    op,
                    BinaryOperator::NotEq
                        | BinaryOperator::Lt
                        | BinaryOperator::LtEq
                        | BinaryOperator::Gt
                        | BinaryOperator::GtEq
                )
            {
                let l = references(left, &inner);
                let r = references(right, &inner);
                if (l.0 && !l.1 && !r.0) || (r.0 && !r.1 && !l.0) {
                    mixed.push((left.clone(), op.clone(), right.clone(), l.0));
                    continue;
                }
            }
        }
        keep.push(c);
    }
    if hoisted.is_empty() && mixed.is_empty() {
        sel.selection = Some(where_);
        return None;
    }
    sel.selection = and_all(keep);
    for (left, op, right, left_is_outer) in mixed {
        let inner_side = if left_is_outer { &right } else { &left };
        let mut sub = q.clone();
        if let ast::SetExpr::Select(s2) = sub.body.as_mut() {
            s2.projection = vec![ast::SelectItem::UnnamedExpr(call(
                "first_value",
                (**inner_side).clone(),
            ))];
        }
        sub.order_by = None;
        sub.limit_clause = None;
        let sub = Box::new(Expr::Subquery(Box::new(sub)));
        hoisted.push(if left_is_outer {
            Expr::BinaryOp {
                left,
                op,
                right: sub,
            }
        } else {
            Expr::BinaryOp {
                left: sub,
                op,
                right,
            }
        });
    }
    and_all(hoisted)
}

/// `'{0}'`, `'{a,b}'` compared with an array: Postgres reads the literal
/// as an array; DataFusion needs `ARRAY[…]`.
pub(super) fn array_literal(e: &Expr) -> Option<Expr> {
    let Expr::Value(v) = e else { return None };
    let ast::Value::SingleQuotedString(s) = &v.value else {
        return None;
    };
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    if inner.contains(['{', '"']) {
        return None;
    }
    let elem: Vec<Expr> = inner
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let x = x.trim();
            if x.parse::<f64>().is_ok() {
                Expr::value(ast::Value::Number(x.to_string(), false))
            } else {
                Expr::value(ast::Value::SingleQuotedString(x.to_string()))
            }
        })
        .collect();
    if elem.is_empty() {
        return None;
    }
    Some(Expr::Array(ast::Array { elem, named: true }))
}

/// Catalogs that are always empty in Strata (no secondary indexes, comments, defaults,
/// sequences, enums, inheritance, triggers, rules, policies, publications…).
pub(super) const EMPTY_CATALOGS: &[&str] = &[
    "pg_shdescription",
    "pg_attrdef",
    "pg_enum",
    "pg_range",
    "pg_sequence",
    "pg_sequences",
    "pg_inherits",
    "pg_trigger",
    "pg_rewrite",
    "pg_depend",
    "pg_extension",
    "pg_foreign_table",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_event_trigger",
    "pg_matviews",
    "pg_stat_activity",
];

/// Does `sel` read an always-empty catalog through inner joins only (so
/// that it yields no rows before grouping)?
pub(super) fn reads_only_empty(sel: &ast::Select) -> bool {
    let is_empty = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table { name, .. } => {
            let p = name_parts(name);
            let ok_schema = p.len() == 1 || (p.len() == 2 && p[0] == "pg_catalog");
            ok_schema
                && p.last()
                    .is_some_and(|n| EMPTY_CATALOGS.contains(&n.as_str()))
        }
        _ => false,
    };
    let inner = |op: &ast::JoinOperator| {
        matches!(
            op,
            ast::JoinOperator::Join(_)
                | ast::JoinOperator::Inner(_)
                | ast::JoinOperator::CrossJoin(_)
        )
    };
    // Empty if the first relation or an inner-joined one is empty, and no
    // RIGHT or FULL join can bring rows from elsewhere.
    sel.from.iter().any(|t| {
        let outer = t.joins.iter().any(|j| {
            matches!(
                j.join_operator,
                ast::JoinOperator::Right(_)
                    | ast::JoinOperator::RightOuter(_)
                    | ast::JoinOperator::FullOuter(_)
            )
        });
        !outer
            && (is_empty(&t.relation)
                || t.joins
                    .iter()
                    .any(|j| inner(&j.join_operator) && is_empty(&j.relation)))
    })
}

/// A SELECT that reads only always-empty catalogs yields no rows, so its
/// select list is never evaluated: subqueries there (often correlated in
/// ways DataFusion cannot plan, like psql's `array(… oid = any(pol.polroles))`)
/// are replaced by NULL.
pub(super) fn drop_unevaluated_subqueries(sel: &mut ast::Select) {
    if sel.from.is_empty() {
        return;
    }
    let all_empty = reads_only_empty(sel);
    let grouped = !matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, _) if v.is_empty());
    if !all_empty || grouped || sel.having.is_some() {
        return;
    }
    for item in sel.projection.iter_mut() {
        let e = match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        if has_aggregate(e) {
            return;
        }
        let _ = ast::visit_expressions_mut(e, |x| {
            // Subqueries, and set-returning functions DataFusion lacks.
            let is_sub = matches!(x, Expr::Subquery(_))
                || matches!(x, Expr::Function(f) if matches!(f.args, ast::FunctionArguments::Subquery(_))
                    || name_parts(&f.name).last().is_some_and(|n| n == "generate_subscripts" || n == "_pg_expandarray"));
            if is_sub {
                // `ARRAY(SELECT …)` keeps an array type, for the functions
                // around it (psql's `\dp` passes one to array_to_string).
                let array = matches!(x, Expr::Function(f)
                    if matches!(f.args, ast::FunctionArguments::Subquery(_))
                        && name_parts(&f.name).last().is_some_and(|n| n == "array"));
                *x = if array {
                    Expr::Cast {
                        kind: ast::CastKind::Cast,
                        expr: Box::new(Expr::value(ast::Value::Null)),
                        data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                            Box::new(ast::DataType::Text),
                            None,
                        )),
                        array: false,
                        format: None,
                    }
                } else {
                    Expr::value(ast::Value::Null)
                };
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// List columns that Strata's catalogs always leave NULL (no storage
/// options, ACLs or per-object settings).
pub(super) const ALWAYS_NULL_LISTS: &[&str] = &[
    "reloptions",
    "relacl",
    "attoptions",
    "attacl",
    "attfdwoptions",
    "spcoptions",
    "spcacl",
    "nspacl",
    "datacl",
    "proacl",
    "typacl",
    "ftoptions",
];

/// `SELECT … FROM unnest(x.reloptions) …` alone (a correlated unnest, which
/// DataFusion cannot plan): it yields no rows, as the column is always NULL.
pub(super) fn unnests_always_null(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let [t] = sel.from.as_slice() else {
        return false;
    };
    if !t.joins.is_empty() {
        return false;
    }
    match &t.relation {
        ast::TableFactor::UNNEST { array_exprs, .. } => {
            !array_exprs.is_empty()
                && array_exprs.iter().all(|e| match e {
                    Expr::CompoundIdentifier(p) => p
                        .last()
                        .is_some_and(|c| ALWAYS_NULL_LISTS.contains(&ident_lower(c).as_str())),
                    _ => false,
                })
        }
        _ => false,
    }
}

/// `EXISTS (SELECT … FROM … WHERE …)` as a value (psql's `\d` of an index):
/// DataFusion plans EXISTS only as a filter, so it becomes
/// `(SELECT count(*) FROM … WHERE …) > 0`.
pub(super) fn exists_as_count(e: &mut Expr) {
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Exists { subquery, negated } = x {
            let simple = subquery.with.is_none()
                && subquery.limit_clause.is_none()
                && subquery.fetch.is_none()
                && matches!(subquery.body.as_ref(), ast::SetExpr::Select(sel)
                    if sel.distinct.is_none()
                        && sel.having.is_none()
                        && matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty()));
            if simple {
                let mut q = subquery.clone();
                q.order_by = None;
                if let ast::SetExpr::Select(sel) = q.body.as_mut() {
                    let mut count =
                        call("count", Expr::value(ast::Value::Number("1".into(), false)));
                    if let Expr::Function(f) = &mut count {
                        if let ast::FunctionArguments::List(l) = &mut f.args {
                            l.args =
                                vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)];
                        }
                    }
                    sel.projection = vec![ast::SelectItem::UnnamedExpr(count)];
                }
                *x = Expr::BinaryOp {
                    left: Box::new(Expr::Subquery(q)),
                    op: if *negated {
                        BinaryOperator::Eq
                    } else {
                        BinaryOperator::Gt
                    },
                    right: Box::new(Expr::value(ast::Value::Number("0".into(), false))),
                };
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// A subquery over always-empty catalogs, without aggregation: no rows.
pub(super) fn empty_ungrouped(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let grouped = !matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, _) if v.is_empty());
    reads_only_empty(sel)
        && !grouped
        && sel.having.is_none()
        && sel.projection.iter().all(|i| match i {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                !has_aggregate(e)
            }
            _ => true,
        })
}

pub(super) struct PgSyntax;

impl VisitorMut for PgSyntax {
    type Break = ();

    fn pre_visit_table_factor(&mut self, f: &mut ast::TableFactor) -> ControlFlow<()> {
        // `FROM pg_catalog.generate_series(…)`
        if let ast::TableFactor::Table {
            name,
            args: Some(args),
            alias,
            with_ordinality,
            ..
        } = f
        {
            let parts = name_parts(name);
            if parts.len() == 2 && parts[0] == "pg_catalog" {
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                    parts[1].clone(),
                ))]);
            }
            // `FROM [pg_catalog.]unnest(a) x`: an UNNEST relation; as in
            // Postgres, a bare alias also names its one column.
            if parts.last().is_some_and(|n| n == "unnest") && args.settings.is_none() {
                let exprs: Option<Vec<Expr>> = args
                    .args
                    .iter()
                    .map(|a| match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(array_exprs) = exprs {
                    let mut alias = alias.take();
                    if let Some(a) = alias.as_mut() {
                        if a.columns.is_empty() && array_exprs.len() == 1 {
                            a.columns.push(ast::TableAliasColumnDef {
                                name: a.name.clone(),
                                data_type: None,
                            });
                        }
                    }
                    *f = ast::TableFactor::UNNEST {
                        alias,
                        array_exprs,
                        with_offset: false,
                        with_offset_alias: None,
                        with_ordinality: *with_ordinality,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, sel: &mut ast::Select) -> ControlFlow<()> {
        drop_unevaluated_subqueries(sel);
        for item in sel.projection.iter_mut() {
            if let ast::SelectItem::UnnamedExpr(e)
            | ast::SelectItem::ExprWithAlias { expr: e, .. } = item
            {
                exists_as_count(e);
            }
        }
        // `SELECT NULL, NULL`: Postgres names both `?column?`; DataFusion
        // wants distinct names, so repeated unnamed expressions get aliases
        // (the wire still reports Postgres's names).
        // `SELECT c.oid, c.*` (DBeaver): the explicit column gets its own name.
        let wildcard = sel.projection.iter().any(|i| {
            matches!(
                i,
                ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
            )
        });
        if wildcard {
            for item in sel.projection.iter_mut() {
                if let ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) = item {
                    if let Some(last) = p.last().cloned() {
                        let e = Expr::CompoundIdentifier(p.clone());
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: e,
                            alias: last,
                        };
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in sel.projection.iter_mut().enumerate() {
            if let ast::SelectItem::UnnamedExpr(e) = item {
                if !seen.insert(e.to_string())
                    && !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                {
                    *item = ast::SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', format!("?column?{}", i + 1)),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                if matches!(data_type, SqlType::Regclass) {
                    let arg = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                    *expr = call("__pg_regclass", arg);
                } else if let SqlType::Custom(n, _) = data_type {
                    match custom_type(&name_parts(n)) {
                        Some(CastTo::Function(f)) => {
                            let arg =
                                std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                            *expr = call(f, arg);
                        }
                        Some(CastTo::Type(t)) => *data_type = t,
                        None => {}
                    }
                } else if let Some(t) = map_type(data_type) {
                    *data_type = t;
                }
            }
            Expr::Function(f)
                if matches!(&f.args, ast::FunctionArguments::Subquery(q) if unnests_always_null(q))
                    && name_parts(&f.name).last().is_some_and(|n| n == "array") =>
            {
                // ARRAY(SELECT … FROM unnest(c.reloptions) x): no elements.
                *expr = Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(Expr::Function(ast::Function {
                        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                            "make_array",
                        ))]),
                        uses_odbc_syntax: false,
                        parameters: ast::FunctionArguments::None,
                        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                            duplicate_treatment: None,
                            args: vec![],
                            clauses: vec![],
                        }),
                        filter: None,
                        null_treatment: None,
                        over: None,
                        within_group: vec![],
                    })),
                    data_type: SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(
                        Box::new(SqlType::Text),
                        None,
                    )),
                    array: false,
                    format: None,
                };
            }
            Expr::Function(f)
                if matches!(f.args, ast::FunctionArguments::Subquery(_))
                    && name_parts(&f.name).last().is_some_and(|n| n == "array") =>
            {
                // ARRAY(SELECT x … ORDER BY y) → (SELECT array_agg(x ORDER BY y) …)
                let ast::FunctionArguments::Subquery(q) = &f.args else {
                    unreachable!()
                };
                let mut q = q.clone();
                let order = match q.order_by.take() {
                    Some(ast::OrderBy {
                        kind: ast::OrderByKind::Expressions(v),
                        ..
                    }) => v,
                    _ => vec![],
                };
                if let ast::SetExpr::Select(sel) = q.body.as_mut() {
                    if let Some(
                        ast::SelectItem::UnnamedExpr(e)
                        | ast::SelectItem::ExprWithAlias { expr: e, .. },
                    ) = sel.projection.first_mut()
                    {
                        let arg = std::mem::replace(e, Expr::value(ast::Value::Null));
                        let mut agg = call("array_agg", arg);
                        if let (Expr::Function(func), false) = (&mut agg, order.is_empty()) {
                            if let ast::FunctionArguments::List(l) = &mut func.args {
                                l.clauses.push(ast::FunctionArgumentClause::OrderBy(order));
                            }
                        }
                        *e = agg;
                    }
                }
                *expr = Expr::Subquery(q);
                self.post_visit_expr(expr)?;
            }
            Expr::Subquery(q) if empty_ungrouped(q) => {
                // No rows, so the value is NULL.
                *expr = Expr::value(ast::Value::Null);
            }
            Expr::Exists { subquery, negated } if empty_ungrouped(subquery) => {
                *expr = Expr::value(ast::Value::Boolean(*negated));
            }
            // Both rewrites change what a subquery means (a count over no
            // rows is 0, not NULL; more than one row is an error, not the
            // first): they are for the catalog queries of tools only, never
            // for user tables.
            Expr::Subquery(q) if reads_only_catalogs(q) => {
                aggregate_scalar_subquery(q);
                if let Some(cond) = hoist_outer_predicates(q) {
                    let sub = std::mem::replace(expr, Expr::value(ast::Value::Null));
                    *expr = Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition: cond,
                            result: sub,
                        }],
                        else_result: None,
                    };
                }
            }
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                // DataFusion knows only `\` as LIKE's escape: rewrite the
                // pattern from another escape character to backslashes.
                let c = match escape_char.as_ref().map(|v| &v.value) {
                    Some(ast::Value::SingleQuotedString(c))
                        if c != "\\" && c.chars().count() == 1 =>
                    {
                        c.clone()
                    }
                    _ => return ControlFlow::Continue(()),
                };
                let lit = |x: &str| Expr::value(ast::Value::SingleQuotedString(x.to_string()));
                let re_replace = |e: Expr, re: &str, with: &str| {
                    let mut f = call("regexp_replace", e);
                    if let Expr::Function(func) = &mut f {
                        if let ast::FunctionArguments::List(l) = &mut func.args {
                            for a in [lit(re), lit(with), lit("g")] {
                                l.args
                                    .push(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)));
                            }
                        }
                    }
                    f
                };
                let p = std::mem::replace(pattern.as_mut(), Expr::value(ast::Value::Null));
                let p = re_replace(p, "\\\\", "\\\\");
                let esc: String = c
                    .chars()
                    .flat_map(|ch| {
                        if ch.is_ascii_alphanumeric() {
                            vec![ch]
                        } else {
                            vec!['\\', ch]
                        }
                    })
                    .collect();
                **pattern = re_replace(p, &format!("{esc}(.)"), "\\${1}");
                *escape_char = None;
            }
            Expr::Collate { expr: inner, .. } => {
                let e = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                *expr = e;
            }
            Expr::BinaryOp { op, left, right } => {
                if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
                    for side in [left, right] {
                        if let Some(a) = array_literal(side) {
                            **side = a;
                        }
                    }
                }
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    if let Some(o) = parts.last().and_then(|l| binary_op(l)) {
                        *op = o;
                    }
                }
            }
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = compare_op {
                    if let Some(o) = parts.last().and_then(|l| binary_op(l)) {
                        *compare_op = o;
                    }
                }
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(root.as_ref(), Expr::Nested(_) | Expr::Function(_))
                    && matches!(
                        access_chain.first(),
                        Some(ast::AccessExpr::Dot(Expr::Identifier(_)))
                    ) =>
            {
                // `(record).field` → get_field(record, 'field'), field by field
                // (`t.col[1]` is a qualified column, left alone).
                let mut e = std::mem::replace(root.as_mut(), Expr::value(ast::Value::Null));
                let mut rest = Vec::new();
                for a in std::mem::take(access_chain) {
                    match a {
                        ast::AccessExpr::Dot(Expr::Identifier(id)) if rest.is_empty() => {
                            e = call2(
                                "get_field",
                                e,
                                Expr::value(ast::Value::SingleQuotedString(ident_lower(&id))),
                            );
                        }
                        other => rest.push(other),
                    }
                }
                *expr = if rest.is_empty() {
                    e
                } else {
                    Expr::CompoundFieldAccess {
                        root: Box::new(e),
                        access_chain: rest,
                    }
                };
            }
            Expr::Function(f)
                if name_parts(&f.name)
                    .last()
                    .is_some_and(|n| n == "_pg_expandarray") =>
            {
                // A set of (x, n) records: unnest a list of {x, n} structs.
                if let ast::FunctionArguments::List(l) = &f.args {
                    if let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a))] =
                        l.args.as_slice()
                    {
                        *expr = call("unnest", call("__pg_expandarray", a.clone()));
                    }
                }
            }
            Expr::Function(f)
                if name_parts(&f.name)
                    .last()
                    .is_some_and(|n| n == "generate_subscripts") =>
            {
                // generate_subscripts(a, dim): 1..cardinality(a) for dimension 1
                // (Strata's arrays have one dimension).
                if let ast::FunctionArguments::List(l) = &f.args {
                    let args: Vec<Expr> = l
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                                Some(e.clone())
                            }
                            _ => None,
                        })
                        .collect();
                    if let [a, dim] = args.as_slice() {
                        let one = || Expr::value(ast::Value::Number("1".into(), false));
                        let upper = Expr::Case {
                            case_token: ast::helpers::attached_token::AttachedToken::empty(),
                            end_token: ast::helpers::attached_token::AttachedToken::empty(),
                            operand: None,
                            conditions: vec![ast::CaseWhen {
                                condition: Expr::BinaryOp {
                                    left: Box::new(dim.clone()),
                                    op: BinaryOperator::Eq,
                                    right: Box::new(one()),
                                },
                                result: Expr::Cast {
                                    kind: ast::CastKind::Cast,
                                    expr: Box::new(call("cardinality", a.clone())),
                                    data_type: SqlType::BigInt(None),
                                    array: false,
                                    format: None,
                                },
                            }],
                            else_result: Some(Box::new(Expr::value(ast::Value::Number(
                                "0".into(),
                                false,
                            )))),
                        };
                        *expr = call("unnest", call2("generate_series", one(), upper));
                    }
                }
            }
            Expr::Function(f) => {
                let parts = name_parts(&f.name);
                if parts.len() == 2 && parts[0] == "pg_catalog" {
                    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                        parts[1].clone(),
                    ))]);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// asyncpg's type introspection (`WITH RECURSIVE typeinfo_tree …`) walks
/// domains, ranges, composite types and array elements with recursive CTEs
/// nested in correlated subqueries. Strata's types have no domains, ranges or
/// composite columns, and arrays nest one level, so the same rows come from
/// this plain query: each requested type (depth 0) and, for an array, its
/// element type (depth 1), deepest first.
pub(super) const ASYNCPG_INTROSPECTION: &str = "
SELECT oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype, attrtypoids,
       attrnames, depth, basetype_name, elemtype_name, range_subtype_name
FROM (
  SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
         CAST(NULL AS INT UNSIGNED) AS basetype, t.typelem AS elemtype, e.typdelim AS elemdelim,
         CAST(NULL AS INT UNSIGNED) AS range_subtype, CAST(NULL AS INT UNSIGNED[]) AS attrtypoids,
         CAST(NULL AS TEXT[]) AS attrnames, 0 AS depth, CAST(NULL AS TEXT) AS basetype_name,
         CASE WHEN t.typelem <> 0 THEN format_type(t.typelem, NULL) ELSE '-' END AS elemtype_name,
         CAST(NULL AS TEXT) AS range_subtype_name
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
  LEFT JOIN pg_catalog.pg_type e ON t.typlen = -1 AND t.typelem <> 0 AND t.typelem = e.oid
  WHERE t.oid = ANY($1::oid[])
  UNION ALL
  SELECT e.oid, ns.nspname, e.typname, e.typtype, CAST(NULL AS INT UNSIGNED), e.typelem,
         CAST(NULL AS TEXT), CAST(NULL AS INT UNSIGNED), CAST(NULL AS INT UNSIGNED[]),
         CAST(NULL AS TEXT[]), 1, CAST(NULL AS TEXT), '-', CAST(NULL AS TEXT)
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_type e ON e.oid = t.typelem
  JOIN pg_catalog.pg_namespace ns ON ns.oid = e.typnamespace
  WHERE t.oid = ANY($1::oid[]) AND t.typlen = -1 AND t.typelem <> 0
) ti
ORDER BY depth DESC";

pub(super) fn is_asyncpg_introspection(stmt: &Statement) -> bool {
    let Statement::Query(q) = stmt else {
        return false;
    };
    q.with.as_ref().is_some_and(|w| {
        w.recursive
            && w.cte_tables
                .iter()
                .any(|c| c.alias.name.value == "typeinfo_tree")
    })
}

/// Turn the Postgres catalog syntax tools send into what DataFusion plans.
pub fn rewrite(stmt: &mut Statement) {
    if is_asyncpg_introspection(stmt) {
        if let Ok(mut v) = crate::sql::parse(ASYNCPG_INTROSPECTION) {
            *stmt = v.remove(0);
        }
    }
    let _ = stmt.visit(&mut PgSyntax);
}
