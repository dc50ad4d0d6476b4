//! Query errors: what went wrong, in words a user can act on, with the
//! SQLSTATE the Postgres front end sends.

use datafusion::error::DataFusionError;
use strata_storage::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    UndefinedTable(String),
    #[error("{0}")]
    UndefinedColumn(String),
    #[error("{0}")]
    TypeConflict(String),
    #[error("{0}")]
    Transaction(String),
    /// A statement inside a transaction block that already failed.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Assertion(String),
    #[error("{0}")]
    Storage(strata_storage::Error),
    /// Out of range (22003) or division by zero (22012).
    #[error("{0}")]
    Arithmetic(crate::overflow::ArithmeticError),
    #[error("{0}")]
    Execution(String),
    /// A scalar subquery gave more than one row (21000).
    #[error("{0}")]
    Cardinality(String),
    /// A query needed more memory than its share of `--memory-limit`, even
    /// after spilling what can spill: SQLSTATE 53200.
    #[error("out of memory: {0}. The query needs more than the query share of --memory-limit; raise --memory-limit, or make the query hold less at once (fewer groups, a smaller sort or join build side, no array_agg/string_agg over everything)")]
    OutOfMemory(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Nested deeper than the planner can take (54001).
    #[error("{0}")]
    TooComplex(String),
    /// A wait that ran out of time (57014), such as `strata.read_after`.
    #[error("{0}")]
    Timeout(String),
    /// Not allowed (42501), such as an export outside `--export-root`.
    #[error("{0}")]
    Privilege(String),
    /// A file or object store outside the database failed (58030).
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// What kind of failure an error is, for a front end with its own codes
/// (Flight SQL's gRPC status, the Python package's exceptions). The
/// Postgres wire sends [`QueryError::sqlstate`] instead, which is finer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The statement or its input is wrong: fix it and send it again.
    InvalidInput,
    /// A table (or another object it names) does not exist.
    NotFound,
    /// Strata does not do this (yet).
    Unsupported,
    /// Not allowed in the session's state: a transaction open or failed, an
    /// assertion that did not hold.
    FailedPrecondition,
    /// Lost to a concurrent commit: run the transaction again.
    Conflict,
    /// Storage or a service outside the database cannot be reached now.
    Unavailable,
    /// Out of memory or space, or nested deeper than the planner takes.
    ResourceExhausted,
    /// Stored data is damaged.
    Corrupt,
    /// A commit whose outcome is unknown (the store did not answer).
    OutcomeUnknown,
    /// Not permitted: a missing privilege, or a read-only node.
    Denied,
    /// A wait ran out of time.
    Timeout,
    /// A bug in Strata.
    Internal,
}

impl QueryError {
    /// The kind of failure, for front ends that map errors to their own codes.
    pub fn kind(&self) -> Kind {
        match self {
            QueryError::Syntax(_)
            | QueryError::Invalid(_)
            | QueryError::UndefinedColumn(_)
            | QueryError::TypeConflict(_)
            | QueryError::Arithmetic(_)
            | QueryError::Execution(_)
            | QueryError::Cardinality(_) => Kind::InvalidInput,
            QueryError::UndefinedTable(_) => Kind::NotFound,
            QueryError::Unsupported(_) => Kind::Unsupported,
            QueryError::Transaction(_) | QueryError::Aborted(_) | QueryError::Assertion(_) => {
                Kind::FailedPrecondition
            }
            QueryError::Storage(s) => match s.kind() {
                ErrorKind::Invalid => Kind::InvalidInput,
                ErrorKind::Unavailable => Kind::Unavailable,
                ErrorKind::Full => Kind::ResourceExhausted,
                ErrorKind::Corrupt => Kind::Corrupt,
                ErrorKind::Conflict => Kind::Conflict,
                ErrorKind::NotFound => Kind::NotFound,
                ErrorKind::Internal => Kind::Internal,
                ErrorKind::OutcomeUnknown => Kind::OutcomeUnknown,
                ErrorKind::ReadOnly => Kind::Denied,
            },
            QueryError::OutOfMemory(_) | QueryError::TooComplex(_) => Kind::ResourceExhausted,
            QueryError::Internal(_) => Kind::Internal,
            QueryError::Timeout(_) => Kind::Timeout,
            QueryError::Privilege(_) => Kind::Denied,
            QueryError::Io(_) => Kind::Unavailable,
        }
    }

