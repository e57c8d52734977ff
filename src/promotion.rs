//! Changing the primary: `switchover` (on purpose, nothing lost) and `failover` (the
//! primary is down). Both run in two phases around one point of no return:
//!
//! 1. on the inventory as it is, a playbook that ends with the promotion
//!    (`switchover.yaml`, rolled back on any failure before it; `failover.yaml`, which
//!    fences the old primary first);
//! 2. the inventory file is updated to name the new primary, then `rewire.yaml` runs on
//!    it, to its end even if interrupted: every other member follows the new primary.
//!
//! The SSH sessions of phase one are reused by phase two.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::actions::switchover::{SwitchState, format_lsn};
use crate::app::{
    connect_options, finished, json, load_inventory, locked_run, new_cluster, new_engine,
    note_inventory_secrets, prepare, require_password,
};
use crate::edit;
use crate::engine::{Events, RunReport};
use crate::error::{Error, Finished};
use crate::inventory;
use crate::report::{self, Format, Reporter};
use crate::settings::{CommandKind, RunSettings, Settings};
use crate::ssh::Session;
use crate::status::Seen;
use crate::step::StepError;
use crate::templates::Templates;
use crate::verify::VerifyReport;

/// Sessions by host index and why unreachable hosts are so, handed from phase one to two.
type Sessions = (Vec<Option<Arc<Session>>>, Vec<Option<String>>);

/// What `switchover` and `failover` print with `--format json`.
#[derive(serde::Serialize)]
struct Output<'a> {
    command: &'static str,
    status: &'static str,
    old_primary: &'a str,
    new_primary: Option<&'a str>,
    /// failover: how the old primary was fenced, `ssh` (stopped, read-only, autostart off)
    /// or `stated` (--old-primary-fenced).
    #[serde(skip_serializing_if = "Option::is_none")]
    old_primary_fenced: Option<&'static str>,
    /// failover: the replicas, best first: newest timeline, then most WAL received.
    #[serde(skip_serializing_if = "Option::is_none")]
    ranking: Option<&'a [Ranked]>,
    timeline: Option<u32>,
    /// switchover: from the start of the old primary's shutdown to the first write the new
    /// primary accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    write_unavailable_ms: Option<u128>,
    /// How each replica came to follow the new primary: `none` (no copy) or `copy`.
    rewind: BTreeMap<String, &'static str>,
    promotion: Option<&'a RunReport>,
    rewire: Option<&'a RunReport>,
    verify: Option<&'a VerifyReport>,
}

impl<'a> Output<'a> {
    /// Takes phase two's results.
    fn rewired(&mut self, rewired: &'a Rewired) {
        self.status = if rewired.report.failed() {
            "failed"
        } else {
            "ok"
        };
        self.rewind = rewired.rewind.clone();
        self.rewire = Some(&rewired.report);
        self.verify = rewired.verify.as_ref();
    }

    fn print(&self, settings: &Settings, reporter: &Reporter) {
        match settings.format {
            Format::Json => reporter.output(&json(self)),
            Format::Human | Format::Prometheus => {
                if let Some(p) = self.promotion {
                    reporter.output(&report::render_recap(p));
                }
                if let Some(v) = self.verify {
                    reporter.output(&format!("\n{}", report::render_verify(v)));
                }
                if let Some(r) = self.rewire {
                    reporter.output(&report::render_recap(r));
                }
                if let (Some(new), Some(tl)) = (self.new_primary, self.timeline) {
                    let unavailable = self
                        .write_unavailable_ms
                        .map(|ms| format!(", writes unavailable for {ms} ms"))
                        .unwrap_or_default();
                    reporter.output(&format!(
                        "{} {} -> {new}: timeline {tl}{unavailable}\n",
                        self.command, self.old_primary
                    ));
                }
            }
        }
    }
}

/// A replica's standing for promotion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ranked {
    name: String,
    timeline: u32,
    received_lsn: u64,
    replayed_lsn: u64,
    /// Hops from the primary: 1 for its replicas, more for cascaded ones.
    depth: usize,
}

impl Ranked {
    /// What ranks a replica: newest timeline, most WAL received, then most replayed (a
    /// standby with replay paused or far behind comes later and takes longer to open),
    /// then the fewest hops from the primary (its replicas stream from it as they did).
    fn key(&self) -> (u32, u64, u64, std::cmp::Reverse<usize>) {
        (
            self.timeline,
            self.received_lsn,
            self.replayed_lsn,
            std::cmp::Reverse(self.depth),
        )
    }
}

