//! What a Postgres client expects of a server besides running its queries:
//! session settings (`SET`, `SHOW`, `RESET`), and functions like `version()`
//! and `current_schema()` answered from the connection's own state.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Select, SelectItem,
    Statement, Value, VisitMut, VisitorMut,
};

pub const SERVER_VERSION: &str = "16.6";
pub const SERVER_VERSION_NUM: &str = "160006";

/// The full `version()` string; drivers parse the "PostgreSQL N.M" prefix.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Strata {}) on {}-{}, a bitemporal database speaking the Postgres protocol",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Settings with their defaults: (canonical name, default, description).
const DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "application_name",
        "",
        "Sets the application name to be reported in statistics and logs.",
    ),
    ("bytea_output", "hex", "Sets the output format for bytea."),
    (
        "client_encoding",
        "UTF8",
        "Sets the client's character set encoding.",
    ),
    (
        "client_min_messages",
        "notice",
        "Sets the message levels that are sent to the client.",
    ),
    (
        "DateStyle",
        "ISO, MDY",
        "Sets the display format for date and time values.",
    ),
    (
        "default_transaction_isolation",
        "read committed",
        "Sets the transaction isolation level of each new transaction.",
    ),
    (
        "default_transaction_read_only",
        "off",
        "Sets the default read-only status of new transactions.",
    ),
    (
        "extra_float_digits",
        "1",
        "Sets the number of digits displayed for floating-point values.",
    ),
    (
        "idle_in_transaction_session_timeout",
        "0",
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    (
        "integer_datetimes",
        "on",
        "Shows whether datetimes are integer based.",
    ),
    (
        "IntervalStyle",
        "postgres",
        "Sets the display format for interval values.",
    ),
    (
        "is_superuser",
        "on",
        "Shows whether the current user is a superuser.",
    ),
    ("lc_collate", "C.UTF-8", "Shows the collation order locale."),
    (
        "lc_ctype",
        "C.UTF-8",
        "Shows the character classification and case conversion locale.",
    ),
    (
        "lock_timeout",
        "0",
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    (
        "max_identifier_length",
        "63",
        "Shows the maximum identifier length.",
    ),
    (
        "search_path",
        "public",
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    (
        "server_encoding",
        "UTF8",
        "Shows the server (database) character set encoding.",
    ),
    (
        "server_version",
        SERVER_VERSION,
        "Shows the server version.",
    ),
    (
        "server_version_num",
        SERVER_VERSION_NUM,
        "Shows the server version as an integer.",
    ),
    (
        "standard_conforming_strings",
        "on",
        "Causes '...' strings to treat backslashes literally.",
    ),
    (
        "statement_timeout",
        "0",
        "Sets the maximum allowed duration of any statement.",
    ),
    (
        "TimeZone",
        "UTC",
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    (
        "transaction_isolation",
        "read committed",
        "Sets the current transaction's isolation level.",
    ),
    (
        "transaction_read_only",
        "off",
        "Sets the current transaction's read-only status.",
    ),
];

/// Settings the server reports to the client (ParameterStatus) when they change.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
    "search_path",
];

fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    DEFAULTS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(&lower))
        .map(|(n, _, _)| n.to_string())
        .unwrap_or(lower)
}

/// One connection's settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Overrides of the defaults, by lowercase name.
    set: BTreeMap<String, (String, String)>,
    /// The server's defaults where they differ from Postgres' (what RESET goes back to).
    server: BTreeMap<String, (String, String)>,
}

/// A duration setting in milliseconds, as Postgres reads it: an integer
/// (milliseconds) or a number with a unit (`us`, `ms`, `s`, `min`, `h`, `d`).
pub fn parse_millis(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let ms_per = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (n * ms_per).round();
    (ms.is_finite() && (0.0..=i32::MAX as f64).contains(&ms)).then_some(ms as u64)
}

