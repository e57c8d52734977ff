//! The inventory: what the cluster is, loaded and checked before any host is contacted.
//!
//! `load` parses `inventory.yaml` (serde-saphyr, unknown fields rejected), resolves every
//! default and per-host override into plain [`Host`] values, and runs every validation
//! rule, collecting all problems so a user fixes them in one go. It never does network I/O.

mod model;
mod resolve;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{Layout, Role, ServiceKind};
pub use resolve::{
    HbaRule, Host, Inventory, PasswordSource, PgLayout, Replication, SshTarget, default_slot_name,
};

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
    #[error(
        "{path}:{line}:{column}: {message}\nhint: check the YAML syntax and the field names in README's inventory reference"
    )]
    Syntax {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
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
    let file: model::InventoryFile = crate::yaml::from_str(text).map_err(|e| Error::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut problems = validate::check(&file);
    let inventory = resolve::resolve(path, base, &file, &mut problems);
    if problems.is_empty() {
        Ok(inventory)
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        Err(Error::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests;
