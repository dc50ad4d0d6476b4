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

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// A built-in Postgres type: (oid, typname, typlen, typcategory, array oid).
/// The element type of an array type is the entry whose `array` names it.
const BASE_TYPES: &[(i64, &str, i64, &str, i64)] = &[
    (16, "bool", 1, "B", 1000),
    (17, "bytea", -1, "U", 1001),
    (18, "char", 1, "Z", 1002),
    (19, "name", 64, "S", 1003),
    (20, "int8", 8, "N", 1016),
    (21, "int2", 2, "N", 1005),
    (22, "int2vector", -1, "A", 1006),
    (23, "int4", 4, "N", 1007),
    (24, "regproc", 4, "N", 1008),
    (25, "text", -1, "S", 1009),
    (26, "oid", 4, "N", 1028),
    (27, "tid", 6, "U", 1010),
    (28, "xid", 4, "U", 1011),
    (29, "cid", 4, "U", 1012),
    (30, "oidvector", -1, "A", 1013),
    (114, "json", -1, "U", 199),
    (142, "xml", -1, "U", 143),
    (194, "pg_node_tree", -1, "Z", 0),
    (600, "point", 16, "G", 1017),
    (650, "cidr", -1, "I", 651),
    (700, "float4", 4, "N", 1021),
    (701, "float8", 8, "N", 1022),
    (705, "unknown", -2, "X", 0),
    (790, "money", 8, "N", 791),
    (829, "macaddr", 6, "U", 1040),
    (869, "inet", -1, "I", 1041),
    (1033, "aclitem", 12, "U", 1034),
    (1042, "bpchar", -1, "S", 1014),
    (1043, "varchar", -1, "S", 1015),
    (1082, "date", 4, "D", 1182),
    (1083, "time", 8, "D", 1183),
    (1114, "timestamp", 8, "D", 1115),
    (1184, "timestamptz", 8, "D", 1185),
    (1186, "interval", 16, "T", 1187),
    (1266, "timetz", 12, "D", 1270),
    (1560, "bit", -1, "V", 1561),
    (1562, "varbit", -1, "V", 1563),
    (1700, "numeric", -1, "N", 1231),
    (1790, "refcursor", -1, "U", 2201),
    (2202, "regprocedure", 4, "N", 2207),
    (2205, "regclass", 4, "N", 2210),
    (2206, "regtype", 4, "N", 2211),
    (2249, "record", -1, "P", 2287),
    (2275, "cstring", -2, "P", 1263),
    (2276, "any", 4, "P", 0),
    (2277, "anyarray", -1, "P", 0),
    (2278, "void", 4, "P", 0),
    (2279, "trigger", 4, "P", 0),
    (2283, "anyelement", 4, "P", 0),
    (2950, "uuid", 16, "U", 2951),
    (3220, "pg_lsn", 8, "U", 3221),
    (3614, "tsvector", -1, "U", 3643),
    (3802, "jsonb", -1, "U", 3807),
    (4089, "regnamespace", 4, "N", 4090),
    (4096, "regrole", 4, "N", 4097),
];

/// One row of `pg_type`.
#[derive(Debug, Clone)]
struct TypeRow {
    oid: i64,
    name: String,
    len: i64,
    category: String,
    elem: i64,
    array: i64,
    relid: i64,
    typtype: &'static str,
}

fn builtin_types() -> &'static Vec<TypeRow> {
    static T: OnceLock<Vec<TypeRow>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = Vec::new();
        for &(oid, name, len, cat, array) in BASE_TYPES {
            let elem = match name {
                "int2vector" => 21,
                "oidvector" => 26,
                _ => 0,
            };
            out.push(TypeRow {
                oid,
                name: name.to_string(),
                len,
                category: cat.to_string(),
                elem,
                array,
                relid: 0,
                typtype: if cat == "P" { "p" } else { "b" },
            });
            if array != 0 {
                out.push(TypeRow {
                    oid: array,
                    name: format!("_{name}"),
                    len: -1,
                    category: "A".into(),
                    elem: oid,
                    array: 0,
                    relid: 0,
                    typtype: "b",
                });
            }
        }
        out
    })
}

fn type_by_oid(oid: i64) -> Option<&'static TypeRow> {
    builtin_types().iter().find(|t| t.oid == oid)
}

fn type_by_name(name: &str) -> Option<&'static TypeRow> {
    builtin_types().iter().find(|t| t.name == name)
}

/// The Postgres type (oid, typmod) of an Arrow type, as the wire reports it.
pub fn pg_type_of(dt: &DataType) -> (i64, i32) {
    use DataType as D;
    match dt {
        D::Boolean => (16, -1),
        D::Int8 | D::Int16 | D::UInt8 => (21, -1),
        D::Int32 | D::UInt16 => (23, -1),
        D::Int64 | D::UInt32 => (20, -1),
        D::UInt64 => (1700, (20 << 16) + 4),
        D::Float16 | D::Float32 => (700, -1),
        D::Float64 => (701, -1),
        D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s) | D::Decimal256(p, s) => {
            (1700, (((*p as i32) << 16) | (*s as i32 & 0xffff)) + 4)
        }
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => (17, -1),
        D::Date32 | D::Date64 => (1082, -1),
        D::Time32(_) | D::Time64(_) => (1083, -1),
        D::Timestamp(_, None) => (1114, -1),
        D::Timestamp(_, Some(_)) => (1184, -1),
        D::Interval(_) | D::Duration(_) => (1186, -1),
        D::Dictionary(_, v) => pg_type_of(v),
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => {
            let (inner, _) = pg_type_of(f.data_type());
            match type_by_oid(inner) {
                Some(t) if t.array != 0 => (t.array, -1),
                _ => (1009, -1),
            }
        }
        _ => (25, -1),
    }
}

/// The Postgres type of a stored column: its declared SQL type when the
/// field is tagged with one (uuid, json, jsonb), else from its Arrow type.
pub(crate) fn pg_type_of_field(f: &datafusion::arrow::datatypes::Field) -> (i64, i32) {
    crate::casts::pg_type_oid(f)
        .map(|o| (o, -1))
        .unwrap_or_else(|| pg_type_of(f.data_type()))
}

/// `format_type(oid, typmod)`: the SQL name of a type.
pub fn format_type(oid: i64, typmod: Option<i64>) -> Option<String> {
    let t = type_by_oid(oid)?;
    if t.category == "A" && t.elem != 0 && t.name.starts_with('_') {
        return format_type(t.elem, typmod).map(|s| format!("{s}[]"));
    }
    let m = typmod.filter(|m| *m >= 0);
    Some(match t.name.as_str() {
        "bool" => "boolean".into(),
        "int2" => "smallint".into(),
        "int4" => "integer".into(),
        "int8" => "bigint".into(),
        "float4" => "real".into(),
        "float8" => "double precision".into(),
        "char" => "\"char\"".into(),
        "varchar" => match m {
            Some(m) => format!("character varying({})", m - 4),
            None => "character varying".into(),
        },
        "bpchar" => match m {
            Some(m) => format!("character({})", m - 4),
            None => "bpchar".into(),
        },
        "numeric" => match m {
            Some(m) => format!("numeric({},{})", ((m - 4) >> 16) & 0xffff, (m - 4) & 0xffff),
            None => "numeric".into(),
        },
        "timestamp" => "timestamp without time zone".into(),
        "timestamptz" => "timestamp with time zone".into(),
        "time" => "time without time zone".into(),
        "timetz" => "time with time zone".into(),
        other => other.to_string(),
    })
}

/// The type a SQL type name denotes (`integer`, `int4`, `character varying`,
/// `text[]`, `_int4`, `pg_catalog.uuid`, …).
pub fn type_oid_by_name(name: &str) -> Option<i64> {
    let mut n = name.trim().to_ascii_lowercase();
    if let Some(rest) = n.strip_prefix("pg_catalog.") {
        n = rest.to_string();
    }
    n = n.replace('"', "");
    if let Some(inner) = n.strip_suffix("[]") {
        let e = type_oid_by_name(inner)?;
        return type_by_oid(e).map(|t| t.array).filter(|a| *a != 0);
    }
    let base = n.split('(').next().unwrap_or("").trim().to_string();
    let canon = match base.as_str() {
        "boolean" => "bool",
        "smallint" => "int2",
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        other => other,
    };
    type_by_name(canon).map(|t| t.oid)
}

// ---------------------------------------------------------------------------
// Relations
// ---------------------------------------------------------------------------

/// The OID of a user table: derived from its name, so stable across
/// connections and restarts; even, so that its row type can take `oid + 1`.
pub fn table_oid(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    16_384 + 2 * (h % (1 << 29)) as i64
}

/// Index and constraint OIDs sit above every table OID (`table_oid` stays
/// below `16_384 + 2^30`): a table's primary-key index is its OID plus this,
/// the primary-key constraint the index OID plus one.
const INDEX_OID_OFFSET: i64 = 1 << 30;

/// A table's primary key: `_id`, the entity id. Strata keeps one current row
/// per `_id` at every point of the bitemporal plane and finds rows by `_id`
/// (bloom filter + live index), so every table has this unique index.
#[derive(Debug, Clone)]
struct PrimaryKey {
    table: String,
    table_oid: i64,
    /// `<table>_pkey` (`<table>_pkey1`, … if a table already has that name).
    name: String,
    /// The index's OID (its `pg_class` row); the constraint's is `oid + 1`.
    oid: i64,
    /// `_id`'s attnum, type and typmod.
    attnum: i64,
    type_oid: i64,
    typmod: i32,
}

impl PrimaryKey {
    fn constraint_oid(&self) -> i64 {
        self.oid + 1
    }

    /// `pg_get_indexdef`: Postgres's `CREATE UNIQUE INDEX …` text.
    fn indexdef(&self, pretty: bool) -> String {
        format!(
            "CREATE UNIQUE INDEX {} ON {}{} USING btree ({})",
            quote_ident(&self.name),
            if pretty { "" } else { "public." },
            quote_ident(&self.table),
            quote_ident(ID)
        )
    }

    /// `pg_get_constraintdef`.
    fn constraintdef(&self) -> String {
        format!("PRIMARY KEY ({})", quote_ident(ID))
    }

    /// The btree operator class of the key's type (Postgres's OIDs).
    fn opclass(&self) -> i64 {
        default_opclass(self.type_oid).map(|o| o.0).unwrap_or(0)
    }
}

/// Postgres's default btree operator classes for the types Strata stores:
/// (oid, name, input type, family).
const BTREE_OPCLASSES: &[(i64, &str, i64, i64)] = &[
    (10003, "bool_ops", 16, 424),
    (10006, "bytea_ops", 17, 428),
    (1979, "int2_ops", 21, 1976),
    (1978, "int4_ops", 23, 1976),
    (3124, "int8_ops", 20, 1976),
    (10012, "float4_ops", 700, 1970),
    (3123, "float8_ops", 701, 1970),
    (3125, "numeric_ops", 1700, 1988),
    (3126, "text_ops", 25, 1994),
    (3122, "date_ops", 1082, 434),
    (10038, "time_ops", 1083, 1996),
    (3128, "timestamp_ops", 1114, 434),
    (3127, "timestamptz_ops", 1184, 434),
    (10022, "interval_ops", 1186, 1982),
    (10065, "uuid_ops", 2950, 2968),
];

fn default_opclass(type_oid: i64) -> Option<&'static (i64, &'static str, i64, i64)> {
    BTREE_OPCLASSES.iter().find(|o| o.2 == type_oid)
}

/// The primary key of the table `name` with schema `ts`; `taken` says
/// whether a relation name is already used.
fn primary_key(name: &str, ts: &TableSchema, taken: &dyn Fn(&str) -> bool) -> Option<PrimaryKey> {
    let (i, f) = ts
        .columns
        .iter()
        .enumerate()
        .find(|(_, f)| f.name() == ID)?;
    let (type_oid, typmod) = pg_type_of_field(f);
    let base = format!("{name}_pkey");
    let mut index = base.clone();
    let mut n = 0;
    while taken(&index) {
        n += 1;
        index = format!("{base}{n}");
    }
    let table_oid = table_oid(name);
    Some(PrimaryKey {
        table: name.to_string(),
        table_oid,
        name: index,
        oid: table_oid + INDEX_OID_OFFSET,
        attnum: i as i64 + 1,
        type_oid,
        typmod,
    })
}

/// The primary keys of all user tables, by table name.
fn primary_keys(engine: &Engine) -> Vec<PrimaryKey> {
    let mut names = engine.table_names();
    names.sort();
    let taken = |n: &str| names.iter().any(|t| t == n);
    names
        .iter()
        .filter_map(|n| {
            engine
                .table_schema(n)
                .and_then(|ts| primary_key(n, &ts, &taken))
        })
        .collect()
}

/// The primary key whose index (or, with `constraint`, whose constraint) has this OID.
fn primary_key_by_oid(engine: &Engine, oid: i64, constraint: bool) -> Option<PrimaryKey> {
    let index_oid = if constraint { oid - 1 } else { oid };
    let table_oid = index_oid - INDEX_OID_OFFSET;
    if table_oid < 16_384 || table_oid % 2 != 0 {
        return None;
    }
    let mut names = engine.table_names();
    names.sort();
    let table = names.iter().find(|n| self::table_oid(n) == table_oid)?;
    let taken = |n: &str| names.iter().any(|t| t == n);
    primary_key(table, &engine.table_schema(table)?, &taken)
}

