//! Storage errors: one rich enum inside, a small `ErrorKind` callers can match on.

use std::fmt;

/// Broad classes of failure a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong (bad value, type conflict, bad period): fix the input.
    Invalid,
    /// The object store or disk failed: retry later.
    Unavailable,
    /// Stored bytes are not what Strata wrote (checksum, format): needs an operator.
    Corrupt,
    /// Another writer got there first and the operation could not be retried.
    Conflict,
    /// A thing asked for does not exist.
    NotFound,
    /// A bug: an invariant did not hold.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    /// A value that is not valid input for its column's type (`uuid`, `json`):
    /// SQLSTATE 22P02 over the Postgres protocol.
    #[error("{0}")]
    InvalidText(String),
    #[error("column `{column}` of table `{table}` has type {existing}; cannot write a value of type {offered} (no lossless conversion)")]
    TypeConflict {
        table: String,
        column: String,
        existing: String,
        offered: String,
    },
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("corrupt object `{path}`: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::InvalidText(_) | Error::TypeConflict { .. } => {
                ErrorKind::Invalid
            }
            Error::Store(_) | Error::Io(_) => ErrorKind::Unavailable,
            Error::Arrow(_) => ErrorKind::Internal,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `invalid!("...", args)` builds an `Error::Invalid` in one line.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::Error::Invalid(format!($($arg)*)) };
}

#[macro_export]
macro_rules! internal {
    ($($arg:tt)*) => { $crate::Error::Internal(format!($($arg)*)) };
}
