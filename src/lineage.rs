//! OpenLineage run events for loads and exports (`serve --openlineage-url`):
//! each `COPY … FROM STDIN`, Flight SQL ingest and server-side `COPY … TO
//! 'file'` is one run, sent as a START and a COMPLETE (or FAIL) event,
//! POSTed as JSON to the configured URL (for example Marquez's
//! `http://host:5000/api/v1/lineage`). Sending never holds up the
//! statement: events go out from a background task, in order, and a
//! failed POST is logged and dropped.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use strata_query::lineage::{Dataset, LineageRun};

/// The OpenLineage spec version the events follow.
const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const PRODUCER: &str = "https://github.com/strata-db/strata";

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

fn dataset(d: &Dataset, pg_namespace: &str) -> Value {
    match d {
        Dataset::Table { name, columns } => json!({
            "namespace": pg_namespace,
            "name": format!("{}.public.{name}", strata_query::pg_catalog::DATABASE),
            "facets": {
                "schema": {
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                    "fields": columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
                }
            }
        }),
        Dataset::File(path) => match path.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                json!({"namespace": format!("s3://{bucket}"), "name": key})
            }
            None => json!({"namespace": "file", "name": path}),
        },
    }
}

/// The START and the COMPLETE / FAIL event of a run.
pub fn events(run: &LineageRun, job_namespace: &str, pg_namespace: &str) -> [Value; 2] {
    let run_id = uuid::Uuid::new_v4().to_string();
    let target = run
        .outputs
        .iter()
        .chain(run.inputs.iter())
        .map(|d| match d {
            Dataset::Table { name, .. } => name.clone(),
            Dataset::File(p) => p.rsplit('/').next().unwrap_or(p).to_string(),
        })
        .next()
        .unwrap_or_default();
    let job = json!({
        "namespace": job_namespace,
        "name": format!("{}.{target}", run.kind),
        "facets": {
            "jobType": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                "processingType": "BATCH",
                "integration": "STRATA",
                "jobType": if run.kind == "load" { "LOAD" } else { "EXPORT" },
            }
        }
    });
    let inputs: Vec<Value> = run
        .inputs
        .iter()
        .map(|d| dataset(d, pg_namespace))
        .collect();
    let outputs: Vec<Value> = run
        .outputs
        .iter()
        .map(|d| dataset(d, pg_namespace))
        .collect();
    let mut run_facets = serde_json::Map::new();
    if let Some(sql) = &run.statement {
        run_facets.insert(
            "strata_statement".into(),
            json!({"_producer": PRODUCER, "_schemaURL": SCHEMA_URL, "query": sql}),
        );
    }
    if let Some(role) = &run.role {
        run_facets.insert(
            "strata_role".into(),
            json!({"_producer": PRODUCER, "_schemaURL": SCHEMA_URL, "role": role}),
        );
    }
    let (end_type, mut end_facets) = match &run.outcome {
        Ok(rows) => (
            "COMPLETE",
            json!({"strata_rows": {"_producer": PRODUCER, "_schemaURL": SCHEMA_URL, "rows": rows}}),
        ),
        Err(e) => (
            "FAIL",
            json!({"errorMessage": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                "message": e,
                "programmingLanguage": "SQL",
            }}),
        ),
    };
    if let Value::Object(m) = &mut end_facets {
        m.extend(run_facets.clone());
    }
    let event = |kind: &str, at: i64, facets: Value| {
        json!({
            "eventType": kind,
            "eventTime": time(at),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {"runId": run_id, "facets": facets},
            "job": job,
            "inputs": inputs,
            "outputs": outputs,
        })
    };
    [
        event("START", run.started, Value::Object(run_facets)),
        event(end_type, run.ended, end_facets),
    ]
}

/// Start the sender; the hook to give the database.
pub fn spawn(url: String, job_namespace: String) -> strata_query::lineage::LineageHook {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let body = serde_json::to_vec(&ev).unwrap_or_default();
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().is_success() => {}
                Ok(resp) => tracing::warn!(
                    "OpenLineage endpoint {url} answered {} to a run event",
                    resp.status()
                ),
                Err(e) => tracing::warn!("could not send a run event to {url}: {e}"),
            }
        }
    });
    Arc::new(move |run: LineageRun| {
        let pg = PG_NAMESPACE
            .get()
            .cloned()
            .unwrap_or_else(|| "postgres://localhost".to_string());
        for e in events(&run, &job_namespace, &pg) {
            let _ = tx.send(e);
        }
    })
}

/// `postgres://host:port` of this server's Postgres listener (OpenLineage's
/// naming for Postgres datasets), set once it listens.
pub static PG_NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_a_start_and_a_complete_event_naming_its_table() {
        let run = LineageRun {
            kind: "load",
            inputs: vec![],
            outputs: vec![Dataset::Table {
                name: "orders".into(),
                columns: vec![("_id".into(), "bigint".into())],
            }],
            started: 1_700_000_000_000_000,
            ended: 1_700_000_000_500_000,
            outcome: Ok(3),
            role: Some("loader".into()),
            statement: None,
        };
        let [start, end] = events(&run, "strata", "postgres://db:5432");
        assert_eq!(start["eventType"], "START");
        assert_eq!(end["eventType"], "COMPLETE");
        assert_eq!(start["run"]["runId"], end["run"]["runId"]);
        assert_eq!(end["job"]["name"], "load.orders");
        assert_eq!(end["outputs"][0]["name"], "strata.public.orders");
        assert_eq!(end["outputs"][0]["namespace"], "postgres://db:5432");
        assert_eq!(end["run"]["facets"]["strata_rows"]["rows"], 3);
        assert_eq!(end["eventTime"], "2023-11-14T22:13:20.500000Z");
    }
}
