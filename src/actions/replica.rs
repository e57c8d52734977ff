//! Replica-side actions: build a standby from the primary without ever losing the old one.
//!
//! The order is what makes it safe: the passfile is written and the replication login
//! tried before anything stops; the old data dir is moved aside (never deleted in the same
//! run); and `restore_datadir`, the rescue of a failed block, puts it back and starts the
//! server as it was. Credentials live in a 0600 passfile owned by postgres: never in argv,
//! never in `primary_conninfo`.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::context::HostCtx;
use super::context::ServerFacts;
use crate::pg::conninfo::Conninfo;
use crate::pg::{Pg, ServerState, conf_literal, literal};
use crate::ssh::{Command, Stream};
use crate::step::{Outcome, StepError};

/// Where the replication passfile lives on the replica.
async fn passfile_path(ctx: &HostCtx<'_>) -> Result<String, StepError> {
    let facts = super::preflight::facts(ctx.cluster, ctx.index, ctx.session, ctx.host).await?;
    let home = if facts.postgres_home.is_empty() {
        "/var/lib/postgresql".to_string()
    } else {
        facts.postgres_home
    };
    Ok(format!("{}/.pgrepl_pgpass", home.trim_end_matches('/')))
}

/// Escapes a passfile field (`\` and `:`).
fn pgpass_field(text: &str) -> String {
    text.replace('\\', "\\\\").replace(':', "\\:")
}

/// The libpq connection string to its upstream (the primary, or the replica it cascades
/// from), without any password.
async fn upstream_conninfo(ctx: &HostCtx<'_>) -> Result<String, StepError> {
    let (upstream, _) = ctx.upstream()?;
    let user = &ctx.cluster.inventory.replication.user;
    Ok(Conninfo::new()
        .set("host", &upstream.address)
        .set("port", upstream.pg.port)
        .set("user", user)
        .set("passfile", passfile_path(ctx).await?)
        .set("application_name", &ctx.host.name)
        .to_string())
}

/// The replication password for its upstream and for the primary (a cascaded replica
/// moves to the primary when its upstream leaves), in a 0600 file owned by postgres.
pub async fn passfile(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let (primary, _) = ctx.primary()?;
    let (upstream, _) = ctx.upstream()?;
    let password = ctx.cluster.password.as_ref().ok_or_else(|| {
        StepError::new(
            "no replication password",
            "set replication.password_env or password_file",
        )
    })?;
    let entry = |host: &crate::inventory::Host| {
        format!(
            "{}:{}:replication:{}:{}\n",
            pgpass_field(&host.address),
            host.pg.port,
            pgpass_field(&ctx.cluster.inventory.replication.user),
            pgpass_field(password.expose_secret())
        )
    };
    let mut line = entry(primary);
    if upstream.name != primary.name {
        line.push_str(&entry(upstream));
    }
    let digest: String = Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = passfile_path(ctx).await?;
    let probe = Command::script(
        r#"if [ -f "$1" ]; then stat -c '%U %a' "$1"; sha256sum < "$1" | cut -d' ' -f1; fi"#,
        &[&path],
    )
    .as_root();
    // Preflight probed the passfile; a write in this run goes through here and updates it.
    let known = ctx
        .state()
        .await
        .facts
        .as_ref()
        .map(|f| f.passfile_probe.clone());
    let now = match known {
        Some(seen) => seen.unwrap_or_default(),
        None => ctx.session.run(&probe).await?.stdout,
    };
    if now == format!("postgres 600\n{digest}\n") {
        return Ok(Outcome::ok(format!("{path} is up to date")));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!("would write {path}")));
    }
    let write = Command::script(
        r#"set -e; umask 077; tmp="$1.pgrepl.tmp"; cat > "$tmp"; chown postgres:postgres "$tmp"; chmod 600 "$tmp"; mv -f "$tmp" "$1""#,
        &[&path],
    )
    .secret_stdin(SecretString::from(line))
    .as_root();
    ctx.session.run(&write).await?;
    if let Some(f) = &mut ctx.state().await.facts {
        f.passfile_probe = Some(format!("postgres 600\n{digest}\n"));
    }
    Ok(Outcome::changed(format!("wrote {path} (0600, postgres)")))
}