/// Milliseconds as `SHOW` prints them: the largest unit that divides evenly.
pub fn show_millis(ms: u64) -> String {
    if ms == 0 {
        return "0".into();
    }
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// The result of a `SET`: the setting to report to the client, if any.
pub type Report = Option<(String, String)>;

impl Settings {
    pub fn get(&self, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if let Some((_, v)) = self.set.get(&lower).or_else(|| self.server.get(&lower)) {
            return Some(v.clone());
        }
        DEFAULTS
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(&lower))
            .map(|(_, d, _)| d.to_string())
    }

    /// Set `name` to `value`, validating the few values Strata cannot honour.
    pub fn set(&mut self, name: &str, value: &str) -> Result<Report, (String, String)> {
        // A NUL cannot travel in a ParameterStatus message (a C string):
        // the client would see a broken frame. PostgreSQL's text has no NUL.
        if name.contains('\0') || value.contains('\0') {
            return Err((
                "22021".into(),
                "invalid byte sequence for encoding \"UTF8\": 0x00 (a setting's name or value cannot contain a NUL character)".into(),
            ));
        }
        let canon = canonical_name(name);
        let lower = canon.to_ascii_lowercase();
        let value = match lower.as_str() {
            "client_encoding" => {
                match value.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
                    "UTF8" | "UNICODE" => "UTF8".to_string(),
                    "SQLASCII" => "SQL_ASCII".to_string(),
                    _ => {
                        return Err((
                            "0A000".into(),
                            format!("client_encoding {value} is not supported: Strata speaks UTF8"),
                        ))
                    }
                }
            }
            "standard_conforming_strings" => match value.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => "on".to_string(),
                _ => {
                    return Err((
                        "0A000".into(),
                        "standard_conforming_strings cannot be turned off".into(),
                    ))
                }
            },
            "intervalstyle" => {
                if pgwire::types::format::interval_style::IntervalStyle::try_from(value).is_err() {
                    return Err((
                        "22023".into(),
                        format!("invalid value for parameter \"IntervalStyle\": \"{value}\""),
                    ));
                }
                value.to_string()
            }
            "extra_float_digits" => match value.trim().parse::<i8>() {
                Ok(v) if (-15..=3).contains(&v) => v.to_string(),
                _ => {
                    return Err((
                        "22023".into(),
                        format!("invalid value for parameter \"extra_float_digits\": \"{value}\""),
                    ))
                }
            },
            "timezone" => match super::types::parse_time_zone(value) {
                Some(z) => z.canonical(value),
                None => {
                    return Err((
                        "22023".into(),
                        format!(
                            "invalid value for parameter \"TimeZone\": \"{value}\" \
                             (use a time zone name such as 'Europe/Berlin' or 'UTC', \
                             or an offset in hours such as '+02')"
                        ),
                    ))
                }
            },
            "statement_timeout" => match parse_millis(value) {
                Some(ms) => show_millis(ms),
                None => {
                    return Err((
                        "22023".into(),
                        format!(
                            "invalid value for parameter \"statement_timeout\": \"{value}\" \
                             (use milliseconds or a number with a unit: '2s', '500ms', '1min'; 0 turns it off)"
                        ),
                    ))
                }
            },
            "transaction_isolation" | "default_transaction_isolation" => value.to_ascii_lowercase(),
            _ => value.to_string(),
        };
        self.set.insert(lower, (canon.clone(), value.clone()));
        Ok(REPORTED.contains(&canon.as_str()).then_some((canon, value)))
    }

    /// Make `name = value` this server's default (validated like `SET`).
    pub fn set_server_default(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.set(name, value).map_err(|(_, m)| m)?;
        let lower = canonical_name(name).to_ascii_lowercase();
        if let Some(v) = self.set.remove(&lower) {
            self.server.insert(lower, v);
        }
        Ok(())
    }

    /// `statement_timeout`, when one is set (not 0).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let ms = parse_millis(&self.get("statement_timeout")?)?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    pub fn reset(&mut self, name: &str) -> Report {
        let canon = canonical_name(name);
        self.set.remove(&canon.to_ascii_lowercase());
        REPORTED.contains(&canon.as_str()).then(|| {
            let v = self.get(&canon).unwrap_or_default();
            (canon, v)
        })
    }

    pub fn reset_all(&mut self) -> Vec<(String, String)> {
        let names: Vec<String> = self.set.values().map(|(n, _)| n.clone()).collect();
        names.iter().filter_map(|n| self.reset(n)).collect()
    }

    /// All settings, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut out: BTreeMap<String, (String, String, String)> = DEFAULTS
            .iter()
            .map(|(n, d, desc)| {
                (
                    n.to_ascii_lowercase(),
                    (n.to_string(), d.to_string(), desc.to_string()),
                )
            })
            .collect();
        for (k, (n, v)) in self.server.iter().chain(&self.set) {
            out.entry(k.clone())
                .and_modify(|e| e.1 = v.clone())
                .or_insert((n.clone(), v.clone(), String::new()));
        }
        out.into_values().collect()
    }

    /// pgwire's format options from these settings.
    pub fn format_options(&self) -> pgwire::types::format::FormatOptions {
        let mut m = std::collections::HashMap::new();
        for k in [
            "datestyle",
            "intervalstyle",
            "bytea_output",
            "extra_float_digits",
        ] {
            if let Some(v) = self.get(k) {
                m.insert(k.to_string(), v);
            }
        }
        let mut o = pgwire::types::format::FormatOptions::from_client_metadata(&m);
        // timestamptz values are written in the session's time zone.
        if let Some(tz) = self.get("TimeZone") {
            o.time_zone = tz;
        }
        o
    }
}

