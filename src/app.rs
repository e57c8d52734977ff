//! Running a command: settings → inventory → plan → engine with the cluster's actions →
//! results, and how it ended.
//!
//! Invalid input (inventory, playbook, template, flags) is an [`Error`] before any host is
//! contacted. Ctrl-C or SIGTERM stops new work, rescues hosts caught half-way, and the
//! recap says what state each host is left in. Everything shown goes through the
//! [`Reporter`], so secrets are redacted and `--log-file` gets every line.

use std::path::Path;
use std::sync::Arc;

use clap::CommandFactory;
use secrecy::ExposeSecret;

use crate::actions::{ActionOptions, Cluster, lock};
use crate::cli::Cli;
use crate::engine::{Engine, Events, Options, RunReport};
use crate::error::{Error, Finished};
use crate::inventory::{self, Inventory};
use crate::report::{self, Format, Reporter};
use crate::settings::{CommandKind, Job, RunSettings, Settings};
use crate::step::StepError;
use crate::templates::Templates;
use crate::verify::{Health, VerifyReport};
use crate::{edit, plan, playbook};

/// Runs the resolved command and says how it ended.
pub async fn run(settings: Settings, reporter: Arc<Reporter>) -> Result<Finished, Error> {
    match &settings.job {
        Job::Completions(shell) => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "pgrepl", &mut script);
            reporter.output(&String::from_utf8_lossy(&script));
            Ok(Finished::Ok)
        }
        Job::Plan {
            command,
            target,
            address,
        } => {
            let inventory = load_inventory(
                &settings.inventory,
                *command,
                target.as_deref(),
                address.as_deref(),
                None,
            )?;
            let (_, plan) = prepare(&settings, *command, target.as_deref(), &inventory)?;
            match settings.format {
                Format::Human | Format::Prometheus => {
                    reporter.output(&plan::render(&plan, &inventory))
                }
                Format::Json => reporter.output(&json(&plan)),
            }
            Ok(Finished::Ok)
        }
        Job::Run(run) => execute(&settings, run, reporter).await,
        Job::Status => status(&settings, &reporter).await,
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// Loads the inventory; with `address`, as it is with the target appended (in memory:
/// the file is written only by a run that changes hosts).
fn load_inventory(
    path: &Path,
    command: CommandKind,
    target: Option<&str>,
    address: Option<&str>,
    slot: Option<&str>,
) -> Result<Inventory, Error> {
    let inventory = match (target, address) {
        (Some(name), Some(address)) => {
            edit::append_replica(path, name, address, slot, true)?;
            let text = std::fs::read_to_string(path).map_err(|source| Error::File {
                path: path.to_path_buf(),
                source,
            })?;
            let current = inventory::parse(path, &text)?;
            if current.hosts.iter().any(|h| h.name == name) {
                current
            } else {
                let new = edit::with_replica(path, &text, name, address, slot)?;
                inventory::parse(path, &new)?
            }
        }
        _ => inventory::load(path)?,
    };
    if let Some(name) = target {
        match inventory.hosts.iter().find(|h| h.name == name) {
            None => {
                return Err(Error::usage(
                    format!("{}: host `{name}` is not in the inventory", path.display()),
                    "add it to the inventory, or pass --address ADDR to append it",
                ));
            }
            Some(h) if h.is_primary() && command == CommandKind::AddReplica => {
                return Err(Error::usage(
                    format!(
                        "{}: `{name}` is the primary; {} adds replicas",
                        path.display(),
                        command.as_str()
                    ),
                    "name a replica host",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(inventory)
}

/// Checks `--limit` against the inventory: an unknown name is invalid input.
fn check_limit(limit: Option<&[String]>, inventory: &Inventory, path: &Path) -> Result<(), Error> {
    let Some(limit) = limit else { return Ok(()) };
    let unknown: Vec<&str> = limit
        .iter()
        .filter(|l| inventory.hosts.iter().all(|h| &h.name != *l))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
    Err(Error::usage(
        format!(
            "--limit names {} not in {}",
            unknown
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", "),
            path.display()
        ),
        format!("the inventory's hosts are {}", known.join(", ")),
    ))
}

/// Loads templates and the playbook and builds the plan; errors are invalid input.
fn prepare(
    settings: &Settings,
    command: CommandKind,
    target: Option<&str>,
    inventory: &Inventory,
) -> Result<(Templates, plan::Plan), Error> {
    check_limit(settings.limit.as_deref(), inventory, &settings.inventory)?;
    let templates = Templates::load(settings.templates.as_deref())?;
    let (book, source) = playbook::load(command.as_str(), settings.playbooks.as_deref())?;
    let plan = plan::build(
        command.as_str(),
        &source,
        &book,
        inventory,
        target,
        settings.limit.as_deref(),
    )?;
    for step in &plan.steps {
        for action in step.work.actions() {
            if let playbook::Action::Config { template, .. } | playbook::Action::Hba { template } =
                action
                && !templates.has(template)
            {
                return Err(Error::usage(
                    format!(
                        "{}: step `{}` uses template `{template}`, which does not exist",
                        plan.source, step.name
                    ),
                    format!(
                        "the built-in templates are {}",
                        crate::templates::EMBEDDED
                            .iter()
                            .map(|t| t.0)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    Ok((templates, plan))
}

/// What a run prints as JSON: the recap, and verify's report when there is one.
#[derive(serde::Serialize)]
struct RunOutput<'a> {
    #[serde(flatten)]
    recap: &'a RunReport,
    verify: Option<&'a VerifyReport>,
}

async fn execute(
    settings: &Settings,
    run: &RunSettings,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    match run.command {
        CommandKind::Switchover => return switchover(settings, run, reporter).await,
        CommandKind::Failover => return failover(settings, run, reporter).await,
        _ => {}
    }
    let inventory = load_inventory(
        &settings.inventory,
        run.command,
        run.target.as_deref(),
        run.address.as_deref(),
        run.slot.as_deref(),
    )?;
    let (templates, plan) = prepare(settings, run.command, run.target.as_deref(), &inventory)?;
    note_inventory_secrets(&inventory, &reporter);
    if let (Some(name), Some(address), false) = (&run.target, &run.address, run.check) {
        edit::append_replica(
            &settings.inventory,
            name,
            address,
            run.slot.as_deref(),
            false,
        )?;
    }
    let mut cluster = new_cluster(settings, run, inventory, templates, &reporter);
    cluster.target = run.target.clone();
    cluster
        .connect(
            &hosts_to_contact(&plan, cluster.inventory.hosts.len()),
            &connect_options(settings, &reporter),
        )
        .await
        .map_err(Error::SshConfig)?;
    let engine = new_engine(settings, run, cluster, &reporter);
    if run.command == CommandKind::AddReplica {
        refuse_healthy_target(engine.runner(), run.target.as_deref()).await?;
    }
    let report = locked_run(settings, run, &engine, &plan, &reporter).await?;
    let cluster = engine.runner();
    let mut verify_report = cluster.verify_report.lock().await.clone();
    if run.command == CommandKind::Verify && verify_report.is_none() {
        verify_report = Some(crate::verify::run(&cluster.verify_target()).await);
    }
    reporter.finish();
    let interrupted = engine.interrupted();
    if run.command == CommandKind::Verify {
        let v = verify_report.unwrap_or(VerifyReport {
            status: Health::Fail,
            hosts: vec![],
            probe: vec![],
        });
        match settings.format {
            Format::Human | Format::Prometheus => reporter.output(&report::render_verify(&v)),
            Format::Json => reporter.output(&json(&v)),
        }
        return Ok(if interrupted {
            Finished::Interrupted
        } else {
            match v.status {
                Health::Ok => Finished::Ok,
                Health::Warn => Finished::Warn,
                Health::Fail => Finished::Failed,
            }
        });
    }
    match settings.format {
        Format::Human | Format::Prometheus => {
            if let Some(v) = &verify_report {
                reporter.output(&format!("\n{}", report::render_verify(v)));
            }
            reporter.output(&report::render_recap(&report));
        }
        Format::Json => reporter.output(&json(&RunOutput {
            recap: &report,
            verify: verify_report.as_ref(),
        })),
    }
    Ok(finished(&report, interrupted))
}

fn finished(report: &RunReport, interrupted: bool) -> Finished {
    if interrupted {
        Finished::Interrupted
    } else if report.failed() {
        Finished::Failed
    } else {
        Finished::Ok
    }
}

/// Redacts the replication password from everything shown; warns when it is inline.
fn note_inventory_secrets(inventory: &Inventory, reporter: &Reporter) {
    if let Some(password) = &inventory.replication.password {
        reporter.add_secret(password.expose_secret());
    }
    if matches!(
        inventory.replication.password_source,
        inventory::PasswordSource::Inline
    ) {
        reporter.note("warning: the replication password is written in the inventory; prefer password_env or password_file");
    }
    for w in &inventory.warnings {
        reporter.note(&format!(
            "warning: {}:{}:{}: {}: {}\n  hint: {}",
            inventory.path.display(),
            w.line,
            w.column,
            w.field,
            w.message,
            w.hint
        ));
    }
}

/// The cluster the actions of one run see, not yet connected.
fn new_cluster(
    settings: &Settings,
    run: &RunSettings,
    inventory: Inventory,
    templates: Templates,
    reporter: &Arc<Reporter>,
) -> Cluster {
    let events: Arc<dyn Events> = reporter.clone();
    let mut cluster = Cluster::new(
        inventory,
        templates,
        ActionOptions {
            check: run.check,
            diff: run.diff,
            allow_restart: run.allow_restart,
            verify: run.verify.clone(),
            force: run.force,
        },
        events,
    );
    // Sized from the inventory alone, so every command derives the same settings.
    let replicas = cluster
        .inventory
        .hosts
        .iter()
        .filter(|h| !h.is_primary())
        .count();
    cluster.concurrent_backups = replicas.min(settings.forks);
    cluster
}

fn new_engine(
    settings: &Settings,
    run: &RunSettings,
    cluster: Cluster,
    reporter: &Arc<Reporter>,
) -> Arc<Engine<Cluster>> {
    let members = cluster.members();
    let engine = Arc::new(Engine::new(
        cluster,
        reporter.clone(),
        members,
        Options {
            check: run.check,
            forks: settings.forks,
        },
    ));
    watch_signals(&engine, reporter);
    engine
}

/// The hosts a plan needs sessions to: every member when it verifies.
fn hosts_to_contact(plan: &plan::Plan, n: usize) -> Vec<usize> {
    let verifies = plan.steps.iter().any(|s| {
        s.work
            .actions()
            .iter()
            .any(|a| matches!(a, playbook::Action::Verify))
    });
    if verifies {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = plan
        .steps
        .iter()
        .chain(&plan.rollback)
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn connect_options(settings: &Settings, reporter: &Arc<Reporter>) -> crate::ssh::ConnectOptions {
    let mut connect = settings.connect.clone();
    if settings.verbose > 0 {
        let events: Arc<dyn Events> = reporter.clone();
        connect.trace = Some(Arc::new(move |host: &str, cmd: &str| {
            events.trace(host, cmd)
        }));
    }
    connect
}

/// Runs a plan holding the cluster lock on the primary when it changes hosts.
async fn locked_run(
    settings: &Settings,
    run: &RunSettings,
    engine: &Arc<Engine<Cluster>>,
    plan: &plan::Plan,
    reporter: &Reporter,
) -> Result<RunReport, Error> {
    let holder = lock::Holder::this_run(run.command.as_str());
    let cluster = engine.runner();
    let primary = cluster
        .inventory
        .hosts
        .iter()
        .position(|h| h.is_primary())
        .and_then(|i| cluster.sessions[i].clone());
    let locked = match (run.changes_hosts(), &primary) {
        (true, Some(primary)) => {
            match lock::acquire(primary, &holder, settings.break_lock).await {
                Ok(Some(notice)) => reporter.note(&format!("pgrepl: {notice}")),
                Ok(None) => {}
                Err(e) => return Err(Error::Refused(e)),
            }
            Some(primary)
        }
        _ => None,
    };
    let report = engine
        .run_guarded(plan.command.as_str(), &plan.steps, &plan.rollback)
        .await;
    if let Some(primary) = locked {
        lock::release(primary, &holder).await;
    }
    Ok(report)
}

/// What `switchover --format json` prints.
#[derive(serde::Serialize)]
struct SwitchoverOutput<'a> {
    command: &'static str,
    status: &'static str,
    old_primary: &'a str,
    new_primary: &'a str,
    timeline: Option<u32>,
    write_unavailable_ms: Option<u128>,
    /// How each former replica of the old primary came to follow the new one.
    rewind: std::collections::BTreeMap<String, &'static str>,
    promotion: Option<&'a RunReport>,
    rewire: Option<&'a RunReport>,
    verify: Option<&'a VerifyReport>,
}

/// `switchover --to NAME`: phase one promotes NAME (rolled back before the promotion on
/// any failure); the inventory file then names NAME the primary; phase two rewires every
/// other member to it. With NAME already the primary, only phase two runs, which changes
/// nothing on a cluster already wired so.
async fn switchover(
    settings: &Settings,
    run: &RunSettings,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let name = run.target.clone().unwrap_or_default();
    let path = &settings.inventory;
    let inventory = load_inventory(path, run.command, Some(&name), None, None)?;
    let old_primary = inventory
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.clone())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    let swapped_text = edit::with_primary(path, &text, &name)?;
    let swapped = inventory::parse(path, &swapped_text)?;
    let (_, rewire_plan) = prepare(settings, CommandKind::Rewire, None, &swapped)?;
    note_inventory_secrets(&inventory, &reporter);
    let connect = connect_options(settings, &reporter);
    let mut promotion = None;
    let mut sessions = None;
    let mut switch_state = Default::default();
    if old_primary != name {
        let (templates, plan) = prepare(settings, run.command, Some(&name), &inventory)?;
        let mut cluster = new_cluster(settings, run, inventory, templates, &reporter);
        cluster.target = Some(name.clone());
        let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
        cluster
            .connect(&all, &connect)
            .await
            .map_err(Error::SshConfig)?;
        let engine = new_engine(settings, run, cluster, &reporter);
        let report = locked_run(settings, run, &engine, &plan, &reporter).await?;
        let cluster = engine.runner();
        switch_state = cluster
            .switch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        sessions = Some((cluster.sessions.clone(), cluster.unreachable.clone()));
        let stop = report.failed() || run.check;
        let interrupted = engine.interrupted();
        promotion = Some(report);
        if stop {
            reporter.finish();
            return print_switchover(
                settings,
                &reporter,
                &old_primary,
                &name,
                &switch_state,
                promotion.as_ref(),
                None,
                None,
                None,
            )
            .map(|_| finished(promotion.as_ref().expect("ran"), interrupted));
        }
        // The promotion happened: the file must say so before anything else can fail.
        edit::set_primary(path, &name).map_err(|e| Error::Usage {
            message: format!("{e}\n`{name}` IS the primary now: set its role in the inventory by hand, then run `pgrepl switchover --to {name}` again to rewire the others"),
            hint: None,
        })?;
        reporter.note(&format!(
            "pgrepl: {}: `{name}` is now the primary, `{old_primary}` a replica",
            path.display()
        ));
    }
    let templates = Templates::load(settings.templates.as_deref())?;
    let mut cluster = new_cluster(settings, run, swapped, templates, &reporter);
    match sessions {
        Some((s, u)) => {
            cluster.sessions = s;
            cluster.unreachable = u;
        }
        None => {
            let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
            cluster
                .connect(&all, &connect)
                .await
                .map_err(Error::SshConfig)?;
        }
    }
    let rewire_run = RunSettings {
        command: CommandKind::Rewire,
        ..run.clone()
    };
    let engine = new_engine(settings, &rewire_run, cluster, &reporter);
    if promotion.is_some() {
        // Past the promotion: the rewiring runs to its end even if interrupted.
        engine.commit();
    }
    let report = locked_run(settings, &rewire_run, &engine, &rewire_plan, &reporter).await?;
    let cluster = engine.runner();
    let verify = cluster.verify_report.lock().await.clone();
    let mut rewind = std::collections::BTreeMap::new();
    for (i, h) in cluster.inventory.hosts.iter().enumerate() {
        if let Some(how) = cluster.memos[i].lock().await.rejoined {
            rewind.insert(h.name.clone(), how);
        }
    }
    reporter.finish();
    print_switchover(
        settings,
        &reporter,
        &old_primary,
        &name,
        &switch_state,
        promotion.as_ref(),
        Some(&report),
        verify.as_ref(),
        Some(rewind),
    )?;
    Ok(finished(&report, false))
}

/// What `failover --format json` prints.
#[derive(serde::Serialize)]
struct FailoverOutput<'a> {
    command: &'static str,
    status: &'static str,
    old_primary: &'a str,
    new_primary: Option<&'a str>,
    /// How the old primary was fenced: `ssh` (stopped, read-only, autostart off) or `stated`.
    old_primary_fenced: &'static str,
    /// The replicas, best first: newest timeline, then most WAL received.
    ranking: &'a [Ranked],
    timeline: Option<u32>,
    promotion: Option<&'a RunReport>,
    rewire: Option<&'a RunReport>,
    verify: Option<&'a VerifyReport>,
}

/// A replica's standing for promotion.
#[derive(Debug, Clone, serde::Serialize)]
struct Ranked {
    name: String,
    timeline: u32,
    received_lsn: u64,
}

/// `failover [--to NAME]`: the primary is down. Confirmed down from every viewpoint,
/// fenced where SSH reaches it, the best replica promoted, the others rewired; the old
/// primary stays out until `rejoin`.
async fn failover(
    settings: &Settings,
    run: &RunSettings,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let path = &settings.inventory;
    let inventory = load_inventory(path, run.command, run.target.as_deref(), None, None)?;
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
    note_inventory_secrets(&inventory, &reporter);
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
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
    if p.role == crate::status::Seen::Primary {
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
    // 3. Rank the replicas: newest timeline, most WAL received, then inventory order.
    let mut ranking: Vec<Ranked> = seen
        .hosts
        .iter()
        .filter(|h| h.role == crate::status::Seen::Standby && h.name != old_name)
        .map(|h| Ranked {
            name: h.name.clone(),
            timeline: h.timeline.unwrap_or(0),
            received_lsn: h.received_lsn.or(h.replayed_lsn).unwrap_or(0),
        })
        .collect();
    // Stable: equal positions keep inventory order.
    ranking.sort_by_key(|r| std::cmp::Reverse((r.timeline, r.received_lsn)));
    for (n, r) in ranking.iter().enumerate() {
        reporter.note(&format!(
            "rank {}: `{}` timeline {} received up to {}",
            n + 1,
            r.name,
            r.timeline,
            crate::actions::switchover::format_lsn(r.received_lsn)
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
            if (best.timeline, best.received_lsn) > (r.timeline, r.received_lsn)
                && !run.allow_data_loss
            {
                return refuse(
                    format!(
                        "`{name}` is behind `{}` ({} bytes less WAL received): promoting it loses those writes",
                        best.name,
                        best.received_lsn.saturating_sub(r.received_lsn)
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
    let print = |promotion: &RunReport,
                 rewire: Option<&RunReport>,
                 verify: Option<&VerifyReport>,
                 new: Option<&str>| {
        let failed = promotion.failed() || rewire.is_some_and(RunReport::failed);
        match settings.format {
            Format::Human | Format::Prometheus => {
                reporter.output(&report::render_recap(promotion));
                if let Some(v) = verify {
                    reporter.output(&format!("\n{}", report::render_verify(v)));
                }
                if let Some(r) = rewire {
                    reporter.output(&report::render_recap(r));
                }
            }
            Format::Json => reporter.output(&json(&FailoverOutput {
                command: "failover",
                status: if failed { "failed" } else { "ok" },
                old_primary: &old_name,
                new_primary: new,
                old_primary_fenced: fenced_by,
                ranking: &ranking,
                timeline,
                promotion: Some(promotion),
                rewire,
                verify,
            })),
        }
    };
    if promotion.failed() || run.check {
        reporter.finish();
        print(&promotion, None, None, None);
        return Ok(finished(&promotion, engine.interrupted()));
    }
    edit::set_primary(path, &chosen.name).map_err(|e| Error::Usage {
        message: format!("{e}\n`{}` IS the primary now: set its role in the inventory by hand, then run `pgrepl bootstrap` to rewire the others", chosen.name),
        hint: None,
    })?;
    reporter.note(&format!(
        "pgrepl: {}: `{}` is now the primary, `{old_name}` a replica to bring back with `pgrepl rejoin {old_name}`",
        path.display(),
        chosen.name
    ));
    // 5. Rewire the others; the old primary stays out until `rejoin`.
    let swapped_text = edit::with_primary(path, &text, &chosen.name)?;
    let swapped = inventory::parse(path, &swapped_text)?;
    let (templates, mut rewire_plan) = prepare(settings, CommandKind::Rewire, None, &swapped)?;
    for step in &mut rewire_plan.steps {
        step.hosts.retain(|&i| i != old);
    }
    let rewire_run = RunSettings {
        command: CommandKind::Rewire,
        ..run.clone()
    };
    let mut cluster = new_cluster(settings, &rewire_run, swapped, templates, &reporter);
    (cluster.sessions, cluster.unreachable) = sessions;
    cluster.out_of_service = vec![old];
    let engine = new_engine(settings, &rewire_run, cluster, &reporter);
    engine.commit();
    let rewire = locked_run(settings, &rewire_run, &engine, &rewire_plan, &reporter).await?;
    let verify = engine.runner().verify_report.lock().await.clone();
    reporter.finish();
    print(
        &promotion,
        Some(&rewire),
        verify.as_ref(),
        Some(&chosen.name),
    );
    Ok(finished(&rewire, false))
}

#[allow(clippy::too_many_arguments)]
fn print_switchover(
    settings: &Settings,
    reporter: &Reporter,
    old_primary: &str,
    new_primary: &str,
    state: &crate::actions::switchover::SwitchState,
    promotion: Option<&RunReport>,
    rewire: Option<&RunReport>,
    verify: Option<&VerifyReport>,
    rewind: Option<std::collections::BTreeMap<String, &'static str>>,
) -> Result<(), Error> {
    let failed = promotion.is_some_and(RunReport::failed) || rewire.is_some_and(RunReport::failed);
    match settings.format {
        Format::Human | Format::Prometheus => {
            if let Some(p) = promotion {
                reporter.output(&report::render_recap(p));
            }
            if let Some(v) = verify {
                reporter.output(&format!("\n{}", report::render_verify(v)));
            }
            if let Some(r) = rewire {
                reporter.output(&report::render_recap(r));
            }
            if let Some(ms) = state.write_unavailable_ms() {
                reporter.output(&format!(
                    "switchover {old_primary} -> {new_primary}: writes unavailable for {ms} ms, timeline {}\n",
                    state.timeline.unwrap_or(0)
                ));
            }
        }
        Format::Json => reporter.output(&json(&SwitchoverOutput {
            command: "switchover",
            status: if failed { "failed" } else { "ok" },
            old_primary,
            new_primary,
            timeline: state.timeline,
            write_unavailable_ms: state.write_unavailable_ms(),
            rewind: rewind.unwrap_or_default(),
            promotion,
            rewire,
            verify,
        })),
    }
    Ok(())
}

/// `pgrepl status`: every host read at once, nothing changed, no password used.
async fn status(settings: &Settings, reporter: &Arc<Reporter>) -> Result<Finished, Error> {
    let inventory = inventory::load(&settings.inventory)?;
    check_limit(settings.limit.as_deref(), &inventory, &settings.inventory)?;
    let templates = Templates::load(settings.templates.as_deref())?;
    let run = RunSettings {
        command: CommandKind::Verify,
        target: None,
        address: None,
        slot: None,
        check: true,
        diff: false,
        allow_restart: false,
        verify: Default::default(),
        old_primary_fenced: false,
        allow_data_loss: false,
        force: false,
    };
    let mut cluster = new_cluster(settings, &run, inventory, templates, reporter);
    let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
    cluster
        .connect(&all, &connect_options(settings, reporter))
        .await
        .map_err(Error::SshConfig)?;
    let report = crate::status::gather(&cluster.verify_target()).await;
    reporter.finish();
    reporter.output(&match settings.format {
        Format::Human => crate::status::render(&report),
        Format::Json => json(&report),
        Format::Prometheus => crate::status::prometheus(&report),
    });
    Ok(match report.status {
        crate::status::Overall::Ok => Finished::Ok,
        crate::status::Overall::Degraded => Finished::Warn,
        crate::status::Overall::Failed => Finished::Failed,
    })
}

/// add-replica refuses a host that already streams from the primary, changing nothing.
async fn refuse_healthy_target(cluster: &Cluster, target: Option<&str>) -> Result<(), Error> {
    let Some(name) = target else { return Ok(()) };
    let Some(ctx) = cluster
        .inventory
        .hosts
        .iter()
        .position(|h| h.name == name)
        .and_then(|i| cluster.host(i))
    else {
        return Ok(());
    };
    if crate::actions::condition_holds(&ctx, playbook::Condition::Streaming)
        .await
        .unwrap_or(false)
    {
        return Err(Error::Refused(StepError::new(
            format!(
                "`{name}` is already a healthy replica streaming from the primary; nothing to add"
            ),
            "run `pgrepl verify` to check it",
        )));
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: stop launching work, let the engine rescue hosts.
fn watch_signals(engine: &Arc<Engine<Cluster>>, reporter: &Arc<Reporter>) {
    let engine = engine.clone();
    let reporter = reporter.clone();
    tokio::spawn(async move {
        let term = async {
            #[cfg(unix)]
            {
                if let Ok(mut s) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    s.recv().await;
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        reporter.note(
            "pgrepl: interrupted: stopping new work and putting hosts back in a safe state ...",
        );
        engine.interrupt();
    });
}
