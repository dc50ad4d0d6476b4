//! The session's side of roles and privileges: the check before every
//! statement, and running the role and privilege statements.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::Statement;

use super::{
    denied, grant_op, key_op, member_op, needs, note_op, role_op, AccessState, Governance, Need,
    Objects, Privilege, RoleOption, RoleRow, ScramVerifier, Who, COMMENTS, CURRENT_USER, LABELS,
    PUBLIC, UNMASK_ROLE,
};
use crate::error::{QueryError, Result};
use crate::session::{Output, Session};
use crate::temporal::{Rewritten, StatementKind};

fn no_role(name: &str) -> QueryError {
    QueryError::Invalid(format!(
        "role \"{name}\" does not exist (CREATE ROLE {name} creates it)"
    ))
}

impl Session {
    fn who_name(&self) -> String {
        self.user
            .clone()
            .unwrap_or_else(|| crate::pg_catalog::OWNER.to_string())
    }

    /// May this session's user run `stmt`? (SQLSTATE 42501 if not.) Role
    /// and privilege statements are checked when they run. Returns the
    /// masks the statement's reads get (crate::access::mask).
    pub(crate) async fn authorize(
        &self,
        stmt: &Statement,
        rw: &Rewritten,
    ) -> Result<Option<super::mask::Masking>> {
        if matches!(rw.kind, StatementKind::Governance(_)) {
            return Ok(None);
        }
        let engine = &self.db.engine;
        // A superuser is refused only writes to Strata's own tables, and a
        // query writes nothing: the walk over its table names is skipped
        // (it was ~3% of a point lookup's server CPU).
        let early = if matches!(stmt, Statement::Query(_)) {
            let who = self.db.access.who(engine, self.user.as_deref()).await?;
            if matches!(who, Who::Superuser) {
                return Ok(None);
            }
            Some(who)
        } else {
            None
        };
        let synthetic: HashMap<&str, &str> = rw
            .overrides
            .iter()
            .map(|(n, t, _, _)| (n.as_str(), t.as_str()))
            .collect();
        let real = |n: &str| -> Option<String> {
            let t = synthetic.get(n).copied().unwrap_or(n);
            (engine.has_table(t) || t == super::audit::AUDIT_VIEW).then(|| t.to_string())
        };
        let needs = needs(stmt, &rw.kind, &real);
        if needs.is_empty() {
            return Ok(None);
        }
        let who = match early {
            Some(who) => who,
            None => self.db.access.who(engine, self.user.as_deref()).await?,
        };
        check(&who, &self.who_name(), &needs)?;
        let masking = who.masking();
        if let Some(m) = &masking {
            masked_columns_in_writes(stmt, m, &self.who_name())?;
        }
        Ok(masking)
    }

    /// May this session's user load rows into `table` (COPY FROM, Flight
    /// SQL ingest, the embedded `ingest`)? Creating a table by loading it
    /// needs a superuser, as CREATE TABLE does.
    pub(crate) async fn authorize_ingest(&self, table: &str) -> Result<()> {
        let need = if strata_storage::schema::is_reserved(table) {
            Need::Refused(format!(
                "table \"{table}\" holds Strata's roles and grants: change them with CREATE ROLE, GRANT and REVOKE"
            ))
        } else if !self.db.engine.has_table(table) {
            Need::Superuser(format!("creating table \"{table}\" by loading it"))
        } else {
            Need::Table(table.to_string(), Privilege::Insert)
        };
        let who = self
            .db
            .access
            .who(&self.db.engine, self.user.as_deref())
            .await?;
        check(&who, &self.who_name(), &[need])
    }

    /// The roles and grants as this session sees them: committed, plus the
    /// open transaction's own role and privilege statements.
    async fn access_state(&self) -> Result<AccessState> {
        let mut state = (*self.db.access.state(&self.db.engine).await?).clone();
        if let Some(tx) = &self.tx {
            for op in &tx.ops {
                if strata_storage::schema::is_reserved(&op.table) {
                    state.absorb(&op.table, &op.batch);
                }
            }
        }
        Ok(state)
    }

