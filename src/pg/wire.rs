//! Just enough of PostgreSQL's frontend/backend protocol (version 3.0) to log in and run
//! one query without a client library, every message sent at once.
//!
//! HAProxy's `tcp-check` sends these bytes to tell a primary from a standby, and verify
//! sends the same through an endpoint's port and reads the answer. A login with the
//! `password` method (cleartext) is the only one that can be pipelined: the client answers
//! a challenge it has not seen yet, which SCRAM and md5 (salted per connection) forbid.
//! Everything here is pure: building messages and reading answers.

use std::fmt::Write as _;

/// `AuthenticationOk`: `R`, length 8, code 0.
pub const AUTH_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];

/// The startup message (protocol 3.0) with these parameters.
pub fn startup(user: &str, database: &str, application_name: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [
        ("user", user),
        ("database", database),
        ("application_name", application_name),
    ] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = len_prefix(body.len());
    out.extend(body);
    out
}

/// A `PasswordMessage` carrying a cleartext password.
pub fn password(password: &str) -> Vec<u8> {
    message(b'p', &cstring(password))
}

/// A simple `Query`.
pub fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &cstring(sql))
}

/// `Terminate`: the server closes the connection once it has answered what came before.
pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}

/// A `DataRow` with these (non-null) column values, as a server sends it: what a check
/// expects to find in the answer.
pub fn data_row(columns: &[&[u8]]) -> Vec<u8> {
    let mut body = u16::try_from(columns.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    for c in columns {
        body.extend_from_slice(&u32::try_from(c.len()).unwrap_or(u32::MAX).to_be_bytes());
        body.extend_from_slice(c);
    }
    message(b'D', &body)
}

/// Lower-case hex, as HAProxy's `send-binary` and `expect binary` take it.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Bytes from hex text (whitespace ignored), as `od -An -tx1` prints them.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn cstring(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

fn len_prefix(body: usize) -> Vec<u8> {
    u32::try_from(body + 4)
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec()
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend(len_prefix(body.len()));
    out.extend_from_slice(body);
    out
}

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `R` with its code: 0 ok, 3 cleartext password wanted, 10 SASL, ...
    Auth(u32),
    ParameterStatus(String, String),
    /// `E`: severity, SQLSTATE and message.
    Error {
        severity: String,
        code: String,
        message: String,
    },
    /// `D`: the columns as text, `None` for NULL.
    DataRow(Vec<Option<String>>),
    ReadyForQuery,
    Other(u8),
}

/// Splits the server's bytes into messages; a truncated last message is left out.
pub fn parse(mut bytes: &[u8]) -> Vec<Backend> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let kind = bytes[0];
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if len < 4 || bytes.len() < 1 + len {
            break;
        }
        let body = &bytes[5..1 + len];
        out.push(match kind {
            b'R' if body.len() >= 4 => {
                Backend::Auth(u32::from_be_bytes([body[0], body[1], body[2], body[3]]))
            }
            b'S' => {
                let mut parts = body.split(|b| *b == 0).map(text);
                Backend::ParameterStatus(
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                )
            }
            b'E' => error_fields(body),
            b'D' => Backend::DataRow(row(body)),
            b'Z' => Backend::ReadyForQuery,
            other => Backend::Other(other),
        });
        bytes = &bytes[1 + len..];
    }
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn error_fields(body: &[u8]) -> Backend {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let value = text(&field[1..]);
        match field[0] {
            b'S' => severity = value,
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    Backend::Error {
        severity,
        code,
        message,
    }
}

fn row(body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    if body.len() < 2 {
        return out;
    }
    let n = u16::from_be_bytes([body[0], body[1]]);
    let mut rest = &body[2..];
    for _ in 0..n {
        if rest.len() < 4 {
            break;
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        rest = &rest[4..];
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = (len as usize).min(rest.len());
        out.push(Some(text(&rest[..len])));
        rest = &rest[len..];
    }
    out
}

/// The answer to a pipelined login and one query: its rows, or why there are none.
pub fn answer(bytes: &[u8]) -> Result<Vec<Vec<Option<String>>>, String> {
    let messages = parse(bytes);
    if let Some(Backend::Error { code, message, .. }) =
        messages.iter().find(|m| matches!(m, Backend::Error { .. }))
    {
        return Err(format!("{message} (SQLSTATE {code})"));
    }
    if !messages.contains(&Backend::Auth(0)) {
        return Err(if bytes.is_empty() {
            "no answer (the connection was closed or timed out)".into()
        } else {
            "no login: the server did not accept the password".into()
        });
    }
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            Backend::DataRow(r) => Some(r),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_has_protocol_3_and_its_length() {
        let s = startup("u", "d", "a");
        assert_eq!(&s[4..8], &[0, 3, 0, 0]);
        assert_eq!(
            u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize,
            s.len()
        );
        assert!(s.ends_with(b"application_name\0a\0\0"));
    }

    #[test]
    fn messages_carry_their_length_after_the_type() {
        assert_eq!(hex(&query("SELECT 1")), "510000000d53454c454354203100");
        assert_eq!(hex(&terminate()), "5800000004");
        assert_eq!(hex(&data_row(&[b"f"])), "440000000b00010000000166");
        assert_eq!(from_hex(" 58 00 00\n00 04"), Some(terminate()));
        assert_eq!(from_hex("5"), None);
    }

    #[test]
    fn an_answer_gives_rows_or_the_servers_error() {
        let mut ok = AUTH_OK.to_vec();
        ok.extend(message(b'S', b"in_hot_standby\0on\0"));
        ok.extend(message(b'Z', b"I"));
        ok.extend(message(b'T', b"..."));
        ok.extend(data_row(&[b"10.0.0.11", b"t"]));
        ok.extend(message(b'C', b"SELECT 1\0"));
        assert_eq!(
            answer(&ok).unwrap(),
            vec![vec![Some("10.0.0.11".to_string()), Some("t".to_string())]]
        );
        let err = message(b'E', b"SFATAL\0C28P01\0Mpassword authentication failed\0\0");
        assert_eq!(
            answer(&err).unwrap_err(),
            "password authentication failed (SQLSTATE 28P01)"
        );
        assert!(answer(&[]).unwrap_err().contains("no answer"));
        // A truncated tail is ignored, not misread.
        assert_eq!(parse(&ok[..ok.len() - 3]).len(), 5);
    }

    #[test]
    fn a_null_column_reads_as_none() {
        let mut body = 1u16.to_be_bytes().to_vec();
        body.extend((-1i32).to_be_bytes());
        assert_eq!(
            parse(&message(b'D', &body)),
            vec![Backend::DataRow(vec![None])]
        );
    }
}
