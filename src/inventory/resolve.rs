//! Turns the file's defaults-plus-overrides into one plain value per host.
//!
//! Layout defaults (Debian, RHEL) are filled in here, relative paths are resolved against
//! the inventory's folder, and the replication password is read from its source. Problems
//! that only show once values are combined (a custom layout with no data_dir) are added to
//! the caller's list. A password that cannot be read is not: it is kept as the problem to
//! show when a command needs it ([`Inventory::require_password`]), so read-only commands
//! (verify, status, plan) run on a machine that holds no secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_saphyr::Spanned;

use super::Problem;
use super::model::{
    HostSpec, InventoryFile, Layout, PostgresSpec, ReadFrom, Role, ServiceKind, SettingValue,
    SshSpec,
};

/// A validated inventory, ready for planning.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it came from (shown in messages).
    pub path: PathBuf,
    /// The PostgreSQL members (the primary and the replicas), in file order. Proxies are
    /// never here, so whatever iterates the cluster's members cannot meet one.
    pub hosts: Vec<Host>,
    pub replication: Replication,
    /// Extra pg_hba rules from the inventory.
    pub hba: Vec<HbaRule>,
    /// What is allowed but probably not meant (shown before a run, never fatal).
    pub warnings: Vec<super::Problem>,
    /// The hosts with `role: proxy`, in file order. A runner numbers them after the
    /// members: node `hosts.len() + p` is `proxies[p]`.
    pub proxies: Vec<Proxy>,
    /// The read/write endpoints, one per proxy host.
    pub endpoints: Vec<Endpoint>,
    /// Application roles.
    pub roles: Vec<AppRole>,
    /// Application databases.
    pub databases: Vec<Database>,
}

impl Inventory {
    /// How many nodes a run can address: the members, then the proxies.
    pub fn node_count(&self) -> usize {
        self.hosts.len() + self.proxies.len()
    }

    /// The name of node `i` (a member, or a proxy after them).
    pub fn node_name(&self, i: usize) -> &str {
        match self.proxy_of(i) {
            Some(p) => &p.name,
            None => &self.hosts[i].name,
        }
    }

    /// The proxy that node `i` is, if it is one.
    pub fn proxy_of(&self, i: usize) -> Option<&Proxy> {
        i.checked_sub(self.hosts.len())
            .and_then(|p| self.proxies.get(p))
    }

    /// The node number of every proxy.
    pub fn proxy_nodes(&self) -> std::ops::Range<usize> {
        self.hosts.len()..self.node_count()
    }

    /// The node number of the host (member or proxy) with this name.
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name).or_else(|| {
            self.proxies
                .iter()
                .position(|p| p.name == name)
                .map(|p| self.hosts.len() + p)
        })
    }

    /// The endpoint served by the proxy with this name.
    pub fn endpoint_of(&self, proxy: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.host == proxy)
    }

    /// The secrets the endpoints' steps write: the application roles' passwords
    /// (`roles`), the stats pages' (`stats`). Without them, the invalid-input error a bad
    /// field gives; read-only commands never ask.
    pub fn require_endpoint_secrets(&self, roles: bool, stats: bool) -> Result<(), super::Error> {
        let mut problems: Vec<Problem> = Vec::new();
        if roles {
            problems.extend(self.roles.iter().filter_map(|r| r.password_problem.clone()));
        }
        if stats {
            problems.extend(
                self.endpoints
                    .iter()
                    .filter_map(|e| e.stats.as_ref()?.password_problem.clone()),
            );
        }
        problems.sort_by_key(|p| (p.line, p.column));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(super::Error::Invalid {
                path: self.path.clone(),
                problems,
            })
        }
    }
}

/// A host with `role: proxy`: reached over SSH like the others, runs no PostgreSQL.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub name: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub ssh: SshTarget,
}

/// One endpoint: HAProxy on a proxy host, a write port and a read port.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The proxy host's name.
    pub host: String,
    pub write_port: u16,
    pub read_port: u16,
    pub stats: Option<Stats>,
    pub read_from: ReadFrom,
    /// Replicas further behind leave the read pool.
    pub max_lag_bytes: u64,
}

/// HAProxy's stats page on an endpoint.
#[derive(Debug, Clone)]
pub struct Stats {
    pub port: u16,
    pub user: String,
    /// Where the password comes from (shown in messages).
    pub password_env: String,
    pub password: Option<SecretString>,
    /// Why there is no usable password, shown only to a command that writes it.
    pub password_problem: Option<Problem>,
}

