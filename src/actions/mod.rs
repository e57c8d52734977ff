//! The built-in actions. Each looks at its host first and changes only what differs,
//! reporting `ok`, `changed` or `skipped`; in check mode it stops after looking.

mod config;
pub mod context;
pub mod endpoints;
mod failover;
pub mod lock;
mod preflight;
mod primary;
pub mod remove;
mod replica;
mod site;
mod standby;
pub mod switchover;
mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;

pub use context::{Facts, HostCtx, HostMemo};

use crate::engine::{Events, Member, Runner};
use crate::inventory::{Host, Inventory};
use crate::playbook::{Action, Condition};
use crate::ssh::{self, ConnectOptions, Session};
use crate::step::{Outcome, StepError};
use crate::templates::Templates;
use crate::verify::{VerifyOptions, VerifyReport};

/// How the actions behave in this run.
#[derive(Debug, Clone, Default)]
pub struct ActionOptions {
    /// Only look; change nothing.
    pub check: bool,
    /// Show unified diffs of config files that change (or would).
    pub diff: bool,
    /// Allow restarting the primary where a step's policy would refuse.
    pub allow_restart: bool,
    /// Thresholds of the verify step.
    pub verify: VerifyOptions,
    /// switchover: how long the candidate may take to receive the old primary's last WAL.
    pub catch_up_timeout: std::time::Duration,
    /// `sync on`: turn synchronous replication on even when too few standbys stream.
    pub force: bool,
}

/// The cluster as the actions see it: the inventory, one SSH session per reachable host,
/// and what the actions remember between steps. It is the engine's [`Runner`].
pub struct Cluster {
    pub inventory: Inventory,
    pub templates: Templates,
    pub options: ActionOptions,
    pub events: Arc<dyn Events>,
    /// Sessions by host index; `None` for a host that was not contacted or not reached.
    pub sessions: Vec<Option<Arc<Session>>>,
    /// Why each host could not be reached.
    pub unreachable: Vec<Option<String>>,
    pub memos: Vec<tokio::sync::Mutex<HostMemo>>,
    pub password: Option<SecretString>,
    /// The host named on the command line (add-replica).
    pub target: Option<String>,
    /// How many base backups may run at once (sizes max_wal_senders).
    pub concurrent_backups: usize,
    /// The report of the last verify step.
    pub verify_report: tokio::sync::Mutex<Option<VerifyReport>>,
    /// The pid of each host's running pg_basebackup, recorded the moment it is known (a
    /// plain mutex: it is set from inside the output callback), so a rescue can end it.
    pub backup_pids: Vec<std::sync::Mutex<Option<u32>>>,
    /// Hosts left out of this run's verify (a fenced old primary until `rejoin`).
    pub out_of_service: Vec<usize>,
    /// What a switchover learns on the way (shutdown checkpoint, timings, slots made).
    pub switch: std::sync::Mutex<switchover::SwitchState>,
    /// remove-replica: the replica being taken out. It is not in `inventory`; when it is
    /// a member of the run, it is the last one ([`Cluster::add_removal`]).
    pub removal: Option<remove::Removal>,
    /// When this cluster began connecting: a run's total time counts from here.
    pub connecting_since: Option<std::time::Instant>,
    /// The run lock to take in the primary's facts round trip (its holder line and
    /// mode, see [`lock::ACQUIRE_SH`]); set once the run knows it changes hosts.
    pub lock_request: std::sync::OnceLock<(String, &'static str)>,
    /// The run lock (the primary's session, its holder), when the plan ends with verify:
    /// verify gives it back as it starts, beside its own round trips (it changes nothing
    /// but its probe row); whoever takes it out releases it.
    pub release_at_verify: std::sync::Mutex<Option<(Arc<Session>, lock::Holder)>>,
}

impl Cluster {
    /// A cluster with no session open yet.
    pub fn new(
        inventory: Inventory,
        templates: Templates,
        options: ActionOptions,
        events: Arc<dyn Events>,
    ) -> Self {
        // Members first, then proxies: node `hosts.len() + p` is proxy `p`.
        let n = inventory.node_count();
        Cluster {
            password: inventory.replication.password.clone(),
            inventory,
            templates,
            options,
            events,
            sessions: vec![None; n],
            unreachable: vec![None; n],
            memos: (0..n).map(|_| Default::default()).collect(),
            target: None,
            concurrent_backups: 1,
            verify_report: Default::default(),
            backup_pids: (0..n).map(|_| std::sync::Mutex::new(None)).collect(),
            switch: Default::default(),
            out_of_service: Vec::new(),
            removal: None,
            connecting_since: None,
            lock_request: std::sync::OnceLock::new(),
            release_at_verify: std::sync::Mutex::new(None),
        }
    }

