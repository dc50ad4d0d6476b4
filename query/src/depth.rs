//! How deep a statement may nest. Parsing, planning, optimizing and
//! evaluating an expression recurse once per level, so a statement like
//! `SELECT 1+1+…` with a hundred thousand terms would overflow the stack of
//! the thread running it and abort the whole process. Statements deeper
//! than [`MAX_EXPR_DEPTH`] are refused with SQLSTATE 54001 before anything
//! is planned, and the threads that plan and run statements get
//! [`THREAD_STACK_BYTES`] of stack, enough for that depth.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::keywords::Keyword;
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
pub(crate) fn check_tokens(tokens: &[TokenWithSpan]) -> Result<()> {
    // Operators since the last comma, per open bracket.
    let mut chains: Vec<usize> = vec![0];
    for t in tokens {
        match &t.token {
            Token::LParen | Token::LBracket | Token::LBrace => chains.push(0),
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

/// After parsing: the real depth of every expression and subquery.
pub(crate) fn check_statement(stmt: &Statement) -> Result<()> {
    let mut d = Depth { now: 0 };
    match stmt.visit(&mut d) {
        ControlFlow::Break(()) => Err(too_deep()),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Depth {
    now: usize,
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

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.now -= 1;
        ControlFlow::Continue(())
    }
}
