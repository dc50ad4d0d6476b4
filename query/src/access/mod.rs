//! Roles and privileges: who may read, write and erase which tables.
//!
//! - **Stored in the database.** Roles, memberships and grants are rows of
//!   three tables with reserved names ([`ROLES`], [`MEMBERS`], [`GRANTS`]),
//!   written through the normal commit path: durable, kept with their
//!   history, and seen by every node through the log. Rows are never
//!   deleted: a REVOKE writes the row again with `granted = false`, a DROP
//!   ROLE with `dropped = true`.
//! - **Read from a cache** ([`Access`]), rebuilt when one of the three
//!   tables changed on this node ([`Engine::tables_last_write`]), so a
//!   REVOKE takes effect for the next statement of every session.
//! - **Checked in one place**: [`Session::authorize`](crate::session::Session)
//!   before every statement, on every front end, from the statement's table
//!   references ([`needs`]).
//! - **Bootstrap superusers**: the users the server was started with
//!   (`--user`, the config file) are superusers and are not stored. In trust
//!   mode (and in the embedded API) a name that is not a stored role is a
//!   superuser too, so nothing changes until roles are created.

pub mod audit;
mod exec;
pub mod mask;
pub mod parse;
mod scram;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{self, Statement};
use parking_lot::RwLock;
use strata_storage::time::Micros;
use strata_storage::{Coordinate, Engine, Op, OpKind};

pub use parse::{Governance, Objects, RoleOption};
pub use scram::{constant_time_eq, random_salt, ScramVerifier, SCRAM_ITERATIONS};

use crate::error::{QueryError, Result};
use crate::temporal::StatementKind;

/// Roles: `_id` = name; `name`, `superuser`, `login`, `createrole`,
/// `password` (a SCRAM verifier), `dropped`.
pub const ROLES: &str = "strata$roles";
/// Memberships: `_id` = role ␟ member; `role`, `member`, `granted`, `grantor`.
pub const MEMBERS: &str = "strata$members";
/// Table privileges: `_id` = table ␟ grantee ␟ privilege; `table_name`,
/// `grantee`, `privilege`, `granted`, `grantor`.
pub const GRANTS: &str = "strata$grants";

/// Comments: `_id` = table ␟ column; `table_name`, `column_name` (NULL for
/// the table's own), `description` (NULL: removed).
pub const COMMENTS: &str = "strata$comments";
/// Security labels: `_id` = table ␟ column; `table_name`, `column_name`,
/// `label` (NULL: removed).
pub const LABELS: &str = "strata$labels";
/// Keys: `_id` = `mask`, `key` (hex): the masking hash's key.
pub const KEYS: &str = "strata$keys";
/// The only security label provider (`SECURITY LABEL FOR strata …`).
pub const LABEL_PROVIDER: &str = "strata";
/// Members of this built-in role see masked columns unmasked.
pub const UNMASK_ROLE: &str = "strata_unmask";

const TABLES: [&str; 6] = [ROLES, MEMBERS, GRANTS, COMMENTS, LABELS, KEYS];

/// The role every role is a member of (`GRANT … TO PUBLIC`).
pub const PUBLIC: &str = "public";
/// `CURRENT_USER` in a statement, resolved by the session.
pub(crate) const CURRENT_USER: &str = "\u{0}current_user";

const SEP: char = '\u{1f}';

/// A table privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    /// Strata's own: `ERASE FROM t …` removes rows from all of history.
    Erase,
}

impl Privilege {
    pub const ALL: [Privilege; 5] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Erase,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Erase => "ERASE",
        }
    }

    pub fn from_name(s: &str) -> Option<Privilege> {
        Privilege::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Its letter in an `aclitem` (`relacl`, psql's `\dp`): Postgres' own
    /// letters, and `E` for ERASE.
    pub fn acl_char(self) -> char {
        match self {
            Privilege::Select => 'r',
            Privilege::Insert => 'a',
            Privilege::Update => 'w',
            Privilege::Delete => 'd',
            Privilege::Erase => 'E',
        }
    }
}

/// A stored role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleRow {
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    pub createrole: bool,
    /// `SCRAM-SHA-256$…`, never the password.
    pub password: Option<String>,
}

