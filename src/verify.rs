//! `pgrepl verify`: is replication really healthy?
//!
//! Reads the primary's `pg_stat_replication` and `pg_replication_slots`, each replica's
//! recovery state and `pg_stat_wal_receiver`, tries a write on each replica (it must be
//! refused), and sends a probe row through replication: replicas start waiting for it,
//! the primary writes it, and each replica reports when it saw it. The only change is
//! that probe row, in the pgrepl-owned table `pgrepl.probe` (schema `pgrepl`, both created
//! if missing) of the probe database: `postgres`, or the one `--probe-database` names.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::inventory::{Host, Role};
use crate::pg::{Pg, literal};
use crate::ssh::{Session, Stream};
use crate::status::STATUS_SQL;
use crate::step::{Outcome, StepError};

/// Thresholds for warnings.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub max_lag_bytes: u64,
    pub max_lag_seconds: f64,
    pub max_slot_retained: u64,
    pub probe_timeout: Duration,
    /// The database the probe row is written in (schema `pgrepl`, table `pgrepl.probe`).
    pub probe_database: String,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_lag_bytes: 16 << 20,
            max_lag_seconds: 30.0,
            max_slot_retained: 1 << 30,
            probe_timeout: Duration::from_secs(10),
            probe_database: "postgres".into(),
        }
    }
}

/// `ok`, `warn` or `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Warn,
    Fail,
}

/// One check on one host.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Health,
    pub detail: String,
}

/// The checks of one host, and the numbers behind them for programs (bytes and seconds;
/// `null` where not measured).
#[derive(Debug, Clone, Serialize)]
pub struct HostChecks {
    pub name: String,
    pub role: Role,
    pub status: Health,
    pub checks: Vec<Check>,
    /// The member a replica streams from (the primary, or for a cascaded replica another
    /// replica).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// A replica's lag as its upstream sees it (`pg_stat_replication` there).
    pub lag: Option<Lag>,
    /// A replica's replay position behind the primary's current WAL position, in bytes
    /// (for a cascaded replica, the whole chain's lag; else about `lag.replay_bytes`).
    pub primary_lag_bytes: Option<u64>,
    /// A replica's WAL received but not replayed yet, in bytes.
    pub replay_backlog_bytes: Option<u64>,
    /// A replica's slot on its upstream.
    pub slot: Option<SlotState>,
    /// The slots on this host (the primary's, every one; a cascading replica's).
    pub slots: Vec<SlotState>,
    /// A replica's replay position, for its lag behind the primary.
    #[serde(skip)]
    replayed: Option<u64>,
}

/// A replica's lag behind the primary's current WAL position.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lag {
    /// The walsender's state (`streaming`, `catchup`, ...).
    pub state: String,
    pub write_bytes: u64,
    pub flush_bytes: u64,
    pub replay_bytes: u64,
    pub write_seconds: f64,
    pub flush_seconds: f64,
    pub replay_seconds: f64,
}

/// A replication slot on the primary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotState {
    pub name: String,
    pub active: bool,
    /// WAL the slot keeps on the primary, in bytes.
    pub retained_bytes: u64,
}

/// How long a probe row took to show on a replica.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub host: String,
    pub delay_ms: Option<f64>,
    /// The same delay in seconds.
    pub delay_seconds: Option<f64>,
    pub status: Health,
    /// How long the replica's wait for the row lasted, in seconds.
    pub waited_seconds: f64,
    /// Why no delay was measured (`null` when one was).
    pub error: Option<String>,
}

/// Why a replica's wait for the probe row ended without the row, from what the wait
/// printed on stderr: a real timeout says the time waited, anything else what happened.
fn probe_error(stderr: &str, waited: Duration, timeout: Duration) -> String {
    let waited = waited.as_secs_f64();
    if stderr.contains("probe row not replayed within") {
        return format!(
            "probe row not replayed within {} s (--probe-timeout; waited {waited:.1} s)",
            timeout.as_secs_f64()
        );
    }
    if stderr.contains("could not connect")
        || stderr.contains("No such file or directory")
        || stderr.contains("the database system is")
    {
        return format!("no probe: the replica was down (its wait ended after {waited:.1} s)");
    }
    let why = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no answer");
    format!("no probe: the wait ended after {waited:.1} s: {why}")
}

/// The whole verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub status: Health,
    pub hosts: Vec<HostChecks>,
    pub probe: Vec<Probe>,
}

impl HostChecks {
    fn new(host: &Host) -> Self {
        Self::named(&host.name, host.role)
    }

    /// No checks yet, for a host of this name and role.
    pub fn named(name: &str, role: Role) -> Self {
        HostChecks {
            name: name.to_string(),
            role,
            status: Health::Ok,
            checks: Vec::new(),
            upstream: None,
            lag: None,
            primary_lag_bytes: None,
            replay_backlog_bytes: None,
            slot: None,
            slots: Vec::new(),
            replayed: None,
        }
    }
    fn add(&mut self, name: &str, status: Health, detail: impl Into<String>) {
        self.status = self.status.max(status);
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }
}

impl VerifyReport {
    /// The report as the outcome of a verify step: failing hosts fail the step.
    pub fn as_outcome(&self) -> Result<Outcome, StepError> {
        let failing: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| h.status == Health::Fail)
            .map(|h| {
                let why: Vec<&str> = h
                    .checks
                    .iter()
                    .filter(|c| c.status == Health::Fail)
                    .map(|c| c.name.as_str())
                    .collect();
                format!("{} ({})", h.name, why.join(", "))
            })
            .collect();
        match self.status {
            Health::Fail => Err(StepError::new(
                format!("verification failed on {}", failing.join(", ")),
                "the verify table above says why; `pgrepl verify` re-checks",
            )),
            Health::Warn => Ok(Outcome::ok("healthy, with warnings (see the verify table)")),
            Health::Ok => Ok(Outcome::ok("healthy")),
        }
    }
}

