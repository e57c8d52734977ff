//! Reading YAML files (inventory, playbooks) with serde-saphyr, and where an error is.
//!
//! serde-saphyr reports a line and column and a message with the position baked in
//! (`invalid u16 at line 7, column 14`). Callers print their own `FILE:LINE:COLUMN:`, so
//! [`Located::message`] never carries the position; and since serde-saphyr does not say
//! which field it was reading, [`Located::path`] is found by walking the document to the
//! node at the error's position (`hosts[1].postgres.port`).

use std::fmt::Write as _;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};

/// A YAML file that does not parse into the expected shape, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: u64,
    pub column: u64,
    /// One line saying what is wrong, without the position.
    pub message: String,
    /// Where in the document, as `hosts[1].postgres.port`, when it could be found.
    pub path: Option<String>,
    /// The source text at the error (`99999`), when it is a scalar.
    pub found: Option<String>,
    pub kind: Kind,
}

/// What sort of error it is, for callers that word some of them better.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A scalar that is not a value of the type wanted (`u16`, `u32`, `bool`, ...): a word
    /// where a number goes, or a number out of the type's range.
    InvalidScalar { ty: &'static str },
    /// A key the type does not have.
    UnknownField,
    /// A mapping that lacks a required key.
    MissingField,
    /// Anything else (syntax, missing fields, unknown variants, ...).
    Other,
}

/// Deserializes `text`; an error carries its line, column, field path and a one-line
/// message.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Located> {
    serde_saphyr::from_str(text).map_err(|e| locate(text, &e))
}

fn locate(text: &str, e: &serde_saphyr::Error) -> Located {
    let inner = e.without_snippet();
    let location = inner.location();
    let (line, column) = location.map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let kind = match inner {
        serde_saphyr::Error::InvalidScalar { ty, .. } => Kind::InvalidScalar { ty },
        serde_saphyr::Error::SerdeUnknownField { .. } => Kind::UnknownField,
        serde_saphyr::Error::SerdeMissingField { .. } => Kind::MissingField,
        _ => Kind::Other,
    };
    let found = location.and_then(|l| source_text(text, l));
    let raw_message = DefaultMessageFormatter.format_message(inner);
    let first_line = raw_message.lines().next().unwrap_or_default().trim();
    let message = match (&kind, &found) {
        (Kind::InvalidScalar { ty }, Some(found)) => {
            describe_invalid(ty, found).unwrap_or_else(|| format!("`{found}` is not a valid {ty}"))
        }
        _ => first_line.to_string(),
    };
    let path = (line > 0)
        .then(|| path_at(text, line, column, &kind))
        .flatten();
    Located {
        line,
        column,
        message,
        path,
        found,
        kind,
    }
}

/// The one-line scalar at `location` as written in `text`, without its quotes.
fn source_text(text: &str, location: serde_saphyr::Location) -> Option<String> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let raw = text.get(start..start.checked_add(len)?)?;
    let value = raw.trim().trim_matches(['"', '\'']);
    (!value.is_empty() && !value.contains('\n')).then(|| value.to_string())
}

