//! The step engine: runs a [`Plan`] over the hosts' SSH sessions and records every outcome.
//!
//! Steps run in order; within a step, hosts run concurrently up to `--forks`. A host that
//! fails is left out of later steps; a step whose `on_failure` is `stop` ends the run after
//! it. Blocks run their actions in order per host and call their `rescue` action on a host
//! whose block failed, so a moved-aside data dir is always put back. Interrupts stop new
//! work and rescue hosts caught half-way.

pub mod context;
pub mod lock;
mod recap;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use secrecy::SecretString;
use tokio::sync::{Mutex, Semaphore};

pub use context::{Facts, HostCtx, HostState};
pub use recap::{HostRecap, RunReport, Status};

use crate::actions;
use crate::inventory::Inventory;
use crate::plan::{Plan, PlannedStep, Work};
use crate::playbook::{Action, OnFailure};
use crate::report::Reporter;
use crate::ssh::{self, ConnectOptions, Session};
use crate::templates::Templates;
use crate::verify::{VerifyOptions, VerifyReport};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only check; change nothing.
    pub check: bool,
    /// Show unified diffs of config files that change (or would).
    pub diff: bool,
    /// How many hosts work at once within a step.
    pub forks: usize,
    /// Allow restarting the primary where a step's policy would refuse.
    pub allow_restart: bool,
    pub verify: VerifyOptions,
}

/// The outcome of one action on one host.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
}

impl Outcome {
    pub fn ok(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Ok,
            detail: detail.into(),
        }
    }
    pub fn changed(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Changed,
            detail: detail.into(),
        }
    }
    pub fn skipped(detail: impl Into<String>) -> Self {
        Outcome {
            status: Status::Skipped,
            detail: detail.into(),
        }
    }
}

/// Why an action failed on a host.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Ssh(#[from] ssh::Error),
    #[error("{message}{}", if hint.is_empty() { String::new() } else { format!("\nhint: {hint}") })]
    Failed { message: String, hint: String },
}

impl StepError {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StepError::Failed {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Everything a run needs, shared by every host task.
pub struct Engine {
    pub inventory: Inventory,
    pub templates: Templates,
    pub options: Options,
    pub reporter: Reporter,
    /// Sessions by host index; `None` for a host that could not be reached.
    pub sessions: Vec<Option<Arc<Session>>>,
    pub states: Vec<Mutex<HostState>>,
    pub password: Option<SecretString>,
    /// The host named on the command line (add-replica).
    pub target: Option<String>,
    /// How many base backups may run at once (sizes max_wal_senders).
    pub concurrent_backups: usize,
    pub interrupted: Arc<AtomicBool>,
    /// Flips to true on an interrupt, waking actions in flight.
    pub interrupt: tokio::sync::watch::Sender<bool>,
    pub verify_report: Mutex<Option<VerifyReport>>,
    /// The pid of each host's running pg_basebackup, recorded the moment it is known (a
    /// plain mutex: it is set from inside the output callback), so a rescue can end it.
    pub backup_pids: Vec<std::sync::Mutex<Option<u32>>>,
}

impl Engine {
    /// Opens one SSH session per host in `hosts`, all at once; unreachable hosts are recorded.
    pub async fn connect(&mut self, hosts: &[usize], opts: &ConnectOptions) -> Result<(), String> {
        let config = ssh::load_ssh_config(opts)?;
        let config = Arc::new(config);
        let mut tasks = Vec::new();
        for &i in hosts {
            let host = &self.inventory.hosts[i];
            let ep = ssh::endpoint(&host.name, &host.ssh, config.as_ref().as_ref());
            let opts = opts.clone();
            let config = config.clone();
            tasks.push((
                i,
                tokio::spawn(
                    async move { ssh::connect(&ep, &opts, config.as_ref().as_ref()).await },
                ),
            ));
        }
        for (i, task) in tasks {
            match task.await {
                Ok(Ok(session)) => self.sessions[i] = Some(Arc::new(session)),
                Ok(Err(e)) => self.states[i].get_mut().unreachable = Some(e.to_string()),
                Err(e) => self.states[i].get_mut().unreachable = Some(e.to_string()),
            }
        }
        Ok(())
    }

    /// Runs every step of the plan and returns the recap.
    pub async fn run(self: &Arc<Self>, plan: &Plan) -> RunReport {
        let started = Instant::now();
        let mut stopped = None;
        for step in &plan.steps {
            if self.interrupted.load(Ordering::SeqCst) {
                stopped = Some("interrupted".to_string());
                break;
            }
            let failed = self.run_step(step).await;
            if failed && step.on_failure == OnFailure::Stop {
                stopped = Some(format!("step `{}` failed", step.name));
                break;
            }
        }
        // Blocks cut short by an interrupt have already run their rescue.
        if self.interrupted.load(Ordering::SeqCst) {
            stopped.get_or_insert_with(|| "interrupted".to_string());
        }
        recap::build(self, plan, started.elapsed(), stopped).await
    }

