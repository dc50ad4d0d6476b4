//! Strata query: temporal SQL planned on DataFusion, table providers over
//! storage, and the session layer the Postgres and Flight front ends share.
//! Knows nothing of sockets.

pub mod casts;
pub mod depth;
mod dml;
pub mod error;
mod fastpath;
mod naming;
pub mod period;
pub mod pg_catalog;
pub mod provider;
pub mod session;
pub mod temporal;
mod wildcard;

pub use depth::{MAX_EXPR_DEPTH, THREAD_STACK_BYTES};
pub use error::{QueryError, Result};
pub use session::{Database, Output, Session};