    /// Host `i`: an inventory host, or (just past them) the host remove-replica takes out.
    pub fn host_at(&self, i: usize) -> Option<&Host> {
        match self.inventory.hosts.get(i) {
            Some(h) => Some(h),
            None if self.removal_index() == Some(i) => {
                self.removal.as_ref().and_then(|r| r.host.as_ref())
            }
            None => None,
        }
    }

    /// Opens one SSH session per host in `hosts`, all at once, and to every proxy (an
    /// endpoint follows the primary whatever the command); unreachable hosts are recorded
    /// (the engine fails their first step with the reason).
    pub async fn connect(
        &mut self,
        hosts: &[usize],
        opts: &ConnectOptions,
    ) -> Result<(), ssh::Error> {
        self.connecting_since
            .get_or_insert_with(std::time::Instant::now);
        let config = Arc::new(ssh::load_ssh_config(opts)?);
        let mut tasks = Vec::new();
        let mut nodes: Vec<usize> = hosts.to_vec();
        nodes.extend(self.inventory.proxy_nodes().filter(|i| !hosts.contains(i)));
        for i in nodes {
            let (name, target) = match (self.inventory.proxy_of(i), self.host_at(i)) {
                (Some(p), _) => (&p.name, &p.ssh),
                (None, Some(h)) => (&h.name, &h.ssh),
                (None, None) => continue,
            };
            let ep = ssh::endpoint(name, target, config.as_ref().as_ref());
            let opts = opts.clone();
            let config = config.clone();
            tasks.push((
                i,
                tokio::spawn(
                    async move { ssh::connect(&ep, &opts, config.as_ref().as_ref()).await },
                ),
            ));
        }
        for (i, task) in tasks {
            match task.await {
                Ok(Ok(session)) => self.sessions[i] = Some(Arc::new(session)),
                Ok(Err(e)) => self.unreachable[i] = Some(e.to_string()),
                Err(e) => self.unreachable[i] = Some(e.to_string()),
            }
        }
        Ok(())
    }

    /// The hosts as the engine names them: the members, the proxies, then the host
    /// remove-replica takes out.
    pub fn members(&self) -> Vec<Member> {
        let removed = self.removal.as_ref().and_then(|r| r.host.as_ref());
        let role = |h: &crate::inventory::Host| {
            match h.role {
                crate::inventory::Role::Primary => "primary",
                crate::inventory::Role::Replica => "replica",
                crate::inventory::Role::Proxy => "proxy",
            }
            .to_string()
        };
        let members = self.inventory.hosts.iter().map(|h| Member {
            name: h.name.clone(),
            role: role(h),
        });
        let proxies = self.inventory.proxies.iter().map(|p| Member {
            name: p.name.clone(),
            role: "proxy".to_string(),
        });
        // remove-replica's host comes last, after the proxies.
        let removed = removed.into_iter().map(|h| Member {
            name: h.name.clone(),
            role: role(h),
        });
        members.chain(proxies).chain(removed).collect()
    }

    /// An action's view of host `i`, if it is a PostgreSQL member with a session.
    pub fn host(&self, i: usize) -> Option<HostCtx<'_>> {
        let session = self.sessions.get(i)?.as_deref()?;
        Some(HostCtx {
            cluster: self,
            index: i,
            host: self.host_at(i)?,
            session,
        })
    }

    fn not_contacted(&self, i: usize) -> StepError {
        StepError::msg(self.unreachable[i].clone().unwrap_or_else(|| {
            let name = match self.inventory.proxy_of(i) {
                Some(p) => p.name.as_str(),
                None => self.host_at(i).map_or("?", |h| h.name.as_str()),
            };
            format!("host `{name}` was not contacted")
        }))
    }

