//! Strata's temporal SQL extensions, resolved before DataFusion sees the SQL:
//! `FOR SYSTEM_TIME …` / `FOR VALID_TIME …` after a table name, the
//! `SETTING DEFAULT …` prefix, `FOR PORTION OF VALID_TIME` in UPDATE/DELETE,
//! `ERASE`, `ASSERT` and `BEGIN READ WRITE WITH (SYSTEM_TIME = …)`.
//!
//! The rewrite works on tokens: each temporal table reference becomes a
//! synthetic table name bound to an explicit coordinate (so a clause can never
//! be silently ignored), and the statement's extras are returned beside it.

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};
use strata_storage::{Coordinate, Micros, TimeSelector, OPEN};

use crate::error::{QueryError, Result};

/// One statement after the rewrite.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub sql: String,
    pub kind: StatementKind,
    /// `SETTING DEFAULT SYSTEM_TIME …` / `DEFAULT VALID_TIME …`.
    pub default_system: Option<TimeSelector>,
    pub default_valid: Option<TimeSelector>,
    /// Synthetic table name → (table, system selector or default, valid selector or default).
    pub overrides: Vec<(String, String, Option<TimeSelector>, Option<TimeSelector>)>,
    /// A time in a clause read a parameter or the clock (`$1`, `NOW()`,
    /// `CURRENT_TIMESTAMP`, …): the rewrite holds for this execution only.
    pub contextual: bool,
}