/// Logs in to its upstream (the primary, or the replica it cascades from) as the
/// replication role from this host, before anything stops.
pub async fn replication_login(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::skipped("check mode: the role may not exist yet"));
    }
    let (primary, _) = ctx.upstream()?;
    let conninfo = format!(
        "{} dbname=replication replication=true connect_timeout=10",
        upstream_conninfo(ctx).await?
    );
    let cmd = Command::new(ctx.pg().bin("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-d",
            &conninfo,
            "-c",
            "IDENTIFY_SYSTEM",
        ])
        .as_postgres();
    let out = ctx.session.output(&cmd).await?;
    if out.success() {
        return Ok(Outcome::ok(format!(
            "{} can stream from {}",
            ctx.cluster.inventory.replication.user, primary.name
        )));
    }
    let err = out.stderr.trim().to_string();
    let hint = if err.contains("password authentication failed") {
        "the primary has another password for the role: check replication.password_env / password_file (pgrepl sets the role's password from it on the primary)"
    } else if err.contains("no pg_hba.conf entry") {
        "the primary's pg_hba.conf does not allow this host; check the hba step ran on the primary and that the address in the inventory is the one the replica connects from"
    } else {
        "check that the primary listens on the network (listen_addresses) and that the port is open between the hosts"
    };
    Err(StepError::new(
        format!(
            "replication login to {} `{}` failed, nothing was stopped: {err}",
            if primary.is_primary() {
                "the primary"
            } else {
                "its upstream"
            },
            primary.name
        ),
        hint,
    ))
}

pub async fn stop(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let pg = ctx.pg();
    let running = pg.state().await? == ServerState::Running;
    ctx.state().await.was_running.get_or_insert(running);
    if !running {
        return Ok(Outcome::ok("already stopped"));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed("would stop PostgreSQL"));
    }
    pg.stop().await?;
    Ok(Outcome::changed("stopped PostgreSQL"))
}

pub async fn start(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let pg = ctx.pg();
    if pg.state().await? == ServerState::Running {
        return Ok(Outcome::ok("already running"));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed("would start PostgreSQL"));
    }
    // A host remove-replica took out had its autostart turned off: a replica starts at boot.
    let autostart = super::remove::autostart_back_on(ctx).await?;
    if let Err(e) = pg.start().await {
        return Err(StepError::new(
            format!("PostgreSQL did not start: {e}"),
            format!(
                "see the server log on {} (for pg_ctl layouts: {})",
                ctx.host.name,
                pg.pg_ctl_log()
            ),
        ));
    }
    ctx.state().await.config_changed = false;
    Ok(Outcome::changed(match autostart {
        Some(again) => format!("started PostgreSQL; {again}"),
        None => "started PostgreSQL".to_string(),
    }))
}

/// Moves the data dir aside and, with it, each of the primary's tablespace locations that
/// holds anything here (pg_basebackup writes a tablespace at the primary's path and
/// refuses a non-empty one); all get one timestamp. Prints `aside PATH` per move as it
/// happens (so a failure half-way still tells what to put back), `fresh PATH` for a
/// location made empty for the copy, and `not-empty PATH` if a rename left files behind.
const MOVE_ASIDE: &str = r#"d="$1"; shift; stamp=$(date +%Y%m%dT%H%M%S)
for t in "$d" "$@"; do
  if [ -e "$t" ] && [ -n "$(ls -A "$t")" ]; then
    mv "$t" "$t.pgrepl-$stamp" || exit 1; printf 'aside %s\n' "$t.pgrepl-$stamp"
  else
    if [ "$t" = "$d" ]; then rm -rf "$t" || exit 1; else printf 'fresh %s\n' "$t"; fi
  fi
  mkdir -p "$t" && chown postgres:postgres "$t" && chmod 700 "$t" || exit 1
  # A rename that copies (some overlay filesystems) can leave files behind: say so.
  if [ -n "$(ls -A "$t")" ]; then printf 'not-empty %s\n' "$t"; fi
done"#;

/// The primary's tablespace locations (from preflight's facts).
async fn tablespace_locations(ctx: &HostCtx<'_>) -> Result<Vec<String>, StepError> {
    Ok(ctx
        .primary_facts_or_gather()
        .await?
        .server
        .map(|s| s.tablespaces.into_iter().map(|t| t.location).collect())
        .unwrap_or_default())
}

