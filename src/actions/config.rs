//! Config files: the postgresql.conf snippet, the pg_hba.conf block, and applying them.
//!
//! pgrepl owns a whole file in an include directory (Debian's `conf.d`) where the layout
//! has one, and a marked block otherwise; pg_hba.conf (no includes before PostgreSQL 16)
//! always gets a block at the top, since the first matching rule wins. Writes are atomic
//! with a backup, and while the server runs PostgreSQL's own reading of the new files
//! (`pg_file_settings`, `pg_hba_file_rules`, `postgres -C`) must accept them, or the old
//! files go back and the step fails with PostgreSQL's message.

use serde::Deserialize;

use super::context::HostCtx;
use crate::playbook::RestartPolicy;
use crate::ssh::Command;
use crate::step::{Outcome, StepError};

pub const BEGIN: &str =
    "# BEGIN pgrepl managed block: pgrepl rewrites this block, edit the inventory instead";
pub const END: &str = "# END pgrepl managed block";

/// Where a managed block goes in a file that has none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Before the first rule (pg_hba.conf: first match wins).
    Top,
    /// At the end (postgresql.conf: the last setting wins).
    End,
}

/// Returns `current` with the managed block set to `body`.
pub fn with_block(current: &str, body: &str, placement: Placement) -> String {
    let block = format!(
        "{BEGIN}\n{}{}{END}\n",
        body,
        if body.ends_with('\n') || body.is_empty() {
            ""
        } else {
            "\n"
        }
    );
    if let (Some(start), Some(end)) = (current.find(BEGIN), current.find(END))
        && start < end
    {
        let after = &current[end + END.len()..];
        let after = after.strip_prefix('\n').unwrap_or(after);
        return format!("{}{block}{after}", &current[..start]);
    }
    match placement {
        Placement::End => {
            let sep = if current.is_empty() || current.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{current}{sep}{block}")
        }
        Placement::Top => {
            // Keep the file's leading comment header above the block.
            let mut offset = 0;
            for line in current.split_inclusive('\n') {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    offset += line.len();
                } else {
                    break;
                }
            }
            if offset == current.len() {
                let sep = if current.is_empty() || current.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                return format!("{current}{sep}{block}");
            }
            format!("{}{block}{}", &current[..offset], &current[offset..])
        }
    }
}

/// A file pgrepl manages, and how.
struct Target {
    path: String,
    owner: &'static str,
    mode: &'static str,
    /// `None`: pgrepl owns the whole file.
    block: Option<Placement>,
}

pub async fn settings(
    ctx: &HostCtx<'_>,
    template: &str,
    restart: RestartPolicy,
) -> Result<Outcome, StepError> {
    let pg = &ctx.host.pg;
    let [path, _] = managed_paths(ctx.host);
    let target = match &pg.include_dir {
        Some(_) => Target {
            path,
            owner: "postgres:postgres",
            mode: "0644",
            block: None,
        },
        None => Target {
            path,
            owner: "postgres:postgres",
            mode: "0600",
            block: Some(Placement::End),
        },
    };
    ensure(ctx, template, target, Some(restart)).await
}

/// The files pgrepl manages on a host: its settings (a conf.d file or postgresql.conf)
/// and pg_hba.conf. Preflight reads them ahead, so a no-op run need not fetch them again.
pub fn managed_paths(host: &crate::inventory::Host) -> [String; 2] {
    let pg = &host.pg;
    let settings = match &pg.include_dir {
        Some(dir) => format!("{dir}/pgrepl.conf"),
        None => format!("{}/postgresql.conf", pg.config_dir),
    };
    [settings, format!("{}/pg_hba.conf", pg.config_dir)]
}

pub async fn hba(ctx: &HostCtx<'_>, template: &str) -> Result<Outcome, StepError> {
    let [_, path] = managed_paths(ctx.host);
    let target = Target {
        path,
        owner: "postgres:postgres",
        mode: "0640",
        block: Some(Placement::Top),
    };
    ensure(ctx, template, target, None).await
}

