//! Describe a statement without running it: the types of its `$n`
//! parameters and the schema of the rows it returns. Both wire front ends
//! describe through here (the Postgres wire's Parse/Describe, Flight SQL's
//! GetFlightInfo and CreatePreparedStatement), so a described statement sees
//! exactly the catalog, settings and open transaction an executed one does.
//!
//! Planning is the session's; this module adds the parameter-type inference
//! DataFusion cannot do alone (casts of parameters, the columns an INSERT
//! puts them in, times that the temporal rewrite consumes).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, visit_expressions, Expr, SetExpr, Statement, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use strata_storage::schema::SqlType;

use crate::error::{QueryError, Result};
use crate::session::{Output, Session};
use crate::temporal::{self, StatementKind};

/// What a statement takes and gives.
#[derive(Debug, Clone, Default)]
pub struct Described {
    /// Inferred Arrow type of `$1`, `$2`, … (None: unknown).
    pub params: Vec<Option<DataType>>,
    /// The SQL type (uuid, json, jsonb) of `$1`, `$2`, … where one is known
    /// (these are text in Arrow, so `params` alone cannot tell).
    pub param_tags: Vec<Option<SqlType>>,
    /// The rows it returns; None for a command.
    pub schema: Option<SchemaRef>,
    /// What kind of statement it is.
    pub kind: DescribedKind,
    /// The statement as parsed (after the temporal rewrite and the caller's
    /// own rewrite), for a front end's own naming of result columns. None
    /// for a script and for SUBSCRIBE.
    pub statement: Option<Statement>,
}

/// The kinds of statement a front end treats apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DescribedKind {
    /// One plain query (`SELECT`, `VALUES`, `WITH …`): planned now, its rows
    /// can be streamed when it runs.
    Query,
    /// `SUBSCRIBE TO t …`: a change feed, rows in [`strata_storage::feed::feed_schema`].
    Subscribe,
    /// Anything else that is one statement: DML, DDL, transaction control,
    /// `SHOW`, `EXPLAIN`, temporal DML, ERASE, ASSERT.
    #[default]
    Command,
    /// More than one statement: not described.
    Script,
}

