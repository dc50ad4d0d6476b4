//! Strata query: temporal SQL planned on DataFusion, table providers over
//! storage, and the session layer the Postgres and Flight front ends share.
//! Knows nothing of sockets.

pub mod access;
mod apply;
pub mod casts;
pub mod contract;
pub mod depth;
pub mod describe;
mod dml;
pub mod error;
pub mod export;
mod fastpath;
mod float_zero;
pub mod ident;
mod inlist;
mod insubquery;
mod join_filter;
mod join_keys;
mod key_sink;
pub mod lineage;
mod literal_right;
mod merge;
pub mod naming;
mod nested_loop;
mod numeric_sum;
mod optional_rule;
pub mod overflow;
pub mod period;
pub mod pg_catalog;
mod pg_typeof;
pub mod provider;
mod semijoin;
pub mod session;
mod setops;
pub mod sql;
mod subquery_eq;
mod subscribe;
pub mod system_tables;
pub mod temporal;
mod text_keys;
mod wildcard;

pub use depth::{MAX_EXPR_DEPTH, THREAD_STACK_BYTES};
pub use error::{QueryError, Result};
pub use session::{BulkLoaded, Database, Output, RuntimeOptions, Session, TxState};
