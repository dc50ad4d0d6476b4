//! Data contracts generated from the live catalog: an Open Data Contract
//! Standard v3.1.0 document for a table (or for every table of the schema,
//! as one data product), with columns, their logical and physical types,
//! `_id` as primary key, required columns, descriptions (COMMENT ON),
//! classification (SECURITY LABEL), the servers' endpoints and a freshness
//! measure from the latest system time. Served by `SELECT
//! strata_contract('t')` and by `GET /contracts/<table>` on the HTTP port;
//! generated each time, so it cannot drift from the schema.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use parking_lot::RwLock;
use serde_json::{json, Map, Value};

use crate::error::{QueryError, Result};

/// Where clients reach this node (set by the server once it listens).
#[derive(Debug, Default, Clone)]
pub struct Endpoints {
    /// Host and port of the Postgres listener.
    pub postgres: Option<(String, u16)>,
    /// Host and port of the Flight SQL listener.
    pub flight: Option<(String, u16)>,
}

/// The endpoints contracts name, shared with the SQL function.
pub type SharedEndpoints = Arc<RwLock<Endpoints>>;

/// ODCS logical type of a column.
fn logical_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "integer",
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "number",
        DataType::Boolean => "boolean",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(..) => "timestamp",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "array",
        DataType::Struct(_) | DataType::Map(..) => "object",
        _ => "string",
    }
}