/// The range of an integer type, for messages.
pub fn int_range(ty: &str) -> Option<(i128, i128)> {
    Some(match ty {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
}

/// `99999` for a u16 → out of range; `fifteen` for a u32 → not a whole number.
fn describe_invalid(ty: &str, found: &str) -> Option<String> {
    if let Some((min, max)) = int_range(ty) {
        return Some(if parse_int(found).is_some() {
            format!("{found} is out of range ({min} to {max})")
        } else {
            format!("`{found}` is not a whole number")
        });
    }
    matches!(ty, "bool" | "boolean").then(|| format!("`{found}` is not true or false"))
}

/// An integer as YAML 1.2 writes one (decimal, `0x`, `0o`), for telling "out of range"
/// from "not a number".
pub fn parse_int(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

/// The path (`hosts[1].postgres.port`) of the node at `line`:`column`: the shallowest
/// value there (a block mapping starts where its first key does); the key for an unknown
/// field (reported at its key); the mapping for a missing field (reported at one of the
/// mapping's other keys or values).
fn path_at(text: &str, line: u64, column: u64, kind: &Kind) -> Option<String> {
    let root: Spanned<Node> = serde_saphyr::from_str(text).ok()?;
    let mut hits = Vec::new();
    walk(text, &root, &mut Vec::new(), (line, column), &mut hits);
    let shallowest = |keep: &dyn Fn(&Hit) -> bool| {
        hits.iter()
            .filter(|h| keep(h))
            .min_by_key(|h| h.segments.len())
    };
    let segments = match kind {
        Kind::UnknownField => shallowest(&|h| h.is_key)
            .or_else(|| shallowest(&|_| true))?
            .segments
            .clone(),
        Kind::MissingField => match shallowest(&|h| h.is_map) {
            Some(map) => map.segments.clone(),
            None => {
                let hit = shallowest(&|_| true)?;
                hit.segments[..hit.segments.len().saturating_sub(1)].to_vec()
            }
        },
        _ => shallowest(&|h| !h.is_key)
            .or_else(|| shallowest(&|_| true))?
            .segments
            .clone(),
    };
    let path = render_path(&segments);
    (!path.is_empty()).then_some(path)
}

/// A YAML document's shape with where each node starts; values are not kept.
#[derive(Debug)]
enum Node {
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping key as text (`1`, `true` and `~` keys too).
#[derive(Debug)]
struct Key(String);

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

struct Hit {
    segments: Vec<Segment>,
    is_key: bool,
    is_map: bool,
}

fn at<T>(node: &Spanned<T>, (line, column): (u64, u64)) -> bool {
    [node.referenced, node.defined]
        .iter()
        .any(|l| l.line() == line && l.column() == column)
}

fn walk(
    text: &str,
    node: &Spanned<Node>,
    path: &mut Vec<Segment>,
    pos: (u64, u64),
    hits: &mut Vec<Hit>,
) {
    if at(node, pos) {
        hits.push(Hit {
            segments: path.clone(),
            is_key: false,
            is_map: matches!(node.value, Node::Map(_)),
        });
    }
    match &node.value {
        Node::Map(entries) => {
            for (key, value) in entries {
                // As written: a plain `on` key reads as the boolean true.
                let written =
                    source_text(text, key.referenced).unwrap_or_else(|| key.value.0.clone());
                path.push(Segment::Key(written));
                if at(key, pos) {
                    hits.push(Hit {
                        segments: path.clone(),
                        is_key: true,
                        is_map: false,
                    });
                }
                walk(text, value, path, pos, hits);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                walk(text, item, path, pos, hits);
                path.pop();
            }
        }
        Node::Scalar => {}
    }
}

fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

macro_rules! scalar_visits {
    ($out:expr; $($method:ident: $ty:ty),*) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            #[allow(clippy::redundant_closure_call)]
            Ok(($out)(v.to_string()))
        })*
    };
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping key")
            }
            scalar_visits!(Key; visit_str: &str, visit_bool: bool, visit_i64: i64,
                visit_u64: u64, visit_i128: i128, visit_u128: u128, visit_f64: f64);
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("~".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML node")
            }
            scalar_visits!(|_| Node::Scalar; visit_str: &str, visit_bool: bool, visit_i64: i64,
                visit_u64: u64, visit_i128: i128, visit_u128: u128, visit_f64: f64);
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                de::Deserialize::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        top: Option<Inner>,
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: Option<Spanned<u16>>,
        count: Option<u32>,
        on: Option<bool>,
    }

    fn err(text: &str) -> Located {
        from_str::<Doc>(text).unwrap_err()
    }

    #[test]
    fn out_of_range_numbers_say_so_with_their_path_and_no_position_in_the_message() {
        let e = err("items:\n  - name: a\n  - name: b\n    inner:\n      port: 99999\n");
        assert_eq!((e.line, e.column), (5, 13));
        assert_eq!(e.path.as_deref(), Some("items[1].inner.port"));
        assert_eq!(e.found.as_deref(), Some("99999"));
        assert_eq!(e.kind, Kind::InvalidScalar { ty: "u16" });
        assert_eq!(e.message, "99999 is out of range (0 to 65535)");
        assert!(!e.message.contains("line"), "{}", e.message);
    }

    #[test]
    fn words_where_numbers_go_and_flow_style_paths() {
        let e = err("top: { count: fifteen }\nitems: []\n");
        assert_eq!(e.path.as_deref(), Some("top.count"));
        assert_eq!(e.message, "`fifteen` is not a whole number");
        let e = err("top: { on: maybe }\nitems: []\n");
        assert_eq!(e.message, "`maybe` is not true or false");
        assert_eq!(e.path.as_deref(), Some("top.on"));
    }

    #[test]
    fn unknown_fields_point_at_their_key() {
        let e = err("items:\n  - colour: red\n    name: a\n");
        assert_eq!(e.kind, Kind::UnknownField);
        assert_eq!(e.path.as_deref(), Some("items[0].colour"));
        assert!(
            e.message.starts_with("unknown field `colour`"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn missing_fields_point_at_their_mapping() {
        for text in [
            "items:\n  - { inner: { count: 1 } }\n",
            "items:\n  - inner: { count: 1 }\n",
            "items:\n  - { name: a }\n  - { inner: { count: 1 } }\n",
        ] {
            let e = err(text);
            assert_eq!(e.kind, Kind::MissingField, "{text}");
            assert_eq!(e.message, "missing field `name`", "{text}");
            let want = if text.contains("a }") {
                "items[1]"
            } else {
                "items[0]"
            };
            assert_eq!(e.path.as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn syntax_errors_keep_a_one_line_message() {
        let e = err("items: [\n");
        assert!(e.line > 0);
        assert!(!e.message.is_empty() && !e.message.contains('\n'));
        assert!(
            !e.message.contains(&format!("line {}", e.line)),
            "{}",
            e.message
        );
    }

    #[test]
    fn integers_parse_as_yaml_writes_them() {
        assert_eq!(parse_int("99999"), Some(99999));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("fifteen"), None);
        assert_eq!(parse_int("1.5"), None);
    }
}
