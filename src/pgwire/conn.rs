//! One Postgres connection: its `strata::Session`, settings and prepared
//! statements, and the pgwire handlers that drive them.

use std::collections::HashMap;
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self, Statement};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type, DEFAULT_NAME,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::{DataRow, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Describe, Execute, Sync as PgSync, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use strata_query::describe::DescribedKind;
use strata_query::{Output, QueryError, Session, TxState};
use tokio::sync::watch;

use super::split::{max_placeholder, split_statements};
use super::types::{
    arrow_for_pg, decode_param, encode_batch, field_infos, pg_type_for_arrow, plan_columns,
};
use super::vars::{self, ConnFacts, Settings};
use super::Shared;
use crate::panic_message;

/// Most rows one `Execute` fetches from a portal; a client asking for more
/// gets them in parts (`PortalSuspended`, then its next `Execute` resumes).
pub const MAX_FETCH_ROWS: i32 = 1 << 20;

/// The row limit of an `Execute` as pgwire may use it. A negative limit
/// means none, as in Postgres (pgwire would read it as an enormous unsigned
/// count). pgwire sizes its row buffer by the limit before fetching, so a
/// forged limit of a billion rows was an allocation of tens of GiB whose
/// failure aborts the whole process: past [`MAX_FETCH_ROWS`] it is capped.
fn fetch_limit(max_rows: i32) -> i32 {
    if max_rows < 0 {
        0
    } else {
        max_rows.min(MAX_FETCH_ROWS)
    }
}

static PID_GEN: LazyLock<RandomPidSecretKeyGenerator> =
    LazyLock::new(RandomPidSecretKeyGenerator::default);

/// A statement prepared on this connection (protocol-level or `PREPARE`).
#[derive(Debug)]
pub struct Prepared {
    /// The statement's text, as the session runs it.
    pub sql: String,
    /// The same, parsed (None when only the session's own syntax accepts it).
    pub parsed: Option<Statement>,
    /// The highest `$n` it uses.
    pub n_params: usize,
    /// Parameter types, as reported to and decoded from the client.
    pub param_types: Vec<Type>,
    /// The Arrow type each parameter should have in the plan (cast to it).
    pub param_arrow: Vec<Option<DataType>>,
    /// Rows it returns; None for a command.
    pub schema: Option<SchemaRef>,
    /// How each of those columns is encoded (from `schema`, worked out once).
    pub plans: Option<Arc<Vec<super::types::ColumnPlan>>>,
}

/// What one statement produced.
pub(super) enum Exec {
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    Command(String),
    Empty,
}

pub(super) struct ConnState {
    pub(super) session: Session,
    settings: Settings,
    /// SQL-level `PREPARE`d statements.
    prepared: HashMap<String, Arc<Prepared>>,
    /// Open SQL cursors (`DECLARE`), by name.
    pub(super) cursors: HashMap<String, super::cursor::OpenCursor>,
    /// What every execution reads from `settings`, worked out once (None:
    /// a statement that may have changed them ran since).
    derived: Option<Derived>,
    user: String,
    database: String,
    pid: i32,
}

/// Values derived from a connection's settings.
struct Derived {
    format: Arc<pgwire::types::format::FormatOptions>,
    statement_timeout: Option<std::time::Duration>,
}

impl ConnState {
    fn derived(&mut self) -> &Derived {
        let settings = &self.settings;
        self.derived.get_or_insert_with(|| Derived {
            format: Arc::new(settings.format_options()),
            statement_timeout: settings.statement_timeout(),
        })
    }
}

pub struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) state: tokio::sync::Mutex<ConnState>,
    /// Bumped by a cancel request; running work watches it.
    pub(super) cancel: Arc<watch::Sender<u64>>,
    /// A `COPY … FROM STDIN` receiving data.
    pub(super) copy_in: std::sync::Mutex<Option<Box<super::copy::CopyIn>>>,
    /// Where the login (SCRAM exchange) stands.
    pub(super) login: std::sync::Mutex<super::login::LoginState>,
    /// A result stream failed after its statement returned.
    stream_failed: AtomicBool,
    /// When the running statement hits its `statement_timeout`.
    deadline: std::sync::Mutex<Option<tokio::time::Instant>>,
    key: std::sync::Mutex<Option<(i32, Bytes)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(k) = self.key.lock().expect("key lock").take() {
            self.shared
                .cancels
                .lock()
                .expect("cancel registry")
                .remove(&k);
        }
    }
}

/// The handlers of one connection.
#[derive(Clone)]
pub struct Conn(pub Arc<Inner>);

/// An error for the client (boxed: ErrorInfo is large).
pub(super) type E = Box<ErrorInfo>;

pub fn err(code: &str, msg: impl Into<String>) -> E {
    Box::new(ErrorInfo::new("ERROR".into(), code.into(), msg.into()))
}

/// `strata.*`: a setting the session keeps (see `strata_query::session::STRATA_SETTINGS`).
fn is_strata_setting(name: &str) -> bool {
    name.len() > 7
        && name
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("strata."))
}

pub(super) fn query_err(e: QueryError) -> E {
    err(e.sqlstate(), e.to_string())
}

fn user_err(info: E) -> PgWireError {
    PgWireError::UserError(info)
}

fn df_err(e: DataFusionError) -> PgWireError {
    user_err(query_err(QueryError::from(e)))
}

fn canceled() -> E {
    err("57014", "canceling statement due to user request")
}

fn timed_out() -> E {
    err("57014", "canceling statement due to statement timeout")
}

/// Resolves at the deadline (never, without one).
async fn deadline_passed(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending::<()>().await,
    }
}

/// Resolves when a cancel request arrives (never, if the connection is gone).
async fn cancelled(mut rx: watch::Receiver<u64>) {
    if rx.changed().await.is_err() {
        futures::future::pending::<()>().await;
    }
}

fn is_empty_query(q: &str) -> bool {
    q.chars().all(|c| c == ';' || c.is_whitespace())
}

