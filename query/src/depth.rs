//! How deep a statement may nest. Parsing, planning, optimizing and
//! evaluating an expression recurse once per level, so a statement like
//! `SELECT 1+1+…` with a hundred thousand terms would overflow the stack of
//! the thread running it and abort the whole process. Statements deeper
//! than [`MAX_EXPR_DEPTH`] are refused with SQLSTATE 54001 before anything
//! is planned, and the threads that plan and run statements get
//! [`THREAD_STACK_BYTES`] of stack, enough for that depth.

use std::any::TypeId;
use std::cell::Cell;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{QueryError, Result};

/// The deepest expression (operators, function calls, subqueries, array
/// constructors nested in one another) a statement may contain.
pub const MAX_EXPR_DEPTH: usize = 1_000;

/// Stack size for threads that plan and execute statements: a statement of
/// [`MAX_EXPR_DEPTH`] needs a few MiB in a debug build; only the pages
/// touched are committed.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// sqlparser's own limit on nested parentheses, subqueries and the like.
pub const PARSER_NESTING_LIMIT: usize = 50;

pub(crate) fn too_complex(detail: &str) -> QueryError {
    QueryError::TooComplex(format!(
        "statement too complex: {detail}; split it up (an IN list or a join against VALUES \
         instead of a long chain of OR, fewer nested expressions)"
    ))
}

/// The error for a statement past the parser's own nesting limit.
pub(crate) fn too_nested() -> QueryError {
    too_complex(&format!(
        "parentheses, subqueries or array constructors nest deeper than {PARSER_NESTING_LIMIT} levels"
    ))
}

/// The error for a statement whose parse ran out of its work budget.
pub(crate) fn too_costly() -> QueryError {
    too_complex(&format!(
        "parsing it would take too long (parentheses, subqueries or array constructors nested \
         close to the limit of {PARSER_NESTING_LIMIT} levels)"
    ))
}

fn too_deep() -> QueryError {
    too_complex(&format!(
        "an expression nests deeper than {MAX_EXPR_DEPTH} levels"
    ))
}

/// Before parsing: an upper bound on the depth the parser would build,
/// from the tokens alone. A chain of `n` binary operators between two
/// commas becomes a tree `n` deep, and dropping or walking such a tree
/// recurses, so a statement far beyond the limit must be refused before
/// its tree exists.
///
/// Brackets nested deeper than the parser's own limit are refused here
/// too, before the parser runs into that limit: where it does, it retries
/// other readings of every enclosing level (`ARRAY[…]` as a column named
/// `array` with a subscript, a keyword as a function name), each of which
/// runs into the limit again, which takes time exponential in the depth.
pub(crate) fn check_tokens(tokens: &[TokenWithSpan]) -> Result<()> {
    // Operators since the last comma, per open bracket.
    let mut chains: Vec<usize> = vec![0];
    let mut deepest = 0;
    for t in tokens {
        match &t.token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                chains.push(0);
                deepest = deepest.max(chains.len() - 1);
                if deepest > MAX_EXPR_DEPTH {
                    return Err(too_deep());
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if chains.len() > 1 {
                    chains.pop();
                }
            }
            Token::Comma | Token::SemiColon => {
                if let Some(c) = chains.last_mut() {
                    *c = 0;
                }
            }
            tok if is_operator(tok) => {
                if let Some(c) = chains.last_mut() {
                    *c += 1;
                }
                if chains.len() + chains.last().copied().unwrap_or(0) > 4 * MAX_EXPR_DEPTH {
                    return Err(too_deep());
                }
            }
            _ => {}
        }
        if chains.len() > 4 * MAX_EXPR_DEPTH {
            return Err(too_deep());
        }
    }
    if deepest > PARSER_NESTING_LIMIT {
        return Err(too_nested());
    }
    Ok(())
}

fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::CASE
        ),
        Token::DoubleEq
        | Token::Eq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::DuckIntDiv
        | Token::Mod
        | Token::StringConcat
        | Token::DoubleColon
        | Token::Ampersand
        | Token::Pipe
        | Token::Caret
        | Token::Sharp
        | Token::Tilde
        | Token::TildeAsterisk
        | Token::ExclamationMarkTilde
        | Token::ExclamationMarkTildeAsterisk
        | Token::DoubleTilde
        | Token::DoubleTildeAsterisk
        | Token::ExclamationMarkDoubleTilde
        | Token::ExclamationMarkDoubleTildeAsterisk
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::Overlap
        | Token::ExclamationMark
        | Token::DoubleExclamationMark
        | Token::AtSign
        | Token::CaretAt
        | Token::PGSquareRoot
        | Token::PGCubeRoot
        | Token::Arrow
        | Token::LongArrow
        | Token::HashArrow
        | Token::AtDashAt
        | Token::Colon => true,
        _ => false,
    }
}