/// What phase two did.
struct Rewired {
    report: RunReport,
    verify: Option<VerifyReport>,
    rewind: BTreeMap<String, &'static str>,
}

/// Reads the inventory file's text (to write the new roles into it, keeping its layout).
fn inventory_text(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}

/// After the promotion: the inventory file names the new primary, or says what to do.
fn record_new_primary(
    settings: &Settings,
    new: &str,
    old: &str,
    reporter: &Reporter,
) -> Result<(), Error> {
    let path = &settings.inventory;
    edit::set_primary(path, new).map_err(|e| Error::Usage {
        message: format!(
            "{e}\n`{new}` IS the primary now: set its role in the inventory by hand, then run `pgrepl switchover --to {new}` to rewire the others"
        ),
        hint: None,
    })?;
    reporter.note(&format!(
        "pgrepl: {}: `{new}` is now the primary, `{old}` a replica",
        path.display()
    ));
    Ok(())
}

/// Phase two: every replica but `exclude` follows `new_primary`. `text` is the inventory
/// file as it was; `sessions` those of phase one (none: connect afresh). Past a promotion
/// (`committed`) it runs to its end even if interrupted.
#[allow(clippy::too_many_arguments)]
async fn rewire(
    settings: &Settings,
    run: &RunSettings,
    reporter: &Arc<Reporter>,
    text: &str,
    new_primary: &str,
    sessions: Option<Sessions>,
    exclude: Option<usize>,
    committed: bool,
) -> Result<Rewired, Error> {
    let path = &settings.inventory;
    let swapped = inventory::parse(path, &edit::with_primary(path, text, new_primary)?)?;
    let (templates, mut plan) = prepare(settings, CommandKind::Rewire, None, &swapped)?;
    if let Some(old) = exclude {
        for step in &mut plan.steps {
            step.hosts.retain(|&i| i != old);
        }
    }
    let run = RunSettings {
        command: CommandKind::Rewire,
        ..run.clone()
    };
    let mut cluster = new_cluster(settings, &run, swapped, templates, reporter);
    cluster.out_of_service = exclude.into_iter().collect();
    match sessions {
        Some((s, u)) => (cluster.sessions, cluster.unreachable) = (s, u),
        None => {
            let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
            cluster
                .connect(&all, &connect_options(settings, reporter))
                .await
                .map_err(Error::SshConfig)?;
        }
    }
    let engine = new_engine(settings, &run, cluster, reporter);
    if committed {
        engine.commit();
    }
    let report = locked_run(settings, &run, &engine, &plan, reporter).await?;
    let cluster = engine.runner();
    let mut rewind = BTreeMap::new();
    for (i, h) in cluster.inventory.hosts.iter().enumerate() {
        if let Some(how) = cluster.memos[i].lock().await.rejoined {
            rewind.insert(h.name.clone(), how);
        }
    }
    Ok(Rewired {
        verify: cluster.verify_report.lock().await.clone(),
        report,
        rewind,
    })
}

/// `switchover --to NAME`: phase one promotes NAME (rolled back before the promotion on
/// any failure); with NAME already the primary only phase two runs, which changes nothing
/// on a cluster already wired so.
pub(crate) async fn switchover(
    settings: &Settings,
    run: &RunSettings,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let name = run.target.clone().unwrap_or_default();
    let path = &settings.inventory;
    let inventory = load_inventory(path, run.command, Some(&name), None, Default::default())?;
    let old_primary = inventory
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.clone())
        .unwrap_or_default();
    let text = inventory_text(path)?;
    // Phase two's inventory must be valid before anything changes, and the password its
    // rewiring writes must be there.
    let swapped = inventory::parse(path, &edit::with_primary(path, &text, &name)?)?;
    let (_, rewire_plan) = prepare(settings, CommandKind::Rewire, None, &swapped)?;
    require_password(&rewire_plan, &swapped)?;
    note_inventory_secrets(&inventory, &reporter);
    let mut out = Output {
        command: "switchover",
        status: "ok",
        old_primary: &old_primary,
        new_primary: Some(&name),
        old_primary_fenced: None,
        ranking: None,
        timeline: None,
        write_unavailable_ms: None,
        rewind: BTreeMap::new(),
        promotion: None,
        rewire: None,
        verify: None,
    };
    let mut sessions = None;
    let promotion;
    let state: SwitchState;
    if old_primary != name {
        let (templates, plan) = prepare(settings, run.command, Some(&name), &inventory)?;
        let mut cluster = new_cluster(settings, run, inventory, templates, &reporter);
        cluster.target = Some(name.clone());
        let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
        cluster
            .connect(&all, &connect_options(settings, &reporter))
            .await
            .map_err(Error::SshConfig)?;
        let engine = new_engine(settings, run, cluster, &reporter);
        promotion = locked_run(settings, run, &engine, &plan, &reporter).await?;
        let cluster = engine.runner();
        state = cluster
            .switch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        sessions = Some((cluster.sessions.clone(), cluster.unreachable.clone()));
        out.timeline = state.timeline;
        out.write_unavailable_ms = state.write_unavailable_ms();
        out.promotion = Some(&promotion);
        if promotion.failed() || run.check {
            reporter.finish();
            out.status = if promotion.failed() { "failed" } else { "ok" };
            out.new_primary = None;
            out.print(settings, &reporter);
            return Ok(finished(&promotion, engine.interrupted()));
        }
        record_new_primary(settings, &name, &old_primary, &reporter)?;
    }
    let rewired = rewire(
        settings,
        run,
        &reporter,
        &text,
        &name,
        sessions,
        None,
        out.promotion.is_some(),
    )
    .await?;
    reporter.finish();
    out.rewired(&rewired);
    out.print(settings, &reporter);
    Ok(finished(&rewired.report, false))
}

