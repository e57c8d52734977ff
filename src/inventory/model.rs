//! The inventory file as written by users: serde types that mirror `inventory.yaml` exactly.
//!
//! These types only describe the file. Defaults, per-host overrides and checks live in
//! [`super::resolve`] and [`super::validate`], so nothing here ever touches a host.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole `inventory.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// PostgreSQL defaults for every host.
    #[serde(default)]
    pub postgres: PostgresSpec,
    /// The replication role, its password source and extra primary settings.
    #[serde(default)]
    pub replication: ReplicationSpec,
    /// Extra pg_hba.conf rules (an application's users, for example).
    #[serde(default)]
    pub hba: Vec<Spanned<HbaRuleSpec>>,
    /// SSH defaults for every host.
    #[serde(default)]
    pub ssh: SshSpec,
    /// The hosts: one primary, any number of replicas, and proxies (`role: proxy`).
    pub hosts: Vec<Spanned<HostSpec>>,
    /// Read/write endpoints: HAProxy on a `role: proxy` host in front of the cluster.
    #[serde(default)]
    pub endpoints: Vec<Spanned<EndpointSpec>>,
    /// Application roles, created or altered on the primary.
    #[serde(default)]
    pub roles: Vec<Spanned<AppRoleSpec>>,
    /// Application databases, created on the primary.
    #[serde(default)]
    pub databases: Vec<Spanned<DatabaseSpec>>,
}

/// PostgreSQL layout on a host. Every field may be overridden per host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    pub version: Option<Spanned<u32>>,
    pub layout: Option<Layout>,
    pub port: Option<Spanned<u16>>,
    pub cluster: Option<String>,
    pub data_dir: Option<String>,
    pub config_dir: Option<String>,
    pub bin_dir: Option<String>,
    pub service: Option<ServiceKind>,
    pub unit: Option<String>,
    pub socket_dir: Option<String>,
}

/// How PostgreSQL is laid out on disk, which sets the defaults for the paths and service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Debian and Ubuntu: `/etc/postgresql/V/main` + `/var/lib/postgresql/V/main`, `pg_ctlcluster`.
    Debian,
    /// RHEL and PGDG packages: config inside `/var/lib/pgsql/V/data`, a systemd unit.
    Rhel,
    /// Nothing derived: `data_dir`, `bin_dir` and `service` must be given.
    Custom,
}

/// How the PostgreSQL server is stopped and started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// `systemctl start|stop UNIT`.
    Systemd,
    /// Debian's `pg_ctlcluster VERSION CLUSTER start|stop`.
    PgCtlcluster,
    /// `pg_ctl -D DATA_DIR start|stop` as the postgres user.
    PgCtl,
}

/// The replication role and where its password comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSpec {
    pub user: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    /// Cap on the base backup's transfer rate (pg_basebackup `--max-rate`, e.g. `50M`), to
    /// spare a busy primary's disks and network.
    pub backup_max_rate: Option<Spanned<String>>,
    /// Extra `postgresql.conf` settings for the primary (and replicas, for failover).
    #[serde(default)]
    pub settings: BTreeMap<String, Spanned<SettingValue>>,
    /// Synchronous replication: `{ mode: any|first, count: N, standbys: [names] }`.
    pub synchronous: Option<Spanned<super::sync::SynchronousSpec>>,
}

/// A postgresql.conf value as written in YAML: a string, a number or a boolean.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SettingValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// One extra pg_hba.conf rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaRuleSpec {
    #[serde(rename = "type", default = "default_hba_type")]
    pub kind: String,
    pub database: String,
    pub user: String,
    pub address: Option<String>,
    pub method: String,
}

fn default_hba_type() -> String {
    "host".to_string()
}

/// How to reach hosts over SSH. Every field may be overridden per host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    pub user: Option<String>,
    pub port: Option<Spanned<u16>>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub proxy_jump: Option<String>,
    /// Environment variable holding the identity file's passphrase.
    pub passphrase_env: Option<String>,
}

/// Whether a host is the primary, a replica, or a proxy (no PostgreSQL: HAProxy in front).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
    /// Runs HAProxy for an endpoint; never a PostgreSQL member (no slot, no replication).
    Proxy,
}

/// One host of the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub role: Role,
    pub slot: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub postgres: PostgresSpec,
    #[serde(default)]
    pub ssh: SshSpec,
    /// Listed among the synchronous standbys (`true`), or left out of the default list.
    pub synchronous: Option<Spanned<bool>>,
    /// The member this replica streams from: another replica (a cascaded replica) or the
    /// primary (the default).
    pub upstream: Option<Spanned<String>>,
}

impl InventoryFile {
    /// Whether this host streams from another replica rather than from the primary.
    pub fn is_cascaded(&self, host: &HostSpec) -> bool {
        host.upstream.as_ref().is_some_and(|u| {
            self.hosts
                .iter()
                .any(|h| h.value.name.value == u.value && h.value.role == Role::Replica)
        })
    }
}

/// One read/write endpoint: HAProxy on a proxy host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// The proxy host's name (a `hosts` entry with `role: proxy`).
    pub host: Spanned<String>,
    /// Where applications write: only the primary behind it. Default 5435.
    pub write_port: Option<Spanned<u16>>,
    /// Where applications read: the replicas, balanced. Default 5436.
    pub read_port: Option<Spanned<u16>>,
    /// HAProxy's stats page, bound to the proxy's own address, behind a password.
    pub stats_port: Option<Spanned<u16>>,
    /// The stats page's user (default `pgrepl`).
    pub stats_user: Option<Spanned<String>>,
    /// Environment variable holding the stats page's password.
    pub stats_password_env: Option<Spanned<String>>,
    /// `replicas` (default) or `replicas_and_primary` (the primary when no replica is healthy).
    pub read_from: Option<ReadFrom>,
    /// Replicas further behind than this leave the read pool (`16MB`, or bytes).
    pub max_lag_bytes: Option<Spanned<Size>>,
}

/// Who serves the read port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Only replicas that stream and are close enough behind.
    #[default]
    Replicas,
    /// The replicas; the primary only when no replica is healthy.
    ReplicasAndPrimary,
}

/// A byte size as written in YAML: a number of bytes, or text such as `16MB`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

/// An application role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoleSpec {
    pub name: Spanned<String>,
    /// Environment variable holding the role's password.
    pub password_env: Option<Spanned<String>>,
    /// File holding the role's password (relative to the inventory's folder).
    pub password_file: Option<Spanned<String>>,
    /// Whether the role may log in (default true; a role that cannot needs no password).
    pub login: Option<bool>,
}

/// An application database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    pub name: Spanned<String>,
    /// Its owner: one of the inventory's roles (default `postgres`).
    pub owner: Option<Spanned<String>>,
}