async fn ensure(
    ctx: &HostCtx<'_>,
    template: &str,
    target: Target,
    restart: Option<RestartPolicy>,
) -> Result<Outcome, StepError> {
    let rendered = ctx
        .cluster
        .templates
        .render(template, &ctx.template_context().await)
        .map_err(|e| StepError::msg(e.to_string()))?;
    let current = read_file(ctx, &target.path).await?;
    let desired = match target.block {
        Some(placement) => with_block(&current, &rendered, placement),
        None => rendered,
    };
    if desired == current {
        return Ok(Outcome::ok(format!("{} is up to date", target.path)));
    }
    if ctx.cluster.options.diff {
        ctx.cluster
            .events
            .diff(&ctx.host.name, &target.path, &current, &desired);
    }
    if restart == Some(RestartPolicy::Refuse) && !ctx.cluster.options.allow_restart {
        refuse_restart(ctx, &current, &desired).await?;
    }
    if ctx.check_mode() {
        // What applying it would take: a restart for any changed postmaster setting.
        let restart = if restart.is_some() {
            postmaster_settings(ctx, &changed_settings(&current, &desired)).await?
        } else {
            Vec::new()
        };
        let mut memo = ctx.state().await;
        memo.config_changed = true;
        memo.restart_for.extend(restart);
        return Ok(Outcome::changed(format!("would update {}", target.path)));
    }
    write_file(ctx, &target.path, &desired, target.owner, target.mode).await?;
    let mut needs_restart = Vec::new();
    // A check that could not be made (the server starting, out of connections) leaves
    // the file unchecked: the previous one goes back, as for a rejected one.
    let errors = match ctx.pg().query_when_running(FILE_ERRORS_SQL).await {
        Ok(errors) => errors,
        Err(e) => {
            restore_file(ctx, &target.path).await?;
            return Err(StepError::new(
                format!(
                    "could not have PostgreSQL check the new {}: {e}; the previous file is back",
                    target.path
                ),
                "see why the server did not answer (starting, stopping, out of connections), then re-run",
            ));
        }
    };
    if let Some(errors) = errors {
        match judge_file_errors(ctx, errors).await {
            Ok(pending) => needs_restart = pending,
            Err(e) => {
                restore_file(ctx, &target.path).await?;
                return Err(StepError::new(
                    format!(
                        "PostgreSQL rejects the new {}: {e}; the previous file is back and the server runs as before",
                        target.path
                    ),
                    "fix the value in the inventory (replication.settings or hba) or the template, then re-run",
                ));
            }
        }
    }
    let mut memo = ctx.state().await;
    memo.config_changed = true;
    memo.needs_restart.extend(needs_restart);
    Ok(Outcome::changed(format!("updated {}", target.path)))
}

/// The settings a config file change sets, changes or removes (by name, sorted, once each).
pub fn changed_settings(current: &str, desired: &str) -> Vec<String> {
    let setting = |l: &str| {
        let l = l.trim();
        if l.starts_with('#') {
            return None;
        }
        let (name, _) = l.split_once('=')?;
        let name = name.trim();
        (!name.is_empty()).then(|| name.to_string())
    };
    let old: Vec<&str> = current.lines().collect();
    let new: Vec<&str> = desired.lines().collect();
    let mut names: Vec<String> = new
        .iter()
        .filter(|l| !old.contains(l))
        .chain(old.iter().filter(|l| !new.contains(l)))
        .filter_map(|l| setting(l))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Of these settings, those only a restart applies (`pg_settings.context = 'postmaster'`);
/// none when the server is not running (it reads them when it starts).
async fn postmaster_settings(
    ctx: &HostCtx<'_>,
    names: &[String],
) -> Result<Vec<String>, StepError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let list = names
        .iter()
        .map(|n| crate::pg::literal(n))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM pg_settings WHERE context = 'postmaster' AND name IN ({list})"
    );
    Ok(ctx.pg().query_if_running(&sql).await?.unwrap_or_default())
}