pub async fn move_aside(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    // The data dir (and, in some layouts, the config inside it) changes under us.
    ctx.state().await.forget_files(&ctx.host.pg.data_dir);
    let data = &ctx.host.pg.data_dir;
    let locations = tablespace_locations(ctx).await?;
    let with_ts = if locations.is_empty() {
        String::new()
    } else {
        format!(" and tablespace dir(s) {}", locations.join(", "))
    };
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would move {data}{with_ts} aside"
        )));
    }
    if ctx.pg().state().await? == ServerState::Running {
        return Err(StepError::new(
            format!("PostgreSQL still runs on {data}; refusing to move it"),
            "stop it first (the stop step)",
        ));
    }
    let mut args = vec![data.as_str()];
    args.extend(locations.iter().map(String::as_str));
    let out = ctx
        .session
        .output(&Command::script(MOVE_ASIDE, &args).as_root())
        .await?;
    // Record every move before judging the run: the rescue puts back whatever moved.
    let mut moved = Vec::new();
    let mut leftovers = Vec::new();
    {
        let mut state = ctx.state().await;
        for line in out.stdout.lines() {
            if let Some(aside) = line.strip_prefix("aside ") {
                let Some(from) = aside.rsplit_once(".pgrepl-").map(|(f, _)| f.to_string()) else {
                    continue;
                };
                if &from == data {
                    state.moved_aside = Some(aside.to_string());
                } else {
                    state
                        .moved_tablespaces
                        .push((from.clone(), aside.to_string()));
                }
                moved.push(format!("{from} to {aside}"));
            } else if let Some(t) = line.strip_prefix("fresh ") {
                state.fresh_tablespaces.push(t.to_string());
            } else if let Some(t) = line.strip_prefix("not-empty ") {
                leftovers.push(t.to_string());
            }
        }
    }
    if !out.success() {
        return Err(StepError::new(
            format!(
                "could not move {data}{with_ts} aside{}: {}",
                if moved.is_empty() {
                    String::new()
                } else {
                    format!(" (moved so far: {})", moved.join(", "))
                },
                out.stderr.trim()
            ),
            "whatever was moved is put back; fix the cause above and re-run",
        ));
    }
    if !leftovers.is_empty() {
        return Err(StepError::new(
            format!(
                "{} not empty after moving aside{}",
                leftovers.join(", "),
                if moved.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", moved.join(", "))
                }
            ),
            "the filesystem did not really rename the directory (an overlay filesystem copies, and may leave files); keep data dirs and tablespaces on a real filesystem or volume",
        ));
    }
    if moved.is_empty() {
        return Ok(Outcome::changed(format!(
            "{data}{with_ts} empty; made fresh one(s)"
        )));
    }
    let together = if moved.len() > 1 {
        "; restored together if the copy fails"
    } else {
        ""
    };
    Ok(Outcome::changed(format!(
        "moved {} (kept{together}; `pgrepl cleanup` removes them once the replica verifies healthy)",
        moved.join(", ")
    )))
}