    fn host_or_err(&self, i: usize) -> Result<HostCtx<'_>, StepError> {
        self.host(i).ok_or_else(|| self.not_contacted(i))
    }

    /// An action's view of node `i` when it is a proxy: `None` for a member, an error for
    /// a proxy that was not reached.
    fn proxy_ctx(&self, i: usize) -> Option<Result<endpoints::ProxyCtx<'_>, StepError>> {
        let proxy = self.inventory.proxy_of(i)?;
        Some(match self.sessions[i].as_deref() {
            Some(session) => Ok(endpoints::ProxyCtx {
                cluster: self,
                index: i,
                proxy,
                session,
            }),
            None => Err(self.not_contacted(i)),
        })
    }
}

impl From<ssh::Error> for StepError {
    fn from(e: ssh::Error) -> Self {
        StepError::Remote(Box::new(e))
    }
}

impl Runner for Cluster {
    type Action = Action;
    type Condition = Condition;

    async fn run(&self, host: usize, action: &Action) -> Result<Outcome, StepError> {
        if let Some(proxy) = self.proxy_ctx(host) {
            return endpoints::run_on_proxy(&proxy?, action).await;
        }
        if let Some(skipped) = remove::passed_over(self, host) {
            return Ok(skipped);
        }
        let ctx = self.host_or_err(host)?;
        if !leaves_server_as_is(action) {
            ctx.state().await.server_touched = true;
        }
        run(&ctx, action).await
    }

    async fn holds(&self, host: usize, cond: Condition) -> Result<bool, StepError> {
        if self.inventory.proxy_of(host).is_some() {
            return Err(StepError::new(
                format!(
                    "`{}` is a proxy: `{}` is a PostgreSQL condition",
                    self.inventory.node_name(host),
                    condition_label(cond)
                ),
                "give the step PostgreSQL hosts (primary, replicas, ...) or drop the condition",
            ));
        }
        condition_holds(&self.host_or_err(host)?, cond).await
    }

    fn describe(&self, cond: Condition) -> String {
        condition_label(cond).to_string()
    }

    fn action_name(&self, action: &Action) -> String {
        action.name()
    }

    fn unreachable(&self, host: usize) -> Option<String> {
        if remove::passed_over(self, host).is_some() {
            return None;
        }
        self.unreachable[host].clone()
    }

    /// A cascaded replica waits for its upstream (the primary never is in such a step).
    fn waits_for(&self, host: usize) -> Option<usize> {
        self.inventory
            .upstream_index(host)
            .filter(|_| self.inventory.is_cascaded(host))
    }

    fn left_as(&self, host: usize, failed: bool, interrupted: bool) -> Option<String> {
        if let Some(line) = remove::left_as(self, host, failed || interrupted) {
            return Some(line);
        }
        let memo = self.memos[host].try_lock().ok()?;
        if let Some(sync) = &memo.sync_left {
            return Some(sync.clone());
        }
        if let (None, Some(how), false) = (&memo.moved_aside, &memo.started_standby, failed) {
            return Some(format!("its standby data kept: {how}"));
        }
        let data_dir = &self.host_at(host)?.pg.data_dir;
        let mut moved: Vec<(&str, &str)> = memo
            .moved_aside
            .iter()
            .map(|a| (data_dir.as_str(), a.as_str()))
            .collect();
        moved.extend(
            memo.moved_tablespaces
                .iter()
                .map(|(l, a)| (l.as_str(), a.as_str())),
        );
        if moved.is_empty() {
            return None;
        }
        let list = |f: fn(&str, &str) -> String| {
            moved
                .iter()
                .map(|(from, aside)| f(from, aside))
                .collect::<Vec<_>>()
        };
        if !failed && !interrupted {
            return Some(format!(
                "streaming; the previous data is kept at {}: `pgrepl cleanup` removes it once this replica verifies healthy",
                list(|_, a| a.to_string()).join(", ")
            ));
        }
        // A rescue that could not run leaves them set: tell the user how to undo by hand.
        Some(format!(
            "the previous data is still at {} (not restored); to put it back: stop PostgreSQL, then `{}`",
            list(|from, a| format!("{a} (was {from})")).join(", "),
            list(|from, a| format!("rm -rf {from} && mv {a} {from}")).join(" && ")
        ))
    }
}

