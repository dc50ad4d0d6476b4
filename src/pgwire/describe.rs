//! Describe a statement without running it: the types of its `$n`
//! parameters and the schema of the rows it returns.
//!
//! Planning is the session's (`Session::plan_only`); this module adds the
//! parameter-type inference DataFusion cannot do alone.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, visit_expressions, Expr, SetExpr, Statement, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use strata_query::temporal::{self, Rewritten, StatementKind};
use strata_query::{Output, QueryError};
use strata_storage::schema::SqlType;

use crate::Db;

/// What a statement takes and gives.
#[derive(Debug, Clone)]
pub struct Described {
    /// Inferred Arrow type of `$1`, `$2`, … (None: unknown).
    pub params: Vec<Option<DataType>>,
    /// The rows it returns; None for a command.
    pub schema: Option<SchemaRef>,
    /// The SQL type (uuid, json, jsonb) of `$1`, `$2`, … where one is known
    /// (these are text in Arrow, so `params` alone cannot tell).
    pub param_tags: Vec<Option<SqlType>>,
}

/// Plans statements over a database's catalog, for describing only. The
/// planning itself is the session's (`Session::plan_only`), so a described
/// statement sees exactly the catalog and settings an executed one does.
#[derive(Debug, Default)]
pub struct Describer;

impl Describer {
    pub fn new() -> Describer {
        Describer
    }

    async fn plan(
        &self,
        db: &Db,
        stmt: &Statement,
        rw: &Rewritten,
    ) -> Result<LogicalPlan, QueryError> {
        db.session().plan_only(stmt.clone(), rw).await
    }