impl Rewritten {
    /// Whether this rewrite depends on the SQL text alone (not on parameter
    /// values or the clock): a plain statement whose temporal clauses, if
    /// any, name their times as literals (`FOR SYSTEM_TIME AS OF TIMESTAMP
    /// '…'`). A clause without a time (the default, "now") is resolved when
    /// the statement runs, not here.
    pub fn is_context_free(&self) -> bool {
        self.kind == StatementKind::Plain && !self.contextual
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    Plain,
    /// UPDATE/DELETE with a valid-time portion (`None` = the default `[now, ∞)`).
    Portion(Option<TimeSelector>),
    Erase,
    Assert,
    /// `BEGIN READ WRITE WITH (SYSTEM_TIME = t)`.
    BeginAt(Micros),
    /// `CHECKPOINT`: flush, compact and collect (parsed as `SELECT 1`).
    Checkpoint,
    /// `SUBSCRIBE [TO] t …`: a change feed (parsed as `SELECT 1`).
    Subscribe(Subscribe),
    /// A role or privilege statement (crate::access; parsed as `SELECT 1`).
    Governance(Box<crate::access::Governance>),
}

/// `SUBSCRIBE [TO] t [AFTER <position> | FROM SYSTEM_TIME <time>] [WITH SNAPSHOT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// The table, as the catalog names it.
    pub table: String,
    pub start: SubscribeStart,
    /// The table's state at the start first (rows with `_op = 'snapshot'`).
    pub snapshot: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SubscribeStart {
    /// From the first transaction in the log (or, WITH SNAPSHOT, from now).
    Beginning,
    /// The transactions after a saved `_position`.
    After(i64),
    /// The transactions at this system time and later (WITH SNAPSHOT: the
    /// state as of it, then the transactions after it).
    SystemTime(Micros),
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn is_ws(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
    params: &'a [ScalarValue],
    /// A time read a parameter or the clock.
    contextual: bool,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.pos < self.toks.len() && is_ws(&self.toks[self.pos]) {
            self.pos += 1;
        }
    }
    fn peek_word(&mut self) -> Option<String> {
        self.skip_ws();
        self.toks.get(self.pos).and_then(word)
    }
    fn peek_word_at(&self, mut k: usize, nth: usize) -> Option<String> {
        let mut seen = 0;
        while k < self.toks.len() {
            if !is_ws(&self.toks[k]) {
                if seen == nth {
                    return word(&self.toks[k]);
                }
                seen += 1;
            }
            k += 1;
        }
        None
    }
    fn expect_word(&mut self, w: &str) -> Result<()> {
        match self.peek_word() {
            Some(x) if x == w => {
                self.pos += 1;
                Ok(())
            }
            Some(x)
                if w.strip_suffix("_TIME") == Some(x.as_str())
                    && self.peek_word_at(self.pos + 1, 0).as_deref() == Some("TIME") =>
            {
                Err(QueryError::Syntax(format!(
                    "`{x} TIME` is not a time axis: did you mean `{w}` (with an underscore)?"
                )))
            }
            other => Err(QueryError::Syntax(format!(
                "expected {w} in a temporal clause, found {}",
                other.unwrap_or_else(|| self
                    .toks
                    .get(self.pos)
                    .map(|t| t.to_string())
                    .unwrap_or("end of input".into()))
            ))),
        }
    }
    fn next(&mut self) -> Option<&'a Token> {
        self.skip_ws();
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    /// The rest of `SUBSCRIBE [TO] t [AFTER n | FROM SYSTEM_TIME t] [WITH SNAPSHOT]`.
    fn subscribe(&mut self) -> Result<Subscribe> {
        const USAGE: &str =
            "SUBSCRIBE [TO] <table> [AFTER <position> | FROM SYSTEM_TIME <time>] [WITH SNAPSHOT]";
        if self.peek_word().as_deref() == Some("TO") {
            self.pos += 1;
        }
        // The table: the last part of a possibly qualified name.
        let mut table: String;
        loop {
            match self.next() {
                Some(Token::Word(w)) => {
                    table = match w.quote_style {
                        Some(_) => w.value.clone(),
                        None => crate::ident::fold(&w.value),
                    }
                }
                other => {
                    return Err(QueryError::Syntax(format!(
                        "SUBSCRIBE needs a table name, found {}: {USAGE}",
                        other
                            .map(|t| t.to_string())
                            .unwrap_or("end of input".into())
                    )))
                }
            }
            if matches!(self.toks.get(self.pos), Some(Token::Period)) {
                self.pos += 1;
                continue;
            }
            break;
        }
        let mut out = Subscribe {
            table,
            start: SubscribeStart::Beginning,
            snapshot: false,
        };
        let mut started = false;
        loop {
            let w = self.peek_word();
            match w.as_deref() {
                Some("AFTER") | Some("FROM") if started => {
                    return Err(QueryError::Syntax(format!(
                        "SUBSCRIBE takes one start, AFTER or FROM SYSTEM_TIME, not both: {USAGE}"
                    )))
                }
                Some("AFTER") => {
                    self.pos += 1;
                    started = true;
                    out.start = SubscribeStart::After(self.position()?);
                }
                Some("FROM") => {
                    self.pos += 1;
                    self.expect_word("SYSTEM_TIME")?;
                    started = true;
                    out.start = SubscribeStart::SystemTime(self.time()?);
                }
                Some("WITH") => {
                    self.pos += 1;
                    self.expect_word("SNAPSHOT")?;
                    out.snapshot = true;
                }
                _ => {
                    self.skip_ws();
                    match self.toks.get(self.pos) {
                        None | Some(Token::SemiColon) => break,
                        Some(t) => {
                            return Err(QueryError::Syntax(format!(
                                "unexpected {t} in SUBSCRIBE: {USAGE}"
                            )))
                        }
                    }
                }
            }
        }
        if out.snapshot && matches!(out.start, SubscribeStart::After(_)) {
            return Err(QueryError::Syntax(
                "SUBSCRIBE … AFTER <position> resumes a feed, which already had its snapshot: drop WITH SNAPSHOT".into(),
            ));
        }
        Ok(out)
    }

    /// A feed position: an integer literal or a parameter.
    fn position(&mut self) -> Result<i64> {
        let t = self.next().cloned();
        let bad = |what: String| {
            QueryError::Invalid(format!(
                "SUBSCRIBE … AFTER wants a position (a _position value from the feed, a non-negative integer), found {what}"
            ))
        };
        match &t {
            Some(Token::Number(n, _)) => n
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| bad(n.clone())),
            Some(Token::Placeholder(p)) => {
                let n: usize = p
                    .trim_start_matches('$')
                    .parse()
                    .map_err(|_| bad(p.clone()))?;
                let v = self
                    .params
                    .get(n.wrapping_sub(1))
                    .ok_or_else(|| QueryError::Invalid(format!("parameter {p} has no value")))?;
                match v {
                    ScalarValue::Int64(Some(x)) => Some(*x),
                    ScalarValue::Int32(Some(x)) => Some(*x as i64),
                    ScalarValue::Int16(Some(x)) => Some(*x as i64),
                    ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
                        s.trim().parse().ok()
                    }
                    _ => None,
                }
                .filter(|x| *x >= 0)
                .ok_or_else(|| bad(format!("{v}")))
            }
            Some(other) => Err(bad(other.to_string())),
            None => Err(bad("end of input".into())),
        }
    }

    /// A time value: `TIMESTAMP '…'`, `DATE '…'`, `'…'`, `$n`, `NOW()`,
    /// `CURRENT_TIMESTAMP`, `CURRENT_DATE`, `NULL` (= open), each optionally `::type`.
    fn time(&mut self) -> Result<Micros> {
        let mut prefix_types = 0;
        loop {
            match self.peek_word().as_deref() {
                Some("TIMESTAMP") | Some("TIMESTAMPTZ") | Some("DATE") | Some("WITH")
                | Some("WITHOUT") | Some("TIME") | Some("ZONE") => {
                    self.pos += 1;
                    prefix_types += 1;
                }
                _ => break,
            }
        }
        let t = self.next().cloned();
        let v = match &t {
            Some(Token::SingleQuotedString(s)) => parse_time_literal(s)?,
            Some(Token::Placeholder(p)) if prefix_types == 0 => {
                let n: usize = p.trim_start_matches('$').parse().map_err(|_| {
                    QueryError::Syntax(format!("parameter {p} in a temporal clause must be $1, $2, …"))
                })?;
                let v = self.params.get(n.wrapping_sub(1)).ok_or_else(|| {
                    QueryError::Invalid(format!("parameter {p} used in a temporal clause has no value"))
                })?;
                self.contextual = true;
                scalar_time(v)?
            }
            Some(Token::Word(w)) if prefix_types == 0 => match w.value.to_ascii_uppercase().as_str() {
                "NOW" => {
                    self.contextual = true;
                    // NOW()
                    if matches!(self.next(), Some(Token::LParen)) && matches!(self.next(), Some(Token::RParen)) {
                        now_us()
                    } else {
                        return Err(QueryError::Syntax("expected NOW()".into()));
                    }
                }
                "CURRENT_TIMESTAMP" | "LOCALTIMESTAMP" => {
                    self.contextual = true;
                    now_us()
                }
                "CURRENT_DATE" => {
                    self.contextual = true;
                    now_us() / 86_400_000_000 * 86_400_000_000
                }
                "NULL" => OPEN,
                other => {
                    return Err(QueryError::Syntax(format!(
                        "unsupported time expression `{other}` in a temporal clause: use TIMESTAMP '…', DATE '…', a parameter or NOW()"
                    )))
                }
            },
            other => {
                return Err(QueryError::Syntax(format!(
                    "expected a time value in a temporal clause, found {}",
                    other.as_ref().map(|t| t.to_string()).unwrap_or("end of input".into())
                )))
            }
        };
        // Optional ::type cast.
        self.skip_ws();
        if matches!(self.toks.get(self.pos), Some(Token::DoubleColon)) {
            self.pos += 1;
            while matches!(
                self.peek_word().as_deref(),
                Some("TIMESTAMP" | "TIMESTAMPTZ" | "DATE" | "WITH" | "WITHOUT" | "TIME" | "ZONE")
            ) {
                self.pos += 1;
            }
        }
        Ok(v)
    }

    /// After `SYSTEM_TIME` / `VALID_TIME`: `AS OF t | FROM a TO b | BETWEEN a AND b | ALL`.
    fn selector(&mut self) -> Result<TimeSelector> {
        match self.peek_word().as_deref() {
            Some("AS") => {
                self.pos += 1;
                self.expect_word("OF")?;
                Ok(TimeSelector::AsOf(self.time()?))
            }
            Some("FROM") => {
                self.pos += 1;
                let a = open_start(self.time()?);
                self.expect_word("TO")?;
                let b = self.time()?;
                Ok(TimeSelector::Range { from: a, to: b })
            }
            Some("BETWEEN") => {
                self.pos += 1;
                let a = open_start(self.time()?);
                self.expect_word("AND")?;
                let b = self.time()?;
                Ok(TimeSelector::Range {
                    from: a,
                    to: b.saturating_add(1),
                })
            }
            Some("ALL") => {
                self.pos += 1;
                Ok(TimeSelector::All)
            }
            other => Err(QueryError::Syntax(format!(
                "expected AS OF, FROM … TO, BETWEEN … AND or ALL after the time axis, found {}",
                other.unwrap_or_default()
            ))),
        }
    }

    /// `FOR [ALL] SYSTEM_TIME|VALID_TIME [spec]` at the cursor (the FOR already checked).
    fn axis_clause(&mut self) -> Result<(bool, TimeSelector)> {
        self.expect_word("FOR")?;
        let all_first = self.peek_word().as_deref() == Some("ALL");
        if all_first {
            self.pos += 1;
        }
        let axis = self.peek_word();
        let system = match axis.as_deref() {
            Some("SYSTEM_TIME") => true,
            Some("VALID_TIME") => false,
            _ => {
                return Err(QueryError::Syntax(
                    "expected SYSTEM_TIME or VALID_TIME after FOR".into(),
                ))
            }
        };
        self.pos += 1;
        let sel = if all_first {
            TimeSelector::All
        } else {
            self.selector()?
        };
        Ok((system, sel))
    }
}

