//! Changing the primary on purpose, with no acknowledged write lost.
//!
//! Phase one (the `switchover` playbook, on the inventory as it was): check the candidate,
//! give it the slots the others will need, shut the primary down cleanly, wait until the
//! candidate has received the primary's shutdown checkpoint, then promote it — the point
//! of no return. Anything that fails before the promotion is rolled back: the old primary
//! starts again as it was and the slots made on the candidate are dropped.
//!
//! Phase two (the `rewire` playbook, on the inventory with the roles swapped) points every
//! replica, the old primary included, at the new primary; [`follow`] lives here.
//!
//! The zero-loss argument: a fast shutdown makes the walsenders send everything up to the
//! shutdown checkpoint before they exit, and the promotion waits until the candidate has
//! received that checkpoint record in full. So every commit the old primary acknowledged
//! is on the candidate, and the old primary (whose last record is that checkpoint) can
//! follow the new timeline without a rewind.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::context::HostCtx;
use super::replica;
use crate::inventory::Host;
use crate::pg::{ServerState, literal};
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

/// How long a rewired replica may take to stream from the new primary before it is copied.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);
/// A transaction open this long on the primary is reported before it is cut off.
const LONG_TRANSACTION_SECONDS: u32 = 60;
/// More WAL segments waiting for the archiver than this would stall the shutdown.
const ARCHIVE_BACKLOG_LIMIT: u64 = 64;

/// What phase one learns and phase two reports.
#[derive(Debug, Default, Clone)]
pub struct SwitchState {
    /// When the old primary's shutdown began (writes stop being accepted).
    pub shutdown_started: Option<Instant>,
    /// The old primary's shutdown checkpoint: where it starts and where it ends.
    pub checkpoint: Option<(u64, u64)>,
    /// When the new primary first accepted a write.
    pub first_write: Option<Instant>,
    /// The new primary's timeline.
    pub timeline: Option<u32>,
    /// Slots this run made on the candidate (dropped again by a rollback).
    pub slots_made: Vec<String>,
}

impl SwitchState {
    /// Milliseconds from the old primary's shutdown to the new primary's first write.
    pub fn write_unavailable_ms(&self) -> Option<u128> {
        Some(
            self.first_write?
                .duration_since(self.shutdown_started?)
                .as_millis(),
        )
    }
}

/// Parses an LSN (`16/B374D848`) into a byte position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Formats a byte position as an LSN.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn old_primary(ctx: &HostCtx<'_>) -> Result<usize, StepError> {
    ctx.cluster
        .inventory
        .hosts
        .iter()
        .position(Host::is_primary)
        .ok_or_else(|| StepError::msg("no primary in the inventory"))
}

#[derive(Debug, Deserialize)]
struct CandidateView {
    in_recovery: bool,
    paused: bool,
    receiver: Option<crate::pg::facts::Receiver>,
    max_wal_senders: i64,
    max_replication_slots: i64,
}

#[derive(Debug, Deserialize)]
struct PrimaryView {
    in_recovery: bool,
    /// The candidate's row in `pg_stat_replication`.
    lag_bytes: Option<i64>,
    long_transactions: Vec<String>,
    archive_backlog: u64,
}

