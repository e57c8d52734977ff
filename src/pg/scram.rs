//! SCRAM-SHA-256 verifiers, computed here so the plaintext password never reaches the server.
//!
//! PostgreSQL stores `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802,
//! RFC 7677). Sending this verifier in `CREATE ROLE ... PASSWORD` keeps the password out of
//! the server log even with `log_statement = 'all'`. [`matches`] recomputes a stored
//! verifier from its own salt, so a re-run can tell whether the role's password is current.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (`scram_iterations`).
pub const ITERATIONS: u32 = 4096;

/// A fresh verifier for `password` with a random 16-byte salt.
pub fn verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    verifier_with(password, &salt, ITERATIONS)
}

/// The verifier for `password` with the given salt and iteration count.
pub fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// Whether a stored verifier was made from `password`.
pub fn matches(stored: &str, password: &str) -> bool {
    let Some(rest) = stored.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((params, _keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = params.split_once(':') else {
        return false;
    };
    let (Ok(iterations), Ok(salt)) = (iterations.parse::<u32>(), STANDARD.decode(salt)) else {
        return false;
    };
    verifier_with(password, &salt, iterations) == stored
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_rust_postgres() {
        // postgres-protocol computes verifiers as libpq does; ours must verify them.
        let theirs = postgres_protocol::password::scram_sha_256(b"correct horse");
        assert!(matches(&theirs, "correct horse"));
        assert!(!matches(&theirs, "wrong horse"));
    }

    #[test]
    fn fresh_verifiers_verify_and_differ() {
        let a = verifier("pw");
        let b = verifier("pw");
        assert_ne!(a, b, "salts must be random");
        assert!(matches(&a, "pw") && matches(&b, "pw"));
        assert!(!a.contains("pw$"));
    }

    #[test]
    fn garbage_never_matches() {
        for stored in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:y$z:w",
            "SCRAM-SHA-256$4096:!!$a:b",
        ] {
            assert!(!matches(stored, "pw"), "{stored}");
        }
    }
}
