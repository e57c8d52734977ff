//! The step engine: runs ordered steps over hosts and records every outcome. It knows
//! nothing of PostgreSQL, SSH or how results are shown.
//!
//! What a step *does* belongs to a [`Runner`] (the PostgreSQL actions implement it; unit
//! tests use a scripted one); what people *see* goes out through [`Events`] (the reporter
//! implements it). The engine owns only the control flow that protects data:
//!
//! - steps run in order; within a step, hosts run concurrently up to `forks`, or one at a
//!   time for a `serial` step; a step in `waves` starts a host only once the host it
//!   waits for ([`Runner::waits_for`], say its upstream) has finished the step, and fails
//!   it unstarted when that one failed; consecutive steps in named lanes (on disjoint
//!   hosts) run lane beside lane, each lane in order;
//! - a host that failed is left out of later steps; a step whose [`OnFailure`] is `Stop`
//!   ends the run after it (steps on the primary default to that);
//! - a block runs its actions in order per host and calls its rescue on a host whose block
//!   failed, so a half-done change is always undone (not in check mode: nothing changed);
//! - an interrupt starts no new work, cancels actions in flight and rescues their blocks;
//! - a run with a point of no return (a promotion, say) rolls back when it stops before that
//!   step (a failure or an interrupt), and once past it finishes its steps whatever comes:
//!   an interrupt there is noted, not obeyed, because stopping half-way would be worse;
//! - the recap counts what happened on each host.

mod events;
mod recap;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

pub use crate::step::{Outcome, Status, StepError};
pub use events::{Events, NoEvents};
pub use recap::{HostRecap, RunReport, Span};

/// What a failed host means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop the whole run after this step (the default for steps on the primary).
    Stop,
    /// Drop the failed host from later steps; the others carry on (the default elsewhere).
    Continue,
}

/// One step with its hosts resolved to indices into the engine's members.
#[derive(Debug, Clone, Serialize)]
pub struct Step<A, C> {
    pub name: String,
    pub hosts: Vec<usize>,
    pub work: Work<A>,
    pub on_failure: OnFailure,
    /// One host at a time.
    pub serial: bool,
    /// Each host after the one it waits for ([`Runner::waits_for`]) has done this step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub waves: bool,
    /// Leave a host alone where this holds.
    pub unless: Option<C>,
    /// Run only where this holds.
    pub only_if: Option<C>,
    /// Once this step starts, the run cannot be rolled back: the engine announces it, and
    /// from then on finishes every step even when interrupted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub point_of_no_return: bool,
    /// Consecutive steps that name a lane run as one group: its lanes side by side, each
    /// lane's steps in order, the group over when every lane is. The lanes' hosts do not
    /// overlap (the plan checks). A step that stops the run stops its own lane at once;
    /// the run stops once the others are done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
}

/// What a step does on each of its hosts.
#[derive(Debug, Clone, Serialize)]
pub enum Work<A> {
    Action(A),
    /// Actions run in order per host; `rescue` runs on a host whose block failed.
    Block {
        steps: Vec<(String, A)>,
        rescue: Option<A>,
    },
}

impl<A> Work<A> {
    /// Every action of the step, rescue included.
    pub fn actions(&self) -> Vec<&A> {
        match self {
            Work::Action(a) => vec![a],
            Work::Block { steps, rescue } => {
                steps.iter().map(|(_, a)| a).chain(rescue.iter()).collect()
            }
        }
    }
}

/// A host as the engine knows it: a name and a role, for the recap.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub role: String,
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only look: actions change nothing, so there is nothing to rescue.
    pub check: bool,
    /// How many hosts work at once within a step (at least 1).
    pub forks: usize,
}