/// Rescue: put the old data dir back, start the server if it ran, drop the unused slot.
pub async fn restore_datadir(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    // The data dir (and, in some layouts, the config inside it) changes under us.
    ctx.state().await.forget_files(&ctx.host.pg.data_dir);
    let pg = ctx.pg();
    let (aside, was_running) = {
        let s = ctx.state().await;
        (s.moved_aside.clone(), s.was_running.unwrap_or(false))
    };
    let pid = ctx.cluster.backup_pids[ctx.index]
        .lock()
        .map(|mut p| p.take())
        .unwrap_or(None);
    if let Some(pid) = pid {
        // A cut-off pg_basebackup may still write into the data dir: end it, and make sure
        // it is gone, before the old data dir goes back in its place.
        let script = r#"kill "$1" 2>/dev/null; i=0; while kill -0 "$1" 2>/dev/null; do i=$((i+1)); [ $i -ge 50 ] && kill -9 "$1"; sleep 0.1; done"#;
        ctx.session
            .run(&Command::script(script, &[&pid.to_string()]).as_root())
            .await?;
    }
    let mut done = Vec::new();
    let (tablespaces, fresh) = {
        let s = ctx.state().await;
        (s.moved_tablespaces.clone(), s.fresh_tablespaces.clone())
    };
    if (aside.is_some() || !tablespaces.is_empty() || !fresh.is_empty())
        && pg.state().await.unwrap_or(ServerState::Stopped) == ServerState::Running
    {
        let _ = pg.stop().await;
    }
    // Locations that were empty before this copy hold only what it wrote. Emptied first:
    // one inside the data dir must not be emptied once the old data dir is back.
    for location in &fresh {
        let empty = r#"if [ -d "$1" ]; then find "$1" -mindepth 1 -delete; fi"#;
        ctx.session
            .run(&Command::script(empty, &[location]).as_root())
            .await?;
        ctx.state()
            .await
            .fresh_tablespaces
            .retain(|l| l != location);
    }
    let put_back = r#"set -e; [ -d "$2" ]; rm -rf "$1"; mv "$2" "$1""#;
    if let Some(aside) = &aside {
        ctx.session
            .run(&Command::script(put_back, &[&ctx.host.pg.data_dir, aside]).as_root())
            .await?;
        ctx.state().await.moved_aside = None;
        done.push(format!("previous data dir restored from {aside}"));
    }
    // The tablespaces go back with the data dir: its pg_tblspc links point at them.
    for (location, aside) in &tablespaces {
        ctx.session
            .run(&Command::script(put_back, &[location, aside]).as_root())
            .await?;
        ctx.state()
            .await
            .moved_tablespaces
            .retain(|(l, _)| l != location);
        done.push(format!("tablespace dir {location} restored from {aside}"));
    }
    if was_running && pg.state().await? != ServerState::Running {
        pg.start().await?;
    }
    done.push(if was_running {
        "PostgreSQL running as before".into()
    } else {
        "PostgreSQL stopped as before".to_string()
    });
    if let Some(slot) = &ctx.host.slot
        && release_slot(ctx, slot).await.is_ok()
    {
        let (upstream, session) = ctx.upstream()?;
        if Pg::new(session, upstream)
            .sql(&crate::pg::drop_unused_slot_sql(slot))
            .await
            .is_ok_and(|n| n == "1")
        {
            done.push(format!("unused slot {slot} dropped on `{}`", upstream.name));
        }
    }
    Ok(Outcome::changed(done.join("; ")))
}

/// Ends walsenders still serving this replica on its upstream (its slot, its name). Only a replica being
/// rebuilt calls this: its server is stopped, so whoever holds the slot is a ghost, such as
/// the walsender of a copy cut off by a lost network, which the primary only notices after
/// `wal_sender_timeout`.
async fn release_slot(ctx: &HostCtx<'_>, slot: &str) -> Result<(), StepError> {
    let (upstream, session) = ctx.upstream()?;
    let pg = Pg::new(session, upstream);
    // The slot's holder, and any walsender still serving this host's name (the base backup
    // connection of a cut-off copy holds none).
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM (SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = {} AND active_pid IS NOT NULL
           UNION SELECT pid FROM pg_stat_replication WHERE application_name = {}) ghosts",
        literal(slot),
        literal(&ctx.host.name)
    );
    if pg.sql(&sql).await? == "0" {
        return Ok(());
    }
    let inactive = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = {} AND active",
        literal(slot)
    );
    for _ in 0..50 {
        if pg.sql(&inactive).await? == "0" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StepError::new(
        format!(
            "slot {slot} on `{}` stays in use by another connection",
            upstream.name
        ),
        format!(
            "check pg_stat_replication on `{}` for who holds it",
            upstream.name
        ),
    ))
}

