//! The plan: a playbook resolved against an inventory into ordered steps per host.
//!
//! Pure data and no I/O, so `pgrepl plan` can print exactly what a command would run
//! without contacting any host, and tests can check it with snapshots.

use serde::Serialize;

use crate::engine::OnFailure;
use crate::inventory::{Inventory, Role};
use serde_saphyr::Spanned;

use crate::playbook::{Action, Condition, Playbook, Step};

/// The resolved steps of one command.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub command: String,
    /// Where the playbook came from.
    pub source: String,
    pub steps: Vec<PlannedStep>,
    /// Run when the command stops before its point of no return.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<PlannedStep>,
}

/// One step with its hosts resolved to inventory indices.
pub type PlannedStep = crate::engine::Step<Action, Condition>;

/// What a step does on each of its hosts.
pub type Work = crate::engine::Work<Action>;

/// A playbook that does not fit the inventory.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}:{column}: step `{step}`: {message}\nhint: {hint}")]
pub struct Error {
    pub source_name: String,
    pub line: u64,
    pub column: u64,
    pub step: String,
    pub message: String,
    pub hint: String,
}

/// Resolves `playbook` against `inventory`. `target` is the host a command was given (for
/// the `target` selector); `limit`, when set, keeps only those hosts.
pub fn build(
    command: &str,
    source: &str,
    playbook: &Playbook,
    inventory: &Inventory,
    target: Option<&str>,
    limit: Option<&[String]>,
) -> Result<Plan, Error> {
    Ok(Plan {
        command: command.into(),
        source: source.into(),
        steps: resolve(&playbook.steps, source, inventory, target, limit)?,
        rollback: resolve(&playbook.rollback, source, inventory, target, limit)?,
    })
}

/// Resolves a list of playbook steps.
fn resolve(
    book_steps: &[Spanned<Step>],
    source: &str,
    inventory: &Inventory,
    target: Option<&str>,
    limit: Option<&[String]>,
) -> Result<Vec<PlannedStep>, Error> {
    let mut steps = Vec::new();
    for spanned in book_steps {
        let step = &spanned.value;
        let fail = |message: String, hint: &str| Error {
            source_name: source.to_string(),
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            step: step.name.clone(),
            message,
            hint: hint.to_string(),
        };
        let Some(selectors) = &step.hosts else {
            return Err(fail(
                "has no `hosts`".into(),
                "add `hosts: primary`, `replicas`, `all`, `target` or a host name",
            ));
        };
        let mut hosts = Vec::new();
        for selector in selectors.selectors() {
            let picked = select(inventory, selector, target).map_err(|m| {
                fail(
                    m,
                    "use primary, replicas, existing_replicas, all, proxies, target, or a host name from the inventory",
                )
            })?;
            for i in picked {
                if !hosts.contains(&i) {
                    hosts.push(i);
                }
            }
        }
        if let Some(limit) = limit {
            hosts.retain(|&i| limit.iter().any(|l| l == inventory.node_name(i)));
        }
        let work = work_of(step).map_err(|m| {
            fail(
                m,
                "give a step either `action` or `block` (with an optional `rescue`)",
            )
        })?;
        let touches_primary = hosts.iter().any(|&i| {
            inventory
                .hosts
                .get(i)
                .is_some_and(|h| h.role == Role::Primary)
        });
        let on_failure = step.on_failure.unwrap_or(if touches_primary {
            OnFailure::Stop
        } else {
            OnFailure::Continue
        });
        steps.push(PlannedStep {
            name: step.name.clone(),
            hosts,
            work,
            on_failure,
            serial: step.serial,
            waves: step.upstream_first,
            unless: step.unless,
            only_if: step.only_if,
            point_of_no_return: step.point_of_no_return,
            lane: step.lane.clone(),
        });
        // Lanes of one group run side by side: no host may be in two of them.
        let group = steps
            .iter()
            .rev()
            .take_while(|s| s.lane.is_some())
            .collect::<Vec<_>>();
        if let Some((this, earlier)) = group.split_first()
            && let Some(other) = earlier
                .iter()
                .find(|o| o.lane != this.lane && o.hosts.iter().any(|h| this.hosts.contains(h)))
        {
            return Err(fail(
                format!(
                    "lane `{}` shares hosts with lane `{}` of step `{}`, which runs beside it",
                    this.lane.as_deref().unwrap_or_default(),
                    other.lane.as_deref().unwrap_or_default(),
                    other.name
                ),
                "give the lanes of one group disjoint hosts, or put a step without a lane between them",
            ));
        }
    }
    Ok(steps)
}

