//! Flight SQL authentication with the server's shared rules (`crate::auth`):
//! the Handshake takes HTTP basic credentials and hands out a bearer token;
//! every later call carries `authorization: Bearer <token>` (or, for clients
//! that cannot hold a token, the basic credentials again). In trust mode
//! anyone may call anything.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::auth::{Auth, AuthMode};

/// How long a token stays valid after it was issued.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Tokens this process issued: token → (user, issued at).
#[derive(Debug, Default)]
pub struct Tokens {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

/// The user name trust mode reports when a client names nobody.
pub const TRUST_USER: &str = "strata";

impl Tokens {
    /// A fresh random token for `user`.
    pub fn issue(&self, user: &str) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < TOKEN_LIFETIME);
        map.insert(token.clone(), (user.to_string(), now));
        token
    }

    fn user_of(&self, token: &str) -> Option<String> {
        let map = self.map.lock();
        map.get(token)
            .filter(|(_, at)| at.elapsed() < TOKEN_LIFETIME)
            .map(|(u, _)| u.clone())
    }
}

/// What the `authorization` header says.
pub enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

pub fn credentials(md: &MetadataMap) -> Result<Credentials, Status> {
    let Some(v) = md.get("authorization") else {
        return Ok(Credentials::None);
    };
    let v = v
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not ASCII text"))?
        .trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64_decode(rest).ok_or_else(|| {
            Status::unauthenticated("the basic authorization header is not valid base64")
        })?;
        let text = String::from_utf8(raw).map_err(|_| {
            Status::unauthenticated("the basic authorization credentials are not UTF-8")
        })?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("basic authorization needs USER:PASSWORD"))?;
        return Ok(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        });
    }
    Err(Status::unauthenticated(format!(
        "unsupported authorization scheme `{scheme}`: use Basic for the Handshake and Bearer afterwards"
    )))
}

/// Check a call's credentials; the user it runs as.
pub fn authorize(auth: &Auth, tokens: &Tokens, md: &MetadataMap) -> Result<String, Status> {
    let creds = credentials(md);
    if auth.mode == AuthMode::Trust {
        return Ok(match creds {
            Ok(Credentials::Basic { user, .. }) if !user.is_empty() => user,
            Ok(Credentials::Bearer(t)) => tokens.user_of(&t).unwrap_or_else(|| TRUST_USER.into()),
            _ => TRUST_USER.into(),
        });
    }
    match creds? {
        Credentials::None => Err(Status::unauthenticated(
            "authentication required: call Handshake with HTTP basic credentials (user and password), \
             then send `authorization: Bearer <token>` with every call",
        )),
        Credentials::Bearer(t) => tokens.user_of(&t).ok_or_else(|| {
            Status::unauthenticated(
                "unknown or expired bearer token: call Handshake again to get a new one",
            )
        }),
        Credentials::Basic { user, password } => {
            if auth.verify_password(&user, &password) {
                Ok(user)
            } else {
                Err(bad_password(&user))
            }
        }
    }
}

pub fn bad_password(user: &str) -> Status {
    Status::unauthenticated(format!(
        "password authentication failed for user \"{user}\""
    ))
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    }
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_and_unpadded() {
        assert_eq!(base64_decode("YWxpY2U6czNjcmV0").unwrap(), b"alice:s3cret");
        assert_eq!(base64_decode("YTpi").unwrap(), b"a:b");
        assert_eq!(base64_decode("YTpiYw==").unwrap(), b"a:bc");
        assert_eq!(base64_decode("YTpiYw").unwrap(), b"a:bc");
        assert_eq!(base64_decode("YTpiY2Q=").unwrap(), b"a:bcd");
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("a*b=").is_none());
    }

    #[test]
    fn password_mode_needs_a_valid_token_or_password() {
        let auth = Auth::from_settings(
            None,
            &["alice:s3cret".to_string()],
            None,
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        let tokens = Tokens::default();
        let mut md = MetadataMap::new();
        assert_eq!(
            authorize(&auth, &tokens, &md).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        md.insert("authorization", "Basic YWxpY2U6czNjcmV0".parse().unwrap());
        assert_eq!(authorize(&auth, &tokens, &md).unwrap(), "alice");
        md.insert("authorization", "Basic YWxpY2U6d3Jvbmc=".parse().unwrap());
        assert!(authorize(&auth, &tokens, &md).is_err());
        let t = tokens.issue("alice");
        md.insert("authorization", format!("Bearer {t}").parse().unwrap());
        assert_eq!(authorize(&auth, &tokens, &md).unwrap(), "alice");
        md.insert("authorization", "Bearer nope".parse().unwrap());
        assert!(authorize(&auth, &tokens, &md).is_err());
    }
}