    /// The Postgres SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::Syntax(_) => "42601",
            QueryError::Unsupported(_) => "0A000",
            QueryError::Invalid(_) => "22023",
            QueryError::UndefinedTable(_) => "42P01",
            QueryError::UndefinedColumn(_) => "42703",
            QueryError::TypeConflict(_) => "42804",
            QueryError::Transaction(_) => "25000",
            QueryError::Aborted(_) => "25P02",
            QueryError::Assertion(_) => "P0004",
            QueryError::Storage(e) => match e.kind() {
                ErrorKind::Invalid => match e {
                    strata_storage::Error::TypeConflict { .. } => "42804",
                    strata_storage::Error::InvalidText(_) => "22P02",
                    _ => "22023",
                },
                ErrorKind::Unavailable => "58030",
                ErrorKind::Full => "53100",
                ErrorKind::Corrupt => "XX001",
                ErrorKind::Conflict => "40001",
                ErrorKind::NotFound => "42P01",
                ErrorKind::Internal => "XX000",
                ErrorKind::OutcomeUnknown => "08007",
                ErrorKind::ReadOnly => "25006",
            },
            QueryError::Arithmetic(e) => e.sqlstate(),
            QueryError::Execution(_) => "22000",
            QueryError::Cardinality(_) => "21000",
            QueryError::OutOfMemory(_) => "53200",
            QueryError::Internal(_) => "XX000",
            QueryError::TooComplex(_) => "54001",
            QueryError::Timeout(_) => "57014",
            QueryError::Privilege(_) => "42501",
            QueryError::Io(_) => "58030",
        }
    }
}