impl Conn {
    pub fn new(shared: Arc<Shared>) -> Conn {
        let session = shared.db.session();
        let settings = shared.settings.clone();
        let (tx, _) = watch::channel(0u64);
        Conn(Arc::new(Inner {
            shared,
            state: tokio::sync::Mutex::new(ConnState {
                session,
                settings,
                prepared: HashMap::new(),
                cursors: HashMap::new(),
                derived: None,
                user: "strata".into(),
                database: "strata".into(),
                pid: 0,
            }),
            cancel: Arc::new(tx),
            stream_failed: AtomicBool::new(false),
            deadline: std::sync::Mutex::new(None),
            copy_in: std::sync::Mutex::new(None),
            login: std::sync::Mutex::new(Default::default()),
            key: std::sync::Mutex::new(None),
        }))
    }
}

impl Inner {
    fn absorb_stream_failure(&self, st: &mut ConnState) {
        if self.stream_failed.swap(false, Ordering::SeqCst) {
            st.session
                .fail_transaction("a result stream failed after its statement returned");
        }
    }

    pub(super) async fn tx_status(&self) -> TransactionStatus {
        let mut st = self.state.lock().await;
        self.absorb_stream_failure(&mut st);
        match st.session.transaction_state() {
            TxState::Idle => TransactionStatus::Idle,
            TxState::Open => TransactionStatus::Transaction,
            TxState::Failed => TransactionStatus::Error,
        }
    }

    /// An error the connection met itself (a Parse, Bind or COPY that
    /// failed) fails the open transaction block, as one from the session does.
    pub(super) async fn mark_failed(&self, why: &str) {
        self.state.lock().await.session.fail_transaction(why);
    }

