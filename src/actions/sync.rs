//! `pgrepl sync off` / `pgrepl sync on`: the operator's escape hatch when the synchronous
//! standbys are gone and commits hang, and the way back.
//!
//! `sync_off` (on the primary) puts pgrepl's override in place (`synchronous_standby_names
//! = ''`, see [`crate::pg::sync`] for where it lives) and reloads: every waiting commit
//! returns. `sync_on` refuses while fewer named standbys stream than the inventory's count
//! needs (turning it on would hang commits again; `--force` insists), brings the primary's
//! managed settings to the inventory's, removes the override and reloads, then reads the
//! value back; on a replica it removes an override left from when it was primary. Neither
//! uses `ALTER SYSTEM`: every setting pgrepl makes lives in a file it owns.

use serde::Deserialize;

use super::config;
use super::context::HostCtx;
use crate::pg::sync::{self as pgsync, OVERRIDE_FILE};
use crate::playbook::RestartPolicy;
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

/// Where a host's override lives.
enum Place {
    /// A file of its own in the include directory.
    File(String),
    /// A marked block at the end of this postgresql.conf.
    Block(String),
}

impl Place {
    fn of(host: &crate::inventory::Host) -> Place {
        match &host.pg.include_dir {
            Some(dir) => Place::File(format!("{dir}/{OVERRIDE_FILE}")),
            None => Place::Block(format!("{}/postgresql.conf", host.pg.config_dir)),
        }
    }

    fn path(&self) -> &str {
        match self {
            Place::File(p) | Place::Block(p) => p,
        }
    }
}

/// What the server says about synchronous replication now.
#[derive(Debug, Deserialize)]
struct Now {
    value: String,
    source: Option<String>,
    waiting: u64,
    in_recovery: bool,
    streaming: Vec<(String, String)>,
}

const NOW_SQL: &str = "SELECT json_build_object(
  'value', current_setting('synchronous_standby_names'),
  'source', (SELECT sourcefile || ':' || sourceline FROM pg_settings WHERE name = 'synchronous_standby_names'),
  'waiting', (SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'),
  'in_recovery', pg_is_in_recovery(),
  'streaming', (SELECT coalesce(json_agg(json_build_array(application_name, sync_state)), '[]')
                FROM pg_stat_replication WHERE state = 'streaming'))";

impl Now {
    fn observed(&self) -> pgsync::Observed {
        pgsync::Observed {
            value: self.value.clone(),
            source: self.source.clone(),
            waiting: self.waiting,
            streaming: self.streaming.clone(),
        }
    }
}

/// The override as it is on the host: the file's (or postgresql.conf's) text, and the
/// override's own text when present.
async fn read(ctx: &HostCtx<'_>, place: &Place) -> Result<(String, Option<String>), StepError> {
    let cmd = Command::script(
        r#"if [ -f "$1" ]; then cat "$1"; else echo "pgrepl: absent"; fi"#,
        &[place.path()],
    )
    .as_root();
    let out = ctx.session.run(&cmd).await?.stdout;
    let text = if out == "pgrepl: absent\n" {
        None
    } else {
        Some(out)
    };
    Ok(match place {
        Place::File(_) => (String::new(), text),
        Place::Block(_) => {
            let conf = text.unwrap_or_default();
            let own = pgsync::block_body(&conf).map(str::to_string);
            (conf, own)
        }
    })
}