pub use crate::status::Target;

/// What a member that serves replicas reports of them: the primary, or a replica with
/// cascaded replicas (lags then count from what it received).
#[derive(Debug, Deserialize)]
struct PrimaryView {
    in_recovery: bool,
    /// Its WAL position: current on a primary, received or replayed on a standby.
    position: Option<String>,
    replication: Vec<StatRow>,
    slots: Vec<SlotRow>,
    /// `synchronous_standby_names` now, where it is set, and the commits waiting for it.
    #[serde(default)]
    sync_names: String,
    sync_source: Option<String>,
    #[serde(default)]
    sync_waiting: u64,
}

#[derive(Debug, Deserialize)]
struct StatRow {
    application_name: Option<String>,
    client_addr: Option<String>,
    state: Option<String>,
    sync_state: Option<String>,
    write_lag_bytes: Option<f64>,
    flush_lag_bytes: Option<f64>,
    replay_lag_bytes: Option<f64>,
    write_lag_s: Option<f64>,
    flush_lag_s: Option<f64>,
    replay_lag_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct SlotRow {
    name: String,
    active: bool,
    retained_bytes: Option<f64>,
}

impl SlotRow {
    fn state(&self) -> SlotState {
        SlotState {
            name: self.name.clone(),
            active: self.active,
            retained_bytes: self.retained_bytes.unwrap_or(0.0).max(0.0) as u64,
        }
    }
}

impl StatRow {
    fn lag(&self) -> Lag {
        let bytes = |b: Option<f64>| b.unwrap_or(0.0).max(0.0) as u64;
        Lag {
            state: self.state.clone().unwrap_or_default(),
            write_bytes: bytes(self.write_lag_bytes),
            flush_bytes: bytes(self.flush_lag_bytes),
            replay_bytes: bytes(self.replay_lag_bytes),
            write_seconds: self.write_lag_s.unwrap_or(0.0),
            flush_seconds: self.flush_lag_s.unwrap_or(0.0),
            replay_seconds: self.replay_lag_s.unwrap_or(0.0),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ReplicaView {
    in_recovery: bool,
    /// The `synchronous_standby_names` it would run with once promoted.
    #[serde(default)]
    sync_names: String,
    receiver: Option<crate::pg::facts::Receiver>,
    lag_bytes: Option<f64>,
    paused: bool,
    /// What it has replayed (`X/Y`).
    replay_lsn: Option<String>,
}

const PRIMARY_SQL: &str = "SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'position', now.position::text,
  'sync_names', current_setting('synchronous_standby_names'),
  'sync_source', (SELECT sourcefile || ':' || sourceline FROM pg_settings WHERE name = 'synchronous_standby_names'),
  'sync_waiting', (SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'),
  'replication', (SELECT coalesce(json_agg(json_build_object(
     'application_name', application_name, 'client_addr', host(client_addr), 'state', state, 'sync_state', sync_state,
     'write_lag_bytes', pg_wal_lsn_diff(now.position, write_lsn),
     'flush_lag_bytes', pg_wal_lsn_diff(now.position, flush_lsn),
     'replay_lag_bytes', pg_wal_lsn_diff(now.position, replay_lsn),
     'write_lag_s', extract(epoch FROM write_lag), 'flush_lag_s', extract(epoch FROM flush_lag),
     'replay_lag_s', extract(epoch FROM replay_lag))), '[]') FROM pg_stat_replication),
  'slots', (SELECT coalesce(json_agg(json_build_object('name', slot_name, 'active', active,
     'retained_bytes', pg_wal_lsn_diff(now.position, restart_lsn))), '[]') FROM pg_replication_slots))
FROM (SELECT CASE WHEN pg_is_in_recovery() THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
  ELSE pg_current_wal_lsn() END AS position) now";

const REPLICA_SQL: &str = "SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'sync_names', current_setting('synchronous_standby_names'),
  'receiver', (SELECT row_to_json(r) FROM (SELECT status, slot_name, sender_host, sender_port FROM pg_stat_wal_receiver) r),
  'lag_bytes', CASE WHEN pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END,
  'paused', CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
  'replay_lsn', pg_last_wal_replay_lsn()::text)";

/// Verifies the cluster through the given sessions.
pub async fn run(target: &Target<'_>) -> VerifyReport {
    let inv = target.inventory;
    let opts = target.options;
    let primary_index = inv.hosts.iter().position(Host::is_primary).unwrap_or(0);
    let primary = &inv.hosts[primary_index];
    let replicas: Vec<(usize, &Host)> = inv
        .hosts
        .iter()
        .enumerate()
        .filter(|(i, h)| !h.is_primary() && !target.out_of_service.contains(i))
        .collect();
    let session = |i: usize| target.sessions[i].clone();

    let mut primary_checks = HostChecks::new(primary);
    let primary_session = session(primary_index);
    let sync_names = inv
        .replication
        .synchronous
        .as_ref()
        .map(|s| s.standby_names());
    // Replicas that serve cascaded replicas: their view of them, like the primary's.
    let cascading: Vec<usize> = replicas
        .iter()
        .map(|&(i, _)| i)
        .filter(|&i| !inv.children_of(i).is_empty())
        .collect();
    // One round trip per host reads all it says (see `look`): the lines of its answer.
    let is_replica = |i: usize| replicas.iter().any(|&(r, _)| r == i);
    let json_lines_for = |i: usize| match i {
        _ if i == primary_index => 2,
        _ if is_replica(i) => 2 + usize::from(cascading.contains(&i)),
        _ => 1,
    };
    let sql_for = |i: usize| {
        if i == primary_index {
            format!("{PRIMARY_SQL};\n{STATUS_SQL};\n")
        } else if is_replica(i) {
            let upstream_view = if cascading.contains(&i) {
                format!("{PRIMARY_SQL};\n")
            } else {
                String::new()
            };
            // The write attempt last: it must fail, so errors may not stop the script;
            // whatever it did is rolled back.
            format!(
                "{REPLICA_SQL};\n{STATUS_SQL};\n{upstream_view}\\set ON_ERROR_STOP 0\nBEGIN; SET TRANSACTION READ WRITE; CREATE TABLE pgrepl_write_check (x int); ROLLBACK;\n"
            )
        } else {
            format!("{STATUS_SQL};\n")
        }
    };
    // The probe rides in the same sessions: each replica, once its checks are answered,
    // waits for a fresh token; once all wait, the primary's session writes it.
    let probe_plan = primary_session.as_ref().map(|_| ProbePlan::new(opts));
    let waiting: Vec<(usize, &Host)> = match &probe_plan {
        Some(_) => replicas
            .iter()
            .copied()
            .filter(|&(i, _)| target.sessions[i].is_some())
            .collect(),
        None => Vec::new(),
    };
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (go, when_ready) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let mut when_ready = Some(when_ready);
    let looks = futures::future::join_all(inv.hosts.iter().enumerate().map(|(i, h)| {
        let s = session(i);
        let json_lines = json_lines_for(i);
        let mut sql = sql_for(i);
        let mut later = None;
        let mut ready = None;
        if let Some(plan) = &probe_plan {
            if i == primary_index {
                later = when_ready.take();
            } else if waiting.iter().any(|&(w, _)| w == i) {
                sql.push_str(&plan.wait);
                ready = Some(Ready {
                    tx: ready_tx.clone(),
                    sent: false.into(),
                });
            }
        }
        async move {
            let s = s?;
            let started = std::time::Instant::now();
            let look = look(&s, h, sql, json_lines, later, ready.as_ref()).await;
            // A wait that ended without getting ready (server down) must not hold up the write.
            if let Some(ready) = &ready {
                ready.once();
            }
            Some((look, started.elapsed()))
        }
    }));
    drop(ready_tx);
    let write = probe_plan.as_ref().map(|p| p.write.clone());
    let ready_then_go = async {
        let Some(write) = write else { return };
        let expected = waiting.len();
        // A replica reads its moved-aside dirs and its checks before it waits: give it the
        // probe's whole time to get there.
        let _ = tokio::time::timeout(opts.probe_timeout, async {
            let mut ready = 0;
            // Each waiter sends once: when ready, or when it ended without.
            while ready < expected && ready_rx.recv().await.is_some() {
                ready += 1;
            }
        })
        .await;
        let _ = go.send(write.into_bytes());
    };
    // The looks (with the probe) and the endpoints (HAProxy's pools, their ports) are
    // independent round trips.
    let ((looks, ()), endpoints) = tokio::join!(
        async { tokio::join!(looks, ready_then_go) },
        crate::actions::endpoints::verify(target, target.password)
    );
    let waited: Vec<Duration> = looks
        .iter()
        .map(|l| l.as_ref().map_or(Duration::ZERO, |(_, d)| *d))
        .collect();
    let looks: Vec<Option<Result<Look, String>>> =
        looks.into_iter().map(|l| l.map(|(l, _)| l)).collect();
    let look_at = |i: usize| -> Result<&Look, String> {
        match &looks[i] {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!(
                "cannot reach host `{}`: {}",
                inv.hosts[i].name,
                target.unreachable[i].clone().unwrap_or_default()
            )),
        }
    };
    let view = look_at(primary_index).and_then(|l| l.answer(0));
    let mut replica_checks: Vec<HostChecks> = replicas
        .iter()
        .map(|&(i, host)| {
            let upstream = inv.upstream_of(host).unwrap_or(primary);
            let mut checks = HostChecks::new(host);
            checks.upstream = Some(upstream.name.clone());
            match (&looks[i], look_at(i)) {
                (None, Err(e)) => checks.add("reachable", Health::Fail, e),
                (_, Err(e)) => checks.add("query", Health::Fail, e),
                (_, Ok(l)) => {
                    check_replica(l, host, upstream, opts, sync_names.as_deref(), &mut checks)
                }
            }
            checks
        })
        .collect();
    let upstream_views: Vec<Result<PrimaryView, String>> = cascading
        .iter()
        .map(|&i| look_at(i).and_then(|l| l.answer(2)))
        .collect();
    // Who accepts writes, on every host (a split brain is named with each timeline).
    let status_line = |i: usize| {
        if i == primary_index || replicas.iter().any(|&(r, _)| r == i) {
            1
        } else {
            0
        }
    };
    let answers: Vec<crate::status::Answer> = (0..inv.hosts.len())
        .map(|i| match (&looks[i], look_at(i)) {
            (None, _) => Err(None),
            (_, Err(e)) => Err(Some(e)),
            (_, Ok(l)) if !l.running => Ok(None),
            (_, Ok(l)) => l.answer(status_line(i)).map(Some).map_err(Some),
        })
        .collect();
    let seen = crate::status::assemble(target, answers);
    // Data dirs moved aside by earlier copies, on every host: their share of the disk.
    let asides: Vec<Option<&crate::cleanup::Aside>> = (0..inv.hosts.len())
        .map(|i| look_at(i).ok().map(|l| &l.aside))
        .collect();

    match &view {
        Err(e) => primary_checks.add("reachable", Health::Fail, e.clone()),
        Ok(v) => {
            let out: Vec<&Host> = target
                .out_of_service
                .iter()
                .map(|&i| &inv.hosts[i])
                .collect();
            check_primary(
                v,
                primary,
                &replicas,
                &out,
                opts,
                &mut primary_checks,
                &mut replica_checks,
            );
            if let Some(sync) = &inv.replication.synchronous
                && !v.in_recovery
            {
                check_sync(v, sync, primary, &mut primary_checks);
            }
        }
    }
    for (&u, uv) in cascading.iter().zip(&upstream_views) {
        check_cascaded(inv, u, uv, opts, &mut replica_checks);
    }
    let primary_position = view
        .as_ref()
        .ok()
        .and_then(|v| v.position.as_deref())
        .and_then(crate::actions::switchover::parse_lsn);
    for rc in &mut replica_checks {
        if let (Some(at), Some(replayed)) = (primary_position, rc.replayed) {
            let behind = at.saturating_sub(replayed);
            rc.primary_lag_bytes = Some(behind);
            if rc.upstream.as_deref() != Some(primary.name.as_str()) {
                let (status, more) = if behind > opts.max_lag_bytes {
                    (
                        Health::Warn,
                        format!(", above --max-lag-bytes {}", opts.max_lag_bytes),
                    )
                } else {
                    (Health::Ok, String::new())
                };
                let through = rc.upstream.clone().unwrap_or_default();
                rc.add(
                    "behind the primary",
                    status,
                    format!(
                        "replayed {behind} B behind {} (through `{through}`){more}",
                        primary.name
                    ),
                );
            }
        }
    }
    // A primary that turns out to be a standby refuses the write: no probe then.
    let (probe, write_error) = match (&view, &probe_plan) {
        (Ok(v), Some(_)) if !v.in_recovery => {
            probe_outcome(&looks, &waited, primary_index, primary, &waiting, opts)
        }
        _ => (Vec::new(), None),
    };
    if let Some(e) = write_error {
        primary_checks.add("probe", Health::Fail, e);
    }
    {
        for p in &probe {
            if let Some(c) = replica_checks.iter_mut().find(|c| c.name == p.host) {
                // A replica already found down: say so, not that the row was late.
                let down = c.checks.iter().any(|k| {
                    k.status == Health::Fail && (k.name == "running" || k.name == "reachable")
                });
                let detail = match (p.delay_ms, &p.error) {
                    (Some(ms), _) => format!("probe row replayed in {ms:.1} ms"),
                    (None, _) if down => format!(
                        "no probe: the replica was down (its wait ended after {:.1} s)",
                        p.waited_seconds
                    ),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "probe row not seen".into(),
                };
                c.add("probe", p.status, detail);
            }
        }
    }
    let mut hosts = vec![primary_checks];
    hosts.extend(replica_checks);
    for (h, aside) in inv.hosts.iter().zip(&asides) {
        if let (Some(checks), Some((status, detail))) = (
            hosts.iter_mut().find(|c| c.name == h.name),
            aside.and_then(|a| a.check(h.is_primary())),
        ) {
            checks.add("old data dirs", status, detail);
        }
    }
    hosts.extend(endpoints);
    if let Some(split) = seen.split_brain() {
        for h in hosts
            .iter_mut()
            .filter(|h| seen.primaries.contains(&h.name))
        {
            h.add("split brain", Health::Fail, split.clone());
        }
    }
    let status = hosts.iter().map(|h| h.status).max().unwrap_or(Health::Ok);
    VerifyReport {
        status,
        hosts,
        probe,
    }
}

/// What one round trip to a host reads for verify (see [`look`]).
struct Look {
    /// The data dirs moved aside beside its own.
    aside: crate::cleanup::Aside,
    /// Whether its server runs (its postmaster.pid names a live process).
    running: bool,
    /// psql's answer to the host's checks, when the server runs: their JSON lines, and
    /// what it said on stderr before the probe's part (a refused write, say).
    checks: Option<crate::ssh::Output>,
    /// The probe's part of the session, when it got there: the replay delay a replica
    /// printed, or why not; what the primary's write said.
    probe: Option<crate::ssh::Output>,
}

impl Look {
    /// Line `n` of psql's answer, read as JSON; why not, when it cannot be.
    fn answer<T: serde::de::DeserializeOwned>(&self, n: usize) -> Result<T, String> {
        let out = match &self.checks {
            None => return Err("PostgreSQL is not running".into()),
            Some(out) if !out.success() => return Err(out.stderr.trim().to_string()),
            Some(out) => out,
        };
        let text = out.stdout.lines().nth(n).unwrap_or_default();
        serde_json::from_str(text)
            .map_err(|e| format!("unexpected answer from PostgreSQL ({e}): {text}"))
    }
}

/// The notice a session's probe part begins with, on stderr (a `DO` block's notice, which
/// every psql prints; `\warn` is psql 13 and later).
const PROBE_MARKER: &str = "pgrepl-probe-part";

/// The SQL that prints [`PROBE_MARKER`].
const PROBE_MARKER_SQL: &str = "DO $$BEGIN RAISE NOTICE 'pgrepl-probe-part'; END$$;";

/// Reads, in one round trip to the host: the data dirs moved aside beside its own, whether
/// its server runs, and (when it does) psql's answer to `sql`, whose first `json_lines`
/// lines of output are the checks' answers; a probe part may follow (see [`ProbePlan`]),
/// with more of it sent once `later` yields it, and `ready` told when the replica waits.
/// One program per question would cost a loaded host more than the questions.
async fn look(
    session: &Session,
    host: &Host,
    sql: String,
    json_lines: usize,
    later: Option<tokio::sync::oneshot::Receiver<Vec<u8>>>,
    ready: Option<&Ready>,
) -> Result<Look, String> {
    let data = &host.pg.data_dir;
    let list = format!(
        "d=\"${{data%/}}\"\n{{\n{}\n}} 2>/dev/null",
        crate::cleanup::LIST_BODY
    );
    let out = session
        .output_with(
            &Pg::new(session, host).psql_when_running(&list).stdin(sql),
            later,
            |stream, line| {
                if stream == Stream::Stderr
                    && line.contains("pgrepl-probe-ready")
                    && let Some(ready) = ready
                {
                    ready.once();
                }
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let Some((list, running, answer)) = crate::pg::split_when_running(&out.stdout) else {
        return Err(format!(
            "cannot read the host's state: {}",
            out.stderr.trim()
        ));
    };
    let lines: Vec<&str> = answer.lines().collect();
    let stderr: Vec<&str> = out.stderr.lines().collect();
    let marker = stderr
        .iter()
        .position(|l| l.trim_end().ends_with(&format!("NOTICE:  {PROBE_MARKER}")));
    let (checks_err, probe_err) = match marker {
        Some(m) => (&stderr[..m], &stderr[m + 1..]),
        None => (&stderr[..], &stderr[stderr.len()..]),
    };
    let split = json_lines.min(lines.len());
    Ok(Look {
        aside: crate::cleanup::parse_list(list, data),
        running,
        checks: running.then(|| crate::ssh::Output {
            // Past the marker, the checks were all answered whatever the probe did.
            status: if marker.is_some() { 0 } else { out.status },
            stdout: lines[..split].join("\n"),
            stderr: checks_err.join("\n"),
        }),
        probe: (running && marker.is_some()).then(|| crate::ssh::Output {
            status: out.status,
            stdout: lines[split..].join("\n"),
            stderr: probe_err.join("\n"),
        }),
    })
}

/// Tells the probe's writer that one replica waits: once, when its session says so, or
/// when the session ended without it (a replica that is down must not hold the write).
struct Ready {
    tx: tokio::sync::mpsc::UnboundedSender<()>,
    sent: std::sync::atomic::AtomicBool,
}

impl Ready {
    fn once(&self) {
        if !self.sent.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = self.tx.send(());
        }
    }
}

/// The probe, as parts of the hosts' verify sessions: a fresh token each run.
struct ProbePlan {
    /// A replica's part, after its checks: wait for the row with the token, report the
    /// delay between the primary's commit time and when it saw the row.
    wait: String,
    /// The primary's part, sent once every replica waits: write the row.
    write: String,
}

impl ProbePlan {
    fn new(opts: &VerifyOptions) -> Self {
        let token: String = (0..16)
            .map(|_| format!("{:x}", rand::random::<u8>() & 15))
            .collect();
        let timeout_s = opts.probe_timeout.as_secs_f64();
        // Into the probe database (schema `pgrepl`), when it is not the session's own.
        let connect = match opts.probe_database.as_str() {
            "postgres" => String::new(),
            db => format!("\\c '{}'\n", db.replace('\'', "''")),
        };
        let wait = format!(
            "\\set ON_ERROR_STOP 1
{PROBE_MARKER_SQL}
{connect}SET application_name = 'pgrepl-probe';
DO $$
DECLARE written timestamptz; deadline timestamptz := clock_timestamp() + interval '{timeout_s} s';
BEGIN
  RAISE NOTICE 'pgrepl-probe-ready';
  LOOP
    IF to_regclass('pgrepl.probe') IS NOT NULL THEN
      EXECUTE 'SELECT written_at FROM pgrepl.probe WHERE id = 1 AND token = $1' INTO written USING {token};
      IF written IS NOT NULL THEN
        PERFORM set_config('pgrepl.probe_ms', (extract(epoch FROM clock_timestamp() - written) * 1000)::text, false);
        RETURN;
      END IF;
    END IF;
    IF clock_timestamp() > deadline THEN RAISE EXCEPTION 'probe row not replayed within {timeout_s} s'; END IF;
    PERFORM pg_sleep(0.001);
    -- A new transaction each round sees replayed catalog changes (the table's creation).
    COMMIT;
  END LOOP;
END $$;
SELECT current_setting('pgrepl.probe_ms');
",
            token = literal(&token)
        );
        // pgrepl's own write never waits for synchronous standbys (see `Pg::psql`).
        let write = format!(
            "{PROBE_MARKER_SQL}
{connect}SET synchronous_commit = local;
CREATE SCHEMA IF NOT EXISTS pgrepl;
CREATE TABLE IF NOT EXISTS pgrepl.probe (id int PRIMARY KEY, token text NOT NULL, written_at timestamptz NOT NULL);
COMMENT ON TABLE pgrepl.probe IS 'pgrepl verify: one row, rewritten by each probe';
INSERT INTO pgrepl.probe VALUES (1, {token}, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET token = excluded.token, written_at = excluded.written_at;
",
            token = literal(&token)
        );
        ProbePlan { wait, write }
    }
}

/// The probe's results from the looks: each waiting replica's delay (or why none), and
/// why the primary could not write the row, if it could not.
fn probe_outcome(
    looks: &[Option<Result<Look, String>>],
    waited: &[Duration],
    primary_index: usize,
    primary: &Host,
    waiting: &[(usize, &Host)],
    opts: &VerifyOptions,
) -> (Vec<Probe>, Option<String>) {
    let written: Result<(), String> = match &looks[primary_index] {
        None => Err("the primary was not reached".into()),
        Some(Err(e)) => Err(e.clone()),
        Some(Ok(l)) => match (&l.checks, &l.probe) {
            (None, _) => Err("PostgreSQL is not running".into()),
            (Some(c), None) => Err(c.stderr.trim().to_string()),
            (_, Some(p)) if !p.success() => Err(p.stderr.trim().to_string()),
            _ => Ok(()),
        },
    };
    let written = written.map_err(|e| write_error(&e, &opts.probe_database, &primary.name));
    let mut out = Vec::new();
    for &(i, host) in waiting {
        let wait = waited[i];
        let (delay, error) = match (&written, &looks[i]) {
            (Err(e), _) => (None, Some(e.clone())),
            (Ok(()), None) => continue,
            (Ok(()), Some(Err(e))) => (None, Some(probe_error(e, wait, opts.probe_timeout))),
            (Ok(()), Some(Ok(l))) => match (&l.checks, &l.probe) {
                (None, _) => (
                    None,
                    Some(format!(
                        "no probe: the replica was down (its wait ended after {:.1} s)",
                        wait.as_secs_f64()
                    )),
                ),
                (Some(c), None) => (None, Some(probe_error(&c.stderr, wait, opts.probe_timeout))),
                (_, Some(p)) => {
                    let delay = p
                        .stdout
                        .trim()
                        .lines()
                        .last()
                        .and_then(|l| l.parse::<f64>().ok());
                    match delay {
                        Some(d) if p.success() => (Some(d), None),
                        _ if !p.success() => {
                            (None, Some(probe_error(&p.stderr, wait, opts.probe_timeout)))
                        }
                        _ => (
                            None,
                            Some(format!("unexpected answer: {}", p.stdout.trim())),
                        ),
                    }
                }
            },
        };
        out.push(Probe {
            host: host.name.clone(),
            delay_ms: delay.map(|d| d.max(0.0)),
            delay_seconds: delay.map(|d| d.max(0.0) / 1000.0),
            status: if delay.is_some() {
                Health::Ok
            } else {
                Health::Fail
            },
            waited_seconds: wait.as_secs_f64(),
            error,
        });
    }
    (out, written.err())
}

fn check_primary(
    v: &PrimaryView,
    primary: &Host,
    replicas: &[(usize, &Host)],
    out_of_service: &[&Host],
    opts: &VerifyOptions,
    pc: &mut HostChecks,
    rcs: &mut [HostChecks],
) {
    if v.in_recovery {
        pc.add(
            "not in recovery",
            Health::Fail,
            "the primary is in recovery (a standby): it cannot be the primary",
        );
        return;
    }
    pc.add("not in recovery", Health::Ok, "accepts writes");
    pc.slots = v.slots.iter().map(SlotRow::state).collect();
    let direct: Vec<(&Host, &mut HostChecks)> = replicas
        .iter()
        .zip(rcs.iter_mut())
        .filter(|(_, rc)| rc.upstream.as_deref() == Some(primary.name.as_str()))
        .map(|((_, h), rc)| (*h, rc))
        .collect();
    let served = direct.len();
    let known: Vec<&str> = direct
        .iter()
        .filter_map(|(h, _)| h.slot.as_deref())
        .collect();
    let matched = check_links(v, primary, direct, opts);
    pc.add(
        "replicas connected",
        if matched == served {
            Health::Ok
        } else {
            Health::Fail
        },
        format!("{matched} of {served} inventory replicas stream from it"),
    );
    for s in v.slots.iter().filter(|s| !known.contains(&s.name.as_str())) {
        let retained = s.retained_bytes.unwrap_or(0.0).max(0.0) as u64;
        if let Some(h) = out_of_service
            .iter()
            .find(|h| h.slot.as_deref() == Some(s.name.as_str()))
        {
            pc.add(
                "kept slot",
                Health::Ok,
                format!(
                    "slot {} kept for `{}` (out of service) so it can rejoin without a copy; retains {retained} B; `pgrepl rejoin {}`",
                    s.name, h.name, h.name
                ),
            );
            continue;
        }
        if !s.active {
            pc.add("extra slot", Health::Warn, format!("inactive slot {} retains {retained} B of WAL and is not in the inventory: it will fill the disk; drop it with SELECT pg_drop_replication_slot('{}')", s.name, s.name));
        } else {
            pc.add(
                "extra slot",
                Health::Warn,
                format!("active slot {} is not in the inventory", s.name),
            );
        }
    }
}

/// The replicas a member serves (the primary, or a cascading replica), as it sees them:
/// each one's walsender row and slot there. Returns how many stream from it.
fn check_links(
    v: &PrimaryView,
    sender: &Host,
    links: Vec<(&Host, &mut HostChecks)>,
    opts: &VerifyOptions,
) -> usize {
    let mut matched = 0;
    for (host, rc) in links {
        let rows: Vec<&StatRow> = v
            .replication
            .iter()
            .filter(|r| {
                r.application_name.as_deref() == Some(host.name.as_str())
                    && (host.address.parse::<std::net::IpAddr>().is_err()
                        || r.client_addr.as_deref() == Some(host.address.as_str()))
            })
            .collect();
        // A replica has one streaming walsender; others under its name are leftovers (say a
        // base backup cut off by a lost network, until wal_sender_timeout ends it).
        let row = rows
            .iter()
            .find(|r| r.state.as_deref() == Some("streaming"))
            .or(rows.first())
            .copied();
        if rows.len() > 1 {
            rc.add(
                "extra walsenders",
                Health::Warn,
                format!(
                    "{} connections from {} on {}; the extra ones end at wal_sender_timeout",
                    rows.len(),
                    host.name,
                    sender.name
                ),
            );
        }
        match row {
            None => rc.add("pg_stat_replication", Health::Fail, format!("no pg_stat_replication row on {} for application_name {} from {}: the replica is not connected", sender.name, host.name, host.address)),
            Some(r) => {
                matched += 1;
                rc.lag = Some(r.lag());
                let state = r.state.clone().unwrap_or_default();
                let lag_b = r.replay_lag_bytes.unwrap_or(0.0).max(0.0) as u64;
                let lag_s = r.replay_lag_s.unwrap_or(0.0);
                let detail = format!(
                    "{state} ({}), lag write/flush/replay {}/{}/{} B, {:.3}/{:.3}/{:.3} s",
                    r.sync_state.clone().unwrap_or_default(),
                    r.write_lag_bytes.unwrap_or(0.0).max(0.0) as u64,
                    r.flush_lag_bytes.unwrap_or(0.0).max(0.0) as u64,
                    lag_b,
                    r.write_lag_s.unwrap_or(0.0),
                    r.flush_lag_s.unwrap_or(0.0),
                    lag_s
                );
                // `catchup` is a connected standby still closing the gap (a fresh copy on a
                // busy host): a warning, not a failure; any other state is one.
                let status = if state != "streaming" && state != "catchup" {
                    Health::Fail
                } else if state == "catchup"
                    || lag_b > opts.max_lag_bytes
                    || lag_s > opts.max_lag_seconds
                {
                    Health::Warn
                } else {
                    Health::Ok
                };
                let detail = if status == Health::Warn && state == "catchup" {
                    format!("{detail}: still catching up; `pgrepl verify` again shortly")
                } else if status == Health::Warn {
                    format!("{detail}: above --max-lag-bytes {} / --max-lag-seconds {}", opts.max_lag_bytes, opts.max_lag_seconds)
                } else {
                    detail
                };
                rc.add("pg_stat_replication", status, detail);
            }
        }
        let slot = host.slot.as_deref().unwrap_or_default();
        rc.slot = v.slots.iter().find(|s| s.name == slot).map(SlotRow::state);
        match v.slots.iter().find(|s| s.name == slot) {
            None => rc.add("slot", Health::Fail, format!("slot {slot} is missing on {}: it may remove WAL this replica still needs (re-run bootstrap to create it)", sender.name)),
            Some(s) => {
                let retained = s.retained_bytes.unwrap_or(0.0).max(0.0) as u64;
                if !s.active {
                    rc.add("slot", Health::Fail, format!("slot {slot} is inactive (retaining {retained} B): the replica does not stream through it"));
                } else if retained > opts.max_slot_retained {
                    rc.add("slot", Health::Warn, format!("slot {slot} retains {retained} B, above --max-slot-retained {}", opts.max_slot_retained));
                } else {
                    rc.add("slot", Health::Ok, format!("slot {slot} active, retaining {retained} B"));
                }
            }
        }
    }
    matched
}

/// A replica serving cascaded replicas: its walsenders and slots for them, as for the
/// primary's replicas; when it is down, its replicas are named with the cause.
fn check_cascaded(
    inv: &crate::inventory::Inventory,
    upstream: usize,
    view: &Result<PrimaryView, String>,
    opts: &VerifyOptions,
    rcs: &mut [HostChecks],
) {
    let sender = &inv.hosts[upstream];
    let children: Vec<&Host> = inv
        .children_of(upstream)
        .into_iter()
        .map(|c| &inv.hosts[c])
        .collect();
    let is_child = |rc: &HostChecks| children.iter().any(|h| h.name == rc.name);
    let v = match view {
        Ok(v) => v,
        Err(e) => {
            for rc in rcs.iter_mut().filter(|rc| is_child(rc)) {
                rc.add(
                    "upstream",
                    Health::Fail,
                    format!(
                        "its upstream `{}` is down ({e}): it cannot stream until `{}` runs again, or `pgrepl remove-replica {}` moves it to `{}`'s upstream",
                        sender.name, sender.name, sender.name, sender.name
                    ),
                );
            }
            return;
        }
    };
    let links: Vec<(&Host, &mut HostChecks)> = rcs
        .iter_mut()
        .filter(|rc| is_child(rc))
        .filter_map(|rc| Some((*children.iter().find(|h| h.name == rc.name)?, rc)))
        .collect();
    let served = links.len();
    let matched = check_links(v, sender, links, opts);
    if let Some(uc) = rcs.iter_mut().find(|rc| rc.name == sender.name) {
        uc.slots = v.slots.iter().map(SlotRow::state).collect();
        uc.add(
            "replicas connected",
            if matched == served {
                Health::Ok
            } else {
                Health::Fail
            },
            format!("{matched} of {served} cascaded replicas stream from it"),
        );
    }
}

/// The primary's synchronous replication against the inventory: fails when fewer named
/// standbys stream than commits need (they wait, or will), warns with no margin or when off.
fn check_sync(
    v: &PrimaryView,
    sync: &crate::inventory::Synchronous,
    primary: &Host,
    pc: &mut HostChecks,
) {
    use crate::pg::sync::{Judgement, Observed, judge};
    let seen = Observed {
        value: v.sync_names.clone(),
        source: v.sync_source.clone(),
        waiting: v.sync_waiting,
        streaming: v
            .replication
            .iter()
            .filter(|r| r.state.as_deref() == Some("streaming"))
            .filter_map(|r| {
                Some((
                    r.application_name.clone()?,
                    r.sync_state.clone().unwrap_or_default(),
                ))
            })
            .collect(),
    };
    let (status, detail) = match judge(sync, &primary.name, &seen) {
        Judgement::Ok(d) => (Health::Ok, d),
        Judgement::Warn(d) => (Health::Warn, d),
        Judgement::Fail(d) => (Health::Fail, d),
    };
    pc.add("synchronous", status, detail);
}

fn check_replica(
    look: &Look,
    host: &Host,
    primary: &Host,
    opts: &VerifyOptions,
    sync_names: Option<&str>,
    rc: &mut HostChecks,
) {
    let out = match &look.checks {
        None => {
            return rc.add(
                "running",
                Health::Fail,
                format!("PostgreSQL is not running on {}", host.name),
            );
        }
        Some(out) if !out.success() => {
            return rc.add("query", Health::Fail, out.stderr.trim().to_string());
        }
        Some(out) => out,
    };
    let view: ReplicaView =
        match serde_json::from_str(out.stdout.lines().next().unwrap_or_default()) {
            Ok(v) => v,
            Err(e) => {
                return rc.add(
                    "query",
                    Health::Fail,
                    format!("unexpected answer ({e}): {}", out.stdout.trim()),
                );
            }
        };
    let write_refused = out.stderr.contains("ERROR");
    if !view.in_recovery {
        return rc.add(
            "in recovery",
            Health::Fail,
            "not in recovery: this host was promoted or never became a standby",
        );
    }
    rc.add("in recovery", Health::Ok, "standby");
    if let Some(want) = sync_names
        && view.sync_names != want
    {
        rc.add(
            "synchronous",
            Health::Warn,
            format!(
                "synchronous_standby_names here is '{}', the inventory says '{want}': promoted, it would run so; re-run `pgrepl bootstrap`{}",
                view.sync_names,
                if view.sync_names.is_empty() {
                    " (an override of `pgrepl sync off` left here? `pgrepl sync on` removes it)"
                } else {
                    ""
                }
            ),
        );
    }
    match &view.receiver {
        None => rc.add(
            "wal receiver",
            Health::Fail,
            "no WAL receiver: the standby does not stream from anyone",
        ),
        Some(r) => {
            let sender = r.sender_host.clone().unwrap_or_default();
            let slot = r.slot_name.clone().unwrap_or_default();
            let want_slot = host.slot.clone().unwrap_or_default();
            if sender != primary.address {
                let whom = if primary.is_primary() {
                    "the inventory's primary"
                } else {
                    "its upstream"
                };
                rc.add(
                    "wal receiver",
                    Health::Fail,
                    format!(
                        "streams from {sender}, not from {whom} {} ({})",
                        primary.name, primary.address
                    ),
                );
            } else if slot != want_slot {
                rc.add(
                    "wal receiver",
                    Health::Fail,
                    format!("streams through slot `{slot}`, not the expected `{want_slot}`"),
                );
            } else if r.status.as_deref() != Some("streaming") {
                rc.add(
                    "wal receiver",
                    Health::Fail,
                    format!("receiver is {}", r.status.clone().unwrap_or_default()),
                );
            } else {
                rc.add(
                    "wal receiver",
                    Health::Ok,
                    format!("streaming from {} through slot {slot}", primary.name),
                );
            }
        }
    }
    rc.replayed = view
        .replay_lsn
        .as_deref()
        .and_then(crate::actions::switchover::parse_lsn);
    let lag = view.lag_bytes.unwrap_or(0.0).max(0.0) as u64;
    rc.replay_backlog_bytes = view.lag_bytes.map(|b| b.max(0.0) as u64);
    if view.paused {
        rc.add(
            "replay",
            Health::Warn,
            format!("replay is paused (pg_wal_replay_pause), {lag} B received but not replayed"),
        );
    } else if lag > opts.max_lag_bytes {
        rc.add(
            "replay",
            Health::Warn,
            format!(
                "{lag} B received but not replayed, above --max-lag-bytes {}",
                opts.max_lag_bytes
            ),
        );
    } else {
        rc.add(
            "replay",
            Health::Ok,
            format!("{lag} B behind what it received"),
        );
    }
    if write_refused {
        rc.add("read-only", Health::Ok, "a write was refused")
    } else {
        rc.add(
            "read-only",
            Health::Fail,
            "a write was accepted (rolled back): this host is not a read-only standby",
        )
    }
}

fn write_error(error: &str, database: &str, primary: &str) -> String {
    if error.contains(&format!("database \"{database}\" does not exist")) {
        format!(
            "no probe: the probe database `{database}` does not exist on the primary `{primary}` (create it, or pass --probe-database with one that exists; the default is postgres)"
        )
    } else {
        format!("no probe: the probe row could not be written on the primary `{primary}`: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_that_ended_early_says_why_not_that_it_timed_out() {
        let down = probe_error(
            "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: No such file or directory",
            Duration::from_millis(400),
            Duration::from_secs(10),
        );
        assert_eq!(
            down,
            "no probe: the replica was down (its wait ended after 0.4 s)"
        );
        let late = probe_error(
            "ERROR:  probe row not replayed within 2 s",
            Duration::from_millis(2050),
            Duration::from_secs(2),
        );
        assert!(
            late.contains("not replayed") && late.contains("waited 2.0 s"),
            "{late}"
        );
        let other = probe_error(
            "\nERROR:  permission denied\n",
            Duration::from_secs(1),
            Duration::from_secs(10),
        );
        assert_eq!(
            other,
            "no probe: the wait ended after 1.0 s: ERROR:  permission denied"
        );
    }
}