/// An application role.
#[derive(Debug, Clone)]
pub struct AppRole {
    pub name: String,
    pub login: bool,
    pub password_source: PasswordSource,
    /// Read once at load time; `None` for a role that cannot log in.
    pub password: Option<SecretString>,
    /// Why a role that logs in has no password, shown only to a command that sets it.
    pub password_problem: Option<Problem>,
}

/// An application database.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub owner: String,
}

/// The replication role and its settings.
#[derive(Debug, Clone)]
pub struct Replication {
    pub user: String,
    pub password_source: PasswordSource,
    /// The password itself, read once at load time.
    pub password: Option<SecretString>,
    /// Why there is no password (unset variable, unreadable file, no source), shown only
    /// to a command that needs it.
    pub password_problem: Option<Problem>,
    /// pg_basebackup `--max-rate`, when set.
    pub backup_max_rate: Option<String>,
    /// Extra postgresql.conf settings, already rendered as PostgreSQL literals.
    pub settings: BTreeMap<String, String>,
    /// Synchronous replication, when the inventory asks for it.
    pub synchronous: Option<super::Synchronous>,
}

/// Where the replication password comes from (shown in messages, never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Env(String),
    File(PathBuf),
    Inline,
    Missing,
}

impl std::fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Env(var) => write!(f, "environment variable {var}"),
            PasswordSource::File(path) => write!(f, "file {}", path.display()),
            PasswordSource::Inline => write!(f, "the inventory's replication.password"),
            PasswordSource::Missing => write!(f, "nowhere"),
        }
    }
}

/// One extra pg_hba.conf rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HbaRule {
    #[serde(rename = "type")]
    pub kind: String,
    pub database: String,
    pub user: String,
    pub address: Option<String>,
    pub method: String,
}

/// One host with every default applied.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub role: Role,
    /// The physical replication slot this replica streams through (replicas only), on
    /// its upstream.
    pub slot: Option<String>,
    /// The member it streams from, as the inventory names it; `None`: the primary. A name
    /// may be the primary's too (after a switchover to it): ask [`Inventory::upstream_of`].
    pub upstream: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub pg: PgLayout,
    pub ssh: SshTarget,
}

impl Inventory {
    /// The replication password, for a command that writes it (the role on the primary, the
    /// replicas' passfiles). Without one, the same invalid-input error a bad field gives,
    /// naming the source and what to do.
    pub fn require_password(&self) -> Result<&SecretString, super::Error> {
        match (
            &self.replication.password,
            &self.replication.password_problem,
        ) {
            (Some(password), _) => Ok(password),
            (None, problem) => Err(super::Error::Invalid {
                path: self.path.clone(),
                problems: vec![problem.clone().unwrap_or_else(|| Problem {
                    line: 1,
                    column: 1,
                    field: "replication".into(),
                    message: "no replication password".into(),
                    hint: "set replication.password_env or password_file".into(),
                })],
            }),
        }
    }
}

impl Host {
    pub fn is_primary(&self) -> bool {
        self.role == Role::Primary
    }
}

/// The replication tree: who streams from whom. Validation guarantees every chain ends at
/// the primary, so these walks end.
impl Inventory {
    /// The primary's index.
    pub fn primary_index(&self) -> Option<usize> {
        self.hosts.iter().position(Host::is_primary)
    }

    /// The index of the member host `i` streams from: its `upstream`, else the primary.
    /// `None` for the primary itself (and a name no member has, which validation refuses).
    pub fn upstream_index(&self, i: usize) -> Option<usize> {
        let host = self.hosts.get(i)?;
        if host.is_primary() {
            return None;
        }
        match &host.upstream {
            Some(name) => self.hosts.iter().position(|h| &h.name == name),
            None => self.primary_index(),
        }
    }

    /// The member a replica streams from (see [`Inventory::upstream_index`]).
    pub fn upstream_of(&self, host: &Host) -> Option<&Host> {
        let i = self.hosts.iter().position(|h| h.name == host.name);
        match i {
            Some(i) => self.upstream_index(i).map(|u| &self.hosts[u]),
            // A host outside the inventory (remove-replica's): by its own `upstream`.
            None => match &host.upstream {
                Some(name) => self.hosts.iter().find(|h| &h.name == name),
                None => self.primary_index().map(|p| &self.hosts[p]),
            },
        }
    }

    /// Whether host `i` streams from another replica rather than from the primary.
    pub fn is_cascaded(&self, i: usize) -> bool {
        self.upstream_index(i)
            .is_some_and(|u| !self.hosts[u].is_primary())
    }

