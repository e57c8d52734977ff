//! The one error type a command ends with, and the exit codes.
//!
//! Each module keeps its own typed error; this type gathers them (`#[from]`) and decides
//! the exit code in one place. `main` prints it (through the reporter, so secrets are
//! redacted) and exits with [`Error::exit_code`].

use crate::step::StepError;

/// Exit codes, as documented in README and `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const WARN: u8 = 1;
    pub const FAILED: u8 = 2;
    pub const INVALID: u8 = 64;
    pub const INTERRUPTED: u8 = 130;
}

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Success (verify: healthy).
    Ok,
    /// Warnings (verify: e.g. lag above a threshold).
    Warn,
    /// A check or step failed; the recap says where.
    Failed,
    /// Ctrl-C or SIGTERM; the recap says what each host was left in.
    Interrupted,
}

impl Finished {
    pub fn exit_code(self) -> u8 {
        match self {
            Finished::Ok => exit::OK,
            Finished::Warn => exit::WARN,
            Finished::Failed => exit::FAILED,
            Finished::Interrupted => exit::INTERRUPTED,
        }
    }
}

/// Why a command could not run (or stopped before changing anything).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Inventory(Box<crate::inventory::Error>),
    #[error(transparent)]
    Playbook(Box<crate::playbook::Error>),
    #[error(transparent)]
    Plan(Box<crate::plan::Error>),
    #[error(transparent)]
    Template(Box<crate::templates::Error>),
    #[error(transparent)]
    Edit(Box<crate::edit::Error>),
    /// The ssh config file could not be read.
    #[error("ssh config: {0}")]
    SshConfig(#[source] crate::ssh::Error),
    /// Flags or arguments that do not fit together or do not fit the inventory.
    #[error("{message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// A file pgrepl was asked to write (log file, inventory) could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start (out of threads or memory).
    #[error("cannot start the async runtime: {source}")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    /// The command refused to start, having changed nothing.
    #[error("{0}\nnothing was changed")]
    Refused(#[source] StepError),
}

impl Error {
    /// A usage error with a hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The process exit code for this error: invalid input is 64 (no host was contacted);
    /// a refusal after contacting hosts is 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused(_) | Error::Runtime { .. } => exit::FAILED,
            _ => exit::INVALID,
        }
    }
}

/// The modules' errors, boxed: they are large and rare.
macro_rules! boxed_from {
    ($($variant:ident($t:ty)),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Inventory(crate::inventory::Error),
    Playbook(crate::playbook::Error),
    Plan(crate::plan::Error),
    Template(crate::templates::Error),
    Edit(crate::edit::Error)
);