/// Whether an action leaves the host's server as preflight saw it (running or not, standby
/// or not): it only reads, or writes files the server reads at its next reload or start.
fn leaves_server_as_is(action: &Action) -> bool {
    matches!(
        action,
        Action::Preflight
            | Action::Config { .. }
            | Action::Hba { .. }
            | Action::ReplicationRole
            | Action::Slots { .. }
            | Action::Passfile
            | Action::ReplicationLogin
            | Action::StandbyCheck
            | Action::RolesAndDatabases
            | Action::Verify
    )
}

/// Runs one action on one host.
pub async fn run(ctx: &HostCtx<'_>, action: &Action) -> Result<Outcome, StepError> {
    match action {
        Action::Preflight => preflight::run(ctx).await,
        Action::Config { template, restart } => config::settings(ctx, template, *restart).await,
        Action::Hba { template } => config::hba(ctx, template).await,
        Action::Apply { restart } => config::apply(ctx, *restart).await,
        Action::ReplicationRole => primary::replication_role(ctx).await,
        Action::Slots { only } => primary::slots(ctx, *only).await,
        Action::UpstreamSlot => primary::upstream_slot(ctx).await,
        Action::DropSlotElsewhere => primary::drop_slot_elsewhere(ctx).await,
        Action::Passfile => replica::passfile(ctx).await,
        Action::ReplicationLogin => replica::replication_login(ctx).await,
        Action::Stop => replica::stop(ctx).await,
        Action::Start => replica::start(ctx).await,
        Action::MoveAside => replica::move_aside(ctx).await,
        Action::RestoreDatadir => replica::restore_datadir(ctx).await,
        Action::BaseBackup => replica::base_backup(ctx).await,
        Action::Standby => replica::standby(ctx).await,
        Action::WaitStreaming => replica::wait_streaming(ctx).await,
        Action::Verify => verify(ctx).await,
        Action::Shell { command, user } => site::shell(ctx, command, *user).await,
        Action::Sql { sql } => site::sql(ctx, sql).await,
        Action::SwitchoverCheck => switchover::check(ctx).await,
        Action::PrepareCandidate => switchover::prepare(ctx).await,
        Action::DropPreparedSlots => switchover::drop_prepared_slots(ctx).await,
        Action::ShutdownPrimary => switchover::shutdown_primary(ctx).await,
        Action::StartOldPrimary => switchover::start_old_primary(ctx).await,
        Action::CatchUp => switchover::catch_up(ctx).await,
        Action::Promote => switchover::promote(ctx).await,
        Action::Follow => switchover::follow(ctx).await,
        Action::DropStandbySlots => switchover::drop_standby_slots(ctx).await,
        Action::Fence => failover::fence(ctx).await,
        Action::AllowAutostart => failover::allow_autostart(ctx).await,
        Action::RejoinCheck => failover::rejoin_check(ctx).await,
        Action::SyncOff => sync::off(ctx).await,
        Action::SyncOn => sync::on(ctx).await,
        Action::DropStandbyConfig => remove::drop_standby_config(ctx).await,
        Action::AutostartOff => remove::autostart_off(ctx).await,
        Action::RetireDataDir => remove::retire_data_dir(ctx).await,
        Action::DropRemovedSlot => remove::drop_removed_slot(ctx).await,
        Action::StandbyCheck => standby::check(ctx).await,
        Action::StartStandby => standby::start(ctx).await,
        Action::RolesAndDatabases => endpoints::roles_and_databases(ctx).await,
        Action::Haproxy => Err(StepError::new(
            format!(
                "`{}` is a PostgreSQL host: haproxy runs on proxies",
                ctx.host.name
            ),
            "give the step `hosts: proxies`",
        )),
    }
}