    /// The members that stream from host `i`, in file order.
    pub fn children_of(&self, i: usize) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&c| self.upstream_index(c) == Some(i))
            .collect()
    }

    /// How many hops host `i` is from the primary (the primary 0, its replicas 1, ...).
    pub fn depth(&self, i: usize) -> usize {
        let mut depth = 0;
        let mut at = i;
        while let Some(up) = self.upstream_index(at) {
            depth += 1;
            at = up;
            if depth > self.hosts.len() {
                break; // a cycle: validation refuses it, so never here
            }
        }
        depth
    }
}

/// Where PostgreSQL lives on a host and how it is run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PgLayout {
    pub version: u32,
    pub layout: Layout,
    pub port: u16,
    /// Debian cluster name (`main`).
    pub cluster: String,
    pub data_dir: String,
    pub config_dir: String,
    pub bin_dir: String,
    pub service: ServiceKind,
    pub unit: String,
    /// Directory of the Unix socket psql connects through; libpq's default when unset.
    pub socket_dir: Option<String>,
    /// Directory pgrepl owns a file in (Debian's `conf.d`), when the layout has one.
    pub include_dir: Option<String>,
}

/// How to reach a host over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The name or address to connect to (looked up in ~/.ssh/config too).
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub proxy_jump: Option<String>,
    pub passphrase_env: Option<String>,
}

pub(super) fn resolve(
    path: &Path,
    base: &Path,
    file: &InventoryFile,
    problems: &mut Vec<Problem>,
) -> Inventory {
    let hosts = file
        .hosts
        .iter()
        .filter(|h| h.value.role != Role::Proxy)
        .map(|h| resolve_host(base, file, h, problems))
        .collect();
    let proxies: Vec<Proxy> = file
        .hosts
        .iter()
        .filter(|h| h.value.role == Role::Proxy)
        .map(|h| Proxy {
            name: h.value.name.value.clone(),
            address: h.value.address.value.clone(),
            labels: h.value.labels.clone(),
            ssh: resolve_ssh(base, &file.ssh, &h.value.ssh, &h.value.address.value),
        })
        .collect();
    let endpoints = super::endpoints::resolve_endpoints(file);
    let roles = super::endpoints::resolve_roles(base, file);
    let databases = super::endpoints::resolve_databases(file);
    let replication = resolve_replication(base, file);
    let hba = file
        .hba
        .iter()
        .map(|r| HbaRule {
            kind: r.value.kind.clone(),
            database: r.value.database.clone(),
            user: r.value.user.clone(),
            address: r.value.address.clone(),
            method: r.value.method.clone(),
        })
        .collect();
    Inventory {
        path: path.to_path_buf(),
        hosts,
        replication,
        hba,
        warnings: Vec::new(),
        proxies,
        endpoints,
        roles,
        databases,
    }
}

fn resolve_host(
    base: &Path,
    file: &InventoryFile,
    spec: &Spanned<HostSpec>,
    problems: &mut Vec<Problem>,
) -> Host {
    let h = &spec.value;
    let slot = match (h.role, &h.slot) {
        (Role::Replica, Some(slot)) => Some(slot.value.clone()),
        (Role::Replica, None) => Some(default_slot_name(&h.name.value)),
        (Role::Primary | Role::Proxy, _) => None,
    };
    Host {
        name: h.name.value.clone(),
        address: h.address.value.clone(),
        role: h.role,
        slot,
        upstream: h.upstream.as_ref().map(|u| u.value.clone()),
        labels: h.labels.clone(),
        pg: resolve_pg(&file.postgres, &h.postgres, spec, &h.name.value, problems),
        ssh: resolve_ssh(base, &file.ssh, &h.ssh, &h.address.value),
    }
}

/// A slot name PostgreSQL accepts, derived from a host name (`replica-az-a-0` → `replica_az_a_0`).
pub fn default_slot_name(host: &str) -> String {
    let mut slot: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    slot.truncate(63);
    slot
}

