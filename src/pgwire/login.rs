//! Who may log in to the Postgres listener: SCRAM-SHA-256 password
//! authentication (or trust) and the TLS-required rule, with the settings of
//! [`crate::auth`].

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::scram::{
    ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::PgWireBackendMessage;

use crate::auth::{random_salt, Auth, AuthMode, ScramVerifier, TlsSettings, SCRAM_ITERATIONS};

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

fn fatal(code: &str, msg: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        msg.into(),
    )))
}

/// The login rules of one server.
#[derive(Debug)]
pub struct Login {
    mode: AuthMode,
    verifiers: BTreeMap<String, ScramVerifier>,
    tls_required: bool,
    /// The TLS certificate (PEM), for SCRAM channel binding over TLS.
    cert_pem: Option<Vec<u8>>,
}

impl Login {
    /// Trust everyone, no TLS requirement.
    pub fn trust() -> Login {
        Login {
            mode: AuthMode::Trust,
            verifiers: BTreeMap::new(),
            tls_required: false,
            cert_pem: None,
        }
    }

    pub fn new(auth: &Auth, tls: Option<&TlsSettings>) -> Result<Login, String> {
        Ok(Login {
            mode: auth.mode,
            verifiers: match auth.mode {
                AuthMode::Password => auth.scram_verifiers()?,
                AuthMode::Trust => BTreeMap::new(),
            },
            tls_required: tls.is_some_and(|t| t.required),
            cert_pem: tls.and_then(|t| std::fs::read(&t.cert).ok()),
        })
    }

    /// The SCRAM server for a connection: with channel binding
    /// (tls-server-end-point, SCRAM-SHA-256-PLUS) when it runs over TLS.
    fn scram(&self, secure: bool) -> ScramServerAuth {
        let mut a = ScramServerAuth::new();
        if let (true, Some(pem)) = (secure, &self.cert_pem) {
            if let Err(e) = a.configure_certificate(pem) {
                tracing::debug!("no SCRAM channel binding for this certificate: {e}");
                a = ScramServerAuth::new();
            }
        }
        a
    }

    fn mechanisms(&self, secure: bool) -> Vec<String> {
        let mut m = vec![SCRAM_SHA_256.to_string()];
        if self.scram(secure).supports_channel_binding() {
            m.push(SCRAM_SHA_256_PLUS.to_string());
        }
        m
    }

    /// Refuse a plaintext connection when TLS is required.
    pub fn check_transport<C: ClientInfo>(&self, client: &C) -> PgWireResult<()> {
        if self.tls_required && !client.is_secure() {
            return Err(fatal(
                "28000",
                "this server requires TLS (SSL): connect with sslmode=require (or verify-full)",
            ));
        }
        Ok(())
    }

    pub fn needs_password(&self) -> bool {
        self.mode == AuthMode::Password
    }

    /// The verifier to check `user`'s login against: a configured user's,
    /// or a stored role's (CREATE ROLE … LOGIN PASSWORD); `false` if there
    /// is none. A stored role without LOGIN is refused here.
    async fn verifier(
        &self,
        user: &str,
        db: &strata_query::Database,
    ) -> PgWireResult<(ScramVerifier, bool)> {
        let stored = match self.verifiers.get(user) {
            Some(_) => None,
            None => db
                .access()
                .login(db.engine(), user)
                .await
                .map_err(|e| fatal("28000", e.to_string()))?,
        };
        Ok(match self.verifiers.get(user).or(stored.as_ref()) {
            Some(v) => (v.clone(), true),
            // An unknown user goes through the same exchange and fails at the
            // end, like a wrong password: no hint about which users exist.
            None => (
                ScramVerifier {
                    iterations: SCRAM_ITERATIONS,
                    salt: random_salt(),
                    stored_key: random_key(),
                    server_key: random_key(),
                },
                false,
            ),
        })
    }
}

fn random_key() -> Vec<u8> {
    let mut k = random_salt();
    k.extend(random_salt());
    k.truncate(32);
    k
}

