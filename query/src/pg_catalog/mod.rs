//! Postgres's system catalogs, derived from Strata's live catalog.
//!
//! Postgres clients and tools learn what a database holds by querying
//! `pg_catalog` (`pg_class`, `pg_attribute`, `pg_type`, …) and
//! `information_schema`, and by calling functions such as `format_type`,
//! `pg_table_is_visible` or `'t'::regclass`. This module answers them from the
//! engine's tables and schemas at the moment of the query:
//!
//! * [`catalog`] wraps the `strata` catalog so that it also has the schemas
//!   `pg_catalog` and `information_schema`, whose tables are built from
//!   `Engine::table_names` / `Engine::table_schema` when a query scans them;
//!   unqualified `pg_class`, `pg_type`, … resolve to them too, as Postgres puts
//!   `pg_catalog` first on every search path.
//! * [`register_functions`] adds the catalog functions these tools call.
//! * [`rewrite`] turns the Postgres-only syntax they use (`::regclass`,
//!   `::oid`, `OPERATOR(pg_catalog.~)`, `COLLATE`, `pg_catalog.`-qualified
//!   function names) into what DataFusion plans.
//!
//! OIDs: built-in types carry Postgres's own OIDs (the ones the wire protocol
//! reports for result columns); a Strata table's OID is derived from its
//! name, so it is the same in every connection and after a restart.
//! The temporal columns `_valid_from`, `_valid_to`, `_system_from` and
//! `_system_to` are listed in `pg_attribute` as system columns (negative
//! `attnum`): queryable by name, not part of `SELECT *`, as in Postgres.
//!
//! Keys: `_id` is every table's primary key (one current row per entity at
//! each point of the bitemporal plane, found by bloom filter + live index),
//! so each table `t` has a unique btree index `t_pkey` on `_id` (a `pg_class`
//! row of kind `i`, a `pg_index` row, `pg_indexes`) and a primary-key
//! constraint of that name (`pg_constraint`, `information_schema.
//! table_constraints` / `key_column_usage`); `pg_get_indexdef` and
//! `pg_get_constraintdef` describe them. Their OIDs derive from the table's.
//! The rewrite also handles what the clients read them with: JDBC's
//! `information_schema._pg_expandarray(indkey)` and `(record).field`,
//! SQLAlchemy's `generate_subscripts`, psql's `FROM unnest(…)` and
//! `EXISTS (…)` as a value.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::common::{exec_err, plan_err, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType as SqlType, Expr, Ident, ObjectName, ObjectNamePart, Statement,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use strata_storage::schema::{TableSchema, ID};
use strata_storage::Engine;

/// The database every Strata server serves (`current_database()`).
pub const DATABASE: &str = "strata";
/// The one role: the owner of everything.
pub const OWNER: &str = "strata";
pub const OWNER_OID: i64 = 10;
pub const DATABASE_OID: i64 = 16_383;
pub const PG_CATALOG_OID: i64 = 11;
pub const PUBLIC_OID: i64 = 2200;
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;
pub const PG_TOAST_OID: i64 = 99;
const HEAP_AM_OID: i64 = 2;
const BTREE_AM_OID: i64 = 403;
const DEFAULT_COLLATION: i64 = 100;
const C_COLLATION: i64 = 950;

mod functions;
mod relations;
mod syntax;
mod tables;
#[cfg(test)]
mod tests;
mod types;

pub use functions::register_functions;
pub use relations::{role_oid, table_oid};
pub use syntax::{cast_type, rewrite};
pub use tables::{catalog, function_names};
pub(crate) use types::pg_type_of_field;
pub use types::{format_type, pg_type_of, type_oid_by_name};

use functions::*;
use relations::*;
use tables::*;
use types::*;
