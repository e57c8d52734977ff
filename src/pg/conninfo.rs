//! libpq connection strings (`host=... port=... user=...`), built with every value quoted
//! as libpq's `conninfo_parse` reads it.
//!
//! A value is written bare when libpq would read it back unchanged; otherwise it is put in
//! single quotes with `\` and `'` escaped by a backslash. A value with a space, a quote or a
//! backslash (a passfile under `/home/o'brien`, a socket dir with a space) would otherwise
//! cut the string short or change a neighbouring key. This module never adds a password:
//! credentials live in the passfile.

use std::fmt;

/// Quotes one conninfo value as libpq's `conninfo_parse` reads it: bare when it needs no
/// quoting, else `'...'` with `\` and `'` escaped by a backslash.
pub fn quote(value: &str) -> String {
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| is_libpq_space(c) || c == '\'' || c == '\\');
    if !needs_quotes {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The bytes C's `isspace` accepts in the "C" locale, which is what libpq tests with.
fn is_libpq_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// A connection string built from `key=value` pairs, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conninfo {
    pairs: Vec<(String, String)>,
}

impl Conninfo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key=value`; keys are libpq's keywords (`host`, `port`, `passfile`, ...), so
    /// they are plain words and are not quoted.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        debug_assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "conninfo keyword `{key}`"
        );
        self.pairs.push((key.to_string(), value.to_string()));
        self
    }

    /// The value set last for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Conninfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={}", quote(value))?;
        }
        Ok(())
    }
}

/// Reads a `key=value` connection string as libpq's `conninfo_parse` does (not the URI
/// form). Used by the tests to prove that what [`Conninfo`] writes reads back unchanged.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| is_libpq_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !is_libpq_space(*c)) {
            key.push(c);
        }
        while chars.next_if(|c| is_libpq_space(*c)).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("missing \"=\" after \"{key}\""));
        }
        while chars.next_if(|c| is_libpq_space(*c)).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string".into()),
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !is_libpq_space(*c)) {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_stay_bare() {
        let c = Conninfo::new()
            .set("host", "10.0.1.10")
            .set("port", 5432)
            .set("user", "replicator")
            .set("passfile", "/var/lib/postgresql/.pgrepl_pgpass")
            .set("application_name", "replica-az-a-0");
        // Unchanged from what pgrepl wrote before quoting, so converged replicas stay so.
        assert_eq!(
            c.to_string(),
            "host=10.0.1.10 port=5432 user=replicator passfile=/var/lib/postgresql/.pgrepl_pgpass application_name=replica-az-a-0"
        );
        assert_eq!(c.get("port"), Some("5432"));
    }

    #[test]
    fn spaces_quotes_backslashes_and_empty_values_are_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("/srv/pg home/.pgpass"), "'/srv/pg home/.pgpass'");
        assert_eq!(quote("/home/o'brien"), r"'/home/o\'brien'");
        assert_eq!(quote(r"C:\pg"), r"'C:\\pg'");
        assert_eq!(quote("a\tb"), "'a\tb'");
        assert_eq!(quote("key=value"), "key=value");
        assert_eq!(quote("wörd"), "wörd");
    }

    #[test]
    fn what_is_written_reads_back_unchanged() {
        let values = [
            "",
            "plain",
            "two words",
            "o'brien",
            r"back\slash",
            r"\'",
            "'",
            r"\",
            "trailing ",
            " leading",
            "tab\there",
            "new\nline",
            "a=b",
            "x y=z",
            "''",
            "ünïcödé\u{a0}nbsp",
        ];
        let mut c = Conninfo::new();
        for (i, v) in values.iter().enumerate() {
            c = c.set(&format!("k{i}"), v);
        }
        let text = c.to_string();
        let back = parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let expected: Vec<(String, String)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}"), v.to_string()))
            .collect();
        assert_eq!(back, expected, "{text}");
    }

    #[test]
    fn the_parser_reads_libpq_forms() {
        // Spaces around `=`, escapes in bare values, quoted values: as libpq's docs show.
        assert_eq!(
            parse(r"host = db  port=5433 passfile='/a b/\'c' user=x\ y").unwrap(),
            vec![
                ("host".to_string(), "db".to_string()),
                ("port".to_string(), "5433".to_string()),
                ("passfile".to_string(), "/a b/'c".to_string()),
                ("user".to_string(), "x y".to_string()),
            ]
        );
        assert!(parse("host='unterminated").is_err());
        assert!(parse("host").is_err());
    }
}
