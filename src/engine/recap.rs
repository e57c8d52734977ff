//! The recap at the end of a run: per-host counts and state, in the manner of Ansible.

use std::time::Duration;

use serde::Serialize;

use super::{Engine, Runner, Step};

/// One host's line of the recap.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecap {
    pub name: String,
    pub role: String,
    /// `ok`, `changed` or `failed`.
    pub status: String,
    pub ok: u32,
    pub changed: u32,
    pub skipped: u32,
    pub failed: u32,
    pub unreachable: bool,
    /// The first failure on this host, with its step.
    pub error: Option<String>,
    /// What a rescue left the host as (e.g. its previous data dir restored).
    pub left_in: Option<String>,
}

/// The result of a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub command: String,
    /// `ok` or `failed`.
    pub status: String,
    pub check: bool,
    pub hosts: Vec<HostRecap>,
    pub elapsed_ms: u128,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// When each action ran on each host, in ms from the start of the run (its first
    /// connection), in the order they ended.
    pub timeline: Vec<Span>,
}

/// One action on one host: when it started and ended, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub host: String,
    /// The step's name (a block's action: its own name; a rescue: `rescue: ACTION`).
    pub step: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// `ok`, `changed`, `skipped` or `failed`.
    pub status: String,
}

impl RunReport {
    pub fn failed(&self) -> bool {
        self.status != "ok"
    }
}

pub(super) fn build<R: Runner>(
    engine: &Engine<R>,
    command: &str,
    steps: &[Step<R::Action, R::Condition>],
    rollback: &[Step<R::Action, R::Condition>],
    elapsed: Duration,
    stopped: Option<String>,
) -> RunReport {
    let mut in_plan: Vec<usize> = steps
        .iter()
        .chain(rollback)
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    in_plan.sort_unstable();
    in_plan.dedup();
    let interrupted = stopped
        .as_deref()
        .is_some_and(|s| s.starts_with("interrupted"));
    let hosts: Vec<HostRecap> = in_plan
        .into_iter()
        .map(|i| {
            let s = engine.state(i);
            let unreachable = engine.runner.unreachable(i);
            let failed = s.failed.is_some() || unreachable.is_some();
            HostRecap {
                name: engine.members[i].name.clone(),
                role: engine.members[i].role.clone(),
                status: if failed {
                    "failed"
                } else if s.changed > 0 {
                    "changed"
                } else {
                    "ok"
                }
                .into(),
                ok: s.ok,
                changed: s.changed,
                skipped: s.skipped,
                failed: s.failed_count,
                unreachable: unreachable.is_some(),
                error: s.failed.clone().or(unreachable),
                left_in: engine
                    .runner
                    .left_as(i, failed, interrupted)
                    .or_else(|| s.left_in.clone())
                    .or_else(|| {
                        interrupted.then(|| {
                            "no change was in progress: as its completed steps left it".to_string()
                        })
                    }),
            }
        })
        .collect();
    let any_failed = hosts.iter().any(|h| h.status == "failed") || stopped.is_some();
    RunReport {
        command: command.to_string(),
        status: if any_failed { "failed" } else { "ok" }.into(),
        check: engine.options.check,
        hosts,
        elapsed_ms: elapsed.as_millis(),
        stopped,
        timeline: engine
            .timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    }
}