/// Reloads and waits (5 s at most) until new sessions see `want`.
async fn reload_until(ctx: &HostCtx<'_>, want: Option<&str>) -> Result<Now, StepError> {
    let pg = ctx.pg();
    pg.reload().await?;
    let started = std::time::Instant::now();
    loop {
        let now: Now = pg.query(NOW_SQL).await?;
        let done = want.is_none_or(|w| now.value == w);
        if done || started.elapsed() > std::time::Duration::from_secs(5) {
            return Ok(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Puts back the previous file after PostgreSQL refused the new one.
async fn validated(ctx: &HostCtx<'_>, place: &Place) -> Result<(), StepError> {
    if let Err(e) = config::validate(ctx).await {
        config::restore_file(ctx, place.path()).await?;
        return Err(StepError::new(
            format!(
                "PostgreSQL rejects {} after pgrepl's change: {e}; the previous file is back",
                place.path()
            ),
            "fix what the message names in the server's config files, then re-run",
        ));
    }
    Ok(())
}

/// `sync_off`: synchronous_standby_names = '' on this host by reload.
pub async fn off(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let place = Place::of(ctx.host);
    let (conf, own) = read(ctx, &place).await?;
    let before: Option<Now> = ctx.pg().query_if_running(NOW_SQL).await?;
    let restores = ctx
        .cluster
        .inventory
        .replication
        .synchronous
        .as_ref()
        .map(|s| s.standby_names());
    if let Some(own) = &own
        && before.as_ref().is_none_or(|n| n.value.is_empty())
    {
        let since = pgsync::override_summary(own).unwrap_or_default();
        note(ctx, format!("synchronous replication OFF {since} (pgrepl sync off): `pgrepl sync on` restores it")).await;
        return Ok(Outcome::ok(format!(
            "synchronous replication is already off {since}: {}",
            place.path()
        )));
    }
    let was = before
        .as_ref()
        .map_or("(server not running)".to_string(), |n| {
            format!("'{}'", n.value)
        });
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would set synchronous_standby_names = '' (now {was}) in {} and reload",
            place.path()
        )));
    }
    let holder = super::lock::Holder::this_run("sync off");
    let body = pgsync::override_body(
        &format!("{}@{}", holder.user, holder.machine),
        &utc_now(),
        restores.as_deref(),
    );
    match &place {
        Place::File(path) => {
            config::write_file(ctx, path, &body, "postgres:postgres", "0644").await?
        }
        Place::Block(path) => {
            config::write_file(
                ctx,
                path,
                &pgsync::with_block(&conf, &body),
                "postgres:postgres",
                "0600",
            )
            .await?
        }
    }
    let Some(before) = before else {
        note(ctx, format!("synchronous replication OFF (pgrepl sync off, {}): the server is not running and starts so; `pgrepl sync on` restores it", place.path())).await;
        return Ok(Outcome::changed(format!(
            "wrote {}; the server is not running and starts with synchronous_standby_names = ''",
            place.path()
        )));
    };
    validated(ctx, &place).await?;
    let after = reload_until(ctx, Some("")).await?;
    if !after.value.is_empty() {
        return Err(StepError::new(
            format!(
                "synchronous_standby_names is still '{}' after the reload (set in {})",
                after.value,
                after.source.unwrap_or_default()
            ),
            "a file read after pgrepl's override sets it (ALTER SYSTEM's postgresql.auto.conf?): remove it there",
        ));
    }
    // The checkpointer wakes the waiting backends once it has read the files.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let still: Now = ctx.pg().query(NOW_SQL).await?;
    let released = before.waiting.saturating_sub(still.waiting);
    note(
        ctx,
        format!(
            "synchronous replication OFF (pgrepl sync off, {}): commits wait for no standby; `pgrepl sync on` restores {}",
            place.path(),
            restores.as_deref().unwrap_or("the managed settings' value")
        ),
    )
    .await;
    Ok(Outcome::changed(format!(
        "synchronous_standby_names = '' by reload (was {was}); {released} waiting commit(s) released{}",
        if still.waiting > 0 {
            format!(", {} still waiting", still.waiting)
        } else {
            String::new()
        }
    )))
}