    /// Run a role or privilege statement.
    pub(crate) async fn governance(&mut self, g: &Governance) -> Result<Output> {
        let access = self.db.access.clone();
        let who = access.who(&self.db.engine, self.user.as_deref()).await?;
        let me = self.who_name();
        let (superuser, createrole) = match &who {
            Who::Superuser => (true, true),
            Who::Role { createrole, .. } => (false, *createrole),
        };
        let state = self.access_state().await?;
        let resolve = |n: &str| {
            if n == CURRENT_USER {
                me.clone()
            } else {
                n.to_string()
            }
        };
        let exists = |n: &str| {
            n == PUBLIC || n == UNMASK_ROLE || state.roles.contains_key(n) || access.is_bootstrap(n)
        };
        let may_manage = |target: Option<&RoleRow>| {
            superuser || (createrole && !target.is_some_and(|r| r.superuser))
        };
        let deny = |what: &str| {
            QueryError::Privilege(format!(
                "permission denied: {what} needs a superuser or a role with CREATEROLE, and role \"{me}\" is neither"
            ))
        };
        let mut ops = Vec::new();
        match g {
            Governance::CreateRole {
                name,
                options,
                user,
            } => {
                if !may_manage(None) {
                    return Err(deny("CREATE ROLE"));
                }
                check_new_name(name)?;
                if exists(name) {
                    return Err(QueryError::Invalid(format!(
                        "role \"{name}\" already exists"
                    )));
                }
                let mut r = RoleRow {
                    name: name.clone(),
                    login: *user,
                    ..Default::default()
                };
                let in_roles = apply_options(&mut r, options, superuser)?;
                ops.push(role_op(&r, false)?);
                let mut rows = Vec::new();
                for parent in in_roles {
                    if !exists(&parent) || parent == PUBLIC {
                        return Err(no_role(&parent));
                    }
                    rows.push((parent, name.clone(), true));
                }
                if !rows.is_empty() {
                    ops.push(member_op(&rows, &me)?);
                }
            }
            Governance::AlterRole { name, options } => {
                let name = resolve(name);
                let Some(current) = state.roles.get(&name) else {
                    if access.is_bootstrap(&name) {
                        return Err(QueryError::Invalid(format!(
                            "role \"{name}\" is a user the server was started with (--user or the config file): change it there"
                        )));
                    }
                    return Err(no_role(&name));
                };
                let own_password = name == me
                    && options
                        .iter()
                        .all(|o| matches!(o, RoleOption::Password(_) | RoleOption::Ignored));
                if !own_password && !may_manage(Some(current)) {
                    return Err(deny("ALTER ROLE"));
                }
                let mut r = current.clone();
                let in_roles = apply_options(&mut r, options, superuser)?;
                ops.push(role_op(&r, false)?);
                let rows: Vec<_> = in_roles
                    .into_iter()
                    .map(|p| {
                        if exists(&p) && p != PUBLIC {
                            Ok((p, name.clone(), true))
                        } else {
                            Err(no_role(&p))
                        }
                    })
                    .collect::<Result<_>>()?;
                if !rows.is_empty() {
                    ops.push(member_op(&rows, &me)?);
                }
            }
            Governance::DropRole { names, if_exists } => {
                for name in names {
                    let name = resolve(name);
                    if name == me {
                        return Err(QueryError::Invalid(format!(
                            "current user \"{me}\" cannot be dropped: connect as another role first"
                        )));
                    }
                    if access.is_bootstrap(&name) {
                        return Err(QueryError::Invalid(format!(
                            "role \"{name}\" is a user the server was started with (--user or the config file): remove it there"
                        )));
                    }
                    let Some(r) = state.roles.get(&name) else {
                        if *if_exists {
                            continue;
                        }
                        return Err(no_role(&name));
                    };
                    if !may_manage(Some(r)) {
                        return Err(deny("DROP ROLE"));
                    }
                    ops.push(role_op(r, true)?);
                    // Its memberships and grants go with it.
                    let members: Vec<_> = state
                        .members
                        .keys()
                        .filter(|(role, member)| *role == name || *member == name)
                        .map(|(role, member)| (role.clone(), member.clone(), false))
                        .collect();
                    if !members.is_empty() {
                        ops.push(member_op(&members, &me)?);
                    }
                    let grants: Vec<_> = state
                        .grants
                        .iter()
                        .filter(|((_, grantee), _)| *grantee == name)
                        .flat_map(|((t, g), privs)| {
                            privs.keys().map(|p| (t.clone(), g.clone(), *p, false))
                        })
                        .collect();
                    if !grants.is_empty() {
                        ops.push(grant_op(&grants, &me)?);
                    }
                }
            }
            Governance::Privileges {
                grant,
                privileges,
                objects,
                grantees,
            } => {
                if !superuser {
                    return Err(QueryError::Privilege(format!(
                        "permission denied: {} on tables needs a superuser in Strata (tables have no owners yet), and role \"{me}\" is not one",
                        g.tag()
                    )));
                }
                let engine = &self.db.engine;
                let tables: Vec<String> = match objects {
                    Objects::Tables(v) => {
                        for t in v {
                            if t != super::audit::AUDIT_VIEW
                                && (strata_storage::schema::is_reserved(t) || !engine.has_table(t))
                            {
                                let hint = crate::error::closest(t, &engine.table_names())
                                    .map(|c| format!(" (did you mean `{c}`?)"))
                                    .unwrap_or_default();
                                return Err(QueryError::UndefinedTable(format!(
                                    "table `{t}` does not exist{hint}"
                                )));
                            }
                        }
                        v.clone()
                    }
                    Objects::AllTablesInSchema(schemas) => {
                        if let Some(s) = schemas.iter().find(|s| *s != "public") {
                            return Err(QueryError::UndefinedTable(format!(
                                "schema `{s}` does not exist: Strata tables live in `public`"
                            )));
                        }
                        engine.table_names()
                    }
                };
                let mut rows = Vec::new();
                for grantee in grantees {
                    let grantee = resolve(grantee);
                    if !exists(&grantee) {
                        return Err(no_role(&grantee));
                    }
                    for t in &tables {
                        for p in privileges {
                            rows.push((t.clone(), grantee.clone(), *p, *grant));
                        }
                    }
                }
                if !rows.is_empty() {
                    ops.push(grant_op(&rows, &me)?);
                }
            }
            Governance::Membership {
                grant,
                roles,
                members,
            } => {
                let mut rows = Vec::new();
                for role in roles {
                    let role = resolve(role);
                    let target = state.roles.get(&role);
                    if (target.is_none() && role != UNMASK_ROLE) || role == PUBLIC {
                        if access.is_bootstrap(&role) {
                            return Err(QueryError::Invalid(format!(
                                "role \"{role}\" is a superuser the server was started with; membership in it is not supported: make the member SUPERUSER instead"
                            )));
                        }
                        return Err(no_role(&role));
                    }
                    if !may_manage(target) {
                        return Err(deny(g.tag()));
                    }
                    for member in members {
                        let member = resolve(member);
                        if !exists(&member) || member == PUBLIC {
                            return Err(no_role(&member));
                        }
                        if *grant
                            && (member == role || state.effective_roles(&role).contains(&member))
                        {
                            return Err(QueryError::Invalid(format!(
                                "role \"{member}\" cannot be made a member of \"{role}\": \"{role}\" is already a member of \"{member}\" (memberships cannot form a circle)"
                            )));
                        }
                        rows.push((role.clone(), member, *grant));
                    }
                }
                ops.push(member_op(&rows, &me)?);
            }
            Governance::SchemaUsage {
                grant,
                schemas,
                grantees,
            } => {
                if let Some(s) = schemas.iter().find(|s| *s != "public") {
                    return Err(QueryError::UndefinedTable(format!(
                        "schema `{s}` does not exist: Strata tables live in `public`"
                    )));
                }
                for g in grantees {
                    let g = resolve(g);
                    if !exists(&g) {
                        return Err(no_role(&g));
                    }
                }
                if !*grant {
                    return Err(QueryError::Unsupported(
                        "REVOKE USAGE ON SCHEMA public is not supported: every role may use schema public; revoke the privileges on its tables instead".into(),
                    ));
                }
                // Nothing to write: every role may use schema public.
            }
            Governance::Comment {
                table,
                column,
                text,
            }
            | Governance::Label {
                table,
                column,
                label: text,
            } => {
                if !superuser {
                    return Err(QueryError::Privilege(format!(
                        "permission denied: {} needs a superuser in Strata (tables have no owners yet), and role \"{me}\" is not one",
                        g.tag()
                    )));
                }
                let engine = &self.db.engine;
                let schema = match engine.table_schema(table) {
                    Some(s) if !strata_storage::schema::is_reserved(table) => s,
                    _ => {
                        let hint = crate::error::closest(table, &engine.table_names())
                            .map(|c| format!(" (did you mean `{c}`?)"))
                            .unwrap_or_default();
                        return Err(QueryError::UndefinedTable(format!(
                            "table `{table}` does not exist{hint}"
                        )));
                    }
                };
                if let Some(c) = column {
                    if !schema.columns.iter().any(|f| f.name() == c) {
                        let names: Vec<String> =
                            schema.columns.iter().map(|f| f.name().clone()).collect();
                        let hint = crate::error::closest(c, &names)
                            .map(|c| format!(" (did you mean `{c}`?)"))
                            .unwrap_or_default();
                        return Err(QueryError::UndefinedColumn(format!(
                            "column `{c}` of table `{table}` does not exist{hint}"
                        )));
                    }
                }
                let store = if matches!(g, Governance::Comment { .. }) {
                    COMMENTS
                } else {
                    LABELS
                };
                ops.push(note_op(store, table, column.as_deref(), text.as_deref())?);
                if store == LABELS && text.is_some() && state.mask_key.is_none() {
                    ops.push(key_op()?.0);
                }
            }
        }
        if !ops.is_empty() {
            self.write(ops).await?;
        }
        Ok(Output::Command {
            tag: g.tag().into(),
            rows: 0,
        })
    }
}

