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
    /// The hosts: one primary and any number of replicas.
    pub hosts: Vec<Spanned<HostSpec>>,
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

/// Whether a host is the primary or a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
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
}