impl Session {
    /// Describe `sql` (with `nparams` parameters `$1` … `$nparams`).
    /// `rewrite` is applied to the parsed statement before it is planned
    /// (a front end's own function rewrites).
    pub async fn describe(
        &self,
        sql: &str,
        nparams: usize,
        rewrite: &(dyn Fn(&mut Statement) + Sync),
    ) -> Result<Described> {
        let n = nparams;
        let mut d = Described {
            params: vec![None; n],
            param_tags: vec![None; n],
            ..Default::default()
        };
        // Strata's temporal syntax first, as running does. Parameters used in
        // temporal clauses are consumed by the rewrite: give it timestamps.
        let times = vec![ScalarValue::TimestampMicrosecond(Some(0), Some("UTC".into())); n];
        let mut rws = match temporal::rewrite(sql, &times) {
            Ok(r) => r,
            // `SUBSCRIBE … AFTER $1` takes a log position (an integer).
            Err(e) => match temporal::rewrite(sql, &vec![ScalarValue::Int64(Some(0)); n]) {
                Ok(r) if matches!(r.as_slice(), [rw] if matches!(rw.kind, StatementKind::Subscribe(_))) => {
                    r
                }
                _ => return Err(e),
            },
        };
        if rws.len() != 1 {
            d.kind = DescribedKind::Script;
            return Ok(d);
        }
        let rw = rws.remove(0);
        if let StatementKind::Subscribe(sub) = &rw.kind {
            let table = self.db.engine().table_schema(&sub.table).ok_or_else(|| {
                QueryError::UndefinedTable(format!(
                    "table \"{}\" does not exist: SUBSCRIBE reads an existing table",
                    sub.table
                ))
            })?;
            if let Some(stmt) = crate::sql::parse(&rw.sql)?.first() {
                self.authorize(stmt, &rw).await?;
            }
            d.schema = Some(strata_storage::feed::feed_schema(&table));
            d.kind = DescribedKind::Subscribe;
            return Ok(d);
        }
        let mut in_original = vec![false; n];
        mark_placeholders(sql, &mut in_original);
        let mut in_rewritten = vec![false; n];
        mark_placeholders(&rw.sql, &mut in_rewritten);
        for i in 0..n {
            if in_original[i] && !in_rewritten[i] {
                // consumed by the rewrite: a temporal clause's time
                d.params[i] = Some(DataType::Timestamp(
                    TimeUnit::Microsecond,
                    Some("UTC".into()),
                ));
            }
        }
        let mut stmt = {
            let mut parsed = crate::sql::parse(&rw.sql)?;
            if parsed.len() != 1 {
                d.kind = DescribedKind::Script;
                return Ok(d);
            }
            parsed.remove(0)
        };
        rewrite(&mut stmt);
        self.authorize(&stmt, &rw).await?;
        cast_hints(&stmt, &mut d.params, &mut d.param_tags);
        let plain = matches!(rw.kind, StatementKind::Plain);
        match &stmt {
            _ if !plain => {
                // UPDATE/DELETE … FOR PORTION OF, ERASE, ASSERT, BEGIN … WITH: commands.
                if let Ok(plan) = self.plan_only(stmt.clone(), &rw).await {
                    fill(&mut d, &plan);
                }
            }
            Statement::Query(_) => {
                d.kind = DescribedKind::Query;
                d.schema = match self.plan_only(stmt.clone(), &rw).await {
                    Ok(plan) => {
                        fill(&mut d, &plan);
                        Some(Arc::new(plan.schema().as_arrow().clone()))
                    }
                    Err(e) if n == 0 => {
                        // Running may know more than planning alone: a read
                        // without parameters is harmless to run (in a session
                        // of its own, so this one's transaction is not touched;
                        // the stream is dropped unread).
                        let mut probe = self.db.session();
                        if let Some(u) = &self.user {
                            probe.set_user(u);
                        }
                        match probe.execute(sql, &[]).await {
                            Ok(mut outs) if outs.len() == 1 => match outs.remove(0) {
                                Output::Rows { schema, .. } => Some(schema),
                                Output::Command { .. } => {
                                    d.kind = DescribedKind::Command;
                                    None
                                }
                            },
                            _ => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
            }
            Statement::Insert(ins) => {
                if let Ok(plan) = self.plan_only(stmt.clone(), &rw).await {
                    fill(&mut d, &plan);
                }
                self.insert_hints(ins, &mut d.params, &mut d.param_tags);
                if d.params.iter().any(Option::is_none) {
                    if let Some(src) = &ins.source {
                        if let Ok(plan) = self.plan_only(Statement::Query(src.clone()), &rw).await {
                            fill(&mut d, &plan);
                        }
                    }
                }
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::CreateTable(_)
            | Statement::Set(_) => {}
            _ => {
                if let Ok(plan) = self.plan_only(stmt.clone(), &rw).await {
                    fill(&mut d, &plan);
                    let rows = !matches!(
                        plan,
                        LogicalPlan::Dml(_)
                            | LogicalPlan::Ddl(_)
                            | LogicalPlan::Statement(_)
                            | LogicalPlan::Copy(_)
                    );
                    d.schema = rows.then(|| Arc::new(plan.schema().as_arrow().clone()));
                }
            }
        }
        // `x = ANY($1)`: the planner types $1 as an element; it is an array.
        for i in any_placeholders(&stmt) {
            if let Some(slot) = d.params.get_mut(i) {
                // (Text when the planner could not tell, as Postgres'
                // unknown literals.)
                *slot = Some(match slot.take().unwrap_or(DataType::Utf8) {
                    t @ DataType::List(_) => t,
                    t => DataType::List(Arc::new(Field::new_list_field(t, true))),
                });
            }
        }
        d.statement = Some(stmt);
        Ok(d)
    }

    /// `INSERT INTO t (a, b) VALUES ($1, $2)`: parameters take the types of
    /// the columns they are inserted into, when the table has those columns.
    fn insert_hints(
        &self,
        ins: &ast::Insert,
        params: &mut [Option<DataType>],
        tags: &mut [Option<SqlType>],
    ) {
        let ast::TableObject::TableName(tn) = &ins.table else {
            return;
        };
        let Ok(table) = crate::sql::object_name(tn) else {
            return;
        };
        let Some(ts) = self.db.engine().table_schema(&table) else {
            return;
        };
        let columns: Vec<String> = if ins.columns.is_empty() {
            ts.columns.iter().map(|f| f.name().clone()).collect()
        } else {
            ins.columns.iter().filter_map(last_name).collect()
        };
        let Some(src) = &ins.source else { return };
        let SetExpr::Values(values) = src.body.as_ref() else {
            return;
        };
        for row in &values.rows {
            for (j, e) in row.content.iter().enumerate() {
                let Some(i) = placeholder_of(e) else { continue };
                let Some(col) = columns.get(j) else { continue };
                let Some(field) = ts.columns.iter().find(|f| f.name() == col) else {
                    continue;
                };
                if let Some(slot) = params.get_mut(i.wrapping_sub(1)) {
                    slot.get_or_insert(field.data_type().clone());
                }
                if let (Some(slot), Some(tag)) =
                    (tags.get_mut(i.wrapping_sub(1)), SqlType::of(field))
                {
                    slot.get_or_insert(tag);
                }
            }
        }
    }
}

/// The parameter types (and uuid/json tags) a plan knows, where `d` does
/// not know them yet.
fn fill(d: &mut Described, plan: &LogicalPlan) {
    if let Ok(fields) = plan.get_parameter_fields() {
        for (k, f) in fields {
            if let (Some(i), Some(tag)) =
                (placeholder_index(&k), f.as_deref().and_then(SqlType::of))
            {
                if let Some(slot) = d.param_tags.get_mut(i.wrapping_sub(1)) {
                    slot.get_or_insert(tag);
                }
            }
        }
    }
    if let Ok(types) = plan.get_parameter_types() {
        for (k, v) in types {
            if let (Some(i), Some(dt)) = (placeholder_index(&k), v) {
                if let Some(slot) = d.params.get_mut(i.wrapping_sub(1)) {
                    if slot.is_none() && dt != DataType::Null {
                        *slot = Some(dt);
                    }
                }
            }
        }
    }
}

/// Which `$n` occur in `sql`.
fn mark_placeholders(sql: &str, seen: &mut [bool]) {
    if let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        for t in tokens {
            if let Token::Placeholder(p) = t {
                if let Some(i) = placeholder_index(&p) {
                    if let Some(s) = seen.get_mut(i.wrapping_sub(1)) {
                        *s = true;
                    }
                }
            }
        }
    }
}

/// `$7` → 7.
fn placeholder_index(s: &str) -> Option<usize> {
    s.strip_prefix('$')?.parse().ok()
}

fn placeholder_of(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => placeholder_index(p),
            _ => None,
        },
        Expr::Nested(inner) => placeholder_of(inner),
        _ => None,
    }
}

/// The parameters (0-based) a statement compares with `ANY` / `ALL`
/// (`x = ANY($1)`): arrays, which the planner alone types as elements.
pub(crate) fn any_placeholders(stmt: &Statement) -> Vec<usize> {
    let mut out = Vec::new();
    let _ = visit_expressions(stmt, |e| {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = e {
            if let Some(i) = placeholder_of(right) {
                out.push(i.wrapping_sub(1));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// `x = ANY($1)` with a list bound to `$1`: cast it to its array type, so
/// the planner sees an array (it would type a bare `$1` as an element).
pub(crate) fn cast_any_placeholders(stmt: &mut Statement, params: &[ScalarValue]) {
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType};
    let elem = |t: &DataType| -> Option<SqlType> {
        Some(match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SqlType::Text,
            DataType::Int64 => SqlType::BigInt(None),
            DataType::Int32 => SqlType::Int(None),
            DataType::Int16 => SqlType::SmallInt(None),
            DataType::Float64 => SqlType::DoublePrecision,
            DataType::Boolean => SqlType::Boolean,
            _ => return None,
        })
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = e {
            if let Some(i) = placeholder_of(right) {
                if let Some(ScalarValue::List(l)) = params.get(i.wrapping_sub(1)) {
                    if let Some(t) = elem(&l.value_type()) {
                        let inner = std::mem::replace(right.as_mut(), Expr::value(Value::Null));
                        **right = Expr::Cast {
                            kind: ast::CastKind::Cast,
                            expr: Box::new(inner),
                            data_type: SqlType::Array(ArrayElemTypeDef::SquareBracket(
                                Box::new(t),
                                None,
                            )),
                            array: false,
                            format: None,
                        };
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `$1::int`, `CAST($2 AS text)`: the type the statement casts a parameter to.
fn cast_hints(stmt: &Statement, params: &mut [Option<DataType>], tags: &mut [Option<SqlType>]) {
    let _ = visit_expressions(stmt, |e| {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
        {
            if let Some(i) = placeholder_of(expr) {
                if let (Some(slot), Some(tag)) = (
                    tags.get_mut(i.wrapping_sub(1)),
                    crate::casts::sql_tag(data_type),
                ) {
                    slot.get_or_insert(tag);
                }
                if let (Some(slot), Ok(dt)) = (
                    params.get_mut(i.wrapping_sub(1)),
                    crate::sql::sql_type(data_type)
                        .or_else(|e| crate::pg_catalog::cast_type(data_type).ok_or(e)),
                ) {
                    slot.get_or_insert(dt);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn last_name(n: &ast::ObjectName) -> Option<String> {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(crate::ident::normalize)
}

/// `None` when `sql` is one read-only query (or a SUBSCRIBE, which only
/// reads); otherwise what it is instead ("several statements", "a
/// statement that changes data", …). For a front end that runs only reads
/// on a path (Flight SQL's DoGet, whose tickets a client can forge).
pub fn not_a_single_read(sql: &str, params: &[ScalarValue]) -> Result<Option<&'static str>> {
    use datafusion::sql::sqlparser::ast::{Query, Visit, Visitor};
    struct ReadOnly;
    impl Visitor for ReadOnly {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            fn body_reads(b: &SetExpr) -> bool {
                match b {
                    SetExpr::Select(s) => s.into.is_none(),
                    SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => true,
                    SetExpr::SetOperation { left, right, .. } => {
                        body_reads(left) && body_reads(right)
                    }
                    _ => false,
                }
            }
            if body_reads(&q.body) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
    }
    let rws = temporal::rewrite(sql, params)?;
    let [rw] = rws.as_slice() else {
        return Ok(Some("several statements"));
    };
    if matches!(rw.kind, StatementKind::Subscribe(_)) {
        return Ok(None);
    }
    if rw.kind != StatementKind::Plain {
        return Ok(Some("a statement that changes data"));
    }
    Ok(match crate::sql::parse(&rw.sql)?.as_slice() {
        [stmt @ Statement::Query(_)] if stmt.visit(&mut ReadOnly).is_continue() => None,
        [_] => Some("a statement that is not a read-only query"),
        _ => Some("several statements"),
    })
}
