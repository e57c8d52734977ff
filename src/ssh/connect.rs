//! Opening a [`Session`]: where to connect, checking the host key, authenticating, bastions.
//!
//! Settings come from the inventory first and `~/.ssh/config` second (ssh2-config), as
//! users expect. Host keys are checked against known_hosts before any credential is sent;
//! an unknown key is refused unless `--accept-new-host-keys`, a changed key always.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use russh::client;
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use secrecy::{ExposeSecret, SecretString};

use super::error::Error;
use super::session::Session;
use crate::inventory::SshTarget;

/// How connections are made, shared by every host of a run.
#[derive(Clone)]
pub struct ConnectOptions {
    /// An ssh config file; `None` reads `~/.ssh/config` when it exists.
    pub ssh_config: Option<PathBuf>,
    /// Record unknown host keys instead of refusing them (OpenSSH's `accept-new`).
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    /// Interval of SSH keepalives; a host that misses four in a row counts as lost.
    pub keepalive: Duration,
    /// Receives `(host, command)` for every command run (`-v`).
    pub trace: Option<super::Trace>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ssh_config: None,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            trace: None,
        }
    }
}

/// Everything needed to reach one host, after merging the inventory with ssh config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Inventory name, for messages.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    /// Whether the identity files were named (inventory or ssh config) rather than guessed.
    pub explicit_identity: bool,
    pub known_hosts: PathBuf,
    pub proxy_jump: Option<String>,
    pub passphrase_env: Option<String>,
}

/// Reads the ssh config file the options point at (or `~/.ssh/config`), if any.
pub fn load_ssh_config(opts: &ConnectOptions) -> Result<Option<ssh2_config::SshConfig>, Error> {
    let path = match &opts.ssh_config {
        Some(p) => p.clone(),
        None => match std::env::home_dir() {
            Some(home) => home.join(".ssh").join("config"),
            None => return Ok(None),
        },
    };
    if opts.ssh_config.is_none() && !path.exists() {
        return Ok(None);
    }
    let fail = |reason: String| Error::ConfigFile {
        path: path.clone(),
        reason,
    };
    let file = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
    let mut reader = std::io::BufReader::new(file);
    ssh2_config::SshConfig::default()
        .parse(
            &mut reader,
            ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS
                | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map(Some)
        .map_err(|e| fail(e.to_string()))
}

/// Merges an inventory target with ssh config. Inventory values win.
pub fn endpoint(
    name: &str,
    target: &SshTarget,
    config: Option<&ssh2_config::SshConfig>,
) -> Endpoint {
    let params = config.map(|c| c.query(&target.host));
    let home = std::env::home_dir().unwrap_or_else(|| PathBuf::from("/root"));
    let from_config = params
        .as_ref()
        .and_then(|p| p.identity_file.clone())
        .unwrap_or_default();
    let (identity_files, explicit_identity) = match (&target.identity_file, from_config.is_empty())
    {
        (Some(file), _) => (vec![file.clone()], true),
        (None, false) => (from_config, true),
        (None, true) => (
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|f| home.join(".ssh").join(f))
                .collect(),
            false,
        ),
    };
    Endpoint {
        name: name.to_string(),
        address: params
            .as_ref()
            .and_then(|p| p.host_name.clone())
            .unwrap_or_else(|| target.host.clone()),
        port: target
            .port
            .or_else(|| params.as_ref().and_then(|p| p.port))
            .unwrap_or(22),
        user: target
            .user
            .clone()
            .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into()),
        identity_files,
        explicit_identity,
        known_hosts: target
            .known_hosts
            .clone()
            .unwrap_or_else(|| home.join(".ssh").join("known_hosts")),
        proxy_jump: target.proxy_jump.clone().or_else(|| {
            params
                .as_ref()
                .and_then(|p| p.proxy_jump.as_ref())
                .and_then(|j| j.first().cloned())
                .filter(|j| j != "none")
        }),
        passphrase_env: target.passphrase_env.clone(),
    }
}

/// The endpoint of a bastion named in `ProxyJump` form (`[user@]host[:port]`), using the
/// target's key files and known_hosts, and ssh config for an alias.
pub fn jump_endpoint(
    spec: &str,
    via: &Endpoint,
    config: Option<&ssh2_config::SshConfig>,
) -> Endpoint {
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => (h, p.parse().ok()),
        _ => (rest, None),
    };
    let target = SshTarget {
        host: host.trim_matches(['[', ']']).to_string(),
        user: user
            .or_else(|| config.and_then(|c| c.query(host).user))
            .or(Some(via.user.clone())),
        port,
        identity_file: None,
        known_hosts: Some(via.known_hosts.clone()),
        proxy_jump: None,
        passphrase_env: via.passphrase_env.clone(),
    };
    let mut ep = endpoint(&format!("{} (bastion {host})", via.name), &target, config);
    if !ep.explicit_identity {
        ep.identity_files = via.identity_files.clone();
        ep.explicit_identity = via.explicit_identity;
    }
    ep
}