/// Catalog relations: (schema, name, oid, columns as "name type, …").
const SYSTEM_TABLES: &[(&str, &str, i64, &str)] = &[
    ("pg_catalog", "pg_namespace", 2615, "oid oid, nspname name, nspowner oid, nspacl text[]"),
    ("pg_catalog", "pg_class", 1259, "oid oid, relname name, relnamespace oid, reltype oid, reloftype oid, relowner oid, relam oid, relfilenode oid, reltablespace oid, relpages int4, reltuples float4, relallvisible int4, reltoastrelid oid, relhasindex bool, relisshared bool, relpersistence char, relkind char, relnatts int2, relchecks int2, relhasrules bool, relhastriggers bool, relhassubclass bool, relrowsecurity bool, relforcerowsecurity bool, relispopulated bool, relreplident char, relispartition bool, relrewrite oid, relfrozenxid xid, relminmxid xid, relacl text[], reloptions text[], relpartbound text"),
    ("pg_catalog", "pg_attribute", 1249, "attrelid oid, attname name, atttypid oid, attstattarget int4, attlen int2, attnum int2, attndims int4, attcacheoff int4, atttypmod int4, attbyval bool, attalign char, attstorage char, attcompression char, attnotnull bool, atthasdef bool, atthasmissing bool, attidentity char, attgenerated char, attisdropped bool, attislocal bool, attinhcount int4, attcollation oid, attacl text[], attoptions text[], attfdwoptions text[], attmissingval text"),
    ("pg_catalog", "pg_type", 1247, "oid oid, typname name, typnamespace oid, typowner oid, typlen int2, typbyval bool, typtype char, typcategory char, typispreferred bool, typisdefined bool, typdelim char, typrelid oid, typsubscript regproc, typelem oid, typarray oid, typinput regproc, typoutput regproc, typreceive regproc, typsend regproc, typmodin regproc, typmodout regproc, typanalyze regproc, typalign char, typstorage char, typnotnull bool, typbasetype oid, typtypmod int4, typndims int4, typcollation oid, typdefaultbin text, typdefault text, typacl text[]"),
    ("pg_catalog", "pg_database", 1262, "oid oid, datname name, datdba oid, encoding int4, datlocprovider char, datistemplate bool, datallowconn bool, datconnlimit int4, datfrozenxid xid, datminmxid xid, dattablespace oid, datcollate text, datctype text, daticulocale text, datcollversion text, datacl text[]"),
    ("pg_catalog", "pg_roles", 4000, "rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolconnlimit int4, rolpassword text, rolvaliduntil timestamptz, rolbypassrls bool, rolconfig text[], oid oid"),
    ("pg_catalog", "pg_user", 4001, "usename name, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, usebypassrls bool, passwd text, valuntil timestamptz, useconfig text[]"),
    ("pg_catalog", "pg_authid", 1260, "oid oid, rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolbypassrls bool, rolconnlimit int4, rolpassword text, rolvaliduntil timestamptz"),
    ("pg_catalog", "pg_auth_members", 1261, "oid oid, roleid oid, member oid, grantor oid, admin_option bool"),
    ("pg_catalog", "pg_settings", 4002, "name text, setting text, unit text, category text, short_desc text, extra_desc text, context text, vartype text, source text, min_val text, max_val text, enumvals text[], boot_val text, reset_val text, sourcefile text, sourceline int4, pending_restart bool"),
    ("pg_catalog", "pg_index", 2610, "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, indisunique bool, indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, indislive bool, indisreplident bool, indkey int2vector, indcollation oidvector, indclass oidvector, indoption int2vector, indexprs text, indpred text"),
    ("pg_catalog", "pg_indexes", 4003, "schemaname name, tablename name, indexname name, tablespace name, indexdef text"),
    ("pg_catalog", "pg_description", 2609, "objoid oid, classoid oid, objsubid int4, description text"),
    ("pg_catalog", "pg_shdescription", 2396, "objoid oid, classoid oid, description text"),
    ("pg_catalog", "pg_attrdef", 2604, "oid oid, adrelid oid, adnum int2, adbin text"),
    ("pg_catalog", "pg_constraint", 2606, "oid oid, conname name, connamespace oid, contype char, condeferrable bool, condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, conparentid oid, confrelid oid, confupdtype char, confdeltype char, confmatchtype char, conislocal bool, coninhcount int4, connoinherit bool, conkey int2[], confkey int2[], conpfeqop oid[], conppeqop oid[], conffeqop oid[], confdelsetcols int2[], conexclop oid[], conbin text"),
    ("pg_catalog", "pg_opclass", 2616, "oid oid, opcmethod oid, opcname name, opcnamespace oid, opcowner oid, opcfamily oid, opcintype oid, opcdefault bool, opckeytype oid"),
    ("pg_catalog", "pg_am", 2601, "oid oid, amname name, amhandler regproc, amtype char"),
    ("pg_catalog", "pg_proc", 1255, "oid oid, proname name, pronamespace oid, proowner oid, prolang oid, procost float4, prorows float4, provariadic oid, prosupport regproc, prokind char, prosecdef bool, proleakproof bool, proisstrict bool, proretset bool, provolatile char, proparallel char, pronargs int2, pronargdefaults int2, prorettype oid, proargtypes oidvector, proallargtypes oid[], proargmodes char[], proargnames text[], proargdefaults text, protrftypes oid[], prosrc text, probin text, prosqlbody text, proconfig text[], proacl text[]"),
    ("pg_catalog", "pg_tablespace", 1213, "oid oid, spcname name, spcowner oid, spcacl text[], spcoptions text[]"),
    ("pg_catalog", "pg_collation", 3456, "oid oid, collname name, collnamespace oid, collowner oid, collprovider char, collisdeterministic bool, collencoding int4, collcollate text, collctype text, colliculocale text, collversion text"),
    ("pg_catalog", "pg_enum", 3501, "oid oid, enumtypid oid, enumsortorder float4, enumlabel name"),
    ("pg_catalog", "pg_range", 3541, "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, rngsubopc oid, rngcanonical regproc, rngsubdiff regproc"),
    ("pg_catalog", "pg_sequence", 2224, "seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, seqmax int8, seqmin int8, seqcache int8, seqcycle bool"),
    ("pg_catalog", "pg_sequences", 4004, "schemaname name, sequencename name, sequenceowner name, data_type regtype, start_value int8, min_value int8, max_value int8, increment_by int8, cycle bool, cache_size int8, last_value int8"),
    ("pg_catalog", "pg_inherits", 2611, "inhrelid oid, inhparent oid, inhseqno int4, inhdetachpending bool"),
    ("pg_catalog", "pg_trigger", 2620, "oid oid, tgrelid oid, tgparentid oid, tgname name, tgfoid oid, tgtype int2, tgenabled char, tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, tgconstraint oid, tgdeferrable bool, tginitdeferred bool, tgnargs int2, tgattr int2vector, tgargs text, tgqual text, tgoldtable name, tgnewtable name"),
    ("pg_catalog", "pg_rewrite", 2618, "oid oid, rulename name, ev_class oid, ev_type char, ev_enabled char, is_instead bool, ev_qual text, ev_action text"),
    ("pg_catalog", "pg_depend", 2608, "classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, refobjsubid int4, deptype char"),
    ("pg_catalog", "pg_extension", 3079, "oid oid, extname name, extowner oid, extnamespace oid, extrelocatable bool, extversion text, extconfig oid[], extcondition text[]"),
    ("pg_catalog", "pg_language", 2612, "oid oid, lanname name, lanowner oid, lanispl bool, lanpltrusted bool, lanplcallfoid oid, laninline oid, lanvalidator oid, lanacl text[]"),
    ("pg_catalog", "pg_foreign_table", 3118, "ftrelid oid, ftserver oid, ftoptions text[]"),
    ("pg_catalog", "pg_policy", 3256, "oid oid, polname name, polrelid oid, polcmd char, polpermissive bool, polroles oid[], polqual text, polwithcheck text"),
    ("pg_catalog", "pg_statistic_ext", 3381, "oid oid, stxrelid oid, stxname name, stxnamespace oid, stxowner oid, stxstattarget int4, stxkeys int2vector, stxkind char[], stxexprs text"),
    ("pg_catalog", "pg_publication", 6104, "oid oid, pubname name, pubowner oid, puballtables bool, pubinsert bool, pubupdate bool, pubdelete bool, pubtruncate bool, pubviaroot bool"),
    ("pg_catalog", "pg_publication_namespace", 6237, "oid oid, pnpubid oid, pnnspid oid"),
    ("pg_catalog", "pg_publication_rel", 6106, "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int2vector"),
    ("pg_catalog", "pg_event_trigger", 3466, "oid oid, evtname name, evtevent name, evtowner oid, evtfoid oid, evtenabled char, evttags text[]"),
    ("pg_catalog", "pg_tables", 4005, "schemaname name, tablename name, tableowner name, tablespace name, hasindexes bool, hasrules bool, hastriggers bool, rowsecurity bool"),
    ("pg_catalog", "pg_views", 4006, "schemaname name, viewname name, viewowner name, definition text"),
    ("pg_catalog", "pg_matviews", 4007, "schemaname name, matviewname name, matviewowner name, tablespace name, hasindexes bool, ispopulated bool, definition text"),
    ("pg_catalog", "pg_stat_activity", 4008, "datid oid, datname name, pid int4, usesysid oid, usename name, application_name text, client_addr text, client_hostname text, client_port int4, backend_start timestamptz, xact_start timestamptz, query_start timestamptz, state_change timestamptz, wait_event_type text, wait_event text, state text, backend_xid xid, backend_xmin xid, query text, backend_type text"),
    ("pg_catalog", "pg_timezone_names", 4009, "name text, abbrev text, utc_offset text, is_dst bool"),
    ("information_schema", "schemata", 13_001, "catalog_name name, schema_name name, schema_owner name, default_character_set_catalog name, default_character_set_schema name, default_character_set_name name, sql_path text"),
    ("information_schema", "tables", 13_002, "table_catalog name, table_schema name, table_name name, table_type text, self_referencing_column_name name, reference_generation text, user_defined_type_catalog name, user_defined_type_schema name, user_defined_type_name name, is_insertable_into text, is_typed text, commit_action text"),
    ("information_schema", "columns", 13_003, "table_catalog name, table_schema name, table_name name, column_name name, ordinal_position int4, column_default text, is_nullable text, data_type text, character_maximum_length int4, character_octet_length int4, numeric_precision int4, numeric_precision_radix int4, numeric_scale int4, datetime_precision int4, interval_type text, interval_precision int4, character_set_catalog name, character_set_schema name, character_set_name name, collation_catalog name, collation_schema name, collation_name name, domain_catalog name, domain_schema name, domain_name name, udt_catalog name, udt_schema name, udt_name name, scope_catalog name, scope_schema name, scope_name name, maximum_cardinality int4, dtd_identifier name, is_self_referencing text, is_identity text, identity_generation text, identity_start text, identity_increment text, identity_maximum text, identity_minimum text, identity_cycle text, is_generated text, generation_expression text, is_updatable text"),
    ("information_schema", "views", 13_004, "table_catalog name, table_schema name, table_name name, view_definition text, check_option text, is_updatable text, is_insertable_into text, is_trigger_updatable text, is_trigger_deletable text, is_trigger_insertable_into text"),
    ("information_schema", "table_constraints", 13_005, "constraint_catalog name, constraint_schema name, constraint_name name, table_catalog name, table_schema name, table_name name, constraint_type text, is_deferrable text, initially_deferred text, enforced text, nulls_distinct text"),
    ("information_schema", "key_column_usage", 13_006, "constraint_catalog name, constraint_schema name, constraint_name name, table_catalog name, table_schema name, table_name name, column_name name, ordinal_position int4, position_in_unique_constraint int4"),
    ("information_schema", "referential_constraints", 13_007, "constraint_catalog name, constraint_schema name, constraint_name name, unique_constraint_catalog name, unique_constraint_schema name, unique_constraint_name name, match_option text, update_rule text, delete_rule text"),
    ("information_schema", "routines", 13_008, "specific_catalog name, specific_schema name, specific_name name, routine_catalog name, routine_schema name, routine_name name, routine_type text, data_type text, type_udt_name name, routine_body text, routine_definition text, external_language text, is_deterministic text"),
    ("information_schema", "character_sets", 13_009, "character_set_catalog name, character_set_schema name, character_set_name name, character_repertoire name, form_of_use name, default_collate_catalog name, default_collate_schema name, default_collate_name name"),
];

/// The Arrow type of a catalog column's Postgres type.
fn arrow_of(pg: &str) -> DataType {
    match pg {
        "bool" => DataType::Boolean,
        "int2" => DataType::Int16,
        "int4" => DataType::Int32,
        "int8" => DataType::Int64,
        // `oid` goes over the wire as Postgres's `oid` (UInt32).
        "oid" | "xid" => DataType::UInt32,
        "float4" => DataType::Float32,
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "int2[]" | "int2vector" => list_of(DataType::Int16),
        "oid[]" | "oidvector" => list_of(DataType::UInt32),
        "text[]" | "char[]" => list_of(DataType::Utf8),
        _ => DataType::Utf8,
    }
}

fn list_of(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", dt, true)))
}

/// A catalog column's Postgres type oid.
fn pg_oid_of(pg: &str) -> i64 {
    match pg {
        "int2[]" => 1005,
        "oid[]" => 1028,
        "text[]" => 1009,
        "char[]" => 1002,
        other => type_by_name(other).map(|t| t.oid).unwrap_or(25),
    }
}

fn columns_of(spec: &str) -> Vec<(String, String)> {
    spec.split(", ")
        .map(|c| {
            let (n, t) = c.split_once(' ').expect("column spec");
            (n.to_string(), t.to_string())
        })
        .collect()
}

fn system_schema(spec: &str) -> SchemaRef {
    Arc::new(Schema::new(
        columns_of(spec)
            .into_iter()
            .map(|(n, t)| Field::new(n, arrow_of(&t), true))
            .collect::<Vec<_>>(),
    ))
}

fn namespace_oid(schema: &str) -> i64 {
    match schema {
        "pg_catalog" => PG_CATALOG_OID,
        "information_schema" => INFORMATION_SCHEMA_OID,
        _ => PUBLIC_OID,
    }
}

/// A relation as the catalogs list it.
struct Relation {
    oid: i64,
    schema: &'static str,
    name: String,
    kind: &'static str,
    /// (name, pg type oid, typmod, attnum, not null)
    columns: Vec<(String, i64, i32, i64, bool)>,
    /// For an index: the table it belongs to.
    table: Option<String>,
}

/// Everything the catalog tables are built from, read from the engine once per scan.
struct Snapshot {
    relations: Vec<Relation>,
    /// Live entities per user table (`reltuples`).
    alive: BTreeMap<String, usize>,
    /// One per user table, on `_id`.
    keys: Vec<PrimaryKey>,
    functions: Arc<Vec<String>>,
}

fn user_relation(name: &str, ts: &TableSchema) -> Relation {
    let mut columns = Vec::new();
    for (i, f) in ts.columns.iter().enumerate() {
        let (oid, typmod) = pg_type_of_field(f);
        columns.push((f.name().clone(), oid, typmod, i as i64 + 1, f.name() == ID));
    }
    for (i, c) in strata_storage::schema::TEMPORAL_COLUMNS.iter().enumerate() {
        columns.push((c.to_string(), 1184, -1, -(i as i64) - 1, false));
    }
    Relation {
        oid: table_oid(name),
        schema: "public",
        name: name.to_string(),
        kind: "r",
        columns,
        table: None,
    }
}

