//! Running a command: inventory → plan → engine → report, and the exit code.
//!
//! Invalid input (inventory, playbook, template, flags) exits 64 before any host is
//! contacted. Ctrl-C or SIGTERM stops new work, rescues hosts caught half-way, prints
//! what state each host is left in, and exits 130.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::CommandFactory;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::cli::{ChangeFlags, Cli, Command, Global, VerifyFlags};
use crate::engine::{Engine, HostState, Options};
use crate::inventory::{self, Inventory};
use crate::report::{self, Format, Reporter};
use crate::ssh::ConnectOptions;
use crate::templates::Templates;
use crate::verify::{Health, VerifyOptions};
use crate::{edit, plan, playbook};

/// Exit codes, as documented in README and `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const WARN: u8 = 1;
    pub const FAILED: u8 = 2;
    pub const INVALID: u8 = 64;
    pub const INTERRUPTED: u8 = 130;
}

/// Runs the parsed command line and returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let g = &cli.global;
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "pgrepl",
                &mut std::io::stdout(),
            );
            exit::OK
        }
        Command::Plan { command, name } => show_plan(g, command, name.as_deref()),
        Command::Bootstrap(flags) => {
            execute(
                g,
                "bootstrap",
                None,
                flags,
                false,
                &VerifyOptions::default(),
            )
            .await
        }
        Command::AddReplica {
            name,
            address,
            slot,
            allow_restart,
            flags,
        } => {
            if let Some(address) = address
                && let Err(e) =
                    edit::append_replica(&g.inventory, name, address, slot.as_deref(), flags.check)
            {
                eprintln!("pgrepl: {e}");
                return exit::INVALID;
            }
            execute(
                g,
                "add-replica",
                Some(name),
                flags,
                *allow_restart,
                &VerifyOptions::default(),
            )
            .await
        }
        Command::Verify(v) => {
            let flags = ChangeFlags {
                check: false,
                diff: false,
            };
            execute(g, "verify", None, &flags, false, &verify_options(v)).await
        }
    }
}

fn verify_options(v: &VerifyFlags) -> VerifyOptions {
    VerifyOptions {
        max_lag_bytes: v.max_lag_bytes,
        max_lag_seconds: v.max_lag_seconds,
        max_slot_retained: v.max_slot_retained,
        probe_timeout: Duration::from_secs_f64(v.probe_timeout.max(0.1)),
    }
}