    /// Describe one statement (`sql` holds exactly one). `rewrite` is applied
    /// to the parsed statement before planning (the connection's function rewrites).
    pub async fn describe(
        &self,
        db: &Db,
        sql: &str,
        rewrite: &(dyn Fn(&mut Statement) + Sync),
    ) -> Result<Described, QueryError> {
        let n = crate::pgwire::split::max_placeholder(sql);
        // Strata's temporal syntax first, as the session does. Parameters used in
        // temporal clauses are consumed by the rewrite: give it timestamps.
        let dummy = vec![ScalarValue::TimestampMicrosecond(Some(0), Some("UTC".into())); n];
        let mut rws = temporal::rewrite(sql, &dummy)?;
        if rws.len() != 1 {
            return Err(QueryError::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let rw = rws.remove(0);
        let mut params: Vec<Option<DataType>> = vec![None; n];
        let mut in_original = vec![false; n];
        mark_placeholders(sql, &mut in_original);
        let mut in_rewritten = vec![false; n];
        mark_placeholders(&rw.sql, &mut in_rewritten);
        for i in 0..n {
            if in_original[i] && !in_rewritten[i] {
                // consumed by the rewrite: a temporal clause's time
                params[i] = Some(DataType::Timestamp(
                    TimeUnit::Microsecond,
                    Some("UTC".into()),
                ));
            }
        }
        let mut stmt = {
            let mut parsed = strata_query::session::parse(&rw.sql)?;
            if parsed.len() != 1 {
                return Err(QueryError::Syntax(
                    "cannot insert multiple commands into a prepared statement".into(),
                ));
            }
            parsed.remove(0)
        };
        rewrite(&mut stmt);
        let tags = std::sync::Mutex::new(vec![None; n]);
        cast_hints(&stmt, &mut params, &mut tags.lock().unwrap());
        let fill = |params: &mut Vec<Option<DataType>>, plan: &LogicalPlan| {
            if let Ok(fields) = plan.get_parameter_fields() {
                let mut tags = tags.lock().unwrap();
                for (k, f) in fields {
                    if let (Some(i), Some(tag)) =
                        (placeholder_index(&k), f.as_deref().and_then(SqlType::of))
                    {
                        if let Some(slot) = tags.get_mut(i.wrapping_sub(1)) {
                            slot.get_or_insert(tag);
                        }
                    }
                }
            }
            if let Ok(types) = plan.get_parameter_types() {
                for (k, v) in types {
                    if let (Some(i), Some(dt)) = (placeholder_index(&k), v) {
                        if i >= 1
                            && i <= params.len()
                            && params[i - 1].is_none()
                            && dt != DataType::Null
                        {
                            params[i - 1] = Some(dt);
                        }
                    }
                }
            }
        };
        if !matches!(rw.kind, StatementKind::Plain) {
            // UPDATE/DELETE … FOR PORTION OF, ERASE, ASSERT, BEGIN … WITH: commands.
            if let Ok(plan) = self.plan(db, &stmt, &rw).await {
                fill(&mut params, &plan);
            }
            return Ok(Described {
                param_tags: tags.lock().unwrap().clone(),
                params,
                schema: None,
            });
        }
        match &stmt {
            Statement::Query(_) => {
                let schema = match self.plan(db, &stmt, &rw).await {
                    Ok(plan) => {
                        fill(&mut params, &plan);
                        Arc::new(plan.schema().as_arrow().clone())
                    }
                    Err(e) if n == 0 => {
                        // The session may know more than this planner: ask it
                        // (a read, so running it is harmless; the stream is dropped unread).
                        match db.session().execute(sql, &[]).await {
                            Ok(mut outs) if outs.len() == 1 => match outs.remove(0) {
                                Output::Rows { schema, .. } => schema,
                                Output::Command { .. } => {
                                    return Ok(Described {
                                        param_tags: tags.lock().unwrap().clone(),
                                        params,
                                        schema: None,
                                    })
                                }
                            },
                            _ => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
                let schema = match crate::pgwire::names::column_names(&stmt) {
                    Some(names) => crate::pgwire::names::rename(&schema, &names),
                    None => schema,
                };
                Ok(Described {
                    param_tags: tags.lock().unwrap().clone(),
                    params,
                    schema: Some(schema),
                })
            }
            Statement::Insert(ins) => {
                if let Ok(plan) = self.plan(db, &stmt, &rw).await {
                    fill(&mut params, &plan);
                }
                insert_hints(db, ins, &mut params, &mut tags.lock().unwrap());
                if params.iter().any(Option::is_none) {
                    if let Some(src) = &ins.source {
                        if let Ok(plan) = self.plan(db, &Statement::Query(src.clone()), &rw).await {
                            fill(&mut params, &plan);
                        }
                    }
                }
                Ok(Described {
                    param_tags: tags.lock().unwrap().clone(),
                    params,
                    schema: None,
                })
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::CreateTable(_)
            | Statement::Set(_) => Ok(Described {
                param_tags: tags.lock().unwrap().clone(),
                params,
                schema: None,
            }),
            _ => match self.plan(db, &stmt, &rw).await {
                Ok(plan) => {
                    fill(&mut params, &plan);
                    let rows = !matches!(
                        plan,
                        LogicalPlan::Dml(_)
                            | LogicalPlan::Ddl(_)
                            | LogicalPlan::Statement(_)
                            | LogicalPlan::Copy(_)
                    );
                    let schema = rows.then(|| Arc::new(plan.schema().as_arrow().clone()));
                    Ok(Described {
                        param_tags: tags.lock().unwrap().clone(),
                        params,
                        schema,
                    })
                }
                Err(_) => Ok(Described {
                    param_tags: tags.lock().unwrap().clone(),
                    params,
                    schema: None,
                }),
            },
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
                    strata_query::casts::sql_tag(data_type),
                ) {
                    slot.get_or_insert(tag);
                }
                if let (Some(slot), Ok(dt)) = (
                    params.get_mut(i.wrapping_sub(1)),
                    strata_query::session::sql_type(data_type)
                        .or_else(|e| strata_query::pg_catalog::cast_type(data_type).ok_or(e)),
                ) {
                    slot.get_or_insert(dt);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn ident_name(i: &ast::Ident) -> String {
    strata_query::ident::normalize(i)
}

fn last_name(n: &ast::ObjectName) -> Option<String> {
    n.0.last().and_then(|p| p.as_ident()).map(ident_name)
}

/// `INSERT INTO t (a, b) VALUES ($1, $2)`: parameters take the types of the
/// columns they are inserted into, when the table has those columns.
fn insert_hints(
    db: &Db,
    ins: &ast::Insert,
    params: &mut [Option<DataType>],
    tags: &mut [Option<SqlType>],
) {
    let ast::TableObject::TableName(tn) = &ins.table else {
        return;
    };
    let Some(table) = last_name(tn) else { return };
    let Some(ts) = db.database().engine().table_schema(&table) else {
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
            if let (Some(slot), Some(tag)) = (tags.get_mut(i.wrapping_sub(1)), SqlType::of(field)) {
                slot.get_or_insert(tag);
            }
        }
    }
}