impl From<strata_storage::Error> for QueryError {
    fn from(e: strata_storage::Error) -> Self {
        QueryError::Storage(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        arrow_error(e)
    }
}

/// An arrow error: a division by zero or a cast that does not fit keeps its
/// Postgres SQLSTATE.
fn arrow_error(e: datafusion::arrow::error::ArrowError) -> QueryError {
    use crate::overflow::ArithmeticError;
    use datafusion::arrow::error::ArrowError as A;
    match e {
        A::DivideByZero => QueryError::Arithmetic(ArithmeticError::DivisionByZero),
        A::ArithmeticOverflow(m) => QueryError::Arithmetic(ArithmeticError::OutOfRange(format!(
            "value out of range: {m}"
        ))),
        e => match crate::overflow::cast_out_of_range(&e.to_string()) {
            Some(ae) => QueryError::Arithmetic(ae),
            None => QueryError::Execution(e.to_string()),
        },
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        if let DataFusionError::ResourcesExhausted(m) = root {
            return QueryError::OutOfMemory(m.trim_end_matches('.').to_string());
        }
        if let DataFusionError::SchemaError(se, _) = root {
            let m = se.to_string();
            return if m.contains("o field named") || m.contains("not found") {
                QueryError::UndefinedColumn(m)
            } else {
                QueryError::Invalid(m)
            };
        }
        let e = root.clone_shallow();
        match e {
            DataFusionError::SQL(p, _) => QueryError::Syntax(p.to_string()),
            DataFusionError::External(inner) => match inner.downcast::<strata_storage::Error>() {
                Ok(se) => QueryError::Storage(*se),
                Err(other) => match other.downcast::<crate::overflow::ArithmeticError>() {
                    Ok(ae) => QueryError::Arithmetic(*ae),
                    Err(other) => QueryError::Execution(other.to_string()),
                },
            },
            DataFusionError::NotImplemented(m) => QueryError::Unsupported(undecorrelated(m)),
            // A bug in the planner or executor, not in the user's input:
            // XX000, as PostgreSQL reports its own internal errors.
            DataFusionError::Internal(m) => QueryError::Internal(m),
            DataFusionError::SchemaError(se, _) => {
                let m = se.to_string();
                if m.contains("o field named") || m.contains("not found") {
                    QueryError::UndefinedColumn(m)
                } else {
                    QueryError::Invalid(m)
                }
            }
            DataFusionError::Plan(m) => {
                if m.contains("does not exist") && m.contains("table") {
                    QueryError::UndefinedTable(m)
                } else {
                    QueryError::Invalid(m)
                }
            }
            DataFusionError::ArrowError(a, _) => arrow_error(*a),
            DataFusionError::Execution(m) => match crate::overflow::cast_out_of_range(&m) {
                Some(ae) => QueryError::Arithmetic(ae),
                None if m.contains(crate::apply::MORE_THAN_ONE_ROW)
                    || m.contains("Scalar subquery returned more than one row") =>
                {
                    QueryError::Cardinality(crate::apply::MORE_THAN_ONE_ROW.into())
                }
                None => QueryError::Execution(m),
            },
            other => QueryError::Execution(other.to_string()),
        }
    }
}

/// DataFusion's words for a subquery it could not turn into a join
/// ("Physical plan does not support logical expression ScalarSubquery(…)")
/// name its own internals; say what the user wrote that cannot run, and
/// how to write it instead. (In a select list or WHERE such subqueries run
/// per row, crate::apply; this is for the other places.)
fn undecorrelated(m: String) -> String {
    const PREFIX: &str = "Physical plan does not support logical expression ";
    let Some(rest) = m.strip_prefix(PREFIX) else {
        return m;
    };
    let kind = if rest.starts_with("ScalarSubquery") {
        "a scalar subquery"
    } else if rest.starts_with("Exists") {
        "an EXISTS subquery"
    } else if rest.starts_with("InSubquery") {
        "an IN subquery"
    } else {
        return m;
    };
    format!(
        "{kind} correlated with the outer query in a way that cannot be turned into a join \
         (such as x.b < t.b, or a condition on the outer row alone) can be used only in a \
         select list or WHERE, where Strata runs it once per outer row; here it is elsewhere \
         (an aggregate's argument, ORDER BY, GROUP BY, a join's ON). Compute it in a select \
         list of a subquery in FROM and refer to that column, or write it as a join"
    )
}

trait CloneShallow {
    fn clone_shallow(&self) -> DataFusionError;
}

impl CloneShallow for DataFusionError {
    fn clone_shallow(&self) -> DataFusionError {
        match self {
            DataFusionError::SQL(p, b) => DataFusionError::SQL(p.clone(), b.clone()),
            DataFusionError::NotImplemented(m) => DataFusionError::NotImplemented(m.clone()),
            DataFusionError::Plan(m) => DataFusionError::Plan(m.clone()),
            DataFusionError::Execution(m) => DataFusionError::Execution(m.clone()),
            DataFusionError::Internal(m) => DataFusionError::Internal(m.clone()),
            DataFusionError::ArrowError(a, b) => match a.as_ref() {
                datafusion::arrow::error::ArrowError::DivideByZero => DataFusionError::ArrowError(
                    Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                    b.clone(),
                ),
                other => DataFusionError::Execution(other.to_string()),
            },
            DataFusionError::External(e) => {
                if let Some(se) = e.downcast_ref::<strata_storage::Error>() {
                    DataFusionError::External(Box::new(clone_storage(se)))
                } else if let Some(ae) = e.downcast_ref::<crate::overflow::ArithmeticError>() {
                    DataFusionError::External(Box::new(ae.clone()))
                } else {
                    DataFusionError::Execution(e.to_string())
                }
            }
            other => DataFusionError::Execution(other.to_string()),
        }
    }
}

fn clone_storage(e: &strata_storage::Error) -> strata_storage::Error {
    use strata_storage::Error as E;
    match e {
        E::Invalid(m) => E::Invalid(m.clone()),
        E::InvalidText(m) => E::InvalidText(m.clone()),
        E::TypeConflict {
            table,
            column,
            existing,
            offered,
        } => E::TypeConflict {
            table: table.clone(),
            column: column.clone(),
            existing: existing.clone(),
            offered: offered.clone(),
        },
        E::Conflict(m) => E::Conflict(m.clone()),
        E::NotFound(m) => E::NotFound(m.clone()),
        other => E::Internal(other.to_string()),
    }
}

/// The candidate closest to `name` by edit distance, if reasonably close.
pub fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    let lev = |a: &str, b: &str| -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + (ca != *cb) as usize)
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    };
    candidates
        .iter()
        .map(|c| (lev(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}