impl Snapshot {
    fn take(engine: &Engine, functions: Arc<Vec<String>>) -> Snapshot {
        let mut names = engine.table_names();
        names.sort();
        let user_tables: Vec<(String, TableSchema)> = names
            .into_iter()
            .filter_map(|n| engine.table_schema(&n).map(|s| (n, s)))
            .collect();
        let mut relations: Vec<Relation> = user_tables
            .iter()
            .map(|(n, ts)| user_relation(n, ts))
            .collect();
        let taken = |n: &str| user_tables.iter().any(|(t, _)| t == n);
        let keys: Vec<PrimaryKey> = user_tables
            .iter()
            .filter_map(|(n, ts)| primary_key(n, ts, &taken))
            .collect();
        for k in &keys {
            relations.push(Relation {
                oid: k.oid,
                schema: "public",
                name: k.name.clone(),
                kind: "i",
                columns: vec![(ID.to_string(), k.type_oid, k.typmod, 1, true)],
                table: Some(k.table.clone()),
            });
        }
        for (schema, name, oid, spec) in SYSTEM_TABLES {
            relations.push(Relation {
                oid: *oid,
                schema,
                name: name.to_string(),
                kind: if *schema == "pg_catalog" && !name.ends_with('s') || *name == "pg_class" {
                    "r"
                } else {
                    "v"
                },
                columns: columns_of(spec)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, t))| (n, pg_oid_of(&t), -1, i as i64 + 1, false))
                    .collect(),
                table: None,
            });
        }
        let alive = user_tables
            .iter()
            .filter_map(|(n, _)| engine.table_stats(n).map(|(a, _)| (n.clone(), a)))
            .collect();
        Snapshot {
            relations,
            alive,
            keys,
            functions,
        }
    }
}

/// Is this relation on the search path (`public`, then `pg_catalog`)?
fn visible(schema: &str) -> bool {
    schema == "public" || schema == "pg_catalog"
}

/// The relation an oid names, for `::regclass` output and visibility.
fn relation_by_oid(engine: &Engine, oid: i64) -> Option<(String, &'static str)> {
    if let Some((s, n, _, _)) = SYSTEM_TABLES.iter().find(|(_, _, o, _)| *o == oid) {
        return Some((n.to_string(), s));
    }
    engine
        .table_names()
        .into_iter()
        .find(|n| table_oid(n) == oid)
        .map(|n| (n, "public"))
        .or_else(|| primary_key_by_oid(engine, oid, false).map(|k| (k.name, "public")))
}

/// A user table's or primary-key index's OID by its name.
fn public_oid_by_name(engine: &Engine, name: &str) -> Option<i64> {
    if engine.table_schema(name).is_some() {
        return Some(table_oid(name));
    }
    primary_keys(engine)
        .into_iter()
        .find(|k| k.name == name)
        .map(|k| k.oid)
}

/// Split a possibly qualified, possibly quoted relation name.
fn split_name(s: &str) -> (Option<String>, String) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.trim().chars().peekable();
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(if was_quoted {
                    cur.clone()
                } else {
                    crate::ident::fold(&cur)
                });
                cur.clear();
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    parts.push(if was_quoted {
        cur
    } else {
        crate::ident::fold(&cur)
    });
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

/// The oid of a relation name as `::regclass` reads it.
fn relation_oid_by_name(engine: &Engine, s: &str) -> Option<i64> {
    let (schema, name) = split_name(s);
    let sys = |schemas: &[&str]| {
        SYSTEM_TABLES
            .iter()
            .find(|(sc, n, _, _)| schemas.contains(sc) && *n == name)
            .map(|(_, _, o, _)| *o)
    };
    match schema.as_deref() {
        Some("public") => public_oid_by_name(engine, &name),
        Some(s @ ("pg_catalog" | "information_schema")) => sys(&[s]),
        Some(_) => None,
        None => sys(&["pg_catalog"]).or_else(|| public_oid_by_name(engine, &name)),
    }
}

// ---------------------------------------------------------------------------
// Catalog tables
// ---------------------------------------------------------------------------

/// A cell before it is typed by its column.
#[derive(Clone)]
enum V {
    N,
    I(i64),
    F(f64),
    B(bool),
    S(String),
    LI(Vec<i64>),
}

fn s(x: impl Into<String>) -> V {
    V::S(x.into())
}

fn to_scalar(v: &V, dt: &DataType) -> DfResult<ScalarValue> {
    Ok(match (v, dt) {
        (V::N, dt) => ScalarValue::try_from(dt)?,
        (V::I(i), DataType::Int16) => ScalarValue::Int16(Some(*i as i16)),
        (V::I(i), DataType::Int32) => ScalarValue::Int32(Some(*i as i32)),
        (V::I(i), DataType::Int64) => ScalarValue::Int64(Some(*i)),
        (V::I(i), DataType::UInt32) => ScalarValue::UInt32(Some(*i as u32)),
        (V::I(i), DataType::Float32) => ScalarValue::Float32(Some(*i as f32)),
        (V::F(f), DataType::Float32) => ScalarValue::Float32(Some(*f as f32)),
        (V::B(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (V::S(x), DataType::Utf8) => ScalarValue::Utf8(Some(x.clone())),
        (V::I(i), DataType::Utf8) => ScalarValue::Utf8(Some(i.to_string())),
        (V::LI(l), DataType::List(f)) => {
            let vals = l
                .iter()
                .map(|x| to_scalar(&V::I(*x), f.data_type()))
                .collect::<DfResult<Vec<_>>>()?;
            ScalarValue::List(ScalarValue::new_list_nullable(&vals, f.data_type()))
        }
        (_, dt) => return exec_err!("catalog cell does not fit its column type {dt}"),
    })
}

fn build(schema: &SchemaRef, rows: Vec<Vec<V>>) -> DfResult<RecordBatch> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        if rows.is_empty() {
            cols.push(datafusion::arrow::array::new_empty_array(f.data_type()));
            continue;
        }
        let vals = rows
            .iter()
            .map(|r| to_scalar(r.get(i).unwrap_or(&V::N), f.data_type()))
            .collect::<DfResult<Vec<_>>>()?;
        cols.push(ScalarValue::iter_to_array(vals)?);
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

fn typ_fields(t: &TypeRow) -> (bool, &'static str, &'static str) {
    let byval = matches!(t.len, 1 | 2 | 4 | 8) && t.category != "A";
    let align = match t.len {
        1 => "c",
        2 => "s",
        4 => "i",
        8 => "d",
        _ => {
            if t.category == "A" || t.typtype == "c" {
                "d"
            } else {
                "i"
            }
        }
    };
    let storage = if t.len < 0 { "x" } else { "p" };
    (byval, align, storage)
}

fn collation_of(type_oid: i64) -> i64 {
    match type_by_oid(type_oid).map(|t| t.name.as_str()) {
        Some("text" | "varchar" | "bpchar") => DEFAULT_COLLATION,
        Some("name") => C_COLLATION,
        _ => 0,
    }
}

fn rows_of(table: &str, snap: &Snapshot) -> Vec<Vec<V>> {
    let yes_no = |b: bool| s(if b { "YES" } else { "NO" });
    match table {
        "pg_namespace" => [
            (PG_CATALOG_OID, "pg_catalog"),
            (PG_TOAST_OID, "pg_toast"),
            (PUBLIC_OID, "public"),
            (INFORMATION_SCHEMA_OID, "information_schema"),
        ]
        .iter()
        .map(|(o, n)| vec![V::I(*o), s(*n), V::I(OWNER_OID), V::N])
        .collect(),
        "pg_class" => snap
            .relations
            .iter()
            .map(|r| {
                let user = r.schema == "public";
                let ntuples = snap
                    .alive
                    .get(r.table.as_ref().unwrap_or(&r.name))
                    .filter(|_| user)
                    .map(|a| *a as f64)
                    .unwrap_or(-1.0);
                vec![
                    V::I(r.oid),
                    s(&r.name),
                    V::I(namespace_oid(r.schema)),
                    V::I(if user && r.kind == "r" { r.oid + 1 } else { 0 }),
                    V::I(0),
                    V::I(OWNER_OID),
                    V::I(match r.kind {
                        "r" => HEAP_AM_OID,
                        "i" => BTREE_AM_OID,
                        _ => 0,
                    }),
                    V::I(if r.kind == "r" || r.kind == "i" {
                        r.oid
                    } else {
                        0
                    }),
                    V::I(0),
                    V::I(0),
                    V::F(ntuples),
                    V::I(0),
                    V::I(0),
                    // Every user table has its primary-key index.
                    V::B(user && r.kind == "r"),
                    V::B(false),
                    s("p"),
                    s(r.kind),
                    V::I(r.columns.iter().filter(|c| c.3 > 0).count() as i64),
                    V::I(0),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(true),
                    s(if r.kind == "r" { "d" } else { "n" }),
                    V::B(false),
                    V::I(0),
                    V::I(0),
                    V::I(0),
                    V::N,
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_attribute" => {
            let mut out = Vec::new();
            for r in &snap.relations {
                for (name, ty, typmod, num, notnull) in &r.columns {
                    let t = type_by_oid(*ty);
                    let (len, byval, align, storage) = match t {
                        Some(t) => {
                            let (b, a, st) = typ_fields(t);
                            (t.len, b, a, st)
                        }
                        None => (-1, false, "i", "x"),
                    };
                    let ndims = t.map(|t| (t.category == "A") as i64).unwrap_or(0);
                    out.push(vec![
                        V::I(r.oid),
                        s(name),
                        V::I(*ty),
                        V::I(-1),
                        V::I(len),
                        V::I(*num),
                        V::I(ndims),
                        V::I(-1),
                        V::I(*typmod as i64),
                        V::B(byval),
                        s(align),
                        s(storage),
                        s(""),
                        V::B(*notnull),
                        V::B(false),
                        V::B(false),
                        s(""),
                        s(""),
                        V::B(false),
                        V::B(true),
                        V::I(0),
                        V::I(collation_of(*ty)),
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                    ]);
                }
            }
            out
        }
        "pg_type" => {
            let mut types: Vec<TypeRow> = builtin_types().clone();
            for r in &snap.relations {
                if r.schema == "public" && r.kind == "r" {
                    types.push(TypeRow {
                        oid: r.oid + 1,
                        name: r.name.clone(),
                        len: -1,
                        category: "C".into(),
                        elem: 0,
                        array: 0,
                        relid: r.oid,
                        typtype: "c",
                    });
                }
            }
            types
                .iter()
                .map(|t| {
                    let (byval, align, storage) = typ_fields(t);
                    let io = |suffix: &str| {
                        if t.category == "A" {
                            format!("array_{suffix}")
                        } else if t.typtype == "c" {
                            format!("record_{suffix}")
                        } else {
                            format!("{}{suffix}", t.name)
                        }
                    };
                    vec![
                        V::I(t.oid),
                        s(&t.name),
                        V::I(if t.relid != 0 {
                            PUBLIC_OID
                        } else {
                            PG_CATALOG_OID
                        }),
                        V::I(OWNER_OID),
                        V::I(t.len),
                        V::B(byval),
                        s(t.typtype),
                        s(&t.category),
                        V::B(matches!(
                            t.name.as_str(),
                            "bool" | "float8" | "text" | "timestamptz" | "oid" | "interval"
                        )),
                        V::B(true),
                        s(","),
                        V::I(t.relid),
                        s(if t.category == "A" {
                            "array_subscript_handler"
                        } else {
                            "-"
                        }),
                        V::I(t.elem),
                        V::I(t.array),
                        s(io("in")),
                        s(io("out")),
                        s(io("recv")),
                        s(io("send")),
                        s("-"),
                        s("-"),
                        s("-"),
                        s(align),
                        s(storage),
                        V::B(false),
                        V::I(0),
                        V::I(-1),
                        V::I(0),
                        V::I(collation_of(t.oid)),
                        V::N,
                        V::N,
                        V::N,
                    ]
                })
                .collect()
        }
        "pg_database" => vec![vec![
            V::I(DATABASE_OID),
            s(DATABASE),
            V::I(OWNER_OID),
            V::I(6),
            s("c"),
            V::B(false),
            V::B(true),
            V::I(-1),
            V::I(0),
            V::I(0),
            V::I(1663),
            s("C.UTF-8"),
            s("C.UTF-8"),
            V::N,
            V::N,
            V::N,
        ]],
        "pg_roles" => vec![vec![
            s(OWNER),
            V::B(true),
            V::B(true),
            V::B(true),
            V::B(true),
            V::B(true),
            V::B(false),
            V::I(-1),
            s("********"),
            V::N,
            V::B(false),
            V::N,
            V::I(OWNER_OID),
        ]],
        "pg_user" => vec![vec![
            s(OWNER),
            V::I(OWNER_OID),
            V::B(true),
            V::B(true),
            V::B(false),
            V::B(false),
            s("********"),
            V::N,
            V::N,
        ]],
        "pg_authid" => vec![vec![
            V::I(OWNER_OID),
            s(OWNER),
            V::B(true),
            V::B(true),
            V::B(true),
            V::B(true),
            V::B(true),
            V::B(false),
            V::B(false),
            V::I(-1),
            V::N,
            V::N,
        ]],
        "pg_settings" => SETTINGS
            .iter()
            .map(|(n, v, desc)| {
                vec![
                    s(*n),
                    s(*v),
                    V::N,
                    s("Strata"),
                    s(*desc),
                    V::N,
                    s("user"),
                    s("string"),
                    s("default"),
                    V::N,
                    V::N,
                    V::N,
                    s(*v),
                    s(*v),
                    V::N,
                    V::N,
                    V::B(false),
                ]
            })
            .collect(),
        "pg_am" => vec![
            vec![
                V::I(HEAP_AM_OID),
                s("heap"),
                s("heap_tableam_handler"),
                s("t"),
            ],
            vec![V::I(BTREE_AM_OID), s("btree"), s("bthandler"), s("i")],
        ],
        "pg_tablespace" => vec![
            vec![V::I(1663), s("pg_default"), V::I(OWNER_OID), V::N, V::N],
            vec![V::I(1664), s("pg_global"), V::I(OWNER_OID), V::N, V::N],
        ],
        "pg_collation" => [
            (DEFAULT_COLLATION, "default", "d", V::N),
            (C_COLLATION, "C", "c", s("C")),
            (951, "POSIX", "c", s("POSIX")),
        ]
        .into_iter()
        .map(|(o, n, p, c)| {
            vec![
                V::I(o),
                s(n),
                V::I(PG_CATALOG_OID),
                V::I(OWNER_OID),
                s(p),
                V::B(true),
                V::I(-1),
                c.clone(),
                c,
                V::N,
                V::N,
            ]
        })
        .collect(),
        "pg_language" => [(12, "internal"), (13, "c"), (14, "sql")]
            .into_iter()
            .map(|(o, n)| {
                vec![
                    V::I(o),
                    s(n),
                    V::I(OWNER_OID),
                    V::B(false),
                    V::B(n == "sql"),
                    V::I(0),
                    V::I(0),
                    V::I(0),
                    V::N,
                ]
            })
            .collect(),
        "pg_proc" => snap
            .functions
            .iter()
            .map(|f| {
                vec![
                    V::I(function_oid(f)),
                    s(f),
                    V::I(PG_CATALOG_OID),
                    V::I(OWNER_OID),
                    V::I(12),
                    V::F(1.0),
                    V::F(0.0),
                    V::I(0),
                    s("-"),
                    s("f"),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                    s("s"),
                    s("s"),
                    V::I(0),
                    V::I(0),
                    V::I(0),
                    V::LI(vec![]),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    s(f),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_tables" => snap
            .relations
            .iter()
            .filter(|r| r.kind == "r")
            .map(|r| {
                vec![
                    s(r.schema),
                    s(&r.name),
                    s(OWNER),
                    V::N,
                    V::B(r.schema == "public"),
                    V::B(false),
                    V::B(false),
                    V::B(false),
                ]
            })
            .collect(),
        "pg_views" => snap
            .relations
            .iter()
            .filter(|r| r.kind == "v")
            .map(|r| vec![s(r.schema), s(&r.name), s(OWNER), V::N])
            .collect(),
        "pg_timezone_names" => vec![vec![s("UTC"), s("UTC"), s("00:00:00"), V::B(false)]],
        "schemata" => ["pg_catalog", "public", "information_schema"]
            .iter()
            .map(|n| vec![s(DATABASE), s(*n), s(OWNER), V::N, V::N, V::N, V::N])
            .collect(),
        "tables" => snap
            .relations
            .iter()
            .filter(|r| r.kind != "i")
            .map(|r| {
                let base = r.kind == "r";
                vec![
                    s(DATABASE),
                    s(r.schema),
                    s(&r.name),
                    s(if base { "BASE TABLE" } else { "VIEW" }),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    yes_no(r.schema == "public"),
                    s("NO"),
                    V::N,
                ]
            })
            .collect(),
        "columns" => {
            let mut out = Vec::new();
            for r in snap.relations.iter().filter(|r| r.kind != "i") {
                for (name, ty, typmod, num, notnull) in &r.columns {
                    if *num <= 0 {
                        continue;
                    }
                    let t = type_by_oid(*ty);
                    let udt = t.map(|t| t.name.clone()).unwrap_or_else(|| "text".into());
                    let data_type = match t {
                        Some(t) if t.category == "A" => "ARRAY".to_string(),
                        _ => format_type(*ty, None).unwrap_or_else(|| "text".into()),
                    };
                    let (prec, radix, scale) = match udt.as_str() {
                        "int2" => (V::I(16), V::I(2), V::I(0)),
                        "int4" => (V::I(32), V::I(2), V::I(0)),
                        "int8" => (V::I(64), V::I(2), V::I(0)),
                        "float4" => (V::I(24), V::I(2), V::N),
                        "float8" => (V::I(53), V::I(2), V::N),
                        "numeric" if *typmod >= 4 => (
                            V::I(((*typmod as i64 - 4) >> 16) & 0xffff),
                            V::I(10),
                            V::I((*typmod as i64 - 4) & 0xffff),
                        ),
                        "numeric" => (V::N, V::I(10), V::N),
                        _ => (V::N, V::N, V::N),
                    };
                    let dt_prec = match udt.as_str() {
                        "date" => V::I(0),
                        "time" | "timestamp" | "timestamptz" | "interval" => V::I(6),
                        _ => V::N,
                    };
                    let mut row = vec![
                        s(DATABASE),
                        s(r.schema),
                        s(&r.name),
                        s(name),
                        V::I(*num),
                        V::N,
                        yes_no(!notnull),
                        s(data_type),
                        V::N,
                        if udt == "text" {
                            V::I(1_073_741_824)
                        } else {
                            V::N
                        },
                        prec,
                        radix,
                        scale,
                        dt_prec,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        s(DATABASE),
                        s("pg_catalog"),
                        s(udt),
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        s(num.to_string()),
                        s("NO"),
                        s("NO"),
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        V::N,
                        s("NO"),
                        s("NEVER"),
                        V::N,
                    ];
                    row.push(yes_no(r.schema == "public"));
                    out.push(row);
                }
            }
            out
        }
        "pg_index" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    V::I(k.oid),
                    V::I(k.table_oid),
                    V::I(1),
                    V::I(1),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(false),
                    V::B(true),
                    V::B(true),
                    V::B(false),
                    V::LI(vec![k.attnum]),
                    V::LI(vec![collation_of(k.type_oid)]),
                    V::LI(vec![k.opclass()]),
                    V::LI(vec![0]),
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_indexes" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    s("public"),
                    s(&k.table),
                    s(&k.name),
                    V::N,
                    s(k.indexdef(false)),
                ]
            })
            .collect(),
        "pg_constraint" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    V::I(k.constraint_oid()),
                    s(&k.name),
                    V::I(PUBLIC_OID),
                    s("p"),
                    V::B(false),
                    V::B(false),
                    V::B(true),
                    V::I(k.table_oid),
                    V::I(0),
                    V::I(k.oid),
                    V::I(0),
                    V::I(0),
                    s(" "),
                    s(" "),
                    s(" "),
                    V::B(true),
                    V::I(0),
                    V::B(true),
                    V::LI(vec![k.attnum]),
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                    V::N,
                ]
            })
            .collect(),
        "pg_opclass" => BTREE_OPCLASSES
            .iter()
            .map(|(o, n, ty, fam)| {
                vec![
                    V::I(*o),
                    V::I(BTREE_AM_OID),
                    s(*n),
                    V::I(PG_CATALOG_OID),
                    V::I(OWNER_OID),
                    V::I(*fam),
                    V::I(*ty),
                    V::B(true),
                    V::I(0),
                ]
            })
            .collect(),
        "table_constraints" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    s(DATABASE),
                    s("public"),
                    s(&k.name),
                    s(DATABASE),
                    s("public"),
                    s(&k.table),
                    s("PRIMARY KEY"),
                    s("NO"),
                    s("NO"),
                    s("YES"),
                    V::N,
                ]
            })
            .collect(),
        "key_column_usage" => snap
            .keys
            .iter()
            .map(|k| {
                vec![
                    s(DATABASE),
                    s("public"),
                    s(&k.name),
                    s(DATABASE),
                    s("public"),
                    s(&k.table),
                    s(ID),
                    V::I(1),
                    V::N,
                ]
            })
            .collect(),
        "character_sets" => vec![vec![
            V::N,
            V::N,
            s("UTF8"),
            s("UCS"),
            s("UTF8"),
            s(DATABASE),
            s("pg_catalog"),
            s("C.UTF-8"),
        ]],
        // Strata has no indexes or constraints other than the entity key
        // (above), and no comments, defaults, sequences, enums, ranges, inheritance, triggers, rules,
        // extensions or policies: those catalogs are empty.
        _ => vec![],
    }
}

