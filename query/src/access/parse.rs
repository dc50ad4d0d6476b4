//! The role and privilege statements, in Postgres syntax: `CREATE ROLE` /
//! `CREATE USER`, `ALTER ROLE`, `DROP ROLE`, `GRANT` / `REVOKE` of table
//! privileges and of role membership. sqlparser knows only part of this
//! grammar (not `GRANT role TO role`, not Strata's `ERASE` privilege), so
//! Strata reads these statements itself, from the tokens.

use datafusion::sql::sqlparser::tokenizer::Token;

use super::Privilege;
use crate::error::{QueryError, Result};

/// A role or privilege statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Governance {
    /// `CREATE ROLE` (`user`: `CREATE USER`, which implies LOGIN).
    CreateRole {
        name: String,
        options: Vec<RoleOption>,
        user: bool,
    },
    AlterRole {
        name: String,
        options: Vec<RoleOption>,
    },
    DropRole {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `GRANT privileges ON objects TO grantees` (`grant: false`: REVOKE … FROM).
    Privileges {
        grant: bool,
        privileges: Vec<Privilege>,
        objects: Objects,
        grantees: Vec<String>,
    },
    /// `GRANT role, … TO member, …` (`grant: false`: REVOKE … FROM).
    Membership {
        grant: bool,
        roles: Vec<String>,
        members: Vec<String>,
    },
    /// `GRANT USAGE ON SCHEMA public TO r` (`grant: false`: REVOKE … FROM):
    /// every role may use schema public already, so a grant changes
    /// nothing (migration scripts send it); a revoke is refused.
    SchemaUsage {
        grant: bool,
        schemas: Vec<String>,
        grantees: Vec<String>,
    },
    /// `COMMENT ON TABLE t | COLUMN t.c IS 'text' | NULL`.
    Comment {
        table: String,
        column: Option<String>,
        text: Option<String>,
    },
    /// `SECURITY LABEL [FOR strata] ON TABLE t | COLUMN t.c IS 'label' | NULL`.
    Label {
        table: String,
        column: Option<String>,
        label: Option<String>,
    },
}

impl Governance {
    /// The command tag Postgres answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            Governance::CreateRole { .. } => "CREATE ROLE",
            Governance::AlterRole { .. } => "ALTER ROLE",
            Governance::Comment { .. } => "COMMENT",
            Governance::Label { .. } => "SECURITY LABEL",
            Governance::DropRole { .. } => "DROP ROLE",
            Governance::Privileges { grant: true, .. }
            | Governance::Membership { grant: true, .. }
            | Governance::SchemaUsage { grant: true, .. } => "GRANT",
            _ => "REVOKE",
        }
    }
}