/// The dialect statements are parsed with: PostgreSQL's, with a bound on
/// the parser's work. The parser backtracks (a `maybe_parse` of one
/// reading, then another), which is cheap on real statements but can be
/// exponential in the nesting depth when an inner level fails, most of all
/// when it fails on the parser's recursion limit (see `check_tokens`).
/// Every expression the parser starts asks the dialect first
/// (`Dialect::parse_prefix`); past [`ParseBudget::for_tokens`] of them each
/// further one fails at once with `RecursionLimitExceeded`, which every
/// retry passes on, so the parse ends quickly and `exhausted` tells why.
///
/// Everything else is PostgreSQL's: `dialect()` is its type id, so the
/// parser's `dialect_of!(… is PostgreSqlDialect)` checks hold, and every
/// method `PostgreSqlDialect` overrides is forwarded to it.
#[derive(Debug)]
pub(crate) struct ParseBudget {
    pg: PostgreSqlDialect,
    left: Cell<usize>,
    exhausted: Cell<bool>,
}

/// Expressions the parser may start per token of the statement (plus a
/// fixed allowance): real statements need a few per token.
const PREFIXES_PER_TOKEN: usize = 64;
const PREFIXES_ALLOWANCE: usize = 100_000;

impl ParseBudget {
    pub(crate) fn for_tokens(tokens: usize) -> ParseBudget {
        ParseBudget {
            pg: PostgreSqlDialect {},
            left: Cell::new(
                PREFIXES_ALLOWANCE.saturating_add(tokens.saturating_mul(PREFIXES_PER_TOKEN)),
            ),
            exhausted: Cell::new(false),
        }
    }

    /// Whether the parse ran out of its budget (its error is then this one's).
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.get()
    }
}

macro_rules! forward_bool {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool {
            self.pg.$name()
        })*
    };
}

impl Dialect for ParseBudget {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<std::result::Result<Expr, ParserError>> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                self.pg.parse_prefix(parser)
            }
            None => {
                self.exhausted.set(true);
                Some(Err(ParserError::RecursionLimitExceeded))
            }
        }
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.pg.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.pg.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.pg.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.pg.is_identifier_part(ch)
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.pg.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.pg.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<std::result::Result<u8, ParserError>> {
        self.pg.get_next_precedence(parser)
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.pg.prec_value(prec)
    }

    forward_bool!(
        supports_unicode_string_literal,
        supports_filter_during_aggregation,
        supports_group_by_expr,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_listen_notify,
        supports_factorial_operator,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_colon_operator,
        supports_named_fn_args_with_expr_name,
        supports_empty_projections,
        supports_nested_comments,
        supports_string_escape_constant,
        supports_numeric_literal_underscores,
        supports_array_typedef_with_brackets,
        supports_geometric_types,
        supports_set_names,
        supports_alter_column_type_using,
        supports_notnull_operator,
        supports_interval_options,
        supports_insert_table_alias,
        supports_create_table_like_parenthesized,
        supports_select_wildcard_with_alias,
        supports_comma_separated_trim,
        supports_xml_expressions,
        supports_comment_optimizer_hint,
    );
}