/// Server settings listed in `pg_settings` (SET changes one connection's
/// values; `SHOW` and `current_setting` report those).
const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "DateStyle",
        "ISO, MDY",
        "Sets the display format for date and time values.",
    ),
    (
        "IntervalStyle",
        "postgres",
        "Sets the display format for interval values.",
    ),
    (
        "TimeZone",
        "UTC",
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    (
        "client_encoding",
        "UTF8",
        "Sets the client's character set encoding.",
    ),
    (
        "default_transaction_isolation",
        "read committed",
        "Sets the transaction isolation level of each new transaction.",
    ),
    ("jit", "off", "Allow JIT compilation (Strata has none)."),
    (
        "integer_datetimes",
        "on",
        "Shows whether datetimes are integer based.",
    ),
    (
        "max_identifier_length",
        "63",
        "Shows the maximum identifier length.",
    ),
    (
        "search_path",
        "public",
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    (
        "server_encoding",
        "UTF8",
        "Shows the server (database) character set encoding.",
    ),
    ("server_version", "16.6", "Shows the server version."),
    (
        "server_version_num",
        "160006",
        "Shows the server version as an integer.",
    ),
    (
        "default_table_access_method",
        "heap",
        "Sets the default table access method for new tables.",
    ),
    (
        "max_index_keys",
        "32",
        "Shows the maximum number of index keys.",
    ),
    (
        "standard_conforming_strings",
        "on",
        "Causes '...' strings to treat backslashes literally.",
    ),
];

fn function_oid(name: &str) -> i64 {
    // 8000..15999: below the first user-table oid.
    8_000 + (table_oid(name) - 16_384) / 2 % 8_000
}

/// `pg_catalog` or `information_schema`.
#[derive(Debug)]
struct SystemSchema {
    schema: &'static str,
    engine: Arc<Engine>,
    functions: Arc<Vec<String>>,
}

impl SystemSchema {
    fn find(&self, name: &str) -> Option<&'static (&'static str, &'static str, i64, &'static str)> {
        SYSTEM_TABLES
            .iter()
            .find(|(s, n, _, _)| *s == self.schema && *n == name)
    }

    fn provider(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some((_, n, _, spec)) = self.find(name) else {
            return Ok(None);
        };
        let schema = system_schema(spec);
        let snap = Snapshot::take(&self.engine, self.functions.clone());
        let batch = build(&schema, rows_of(n, &snap))?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES
            .iter()
            .filter(|(s, _, _, _)| *s == self.schema)
            .map(|(_, n, _, _)| n.to_string())
            .collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.provider(name)
    }
    fn table_exist(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

/// `public`, where unqualified `pg_class`, `pg_type`, … find `pg_catalog`'s
/// tables first (Postgres searches `pg_catalog` before the search path).
#[derive(Debug)]
struct PublicSchema {
    inner: Arc<dyn SchemaProvider>,
    pg: Arc<SystemSchema>,
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.pg.find(name).is_some() {
            return self.pg.provider(name);
        }
        if let Some(t) = crate::system_tables::provider(name, &self.pg.engine)? {
            return Ok(Some(t));
        }
        self.inner.table(name).await
    }
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// The `strata` catalog with `pg_catalog` and `information_schema` beside `public`.
#[derive(Debug)]
struct WithSystemSchemas {
    inner: Arc<dyn CatalogProvider>,
    pg: Arc<SystemSchema>,
    info: Arc<SystemSchema>,
}

impl CatalogProvider for WithSystemSchemas {
    fn schema_names(&self) -> Vec<String> {
        let mut v = self.inner.schema_names();
        v.push("pg_catalog".into());
        v.push("information_schema".into());
        v
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            "pg_catalog" => Some(self.pg.clone()),
            "information_schema" => Some(self.info.clone()),
            "public" => self.inner.schema(name).map(|inner| {
                Arc::new(PublicSchema {
                    inner,
                    pg: self.pg.clone(),
                }) as Arc<dyn SchemaProvider>
            }),
            other => self.inner.schema(other),
        }
    }
}

/// Wrap Strata's catalog so that it also serves `pg_catalog` and
/// `information_schema`. `functions` are the function names `pg_proc` lists.
pub fn catalog(
    inner: Arc<dyn CatalogProvider>,
    engine: &Arc<Engine>,
    functions: Arc<Vec<String>>,
) -> Arc<dyn CatalogProvider> {
    let sys = |schema| {
        Arc::new(SystemSchema {
            schema,
            engine: engine.clone(),
            functions: functions.clone(),
        })
    };
    Arc::new(WithSystemSchemas {
        inner,
        pg: sys("pg_catalog"),
        info: sys("information_schema"),
    })
}

/// Names of the scalar functions a state knows, sorted (for `pg_proc`).
pub fn function_names(state: &SessionState) -> Arc<Vec<String>> {
    // The same for every database of a process (built-ins plus ours): computed once.
    static NAMES: OnceLock<Arc<Vec<String>>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            let mut v: Vec<String> = state.scalar_functions().keys().cloned().collect();
            v.extend(state.aggregate_functions().keys().cloned());
            v.sort();
            v.dedup();
            Arc::new(v)
        })
        .clone()
}

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

type Body = dyn Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync;

/// A catalog function evaluated value by value (catalogs are small).
struct PgFn {
    name: String,
    signature: Signature,
    ret: fn(&[DataType]) -> DataType,
    body: Arc<Body>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}
impl PartialEq for PgFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for PgFn {}
impl std::hash::Hash for PgFn {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.ret)(arg_types))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ret = args.return_type().clone();
        let fix = |v: ScalarValue| -> DfResult<ScalarValue> {
            if v.data_type() == ret {
                Ok(v)
            } else if v.is_null() {
                ScalarValue::try_from(&ret)
            } else {
                v.cast_to(&ret)
            }
        };
        let arrays: Vec<Option<ArrayRef>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Array(a) => Some(a.clone()),
                ColumnarValue::Scalar(_) => None,
            })
            .collect();
        if arrays.iter().all(Option::is_none) {
            let vals: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => unreachable!(),
                })
                .collect();
            return Ok(ColumnarValue::Scalar(fix((self.body)(&vals)?)?));
        }
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let vals = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row),
                })
                .collect::<DfResult<Vec<_>>>()?;
            out.push(fix((self.body)(&vals)?)?);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&ret),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

/// `__pg_expandarray(list)`: the list of `{x: element, n: position}`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

fn expand_fields(elem: &DataType) -> datafusion::arrow::datatypes::Fields {
    vec![
        Field::new("x", elem.clone(), true),
        Field::new("n", DataType::Int32, false),
    ]
    .into()
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "__pg_expandarray"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.first() {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Ok(list_of(DataType::Struct(expand_fields(f.data_type()))))
            }
            Some(DataType::Null) => Ok(list_of(DataType::Struct(expand_fields(&DataType::Int32)))),
            other => plan_err!(
                "_pg_expandarray takes an array, not {}",
                other.map(|t| t.to_string()).unwrap_or_default()
            ),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{Int32Array, ListArray, StructArray};
        use datafusion::arrow::buffer::OffsetBuffer;
        let DataType::List(item) = args.return_type().clone() else {
            return exec_err!("_pg_expandarray: unexpected return type");
        };
        let DataType::Struct(fields) = item.data_type().clone() else {
            return exec_err!("_pg_expandarray: unexpected return type");
        };
        let elem = fields[0].data_type().clone();
        let arr = args.args[0].to_array(args.number_rows)?;
        let arr = if arr.data_type() == &DataType::Null {
            datafusion::arrow::array::new_null_array(&list_of(elem.clone()), arr.len())
        } else {
            datafusion::arrow::compute::cast(&arr, &list_of(elem.clone()))?
        };
        let list = arr.as_any().downcast_ref::<ListArray>().ok_or_else(|| {
            datafusion::error::DataFusionError::Execution("_pg_expandarray takes an array".into())
        })?;
        let mut lens = Vec::with_capacity(list.len());
        let mut values: Vec<ArrayRef> = Vec::new();
        let mut positions: Vec<i32> = Vec::new();
        for i in 0..list.len() {
            if list.is_null(i) {
                lens.push(0);
                continue;
            }
            let v = list.value(i);
            lens.push(v.len());
            positions.extend(1..=v.len() as i32);
            values.push(v);
        }
        let refs: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
        let xs = if refs.is_empty() {
            datafusion::arrow::array::new_empty_array(&elem)
        } else {
            datafusion::arrow::compute::concat(&refs)?
        };
        let structs = StructArray::try_new(
            fields,
            vec![xs, Arc::new(Int32Array::from(positions))],
            None,
        )?;
        let out = ListArray::try_new(
            item,
            OffsetBuffer::from_lengths(lens),
            Arc::new(structs),
            list.nulls().cloned(),
        )?;
        let out: ArrayRef = Arc::new(out);
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

fn int_arg(v: Option<&ScalarValue>) -> Option<i64> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(i) => i,
        _ => None,
    }
}

