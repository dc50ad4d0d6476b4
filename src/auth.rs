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
        let auth = Auth { mode, users };
        auth.validate()?;
        Ok(auth)
    }

    /// Check a user's clear-text password (Flight SQL basic auth). The stored
    /// credential may be the password itself or a SCRAM-SHA-256 verifier.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        if self.mode == AuthMode::Trust {
            return true;
        }
        match self.users.get(user) {
            Some(stored) => match ScramVerifier::parse(stored) {
                Some(Ok(v)) => v.matches(password),
                Some(Err(_)) => false,
                None => constant_time_eq(stored.as_bytes(), password.as_bytes()),
            },
            None => false,
        }
    }

    /// The SCRAM-SHA-256 verifier of every user: stored verifiers as given,
    /// clear-text passwords salted (randomly) and hashed once here, so a
    /// connection's handshake costs no key derivation.
    pub fn scram_verifiers(&self) -> Result<BTreeMap<String, ScramVerifier>, String> {
        let mut out = BTreeMap::new();
        for (user, stored) in &self.users {
            let v = match ScramVerifier::parse(stored) {
                Some(v) => v.map_err(|e| format!("user `{user}`: {e}"))?,
                None => ScramVerifier::derive(stored, &random_salt(), SCRAM_ITERATIONS),
            };
            out.insert(user.clone(), v);
        }
        Ok(out)
    }

    /// Check every configured credential (a malformed stored verifier is an error).
    pub fn validate(&self) -> Result<(), String> {
        for (user, stored) in &self.users {
            if let Some(Err(e)) = ScramVerifier::parse(stored) {
                return Err(format!("user `{user}`: {e}"));
            }
        }
        Ok(())
    }
}

pub use strata_query::access::{constant_time_eq, random_salt, ScramVerifier, SCRAM_ITERATIONS};

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
            (None, None) if required => Err("--tls-required needs --tls-cert and --tls-key".into()),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert needs --tls-key too".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert too".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (The verifier itself is tested in strata_query::access::scram.)
    #[test]
    fn configured_users_check_passwords_and_verifiers() {
        let text = ScramVerifier::derive("s3cret", b"0123456789abcdef", 4096).to_string();
        let mut users = BTreeMap::new();
        users.insert("alice".to_string(), "pw1".to_string());
        users.insert("bob".to_string(), text);
        let auth = Auth {
            mode: AuthMode::Password,
            users,
        };
        assert!(auth.verify_password("alice", "pw1"));
        assert!(!auth.verify_password("alice", "pw2"));
        assert!(auth.verify_password("bob", "s3cret"));
        assert!(!auth.verify_password("bob", "nope"));
        assert!(!auth.verify_password("carol", "pw1"));
        let all = auth.scram_verifiers().unwrap();
        assert!(all["alice"].matches("pw1"));
        assert!(all["bob"].matches("s3cret"));
    }

    #[test]
    fn a_malformed_verifier_is_a_config_error() {
        let mut users = BTreeMap::new();
        users.insert("x".to_string(), "SCRAM-SHA-256$4096:abc".to_string());
        let e =
            Auth::from_settings(None, &[], Some(&users), "127.0.0.1".parse().unwrap()).unwrap_err();
        assert!(e.contains("malformed SCRAM-SHA-256 verifier"), "{e}");
    }
}