    /// The columns of SQL cursor `name`, if it is open.
    pub(super) async fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        self.state
            .lock()
            .await
            .cursors
            .get(name)
            .map(|c| c.schema.clone())
    }

    pub(super) async fn format_options(&self) -> Arc<pgwire::types::format::FormatOptions> {
        self.state.lock().await.derived().format.clone()
    }

    /// Run one statement with bound parameters; settings changed are pushed
    /// to `reports`. `endless`: the caller reads a result that never ends
    /// (`COPY … TO STDOUT`), so a SUBSCRIBE may run.
    pub(super) async fn run(
        &self,
        reports: &mut Vec<(String, String)>,
        sql: &str,
        parsed: Option<&Statement>,
        params: Vec<ScalarValue>,
        endless: bool,
    ) -> Result<Exec, E> {
        if !endless && super::cursor::is_subscribe(sql) {
            return Err(subscribe_alone());
        }
        let mut st = self.state.lock().await;
        self.absorb_stream_failure(&mut st);
        *self.deadline.lock().expect("deadline lock") = st
            .derived()
            .statement_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let ends_tx = matches!(
            parsed,
            Some(Statement::Commit { .. } | Statement::Rollback { .. })
        );
        if !ends_tx {
            st.session.check_not_aborted().map_err(query_err)?;
        }
        let r = match super::cursor::parse(sql) {
            Some(c) => match c {
                Ok(c) => self.run_cursor(&mut st, c, params).await,
                Err(e) => Err(e),
            },
            None => self.run_locked(&mut st, reports, sql, parsed, params).await,
        };
        if !st.session.in_transaction() && !st.cursors.is_empty() {
            // Cursors without HOLD end with their transaction.
            st.cursors.retain(|_, c| c.hold);
        }
        if !matches!(parsed, None | Some(Statement::Query(_))) {
            // SET, RESET, DISCARD, EXECUTE of one of them, …
            st.derived = None;
        }
        if let Err(e) = &r {
            // (The session marked the errors it returned itself.)
            st.session.fail_transaction(&e.message);
        }
        r
    }

    async fn run_locked(
        &self,
        st: &mut ConnState,
        reports: &mut Vec<(String, String)>,
        sql: &str,
        parsed: Option<&Statement>,
        params: Vec<ScalarValue>,
    ) -> Result<Exec, E> {
        let cmd = |t: &str| Ok(Exec::Command(t.to_string()));
        let Some(stmt) = parsed else {
            return self.run_session(st, sql, None, params).await;
        };
        match stmt {
            Statement::Set(set) => {
                self.apply_set(st, set, reports)?;
                cmd("SET")
            }
            Statement::Reset(r) => {
                match &r.reset {
                    ast::Reset::ALL => {
                        reports.extend(st.settings.reset_all());
                        for (n, _) in strata_query::session::STRATA_SETTINGS {
                            let _ = st.session.set_setting(n, None);
                        }
                    }
                    ast::Reset::ConfigurationParameter(n) => {
                        let name = vars::object_name_string(n);
                        if is_strata_setting(&name) {
                            st.session.set_setting(&name, None).map_err(query_err)?;
                        } else {
                            reports.extend(st.settings.reset(&name))
                        }
                    }
                }
                cmd("RESET")
            }
            Statement::ShowVariable { variable } => {
                let name = vars::show_name(variable);
                let (schema, batch) = if name.eq_ignore_ascii_case("all") {
                    let mut rows: Vec<Vec<String>> = st
                        .settings
                        .all()
                        .into_iter()
                        .map(|(n, v, d)| vec![n, v, d])
                        .collect();
                    for (n, d) in strata_query::session::STRATA_SETTINGS {
                        let v = st.session.show_setting(n).unwrap_or_default();
                        rows.push(vec![n.to_string(), v, d.to_string()]);
                    }
                    vars::text_rows(&["name", "setting", "description"], rows)
                } else {
                    let v = match name.to_ascii_lowercase().as_str() {
                        "session_authorization" => st.user.clone(),
                        n if is_strata_setting(n) => st.session.show_setting(n).ok_or_else(|| {
                            err(
                                "42704",
                                format!(
                                    "unrecognized configuration parameter \"{name}\" (Strata's settings: {})",
                                    strata_query::session::STRATA_SETTINGS
                                        .iter()
                                        .map(|(n, _)| *n)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?,
                        _ => st.settings.get(&name).ok_or_else(|| {
                            err(
                                "42704",
                                format!("unrecognized configuration parameter \"{name}\""),
                            )
                        })?,
                    };
                    let col = show_column(&name);
                    vars::text_rows(&[col.as_str()], vec![vec![v]])
                };
                let stream = RecordBatchStreamAdapter::new(
                    schema.clone(),
                    futures::stream::iter(vec![Ok(batch)]),
                );
                Ok(Exec::Rows {
                    schema,
                    stream: Box::pin(stream),
                })
            }
            Statement::Discard { .. } => {
                if st.session.in_transaction() {
                    return Err(err(
                        "25001",
                        "DISCARD ALL cannot run inside a transaction block",
                    ));
                }
                reports.extend(st.settings.reset_all());
                st.prepared.clear();
                st.cursors.clear();
                cmd("DISCARD ALL")
            }
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => {
                let key = strata_query::ident::normalize(name);
                if st.prepared.contains_key(&key) {
                    return Err(err(
                        "42P05",
                        format!("prepared statement \"{key}\" already exists"),
                    ));
                }
                let types: Vec<Option<Type>> = data_types
                    .iter()
                    .map(|t| {
                        strata_query::sql::sql_type(t)
                            .map(|dt| Some(pg_type_for_arrow(&dt)))
                            .map_err(query_err)
                    })
                    .collect::<Result<_, _>>()?;
                let inner_sql = statement.to_string();
                let facts = facts(st);
                let p = self
                    .prepare(
                        &inner_sql,
                        Some((**statement).clone()),
                        &types,
                        &facts,
                        Some(&st.session),
                    )
                    .await?;
                st.prepared.insert(key, Arc::new(p));
                cmd("PREPARE")
            }
            Statement::Execute {
                name: Some(name),
                parameters,
                ..
            } => {
                let key = strata_query::ident::fold(&vars::object_name_string(name));
                let p = st.prepared.get(&key).cloned().ok_or_else(|| {
                    err(
                        "26000",
                        format!("prepared statement \"{key}\" does not exist"),
                    )
                })?;
                let user = st.user.clone();
                let values = self.eval_params(parameters, &user).await?;
                let params = bind_values(&p, values)?;
                Box::pin(self.run_locked(st, reports, &p.sql, p.parsed.as_ref(), params)).await
            }
            Statement::Deallocate { name, .. } => {
                if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
                    st.prepared.clear();
                    return cmd("DEALLOCATE ALL");
                }
                let key = strata_query::ident::normalize(name);
                if st.prepared.remove(&key).is_none() {
                    return Err(err(
                        "26000",
                        format!("prepared statement \"{key}\" does not exist"),
                    ));
                }
                cmd("DEALLOCATE")
            }
            Statement::Commit { .. } if st.session.transaction_state() == TxState::Failed => {
                // Postgres answers COMMIT of a failed block with ROLLBACK,
                // where the session's COMMIT rolls back with an error.
                st.session
                    .execute("ROLLBACK", &[])
                    .await
                    .map_err(query_err)?;
                cmd("ROLLBACK")
            }
            _ => self.run_session(st, sql, Some(stmt), params).await,
        }
    }

    /// Hand a statement to the session, with panics caught and cancel requests honoured.
    async fn run_session(
        &self,
        st: &mut ConnState,
        sql: &str,
        parsed: Option<&Statement>,
        params: Vec<ScalarValue>,
    ) -> Result<Exec, E> {
        // Functions answered from the connection's state are replaced by their values.
        let mut text = std::borrow::Cow::Borrowed(sql);
        let mut names = None;
        if let Some(stmt) = parsed {
            let mut rewritten = None;
            if vars::mentions_special(sql) {
                let facts = facts(st);
                let mut stmt = stmt.clone();
                if vars::rewrite_functions(&mut stmt, &facts.as_facts(&facts.settings)) {
                    text = std::borrow::Cow::Owned(stmt.to_string());
                    rewritten = Some(stmt);
                }
            }
            names = super::names::column_names(rewritten.as_ref().unwrap_or(stmt));
        }
        let rx = self.cancel.subscribe();
        let deadline = *self.deadline.lock().expect("deadline lock");
        let out = {
            let fut = AssertUnwindSafe(st.session.execute(&text, &params)).catch_unwind();
            tokio::select! {
                r = fut => r,
                _ = cancelled(rx.clone()) => return Err(canceled()),
                _ = deadline_passed(deadline) => return Err(timed_out()),
            }
        };
        match out {
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!("a statement panicked: {msg}; the connection's session was reset");
                let client = st.session.client().map(str::to_string);
                st.session = self.shared.db.session();
                let user = st.user.clone();
                st.session.set_user(&user);
                if let Some(c) = client {
                    st.session.set_client(&c);
                }
                Err(err("XX000", format!("internal error: the statement panicked ({msg}); any open transaction was rolled back")))
            }
            Ok(Err(e)) => Err(query_err(e)),
            Ok(Ok(outs)) => match outs.into_iter().last() {
                None => Ok(Exec::Empty),
                Some(Output::Command { tag, .. }) => Ok(Exec::Command(tag)),
                Some(Output::Rows { schema, stream }) => {
                    let schema = match &names {
                        Some(n) => super::names::rename(&schema, n),
                        None => schema,
                    };
                    Ok(Exec::Rows { schema, stream })
                }
            },
        }
    }

    /// DECLARE, FETCH, MOVE or CLOSE (src/pgwire/cursor.rs).
    async fn run_cursor(
        &self,
        st: &mut ConnState,
        c: super::cursor::CursorStmt,
        params: Vec<ScalarValue>,
    ) -> Result<Exec, E> {
        use super::cursor::{missing, CursorStmt, OpenCursor};
        match c {
            CursorStmt::Declare { name, hold, query } => {
                if !hold && !st.session.in_transaction() {
                    return Err(err(
                        "25P01",
                        "DECLARE CURSOR can only be used in transaction blocks: BEGIN first, or DECLARE … CURSOR WITH HOLD",
                    ));
                }
                if st.cursors.contains_key(&name) {
                    return Err(err("42P03", format!("cursor \"{name}\" already exists")));
                }
                let parsed = parse_one(&query);
                match self
                    .run_session(st, &query, parsed.as_ref(), params)
                    .await?
                {
                    Exec::Rows { schema, stream } => {
                        st.cursors.insert(
                            name,
                            OpenCursor {
                                schema,
                                stream,
                                pending: Default::default(),
                                hold,
                                endless: super::cursor::is_subscribe(&query),
                                done: false,
                            },
                        );
                        Ok(Exec::Command("DECLARE CURSOR".into()))
                    }
                    _ => Err(err(
                        "42P11",
                        "a cursor needs a query that returns rows (SELECT, VALUES, SUBSCRIBE …)",
                    )),
                }
            }
            CursorStmt::Fetch {
                name,
                count,
                skip,
                timeout,
            } => {
                let cursor = st.cursors.get_mut(&name).ok_or_else(|| missing(&name))?;
                let rx = self.cancel.subscribe();
                let deadline = *self.deadline.lock().expect("deadline lock");
                let stop = async move {
                    tokio::select! {
                        _ = cancelled(rx) => canceled(),
                        _ = deadline_passed(deadline) => timed_out(),
                    }
                };
                let batches = cursor.fetch(count, timeout, stop).await?;
                if skip {
                    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                    return Ok(Exec::Command(format!("MOVE {n}")));
                }
                let schema = cursor.schema.clone();
                let stream = RecordBatchStreamAdapter::new(
                    schema.clone(),
                    futures::stream::iter(batches.into_iter().map(Ok)),
                );
                Ok(Exec::Rows {
                    schema,
                    stream: Box::pin(stream),
                })
            }
            CursorStmt::Close(None) => {
                st.cursors.clear();
                Ok(Exec::Command("CLOSE CURSOR ALL".into()))
            }
            CursorStmt::Close(Some(name)) => {
                st.cursors.remove(&name).ok_or_else(|| missing(&name))?;
                Ok(Exec::Command("CLOSE CURSOR".into()))
            }
        }
    }

    fn apply_set(
        &self,
        st: &mut ConnState,
        set: &ast::Set,
        reports: &mut Vec<(String, String)>,
    ) -> Result<(), E> {
        let mut one = |st: &mut ConnState, name: &str, value: String| -> Result<(), E> {
            if is_strata_setting(name) {
                // Strata's own settings live in the session (both wires).
                return st
                    .session
                    .set_setting(name, Some(&value))
                    .map_err(query_err);
            }
            if value.eq_ignore_ascii_case("default") {
                reports.extend(st.settings.reset(name));
            } else {
                reports.extend(st.settings.set(name, &value).map_err(|(c, m)| err(&c, m))?);
            }
            Ok(())
        };
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => one(
                st,
                &vars::object_name_string(variable),
                vars::set_value(values),
            )?,
            ast::Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    one(
                        st,
                        &vars::object_name_string(&a.name),
                        vars::set_value(std::slice::from_ref(&a.value)),
                    )?;
                }
            }
            ast::Set::ParenthesizedAssignments { variables, values } => {
                for (n, v) in variables.iter().zip(values) {
                    one(
                        st,
                        &vars::object_name_string(n),
                        vars::set_value(std::slice::from_ref(v)),
                    )?;
                }
            }
            ast::Set::SetTimeZone { value, .. } => {
                one(st, "TimeZone", vars::set_value(std::slice::from_ref(value)))?
            }
            ast::Set::SetNames { charset_name, .. } => {
                one(st, "client_encoding", charset_name.value.clone())?
            }
            ast::Set::SetNamesDefault {} => one(st, "client_encoding", "default".into())?,
            // Switching roles would change which privileges apply: refuse
            // rather than appear to switch and keep the login's privileges.
            ast::Set::SetRole {
                role_name: Some(r), ..
            } if !r.value.eq_ignore_ascii_case("none") => {
                return Err(err(
                    "0A000",
                    format!(
                        "SET ROLE is not supported: statements run with the privileges of the role that logged in ({}); connect as \"{}\" instead",
                        st.user, r.value
                    ),
                ))
            }
            ast::Set::SetSessionAuthorization(a)
                if matches!(a.kind, ast::SetSessionAuthorizationParamKind::User(_)) =>
            {
                return Err(err(
                    "0A000",
                    "SET SESSION AUTHORIZATION is not supported: connect as that role instead",
                ))
            }
            // Transaction modes, roles and session authorization: accepted, nothing to change.
            _ => {}
        }
        Ok(())
    }

    /// Evaluate `EXECUTE name(expr, …)` arguments.
    async fn eval_params(&self, exprs: &[ast::Expr], user: &str) -> Result<Vec<ScalarValue>, E> {
        if exprs.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {}",
            exprs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut s = self.shared.db.session();
        s.set_user(user);
        let outs = s.execute(&sql, &[]).await.map_err(query_err)?;
        let Some(out) = outs.into_iter().next() else {
            return Ok(vec![]);
        };
        let batches = out.collect().await.map_err(query_err)?;
        let b = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| err("XX000", "EXECUTE arguments produced no row"))?;
        b.columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| query_err(e.into())))
            .collect()
    }

    /// Describe a statement for the extended protocol or `PREPARE`.
    async fn prepare(
        &self,
        sql: &str,
        parsed: Option<Statement>,
        client_types: &[Option<Type>],
        facts: &OwnedFacts,
        // The connection's session when the caller holds its state already.
        held: Option<&Session>,
    ) -> Result<Prepared, E> {
        let n_params = max_placeholder(sql);
        if super::cursor::is_subscribe(sql) {
            return Err(subscribe_alone());
        }
        let cursor = match super::cursor::parse(sql) {
            Some(Ok(super::cursor::CursorStmt::Fetch {
                name, skip: false, ..
            })) => {
                let st = self.state.lock().await;
                let c = st
                    .cursors
                    .get(&name)
                    .ok_or_else(|| super::cursor::missing(&name))?;
                Some((vec![None; n_params], Some(c.schema.clone())))
            }
            Some(Ok(super::cursor::CursorStmt::Declare { query, .. }))
                if !super::cursor::is_subscribe(&query) =>
            {
                // The parameters are the query's.
                let inner =
                    Box::pin(self.prepare(&query, parse_one(&query), client_types, facts, held))
                        .await?;
                Some((inner.param_arrow.clone(), None))
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(_)) => Some((vec![None; n_params], None)),
            None => None,
        };
        let local = match &parsed {
            _ if cursor.is_some() => cursor,
            _ if super::copy::is_copy(sql) => {
                // Errors (no such table, no `_id`) at Parse, as Postgres does.
                self.check_copy(sql)?;
                Some((vec![None; n_params], None))
            }
            Some(
                Statement::Set(_)
                | Statement::Reset(_)
                | Statement::Discard { .. }
                | Statement::Prepare { .. }
                | Statement::Deallocate { .. }
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. },
            ) => Some((vec![None; n_params], None)),
            Some(Statement::ShowVariable { variable }) => {
                let name = vars::show_name(variable);
                let (schema, _) = if name.eq_ignore_ascii_case("all") {
                    vars::text_rows(&["name", "setting", "description"], vec![])
                } else {
                    vars::text_rows(&[show_column(&name).as_str()], vec![])
                };
                Some((vec![None; n_params], Some(schema)))
            }
            Some(Statement::Execute {
                name: Some(name), ..
            }) => {
                let key = strata_query::ident::fold(&vars::object_name_string(name));
                let st = self.state.lock().await;
                let p = st.prepared.get(&key).ok_or_else(|| {
                    err(
                        "26000",
                        format!("prepared statement \"{key}\" does not exist"),
                    )
                })?;
                Some((vec![None; n_params], p.schema.clone()))
            }
            _ => None,
        };
        let (params, schema, tags) = match local {
            Some((p, s)) => (p, s, vec![]),
            None => {
                let special = vars::mentions_special(sql);
                let rewrite = |s: &mut Statement| {
                    if special {
                        vars::rewrite_functions(s, &facts.as_facts(&facts.settings));
                    }
                };
                let d = match held {
                    Some(session) => session.describe(sql, n_params, &rewrite).await,
                    None => {
                        let st = self.state.lock().await;
                        st.session.describe(sql, n_params, &rewrite).await
                    }
                }
                .map_err(query_err)?;
                let schema = match (d.kind, &d.schema, &d.statement) {
                    (DescribedKind::Script, ..) => {
                        return Err(err(
                            "42601",
                            "cannot insert multiple commands into a prepared statement",
                        ))
                    }
                    // Postgres's names for unnamed result columns.
                    (DescribedKind::Query, Some(schema), Some(stmt)) => {
                        match super::names::column_names(stmt) {
                            Some(names) => Some(super::names::rename(schema, &names)),
                            None => Some(schema.clone()),
                        }
                    }
                    _ => d.schema.clone(),
                };
                (d.params, schema, d.param_tags)
            }
        };
        let n = params.len().max(client_types.len()).max(n_params);
        let mut param_types = Vec::with_capacity(n);
        let mut param_arrow = Vec::with_capacity(n);
        for i in 0..n {
            let inferred = params.get(i).cloned().flatten();
            match client_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
            {
                Some(t) => param_types.push(t),
                None => param_types.push(match tags.get(i).copied().flatten() {
                    // uuid / json / jsonb: text in Arrow, their own type on the wire.
                    Some(tag) => super::types::pg_type_for_tag(tag),
                    None => inferred
                        .as_ref()
                        .map(pg_type_for_arrow)
                        .unwrap_or(Type::TEXT),
                }),
            }
            param_arrow.push(inferred);
        }
        Ok(Prepared {
            sql: sql.to_string(),
            parsed,
            n_params,
            param_types,
            param_arrow,
            plans: schema.as_ref().map(|s| Arc::new(plan_columns(s))),
            schema,
        })
    }
}