fn resolve_pg(
    defaults: &PostgresSpec,
    over: &PostgresSpec,
    at: &Spanned<HostSpec>,
    host: &str,
    problems: &mut Vec<Problem>,
) -> PgLayout {
    let pick = |f: fn(&PostgresSpec) -> Option<String>| f(over).or_else(|| f(defaults));
    let version = over
        .version
        .as_ref()
        .or(defaults.version.as_ref())
        .map(|v| v.value)
        .unwrap_or(15);
    let layout = over.layout.or(defaults.layout).unwrap_or(Layout::Debian);
    let port = over
        .port
        .as_ref()
        .or(defaults.port.as_ref())
        .map(|p| p.value)
        .unwrap_or(5432);
    let cluster = pick(|p| p.cluster.clone()).unwrap_or_else(|| "main".into());
    let (data, config, bin, service, unit, include) = match layout {
        Layout::Debian => (
            Some(format!("/var/lib/postgresql/{version}/{cluster}")),
            Some(format!("/etc/postgresql/{version}/{cluster}")),
            Some(format!("/usr/lib/postgresql/{version}/bin")),
            Some(ServiceKind::PgCtlcluster),
            format!("postgresql@{version}-{cluster}"),
            true,
        ),
        Layout::Rhel => (
            Some(format!("/var/lib/pgsql/{version}/data")),
            None,
            Some(format!("/usr/pgsql-{version}/bin")),
            Some(ServiceKind::Systemd),
            format!("postgresql-{version}"),
            false,
        ),
        Layout::Custom => (None, None, None, None, "postgresql".into(), false),
    };
    let data_dir = pick(|p| p.data_dir.clone()).or(data);
    let bin_dir = pick(|p| p.bin_dir.clone()).or(bin);
    let service = over.service.or(defaults.service).or(service);
    let mut missing = |field: &str| {
        problems.push(Problem {
            line: at.referenced.line(),
            column: at.referenced.column(),
            field: format!("hosts[{host}].postgres.{field}"),
            message: format!("layout `custom` needs `{field}`"),
            hint: format!(
                "set postgres.{field} for this host or in the top-level postgres section"
            ),
        })
    };
    if data_dir.is_none() {
        missing("data_dir");
    }
    if bin_dir.is_none() {
        missing("bin_dir");
    }
    if service.is_none() {
        missing("service");
    }
    let data_dir = data_dir.unwrap_or_default();
    let config_dir = pick(|p| p.config_dir.clone())
        .or(config)
        .unwrap_or_else(|| data_dir.clone());
    let include_dir = include.then(|| format!("{config_dir}/conf.d"));
    PgLayout {
        version,
        layout,
        port,
        cluster,
        config_dir,
        data_dir,
        bin_dir: bin_dir.unwrap_or_default(),
        service: service.unwrap_or(ServiceKind::PgCtl),
        unit: pick(|p| p.unit.clone()).unwrap_or(unit),
        socket_dir: pick(|p| p.socket_dir.clone()),
        include_dir,
    }
}

fn resolve_ssh(base: &Path, defaults: &SshSpec, over: &SshSpec, address: &str) -> SshTarget {
    let pick = |f: fn(&SshSpec) -> Option<String>| f(over).or_else(|| f(defaults));
    SshTarget {
        host: address.to_string(),
        user: pick(|s| s.user.clone()),
        port: over
            .port
            .as_ref()
            .or(defaults.port.as_ref())
            .map(|p| p.value),
        identity_file: pick(|s| s.identity_file.clone()).map(|p| expand_path(base, &p)),
        known_hosts: pick(|s| s.known_hosts.clone()).map(|p| expand_path(base, &p)),
        proxy_jump: pick(|s| s.proxy_jump.clone()),
        passphrase_env: pick(|s| s.passphrase_env.clone()),
    }
}

/// Expands `~/` to the home directory and makes a relative path relative to `base`.
pub fn expand_path(base: &Path, path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/")
        && let Some(home) = std::env::home_dir()
    {
        return home.join(rest);
    }
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { base.join(p) }
}

fn resolve_replication(base: &Path, file: &InventoryFile) -> Replication {
    let r = &file.replication;
    let (password_source, password, password_problem) = read_password(base, r);
    Replication {
        user: r
            .user
            .as_ref()
            .map(|u| u.value.clone())
            .unwrap_or_else(|| "replicator".into()),
        password_source,
        password,
        password_problem,
        backup_max_rate: r.backup_max_rate.as_ref().map(|v| v.value.clone()),
        settings: r
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), setting_literal(&v.value)))
            .collect(),
        synchronous: None,
    }
}

/// Renders a YAML value as a postgresql.conf literal: numbers and booleans bare, text quoted
/// (with `'` and `\` doubled, as the config file reader wants).
pub fn setting_literal(value: &SettingValue) -> String {
    match value {
        SettingValue::Bool(b) => if *b { "on" } else { "off" }.to_string(),
        SettingValue::Int(i) => i.to_string(),
        SettingValue::Float(f) => f.to_string(),
        SettingValue::Text(s) => crate::pg::conf_literal(s),
    }
}