/// After parsing: the real depth of every expression and subquery.
pub(crate) fn check_statement(stmt: &Statement) -> Result<()> {
    let mut d = Depth {
        now: 0,
        queries: Vec::new(),
    };
    match stmt.visit(&mut d) {
        ControlFlow::Break(()) => Err(too_deep()),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Depth {
    now: usize,
    /// For each query being visited: whether it counted as a level.
    queries: Vec<bool>,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.now += 1;
        if self.now > MAX_EXPR_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// A column, a literal or a placeholder: nothing nests below it, so it is
/// no level of its own (a chain of 1,000 ORed comparisons is 1,000 levels
/// of operators, as docs/clients.md counts them).
fn is_leaf(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_)
    )
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if is_leaf(e) {
            return ControlFlow::Continue(());
        }
        self.enter()
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if !is_leaf(e) {
            self.now -= 1;
        }
        ControlFlow::Continue(())
    }

    /// A subquery is a level; the statement's own query (one met outside
    /// any expression) is not.
    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        let counts = self.now > 0;
        self.queries.push(counts);
        if counts {
            self.enter()
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        if self.queries.pop() == Some(true) {
            self.now -= 1;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::error::QueryError;

    fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("SELECT {}{inner}{}", open.repeat(n), close.repeat(n))
    }

    /// Nesting just under, at and past the parser's limit: an answer or a
    /// 54001 error, quickly (the parser's retries were exponential here).
    #[test]
    fn nesting_near_the_parser_limit_is_answered_quickly() {
        for n in 40..=PARSER_NESTING_LIMIT + 2 {
            for (open, inner, close) in [
                ("ARRAY[", "1", "]"),
                ("CAST(", "1", " AS INT)"),
                ("(", "1", ")"),
                ("ARRAY[NOT ", "true", "]"),
                ("(SELECT ", "1", ")"),
                ("abs(", "1", ")"),
            ] {
                let sql = nested(open, inner, close, n);
                let started = Instant::now();
                let r = crate::sql::parse(&sql);
                let took = started.elapsed();
                assert!(
                    took < Duration::from_secs(5),
                    "{open}…{close} × {n}: {took:?}"
                );
                if let Err(e) = r {
                    assert!(matches!(e, QueryError::TooComplex(_)), "{open} × {n}: {e}");
                }
            }
        }
    }

    #[test]
    fn deep_brackets_are_refused_from_the_tokens() {
        let e = crate::sql::parse(&nested("ARRAY[", "1", "]", 3_000)).unwrap_err();
        assert!(e.to_string().contains("deeper than 1000 levels"), "{e}");
        let e = crate::sql::parse(&nested("ARRAY[", "1", "]", 999)).unwrap_err();
        assert!(e.to_string().contains("deeper than 50 levels"), "{e}");
        // Unbalanced: the opening brackets count.
        let e = crate::sql::parse(&format!("SELECT {}1", "(".repeat(60))).unwrap_err();
        assert!(e.to_string().contains("deeper than 50 levels"), "{e}");
        assert!(crate::sql::parse(&nested("ARRAY[", "1", "]", 30)).is_ok());
    }

    /// As docs/clients.md counts: one level per operator, leaves none.
    #[test]
    fn a_thousand_ored_comparisons_or_added_terms_are_within_the_limit() {
        let ors = (0..1000)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        crate::sql::parse(&format!("SELECT 1 FROM t WHERE {ors}")).unwrap();
        crate::sql::parse(&format!("SELECT {}", vec!["1"; 1000].join("+"))).unwrap();
        let ors = (0..1002)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let e = crate::sql::parse(&format!("SELECT 1 FROM t WHERE {ors}")).unwrap_err();
        assert!(e.to_string().contains("deeper than 1000 levels"), "{e}");
    }

    /// The budgeted dialect parses like PostgreSQL's.
    #[test]
    fn the_budgeted_dialect_parses_like_postgres() {
        use datafusion::sql::sqlparser::tokenizer::Tokenizer;
        for sql in [
            "SELECT a::int, b -> 'k', c ->> 'k', d #> '{a}', e @> f, 'x' || 'y' FROM t WHERE g ~ 'h' AND i !~* 'j'",
            "SELECT count(*) FILTER (WHERE a > 1), 5 !, 1 << 2, 3 >> 1, 2 ^ 3, |/ 4 FROM t GROUP BY ROLLUP (a)",
            "SELECT ARRAY[1, 2][1], INT '1', INTERVAL '1 day', E'a\\nb', U&'\\0041', x COLLATE \"C\" FROM t",
            "SELECT EXTRACT(EPOCH FROM now()), EXTRACT('year' FROM d), trim(both 'x' from 'xax'), substring('abc' from 1 for 2)",
            "SELECT \"Quoted\", $1, 1_000, a IS NOT DISTINCT FROM b, c NOTNULL, d ISNULL FROM t AS u(a)",
            "SELECT * FROM t1 JOIN t2 ON t1.a = t2.a WHERE t1.b IN (SELECT b FROM t3) ORDER BY 1 LIMIT 2 OFFSET 1",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
            "INSERT INTO t AS x (a, b) VALUES (1, 'a') ON CONFLICT (a) DO UPDATE SET b = excluded.b RETURNING *",
            "CREATE TABLE t (a INT[], b point, c TEXT) ",
            "SELECT CASE WHEN a THEN 1 ELSE 2 END, a AT TIME ZONE 'UTC', f(a => 1), g(b := 2) FROM t",
            "SET TIME ZONE 'UTC'",
            "LISTEN chan",
            "SELECT /* a /* nested */ comment */ 1",
            "EXPLAIN (ANALYZE, VERBOSE) SELECT 1",
        ] {
            let pg = PostgreSqlDialect {};
            let tokens = Tokenizer::new(&pg, sql).tokenize_with_location().unwrap();
            let budget = ParseBudget::for_tokens(tokens.len());
            let a = Parser::new(&pg).try_with_sql(sql).and_then(|mut p| p.parse_statements());
            let b = Parser::new(&budget)
                .with_tokens_with_locations(tokens)
                .parse_statements();
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{sql}");
            assert!(!budget.exhausted());
        }
    }
}
