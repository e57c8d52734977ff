//! The SSH transport: the only code that talks to hosts.
//!
//! One russh connection per host, opened concurrently and reused by every step (a channel
//! per command). Commands are typed ([`Command`]), secrets go on stdin, host keys are
//! verified, and sudo never hangs on a password prompt (`sudo -n`).

mod command;
mod connect;
mod error;
mod session;

pub use command::{Become, Command, DEFAULT_TIMEOUT, Output, quote};
pub use connect::{ConnectOptions, Endpoint, connect, endpoint, load_ssh_config};
pub use error::Error;
pub use session::{Session, Stream};

/// Receives `(host, command)` for each command about to run, secrets already redacted.
pub type Trace = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;