fn str_arg(v: Option<&ScalarValue>) -> Option<String> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Utf8).ok()? {
        ScalarValue::Utf8(s) => s,
        _ => None,
    }
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

fn text(v: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(v)
}

fn oid(v: Option<i64>) -> ScalarValue {
    ScalarValue::Int64(v)
}

fn ret_text(_: &[DataType]) -> DataType {
    DataType::Utf8
}
fn ret_bool(_: &[DataType]) -> DataType {
    DataType::Boolean
}
fn ret_i64(_: &[DataType]) -> DataType {
    DataType::Int64
}
fn ret_i32(_: &[DataType]) -> DataType {
    DataType::Int32
}
/// `x::regclass` and friends: a name gives an oid, an oid gives a name.
fn ret_reg(args: &[DataType]) -> DataType {
    if args.first().is_some_and(is_string) {
        DataType::Int64
    } else {
        DataType::Utf8
    }
}
fn ret_text_list(_: &[DataType]) -> DataType {
    list_of(DataType::Utf8)
}
fn ret_timestamptz(_: &[DataType]) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !matches!(
            s,
            "all"
                | "and"
                | "any"
                | "array"
                | "as"
                | "asc"
                | "case"
                | "cast"
                | "check"
                | "column"
                | "constraint"
                | "create"
                | "default"
                | "desc"
                | "distinct"
                | "do"
                | "else"
                | "end"
                | "false"
                | "for"
                | "foreign"
                | "from"
                | "grant"
                | "group"
                | "having"
                | "in"
                | "into"
                | "is"
                | "join"
                | "limit"
                | "not"
                | "null"
                | "offset"
                | "on"
                | "or"
                | "order"
                | "primary"
                | "references"
                | "select"
                | "table"
                | "then"
                | "to"
                | "true"
                | "union"
                | "unique"
                | "user"
                | "using"
                | "when"
                | "where"
                | "with"
        );
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn json_value(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_)
        | ScalarValue::Decimal128(..) => v.to_string(),
        other => {
            let s = str_arg(Some(other)).unwrap_or_default();
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

fn list_len(v: &ScalarValue) -> Option<usize> {
    match v {
        ScalarValue::List(a) if !a.is_null(0) => Some(a.value(0).len()),
        ScalarValue::LargeList(a) if !a.is_null(0) => Some(a.value(0).len()),
        ScalarValue::FixedSizeList(a) if !a.is_null(0) => Some(a.value(0).len()),
        _ => None,
    }
}

fn start_time() -> i64 {
    static T: OnceLock<i64> = OnceLock::new();
    *T.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    })
}

/// Add the catalog functions to a session state.
pub fn register_functions(state: &mut SessionState, engine: &Arc<Engine>) -> DfResult<()> {
    start_time();
    let sig = Signature::one_of(
        vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
        Volatility::Stable,
    );
    let mut add =
        |names: &[&str], ret: fn(&[DataType]) -> DataType, body: Arc<Body>| -> DfResult<()> {
            for n in names {
                state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgFn {
                    name: n.to_string(),
                    signature: sig.clone(),
                    ret,
                    body: body.clone(),
                })))?;
            }
            Ok(())
        };
    let e = engine.clone();
    let regclass_body = move |nullable: bool| -> Arc<Body> {
        let e = e.clone();
        Arc::new(move |a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                if let Ok(n) = name.trim().parse::<i64>() {
                    return Ok(oid(Some(n)));
                }
                match relation_oid_by_name(&e, &name) {
                    Some(o) => Ok(oid(Some(o))),
                    None if nullable => Ok(oid(None)),
                    None => plan_err!("relation \"{name}\" does not exist"),
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(match relation_by_oid(&e, o) {
                    Some((n, schema)) if visible(schema) => quote_ident(&n),
                    Some((n, schema)) => format!("{schema}.{}", quote_ident(&n)),
                    None => o.to_string(),
                })))
            }
        })
    };
    add(&["__pg_regclass"], ret_reg, regclass_body(false))?;
    add(&["to_regclass"], ret_i64, regclass_body(true))?;
    let regtype_body = |nullable: bool| -> Arc<Body> {
        Arc::new(move |a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                if let Ok(n) = name.trim().parse::<i64>() {
                    return Ok(oid(Some(n)));
                }
                match type_oid_by_name(&name) {
                    Some(o) => Ok(oid(Some(o))),
                    None if nullable => Ok(oid(None)),
                    None => plan_err!("type \"{name}\" does not exist"),
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(
                    format_type(o, None).unwrap_or_else(|| o.to_string()),
                )))
            }
        })
    };
    add(&["__pg_regtype"], ret_reg, regtype_body(false))?;
    add(&["to_regtype"], ret_i64, regtype_body(true))?;
    add(
        &["__pg_regnamespace"],
        ret_reg,
        Arc::new(|a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            const NS: &[(i64, &str)] = &[
                (PG_CATALOG_OID, "pg_catalog"),
                (PUBLIC_OID, "public"),
                (INFORMATION_SCHEMA_OID, "information_schema"),
                (PG_TOAST_OID, "pg_toast"),
            ];
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                match NS.iter().find(|(_, n)| *n == name.trim_matches('"')) {
                    Some((o, _)) => Ok(oid(Some(*o))),
                    None => plan_err!("schema \"{name}\" does not exist"),
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(
                    NS.iter()
                        .find(|(x, _)| *x == o)
                        .map(|(_, n)| n.to_string())
                        .unwrap_or_else(|| o.to_string()),
                )))
            }
        }),
    )?;
    add(
        &["__pg_regrole"],
        ret_reg,
        Arc::new(|a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                if name.trim_matches('"') == OWNER {
                    Ok(oid(Some(OWNER_OID)))
                } else {
                    plan_err!("role \"{name}\" does not exist")
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(if o == OWNER_OID {
                    OWNER.to_string()
                } else {
                    o.to_string()
                })))
            }
        }),
    )?;
    add(
        &["__pg_regproc"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                // `regproc` columns (`typinput`, …) hold function names, so
                // `'pg_catalog.array_in'::regproc` is the bare name.
                let name = str_arg(Some(v)).unwrap_or_default();
                let bare = name.split('(').next().unwrap_or("").trim();
                let bare = bare.strip_prefix("pg_catalog.").unwrap_or(bare);
                Ok(text(Some(bare.to_string())))
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(if o == 0 { "-".into() } else { o.to_string() })))
            }
        }),
    )?;
    add(
        &["pg_get_userbyid"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            Ok(text(int_arg(a.first()).map(|o| {
                if o == OWNER_OID {
                    OWNER.to_string()
                } else {
                    format!("unknown (OID={o})")
                }
            })))
        }),
    )?;
    add(
        &["format_type"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let Some(o) = int_arg(a.first()) else {
                return Ok(text(None));
            };
            let typmod = int_arg(a.get(1));
            Ok(text(Some(
                format_type(o, typmod).unwrap_or_else(|| "???".into()),
            )))
        }),
    )?;
    let e = engine.clone();
    add(
        &["pg_table_is_visible"],
        ret_bool,
        Arc::new(move |a: &[ScalarValue]| {
            Ok(ScalarValue::Boolean(int_arg(a.first()).map(|o| {
                relation_by_oid(&e, o).is_some_and(|(_, schema)| visible(schema))
            })))
        }),
    )?;
    let always_true: Arc<Body> = Arc::new(|a: &[ScalarValue]| {
        Ok(ScalarValue::Boolean(if a.iter().any(|v| v.is_null()) {
            None
        } else {
            Some(true)
        }))
    });
    add(
        &[
            "pg_type_is_visible",
            "pg_function_is_visible",
            "pg_collation_is_visible",
            "pg_conversion_is_visible",
            "pg_opclass_is_visible",
            "pg_operator_is_visible",
            "pg_ts_config_is_visible",
            "has_table_privilege",
            "has_schema_privilege",
            "has_database_privilege",
            "has_column_privilege",
            "has_any_column_privilege",
            "has_function_privilege",
            "has_sequence_privilege",
            "has_type_privilege",
            "pg_has_role",
        ],
        ret_bool,
        always_true,
    )?;
    add(
        &["pg_relation_is_publishable"],
        ret_bool,
        Arc::new(|a: &[ScalarValue]| {
            Ok(ScalarValue::Boolean(
                a.first().filter(|v| !v.is_null()).map(|_| false),
            ))
        }),
    )?;
    // Strata keeps no comments, defaults or generated sequences: these say so.
    add(
        &[
            "obj_description",
            "col_description",
            "shobj_description",
            "pg_get_serial_sequence",
            "pg_get_viewdef",
            "pg_get_triggerdef",
            "pg_get_partkeydef",
            "pg_get_function_identity_arguments",
            "pg_get_function_arguments",
            "pg_get_function_result",
            "pg_get_statisticsobjdef_columns",
            "pg_get_statisticsobjdef",
            "pg_get_ruledef",
        ],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(None))),
    )?;
    add(
        &["pg_get_expr"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| Ok(text(str_arg(a.first())))),
    )?;
    // pg_get_indexdef(index oid [, column, pretty]): the whole definition
    // for column 0, else that key column's name ('' past the last one).
    let e = engine.clone();
    add(
        &["pg_get_indexdef"],
        ret_text,
        Arc::new(move |a: &[ScalarValue]| {
            let Some(o) = int_arg(a.first()) else {
                return Ok(text(None));
            };
            let Some(k) = primary_key_by_oid(&e, o, false) else {
                return Ok(text(None));
            };
            let pretty = matches!(a.get(2), Some(ScalarValue::Boolean(Some(true))));
            Ok(text(Some(match int_arg(a.get(1)).unwrap_or(0) {
                0 => k.indexdef(pretty),
                1 => quote_ident(ID),
                _ => String::new(),
            })))
        }),
    )?;
    let e = engine.clone();
    add(
        &["pg_get_constraintdef"],
        ret_text,
        Arc::new(move |a: &[ScalarValue]| {
            Ok(text(
                int_arg(a.first())
                    .and_then(|o| primary_key_by_oid(&e, o, true))
                    .map(|k| k.constraintdef()),
            ))
        }),
    )?;
    add(
        &["pg_encoding_to_char"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            Ok(text(int_arg(a.first()).map(|e| {
                match e {
                    0 => "SQL_ASCII",
                    6 => "UTF8",
                    _ => "",
                }
                .to_string()
            })))
        }),
    )?;
    add(
        &["pg_char_to_encoding"],
        ret_i32,
        Arc::new(|a: &[ScalarValue]| {
            Ok(ScalarValue::Int32(str_arg(a.first()).map(
                |e| match e.to_ascii_uppercase().as_str() {
                    "SQL_ASCII" => 0,
                    "UTF8" | "UTF-8" | "UNICODE" => 6,
                    _ => -1,
                },
            )))
        }),
    )?;
    add(
        &["pg_client_encoding"],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(Some("UTF8".into())))),
    )?;
    add(
        &["quote_ident"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| Ok(text(str_arg(a.first()).map(|s| quote_ident(&s))))),
    )?;
    add(
        &["current_database"],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(Some(DATABASE.into())))),
    )?;
    add(
        &["current_schema"],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(Some("public".into())))),
    )?;
    add(
        &["current_schemas"],
        ret_text_list,
        Arc::new(|a: &[ScalarValue]| {
            let implicit = matches!(a.first(), Some(ScalarValue::Boolean(Some(true))));
            let names: Vec<ScalarValue> = (if implicit {
                vec!["pg_catalog", "public"]
            } else {
                vec!["public"]
            })
            .into_iter()
            .map(|n| ScalarValue::Utf8(Some(n.into())))
            .collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &names,
                &DataType::Utf8,
            )))
        }),
    )?;
    add(
        &["pg_postmaster_start_time", "pg_conf_load_time"],
        ret_timestamptz,
        Arc::new(|_: &[ScalarValue]| {
            Ok(ScalarValue::TimestampMicrosecond(
                Some(start_time()),
                Some("UTC".into()),
            ))
        }),
    )?;
    // The connection answers `current_setting` for the settings it tracks;
    // these are the server's values of the others.
    add(
        &["current_setting"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let Some(name) = str_arg(a.first()) else {
                return Ok(text(None));
            };
            let missing_ok = matches!(a.get(1), Some(ScalarValue::Boolean(Some(true))));
            match SETTINGS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
            {
                Some((_, v, _)) => Ok(text(Some(v.to_string()))),
                None if missing_ok => Ok(text(None)),
                None => plan_err!("unrecognized configuration parameter \"{name}\""),
            }
        }),
    )?;
    add(
        &["set_config"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let name = str_arg(a.first()).unwrap_or_default();
            let value = str_arg(a.get(1));
            match SETTINGS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
            {
                // Only a no-op change can be honoured here; SET changes a connection's settings.
                Some((_, v, _)) if value.as_deref() == Some(*v) => Ok(text(value)),
                Some(_) => plan_err!(
                    "set_config('{name}', …) cannot change this setting; use SET {name} = …"
                ),
                None => plan_err!("unrecognized configuration parameter \"{name}\""),
            }
        }),
    )?;
    add(
        &["pg_is_in_recovery"],
        ret_bool,
        Arc::new(|_: &[ScalarValue]| Ok(ScalarValue::Boolean(Some(false)))),
    )?;
    // Strata's tables live in object storage as segments shared across
    // versions; it does not size them per relation.
    add(
        &[
            "pg_relation_size",
            "pg_total_relation_size",
            "pg_table_size",
        ],
        ret_i64,
        Arc::new(|_: &[ScalarValue]| Ok(oid(None))),
    )?;
    add(
        &["pg_indexes_size"],
        ret_i64,
        Arc::new(|a: &[ScalarValue]| Ok(oid(int_arg(a.first()).map(|_| 0)))),
    )?;
    add(
        &["pg_size_pretty"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            Ok(text(int_arg(a.first()).map(|b| {
                let mut v = b as f64;
                for unit in ["bytes", "kB", "MB", "GB", "TB"] {
                    if v.abs() < 10240.0 || unit == "TB" {
                        return format!("{} {unit}", v.round() as i64);
                    }
                    v /= 1024.0;
                }
                unreachable!()
            })))
        }),
    )?;
    add(
        &["array_lower"],
        ret_i64,
        Arc::new(|a: &[ScalarValue]| {
            let n = a.first().and_then(list_len);
            let dim = int_arg(a.get(1));
            Ok(ScalarValue::Int64(match (n, dim) {
                (Some(n), Some(1)) if n > 0 => Some(1),
                _ => None,
            }))
        }),
    )?;
    add(
        &["array_upper"],
        ret_i64,
        Arc::new(|a: &[ScalarValue]| {
            let n = a.first().and_then(list_len);
            let dim = int_arg(a.get(1));
            Ok(ScalarValue::Int64(match (n, dim) {
                (Some(n), Some(1)) if n > 0 => Some(n as i64),
                _ => None,
            }))
        }),
    )?;
    add(
        &["json_build_object", "jsonb_build_object"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            if !a.len().is_multiple_of(2) {
                return plan_err!(
                    "json_build_object takes an even number of arguments (key, value, …)"
                );
            }
            let parts: Vec<String> = a
                .chunks(2)
                .map(|kv| {
                    let k = str_arg(Some(&kv[0])).unwrap_or_default();
                    format!(
                        "{} : {}",
                        json_value(&ScalarValue::Utf8(Some(k))),
                        json_value(&kv[1])
                    )
                })
                .collect();
            Ok(text(Some(format!("{{{}}}", parts.join(", ")))))
        }),
    )?;
    // information_schema._pg_expandarray(a) is a set of (x, n): each element
    // with its 1-based position. The rewrite makes it
    // `unnest(__pg_expandarray(a))`; this builds the list of {x, n}.
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Volatility::Immutable),
    })))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Syntax