pub async fn base_backup(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    // The data dir (and, in some layouts, the config inside it) changes under us.
    ctx.state().await.forget_files(&ctx.host.pg.data_dir);
    let slot = ctx.host.slot.clone().unwrap_or_default();
    let source = match ctx.upstream()?.0 {
        up if up.is_primary() => "the primary".to_string(),
        up => format!("`{}` (its upstream)", up.name),
    };
    if ctx.check_mode() {
        return Ok(Outcome::changed(format!(
            "would copy {source} through slot {slot}"
        )));
    }
    let data = &ctx.host.pg.data_dir;
    let conninfo = upstream_conninfo(ctx).await?;
    release_slot(ctx, &slot).await?;
    let pg = ctx.pg();
    // `exec` keeps the pid the shell printed, so a rescue can end the copy.
    let script = r#"echo "pgrepl-pid $$" >&2; exec "$@""#;
    let cmd = Command::script(script, &[])
        .args([
            pg.bin("pg_basebackup"),
            "-D".into(),
            data.clone(),
            "-X".into(),
            "stream".into(),
            "-S".into(),
            slot.clone(),
        ])
        .args(["-c", "fast", "-w", "-P", "-d", &conninfo])
        .args(
            ctx.cluster
                .inventory
                .replication
                .backup_max_rate
                .iter()
                .flat_map(|r| ["-r".to_string(), r.clone()]),
        )
        .as_postgres()
        .timeout(None)
        // pg_basebackup -P reports at least every second while data flows; silence this
        // long means the path to the primary is gone, and waiting forever would hide it.
        .idle_timeout(Some(BACKUP_STALL));
    let events = &ctx.cluster.events;
    let name = ctx.host.name.clone();
    let pid_slot = &ctx.cluster.backup_pids[ctx.index];
    let started = Instant::now();
    let result = ctx
        .session
        .run_streaming(&cmd, |stream, line| {
            if stream != Stream::Stderr {
                return;
            }
            if let Some(p) = line.strip_prefix("pgrepl-pid ") {
                *pid_slot.lock().unwrap_or_else(|e| e.into_inner()) = p.trim().parse::<u32>().ok();
            } else if let Some((done, total)) = parse_progress(line) {
                events.progress(&name, "base backup", done, total);
            } else {
                events.debug(&name, &format!("pg_basebackup: {line}"));
            }
        })
        .await;
    // The command returned, so pg_basebackup has exited: only a cancelled run keeps the pid.
    *pid_slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    events.progress_done(&ctx.host.name);
    if let Err(e) = result {
        let text = e.to_string();
        let hint = if text.contains("No space left on device") {
            let need = ctx
                .primary_facts()
                .await
                .and_then(|f| f.server)
                .map(|s| s.db_bytes)
                .unwrap_or(0);
            format!(
                "the disk under {data} is full: the copy needs about {} plus WAL; free space there and re-run",
                super::preflight::human_bytes(need)
            )
        } else {
            "the previous data dir is restored; fix the cause above and re-run".to_string()
        };
        let message = if text.contains("No space left on device") {
            format!("disk full during the base backup: {text}")
        } else {
            format!("base backup failed: {text}")
        };
        return Err(StepError::new(message, hint));
    }
    let why = ctx
        .state()
        .await
        .copy_reason
        .take()
        .map(|w| format!(" ({w})"))
        .unwrap_or_default();
    Ok(Outcome::changed(format!(
        "copied {source} through slot {slot} in {:.1}s{why}",
        started.elapsed().as_secs_f64()
    )))
}

/// Standby configuration: `standby.signal`, `primary_conninfo` (no password) and the slot.
pub async fn standby(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let data = &ctx.host.pg.data_dir;
    let slot = ctx.host.slot.clone().unwrap_or_default();
    let auto = format!("{data}/postgresql.auto.conf");
    let read = Command::script(
        r#"cat "$1" 2>/dev/null || true; echo; if [ -f "$2" ]; then echo "pgrepl: signal"; fi"#,
        &[&auto, &format!("{data}/standby.signal")],
    )
    .as_root();
    let out = ctx.session.run(&read).await?.stdout;
    let has_signal = out.trim_end().ends_with("pgrepl: signal");
    let current: String = out
        .lines()
        .filter(|l| *l != "pgrepl: signal")
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
        + "\n";
    let mut desired: String = current
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            key != "primary_conninfo" && key != "primary_slot_name" && !l.trim().is_empty()
        })
        .map(|l| format!("{l}\n"))
        .collect();
    desired.push_str(&format!(
        "primary_conninfo = {}\n",
        conf_literal(&upstream_conninfo(ctx).await?)
    ));
    desired.push_str(&format!("primary_slot_name = {}\n", literal(&slot)));
    let normalized: String = current
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    if has_signal && normalized == desired {
        return Ok(Outcome::ok("standby settings are up to date"));
    }
    if ctx.check_mode() {
        return Ok(Outcome::changed("would write the standby settings"));
    }
    let script = r#"set -e; tmp="$1.pgrepl.tmp"; (umask 077; cat > "$tmp"); chown postgres:postgres "$tmp"; mv -f "$tmp" "$1"
touch "$2"; chown postgres:postgres "$2"; chmod 600 "$2""#;
    let cmd = Command::script(script, &[&auto, &format!("{data}/standby.signal")])
        .stdin(desired.into_bytes())
        .as_root();
    ctx.session.run(&cmd).await?;
    Ok(Outcome::changed(format!(
        "standby of {} through slot {slot}",
        ctx.upstream()?.0.name
    )))
}

/// How long a base backup may print nothing before it counts as stalled.
const BACKUP_STALL: Duration = Duration::from_secs(180);

