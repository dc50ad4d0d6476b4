//! `strata serve`: one process over a data directory or object store, with
//! the Postgres listener and the Arrow Flight SQL listener. Settings come from flags, then `STRATA_*`
//! environment variables, then a TOML config file (`--config`), then defaults.
//!
//! ```toml
//! # strata.toml
//! data_dir = "/var/lib/strata"     # or: store_url = "s3://bucket/prefix"
//! listen = "0.0.0.0"
//! pg_port = 5432
//! flight_port = 9833
//! statement_timeout = "30s"       # 0 (the default) never times out
//! flush_rows = 1000000
//! catch_up_ms = 100
//! role = "writer"                  # or "reader", "compactor"
//! memory_limit = "3GiB"            # or "50%", or bytes; default: half the RAM
//! spill_dir = "/var/tmp/strata"    # default: the system temp dir
//! cache_dir = "/var/cache/strata"  # remote stores only
//! cache_size = "10GiB"
//! export_root = "/srv/exports"     # or "s3://bucket/exports"; default: no server-side COPY TO 'file'
//! http_port = 9834                 # /health and /metrics; default: no HTTP port
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{parse_test_clock, DEFAULT_DATA_DIR};
use crate::{Config, Db};

pub const DEFAULT_LISTEN: &str = "127.0.0.1";
pub const DEFAULT_PG_PORT: u16 = 5432;
pub const DEFAULT_FLUSH_ROWS: usize = 1_000_000;
pub const DEFAULT_CATCH_UP_MS: u64 = 100;
pub const DEFAULT_FLIGHT_PORT: u16 = 9833;
pub use crate::MANIFEST_CHECK;

/// What a node does on a shared store (`--role`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries and writes; compacts and collects in the background (unless
    /// --no-compaction).
    #[default]
    Writer,
    /// Queries only: writes are refused (SQLSTATE 25006) and nothing is
    /// written to the store.
    Reader,
    /// No client ports: follows the log, flushes, compacts and collects.
    Compactor,
}