impl Governance {
    /// The statement as the audit trail records it: without passwords.
    pub fn audit_text(&self) -> String {
        let list = |v: &[String]| v.join(", ");
        match self {
            Governance::CreateRole { name, options, .. }
            | Governance::AlterRole { name, options } => {
                let opts: Vec<String> = options
                    .iter()
                    .filter_map(|o| match o {
                        RoleOption::Superuser(b) => {
                            Some(if *b { "SUPERUSER" } else { "NOSUPERUSER" }.into())
                        }
                        RoleOption::Login(b) => Some(if *b { "LOGIN" } else { "NOLOGIN" }.into()),
                        RoleOption::CreateRole(b) => {
                            Some(if *b { "CREATEROLE" } else { "NOCREATEROLE" }.into())
                        }
                        RoleOption::Password(Some(_)) => Some("PASSWORD '***'".into()),
                        RoleOption::Password(None) => Some("PASSWORD NULL".into()),
                        RoleOption::InRole(v) => Some(format!("IN ROLE {}", list(v))),
                        RoleOption::Ignored => None,
                    })
                    .collect();
                let verb = match self {
                    Governance::CreateRole { user: true, .. } => "CREATE USER",
                    Governance::CreateRole { .. } => "CREATE ROLE",
                    _ => "ALTER ROLE",
                };
                format!("{verb} {name} {}", opts.join(" "))
                    .trim_end()
                    .to_string()
            }
            Governance::DropRole { names, .. } => format!("DROP ROLE {}", list(names)),
            Governance::Privileges {
                grant,
                privileges,
                objects,
                grantees,
            } => {
                let privs: Vec<&str> = privileges.iter().map(|p| p.name()).collect();
                let on = match objects {
                    Objects::Tables(v) => list(v),
                    Objects::AllTablesInSchema(v) => format!("ALL TABLES IN SCHEMA {}", list(v)),
                };
                let (verb, to) = if *grant {
                    ("GRANT", "TO")
                } else {
                    ("REVOKE", "FROM")
                };
                format!(
                    "{verb} {} ON {on} {to} {}",
                    privs.join(", "),
                    list(grantees)
                )
            }
            Governance::Membership {
                grant,
                roles,
                members,
            } => {
                let (verb, to) = if *grant {
                    ("GRANT", "TO")
                } else {
                    ("REVOKE", "FROM")
                };
                format!("{verb} {} {to} {}", list(roles), list(members))
            }
            Governance::SchemaUsage {
                grant,
                schemas,
                grantees,
            } => {
                let (verb, to) = if *grant {
                    ("GRANT", "TO")
                } else {
                    ("REVOKE", "FROM")
                };
                format!(
                    "{verb} USAGE ON SCHEMA {} {to} {}",
                    list(schemas),
                    list(grantees)
                )
            }
            Governance::Comment { table, column, .. } | Governance::Label { table, column, .. } => {
                let what = match column {
                    Some(c) => format!("COLUMN {table}.{c}"),
                    None => format!("TABLE {table}"),
                };
                let value = match self {
                    Governance::Comment { text, .. } | Governance::Label { label: text, .. } => {
                        text.as_deref()
                            .map(|t| format!("'{t}'"))
                            .unwrap_or("NULL".into())
                    }
                    _ => unreachable!(),
                };
                format!("{} ON {what} IS {value}", self.tag())
            }
        }
    }

    /// The audit trail's event name.
    pub fn audit_event(&self) -> &'static str {
        match self {
            Governance::Privileges { grant: true, .. }
            | Governance::Membership { grant: true, .. } => "grant",
            Governance::Privileges { .. } | Governance::Membership { .. } => "revoke",
            Governance::Comment { .. } | Governance::Label { .. } => "ddl",
            _ => "role",
        }
    }
}

/// What privileges are granted on.
#[derive(Debug, Clone, PartialEq)]
pub enum Objects {
    Tables(Vec<String>),
    /// `ALL TABLES IN SCHEMA s`: the tables that exist now (as in Postgres,
    /// not tables created later).
    AllTablesInSchema(Vec<String>),
}

/// One `CREATE ROLE` / `ALTER ROLE` option.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleOption {
    Superuser(bool),
    Login(bool),
    CreateRole(bool),
    /// `PASSWORD 'p'` (stored as a SCRAM verifier) or `PASSWORD NULL`.
    Password(Option<String>),
    /// `IN ROLE r, …`: the new role becomes a member of these.
    InRole(Vec<String>),
    /// Accepted for compatibility, with no effect in Strata (CREATEDB,
    /// INHERIT, REPLICATION, BYPASSRLS, CONNECTION LIMIT).
    Ignored,
}

/// Is the statement starting with these words one of ours?
pub fn is_governance(first: &str, second: Option<&str>) -> bool {
    match first {
        "GRANT" | "REVOKE" => true,
        "CREATE" | "ALTER" | "DROP" => matches!(second, Some("ROLE" | "USER" | "GROUP")),
        "COMMENT" => second == Some("ON"),
        "SECURITY" => second == Some("LABEL"),
        _ => false,
    }
}

/// Read one role or privilege statement from its tokens.
pub fn parse(toks: &[Token]) -> Result<Governance> {
    let toks: Vec<&Token> = toks
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon | Token::EOF))
        .collect();
    let mut p = P { toks, pos: 0 };
    let g = p.statement()?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(syntax(format!(
            "unexpected `{t}` after the end of {}",
            g.tag()
        )));
    }
    Ok(g)
}

fn syntax(msg: impl Into<String>) -> QueryError {
    QueryError::Syntax(msg.into())
}