/// Loads what a command needs before contacting any host; errors are invalid input.
fn prepare(
    g: &Global,
    command: &str,
    target: Option<&str>,
) -> Result<(Inventory, Templates, plan::Plan), String> {
    let inventory = load_inventory(&g.inventory, command, target)?;
    let templates = Templates::load(g.templates.as_deref()).map_err(|e| e.to_string())?;
    let (book, source) =
        playbook::load(command, g.playbooks.as_deref()).map_err(|e| e.to_string())?;
    let plan = plan::build(
        command,
        &source,
        &book,
        &inventory,
        target,
        g.limit.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    for step in &plan.steps {
        for action in actions_of(&step.work) {
            if let playbook::Action::Config { template, .. } | playbook::Action::Hba { template } =
                action
                && !templates.has(template)
            {
                return Err(format!(
                    "{}: step `{}` uses template `{template}`, which does not exist\nhint: the built-in templates are {}",
                    plan.source,
                    step.name,
                    crate::templates::EMBEDDED
                        .iter()
                        .map(|t| t.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok((inventory, templates, plan))
}

fn actions_of(work: &plan::Work) -> Vec<&playbook::Action> {
    match work {
        plan::Work::Action(a) => vec![a],
        plan::Work::Block { steps, rescue, .. } => {
            steps.iter().map(|(_, a)| a).chain(rescue.iter()).collect()
        }
    }
}

fn load_inventory(path: &Path, command: &str, target: Option<&str>) -> Result<Inventory, String> {
    let inventory = inventory::load(path).map_err(|e| e.to_string())?;
    if let Some(name) = target {
        match inventory.hosts.iter().find(|h| h.name == name) {
            None => {
                return Err(format!(
                    "{}: host `{name}` is not in the inventory\nhint: add it to the inventory, or pass --address ADDR to append it",
                    path.display()
                ));
            }
            Some(h) if h.is_primary() => {
                return Err(format!(
                    "{}: `{name}` is the primary; {command} adds replicas\nhint: name a replica host",
                    path.display()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(inventory)
}

fn show_plan(g: &Global, command: &str, name: Option<&str>) -> u8 {
    if command == "add-replica" && name.is_none() {
        eprintln!(
            "pgrepl: plan add-replica needs the new replica's name\nhint: pgrepl plan add-replica NAME"
        );
        return exit::INVALID;
    }
    match prepare(g, command, name) {
        Ok((inventory, _, plan)) => {
            match g.format {
                Format::Human => print!("{}", plan::render(&plan, &inventory)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                ),
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("pgrepl: {e}");
            exit::INVALID
        }
    }
}

async fn execute(
    g: &Global,
    command: &str,
    target: Option<&str>,
    flags: &ChangeFlags,
    allow_restart: bool,
    verify: &VerifyOptions,
) -> u8 {
    let (inventory, templates, plan) = match prepare(g, command, target) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pgrepl: {e}");
            return exit::INVALID;
        }
    };
    let log = match &g.log_file {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("pgrepl: cannot open log file {}: {e}", path.display());
                return exit::INVALID;
            }
        },
        None => None,
    };
    let password = inventory.replication.password.clone();
    let secrets: Vec<String> = password
        .iter()
        .map(|p| p.expose_secret().to_string())
        .collect();
    let interactive = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let reporter = Reporter::new(g.format, g.verbose, interactive, log, secrets);
    if matches!(
        inventory.replication.password_source,
        inventory::PasswordSource::Inline
    ) {
        reporter.line("warning: the replication password is written in the inventory; prefer password_env or password_file");
    }
    let clone_hosts = plan
        .steps
        .iter()
        .filter(|s| matches!(s.work, plan::Work::Block { .. }))
        .map(|s| s.hosts.len())
        .max()
        .unwrap_or(0);
    let n = inventory.hosts.len();
    let mut engine = Engine {
        templates,
        options: Options {
            check: flags.check,
            diff: flags.diff,
            forks: g.forks.max(1),
            allow_restart,
            verify: verify.clone(),
        },
        reporter,
        sessions: vec![None; n],
        states: (0..n).map(|_| Mutex::new(HostState::default())).collect(),
        password,
        target: target.map(str::to_string),
        concurrent_backups: clone_hosts.min(g.forks.max(1)),
        interrupted: Arc::new(AtomicBool::new(false)),
        verify_report: Mutex::new(None),
        backup_pids: (0..n).map(|_| std::sync::Mutex::new(None)).collect(),
        interrupt: tokio::sync::watch::channel(false).0,
        inventory,
    };
    let mut hosts: Vec<usize> = plan
        .steps
        .iter()
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    // Verify reads every member, even those the command leaves untouched.
    if plan.steps.iter().any(|s| {
        actions_of(&s.work)
            .iter()
            .any(|a| matches!(a, playbook::Action::Verify))
    }) {
        hosts = (0..n).collect();
    }
    hosts.sort_unstable();
    hosts.dedup();
    let trace_reporter = TraceSink::default();
    let opts = ConnectOptions {
        ssh_config: g.ssh_config.clone(),
        accept_new_host_keys: g.accept_new_host_keys,
        connect_timeout: Duration::from_secs(g.connect_timeout.max(1)),
        keepalive: Duration::from_secs(g.ssh_keepalive.max(1)),
        trace: (g.verbose > 0).then(|| trace_reporter.callback()),
    };
    if let Err(e) = engine.connect(&hosts, &opts).await {
        eprintln!("pgrepl: ssh config: {e}");
        return exit::INVALID;
    }
    let engine = Arc::new(engine);
    trace_reporter.attach(&engine);
    watch_signals(&engine);
    if command == "add-replica"
        && let Some(code) = refuse_healthy_target(&engine, target).await
    {
        return code;
    }
    // Commands that change hosts hold the cluster lock on the primary while they run.
    let changes = command != "verify" && !flags.check;
    let holder = crate::engine::lock::Holder::this_run(command);
    let primary = engine
        .inventory
        .hosts
        .iter()
        .position(|h| h.is_primary())
        .and_then(|i| engine.sessions[i].clone());
    if let (true, Some(primary)) = (changes, &primary) {
        match crate::engine::lock::acquire(primary, &holder, g.break_lock).await {
            Ok(Some(notice)) => engine.reporter.line(&format!("pgrepl: {notice}")),
            Ok(None) => {}
            Err(e) => {
                engine.reporter.finish();
                eprintln!("pgrepl: {e}\nnothing was changed");
                return exit::FAILED;
            }
        }
    }
    let report = engine.run(&plan).await;
    if let (true, Some(primary)) = (changes, &primary) {
        crate::engine::lock::release(primary, &holder).await;
    }
    let mut verify_report = engine.verify_report.lock().await.clone();
    if command == "verify" && verify_report.is_none() {
        verify_report = Some(crate::verify::run(&engine).await);
    }
    engine.reporter.finish();
    let interrupted = engine.interrupted.load(Ordering::SeqCst);
    if command == "verify" {
        let v = verify_report.unwrap_or_else(|| crate::verify::VerifyReport {
            status: Health::Fail,
            hosts: vec![],
            probe: vec![],
        });
        match g.format {
            Format::Human => print!("{}", report::render_verify(&v)),
            Format::Json => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        }
        return if interrupted {
            exit::INTERRUPTED
        } else {
            match v.status {
                Health::Ok => exit::OK,
                Health::Warn => exit::WARN,
                Health::Fail => exit::FAILED,
            }
        };
    }
    match g.format {
        Format::Human => {
            if let Some(v) = &report.verify {
                print!("\n{}", report::render_verify(v));
            }
            print!("{}", report::render_recap(&report));
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
    }
    if interrupted {
        exit::INTERRUPTED
    } else if report.failed() {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// add-replica refuses a host that already streams from the primary, changing nothing.
async fn refuse_healthy_target(engine: &Arc<Engine>, target: Option<&str>) -> Option<u8> {
    let name = target?;
    let i = engine.inventory.hosts.iter().position(|h| h.name == name)?;
    let session = engine.sessions[i].clone()?;
    let ctx = crate::engine::HostCtx {
        engine,
        index: i,
        host: &engine.inventory.hosts[i],
        session: &session,
    };
    if crate::actions::condition_holds(&ctx, playbook::Condition::Streaming)
        .await
        .unwrap_or(false)
    {
        eprintln!(
            "pgrepl: `{name}` is already a healthy replica streaming from the primary; nothing to add, nothing changed\nhint: run `pgrepl verify` to check it"
        );
        return Some(exit::FAILED);
    }
    None
}

/// Ctrl-C or SIGTERM: stop launching work, let the engine rescue hosts, exit 130.
fn watch_signals(engine: &Arc<Engine>) {
    let engine = engine.clone();
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
        engine.reporter.line(
            "pgrepl: interrupted: stopping new work and putting hosts back in a safe state ...",
        );
        engine.interrupted.store(true, Ordering::SeqCst);
        let _ = engine.interrupt.send(true);
    });
}

/// Routes `-v` command traces to the reporter once the engine exists.
#[derive(Default, Clone)]
struct TraceSink {
    engine: Arc<std::sync::OnceLock<std::sync::Weak<Engine>>>,
}

impl TraceSink {
    fn callback(&self) -> crate::ssh::Trace {
        let cell = self.engine.clone();
        Arc::new(move |host: &str, cmd: &str| {
            if let Some(engine) = cell.get().and_then(|w| w.upgrade()) {
                engine.reporter.trace(host, cmd);
            }
        })
    }

    fn attach(&self, engine: &Arc<Engine>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }
}