/// Flags of `strata serve`. Each also reads a `STRATA_*` environment variable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML config file; flags and environment variables override it.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory, created if missing [default: ./strata-data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Object store URL (s3://bucket/prefix); overrides the data directory.
    #[arg(long, env = "STRATA_STORE_URL")]
    pub store_url: Option<String>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<IpAddr>,
    /// Postgres wire protocol port; 0 picks a free one [default: 5432].
    #[arg(long, env = "STRATA_PG_PORT")]
    pub pg_port: Option<u16>,
    /// Flush the live index to segments past this many rows [default: 1000000].
    #[arg(long, env = "STRATA_FLUSH_ROWS")]
    pub flush_rows: Option<usize>,
    /// How often to pick up other nodes' commits, in milliseconds; each
    /// tick costs one GET [default: 100].
    #[arg(long, env = "STRATA_CATCH_UP_MS")]
    pub catch_up_ms: Option<u64>,
    /// What this node does on a shared store: writer (queries, writes and
    /// background compaction), reader (queries only; writes refused), or
    /// compactor (no client ports; compaction and collection only)
    /// [default: writer].
    #[arg(long, env = "STRATA_ROLE", value_enum)]
    pub role: Option<Role>,
    /// Same as --role reader.
    #[arg(long, env = "STRATA_READ_ONLY", conflicts_with = "role")]
    pub read_only: bool,
    /// A writer that leaves compaction and collection to other nodes
    /// (a --role compactor node).
    #[arg(long, env = "STRATA_NO_COMPACTION")]
    pub no_compaction: bool,
    /// Deterministic clock for tests: START,STEP (e.g. 2020-01-01T00:00:00Z,1d).
    #[arg(long, env = "STRATA_TEST_CLOCK")]
    pub test_clock: Option<String>,
    /// Arrow Flight SQL port; 0 picks a free one [default: 9833, or a free
    /// one with --pg-port 0]. A second server on one machine needs both
    /// --pg-port and --flight-port.
    #[arg(long, env = "STRATA_FLIGHT_PORT")]
    pub flight_port: Option<u16>,
    /// Default statement_timeout of Postgres sessions: milliseconds or a
    /// duration like 30s or 5min; 0 never times out [default: 0]. Sessions
    /// may change it with SET statement_timeout.
    #[arg(long, env = "STRATA_STATEMENT_TIMEOUT")]
    pub statement_timeout: Option<String>,
    /// Authentication: `password` (SCRAM-SHA-256 on Postgres, basic → bearer
    /// on Flight) or `trust` [default: password when users are configured,
    /// trust otherwise, and trust is refused on a non-loopback address].
    #[arg(long, env = "STRATA_AUTH")]
    pub auth: Option<String>,
    /// A user, as NAME:PASSWORD (repeatable; env: comma-separated).
    #[arg(long = "user", env = "STRATA_USERS", value_delimiter = ',')]
    pub users: Vec<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "STRATA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "STRATA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Refuse connections that do not use TLS.
    #[arg(long, env = "STRATA_TLS_REQUIRED")]
    pub tls_required: bool,
    /// Memory budget of the process: 3GiB, 512MiB, 2GB, bytes, 50% of the
    /// RAM, or none; queries get half of it and spill past their share
    /// [default: 50% of the RAM].
    #[arg(long, env = "STRATA_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Directory for query spill files [default: the system temp dir].
    #[arg(long, env = "STRATA_SPILL_DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Disk cache directory for a remote store [default:
    /// $XDG_CACHE_HOME/strata/<hash of the store URL>].
    #[arg(long, env = "STRATA_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Disk cache size limit (10GiB, 500MB, bytes; 0 turns it off) [default: 10GiB].
    #[arg(long, env = "STRATA_CACHE_SIZE")]
    pub cache_size: Option<String>,
    /// How long superseded segments and manifests stay readable, so queries
    /// that planned against them finish (10min, 30s, 0s) [default: 10min].
    #[arg(long, env = "STRATA_GC_GRACE")]
    pub gc_grace: Option<String>,
    /// How long log records already in segments are kept for followers and
    /// change feeds (24h, 0s) [default: 24h].
    #[arg(long, env = "STRATA_LOG_RETENTION")]
    pub log_retention: Option<String>,
    /// Where server-side COPY … TO 'file' (FORMAT parquet | delta) may
    /// write: a directory or an object store URL (s3://bucket/prefix);
    /// targets are relative to it [default: none, such COPYs are refused;
    /// psql's \copy writes on the client].
    #[arg(long, env = "STRATA_EXPORT_ROOT")]
    pub export_root: Option<String>,
    /// Publish every committed change to Kafka: bootstrap brokers,
    /// HOST:PORT[,HOST:PORT…] [default: no Kafka sink].
    #[arg(long, env = "STRATA_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The Kafka sink's topic, created with one partition if missing
    /// [default: strata.changes].
    #[arg(long, env = "STRATA_KAFKA_TOPIC")]
    pub kafka_topic: Option<String>,
    /// HTTP port for operators: GET /health (JSON), GET /metrics
    /// (Prometheus text format) and GET /contracts/<table> (ODCS data
    /// contracts), without credentials; 0 picks a free one [default: no
    /// HTTP port].
    #[arg(long, env = "STRATA_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Send an OpenLineage run event (START, then COMPLETE or FAIL) for
    /// every load (COPY FROM STDIN, Flight SQL ingest) and server-side
    /// export (COPY TO 'file'): POSTed as JSON to this URL, for example
    /// http://marquez:5000/api/v1/lineage [default: none].
    #[arg(long, env = "STRATA_OPENLINEAGE_URL")]
    pub openlineage_url: Option<String>,
    /// The job namespace of those events [default: strata].
    #[arg(long, env = "STRATA_OPENLINEAGE_NAMESPACE")]
    pub openlineage_namespace: Option<String>,
}

/// A size in a config file: `"3GiB"` or a number of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeSetting {
    Bytes(u64),
    Text(String),
}

