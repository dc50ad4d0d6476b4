//! SCRAM-SHA-256 verifiers, as Postgres stores them
//! (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`): what
//! `CREATE ROLE … PASSWORD` keeps (never the password) and what both
//! listeners check a login against.

use base64::Engine as _;

/// PBKDF2 iterations for verifiers derived from clear-text passwords.
pub const SCRAM_ITERATIONS: usize = 4096;

/// A SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = base64::engine::general_purpose::STANDARD;
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            b.encode(&self.salt),
            b.encode(&self.stored_key),
            b.encode(&self.server_key)
        )
    }
}

impl ScramVerifier {
    /// None if `s` is not in verifier form (so it is a clear-text password);
    /// an error if it looks like one but is malformed.
    pub fn parse(s: &str) -> Option<Result<ScramVerifier, String>> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        Some(Self::parse_body(rest).ok_or_else(|| {
            "malformed SCRAM-SHA-256 verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> with base64 salt and keys".to_string()
        }))
    }

    fn parse_body(rest: &str) -> Option<ScramVerifier> {
        let b = base64::engine::general_purpose::STANDARD;
        let (params, keys) = rest.split_once('$')?;
        let (iter, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = ScramVerifier {
            iterations: iter.parse().ok().filter(|n| *n > 0)?,
            salt: b.decode(salt).ok()?,
            stored_key: b.decode(stored).ok()?,
            server_key: b.decode(server).ok()?,
        };
        (v.stored_key.len() == 32 && v.server_key.len() == 32 && !v.salt.is_empty()).then_some(v)
    }

    /// Derive the verifier of `password` (SASLprep-normalized, as clients
    /// do; a password SASLprep refuses is used as it is, as Postgres does).
    pub fn derive(password: &str, salt: &[u8], iterations: usize) -> ScramVerifier {
        use ring::{digest, hmac, pbkdf2};
        let normalized = stringprep::saslprep(password)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations.clamp(1, u32::MAX as usize) as u32)
                .expect("at least one iteration"),
            salt,
            normalized.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let server_key = hmac::sign(&key, b"Server Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: stored_key.as_ref().to_vec(),
            server_key: server_key.as_ref().to_vec(),
        }
    }

    /// Does `password` produce this verifier?
    pub fn matches(&self, password: &str) -> bool {
        let d = Self::derive(password, &self.salt, self.iterations);
        constant_time_eq(&d.stored_key, &self.stored_key)
            && constant_time_eq(&d.server_key, &self.server_key)
    }

    /// The verifier a `PASSWORD '…'` clause stores: a verifier given as
    /// such is kept as it is (as Postgres does), a clear-text password is
    /// salted and hashed.
    pub fn for_password(given: &str) -> Result<ScramVerifier, String> {
        match Self::parse(given) {
            Some(v) => v,
            None => Ok(Self::derive(given, &random_salt(), SCRAM_ITERATIONS)),
        }
    }
}

/// 16 random bytes.
pub fn random_salt() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random number generator");
    b
}

/// Compare without leaking where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_round_trip_and_check_passwords() {
        let v = ScramVerifier::derive("s3cret", b"0123456789abcdef", 4096);
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let back = ScramVerifier::parse(&text).unwrap().unwrap();
        assert_eq!(back, v);
        assert!(back.matches("s3cret"));
        assert!(!back.matches("s3cre"));
        assert!(ScramVerifier::parse("plain").is_none());
        assert!(ScramVerifier::parse("SCRAM-SHA-256$x").unwrap().is_err());
        assert_eq!(ScramVerifier::for_password(&text).unwrap(), v);
        assert!(ScramVerifier::for_password("pw").unwrap().matches("pw"));
    }

    /// RFC 7677's example: user "user", password "pencil", this salt and
    /// 4096 iterations give this StoredKey and ServerKey (as Postgres and
    /// every client compute them).
    #[test]
    fn derivation_matches_rfc_7677() {
        let b = base64::engine::general_purpose::STANDARD;
        let salt = b.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = ScramVerifier::derive("pencil", &salt, 4096);
        // ClientProof = ClientKey XOR ClientSignature; checking StoredKey
        // through the server signature of the RFC's exchange is longer, so
        // compare with the ServerKey-derived ServerSignature instead.
        use ring::hmac;
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &v.server_key),
            auth_message.as_bytes(),
        );
        assert_eq!(
            b.encode(sig.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