/// Preflight of a switchover, on the candidate: nothing is changed when it fails.
pub async fn check(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let cluster = ctx.cluster;
    let inv = &cluster.inventory;
    let old = old_primary(ctx)?;
    let primary = &inv.hosts[old];
    let primary_ctx = cluster.host(old).ok_or_else(|| {
        StepError::new(
            format!("the primary `{}` is not reachable", primary.name),
            "a switchover needs the primary up; if it is down, use `pgrepl failover`",
        )
    })?;
    // A cascaded candidate would catch up through its upstream and its lag is measured
    // there: not supported yet, say what works instead.
    if ctx.cascaded() {
        let upstream = ctx.upstream()?.0.name.clone();
        return Err(StepError::new(
            format!(
                "cannot switch over to `{}`: it is a cascaded replica (it streams from `{upstream}`, not from the primary); nothing was changed",
                ctx.host.name
            ),
            format!(
                "switch over to `{upstream}` (its children follow it), or remove `upstream: {upstream}` from `{}` in the inventory and run `pgrepl bootstrap` first",
                ctx.host.name
            ),
        ));
    }
    let mut problems = Vec::new();
    // Exactly one host runs as a primary: the inventory's.
    let mut primaries = Vec::new();
    for (i, h) in inv.hosts.iter().enumerate() {
        let facts = cluster.memos[i].lock().await.facts.clone();
        if let Some(server) = facts.and_then(|f| f.server)
            && !server.in_recovery
        {
            primaries.push(h.name.clone());
        }
    }
    if primaries != [primary.name.clone()] {
        problems.push(format!(
            "expected exactly one primary (`{}`), found {}",
            primary.name,
            if primaries.is_empty() {
                "none".to_string()
            } else {
                primaries.join(", ")
            }
        ));
    }
    let slot = ctx.host.slot.clone().unwrap_or_default();
    let candidate: Option<CandidateView> = ctx
        .pg()
        .query_if_running(
            "SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'paused', CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
  'receiver', (SELECT row_to_json(r) FROM (SELECT status, slot_name, sender_host, sender_port FROM pg_stat_wal_receiver) r),
  'max_wal_senders', current_setting('max_wal_senders')::int,
  'max_replication_slots', current_setting('max_replication_slots')::int)",
        )
        .await?;
    match &candidate {
        None => problems.push(format!("PostgreSQL is not running on `{}`", ctx.host.name)),
        Some(c) if !c.in_recovery => problems.push(format!("`{}` is not a standby", ctx.host.name)),
        Some(c) => {
            let streaming = c.receiver.as_ref().is_some_and(|r| {
                r.status.as_deref() == Some("streaming")
                    && r.slot_name.as_deref() == Some(slot.as_str())
                    && r.sender_host.as_deref() == Some(primary.address.as_str())
            });
            if !streaming {
                problems.push(format!(
                    "`{}` does not stream from `{}` through its slot {slot}",
                    ctx.host.name, primary.name
                ));
            }
            if c.paused {
                problems.push(format!(
                    "replay is paused on `{}` (SELECT pg_wal_replay_resume() there first)",
                    ctx.host.name
                ));
            }
            let others = (inv.hosts.len() - 1) as i64;
            if c.max_wal_senders < others || c.max_replication_slots < others {
                problems.push(format!(
                    "`{}` has max_wal_senders {} and max_replication_slots {}, too few to serve {others} standbys",
                    ctx.host.name, c.max_wal_senders, c.max_replication_slots
                ));
            }
        }
    }
    let view: PrimaryView = primary_ctx
        .pg()
        .query(&format!(
            "SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'lag_bytes', (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication WHERE application_name = {name} ORDER BY replay_lsn DESC NULLS LAST LIMIT 1),
  'long_transactions', (SELECT coalesce(json_agg(format('pid %s (%s, open %s s)', pid, coalesce(nullif(usename, ''), backend_type), extract(epoch FROM now() - xact_start)::int)), '[]') FROM pg_stat_activity WHERE xact_start < now() - interval '{LONG_TRANSACTION_SECONDS} seconds' AND pid <> pg_backend_pid()),
  'archive_backlog', CASE WHEN current_setting('archive_mode') = 'off' THEN 0 ELSE (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') END)",
            name = literal(&ctx.host.name)
        ))
        .await?;
    if view.in_recovery {
        problems.push(format!("`{}` is in recovery, not a primary", primary.name));
    }
    let max_lag = cluster.options.verify.max_lag_bytes;
    match view.lag_bytes {
        None => problems.push(format!(
            "`{}` is not in the primary's pg_stat_replication",
            ctx.host.name
        )),
        Some(lag) if lag as u64 > max_lag => problems.push(format!(
            "`{}` is {lag} bytes behind (limit {max_lag}, --max-lag-bytes)",
            ctx.host.name
        )),
        Some(_) => {}
    }
    if view.archive_backlog > ARCHIVE_BACKLOG_LIMIT {
        problems.push(format!(
            "{} WAL segments wait for the archiver on `{}`: the shutdown would wait for them",
            view.archive_backlog, primary.name
        ));
    }
    if !problems.is_empty() {
        return Err(StepError::new(
            format!(
                "cannot switch over to `{}`: {}",
                ctx.host.name,
                problems.join("; ")
            ),
            "nothing was changed; fix the above (pgrepl status and pgrepl verify show the cluster) and re-run",
        ));
    }
    let mut detail = format!(
        "`{}` streams from `{}`, {} bytes behind",
        ctx.host.name,
        primary.name,
        view.lag_bytes.unwrap_or(0)
    );
    if !view.long_transactions.is_empty() {
        let line = format!(
            "[{}] these transactions will be cut off by the shutdown: {}",
            primary.name,
            view.long_transactions.join(", ")
        );
        cluster.events.note(&line);
        detail.push_str("; long transactions will be cut off");
    }
    Ok(Outcome::ok(detail))
}