/// The contract of `table`, or of every table (`None`), as JSON.
pub fn contract(
    engine: &strata_storage::Engine,
    state: &crate::access::AccessState,
    endpoints: &Endpoints,
    table: Option<&str>,
) -> Result<Value> {
    let tables: Vec<String> = match table {
        Some(t) => {
            if strata_storage::schema::is_reserved(t) || !engine.has_table(t) {
                let hint = crate::error::closest(t, &engine.table_names())
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(QueryError::UndefinedTable(format!(
                    "table `{t}` does not exist{hint}: a contract describes an existing table"
                )));
            }
            vec![t.to_string()]
        }
        None => {
            let mut v = engine.table_names();
            v.sort();
            v
        }
    };
    let db = crate::pg_catalog::DATABASE;
    let mut schema = Vec::new();
    for t in &tables {
        let Some(ts) = engine.table_schema(t) else {
            continue;
        };
        let mut props = Vec::new();
        for f in ts.columns.iter() {
            let (oid, typmod) = crate::pg_catalog::pg_type_of_field(f);
            let physical = crate::pg_catalog::format_type(oid, Some(typmod as i64))
                .unwrap_or_else(|| "text".into());
            let key = f.name() == strata_storage::schema::ID;
            let mut p = Map::new();
            p.insert("name".into(), json!(f.name()));
            p.insert("physicalName".into(), json!(f.name()));
            p.insert("logicalType".into(), json!(logical_type(f.data_type())));
            p.insert("physicalType".into(), json!(physical));
            p.insert("required".into(), json!(key || !f.is_nullable()));
            if key {
                p.insert("primaryKey".into(), json!(true));
                p.insert("primaryKeyPosition".into(), json!(1));
                p.insert("unique".into(), json!(true));
            }
            if let Some(d) = state.comment(t, Some(f.name())) {
                p.insert("description".into(), json!(d));
            } else if key {
                p.insert(
                    "description".into(),
                    json!("The entity's key: each row is one version of the entity with this _id."),
                );
            }
            if let Some(l) = state.label(t, Some(f.name())) {
                p.insert("classification".into(), json!(l));
            }
            props.push(Value::Object(p));
        }
        let mut o = Map::new();
        o.insert("name".into(), json!(t));
        o.insert("physicalName".into(), json!(t));
        o.insert("physicalType".into(), json!("table"));
        o.insert("logicalType".into(), json!("object"));
        o.insert(
            "description".into(),
            json!(state.comment(t, None).cloned().unwrap_or_else(|| format!(
                "Bitemporal table {t}: every version of every row is kept, on valid time (_valid_from, _valid_to) and system time (_system_from, _system_to); read a past state with FOR SYSTEM_TIME AS OF / FOR VALID_TIME AS OF."
            ))),
        );
        if let Some(l) = state.label(t, None) {
            o.insert("tags".into(), json!([l]));
        }
        o.insert("properties".into(), Value::Array(props));
        schema.push(Value::Object(o));
    }
    let mut servers = Vec::new();
    if let Some((host, port)) = &endpoints.postgres {
        servers.push(json!({
            "server": "postgres",
            "type": "postgres",
            "description": "Strata over the Postgres wire protocol (psql, JDBC, psycopg, …).",
            "host": host,
            "port": port,
            "database": db,
            "schema": "public",
        }));
    }
    if let Some((host, port)) = &endpoints.flight {
        servers.push(json!({
            "server": "flight-sql",
            "type": "custom",
            "description": "Strata over Arrow Flight SQL (ADBC, pyarrow).",
            "host": host,
            "endpointUrl": format!("grpc://{host}:{port}"),
            "database": db,
            "customProperties": [{"property": "protocol", "value": "arrow-flight-sql"}],
        }));
    }
    let latest = engine.latest_system_time();
    let now = engine.clock_now();
    let (id, name, purpose) = match table {
        Some(t) => (
            format!("urn:strata:{db}:public:{t}"),
            t.to_string(),
            state.comment(t, None).cloned(),
        ),
        None => (
            format!("urn:strata:{db}:public"),
            format!("{db}.public"),
            Some(format!(
                "The data product of database {db}: every table of schema public."
            )),
        ),
    };
    let mut c = Map::new();
    c.insert("apiVersion".into(), json!("v3.1.0"));
    c.insert("kind".into(), json!("DataContract"));
    c.insert("id".into(), json!(id));
    c.insert("name".into(), json!(name));
    c.insert("version".into(), json!("1.0.0"));
    c.insert("status".into(), json!("active"));
    if let Some(p) = purpose {
        c.insert("description".into(), json!({ "purpose": p }));
    }
    c.insert("tags".into(), json!(["strata", "bitemporal"]));
    if !servers.is_empty() {
        c.insert("servers".into(), Value::Array(servers));
    }
    c.insert("schema".into(), Value::Array(schema));
    let mut sla = vec![json!({
        "property": "retention",
        "value": "unlimited",
        "description": "Every version is kept (immutable history) until ERASE removes an entity from all of it.",
    })];
    if latest > 0 {
        sla.push(json!({
            "property": "latency",
            "value": ((now - latest).max(0) as f64 / 1e6).round() as i64,
            "unit": "s",
            "description": format!(
                "Freshness when this contract was generated: seconds since the latest commit (system time {}).",
                strata_storage::time::fmt_micros(latest)
            ),
        }));
    }
    c.insert("slaProperties".into(), Value::Array(sla));
    c.insert(
        "contractCreatedTs".into(),
        json!(chrono::DateTime::from_timestamp_micros(now)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()),
    );
    Ok(Value::Object(c))
}

/// A JSON value as YAML (block style; strings double-quoted, which YAML
/// reads as JSON strings).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    yaml(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml(x, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml(x, indent, out);
                    }
                    Value::Object(_) => out.push_str(&format!("{pad}{k}: {{}}\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}{k}: []\n")),
                    s => out.push_str(&format!("{pad}{k}: {}\n", scalar(s))),
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                match x {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the others below it.
                        let mut inner = String::new();
                        yaml(x, indent + 2, &mut inner);
                        let inner = inner.trim_start_matches(' ');
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                    Value::Array(_) | Value::Object(_) => out.push_str(&format!("{pad}- {}\n", x)),
                    s => out.push_str(&format!("{pad}- {}\n", scalar(s))),
                }
            }
        }
        s => out.push_str(&format!("{pad}{}\n", scalar(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nests_maps_and_lists() {
        let v = json!({"a": 1, "b": {"c": "x\"y"}, "d": [{"e": true, "f": [1, 2]}, "g"], "h": []});
        assert_eq!(
            to_yaml(&v),
            "a: 1\nb:\n  c: \"x\\\"y\"\nd:\n- e: true\n  f:\n  - 1\n  - 2\n- \"g\"\nh: []\n"
        );
    }
}