/// A NULL start of a range is open towards the past (−∞), not +∞.
fn open_start(t: Micros) -> Micros {
    if t == OPEN {
        i64::MIN
    } else {
        t
    }
}

fn now_us() -> Micros {
    use strata_storage::Clock;
    strata_storage::SystemClock.now_us()
}

/// A parameter's value as a time.
fn scalar_time(v: &ScalarValue) -> Result<Micros> {
    use ScalarValue as S;
    Ok(match v {
        S::TimestampMicrosecond(Some(x), _) => *x,
        S::TimestampNanosecond(Some(x), _) => x / 1000,
        S::TimestampMillisecond(Some(x), _) => x * 1000,
        S::TimestampSecond(Some(x), _) => x * 1_000_000,
        S::Date32(Some(d)) => *d as i64 * 86_400_000_000,
        S::Utf8(Some(s)) | S::Utf8View(Some(s)) | S::LargeUtf8(Some(s)) => parse_time_literal(s)?,
        v if v.is_null() => OPEN,
        other => {
            return Err(QueryError::Invalid(format!(
                "a temporal clause needs a timestamp, got {other:?}"
            )))
        }
    })
}

/// Parse a timestamp or date literal; a value without a zone is UTC.
pub fn parse_time_literal(s: &str) -> Result<Micros> {
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp_micros());
    }
    let base = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix('z'))
        .unwrap_or(t);
    let base = base.replace('T', " ");
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(&base, f) {
            return Ok(d.timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(&base, f) {
            return Ok(d.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&base, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros());
    }
    Err(QueryError::Invalid(format!(
        "`{s}` is not a timestamp: use e.g. '2021-05-01', '2021-05-01 12:00:00' or '2021-05-01T12:00:00Z'"
    )))
}

/// Split SQL into statements and rewrite each one's temporal syntax.
pub fn rewrite(sql: &str, params: &[ScalarValue]) -> Result<Vec<Rewritten>> {
    let toks = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0i32;
    for i in 0..=toks.len() {
        let end = i == toks.len();
        if !end {
            match &toks[i] {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
        }
        if end || (matches!(toks[i], Token::SemiColon) && depth == 0) {
            let stmt = &toks[start..i];
            if stmt.iter().any(|t| !is_ws(t)) {
                out.push(rewrite_statement(stmt, params, out.len())?);
            }
            start = i + 1;
        }
    }
    Ok(out)
}

const CLAUSE_END: &[&str] = &[
    "WHERE",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "HAVING",
    "WINDOW",
    "SET",
    "FOR",
    "QUALIFY",
    "FETCH",
];

fn rewrite_statement(toks: &[Token], params: &[ScalarValue], stmt_no: usize) -> Result<Rewritten> {
    let mut c = Cursor {
        toks,
        pos: 0,
        params,
        contextual: false,
    };
    let mut r = Rewritten {
        sql: String::new(),
        kind: StatementKind::Plain,
        default_system: None,
        default_valid: None,
        overrides: vec![],
        contextual: false,
    };
    // SETTING DEFAULT VALID_TIME …, DEFAULT SYSTEM_TIME … <statement>
    if c.peek_word().as_deref() == Some("SETTING") {
        c.pos += 1;
        loop {
            c.expect_word("DEFAULT")?;
            match c.peek_word().as_deref() {
                Some("SYSTEM_TIME") => {
                    c.pos += 1;
                    r.default_system = Some(c.selector()?);
                }
                Some("VALID_TIME") => {
                    c.pos += 1;
                    r.default_valid = Some(c.selector()?);
                }
                _ => {
                    return Err(QueryError::Syntax(
                        "SETTING DEFAULT wants SYSTEM_TIME or VALID_TIME".into(),
                    ))
                }
            }
            c.skip_ws();
            if matches!(c.toks.get(c.pos), Some(Token::Comma)) {
                c.pos += 1;
                continue;
            }
            break;
        }
    }
    let mut out: Vec<Token> = Vec::new();
    let first = c.peek_word();
    match first.as_deref() {
        Some("ERASE") => {
            c.pos += 1;
            r.kind = StatementKind::Erase;
            out.push(Token::make_keyword("DELETE"));
        }
        Some("ASSERT") => {
            c.pos += 1;
            r.kind = StatementKind::Assert;
            out.push(Token::make_keyword("SELECT"));
        }
        Some("CHECKPOINT") => {
            c.pos += 1;
            c.skip_ws();
            if c.pos < toks.len() && !matches!(toks[c.pos], Token::SemiColon) {
                return Err(QueryError::Syntax(
                    "CHECKPOINT takes no arguments: write just `CHECKPOINT`".into(),
                ));
            }
            r.kind = StatementKind::Checkpoint;
            r.sql = "SELECT 1".into();
            r.contextual = c.contextual;
            return Ok(r);
        }
        Some(w)
            if crate::access::parse::is_governance(w, c.peek_word_at(c.pos + 1, 0).as_deref()) =>
        {
            r.kind =
                StatementKind::Governance(Box::new(crate::access::parse::parse(&toks[c.pos..])?));
            r.sql = "SELECT 1".into();
            // Not kept parsed by its text: it may carry a password.
            r.contextual = true;
            return Ok(r);
        }
        Some("SUBSCRIBE") => {
            c.pos += 1;
            r.kind = StatementKind::Subscribe(c.subscribe()?);
            r.sql = "SELECT 1".into();
            r.contextual = true;
            return Ok(r);
        }
        Some("BEGIN") | Some("START") => {
            // BEGIN [TRANSACTION] [READ WRITE | READ ONLY] [WITH (SYSTEM_TIME = t)]
            let mut k = c.pos;
            let mut rest: Vec<Token> = Vec::new();
            while k < toks.len() {
                if word(&toks[k]).as_deref() == Some("WITH") {
                    let mut c2 = Cursor {
                        toks,
                        pos: k + 1,
                        params,
                        contextual: true,
                    };
                    c2.skip_ws();
                    if !matches!(c2.next(), Some(Token::LParen)) {
                        return Err(QueryError::Syntax("expected ( after BEGIN … WITH".into()));
                    }
                    c2.expect_word("SYSTEM_TIME")?;
                    if !matches!(c2.next(), Some(Token::Eq)) {
                        return Err(QueryError::Syntax("expected = after SYSTEM_TIME".into()));
                    }
                    let t = c2.time()?;
                    if !matches!(c2.next(), Some(Token::RParen)) {
                        return Err(QueryError::Syntax(
                            "expected ) after the system time".into(),
                        ));
                    }
                    r.kind = StatementKind::BeginAt(t);
                    k = c2.pos;
                    continue;
                }
                rest.push(toks[k].clone());
                k += 1;
            }
            r.sql = rest.iter().map(token_sql).collect();
            r.contextual = c.contextual;
            return Ok(r);
        }
        _ => {}
    }
    let is_dml = matches!(first.as_deref(), Some("UPDATE") | Some("DELETE"));
    let mut n = 0;
    while c.pos < toks.len() {
        let t = &toks[c.pos];
        let w = word(t);
        if w.as_deref() == Some("FOR") {
            let next = c.peek_word_at(c.pos + 1, 0);
            let next2 = c.peek_word_at(c.pos + 1, 1);
            // UPDATE/DELETE … FOR PORTION OF VALID_TIME FROM a TO b | FOR ALL VALID_TIME
            // Only at the statement's own level: `FOR ALL VALID_TIME` inside a
            // subquery is that table reference's clause, not the portion.
            let depth: i64 = toks[..c.pos]
                .iter()
                .map(|t| match t {
                    Token::LParen => 1,
                    Token::RParen => -1,
                    _ => 0,
                })
                .sum();
            if is_dml
                && depth == 0
                && (next.as_deref() == Some("PORTION")
                    || (next.as_deref() == Some("ALL") && next2.as_deref() == Some("VALID_TIME")))
            {
                c.pos += 1;
                if c.peek_word().as_deref() == Some("PORTION") {
                    c.pos += 1;
                    c.expect_word("OF")?;
                    c.expect_word("VALID_TIME")?;
                    let sel = c.selector()?;
                    if matches!(sel, TimeSelector::AsOf(_)) {
                        return Err(QueryError::Syntax(
                            "FOR PORTION OF VALID_TIME wants FROM … TO … or ALL".into(),
                        ));
                    }
                    r.kind = StatementKind::Portion(Some(sel));
                } else {
                    c.pos += 2; // ALL VALID_TIME
                    c.skip_ws();
                    r.kind = StatementKind::Portion(Some(TimeSelector::All));
                }
                out.push(Token::Whitespace(Whitespace::Space));
                continue;
            }
            let next3 = c.peek_word_at(c.pos + 1, 2);
            if let Some(hint) = axis_typo(next.as_deref(), next2.as_deref(), next3.as_deref()) {
                return Err(QueryError::Syntax(hint));
            }
            let temporal = matches!(next.as_deref(), Some("SYSTEM_TIME") | Some("VALID_TIME"))
                || (next.as_deref() == Some("ALL")
                    && matches!(next2.as_deref(), Some("SYSTEM_TIME") | Some("VALID_TIME")));
            if temporal {
                // The table name: trailing Word (. Word)* already in `out`.
                while out.last().is_some_and(is_ws) {
                    out.pop();
                }
                let mut parts: Vec<String> = Vec::new();
                loop {
                    match out.last() {
                        Some(Token::Word(wd)) => {
                            parts.push(if wd.quote_style.is_some() {
                                wd.value.clone()
                            } else {
                                crate::ident::fold(&wd.value)
                            });
                            out.pop();
                            if matches!(out.last(), Some(Token::Period)) {
                                out.pop();
                                continue;
                            }
                        }
                        _ => {}
                    }
                    break;
                }
                if parts.is_empty() {
                    return Err(QueryError::Syntax(
                        "FOR SYSTEM_TIME / FOR VALID_TIME must follow a table name".into(),
                    ));
                }
                parts.reverse();
                let table = parts.last().unwrap().clone();
                let (mut sys, mut val) = (None, None);
                loop {
                    let (is_sys, sel) = c.axis_clause()?;
                    let slot = if is_sys { &mut sys } else { &mut val };
                    if slot.is_some() {
                        return Err(QueryError::Syntax(format!(
                            "{} given twice for table `{table}`",
                            if is_sys {
                                "FOR SYSTEM_TIME"
                            } else {
                                "FOR VALID_TIME"
                            }
                        )));
                    }
                    *slot = Some(sel);
                    let nx = c.peek_word();
                    let nx2 = c.peek_word_at(c.pos + 1, 0);
                    if nx.as_deref() == Some("FOR")
                        && matches!(
                            nx2.as_deref(),
                            Some("SYSTEM_TIME") | Some("VALID_TIME") | Some("ALL")
                        )
                    {
                        continue;
                    }
                    break;
                }
                let synthetic = format!("__strata_t{stmt_no}_{n}");
                n += 1;
                r.overrides
                    .push((synthetic.clone(), table.clone(), sys, val));
                out.push(Token::Whitespace(Whitespace::Space));
                out.push(Token::Word(Word {
                    value: synthetic,
                    quote_style: None,
                    keyword: Keyword::NoKeyword,
                }));
                // Keep the table's own name as its alias unless one follows.
                let nx = c.peek_word();
                let alias_follows = match c.toks.get(c.pos) {
                    Some(Token::Word(wd)) if wd.quote_style.is_some() => true,
                    Some(Token::Word(_)) => nx.as_deref().is_some_and(|w| {
                        w == "AS" || !CLAUSE_END.contains(&w) && !is_keyword_like(w)
                    }),
                    _ => false,
                };
                if !alias_follows {
                    out.push(Token::Whitespace(Whitespace::Space));
                    out.push(Token::make_keyword("AS"));
                    out.push(Token::Whitespace(Whitespace::Space));
                    out.push(Token::Word(Word {
                        value: table,
                        quote_style: Some('"'),
                        keyword: Keyword::NoKeyword,
                    }));
                }
                out.push(Token::Whitespace(Whitespace::Space));
                continue;
            }
        }
        out.push(t.clone());
        c.pos += 1;
    }
    if is_dml && r.kind == StatementKind::Plain {
        r.kind = StatementKind::Portion(None);
    }
    let out = crate::period::rewrite_tokens(out)?;
    r.sql = out.iter().map(token_sql).collect();
    r.contextual = c.contextual;
    Ok(r)
}

/// `FOR SYSTEM TIME`, `FOR VALIDTIME`, `FOR ALL SYSTEM TIME`, `FOR
/// APPLICATION_TIME`, …: what was probably meant, if the words after FOR
/// look like a misspelt time axis.
fn axis_typo(w1: Option<&str>, w2: Option<&str>, w3: Option<&str>) -> Option<String> {
    let (all, a, b) = match w1 {
        Some("ALL") => ("ALL ", w2?, w3),
        Some(w) => ("", w, w2),
        None => return None,
    };
    let meant = match (a, b) {
        ("SYSTEM_TIME" | "VALID_TIME", _) => return None,
        ("SYSTEM" | "VALID", Some("TIME")) => {
            let axis = format!("{a}_TIME");
            return Some(format!(
                "`FOR {all}{a} TIME` is not a temporal clause: did you mean `FOR {all}{axis}` (with an underscore)?"
            ));
        }
        ("TRANSACTION_TIME" | "SYSTEM_VERSIONING", _) => "SYSTEM_TIME",
        ("APPLICATION_TIME" | "BUSINESS_TIME" | "VALID_PERIOD", _) => "VALID_TIME",
        (w, _) => {
            let axes = ["SYSTEM_TIME".to_string(), "VALID_TIME".to_string()];
            let close = w.len() >= 6
                && (w.contains("TIME") || w.starts_with("SYS") || w.starts_with("VALID"));
            if !close {
                return None;
            }
            match crate::error::closest(w, &axes) {
                Some("SYSTEM_TIME") => "SYSTEM_TIME",
                Some(_) => "VALID_TIME",
                None => return None,
            }
        }
    };
    Some(format!(
        "`FOR {all}{a}` is not a temporal clause: did you mean `FOR {all}{meant}`?"
    ))
}

fn is_keyword_like(w: &str) -> bool {
    matches!(
        w,
        "RETURNING" | "VALUES" | "SELECT" | "WITH" | "AND" | "OR" | "NOT" | "IN" | "IS" | "LATERAL"
    )
}

/// The coordinate for a table reference given the statement's defaults.
pub fn coordinate(
    default: Coordinate,
    sys: Option<TimeSelector>,
    val: Option<TimeSelector>,
) -> Coordinate {
    Coordinate {
        system: sys.unwrap_or(default.system),
        valid: val.unwrap_or(default.valid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_table_clauses() {
        let r = rewrite(
            "SELECT * FROM accounts FOR SYSTEM_TIME AS OF TIMESTAMP '2021-05-01Z' WHERE _id = 1",
            &[],
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert!(
            r[0].sql.contains("__strata_t0_0 AS \"accounts\""),
            "{}",
            r[0].sql
        );
        assert_eq!(
            r[0].overrides[0].2,
            Some(TimeSelector::AsOf(
                parse_time_literal("2021-05-01").unwrap()
            ))
        );
        let r = rewrite("SELECT a.x FROM accounts FOR ALL SYSTEM_TIME FOR VALID_TIME BETWEEN DATE '2021-01-01' AND DATE '2021-02-01' AS a", &[]).unwrap();
        assert!(r[0].sql.contains("__strata_t0_0 AS a"), "{}", r[0].sql);
        assert_eq!(r[0].overrides[0].2, Some(TimeSelector::All));
    }

    #[test]
    fn setting_and_dml() {
        let r = rewrite("SETTING DEFAULT VALID_TIME AS OF DATE '2021-04-01' SELECT 1; UPDATE t FOR PORTION OF VALID_TIME FROM '2021-01-01' TO '2021-02-01' SET a = 1 WHERE _id = 2", &[]).unwrap();
        assert!(r[0].default_valid.is_some());
        assert!(matches!(
            r[1].kind,
            StatementKind::Portion(Some(TimeSelector::Range { .. }))
        ));
        let r = rewrite(
            "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2020-01-01Z')",
            &[],
        )
        .unwrap();
        assert_eq!(
            r[0].kind,
            StatementKind::BeginAt(parse_time_literal("2020-01-01").unwrap())
        );
        assert!(rewrite("SELECT * FROM t FOR SYSTEM_TIME AS OF banana", &[]).is_err());
    }

    #[test]
    fn subscribe_clauses() {
        let sub = |sql: &str, params: &[ScalarValue]| match rewrite(sql, params) {
            Ok(mut v) => match v.remove(0).kind {
                StatementKind::Subscribe(s) => Ok(s),
                other => panic!("{sql}: {other:?}"),
            },
            Err(e) => Err(e.to_string()),
        };
        let s = sub("subscribe to Orders", &[]).unwrap();
        assert_eq!(
            (s.table.as_str(), s.start, s.snapshot),
            ("orders", SubscribeStart::Beginning, false)
        );
        let s = sub("SUBSCRIBE public.\"Orders\" WITH SNAPSHOT;", &[]).unwrap();
        assert_eq!((s.table.as_str(), s.snapshot), ("Orders", true));
        let s = sub("SUBSCRIBE TO t AFTER $1", &[ScalarValue::Int64(Some(42))]).unwrap();
        assert_eq!(s.start, SubscribeStart::After(42));
        let s = sub(
            "SUBSCRIBE TO t FROM SYSTEM_TIME '2020-01-01' WITH SNAPSHOT",
            &[],
        )
        .unwrap();
        assert_eq!(s.start, SubscribeStart::SystemTime(1_577_836_800_000_000));
        assert!(s.snapshot);
        for bad in [
            "SUBSCRIBE",
            "SUBSCRIBE TO t AFTER x",
            "SUBSCRIBE TO t AFTER 1 FROM SYSTEM_TIME '2020-01-01'",
            "SUBSCRIBE TO t AFTER 1 WITH SNAPSHOT",
            "SUBSCRIBE TO t WHERE x = 1",
            "SUBSCRIBE TO t FROM SYSTEM TIME '2020-01-01'",
        ] {
            assert!(sub(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn literal_times_are_context_free_parameters_and_the_clock_are_not() {
        let free =
            |sql: &str, params: &[ScalarValue]| rewrite(sql, params).unwrap()[0].is_context_free();
        assert!(free("SELECT * FROM t WHERE _id = $1", &[]));
        assert!(free(
            "SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2021-05-01Z' FOR VALID_TIME AS OF '2021-05-01' WHERE _id = $1",
            &[]
        ));
        assert!(free(
            "SELECT * FROM t FOR ALL SYSTEM_TIME FOR VALID_TIME FROM DATE '2020-01-01' TO NULL",
            &[]
        ));
        assert!(free(
            "SETTING DEFAULT SYSTEM_TIME AS OF DATE '2021-01-01' SELECT * FROM t",
            &[]
        ));
        let p = [ScalarValue::Utf8(Some("2021-05-01".into()))];
        assert!(!free(
            "SELECT * FROM t FOR SYSTEM_TIME AS OF $1 WHERE _id = 1",
            &p
        ));
        assert!(!free(
            "SELECT * FROM t FOR VALID_TIME AS OF NOW() WHERE _id = 1",
            &[]
        ));
        assert!(!free(
            "SELECT * FROM t FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP",
            &[]
        ));
        assert!(!free(
            "SELECT * FROM t FOR VALID_TIME FROM CURRENT_DATE TO NULL",
            &[]
        ));
        assert!(!free(
            "SETTING DEFAULT VALID_TIME AS OF NOW() SELECT * FROM t",
            &[]
        ));
        assert!(!free("UPDATE t SET a = 1 WHERE _id = 1", &[]));
    }
}

/// Print a token back as SQL. sqlparser's `Display` leaves quotes inside
/// string literals and quoted identifiers unescaped (`'it's'`), which would
/// not parse again.
fn token_sql(t: &Token) -> String {
    match t {
        Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        Token::NationalStringLiteral(s) => format!("N'{}'", s.replace('\'', "''")),
        Token::HexStringLiteral(s) => format!("X'{s}'"),
        Token::EscapedStringLiteral(s) => {
            format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
        }
        Token::Word(w) if w.quote_style == Some('"') => {
            format!("\"{}\"", w.value.replace('"', "\"\""))
        }
        other => other.to_string(),
    }
}