fn select(
    inventory: &Inventory,
    selector: &str,
    target: Option<&str>,
) -> Result<Vec<usize>, String> {
    let by_role = |role: Role| -> Vec<usize> {
        inventory
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.role == role)
            .map(|(i, _)| i)
            .collect()
    };
    let by_name = |name: &str| inventory.node_named(name);
    match selector {
        "all" => Ok((0..inventory.hosts.len()).collect()),
        "proxies" => Ok(inventory.proxy_nodes().collect()),
        "primary" => Ok(by_role(Role::Primary)),
        "replicas" => Ok(by_role(Role::Replica)),
        "existing_replicas" => Ok(by_role(Role::Replica)
            .into_iter()
            .filter(|&i| Some(inventory.hosts[i].name.as_str()) != target)
            .collect()),
        "target" => match target {
            Some(name) => by_name(name)
                .map(|i| vec![i])
                .ok_or_else(|| format!("host `{name}` is not in the inventory")),
            None => Err("`hosts: target` needs a host named on the command line".into()),
        },
        name => by_name(name)
            .map(|i| vec![i])
            .ok_or_else(|| format!("`{name}` is not a host selector or an inventory host")),
    }
}

fn work_of(step: &Step) -> Result<Work, String> {
    match (&step.action, &step.block) {
        (Some(action), None) => {
            if step.rescue.is_some() {
                return Err("`rescue` only goes with `block`".into());
            }
            Ok(Work::Action(action.clone()))
        }
        (None, Some(block)) => {
            let mut steps = Vec::new();
            for inner in block {
                let s = &inner.value;
                if s.block.is_some()
                    || s.hosts.is_some()
                    || s.lane.is_some()
                    || s.rescue.is_some()
                    || s.unless.is_some()
                    || s.only_if.is_some()
                {
                    return Err(format!(
                        "block step `{}` may only have `name` and `action`",
                        s.name
                    ));
                }
                let action = s
                    .action
                    .clone()
                    .ok_or_else(|| format!("block step `{}` has no `action`", s.name))?;
                steps.push((s.name.clone(), action));
            }
            Ok(Work::Block {
                steps,
                rescue: step.rescue.clone(),
            })
        }
        (Some(_), Some(_)) => Err("has both `action` and `block`".into()),
        (None, None) => Err("has neither `action` nor `block`".into()),
    }
}

