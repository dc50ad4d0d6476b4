//! Periods: `PERIOD(start, end)`, the `_valid_time` / `_system_time` columns,
//! the SQL:2011 period predicates (`OVERLAPS`, `CONTAINS`, `EQUALS`,
//! `PRECEDES`, `SUCCEEDS`, `IMMEDIATELY PRECEDES`, `IMMEDIATELY SUCCEEDS`) and
//! `LOWER(p)` / `UPPER(p)`.
//!
//! A period is the closed-open interval `[lower, upper)`, an Arrow struct
//! `{lower: Timestamp(µs, UTC), upper: Timestamp(µs, UTC)}` in which a NULL
//! bound is open: NULL lower = −∞, NULL upper = +∞.
//!
//! Two parts:
//! - [`rewrite_tokens`], a pass over one statement's tokens (called by the
//!   temporal rewrite in `temporal.rs`): `t._valid_time` becomes
//!   `period(t._valid_from, t._valid_to)` (likewise `_system_time`), and the
//!   infix predicates `X OVERLAPS Y` become calls `strata_overlaps(X, Y)`,
//!   which sqlparser can parse;
//! - [`register`], the scalar functions behind them: `period`, the
//!   `strata_*` predicates, and `lower` / `upper`, which take a period (its
//!   bound) or a string (the usual case conversion).
//!
//! A point in time where a period is expected (`p CONTAINS TIMESTAMP '…'`)
//! stands for the period `[t, t + 1µs)`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanBuilder, StructArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::tokenizer::{Token, Whitespace};

use crate::error::Result;

fn ts_type() -> DataType {
    strata_storage::schema::timestamp_type()
}

/// The Arrow type of a period value.
pub fn period_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("lower", ts_type(), true),
        Field::new("upper", ts_type(), true),
    ]))
}

fn is_period(t: &DataType) -> bool {
    match t {
        DataType::Struct(f) => f.len() == 2 && f[0].name() == "lower" && f[1].name() == "upper",
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Semantics

/// A period as `[lower, upper)` with open bounds as `i64::MIN` / `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub lower: i64,
    pub upper: i64,
}

/// The seven predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pred {
    Overlaps,
    Contains,
    Equals,
    Precedes,
    Succeeds,
    ImmediatelyPrecedes,
    ImmediatelySucceeds,
}

impl Pred {
    const ALL: [Pred; 7] = [
        Pred::Overlaps,
        Pred::Contains,
        Pred::Equals,
        Pred::Precedes,
        Pred::Succeeds,
        Pred::ImmediatelyPrecedes,
        Pred::ImmediatelySucceeds,
    ];

    fn function(self) -> &'static str {
        match self {
            Pred::Overlaps => "strata_overlaps",
            Pred::Contains => "strata_contains",
            Pred::Equals => "strata_equals",
            Pred::Precedes => "strata_precedes",
            Pred::Succeeds => "strata_succeeds",
            Pred::ImmediatelyPrecedes => "strata_immediately_precedes",
            Pred::ImmediatelySucceeds => "strata_immediately_succeeds",
        }
    }

    /// SQL:2011 semantics on closed-open periods.
    pub fn eval(self, p: Span, q: Span) -> bool {
        match self {
            Pred::Overlaps => p.lower < q.upper && q.lower < p.upper,
            Pred::Contains => p.lower <= q.lower && q.upper <= p.upper,
            Pred::Equals => p == q,
            Pred::Precedes => p.upper <= q.lower,
            Pred::Succeeds => p.lower >= q.upper,
            // An open bound never meets anything.
            Pred::ImmediatelyPrecedes => p.upper != i64::MAX && p.upper == q.lower,
            Pred::ImmediatelySucceeds => p.lower != i64::MIN && p.lower == q.upper,
        }
    }
}

fn fmt_bound(v: i64) -> String {
    strata_storage::time::fmt_micros(v)
}