struct P<'a> {
    toks: Vec<&'a Token>,
    pos: usize,
}

impl P<'_> {
    fn peek_kw(&self) -> Option<String> {
        match self.toks.get(self.pos) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn eat(&mut self, kw: &str) -> bool {
        if self.peek_kw().as_deref() == Some(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kw: &str, what: &str) -> Result<()> {
        if self.eat(kw) {
            Ok(())
        } else {
            Err(syntax(format!(
                "expected {kw} {what}, found {}",
                self.found()
            )))
        }
    }

    fn found(&self) -> String {
        match self.toks.get(self.pos) {
            Some(t) => format!("`{t}`"),
            None => "the end of the statement".into(),
        }
    }

    fn comma(&mut self) -> bool {
        if matches!(self.toks.get(self.pos), Some(Token::Comma)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A role name: an identifier (lower-cased unless quoted) or a string.
    fn name(&mut self, what: &str) -> Result<String> {
        match self.toks.get(self.pos) {
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(if w.quote_style.is_some() {
                    w.value.clone()
                } else {
                    w.value.to_lowercase()
                })
            }
            _ => Err(syntax(format!("expected {what}, found {}", self.found()))),
        }
    }

    /// A table name, `t` or `public.t` (or `strata.public.t`).
    fn table(&mut self) -> Result<String> {
        let mut parts = vec![self.name("a table name")?];
        while matches!(self.toks.get(self.pos), Some(Token::Period)) {
            self.pos += 1;
            parts.push(self.name("a table name after `.`")?);
        }
        let name = parts.pop().expect("one part");
        match parts.as_slice() {
            [] => Ok(name),
            [s] | [_, s] if s == "public" => Ok(name),
            _ => Err(QueryError::UndefinedTable(format!(
                "no table `{}.{name}`: Strata tables live in schema `public`",
                parts.join(".")
            ))),
        }
    }

    fn names(&mut self, what: &str) -> Result<Vec<String>> {
        let mut v = vec![self.name(what)?];
        while self.comma() {
            v.push(self.name(what)?);
        }
        Ok(v)
    }

    /// A grantee: a role, PUBLIC, or CURRENT_USER / SESSION_USER (left for
    /// the session to resolve, as `current_user`).
    fn grantees(&mut self) -> Result<Vec<String>> {
        let mut v = Vec::new();
        loop {
            self.eat("GROUP");
            match self.peek_kw().as_deref() {
                Some("PUBLIC") => {
                    self.pos += 1;
                    v.push(super::PUBLIC.to_string());
                }
                Some("CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE") => {
                    self.pos += 1;
                    v.push(super::CURRENT_USER.to_string());
                }
                _ => v.push(self.name("a role name")?),
            }
            if !self.comma() {
                return Ok(v);
            }
        }
    }

    fn statement(&mut self) -> Result<Governance> {
        let first = self.peek_kw().unwrap_or_default();
        self.pos += 1;
        match first.as_str() {
            "CREATE" => {
                let kind = self.peek_kw().unwrap_or_default();
                self.pos += 1;
                let name = self.name("the new role's name")?;
                let options = self.role_options()?;
                Ok(Governance::CreateRole {
                    name,
                    options,
                    user: kind == "USER",
                })
            }
            "ALTER" => {
                self.pos += 1;
                let name = match self.peek_kw().as_deref() {
                    Some("CURRENT_USER" | "SESSION_USER" | "CURRENT_ROLE") => {
                        self.pos += 1;
                        super::CURRENT_USER.to_string()
                    }
                    _ => self.name("a role name")?,
                };
                match self.peek_kw().as_deref() {
                    Some("RENAME") => {
                        return Err(QueryError::Unsupported(
                            "ALTER ROLE … RENAME is not supported: create a new role, grant it what the old one had, and drop the old one".into(),
                        ))
                    }
                    Some("SET" | "RESET") => {
                        return Err(QueryError::Unsupported(
                            "per-role settings (ALTER ROLE … SET) are not supported: set them in the session".into(),
                        ))
                    }
                    _ => {}
                }
                let options = self.role_options()?;
                if options.is_empty() {
                    return Err(syntax(format!(
                        "ALTER ROLE {name} needs an option, such as LOGIN, NOLOGIN, PASSWORD '…' or SUPERUSER"
                    )));
                }
                Ok(Governance::AlterRole { name, options })
            }
            "DROP" => {
                self.pos += 1;
                let if_exists = if self.eat("IF") {
                    self.expect("EXISTS", "after DROP ROLE IF")?;
                    true
                } else {
                    false
                };
                Ok(Governance::DropRole {
                    names: self.names("a role name")?,
                    if_exists,
                })
            }
            "GRANT" | "REVOKE" => self.grant(first == "GRANT"),
            "COMMENT" => {
                self.expect("ON", "after COMMENT")?;
                let (table, column) = self.commented("COMMENT ON")?;
                let text = self.is_text("COMMENT ON")?;
                Ok(Governance::Comment {
                    table,
                    column,
                    text,
                })
            }
            "SECURITY" => {
                self.expect("LABEL", "after SECURITY")?;
                if self.eat("FOR") {
                    let provider = self.name("a label provider")?;
                    if provider != super::LABEL_PROVIDER {
                        return Err(QueryError::Invalid(format!(
                            "security label provider \"{provider}\" is not loaded: Strata's provider is `{}` (SECURITY LABEL FOR {} ON COLUMN t.c IS 'pii')",
                            super::LABEL_PROVIDER,
                            super::LABEL_PROVIDER
                        )));
                    }
                }
                self.expect("ON", "after SECURITY LABEL")?;
                let (table, column) = self.commented("SECURITY LABEL ON")?;
                let label = self.is_text("SECURITY LABEL")?;
                Ok(Governance::Label {
                    table,
                    column,
                    label,
                })
            }
            _ => Err(syntax("not a role or privilege statement")),
        }
    }

    /// `TABLE t` or `COLUMN t.c` (or `public.t.c`).
    fn commented(&mut self, what: &str) -> Result<(String, Option<String>)> {
        match self.peek_kw().as_deref() {
            Some("TABLE") => {
                self.pos += 1;
                Ok((self.table()?, None))
            }
            Some("COLUMN") => {
                self.pos += 1;
                let mut parts = vec![self.name("a column name (table.column)")?];
                while matches!(self.toks.get(self.pos), Some(Token::Period)) {
                    self.pos += 1;
                    parts.push(self.name("a name after `.`")?);
                }
                let column = parts.pop().expect("one part");
                match parts.as_slice() {
                    [t] => Ok((t.clone(), Some(column))),
                    [s, t] | [_, s, t] if s == "public" => Ok((t.clone(), Some(column))),
                    [] => Err(syntax(format!(
                        "{what} COLUMN wants table.column, found only `{column}`"
                    ))),
                    _ => Err(QueryError::UndefinedTable(format!(
                        "no table `{}`: Strata tables live in schema `public`",
                        parts.join(".")
                    ))),
                }
            }
            Some(k) => Err(QueryError::Unsupported(format!(
                "{what} {k} is not supported: Strata keeps comments and labels on TABLE t and COLUMN t.c"
            ))),
            None => Err(syntax(format!(
                "expected TABLE or COLUMN after {what}, found {}",
                self.found()
            ))),
        }
    }

    /// `IS 'text'` or `IS NULL` (which removes it).
    fn is_text(&mut self, what: &str) -> Result<Option<String>> {
        self.expect("IS", &format!("in {what} … IS 'text'"))?;
        match self.toks.get(self.pos) {
            // An empty string removes it, as NULL does (as in Postgres).
            Some(Token::SingleQuotedString(s)) => {
                self.pos += 1;
                Ok(Some(s.clone()).filter(|s| !s.is_empty()))
            }
            Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("NULL") => {
                self.pos += 1;
                Ok(None)
            }
            _ => Err(syntax(format!(
                "{what} … IS wants a quoted string or NULL, found {}",
                self.found()
            ))),
        }
    }

    fn role_options(&mut self) -> Result<Vec<RoleOption>> {
        self.eat("WITH");
        let mut out = Vec::new();
        while let Some(kw) = self.peek_kw() {
            self.pos += 1;
            let o = match kw.as_str() {
                "SUPERUSER" => RoleOption::Superuser(true),
                "NOSUPERUSER" => RoleOption::Superuser(false),
                "LOGIN" => RoleOption::Login(true),
                "NOLOGIN" => RoleOption::Login(false),
                "CREATEROLE" => RoleOption::CreateRole(true),
                "NOCREATEROLE" => RoleOption::CreateRole(false),
                "INHERIT" | "CREATEDB" | "NOCREATEDB" | "NOREPLICATION" | "NOBYPASSRLS" => {
                    RoleOption::Ignored
                }
                "NOINHERIT" | "REPLICATION" | "BYPASSRLS" => {
                    return Err(QueryError::Unsupported(format!(
                        "role option {kw} is not supported by Strata: roles always inherit their roles' privileges, and there is no replication or row security to bypass"
                    )))
                }
                "CONNECTION" => {
                    self.expect("LIMIT", "after CONNECTION")?;
                    match self.toks.get(self.pos) {
                        Some(Token::Number(..)) => self.pos += 1,
                        Some(Token::Minus) => self.pos += 2,
                        _ => return Err(syntax("CONNECTION LIMIT wants a number")),
                    }
                    RoleOption::Ignored
                }
                "ENCRYPTED" | "PASSWORD" => {
                    if kw == "ENCRYPTED" {
                        self.expect("PASSWORD", "after ENCRYPTED")?;
                    }
                    match self.toks.get(self.pos) {
                        Some(Token::SingleQuotedString(s)) => {
                            self.pos += 1;
                            if s.is_empty() {
                                return Err(QueryError::Invalid(
                                    "an empty password is not allowed: give one, or PASSWORD NULL for none".into(),
                                ));
                            }
                            RoleOption::Password(Some(s.clone()))
                        }
                        Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("NULL") => {
                            self.pos += 1;
                            RoleOption::Password(None)
                        }
                        _ => {
                            return Err(syntax(format!(
                                "PASSWORD wants a quoted string or NULL, found {}",
                                self.found()
                            )))
                        }
                    }
                }
                "UNENCRYPTED" => {
                    return Err(QueryError::Unsupported(
                        "UNENCRYPTED PASSWORD is not supported: passwords are stored only as SCRAM-SHA-256 verifiers; write PASSWORD '…'".into(),
                    ))
                }
                "IN" => {
                    if !self.eat("ROLE") {
                        self.expect("GROUP", "after IN")?;
                    }
                    RoleOption::InRole(self.names("a role name")?)
                }
                "VALID" | "ROLE" | "ADMIN" | "USER" | "SYSID" => {
                    return Err(QueryError::Unsupported(format!(
                        "role option {kw} is not supported by Strata: use GRANT role TO member for membership"
                    )))
                }
                other => {
                    return Err(syntax(format!(
                        "unknown role option `{other}`: Strata knows SUPERUSER, LOGIN, CREATEROLE (and their NO… forms), PASSWORD '…' and IN ROLE"
                    )))
                }
            };
            out.push(o);
        }
        Ok(out)
    }

    fn grant(&mut self, grant: bool) -> Result<Governance> {
        let verb = if grant { "GRANT" } else { "REVOKE" };
        let to = if grant { "TO" } else { "FROM" };
        if !grant && self.peek_kw().as_deref() == Some("GRANT") {
            return Err(QueryError::Unsupported(
                "REVOKE GRANT OPTION FOR is not supported: Strata has no grant option (only superusers grant)".into(),
            ));
        }
        // Privileges, or role names (membership): privileges are keywords
        // followed by ON; role names are followed by TO / FROM.
        let mut privileges = Vec::new();
        let mut all = false;
        let mut words = Vec::new();
        if self.eat("ALL") {
            self.eat("PRIVILEGES");
            all = true;
        } else {
            loop {
                let t = self.toks.get(self.pos).copied();
                let raw = match t {
                    Some(Token::Word(w)) => w.clone(),
                    _ => {
                        return Err(syntax(format!(
                            "{verb} wants privileges (SELECT, INSERT, UPDATE, DELETE, ERASE, ALL) or role names, found {}",
                            self.found()
                        )))
                    }
                };
                self.pos += 1;
                if matches!(self.toks.get(self.pos), Some(Token::LParen)) {
                    return Err(QueryError::Unsupported(format!(
                        "column privileges ({} (…)) are not supported: grant on the whole table, and mask columns by classification",
                        raw.value.to_uppercase()
                    )));
                }
                words.push(raw);
                if !self.comma() {
                    break;
                }
            }
        }
        if !all && self.peek_kw().as_deref() == Some(to) {
            // GRANT role, … TO member, …
            self.pos += 1;
            let roles = words
                .iter()
                .map(|w| {
                    if w.quote_style.is_some() {
                        w.value.clone()
                    } else {
                        w.value.to_lowercase()
                    }
                })
                .collect();
            let members = self.names("a role name")?;
            if grant && self.eat("WITH") {
                return Err(QueryError::Unsupported(
                    "WITH ADMIN OPTION is not supported: roles with CREATEROLE manage membership"
                        .into(),
                ));
            }
            self.eat("CASCADE");
            self.eat("RESTRICT");
            return Ok(Governance::Membership {
                grant,
                roles,
                members,
            });
        }
        // USAGE ON SCHEMA s
        if !all
            && words.len() == 1
            && words[0].quote_style.is_none()
            && words[0].value.eq_ignore_ascii_case("USAGE")
            && self.peek_kw().as_deref() == Some("ON")
        {
            self.pos += 1;
            self.expect("SCHEMA", "after USAGE ON (USAGE is a privilege on schemas)")?;
            let schemas = self.names("a schema name")?;
            if !self.eat(to) {
                return Err(syntax(format!(
                    "expected {to} after the schemas in {verb}, found {}",
                    self.found()
                )));
            }
            let grantees = self.grantees()?;
            self.eat("CASCADE");
            self.eat("RESTRICT");
            return Ok(Governance::SchemaUsage {
                grant,
                schemas,
                grantees,
            });
        }
        if all {
            privileges = Privilege::ALL.to_vec();
        } else {
            for w in &words {
                let name = w.value.to_ascii_uppercase();
                match Privilege::from_name(&name) {
                    Some(p) if w.quote_style.is_none() => {
                        if !privileges.contains(&p) {
                            privileges.push(p)
                        }
                    }
                    _ if matches!(
                        name.as_str(),
                        "TRUNCATE" | "REFERENCES" | "TRIGGER" | "USAGE" | "CREATE" | "CONNECT" | "TEMPORARY" | "TEMP" | "EXECUTE" | "MAINTAIN"
                    ) =>
                    {
                        return Err(QueryError::Unsupported(format!(
                            "privilege {name} does not exist in Strata: grant SELECT, INSERT, UPDATE, DELETE, ERASE or ALL"
                        )))
                    }
                    _ => {
                        return Err(syntax(format!(
                            "`{}` is not a privilege: grant SELECT, INSERT, UPDATE, DELETE, ERASE or ALL ON a table, or write GRANT role {to} member for membership",
                            w.value
                        )))
                    }
                }
            }
        }
        if !self.eat("ON") {
            return Err(syntax(format!(
                "expected ON after the privileges in {verb}, found {}",
                self.found()
            )));
        }
        let objects = if self.eat("ALL") {
            self.expect("TABLES", "after ON ALL (ON ALL TABLES IN SCHEMA public)")?;
            self.expect("IN", "after ON ALL TABLES")?;
            self.expect("SCHEMA", "after ON ALL TABLES IN")?;
            Objects::AllTablesInSchema(self.names("a schema name")?)
        } else {
            match self.peek_kw().as_deref() {
                Some("TABLE") => self.pos += 1,
                Some(k @ ("SCHEMA" | "DATABASE" | "SEQUENCE" | "FUNCTION" | "VIEW")) => {
                    return Err(QueryError::Unsupported(format!(
                        "privileges ON {k} are not supported: grant on tables (ON TABLE t, or ON ALL TABLES IN SCHEMA public)"
                    )))
                }
                _ => {}
            }
            let mut v = vec![self.table()?];
            while self.comma() {
                v.push(self.table()?);
            }
            Objects::Tables(v)
        };
        if !self.eat(to) {
            return Err(syntax(format!(
                "expected {to} after the tables in {verb}, found {}",
                self.found()
            )));
        }
        let grantees = self.grantees()?;
        if grant && self.eat("WITH") {
            return Err(QueryError::Unsupported(
                "WITH GRANT OPTION is not supported: only superusers grant privileges in Strata"
                    .into(),
            ));
        }
        if self.eat("GRANTED") {
            return Err(QueryError::Unsupported(
                "GRANTED BY is not supported: a grant records the role that ran it".into(),
            ));
        }
        self.eat("CASCADE");
        self.eat("RESTRICT");
        Ok(Governance::Privileges {
            grant,
            privileges,
            objects,
            grantees,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn p(sql: &str) -> Result<Governance> {
        parse(
            &Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize()
                .unwrap(),
        )
    }

    #[test]
    fn reads_postgres_role_and_grant_syntax() {
        assert_eq!(
            p("CREATE USER Alice WITH PASSWORD 'pw' IN ROLE readers").unwrap(),
            Governance::CreateRole {
                name: "alice".into(),
                options: vec![
                    RoleOption::Password(Some("pw".into())),
                    RoleOption::InRole(vec!["readers".into()])
                ],
                user: true
            }
        );
        assert_eq!(
            p("grant select, erase on table public.t, u to \"Bob\", public").unwrap(),
            Governance::Privileges {
                grant: true,
                privileges: vec![Privilege::Select, Privilege::Erase],
                objects: Objects::Tables(vec!["t".into(), "u".into()]),
                grantees: vec!["Bob".into(), "public".into()],
            }
        );
        assert_eq!(
            p("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM bob CASCADE").unwrap(),
            Governance::Privileges {
                grant: false,
                privileges: Privilege::ALL.to_vec(),
                objects: Objects::AllTablesInSchema(vec!["public".into()]),
                grantees: vec!["bob".into()],
            }
        );
        assert_eq!(
            p("GRANT readers, writers TO alice").unwrap(),
            Governance::Membership {
                grant: true,
                roles: vec!["readers".into(), "writers".into()],
                members: vec!["alice".into()]
            }
        );
        assert_eq!(
            p("DROP ROLE IF EXISTS a, b").unwrap(),
            Governance::DropRole {
                names: vec!["a".into(), "b".into()],
                if_exists: true
            }
        );
        assert_eq!(
            p("COMMENT ON COLUMN public.t.Email IS 'where to write'").unwrap(),
            Governance::Comment {
                table: "t".into(),
                column: Some("email".into()),
                text: Some("where to write".into())
            }
        );
        assert_eq!(
            p("SECURITY LABEL FOR strata ON COLUMN t.email IS 'pii'").unwrap(),
            Governance::Label {
                table: "t".into(),
                column: Some("email".into()),
                label: Some("pii".into())
            }
        );
        assert_eq!(
            p("COMMENT ON TABLE t IS NULL").unwrap(),
            Governance::Comment {
                table: "t".into(),
                column: None,
                text: None
            }
        );
        for (bad, says) in [
            (
                "SECURITY LABEL FOR selinux ON COLUMN t.c IS 'x'",
                "not loaded",
            ),
            ("COMMENT ON INDEX i IS 'x'", "not supported"),
            ("COMMENT ON COLUMN c IS 'x'", "table.column"),
            ("GRANT TRUNCATE ON t TO a", "does not exist in Strata"),
            ("GRANT USAGE ON t TO a", "expected SCHEMA"),
            ("GRANT SELECT (a) ON t TO a", "column privileges"),
            ("GRANT SELECT ON t TO a WITH GRANT OPTION", "GRANT OPTION"),
            ("CREATE ROLE a FROBNICATE", "unknown role option"),
            ("GRANT SELECT t TO a", "expected ON"),
            ("GRANT SELECT ON other.t TO a", "schema `public`"),
            ("CREATE USER a PASSWORD ''", "empty password"),
            ("ALTER ROLE a", "needs an option"),
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