/// Roles, memberships and grants at one moment.
#[derive(Debug, Clone, Default)]
pub struct AccessState {
    pub roles: BTreeMap<String, RoleRow>,
    /// (role, member) → grantor.
    pub members: BTreeMap<(String, String), String>,
    /// (table, grantee) → privilege → grantor.
    pub grants: BTreeMap<(String, String), BTreeMap<Privilege, String>>,
    /// (table, column or "" for the table) → comment.
    pub comments: BTreeMap<(String, String), String>,
    /// (table, column or "" for the table) → security label.
    pub labels: BTreeMap<(String, String), String>,
    /// The masking hash's key.
    pub mask_key: Option<Vec<u8>>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Option<ArrayRef> {
    let c = b.column_by_name(name)?;
    match c.data_type() {
        DataType::Utf8 | DataType::Boolean => Some(c.clone()),
        _ => datafusion::arrow::compute::cast(c, &DataType::Utf8).ok(),
    }
}

fn text(a: &Option<ArrayRef>, i: usize) -> Option<String> {
    let a = a.as_ref()?.as_any().downcast_ref::<StringArray>()?;
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn flag(a: &Option<ArrayRef>, i: usize) -> bool {
    a.as_ref()
        .and_then(|a| a.as_any().downcast_ref::<BooleanArray>())
        .is_some_and(|a| !a.is_null(i) && a.value(i))
}

impl AccessState {
    /// Take in rows of one of the three tables, later rows replacing
    /// earlier ones with the same key.
    pub fn absorb(&mut self, table: &str, b: &RecordBatch) {
        match table {
            ROLES => {
                let (name, sup, login, cr, pw, dropped) = (
                    col(b, "name"),
                    col(b, "superuser"),
                    col(b, "login"),
                    col(b, "createrole"),
                    col(b, "password"),
                    col(b, "dropped"),
                );
                for i in 0..b.num_rows() {
                    let Some(n) = text(&name, i) else { continue };
                    if flag(&dropped, i) {
                        self.roles.remove(&n);
                        continue;
                    }
                    self.roles.insert(
                        n.clone(),
                        RoleRow {
                            name: n,
                            superuser: flag(&sup, i),
                            login: flag(&login, i),
                            createrole: flag(&cr, i),
                            password: text(&pw, i),
                        },
                    );
                }
            }
            MEMBERS => {
                let (role, member, granted, grantor) = (
                    col(b, "role"),
                    col(b, "member"),
                    col(b, "granted"),
                    col(b, "grantor"),
                );
                for i in 0..b.num_rows() {
                    let (Some(r), Some(m)) = (text(&role, i), text(&member, i)) else {
                        continue;
                    };
                    if flag(&granted, i) {
                        self.members
                            .insert((r, m), text(&grantor, i).unwrap_or_default());
                    } else {
                        self.members.remove(&(r, m));
                    }
                }
            }
            GRANTS => {
                let (table, grantee, privilege, granted, grantor) = (
                    col(b, "table_name"),
                    col(b, "grantee"),
                    col(b, "privilege"),
                    col(b, "granted"),
                    col(b, "grantor"),
                );
                for i in 0..b.num_rows() {
                    let (Some(t), Some(g), Some(p)) = (
                        text(&table, i),
                        text(&grantee, i),
                        text(&privilege, i).and_then(|p| Privilege::from_name(&p)),
                    ) else {
                        continue;
                    };
                    let key = (t, g);
                    if flag(&granted, i) {
                        self.grants
                            .entry(key)
                            .or_default()
                            .insert(p, text(&grantor, i).unwrap_or_default());
                    } else if let Some(set) = self.grants.get_mut(&key) {
                        set.remove(&p);
                        if set.is_empty() {
                            self.grants.remove(&key);
                        }
                    }
                }
            }
            COMMENTS | LABELS => {
                let is_comment = table == COMMENTS;
                let (table, column, value) = (
                    col(b, "table_name"),
                    col(b, "column_name"),
                    col(b, if is_comment { "description" } else { "label" }),
                );
                let map = if is_comment {
                    &mut self.comments
                } else {
                    &mut self.labels
                };
                for i in 0..b.num_rows() {
                    let Some(t) = text(&table, i) else { continue };
                    let key = (t, text(&column, i).unwrap_or_default());
                    match text(&value, i) {
                        Some(v) => map.insert(key, v),
                        None => map.remove(&key),
                    };
                }
            }
            KEYS => {
                let key = col(b, "key");
                for i in 0..b.num_rows() {
                    if let Some(k) = text(&key, i) {
                        self.mask_key = unhex(&k);
                    }
                }
            }
            _ => {}
        }
    }

    /// The comment on `table` (`column` None) or one of its columns.
    pub fn comment(&self, table: &str, column: Option<&str>) -> Option<&String> {
        self.comments
            .get(&(table.to_string(), column.unwrap_or_default().to_string()))
    }

    /// The security label of `table` (`column` None) or one of its columns.
    pub fn label(&self, table: &str, column: Option<&str>) -> Option<&String> {
        self.labels
            .get(&(table.to_string(), column.unwrap_or_default().to_string()))
    }

    /// The masks for a role that does not see `pii` columns unmasked.
    pub fn masking(&self) -> Option<mask::Masking> {
        let key = self.mask_key.clone()?;
        let mut columns: BTreeMap<String, BTreeMap<String, mask::MaskKind>> = BTreeMap::new();
        for ((t, c), label) in &self.labels {
            if let (false, Some(kind)) = (c.is_empty(), mask::mask_of(label)) {
                columns
                    .entry(t.clone())
                    .or_default()
                    .insert(c.clone(), kind);
            }
        }
        (!columns.is_empty()).then(|| mask::Masking {
            key: Arc::new(key),
            columns,
        })
    }

    /// `name`, every role it is a member of (directly or through other
    /// roles), and PUBLIC.
    pub fn effective_roles(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::from([name.to_string(), PUBLIC.to_string()]);
        let mut todo = vec![name.to_string()];
        while let Some(m) = todo.pop() {
            for (role, member) in self.members.keys() {
                if *member == m && out.insert(role.clone()) {
                    todo.push(role.clone());
                }
            }
        }
        out
    }

    /// The privileges on `table` that `roles` hold between them.
    pub fn privileges(&self, roles: &BTreeSet<String>, table: &str) -> BTreeSet<Privilege> {
        roles
            .iter()
            .filter_map(|r| self.grants.get(&(table.to_string(), r.clone())))
            .flat_map(|m| m.keys().copied())
            .collect()
    }

    /// `relacl` of `table`: one `grantee=privileges/grantor` item per
    /// grantee (`=r/…` for PUBLIC), or none when nothing was granted.
    pub fn acl(&self, table: &str) -> Vec<String> {
        self.grants
            .range((table.to_string(), String::new())..)
            .take_while(|((t, _), _)| t == table)
            .map(|((_, grantee), privs)| {
                let who = if grantee == PUBLIC { "" } else { grantee };
                let letters: String = privs.keys().map(|p| p.acl_char()).collect();
                let grantor = privs.values().next().cloned().unwrap_or_default();
                format!("{who}={letters}/{grantor}")
            })
            .collect()
    }

    /// The roles `member` belongs to directly.
    pub fn member_of(&self, member: &str) -> Vec<String> {
        self.members
            .keys()
            .filter(|(_, m)| m == member)
            .map(|(r, _)| r.clone())
            .collect()
    }
}

/// Who runs a statement.
#[derive(Debug, Clone)]
pub enum Who {
    /// Every privilege.
    Superuser,
    /// A stored role (or an unknown name outside trust mode): what it and
    /// its roles were granted.
    Role {
        name: String,
        roles: BTreeSet<String>,
        createrole: bool,
        state: Arc<AccessState>,
    },
}

impl Who {
    /// The masks this role's reads get (`None`: it sees every value).
    pub fn masking(&self) -> Option<mask::Masking> {
        match self {
            Who::Superuser => None,
            Who::Role { roles, state, .. } if !roles.contains(UNMASK_ROLE) => state.masking(),
            Who::Role { .. } => None,
        }
    }
}

type Key = [Option<Micros>; 6];

/// A database's roles and grants, cached.
#[derive(Debug)]
pub struct Access {
    /// Configured users: superusers, not stored.
    bootstrap: RwLock<BTreeSet<String>>,
    /// Names that are not stored roles are superusers (trust mode, the
    /// embedded API).
    trust: std::sync::atomic::AtomicBool,
    cache: RwLock<Option<(Key, Arc<AccessState>)>>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            bootstrap: RwLock::new(BTreeSet::new()),
            trust: std::sync::atomic::AtomicBool::new(true),
            cache: RwLock::new(None),
        }
    }
}

