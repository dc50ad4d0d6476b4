//! The HTTP port (`strata serve --http-port N`): `GET /health` for load
//! balancers and orchestrators, `GET /metrics` in Prometheus' text format
//! (version 0.0.4) for scrapers. Off unless a port is given; it serves on
//! the same address as the other listeners and asks for no credentials, as
//! it shows no data, only counters (put it behind the network policy that
//! guards the node's other operator ports).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::Db;

/// Postgres connections open now, and accepted since the process started.
static PG_OPEN: AtomicU64 = AtomicU64::new(0);
static PG_ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Counts one Postgres connection while it lives.
pub struct PgConnection(());

impl PgConnection {
    pub fn opened() -> PgConnection {
        PG_OPEN.fetch_add(1, Ordering::Relaxed);
        PG_ACCEPTED.fetch_add(1, Ordering::Relaxed);
        PgConnection(())
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        PG_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running HTTP listener.
pub struct HttpListener {
    local: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HttpListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the HTTP listener failed: {e}")),
            Err(e) => Err(format!("the HTTP listener task failed: {e}")),
        }
    }
}

#[derive(Clone)]
struct State {
    db: Db,
    started: Instant,
    role: &'static str,
}

/// Bind `addr` and serve `/health` and `/metrics` for `db` in the background.
pub async fn start(db: Db, addr: SocketAddr, role: &'static str) -> Result<HttpListener, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::serve::bind_error("HTTP", addr, &e, "--http-port"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let state = State {
        db,
        started: Instant::now(),
        role,
    };
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/contracts", get(contract_all))
        .route("/contracts/{table}", get(contract_one))
        .fallback(not_found)
        .with_state(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(HttpListener {
        local,
        stop: Some(tx),
        task,
    })
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found: this port serves GET /health, GET /metrics, GET /contracts and GET /contracts/<table>\n",
    )
}

/// Seconds since the Unix epoch of a system time in µs.
fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

async fn health(axum::extract::State(s): axum::extract::State<State>) -> impl IntoResponse {
    let engine = s.db.database().engine();
    let latest = engine.latest_system_time();
    let body = serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "role": s.role,
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        // The newest commit this node has applied; 0 when it has none yet.
        "latest_system_time": if latest > 0 { strata_storage::time::fmt_micros(latest) } else { String::new() },
        "seconds_since_latest_commit": if latest > 0 { Some(seconds((engine.clock_now() - latest).max(0))) } else { None },
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

/// `?format=json` or `Accept: application/json` (or a `.json` suffix on
/// the table) for JSON; YAML otherwise.
fn wants_json(q: &Option<String>, headers: &axum::http::HeaderMap) -> Result<bool, Response> {
    let format = q.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("format="))
            .map(str::to_ascii_lowercase)
    });
    match format.as_deref() {
        Some("json") => Ok(true),
        Some("yaml") | Some("yml") => Ok(false),
        Some(other) => Err((
            StatusCode::BAD_REQUEST,
            format!("unknown format `{other}`: use ?format=yaml (the default) or ?format=json\n"),
        )
            .into_response()),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))),
    }
}

async fn contract_reply(s: State, table: Option<&str>, json: bool) -> Response {
    match s.db.database().contract_now(table).await {
        Ok(c) if json => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("{}\n", serde_json::to_string_pretty(&c).unwrap_or_default()),
        )
            .into_response(),
        Ok(c) => (
            [(header::CONTENT_TYPE, "application/yaml")],
            strata_query::contract::to_yaml(&c),
        )
            .into_response(),
        Err(e @ strata_query::error::QueryError::UndefinedTable(_)) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The data contract of every table (the schema as one data product).
async fn contract_all(
    axum::extract::State(s): axum::extract::State<State>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    match wants_json(&q, &headers) {
        Ok(json) => contract_reply(s, None, json).await,
        Err(r) => r,
    }
}

/// The data contract of one table.
async fn contract_one(
    axum::extract::State(s): axum::extract::State<State>,
    axum::extract::Path(table): axum::extract::Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let (table, suffix_json) = match table.strip_suffix(".json") {
        Some(t) => (t.to_string(), true),
        None => (
            table
                .strip_suffix(".yaml")
                .or(table.strip_suffix(".yml"))
                .unwrap_or(&table)
                .to_string(),
            false,
        ),
    };
    match wants_json(&q, &headers) {
        Ok(json) => contract_reply(s, Some(&table), json || suffix_json).await,
        Err(r) => r,
    }
}

async fn metrics(axum::extract::State(s): axum::extract::State<State>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&s),
    )
}