/// Does this connection need the parsed form of a simple-protocol statement?
/// (Settings, prepared statements, transaction ends, result naming and
/// function rewrites; plain writes go to the session as text.)
fn wants_parse(sql: &str) -> bool {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "SET"
            | "RESET"
            | "SHOW"
            | "DISCARD"
            | "PREPARE"
            | "EXECUTE"
            | "DEALLOCATE"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "ABORT"
            | "SELECT"
            | "WITH"
            | "VALUES"
            | "TABLE"
            | "EXPLAIN"
    ) || vars::mentions_special(sql)
}

/// Parse one statement with sqlparser; None if it does not parse as exactly one
/// (Strata's temporal syntax, which only the session understands).
pub(super) fn parse_one(sql: &str) -> Option<Statement> {
    match strata_query::sql::parse(sql) {
        Ok(mut v) if v.len() == 1 => v.pop(),
        _ => None,
    }
}

fn show_column(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "transaction_isolation" => "transaction_isolation".into(),
        _ => name.to_string(),
    }
}

/// A snapshot of what the rewritten functions need.
struct OwnedFacts {
    user: String,
    database: String,
    pid: i32,
    settings: Settings,
}

impl OwnedFacts {
    fn as_facts<'a>(&'a self, settings: &'a Settings) -> ConnFacts<'a> {
        ConnFacts {
            user: &self.user,
            database: &self.database,
            pid: self.pid,
            settings,
        }
    }
}

