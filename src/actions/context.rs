//! What an action sees of the run: its host, its session, what the cluster knows, and the
//! per-host memory actions keep between steps (facts, a moved-aside data dir).

use tokio::sync::MutexGuard;

use super::Cluster;
use crate::inventory::Host;
use crate::pg::Pg;
pub use crate::pg::facts::{Facts, Receiver, RoleFacts, ServerFacts, SlotFacts, Tablespace};
use crate::ssh::Session;
use crate::step::StepError;
use crate::templates::{Context, HostView, ReplicationView};

/// What the actions remember of one host between steps of a run.
#[derive(Debug, Default)]
pub struct HostMemo {
    pub facts: Option<Facts>,
    /// A config file changed since the server last (re)started or reloaded.
    pub config_changed: bool,
    /// The old data dir, moved aside by this run.
    pub moved_aside: Option<String>,
    /// The primary's tablespace locations this run moved aside here (location, where it
    /// went), restored together with the data dir.
    pub moved_tablespaces: Vec<(String, String)>,
    /// Tablespace locations that were empty or missing here and this run made for the copy.
    pub fresh_tablespaces: Vec<String>,
    /// Whether the server was running before this run stopped it.
    pub was_running: Option<bool>,
    /// How it came to follow a new primary: `none` (no copy) or `copy`.
    pub rejoined: Option<&'static str>,
    /// Its WAL forked off the primary's timeline: it cannot follow without a copy.
    pub diverged: bool,
    /// What `pgrepl sync off|on` left synchronous replication as here, for the recap.
    pub sync_left: Option<String>,
    /// Whether its data can stream from this primary without a copy (what it is), or why not.
    pub standby: Option<Result<String, String>>,
    /// Why it is copied again, shown with the copy.
    pub copy_reason: Option<String>,
    /// Check mode: the start step would start it, so the copy after it would not run.
    pub will_stream: bool,
    /// A standby this run started (or reloaded) instead of copying, and how.
    pub started_standby: Option<String>,
    /// Check mode: changed settings that only a restart would apply.
    pub restart_for: Vec<String>,
    /// Changed settings only a restart applies, written by this run and not yet applied.
    pub needs_restart: Vec<String>,
    /// Restart-only settings (name, value as written) the postmaster's own parser accepted
    /// in this run: a later step's check of the same files need not ask it again.
    pub accepted_settings: std::collections::BTreeSet<(String, String)>,
    /// An action of this run may have started, stopped, copied or reconfigured the server
    /// since preflight looked: preflight's word on whether it can stream no longer holds.
    pub server_touched: bool,
}

impl HostMemo {
    /// Drops preflight's copy of a file this run is about to change.
    pub fn forget_file(&mut self, path: &str) {
        if let Some(f) = &mut self.facts {
            f.files.remove(path);
        }
    }

    /// Drops the copies of files in the data dir (which may hold the config): it is
    /// being replaced. Files elsewhere (Debian's /etc/postgresql) stay as they are.
    pub fn forget_files(&mut self, data_dir: &str) {
        let dir = format!("{}/", data_dir.trim_end_matches('/'));
        if let Some(f) = &mut self.facts {
            f.files.retain(|path, _| !path.starts_with(&dir));
        }
    }

    /// Remembers what this run just wrote to a file, so later steps need not read it back.
    pub fn wrote_file(&mut self, path: &str, content: &str) {
        if let Some(f) = &mut self.facts {
            f.files.insert(path.to_string(), Some(content.to_string()));
        }
    }
}

/// An action's view of one host during a run.
pub struct HostCtx<'e> {
    pub cluster: &'e Cluster,
    pub index: usize,
    pub host: &'e Host,
    pub session: &'e Session,
}

impl<'e> HostCtx<'e> {
    pub fn pg(&self) -> Pg<'_> {
        Pg::new(self.session, self.host)
    }

    pub fn check_mode(&self) -> bool {
        self.cluster.options.check
    }

    pub async fn state(&self) -> MutexGuard<'_, HostMemo> {
        self.cluster.memos[self.index].lock().await
    }

    /// The primary and its session.
    pub fn primary(&self) -> Result<(&'e Host, &'e Session), StepError> {
        let inv = &self.cluster.inventory;
        let i = inv
            .hosts
            .iter()
            .position(Host::is_primary)
            .ok_or_else(|| StepError::msg("no primary in the inventory"))?;
        let session = self.cluster.sessions[i].as_deref().ok_or_else(|| {
            StepError::new(
                format!("primary `{}` is not reachable", inv.hosts[i].name),
                "check the primary first",
            )
        })?;
        Ok((&inv.hosts[i], session))
    }

    /// The member this replica streams from (its `upstream`, else the primary) and its
    /// session.
    pub fn upstream(&self) -> Result<(&'e Host, &'e Session), StepError> {
        let inv = &self.cluster.inventory;
        let up = inv.upstream_of(self.host).ok_or_else(|| {
            StepError::new(
                format!("`{}` has no upstream in the inventory", self.host.name),
                "check its `upstream:` (or the inventory's primary)",
            )
        })?;
        let i = inv
            .hosts
            .iter()
            .position(|h| h.name == up.name)
            .unwrap_or(0);
        let session = self.cluster.sessions[i].as_deref().ok_or_else(|| {
            StepError::new(
                format!(
                    "`{}`, which `{}` streams from, is not reachable",
                    up.name, self.host.name
                ),
                format!("check `{}` first", up.name),
            )
        })?;
        Ok((up, session))
    }

    /// Whether this host streams from another replica rather than from the primary.
    pub fn cascaded(&self) -> bool {
        self.cluster
            .inventory
            .upstream_of(self.host)
            .is_some_and(|u| !u.is_primary())
    }

    /// The primary's facts, gathered by preflight.
    pub async fn primary_facts(&self) -> Option<Facts> {
        let inv = &self.cluster.inventory;
        let i = inv.hosts.iter().position(Host::is_primary)?;
        self.cluster.memos[i].lock().await.facts.clone()
    }

    /// The primary's facts: preflight's, or gathered now if no preflight ran on it.
    pub async fn primary_facts_or_gather(&self) -> Result<Facts, StepError> {
        let (primary, session) = self.primary()?;
        let i = self
            .cluster
            .inventory
            .hosts
            .iter()
            .position(Host::is_primary)
            .unwrap_or(0);
        super::preflight::facts(self.cluster, i, session, primary).await
    }

    /// The typed context templates render with, for this host.
    pub async fn template_context(&self) -> Context {
        let inv = &self.cluster.inventory;
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
        let settings = crate::actions::cluster_settings(self.cluster, facts.as_ref());
        // Every member gets the same values, the primary included, so that after a
        // switchover or failover no setting a restart would need has to change.
        let standby_minimums = crate::actions::standby_minimums(facts.as_ref(), &settings);
        Context {
            // Not `views[self.index]`: remove-replica's host is a member outside the inventory.
            host: HostView::of(self.host),
            primary: views[primary].clone(),
            replicas: members[1..].to_vec(),
            members,
            settings,
            standby_minimums,
            replication: ReplicationView {
                user: inv.replication.user.clone(),
            },
            hba: inv.hba.clone(),
            endpoints_hba: crate::haproxy::endpoint_hba(inv),
        }
    }
}
