//! Preflight: look at every host before any change on any host.
//!
//! Gathers facts (server version, whether it runs, free disk, the postgres user's home)
//! and refuses the run, naming each problem, when a host cannot take part: sudo needs a
//! password, versions differ, a replica cannot reach the primary's port or lacks the disk
//! for a copy of the primary. (A missing replication password is refused earlier, before
//! any host is contacted, by the commands that write it.)

use super::context::ServerFacts;
use super::context::{Facts, HostCtx};
use crate::inventory::Host;
use crate::pg::versions::{self, Mismatch};
use crate::ssh::{Command, Session};
use crate::step::{Outcome, StepError};

/// The facts of a host in one round trip. Few programs are started (each costs a loaded
/// host more than what it reads): the binaries' major from pg_ctl (postgres itself loads
/// many libraries to say it), whether the server runs from its postmaster.pid, the rest
/// from shell built-ins.
fn facts_script() -> String {
    format!(
        r#"data="$1"; bin="$2"; port="$3"; socket="$4"; lock_file="$5"; lock_line="$6"; lock_mode="$7"; reach_host="$8"; reach_port="$9"; shift 9
if [ -n "$lock_file" ]; then
{acquire}
fi
# A replica: whether the primary's port answers from here (a refusal answers too).
if [ -n "$reach_host" ]; then
  {reach}; printf 'reach %s\n' "$(echo $said)"
fi
v=0; if [ -x "$bin/postgres" ] && out=$("$bin/pg_ctl" --version 2>/dev/null); then v=${{out#*) }}; v=${{v%%[!0-9]*}}; fi
{running}
parent=${{data%/*}}; while [ -n "$parent" ] && [ ! -d "$parent" ]; do parent=${{parent%/*}}; done
free=0; if blocks=$(stat -f -c '%a %S' "${{parent:-/}}"); then free=$(( ${{blocks% *}} * ${{blocks#* }} )); fi
eval "home=~postgres"; case $home in "~"*) home= ;; esac
printf '{{"binary_major":%s,"running":%s,"free_bytes":%s,"postgres_home":"%s"}}\n' "${{v:-0}}" "$r" "${{free:-0}}" "$home"
# The managed files and the passfile, so a converged run need not fetch them one by one.
for f in "$@"; do if [ -f "$f" ]; then printf 'file %s ' "$f"; base64 -w0 < "$f"; echo; else printf 'file %s -\n' "$f"; fi; done
pf="$home/.pgrepl_pgpass"
if [ -f "$pf" ]; then sum=$(sha256sum < "$pf"); printf 'passfile %s %s\n' "$(stat -c '%U %a' "$pf")" "${{sum%% *}}"; fi
# The server's own facts come in the same round trip; the SQL arrives on stdin.
if [ "$r" = true ]; then exec runuser -u postgres -- "$bin/psql" -X -A -t -q -v ON_ERROR_STOP=1 -p "$port" ${{socket:+-h "$socket"}} -d postgres; fi"#,
        running = crate::pg::RUNNING_SH,
        acquire = super::lock::ACQUIRE_SH,
        reach = REACH_SH
    )
}

/// What a running server says about itself, for the replication role `user`.
fn server_facts_sql(user: &str) -> String {
    SERVER_FACTS_SQL.replace("'{USER}'", &crate::pg::literal(user))
}

const SERVER_FACTS_SQL: &str = "SELECT json_build_object(
  'role', (SELECT row_to_json(r) FROM (SELECT rolcanlogin AS login, rolreplication AS replication,
     rolpassword AS verifier FROM pg_authid WHERE rolname = '{USER}') r),
  'slots', (SELECT coalesce(json_agg(json_build_object('name', slot_name, 'physical', slot_type = 'physical')), '[]')
     FROM pg_replication_slots),
  'version_num', current_setting('server_version_num')::int,
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'in_recovery', pg_is_in_recovery(),
  'db_bytes', (SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint,
  'settings', (SELECT json_object_agg(name, setting) FROM pg_settings WHERE name IN
     ('max_connections','max_worker_processes','max_wal_senders','max_prepared_transactions',
      'max_locks_per_transaction','max_replication_slots','wal_level','listen_addresses','port')),
  'receiver', (SELECT row_to_json(r) FROM (SELECT status, slot_name, sender_host, sender_port
     FROM pg_stat_wal_receiver) r),
  'tablespaces', (SELECT coalesce(json_agg(json_build_object('name', spcname, 'location', loc,
     'bytes', pg_tablespace_size(oid)) ORDER BY spcname), '[]')
     FROM (SELECT oid, spcname, pg_tablespace_location(oid) AS loc FROM pg_tablespace) t WHERE loc LIKE '/%'),
  'pending_restart', (SELECT coalesce(string_agg(name, ', ' ORDER BY name), '') FROM pg_settings WHERE pending_restart))";

/// Gathers a host's facts (once per run; later callers get the stored ones).
pub async fn facts(
    cluster: &super::Cluster,
    index: usize,
    session: &Session,
    host: &Host,
) -> Result<Facts, StepError> {
    let mut state = cluster.memos[index].lock().await;
    if let Some(f) = &state.facts {
        return Ok(f.clone());
    }
    // The primary's first look takes the run lock too, when the run asked for it.
    let lock = match host.is_primary() {
        true => cluster.lock_request.get().map(|(l, m)| (l.as_str(), *m)),
        false => None,
    };
    // A replica's first look also tries the primary's port (see `reach`).
    let primary = cluster.inventory.hosts.iter().find(|h| h.is_primary());
    let reach_port = primary.map(|p| p.pg.port.to_string());
    let reach = match (host.is_primary(), primary, &reach_port) {
        (false, Some(p), Some(port)) => Some((p.address.as_str(), port.as_str())),
        _ => None,
    };
    let f = gather(
        session,
        host,
        &cluster.inventory.replication.user,
        lock,
        reach,
    )
    .await?;
    state.facts = Some(f.clone());
    Ok(f)
}

/// Reads the facts afresh, ignoring any stored ones.
/// With `lock` (holder line, mode), the run lock is taken first in the same round trip.
async fn gather(
    session: &Session,
    host: &Host,
    user: &str,
    lock: Option<(&str, &str)>,
    reach: Option<(&str, &str)>,
) -> Result<Facts, StepError> {
    let port = host.pg.port.to_string();
    let (reach_host, reach_port) = reach.unwrap_or(("", ""));
    let (lock_file, lock_line, lock_mode) = match lock {
        Some((line, mode)) => (super::lock::LOCK_FILE, line, mode),
        None => ("", "", ""),
    };
    let socket = host.pg.socket_dir.clone().unwrap_or_default();
    let [settings, hba] = super::config::managed_paths(host);
    let cmd = Command::script(
        &facts_script(),
        &[
            &host.pg.data_dir,
            &host.pg.bin_dir,
            &port,
            &socket,
            lock_file,
            lock_line,
            lock_mode,
            reach_host,
            reach_port,
            &settings,
            &hba,
        ],
    )
    .stdin(server_facts_sql(user))
    .as_root();
    let out = session.run(&cmd).await?;
    let mut files = std::collections::BTreeMap::new();
    let mut passfile_probe = None;
    let mut lock_answer = None;
    let mut reach_said = None;
    let mut rest = Vec::new();
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(entry) = line.strip_prefix("file ") {
            let (path, b64) = entry.rsplit_once(' ').unwrap_or((entry, "-"));
            let content = (b64 != "-").then(|| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            });
            files.insert(path.to_string(), content);
        } else if line.starts_with("lock ") {
            lock_answer = Some(line.to_string());
        } else if let Some(said) = line.strip_prefix("reach ") {
            reach_said = Some(said.to_string());
        } else if let Some(p) = line.strip_prefix("passfile ") {
            // `OWNER MODE SHA` → the passfile step's own probe format.
            let mut words = p.split_whitespace();
            if let (Some(owner), Some(mode), Some(sha)) = (words.next(), words.next(), words.next())
            {
                passfile_probe = Some(format!("{owner} {mode}\n{sha}\n"));
            }
        } else {
            rest.push(line);
        }
    }
    let mut lines = rest.into_iter();
    let unreadable = |e: serde_json::Error| {
        StepError::new(
            format!("cannot read host facts ({e}): {}", out.stdout.trim()),
            "is this a Linux host with PostgreSQL installed?",
        )
    };
    let mut facts: Facts =
        serde_json::from_str(lines.next().unwrap_or_default()).map_err(unreadable)?;
    facts.files = files;
    facts.passfile_probe = passfile_probe;
    facts.lock_answer = lock_answer;
    facts.reach_said = reach_said;
    if facts.running {
        facts.server = Some(
            serde_json::from_str::<ServerFacts>(lines.next().unwrap_or_default())
                .map_err(unreadable)?,
        );
    }
    Ok(facts)
}

pub async fn run(ctx: &HostCtx<'_>) -> Result<Outcome, StepError> {
    let host = ctx.host;
    let facts = facts(ctx.cluster, ctx.index, ctx.session, host).await?;
    // A replica's try of the primary's port came with its facts.
    let reached = match (host.is_primary(), ctx.primary()) {
        (false, Ok((primary, _))) => reach(ctx, primary).await,
        _ => Ok(None),
    };
    // Binaries of another major, or no server where the inventory says: name what this
    // host really has and runs, once, rather than the two problems that follow from it.
    if let Some(m) = version_mismatch(ctx, &facts).await? {
        return Err(StepError::new(
            m.message,
            format!("{}; nothing was changed on any host", m.hint),
        ));
    }
    let mut problems = Vec::new();
    if facts.binary_major == 0 {
        problems.push(format!("no PostgreSQL server binaries in {} (hint: install PostgreSQL {} or set postgres.bin_dir)", host.pg.bin_dir, host.pg.version));
    } else if facts.binary_major != host.pg.version {
        problems.push(format!("the inventory says PostgreSQL {} but {} has {} (hint: fix postgres.version, or install the same major version on every host: pg_basebackup requires it)", host.pg.version, host.pg.bin_dir, facts.binary_major));
    }
    if host.is_primary() {
        check_primary(&facts, &mut problems);
    } else {
        if let Some(problem) = reached? {
            problems.push(problem);
        }
        check_replica(ctx, &facts, &mut problems).await?;
    }
    if problems.is_empty() {
        let state = if facts.running { "running" } else { "stopped" };
        Ok(Outcome::ok(format!(
            "PostgreSQL {} {state}",
            facts.binary_major
        )))
    } else {
        Err(StepError::new(
            problems.join("; "),
            "fix these and re-run: nothing was changed on any host",
        ))
    }
}

/// What the version probe says when the inventory's binaries are missing, of another
/// major, or no server runs on its data dir; `None` when the versions agree.
async fn version_mismatch(ctx: &HostCtx<'_>, facts: &Facts) -> Result<Option<Mismatch>, StepError> {
    let pg = &ctx.host.pg;
    if facts.binary_major == pg.version && facts.running {
        return Ok(None);
    }
    let mut dirs = vec![pg.bin_dir.as_str()];
    dirs.extend(pg.socket_dir.as_deref());
    let out = ctx
        .session
        .run(&Command::script(versions::PROBE_SCRIPT, &dirs).as_root())
        .await?;
    let want = versions::Expected {
        host: &ctx.host.name,
        version: pg.version,
        port: pg.port,
        data_dir: &pg.data_dir,
    };
    Ok(versions::check(want, &versions::parse_probe(&out.stdout)))
}

fn check_primary(facts: &Facts, problems: &mut Vec<String>) {
    match &facts.server {
        None => problems.push("PostgreSQL is not running on the primary (hint: start it; pgrepl configures a running primary)".into()),
        Some(s) if s.in_recovery => problems.push("the primary is in recovery (it is a standby); hint: promote it or pick the right primary in the inventory".into()),
        Some(_) => {}
    }
}

async fn check_replica(
    ctx: &HostCtx<'_>,
    facts: &Facts,
    problems: &mut Vec<String>,
) -> Result<(), StepError> {
    let (primary, _) = ctx.primary()?;
    let Ok(primary_facts) = ctx.primary_facts_or_gather().await else {
        return Ok(()); // the primary's own preflight reports it
    };
    if primary_facts.binary_major != 0
        && facts.binary_major != 0
        && let Some(m) = versions::check_same_major(&[
            (primary.name.as_str(), primary_facts.binary_major),
            (ctx.host.name.as_str(), facts.binary_major),
        ])
    {
        problems.push(m.to_string());
    }
    let streaming = super::replica::receiver_matches(ctx, facts.server.as_ref());
    if streaming {
        return Ok(());
    }
    let (db_bytes, tablespaces) = primary_facts
        .server
        .map(|s| (s.db_bytes, s.tablespaces))
        .unwrap_or_default();
    if !tablespaces.is_empty() {
        problems.extend(check_tablespaces(ctx, db_bytes, &tablespaces).await?);
        return Ok(());
    }
    let need = with_margin(db_bytes) + (64 << 20);
    if facts.free_bytes < need {
        problems.push(format!(
            "only {} free beside {} but a copy of the primary needs about {} (hint: free disk space; the old data dir is kept beside the new one)",
            human_bytes(facts.free_bytes), ctx.host.pg.data_dir, human_bytes(need)
        ));
    }
    Ok(())
}

/// A copy's size with room to spare.
fn with_margin(bytes: u64) -> u64 {
    bytes + bytes / 10
}

/// For the data dir and each tablespace location (args): `AVAIL_BYTES STATUS MOUNT`, where
/// STATUS says whether the location can be made (`ok`, `not-a-dir`: it or the nearest
/// existing path above it is a file, `read-only`: its parent takes no new entry (a move
/// aside or mkdir needs that), `no-access`: postgres cannot reach it, `mount-point`: it
/// holds files and is a mount point, which cannot be renamed aside).
const PLACES_SCRIPT: &str = r#"for p in "$@"; do
  q="$p"; while [ ! -e "$q" ] && [ "$q" != / ]; do q=$(dirname "$q"); done
  w="$q"; [ "$q" = "$p" ] && w=$(dirname "$p")
  st=ok
  if [ ! -d "$q" ]; then st=not-a-dir
  elif t=$(mktemp -d "$w/.pgrepl-check.XXXXXX" 2>/dev/null); then rmdir "$t"
  else st=read-only; fi
  [ "$st" = ok ] && ! runuser -u postgres -- test -x "$w" && st=no-access
  [ "$st" = ok ] && [ "$q" = "$p" ] && [ -n "$(ls -A "$p")" ] \
    && [ "$(stat -c %d "$p")" != "$(stat -c %d "$w")" ] && st=mount-point
  printf '%s %s %s\n' "$(df -PB1 "$q" | awk 'NR==2 {print $4}')" "$st" "$(df -P "$q" | awk 'NR==2 {print $6}')"
done"#;

/// Whether each of the primary's tablespaces can be made at its path here (creatable,
/// writable, reachable by postgres), and whether every filesystem the copy writes to has
/// room for its share: the data dir's (the databases less the tablespaces) and each
/// tablespace's.
async fn check_tablespaces(
    ctx: &HostCtx<'_>,
    db_bytes: u64,
    tablespaces: &[super::context::Tablespace],
) -> Result<Vec<String>, StepError> {
    let data = ctx.host.pg.data_dir.as_str();
    let mut args = vec![data];
    args.extend(tablespaces.iter().map(|t| t.location.as_str()));
    let out = ctx
        .session
        .run(&Command::script(PLACES_SCRIPT, &args).as_root())
        .await?;
    let places: Vec<(u64, &str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            Some((w.next()?.parse().ok()?, w.next()?, w.next()?))
        })
        .collect();
    if places.len() != args.len() {
        return Err(StepError::new(
            format!(
                "cannot read where the tablespaces would go: {}",
                out.stdout.trim()
            ),
            "is df available on this host?",
        ));
    }
    let ts_bytes: u64 = tablespaces.iter().map(|t| t.bytes).sum();
    let mut needs = vec![with_margin(db_bytes.saturating_sub(ts_bytes)) + (64 << 20)];
    needs.extend(tablespaces.iter().map(|t| with_margin(t.bytes)));
    let mut problems = Vec::new();
    for (t, (_, status, _)) in tablespaces.iter().zip(&places[1..]) {
        let why = match *status {
            "ok" => continue,
            "not-a-dir" => "it, or a path above it, is not a directory",
            "read-only" => "its parent directory cannot be written (read-only?)",
            "mount-point" => {
                problems.push(format!(
                    "tablespace {} is at {}, a mount point holding files on this replica: the copy needs it empty and pgrepl moves old data aside by renaming, which a mount point refuses (hint: move its contents elsewhere yourself, or give the tablespace a directory below the mount point)",
                    t.name, t.location
                ));
                continue;
            }
            _ => "the postgres user cannot reach its parent directory",
        };
        problems.push(format!(
            "tablespace {} needs {} on this replica, but {why} (hint: create it as a directory postgres owns, e.g. `install -d -o postgres -g postgres -m 700 {}`)",
            t.name, t.location, t.location
        ));
    }
    let names = std::iter::once(data).chain(tablespaces.iter().map(|t| t.location.as_str()));
    let writes: Vec<Write> = places
        .iter()
        .zip(needs.iter().zip(names))
        .map(|(&(free, _, mount), (&need, path))| Write {
            path,
            mount,
            free,
            need,
        })
        .collect();
    problems.extend(short_of_room(&writes));
    Ok(problems)
}

/// What a copy writes under one path, and the filesystem that holds it.
#[derive(Debug, Clone, Copy)]
struct Write<'a> {
    path: &'a str,
    /// The filesystem's mount point and its free bytes.
    mount: &'a str,
    free: u64,
    need: u64,
}

/// The filesystems without room for what the copy writes to them: needs add up per
/// mount point (a tablespace beside the data dir shares its disk).
fn short_of_room(writes: &[Write<'_>]) -> Vec<String> {
    let mut mounts: Vec<&str> = writes.iter().map(|w| w.mount).collect();
    mounts.sort_unstable();
    mounts.dedup();
    mounts
        .into_iter()
        .filter_map(|mount| {
            let on: Vec<&Write> = writes.iter().filter(|w| w.mount == mount).collect();
            let need: u64 = on.iter().map(|w| w.need).sum();
            let free = on[0].free;
            (free < need).then(|| {
                let paths: Vec<&str> = on.iter().map(|w| w.path).collect();
                format!(
                    "only {} free on {mount} but the copy of the primary writes about {} there ({}) (hint: free disk space; old data is kept beside the new)",
                    human_bytes(free),
                    human_bytes(need),
                    paths.join(", ")
                )
            })
        })
        .collect()
}

/// Tries the primary's port (`$reach_host`, `$reach_port`) for up to 5 s; `said` holds
/// `open`, the refusal, or nothing (no answer).
const REACH_SH: &str = r#"said=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$reach_host" "$reach_port" 2>&1 && echo open)"#;

/// Checks the replica reaches the primary's port. A refused connection is fine before
/// the primary listens on the network (bootstrap changes that); silence is not.
async fn reach(ctx: &HostCtx<'_>, primary: &Host) -> Result<Option<String>, StepError> {
    // Usually asked already, in the facts' round trip.
    let known = ctx
        .state()
        .await
        .facts
        .as_ref()
        .and_then(|f| f.reach_said.clone());
    let said = match known {
        Some(said) => said,
        None => {
            let script = format!(
                "reach_host=\"$1\"; reach_port=\"$2\"\n{REACH_SH}\nprintf '%s\\n' \"$said\""
            );
            let cmd = Command::script(&script, &[&primary.address, &primary.pg.port.to_string()]);
            ctx.session.output(&cmd).await?.stdout
        }
    };
    let text = said.to_lowercase();
    if text.contains("open") || text.contains("refused") {
        Ok(None)
    } else {
        let why = said
            .lines()
            .last()
            .filter(|l| !l.trim().is_empty())
            .unwrap_or("no answer within 5s")
            .to_string();
        Ok(Some(format!(
            "cannot reach the primary at {}:{} ({why}); hint: open the port between the hosts (security group, firewall)",
            primary.address, primary.pg.port
        )))
    }
}

/// Bytes as people read them (`1.50 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::{Write, short_of_room};

    fn write<'a>(path: &'a str, mount: &'a str, free: u64, need: u64) -> Write<'a> {
        Write {
            path,
            mount,
            free,
            need,
        }
    }

    #[test]
    fn needs_add_up_per_filesystem() {
        // Each fits alone; the data dir and ts1 share `/` and together do not.
        let writes = [
            write("/var/lib/postgresql/15/main", "/", 1000, 600),
            write("/srv/ts1", "/", 1000, 500),
            write("/mnt/ts2", "/mnt", 100, 100),
        ];
        let short = short_of_room(&writes);
        assert_eq!(short.len(), 1, "{short:?}");
        assert!(
            short[0].starts_with("only 1000 B free on / but the copy of the primary writes about 1.07 KiB there (/var/lib/postgresql/15/main, /srv/ts1)"),
            "{short:?}"
        );
        assert!(short_of_room(&writes[1..]).is_empty());
    }
}
