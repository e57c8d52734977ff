//! `pgrepl remove-replica NAME`, from the inventory file to the recap.
//!
//! One engine run: its cluster is the inventory *without* NAME, so every template, slot
//! list and verify sees only the members that stay, plus NAME as one extra member (the
//! last) for its own steps. The inventory file loses NAME only once the steps on NAME and
//! on the primary worked; until then a re-run picks up where the last one stopped. For a
//! NAME already gone from the file, a re-run only makes sure the primary keeps no slot or
//! walsender for it.

use std::path::Path;
use std::sync::Arc;

use super::{
    connect_options, finished, hosts_to_contact, json, locked_run, new_cluster, new_engine,
    note_inventory_secrets, prepare,
};
use crate::actions::remove::{Data, Removal};
use crate::engine::{Events, OnFailure, RunReport};
use crate::error::{Error, Finished};
use crate::inventory::{self, Host, Inventory};
use crate::playbook::Action;
use crate::report::{self, Format, Reporter};
use crate::settings::{RunSettings, Settings};
use crate::step::StepError;
use crate::templates::Templates;
use crate::verify::{Health, VerifyReport};
use crate::{edit, plan};

/// What a removal works on, read from the inventory file before any host is contacted.
enum Removing {
    /// NAME is in the inventory.
    Host(Box<Leaving>),
    /// NAME has already left the inventory.
    Gone(Box<Inventory>),
}

/// A host in the inventory, about to leave it.
struct Leaving {
    /// The file as it is, and without the host.
    text: String,
    reduced_text: String,
    /// The inventory without the host: what the run's cluster is.
    reduced: Inventory,
    /// The run's members: `reduced`'s hosts, then the host (what the plan resolves against).
    members: Inventory,
    host: Host,
    /// The replicas that stream from it (`upstream:`), in file order.
    children: Vec<String>,
}

fn removing(path: &Path, name: &str) -> Result<Removing, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| inventory::Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let full = inventory::parse(path, &text)?;
    let Some(host) = full.hosts.iter().find(|h| h.name == name).cloned() else {
        return Ok(Removing::Gone(Box::new(full)));
    };
    may_leave(&host, path)?;
    let reduced_text = edit::without_host(&text, name).map_err(|m| {
        Error::usage(
            format!("{}: {m}", path.display()),
            "the inventory file was not changed and no host was contacted",
        )
    })?;
    let reduced = inventory::parse(path, &reduced_text).map_err(|e| without_it(&full, name, &e))?;
    let mut members = reduced.clone();
    members.hosts.push(host.clone());
    let children = full
        .hosts
        .iter()
        .filter(|h| h.upstream.as_deref() == Some(name))
        .map(|h| h.name.clone())
        .collect();
    Ok(Removing::Host(Box::new(Leaving {
        text,
        reduced_text,
        reduced,
        members,
        host,
        children,
    })))
}

/// The inventory without the host would be invalid: say so, and how to get there. The
/// usual cause is synchronous replication that names it or counts on it.
fn without_it(full: &Inventory, name: &str, e: &inventory::Error) -> Error {
    let hint = match &full.replication.synchronous {
        Some(sync) if sync.standbys.iter().any(|s| s == name) => format!(
            "`{name}` is one of the synchronous standbys ({}): take it out of replication.synchronous (its `standbys` list or the host's `synchronous: true`) and lower `count` if it would exceed the standbys left, then run remove-replica again; if commits must not wait meanwhile, `pgrepl sync off` first",
            sync.standby_names()
        ),
        _ => "fix the inventory so that it stands without this host, then run remove-replica again"
            .to_string(),
    };
    Error::usage(
        format!("without `{name}` the inventory would be invalid, so nothing was changed:\n{e}"),
        hint,
    )
}

/// Whether a host may leave the cluster: the one place that decides. The primary may not
/// (the others stream from it); a host that other members depend on in any other way
/// would be refused here as well.
fn may_leave(host: &Host, path: &Path) -> Result<(), Error> {
    if host.is_primary() {
        return Err(Error::usage(
            format!(
                "{}: `{}` is the primary; remove-replica removes replicas",
                path.display(),
                host.name
            ),
            "switch over to a replica first (pgrepl switchover --to NAME), then remove this host",
        ));
    }
    Ok(())
}

/// `plan remove-replica NAME`.
pub(super) fn plan(
    settings: &Settings,
    name: &str,
    reporter: &Reporter,
) -> Result<Finished, Error> {
    let command = crate::settings::CommandKind::RemoveReplica;
    let (plan, members) = match removing(&settings.inventory, name)? {
        Removing::Host(leaving) => {
            let (_, plan) = prepare(settings, command, Some(name), &leaving.members)?;
            (plan, leaving.members)
        }
        Removing::Gone(inventory) => (leftover_plan(&inventory), *inventory),
    };
    match settings.format {
        Format::Human | Format::Prometheus => reporter.output(&plan::render(&plan, &members)),
        Format::Json => reporter.output(&json(&plan)),
    }
    Ok(Finished::Ok)
}

