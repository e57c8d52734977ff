//! What an action sees of the run: its host, its session, the shared state and facts.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio::sync::MutexGuard;

use super::{Engine, Status, StepError};
use crate::inventory::Host;
use crate::pg::Pg;
use crate::ssh::Session;
use crate::templates::{Context, HostView, ReplicationView};

/// Facts gathered from a host by preflight.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Facts {
    /// Major version of the installed server binaries.
    pub binary_major: u32,
    pub running: bool,
    /// Free bytes on the filesystem holding the data directory's parent.
    pub free_bytes: u64,
    pub postgres_home: String,
    /// Facts only a running server can tell.
    pub server: Option<ServerFacts>,
    /// The managed config files as preflight read them (`None`: absent).
    #[serde(skip)]
    pub files: BTreeMap<String, Option<String>>,
    /// `OWNER MODE\nSHA256\n` of the replication passfile as preflight saw it.
    #[serde(skip)]
    pub passfile_probe: Option<String>,
}

/// What a running server says about itself.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerFacts {
    pub version_num: u32,
    pub in_recovery: bool,
    pub db_bytes: u64,
    pub settings: BTreeMap<String, String>,
    /// The wal receiver, on a standby.
    pub receiver: Option<Receiver>,
    /// Settings changed in the files that wait for a restart (`pg_settings.pending_restart`).
    #[serde(default)]
    pub pending_restart: String,
    /// The replication role, if it exists.
    #[serde(default)]
    pub role: Option<RoleFacts>,
    /// The server's replication slots.
    #[serde(default)]
    pub slots: Vec<SlotFacts>,
}

/// The replication role as `pg_authid` has it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoleFacts {
    pub login: bool,
    pub replication: bool,
    /// The stored SCRAM verifier (never the password).
    pub verifier: Option<String>,
}

/// One replication slot.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlotFacts {
    pub name: String,
    pub physical: bool,
}

/// A standby's `pg_stat_wal_receiver` row.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Receiver {
    pub status: Option<String>,
    pub slot_name: Option<String>,
    pub sender_host: Option<String>,
    pub sender_port: Option<i64>,
}

/// Per-host state that outlives one action.
#[derive(Debug, Default)]
pub struct HostState {
    pub facts: Option<Facts>,
    /// A config file changed since the server last (re)started or reloaded.
    pub config_changed: bool,
    /// The old data dir, moved aside by this run.
    pub moved_aside: Option<String>,
    /// Whether a base backup completed into the data dir.
    pub backup_done: bool,
    /// Whether this run created the replica's slot.
    pub slot_created: bool,
    /// Whether the server was running before this run stopped it.
    pub was_running: Option<bool>,
    pub ok: u32,
    pub changed: u32,
    pub skipped: u32,
    pub failed_count: u32,
    pub failed: Option<String>,
    pub unreachable: Option<String>,
    /// What a rescue left the host as.
    pub left_in: Option<String>,
}

impl HostState {
    /// Drops preflight's copy of a file this run is about to change.
    pub fn forget_file(&mut self, path: &str) {
        if let Some(f) = &mut self.facts {
            f.files.remove(path);
        }
    }

    /// Drops every copy: the data dir (which may hold the config) is being replaced.
    pub fn forget_files(&mut self) {
        if let Some(f) = &mut self.facts {
            f.files.clear();
        }
    }

    /// Whether the host is out of the run: a step failed there, or it could not be reached.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some() || self.unreachable.is_some()
    }

    pub fn count(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed_count += 1,
        }
    }
}

/// An action's view of one host during a run.
pub struct HostCtx<'e> {
    pub engine: &'e Engine,
    pub index: usize,
    pub host: &'e Host,
    pub session: &'e Session,
}

impl<'e> HostCtx<'e> {
    pub fn pg(&self) -> Pg<'_> {
        Pg::new(self.session, self.host)
    }

    pub fn check_mode(&self) -> bool {
        self.engine.options.check
    }

    pub async fn state(&self) -> MutexGuard<'_, HostState> {
        self.engine.states[self.index].lock().await
    }

    /// The primary and its session.
    pub fn primary(&self) -> Result<(&'e Host, &'e Session), StepError> {
        let inv = &self.engine.inventory;
        let i = inv
            .hosts
            .iter()
            .position(Host::is_primary)
            .ok_or_else(|| StepError::new("no primary in the inventory", ""))?;
        let session = self.engine.sessions[i].as_deref().ok_or_else(|| {
            StepError::new(
                format!("primary `{}` is not reachable", inv.hosts[i].name),
                "check the primary first",
            )
        })?;
        Ok((&inv.hosts[i], session))
    }

    /// The primary's facts, gathered by preflight.
    pub async fn primary_facts(&self) -> Option<Facts> {
        let inv = &self.engine.inventory;
        let i = inv.hosts.iter().position(Host::is_primary)?;
        self.engine.states[i].lock().await.facts.clone()
    }

    /// The typed context templates render with, for this host.
    pub async fn template_context(&self) -> Context {
        let inv = &self.engine.inventory;
        let views: Vec<HostView> = inv.hosts.iter().map(HostView::of).collect();
        let primary = inv.hosts.iter().position(Host::is_primary).unwrap_or(0);
        let mut members = vec![views[primary].clone()];
        members.extend(
            views
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != primary)
                .map(|(_, v)| v.clone()),
        );
        let facts = self.primary_facts().await;
        let settings = crate::actions::cluster_settings(self.engine, facts.as_ref());
        let standby_minimums = if self.host.is_primary() {
            BTreeMap::new()
        } else {
            crate::actions::standby_minimums(facts.as_ref(), &settings)
        };
        Context {
            host: views[self.index].clone(),
            primary: views[primary].clone(),
            replicas: members[1..].to_vec(),
            members,
            settings,
            standby_minimums,
            replication: ReplicationView {
                user: inv.replication.user.clone(),
            },
            hba: inv.hba.clone(),
        }
    }
}