/// Connects and authenticates, through the endpoint's bastion when it has one.
pub async fn connect(
    ep: &Endpoint,
    opts: &ConnectOptions,
    config: Option<&ssh2_config::SshConfig>,
) -> Result<Session, Error> {
    let jump = match &ep.proxy_jump {
        Some(spec) => {
            let bastion = jump_endpoint(spec, ep, config);
            Some(Arc::new(Box::pin(open(&bastion, opts, None)).await?))
        }
        None => None,
    };
    open(ep, opts, jump).await
}

async fn open(
    ep: &Endpoint,
    opts: &ConnectOptions,
    jump: Option<Arc<Session>>,
) -> Result<Session, Error> {
    let config = Arc::new(client::Config {
        // Keepalives find a dead peer; no inactivity limit, so a long silent backup survives.
        keepalive_interval: Some(opts.keepalive),
        keepalive_max: 4,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    });
    let handler = ClientHandler {
        addr: ep.address.clone(),
        port: ep.port,
        known_hosts: ep.known_hosts.clone(),
        accept_new: opts.accept_new_host_keys,
    };
    let addr = format!("{}:{}", ep.address, ep.port);
    let connecting = async {
        match &jump {
            Some(bastion) => {
                let stream = bastion.tunnel(&ep.address, ep.port).await?;
                client::connect_stream(config, stream, handler)
                    .await
                    .map_err(|e| e.into_error(ep))
            }
            None => client::connect(config, addr.as_str(), handler)
                .await
                .map_err(|e| e.into_error(ep)),
        }
    };
    let mut handle = tokio::time::timeout(opts.connect_timeout, connecting)
        .await
        .map_err(|_| Error::Connect {
            host: ep.name.clone(),
            addr: addr.clone(),
            reason: format!("no answer within {:?}", opts.connect_timeout),
        })??;
    authenticate(&mut handle, ep).await?;
    Ok(Session {
        host: ep.name.clone(),
        user: ep.user.clone(),
        handle,
        _jump: jump,
        login_is_root: ep.user == "root",
        trace: opts.trace.clone(),
    })
}

async fn authenticate(
    handle: &mut client::Handle<ClientHandler>,
    ep: &Endpoint,
) -> Result<(), Error> {
    let mut tried = Vec::new();
    let protocol = |source| Error::Protocol {
        host: ep.name.clone(),
        source,
    };
    for path in &ep.identity_files {
        if !ep.explicit_identity && !path.exists() {
            continue;
        }
        let key = match load_key(path, ep) {
            Ok(key) => key,
            Err(reason) => {
                tried.push(format!("key {} ({reason})", path.display()));
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(protocol)?
                .flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(&ep.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(protocol)?;
        if result.success() {
            return Ok(());
        }
        tried.push(format!("key {} (rejected by the server)", path.display()));
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match try_agent(handle, ep, &mut tried).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(reason) => tried.push(format!("ssh-agent ({reason})")),
        }
    }
    Err(Error::Auth {
        host: ep.name.clone(),
        user: ep.user.clone(),
        tried,
    })
}

/// Loads a key file, decrypting it with the passphrase from `ssh.passphrase_env`, or, when
/// that variable is not set and pgrepl runs on a terminal, with one prompted for.
fn load_key(path: &Path, ep: &Endpoint) -> Result<keys::PrivateKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let from_env = ep
        .passphrase_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok())
        .map(SecretString::from);
    match keys::decode_secret_key(&text, from_env.as_ref().map(|p| p.expose_secret())) {
        Ok(key) => return Ok(key),
        // Only without a passphrase: go on to the prompt.
        Err(keys::Error::KeyIsEncrypted) => {}
        Err(e) => {
            return Err(match (&ep.passphrase_env, &from_env) {
                (Some(var), Some(_)) if is_encrypted(&text) => {
                    format!("encrypted; wrong passphrase in ${var}")
                }
                _ => e.to_string(),
            });
        }
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        return blocking(|| prompted_key(path, &text));
    }
    Err(match &ep.passphrase_env {
        Some(var) => {
            format!("encrypted, and ${var} is not set (no terminal to prompt for its passphrase)")
        }
        None => "encrypted; set ssh.passphrase_env to the variable holding its passphrase, \
                 load it into ssh-agent, or run on a terminal to be prompted"
            .into(),
    })
}

fn is_encrypted(text: &str) -> bool {
    matches!(
        keys::decode_secret_key(text, None),
        Err(keys::Error::KeyIsEncrypted)
    )
}