/// Where one connection's login stands.
#[derive(Default)]
pub enum LoginState {
    #[default]
    Idle,
    /// AuthenticationSASL sent; waiting for the client-first message.
    AwaitingFirst,
    /// Server-first sent; waiting for the client-final message.
    AwaitingFinal(Box<ScramServerAuthWaitingForClientFinal>, bool),
}

fn auth_failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// A failed login: recorded in the audit trail, answered like any other.
fn failed<C: ClientInfo>(db: &strata_query::Database, client: &C, user: &str) -> PgWireError {
    db.audit(strata_query::access::audit::AuditEvent {
        event: "login_failed",
        role: user.to_string(),
        client: Some(client.socket_addr().to_string()),
        statement: None,
        detail: Some("wrong password or unknown user (postgres)".into()),
    });
    auth_failed(user)
}

/// Send AuthenticationSASL and wait for the client's choice.
pub async fn begin<C>(login: &Login, client: &mut C, state: &mut LoginState) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client.set_state(PgWireConnectionState::AuthenticationInProgress);
    client
        .send(PgWireBackendMessage::Authentication(Authentication::SASL(
            login.mechanisms(client.is_secure()),
        )))
        .await?;
    *state = LoginState::AwaitingFirst;
    Ok(())
}

/// Take one SASL message; Ok(true) when the client has proven its password.
pub async fn step<C>(
    login: &Login,
    db: &strata_query::Database,
    client: &mut C,
    state: &mut LoginState,
    msg: PasswordMessageFamily,
) -> PgWireResult<bool>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let user = client.metadata().get("user").cloned().unwrap_or_default();
    match std::mem::take(state) {
        LoginState::Idle => Err(fatal(
            "08P01",
            "unexpected password message: no authentication is in progress",
        )),
        LoginState::AwaitingFirst => {
            let first = msg
                .into_sasl_initial_response()
                .map_err(|_| fatal("08P01", "expected a SASLInitialResponse message"))?;
            let secure = client.is_secure();
            if !login.mechanisms(secure).contains(&first.auth_method) {
                return Err(fatal(
                    "28000",
                    format!(
                        "SASL mechanism \"{}\" is not offered here: use SCRAM-SHA-256 (or SCRAM-SHA-256-PLUS over TLS)",
                        first.auth_method
                    ),
                ));
            }
            let data = first
                .data
                .ok_or_else(|| fatal("08P01", "the SCRAM client-first message is empty"))?;
            let (v, known) = match login.verifier(&user, db).await {
                Ok(v) => v,
                Err(e) => {
                    db.audit(strata_query::access::audit::AuditEvent {
                        event: "login_failed",
                        role: user.clone(),
                        client: Some(client.socket_addr().to_string()),
                        statement: None,
                        detail: Some(e.to_string()),
                    });
                    return Err(e);
                }
            };
            let secret = ScramSecret::Verifier {
                salt: v.salt,
                iterations: v.iterations,
                stored_key: v.stored_key,
                server_key: v.server_key,
            };
            let (server_first, waiting) = login
                .scram(secure)
                .on_client_first_message_with_secret(&data, secret)
                .map_err(|e| fatal("08P01", format!("invalid SCRAM exchange: {e}")))?;
            client
                .send(PgWireBackendMessage::Authentication(
                    Authentication::SASLContinue(Bytes::from(server_first)),
                ))
                .await?;
            *state = LoginState::AwaitingFinal(Box::new(waiting), known);
            Ok(false)
        }
        LoginState::AwaitingFinal(waiting, known) => {
            let resp = msg
                .into_sasl_response()
                .map_err(|_| fatal("08P01", "expected a SASLResponse message"))?;
            match waiting.on_client_final_message(&resp.data) {
                Ok(server_final) if known => {
                    client
                        .feed(PgWireBackendMessage::Authentication(
                            Authentication::SASLFinal(Bytes::from(server_final)),
                        ))
                        .await?;
                    Ok(true)
                }
                Ok(_) | Err(PgWireError::InvalidPassword(_)) => Err(failed(db, client, &user)),
                Err(e) => {
                    tracing::debug!("SCRAM exchange for {user} failed: {e}");
                    Err(failed(db, client, &user))
                }
            }
        }
    }
}