/// Each row of a period-or-point argument as a span (`None` = NULL).
fn spans(v: &ArrayRef) -> DfResult<Vec<Option<Span>>> {
    if is_period(v.data_type()) {
        let s = v
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("period is a struct");
        let lo = cast(s.column(0), &ts_type())?;
        let hi = cast(s.column(1), &ts_type())?;
        let lo = lo
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to timestamp");
        let hi = hi
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to timestamp");
        return Ok((0..s.len())
            .map(|i| {
                s.is_valid(i).then(|| Span {
                    lower: if lo.is_valid(i) {
                        lo.value(i)
                    } else {
                        i64::MIN
                    },
                    upper: if hi.is_valid(i) {
                        hi.value(i)
                    } else {
                        i64::MAX
                    },
                })
            })
            .collect());
    }
    let t = points(v)?;
    Ok((0..t.len())
        .map(|i| {
            t.is_valid(i).then(|| Span {
                lower: t.value(i),
                upper: t.value(i).saturating_add(1),
            })
        })
        .collect())
}

/// A time-valued argument as microseconds since the epoch, UTC.
fn points(v: &ArrayRef) -> DfResult<TimestampMicrosecondArray> {
    let ok = matches!(
        v.data_type(),
        DataType::Null
            | DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Utf8
            | DataType::Utf8View
            | DataType::LargeUtf8
    );
    if !ok {
        return plan_err!(
            "expected a period or a timestamp, got a value of type {}",
            v.data_type()
        );
    }
    let c = cast(v, &ts_type())?;
    Ok(c.as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("cast to timestamp")
        .clone())
}

fn to_arrays(args: &[ColumnarValue], n: usize) -> DfResult<(Vec<ArrayRef>, bool)> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let n = if scalar { 1 } else { n };
    let arrays = args
        .iter()
        .map(|a| a.to_array(n))
        .collect::<DfResult<Vec<_>>>()?;
    Ok((arrays, scalar))
}

fn finish(a: ArrayRef, scalar: bool) -> DfResult<ColumnarValue> {
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?))
    } else {
        Ok(ColumnarValue::Array(a))
    }
}

// ---------------------------------------------------------------------------
// The functions

/// `period(start, end)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PeriodFn {
    signature: Signature,
}

impl ScalarUDFImpl for PeriodFn {
    fn name(&self) -> &str {
        "period"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "PERIOD takes two arguments, the start and the end (NULL = open), got {}",
                arg_types.len()
            );
        }
        for t in arg_types {
            if !matches!(
                t,
                DataType::Null
                    | DataType::Timestamp(..)
                    | DataType::Date32
                    | DataType::Date64
                    | DataType::Utf8
                    | DataType::Utf8View
                    | DataType::LargeUtf8
            ) {
                return plan_err!(
                    "PERIOD(start, end) wants timestamps or dates, got a value of type {t}"
                );
            }
        }
        Ok(arg_types.to_vec())
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(period_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, scalar) = to_arrays(&args.args, args.number_rows)?;
        let lo = points(&arrays[0])?;
        let hi = points(&arrays[1])?;
        for i in 0..lo.len() {
            if lo.is_valid(i) && hi.is_valid(i) && lo.value(i) >= hi.value(i) {
                return exec_err!(
                    "PERIOD(start, end) needs start < end, got start {} and end {}",
                    fmt_bound(lo.value(i)),
                    fmt_bound(hi.value(i))
                );
            }
        }
        let fields = match period_type() {
            DataType::Struct(f) => f,
            _ => unreachable!(),
        };
        let s = StructArray::try_new(
            fields,
            vec![
                Arc::new(lo.with_timezone("UTC")) as ArrayRef,
                Arc::new(hi.with_timezone("UTC")) as ArrayRef,
            ],
            None,
        )?;
        finish(Arc::new(s), scalar)
    }
}

/// `strata_overlaps(p, q)` and friends.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PredFn {
    pred: Pred,
    signature: Signature,
}

impl PredFn {
    fn sql_name(&self) -> &'static str {
        match self.pred {
            Pred::Overlaps => "OVERLAPS",
            Pred::Contains => "CONTAINS",
            Pred::Equals => "EQUALS",
            Pred::Precedes => "PRECEDES",
            Pred::Succeeds => "SUCCEEDS",
            Pred::ImmediatelyPrecedes => "IMMEDIATELY PRECEDES",
            Pred::ImmediatelySucceeds => "IMMEDIATELY SUCCEEDS",
        }
    }
}