/// The slot each member that will stream from the candidate once it is primary streams
/// through: the old primary and the replicas of the primary, and the candidate's own
/// cascaded replicas (which have theirs already). Replicas whose `upstream:` names another
/// member (the old primary included: it becomes a replica) stay where they are.
fn slots_for_others(ctx: &HostCtx<'_>) -> Vec<String> {
    ctx.cluster
        .inventory
        .hosts
        .iter()
        .filter(|h| h.name != ctx.host.name)
        .filter(|h| h.upstream.as_deref().is_none_or(|u| u == ctx.host.name))
        .map(|h| {
            h.slot
                .clone()
                .unwrap_or_else(|| crate::inventory::default_slot_name(&h.name))
        })
        .collect()
}

/// On the candidate, still a standby: a slot for every other member, so each can stream
/// from the first moment after the promotion.
pub async fn prepare(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let wanted = slots_for_others(ctx);
    let pg = ctx.pg();
    let existing: Vec<String> = pg
        .query("SELECT coalesce(json_agg(slot_name), '[]') FROM pg_replication_slots")
        .await?;
    let missing: Vec<&String> = wanted.iter().filter(|s| !existing.contains(s)).collect();
    if missing.is_empty() {
        return Ok(Outcome::ok("the slots for the other members exist"));
    }
    let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would create slots {}",
            names.join(", ")
        )));
    }
    for slot in &missing {
        pg.sql(&format!(
            "SELECT pg_create_physical_replication_slot({}, true)",
            literal(slot)
        ))
        .await?;
        ctx.cluster
            .switch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slots_made
            .push(slot.to_string());
    }
    Ok(Outcome::changed(format!(
        "created slots {} on the standby",
        names.join(", ")
    )))
}

/// Rollback: drops the slots [`prepare`] made on the candidate.
pub async fn drop_prepared_slots(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let made = std::mem::take(
        &mut ctx
            .cluster
            .switch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slots_made,
    );
    if made.is_empty() {
        return Ok(Outcome::ok("no slot was made"));
    }
    for slot in &made {
        ctx.pg().sql(&crate::pg::drop_unused_slot_sql(slot)).await?;
    }
    Ok(Outcome::changed(format!(
        "dropped slots {}",
        made.join(", ")
    )))
}