/// What runs the steps: the PostgreSQL actions in the binary, a script in unit tests.
///
/// Hosts are indices into the members the engine was built with. A runner keeps whatever
/// memory its actions need between steps (a moved-aside data dir, a pid) itself.
pub trait Runner: Send + Sync + 'static {
    type Action: Send + Sync;
    type Condition: Copy + Send + Sync;

    /// Runs one action on one host.
    fn run(
        &self,
        host: usize,
        action: &Self::Action,
    ) -> impl Future<Output = Result<Outcome, StepError>> + Send;

    /// Whether a condition holds on a host.
    fn holds(
        &self,
        host: usize,
        cond: Self::Condition,
    ) -> impl Future<Output = Result<bool, StepError>> + Send;

    /// How a condition reads in a report ("streaming from the primary").
    fn describe(&self, cond: Self::Condition) -> String;

    /// An action's short name, for a rescue's line.
    fn action_name(&self, action: &Self::Action) -> String;

    /// Why the host cannot be worked on at all (e.g. it could not be reached), if so.
    fn unreachable(&self, host: usize) -> Option<String>;

    /// The host that must finish a step in `waves` before this one starts it (a cascaded
    /// replica's upstream, say). Only hosts of the same step count; `None`: no wait.
    fn waits_for(&self, _host: usize) -> Option<usize> {
        None
    }

    /// What state a host is left in, when the runner knows better than the engine (a data
    /// dir still moved aside, say). `failed`: a step failed there; `interrupted`: the run was.
    fn left_as(&self, _host: usize, _failed: bool, _interrupted: bool) -> Option<String> {
        None
    }
}

/// What the engine remembers of one host.
#[derive(Debug, Default)]
struct HostState {
    ok: u32,
    changed: u32,
    skipped: u32,
    failed_count: u32,
    /// The first failure, with its step.
    failed: Option<String>,
    /// What a rescue left the host as.
    left_in: Option<String>,
}

impl HostState {
    fn count(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed_count += 1,
        }
    }
}

/// Runs steps with a [`Runner`] and tells [`Events`] what happens.
pub struct Engine<R: Runner> {
    runner: R,
    events: Arc<dyn Events>,
    members: Vec<Member>,
    options: Options,
    states: Vec<Mutex<HostState>>,
    interrupted: AtomicBool,
    /// Flips to true on an interrupt, waking actions in flight.
    interrupt: tokio::sync::watch::Sender<bool>,
    /// Past the point of no return: interrupts no longer cancel or stop anything.
    committed: AtomicBool,
    /// Where the timeline's clock starts (the first connection, when the caller says so).
    epoch: Instant,
    /// When each action ran on each host, in the order they ended.
    timeline: Mutex<Vec<Span>>,
}

impl<R: Runner> Engine<R> {
    pub fn new(runner: R, events: Arc<dyn Events>, members: Vec<Member>, options: Options) -> Self {
        let states = members.iter().map(|_| Mutex::default()).collect();
        Engine {
            runner,
            events,
            members,
            options,
            states,
            interrupted: AtomicBool::new(false),
            interrupt: tokio::sync::watch::channel(false).0,
            committed: AtomicBool::new(false),
            epoch: Instant::now(),
            timeline: Mutex::default(),
        }
    }

    /// Counts the timeline from `epoch` (e.g. when the run began connecting) instead of
    /// from the engine's creation.
    pub fn with_epoch(mut self, epoch: Instant) -> Self {
        self.epoch = epoch;
        self
    }

