//! Playbooks: the ordered steps of a command, as data.
//!
//! A step names the hosts it targets and one built-in [`Action`] (or a `block` of them run
//! in order per host, with a `rescue` action when one fails). Unknown actions, fields or
//! parameters are rejected with the file, line and column. The defaults are embedded in the
//! binary; `--playbooks DIR` replaces any of them by file name.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The playbooks shipped with pgrepl.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("bootstrap", include_str!("../playbooks/bootstrap.yaml")),
    ("add-replica", include_str!("../playbooks/add-replica.yaml")),
    ("verify", include_str!("../playbooks/verify.yaml")),
    ("switchover", include_str!("../playbooks/switchover.yaml")),
    ("rewire", include_str!("../playbooks/rewire.yaml")),
    ("failover", include_str!("../playbooks/failover.yaml")),
    ("rejoin", include_str!("../playbooks/rejoin.yaml")),
    ("endpoints", include_str!("../playbooks/endpoints.yaml")),
    ("sync-off", include_str!("../playbooks/sync-off.yaml")),
    ("sync-on", include_str!("../playbooks/sync-on.yaml")),
    (
        "remove-replica",
        include_str!("../playbooks/remove-replica.yaml"),
    ),
];

/// A playbook file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    #[serde(default)]
    pub description: Option<String>,
    pub steps: Vec<Spanned<Step>>,
    /// Steps that undo the run when it stops before its point of no return.
    #[serde(default)]
    pub rollback: Vec<Spanned<Step>>,
}

/// One step: an action (or a block of actions) on a set of hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// `primary`, `replicas`, `existing_replicas` (all but the target), `all` (every
    /// PostgreSQL host), `proxies` (the endpoints' HAProxy hosts), `target` (the host named
    /// on the command line), or a host name; or a list of those. Inside a block, the block's hosts.
    #[serde(default)]
    pub hosts: Option<Hosts>,
    #[serde(default)]
    pub action: Option<Action>,
    /// Actions run in order on each host; on a failure, `rescue` runs on that host.
    #[serde(default)]
    pub block: Option<Vec<Spanned<Step>>>,
    #[serde(default)]
    pub rescue: Option<Action>,
    /// Leave a host alone (reported `ok`) where this holds.
    #[serde(default)]
    pub unless: Option<Condition>,
    /// Run only on hosts where this holds (others report `skipped`).
    #[serde(default)]
    pub only_if: Option<Condition>,
    /// What a failure on one host does to the rest of the run.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// Run on one host at a time (a rolling restart), instead of up to `--forks` at once.
    #[serde(default)]
    pub serial: bool,
    /// A cascaded replica only after its upstream has done this step (a copy needs a
    /// running upstream to copy from); replicas of the primary go first, all at once.
    #[serde(default)]
    pub upstream_first: bool,
    /// The change this step makes cannot be undone (a promotion): the run rolls back only
    /// before it, and finishes every step after it even when interrupted.
    #[serde(default)]
    pub point_of_no_return: bool,
    /// Consecutive steps that name a lane run lane beside lane (each lane's steps in
    /// order), on hosts no other lane of the group has: e.g. the replicas' preparation
    /// while the primary restarts.
    #[serde(default)]
    pub lane: Option<String>,
}

/// Host selectors: one word or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Hosts {
    One(String),
    Many(Vec<String>),
}

impl Hosts {
    pub fn selectors(&self) -> Vec<&str> {
        match self {
            Hosts::One(s) => vec![s.as_str()],
            Hosts::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

pub use crate::engine::OnFailure;

/// A condition checked on the host, in typed Rust, before a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The replica already streams from the inventory's primary through its slot.
    Streaming,
    /// The replica's data is a standby of this primary that can stream from it (same system
    /// identifier, a timeline it can follow, its WAL still on the primary).
    StandbyOfPrimary,
    /// remove-replica: the replica streamed from the host being removed (`upstream:`).
    StreamedFromRemoved,
}

/// Whether a settings change may restart the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Restart when a changed setting needs it.
    #[default]
    Allow,
    /// Fail, changing nothing, when a changed setting would need a restart.
    Refuse,
}

/// Which replicas a slots step manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotScope {
    #[default]
    All,
    Target,
}

