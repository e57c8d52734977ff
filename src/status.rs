//! `pgrepl status`: what each host is right now, read-only, fast, with no password and no
//! probe row. One query per reachable host, all at once.
//!
//! It is also how failover and verify see the whole cluster: which hosts accept writes (more
//! than one is a split brain, named with each one's timeline), which standbys still hear
//! from the primary, and how far each has received.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::inventory::Role;
use crate::pg::Pg;
use std::sync::Arc;

use crate::haproxy::ServerStat;
use crate::inventory::Inventory;
use crate::ssh::Session;
use crate::verify::VerifyOptions;

/// What status and verify read: the inventory and a session per reachable host.
pub struct Target<'a> {
    pub inventory: &'a Inventory,
    /// Sessions by host index; `None` where the host could not be reached.
    pub sessions: &'a [Option<Arc<Session>>],
    /// Why each unreachable host could not be reached.
    pub unreachable: &'a [Option<String>],
    pub options: &'a VerifyOptions,
    /// Hosts verify leaves out (a fenced old primary until `rejoin`).
    pub out_of_service: &'a [usize],
    /// The replication password, when known: verify tries the endpoints' ports with the
    /// health checks' password derived from it.
    pub password: Option<&'a secrecy::SecretString>,
}

/// How the cluster looks against the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    /// Every host as the inventory says: its primary, replicas streaming from it.
    Ok,
    /// Something is down, lagging or streaming from elsewhere; still exactly one primary.
    Degraded,
    /// No primary, or more than one (split brain).
    Failed,
}

/// What a host is, as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    Primary,
    Standby,
    /// PostgreSQL is not running.
    Down,
    /// SSH does not reach the host.
    Unreachable,
}

/// One host's line.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub name: String,
    /// The role the inventory gives it.
    pub inventory_role: Role,
    pub reachable: bool,
    pub up: bool,
    pub role: Seen,
    pub timeline: Option<u32>,
    /// Where the primary writes (bytes since 0/0).
    pub current_lsn: Option<u64>,
    /// What a standby has received and replayed (bytes since 0/0).
    pub received_lsn: Option<u64>,
    pub replayed_lsn: Option<u64>,
    /// The host (inventory name, or address) a standby streams from.
    pub upstream: Option<String>,
    /// The member the inventory says it streams from (a replica's `upstream`, else the
    /// primary); `null` for the primary.
    pub inventory_upstream: Option<String>,
    /// Whether its WAL receiver is streaming.
    pub streaming: bool,
    /// Seconds since its WAL receiver last heard from the upstream.
    pub last_message_seconds: Option<f64>,
    pub slot: Option<String>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// The primary's view: `async`, `sync`, `potential`, `quorum`.
    pub sync_state: Option<String>,
    /// WAL retained by this host's slot on the primary.
    pub slot_retained_bytes: Option<u64>,
    /// Why a value is missing (unreachable, query failed).
    pub error: Option<String>,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub status: Overall,
    /// Hosts that accept writes now.
    pub primaries: Vec<String>,
    pub hosts: Vec<HostStatus>,
    /// What makes the status degraded or failed, for people.
    pub problems: Vec<String>,
    /// The endpoints: each proxy's pools as HAProxy sees them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint's pools as HAProxy sees them (`show stat` on its admin socket).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// The proxy host.
    pub name: String,
    pub reachable: bool,
    pub write_port: u16,
    pub read_port: u16,
    /// Every server of every pool: its state and last check.
    pub servers: Vec<ServerStat>,
    pub error: Option<String>,
}

impl StatusReport {
    /// Adds the endpoints; one whose write pool is not exactly the primary, or that has
    /// no replica for reads, makes the status degraded.
    pub fn add_endpoints(&mut self, inv: &Inventory, endpoints: Vec<EndpointStatus>) {
        for e in &endpoints {
            for p in endpoint_problems(inv, e) {
                self.status = self.status.max(Overall::Degraded);
                self.problems.push(p);
            }
        }
        self.endpoints = endpoints;
    }
}