    /// Runs one step on its hosts; returns whether any host failed.
    async fn run_step(self: &Arc<Self>, step: &PlannedStep) -> bool {
        let width = if step.serial {
            1
        } else {
            self.options.forks.max(1)
        };
        let forks = Arc::new(Semaphore::new(width));
        let mut tasks = Vec::new();
        for &i in &step.hosts {
            if self.host_failed(i).await {
                continue;
            }
            let engine = self.clone();
            let step = step.clone();
            let forks = forks.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = forks.acquire().await;
                engine.run_on_host(&step, i).await
            }));
        }
        let mut any_failed = false;
        for task in tasks {
            any_failed |= !task.await.unwrap_or(false);
        }
        any_failed
    }

    async fn host_failed(&self, i: usize) -> bool {
        // Only an earlier failure skips a host: an unreachable one must fail this step (and
        // so stop a preflight) rather than be passed over in silence.
        self.states[i].lock().await.failed.is_some()
    }

    /// Runs a step on one host; returns false when it failed there.
    async fn run_on_host(self: &Arc<Self>, step: &PlannedStep, i: usize) -> bool {
        let host = &self.inventory.hosts[i];
        let Some(session) = self.sessions[i].clone() else {
            let reason = self.states[i]
                .lock()
                .await
                .unreachable
                .clone()
                .unwrap_or_default();
            self.fail(i, &step.name, &StepError::new(reason, "")).await;
            return false;
        };
        let ctx = HostCtx {
            engine: self,
            index: i,
            host,
            session: &session,
        };
        // Typed conditions first: `unless` leaves a host alone, `only_if` passes it by.
        for (cond, holds_means_run) in [(step.unless, false), (step.only_if, true)] {
            let Some(cond) = cond else { continue };
            match actions::condition_holds(&ctx, cond).await {
                Ok(holds) if holds == holds_means_run => {}
                Ok(_) => {
                    let label = actions::condition_label(cond);
                    let outcome = if holds_means_run {
                        Outcome::skipped(format!("not {label}"))
                    } else {
                        Outcome::ok(format!("{label} already (left alone)"))
                    };
                    self.record(i, &step.name, &outcome).await;
                    return true;
                }
                Err(e) => {
                    self.fail(i, &step.name, &e).await;
                    return false;
                }
            }
        }
        match &step.work {
            Work::Action(action) => self.run_action(&ctx, &step.name, action).await,
            Work::Block { steps, rescue } => {
                for (name, action) in steps {
                    // An interrupt between two steps leaves the block half done: rescue it too.
                    let done = if self.interrupted.load(Ordering::SeqCst) {
                        let stop =
                            StepError::new("interrupted", "re-run the command to finish the job");
                        self.fail(i, name, &stop).await;
                        false
                    } else {
                        self.run_action(&ctx, name, action).await
                    };
                    if !done {
                        if let Some(rescue) = rescue {
                            self.run_rescue(&ctx, rescue).await;
                        }
                        return false;
                    }
                }
                true
            }
        }
    }

    async fn run_action(&self, ctx: &HostCtx<'_>, step: &str, action: &Action) -> bool {
        self.reporter.step_started(&ctx.host.name, step);
        let mut interrupt = self.interrupt.subscribe();
        let result = tokio::select! {
            r = actions::run(ctx, action) => r,
            _ = interrupt.wait_for(|i| *i) => Err(StepError::new("interrupted", "re-run the command to finish the job")),
        };
        match result {
            Ok(outcome) => {
                self.record(ctx.index, step, &outcome).await;
                true
            }
            Err(e) => {
                self.fail(ctx.index, step, &e).await;
                false
            }
        }
    }

    async fn run_rescue(&self, ctx: &HostCtx<'_>, rescue: &Action) {
        let name = format!("rescue: {}", rescue.name());
        self.reporter.step_started(&ctx.host.name, &name);
        match actions::run(ctx, rescue).await {
            Ok(outcome) => {
                self.reporter.step_done(&ctx.host.name, &name, &outcome);
                ctx.state().await.left_in = Some(outcome.detail);
            }
            Err(e) => {
                let message = format!("rescue failed: {e}");
                self.reporter.step_failed(&ctx.host.name, &name, &message);
                ctx.state().await.left_in = Some(message);
            }
        }
    }

    async fn record(&self, i: usize, step: &str, outcome: &Outcome) {
        self.reporter
            .step_done(&self.inventory.hosts[i].name, step, outcome);
        self.states[i].lock().await.count(outcome.status);
    }

    async fn fail(&self, i: usize, step: &str, error: &StepError) {
        let host = &self.inventory.hosts[i].name;
        let message = format!("{step}: {error}");
        self.reporter.step_failed(host, step, &error.to_string());
        let mut state = self.states[i].lock().await;
        state.count(Status::Failed);
        state.failed.get_or_insert(message);
    }
}