impl SizeSetting {
    fn text(&self) -> String {
        match self {
            SizeSetting::Bytes(b) => b.to_string(),
            SizeSetting::Text(t) => t.clone(),
        }
    }
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub store_url: Option<String>,
    pub listen: Option<IpAddr>,
    pub pg_port: Option<u16>,
    pub flush_rows: Option<usize>,
    pub catch_up_ms: Option<u64>,
    pub role: Option<Role>,
    pub no_compaction: Option<bool>,
    pub test_clock: Option<String>,
    pub flight_port: Option<u16>,
    pub statement_timeout: Option<String>,
    pub auth: Option<String>,
    /// `name = "password"` (or a stored `SCRAM-SHA-256$…` verifier).
    pub users: Option<std::collections::BTreeMap<String, String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_required: Option<bool>,
    pub memory_limit: Option<SizeSetting>,
    pub spill_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub cache_size: Option<SizeSetting>,
    pub gc_grace: Option<String>,
    pub log_retention: Option<String>,
    pub export_root: Option<String>,
    pub kafka_brokers: Option<String>,
    pub kafka_topic: Option<String>,
    pub http_port: Option<u16>,
    pub openlineage_url: Option<String>,
    pub openlineage_namespace: Option<String>,
}

/// Settings after flags, environment, file and defaults are merged.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub data_dir: PathBuf,
    pub store_url: Option<String>,
    pub listen: IpAddr,
    pub pg_port: u16,
    pub flush_rows: usize,
    pub catch_up: Duration,
    pub role: Role,
    /// Background compaction and collection (writer and compactor nodes).
    pub compaction: bool,
    pub test_clock: Option<String>,
    pub flight_port: u16,
    /// The default `statement_timeout` of Postgres sessions.
    pub statement_timeout: Option<String>,
    /// Who may connect, shared by the Postgres and Flight SQL listeners.
    pub auth: crate::auth::Auth,
    /// TLS for both listeners, when configured.
    pub tls: Option<crate::auth::TlsSettings>,
    /// Bytes; `None`: no limit.
    pub memory_limit: Option<usize>,
    pub spill_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub cache_size: Option<u64>,
    pub gc_grace: Option<Duration>,
    pub log_retention: Option<Duration>,
    /// Where server-side COPY … TO 'file' may write.
    pub export_root: Option<String>,
    /// The Kafka sink, when configured.
    pub kafka: Option<crate::kafka::KafkaSinkConfig>,
    /// The HTTP port (`/health`, `/metrics`), if any.
    pub http_port: Option<u16>,
    /// Where OpenLineage run events go, and their job namespace.
    pub openlineage: Option<(String, String)>,
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<Resolved, String> {
        let file = match &self.config {
            Some(p) => read_config(p)?,
            None => FileConfig::default(),
        };
        // A relative data_dir in a config file is relative to that file.
        let file_dir = file
            .data_dir
            .map(|d| match (&self.config, d.is_relative()) {
                (Some(cfg), true) => cfg.parent().unwrap_or(Path::new(".")).join(d),
                _ => d,
            });
        let memory_limit = match self
            .memory_limit
            .clone()
            .or(file.memory_limit.as_ref().map(|m| m.text()))
        {
            Some(m) => crate::config::parse_memory_limit(&m)?,
            None => crate::config::default_memory_limit(),
        };
        let cache_size = setting(&self.cache_size, file.cache_size.map(|m| m.text()), |c| {
            crate::config::parse_size(c, "--cache-size")
        })?;
        let gc_grace = setting(&self.gc_grace, file.gc_grace, |g| {
            crate::config::parse_duration(g, "--gc-grace")
        })?;
        let log_retention = setting(&self.log_retention, file.log_retention, |r| {
            crate::config::parse_duration(r, "--log-retention")
        })?;
        let role = if self.read_only {
            Role::Reader
        } else {
            self.role.or(file.role).unwrap_or_default()
        };
        Ok(Resolved {
            memory_limit,
            gc_grace,
            log_retention,
            export_root: self.export_root.clone().or(file.export_root),
            kafka: kafka_sink(
                self.kafka_brokers.clone().or(file.kafka_brokers),
                self.kafka_topic.clone().or(file.kafka_topic),
            )?,
            http_port: self.http_port.or(file.http_port),
            openlineage: openlineage(
                self.openlineage_url.clone().or(file.openlineage_url),
                self.openlineage_namespace
                    .clone()
                    .or(file.openlineage_namespace),
            )?,
            spill_dir: self.spill_dir.clone().or(file.spill_dir),
            cache_dir: self.cache_dir.clone().or(file.cache_dir),
            cache_size,
            data_dir: self
                .data_dir
                .clone()
                .or(file_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            store_url: self.store_url.clone().or(file.store_url),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address")),
            pg_port: self.pg_port.or(file.pg_port).unwrap_or(DEFAULT_PG_PORT),
            flush_rows: self
                .flush_rows
                .or(file.flush_rows)
                .unwrap_or(DEFAULT_FLUSH_ROWS),
            catch_up: Duration::from_millis(
                self.catch_up_ms
                    .or(file.catch_up_ms)
                    .unwrap_or(DEFAULT_CATCH_UP_MS)
                    .max(1),
            ),
            role,
            compaction: match role {
                Role::Reader => false,
                Role::Compactor => true,
                Role::Writer => !(self.no_compaction || file.no_compaction.unwrap_or(false)),
            },
            test_clock: self.test_clock.clone().or(file.test_clock),
            // With no Flight port given, `--pg-port 0` (tests, throwaway
            // servers) also picks a free Flight port instead of 9833.
            flight_port: self.flight_port.or(file.flight_port).unwrap_or(
                if self.pg_port.or(file.pg_port) == Some(0) {
                    0
                } else {
                    DEFAULT_FLIGHT_PORT
                },
            ),
            statement_timeout: self.statement_timeout.clone().or(file.statement_timeout),
            auth: crate::auth::Auth::from_settings(
                self.auth.as_deref().or(file.auth.as_deref()),
                &self.users,
                file.users.as_ref(),
                self.listen
                    .or(file.listen)
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address")),
            )?,
            tls: crate::auth::TlsSettings::from_settings(
                self.tls_cert.clone().or(file.tls_cert),
                self.tls_key.clone().or(file.tls_key),
                self.tls_required || file.tls_required.unwrap_or(false),
            )?,
        })
    }
}