/// `sync_on`: on the primary, the inventory's value in effect again; on a replica, an
/// override left from when it was primary removed.
pub async fn on(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let place = Place::of(ctx.host);
    let sync = ctx.cluster.inventory.replication.synchronous.clone();
    let now: Option<Now> = ctx.pg().query_if_running(NOW_SQL).await?;
    let primary = ctx.host.is_primary();
    if primary
        && let (Some(sync), Some(now)) = (&sync, &now)
        && !now.in_recovery
    {
        let (up, down) = pgsync::capable(sync, &ctx.host.name, &now.observed());
        if up.len() < sync.count as usize && !ctx.cluster.options.force {
            return Err(StepError::new(
                format!(
                    "{} needs {} named standby(s) streaming, {} do{}: turning synchronous replication on now would make every commit wait; nothing was changed",
                    sync.standby_names(),
                    sync.count,
                    up.len(),
                    if down.is_empty() {
                        String::new()
                    } else {
                        format!(" (not streaming: {})", down.join(", "))
                    }
                ),
                "bring them back first (`pgrepl status` shows each), or re-run with --force to turn it on anyway",
            ));
        }
    }
    // The value restored is the inventory's: the managed settings first.
    let settings = if primary {
        Some(config::settings(ctx, "primary.conf.j2", RestartPolicy::Refuse).await?)
    } else {
        None
    };
    let managed_changed = settings
        .as_ref()
        .is_some_and(|o| o.status == crate::step::Status::Changed);
    let (conf, own) = read(ctx, &place).await?;
    let want = sync.as_ref().map(|s| s.standby_names());
    let in_effect = now.as_ref().map(|n| n.value.clone());
    if own.is_none() && !managed_changed {
        let what = match (&in_effect, primary) {
            (Some(v), true) => {
                note(ctx, format!("synchronous replication ON: synchronous_standby_names = '{v}' (nothing to change)")).await;
                format!("synchronous_standby_names = '{v}'")
            }
            (Some(_), false) => "no override of pgrepl's here".into(),
            (None, _) => "no override; the server is not running".into(),
        };
        return Ok(Outcome::ok(what));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would remove pgrepl's override from {} and reload, for synchronous_standby_names = '{}'",
            place.path(),
            want.as_deref().unwrap_or("")
        )));
    }
    if own.is_some() {
        match &place {
            Place::File(path) => {
                ctx.state().await.forget_file(path);
                let cmd = Command::script(r#"rm -f "$1""#, &[path.as_str()]).as_root();
                ctx.session.run(&cmd).await?;
            }
            Place::Block(path) => {
                config::write_file(
                    ctx,
                    path,
                    &pgsync::without_block(&conf),
                    "postgres:postgres",
                    "0600",
                )
                .await?
            }
        }
    }
    let removed = if own.is_some() {
        format!("removed {}; ", place.path())
    } else {
        String::new()
    };
    let Some(_) = now else {
        return Ok(Outcome::changed(format!(
            "{removed}the server is not running and starts with the managed settings"
        )));
    };
    if let Place::Block(_) = place {
        validated(ctx, &place).await?;
    }
    // A replica's value only counts once it is promoted: no need to wait for it.
    let expect = if primary { want.as_deref() } else { None };
    let after = reload_until(ctx, expect).await?;
    ctx.state().await.config_changed = false;
    if !primary {
        return Ok(Outcome::changed(format!(
            "{removed}reloaded (a standby: its setting counts once it is promoted)"
        )));
    }
    match &sync {
        Some(sync) if after.value == sync.standby_names() => {
            let (up, _) = pgsync::capable(sync, &ctx.host.name, &after.observed());
            note(
                ctx,
                format!(
                    "synchronous replication ON: synchronous_standby_names = '{}'; {} named standby(s) stream{}, {} needed",
                    after.value,
                    up.len(),
                    if up.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", up.join(", "))
                    },
                    sync.count,
                ),
            )
            .await;
            Ok(Outcome::changed(format!(
                "{removed}synchronous_standby_names = '{}' by reload; streaming: {}",
                after.value,
                if up.is_empty() {
                    "none".into()
                } else {
                    up.join(", ")
                }
            )))
        }
        Some(sync) => Err(StepError::new(
            format!(
                "synchronous_standby_names is '{}' after the reload (set in {}), not the inventory's '{}'",
                after.value,
                after.source.unwrap_or_default(),
                sync.standby_names()
            ),
            "a file read after pgrepl's settings sets it (ALTER SYSTEM's postgresql.auto.conf?): remove it there",
        )),
        None => Ok(Outcome::changed(format!(
            "{removed}the inventory has no replication.synchronous: synchronous_standby_names = '{}'",
            after.value
        ))),
    }
}

/// Records the state a sync command leaves the host in, for the recap.
async fn note(ctx: &HostCtx<'_>, line: String) {
    ctx.state().await.sync_left = Some(line);
}

/// Now in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::actions::{ActionOptions, Cluster, cluster_settings};
    use crate::templates::{Context, HostView, ReplicationView, Templates};

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn every_member_gets_the_same_quoted_value_in_its_managed_settings() {
        let inv = crate::inventory::parse(
            Path::new("i.yaml"),
            "replication: { password: x, synchronous: { mode: any, count: 1, standbys: [pg1, pg2] } }\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: primary }\n  - { name: pg1, address: 10.0.0.11, role: replica }\n  - { name: pg2, address: 10.0.0.12, role: replica }\n",
        )
        .unwrap();
        let cluster = Cluster::new(
            inv,
            Templates::load(None).unwrap(),
            ActionOptions::default(),
            Arc::new(crate::engine::NoEvents),
        );
        let settings = cluster_settings(&cluster, None);
        assert_eq!(
            settings["synchronous_standby_names"],
            r#"'ANY 1 ("pg1", "pg2")'"#
        );
        assert!(!settings.contains_key("synchronous_commit"));
        let views: Vec<HostView> = cluster.inventory.hosts.iter().map(HostView::of).collect();
        for (template, host) in [("primary.conf.j2", 0), ("replica.conf.j2", 1)] {
            let ctx = Context {
                host: views[host].clone(),
                primary: views[0].clone(),
                replicas: views[1..].to_vec(),
                members: views.clone(),
                settings: settings.clone(),
                standby_minimums: Default::default(),
                replication: ReplicationView {
                    user: "replicator".into(),
                },
                hba: Vec::new(),
                endpoints_hba: Vec::new(),
            };
            let text = cluster.templates.render(template, &ctx).unwrap();
            assert!(
                text.contains("\nsynchronous_standby_names = 'ANY 1 (\"pg1\", \"pg2\")'\n"),
                "{template}:\n{text}"
            );
        }
    }
}