// ---------------------------------------------------------------------------

fn ident_lower(i: &Ident) -> String {
    crate::ident::normalize(i)
}

fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p.as_ident() {
            Some(i) => ident_lower(i),
            None => p.to_string(),
        })
        .collect()
}

fn call(name: &str, arg: Expr) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn call2(name: &str, a: Expr, b: Expr) -> Expr {
    let mut f = call(name, a);
    if let Expr::Function(func) = &mut f {
        if let ast::FunctionArguments::List(l) = &mut func.args {
            l.args
                .push(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(b)));
        }
    }
    f
}

/// What a Postgres-only type in a cast becomes.
enum CastTo {
    Function(&'static str),
    Type(SqlType),
}

fn custom_type(parts: &[String]) -> Option<CastTo> {
    let last = parts.last()?.as_str();
    Some(match last {
        "regclass" => CastTo::Function("__pg_regclass"),
        "regtype" => CastTo::Function("__pg_regtype"),
        "regnamespace" => CastTo::Function("__pg_regnamespace"),
        "regrole" => CastTo::Function("__pg_regrole"),
        "regproc" | "regprocedure" => CastTo::Function("__pg_regproc"),
        "oid" | "xid" | "cid" | "regoper" | "regoperator" | "regconfig" | "regdictionary"
        | "regcollation" => CastTo::Type(SqlType::IntUnsigned(None)),
        "xid8" => CastTo::Type(SqlType::BigInt(None)),
        "name" | "char" | "bpchar" | "cstring" | "unknown" | "pg_node_tree" | "aclitem" => {
            CastTo::Type(SqlType::Text)
        }
        "int2vector" => CastTo::Type(SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(SqlType::SmallInt(None)),
            None,
        ))),
        "oidvector" => CastTo::Type(SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(SqlType::IntUnsigned(None)),
            None,
        ))),
        other if parts.len() > 1 => {
            // `pg_catalog.int4` and the like: the built-in type of that name.
            let t = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(other)
                .ok()?
                .parse_data_type()
                .ok()?;
            if matches!(t, SqlType::Custom(..)) {
                return None;
            }
            CastTo::Type(t)
        }
        _ => return None,
    })
}

fn map_type(t: &SqlType) -> Option<SqlType> {
    match t {
        SqlType::Regclass => Some(SqlType::IntUnsigned(None)),
        SqlType::Custom(n, _) => match custom_type(&name_parts(n))? {
            CastTo::Type(t) => Some(t),
            CastTo::Function(_) => Some(SqlType::IntUnsigned(None)),
        },
        SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, size)) => Some(SqlType::Array(
            ast::ArrayElemTypeDef::SquareBracket(Box::new(map_type(inner)?), *size),
        )),
        SqlType::Array(ast::ArrayElemTypeDef::AngleBracket(inner)) => Some(SqlType::Array(
            ast::ArrayElemTypeDef::AngleBracket(Box::new(map_type(inner)?)),
        )),
        _ => None,
    }
}

/// The Arrow type of a cast to a Postgres-only type (`$1::oid[]`,
/// `x::regclass`), for describing parameters; None for other types.
pub fn cast_type(t: &SqlType) -> Option<DataType> {
    // `$1::regclass` and the like take a name (or an OID as text).
    let by_name = match t {
        SqlType::Regclass => true,
        SqlType::Custom(n, _) => matches!(custom_type(&name_parts(n)), Some(CastTo::Function(_))),
        _ => false,
    };
    if by_name {
        return Some(DataType::Utf8);
    }
    fn arrow(t: &SqlType) -> Option<DataType> {
        Some(match t {
            SqlType::IntUnsigned(_) => DataType::UInt32,
            SqlType::BigInt(_) => DataType::Int64,
            SqlType::SmallInt(_) => DataType::Int16,
            SqlType::Text => DataType::Utf8,
            SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _))
            | SqlType::Array(ast::ArrayElemTypeDef::AngleBracket(inner)) => list_of(arrow(inner)?),
            _ => return None,
        })
    }
    arrow(&map_type(t)?)
}

fn binary_op(last: &str) -> Option<BinaryOperator> {
    Some(match last {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        _ => return None,
    })
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "stddev",
    "variance",
    "median",
    "bit_and",
    "bit_or",
];

fn has_aggregate(e: &Expr) -> bool {
    // Aggregates of nested subqueries do not count.
    let mut e = e.clone();
    let _ = ast::visit_expressions_mut(&mut e, |x| {
        if matches!(
            x,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) || matches!(x, Expr::Function(f) if matches!(f.args, ast::FunctionArguments::Subquery(_)))
        {
            *x = Expr::value(ast::Value::Null);
        }
        ControlFlow::<()>::Continue(())
    });
    let mut found = false;
    let _ = ast::visit_expressions(&e, |x| {
        if let Expr::Function(f) = x {
            if name_parts(&f.name)
                .last()
                .is_some_and(|n| AGGREGATES.contains(&n.as_str()))
                && f.over.is_none()
            {
                found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
}

/// Does every table `q`'s top SELECT reads belong to pg_catalog or
/// information_schema (qualified so, or named like a catalog relation)?
fn reads_only_catalogs(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let catalog = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table {
            name, args: None, ..
        } => {
            let parts = name_parts(name);
            match parts.as_slice() {
                [.., s, _] => s == "pg_catalog" || s == "information_schema",
                [n] => SYSTEM_TABLES.iter().any(|(_, t, ..)| t == n),
                _ => false,
            }
        }
        _ => false,
    };
    !sel.from.is_empty()
        && sel
            .from
            .iter()
            .all(|t| catalog(&t.relation) && t.joins.iter().all(|j| catalog(&j.relation)))
}

/// `(SELECT x FROM … WHERE <correlated>)` as a value: Postgres checks at run
/// time that it yields at most one row; DataFusion only plans correlated
/// scalar subqueries that aggregate. Catalog queries (psql's `\d`,
/// SQLAlchemy's reflection) use them to fetch one attribute of one object,
/// so they become `(SELECT first_value(x [ORDER BY …]) FROM … WHERE …)`.
fn aggregate_scalar_subquery(q: &mut ast::Query) {
    if q.with.is_some() || q.fetch.is_some() {
        return;
    }
    match &q.limit_clause {
        None => {}
        Some(ast::LimitClause::LimitOffset {
            offset: None,
            limit_by,
            ..
        }) if limit_by.is_empty() => {}
        Some(_) => return,
    }
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return;
    };
    let grouped = match &sel.group_by {
        ast::GroupByExpr::Expressions(v, m) => !v.is_empty() || !m.is_empty(),
        ast::GroupByExpr::All(_) => true,
    };
    if grouped || sel.having.is_some() || sel.distinct.is_some() || sel.projection.len() != 1 {
        return;
    }
    let e = match &mut sel.projection[0] {
        ast::SelectItem::UnnamedExpr(e) => e,
        ast::SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    if has_aggregate(e) {
        return;
    }
    let order = match q.order_by.take() {
        None => vec![],
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(v),
            ..
        }) => v,
        Some(other) => {
            q.order_by = Some(other);
            return;
        }
    };
    let arg = std::mem::replace(e, Expr::value(ast::Value::Null));
    let mut f = call("first_value", arg);
    if let (Expr::Function(func), false) = (&mut f, order.is_empty()) {
        if let ast::FunctionArguments::List(l) = &mut func.args {
            l.clauses.push(ast::FunctionArgumentClause::OrderBy(order));
        }
    }
    *e = f;
    q.limit_clause = None;
}

/// Names the FROM clause of `sel` binds (aliases, else table names).
fn bound_names(sel: &ast::Select) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => out.push(ident_lower(&a.name)),
            None => {
                if let Some(l) = name_parts(name).last() {
                    out.push(l.clone())
                }
            }
        },
        ast::TableFactor::Derived { alias: Some(a), .. } => out.push(ident_lower(&a.name)),
        _ => {}
    };
    for t in &sel.from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    out
}

/// Does `e` refer to columns of the enclosing query (qualified by a name
/// the subquery does not bind) and to its own?
fn references(e: &Expr, inner: &[String]) -> (bool, bool) {
    let (mut outer, mut own) = (false, false);
    let _ = ast::visit_expressions(e, |x| {
        match x {
            Expr::CompoundIdentifier(p) if p.len() >= 2 => {
                if inner.contains(&ident_lower(&p[p.len() - 2])) {
                    own = true
                } else {
                    outer = true
                }
            }
            Expr::Identifier(_) => own = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (outer, own)
}

fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

fn and_all(v: Vec<Expr>) -> Option<Expr> {
    v.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    })
}

/// DataFusion decorrelates a scalar subquery only through equality
/// predicates. A predicate on the enclosing row alone (`AND a.atthasdef`), or
/// a comparison other than `=` of an enclosing column with a subquery column
/// (`a.attcollation <> t.typcollation`), is moved out of the subquery:
/// `(SELECT x … WHERE eq AND p_outer)` becomes
/// `CASE WHEN p_outer THEN (SELECT x … WHERE eq) END`, and
/// `outer <> inner` becomes `outer <> (SELECT first_value(inner) … WHERE eq)`.
/// Returns the condition to wrap the subquery in, if any was moved.
fn hoist_outer_predicates(q: &mut ast::Query) -> Option<Expr> {
    let ast::SetExpr::Select(sel) = q.body.as_mut() else {
        return None;
    };
    let inner = bound_names(sel);
    let where_ = sel.selection.take()?;
    let mut parts = Vec::new();
    conjuncts(where_.clone(), &mut parts);
    let mut keep = Vec::new();
    let mut hoisted = Vec::new();
    let mut mixed = Vec::new();
    for c in parts {
        let (outer, own) = references(&c, &inner);
        if outer && !own {
            hoisted.push(c);
            continue;
        }
        if let Expr::BinaryOp { left, op, right } = &c {
            if outer
                && own
                && matches!(
                    op,
                    BinaryOperator::NotEq
                        | BinaryOperator::Lt
                        | BinaryOperator::LtEq
                        | BinaryOperator::Gt
                        | BinaryOperator::GtEq
                )
            {
                let l = references(left, &inner);
                let r = references(right, &inner);
                if (l.0 && !l.1 && !r.0) || (r.0 && !r.1 && !l.0) {
                    mixed.push((left.clone(), op.clone(), right.clone(), l.0));
                    continue;
                }
            }
        }
        keep.push(c);
    }
    if hoisted.is_empty() && mixed.is_empty() {
        sel.selection = Some(where_);
        return None;
    }
    sel.selection = and_all(keep);
    for (left, op, right, left_is_outer) in mixed {
        let inner_side = if left_is_outer { &right } else { &left };
        let mut sub = q.clone();
        if let ast::SetExpr::Select(s2) = sub.body.as_mut() {
            s2.projection = vec![ast::SelectItem::UnnamedExpr(call(
                "first_value",
                (**inner_side).clone(),
            ))];
        }
        sub.order_by = None;
        sub.limit_clause = None;
        let sub = Box::new(Expr::Subquery(Box::new(sub)));
        hoisted.push(if left_is_outer {
            Expr::BinaryOp {
                left,
                op,
                right: sub,
            }
        } else {
            Expr::BinaryOp {
                left: sub,
                op,
                right,
            }
        });
    }
    and_all(hoisted)
}

/// `'{0}'`, `'{a,b}'` compared with an array: Postgres reads the literal
/// as an array; DataFusion needs `ARRAY[…]`.
fn array_literal(e: &Expr) -> Option<Expr> {
    let Expr::Value(v) = e else { return None };
    let ast::Value::SingleQuotedString(s) = &v.value else {
        return None;
    };
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    if inner.contains(['{', '"']) {
        return None;
    }
    let elem: Vec<Expr> = inner
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let x = x.trim();
            if x.parse::<f64>().is_ok() {
                Expr::value(ast::Value::Number(x.to_string(), false))
            } else {
                Expr::value(ast::Value::SingleQuotedString(x.to_string()))
            }
        })
        .collect();
    if elem.is_empty() {
        return None;
    }
    Some(Expr::Array(ast::Array { elem, named: true }))
}

/// Catalogs that are always empty in Strata (no secondary indexes, comments, defaults,
/// sequences, enums, inheritance, triggers, rules, policies, publications…).
const EMPTY_CATALOGS: &[&str] = &[
    "pg_description",
    "pg_shdescription",
    "pg_attrdef",
    "pg_enum",
    "pg_range",
    "pg_sequence",
    "pg_sequences",
    "pg_inherits",
    "pg_trigger",
    "pg_rewrite",
    "pg_depend",
    "pg_extension",
    "pg_foreign_table",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_event_trigger",
    "pg_matviews",
    "pg_stat_activity",
    "pg_auth_members",
];

/// Does `sel` read an always-empty catalog through inner joins only (so
/// that it yields no rows before grouping)?
fn reads_only_empty(sel: &ast::Select) -> bool {
    let is_empty = |f: &ast::TableFactor| match f {
        ast::TableFactor::Table { name, .. } => {
            let p = name_parts(name);
            let ok_schema = p.len() == 1 || (p.len() == 2 && p[0] == "pg_catalog");
            ok_schema
                && p.last()
                    .is_some_and(|n| EMPTY_CATALOGS.contains(&n.as_str()))
        }
        _ => false,
    };
    let inner = |op: &ast::JoinOperator| {
        matches!(
            op,
            ast::JoinOperator::Join(_)
                | ast::JoinOperator::Inner(_)
                | ast::JoinOperator::CrossJoin(_)
        )
    };
    // Empty if the first relation or an inner-joined one is empty, and no
    // RIGHT or FULL join can bring rows from elsewhere.
    sel.from.iter().any(|t| {
        let outer = t.joins.iter().any(|j| {
            matches!(
                j.join_operator,
                ast::JoinOperator::Right(_)
                    | ast::JoinOperator::RightOuter(_)
                    | ast::JoinOperator::FullOuter(_)
            )
        });
        !outer
            && (is_empty(&t.relation)
                || t.joins
                    .iter()
                    .any(|j| inner(&j.join_operator) && is_empty(&j.relation)))
    })
}

