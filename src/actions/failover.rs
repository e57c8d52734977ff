//! When the primary is gone: fencing it so it cannot come back writable, and bringing a
//! former primary (or any stale node) back as a replica.
//!
//! Fencing, where SSH still reaches the old primary: stop PostgreSQL at once, leave a
//! `standby.signal` (if anything starts it, it comes up read-only) and tell the service
//! manager not to start it by itself (Debian's `start.conf`, `systemctl disable`).
//!
//! Rejoining reads how far the node's own WAL goes (started read-only, it replays to its
//! end) and where the current primary's timeline forked off; WAL past the fork exists only
//! on this node and is reported, as a range in bytes, before anything discards it. A node
//! that did not fork follows with no copy; one that did is copied again (its data dir
//! moved aside, so that WAL is still on disk).

use std::time::{Duration, Instant};

use super::context::HostCtx;
use super::switchover::{format_lsn, parse_lsn};
use crate::inventory::{Layout, ServiceKind};
use crate::pg::ServerState;
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

/// Where the Debian layout keeps whether a cluster starts at boot.
fn start_conf(ctx: &HostCtx<'_>) -> Option<String> {
    let pg = &ctx.host.pg;
    (pg.layout == Layout::Debian)
        .then(|| format!("/etc/postgresql/{}/{}/start.conf", pg.version, pg.cluster))
}

/// Stops PostgreSQL now, leaves it read-only if started, and off the boot sequence.
pub async fn fence(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::changed(
            "would stop PostgreSQL (immediate), write standby.signal and disable autostart",
        ));
    }
    let pg = ctx.pg();
    let mut done = Vec::new();
    if pg.state().await? == ServerState::Running {
        let p = &ctx.host.pg;
        let stop = match p.service {
            ServiceKind::Systemd => Command::new("systemctl").args(["stop", p.unit.as_str()]),
            ServiceKind::PgCtlcluster => Command::new("pg_ctlcluster").args([
                p.version.to_string(),
                p.cluster.clone(),
                "stop".into(),
                "-m".into(),
                "immediate".into(),
            ]),
            ServiceKind::PgCtl => Command::script(r#"runuser -u postgres -- "$@""#, &[]).args([
                pg.bin("pg_ctl"),
                "stop".into(),
                "-D".into(),
                p.data_dir.clone(),
                "-m".into(),
                "immediate".into(),
            ]),
        };
        ctx.session.run(&stop.as_root()).await?;
        done.push("stopped PostgreSQL");
    }
    let signal = format!("{}/standby.signal", ctx.host.pg.data_dir);
    let script = r#"set -e; [ -e "$1" ] || { touch "$1"; chown postgres:postgres "$1"; chmod 600 "$1"; echo wrote; }
if [ -n "$2" ] && [ -f "$2" ] && ! grep -qx manual "$2"; then echo manual > "$2"; echo startconf; fi
if [ -n "$3" ] && systemctl is-enabled "$3" >/dev/null 2>&1; then systemctl disable "$3" >/dev/null 2>&1; echo disabled; fi"#;
    let unit = if ctx.host.pg.service == ServiceKind::Systemd {
        ctx.host.pg.unit.clone()
    } else {
        String::new()
    };
    let out = ctx
        .session
        .run(
            &Command::script(
                script,
                &[&signal, &start_conf(ctx).unwrap_or_default(), &unit],
            )
            .as_root(),
        )
        .await?
        .stdout;
    if out.contains("wrote") {
        done.push("wrote standby.signal (it comes back read-only)");
    }
    if out.contains("startconf") {
        done.push("start.conf set to manual");
    }
    if out.contains("disabled") {
        done.push("unit disabled");
    }
    if done.is_empty() {
        return Ok(Outcome::ok("already fenced"));
    }
    Ok(Outcome::changed(done.join("; ")))
}

/// Lets the service manager start the cluster at boot again (undoes fencing's part).
pub async fn allow_autostart(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let unit = if ctx.host.pg.service == ServiceKind::Systemd {
        ctx.host.pg.unit.clone()
    } else {
        String::new()
    };
    let script = r#"if [ -n "$1" ] && [ -f "$1" ] && ! grep -qx auto "$1"; then [ -n "$3" ] || echo auto > "$1"; echo startconf; fi
if [ -n "$2" ] && ! systemctl is-enabled "$2" >/dev/null 2>&1; then [ -n "$3" ] || systemctl enable "$2" >/dev/null 2>&1; echo enabled; fi"#;
    let check = if ctx.check_mode() { "check" } else { "" };
    let out = ctx
        .session
        .run(
            &Command::script(
                script,
                &[&start_conf(ctx).unwrap_or_default(), &unit, check],
            )
            .as_root(),
        )
        .await?
        .stdout;
    if out.trim().is_empty() {
        return Ok(Outcome::ok("starts at boot"));
    }
    Ok(Outcome::changed(if ctx.check_mode() {
        "would let the service manager start it at boot"
    } else {
        "the service manager starts it at boot again"
    }))
}