/// A checkpoint, then a clean fast shutdown of the primary through its service manager;
/// reads where its shutdown checkpoint starts and ends.
pub async fn shutdown_primary(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::changed("would checkpoint and stop the primary"));
    }
    let pg = ctx.pg();
    // A checkpoint first makes the shutdown checkpoint quick.
    pg.sql("CHECKPOINT").await?;
    ctx.cluster
        .switch
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .shutdown_started = Some(Instant::now());
    pg.stop().await?;
    let control = ctx
        .session
        .run(
            &Command::script(r#"LC_ALL=C exec "$@""#, &[])
                .args([
                    pg.bin("pg_controldata"),
                    "-D".into(),
                    ctx.host.pg.data_dir.clone(),
                ])
                .as_postgres(),
        )
        .await?
        .stdout;
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let state = field("Database cluster state:").unwrap_or_default();
    if state != "shut down" {
        return Err(StepError::new(
            format!("the primary's data dir says `{state}`, not `shut down`"),
            "the shutdown was not clean; the old primary is started again (rollback)",
        ));
    }
    let start = field("Latest checkpoint location:")
        .and_then(|v| parse_lsn(&v))
        .ok_or_else(|| StepError::msg("pg_controldata shows no latest checkpoint location"))?;
    // The record's length, from pg_waldump: the candidate must have received all of it.
    let dump = ctx
        .session
        .run(
            &Command::new(pg.bin("pg_waldump"))
                .args([
                    "-p".to_string(),
                    format!("{}/pg_wal", ctx.host.pg.data_dir),
                    "-s".into(),
                    format_lsn(start),
                    "-n".into(),
                    "1".into(),
                ])
                .as_postgres(),
        )
        .await;
    let length = dump
        .ok()
        .and_then(|o| {
            let line = o.stdout;
            let tot = line.split("len (rec/tot):").nth(1)?.split(',').next()?;
            tot.split('/').nth(1)?.trim().parse::<u64>().ok()
        })
        .unwrap_or(1);
    let end = start + length;
    ctx.cluster
        .switch
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .checkpoint = Some((start, end));
    Ok(Outcome::changed(format!(
        "shut down cleanly; shutdown checkpoint at {} ({length} bytes)",
        format_lsn(start)
    )))
}

/// Rollback: starts the old primary again as it was (and so ends the outage).
pub async fn start_old_primary(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    replica::start(ctx).await.map(|o| {
        if o.status == crate::step::Status::Changed {
            Outcome::changed("the old primary is running again as the primary")
        } else {
            o
        }
    })
}

