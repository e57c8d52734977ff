//! The inventory: what the cluster is, loaded and checked before any host is contacted.
//!
//! `load` parses `inventory.yaml` (serde-saphyr, unknown fields rejected), resolves every
//! default and per-host override into plain [`Host`] values, and runs every validation
//! rule, collecting all problems so a user fixes them in one go. It never does network I/O.

mod endpoints;
mod model;
mod resolve;
mod sync;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use endpoints::{CHECK_ROLE, parse_size};
pub use model::{Layout, ReadFrom, Role, ServiceKind, Size};
pub use resolve::{
    AppRole, Database, Endpoint, HbaRule, Host, Inventory, PasswordSource, PgLayout, Proxy,
    Replication, SshTarget, Stats, default_slot_name,
};
pub use sync::{SyncMode, Synchronous};

/// One problem found in an inventory, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub field: String,
    pub message: String,
    pub hint: String,
}

/// Everything wrong with an inventory file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot read inventory {path}: {source}\nhint: pass the inventory with -i FILE, or run from the directory that holds inventory.yaml"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not YAML, or not the inventory's shape: a word where a number goes, a
    /// port out of range, an unknown field. Parsing stops at the first one.
    #[error(
        "{}:{line}:{column}: {}{message}\nhint: {hint}",
        .path.display(),
        .field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
    )]
    Syntax {
        path: PathBuf,
        line: u64,
        column: u64,
        /// Where in the document (`hosts[1].postgres.port`), when known.
        field: Option<String>,
        message: String,
        hint: String,
    },
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!("{} has {} problem(s):", path.display(), problems.len());
    for p in problems {
        out.push_str(&format!(
            "\n  {}:{}:{}: {}: {}\n    hint: {}",
            path.display(),
            p.line,
            p.column,
            p.field,
            p.message,
            p.hint
        ));
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {} (hint: {})",
            self.line, self.column, self.field, self.message, self.hint
        )
    }
}

/// Reads, parses, resolves and validates an inventory file.
pub fn load(path: &Path) -> Result<Inventory, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses inventory text as if read from `path` (relative paths resolve against its folder).
pub fn parse(path: &Path, text: &str) -> Result<Inventory, Error> {
    let file: model::InventoryFile =
        crate::yaml::from_str(text).map_err(|e| syntax_error(path, e))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut problems = validate::check(&file);
    let (sync_problems, warnings) = sync::check(&file);
    problems.extend(sync_problems);
    let mut inventory = resolve::resolve(path, base, &file, &mut problems);
    if problems.is_empty() {
        inventory.replication.synchronous = sync::resolve(&file);
        inventory.warnings = warnings;
        Ok(inventory)
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        Err(Error::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Words a YAML error for the inventory: the field, what is wrong with the value, and a
/// hint that knows what the field is (a TCP port, a PostgreSQL major version).
fn syntax_error(path: &Path, e: crate::yaml::Located) -> Error {
    use crate::yaml::{Kind, parse_int};
    let field = e.path.clone();
    let leaf = field
        .as_deref()
        .map(|f| f.rsplit('.').next().unwrap_or(f))
        .unwrap_or_default();
    let section = field
        .as_deref()
        .and_then(|f| f.rsplit('.').nth(1))
        .unwrap_or_default();
    let number = e.found.as_deref().and_then(parse_int);
    let found = e.found.clone().unwrap_or_default();
    let (message, hint) = match (&e.kind, section, leaf) {
        (Kind::InvalidScalar { .. }, "postgres" | "ssh", "port") => {
            let usual = if section == "ssh" {
                "the SSH port, usually 22"
            } else {
                "PostgreSQL's port, usually 5432"
            };
            let message = match number {
                Some(_) => format!("{found} is out of range: a TCP port is 1-65535"),
                None => format!("`{found}` is not a port number: a TCP port is 1-65535"),
            };
            (message, format!("use {usual}"))
        }
        (Kind::InvalidScalar { .. }, "postgres", "version") => {
            let range = format!("{} to {}", validate::MIN_VERSION, validate::MAX_VERSION);
            match number {
                Some(_) => (
                    format!("PostgreSQL {found} is not supported"),
                    format!("use a major version from {range}"),
                ),
                None => (
                    format!("`{found}` is not a PostgreSQL major version"),
                    format!("write the major version as a number from {range}, e.g. `version: 15`"),
                ),
            }
        }
        (Kind::MissingField, _, _) => (
            e.message.clone(),
            "add it; README's inventory reference says what each entry needs".into(),
        ),
        (Kind::UnknownField, _, _) => (
            e.message.clone(),
            "check the spelling and the indentation; README's inventory reference lists every field"
                .into(),
        ),
        _ => (
            e.message.clone(),
            "check the YAML syntax and the field names in README's inventory reference".into(),
        ),
    };
    Error::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        column: e.column,
        field,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests;
