//! Who may connect, and over what: users and their credentials, the
//! authentication mode, and TLS settings. Shared by the Postgres and the
//! Flight SQL listeners so both enforce the same rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may connect as anyone. Only for local use.
    Trust,
    /// A configured user and its password (SCRAM-SHA-256 on Postgres).
    Password,
}

/// The users of a server and how they authenticate.
#[derive(Debug, Clone)]
pub struct Auth {
    pub mode: AuthMode,
    /// user name → password as configured (plain text, or a stored
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier).
    pub users: BTreeMap<String, String>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: AuthMode::Trust,
            users: BTreeMap::new(),
        }
    }
}

impl Auth {
    /// Merge `--auth`, `--user NAME:PASSWORD` flags and the config file's
    /// `[users]` table. Trust is the default only with no users configured,
    /// and is refused on a non-loopback address unless chosen explicitly.
    pub fn from_settings(
        mode: Option<&str>,
        flag_users: &[String],
        file_users: Option<&BTreeMap<String, String>>,
        listen: IpAddr,
    ) -> Result<Auth, String> {
        let mut users = file_users.cloned().unwrap_or_default();
        for u in flag_users {
            let (name, pw) = u.split_once(':').ok_or_else(|| {
                format!("--user `{u}`: give NAME:PASSWORD, e.g. --user alice:s3cret")
            })?;
            if name.is_empty() {
                return Err(format!("--user `{u}`: the user name is empty"));
            }
            users.insert(name.to_string(), pw.to_string());
        }
        let mode = match mode.map(|m| m.to_ascii_lowercase()) {
            None => {
                if users.is_empty() {
                    if !listen.is_loopback() {
                        return Err(format!(
                            "listening on {listen} with no users configured: add users (--user NAME:PASSWORD) \
                             or choose --auth trust explicitly to let anyone connect"
                        ));
                    }
                    AuthMode::Trust
                } else {
                    AuthMode::Password
                }
            }
            Some(m) if m == "trust" => AuthMode::Trust,
            Some(m) if m == "password" || m == "scram-sha-256" || m == "scram" => {
                if users.is_empty() {
                    return Err(
                        "--auth password needs at least one user (--user NAME:PASSWORD or [users] in the config file)"
                            .into(),
                    );
                }
                AuthMode::Password
            }
            Some(m) => {
                return Err(format!(
                    "unknown --auth `{m}`: use `password` (SCRAM-SHA-256) or `trust`"
                ))
            }
        };
        Ok(Auth { mode, users })
    }

    /// Check a user's clear-text password (Flight SQL basic auth).
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        if self.mode == AuthMode::Trust {
            return true;
        }
        match self.users.get(user) {
            Some(stored) => stored == password,
            None => false,
        }
    }
}

/// TLS certificate and key for the listeners.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse plaintext connections.
    pub required: bool,
}

impl TlsSettings {
    pub fn from_settings(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        required: bool,
    ) -> Result<Option<TlsSettings>, String> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert,
                key,
                required,
            })),
            (None, None) if required => {
                Err("--tls-required needs --tls-cert and --tls-key".into())
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert needs --tls-key too".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert too".into()),
        }
    }
}