fn facts(st: &ConnState) -> OwnedFacts {
    OwnedFacts {
        user: st.user.clone(),
        database: st.database.clone(),
        pid: st.pid,
        settings: st.settings.clone(),
    }
}

/// Cast evaluated `EXECUTE` arguments to the prepared statement's types.
fn bind_values(p: &Prepared, values: Vec<ScalarValue>) -> Result<Vec<ScalarValue>, E> {
    let need = p.n_params.max(p.param_types.len());
    if values.len() != need {
        return Err(err(
            "42601",
            format!(
                "wrong number of parameters for prepared statement: expected {need}, got {}",
                values.len()
            ),
        ));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            // Inferred or declared types are cast to; an undeclared text parameter keeps the argument's own type.
            let target = p.param_arrow.get(i).cloned().flatten().or_else(|| {
                p.param_types
                    .get(i)
                    .filter(|t| **t != Type::TEXT)
                    .map(arrow_for_pg)
            });
            match target {
                Some(dt) if dt != v.data_type() => v
                    .cast_to(&dt)
                    .map_err(|e| err("42804", format!("parameter ${}: {e}", i + 1))),
                _ => Ok(v),
            }
        })
        .collect()
}

/// Decode the portal's parameters into ScalarValues of the statement's types.
fn portal_params(portal: &Portal<Arc<Prepared>>) -> Result<Vec<ScalarValue>, E> {
    let p = &portal.statement.statement;
    let need = p.n_params;
    if portal.parameters.len() < need {
        return Err(err(
            "08P01",
            format!(
                "bind message supplies {} parameters, but prepared statement requires {need}",
                portal.parameters.len()
            ),
        ));
    }
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let ty = p.param_types.get(i).cloned().unwrap_or(Type::TEXT);
            let v = decode_param(&ty, portal.parameter_format.is_binary(i), raw.as_deref())
                .map_err(|m| err("22P02", format!("parameter ${}: {m}", i + 1)))?;
            match p.param_arrow.get(i).cloned().flatten() {
                Some(dt) if dt != v.data_type() && dt != DataType::Null => {
                    v.cast_to(&dt).map_err(|e| {
                        err(
                            "42804",
                            format!("parameter ${} cannot be used as {dt}: {e}", i + 1),
                        )
                    })
                }
                _ => Ok(v),
            }
        })
        .collect()
}