/// Fail on the first need `who` does not meet.
fn check(who: &Who, name: &str, needs: &[Need]) -> Result<()> {
    for need in needs {
        let ok = match (who, need) {
            (_, Need::Refused(_)) => false,
            (Who::Superuser, _) => true,
            (Who::Role { roles, state, .. }, Need::Table(t, p)) => {
                state.privileges(roles, t).contains(p)
            }
            (Who::Role { .. }, Need::Superuser(_)) => false,
        };
        if !ok {
            return Err(denied(name, need));
        }
    }
    Ok(())
}

/// A masked role may not use a masked column in an UPDATE's or DELETE's
/// condition or values: those read the stored rows unmasked (they write
/// them back), and what they match would reveal the values.
fn masked_columns_in_writes(stmt: &Statement, m: &super::mask::Masking, who: &str) -> Result<()> {
    use datafusion::sql::sqlparser::ast::{self, Expr};
    use std::ops::ControlFlow;
    let (target, exprs): (&ast::TableFactor, Vec<&Expr>) = match stmt {
        Statement::Update(u) => (
            &u.table.relation,
            u.selection
                .iter()
                .chain(u.assignments.iter().map(|a| &a.value))
                .collect(),
        ),
        Statement::Delete(d) => {
            let tables = match &d.from {
                ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
            };
            match tables.first() {
                Some(t) => (&t.relation, d.selection.iter().collect()),
                None => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    let ast::TableFactor::Table { name, .. } = target else {
        return Ok(());
    };
    let Some(cols) = crate::sql::object_name(name)
        .ok()
        .and_then(|t| m.of(&t).map(|c| (t, c)))
    else {
        return Ok(());
    };
    let (table, cols) = cols;
    for e in exprs {
        let mut found = None;
        let _ = ast::visit_expressions(e, |x| {
            let n = match x {
                Expr::Identifier(i) => Some(crate::ident::normalize(i)),
                Expr::CompoundIdentifier(p) => p.last().map(crate::ident::normalize),
                _ => None,
            };
            if let Some(n) = n.filter(|n| cols.contains_key(n)) {
                found = Some(n);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if let Some(c) = found {
            return Err(QueryError::Privilege(format!(
                "permission denied: column {c} of table {table} is masked for role \"{who}\", so an UPDATE or DELETE cannot use it in its condition or values (a member of {UNMASK_ROLE} can)"
            )));
        }
    }
    Ok(())
}

fn check_new_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(QueryError::Invalid("a role name cannot be empty".into()));
    }
    if name == UNMASK_ROLE {
        return Err(QueryError::Invalid(format!(
            "role \"{UNMASK_ROLE}\" already exists: it is Strata's built-in role whose members see masked columns (GRANT {UNMASK_ROLE} TO …)"
        )));
    }
    if name == PUBLIC || name.starts_with("pg_") || name.contains('\u{0}') {
        return Err(QueryError::Invalid(format!(
            "role name \"{name}\" is reserved: PUBLIC and names starting with pg_ are Postgres' own"
        )));
    }
    if strata_storage::schema::is_reserved(name) {
        return Err(QueryError::Invalid(format!(
            "role name \"{name}\" is reserved: names starting with {} are Strata's own",
            strata_storage::schema::RESERVED_PREFIX
        )));
    }
    Ok(())
}

/// Apply CREATE / ALTER ROLE options; the roles of `IN ROLE`.
fn apply_options(r: &mut RoleRow, options: &[RoleOption], superuser: bool) -> Result<Vec<String>> {
    let mut in_roles = Vec::new();
    for o in options {
        match o {
            RoleOption::Superuser(b) => {
                if !superuser {
                    return Err(QueryError::Privilege(
                        "permission denied: only a superuser can make or unmake superusers".into(),
                    ));
                }
                r.superuser = *b;
            }
            RoleOption::Login(b) => r.login = *b,
            RoleOption::CreateRole(b) => r.createrole = *b,
            RoleOption::Password(p) => {
                r.password = match p {
                    Some(p) => Some(
                        ScramVerifier::for_password(p)
                            .map_err(QueryError::Invalid)?
                            .to_string(),
                    ),
                    None => None,
                }
            }
            RoleOption::InRole(v) => in_roles.extend(v.iter().cloned()),
            RoleOption::Ignored => {}
        }
    }
    Ok(in_roles)
}
