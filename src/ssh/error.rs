//! What can go wrong reaching a host or running a command on it, with what to do next.

use std::path::PathBuf;
use std::time::Duration;

/// An SSH-layer failure. Every variant names the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "host `{host}`: cannot connect to {addr}: {reason}\nhint: check that the host is up, that sshd listens on that port, and the network path (bastion, security group)"
    )]
    Connect {
        host: String,
        addr: String,
        reason: String,
    },
    #[error("host `{host}`: unknown host key {fingerprint} for {addr} (not in {})\nhint: check the fingerprint out of band, then re-run with --accept-new-host-keys to record it, or add it with `ssh-keyscan {addr} >> {}`", file.display(), file.display())]
    HostKeyUnknown {
        host: String,
        addr: String,
        fingerprint: String,
        file: PathBuf,
    },
    #[error("host `{host}`: HOST KEY CHANGED for {addr}: it does not match {}:{line}; refusing to connect\nhint: this may be an attack, or the host was rebuilt; if you know why it changed, remove line {line} from that file (ssh-keygen -R {addr} -f {})", file.display(), file.display())]
    HostKeyChanged {
        host: String,
        addr: String,
        file: PathBuf,
        line: usize,
    },
    #[error("host `{host}`: cannot use known_hosts {}: {reason}", file.display())]
    KnownHosts {
        host: String,
        file: PathBuf,
        reason: String,
    },
    #[error("host `{host}`: authentication as `{user}` failed; tried: {}\nhint: set ssh.identity_file in the inventory, load the key into ssh-agent, or check authorized_keys on the host", if tried.is_empty() { "nothing (no key file and no agent)".to_string() } else { tried.join("; ") })]
    Auth {
        host: String,
        user: String,
        tried: Vec<String>,
    },
    #[error("host `{host}`: SSH protocol error: {source}")]
    Protocol {
        host: String,
        #[source]
        source: russh::Error,
    },
    #[error("host `{host}`: `{command}` exited with status {status}{}{}", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") }, if stdout.is_empty() || !stderr.is_empty() { String::new() } else { format!(":\n{stdout}") })]
    CommandFailed {
        host: String,
        command: String,
        status: u32,
        stderr: String,
        stdout: String,
    },
    #[error(
        "host `{host}`: `{command}` ended without an exit status (connection lost or command killed)"
    )]
    NoExitStatus { host: String, command: String },
    #[error("host `{host}`: `{command}` did not finish within {after:?}")]
    Timeout {
        host: String,
        command: String,
        after: Duration,
    },
    #[error(
        "host `{host}`: `{command}` printed nothing for {after:?}: stalled (a lost network path?)"
    )]
    Stalled {
        host: String,
        command: String,
        after: Duration,
    },
    #[error(
        "host `{host}`: sudo asks user `{user}` for a password\nhint: pgrepl needs passwordless sudo (a sudoers line `{user} ALL=(ALL) NOPASSWD:ALL`), or log in as root"
    )]
    SudoNeedsPassword { host: String, user: String },
    #[error("host `{host}`: {message}")]
    Config { host: String, message: String },
    /// The ssh config file (`--ssh-config` or `~/.ssh/config`) could not be read or parsed.
    #[error("{}: {reason}\nhint: fix the file, or point --ssh-config at another one", path.display())]
    ConfigFile { path: PathBuf, reason: String },
}

impl Error {
    /// The host this error is about.
    pub fn host(&self) -> &str {
        match self {
            Error::Connect { host, .. }
            | Error::HostKeyUnknown { host, .. }
            | Error::HostKeyChanged { host, .. }
            | Error::KnownHosts { host, .. }
            | Error::Auth { host, .. }
            | Error::Protocol { host, .. }
            | Error::CommandFailed { host, .. }
            | Error::NoExitStatus { host, .. }
            | Error::Timeout { host, .. }
            | Error::Stalled { host, .. }
            | Error::SudoNeedsPassword { host, .. }
            | Error::Config { host, .. } => host,
            Error::ConfigFile { .. } => "",
        }
    }

    /// Whether the host could not be reached at all (as opposed to a command failing on it).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Protocol { .. }
                | Error::NoExitStatus { .. }
                | Error::Stalled { .. }
        )
    }
}
