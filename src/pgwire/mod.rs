//! The Postgres wire protocol front end (pgwire): simple and extended query
//! protocol over a `strata::Db`, one `strata::Session` per connection.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let db = strata::Db::open(strata::Config::memory()).await.unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5432").await?;
//! strata::pgwire::serve(db, listener, std::future::pending()).await
//! # }
//! ```

mod conn;
pub mod copy;
mod cursor;
pub mod frames;
pub mod login;
pub mod names;
pub mod split;
pub mod types;
pub mod vars;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::ClientInfo;
use pgwire::api::PgWireConnectionState;
use pgwire::api::PgWireServerHandlers;
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{Auth, TlsSettings};
use crate::Db;
pub use conn::Conn;
use login::Login;

/// Cancel keys (pid, secret) → the connection's cancel signal.
type CancelRegistry = Mutex<HashMap<(i32, Bytes), Arc<watch::Sender<u64>>>>;

/// What every connection of one server shares.
pub struct Shared {
    db: Db,
    cancels: CancelRegistry,
    /// Who may log in.
    login: Login,
    /// TLS, when configured.
    tls: Option<TlsAcceptor>,
    /// The longest query string accepted (Query and Parse messages).
    max_query_bytes: usize,
    /// What a new connection's settings start from (the server's
    /// `--statement-timeout`, …).
    settings: vars::Settings,
}

/// Default for the longest query string, overridable with
/// `STRATA_PG_MAX_QUERY_BYTES`.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 64 << 20;

fn max_query_bytes() -> usize {
    std::env::var("STRATA_PG_MAX_QUERY_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_QUERY_BYTES)
}

/// How long a client may take to connect and log in.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

impl Shared {
    /// Trust authentication, no TLS.
    pub fn new(db: Db) -> Arc<Shared> {
        Arc::new(Shared {
            db,
            cancels: Mutex::new(HashMap::new()),
            login: Login::trust(),
            tls: None,
            max_query_bytes: max_query_bytes(),
            settings: vars::Settings::default(),
        })
    }

    /// With the server's authentication and TLS settings.
    pub fn secured(db: Db, auth: &Auth, tls: Option<&TlsSettings>) -> Result<Arc<Shared>, String> {
        Shared::configured(db, auth, tls, &[])
    }

    /// [`Shared::secured`] with server defaults for session settings, such as
    /// `("statement_timeout", "30s")` (validated like `SET`).
    pub fn configured(
        db: Db,
        auth: &Auth,
        tls: Option<&TlsSettings>,
        defaults: &[(&str, &str)],
    ) -> Result<Arc<Shared>, String> {
        let login = Login::new(auth, tls)?;
        let tls = tls.map(tls_acceptor).transpose()?;
        let mut settings = vars::Settings::default();
        for (name, value) in defaults {
            settings.set_server_default(name, value)?;
        }
        Ok(Arc::new(Shared {
            db,
            cancels: Mutex::new(HashMap::new()),
            login,
            tls,
            max_query_bytes: max_query_bytes(),
            settings,
        }))
    }

    /// Cancel every running statement (at shutdown).
    fn cancel_all(&self) {
        for tx in self.cancels.lock().expect("cancel registry").values() {
            tx.send_modify(|g| *g += 1);
        }
    }
}

/// A TLS acceptor for the configured PEM certificate chain and private key.
pub fn tls_acceptor(t: &TlsSettings) -> Result<TlsAcceptor, String> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = std::fs::read(&t.cert)
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", t.cert.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", t.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            t.cert.display()
        ));
    }
    let key_pem = std::fs::read(&t.key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", t.key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "TLS key {}: {e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)",
            t.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS certificate {} and key {} do not work together: {e}",
                t.cert.display(),
                t.key.display()
            )
        })?;
    // Postgres 17 clients may start TLS directly (sslnegotiation=direct) with ALPN.
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

#[async_trait]
impl CancelHandler for Shared {
    async fn on_cancel_request(&self, req: CancelRequest) {
        let key = (req.pid, req.secret_key.to_bytes());
        let target = self
            .cancels
            .lock()
            .expect("cancel registry")
            .get(&key)
            .cloned();
        if let Some(tx) = target {
            tx.send_modify(|g| *g += 1);
        }
    }
}

/// The handlers for one connection.
struct Handlers {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.conn.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.conn.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.conn.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.shared.clone()
    }
    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.conn.clone()
    }
}

fn fatal_info(code: &str, msg: String) -> ErrorInfo {
    ErrorInfo::new("FATAL".into(), code.into(), msg)
}