/// The built-in actions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Reachability, sudo, versions, disk, password: before any change anywhere.
    Preflight,
    /// Install a rendered postgresql.conf snippet (conf.d file or managed block).
    Config {
        template: String,
        #[serde(default)]
        restart: RestartPolicy,
    },
    /// Ensure a managed block of pg_hba.conf rules at the top of the file.
    Hba { template: String },
    /// Reload after a config change; restart when a changed setting needs it.
    Apply {
        #[serde(default)]
        restart: RestartPolicy,
    },
    /// Ensure the replication role (LOGIN REPLICATION) with the inventory's password.
    ReplicationRole,
    /// Ensure one physical slot per replica on the primary.
    Slots {
        #[serde(default)]
        only: SlotScope,
    },
    /// On a replica: its slot on the member it streams from (a cascaded replica's upstream).
    UpstreamSlot,
    /// On a replica: its unused slot on other members (left by an `upstream:` change).
    DropSlotElsewhere,
    /// Write the replica's 0600 passfile for the replication login.
    Passfile,
    /// Log in to the primary as the replication role from the replica (before any stop).
    ReplicationLogin,
    /// Stop PostgreSQL.
    Stop,
    /// Start PostgreSQL.
    Start,
    /// Move the data dir aside (never deleted in the same run).
    MoveAside,
    /// Put a moved-aside data dir back and start the server as it was.
    RestoreDatadir,
    /// pg_basebackup from the primary through the replica's slot.
    BaseBackup,
    /// standby.signal, primary_conninfo (with a passfile) and primary_slot_name.
    Standby,
    /// Wait until the replica streams from the primary.
    WaitStreaming,
    /// The checks of `pgrepl verify`.
    Verify,
    /// A site-specific shell command.
    Shell {
        command: String,
        #[serde(default)]
        user: ShellUser,
    },
    /// SQL run on the host as the postgres user.
    Sql { sql: String },
    /// Switchover preflight on the candidate: one primary, the candidate streams through its
    /// slot with replay running and lag under the limit, nothing that would stall shutdown.
    SwitchoverCheck,
    /// On the candidate (a standby): a slot for every other member.
    PrepareCandidate,
    /// Rollback of `prepare_candidate`: drop the slots it made.
    DropPreparedSlots,
    /// CHECKPOINT, then a clean fast shutdown of the primary; read its shutdown checkpoint.
    ShutdownPrimary,
    /// Rollback: start the old primary again.
    StartOldPrimary,
    /// Wait until the candidate has received the old primary's shutdown checkpoint.
    CatchUp,
    /// Promote the candidate, checkpoint, and take a first write.
    Promote,
    /// Stream from the inventory's primary: reload a running standby, start a stopped one.
    Follow,
    /// On a standby, drop slots nobody streams from.
    DropStandbySlots,
    /// Stop PostgreSQL now, leave standby.signal, disable autostart: it cannot come back
    /// writable.
    Fence,
    /// Let the service manager start the cluster at boot again.
    AllowAutostart,
    /// How far the node's WAL goes and where the primary's timeline forked off it; WAL
    /// only this node has is reported before a copy would discard it.
    RejoinCheck,
    /// On the primary: the inventory's application roles (password as a SCRAM verifier)
    /// and databases, and the endpoints' health-check role.
    RolesAndDatabases,
    /// On a proxy: haproxy installed, its config rendered, checked with `haproxy -c`, in
    /// place and reloaded (established connections kept); the write pool as pgrepl knows it.
    Haproxy,
    /// Synchronous replication off by reload: pgrepl's override sets
    /// `synchronous_standby_names = ''`, and every waiting commit returns.
    SyncOff,
    /// Synchronous replication on as the inventory says: on the primary (refused while too
    /// few named standbys stream, unless --force), the managed settings brought up to date,
    /// the override removed, reloaded; on a replica, an override left there removed.
    SyncOn,
    /// remove-replica, on the host: remove standby.signal, primary_conninfo,
    /// primary_slot_name and the replication passfile (it would start standalone).
    DropStandbyConfig,
    /// remove-replica, on the host: PostgreSQL no longer starts at boot (Debian start.conf
    /// `disabled`, systemd unit disabled).
    AutostartOff,
    /// remove-replica, on the host: keep its data dir, or with --wipe move it aside
    /// (`DATA.pgrepl-removed-TIMESTAMP`, never deleted).
    RetireDataDir,
    /// remove-replica, on the primary and the other members: end the removed replica's
    /// walsenders and drop its slot.
    DropRemovedSlot,
    /// Whether a replica that does not stream holds a standby of this primary it can start
    /// (system identifier, timeline, WAL still on the primary), or why it must be copied.
    StandbyCheck,
    /// Start (or reload) a standby of this primary and wait until it streams; one that does
    /// not is left for the copy after it.
    StartStandby,
}