/// What is wrong with an endpoint's pools, for `status` (empty when all is well).
fn endpoint_problems(inv: &Inventory, e: &EndpointStatus) -> Vec<String> {
    if let Some(err) = &e.error {
        return vec![format!("endpoint `{}`: {err}", e.name)];
    }
    let primary = inv.hosts.iter().find(|h| h.is_primary()).map(|h| &h.name);
    let mut out = Vec::new();
    let writers: Vec<&ServerStat> = e
        .servers
        .iter()
        .filter(|s| s.backend == crate::haproxy::WRITE_BACKEND && s.takes_traffic())
        .collect();
    match (writers.as_slice(), primary) {
        ([one], Some(p)) if &one.server == p => {}
        ([], _) => out.push(format!("endpoint `{}`: no server takes writes", e.name)),
        (many, _) => out.push(format!(
            "endpoint `{}`: writes go to {} (the primary is {})",
            e.name,
            many.iter()
                .map(|s| s.server.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            primary.map_or("?", |p| p.as_str())
        )),
    }
    if !e
        .servers
        .iter()
        .any(|s| s.backend == crate::haproxy::READ_BACKEND && s.takes_traffic())
    {
        out.push(format!("endpoint `{}`: no replica takes reads", e.name));
    }
    out
}

impl StatusReport {
    /// The host status by name.
    pub fn host(&self, name: &str) -> Option<&HostStatus> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Split brain: the writable hosts with their timelines, when there is more than one.
    pub fn split_brain(&self) -> Option<String> {
        (self.primaries.len() > 1).then(|| {
            let each: Vec<String> = self
                .primaries
                .iter()
                .filter_map(|p| self.host(p))
                .map(|h| {
                    format!(
                        "`{}` (timeline {})",
                        h.name,
                        h.timeline.map_or("?".into(), |t| t.to_string())
                    )
                })
                .collect();
            format!("split brain: {} all accept writes", each.join(" and "))
        })
    }
}

/// One host's answer to [`STATUS_SQL`].
#[derive(Debug, Deserialize)]
pub(crate) struct Row {
    in_recovery: bool,
    timeline: Option<u32>,
    current_lsn: Option<i64>,
    receive_lsn: Option<i64>,
    replay_lsn: Option<i64>,
    receiver: Option<ReceiverRow>,
    replication: Vec<ReplicationRow>,
    slots: Vec<SlotRow>,
    /// Commits waiting for a synchronous standby.
    #[serde(default)]
    sync_waiting: u64,
}

#[derive(Debug, Deserialize)]
struct ReceiverRow {
    status: Option<String>,
    slot_name: Option<String>,
    sender_host: Option<String>,
    last_msg_age: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ReplicationRow {
    application_name: String,
    sync_state: Option<String>,
    lag_bytes: Option<i64>,
    lag_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct SlotRow {
    slot_name: String,
    retained_bytes: Option<i64>,
}

/// What each host says about its role and replication (one JSON row); verify asks it in
/// its own round trip to each host.
pub(crate) const STATUS_SQL: &str = "SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery()
      THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
      ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  'sync_waiting', (SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'),
  'current_lsn', CASE WHEN NOT pg_is_in_recovery() THEN pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END,
  'receive_lsn', pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint,
  'replay_lsn', pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,
  'receiver', (SELECT row_to_json(r) FROM (SELECT status, slot_name, sender_host,
      extract(epoch FROM clock_timestamp() - last_msg_receipt_time)::float8 AS last_msg_age FROM pg_stat_wal_receiver) r),
  'replication', CASE WHEN pg_is_in_recovery() THEN '[]'::json ELSE (SELECT coalesce(json_agg(row_to_json(r)), '[]') FROM (
      SELECT application_name, sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
             extract(epoch FROM replay_lag)::float8 AS lag_seconds FROM pg_stat_replication) r) END,
  'slots', (SELECT coalesce(json_agg(row_to_json(s)), '[]') FROM (SELECT slot_name,
      pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::bigint AS retained_bytes
      FROM pg_replication_slots) s))";

/// Reads every host at once and judges the cluster against the inventory.
pub async fn gather(target: &Target<'_>) -> StatusReport {
    let inv = target.inventory;
    let rows = futures::future::join_all(inv.hosts.iter().enumerate().map(|(i, host)| {
        let session = target.sessions[i].clone();
        async move {
            let Some(session) = session else {
                return Err(None);
            };
            Pg::new(&session, host)
                .query_if_running::<Row>(STATUS_SQL)
                .await
                .map_err(|e| Some(e.to_string()))
        }
    }))
    .await;
    assemble(target, rows)
}

/// A host's answer to [`STATUS_SQL`]: `Ok(None)` when its server is down, `Err(None)` when
/// it was not reached, `Err(Some(why))` when it could not answer.
pub(crate) type Answer = Result<Option<Row>, Option<String>>;

/// Judges the cluster from every host's answer (in inventory order).
pub(crate) fn assemble(target: &Target<'_>, rows: Vec<Answer>) -> StatusReport {
    let inv = target.inventory;
    let name_of = |address: &str| {
        inv.hosts
            .iter()
            .find(|h| h.address == address)
            .map_or(address.to_string(), |h| h.name.clone())
    };
    let mut hosts: Vec<HostStatus> = inv
        .hosts
        .iter()
        .zip(&rows)
        .enumerate()
        .map(|(i, (host, row))| {
            let mut s = HostStatus {
                name: host.name.clone(),
                inventory_role: host.role,
                reachable: target.sessions[i].is_some(),
                up: false,
                role: Seen::Down,
                timeline: None,
                current_lsn: None,
                received_lsn: None,
                replayed_lsn: None,
                upstream: None,
                inventory_upstream: inv.upstream_of(host).map(|u| u.name.clone()),
                streaming: false,
                last_message_seconds: None,
                slot: None,
                lag_bytes: None,
                lag_seconds: None,
                sync_state: None,
                slot_retained_bytes: None,
                error: None,
            };
            match row {
                Err(None) => {
                    s.role = Seen::Unreachable;
                    s.error = target.unreachable[i].clone();
                }
                Err(Some(e)) => s.error = Some(e.clone()),
                Ok(None) => {}
                Ok(Some(r)) => {
                    s.up = true;
                    s.role = if r.in_recovery {
                        Seen::Standby
                    } else {
                        Seen::Primary
                    };
                    s.timeline = r.timeline;
                    s.current_lsn = r.current_lsn.map(|v| v as u64);
                    s.received_lsn = r.receive_lsn.map(|v| v as u64);
                    s.replayed_lsn = r.replay_lsn.map(|v| v as u64);
                    if let Some(rx) = &r.receiver {
                        s.upstream = rx.sender_host.as_deref().map(name_of);
                        s.streaming = rx.status.as_deref() == Some("streaming");
                        s.last_message_seconds = rx.last_msg_age;
                        s.slot = rx.slot_name.clone();
                    }
                }
            }
            s
        })
        .collect();
    // The writable hosts' view of their standbys: sync state, lag, slots.
    for (i, row) in rows.iter().enumerate() {
        let Ok(Some(r)) = row else { continue };
        if r.in_recovery {
            continue;
        }
        for rep in &r.replication {
            if let Some(h) = hosts.iter_mut().find(|h| h.name == rep.application_name) {
                h.sync_state = rep.sync_state.clone();
                h.lag_bytes = rep.lag_bytes.map(|v| v.max(0) as u64);
                h.lag_seconds = rep.lag_seconds;
            }
        }
        for slot in &r.slots {
            if let Some(h) = hosts.iter_mut().enumerate().find_map(|(j, h)| {
                (j != i && inv.hosts[j].slot.as_deref() == Some(slot.slot_name.as_str()))
                    .then_some(h)
            }) {
                h.slot_retained_bytes = slot.retained_bytes.map(|v| v.max(0) as u64);
            }
        }
    }
    // A standby the primary does not list: lag from positions.
    let primary_lsn = hosts
        .iter()
        .filter(|h| h.role == Seen::Primary)
        .find_map(|h| h.current_lsn);
    for h in &mut hosts {
        if h.role == Seen::Standby
            && h.lag_bytes.is_none()
            && let (Some(p), Some(r)) = (primary_lsn, h.replayed_lsn)
        {
            h.lag_bytes = Some(p.saturating_sub(r));
        }
    }
    let mut report = judge(hosts);
    for (host, row) in inv.hosts.iter().zip(&rows) {
        if let Ok(Some(r)) = row
            && r.sync_waiting > 0
        {
            report.status = report.status.max(Overall::Degraded);
            report.problems.push(format!(
                "{} commit(s) on `{}` wait for synchronous standbys (`pgrepl verify` names them; `pgrepl sync off` releases the commits)",
                r.sync_waiting, host.name
            ));
        }
    }
    report
}

fn judge(hosts: Vec<HostStatus>) -> StatusReport {
    let primaries: Vec<String> = hosts
        .iter()
        .filter(|h| h.role == Seen::Primary)
        .map(|h| h.name.clone())
        .collect();
    let mut problems = Vec::new();
    let mut status = Overall::Ok;
    let mut degrade = |why: String, problems: &mut Vec<String>| {
        status = status.max(Overall::Degraded);
        problems.push(why);
    };
    for h in &hosts {
        match (h.inventory_role, h.role) {
            (_, Seen::Unreachable) => {
                degrade(format!("`{}` is unreachable", h.name), &mut problems)
            }
            (_, Seen::Down) => {
                degrade(format!("PostgreSQL is down on `{}`", h.name), &mut problems)
            }
            (Role::Primary, Seen::Standby) => degrade(
                format!(
                    "`{}` is the inventory's primary but runs as a standby",
                    h.name
                ),
                &mut problems,
            ),
            (Role::Replica, Seen::Standby) => {
                let upstream = h.inventory_upstream.as_deref();
                if !h.streaming || h.upstream.as_deref() != upstream {
                    // A cascaded replica of a member that is down: say that first.
                    let cause = hosts
                        .iter()
                        .find(|u| Some(u.name.as_str()) == upstream)
                        .filter(|u| matches!(u.role, Seen::Down | Seen::Unreachable))
                        .map(|u| format!(": `{}` is down", u.name));
                    degrade(
                        format!(
                            "`{}` does not stream from `{}`{}",
                            h.name,
                            upstream.unwrap_or("?"),
                            cause.unwrap_or_else(|| h
                                .upstream
                                .as_deref()
                                .map(|u| format!(" (it streams from: `{u}`)"))
                                .unwrap_or_default())
                        ),
                        &mut problems,
                    );
                }
            }
            _ => {}
        }
    }
    let mut report = StatusReport {
        status,
        primaries,
        hosts,
        problems,
        endpoints: Vec::new(),
    };
    if report.primaries.is_empty() {
        report.status = Overall::Failed;
        report
            .problems
            .insert(0, "no host accepts writes: no primary".into());
    } else if let Some(split) = report.split_brain() {
        report.status = Overall::Failed;
        report.problems.insert(0, split);
    }
    report
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".to_string(), |v| v.to_string())
}

fn lsn(v: Option<u64>) -> String {
    v.map_or("-".into(), crate::actions::switchover::format_lsn)
}

/// The table people read.
pub fn render(report: &StatusReport) -> String {
    let mut out = format!(
        "{:<12} {:<9} {:<11} {:>3} {:<12} {:<12} {:<12} {:<12} {:<14} {:>10} {:>8} {:<9}\n",
        "HOST",
        "SSH",
        "ROLE",
        "TL",
        "CURRENT",
        "RECEIVED",
        "REPLAYED",
        "UPSTREAM",
        "SLOT",
        "LAG",
        "LAG(s)",
        "SYNC"
    );
    for h in &report.hosts {
        let role = match h.role {
            Seen::Primary => "primary",
            Seen::Standby => "standby",
            Seen::Down => "down",
            Seen::Unreachable => "-",
        };
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:<11} {:>3} {:<12} {:<12} {:<12} {:<12} {:<14} {:>10} {:>8} {:<9}",
            h.name,
            if h.reachable { "ok" } else { "unreach" },
            role,
            opt(&h.timeline),
            lsn(h.current_lsn),
            lsn(h.received_lsn),
            lsn(h.replayed_lsn),
            opt(&h.upstream),
            opt(&h.slot),
            h.lag_bytes
                .map_or("-".into(), |b| indicatif::HumanBytes(b).to_string()),
            h.lag_seconds.map_or("-".into(), |s| format!("{s:.3}")),
            opt(&h.sync_state),
        );
    }
    render_endpoints(&mut out, &report.endpoints);
    for p in &report.problems {
        let _ = writeln!(out, "- {p}");
    }
    let _ = writeln!(
        out,
        "status: {}",
        match report.status {
            Overall::Ok => "ok",
            Overall::Degraded => "degraded",
            Overall::Failed => "FAILED",
        }
    );
    out
}

/// Each endpoint's pools: one line per backend, its servers with HAProxy's state.
fn render_endpoints(out: &mut String, endpoints: &[EndpointStatus]) {
    for e in endpoints {
        let _ = writeln!(
            out,
            "\nENDPOINT {} (write port {}, read port {})",
            e.name, e.write_port, e.read_port
        );
        if let Some(err) = &e.error {
            let _ = writeln!(out, "  {err}");
        }
        let mut backends: Vec<&str> = e.servers.iter().map(|s| s.backend.as_str()).collect();
        backends.dedup();
        for b in backends {
            let servers: Vec<String> = e
                .servers
                .iter()
                .filter(|s| s.backend == b)
                .map(|s| {
                    let why = if s.takes_traffic() || s.in_maintenance() || s.check.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.check)
                    };
                    format!("{} {}{why}", s.server, s.status)
                })
                .collect();
            let _ = writeln!(out, "  {b:<20} {}", servers.join(", "));
        }
    }
    if !endpoints.is_empty() {
        out.push('\n');
    }
}