/// A text setting from the flag (or env var), else the config file, parsed.
fn setting<T>(
    flag: &Option<String>,
    file: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    flag.clone().or(file).map(|v| parse(&v)).transpose()
}

fn read_config(p: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| format!("cannot read config file {}: {e}", p.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", p.display()))
}

/// The Kafka sink's settings: brokers are required, the topic defaults.
fn openlineage(
    url: Option<String>,
    namespace: Option<String>,
) -> Result<Option<(String, String)>, String> {
    let Some(url) = url else {
        if namespace.is_some() {
            return Err(
                "--openlineage-namespace needs --openlineage-url (where to send the events)".into(),
            );
        }
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(format!(
            "--openlineage-url `{url}` is not an HTTP URL: give one like http://marquez:5000/api/v1/lineage"
        ));
    }
    Ok(Some((url, namespace.unwrap_or_else(|| "strata".into()))))
}

fn kafka_sink(
    brokers: Option<String>,
    topic: Option<String>,
) -> Result<Option<crate::kafka::KafkaSinkConfig>, String> {
    let Some(brokers) = brokers else {
        return match topic {
            Some(_) => Err(
                "--kafka-topic needs --kafka-brokers HOST:PORT (the Kafka sink's brokers)".into(),
            ),
            None => Ok(None),
        };
    };
    let brokers: Vec<String> = brokers
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if brokers.is_empty() {
        return Err("--kafka-brokers is empty: give HOST:PORT[,HOST:PORT…]".into());
    }
    for b in &brokers {
        let port = b
            .rsplit_once(':')
            .and_then(|(h, p)| (!h.is_empty()).then_some(p));
        if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
            return Err(format!(
                "--kafka-brokers: `{b}` is not HOST:PORT (for example 127.0.0.1:9092)"
            ));
        }
    }
    let topic = topic.unwrap_or_else(|| crate::kafka::DEFAULT_TOPIC.to_string());
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty()
        || topic.len() > 249
        || !topic.chars().all(legal)
        || topic == "."
        || topic == ".."
    {
        return Err(format!(
            "--kafka-topic `{topic}` is not a Kafka topic name: use up to 249 letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(Some(crate::kafka::KafkaSinkConfig { brokers, topic }))
}

impl Resolved {
    pub fn config(&self) -> Result<Config, String> {
        let mut c = match &self.store_url {
            Some(u) => Config::url(u),
            None => Config::dir(&self.data_dir),
        };
        if let Some(tc) = &self.test_clock {
            let (s, st) = parse_test_clock(tc)?;
            c = c.with_test_clock(s, st);
        }
        c = c.with_memory_limit(self.memory_limit);
        if let Some(d) = &self.spill_dir {
            c = c.with_spill_dir(d);
        }
        if let Some(d) = &self.cache_dir {
            c = c.with_cache_dir(d);
        }
        if let Some(n) = self.cache_size {
            c = c.with_cache_size(n);
        }
        if let Some(g) = self.gc_grace {
            c = c.with_gc_grace(g);
        }
        if let Some(r) = self.log_retention {
            c = c.with_log_retention(r);
        }
        c.read_only = self.role == Role::Reader;
        c.export_root = self.export_root.clone();
        c.compaction.background = self.compaction;
        Ok(c.with_flush_rows(self.flush_rows))
    }

    /// Where the data lives, for people.
    pub fn location(&self) -> String {
        match &self.store_url {
            Some(u) => u.clone(),
            None => std::fs::canonicalize(&self.data_dir)
                .unwrap_or_else(|_| self.data_dir.clone())
                .display()
                .to_string(),
        }
    }
}

/// An object-store client that found no credentials asks the cloud's
/// instance metadata service (169.254.169.254, or Azure's and Google's
/// equivalents) and fails with an error about that address: say what to set.
fn credentials_hint(e: &str) -> &'static str {
    if e.contains("169.254.169.254") || e.contains("metadata.google.internal") {
        "\n(no credentials were given, so the client asked this machine's cloud metadata service, \
         which is not there: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT for \
         an S3-compatible server), AZURE_STORAGE_ACCOUNT_KEY, or GOOGLE_SERVICE_ACCOUNT; see \
         docs/operations.md)"
    } else {
        ""
    }
}

/// Why a listener could not start, and for a taken port which flag moves it.
pub fn bind_error(what: &str, addr: SocketAddr, e: &std::io::Error, flag: &str) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "cannot listen for {what} on {addr}: port {} is already in use (another strata serve?); \
             choose another with {flag} PORT ({flag} 0 picks a free one)",
            addr.port()
        )
    } else {
        format!("cannot listen for {what} on {addr}: {e}")
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Run the server until SIGINT/SIGTERM.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let r = args.resolve()?;
    let config = r.config()?;
    if r.store_url.is_none() {
        std::fs::create_dir_all(&r.data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", r.data_dir.display()))?;
    }
    let db = Db::open(config).await.map_err(|e| {
        format!(
            "cannot open the database at {}: {e}{}",
            r.location(),
            credentials_hint(&e.to_string())
        )
    })?;
    let follower = db.follow(r.catch_up);
    let _sink = r.kafka.clone().map(|k| {
        println!(
            "  kafka sink: changes of every table to topic {} on {}",
            k.topic,
            k.brokers.join(",")
        );
        crate::kafka::spawn(db.database().engine().clone(), k)
    });
    let http = match r.http_port {
        Some(port) => {
            let role = match r.role {
                Role::Writer => "writer",
                Role::Reader => "reader",
                Role::Compactor => "compactor",
            };
            Some(crate::http::start(db.clone(), SocketAddr::new(r.listen, port), role).await?)
        }
        None => None,
    };
    let http_line = || {
        if let Some(h) = &http {
            println!(
                "  http listening on {} (/health, /metrics, /contracts)",
                h.local_addr()
            );
        }
    };
    if r.role == Role::Compactor {
        println!(
            "Strata {} compacting (--role compactor)",
            env!("CARGO_PKG_VERSION")
        );
        println!("  data in {}", r.location());
        http_line();
        println!("  no client ports; stop with Ctrl-C (SIGINT) or SIGTERM");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        shutdown_signal().await;
        if let Some(h) = http {
            let _ = h.stop().await;
        }
        follower.abort();
        println!("Strata stopped");
        let _ = std::io::stdout().flush();
        return Ok(());
    }
    let addr = SocketAddr::new(r.listen, r.pg_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error("Postgres", addr, &e, "--pg-port"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Authentication and TLS for the Postgres listener (a bad certificate fails here).
    let defaults: Vec<(&str, &str)> = r
        .statement_timeout
        .as_deref()
        .map(|t| ("statement_timeout", t))
        .into_iter()
        .collect();
    // The configured users are the bootstrap superusers; in trust mode a
    // name that is no stored role is a superuser too (crate docs/governance.md).
    db.database().access().set_bootstrap(
        r.auth.users.keys().cloned(),
        r.auth.mode == crate::auth::AuthMode::Trust,
    );
    // The audit trail, when logins prove who is who (docs/governance.md).
    db.database()
        .set_audit(r.auth.mode == crate::auth::AuthMode::Password);
    let pg = crate::pgwire::Shared::configured(db.clone(), &r.auth, r.tls.as_ref(), &defaults)
        .map_err(|e| format!("--statement-timeout: {e}"))?;
    let flight = crate::flight::start(db.clone(), &r).await?;

    println!("Strata {} serving", env!("CARGO_PKG_VERSION"));
    println!("  data in {}", r.location());
    if r.role == Role::Reader {
        println!("  read-only node (--role reader): writes are refused");
    }
    let open = db.database().engine().open_report();
    println!(
        "  opened in {} ms: read {} bytes in {} objects (manifest, deletion vectors, {} log records); {} segments",
        open.millis, open.bytes_read, open.objects_read, open.log_records_replayed, open.segments
    );
    if let Some(c) = db.database().engine().storage().cache_stats() {
        println!(
            "  cache in {} ({} of {} bytes used)",
            c.dir, c.used_bytes, c.limit_bytes
        );
    }
    match r.memory_limit {
        Some(m) => println!(
            "  memory limit {m} bytes ({} for queries)",
            (m as f64 * strata_query::session::QUERY_MEMORY_SHARE) as usize
        ),
        None => println!("  memory limit: none"),
    }
    println!("  postgres listening on {local}");
    println!("  flight sql listening on {}", flight.local_addr());
    http_line();
    let host = if local.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        local.ip().to_string()
    };
    println!(
        "  connect with: psql -h {host} -p {} -U strata",
        local.port()
    );
    if let Some((url, namespace)) = &r.openlineage {
        let _ = crate::lineage::PG_NAMESPACE.set(format!("postgres://{host}:{}", local.port()));
        db.database()
            .set_lineage(crate::lineage::spawn(url.clone(), namespace.clone()));
        println!("  lineage: OpenLineage run events to {url}");
    }
    // Data contracts (strata_contract, /contracts) name these endpoints.
    db.database()
        .set_endpoints(strata_query::contract::Endpoints {
            postgres: Some((host.clone(), local.port())),
            flight: Some((host.clone(), flight.local_addr().port())),
        });
    println!("  stop with Ctrl-C (SIGINT) or SIGTERM");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let served = crate::pgwire::serve_shared(pg, listener, shutdown_signal()).await;
    if let Err(e) = flight.stop().await {
        eprintln!("{e}");
    }
    if let Some(h) = http {
        if let Err(e) = h.stop().await {
            eprintln!("{e}");
        }
    }
    follower.abort();
    println!("Strata stopped");
    let _ = std::io::stdout().flush();
    served.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("strata.toml");
        std::fs::write(
            &cfg,
            "data_dir = \"d\"\npg_port = 6000\nlisten = \"0.0.0.0\"\nauth = \"trust\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(cfg),
            pg_port: Some(7000),
            ..Default::default()
        };
        let r = args.resolve().unwrap();
        assert_eq!(r.pg_port, 7000);
        assert_eq!(r.listen.to_string(), "0.0.0.0");
        assert_eq!(r.data_dir, dir.path().join("d"));
        assert_eq!(r.flush_rows, DEFAULT_FLUSH_ROWS);
        let r = ServeArgs::default().resolve().unwrap();
        assert_eq!(r.pg_port, DEFAULT_PG_PORT);
        assert_eq!(r.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn trust_on_a_public_address_must_be_chosen() {
        let args = ServeArgs {
            listen: Some("0.0.0.0".parse().unwrap()),
            ..Default::default()
        };
        let err = args.resolve().unwrap_err();
        assert!(err.contains("--auth trust"), "{err}");
        let args = ServeArgs {
            listen: Some("0.0.0.0".parse().unwrap()),
            users: vec!["ada:pw".into()],
            ..Default::default()
        };
        assert_eq!(
            args.resolve().unwrap().auth.mode,
            crate::auth::AuthMode::Password
        );
    }

    #[test]
    fn memory_and_cache_settings() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("strata.toml");
        std::fs::write(
            &cfg,
            "memory_limit = \"512MiB\"\ncache_size = 1000000\ncache_dir = \"/tmp/c\"\n",
        )
        .unwrap();
        let r = ServeArgs {
            config: Some(cfg.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.memory_limit, Some(512 << 20));
        assert_eq!(r.cache_size, Some(1_000_000));
        assert_eq!(r.cache_dir, Some(PathBuf::from("/tmp/c")));
        let r = ServeArgs {
            config: Some(cfg),
            memory_limit: Some("3GiB".into()),
            cache_size: Some("2GB".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.memory_limit, Some(3 << 30));
        assert_eq!(r.cache_size, Some(2_000_000_000));
        assert_eq!(
            ServeArgs::default().resolve().unwrap().memory_limit,
            crate::config::default_memory_limit()
        );
        let err = ServeArgs {
            memory_limit: Some("3 gigs".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("--memory-limit"), "{err}");
    }

    #[test]
    fn collection_settings() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("strata.toml");
        std::fs::write(&cfg, "gc_grace = \"30s\"\nlog_retention = \"2h\"\n").unwrap();
        let r = ServeArgs {
            config: Some(cfg.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.gc_grace, Some(Duration::from_secs(30)));
        assert_eq!(r.log_retention, Some(Duration::from_secs(7200)));
        let c = ServeArgs {
            config: Some(cfg),
            gc_grace: Some("0s".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(c.gc.grace, Duration::ZERO);
        assert_eq!(c.gc.log_retention, Duration::from_secs(7200));
        let d = ServeArgs::default().resolve().unwrap().config().unwrap();
        assert_eq!(d.gc.grace, strata_storage::GcConfig::default().grace);
        let err = ServeArgs {
            log_retention: Some("24".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(
            err.contains("--log-retention") && err.contains("unit"),
            "{err}"
        );
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("strata.toml");
        std::fs::write(&cfg, "pg_prot = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(cfg),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("pg_prot"), "{err}");
    }

    #[test]
    fn kafka_and_export_settings() {
        let r = ServeArgs::default().resolve().unwrap();
        assert!(r.kafka.is_none() && r.export_root.is_none());
        let r = ServeArgs {
            kafka_brokers: Some("127.0.0.1:9092, kafka2:19092".into()),
            export_root: Some("s3://b/exports".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let k = r.kafka.clone().unwrap();
        assert_eq!(k.brokers, vec!["127.0.0.1:9092", "kafka2:19092"]);
        assert_eq!(k.topic, crate::kafka::DEFAULT_TOPIC);
        assert_eq!(
            r.config().unwrap().export_root.as_deref(),
            Some("s3://b/exports")
        );
        for (brokers, topic, want) in [
            (Some("localhost"), None, "HOST:PORT"),
            (Some("localhost:99999"), None, "HOST:PORT"),
            (Some(" , "), None, "empty"),
            (Some("h:1"), Some("bad topic"), "not a Kafka topic name"),
            (None, Some("t"), "needs --kafka-brokers"),
        ] {
            let err = ServeArgs {
                kafka_brokers: brokers.map(Into::into),
                kafka_topic: topic.map(Into::into),
                ..Default::default()
            }
            .resolve()
            .unwrap_err();
            assert!(err.contains(want), "{brokers:?} {topic:?}: {err}");
        }
    }
}
