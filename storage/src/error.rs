//! Storage errors: one rich enum inside, a small `ErrorKind` callers can match on.

use std::fmt;

/// Broad classes of failure a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong (bad value, type conflict, bad period): fix the input.
    Invalid,
    /// The object store or disk failed (an I/O error, a directory that
    /// cannot be written): retry later, or fix the storage.
    Unavailable,
    /// The disk (or a quota) is full: free space, then retry.
    Full,
    /// Stored bytes are not what Strata wrote (checksum, format): needs an operator.
    Corrupt,
    /// Another writer got there first and the operation could not be retried.
    Conflict,
    /// A thing asked for does not exist.
    NotFound,
    /// A bug: an invariant did not hold.
    Internal,
    /// A commit whose outcome is not known: its log write may or may not
    /// have reached the store, and reading it back failed too. The
    /// transaction is either wholly committed or not at all; read before
    /// retrying it (SQLSTATE 08007, transaction_resolution_unknown).
    OutcomeUnknown,
    /// A write sent to a read-only node (SQLSTATE 25006): send it to a writer.
    ReadOnly,
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
    /// A commit that failed before it was durable, for the reason `kind`
    /// says (a group commit hands the one failure to every waiting writer).
    #[error("transaction not committed: {reason}")]
    NotCommitted { kind: ErrorKind, reason: String },
    /// A commit whose log write failed ambiguously (a timeout or a
    /// connection error: it may have reached the store) and whose outcome
    /// could not be settled by reading the log back. The transaction is all
    /// or nothing: a later read shows it wholly or not at all.
    #[error("commit outcome unknown: {reason}; the transaction may or may not have committed (all or nothing): read before retrying it")]
    CommitUnknown { reason: String },
    /// The data directory cannot be written (found at open).
    #[error("data directory `{path}` is not writable: {reason}; give a directory this process can create files in")]
    NotWritable {
        path: String,
        reason: String,
        kind: ErrorKind,
    },
    #[error("{0}")]
    NotFound(String),
    /// A write on a read-only node.
    #[error("{0}")]
    ReadOnly(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::InvalidText(_) | Error::TypeConflict { .. } => {
                ErrorKind::Invalid
            }
            Error::Io(e) => io_kind(e),
            Error::Store(e) => store_kind(e),
            Error::NotCommitted { kind, .. } | Error::NotWritable { kind, .. } => *kind,
            Error::Arrow(_) => ErrorKind::Internal,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::ReadOnly(_) => ErrorKind::ReadOnly,
            Error::Internal(_) => ErrorKind::Internal,
            Error::CommitUnknown { .. } => ErrorKind::OutcomeUnknown,
        }
    }
}

/// An I/O error's kind: a full disk or quota is `Full`, anything else `Unavailable`.
pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    // ENOSPC = 28, EDQUOT = 122 on Linux.
    if matches!(e.kind(), K::StorageFull | K::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28 | 122))
    {
        ErrorKind::Full
    } else {
        ErrorKind::Unavailable
    }
}

/// An object store error's kind, from the I/O error beneath it if any.
fn store_kind(e: &object_store::Error) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_kind(io);
        }
        source = s.source();
    }
    ErrorKind::Unavailable
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