/// What applying changed config files takes, from the settings that need a restart (the
/// changed postmaster ones, and any already pending one): the words `--check` shows.
pub fn apply_forecast(restart_for: &[String]) -> String {
    if restart_for.is_empty() {
        "would reload (no changed setting needs a restart)".into()
    } else {
        format!("would restart to apply {}", restart_for.join(", "))
    }
}

/// Settings this host's config templates would change that only a restart applies (plus
/// any already pending), read without changing anything.
pub async fn restart_forecast(
    ctx: &HostCtx<'_>,
    templates: &[&str],
) -> Result<Vec<String>, StepError> {
    let [path, _] = managed_paths(ctx.host);
    let current = read_file(ctx, &path).await?;
    let mut names = Vec::new();
    for template in templates {
        let rendered = ctx
            .cluster
            .templates
            .render(template, &ctx.template_context().await)
            .map_err(|e| StepError::msg(e.to_string()))?;
        let desired = match &ctx.host.pg.include_dir {
            Some(_) => rendered,
            None => with_block(&current, &rendered, Placement::End),
        };
        names.extend(postmaster_settings(ctx, &changed_settings(&current, &desired)).await?);
    }
    let pending = ctx
        .state()
        .await
        .facts
        .as_ref()
        .and_then(|f| f.server.as_ref())
        .map(|s| s.pending_restart.clone())
        .unwrap_or_default();
    names.extend(
        pending
            .split(", ")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    );
    names.sort();
    names.dedup();
    Ok(names)
}

/// Fails when a changed line sets a parameter that only a restart applies.
async fn refuse_restart(ctx: &HostCtx<'_>, current: &str, desired: &str) -> Result<(), StepError> {
    let needs = postmaster_settings(ctx, &changed_settings(current, desired))
        .await?
        .join(", ");
    if needs.is_empty() {
        return Ok(());
    }
    Err(StepError::new(
        format!(
            "{} needs a restart to change {needs}; refusing, nothing was changed",
            ctx.host.name
        ),
        "re-run with --allow-restart: replicas restart one at a time first, then the primary (a short outage each); or raise these settings in a maintenance window",
    ))
}

