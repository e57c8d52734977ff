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
use crate::{edit, plan, playbook, promotion};

mod remove;

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
            if *command == CommandKind::RemoveReplica {
                return remove::plan(&settings, target.as_deref().unwrap_or_default(), &reporter);
            }
            let inventory = load_inventory(
                &settings.inventory,
                *command,
                target.as_deref(),
                address.as_deref(),
                edit::Extra::default(),
            )?;
            let (_, plan) = prepare(&settings, *command, target.as_deref(), &inventory)?;
            match settings.format {
                Format::Human | Format::Prometheus => {
                    reporter.output(&plan::render(&plan, &inventory))
                }
                Format::Json => reporter.output(&json(&plan::to_json(&plan, &inventory))),
            }
            Ok(Finished::Ok)
        }
        Job::Run(run) => execute(&settings, run, reporter).await,
        Job::Status => status(&settings, &reporter).await,
        Job::Cleanup { check, verify } => cleanup(&settings, &reporter, *check, verify).await,
    }
}

pub(crate) fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// Loads the inventory; with `address`, as it is with the target appended (in memory:
/// the file is written only by a run that changes hosts).
pub(crate) fn load_inventory(
    path: &Path,
    command: CommandKind,
    target: Option<&str>,
    address: Option<&str>,
    extra: edit::Extra<'_>,
) -> Result<Inventory, Error> {
    let inventory = match (target, address) {
        (Some(name), Some(address)) => {
            edit::append_replica(path, name, address, extra, true)?;
            let text = std::fs::read_to_string(path).map_err(|source| Error::File {
                path: path.to_path_buf(),
                source,
            })?;
            let current = inventory::parse(path, &text)?;
            if current.hosts.iter().any(|h| h.name == name) {
                current
            } else {
                let new = edit::with_replica(path, &text, name, address, extra)?;
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
        .filter(|l| inventory.node_named(l).is_none())
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = (0..inventory.node_count())
        .map(|i| inventory.node_name(i))
        .collect();
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
pub(crate) fn prepare(
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

/// A plan that writes the replication password (the role on the primary, the replicas'
/// passfiles) needs it, before any host is contacted; read-only plans never ask for it.
pub(crate) fn require_password(plan: &plan::Plan, inventory: &Inventory) -> Result<(), Error> {
    let writes_it = plan.steps.iter().chain(&plan.rollback).any(|s| {
        s.work.actions().iter().any(|a| {
            matches!(
                a,
                playbook::Action::ReplicationRole | playbook::Action::Passfile
            )
        })
    });
    if writes_it {
        inventory.require_password()?;
    }
    // The endpoints' steps: the check role's password derives from the replication
    // password; the application roles' and the stats pages' are written too.
    let runs = |wanted: fn(&playbook::Action) -> bool| {
        plan.steps
            .iter()
            .any(|s| !s.hosts.is_empty() && s.work.actions().iter().any(|a| wanted(a)))
    };
    let roles = runs(|a| matches!(a, playbook::Action::RolesAndDatabases));
    let haproxy = runs(|a| matches!(a, playbook::Action::Haproxy));
    if !inventory.endpoints.is_empty() && (roles || haproxy) {
        inventory.require_password()?;
    }
    inventory.require_endpoint_secrets(roles, haproxy)?;
    Ok(())
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
        CommandKind::Switchover => return promotion::switchover(settings, run, reporter).await,
        CommandKind::Failover => return promotion::failover(settings, run, reporter).await,
        _ => {}
    }
    if run.command == CommandKind::RemoveReplica {
        return remove::run(settings, run, reporter).await;
    }
    let inventory = load_inventory(
        &settings.inventory,
        run.command,
        run.target.as_deref(),
        run.address.as_deref(),
        run.extra(),
    )?;
    let (templates, plan) = prepare(settings, run.command, run.target.as_deref(), &inventory)?;
    require_password(&plan, &inventory)?;
    note_inventory_secrets(&inventory, &reporter);
    if let (Some(name), Some(address), false) = (&run.target, &run.address, run.check) {
        edit::append_replica(&settings.inventory, name, address, run.extra(), false)?;
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
    // The preflight's facts of every host are read alongside the primary's forecast
    // (which reads the primary's): one round trip's time for all of them. The run lock is
    // taken alongside: facts are only read, and a refused lock ends the run before any step.
    let looked_at = preflight_hosts(&plan);
    if run.changes_hosts() {
        let holder = lock::Holder::this_run(run.command.as_str());
        let _ = engine
            .runner()
            .lock_request
            .set((holder.line(), lock::mode(settings.break_lock)));
    }
    let (_, _, lock) = tokio::join!(
        note_primary_restart(engine.runner(), &plan, run.check, &reporter),
        engine.runner().prefetch_facts(&looked_at),
        take_lock(settings, run, engine.runner(), &reporter)
    );
    let report = run_holding(&engine, &plan, lock?).await;
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

pub(crate) fn finished(report: &RunReport, interrupted: bool) -> Finished {
    if interrupted {
        Finished::Interrupted
    } else if report.failed() {
        Finished::Failed
    } else {
        Finished::Ok
    }
}

/// Redacts the replication password from everything shown; warns when it is inline.
pub(crate) fn note_inventory_secrets(inventory: &Inventory, reporter: &Reporter) {
    if let Some(password) = &inventory.replication.password {
        reporter.add_secret(password.expose_secret());
        if !inventory.endpoints.is_empty() {
            // As it is, and as haproxy.cfg carries it (hex, in the checks' bytes).
            let check = crate::haproxy::check_password(password.expose_secret());
            reporter.add_secret(&crate::pg::wire::hex(check.as_bytes()));
            reporter.add_secret(&check);
        }
    }
    let roles = inventory.roles.iter().filter_map(|r| r.password.as_ref());
    let stats = inventory
        .endpoints
        .iter()
        .filter_map(|e| e.stats.as_ref()?.password.as_ref());
    for secret in roles.chain(stats) {
        reporter.add_secret(secret.expose_secret());
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
pub(crate) fn new_cluster(
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
            catch_up_timeout: run.catch_up_timeout,
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

pub(crate) fn new_engine(
    settings: &Settings,
    run: &RunSettings,
    cluster: Cluster,
    reporter: &Arc<Reporter>,
) -> Arc<Engine<Cluster>> {
    let members = cluster.members();
    let epoch = cluster.connecting_since;
    let mut engine = Engine::new(
        cluster,
        reporter.clone(),
        members,
        Options {
            check: run.check,
            forks: settings.forks,
        },
    );
    if let Some(epoch) = epoch {
        engine = engine.with_epoch(epoch);
    }
    let engine = Arc::new(engine);
    watch_signals(&engine, reporter);
    engine
}

/// The hosts a plan's preflight steps look at.
fn preflight_hosts(plan: &plan::Plan) -> Vec<usize> {
    let mut v: Vec<usize> = plan
        .steps
        .iter()
        .filter(|s| {
            s.work
                .actions()
                .iter()
                .any(|a| matches!(a, playbook::Action::Preflight))
        })
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
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

pub(crate) fn connect_options(
    settings: &Settings,
    reporter: &Arc<Reporter>,
) -> crate::ssh::ConnectOptions {
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
pub(crate) async fn locked_run(
    settings: &Settings,
    run: &RunSettings,
    engine: &Arc<Engine<Cluster>>,
    plan: &plan::Plan,
    reporter: &Reporter,
) -> Result<RunReport, Error> {
    let lock = take_lock(settings, run, engine.runner(), reporter).await?;
    Ok(run_holding(engine, plan, lock).await)
}

/// The run lock on the primary, for a run that changes hosts (`None` for one that only
/// looks, or without a reachable primary: its steps say so).
pub(crate) async fn take_lock(
    settings: &Settings,
    run: &RunSettings,
    cluster: &Cluster,
    reporter: &Reporter,
) -> Result<Option<RunLock>, Error> {
    let holder = lock::Holder::this_run(run.command.as_str());
    let primary = cluster
        .inventory
        .hosts
        .iter()
        .position(|h| h.is_primary())
        .and_then(|i| cluster.sessions[i].clone());
    // Taken with the primary's facts when the run asked for that (see `execute`).
    let with_facts = async |primary: &crate::ssh::Session| {
        let answer = cluster.lock_answer().await?;
        Some(lock::judge(primary, &holder, &answer).await)
    };
    match (run.changes_hosts(), primary) {
        (true, Some(primary)) => {
            let taken = match with_facts(&primary).await {
                Some(taken) => taken,
                None => lock::acquire(&primary, &holder, settings.break_lock).await,
            };
            match taken {
                Ok(Some(notice)) => reporter.note(&format!("pgrepl: {notice}")),
                Ok(None) => {}
                Err(e) => return Err(Error::Refused(e)),
            }
            Ok(Some(RunLock { primary, holder }))
        }
        _ => Ok(None),
    }
}

/// A run lock taken by [`take_lock`]: where it is, and whose.
pub(crate) struct RunLock {
    primary: Arc<crate::ssh::Session>,
    holder: lock::Holder,
}

/// Runs the plan's steps, then gives back the run lock (if one was taken).
async fn run_holding(
    engine: &Arc<Engine<Cluster>>,
    plan: &plan::Plan,
    lock: Option<RunLock>,
) -> RunReport {
    let cluster = engine.runner();
    // A plan that ends with verify gives the lock back as verify starts.
    let ends_with_verify = plan.steps.last().is_some_and(|s| {
        s.work
            .actions()
            .into_iter()
            .all(|a| matches!(a, crate::playbook::Action::Verify))
    });
    if let (Some(lock), true) = (&lock, ends_with_verify)
        && let Ok(mut slot) = cluster.release_at_verify.lock()
    {
        *slot = Some((lock.primary.clone(), lock.holder.clone()));
    }
    let mut report = engine
        .run_guarded(plan.command.as_str(), &plan.steps, &plan.rollback)
        .await;
    // The total includes connecting (a host that timed out took that long).
    if let Some(since) = cluster.connecting_since {
        report.elapsed_ms = report.elapsed_ms.max(since.elapsed().as_millis());
    }
    // Unless verify gave it back already.
    let still_held = cluster
        .release_at_verify
        .lock()
        .map(|mut l| l.take().is_some())
        .unwrap_or(true);
    if let (Some(lock), true) = (lock, still_held || !ends_with_verify) {
        lock::release(&lock.primary, &lock.holder).await;
    }
    report
}

/// The settings of a command that runs no playbook and changes nothing through the actions
/// (status, cleanup).
fn read_only_run() -> RunSettings {
    RunSettings {
        command: CommandKind::Verify,
        target: None,
        address: None,
        slot: None,
        upstream: None,
        check: true,
        diff: false,
        allow_restart: false,
        wipe: false,
        verify: Default::default(),
        old_primary_fenced: false,
        allow_data_loss: false,
        catch_up_timeout: Default::default(),
        force: false,
    }
}

/// What `cleanup --format json` prints.
#[derive(serde::Serialize)]
struct CleanupOutput<'a> {
    command: &'static str,
    check: bool,
    /// `ok`, or `failed` when a host could not be listed or a removal failed.
    status: &'static str,
    dirs: &'a [crate::cleanup::Entry],
    /// Bytes removed (or that would be, with --check).
    freed_bytes: u64,
    verify: &'a VerifyReport,
}

/// `pgrepl cleanup [--check]`: verify, list every host's moved-aside data dirs, and remove
/// those of replicas that verify healthy (holding the run lock, so no run is using one).
async fn cleanup(
    settings: &Settings,
    reporter: &Arc<Reporter>,
    check: bool,
    verify: &crate::verify::VerifyOptions,
) -> Result<Finished, Error> {
    use crate::cleanup::{Entry, Fate};
    let inventory = inventory::load(&settings.inventory)?;
    check_limit(settings.limit.as_deref(), &inventory, &settings.inventory)?;
    let templates = Templates::load(settings.templates.as_deref())?;
    let run = RunSettings {
        verify: verify.clone(),
        ..read_only_run()
    };
    let mut cluster = new_cluster(settings, &run, inventory, templates, reporter);
    let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
    cluster
        .connect(&all, &connect_options(settings, reporter))
        .await
        .map_err(Error::SshConfig)?;
    let verified = crate::verify::run(&cluster.verify_target()).await;
    let inv = &cluster.inventory;
    let hosts: Vec<usize> = all
        .into_iter()
        .filter(|&i| {
            settings
                .limit
                .as_ref()
                .is_none_or(|l| l.contains(&inv.hosts[i].name))
        })
        .collect();
    let listed = futures::future::join_all(hosts.iter().map(|&i| {
        let session = cluster.sessions[i].clone();
        let why = cluster.unreachable[i].clone().unwrap_or_default();
        async move {
            match session {
                Some(s) => crate::cleanup::list(&s, &inv.hosts[i])
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(why),
            }
        }
    }))
    .await;
    let mut trouble = false;
    let mut plan: Vec<(usize, Entry)> = Vec::new();
    for (&i, listing) in hosts.iter().zip(listed) {
        let host = &inv.hosts[i];
        let aside = match listing {
            Ok(aside) => aside,
            Err(e) => {
                reporter.note(&format!(
                    "pgrepl: cannot list the moved-aside data dirs on `{}`: {e}",
                    host.name
                ));
                trouble = true;
                continue;
            }
        };
        let checks = verified.hosts.iter().find(|h| h.name == host.name);
        let failing: Vec<String> = checks
            .map(|h| {
                h.checks
                    .iter()
                    .filter(|c| c.status == Health::Fail)
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let reason = crate::cleanup::keep_reason(host, checks.map(|h| h.status), &failing);
        for (path, bytes) in aside.dirs {
            let action = match (&reason, check) {
                (Some(_), _) => Fate::Kept,
                (None, true) => Fate::WouldRemove,
                (None, false) => Fate::Removed,
            };
            plan.push((
                i,
                Entry {
                    host: host.name.clone(),
                    path,
                    bytes,
                    action,
                    reason: reason.clone(),
                },
            ));
        }
    }
    if plan.iter().any(|(_, e)| e.action == Fate::Removed) {
        let holder = lock::Holder::this_run("cleanup");
        let primary = inv
            .hosts
            .iter()
            .position(|h| h.is_primary())
            .and_then(|i| cluster.sessions[i].clone())
            .ok_or_else(|| {
                Error::Refused(StepError::new(
                    "the primary is unreachable: cannot take the run lock",
                    "run cleanup once the primary answers",
                ))
            })?;
        match lock::acquire(&primary, &holder, settings.break_lock).await {
            Ok(Some(notice)) => reporter.note(&format!("pgrepl: {notice}")),
            Ok(None) => {}
            Err(e) => return Err(Error::Refused(e)),
        }
        for (i, entry) in plan.iter_mut().filter(|(_, e)| e.action == Fate::Removed) {
            let Some(session) = cluster.sessions[*i].clone() else {
                continue;
            };
            match crate::cleanup::remove(&session, &inv.hosts[*i], &entry.path).await {
                Ok(()) => reporter.note(&format!("[{}] removed {}", entry.host, entry.path)),
                Err(e) => {
                    entry.action = Fate::Failed;
                    entry.reason = Some(e);
                    trouble = true;
                }
            }
        }
        lock::release(&primary, &holder).await;
    }
    let entries: Vec<Entry> = plan.into_iter().map(|(_, e)| e).collect();
    reporter.finish();
    match settings.format {
        Format::Human | Format::Prometheus => {
            reporter.output(&crate::cleanup::render(&entries, check))
        }
        Format::Json => reporter.output(&json(&CleanupOutput {
            command: "cleanup",
            check,
            status: if trouble { "failed" } else { "ok" },
            dirs: &entries,
            freed_bytes: entries
                .iter()
                .filter(|e| matches!(e.action, Fate::Removed | Fate::WouldRemove))
                .map(|e| e.bytes)
                .sum(),
            verify: &verified,
        })),
    }
    Ok(if trouble {
        Finished::Failed
    } else {
        Finished::Ok
    })
}

/// `pgrepl status`: every host read at once, nothing changed, no password used.
async fn status(settings: &Settings, reporter: &Arc<Reporter>) -> Result<Finished, Error> {
    let inventory = inventory::load(&settings.inventory)?;
    check_limit(settings.limit.as_deref(), &inventory, &settings.inventory)?;
    let templates = Templates::load(settings.templates.as_deref())?;
    let run = read_only_run();
    let mut cluster = new_cluster(settings, &run, inventory, templates, reporter);
    let all: Vec<usize> = (0..cluster.inventory.hosts.len()).collect();
    cluster
        .connect(&all, &connect_options(settings, reporter))
        .await
        .map_err(Error::SshConfig)?;
    let target = cluster.verify_target();
    let (mut report, endpoints) = tokio::join!(
        crate::status::gather(&target),
        crate::actions::endpoints::status(&target)
    );
    report.add_endpoints(&cluster.inventory, endpoints);
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

/// Says first, before any step, when the run restarts the primary (or would, in check
/// mode), and for which settings: that is an outage for every writer.
async fn note_primary_restart(
    cluster: &Cluster,
    plan: &plan::Plan,
    check: bool,
    reporter: &Reporter,
) {
    let settings = cluster.primary_restart_forecast(&plan.steps).await;
    if settings.is_empty() {
        return;
    }
    let primary = cluster
        .inventory
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.as_str())
        .unwrap_or_default();
    reporter.note(&format!(
        "pgrepl: this run {} the primary `{primary}` (writes stop for a few seconds) to apply {}",
        if check { "would restart" } else { "restarts" },
        settings.join(", ")
    ));
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