/// Waits until the candidate has received the old primary's shutdown checkpoint in full.
pub async fn catch_up(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::skipped("check mode"));
    }
    let (start, end) = ctx
        .cluster
        .switch
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .checkpoint
        .ok_or_else(|| StepError::msg("the old primary's shutdown checkpoint is not known"))?;
    let started = Instant::now();
    let pg = ctx.pg();
    let mut received = 0;
    let limit = ctx.cluster.options.catch_up_timeout;
    while started.elapsed() < limit {
        let text = pg
            .sql("SELECT coalesce(pg_last_wal_receive_lsn()::text, '0/0')")
            .await?;
        received = parse_lsn(&text).unwrap_or(0);
        if received >= end {
            return Ok(Outcome::ok(format!(
                "received up to {} (the shutdown checkpoint at {} ends at {}) in {:.1}s",
                format_lsn(received),
                format_lsn(start),
                format_lsn(end),
                started.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(StepError::new(
        format!(
            "`{}` received WAL up to {} only, not the old primary's shutdown checkpoint (ends at {}), within {}s",
            ctx.host.name,
            format_lsn(received),
            format_lsn(end),
            limit.as_secs()
        ),
        "nothing was promoted and nothing lost: the old primary is started again; check the candidate (is it running, is its network path up?) and re-run",
    ))
}

/// Promotes the candidate, checkpoints so its new timeline is on disk, and writes once.
pub async fn promote(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::changed("would promote"));
    }
    let pg = ctx.pg();
    // `false` means "not finished within the wait", not "cancelled": look again.
    pg.sql("SELECT pg_promote(true, 60)").await?;
    let started = Instant::now();
    while pg.sql("SELECT pg_is_in_recovery()").await? == "t" {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(StepError::new(
                format!(
                    "`{}` is still in recovery 60 s after pg_promote",
                    ctx.host.name
                ),
                "the promotion may still finish: do not start the old primary; look at the candidate's server log, then re-run `pgrepl switchover` (it resumes with the rewiring once the candidate is primary)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first write the new primary accepts (a transaction with an xid commits), while
    // the endpoints send writes here (through HAProxy's runtime API).
    let (first_write, ()) = tokio::join!(
        pg.sql("SELECT pg_current_xact_id()"),
        super::endpoints::route_writes(ctx.cluster, &ctx.host.name)
    );
    first_write?;
    let written = Instant::now();
    pg.sql("CHECKPOINT").await?;
    let timeline: u32 = pg
        .sql("SELECT timeline_id FROM pg_control_checkpoint()")
        .await?
        .trim()
        .parse()
        .unwrap_or(0);
    let mut state = ctx.cluster.switch.lock().unwrap_or_else(|e| e.into_inner());
    state.first_write = Some(written);
    state.timeline = Some(timeline);
    let unavailable = state
        .write_unavailable_ms()
        .map(|ms| format!("; writes were unavailable for {ms} ms"))
        .unwrap_or_default();
    Ok(Outcome::changed(format!(
        "promoted; timeline {timeline}{unavailable}"
    )))
}

/// Phase two, on each replica: stream from the inventory's (new) primary. A running one
/// reloads its new `primary_conninfo`; a stopped one (the old primary) starts as a standby.
/// One that does not stream within the limit is left to the copy step that follows.
pub async fn follow(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if replica::streams_from_upstream(ctx).await? {
        return Ok(Outcome::ok("streaming from its upstream"));
    }
    if ctx.state().await.diverged {
        ctx.state().await.rejoined = Some("copy");
        return Ok(Outcome::changed(
            "its WAL forked off the primary's timeline: it is copied again below",
        ));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would follow `{}`",
            ctx.upstream()?.0.name
        )));
    }
    let pg = ctx.pg();
    let how = if pg.state().await? == ServerState::Running {
        pg.reload().await?;
        "reloaded"
    } else {
        pg.start().await.map_err(|e| {
            StepError::new(
                format!("PostgreSQL did not start as a standby: {e}"),
                format!("see the server log on {}", ctx.host.name),
            )
        })?;
        "started as a standby"
    };
    let started = Instant::now();
    while started.elapsed() < FOLLOW_TIMEOUT {
        if replica::streams_from_upstream(ctx).await? {
            replica::caught_up(ctx).await;
            ctx.state().await.rejoined = Some("none");
            return Ok(Outcome::changed(format!(
                "{how}; streaming from `{}` after {:.1}s, no copy",
                ctx.upstream()?.0.name,
                started.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Not an error: the copy step after this one rebuilds it (its data moved aside).
    ctx.state().await.rejoined = Some("copy");
    Ok(Outcome::changed(format!(
        "{how}, but not streaming after {}s: it will be copied again",
        FOLLOW_TIMEOUT.as_secs()
    )))
}

/// On a standby: drops the slots nobody streams from (left from when it was primary).
pub async fn drop_standby_slots(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let pg = ctx.pg();
    let Some(idle) = pg
        .query_if_running::<Vec<String>>(
            "SELECT coalesce(json_agg(slot_name ORDER BY slot_name), '[]') FROM pg_replication_slots WHERE NOT active AND slot_type = 'physical' AND pg_is_in_recovery()",
        )
        .await?
    else {
        return Ok(Outcome::skipped("not running"));
    };
    // Its cascaded replicas' slots stay, streaming or not.
    let inv = &ctx.cluster.inventory;
    let children: Vec<&str> = inv
        .children_of(ctx.index)
        .into_iter()
        .filter_map(|c| inv.hosts[c].slot.as_deref())
        .collect();
    let idle: Vec<String> = idle
        .into_iter()
        .filter(|s| !children.contains(&s.as_str()))
        .collect();
    if idle.is_empty() {
        return Ok(Outcome::ok("no slot left over"));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would drop slots {}",
            idle.join(", ")
        )));
    }
    for slot in &idle {
        pg.sql(&format!(
            "SELECT pg_drop_replication_slot({})",
            literal(slot)
        ))
        .await?;
    }
    Ok(Outcome::changed(format!(
        "dropped slots {} (they would pin WAL here)",
        idle.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print_both_ways() {
        assert_eq!(parse_lsn("0/3000028"), Some(0x3000028));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(format_lsn((0x16 << 32) | 0xB374D848), "16/B374D848");
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn write_unavailability_runs_from_shutdown_to_first_write() {
        let t0 = Instant::now();
        let state = SwitchState {
            shutdown_started: Some(t0),
            first_write: Some(t0 + Duration::from_millis(1234)),
            ..SwitchState::default()
        };
        assert_eq!(state.write_unavailable_ms(), Some(1234));
        assert_eq!(SwitchState::default().write_unavailable_ms(), None);
    }
}