    fn ms_since_epoch(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Records that `step` ran on host `i` from `start_ms` until now.
    fn span(&self, i: usize, step: &str, start_ms: u64, status: Status) {
        let span = Span {
            host: self.name(i).to_string(),
            step: step.to_string(),
            start_ms,
            end_ms: self.ms_since_epoch(),
            status: status.label().to_string(),
        };
        self.timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(span);
    }

    /// The runner, for what a command does before or after the steps.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// Stops new work and cancels actions in flight; their blocks are rescued. Past the
    /// point of no return it is only noted.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        if self.committed() {
            self.events.note(
                "interrupted past the point of no return: finishing the remaining steps (stopping now would leave the cluster half-changed)",
            );
        }
        let _ = self.interrupt.send(true);
    }

    /// Whether the run was interrupted.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Marks the run as past its point of no return from the start (a run that finishes
    /// what an earlier one committed to): interrupts are noted, not obeyed.
    pub fn commit(&self) {
        self.committed.store(true, Ordering::SeqCst);
    }

    /// Whether the run has passed its point of no return.
    pub fn committed(&self) -> bool {
        self.committed.load(Ordering::SeqCst)
    }

    /// Whether new work must not start: interrupted, and not past the point of no return.
    fn stopping(&self) -> bool {
        self.interrupted() && !self.committed()
    }

    /// Runs every step in order and returns the recap.
    pub async fn run(
        self: &Arc<Self>,
        command: &str,
        steps: &[Step<R::Action, R::Condition>],
    ) -> RunReport
    where
        R::Action: Clone + 'static,
        R::Condition: 'static,
    {
        self.run_guarded(command, steps, &[]).await
    }

    /// Runs every step in order; if the run stops (a failure that stops it, or an
    /// interrupt) before a step marked `point_of_no_return` has started, runs `rollback`
    /// (to its end, on every host it names, interrupts or not).
    pub async fn run_guarded(
        self: &Arc<Self>,
        command: &str,
        steps: &[Step<R::Action, R::Condition>],
        rollback: &[Step<R::Action, R::Condition>],
    ) -> RunReport
    where
        R::Action: Clone + 'static,
        R::Condition: 'static,
    {
        let started = Instant::now();
        let mut stopped = None;
        let mut rest = steps;
        while !rest.is_empty() && !self.stopping() {
            // A step with no lane is a group of its own.
            let n = match rest[0].lane {
                Some(_) => rest.iter().take_while(|s| s.lane.is_some()).count(),
                None => 1,
            };
            let (group, after) = rest.split_at(n);
            rest = after;
            let mut names: Vec<Option<&str>> = Vec::new();
            let mut lanes: Vec<Vec<&Step<R::Action, R::Condition>>> = Vec::new();
            for step in group {
                let lane = step.lane.as_deref();
                match names.iter().position(|l| *l == lane) {
                    Some(k) => lanes[k].push(step),
                    None => {
                        names.push(lane);
                        lanes.push(vec![step]);
                    }
                }
            }
            let ends = futures::future::join_all(lanes.iter().map(|l| self.run_lane(l))).await;
            if let Some(why) = ends.into_iter().flatten().next() {
                stopped = Some(why);
                break;
            }
        }
        // Blocks cut short by an interrupt have already run their rescue.
        if self.interrupted() && stopped.is_none() && !self.committed() {
            stopped = Some("interrupted".to_string());
        }
        if stopped.is_some() && !self.committed() && !rollback.is_empty() {
            self.events
                .note("rolling back: the run stopped before its point of no return");
            // The rollback runs to its end: it is what makes stopping safe.
            self.committed.store(true, Ordering::SeqCst);
            let mut undone = true;
            for step in rollback {
                undone &= !self.run_step(step, false).await;
            }
            self.committed.store(false, Ordering::SeqCst);
            if let Some(why) = &mut stopped {
                why.push_str(if undone {
                    "; rolled back"
                } else {
                    "; the rollback failed (see the hosts below)"
                });
            }
        }
        recap::build(self, command, steps, rollback, started.elapsed(), stopped)
    }

    /// Runs a lane's steps in order; returns why the run stops, if one of them stops it.
    async fn run_lane(self: &Arc<Self>, steps: &[&Step<R::Action, R::Condition>]) -> Option<String>
    where
        R::Action: Clone + 'static,
        R::Condition: 'static,
    {
        for step in steps {
            if self.stopping() {
                break;
            }
            if step.point_of_no_return && !self.committed() {
                self.events.note(&format!(
                    "point of no return: step `{}` cannot be rolled back; from here on every step runs to its end, even if interrupted",
                    step.name
                ));
                self.committed.store(true, Ordering::SeqCst);
            }
            let failed = self.run_step(step, true).await;
            if failed && step.on_failure == OnFailure::Stop {
                return Some(format!("step `{}` failed", step.name));
            }
        }
        None
    }

    /// Runs one step on its hosts; returns whether any host failed. `skip_failed`: leave
    /// out hosts that failed earlier (a rollback goes to them too).
    async fn run_step(
        self: &Arc<Self>,
        step: &Step<R::Action, R::Condition>,
        skip_failed: bool,
    ) -> bool
    where
        R::Action: Clone + 'static,
        R::Condition: 'static,
    {
        if step.waves {
            return self.run_waves(step, skip_failed).await;
        }
        self.run_hosts(step, &step.hosts, skip_failed).await
    }

    /// Runs a step in waves: hosts whose predecessor is not in the step first, then those
    /// waiting for them, and so on. A host whose predecessor failed fails unstarted.
    async fn run_waves(
        self: &Arc<Self>,
        step: &Step<R::Action, R::Condition>,
        skip_failed: bool,
    ) -> bool
    where
        R::Action: Clone + 'static,
        R::Condition: 'static,
    {
        let waits_for = |i: usize| {
            self.runner
                .waits_for(i)
                .filter(|p| *p != i && step.hosts.contains(p))
        };
        let mut done: Vec<usize> = Vec::new();
        let mut any_failed = false;
        while done.len() < step.hosts.len() {
            let wave: Vec<usize> = step
                .hosts
                .iter()
                .copied()
                .filter(|i| !done.contains(i))
                .filter(|&i| waits_for(i).is_none_or(|p| done.contains(&p)))
                .collect();
            // A cycle (which the runner's own checks should make impossible): run the rest
            // together rather than never.
            let wave = if wave.is_empty() {
                step.hosts
                    .iter()
                    .copied()
                    .filter(|i| !done.contains(i))
                    .collect()
            } else {
                wave
            };
            let mut ready = Vec::new();
            for &i in &wave {
                match waits_for(i) {
                    Some(p) if self.state(p).failed.is_some() => {
                        let waited = self.name(p).to_string();
                        self.fail(
                            i,
                            &step.name,
                            &StepError::new(
                                format!("not started: it waits for `{waited}`, which failed"),
                                format!("fix `{waited}` first (see its error), then re-run"),
                            ),
                        );
                        any_failed = true;
                    }
                    _ => ready.push(i),
                }
            }
            if self.stopping() {
                break;
            }
            any_failed |= self.run_hosts(step, &ready, skip_failed).await;
            done.extend(wave);
        }
        any_failed
    }

    /// Runs a step on some of its hosts, concurrently up to `forks` (or one by one).
    async fn run_hosts(
        self: &Arc<Self>,
        step: &Step<R::Action, R::Condition>,
        hosts: &[usize],
        skip_failed: bool,
    ) -> bool
    where
        R::Action: Clone + 'static,
        R::Condition: 'static,
    {
        let width = if step.serial {
            1
        } else {
            self.options.forks.max(1)
        };
        let forks = Arc::new(Semaphore::new(width));
        let step = Arc::new(step.clone());
        let mut tasks = Vec::new();
        for &i in hosts {
            // Only an earlier failure skips a host: an unreachable one must fail this step
            // (and so stop a preflight) rather than be passed over in silence.
            if skip_failed && self.state(i).failed.is_some() {
                continue;
            }
            let engine = self.clone();
            let step = step.clone();
            let forks = forks.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = forks.acquire().await;
                if engine.stopping() {
                    // Queued behind --forks when the interrupt came: start nothing.
                    return true;
                }
                engine.run_on_host(&step, i).await
            }));
        }
        let mut any_failed = false;
        for task in tasks {
            any_failed |= !task.await.unwrap_or(false);
        }
        any_failed
    }

    fn state(&self, i: usize) -> std::sync::MutexGuard<'_, HostState> {
        self.states[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Runs a step on one host; returns false when it failed there.
    async fn run_on_host(&self, step: &Step<R::Action, R::Condition>, i: usize) -> bool {
        if let Some(reason) = self.runner.unreachable(i) {
            self.fail(i, &step.name, &StepError::msg(reason));
            return false;
        }
        // Typed conditions first: `unless` leaves a host alone, `only_if` passes it by.
        for (cond, holds_means_run) in [(step.unless, false), (step.only_if, true)] {
            let Some(cond) = cond else { continue };
            match self.runner.holds(i, cond).await {
                Ok(holds) if holds == holds_means_run => {}
                Ok(_) => {
                    let label = self.runner.describe(cond);
                    let outcome = if holds_means_run {
                        Outcome::skipped(format!("not {label}"))
                    } else {
                        Outcome::ok(format!("{label} already (left alone)"))
                    };
                    self.record(i, &step.name, &outcome);
                    return true;
                }
                Err(e) => {
                    self.fail(i, &step.name, &e);
                    return false;
                }
            }
        }
        match &step.work {
            Work::Action(action) => self.run_action(i, &step.name, action).await,
            Work::Block { steps, rescue } => {
                for (name, action) in steps {
                    // An interrupt between two steps leaves the block half done: rescue it too.
                    let done = if self.stopping() {
                        self.fail(i, name, &StepError::Interrupted);
                        false
                    } else {
                        self.run_action(i, name, action).await
                    };
                    if !done {
                        if let Some(rescue) = rescue {
                            self.run_rescue(i, rescue).await;
                        }
                        return false;
                    }
                }
                true
            }
        }
    }

    async fn run_action(&self, i: usize, step: &str, action: &R::Action) -> bool {
        self.events.step_started(self.name(i), step);
        let start = self.ms_since_epoch();
        let mut interrupt = self.interrupt.subscribe();
        let result = if self.committed() {
            self.runner.run(i, action).await
        } else {
            tokio::select! {
                r = self.runner.run(i, action) => r,
                _ = interrupt.wait_for(|i| *i) => Err(StepError::Interrupted),
            }
        };
        self.span(
            i,
            step,
            start,
            result.as_ref().map_or(Status::Failed, |o| o.status),
        );
        match result {
            Ok(outcome) => {
                self.record(i, step, &outcome);
                true
            }
            Err(e) => {
                self.fail(i, step, &e);
                false
            }
        }
    }

    async fn run_rescue(&self, i: usize, rescue: &R::Action) {
        let name = format!("rescue: {}", self.runner.action_name(rescue));
        if self.options.check {
            let outcome = Outcome::skipped("check mode: nothing was changed");
            self.events.step_done(self.name(i), &name, &outcome);
            return;
        }
        self.events.step_started(self.name(i), &name);
        let start = self.ms_since_epoch();
        let result = self.runner.run(i, rescue).await;
        self.span(
            i,
            &name,
            start,
            result.as_ref().map_or(Status::Failed, |o| o.status),
        );
        let left_in = match result {
            Ok(outcome) => {
                self.events.step_done(self.name(i), &name, &outcome);
                outcome.detail
            }
            Err(e) => {
                self.events.step_failed(self.name(i), &name, &e);
                format!("rescue failed: {e}")
            }
        };
        self.state(i).left_in = Some(left_in);
    }

    fn record(&self, i: usize, step: &str, outcome: &Outcome) {
        self.events.step_done(self.name(i), step, outcome);
        self.state(i).count(outcome.status);
    }

    fn fail(&self, i: usize, step: &str, error: &StepError) {
        self.events.step_failed(self.name(i), step, error);
        let mut state = self.state(i);
        state.count(Status::Failed);
        state.failed.get_or_insert(format!("{step}: {error}"));
    }
}