/// The rows of `table` now (live and segments).
async fn read_table(engine: &Engine, table: &str) -> Result<Vec<RecordBatch>> {
    let s = engine.latest_system_time();
    let now = strata_storage::Clock::now_us(&strata_storage::SystemClock).max(s);
    let Some(scan) = engine.scan(table, Coordinate::as_of(s, now), None)? else {
        return Ok(vec![]);
    };
    let mut out = scan.live.clone();
    for i in 0..scan.segments.len() {
        if let Some(b) = scan.segment(i).await? {
            out.push(b);
        }
    }
    Ok(out)
}

impl Access {
    /// Set who the bootstrap superusers are, and whether unknown names are
    /// superusers too (trust mode).
    pub fn set_bootstrap(&self, users: impl IntoIterator<Item = String>, trust: bool) {
        *self.bootstrap.write() = users.into_iter().collect();
        self.trust
            .store(trust, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_bootstrap(&self, user: &str) -> bool {
        self.bootstrap.read().contains(user)
    }

    pub fn bootstrap_users(&self) -> Vec<String> {
        self.bootstrap.read().iter().cloned().collect()
    }

    fn key(engine: &Engine) -> Key {
        engine.tables_last_write(TABLES)
    }

    /// The state as of the last commit this node applied.
    pub async fn state(&self, engine: &Engine) -> Result<Arc<AccessState>> {
        let key = Self::key(engine);
        if let Some((k, s)) = &*self.cache.read() {
            if *k == key {
                return Ok(s.clone());
            }
        }
        let mut state = AccessState::default();
        for t in TABLES {
            for b in read_table(engine, t).await? {
                state.absorb(t, &b);
            }
        }
        let state = Arc::new(state);
        *self.cache.write() = Some((key, state.clone()));
        Ok(state)
    }

    /// The last state read (for the catalog tables, which are built while
    /// planning; a statement reads the state first, in its privilege check).
    pub fn cached(&self) -> Arc<AccessState> {
        self.cache
            .read()
            .as_ref()
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Who `user` is (`None`: the embedded API's owner, a superuser).
    pub async fn who(&self, engine: &Engine, user: Option<&str>) -> Result<Who> {
        let Some(user) = user else {
            return Ok(Who::Superuser);
        };
        if self.is_bootstrap(user) {
            return Ok(Who::Superuser);
        }
        let state = self.state(engine).await?;
        match state.roles.get(user) {
            Some(r) if r.superuser => Ok(Who::Superuser),
            None if self.trust.load(std::sync::atomic::Ordering::Relaxed) => Ok(Who::Superuser),
            r => Ok(Who::Role {
                name: user.to_string(),
                roles: state.effective_roles(user),
                createrole: r.is_some_and(|r| r.createrole),
                state: state.clone(),
            }),
        }
    }

    /// A stored role's login check: `Ok(Some(verifier))` for a role with
    /// LOGIN and a password, `Ok(None)` if `user` is no stored role, and an
    /// error (SQLSTATE 28000's text) for a role that may not log in.
    pub async fn login(&self, engine: &Engine, user: &str) -> Result<Option<ScramVerifier>> {
        if self.is_bootstrap(user) {
            return Ok(None);
        }
        let state = self.state(engine).await?;
        let Some(r) = state.roles.get(user) else {
            return Ok(None);
        };
        if !r.login {
            return Err(QueryError::Privilege(format!(
                "role \"{user}\" is not permitted to log in (ALTER ROLE {user} LOGIN allows it)"
            )));
        }
        Ok(r.password
            .as_deref()
            .and_then(ScramVerifier::parse)
            .and_then(|v| v.ok()))
    }

    /// Does `user` hold `p` on `table`, by the last state read? (For
    /// `has_table_privilege`, which is evaluated while a query runs.)
    pub fn allows(&self, user: &str, table: &str, p: Privilege) -> bool {
        if self.is_bootstrap(user) {
            return true;
        }
        let state = self.cached();
        match state.roles.get(user) {
            Some(r) if r.superuser => true,
            None if self.trust.load(std::sync::atomic::Ordering::Relaxed) => true,
            _ => {
                !strata_storage::schema::is_reserved(table)
                    && state
                        .privileges(&state.effective_roles(user), table)
                        .contains(&p)
            }
        }
    }

    /// Check a stored role's clear-text password (Flight SQL basic auth).
    pub async fn verify_password(&self, engine: &Engine, user: &str, password: &str) -> bool {
        matches!(self.login(engine, user).await, Ok(Some(v)) if v.matches(password))
    }
}

/// What a statement needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    Table(String, Privilege),
    /// Only a superuser may run it (what it is, for the error).
    Superuser(String),
    /// Nobody may (the reason).
    Refused(String),
}

fn reserved_write(t: &str) -> Need {
    Need::Refused(format!(
        "table \"{t}\" holds Strata's roles and grants: change them with CREATE ROLE, ALTER ROLE, GRANT and REVOKE"
    ))
}

/// The tables a statement reads or writes and the privilege each needs.
/// `real` maps a name in the statement to the table it reads (a temporal
/// clause renames its table for planning), or `None` for a name that is no
/// Strata table (a CTE, a catalog table), which needs nothing.
pub fn needs(
    stmt: &Statement,
    kind: &StatementKind,
    real: &dyn Fn(&str) -> Option<String>,
) -> Vec<Need> {
    let mut out = Vec::new();
    let reads = |node: &dyn VisitRelations, out: &mut Vec<Need>| {
        node.relations(&mut |n: &ast::ObjectName| {
            if let Some(t) = crate::sql::object_name(n).ok().and_then(|n| real(&n)) {
                let need = if strata_storage::schema::is_reserved(&t) {
                    Need::Superuser(format!("reading \"{t}\""))
                } else {
                    Need::Table(t, Privilege::Select)
                };
                if !out.contains(&need) {
                    out.push(need);
                }
            }
        })
    };
    let target = |n: &ast::ObjectName, p: Privilege, out: &mut Vec<Need>| {
        if let Some(t) = crate::sql::object_name(n).ok().and_then(|n| real(&n)) {
            if strata_storage::schema::is_reserved(&t) {
                out.push(reserved_write(&t));
            } else if t == audit::AUDIT_VIEW && p != Privilege::Select {
                out.push(Need::Refused(
                    "the audit trail (strata_audit) is append-only: only the server writes it"
                        .into(),
                ));
            } else {
                out.push(Need::Table(t, p));
            }
        }
    };
    match kind {
        StatementKind::Checkpoint => return vec![Need::Superuser("CHECKPOINT".into())],
        StatementKind::Subscribe(s) => {
            let t = real(&s.table).unwrap_or_else(|| s.table.clone());
            return vec![if strata_storage::schema::is_reserved(&t) {
                Need::Superuser(format!("reading \"{t}\""))
            } else {
                Need::Table(t, Privilege::Select)
            }];
        }
        _ => {}
    }
    match stmt {
        Statement::Insert(ins) => {
            if let ast::TableObject::TableName(n) = &ins.table {
                target(n, Privilege::Insert, &mut out);
            }
            if let Some(src) = &ins.source {
                reads(src.as_ref(), &mut out);
            }
        }
        Statement::Update(u) => {
            if let ast::TableFactor::Table { name, .. } = &u.table.relation {
                target(name, Privilege::Update, &mut out);
                if u.selection.is_some() || u.from.is_some() {
                    target(name, Privilege::Select, &mut out);
                }
            }
            for a in &u.assignments {
                reads(&a.value, &mut out);
            }
            if let Some(s) = &u.selection {
                reads(s, &mut out);
            }
            if let Some(f) = &u.from {
                match f {
                    ast::UpdateTableFromKind::BeforeSet(v)
                    | ast::UpdateTableFromKind::AfterSet(v) => {
                        for t in v {
                            reads(t, &mut out);
                        }
                    }
                }
            }
        }
        Statement::Delete(d) => {
            let p = if *kind == StatementKind::Erase {
                Privilege::Erase
            } else {
                Privilege::Delete
            };
            let tables = match &d.from {
                ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
            };
            for t in tables {
                if let ast::TableFactor::Table { name, .. } = &t.relation {
                    target(name, p, &mut out);
                    if d.selection.is_some() {
                        target(name, Privilege::Select, &mut out);
                    }
                }
            }
            if let Some(s) = &d.selection {
                reads(s, &mut out);
            }
            if let Some(u) = &d.using {
                for t in u {
                    reads(t, &mut out);
                }
            }
        }
        Statement::Copy { source, to, .. } => match source {
            ast::CopySource::Table { table_name, .. } => target(
                table_name,
                if *to {
                    Privilege::Select
                } else {
                    Privilege::Insert
                },
                &mut out,
            ),
            ast::CopySource::Query(q) => reads(q.as_ref(), &mut out),
        },
        Statement::CreateTable(ct) => {
            let t = crate::sql::object_name(&ct.name).unwrap_or_default();
            if strata_storage::schema::is_reserved(&t) {
                out.push(Need::Refused(format!(
                    "table names starting with `{}` are reserved for Strata's own tables",
                    strata_storage::schema::RESERVED_PREFIX
                )));
            } else {
                out.push(Need::Superuser("CREATE TABLE".into()));
            }
        }
        Statement::AlterTable(_)
        | Statement::Drop { .. }
        | Statement::Truncate(_)
        | Statement::CreateView(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. } => {
            let what = stmt.to_string();
            let what = what
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            out.push(Need::Superuser(what))
        }
        other => reads(other, &mut out),
    }
    out
}

/// `has_table_privilege(table, privilege)` asks about the current user:
/// name `user` as its first argument, so the function (which does not know
/// the session) can answer.
pub(crate) fn name_user_in_privilege_calls(stmt: &mut Statement, user: &str) {
    use ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value};
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_ascii_lowercase();
            if name == "has_table_privilege" || name == "pg_catalog.has_table_privilege" {
                if let FunctionArguments::List(list) = &mut f.args {
                    if list.args.len() == 2 {
                        list.args.insert(
                            0,
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(
                                Value::SingleQuotedString(user.to_string()).with_empty_span(),
                            ))),
                        );
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Walk the table names of a part of a statement.
trait VisitRelations {
    fn relations(&self, f: &mut dyn FnMut(&ast::ObjectName));
}

impl<T: ast::Visit> VisitRelations for T {
    fn relations(&self, f: &mut dyn FnMut(&ast::ObjectName)) {
        let _ = ast::visit_relations(self, |n| {
            f(n);
            ControlFlow::<()>::Continue(())
        });
    }
}

/// The error for a statement `who` may not run.
pub fn denied(who: &str, need: &Need) -> QueryError {
    match need {
        Need::Table(t, p) => QueryError::Privilege(format!(
            "permission denied for table {t}: role \"{who}\" has no {} privilege on it (a superuser can GRANT {} ON {t} TO {who})",
            p.name(),
            p.name()
        )),
        Need::Superuser(what) => QueryError::Privilege(format!(
            "permission denied: {what} needs a superuser, and role \"{who}\" is not one"
        )),
        Need::Refused(why) => QueryError::Privilege(format!("permission denied: {why}")),
    }
}

fn text_field(n: &str, nullable: bool) -> Field {
    Field::new(n, DataType::Utf8, nullable)
}

fn bool_field(n: &str) -> Field {
    Field::new(n, DataType::Boolean, false)
}

fn strs(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn bools(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}

/// The write of one role's row.
pub(crate) fn role_op(r: &RoleRow, dropped: bool) -> Result<Op> {
    let schema = Arc::new(Schema::new(vec![
        text_field(strata_storage::schema::ID, false),
        text_field("name", false),
        bool_field("superuser"),
        bool_field("login"),
        bool_field("createrole"),
        text_field("password", true),
        bool_field("dropped"),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            strs(vec![Some(r.name.clone())]),
            strs(vec![Some(r.name.clone())]),
            bools(vec![r.superuser]),
            bools(vec![r.login]),
            bools(vec![r.createrole]),
            strs(vec![r.password.clone()]),
            bools(vec![dropped]),
        ],
    )?;
    Ok(Op {
        kind: OpKind::Put,
        table: ROLES.into(),
        batch,
    })
}

/// The write of memberships: (role, member, granted).
pub(crate) fn member_op(rows: &[(String, String, bool)], grantor: &str) -> Result<Op> {
    let schema = Arc::new(Schema::new(vec![
        text_field(strata_storage::schema::ID, false),
        text_field("role", false),
        text_field("member", false),
        bool_field("granted"),
        text_field("grantor", false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            strs(
                rows.iter()
                    .map(|(r, m, _)| Some(format!("{r}{SEP}{m}")))
                    .collect(),
            ),
            strs(rows.iter().map(|(r, _, _)| Some(r.clone())).collect()),
            strs(rows.iter().map(|(_, m, _)| Some(m.clone())).collect()),
            bools(rows.iter().map(|(_, _, g)| *g).collect()),
            strs(rows.iter().map(|_| Some(grantor.to_string())).collect()),
        ],
    )?;
    Ok(Op {
        kind: OpKind::Put,
        table: MEMBERS.into(),
        batch,
    })
}

/// The write of table privileges: (table, grantee, privilege, granted).
pub(crate) fn grant_op(rows: &[(String, String, Privilege, bool)], grantor: &str) -> Result<Op> {
    let schema = Arc::new(Schema::new(vec![
        text_field(strata_storage::schema::ID, false),
        text_field("table_name", false),
        text_field("grantee", false),
        text_field("privilege", false),
        bool_field("granted"),
        text_field("grantor", false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            strs(
                rows.iter()
                    .map(|(t, g, p, _)| Some(format!("{t}{SEP}{g}{SEP}{}", p.name())))
                    .collect(),
            ),
            strs(rows.iter().map(|(t, ..)| Some(t.clone())).collect()),
            strs(rows.iter().map(|(_, g, ..)| Some(g.clone())).collect()),
            strs(
                rows.iter()
                    .map(|(_, _, p, _)| Some(p.name().to_string()))
                    .collect(),
            ),
            bools(rows.iter().map(|(.., g)| *g).collect()),
            strs(rows.iter().map(|_| Some(grantor.to_string())).collect()),
        ],
    )?;
    Ok(Op {
        kind: OpKind::Put,
        table: GRANTS.into(),
        batch,
    })
}

/// The write of a comment (`table`, `column`, text or NULL) or a label.
pub(crate) fn note_op(
    store: &str,
    table: &str,
    column: Option<&str>,
    value: Option<&str>,
) -> Result<Op> {
    let value_name = if store == COMMENTS {
        "description"
    } else {
        "label"
    };
    let schema = Arc::new(Schema::new(vec![
        text_field(strata_storage::schema::ID, false),
        text_field("table_name", false),
        text_field("column_name", true),
        text_field(value_name, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            strs(vec![Some(format!(
                "{table}{SEP}{}",
                column.unwrap_or_default()
            ))]),
            strs(vec![Some(table.to_string())]),
            strs(vec![column.map(str::to_string)]),
            strs(vec![value.map(str::to_string)]),
        ],
    )?;
    Ok(Op {
        kind: OpKind::Put,
        table: store.into(),
        batch,
    })
}

/// The write of a new masking key.
pub(crate) fn key_op() -> Result<(Op, Vec<u8>)> {
    let mut key = random_salt();
    key.extend(random_salt());
    let schema = Arc::new(Schema::new(vec![
        text_field(strata_storage::schema::ID, false),
        text_field("key", false),
    ]));
    let hexed: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![strs(vec![Some("mask".into())]), strs(vec![Some(hexed)])],
    )?;
    Ok((
        Op {
            kind: OpKind::Put,
            table: KEYS.into(),
            batch,
        },
        key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_grants_revokes_and_memberships() {
        let mut s = AccessState::default();
        let r = |n: &str| RoleRow {
            name: n.into(),
            login: true,
            ..Default::default()
        };
        s.absorb(ROLES, &role_op(&r("alice"), false).unwrap().batch);
        s.absorb(ROLES, &role_op(&r("readers"), false).unwrap().batch);
        s.absorb(
            MEMBERS,
            &member_op(&[("readers".into(), "alice".into(), true)], "admin")
                .unwrap()
                .batch,
        );
        s.absorb(
            GRANTS,
            &grant_op(
                &[
                    ("t".into(), "readers".into(), Privilege::Select, true),
                    ("t".into(), "alice".into(), Privilege::Insert, true),
                    ("u".into(), PUBLIC.into(), Privilege::Select, true),
                ],
                "admin",
            )
            .unwrap()
            .batch,
        );
        let roles = s.effective_roles("alice");
        assert_eq!(
            s.privileges(&roles, "t"),
            BTreeSet::from([Privilege::Select, Privilege::Insert])
        );
        assert_eq!(
            s.privileges(&roles, "u"),
            BTreeSet::from([Privilege::Select])
        );
        assert_eq!(s.acl("t"), vec!["alice=a/admin", "readers=r/admin"]);
        assert_eq!(s.acl("u"), vec!["=r/admin"]);
        s.absorb(
            MEMBERS,
            &member_op(&[("readers".into(), "alice".into(), false)], "admin")
                .unwrap()
                .batch,
        );
        assert_eq!(
            s.privileges(&s.effective_roles("alice"), "t"),
            BTreeSet::from([Privilege::Insert])
        );
        s.absorb(ROLES, &role_op(&r("alice"), true).unwrap().batch);
        assert!(!s.roles.contains_key("alice"));
    }
}