/// `failover [--to NAME]`: the primary is down. Confirmed down from every viewpoint,
/// fenced where SSH reaches it (or on the user's word), the best replica promoted, the
/// others rewired; the old primary stays out until `rejoin`.
pub(crate) async fn failover(
    settings: &Settings,
    run: &RunSettings,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let path = &settings.inventory;
    let inventory = load_inventory(
        path,
        run.command,
        run.target.as_deref(),
        None,
        Default::default(),
    )?;
    let old = inventory
        .hosts
        .iter()
        .position(|h| h.is_primary())
        .ok_or_else(|| {
            Error::usage(
                "the inventory has no primary",
                "one host needs role: primary",
            )
        })?;
    let old_name = inventory.hosts[old].name.clone();
    if run.target.as_deref() == Some(old_name.as_str()) {
        return Err(Error::usage(
            format!("`{old_name}` is the failed primary"),
            "name a replica with --to, or leave --to out to promote the most advanced one",
        ));
    }
    // The rewiring after the promotion writes passfiles: ask for the password now, before
    // any host is touched, not once the old primary is fenced.
    let (_, rewire_plan) = prepare(settings, CommandKind::Rewire, None, &inventory)?;
    require_password(&rewire_plan, &inventory)?;
    note_inventory_secrets(&inventory, &reporter);
    let text = inventory_text(path)?;
    let templates = Templates::load(settings.templates.as_deref())?;
    let mut cluster = new_cluster(settings, run, inventory, templates, &reporter);
    let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
    let connect = connect_options(settings, &reporter);
    cluster
        .connect(&all, &connect)
        .await
        .map_err(Error::SshConfig)?;
    let seen = crate::status::gather(&cluster.verify_target()).await;
    let refuse = |message: String, hint: &str| Err(Error::Refused(StepError::new(message, hint)));
    // 1. Down from every viewpoint.
    let p = seen.host(&old_name).expect("the primary is in the status");
    if p.role == Seen::Primary {
        return refuse(
            format!("the primary `{old_name}` is up and accepts writes"),
            "a failover is for a primary that is down; for a planned change use `pgrepl switchover --to NAME`",
        );
    }
    if let Some(other) = seen.primaries.first() {
        return refuse(
            format!(
                "`{other}` already accepts writes, but the inventory names `{old_name}` the primary"
            ),
            &format!(
                "run `pgrepl status`; if `{other}` is the new primary, set its role in the inventory"
            ),
        );
    }
    for h in &seen.hosts {
        if h.streaming
            && h.upstream.as_deref() == Some(old_name.as_str())
            && h.last_message_seconds.is_some_and(|s| s < 30.0)
        {
            return refuse(
                format!(
                    "`{}` still receives WAL from `{old_name}` (last message {:.1} s ago): the primary is alive from there",
                    h.name,
                    h.last_message_seconds.unwrap_or(0.0)
                ),
                "if the primary is only cut off from you, do not fail over; otherwise wait until its replicas lose it (wal_receiver_timeout) and re-run",
            );
        }
    }
    // 2. It must be fenced: by us over SSH, or by the user's word.
    let fenced_by = if p.reachable {
        "ssh"
    } else if run.old_primary_fenced {
        reporter.note(&format!(
            "pgrepl: `{old_name}` is unreachable; you stated it is powered off or isolated (--old-primary-fenced)"
        ));
        "stated"
    } else {
        return refuse(
            format!(
                "cannot reach `{old_name}` over SSH, so pgrepl cannot fence it: if it comes back it could take writes as a second primary"
            ),
            "make sure it is powered off or cut off from clients, then re-run with --old-primary-fenced",
        );
    };
    // 3. Rank the replicas: newest timeline, most WAL received, most replayed, then
    // inventory order.
    let mut ranking: Vec<Ranked> = seen
        .hosts
        .iter()
        .filter(|h| h.role == Seen::Standby && h.name != old_name)
        .map(|h| Ranked {
            name: h.name.clone(),
            timeline: h.timeline.unwrap_or(0),
            received_lsn: h.received_lsn.or(h.replayed_lsn).unwrap_or(0),
            replayed_lsn: h.replayed_lsn.unwrap_or(0),
            depth: cluster
                .inventory
                .hosts
                .iter()
                .position(|m| m.name == h.name)
                .map_or(usize::MAX, |i| cluster.inventory.depth(i)),
        })
        .collect();
    // Stable: equal positions keep inventory order.
    ranking.sort_by_key(|r| std::cmp::Reverse(r.key()));
    for (n, r) in ranking.iter().enumerate() {
        reporter.note(&format!(
            "rank {}: `{}` timeline {} received up to {}, replayed up to {}",
            n + 1,
            r.name,
            r.timeline,
            format_lsn(r.received_lsn),
            format_lsn(r.replayed_lsn)
        ));
    }
    let Some(best) = ranking.first().cloned() else {
        return refuse(
            "no replica is running to take over".into(),
            "start a replica (its data must be a standby of this cluster) and re-run",
        );
    };
    let chosen = match &run.target {
        None => best.clone(),
        Some(name) => {
            let Some(r) = ranking.iter().find(|r| &r.name == name).cloned() else {
                return refuse(
                    format!("`{name}` is not a running standby"),
                    "pgrepl status shows each host; leave --to out to take the best one",
                );
            };
            if best.key() > r.key() && !run.allow_data_loss {
                return refuse(
                    format!(
                        "`{name}` is behind `{}` ({} bytes less WAL received, {} less replayed): promoting it can lose writes",
                        best.name,
                        best.received_lsn.saturating_sub(r.received_lsn),
                        best.replayed_lsn.saturating_sub(r.replayed_lsn)
                    ),
                    "leave --to out to promote the most advanced replica, or add --allow-data-loss",
                );
            }
            r
        }
    };
    reporter.note(&format!("pgrepl: promoting `{}`", chosen.name));
    // 4. Fence and promote.
    let (_, mut plan) = prepare(
        settings,
        run.command,
        Some(&chosen.name),
        &cluster.inventory,
    )?;
    if !p.reachable {
        for step in &mut plan.steps {
            step.hosts.retain(|&i| i != old);
        }
    }
    cluster.target = Some(chosen.name.clone());
    let engine = new_engine(settings, run, cluster, &reporter);
    let promotion = locked_run(settings, run, &engine, &plan, &reporter).await?;
    let cluster = engine.runner();
    let timeline = cluster
        .switch
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .timeline;
    let sessions = (cluster.sessions.clone(), cluster.unreachable.clone());
    let mut out = Output {
        command: "failover",
        status: "ok",
        old_primary: &old_name,
        new_primary: None,
        old_primary_fenced: Some(fenced_by),
        ranking: Some(&ranking),
        timeline,
        write_unavailable_ms: None,
        rewind: BTreeMap::new(),
        promotion: Some(&promotion),
        rewire: None,
        verify: None,
    };
    if promotion.failed() || run.check {
        reporter.finish();
        out.status = if promotion.failed() { "failed" } else { "ok" };
        out.print(settings, &reporter);
        return Ok(finished(&promotion, engine.interrupted()));
    }
    record_new_primary(settings, &chosen.name, &old_name, &reporter)?;
    reporter.note(&format!(
        "pgrepl: bring `{old_name}` back with `pgrepl rejoin {old_name}`"
    ));
    // Phase two without the old primary: it stays out until `rejoin`.
    let rewired = rewire(
        settings,
        run,
        &reporter,
        &text,
        &chosen.name,
        Some(sessions),
        Some(old),
        true,
    )
    .await?;
    reporter.finish();
    out.new_primary = Some(&chosen.name);
    out.rewired(&rewired);
    out.print(settings, &reporter);
    Ok(finished(&rewired.report, false))
}
