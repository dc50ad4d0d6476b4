//! The audit trail: logins (and failed ones), DDL, role and privilege
//! statements, ERASE and refused statements, with the role, the client's
//! address and the time. Appended to the reserved table [`AUDIT`] through
//! the normal commit path (durable, replicated, never rewritten), and read
//! through the view [`AUDIT_VIEW`] by superusers and roles granted
//! `SELECT ON strata_audit`.
//!
//! The trail is kept when the server asks for passwords (`--auth password`,
//! the default with users configured): in trust mode anyone may claim any
//! name, so there is no one to attribute events to, and the embedded API
//! has no logins. (Each batch of events is a commit: off, it also keeps a
//! simulated `--test-clock` timeline to the client's own commits.)
//!
//! Events are committed by a background task, in the order they happen,
//! several to a commit when they come faster than commits: a login or a
//! refused statement does not wait for a commit. A read-only node (`--role
//! reader`) cannot write, so its events are only logged.

use std::sync::{Arc, Weak};

use datafusion::arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_storage::{Engine, Op, OpKind, TxRequest};

/// Where the events are kept.
pub const AUDIT: &str = "strata$audit";
/// The name users read it by (and are granted SELECT on).
pub const AUDIT_VIEW: &str = "strata_audit";

/// One event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// `login`, `login_failed`, `ddl`, `grant`, `revoke`, `role`, `erase`, `denied`.
    pub event: &'static str,
    pub role: String,
    /// The client's address (`ip:port`), when known.
    pub client: Option<String>,
    /// The statement, without passwords.
    pub statement: Option<String>,
    /// Why (a refusal's or failed login's message), or other detail.
    pub detail: Option<String>,
}

/// The columns of [`AUDIT`] (after `_id`).
pub fn audit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("at", strata_storage::schema::timestamp_type(), false),
        Field::new("event", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("client", DataType::Utf8, true),
        Field::new("statement", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
    ]))
}

fn audit_op(events: &[(i64, AuditEvent)]) -> datafusion::error::Result<Op> {
    let mut fields = vec![Field::new(
        strata_storage::schema::ID,
        DataType::Utf8,
        false,
    )];
    fields.extend(audit_schema().fields().iter().map(|f| f.as_ref().clone()));
    let text = |f: &dyn Fn(&AuditEvent) -> Option<String>| -> Arc<StringArray> {
        Arc::new(events.iter().map(|(_, e)| f(e)).collect::<StringArray>())
    };
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            Arc::new(
                events
                    .iter()
                    .map(|_| Some(uuid::Uuid::new_v4().to_string()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                TimestampMicrosecondArray::from(events.iter().map(|(t, _)| *t).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            text(&|e| Some(e.event.to_string())),
            text(&|e| Some(e.role.clone())),
            text(&|e| e.client.clone()),
            text(&|e| e.statement.clone()),
            text(&|e| e.detail.clone()),
        ],
    )?;
    Ok(Op {
        kind: OpKind::Put,
        table: AUDIT.into(),
        batch,
    })
}

/// The sender of a database's audit events.
#[derive(Debug)]
pub struct Audit {
    tx: Option<tokio::sync::mpsc::UnboundedSender<(i64, AuditEvent)>>,
    engine: Weak<Engine>,
    /// Off until the server turns it on (`set_enabled`).
    enabled: std::sync::atomic::AtomicBool,
}

impl Audit {
    /// Start the task that commits events (none on a read-only node, or
    /// outside a Tokio runtime).
    pub fn start(engine: &Arc<Engine>) -> Audit {
        let weak = Arc::downgrade(engine);
        if engine.read_only() || tokio::runtime::Handle::try_current().is_err() {
            return Audit {
                tx: None,
                engine: weak,
                enabled: Default::default(),
            };
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, AuditEvent)>();
        let task_engine = weak.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 1000 {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                let Some(engine) = task_engine.upgrade() else {
                    return;
                };
                let r = match audit_op(&batch) {
                    Ok(op) => engine
                        .commit(TxRequest {
                            ops: vec![op],
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = r {
                    tracing::warn!("could not record {} audit event(s): {e}", batch.len());
                }
            }
        });
        Audit {
            tx: Some(tx),
            engine: weak,
            enabled: Default::default(),
        }
    }

    /// Keep the trail (the server does when it asks for passwords).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Record an event (committed shortly, in order).
    pub fn record(&self, e: AuditEvent) {
        if !self.enabled.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let now = self
            .engine
            .upgrade()
            .map(|e| e.clock_now())
            .unwrap_or_default();
        tracing::info!(
            event = e.event,
            role = %e.role,
            client = e.client.as_deref().unwrap_or(""),
            "audit: {}",
            e.statement.as_deref().or(e.detail.as_deref()).unwrap_or("")
        );
        if let Some(tx) = &self.tx {
            let _ = tx.send((now, e));
        }
    }
}