async fn read_file(ctx: &HostCtx<'_>, path: &str) -> Result<String, StepError> {
    // Preflight's copy holds until this run writes the file or replaces the data dir.
    if let Some(known) = ctx
        .state()
        .await
        .facts
        .as_ref()
        .and_then(|f| f.files.get(path))
    {
        return Ok(known.clone().unwrap_or_default());
    }
    let cmd = Command::script(r#"if [ -f "$1" ]; then cat "$1"; fi"#, &[path]).as_root();
    Ok(ctx.session.run(&cmd).await?.stdout)
}

/// Writes a file atomically (temp file, rename), keeping the previous one as `.pgrepl.bak`.
pub async fn write_file(
    ctx: &HostCtx<'_>,
    path: &str,
    content: &str,
    owner: &str,
    mode: &str,
) -> Result<(), StepError> {
    let script = r#"set -e; f="$1"; rm -f "$f.pgrepl.bak"
if [ -f "$f" ]; then cp -p "$f" "$f.pgrepl.bak"; fi
tmp="$f.pgrepl.tmp"; (umask 077; cat > "$tmp"); chown "$2" "$tmp"; chmod "$3" "$tmp"; mv -f "$tmp" "$f""#;
    ctx.state().await.forget_file(path);
    let cmd = Command::script(script, &[path, owner, mode])
        .stdin(content.as_bytes().to_vec())
        .as_root();
    ctx.session.run(&cmd).await?;
    ctx.state().await.wrote_file(path, content);
    Ok(())
}

/// Puts back the file [`write_file`] replaced (or removes it if there was none).
pub async fn restore_file(ctx: &HostCtx<'_>, path: &str) -> Result<(), StepError> {
    let script =
        r#"if [ -f "$1.pgrepl.bak" ]; then mv -f "$1.pgrepl.bak" "$1"; else rm -f "$1"; fi"#;
    ctx.state().await.forget_file(path);
    ctx.session
        .run(&Command::script(script, &[path]).as_root())
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct FileErrors {
    settings: Option<Vec<SettingError>>,
    hba: Option<Vec<HbaError>>,
}

#[derive(Debug, Deserialize)]
struct SettingError {
    file: Option<String>,
    line: Option<i64>,
    name: Option<String>,
    /// The value as written in the file.
    setting: Option<String>,
    error: String,
    postmaster: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct HbaError {
    line: Option<i64>,
    error: String,
}

/// Asks the running server whether it accepts the config files as they are on disk now.
pub(super) async fn validate(ctx: &HostCtx<'_>) -> Result<(), String> {
    validate_pending(ctx).await.map(|_| ())
}

/// What the server says is wrong with the config files on disk now: settings it cannot
/// apply (restart-only ones that changed among them) and hba lines it cannot read.
const FILE_ERRORS_SQL: &str = "SELECT json_build_object(
      'settings', (SELECT json_agg(json_build_object('file', f.sourcefile, 'line', f.sourceline, 'name', f.name,
                    'setting', f.setting, 'error', f.error, 'postmaster', s.context = 'postmaster'))
                   FROM pg_file_settings f LEFT JOIN pg_settings s ON s.name = f.name WHERE f.error IS NOT NULL),
      'hba', (SELECT json_agg(json_build_object('line', line_number, 'error', error))
              FROM pg_hba_file_rules WHERE error IS NOT NULL))";

/// [`validate`], returning the changed settings that only a restart applies (which the
/// server accepts).
async fn validate_pending(ctx: &HostCtx<'_>) -> Result<Vec<String>, String> {
    let errors: FileErrors = ctx
        .pg()
        .query(FILE_ERRORS_SQL)
        .await
        .map_err(|e| e.to_string())?;
    judge_file_errors(ctx, errors).await
}

/// The problems in `errors`, or the changed restart-only settings (which the postmaster's
/// own parser accepts: one `postgres -C` reads every file, and names each bad value).
async fn judge_file_errors(ctx: &HostCtx<'_>, errors: FileErrors) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let mut pending = Vec::new();
    let mut to_ask = Vec::new();
    for e in errors.settings.unwrap_or_default() {
        let at = format!(
            "{}:{}",
            e.file.unwrap_or_default(),
            e.line.unwrap_or_default()
        );
        match (e.postmaster, e.name) {
            // A changed restart-only setting reads as "could not be applied" until a restart;
            // the postmaster's own parser judges its value.
            (Some(true), Some(name)) => {
                let key = (name.clone(), e.setting.unwrap_or_default());
                if !ctx.state().await.accepted_settings.contains(&key) {
                    to_ask.push(key);
                }
                pending.push(name);
            }
            (_, name) => problems.push(format!(
                "{at}: {}{}",
                name.map(|n| format!("{n}: ")).unwrap_or_default(),
                e.error
            )),
        }
    }
    if let Some((first, _)) = to_ask.first() {
        match postmaster_accepts(ctx, first).await {
            Ok(()) => ctx.state().await.accepted_settings.extend(to_ask),
            Err(message) => problems.push(message),
        }
    }
    for e in errors.hba.unwrap_or_default() {
        problems.push(format!(
            "pg_hba.conf line {}: {}",
            e.line.unwrap_or_default(),
            e.error
        ));
    }
    if problems.is_empty() {
        Ok(pending)
    } else {
        Err(problems.join("; "))
    }
}

/// Whether the postmaster would start with the config files as they are: `postgres -C`
/// reads them all, whichever setting it is asked for; its complaints name each bad value.
async fn postmaster_accepts(ctx: &HostCtx<'_>, name: &str) -> Result<(), String> {
    let pg = ctx.pg();
    let cmd = Command::new(pg.bin("postgres"))
        .args(["-C", name, "-D", ctx.host.pg.config_dir.as_str()])
        .as_postgres();
    let out = ctx.session.output(&cmd).await.map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(());
    }
    Err(postmaster_complaints(&out.stderr))
}

/// What `postgres -C` said is wrong: its `invalid value` lines (and hints), else all of
/// its lines, without the log prefixes.
fn postmaster_complaints(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let invalid: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("invalid value") || l.contains("HINT:"))
        .map(|l| {
            l.split_once("LOG:  ")
                .or_else(|| l.split_once("HINT:  "))
                .map_or(*l, |(_, m)| m)
        })
        .collect();
    if invalid.is_empty() {
        lines.join(" ")
    } else {
        invalid.join("; ")
    }
}