/// A SELECT that reads only always-empty catalogs yields no rows, so its
/// select list is never evaluated: subqueries there (often correlated in
/// ways DataFusion cannot plan, like psql's `array(… oid = any(pol.polroles))`)
/// are replaced by NULL.
fn drop_unevaluated_subqueries(sel: &mut ast::Select) {
    if sel.from.is_empty() {
        return;
    }
    let all_empty = reads_only_empty(sel);
    let grouped = !matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, _) if v.is_empty());
    if !all_empty || grouped || sel.having.is_some() {
        return;
    }
    for item in sel.projection.iter_mut() {
        let e = match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        if has_aggregate(e) {
            return;
        }
        let _ = ast::visit_expressions_mut(e, |x| {
            // Subqueries, and set-returning functions DataFusion lacks.
            let is_sub = matches!(x, Expr::Subquery(_))
                || matches!(x, Expr::Function(f) if matches!(f.args, ast::FunctionArguments::Subquery(_))
                    || name_parts(&f.name).last().is_some_and(|n| n == "generate_subscripts" || n == "_pg_expandarray"));
            if is_sub {
                *x = Expr::value(ast::Value::Null);
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// List columns that Strata's catalogs always leave NULL (no storage
/// options, ACLs or per-object settings).
const ALWAYS_NULL_LISTS: &[&str] = &[
    "reloptions",
    "relacl",
    "attoptions",
    "attacl",
    "attfdwoptions",
    "spcoptions",
    "spcacl",
    "nspacl",
    "datacl",
    "proacl",
    "typacl",
    "ftoptions",
];

/// `SELECT … FROM unnest(x.reloptions) …` alone (a correlated unnest, which
/// DataFusion cannot plan): it yields no rows, as the column is always NULL.
fn unnests_always_null(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let [t] = sel.from.as_slice() else {
        return false;
    };
    if !t.joins.is_empty() {
        return false;
    }
    match &t.relation {
        ast::TableFactor::UNNEST { array_exprs, .. } => {
            !array_exprs.is_empty()
                && array_exprs.iter().all(|e| match e {
                    Expr::CompoundIdentifier(p) => p
                        .last()
                        .is_some_and(|c| ALWAYS_NULL_LISTS.contains(&ident_lower(c).as_str())),
                    _ => false,
                })
        }
        _ => false,
    }
}

/// `EXISTS (SELECT … FROM … WHERE …)` as a value (psql's `\d` of an index):
/// DataFusion plans EXISTS only as a filter, so it becomes
/// `(SELECT count(*) FROM … WHERE …) > 0`.
fn exists_as_count(e: &mut Expr) {
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Exists { subquery, negated } = x {
            let simple = subquery.with.is_none()
                && subquery.limit_clause.is_none()
                && subquery.fetch.is_none()
                && matches!(subquery.body.as_ref(), ast::SetExpr::Select(sel)
                    if sel.distinct.is_none()
                        && sel.having.is_none()
                        && matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, m) if v.is_empty() && m.is_empty()));
            if simple {
                let mut q = subquery.clone();
                q.order_by = None;
                if let ast::SetExpr::Select(sel) = q.body.as_mut() {
                    let mut count =
                        call("count", Expr::value(ast::Value::Number("1".into(), false)));
                    if let Expr::Function(f) = &mut count {
                        if let ast::FunctionArguments::List(l) = &mut f.args {
                            l.args =
                                vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)];
                        }
                    }
                    sel.projection = vec![ast::SelectItem::UnnamedExpr(count)];
                }
                *x = Expr::BinaryOp {
                    left: Box::new(Expr::Subquery(q)),
                    op: if *negated {
                        BinaryOperator::Eq
                    } else {
                        BinaryOperator::Gt
                    },
                    right: Box::new(Expr::value(ast::Value::Number("0".into(), false))),
                };
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// A subquery over always-empty catalogs, without aggregation: no rows.
fn empty_ungrouped(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    let grouped = !matches!(&sel.group_by, ast::GroupByExpr::Expressions(v, _) if v.is_empty());
    reads_only_empty(sel)
        && !grouped
        && sel.having.is_none()
        && sel.projection.iter().all(|i| match i {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                !has_aggregate(e)
            }
            _ => true,
        })
}

struct PgSyntax;

impl VisitorMut for PgSyntax {
    type Break = ();

    fn pre_visit_table_factor(&mut self, f: &mut ast::TableFactor) -> ControlFlow<()> {
        // `FROM pg_catalog.generate_series(…)`
        if let ast::TableFactor::Table {
            name,
            args: Some(args),
            alias,
            with_ordinality,
            ..
        } = f
        {
            let parts = name_parts(name);
            if parts.len() == 2 && parts[0] == "pg_catalog" {
                *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                    parts[1].clone(),
                ))]);
            }
            // `FROM [pg_catalog.]unnest(a) x`: an UNNEST relation; as in
            // Postgres, a bare alias also names its one column.
            if parts.last().is_some_and(|n| n == "unnest") && args.settings.is_none() {
                let exprs: Option<Vec<Expr>> = args
                    .args
                    .iter()
                    .map(|a| match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(array_exprs) = exprs {
                    let mut alias = alias.take();
                    if let Some(a) = alias.as_mut() {
                        if a.columns.is_empty() && array_exprs.len() == 1 {
                            a.columns.push(ast::TableAliasColumnDef {
                                name: a.name.clone(),
                                data_type: None,
                            });
                        }
                    }
                    *f = ast::TableFactor::UNNEST {
                        alias,
                        array_exprs,
                        with_offset: false,
                        with_offset_alias: None,
                        with_ordinality: *with_ordinality,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, sel: &mut ast::Select) -> ControlFlow<()> {
        drop_unevaluated_subqueries(sel);
        for item in sel.projection.iter_mut() {
            if let ast::SelectItem::UnnamedExpr(e)
            | ast::SelectItem::ExprWithAlias { expr: e, .. } = item
            {
                exists_as_count(e);
            }
        }
        // `SELECT NULL, NULL`: Postgres names both `?column?`; DataFusion
        // wants distinct names, so repeated unnamed expressions get aliases
        // (the wire still reports Postgres's names).
        // `SELECT c.oid, c.*` (DBeaver): the explicit column gets its own name.
        let wildcard = sel.projection.iter().any(|i| {
            matches!(
                i,
                ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
            )
        });
        if wildcard {
            for item in sel.projection.iter_mut() {
                if let ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) = item {
                    if let Some(last) = p.last().cloned() {
                        let e = Expr::CompoundIdentifier(p.clone());
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: e,
                            alias: last,
                        };
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in sel.projection.iter_mut().enumerate() {
            if let ast::SelectItem::UnnamedExpr(e) = item {
                if !seen.insert(e.to_string())
                    && !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                {
                    *item = ast::SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', format!("?column?{}", i + 1)),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } => {
                if matches!(data_type, SqlType::Regclass) {
                    let arg = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                    *expr = call("__pg_regclass", arg);
                } else if let SqlType::Custom(n, _) = data_type {
                    match custom_type(&name_parts(n)) {
                        Some(CastTo::Function(f)) => {
                            let arg =
                                std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                            *expr = call(f, arg);
                        }
                        Some(CastTo::Type(t)) => *data_type = t,
                        None => {}
                    }
                } else if let Some(t) = map_type(data_type) {
                    *data_type = t;
                }
            }
            Expr::Function(f)
                if matches!(&f.args, ast::FunctionArguments::Subquery(q) if unnests_always_null(q))
                    && name_parts(&f.name).last().is_some_and(|n| n == "array") =>
            {
                // ARRAY(SELECT … FROM unnest(c.reloptions) x): no elements.
                *expr = Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(Expr::Function(ast::Function {
                        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                            "make_array",
                        ))]),
                        uses_odbc_syntax: false,
                        parameters: ast::FunctionArguments::None,
                        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                            duplicate_treatment: None,
                            args: vec![],
                            clauses: vec![],
                        }),
                        filter: None,
                        null_treatment: None,
                        over: None,
                        within_group: vec![],
                    })),
                    data_type: SqlType::Array(ast::ArrayElemTypeDef::SquareBracket(
                        Box::new(SqlType::Text),
                        None,
                    )),
                    array: false,
                    format: None,
                };
            }
            Expr::Function(f)
                if matches!(f.args, ast::FunctionArguments::Subquery(_))
                    && name_parts(&f.name).last().is_some_and(|n| n == "array") =>
            {
                // ARRAY(SELECT x … ORDER BY y) → (SELECT array_agg(x ORDER BY y) …)
                let ast::FunctionArguments::Subquery(q) = &f.args else {
                    unreachable!()
                };
                let mut q = q.clone();
                let order = match q.order_by.take() {
                    Some(ast::OrderBy {
                        kind: ast::OrderByKind::Expressions(v),
                        ..
                    }) => v,
                    _ => vec![],
                };
                if let ast::SetExpr::Select(sel) = q.body.as_mut() {
                    if let Some(
                        ast::SelectItem::UnnamedExpr(e)
                        | ast::SelectItem::ExprWithAlias { expr: e, .. },
                    ) = sel.projection.first_mut()
                    {
                        let arg = std::mem::replace(e, Expr::value(ast::Value::Null));
                        let mut agg = call("array_agg", arg);
                        if let (Expr::Function(func), false) = (&mut agg, order.is_empty()) {
                            if let ast::FunctionArguments::List(l) = &mut func.args {
                                l.clauses.push(ast::FunctionArgumentClause::OrderBy(order));
                            }
                        }
                        *e = agg;
                    }
                }
                *expr = Expr::Subquery(q);
                self.post_visit_expr(expr)?;
            }
            Expr::Subquery(q) if empty_ungrouped(q) => {
                // No rows, so the value is NULL.
                *expr = Expr::value(ast::Value::Null);
            }
            Expr::Exists { subquery, negated } if empty_ungrouped(subquery) => {
                *expr = Expr::value(ast::Value::Boolean(*negated));
            }
            // Both rewrites change what a subquery means (a count over no
            // rows is 0, not NULL; more than one row is an error, not the
            // first): they are for the catalog queries of tools only, never
            // for user tables.
            Expr::Subquery(q) if reads_only_catalogs(q) => {
                aggregate_scalar_subquery(q);
                if let Some(cond) = hoist_outer_predicates(q) {
                    let sub = std::mem::replace(expr, Expr::value(ast::Value::Null));
                    *expr = Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition: cond,
                            result: sub,
                        }],
                        else_result: None,
                    };
                }
            }
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => {
                // DataFusion knows only `\` as LIKE's escape: rewrite the
                // pattern from another escape character to backslashes.
                let c = match escape_char.as_ref().map(|v| &v.value) {
                    Some(ast::Value::SingleQuotedString(c))
                        if c != "\\" && c.chars().count() == 1 =>
                    {
                        c.clone()
                    }
                    _ => return ControlFlow::Continue(()),
                };
                let lit = |x: &str| Expr::value(ast::Value::SingleQuotedString(x.to_string()));
                let re_replace = |e: Expr, re: &str, with: &str| {
                    let mut f = call("regexp_replace", e);
                    if let Expr::Function(func) = &mut f {
                        if let ast::FunctionArguments::List(l) = &mut func.args {
                            for a in [lit(re), lit(with), lit("g")] {
                                l.args
                                    .push(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)));
                            }
                        }
                    }
                    f
                };
                let p = std::mem::replace(pattern.as_mut(), Expr::value(ast::Value::Null));
                let p = re_replace(p, "\\\\", "\\\\");
                let esc: String = c
                    .chars()
                    .flat_map(|ch| {
                        if ch.is_ascii_alphanumeric() {
                            vec![ch]
                        } else {
                            vec!['\\', ch]
                        }
                    })
                    .collect();
                **pattern = re_replace(p, &format!("{esc}(.)"), "\\${1}");
                *escape_char = None;
            }
            Expr::Collate { expr: inner, .. } => {
                let e = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
                *expr = e;
            }
            Expr::BinaryOp { op, left, right } => {
                if matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
                    for side in [left, right] {
                        if let Some(a) = array_literal(side) {
                            **side = a;
                        }
                    }
                }
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    if let Some(o) = parts.last().and_then(|l| binary_op(l)) {
                        *op = o;
                    }
                }
            }
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = compare_op {
                    if let Some(o) = parts.last().and_then(|l| binary_op(l)) {
                        *compare_op = o;
                    }
                }
            }
            Expr::CompoundFieldAccess { root, access_chain }
                if matches!(root.as_ref(), Expr::Nested(_) | Expr::Function(_))
                    && matches!(
                        access_chain.first(),
                        Some(ast::AccessExpr::Dot(Expr::Identifier(_)))
                    ) =>
            {
                // `(record).field` → get_field(record, 'field'), field by field
                // (`t.col[1]` is a qualified column, left alone).
                let mut e = std::mem::replace(root.as_mut(), Expr::value(ast::Value::Null));
                let mut rest = Vec::new();
                for a in std::mem::take(access_chain) {
                    match a {
                        ast::AccessExpr::Dot(Expr::Identifier(id)) if rest.is_empty() => {
                            e = call2(
                                "get_field",
                                e,
                                Expr::value(ast::Value::SingleQuotedString(ident_lower(&id))),
                            );
                        }
                        other => rest.push(other),
                    }
                }
                *expr = if rest.is_empty() {
                    e
                } else {
                    Expr::CompoundFieldAccess {
                        root: Box::new(e),
                        access_chain: rest,
                    }
                };
            }
            Expr::Function(f)
                if name_parts(&f.name)
                    .last()
                    .is_some_and(|n| n == "_pg_expandarray") =>
            {
                // A set of (x, n) records: unnest a list of {x, n} structs.
                if let ast::FunctionArguments::List(l) = &f.args {
                    if let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a))] =
                        l.args.as_slice()
                    {
                        *expr = call("unnest", call("__pg_expandarray", a.clone()));
                    }
                }
            }
            Expr::Function(f)
                if name_parts(&f.name)
                    .last()
                    .is_some_and(|n| n == "generate_subscripts") =>
            {
                // generate_subscripts(a, dim): 1..cardinality(a) for dimension 1
                // (Strata's arrays have one dimension).
                if let ast::FunctionArguments::List(l) = &f.args {
                    let args: Vec<Expr> = l
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                                Some(e.clone())
                            }
                            _ => None,
                        })
                        .collect();
                    if let [a, dim] = args.as_slice() {
                        let one = || Expr::value(ast::Value::Number("1".into(), false));
                        let upper = Expr::Case {
                            case_token: ast::helpers::attached_token::AttachedToken::empty(),
                            end_token: ast::helpers::attached_token::AttachedToken::empty(),
                            operand: None,
                            conditions: vec![ast::CaseWhen {
                                condition: Expr::BinaryOp {
                                    left: Box::new(dim.clone()),
                                    op: BinaryOperator::Eq,
                                    right: Box::new(one()),
                                },
                                result: Expr::Cast {
                                    kind: ast::CastKind::Cast,
                                    expr: Box::new(call("cardinality", a.clone())),
                                    data_type: SqlType::BigInt(None),
                                    array: false,
                                    format: None,
                                },
                            }],
                            else_result: Some(Box::new(Expr::value(ast::Value::Number(
                                "0".into(),
                                false,
                            )))),
                        };
                        *expr = call("unnest", call2("generate_series", one(), upper));
                    }
                }
            }
            Expr::Function(f) => {
                let parts = name_parts(&f.name);
                if parts.len() == 2 && parts[0] == "pg_catalog" {
                    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(
                        parts[1].clone(),
                    ))]);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// asyncpg's type introspection (`WITH RECURSIVE typeinfo_tree …`) walks
