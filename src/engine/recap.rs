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
            left_in: s.left_in.clone(),
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