/// The `verify` action (on the primary): verifies the whole cluster and keeps the report.
async fn verify(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::skipped("check mode: no probe written"));
    }
    let cluster = ctx.cluster;
    let lock = cluster
        .release_at_verify
        .lock()
        .map(|mut l| l.take())
        .unwrap_or(None);
    let release = async {
        if let Some((primary, holder)) = lock {
            lock::release(&primary, &holder).await;
        }
    };
    let target = cluster.verify_target();
    let (report, ()) = tokio::join!(crate::verify::run(&target), release);
    let outcome = report.as_outcome();
    *cluster.verify_report.lock().await = Some(report);
    outcome
}

impl Cluster {
    /// The settings whose change would restart the primary in these steps (postmaster
    /// settings its config steps change, or a restart already pending), read before any
    /// step runs, so a run can say so first. Empty when the steps would not restart it.
    pub async fn primary_restart_forecast(
        &self,
        steps: &[crate::engine::Step<Action, Condition>],
    ) -> Vec<String> {
        let Some(i) = self.inventory.hosts.iter().position(|h| h.is_primary()) else {
            return Vec::new();
        };
        let actions: Vec<&Action> = steps
            .iter()
            .filter(|s| s.hosts.contains(&i))
            .flat_map(|s| s.work.actions())
            .collect();
        let restarts = actions.iter().any(|a| {
            matches!(a, Action::Apply { restart }
                if *restart == crate::playbook::RestartPolicy::Allow || self.options.allow_restart)
        });
        let Some(ctx) = self.host(i).filter(|_| restarts) else {
            return Vec::new();
        };
        let templates: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Config { template, .. } => Some(template.as_str()),
                _ => None,
            })
            .collect();
        if preflight::facts(self, i, ctx.session, ctx.host)
            .await
            .is_err()
        {
            return Vec::new(); // preflight reports it
        }
        config::restart_forecast(&ctx, &templates)
            .await
            .unwrap_or_default()
    }

    /// What taking the run lock answered in the primary's facts round trip, when it was
    /// taken there ([`Cluster::lock_request`]); waits for that round trip.
    pub async fn lock_answer(&self) -> Option<String> {
        self.lock_request.get()?;
        let i = self.inventory.hosts.iter().position(|h| h.is_primary())?;
        let ctx = self.host(i)?;
        preflight::facts(self, i, ctx.session, ctx.host)
            .await
            .ok()?
            .lock_answer
    }

    /// Reads (and keeps) the facts of these PostgreSQL hosts, all at once, ahead of the
    /// preflight step that reports them; a host that fails is left for preflight to report.
    pub async fn prefetch_facts(&self, hosts: &[usize]) {
        futures::future::join_all(hosts.iter().filter_map(|&i| self.host(i)).map(
            |ctx| async move {
                let _ = preflight::facts(self, ctx.index, ctx.session, ctx.host).await;
            },
        ))
        .await;
    }

    /// What verify needs of the cluster.
    pub fn verify_target(&self) -> crate::verify::Target<'_> {
        crate::verify::Target {
            inventory: &self.inventory,
            sessions: &self.sessions,
            unreachable: &self.unreachable,
            options: &self.options.verify,
            out_of_service: &self.out_of_service,
            password: self.password.as_ref(),
        }
    }
}