/// Text exposition for node_exporter's textfile collector.
pub fn prometheus(report: &StatusReport) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let each = |f: &dyn Fn(&HostStatus) -> Option<String>| -> Vec<(String, String)> {
        report
            .hosts
            .iter()
            .filter_map(|h| f(h).map(|v| (format!("host=\"{}\"", h.name), v)))
            .collect()
    };
    family(
        "pgrepl_up",
        "1 when PostgreSQL answers on the host.",
        each(&|h| Some(u8::from(h.up).to_string())),
    );
    family(
        "pgrepl_is_primary",
        "1 when the host accepts writes.",
        each(&|h| Some(u8::from(h.role == Seen::Primary).to_string())),
    );
    family(
        "pgrepl_timeline",
        "The host's timeline.",
        each(&|h| h.timeline.map(|t| t.to_string())),
    );
    family(
        "pgrepl_lag_bytes",
        "Bytes a standby's replay is behind the primary.",
        each(&|h| h.lag_bytes.map(|b| b.to_string())),
    );
    family(
        "pgrepl_lag_seconds",
        "Seconds a standby's replay is behind the primary.",
        each(&|h| h.lag_seconds.map(|s| s.to_string())),
    );
    family(
        "pgrepl_slot_retained_bytes",
        "WAL the host's slot keeps on the primary.",
        each(&|h| h.slot_retained_bytes.map(|b| b.to_string())),
    );
    family(
        "pgrepl_primaries",
        "How many hosts accept writes (more than 1 is a split brain).",
        vec![(String::new(), report.primaries.len().to_string())],
    );
    if !report.endpoints.is_empty() {
        family(
            "pgrepl_endpoint_server_up",
            "1 when HAProxy on the endpoint sends connections to the server (per pool).",
            report
                .endpoints
                .iter()
                .flat_map(|e| {
                    e.servers.iter().map(move |s| {
                        (
                            format!(
                                "endpoint=\"{}\",backend=\"{}\",server=\"{}\"",
                                e.name, s.backend, s.server
                            ),
                            u8::from(s.takes_traffic()).to_string(),
                        )
                    })
                })
                .collect(),
        );
    }
    out.replace("{}", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, role: Role, seen: Seen, upstream: Option<&str>) -> HostStatus {
        HostStatus {
            name: name.into(),
            inventory_role: role,
            reachable: seen != Seen::Unreachable,
            up: matches!(seen, Seen::Primary | Seen::Standby),
            role: seen,
            timeline: Some(if seen == Seen::Primary && name != "pg0" {
                2
            } else {
                1
            }),
            current_lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            upstream: upstream.map(str::to_string),
            inventory_upstream: (role == Role::Replica).then(|| "pg0".to_string()),
            streaming: upstream.is_some(),
            last_message_seconds: None,
            slot: None,
            lag_bytes: None,
            lag_seconds: None,
            sync_state: None,
            slot_retained_bytes: Some(42),
            error: None,
        }
    }

    #[test]
    fn healthy_degraded_and_split_brain() {
        let ok = judge(vec![
            host("pg0", Role::Primary, Seen::Primary, None),
            host("pg1", Role::Replica, Seen::Standby, Some("pg0")),
        ]);
        assert_eq!((ok.status, ok.problems.len()), (Overall::Ok, 0));
        let degraded = judge(vec![
            host("pg0", Role::Primary, Seen::Primary, None),
            host("pg1", Role::Replica, Seen::Down, None),
        ]);
        assert_eq!(degraded.status, Overall::Degraded);
        let split = judge(vec![
            host("pg0", Role::Primary, Seen::Primary, None),
            host("pg1", Role::Replica, Seen::Primary, None),
        ]);
        assert_eq!(split.status, Overall::Failed);
        assert_eq!(
            split.problems[0],
            "split brain: `pg0` (timeline 1) and `pg1` (timeline 2) all accept writes"
        );
        let none = judge(vec![host("pg0", Role::Primary, Seen::Unreachable, None)]);
        assert_eq!(none.status, Overall::Failed);
    }

    #[test]
    fn a_cascaded_replica_is_judged_against_its_upstream_and_named_with_a_down_one() {
        let cascaded = |seen: Seen, actual: Option<&str>| HostStatus {
            inventory_upstream: Some("pg1".into()),
            ..host("pg2", Role::Replica, seen, actual)
        };
        let ok = judge(vec![
            host("pg0", Role::Primary, Seen::Primary, None),
            host("pg1", Role::Replica, Seen::Standby, Some("pg0")),
            cascaded(Seen::Standby, Some("pg1")),
        ]);
        assert_eq!(
            (ok.status, ok.problems.len()),
            (Overall::Ok, 0),
            "{:?}",
            ok.problems
        );
        let wrong = judge(vec![
            host("pg0", Role::Primary, Seen::Primary, None),
            host("pg1", Role::Replica, Seen::Standby, Some("pg0")),
            cascaded(Seen::Standby, Some("pg0")),
        ]);
        assert_eq!(
            wrong.problems,
            ["`pg2` does not stream from `pg1` (it streams from: `pg0`)"]
        );
        let down = judge(vec![
            host("pg0", Role::Primary, Seen::Primary, None),
            host("pg1", Role::Replica, Seen::Down, None),
            cascaded(Seen::Standby, None),
        ]);
        assert_eq!(down.status, Overall::Degraded);
        assert!(
            down.problems
                .contains(&"`pg2` does not stream from `pg1`: `pg1` is down".to_string()),
            "{:?}",
            down.problems
        );
    }

    #[test]
    fn prometheus_text_has_a_type_line_per_family() {
        let report = judge(vec![host("pg0", Role::Primary, Seen::Primary, None)]);
        let text = prometheus(&report);
        assert!(
            text.contains("# TYPE pgrepl_up gauge\npgrepl_up{host=\"pg0\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("pgrepl_primaries 1\n"), "{text}");
        assert!(
            text.contains("pgrepl_slot_retained_bytes{host=\"pg0\"} 42"),
            "{text}"
        );
    }

    #[test]
    fn an_endpoint_whose_write_pool_is_not_the_primary_degrades_the_status() {
        let inv = crate::inventory::parse(
            std::path::Path::new("inv.yaml"),
            "replication: { password: pw }\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: primary }\n  - { name: pg1, address: 10.0.0.11, role: replica }\n  - { name: px, address: 10.0.0.250, role: proxy }\nendpoints: [ { host: px } ]\n",
        )
        .unwrap();
        let server = |backend: &str, server: &str, status: &str| ServerStat {
            backend: backend.into(),
            server: server.into(),
            status: status.into(),
            check: String::new(),
            sessions: 0,
        };
        let endpoint = |writer: &str| EndpointStatus {
            name: "px".into(),
            reachable: true,
            write_port: 5435,
            read_port: 5436,
            servers: vec![
                server("pgrepl_write", writer, "UP"),
                server("pgrepl_read", "pg1", "UP"),
            ],
            error: None,
        };
        let mut good = judge(vec![host("pg0", Role::Primary, Seen::Primary, None)]);
        good.add_endpoints(&inv, vec![endpoint("pg0")]);
        assert_eq!(good.status, Overall::Ok, "{:?}", good.problems);
        let text = prometheus(&good);
        assert!(
            text.contains("pgrepl_endpoint_server_up{endpoint=\"px\",backend=\"pgrepl_write\",server=\"pg0\"} 1"),
            "{text}"
        );
        assert!(render(&good).contains("ENDPOINT px (write port 5435, read port 5436)"));
        let mut bad = judge(vec![host("pg0", Role::Primary, Seen::Primary, None)]);
        bad.add_endpoints(&inv, vec![endpoint("pg1")]);
        assert_eq!(bad.status, Overall::Degraded);
        assert!(
            bad.problems
                .iter()
                .any(|p| p.contains("writes go to pg1 (the primary is pg0)")),
            "{:?}",
            bad.problems
        );
    }
}