/// Passphrases entered at the prompt, per key file: `None` when the one entered was wrong
/// (or could not be read), so that hosts sharing a key ask once, whatever the outcome.
/// The lock is held across the prompt, so concurrent connections wait for its answer.
static PASSPHRASES: OnceLock<Mutex<HashMap<PathBuf, Option<SecretString>>>> = OnceLock::new();

fn prompted_key(path: &Path, text: &str) -> Result<keys::PrivateKey, String> {
    let mut cache = PASSPHRASES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let passphrase = match cache.get(path) {
        Some(Some(passphrase)) => passphrase.clone(),
        Some(None) => return Err("encrypted; wrong passphrase entered at the prompt".into()),
        None => match rpassword::prompt_password(format!("Passphrase for {}: ", path.display())) {
            Ok(entered) => SecretString::from(entered),
            Err(e) => {
                cache.insert(path.to_path_buf(), None);
                return Err(format!("encrypted; cannot prompt for its passphrase: {e}"));
            }
        },
    };
    match keys::decode_secret_key(text, Some(passphrase.expose_secret())) {
        Ok(key) => {
            cache.insert(path.to_path_buf(), Some(passphrase));
            Ok(key)
        }
        Err(_) => {
            cache.insert(path.to_path_buf(), None);
            Err("encrypted; wrong passphrase entered at the prompt".into())
        }
    }
}

/// Runs blocking work (a prompt, waiting for another task's prompt) from async code without
/// stalling the runtime's other tasks, when on the multi-thread runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

async fn try_agent(
    handle: &mut client::Handle<ClientHandler>,
    ep: &Endpoint,
    tried: &mut Vec<String>,
) -> Result<bool, String> {
    let mut agent = keys::agent::client::AgentClient::connect_env()
        .await
        .map_err(|e| e.to_string())?;
    let identities = agent
        .request_identities()
        .await
        .map_err(|e| e.to_string())?;
    if identities.is_empty() {
        tried.push("ssh-agent (no keys loaded)".into());
    }
    for identity in identities {
        let keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| e.to_string())?
                .flatten()
        } else {
            None
        };
        match handle
            .authenticate_publickey_with(&ep.user, key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => tried.push(format!("ssh-agent key {comment} (rejected by the server)")),
            Err(e) => tried.push(format!("ssh-agent key {comment} ({e})")),
        }
    }
    Ok(false)
}

/// Checks host keys against known_hosts during the handshake.
pub struct ClientHandler {
    addr: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
}

/// Why a handshake stopped: russh's own errors, or a host key verdict.
#[derive(Debug)]
pub enum HandshakeError {
    Russh(russh::Error),
    Unknown { fingerprint: String },
    Changed { line: usize },
    KnownHosts(String),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Russh(e)
    }
}

impl HandshakeError {
    fn into_error(self, ep: &Endpoint) -> Error {
        let host = ep.name.clone();
        let addr = ep.address.clone();
        let file = ep.known_hosts.clone();
        match self {
            HandshakeError::Russh(russh::Error::IO(e)) => Error::Connect {
                host,
                addr: format!("{addr}:{}", ep.port),
                reason: e.to_string(),
            },
            HandshakeError::Russh(source) => Error::Protocol { host, source },
            HandshakeError::Unknown { fingerprint } => Error::HostKeyUnknown {
                host,
                addr,
                fingerprint,
                file,
            },
            HandshakeError::Changed { line } => Error::HostKeyChanged {
                host,
                addr,
                file,
                line,
            },
            HandshakeError::KnownHosts(reason) => Error::KnownHosts { host, file, reason },
        }
    }
}

impl From<Error> for HandshakeError {
    fn from(e: Error) -> Self {
        HandshakeError::KnownHosts(e.to_string())
    }
}

impl client::Handler for ClientHandler {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(HandshakeError::KnownHosts(
                "host certificates are not supported; list the host's plain key in known_hosts"
                    .into(),
            ));
        };
        match keys::check_known_hosts_path(&self.addr, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                if let Some(dir) = self.known_hosts.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| HandshakeError::KnownHosts(e.to_string()))?;
                }
                keys::known_hosts::learn_known_hosts_path(
                    &self.addr,
                    self.port,
                    key,
                    &self.known_hosts,
                )
                .map_err(|e| HandshakeError::KnownHosts(e.to_string()))?;
                Ok(true)
            }
            Ok(false) => Err(HandshakeError::Unknown {
                fingerprint: key.fingerprint(Default::default()).to_string(),
            }),
            Err(keys::Error::KeyChanged { line }) => Err(HandshakeError::Changed { line }),
            Err(e) => Err(HandshakeError::KnownHosts(e.to_string())),
        }
    }
}