impl ScalarUDFImpl for PredFn {
    fn name(&self) -> &str {
        self.pred.function()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("{} compares two periods", self.sql_name());
        }
        for t in arg_types {
            let ok = is_period(t)
                || matches!(
                    t,
                    DataType::Null
                        | DataType::Timestamp(..)
                        | DataType::Date32
                        | DataType::Date64
                        | DataType::Utf8
                        | DataType::Utf8View
                        | DataType::LargeUtf8
                );
            if !ok {
                return plan_err!(
                    "{} wants periods (PERIOD(a, b), _valid_time, _system_time) or timestamps, got a value of type {t}",
                    self.sql_name()
                );
            }
        }
        Ok(arg_types.to_vec())
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, scalar) = to_arrays(&args.args, args.number_rows)?;
        let p = spans(&arrays[0])?;
        let q = spans(&arrays[1])?;
        let mut b = BooleanBuilder::with_capacity(p.len());
        for (p, q) in p.iter().zip(&q) {
            match (p, q) {
                (Some(p), Some(q)) => b.append_value(self.pred.eval(*p, *q)),
                _ => b.append_null(),
            }
        }
        finish(Arc::new(b.finish()), scalar)
    }
}

/// `lower(x)` / `upper(x)`: a period's bound (NULL when open), or the
/// built-in case conversion of a string.
#[derive(Debug)]
struct BoundFn {
    upper: bool,
    signature: Signature,
    string_fn: Arc<ScalarUDF>,
}

impl PartialEq for BoundFn {
    fn eq(&self, o: &Self) -> bool {
        self.upper == o.upper
    }
}
impl Eq for BoundFn {}
impl std::hash::Hash for BoundFn {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.upper.hash(h)
    }
}

impl ScalarUDFImpl for BoundFn {
    fn name(&self) -> &str {
        if self.upper {
            "upper"
        } else {
            "lower"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        if arg_types.len() == 1 && is_period(&arg_types[0]) {
            return Ok(arg_types.to_vec());
        }
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .map(|t| Arc::new(Field::new("x", t.clone(), true)))
            .collect();
        let coerced = datafusion::logical_expr::type_coercion::functions::fields_with_udf(
            &fields,
            self.string_fn.as_ref(),
        )
        .or_else(|_| {
            let got: Vec<String> = arg_types.iter().map(|t| t.to_string()).collect();
            plan_err!(
                "{}(x) takes text (case conversion) or a period (its bound), got {}",
                self.name(),
                got.join(", ")
            )
        })?;
        Ok(coerced.iter().map(|f| f.data_type().clone()).collect())
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        if arg_types.len() == 1 && is_period(&arg_types[0]) {
            return Ok(ts_type());
        }
        self.string_fn.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if args.arg_fields.len() == 1 && is_period(args.arg_fields[0].data_type()) {
            return Ok(Arc::new(Field::new(self.name(), ts_type(), true)));
        }
        self.string_fn.return_field_from_args(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if args.args.len() == 1 && is_period(&args.args[0].data_type()) {
            let (arrays, scalar) = to_arrays(&args.args, args.number_rows)?;
            let s = arrays[0]
                .as_any()
                .downcast_ref::<StructArray>()
                .expect("period is a struct");
            let col = cast(s.column(usize::from(self.upper)), &ts_type())?;
            // A NULL period has NULL bounds.
            let col = match s.nulls() {
                Some(n) => {
                    let data = col
                        .to_data()
                        .into_builder()
                        .nulls(datafusion::arrow::buffer::NullBuffer::union(
                            col.nulls(),
                            Some(n),
                        ))
                        .build()?;
                    datafusion::arrow::array::make_array(data)
                }
                None => col,
            };
            return finish(col, scalar);
        }
        self.string_fn.invoke_with_args(args)
    }
}

/// Register the period functions on the state every query starts from.
/// `lower` / `upper` wrap the built-in string functions of that name.
pub fn register(state: &mut SessionState) -> DfResult<()> {
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(PeriodFn {
        signature: Signature::user_defined(Volatility::Immutable),
    })))?;
    for pred in Pred::ALL {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(PredFn {
            pred,
            signature: Signature::user_defined(Volatility::Immutable),
        })))?;
    }
    for (name, upper) in [("lower", false), ("upper", true)] {
        let string_fn = state
            .scalar_functions()
            .get(name)
            .cloned()
            .unwrap_or_else(|| {
                if upper {
                    datafusion::functions::string::upper()
                } else {
                    datafusion::functions::string::lower()
                }
            });
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(BoundFn {
            upper,
            signature: Signature::user_defined(Volatility::Immutable),
            string_fn,
        })))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The token pass