/// How long a new standby may take to start streaming.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn wait_streaming(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    if ctx.check_mode() {
        return Ok(Outcome::skipped("check mode"));
    }
    let started = Instant::now();
    loop {
        if streams_from_upstream(ctx).await? {
            let caught_up = caught_up(ctx).await;
            return Ok(Outcome::ok(format!(
                "streaming after {:.1}s{}",
                started.elapsed().as_secs_f64(),
                if caught_up {
                    ""
                } else {
                    "; its upstream still sends it WAL it lacks (catchup)"
                }
            )));
        }
        if started.elapsed() > STREAMING_TIMEOUT {
            return Err(StepError::new(
                format!("not streaming after {}s", STREAMING_TIMEOUT.as_secs()),
                "see the replica's server log: a pg_hba rule, the password, or a setting lower than on the primary is the usual cause",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Once a replica says it streams: waits (up to [`CATCHUP_WAIT`]) until its upstream's
/// walsender says so too. It reads `catchup` first, while it sends what the replica lacks
/// (after a copy, the rest of a WAL segment), and what runs next (verify) would warn.
/// Whether it got there.
/// An upstream it cannot ask leaves the answer to verify.
pub async fn caught_up(ctx: &HostCtx<'_>) -> bool {
    let Ok((upstream, session)) = ctx.upstream() else {
        return true;
    };
    let sql = format!(
        "SELECT coalesce(to_json((SELECT state FROM pg_stat_replication WHERE application_name = {} ORDER BY state = 'streaming' DESC LIMIT 1)), 'null')",
        literal(&ctx.host.name)
    );
    let pg = crate::pg::Pg::new(session, upstream);
    let started = Instant::now();
    loop {
        let state: Option<String> = pg.query(&sql).await.ok().flatten();
        if state.as_deref() == Some("streaming") {
            return true;
        }
        if started.elapsed() > CATCHUP_WAIT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long [`caught_up`] waits for an upstream to finish sending a replica what it lacks.
const CATCHUP_WAIT: Duration = Duration::from_secs(15);

const RECEIVER_SQL: &str = "SELECT coalesce((SELECT row_to_json(r) FROM (SELECT status, slot_name, sender_host, sender_port FROM pg_stat_wal_receiver) r), 'null')";

/// Whether the host streams from its upstream (the inventory's primary, or the replica it
/// cascades from) through its own slot, right now.
pub async fn streams_from_upstream(ctx: &HostCtx<'_>) -> Result<bool, StepError> {
    let Some(receiver) = ctx.pg().query_if_running(RECEIVER_SQL).await? else {
        return Ok(false);
    };
    let facts = ServerFacts {
        in_recovery: true,
        receiver,
        ..Default::default()
    };
    Ok(receiver_matches(ctx, Some(&facts)))
}

/// Whether server facts show streaming from its upstream through this host's slot.
pub fn receiver_matches(ctx: &HostCtx<'_>, server: Option<&ServerFacts>) -> bool {
    let Some(primary) = ctx.cluster.inventory.upstream_of(ctx.host) else {
        return false;
    };
    let Some(r) = server.and_then(|s| s.receiver.as_ref()) else {
        return false;
    };
    r.status.as_deref() == Some("streaming")
        && r.slot_name.as_deref() == ctx.host.slot.as_deref()
        && r.sender_host.as_deref() == Some(primary.address.as_str())
        && r.sender_port
            .is_none_or(|p| p == i64::from(primary.pg.port))
}

/// Parses pg_basebackup's progress: `12345/67890 kB (18%), 0/1 tablespace ...` → bytes.
pub fn parse_progress(line: &str) -> Option<(u64, u64)> {
    let (done, rest) = line.trim().split_once('/')?;
    let total = rest.split_whitespace().next()?;
    let unit = rest.split_whitespace().nth(1)?;
    if unit != "kB" {
        return None;
    }
    Some((
        done.trim().parse::<u64>().ok()? * 1024,
        total.parse::<u64>().ok()? * 1024,
    ))
}

#[cfg(test)]
mod progress_tests {
    use super::parse_progress;

    #[test]
    fn parses_pg_basebackup_progress() {
        assert_eq!(
            parse_progress("  1234/5678 kB (21%), 0/1 tablespace"),
            Some((1234 * 1024, 5678 * 1024))
        );
        assert_eq!(parse_progress("waiting for checkpoint"), None);
    }
}