/// A metric's `# HELP` and `# TYPE` lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn one(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value, escaped as the text format asks.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(s: &State) -> String {
    let mut out = String::new();
    let db = s.db.database();
    let engine = db.engine();
    one(
        &mut out,
        "strata_up",
        "gauge",
        "1 while the node serves.",
        1,
    );
    one(
        &mut out,
        "strata_uptime_seconds",
        "gauge",
        "Seconds since the HTTP port started.",
        s.started.elapsed().as_secs_f64(),
    );
    one(
        &mut out,
        "strata_postgres_connections",
        "gauge",
        "Postgres wire connections open now.",
        PG_OPEN.load(Ordering::Relaxed),
    );
    one(
        &mut out,
        "strata_postgres_connections_total",
        "counter",
        "Postgres wire connections accepted.",
        PG_ACCEPTED.load(Ordering::Relaxed),
    );
    let (statements, errors) = db.statement_counts();
    one(
        &mut out,
        "strata_statements_total",
        "counter",
        "SQL statements run, over every front end.",
        statements,
    );
    one(
        &mut out,
        "strata_statement_errors_total",
        "counter",
        "SQL statements that failed.",
        errors,
    );
    one(
        &mut out,
        "strata_point_lookups_total",
        "counter",
        "Statements answered as point lookups without planning.",
        db.point_lookups(),
    );
    let c = engine.commit_metrics();
    one(
        &mut out,
        "strata_commits_total",
        "counter",
        "Transactions this node committed.",
        c.commits,
    );
    one(
        &mut out,
        "strata_commit_failures_total",
        "counter",
        "Commits that failed (conflicts, storage errors, read-only node).",
        c.failures,
    );
    head(
        &mut out,
        "strata_commit_duration_seconds",
        "histogram",
        "Time from a commit request to its durable acknowledgement.",
    );
    for (le, n) in &c.buckets {
        let _ = writeln!(
            out,
            "strata_commit_duration_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "strata_commit_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        c.commits
    );
    let _ = writeln!(out, "strata_commit_duration_seconds_sum {}", c.seconds_sum);
    let _ = writeln!(out, "strata_commit_duration_seconds_count {}", c.commits);
    let latest = engine.latest_system_time();
    one(
        &mut out,
        "strata_latest_system_time_seconds",
        "gauge",
        "System time of the newest commit this node has applied (Unix seconds; 0: none).",
        seconds(latest.max(0)),
    );
    for (name, v) in engine.storage_counters() {
        one(
            &mut out,
            &format!("strata_{name}_total"),
            "counter",
            &format!("Storage maintenance: {}.", name.replace('_', " ")),
            v,
        );
    }
    // Segments per table and tier.
    let mut segs: std::collections::BTreeMap<(String, &'static str), (u64, u64, u64)> =
        Default::default();
    for i in engine.segments_info() {
        let e = segs.entry((i.table.clone(), i.tier)).or_default();
        e.0 += 1;
        e.1 += i.bytes;
        e.2 += i.rows;
    }
    for (name, help, pick) in [
        ("strata_segments", "Segments per table and tier.", 0usize),
        (
            "strata_segment_bytes",
            "Bytes of segments per table and tier.",
            1,
        ),
        (
            "strata_segment_rows",
            "Row versions in segments per table and tier.",
            2,
        ),
    ] {
        head(&mut out, name, "gauge", help);
        for ((table, tier), v) in &segs {
            let v = [v.0, v.1, v.2][pick];
            let _ = writeln!(
                out,
                "{name}{{table=\"{}\",tier=\"{tier}\"}} {v}",
                label(table)
            );
        }
    }
    if let Some(cache) = engine.storage().cache_stats() {
        for (name, kind, help, v) in [
            (
                "strata_cache_limit_bytes",
                "gauge",
                "Size limit of the disk cache.",
                cache.limit_bytes,
            ),
            (
                "strata_cache_used_bytes",
                "gauge",
                "Bytes the disk cache holds or has reserved.",
                cache.used_bytes,
            ),
            (
                "strata_cache_files",
                "gauge",
                "Objects in the disk cache.",
                cache.files,
            ),
            (
                "strata_cache_hits_total",
                "counter",
                "Reads served from the disk cache.",
                cache.hits,
            ),
            (
                "strata_cache_misses_total",
                "counter",
                "Reads that fetched from the object store.",
                cache.misses,
            ),
            (
                "strata_cache_evictions_total",
                "counter",
                "Objects evicted from the disk cache.",
                cache.evictions,
            ),
            (
                "strata_cache_fetched_bytes_total",
                "counter",
                "Bytes fetched from the object store.",
                cache.fetched_bytes,
            ),
        ] {
            one(&mut out, name, kind, help, v);
        }
    }
    out
}
