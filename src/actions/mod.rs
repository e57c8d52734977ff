//! The built-in actions. Each looks at its host first and changes only what differs,
//! reporting `ok`, `changed` or `skipped`; in check mode it stops after looking.

mod config;
mod preflight;
mod primary;
mod replica;
mod site;

use std::collections::BTreeMap;

use crate::engine::{Engine, Facts, HostCtx, Outcome, StepError};
use crate::playbook::{Action, Condition};

/// Runs one action on one host.
pub async fn run(ctx: &HostCtx<'_>, action: &Action) -> Result<Outcome, StepError> {
    match action {
        Action::Preflight => preflight::run(ctx).await,
        Action::Config { template, restart } => config::settings(ctx, template, *restart).await,
        Action::Hba { template } => config::hba(ctx, template).await,
        Action::Apply { restart } => config::apply(ctx, *restart).await,
        Action::ReplicationRole => primary::replication_role(ctx).await,
        Action::Slots { only } => primary::slots(ctx, *only).await,
        Action::Passfile => replica::passfile(ctx).await,
        Action::ReplicationLogin => replica::replication_login(ctx).await,
        Action::Stop => replica::stop(ctx).await,
        Action::Start => replica::start(ctx).await,
        Action::MoveAside => replica::move_aside(ctx).await,
        Action::RestoreDatadir => replica::restore_datadir(ctx).await,
        Action::BaseBackup => replica::base_backup(ctx).await,
        Action::Standby => replica::standby(ctx).await,
        Action::WaitStreaming => replica::wait_streaming(ctx).await,
        Action::Verify => crate::verify::action(ctx).await,
        Action::Shell { command, user } => site::shell(ctx, command, *user).await,
        Action::Sql { sql } => site::sql(ctx, sql).await,
    }
}

/// Whether a block's `unless` condition holds on the host.
pub async fn condition_holds(ctx: &HostCtx<'_>, cond: Condition) -> Result<bool, StepError> {
    match cond {
        Condition::Streaming => {
            // Preflight read the wal receiver moments ago; ask again only when it said no.
            let seen = ctx
                .state()
                .await
                .facts
                .as_ref()
                .and_then(|f| f.server.clone());
            if replica::receiver_matches(ctx, seen.as_ref()) {
                Ok(true)
            } else {
                replica::streams_from_primary(ctx).await
            }
        }
    }
}

/// How a condition reads in a report.
pub fn condition_label(cond: Condition) -> &'static str {
    match cond {
        Condition::Streaming => "streaming from the primary through its slot",
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
pub fn cluster_settings(engine: &Engine, primary: Option<&Facts>) -> BTreeMap<String, String> {
    let replicas = engine
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
    let senders = (replicas + 2 * engine.concurrent_backups + 2) as i64;
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
    for (k, v) in &engine.inventory.replication.settings {
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