/// Encode a result stream as DataRows: panics become errors, cancel requests end it.
fn row_stream(
    inner: Arc<Inner>,
    stream: SendableRecordBatchStream,
    plans: Arc<Vec<super::types::ColumnPlan>>,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let rx = inner.cancel.subscribe();
    let deadline = *inner.deadline.lock().expect("deadline lock");
    let stop = async move {
        tokio::select! {
            _ = cancelled(rx) => canceled(),
            _ = deadline_passed(deadline) => timed_out(),
        }
    };
    let rows = AssertUnwindSafe(stream)
        .catch_unwind()
        .map(move |r| match r {
            Ok(Ok(batch)) => encode_batch(&batch, &plans, &fields),
            Ok(Err(e)) => Err(df_err(e)),
            Err(panic) => {
                let msg = panic_message(panic.as_ref());
                tracing::error!("a query panicked while producing rows: {msg}");
                Err(user_err(err(
                    "XX000",
                    format!("internal error: the query panicked ({msg})"),
                )))
            }
        })
        .flat_map(|r| match r {
            Ok(rows) => futures::stream::iter(rows.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        });
    Guarded {
        rows: Box::pin(rows),
        cancel: Box::pin(stop),
        inner,
        done: false,
    }
}

struct Guarded<S> {
    rows: Pin<Box<S>>,
    /// Resolves with the error that ends the rows early (cancel, timeout).
    cancel: Pin<Box<dyn std::future::Future<Output = E> + Send>>,
    inner: Arc<Inner>,
    done: bool,
}

impl<S: Stream<Item = PgWireResult<DataRow>>> Stream for Guarded<S> {
    type Item = PgWireResult<DataRow>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(e) = self.cancel.as_mut().poll(cx) {
            self.done = true;
            self.inner.stream_failed.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(user_err(e))));
        }
        match self.rows.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                self.inner.stream_failed.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// A SUBSCRIBE on its own: its result never ends, which a driver that
/// reads a whole result before returning cannot take.
fn subscribe_alone() -> E {
    err(
        "0A000",
        "SUBSCRIBE streams changes without end, so it cannot run as a plain query: read it with \
         COPY (SUBSCRIBE TO t) TO STDOUT (psql: \\copy (SUBSCRIBE TO t) TO STDOUT), or \
         BEGIN; DECLARE c CURSOR FOR SUBSCRIBE TO t; FETCH 100 c",
    )
}

fn row_description(fields: &[FieldInfo]) -> RowDescription {
    RowDescription::new(fields.iter().map(Into::into).collect())
}

fn error_message(e: PgWireError) -> PgWireBackendMessage {
    PgWireBackendMessage::ErrorResponse(ErrorInfo::from(e).into())
}

// ---------------------------------------------------------------------------
// Startup.

struct Params(HashMap<String, String>);

impl ServerParameterProvider for Params {
    fn server_parameters<C: ClientInfo>(&self, _client: &C) -> Option<HashMap<String, String>> {
        Some(self.0.clone())
    }
}

#[async_trait]
impl StartupHandler for Conn {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::PasswordMessageFamily(msg) = message {
            // SCRAM exchange (see login.rs); the state lives between messages.
            let mut ls = std::mem::take(&mut *self.0.login.lock().expect("login lock"));
            let done = super::login::step(
                &self.0.shared.login,
                self.0.shared.db.database(),
                client,
                &mut ls,
                msg,
            )
            .await;
            *self.0.login.lock().expect("login lock") = ls;
            return if done? {
                self.complete_startup(client).await
            } else {
                Ok(())
            };
        }
        let PgWireFrontendMessage::Startup(ref startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, startup).await?;
        save_startup_parameters_to_metadata(client, startup);
        self.0.shared.login.check_transport(client)?;
        if self.0.shared.login.needs_password() {
            let mut ls = super::login::LoginState::Idle;
            super::login::begin(&self.0.shared.login, client, &mut ls).await?;
            *self.0.login.lock().expect("login lock") = ls;
            return Ok(());
        }
        self.complete_startup(client).await
    }
}

impl Conn {
    /// After authentication: register for cancels, apply startup settings, say hello.
    async fn complete_startup<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, key) = PID_GEN.generate(client);
        client.set_pid_and_secret_key(pid, key.clone());
        let k = (pid, key.to_bytes());
        self.0
            .shared
            .cancels
            .lock()
            .expect("cancel registry")
            .insert(k.clone(), self.0.cancel.clone());
        *self.0.key.lock().expect("key lock") = Some(k);

        let md = client.metadata().clone();
        let params = {
            let mut st = self.0.state.lock().await;
            st.pid = pid;
            if let Some(u) = md.get("user") {
                st.user = u.clone();
            }
            // A stored role without LOGIN may not connect, in trust mode too.
            let db = self.0.shared.db.database();
            if let Err(e) = db.access().login(db.engine(), &st.user).await {
                db.audit(strata_query::access::audit::AuditEvent {
                    event: "login_failed",
                    role: st.user.clone(),
                    client: Some(client.socket_addr().to_string()),
                    statement: None,
                    detail: Some(e.to_string()),
                });
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "28000".into(),
                    e.to_string(),
                ))));
            }
            let user = st.user.clone();
            let addr = client.socket_addr().to_string();
            st.session.set_user(&user);
            st.session.set_client(&addr);
            db.audit(strata_query::access::audit::AuditEvent {
                event: "login",
                role: user.clone(),
                client: Some(addr),
                statement: None,
                detail: Some("postgres".into()),
            });
            st.database = md
                .get("database")
                .cloned()
                .unwrap_or_else(|| st.user.clone());
            for (k, v) in &md {
                if !matches!(k.as_str(), "user" | "database" | "options" | "replication") {
                    let _ = st.settings.set(k, v);
                }
            }
            // `options=-c name=value -c …`
            if let Some(opts) = md.get("options") {
                let words: Vec<&str> = opts.split_whitespace().collect();
                let mut i = 0;
                while i < words.len() {
                    let kv = if words[i] == "-c" {
                        i += 1;
                        words.get(i).copied()
                    } else {
                        words[i]
                            .strip_prefix("--")
                            .or_else(|| words[i].strip_prefix("-c"))
                    };
                    if let Some((k, v)) = kv.and_then(|kv| kv.split_once('=')) {
                        let _ = st.settings.set(k, v);
                    }
                    i += 1;
                }
            }
            st.derived = None;
            let mut p = HashMap::new();
            p.insert("server_version".into(), vars::SERVER_VERSION.to_string());
            p.insert("server_encoding".into(), "UTF8".into());
            p.insert("integer_datetimes".into(), "on".into());
            p.insert("in_hot_standby".into(), "off".into());
            p.insert("is_superuser".into(), "on".into());
            p.insert("default_transaction_read_only".into(), "off".into());
            p.insert("session_authorization".into(), st.user.clone());
            for name in [
                "client_encoding",
                "DateStyle",
                "IntervalStyle",
                "TimeZone",
                "standard_conforming_strings",
                "application_name",
                "search_path",
            ] {
                p.insert(name.into(), st.settings.get(name).unwrap_or_default());
            }
            p
        };
        finish_authentication(client, &Params(params)).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Simple query protocol.

