//! Built-in Postgres types: OIDs, names, and the Arrow types they map to.

use super::*;

/// A built-in Postgres type: (oid, typname, typlen, typcategory, array oid).
/// The element type of an array type is the entry whose `array` names it.
pub(super) const BASE_TYPES: &[(i64, &str, i64, &str, i64)] = &[
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
pub(super) struct TypeRow {
    pub(super) oid: i64,
    pub(super) name: String,
    pub(super) len: i64,
    pub(super) category: String,
    pub(super) elem: i64,
    pub(super) array: i64,
    pub(super) relid: i64,
    pub(super) typtype: &'static str,
}

pub(super) fn builtin_types() -> &'static Vec<TypeRow> {
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

pub(super) fn type_by_oid(oid: i64) -> Option<&'static TypeRow> {
    builtin_types().iter().find(|t| t.oid == oid)
}

pub(super) fn type_by_name(name: &str) -> Option<&'static TypeRow> {
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