/// For a host already gone: the one step a re-run takes.
fn leftover_plan(inventory: &Inventory) -> plan::Plan {
    let primary = inventory
        .hosts
        .iter()
        .position(Host::is_primary)
        .unwrap_or(0);
    plan::Plan {
        command: "remove-replica".into(),
        source: "(built in: the host is no longer in the inventory)".into(),
        steps: vec![plan::PlannedStep {
            name: "a walsender or slot left for it on the primary".into(),
            hosts: vec![primary],
            work: plan::Work::Action(Action::DropRemovedSlot),
            on_failure: OnFailure::Stop,
            serial: false,
            waves: false,
            unless: None,
            only_if: None,
            point_of_no_return: false,
            lane: None,
        }],
        rollback: Vec::new(),
    }
}

/// The plan is resolved against `members` (the host last among the hosts, the proxies
/// after it); the cluster numbers its nodes the members, the proxies, then the host
/// (`Cluster::add_removal`). Renumbers the plan's hosts by name.
fn renumber(plan: &mut plan::Plan, members: &Inventory, cluster: &Inventory, removed: usize) {
    for step in plan.steps.iter_mut().chain(plan.rollback.iter_mut()) {
        for h in &mut step.hosts {
            *h = cluster.node_named(members.node_name(*h)).unwrap_or(removed);
        }
    }
}

/// What `remove-replica --format json` prints.
#[derive(serde::Serialize)]
struct RemoveOutput<'a> {
    command: &'static str,
    /// `ok` or `failed`.
    status: &'static str,
    check: bool,
    host: &'a str,
    /// `removed`, `not removed`, `would remove` or `not in the inventory`.
    result: &'static str,
    /// Where the host's data is now: its data dir, or where --wipe moved it.
    data_dir: Option<String>,
    /// Whether --wipe moved it aside (now or in an earlier run).
    data_moved: bool,
    /// The inventory file: `updated`, `unchanged` or `would be updated`.
    inventory: &'static str,
    recap: &'a RunReport,
    verify: Option<&'a VerifyReport>,
}

/// `remove-replica NAME`.
pub(super) async fn run(
    settings: &Settings,
    run: &RunSettings,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let name = run.target.clone().unwrap_or_default();
    match removing(&settings.inventory, &name)? {
        Removing::Gone(inventory) => gone(settings, run, &name, *inventory, reporter).await,
        Removing::Host(leaving) => remove(settings, run, &name, *leaving, reporter).await,
    }
}

/// Takes the host out: the run, then the inventory file, then verify of what stays.
async fn remove(
    settings: &Settings,
    run: &RunSettings,
    name: &str,
    leaving: Leaving,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let Leaving {
        text,
        reduced_text,
        reduced,
        members,
        host,
        children,
    } = leaving;
    let (templates, mut plan) = prepare(settings, run.command, Some(name), &members)?;
    note_inventory_secrets(&reduced, &reporter);
    let primary = reduced
        .hosts
        .iter()
        .find(|h| h.is_primary())
        .map(|h| h.name.clone())
        .unwrap_or_default();
    let mut cluster = new_cluster(settings, run, reduced, templates, &reporter);
    let index = cluster.inventory.node_count();
    let mut removal = Removal::of(host, run.wipe, run.force);
    removal.children = children;
    cluster.add_removal(removal);
    renumber(&mut plan, &members, &cluster.inventory, index);
    cluster
        .connect(
            &hosts_to_contact(&plan, index + 1),
            &connect_options(settings, &reporter),
        )
        .await
        .map_err(Error::SshConfig)?;
    if let Some(why) = cluster.unreachable[index].clone() {
        if !run.force {
            return Err(unreachable(name, &why, &primary));
        }
        reporter.note(&format!(
            "pgrepl: `{name}` cannot be reached; --force: going on without it (its own steps are skipped)"
        ));
    }
    let engine = new_engine(settings, run, cluster, &reporter);
    let report = locked_run(settings, run, &engine, &plan, &reporter).await?;
    let interrupted = engine.interrupted();
    let cluster = engine.runner();
    let done_on = |host: &str| {
        report
            .hosts
            .iter()
            .find(|h| h.name == host)
            .is_some_and(|h| h.status != "failed")
    };
    // Out of the cluster once its own steps and the primary's are done; a member
    // that stays but failed is reported, and `bootstrap` brings it in line later.
    let removed = !interrupted && done_on(name) && done_on(&primary);
    let path = &settings.inventory;
    if run.check && run.diff {
        reporter.diff("local", &path.display().to_string(), &text, &reduced_text);
    }
    let (inventory_state, mut lines, file_failed) =
        settle_inventory(path, name, run.check, removed);
    let (data_dir, data_moved) = match cluster.removal.as_ref().and_then(Removal::data) {
        Some(Data::Kept(dir)) => (Some(dir), false),
        Some(Data::MovedTo(dir)) => (Some(dir), true),
        _ => (None, false),
    };
    if removed && !run.check && report.failed() {
        lines.push(format!(
            "a member that stays could not be updated (above): its pg_hba.conf may still let `{name}`'s address replicate; once it is back, `pgrepl bootstrap` brings it in line"
        ));
    }
    let verify = if removed && !run.check && !interrupted {
        Some(crate::verify::run(&cluster.verify_target()).await)
    } else {
        None
    };
    reporter.finish();
    let verify_failed = verify.as_ref().is_some_and(|v| v.status == Health::Fail);
    let failed = report.failed() || file_failed || verify_failed;
    match settings.format {
        Format::Human | Format::Prometheus => {
            if let Some(v) = &verify {
                reporter.output(&format!("\n{}", report::render_verify(v)));
            }
            reporter.output(&report::render_recap(&report));
            reporter.output(&(lines.join("\n") + "\n"));
        }
        Format::Json => {
            for line in &lines {
                reporter.note(line);
            }
            reporter.output(&json(&RemoveOutput {
                command: "remove-replica",
                status: if failed { "failed" } else { "ok" },
                check: run.check,
                host: name,
                result: if run.check {
                    "would remove"
                } else if removed {
                    "removed"
                } else {
                    "not removed"
                },
                data_dir,
                data_moved,
                inventory: inventory_state,
                recap: &report,
                verify: verify.as_ref(),
            }))
        }
    }
    Ok(if interrupted || !failed {
        finished(&report, interrupted)
    } else {
        Finished::Failed
    })
}

