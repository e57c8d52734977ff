//! SCRAM-SHA-256 verifiers, computed here so the plaintext password never reaches the server.
//!
//! PostgreSQL stores `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802,
//! RFC 7677). Sending this verifier in `CREATE ROLE ... PASSWORD` keeps the password out of
//! the server log even with `log_statement = 'all'`.
//!
//! The password is SASLprep'd (RFC 4013) first, as libpq and the server do: a no-break space
//! becomes a space, full-width letters become ASCII, and so on. Both directions go through
//! `postgres-protocol` (rust-postgres), which does exactly what libpq does, so this module
//! must never derive keys from the password itself: a verifier made from the raw bytes of
//! `pass\u{a0}word` is one no replica can log in with.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use sha2::{Digest, Sha256};

/// A fresh verifier for `password` with a random salt and PostgreSQL's default 4096
/// iterations, SASLprep'd as libpq's `PQencryptPasswordConn` does.
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Whether a stored verifier was made from `password` (as libpq would send it).
///
/// It plays the server's side of a SCRAM exchange against `postgres-protocol`'s client,
/// which SASLpreps the password and salts it with the stored salt and iteration count. The
/// password matches when the client's proof checks against the StoredKey (what the server
/// checks at every login) and the client accepts the signature made with the ServerKey.
pub fn matches(stored: &str, password: &str) -> bool {
    let Some(v) = Stored::parse(stored) else {
        return false;
    };
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let first = String::from_utf8_lossy(client.message()).into_owned();
    let Some(at) = first.find("n=,r=") else {
        return false;
    };
    let client_first_bare = &first[at..];
    let nonce = &client_first_bare["n=,r=".len()..];
    let server_first = format!("r={nonce}pgrepl,s={},i={}", v.salt_b64, v.iterations);
    if client.update(server_first.as_bytes()).is_err() {
        return false;
    }
    let client_final = String::from_utf8_lossy(client.message()).into_owned();
    let Some((without_proof, proof)) = client_final.rsplit_once(",p=") else {
        return false;
    };
    let Ok(proof) = STANDARD.decode(proof) else {
        return false;
    };
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    // ClientKey = proof XOR HMAC(StoredKey, AuthMessage); the server accepts when
    // SHA-256(ClientKey) is the StoredKey.
    let signature = hmac_sha256(&v.stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return false;
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    if Sha256::digest(&client_key).as_slice() != v.stored_key.as_slice() {
        return false;
    }
    let server_signature = STANDARD.encode(hmac_sha256(&v.server_key, auth_message.as_bytes()));
    client
        .finish(format!("v={server_signature}").as_bytes())
        .is_ok()
}

/// The parts of a stored `SCRAM-SHA-256$...` verifier.
struct Stored<'a> {
    iterations: u32,
    salt_b64: &'a str,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl<'a> Stored<'a> {
    fn parse(stored: &'a str) -> Option<Self> {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt_b64) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        STANDARD.decode(salt_b64).ok()?;
        Some(Stored {
            iterations: iterations.parse().ok()?,
            salt_b64,
            stored_key: STANDARD.decode(stored_key).ok()?,
            server_key: STANDARD.decode(server_key).ok()?,
        })
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_verifiers_verify_and_differ() {
        let a = verifier("pw");
        let b = verifier("pw");
        assert_ne!(a, b, "salts must be random");
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{a}");
        assert!(matches(&a, "pw") && matches(&b, "pw"));
        assert!(!matches(&a, "pw2") && !matches(&a, "Pw"));
        assert!(!a.contains("pw$"));
    }

    /// libpq SASLpreps the password before it salts it, so the verifier must verify the
    /// prepared form: NO-BREAK SPACE → SPACE, full-width → ASCII (NFKC).
    #[test]
    fn non_ascii_passwords_are_saslprepped_like_libpq() {
        let nbsp = verifier("pass\u{a0}word");
        assert!(matches(&nbsp, "pass word"), "{nbsp}");
        assert!(matches(&nbsp, "pass\u{a0}word"));
        let wide = verifier("ｐａｓｓ");
        assert!(matches(&wide, "pass"), "{wide}");
        let umlaut = verifier("pass\u{a0}wörd");
        assert!(matches(&umlaut, "pass wörd"));
        // NFKC composes: `o` + COMBINING DIAERESIS is `ö`.
        assert!(matches(&umlaut, "pass wo\u{308}rd"));
        assert!(!matches(&umlaut, "pass word"));
    }

    /// Verifiers made by PostgreSQL 15 itself (`SET password_encryption = 'scram-sha-256';
    /// CREATE ROLE ... PASSWORD '...'`, which SASLpreps on the server), so this module agrees
    /// with the server and not only with the library it uses.
    #[test]
    fn verifies_what_postgresql_itself_stores() {
        for (password, stored) in POSTGRES_MADE {
            assert!(matches(stored, password), "{password:?}: {stored}");
            assert!(!matches(stored, "wrong"), "{password:?}");
        }
    }

    const POSTGRES_MADE: &[(&str, &str)] = &[
        (
            "pass\u{a0}word",
            "SCRAM-SHA-256$4096:ZuIFM+/nF7XPHKxSUsZK1g==$hP1C1/Zm4M2QXSY+zPFuDGP1RyKl83Ot0Hnrg9stVuM=:xTZnYBCOoBG+YOJs6a5GG6XLpgj6EZyHD5HeezaGTpc=",
        ),
        (
            "ｐａｓｓ",
            "SCRAM-SHA-256$4096:ts0qeE1pPIbU6InBq37y+Q==$w9yAUo+jTiHAsOgHlW7NCVznh8QgKxvmTXy3vDvJz0A=:azSsAV2ZFHwv1Z+D4aPSD/IAGYrPLSFhCoMq/gPMhtU=",
        ),
        (
            "pass\u{a0}wörd",
            "SCRAM-SHA-256$4096:6i9Ya6YANmyi/sRAzBWsJQ==$PXCne7hhr0z+OtiYO52XzWh8DQUARG8tg1YxehVW8h8=:vvJThCydX8RE03Xsw6pybUvsCvmUHsCVBabvJ1TRZjk=",
        ),
        (
            "correct horse",
            "SCRAM-SHA-256$4096:g6YI1xelO85czjtuycmsig==$E9Jd9kPEEzBWeaA3ssBxVEt69ES16wA8C9yjIvrX6LE=:Pm3CP5F/ihF5Q6yv8rEyLSTBXz4+owHtJJMPsklqIuY=",
        ),
    ];

    #[test]
    fn garbage_never_matches() {
        for stored in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:y$z:w",
            "SCRAM-SHA-256$4096:!!$a:b",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
        ] {
            assert!(!matches(stored, "pw"), "{stored}");
        }
    }
}