/// Whether a condition holds on the host.
pub async fn condition_holds(ctx: &HostCtx<'_>, cond: Condition) -> Result<bool, StepError> {
    match cond {
        // Check mode: a standby the start step would start is not copied after it either.
        Condition::Streaming if ctx.check_mode() && ctx.state().await.will_stream => Ok(true),
        Condition::StandbyOfPrimary => Ok(standby::can_stream(ctx).await?.is_ok()),
        Condition::StreamedFromRemoved => Ok(ctx
            .cluster
            .removal
            .as_ref()
            .is_some_and(|r| r.children.contains(&ctx.host.name))),
        Condition::Streaming if upstream_copied(ctx).await => {
            // Its upstream was copied in this run (it came back with this replica's slot
            // made again): give the WAL receiver its retry interval to reconnect.
            let started = std::time::Instant::now();
            loop {
                if replica::streams_from_upstream(ctx).await? {
                    return Ok(true);
                }
                if started.elapsed() > std::time::Duration::from_secs(15) {
                    return Ok(false);
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
        Condition::Streaming => {
            // Preflight read the wal receiver moments ago; ask again only when it said no
            // and the server could have come to stream since: a standby (its receiver may
            // be reconnecting), or a server this run has started or changed. A stopped
            // server, or one that is no standby, that nothing in this run touched, still
            // does not stream.
            let (seen, settled) = {
                let memo = ctx.state().await;
                let facts = memo.facts.as_ref();
                let settled = !memo.server_touched
                    && facts.is_some_and(|f| {
                        !f.running || f.server.as_ref().is_some_and(|s| !s.in_recovery)
                    });
                (facts.and_then(|f| f.server.clone()), settled)
            };
            if replica::receiver_matches(ctx, seen.as_ref()) {
                Ok(true)
            } else if settled {
                Ok(false)
            } else {
                replica::streams_from_upstream(ctx).await
            }
        }
    }
}

/// Whether this replica's upstream is a replica whose data this run copied anew.
async fn upstream_copied(ctx: &HostCtx<'_>) -> bool {
    let inv = &ctx.cluster.inventory;
    match inv.upstream_index(ctx.index) {
        Some(u) if inv.is_cascaded(ctx.index) && !ctx.check_mode() => {
            ctx.cluster.memos[u].lock().await.moved_aside.is_some()
        }
        _ => false,
    }
}

/// How a condition reads in a report.
pub fn condition_label(cond: Condition) -> &'static str {
    match cond {
        Condition::Streaming => "streaming from its upstream through its slot",
        Condition::StandbyOfPrimary => "a standby of this primary that can stream",
        Condition::StreamedFromRemoved => "a replica of the host being removed",
    }
}

/// Settings a standby refuses to start without, at least as high as on its primary.
const STANDBY_MINIMUMS: &[&str] = &[
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// The postgresql.conf settings every member gets: replication defaults sized for the
/// cluster, never lowering what the primary already has, then the inventory's settings.
pub fn cluster_settings(cluster: &Cluster, primary: Option<&Facts>) -> BTreeMap<String, String> {
    let replicas = cluster
        .inventory
        .hosts
        .iter()
        .filter(|h| !h.is_primary())
        .count();
    let current = |name: &str| -> Option<i64> {
        primary
            .and_then(|f| f.server.as_ref())
            .and_then(|s| s.settings.get(name))
            .and_then(|v| v.parse().ok())
    };
    // Each replica streams through one walsender; each base backup takes two more (-X stream).
    let senders = (replicas + 2 * cluster.concurrent_backups + 2) as i64;
    let slots = (replicas + 2) as i64;
    let mut out = BTreeMap::new();
    out.insert("listen_addresses".into(), "'*'".into());
    let logical = primary
        .and_then(|f| f.server.as_ref())
        .and_then(|s| s.settings.get("wal_level"))
        .is_some_and(|v| v == "logical");
    out.insert(
        "wal_level".into(),
        if logical { "logical" } else { "replica" }.into(),
    );
    out.insert(
        "max_wal_senders".into(),
        senders
            .max(current("max_wal_senders").unwrap_or(10))
            .max(10)
            .to_string(),
    );
    out.insert(
        "max_replication_slots".into(),
        slots
            .max(current("max_replication_slots").unwrap_or(10))
            .max(10)
            .to_string(),
    );
    out.insert("wal_keep_size".into(), "'1GB'".into());
    // The same value on every member: a promoted standby already has it, and its own
    // name in the list matches no standby, so it never waits for itself.
    if let Some(sync) = &cluster.inventory.replication.synchronous {
        out.insert(
            "synchronous_standby_names".into(),
            crate::pg::conf_literal(&sync.standby_names()),
        );
    }
    for (k, v) in &cluster.inventory.replication.settings {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// For a replica: the primary's values of the settings a standby needs at least as high.
pub fn standby_minimums(
    primary: Option<&Facts>,
    settings: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let Some(server) = primary.and_then(|f| f.server.as_ref()) else {
        return BTreeMap::new();
    };
    STANDBY_MINIMUMS
        .iter()
        .filter(|name| !settings.contains_key(**name))
        .filter_map(|name| {
            server
                .settings
                .get(*name)
                .map(|v| (name.to_string(), v.clone()))
        })
        .collect()
}

pub use preflight::human_bytes as human;
