//! The recap at the end of a run: per-host counts and state, in the manner of Ansible.

use std::time::Duration;

use serde::Serialize;

use super::Engine;
use crate::inventory::Role;
use crate::plan::Plan;
use crate::verify::VerifyReport;

/// What an action did on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
}

/// One host's line of the recap.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecap {
    pub name: String,
    pub role: Role,
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
    pub verify: Option<VerifyReport>,
}

impl RunReport {
    pub fn failed(&self) -> bool {
        self.status != "ok"
    }
}

/// What state a host is left in, when that is worth saying.
fn left_in(s: &super::HostState, data_dir: &str, interrupted: bool) -> Option<String> {
    if let Some(aside) = &s.moved_aside {
        if !s.is_failed() && !interrupted {
            return Some(format!(
                "streaming; the previous data dir is kept at {aside}: remove it once you trust this replica"
            ));
        }
        // A rescue that could not run leaves it set: tell the user how to undo by hand.
        return Some(format!(
            "the previous data dir is still at {aside} (not restored); to put it back: stop PostgreSQL, then `rm -rf {data_dir} && mv {aside} {data_dir}`"
        ));
    }
    s.left_in.clone().or_else(|| {
        interrupted.then(|| "no change was in progress: as its completed steps left it".to_string())
    })
}

pub(super) async fn build(
    engine: &Engine,
    plan: &Plan,
    elapsed: Duration,
    stopped: Option<String>,
) -> RunReport {
    let mut hosts = Vec::new();
    let in_plan: Vec<usize> = {
        let mut v: Vec<usize> = plan
            .steps
            .iter()
            .flat_map(|s| s.hosts.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for i in in_plan {
        let host = &engine.inventory.hosts[i];
        let s = engine.states[i].lock().await;
        let failed = s.is_failed();
        hosts.push(HostRecap {
            name: host.name.clone(),
            role: host.role,
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
            unreachable: engine.sessions[i].is_none(),
            error: s.failed.clone().or_else(|| {
                s.unreachable
                    .clone()
                    .filter(|_| engine.sessions[i].is_none())
            }),
            left_in: left_in(
                &s,
                &host.pg.data_dir,
                stopped.as_deref() == Some("interrupted"),
            ),
        });
    }
    let verify = engine.verify_report.lock().await.clone();
    let any_failed = hosts.iter().any(|h| h.status == "failed") || stopped.is_some();
    RunReport {
        command: plan.command.clone(),
        status: if any_failed { "failed" } else { "ok" }.into(),
        check: engine.options.check,
        hosts,
        elapsed_ms: elapsed.as_millis(),
        stopped,
        verify,
    }
}