/// The plan as people read it: each step with the hosts it runs on.
pub fn render(plan: &Plan, inventory: &Inventory) -> String {
    let mut out = format!("plan for `pgrepl {}` from {}\n", plan.command, plan.source);
    for (n, step) in plan.steps.iter().enumerate() {
        // Conditions as the playbook spells them (`standby_of_primary`).
        let word = |c: Condition| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let cond: String = [
            step.unless.map(|c| format!(", unless {}", word(c))),
            step.only_if.map(|c| format!(", only if {}", word(c))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let serial = if step.serial { ", one at a time" } else { "" };
        let serial = if step.waves {
            format!("{serial}, cascaded replicas after their upstream")
        } else {
            serial.to_string()
        };
        let serial = match &step.lane {
            Some(lane) => format!("{serial}, lane {lane}"),
            None => serial,
        };
        let hosts: Vec<&str> = step.hosts.iter().map(|&i| inventory.node_name(i)).collect();
        let hosts = if hosts.is_empty() {
            "(no hosts)".to_string()
        } else {
            hosts.join(", ")
        };
        match &step.work {
            Work::Action(a) => {
                let notes = format!("{cond}{serial}");
                let notes = match notes.strip_prefix(", ") {
                    Some(n) => format!(" ({n})"),
                    None => String::new(),
                };
                out.push_str(&format!(
                    "{:>2}. {} [{}] on {hosts}{notes}\n",
                    n + 1,
                    step.name,
                    a.name()
                ))
            }
            Work::Block { steps, rescue } => {
                out.push_str(&format!(
                    "{:>2}. {} on {} (per host, in order{cond}{serial})\n",
                    n + 1,
                    step.name,
                    hosts
                ));
                for (name, a) in steps {
                    out.push_str(&format!("      - {name} [{}]\n", a.name()));
                }
                if let Some(r) = rescue {
                    out.push_str(&format!("      on failure: {}\n", r.name()));
                }
            }
        }
    }
    out
}

/// The plan as `pgrepl plan --format json` prints it: hosts by name, each action as its
/// playbook name and parameters (no internal shapes).
#[derive(Debug, Serialize)]
pub struct PlanJson {
    pub command: String,
    pub source: String,
    pub steps: Vec<StepJson>,
    pub rollback: Vec<StepJson>,
}

/// One step of [`PlanJson`]: either `action` (with `params`) or `block` (with `rescue`).
#[derive(Debug, Serialize)]
pub struct StepJson {
    pub name: String,
    pub hosts: Vec<String>,
    pub action: Option<String>,
    pub params: Option<serde_json::Value>,
    pub block: Option<Vec<BlockStepJson>>,
    pub rescue: Option<ActionJson>,
    pub unless: Option<Condition>,
    pub only_if: Option<Condition>,
    pub serial: bool,
    /// Cascaded replicas after their upstream.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub upstream_first: bool,
    pub on_failure: OnFailure,
    pub point_of_no_return: bool,
    /// The lane it runs in beside the other lanes of its group, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
}

/// One action of a block.
#[derive(Debug, Serialize)]
pub struct BlockStepJson {
    pub name: String,
    #[serde(flatten)]
    pub action: ActionJson,
}

/// An action as a playbook writes it: its name and its parameters (`{}` for none).
#[derive(Debug, Serialize)]
pub struct ActionJson {
    pub action: String,
    pub params: serde_json::Value,
}

impl ActionJson {
    fn of(a: &Action) -> Self {
        let params = match serde_json::to_value(a) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().next().map(|(_, v)| v),
            _ => None,
        };
        ActionJson {
            action: a.name(),
            params: params.unwrap_or_else(|| serde_json::json!({})),
        }
    }
}

/// The plan for JSON output.
pub fn to_json(plan: &Plan, inventory: &Inventory) -> PlanJson {
    let step = |s: &PlannedStep| {
        let (action, params, block, rescue) = match &s.work {
            Work::Action(a) => {
                let a = ActionJson::of(a);
                (Some(a.action), Some(a.params), None, None)
            }
            Work::Block { steps, rescue } => (
                None,
                None,
                Some(
                    steps
                        .iter()
                        .map(|(name, a)| BlockStepJson {
                            name: name.clone(),
                            action: ActionJson::of(a),
                        })
                        .collect(),
                ),
                rescue.as_ref().map(ActionJson::of),
            ),
        };
        StepJson {
            name: s.name.clone(),
            hosts: s
                .hosts
                .iter()
                .map(|&i| inventory.node_name(i).to_string())
                .collect(),
            action,
            params,
            block,
            rescue,
            unless: s.unless,
            only_if: s.only_if,
            serial: s.serial,
            upstream_first: s.waves,
            on_failure: s.on_failure,
            point_of_no_return: s.point_of_no_return,
            lane: s.lane.clone(),
        }
    };
    PlanJson {
        command: plan.command.clone(),
        source: plan.source.clone(),
        steps: plan.steps.iter().map(step).collect(),
        rollback: plan.rollback.iter().map(step).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::playbook;

    fn inventory() -> Inventory {
        crate::inventory::parse(
            Path::new("i.yaml"),
            "replication: { password: x }\nhosts:\n  - { name: db0, address: 10.0.0.10, role: primary }\n  - { name: db1, address: 10.0.0.11, role: replica }\n  - { name: db2, address: 10.0.0.12, role: replica }\n",
        )
        .unwrap()
    }

    #[test]
    fn bootstrap_plan_snapshot() {
        let inv = inventory();
        let (book, source) = playbook::load("bootstrap", None).unwrap();
        let plan = build("bootstrap", &source, &book, &inv, None, None).unwrap();
        insta::assert_snapshot!(render(&plan, &inv));
    }

    #[test]
    fn add_replica_plan_targets_only_the_new_host() {
        let inv = inventory();
        let (book, source) = playbook::load("add-replica", None).unwrap();
        let plan = build("add-replica", &source, &book, &inv, Some("db2"), None).unwrap();
        let clone = plan
            .steps
            .iter()
            .find(|s| s.name == "clone replica")
            .unwrap();
        assert_eq!(clone.hosts, vec![2]);
        insta::assert_snapshot!(render(&plan, &inv));
    }

    #[test]
    fn plan_json_names_hosts_and_actions_as_playbooks_do() {
        let inv = inventory();
        let (book, source) = playbook::load("bootstrap", None).unwrap();
        let plan = build("bootstrap", &source, &book, &inv, None, None).unwrap();
        let doc = serde_json::to_value(to_json(&plan, &inv)).unwrap();
        let step = |name: &str| {
            doc["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap()
                .clone()
        };
        let settings = step("primary settings");
        assert_eq!(settings["hosts"], serde_json::json!(["db0"]));
        assert_eq!(settings["action"], "config");
        assert_eq!(settings["params"]["template"], "primary.conf.j2");
        assert_eq!(settings["on_failure"], "stop");
        assert_eq!(step("preflight")["params"], serde_json::json!({}));
        let clone = step("clone replica");
        assert_eq!(clone["hosts"], serde_json::json!(["db1", "db2"]));
        assert_eq!(clone["unless"], "streaming");
        assert!(clone["action"].is_null());
        assert_eq!(clone["upstream_first"], true);
        assert_eq!(clone["block"][1]["name"], "replication login");
        assert_eq!(clone["block"][1]["action"], "replication_login");
        assert_eq!(clone["rescue"]["action"], "restore_datadir");
        assert_eq!(step("start standby")["only_if"], "standby_of_primary");
        // No internal shapes: no `work`, no host indices.
        assert!(!doc.to_string().contains("\"work\"") && !doc.to_string().contains("Block"));
    }

    #[test]
    fn unknown_host_selector_names_the_step_and_line() {
        let inv = inventory();
        let book = playbook::parse(
            "p.yaml",
            "steps:\n  - name: x\n    hosts: db9\n    action: stop\n",
        )
        .unwrap();
        let err = build("bootstrap", "p.yaml", &book, &inv, None, None).unwrap_err();
        assert_eq!((err.line, err.step.as_str()), (2, "x"));
        assert!(err.message.contains("db9"));
    }

    #[test]
    fn lanes_beside_each_other_must_not_share_hosts() {
        let inv = inventory();
        let book = playbook::parse(
            "p.yaml",
            "steps:\n  - { name: a, hosts: primary, lane: one, action: stop }\n  - { name: b, hosts: all, lane: two, action: stop }\n",
        )
        .unwrap();
        let err = build("bootstrap", "p.yaml", &book, &inv, None, None).unwrap_err();
        assert_eq!((err.line, err.step.as_str()), (3, "b"));
        assert!(err.message.contains("lane `one`"), "{}", err.message);
        // The same lane, or a step without one between them, is fine.
        let ok = "steps:\n  - { name: a, hosts: primary, lane: one, action: stop }\n  - { name: s, hosts: all, action: stop }\n  - { name: b, hosts: all, lane: two, action: stop }\n  - { name: c, hosts: all, lane: two, action: stop }\n";
        let book = playbook::parse("p.yaml", ok).unwrap();
        assert!(build("bootstrap", "p.yaml", &book, &inv, None, None).is_ok());
    }

    #[test]
    fn limit_keeps_only_named_hosts() {
        let inv = inventory();
        let (book, source) = playbook::load("bootstrap", None).unwrap();
        let limit = vec!["db0".to_string(), "db2".to_string()];
        let plan = build("bootstrap", &source, &book, &inv, None, Some(&limit)).unwrap();
        assert!(plan.steps.iter().all(|s| !s.hosts.contains(&1)));
    }

    #[test]
    fn failures_on_the_primary_stop_the_run_by_default() {
        let inv = inventory();
        let (book, source) = playbook::load("bootstrap", None).unwrap();
        let plan = build("bootstrap", &source, &book, &inv, None, None).unwrap();
        let by_name = |n: &str| plan.steps.iter().find(|s| s.name == n).unwrap().on_failure;
        assert_eq!(by_name("primary settings"), OnFailure::Stop);
        assert_eq!(by_name("clone replica"), OnFailure::Continue);
    }
}