/// Reads the replication password from its source; without one, the problem to show a
/// command that needs it.
fn read_password(
    base: &Path,
    r: &super::model::ReplicationSpec,
) -> (PasswordSource, Option<SecretString>, Option<Problem>) {
    let problem = |at: &Spanned<String>, field: &str, message: String, hint: &str| Problem {
        line: at.referenced.line(),
        column: at.referenced.column(),
        field: field.into(),
        message,
        hint: hint.into(),
    };
    let (source, value, missing) = if let Some(var) = &r.password_env {
        let source = PasswordSource::Env(var.value.clone());
        match std::env::var(&var.value) {
            Ok(v) if !v.is_empty() => (source, Some(v), None),
            _ => (
                source,
                None,
                Some(problem(
                    var,
                    "replication.password_env",
                    format!("environment variable {} is not set or empty", var.value),
                    &format!(
                        "export {}=... before running pgrepl, or use password_file",
                        var.value
                    ),
                )),
            ),
        }
    } else if let Some(file) = &r.password_file {
        let path = expand_path(base, &file.value);
        let source = PasswordSource::File(path.clone());
        match std::fs::read_to_string(&path) {
            Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => (
                source,
                Some(v.trim_end_matches(['\n', '\r']).to_string()),
                None,
            ),
            Ok(_) => (
                source,
                None,
                Some(problem(
                    file,
                    "replication.password_file",
                    format!("{} is empty", path.display()),
                    "write the replication password into that file (mode 0600)",
                )),
            ),
            Err(e) => (
                source,
                None,
                Some(problem(
                    file,
                    "replication.password_file",
                    format!("cannot read {}: {e}", path.display()),
                    "create the file with the replication password (mode 0600), or use password_env",
                )),
            ),
        }
    } else if let Some(inline) = &r.password {
        (PasswordSource::Inline, Some(inline.value.clone()), None)
    } else {
        (
            PasswordSource::Missing,
            None,
            Some(Problem {
                line: 1,
                column: 1,
                field: "replication.password_env".into(),
                message: "no replication password source is set".into(),
                hint: "add `replication: { password_env: PGREPL_REPLICATION_PASSWORD }` (or password_file: PATH)".into(),
            }),
        )
    };
    (source, value.map(SecretString::from), missing)
}

/// Where one secret may come from, and how its fields are named in messages.
pub(super) struct SecretSources<'a> {
    /// The section, e.g. `roles[app_user]`.
    pub field: &'a str,
    /// What the secret is, for messages ("the password of role app_user").
    pub what: &'a str,
    pub env: Option<&'a Spanned<String>>,
    pub file: Option<&'a Spanned<String>>,
}

/// Reads a secret from an environment variable or a file; the problem when the source
/// gives nothing is returned, to be shown only to a command that needs the secret.
pub(super) fn read_secret(
    base: &Path,
    src: &SecretSources<'_>,
) -> (PasswordSource, Option<SecretString>, Option<Problem>) {
    let problem = |at: &Spanned<String>, field: &str, message: String, hint: String| Problem {
        line: at.referenced.line(),
        column: at.referenced.column(),
        field: format!("{}.{field}", src.field),
        message,
        hint,
    };
    if let Some(var) = src.env {
        let source = PasswordSource::Env(var.value.clone());
        return match std::env::var(&var.value) {
            Ok(v) if !v.is_empty() => (source, Some(v.into()), None),
            _ => (
                source,
                None,
                Some(problem(
                    var,
                    "password_env",
                    format!("environment variable {} is not set or empty", var.value),
                    format!(
                        "export {}=... before running pgrepl, or use password_file",
                        var.value
                    ),
                )),
            ),
        };
    }
    if let Some(file) = src.file {
        let path = expand_path(base, &file.value);
        let source = PasswordSource::File(path.clone());
        return match std::fs::read_to_string(&path) {
            Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => (
                source,
                Some(v.trim_end_matches(['\n', '\r']).to_string().into()),
                None,
            ),
            Ok(_) => (
                source,
                None,
                Some(problem(
                    file,
                    "password_file",
                    format!("{} is empty", path.display()),
                    format!("write {} into that file (mode 0600)", src.what),
                )),
            ),
            Err(e) => (
                source,
                None,
                Some(problem(
                    file,
                    "password_file",
                    format!("cannot read {}: {e}", path.display()),
                    format!(
                        "create the file with {} (mode 0600), or use password_env",
                        src.what
                    ),
                )),
            ),
        };
    }
    (PasswordSource::Missing, None, None)
}