#[async_trait]
impl SimpleQueryHandler for Conn {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let sql = query.query;
        let pieces = if is_empty_query(&sql) {
            vec![]
        } else {
            split_statements(&sql)
        };
        if pieces.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        let n_pieces = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            if super::copy::is_copy(&piece) {
                match self.simple_copy(client, &piece, i + 1 == n_pieces).await? {
                    super::copy::Started::Done => continue,
                    super::copy::Started::Failed => break,
                    // Copy-in mode: ReadyForQuery comes after CopyDone.
                    super::copy::Started::CopyIn => return Ok(()),
                }
            }
            let parsed = if wants_parse(&piece) {
                parse_one(&piece)
            } else {
                None
            };
            if !self.simple_one(client, &piece, parsed).await? {
                break;
            }
        }
        let status = self.0.tx_status().await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` is overridden; nothing calls this.
        Err(PgWireError::ApiError(
            "simple queries are handled in on_query".into(),
        ))
    }
}

impl Conn {
    /// Run one statement of a simple query and write its messages. False: stop (it failed).
    async fn simple_one<C>(
        &self,
        client: &mut C,
        sql: &str,
        parsed: Option<Statement>,
    ) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut reports = vec![];
        let r = self
            .0
            .run(&mut reports, sql, parsed.as_ref(), vec![], false)
            .await;
        for (k, v) in reports {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    k, v,
                )))
                .await?;
        }
        match r {
            Err(info) => {
                client
                    .feed(PgWireBackendMessage::ErrorResponse((*info).into()))
                    .await?;
                Ok(false)
            }
            Ok(Exec::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                Ok(true)
            }
            Ok(Exec::Command(tag)) => {
                client
                    .feed(PgWireBackendMessage::CommandComplete(Tag::new(&tag).into()))
                    .await?;
                Ok(true)
            }
            Ok(Exec::Rows { schema, stream }) => {
                let plans = Arc::new(plan_columns(&schema));
                let fields = Arc::new(field_infos(
                    &plans,
                    &Format::UnifiedText,
                    &self.0.format_options().await,
                ));
                client
                    .feed(PgWireBackendMessage::RowDescription(row_description(
                        &fields,
                    )))
                    .await?;
                let mut rows = Box::pin(row_stream(self.0.clone(), stream, plans, fields));
                let mut n = 0usize;
                while let Some(row) = rows.next().await {
                    match row {
                        Ok(row) => {
                            client.feed(PgWireBackendMessage::DataRow(row)).await?;
                            n += 1;
                        }
                        Err(e) => {
                            client.feed(error_message(e)).await?;
                            return Ok(false);
                        }
                    }
                }
                let tag = if super::cursor::is_fetch(sql) {
                    "FETCH"
                } else {
                    "SELECT"
                };
                client
                    .feed(PgWireBackendMessage::CommandComplete(
                        Tag::new(tag).with_rows(n).into(),
                    ))
                    .await?;
                Ok(true)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Extended query protocol.

pub struct Parser(Arc<Inner>);

#[async_trait]
impl QueryParser for Parser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut pieces = split_statements(sql);
        match pieces.len() {
            0 => return Ok(None),
            1 => {}
            _ => {
                self.0
                    .mark_failed("several commands in one prepared statement")
                    .await;
                return Err(user_err(err(
                    "42601",
                    "cannot insert multiple commands into a prepared statement",
                )));
            }
        }
        let piece = pieces.remove(0);
        let parsed = parse_one(&piece);
        let facts = facts(&*self.0.state.lock().await);
        match self.0.prepare(&piece, parsed, types, &facts, None).await {
            Ok(p) => Ok(Some(Arc::new(p))),
            Err(e) => {
                self.0.mark_failed(&e.message).await;
                Err(user_err(e))
            }
        }
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let Some(schema) = &stmt.schema else {
            return Ok(vec![]);
        };
        let plans = plan_columns(schema);
        let opts = Arc::new(pgwire::types::format::FormatOptions::default());
        Ok(field_infos(
            &plans,
            column_format.unwrap_or(&Format::UnifiedText),
            &opts,
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Conn {
    type Statement = Arc<Prepared>;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(Parser(self.0.clone()))
    }

    /// Execute a portal to completion with every message queued, so the
    /// reply (rows, `CommandComplete`) leaves in the one write at Sync; the
    /// default flushes after `CommandComplete` (two writes per execution).
    /// Row-limited fetches, resumed portals and COPY take the default path.
    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        message.max_rows = fetch_limit(message.max_rows);
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(p)) => p,
            _ => return self._on_execute(client, message).await,
        };
        let fresh = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        if message.max_rows != 0
            || !fresh
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            || super::copy::is_copy(&portal.statement.statement.sql)
        {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let msg = match ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await? {
            Response::Query(mut q) => {
                let mut n = 0usize;
                while let Some(row) = q.data_rows().next().await {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    n += 1;
                }
                let tag = Tag::new(q.command_tag()).with_rows(n);
                PgWireBackendMessage::CommandComplete(tag.into())
            }
            Response::Execution(tag) => PgWireBackendMessage::CommandComplete(tag.into()),
            Response::EmptyQuery => {
                PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())
            }
            Response::Error(e) => PgWireBackendMessage::ErrorResponse((*e).into()),
            _ => {
                return Err(PgWireError::ApiError(
                    "unexpected response to an extended-protocol statement".into(),
                ))
            }
        };
        client.feed(msg).await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    /// As pgwire's own, but `BindComplete` is queued, not flushed: the whole
    /// Bind/Execute/Sync exchange then goes out in one write at Sync (a
    /// flush per message costs a syscall and a client wake-up each).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement) {
            Some(Entry::Value(stmt)) => {
                let p = Portal::try_new(&message, stmt)?;
                client.portal_store().put_portal(Arc::new(p));
            }
            Some(Entry::Empty) => {
                if !message.parameters.is_empty() {
                    return Err(user_err(err(
                        "08P01",
                        format!(
                            "bind message supplies {} parameters, but prepared statement {statement:?} requires 0",
                            message.parameters.len()
                        ),
                    )));
                }
                client.portal_store().put_empty_portal(portal);
            }
            None => return Err(PgWireError::StatementNotFound(statement.to_owned())),
        }
        client
            .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let opts = self.0.format_options().await;
        let (params, fields) = match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => match client.portal_store().get_statement(name) {
                Some(Entry::Value(s)) => {
                    let p = &s.statement;
                    let fields = p
                        .plans
                        .as_ref()
                        .map(|plans| field_infos(plans, &Format::UnifiedText, &opts));
                    (Some(p.param_types.clone()), fields)
                }
                Some(Entry::Empty) => (Some(vec![]), None),
                None => return Err(PgWireError::StatementNotFound(name.to_owned())),
            },
            TARGET_TYPE_BYTE_PORTAL => match client.portal_store().get_portal(name) {
                Some(Entry::Value(portal)) => {
                    let p = &portal.statement.statement;
                    let fields = p
                        .plans
                        .as_ref()
                        .map(|plans| field_infos(plans, &portal.result_column_format, &opts));
                    (None, fields)
                }
                Some(Entry::Empty) => (None, None),
                // A SQL cursor is a portal too (psycopg describes its
                // server-side cursors by name).
                None => match self.0.cursor_schema(name).await {
                    Some(schema) => (
                        None,
                        Some(field_infos(
                            &plan_columns(&schema),
                            &Format::UnifiedText,
                            &opts,
                        )),
                    ),
                    None => return Err(PgWireError::PortalNotFound(name.to_owned())),
                },
            },
            other => return Err(PgWireError::InvalidTargetType(other)),
        };
        if let Some(params) = params {
            client
                .feed(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(params.iter().map(|t| t.oid()).collect()),
                ))
                .await?;
        }
        match fields {
            Some(f) => {
                client
                    .feed(PgWireBackendMessage::RowDescription(row_description(&f)))
                    .await?
            }
            None => {
                client
                    .feed(PgWireBackendMessage::NoData(NoData::new()))
                    .await?
            }
        }
        Ok(())
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        let status = self.0.tx_status().await;
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = portal.statement.statement.clone();
        if super::copy::is_copy(&p.sql) {
            return self.extended_copy(client, &p.sql).await;
        }
        let params = match portal_params(portal) {
            Ok(v) => v,
            Err(e) => {
                self.0.mark_failed(&e.message).await;
                return Err(user_err(e));
            }
        };
        let mut reports = vec![];
        let r = self
            .0
            .run(&mut reports, &p.sql, p.parsed.as_ref(), params, false)
            .await;
        for (k, v) in reports {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    k, v,
                )))
                .await?;
        }
        match r {
            Err(e) => Err(user_err(e)),
            Ok(Exec::Empty) => Ok(Response::EmptyQuery),
            Ok(Exec::Command(tag)) => Ok(Response::Execution(Tag::new(&tag))),
            Ok(Exec::Rows { schema, stream }) => {
                let plans = match &p.plans {
                    Some(plans) => plans.clone(),
                    None => Arc::new(plan_columns(&schema)),
                };
                let fields = Arc::new(field_infos(
                    &plans,
                    &portal.result_column_format,
                    &self.0.format_options().await,
                ));
                let mut q = QueryResponse::new(
                    fields.clone(),
                    row_stream(self.0.clone(), stream, plans, fields),
                );
                if super::cursor::is_fetch(&p.sql) {
                    q.set_command_tag("FETCH");
                }
                Ok(Response::Query(q))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn row_limits_are_none_for_negative_and_capped_for_huge() {
        assert_eq!(fetch_limit(0), 0);
        assert_eq!(fetch_limit(-1), 0);
        assert_eq!(fetch_limit(i32::MIN), 0);
        assert_eq!(fetch_limit(50), 50);
        assert_eq!(fetch_limit(0x5300_0000), MAX_FETCH_ROWS);
        assert_eq!(fetch_limit(i32::MAX), MAX_FETCH_ROWS);
    }

    #[tokio::test]
    async fn a_panicking_result_stream_becomes_an_error() {
        let db = crate::Db::open(crate::Config::memory()).await.unwrap();
        let conn = Conn::new(Shared::new(db));
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let panicking = futures::stream::poll_fn(
            |_| -> Poll<Option<datafusion::error::Result<datafusion::arrow::array::RecordBatch>>> {
                panic!("boom")
            },
        );
        let stream: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(schema.clone(), panicking));
        let plans = Arc::new(plan_columns(&schema));
        let fields = Arc::new(field_infos(
            &plans,
            &Format::UnifiedText,
            &Arc::new(Default::default()),
        ));
        let mut rows = Box::pin(row_stream(conn.0.clone(), stream, plans, fields));
        match rows.next().await {
            Some(Err(PgWireError::UserError(e))) => {
                assert_eq!(e.code, "XX000");
                assert!(e.message.contains("boom"), "{}", e.message);
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(rows.next().await.is_none());
        // The connection still answers.
        let mut reports = vec![];
        let r = conn
            .0
            .run(
                &mut reports,
                "SELECT 1",
                parse_one("SELECT 1").as_ref(),
                vec![],
                false,
            )
            .await;
        assert!(matches!(r, Ok(Exec::Rows { .. })));
    }
}
