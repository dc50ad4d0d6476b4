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
pub mod describe;
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
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::PgWireServerHandlers;
use pgwire::messages::cancel::CancelRequest;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Db;
pub use conn::Conn;
use describe::Describer;

/// Cancel keys (pid, secret) → the connection's cancel signal.
type CancelRegistry = Mutex<HashMap<(i32, Bytes), Arc<watch::Sender<u64>>>>;

/// What every connection of one server shares.
pub struct Shared {
    db: Db,
    describer: Describer,
    cancels: CancelRegistry,
}

impl Shared {
    pub fn new(db: Db) -> Arc<Shared> {
        Arc::new(Shared {
            db,
            describer: Describer::new(),
            cancels: Mutex::new(HashMap::new()),
        })
    }
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
}

/// Serve one accepted socket until the client leaves.
pub async fn serve_connection(
    shared: Arc<Shared>,
    socket: tokio::net::TcpStream,
) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let conn = Arc::new(Conn::new(shared.clone()));
    pgwire::tokio::process_socket(socket, None, Handlers { conn, shared }).await
}

/// Accept Postgres connections on `listener` until `shutdown` resolves; then
/// stop accepting, give open connections a moment to finish, and close them.
pub async fn serve(
    db: Db,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Shared::new(db);
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