/// domains, ranges, composite types and array elements with recursive CTEs
/// nested in correlated subqueries. Strata's types have no domains, ranges or
/// composite columns, and arrays nest one level, so the same rows come from
/// this plain query: each requested type (depth 0) and, for an array, its
/// element type (depth 1), deepest first.
const ASYNCPG_INTROSPECTION: &str = "
SELECT oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype, attrtypoids,
       attrnames, depth, basetype_name, elemtype_name, range_subtype_name
FROM (
  SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
         CAST(NULL AS INT UNSIGNED) AS basetype, t.typelem AS elemtype, e.typdelim AS elemdelim,
         CAST(NULL AS INT UNSIGNED) AS range_subtype, CAST(NULL AS INT UNSIGNED[]) AS attrtypoids,
         CAST(NULL AS TEXT[]) AS attrnames, 0 AS depth, CAST(NULL AS TEXT) AS basetype_name,
         CASE WHEN t.typelem <> 0 THEN format_type(t.typelem, NULL) ELSE '-' END AS elemtype_name,
         CAST(NULL AS TEXT) AS range_subtype_name
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
  LEFT JOIN pg_catalog.pg_type e ON t.typlen = -1 AND t.typelem <> 0 AND t.typelem = e.oid
  WHERE t.oid = ANY($1::oid[])
  UNION ALL
  SELECT e.oid, ns.nspname, e.typname, e.typtype, CAST(NULL AS INT UNSIGNED), e.typelem,
         CAST(NULL AS TEXT), CAST(NULL AS INT UNSIGNED), CAST(NULL AS INT UNSIGNED[]),
         CAST(NULL AS TEXT[]), 1, CAST(NULL AS TEXT), '-', CAST(NULL AS TEXT)
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_type e ON e.oid = t.typelem
  JOIN pg_catalog.pg_namespace ns ON ns.oid = e.typnamespace
  WHERE t.oid = ANY($1::oid[]) AND t.typlen = -1 AND t.typelem <> 0
) ti
ORDER BY depth DESC";

fn is_asyncpg_introspection(stmt: &Statement) -> bool {
    let Statement::Query(q) = stmt else {
        return false;
    };
    q.with.as_ref().is_some_and(|w| {
        w.recursive
            && w.cte_tables
                .iter()
                .any(|c| c.alias.name.value == "typeinfo_tree")
    })
}

/// Turn the Postgres catalog syntax tools send into what DataFusion plans.
pub fn rewrite(stmt: &mut Statement) {
    if is_asyncpg_introspection(stmt) {
        if let Ok(mut v) = crate::session::parse(ASYNCPG_INTROSPECTION) {
            *stmt = v.remove(0);
        }
    }
    let _ = stmt.visit(&mut PgSyntax);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> String {
        let mut s = crate::session::parse(sql).unwrap().remove(0);
        rewrite(&mut s);
        s.to_string()
    }

    #[test]
    fn syntax() {
        assert_eq!(
            rw("SELECT 't'::regclass, c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c"),
            "SELECT __pg_regclass('t'), __pg_regclass(c.oid)::TEXT FROM pg_catalog.pg_class c"
        );
        assert_eq!(
            rw("SELECT 1 WHERE x OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
            "SELECT 1 WHERE x ~ '^(t)$'"
        );
        assert_eq!(
            rw("SELECT pg_catalog.format_type(1, 2)"),
            "SELECT format_type(1, 2)"
        );
        assert_eq!(rw("SELECT $1::oid[]"), "SELECT $1::INT UNSIGNED[]");
    }

    #[test]
    fn types() {
        assert_eq!(
            format_type(1043, Some(14)).unwrap(),
            "character varying(10)"
        );
        assert_eq!(format_type(1016, None).unwrap(), "bigint[]");
        assert_eq!(
            format_type(1700, Some((12 << 16 | 2) + 4)).unwrap(),
            "numeric(12,2)"
        );
        assert_eq!(type_oid_by_name("integer"), Some(23));
        assert_eq!(type_oid_by_name("text[]"), Some(1009));
        assert_eq!(type_oid_by_name("pg_catalog.uuid"), Some(2950));
        assert_eq!(type_oid_by_name("hstore"), None);
        assert_eq!(pg_type_of(&list_of(DataType::Int64)), (1016, -1));
        assert_eq!(split_name("\"My T\""), (None, "My T".into()));
        assert_eq!(
            split_name("public.People"),
            (Some("public".into()), "people".into())
        );
        assert!(table_oid("a") % 2 == 0 && table_oid("a") >= 16_384);
    }

    async fn rows(s: &mut crate::Session, sql: &str) -> Vec<String> {
        use datafusion::arrow::compute::cast;
        let mut out = Vec::new();
        for o in s.execute(sql, &[]).await.unwrap() {
            for b in o.collect().await.unwrap() {
                for r in 0..b.num_rows() {
                    let cells: Vec<String> = b
                        .columns()
                        .iter()
                        .map(|c| {
                            let c = cast(c, &DataType::Utf8).unwrap();
                            let c = c
                                .as_any()
                                .downcast_ref::<datafusion::arrow::array::StringArray>()
                                .unwrap();
                            if c.is_null(r) {
                                "NULL".into()
                            } else {
                                c.value(r).to_string()
                            }
                        })
                        .collect();
                    out.push(cells.join("|"));
                }
            }
        }
        out
    }

    /// The catalogs follow the engine's tables live: a table created, a
    /// column added by a later write, `::regclass` both ways, visibility.
    #[tokio::test]
    async fn catalogs_follow_the_live_catalog() {
        use strata_storage::{EngineConfig, StoreLocation};
        let db = crate::Database::open(EngineConfig::new(StoreLocation::Memory))
            .await
            .unwrap();
        let mut s = db.session();
        s.execute(
            "CREATE TABLE t (_id BIGINT, name TEXT, price NUMERIC(10,2), tags TEXT[])",
            &[],
        )
        .await
        .unwrap();
        let cols = "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                    FROM pg_catalog.pg_attribute a WHERE a.attrelid = 't'::regclass AND a.attnum > 0 ORDER BY a.attnum";
        assert_eq!(
            rows(&mut s, cols).await,
            [
                "_id|bigint|true",
                "name|text|false",
                "price|numeric(10,2)|false",
                "tags|text[]|false"
            ]
        );
        s.execute("INSERT INTO t (_id, extra) VALUES (1, true)", &[])
            .await
            .unwrap();
        assert_eq!(
            rows(&mut s, cols).await.last().unwrap(),
            "extra|boolean|false"
        );
        assert_eq!(
            rows(&mut s, "SELECT c.oid::regclass::text, c.reltuples, pg_table_is_visible(c.oid) FROM pg_class c WHERE c.relname = 't'").await,
            ["t|1.0|true"]
        );
        assert_eq!(
            rows(&mut s, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't' ORDER BY ordinal_position").await,
            ["_id|bigint", "name|text", "price|numeric", "tags|ARRAY", "extra|boolean"]
        );
        // System columns: the temporal ones, with negative attnum.
        assert_eq!(
            rows(&mut s, "SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum < 0 ORDER BY attnum DESC").await,
            ["_valid_from", "_valid_to", "_system_from", "_system_to"]
        );
        // The lookup fails when the value is computed (planning or execution).
        let err = match s.execute("SELECT 'nosuch'::regclass", &[]).await {
            Err(e) => e,
            Ok(mut outs) => outs.remove(0).collect().await.unwrap_err(),
        };
        assert!(
            err.to_string()
                .contains("relation \"nosuch\" does not exist"),
            "{err}"
        );
        assert_eq!(
            rows(&mut s, "SELECT to_regclass('nosuch'), to_regtype('int4')").await,
            ["NULL|23"]
        );
    }

    /// Every table's primary key (`_id`, index `<table>_pkey`) in pg_index,
    /// pg_class, pg_constraint and information_schema, and the functions
    /// and syntax the clients read them with.
    #[tokio::test]
    async fn primary_keys_follow_the_live_catalog() {
        use strata_storage::{EngineConfig, StoreLocation};
        let db = crate::Database::open(EngineConfig::new(StoreLocation::Memory))
            .await
            .unwrap();
        let mut s = db.session();
        let idx = "SELECT c.relname, c.relkind, t.relname, i.indisprimary, i.indisunique, i.indkey, \
                   pg_get_indexdef(i.indexrelid), pg_get_indexdef(i.indexrelid, 1, true) \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid ORDER BY 1";
        assert!(rows(&mut s, idx).await.is_empty());
        // (`_id` is always a table's first column.)
        s.execute("CREATE TABLE a (x BIGINT, _id TEXT)", &[])
            .await
            .unwrap();
        s.execute("INSERT INTO b (_id, v) VALUES (1, 2)", &[])
            .await
            .unwrap();
        // A table named like another's index pushes that index's name on.
        s.execute("CREATE TABLE b_pkey (_id BIGINT)", &[])
            .await
            .unwrap();
        assert_eq!(
            rows(&mut s, idx).await,
            [
                "a_pkey|i|a|true|true|[1]|CREATE UNIQUE INDEX a_pkey ON public.a USING btree (_id)|_id",
                "b_pkey1|i|b|true|true|[1]|CREATE UNIQUE INDEX b_pkey1 ON public.b USING btree (_id)|_id",
                "b_pkey_pkey|i|b_pkey|true|true|[1]|CREATE UNIQUE INDEX b_pkey_pkey ON public.b_pkey USING btree (_id)|_id",
            ]
        );
        assert_eq!(
            rows(&mut s, "SELECT conname, contype, conkey, conrelid::regclass::text, conindid::regclass::text, \
                          pg_get_constraintdef(oid, true) FROM pg_constraint WHERE conrelid = 'a'::regclass").await,
            ["a_pkey|p|[1]|a|a_pkey|PRIMARY KEY (_id)"]
        );
        // Stable OIDs: the index's regclass round-trips; the table has an index.
        assert_eq!(
            rows(&mut s, "SELECT 'a_pkey'::regclass = i.indexrelid, t.relhasindex, ix.relam, ix.reltype \
                          FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class ix ON ix.oid = i.indexrelid \
                          WHERE t.relname = 'a'").await,
            ["true|true|403|0"]
        );
        // The index has its one attribute; it is no table or type.
        assert_eq!(
            rows(&mut s, "SELECT attname, attnum, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'a_pkey'::regclass").await,
            ["_id|1|text"]
        );
        assert!(rows(
            &mut s,
            "SELECT 1 FROM information_schema.tables WHERE table_name LIKE '%pkey1'"
        )
        .await
        .is_empty());
        assert!(
            rows(&mut s, "SELECT 1 FROM pg_type WHERE typname = 'a_pkey'")
                .await
                .is_empty()
        );
        assert_eq!(
            rows(&mut s, "SELECT tc.table_name, kcu.column_name, tc.constraint_name FROM information_schema.table_constraints tc \
                          JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name \
                          WHERE tc.constraint_type = 'PRIMARY KEY' ORDER BY 1").await,
            ["a|_id|a_pkey", "b|_id|b_pkey1", "b_pkey|_id|b_pkey_pkey"]
        );
        assert_eq!(
            rows(
                &mut s,
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'a'"
            )
            .await,
            ["CREATE UNIQUE INDEX a_pkey ON public.a USING btree (_id)"]
        );
        // JDBC's _pg_expandarray and (record).field.
        assert_eq!(
            rows(&mut s, "SELECT (information_schema._pg_expandarray(ARRAY[7, 8])).n, (information_schema._pg_expandarray(ARRAY[7, 8])).x").await,
            ["1|7", "2|8"]
        );
        assert_eq!(
            rows(&mut s, "SELECT r.k::regclass::text FROM (SELECT information_schema._pg_expandarray(i.indkey) AS keys, i.indrelid AS k FROM pg_index i) r \
                          WHERE (r.keys).x = 1 AND (r.keys).n = 1 ORDER BY 1").await,
            ["a", "b", "b_pkey"]
        );
        // SQLAlchemy's generate_subscripts beside unnest; psql's FROM unnest.
        assert_eq!(
            rows(
                &mut s,
                "SELECT unnest(ARRAY['p', 'q']) AS v, generate_subscripts(ARRAY['p', 'q'], 1) AS o"
            )
            .await,
            ["p|1", "q|2"]
        );
        assert!(rows(&mut s, "SELECT generate_subscripts(ARRAY[1], 2)")
            .await
            .is_empty());
        assert_eq!(
            rows(
                &mut s,
                "SELECT x FROM pg_catalog.unnest(ARRAY[3, 4]) x ORDER BY x DESC"
            )
            .await,
            ["4", "3"]
        );
        // EXISTS as a value (psql's \d of an index).
        assert_eq!(
            rows(&mut s, "SELECT c.relname, EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = c.oid AND contype = 'p') \
                          FROM pg_class c WHERE c.relname IN ('a', 'a_pkey') ORDER BY 1").await,
            ["a|false", "a_pkey|true"]
        );
        // regproc literals compare with regproc columns (JDBC getTypeInfo).
        assert_eq!(
            rows(&mut s, "SELECT count(*) FROM pg_type WHERE typinput = 'pg_catalog.array_in'::regproc AND typname = '_int8'").await,
            ["1"]
        );
        // Unknown OIDs describe nothing.
        assert_eq!(
            rows(
                &mut s,
                "SELECT pg_get_indexdef(12345), pg_get_constraintdef(12345)"
            )
            .await,
            ["NULL|NULL"]
        );
    }
}