pub async fn apply(ctx: &HostCtx<'_>, restart: RestartPolicy) -> Result<Outcome, StepError> {
    let pg = ctx.pg();
    let changed = ctx.state().await.config_changed;
    let pending_sql = "SELECT to_json(coalesce(string_agg(name, ', ' ORDER BY name), '')) FROM pg_settings WHERE pending_restart";
    // Nothing written this run: preflight's reading of pending_restart is still current.
    let known = match (changed, &ctx.state().await.facts) {
        (false, Some(f)) => f.server.as_ref().map(|s| s.pending_restart.clone()),
        _ => None,
    };
    // Standbys that streamed from this server reconnect on their own after a restart,
    // within wal_retrieve_retry_interval: who streams now is read with what is pending.
    let streaming_sql = "SELECT coalesce(json_agg(application_name ORDER BY application_name), '[]') FROM pg_stat_replication WHERE state = 'streaming'";
    let mut streaming: Option<Vec<String>> = None;
    let pending = match known {
        Some(p) => Some(p),
        None => {
            #[derive(serde::Deserialize)]
            struct Now {
                pending: String,
                streaming: Vec<String>,
            }
            let sql = format!(
                "SELECT json_build_object('pending', ({pending_sql}), 'streaming', ({streaming_sql}))"
            );
            pg.query_if_running::<Now>(&sql).await?.map(|now| {
                streaming = Some(now.streaming);
                now.pending
            })
        }
    };
    let Some(mut pending) = pending else {
        return Ok(Outcome::skipped(
            "server not running; it reads the files when it starts",
        ));
    };
    if ctx.check_mode() {
        let mut restart_for = ctx.state().await.restart_for.clone();
        restart_for.extend(
            pending
                .split(", ")
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        );
        restart_for.sort();
        restart_for.dedup();
        return Ok(if changed || !restart_for.is_empty() {
            Outcome::changed(apply_forecast(&restart_for))
        } else {
            Outcome::ok("nothing to apply")
        });
    }
    let needs_restart = std::mem::take(&mut ctx.state().await.needs_restart);
    if changed && !needs_restart.is_empty() {
        // The files this run wrote change settings only a restart applies: a reload first
        // would only be waited for; the restart reads every file anyway.
        let mut names: Vec<&str> = pending.split(", ").filter(|n| !n.is_empty()).collect();
        names.extend(needs_restart.iter().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        pending = names.join(", ");
    } else if changed {
        pg.reload().await?;
        // The reload is asynchronous: give the postmaster a moment to re-read the files.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        pending = pg.query(pending_sql).await?;
    }
    if pending.is_empty() {
        ctx.state().await.config_changed = false;
        return Ok(if changed {
            Outcome::changed("reloaded")
        } else {
            Outcome::ok("nothing to apply")
        });
    }
    if restart == RestartPolicy::Refuse && !ctx.cluster.options.allow_restart {
        return Err(StepError::new(
            format!("{pending} changed and need a restart; refusing to restart"),
            "re-run with --allow-restart, or restart PostgreSQL in a maintenance window",
        ));
    }
    // Wait for the standbys that streamed, so later steps see them streaming again.
    let before: Vec<String> = match streaming {
        Some(names) => names,
        None => pg.query(streaming_sql).await?,
    };
    pg.restart().await?;
    ctx.state().await.config_changed = false;
    let started = std::time::Instant::now();
    while !before.is_empty() && started.elapsed() < RECONNECT_WAIT {
        let now: Vec<String> = pg.query(streaming_sql).await?;
        if before.iter().all(|name| now.contains(name)) {
            return Ok(Outcome::changed(format!(
                "restarted to apply {pending}; {} standby(s) streaming again after {:.1}s",
                before.len(),
                started.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    if before.is_empty() {
        Ok(Outcome::changed(format!("restarted to apply {pending}")))
    } else {
        Ok(Outcome::changed(format!(
            "restarted to apply {pending}; not every standby reconnected within {}s (verify will say which)",
            RECONNECT_WAIT.as_secs()
        )))
    }
}

/// How long a restarted server waits for its standbys to stream again.
const RECONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests {

    #[test]
    fn postmaster_complaints_name_each_bad_value() {
        let stderr = "2026-11-25 23:42:45.123 UTC [2252] LOG:  invalid value for parameter \"max_wal_senders\": \"banana\"
2026-11-25 23:42:45.124 UTC [2252] LOG:  invalid value for parameter \"wal_level\": \"nope\"
2026-11-25 23:42:45.124 UTC [2252] HINT:  Available values: minimal, replica, logical.
2026-11-25 23:42:45.124 UTC [2252] FATAL:  configuration file \"/etc/postgresql/15/main/conf.d/zz.conf\" contains errors
";
        assert_eq!(
            postmaster_complaints(stderr),
            "invalid value for parameter \"max_wal_senders\": \"banana\"; invalid value for parameter \"wal_level\": \"nope\"; Available values: minimal, replica, logical."
        );
        assert_eq!(
            postmaster_complaints("FATAL:  could not open file\n"),
            "FATAL:  could not open file"
        );
    }
    use super::*;

    #[test]
    fn block_goes_after_the_header_and_before_the_first_rule() {
        let hba = "# header\n\nlocal all postgres peer\nhost all all 0.0.0.0/0 reject\n";
        let out = with_block(
            hba,
            "host replication r 10.0.0.2/32 scram-sha-256\n",
            Placement::Top,
        );
        assert_eq!(
            out,
            format!(
                "# header\n\n{BEGIN}\nhost replication r 10.0.0.2/32 scram-sha-256\n{END}\nlocal all postgres peer\nhost all all 0.0.0.0/0 reject\n"
            )
        );
    }

    #[test]
    fn block_is_replaced_in_place_and_rewriting_is_stable() {
        let conf = "a = 1\n";
        let once = with_block(conf, "x = 1\n", Placement::End);
        assert_eq!(once, format!("a = 1\n{BEGIN}\nx = 1\n{END}\n"));
        let again = with_block(&once, "x = 2\n", Placement::End);
        assert_eq!(again, format!("a = 1\n{BEGIN}\nx = 2\n{END}\n"));
        assert_eq!(with_block(&again, "x = 2\n", Placement::End), again);
    }

    #[test]
    fn check_mode_says_restart_only_for_postmaster_settings() {
        let current = "listen_addresses = '*'\nmax_wal_senders = 10\nwal_keep_size = '1GB'\n";
        let desired = "listen_addresses = '*'\nmax_wal_senders = 12\nwal_keep_size = '2GB'\n# a comment = x\n";
        assert_eq!(
            changed_settings(current, desired),
            ["max_wal_senders", "wal_keep_size"]
        );
        // A setting dropped from the file changes too.
        assert_eq!(
            changed_settings(current, "listen_addresses = '*'\n"),
            ["max_wal_senders", "wal_keep_size"]
        );
        assert!(changed_settings(current, current).is_empty());
        // Of those, the server names max_wal_senders a postmaster setting: a restart.
        assert_eq!(
            apply_forecast(&["max_wal_senders".into()]),
            "would restart to apply max_wal_senders"
        );
        assert_eq!(
            apply_forecast(&[]),
            "would reload (no changed setting needs a restart)"
        );
    }

    #[test]
    fn block_in_a_file_without_newline_at_end() {
        assert_eq!(
            with_block("a = 1", "x\n", Placement::End),
            format!("a = 1\n{BEGIN}\nx\n{END}\n")
        );
    }
}