/// Serve one accepted socket until the client leaves: TLS negotiation, then
/// pgwire's message dispatch, with a malformed message answered by a FATAL
/// error (instead of a silent hang-up) and over-long query strings refused.
pub async fn serve_connection(
    shared: Arc<Shared>,
    socket: tokio::net::TcpStream,
) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let conn = Arc::new(Conn::new(shared.clone()));
    let handlers = Handlers {
        conn,
        shared: shared.clone(),
    };
    // A client that goes away cancels its running statement.
    let _watch = watch_hangup(&socket, handlers.conn.0.cancel.clone());
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls(socket, shared.tls.clone()) => s?,
    };
    // None: a direct TLS handshake but no TLS configured.
    let Some(socket) = negotiated else {
        return Ok(());
    };
    // Every frame is checked before pgwire decodes it (see frames.rs).
    let mut socket = {
        let old = socket.into_parts();
        let mut parts = tokio_util::codec::FramedParts::new(
            frames::Checked::new(old.io, old.read_buf),
            old.codec,
        );
        parts.write_buf = old.write_buf;
        tokio_util::codec::Framed::from_parts(parts)
    };
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        // A panic while decoding (a message too short for its own header)
        // is a malformed message like any other.
        let msg = if logging_in {
            let m = tokio::select! {
                _ = &mut startup_timeout => None,
                m = std::panic::AssertUnwindSafe(socket.next()).catch_unwind() => Some(m),
            };
            match m {
                Some(m) => m,
                None => {
                    let info =
                        fatal_info("08006", "timed out waiting for the login to finish".into());
                    let _ = socket
                        .send(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await;
                    break;
                }
            }
        } else {
            std::panic::AssertUnwindSafe(socket.next())
                .catch_unwind()
                .await
        };
        let msg = match msg {
            Err(_) => {
                let info = fatal_info(
                    "08P01",
                    "invalid frontend message: malformed length; closing the connection".into(),
                );
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                break;
            }
            Ok(m) => m,
        };
        let msg = match msg {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // Garbage, a malformed or over-long message: say so, then hang up.
                tracing::debug!("bad message from a postgres client: {e}");
                let info = match &e {
                    PgWireError::IoError(io) => match frames::malformed(io) {
                        Some(why) => fatal_info(
                            "08P01",
                            format!("invalid frontend message: {why}; closing the connection"),
                        ),
                        None => break,
                    },
                    other => fatal_info(
                        other.code(),
                        format!("invalid frontend message: {e}; closing the connection"),
                    ),
                };
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                break;
            }
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(ext) => ext,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let too_long = match &msg {
            PgWireFrontendMessage::Query(q) => Some(q.query.len()),
            PgWireFrontendMessage::Parse(p) => Some(p.query.len()),
            _ => None,
        }
        .filter(|n| *n > shared.max_query_bytes);
        let result = match too_long {
            Some(n) => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "54000".into(),
                format!(
                    "the query string is {n} bytes, more than the limit of {} bytes (STRATA_PG_MAX_QUERY_BYTES); send large data with COPY … FROM STDIN or in smaller statements",
                    shared.max_query_bytes
                ),
            )))),
            None => {
                // A panic while handling a message (outside the statement
                // itself, whose panics conn.rs turns into errors) is an
                // error for that message; the connection goes on.
                std::panic::AssertUnwindSafe(process_message(
                    msg,
                    &mut socket,
                    startup.clone(),
                    simple.clone(),
                    extended.clone(),
                    copy.clone(),
                    cancel.clone(),
                ))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let msg = crate::panic_message(panic.as_ref());
                    tracing::error!("handling a postgres message panicked: {msg}; the connection goes on");
                    Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".into(),
                        "XX000".into(),
                        format!("internal error: handling the message panicked ({msg})"),
                    ))))
                })
            }
        };
        if let Err(e) = result {
            let fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended).await?;
            if fatal {
                break;
            }
        }
        if is_cancel {
            break;
        }
    }
    Ok(())
}

/// Aborts the watching task when the connection ends.
struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watch a second handle on the socket while the connection runs: when the
/// client hangs up (end of stream or a reset), bump the connection's cancel
/// signal so that a statement still running stops instead of finishing for
/// nobody.
fn watch_hangup(socket: &tokio::net::TcpStream, cancel: Arc<watch::Sender<u64>>) -> Option<Watch> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = socket.as_fd().try_clone_to_owned().ok()?;
        let dup = tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)).ok()?;
        Some(Watch(tokio::spawn(async move {
            let mut b = [0u8; 1];
            loop {
                match dup.peek(&mut b).await {
                    Ok(0) | Err(_) => {
                        cancel.send_modify(|g| *g += 1);
                        return;
                    }
                    // Data the connection has not read yet (it is busy or
                    // about to read it): look again shortly.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })))
    }
    #[cfg(not(unix))]
    {
        let _ = (socket, cancel);
        None
    }
}

/// Accept Postgres connections on `listener` until `shutdown` resolves; then
/// stop accepting, give open connections a moment to finish, and close them.
/// Anyone may connect (trust), without TLS; see [`serve_with`].
pub async fn serve(
    db: Db,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_shared(Shared::new(db), listener, shutdown).await
}

/// [`serve`] with authentication (SCRAM-SHA-256 or trust) and TLS settings.
pub async fn serve_with(
    db: Db,
    listener: TcpListener,
    auth: &Auth,
    tls: Option<&TlsSettings>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Shared::secured(db, auth, tls)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    serve_shared(shared, listener, shutdown).await
}

/// [`serve`] for a prepared [`Shared`] (see [`Shared::secured`]).
pub async fn serve_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tracing::debug!("postgres connection from {peer}");
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        let _open = crate::http::PgConnection::opened();
                        if let Err(e) = serve_connection(shared, socket).await {
                            tracing::debug!("postgres connection from {peer} ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("accepting a postgres connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("a postgres connection task panicked; the server goes on");
                    }
                }
            }
        }
    }
    drop(listener);
    // Statements still running are cancelled; their clients get the error
    // and a moment to read it before the connections are closed.
    shared.cancel_all();
    let grace = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(grace);
    while !tasks.is_empty() {
        tokio::select! {
            _ = &mut grace => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
            _ = tasks.join_next() => {}
        }
    }
    Ok(())
}