/// The refusal when the host cannot be reached and --force was not given.
fn unreachable(name: &str, why: &str, primary: &str) -> Error {
    let mut why = why.lines();
    let first = why.next().unwrap_or_default();
    let ssh_hint = why
        .find_map(|l| l.strip_prefix("hint: "))
        .map(|h| format!("{h}; or, "))
        .unwrap_or_default();
    Error::Refused(StepError::new(
        format!("`{name}` cannot be reached: {first}"),
        format!(
            "{ssh_hint}if it is gone for good, re-run with --force: its slot and pg_hba rules go and it leaves the inventory, but the host itself is left as it was (set up as a standby of `{primary}`, which it can then no longer stream from)"
        ),
    ))
}

/// Takes the host out of the inventory file once it is out of the cluster (`removed`);
/// returns the file's state, the lines to tell, and whether writing it failed.
fn settle_inventory(
    path: &Path,
    name: &str,
    check: bool,
    removed: bool,
) -> (&'static str, Vec<String>, bool) {
    let file = path.display();
    if check {
        return (
            "would be updated",
            vec![format!(
                "--check: nothing was changed; {file} would no longer list `{name}`"
            )],
            false,
        );
    }
    if !removed {
        return (
            "unchanged",
            vec![format!(
                "{file} still lists `{name}`: fix the failure above and run `pgrepl remove-replica {name}` again (each step looks first, so it picks up where this run stopped)"
            )],
            false,
        );
    }
    match edit::remove_host(path, name) {
        Ok(()) => (
            "updated",
            vec![format!(
                "`{name}` is out of the cluster and {file} no longer lists it"
            )],
            false,
        ),
        Err(message) => (
            "unchanged",
            vec![format!(
                "{message}\n`{name}` IS out of the cluster: remove its entry from the inventory by hand"
            )],
            true,
        ),
    }
}

/// A host no longer in the inventory: nothing to remove; only a slot or walsender left
/// for it on the primary (its slot named by the default rule) is looked for and dropped.
async fn gone(
    settings: &Settings,
    run: &RunSettings,
    name: &str,
    inventory: Inventory,
    reporter: Arc<Reporter>,
) -> Result<Finished, Error> {
    let path = &settings.inventory;
    let line = format!("`{name}` is not in the inventory: nothing to remove");
    reporter.note(&format!(
        "pgrepl: {line} ({}); looking for a slot or walsender left for it on the primary",
        path.display()
    ));
    let plan = leftover_plan(&inventory);
    note_inventory_secrets(&inventory, &reporter);
    let templates = Templates::load(settings.templates.as_deref())?;
    let mut cluster = new_cluster(settings, run, inventory, templates, &reporter);
    cluster.add_removal(Removal::gone(name));
    cluster
        .connect(&plan.steps[0].hosts, &connect_options(settings, &reporter))
        .await
        .map_err(Error::SshConfig)?;
    let engine = new_engine(settings, run, cluster, &reporter);
    let report = locked_run(settings, run, &engine, &plan, &reporter).await?;
    reporter.finish();
    match settings.format {
        Format::Human | Format::Prometheus => {
            reporter.output(&report::render_recap(&report));
            reporter.output(&format!("{line}\n"));
        }
        Format::Json => reporter.output(&json(&RemoveOutput {
            command: "remove-replica",
            status: if report.failed() { "failed" } else { "ok" },
            check: run.check,
            host: name,
            result: "not in the inventory",
            data_dir: None,
            data_moved: false,
            inventory: "unchanged",
            recap: &report,
            verify: None,
        })),
    }
    Ok(finished(&report, engine.interrupted()))
}