/// Reads the current primary's timeline history: (parent timeline, switch point) pairs.
async fn history(ctx: &HostCtx<'_>) -> Result<(u32, Vec<(u32, u64)>), StepError> {
    let (primary, session) = ctx.primary()?;
    let pg = crate::pg::Pg::new(session, primary);
    let timeline: u32 = pg
        .sql("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
        .await?
        .trim()
        .parse()
        .map_err(|_| StepError::msg("cannot read the primary's timeline"))?;
    if timeline == 1 {
        return Ok((1, Vec::new()));
    }
    let file = format!("{}/pg_wal/{timeline:08X}.history", primary.pg.data_dir);
    let text = session
        .run(&Command::new("cat").args([file.as_str()]).as_postgres())
        .await?
        .stdout;
    let forks = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let parent = f.next()?.parse().ok()?;
            let at = parse_lsn(f.next()?)?;
            Some((parent, at))
        })
        .collect();
    Ok((timeline, forks))
}

/// Before a rejoin: how far this node's WAL goes, where the primary's timeline forked
/// off it, and so whether it can follow. Reports WAL that only this node has.
pub async fn rejoin_check(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let (primary, _) = ctx.primary()?;
    let pg = ctx.pg();
    let (tl, tl_primary, forks) = {
        let (tl_primary, forks) = history(ctx).await?;
        (0, tl_primary, forks)
    };
    let _ = tl;
    let writable = pg
        .query_if_running::<bool>("SELECT to_json(NOT pg_is_in_recovery())")
        .await?;
    let (timeline, end) = match writable {
        Some(true) => {
            // A second primary (split brain): read where it is, then fence it.
            let row = pg
                .sql("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int || ' ' || pg_current_wal_lsn()")
                .await?;
            if ctx.check_mode() {
                return Ok(Outcome::changed(format!(
                    "`{}` accepts writes (split brain): would fence it and rejoin it",
                    ctx.host.name
                )));
            }
            fence(ctx).await?;
            parse_position(&row)?
        }
        _ => {
            // Started read-only (fenced), it replays its own WAL to the end.
            if writable.is_none() {
                if ctx.check_mode() {
                    return Ok(Outcome::skipped(
                        "stopped: its WAL is read when it runs (not in check mode)",
                    ));
                }
                ensure_signal(ctx).await?;
                pg.start().await?;
            }
            read_replayed_end(ctx).await?
        }
    };
    // Where the primary's history left this node's timeline.
    let fork = forks
        .iter()
        .find(|(parent, _)| *parent == timeline)
        .map(|(_, at)| *at);
    let verdict = match fork {
        _ if timeline == tl_primary => None,
        Some(at) if end <= at => None,
        Some(at) => Some(format!(
            "WAL written only on `{}` is LOST: timeline {timeline} from {} to {} ({} bytes), after `{}` took over at {}; the copy moves the old data dir aside, so it stays on disk there",
            ctx.host.name,
            format_lsn(at),
            format_lsn(end),
            end - at,
            primary.name,
            format_lsn(at)
        )),
        None => Some(format!(
            "`{}` is on timeline {timeline}, which is not in `{}`'s history: it cannot follow",
            ctx.host.name, primary.name
        )),
    };
    match verdict {
        None => Ok(Outcome::ok(format!(
            "timeline {timeline} up to {}: can follow `{}` without a copy",
            format_lsn(end),
            primary.name
        ))),
        Some(why) => {
            ctx.cluster
                .events
                .note(&format!("[{}] {why}", ctx.host.name));
            ctx.state().await.diverged = true;
            Ok(Outcome::changed(why))
        }
    }
}

fn parse_position(row: &str) -> Result<(u32, u64), StepError> {
    let mut f = row.split_whitespace();
    let tl = f.next().and_then(|t| t.parse().ok());
    let lsn = f.next().and_then(parse_lsn);
    tl.zip(lsn)
        .ok_or_else(|| StepError::msg(format!("unexpected position `{row}`")))
}

async fn ensure_signal(ctx: &HostCtx<'_>) -> Result<(), StepError> {
    let signal = format!("{}/standby.signal", ctx.host.pg.data_dir);
    let script = r#"[ -e "$1" ] || { touch "$1"; chown postgres:postgres "$1"; chmod 600 "$1"; }"#;
    ctx.session
        .run(&Command::script(script, &[&signal]).as_root())
        .await?;
    Ok(())
}

/// Waits until a standby's replay stops moving; returns its timeline and replayed end.
async fn read_replayed_end(ctx: &HostCtx<'_>) -> Result<(u32, u64), StepError> {
    let pg = ctx.pg();
    let sql = "SELECT coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint())) || ' ' || pg_last_wal_replay_lsn()";
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let row = pg.sql(sql).await?;
        if row == last {
            return parse_position(&row);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(StepError::new(
                format!("`{}` is still replaying after 60 s", ctx.host.name),
                "re-run rejoin once it has caught up",
            ));
        }
        last = row;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