fn upper_word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn is_ws(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Words that end an operand: a left operand never is one of these.
const STOP: &[&str] = &[
    "SELECT",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "ON",
    "WHEN",
    "THEN",
    "ELSE",
    "FROM",
    "BY",
    "HAVING",
    "CASE",
    "IS",
    "IN",
    "AS",
    "EXISTS",
    "RETURNING",
    "SET",
    "VALUES",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "END",
    "JOIN",
    "USING",
    "DISTINCT",
    "ALL",
    "ANY",
    "SOME",
    "OVERLAPS",
    "CONTAINS",
    "EQUALS",
    "PRECEDES",
    "SUCCEEDS",
    "IMMEDIATELY",
    "LIMIT",
    "OFFSET",
    "ORDER",
    "GROUP",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "WITH",
    "DELETE",
    "UPDATE",
    "INSERT",
    "INTO",
    "FILTER",
    "OVER",
];

/// Words that start a typed literal: `TIMESTAMP '…'`.
const LITERAL_TYPES: &[&str] = &["TIMESTAMP", "TIMESTAMPTZ", "DATE"];

fn is_operand_word(t: &Token) -> bool {
    match t {
        Token::Word(w) if w.quote_style.is_some() => true,
        Token::Word(w) => !STOP.contains(&w.value.to_ascii_uppercase().as_str()),
        _ => false,
    }
}

fn prev_sig(toks: &[Token], before: usize) -> Option<usize> {
    (0..before).rev().find(|&k| !is_ws(&toks[k]))
}

fn next_sig(toks: &[Token], after: usize) -> Option<usize> {
    (after + 1..toks.len()).find(|&k| !is_ws(&toks[k]))
}

fn matching_lparen(toks: &[Token], rparen: usize) -> Option<usize> {
    let mut depth = 0i32;
    for k in (0..=rparen).rev() {
        match toks[k] {
            Token::RParen => depth += 1,
            Token::LParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn matching_rparen(toks: &[Token], lparen: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(lparen) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first index of the operand whose last token is at `end`.
fn operand_start(toks: &[Token], end: usize) -> Option<usize> {
    let mut j = end;
    // `x::timestamp`
    if matches!(toks[j], Token::Word(_)) {
        if let Some(k) = prev_sig(toks, j).filter(|&k| toks[k] == Token::DoubleColon) {
            j = prev_sig(toks, k)?;
        }
    }
    match &toks[j] {
        Token::RParen => {
            let l = matching_lparen(toks, j)?;
            match prev_sig(toks, l) {
                // A function call: `PERIOD(…)`, `f(…)`.
                Some(f) if is_operand_word(&toks[f]) => Some(f),
                _ => Some(l),
            }
        }
        Token::Word(_) if is_operand_word(&toks[j]) => {
            let mut s = j;
            // Qualified: `t.p`, `s.t.p`.
            while s >= 2 && toks[s - 1] == Token::Period && matches!(toks[s - 2], Token::Word(_)) {
                s -= 2;
            }
            Some(s)
        }
        Token::SingleQuotedString(_) => match prev_sig(toks, j) {
            Some(k)
                if upper_word(&toks[k]).is_some_and(|w| LITERAL_TYPES.contains(&w.as_str())) =>
            {
                Some(k)
            }
            _ => Some(j),
        },
        Token::Placeholder(_) | Token::Number(..) => Some(j),
        _ => None,
    }
}

/// The last index of the operand whose first token is at `start`.
fn operand_end(toks: &[Token], start: usize) -> Option<usize> {
    let mut e = match &toks[start] {
        Token::Word(_)
            if upper_word(&toks[start]).is_some_and(|w| LITERAL_TYPES.contains(&w.as_str()))
                && next_sig(toks, start)
                    .is_some_and(|k| matches!(toks[k], Token::SingleQuotedString(_))) =>
        {
            next_sig(toks, start)?
        }
        Token::Word(_) if is_operand_word(&toks[start]) => match next_sig(toks, start) {
            Some(k) if toks[k] == Token::LParen => matching_rparen(toks, k)?,
            _ => {
                let mut e = start;
                while e + 2 < toks.len()
                    && toks[e + 1] == Token::Period
                    && matches!(toks[e + 2], Token::Word(_))
                {
                    e += 2;
                }
                e
            }
        },
        Token::LParen => matching_rparen(toks, start)?,
        Token::SingleQuotedString(_) | Token::Placeholder(_) | Token::Number(..) => start,
        _ => return None,
    };
    // `x::timestamp`
    if let Some(k) = next_sig(toks, e).filter(|&k| toks[k] == Token::DoubleColon) {
        if let Some(w) = next_sig(toks, k).filter(|&w| matches!(toks[w], Token::Word(_))) {
            e = w;
        }
    }
    Some(e)
}

fn trimmed(toks: &[Token]) -> &[Token] {
    let s = toks.iter().position(|t| !is_ws(t)).unwrap_or(toks.len());
    let e = toks.iter().rposition(|t| !is_ws(t)).map_or(s, |e| e + 1);
    &toks[s..e.max(s)]
}

fn space() -> Token {
    Token::Whitespace(Whitespace::Space)
}

/// Which predicate starts at `i` (and the index of its last word).
fn predicate_at(toks: &[Token], i: usize) -> Option<(Pred, usize)> {
    let w = upper_word(&toks[i])?;
    Some(match w.as_str() {
        "OVERLAPS" => (Pred::Overlaps, i),
        "CONTAINS" => (Pred::Contains, i),
        "EQUALS" => (Pred::Equals, i),
        "PRECEDES" => (Pred::Precedes, i),
        "SUCCEEDS" => (Pred::Succeeds, i),
        "IMMEDIATELY" => {
            let k = next_sig(toks, i)?;
            match upper_word(&toks[k]).as_deref() {
                Some("PRECEDES") => (Pred::ImmediatelyPrecedes, k),
                Some("SUCCEEDS") => (Pred::ImmediatelySucceeds, k),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// Words that, at a given parenthesis depth, end a SELECT list.
const END_OF_SELECT_LIST: &[&str] = &[
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "WINDOW",
    "QUALIFY",
    "FETCH",
    "INTO",
];

/// `_valid_time` → `period(_valid_from, _valid_to)`, `t._system_time` →
/// `period(t._system_from, t._system_to)`. A bare one as a whole SELECT item
/// keeps its name as the column name.
fn expand_period_columns(toks: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(toks.len());
    // Per parenthesis depth: inside a SELECT list?
    let mut in_select: Vec<bool> = vec![false];
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::LParen => in_select.push(false),
            Token::RParen if in_select.len() > 1 => {
                in_select.pop();
            }
            _ => {}
        }
        if let Some(w) = upper_word(t) {
            if w == "SELECT" {
                *in_select.last_mut().unwrap() = true;
            } else if END_OF_SELECT_LIST.contains(&w.as_str()) {
                *in_select.last_mut().unwrap() = false;
            }
        }
        let axis = match t {
            Token::Word(w) => {
                let plain = w.quote_style.is_none();
                let quoted = w.quote_style == Some('"');
                let v = if plain {
                    crate::ident::fold(&w.value)
                } else if quoted {
                    w.value.clone()
                } else {
                    String::new()
                };
                match v.as_str() {
                    "_valid_time" => Some("_valid"),
                    "_system_time" => Some("_system"),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(axis) = axis else {
            out.push(t.clone());
            continue;
        };
        // Not a function name, not an alias being defined.
        let next = next_sig(&toks, i);
        let prev = prev_sig(&toks, i);
        if next.is_some_and(|k| toks[k] == Token::LParen)
            || prev.is_some_and(|k| upper_word(&toks[k]).as_deref() == Some("AS"))
        {
            out.push(t.clone());
            continue;
        }
        // The qualifier, already in `out`: (Word .)*
        let mut qualifier: Vec<Token> = Vec::new();
        while out.len() >= 2
            && out[out.len() - 1] == Token::Period
            && matches!(out[out.len() - 2], Token::Word(_))
        {
            let dot = out.pop().unwrap();
            let name = out.pop().unwrap();
            qualifier.insert(0, dot);
            qualifier.insert(0, name);
        }
        let first_of_item = match prev_sig(&toks, i - qualifier.len()) {
            Some(k) => {
                toks[k] == Token::Comma
                    || matches!(upper_word(&toks[k]).as_deref(), Some("SELECT" | "DISTINCT"))
            }
            None => false,
        };
        let last_of_item = match next {
            None => true,
            Some(k) => {
                matches!(toks[k], Token::Comma | Token::RParen | Token::SemiColon)
                    || upper_word(&toks[k])
                        .is_some_and(|w| END_OF_SELECT_LIST.contains(&w.as_str()))
            }
        };
        let alias = *in_select.last().unwrap() && first_of_item && last_of_item;
        out.push(Token::make_word("period", None));
        out.push(Token::LParen);
        out.extend(qualifier.iter().cloned());
        out.push(Token::make_word(&format!("{axis}_from"), None));
        out.push(Token::Comma);
        out.push(space());
        out.extend(qualifier.iter().cloned());
        out.push(Token::make_word(&format!("{axis}_to"), None));
        out.push(Token::RParen);
        if alias {
            out.push(space());
            out.push(Token::make_keyword("AS"));
            out.push(space());
            out.push(Token::make_word(&format!("{axis}_time"), None));
        }
    }
    out
}

/// The period pass over one statement's tokens (see the module docs).
pub fn rewrite_tokens(toks: Vec<Token>) -> Result<Vec<Token>> {
    let mut toks = expand_period_columns(toks);
    let mut i = 0;
    while i < toks.len() {
        let Some((pred, last)) = predicate_at(&toks, i) else {
            i += 1;
            continue;
        };
        let left = prev_sig(&toks, i).and_then(|e| operand_start(&toks, e).map(|s| (s, e)));
        let right = next_sig(&toks, last).and_then(|s| operand_end(&toks, s).map(|e| (s, e)));
        let (Some((ls, le)), Some((rs, re))) = (left, right) else {
            // Not a predicate here (a column called `contains`, say).
            i += 1;
            continue;
        };
        let mut call = vec![Token::make_word(pred.function(), None), Token::LParen];
        call.extend(trimmed(&toks[ls..=le]).iter().cloned());
        call.push(Token::Comma);
        call.push(space());
        call.extend(trimmed(&toks[rs..=re]).iter().cloned());
        call.push(Token::RParen);
        toks.splice(ls..=re, call);
        i = ls + 1;
    }
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    fn rw(sql: &str) -> String {
        let toks = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        rewrite_tokens(toks)
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn period_columns() {
        assert_eq!(
            rw("SELECT _valid_time FROM t"),
            "SELECT period(_valid_from, _valid_to) AS _valid_time FROM t"
        );
        assert_eq!(
            rw("SELECT a.x, a._system_time, b._valid_time FROM t AS a"),
            "SELECT a.x, period(a._system_from, a._system_to) AS _system_time, period(b._valid_from, b._valid_to) AS _valid_time FROM t AS a"
        );
        // Not a whole select item: no alias.
        assert_eq!(
            rw("SELECT lower(_valid_time) FROM t WHERE _system_time IS NOT NULL"),
            "SELECT lower(period(_valid_from, _valid_to)) FROM t WHERE period(_system_from, _system_to) IS NOT NULL"
        );
        // Aliases and function names stay.
        assert_eq!(rw("SELECT 1 AS _valid_time"), "SELECT 1 AS _valid_time");
    }

    #[test]
    fn infix_predicates() {
        assert_eq!(
            rw("SELECT * FROM t WHERE _valid_time OVERLAPS PERIOD(TIMESTAMP '2020-01-01', NULL)"),
            "SELECT * FROM t WHERE strata_overlaps(period(_valid_from, _valid_to), PERIOD(TIMESTAMP '2020-01-01', NULL))"
        );
        assert_eq!(
            rw("SELECT a._valid_time CONTAINS DATE '2020-01-01' FROM t a"),
            "SELECT strata_contains(period(a._valid_from, a._valid_to), DATE '2020-01-01') FROM t a"
        );
        assert_eq!(
            rw("SELECT x FROM t WHERE x = 1 AND p IMMEDIATELY PRECEDES (q) OR NOT t.p EQUALS $1"),
            "SELECT x FROM t WHERE x = 1 AND strata_immediately_precedes(p, (q)) OR NOT strata_equals(t.p, $1)"
        );
        assert_eq!(
            rw("SELECT PERIOD('2020-01-01'::timestamp, NULL) IMMEDIATELY SUCCEEDS p2"),
            "SELECT strata_immediately_succeeds(PERIOD('2020-01-01'::timestamp, NULL), p2)"
        );
        assert_eq!(
            rw("SELECT p PRECEDES q, p SUCCEEDS '2020-01-01'"),
            "SELECT strata_precedes(p, q), strata_succeeds(p, '2020-01-01')"
        );
        // Not predicates: left alone.
        assert_eq!(rw("SELECT contains FROM t"), "SELECT contains FROM t");
        assert_eq!(rw("SELECT 'a OVERLAPS b'"), "SELECT 'a OVERLAPS b'");
    }

    fn sp(lower: Option<i64>, upper: Option<i64>) -> Span {
        Span {
            lower: lower.unwrap_or(i64::MIN),
            upper: upper.unwrap_or(i64::MAX),
        }
    }

    #[test]
    fn semantics() {
        use Pred::*;
        let a = sp(Some(1), Some(5));
        let touching = sp(Some(5), Some(9));
        let inside = sp(Some(2), Some(4));
        let open_end = sp(Some(3), None);
        let open_start = sp(None, Some(1));
        let everything = sp(None, None);
        // OVERLAPS: closed-open, so touching periods do not overlap.
        assert!(Overlaps.eval(a, inside));
        assert!(!Overlaps.eval(a, touching));
        assert!(!Overlaps.eval(touching, a));
        assert!(Overlaps.eval(a, open_end));
        assert!(!Overlaps.eval(a, open_start));
        assert!(Overlaps.eval(everything, a));
        // CONTAINS
        assert!(Contains.eval(a, inside));
        assert!(Contains.eval(a, a));
        assert!(!Contains.eval(inside, a));
        assert!(Contains.eval(everything, open_end));
        assert!(!Contains.eval(open_end, everything));
        // a point t is [t, t+1)
        let pt = |t: i64| sp(Some(t), Some(t + 1));
        assert!(Contains.eval(a, pt(1)));
        assert!(Contains.eval(a, pt(4)));
        assert!(!Contains.eval(a, pt(5)));
        assert!(Contains.eval(open_end, pt(1_000_000)));
        // EQUALS
        assert!(Equals.eval(a, sp(Some(1), Some(5))));
        assert!(!Equals.eval(a, inside));
        assert!(Equals.eval(everything, sp(None, None)));
        // PRECEDES / SUCCEEDS: touching counts.
        assert!(Precedes.eval(a, touching));
        assert!(!Precedes.eval(a, inside));
        assert!(Precedes.eval(open_start, a));
        assert!(!Precedes.eval(a, open_start));
        assert!(Succeeds.eval(touching, a));
        assert!(Succeeds.eval(a, open_start));
        assert!(!Succeeds.eval(open_end, a));
        // IMMEDIATELY: only touching.
        assert!(ImmediatelyPrecedes.eval(a, touching));
        assert!(!ImmediatelyPrecedes.eval(inside, touching));
        assert!(ImmediatelyPrecedes.eval(open_start, a));
        assert!(ImmediatelySucceeds.eval(touching, a));
        assert!(ImmediatelySucceeds.eval(a, open_start));
        assert!(!ImmediatelySucceeds.eval(everything, everything));
        assert!(!ImmediatelyPrecedes.eval(everything, everything));
    }

    /// Parameters (which the sqllogictest files cannot express) as temporal
    /// coordinates and as operands of the period functions, end to end.
    #[tokio::test]
    async fn parameters_in_clauses_and_predicates() {
        use datafusion::arrow::array::StringArray;
        use strata_storage::{EngineConfig, StoreLocation, TestClock};
        let mut cfg = EngineConfig::new(StoreLocation::Memory);
        // 2020-01-01T00:00:00Z, a day per transaction.
        cfg.clock = Arc::new(TestClock::new(1_577_836_800_000_000, 86_400_000_000));
        let db = crate::Database::open(cfg).await.unwrap();
        let mut s = db.session();
        for sql in [
            "INSERT INTO t (_id, v, _valid_from) VALUES (1, 'a', DATE '2019-01-01')",
            "UPDATE t FOR PORTION OF VALID_TIME FROM DATE '2019-06-01' TO NULL SET v = 'b' WHERE _id = 1",
        ] {
            s.execute(sql, &[]).await.unwrap();
        }
        async fn values(s: &mut crate::Session, sql: &str, params: &[ScalarValue]) -> Vec<String> {
            let mut out = Vec::new();
            for o in s.execute(sql, params).await.unwrap() {
                for b in o.collect().await.unwrap() {
                    let c = cast(b.column(0), &DataType::Utf8).unwrap();
                    let c = c.as_any().downcast_ref::<StringArray>().unwrap();
                    out.extend(c.iter().map(|v| v.unwrap_or("NULL").to_string()));
                }
            }
            out.sort();
            out
        }
        let day = |y: i32, m: u32, d: u32| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let ts = |us: i64| ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()));
        let date = |us: i64| ScalarValue::Date32(Some((us / 86_400_000_000) as i32));
        let text = |t: &str| ScalarValue::Utf8(Some(t.to_string()));
        let q = "SELECT v FROM t FOR VALID_TIME AS OF $1";
        assert_eq!(values(&mut s, q, &[date(day(2019, 3, 1))]).await, ["a"]);
        assert_eq!(values(&mut s, q, &[text("2019-07-01")]).await, ["b"]);
        assert_eq!(values(&mut s, q, &[ts(day(2019, 6, 1))]).await, ["b"]);
        assert_eq!(values(&mut s, q, &[ts(day(2019, 6, 1) - 1)]).await, ["a"]);
        // Before the update (system time 2020-01-02) June was still 'a'.
        let q = "SELECT v FROM t FOR SYSTEM_TIME AS OF $1 FOR VALID_TIME AS OF $2";
        assert_eq!(
            values(&mut s, q, &[ts(day(2020, 1, 1)), text("2019-07-01")]).await,
            ["a"]
        );
        let q = "SELECT v FROM t FOR ALL VALID_TIME WHERE _valid_time CONTAINS $1";
        assert_eq!(values(&mut s, q, &[ts(day(2019, 7, 1))]).await, ["b"]);
        let q = "SELECT v FROM t FOR ALL VALID_TIME WHERE _valid_time OVERLAPS PERIOD($1, $2)";
        assert_eq!(
            values(&mut s, q, &[ts(day(2019, 5, 1)), ts(day(2019, 6, 2))]).await,
            ["a", "b"]
        );
        assert_eq!(
            values(&mut s, q, &[ts(day(2019, 5, 1)), ts(day(2019, 6, 1))]).await,
            ["a"]
        );
        let q = "SELECT v FROM t FOR ALL VALID_TIME WHERE _valid_time IMMEDIATELY PRECEDES PERIOD($1, NULL)";
        assert_eq!(values(&mut s, q, &[text("2019-06-01")]).await, ["a"]);
        let q = "SELECT UPPER(_valid_time) FROM t FOR VALID_TIME AS OF $1";
        assert_eq!(
            values(&mut s, q, &[date(day(2019, 2, 1))]).await,
            ["2019-06-01T00:00:00Z"]
        );
    }
}