/// A result of one text column per row, as `SHOW` gives.
pub fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> (SchemaRef, RecordBatch) {
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays = (0..columns.len())
        .map(|i| {
            Arc::new(
                rows.iter()
                    .map(|r| Some(r[i].clone()))
                    .collect::<StringArray>(),
            ) as _
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("text rows");
    (schema, batch)
}

/// The value of `SET x = …` as Postgres would store it.
pub fn set_value(values: &[Expr]) -> String {
    values
        .iter()
        .map(|e| match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn object_name_string(n: &ast::ObjectName) -> String {
    n.0.iter()
        .map(|p| {
            p.as_ident()
                .map(|i| i.value.clone())
                .unwrap_or_else(|| p.to_string())
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `SHOW transaction isolation level` and friends → a setting name.
pub fn show_name(idents: &[Ident]) -> String {
    let joined = idents
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    match joined.as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "TimeZone".into(),
        "session authorization" => "session_authorization".into(),
        _ => idents
            .iter()
            .map(|i| i.value.clone())
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// Per-connection facts the rewritten functions return.
pub struct ConnFacts<'a> {
    pub user: &'a str,
    pub database: &'a str,
    pub pid: i32,
    pub settings: &'a Settings,
}

/// Replace calls to `version()`, `current_schema()`, `current_user`,
/// `current_setting('x')`, … with their values. A bare select item keeps the
/// function's name as its column name, as in Postgres.
pub fn rewrite_functions(stmt: &mut Statement, facts: &ConnFacts<'_>) -> bool {
    struct V<'a, 'b>(&'a ConnFacts<'b>, bool);
    impl VisitorMut for V<'_, '_> {
        type Break = ();
        fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
            for item in select.projection.iter_mut() {
                if let SelectItem::UnnamedExpr(e) = item {
                    if let Some((name, _)) = special(e, self.0) {
                        *item = SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: Ident::new(name),
                        };
                    }
                }
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Some((_, v)) = special(expr, self.0) {
                *expr = v;
                self.1 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = V(facts, false);
    let _ = stmt.visit(&mut v);
    v.1
}

/// Might the SQL call a function we answer ourselves? (a cheap text test)
pub fn mentions_special(sql: &str) -> bool {
    let s = sql.to_ascii_lowercase();
    [
        "version",
        "current_",
        "session_user",
        "user",
        "pg_backend_pid",
        "pg_is_in_recovery",
    ]
    .iter()
    .any(|f| s.contains(f))
}

fn lit_str(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).with_empty_span())
}

fn special(e: &Expr, facts: &ConnFacts<'_>) -> Option<(String, Expr)> {
    let (name, args): (String, Vec<&Expr>) = match e {
        Expr::Function(f) => {
            let parts: Vec<String> = f
                .name
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            let name = match parts.as_slice() {
                [n] => n.clone(),
                [s, n] if s == "pg_catalog" => n.clone(),
                _ => return None,
            };
            let args = match &f.args {
                FunctionArguments::None => vec![],
                FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                FunctionArguments::Subquery(_) => return None,
            };
            (name, args)
        }
        Expr::Identifier(i) if i.quote_style.is_none() => (i.value.to_ascii_lowercase(), vec![]),
        _ => return None,
    };
    let bare = matches!(e, Expr::Identifier(_))
        || matches!(e, Expr::Function(f) if matches!(f.args, FunctionArguments::None));
    let v = match (name.as_str(), args.as_slice()) {
        ("version", []) if !bare => lit_str(&version_string()),
        ("current_schema", []) => lit_str("public"),
        ("current_database", []) if !bare => lit_str(facts.database),
        ("current_catalog", []) if bare => lit_str(facts.database),
        ("current_user" | "session_user" | "current_role" | "user", []) if bare => {
            lit_str(facts.user)
        }
        ("pg_backend_pid", []) if !bare => {
            Expr::Value(Value::Number(facts.pid.to_string(), false).with_empty_span())
        }
        ("pg_is_in_recovery", []) if !bare => Expr::Value(Value::Boolean(false).with_empty_span()),
        ("current_setting", [arg, ..]) => {
            let Expr::Value(v) = arg else { return None };
            let Value::SingleQuotedString(s) = &v.value else {
                return None;
            };
            match facts.settings.get(s) {
                Some(v) => lit_str(&v),
                None => return None,
            }
        }
        _ => return None,
    };
    Some((name, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> String {
        let settings = Settings::default();
        let facts = ConnFacts {
            user: "ada",
            database: "strata",
            pid: 7,
            settings: &settings,
        };
        let mut s = strata_query::sql::parse(sql).unwrap().remove(0);
        rewrite_functions(&mut s, &facts);
        s.to_string()
    }

    #[test]
    fn rewrites() {
        assert_eq!(
            rewrite("SELECT current_schema()"),
            "SELECT 'public' AS current_schema"
        );
        assert_eq!(
            rewrite("select current_user"),
            "SELECT 'ada' AS current_user"
        );
        assert!(rewrite("SELECT version()").starts_with("SELECT 'PostgreSQL 16.6"));
        assert_eq!(
            rewrite("SELECT current_setting('DateStyle') AS d"),
            "SELECT 'ISO, MDY' AS d"
        );
        assert_eq!(rewrite("SELECT name FROM t"), "SELECT name FROM t");
    }

    #[test]
    fn statement_timeout_reads_like_postgres() {
        let mut s = Settings::default();
        assert_eq!(s.get("statement_timeout").unwrap(), "0");
        assert_eq!(s.statement_timeout(), None);
        for (v, shown, ms) in [
            ("2s", "2s", 2000),
            ("2000", "2s", 2000),
            ("1500", "1500ms", 1500),
            ("1 min", "1min", 60_000),
            ("90s", "90s", 90_000),
            ("0.5s", "500ms", 500),
        ] {
            s.set("statement_timeout", v).unwrap();
            assert_eq!(s.get("statement_timeout").unwrap(), shown, "{v}");
            assert_eq!(s.statement_timeout().unwrap().as_millis(), ms, "{v}");
        }
        assert!(s.set("statement_timeout", "soon").is_err());
        assert!(s.set("statement_timeout", "-1").is_err());
        let mut s = Settings::default();
        s.set_server_default("statement_timeout", "30000").unwrap();
        s.set("statement_timeout", "1s").unwrap();
        s.reset("statement_timeout");
        assert_eq!(s.get("statement_timeout").unwrap(), "30s");
    }

    #[test]
    fn settings() {
        let mut s = Settings::default();
        assert_eq!(s.get("datestyle").unwrap(), "ISO, MDY");
        assert!(s.set("client_encoding", "latin1").is_err());
        assert_eq!(
            s.set("DATESTYLE", "ISO, DMY").unwrap(),
            Some(("DateStyle".into(), "ISO, DMY".into()))
        );
        assert_eq!(s.get("DateStyle").unwrap(), "ISO, DMY");
        // A NUL would break the ParameterStatus frame: refused, unchanged.
        assert_eq!(s.set("DateStyle", "\0").unwrap_err().0, "22021");
        assert_eq!(s.get("DateStyle").unwrap(), "ISO, DMY");
        s.reset_all();
        assert_eq!(s.get("DateStyle").unwrap(), "ISO, MDY");
    }
}