/// Who runs a `shell` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellUser {
    #[default]
    Login,
    Root,
    Postgres,
}

impl Action {
    /// A short name for plans and reports.
    pub fn name(&self) -> String {
        let json = serde_json::to_value(self).unwrap_or_default();
        match json {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// A playbook that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no playbook `{name}`{}", dir.as_ref().map(|d| format!(" in {} or built in", d.display())).unwrap_or_default())]
    Missing { name: String, dir: Option<PathBuf> },
    #[error("cannot read playbook {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{file}:{line}:{column}: {message}\nhint: a step has `name`, `hosts`, and `action` (or `block` with `rescue`); see README's playbook reference for the actions and their parameters"
    )]
    Syntax {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
}

/// Loads the playbook for `command`: `DIR/COMMAND.yaml` when a directory is given and has
/// it, the embedded default otherwise. Returns the playbook and the name of its source.
pub fn load(command: &str, dir: Option<&Path>) -> Result<(Playbook, String), Error> {
    if let Some(dir) = dir {
        let path = dir.join(format!("{command}.yaml"));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let file = path.display().to_string();
            return parse(&file, &text).map(|p| (p, file));
        }
    }
    let (_, text) = EMBEDDED
        .iter()
        .find(|(name, _)| *name == command)
        .ok_or_else(|| Error::Missing {
            name: command.into(),
            dir: dir.map(Path::to_path_buf),
        })?;
    let file = format!("(built-in) playbooks/{command}.yaml");
    parse(&file, text).map(|p| (p, file))
}

/// Parses playbook text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Playbook, Error> {
    crate::yaml::from_str(text).map_err(|e| Error::Syntax {
        file: file.into(),
        line: e.line,
        column: e.column,
        message: e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_playbooks_parse() {
        for (name, _) in EMBEDDED {
            let (book, _) = load(name, None).unwrap();
            assert!(!book.steps.is_empty(), "{name}");
        }
    }

    #[test]
    fn unknown_action_is_rejected_with_its_line() {
        let err = parse(
            "p.yaml",
            "steps:\n  - name: x\n    hosts: all\n    action: reboot\n",
        )
        .unwrap_err();
        let Error::Syntax { line, message, .. } = err else {
            panic!()
        };
        assert_eq!(line, 4);
        assert!(message.contains("reboot"), "{message}");
    }

    #[test]
    fn unknown_parameter_is_rejected() {
        let text = "steps:\n  - name: x\n    hosts: all\n    action: { shell: { command: ls, colour: red } }\n";
        let Error::Syntax { line, message, .. } = parse("p.yaml", text).unwrap_err() else {
            panic!()
        };
        assert_eq!(line, 4);
        assert!(message.contains("colour"), "{message}");
    }

    #[test]
    fn action_names_are_short() {
        assert_eq!(Action::Stop.name(), "stop");
        assert_eq!(Action::Sql { sql: "x".into() }.name(), "sql");
    }
}
