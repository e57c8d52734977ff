//! The engine's control flow with a scripted runner: no SSH, no containers, milliseconds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// What a scripted action does.
#[derive(Debug, Clone)]
enum Act {
    /// Succeeds with `changed` after the given milliseconds.
    Work(&'static str, u64),
    /// Fails on the named hosts, succeeds elsewhere.
    FailOn(&'static str, Vec<usize>),
    /// Puts things back.
    Rescue,
}

#[derive(Default)]
struct Scripted {
    /// (host, action label, check mode) in the order they started.
    calls: Mutex<Vec<(usize, String)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    unreachable: HashSet<usize>,
    /// Hosts where the `Streaming` condition holds.
    streaming: HashSet<usize>,
}

impl Scripted {
    fn calls(&self) -> Vec<(usize, String)> {
        self.calls.lock().unwrap().clone()
    }
    fn ran(&self, host: usize, label: &str) -> bool {
        self.calls().iter().any(|(h, l)| *h == host && l == label)
    }
}

#[derive(Debug, Clone, Copy)]
struct Streaming;

impl Runner for Scripted {
    type Action = Act;
    type Condition = Streaming;

    async fn run(&self, host: usize, action: &Act) -> Result<Outcome, StepError> {
        let label = self.action_name(action);
        self.calls.lock().unwrap().push((host, label.clone()));
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let result = match action {
            Act::Work(_, ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                Ok(Outcome::changed(label))
            }
            Act::FailOn(_, hosts) if hosts.contains(&host) => {
                Err(StepError::new(format!("{label} broke"), "fix it"))
            }
            Act::FailOn(..) => Ok(Outcome::ok("")),
            Act::Rescue => Ok(Outcome::changed("put back as it was")),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn holds(&self, host: usize, _: Streaming) -> Result<bool, StepError> {
        Ok(self.streaming.contains(&host))
    }

    fn describe(&self, _: Streaming) -> String {
        "streaming".into()
    }

    fn action_name(&self, action: &Act) -> String {
        match action {
            Act::Work(n, _) | Act::FailOn(n, _) => n.to_string(),
            Act::Rescue => "rescue".into(),
        }
    }

    fn unreachable(&self, host: usize) -> Option<String> {
        self.unreachable
            .contains(&host)
            .then(|| format!("host {host} unreachable"))
    }
}

/// Records events in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Events for Recorder {
    fn step_started(&self, host: &str, step: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{host} {step} started"));
    }
    fn step_done(&self, host: &str, step: &str, outcome: &Outcome) {
        let line = format!("{host} {step} {}", outcome.status.label());
        self.0.lock().unwrap().push(line);
    }
    fn step_failed(&self, host: &str, step: &str, _: &StepError) {
        self.0.lock().unwrap().push(format!("{host} {step} failed"));
    }
    fn note(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

const PRIMARY: usize = 0;

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            name: format!("pg{i}"),
            role: if i == PRIMARY { "primary" } else { "replica" }.into(),
        })
        .collect()
}

fn engine(
    runner: Scripted,
    n: usize,
    forks: usize,
    check: bool,
) -> (Arc<Engine<Scripted>>, Arc<Recorder>) {
    let events = Arc::new(Recorder::default());
    let engine = Engine::new(runner, events.clone(), members(n), Options { check, forks });
    (Arc::new(engine), events)
}

fn step(name: &str, hosts: &[usize], act: Act) -> Step<Act, Streaming> {
    Step {
        name: name.into(),
        hosts: hosts.to_vec(),
        work: Work::Action(act),
        on_failure: if hosts.contains(&PRIMARY) {
            OnFailure::Stop
        } else {
            OnFailure::Continue
        },
        serial: false,
        waves: false,
        unless: None,
        only_if: None,
        point_of_no_return: false,
        lane: None,
    }
}

fn clone_block(hosts: &[usize], fail_on: Vec<usize>) -> Step<Act, Streaming> {
    Step {
        work: Work::Block {
            steps: vec![
                ("move aside".into(), Act::Work("move aside", 1)),
                ("base backup".into(), Act::FailOn("base backup", fail_on)),
                ("start".into(), Act::Work("start", 1)),
            ],
            rescue: Some(Act::Rescue),
        },
        ..step("clone", hosts, Act::Rescue)
    }
}

fn recap_of<'a>(report: &'a RunReport, name: &str) -> &'a HostRecap {
    report.hosts.iter().find(|h| h.name == name).unwrap()
}

#[tokio::test]
async fn a_failure_on_the_primary_stops_the_run_and_leaves_replicas_untouched() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let steps = [
        step("preflight", &[0, 1, 2], Act::Work("preflight", 1)),
        step(
            "primary settings",
            &[PRIMARY],
            Act::FailOn("primary settings", vec![PRIMARY]),
        ),
        clone_block(&[1, 2], vec![]),
    ];
    let report = engine.run("bootstrap", &steps).await;
    assert!(report.failed());
    assert_eq!(
        report.stopped.as_deref(),
        Some("step `primary settings` failed")
    );
    let runner = engine.runner();
    assert!(!runner.ran(1, "move aside") && !runner.ran(2, "move aside"));
    assert_eq!(recap_of(&report, "pg1").status, "changed");
    assert!(
        recap_of(&report, "pg0")
            .error
            .as_deref()
            .unwrap()
            .starts_with("primary settings: primary settings broke")
    );
}

#[tokio::test]
async fn a_failed_replica_is_left_out_while_the_others_finish() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let steps = [
        clone_block(&[1, 2], vec![1]),
        step("verify", &[1, 2], Act::Work("verify", 1)),
    ];
    let report = engine.run("bootstrap", &steps).await;
    let runner = engine.runner();
    assert!(runner.ran(2, "start") && runner.ran(2, "verify"));
    assert!(!runner.ran(1, "start") && !runner.ran(1, "verify"));
    assert!(report.failed(), "a failed host fails the run (exit 2)");
    assert_eq!(report.stopped, None, "replica steps continue by default");
    assert_eq!(recap_of(&report, "pg1").status, "failed");
    assert_eq!(recap_of(&report, "pg2").status, "changed");
}

#[tokio::test]
async fn a_block_failing_half_way_is_rescued_on_that_host_only() {
    let (engine, events) = engine(Scripted::default(), 3, 10, false);
    let report = engine
        .run("bootstrap", &[clone_block(&[1, 2], vec![2])])
        .await;
    let runner = engine.runner();
    assert!(runner.ran(2, "rescue") && !runner.ran(1, "rescue"));
    assert!(!runner.ran(2, "start"));
    assert_eq!(
        recap_of(&report, "pg2").left_in.as_deref(),
        Some("put back as it was")
    );
    assert_eq!(recap_of(&report, "pg1").left_in, None);
    let lines = events.0.lock().unwrap().clone();
    let failed = lines
        .iter()
        .position(|l| l == "pg2 base backup failed")
        .unwrap();
    let rescued = lines
        .iter()
        .position(|l| l == "pg2 rescue: rescue changed")
        .unwrap();
    assert!(failed < rescued, "{lines:?}");
}

#[tokio::test]
async fn an_interrupt_during_a_block_starts_no_new_work_and_rescues() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let slow = Step {
        work: Work::Block {
            steps: vec![
                ("move aside".into(), Act::Work("move aside", 1)),
                ("base backup".into(), Act::Work("base backup", 5_000)),
                ("start".into(), Act::Work("start", 1)),
            ],
            rescue: Some(Act::Rescue),
        },
        ..step("clone", &[1, 2], Act::Rescue)
    };
    let later = step("verify", &[0, 1, 2], Act::Work("verify", 1));
    let steps = [slow, later];
    let runner = engine.clone();
    let run = tokio::spawn(async move { runner.run("bootstrap", &steps).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    engine.interrupt();
    let report = run.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the copy in flight was cancelled"
    );
    let runner = engine.runner();
    for host in [1, 2] {
        assert!(runner.ran(host, "rescue"), "host {host} rescued");
        assert!(!runner.ran(host, "start"));
    }
    assert!(!runner.ran(0, "verify"), "no new step after the interrupt");
    assert_eq!(report.stopped.as_deref(), Some("interrupted"));
    assert!(engine.interrupted());
}

#[tokio::test]
async fn serial_steps_run_one_host_at_a_time() {
    let (engine, _) = engine(Scripted::default(), 4, 10, false);
    let mut rolling = step("restart", &[1, 2, 3], Act::Work("restart", 20));
    rolling.serial = true;
    engine.run("bootstrap", &[rolling]).await;
    assert_eq!(engine.runner().max_running.load(Ordering::SeqCst), 1);
    assert_eq!(engine.runner().calls().len(), 3);
}

#[tokio::test]
async fn forks_1_never_overlaps_and_forks_n_does() {
    let (one, _) = engine(Scripted::default(), 4, 1, false);
    one.run(
        "bootstrap",
        &[step("work", &[0, 1, 2, 3], Act::Work("work", 20))],
    )
    .await;
    assert_eq!(one.runner().max_running.load(Ordering::SeqCst), 1);
    let (many, _) = engine(Scripted::default(), 4, 4, false);
    many.run(
        "bootstrap",
        &[step("work", &[0, 1, 2, 3], Act::Work("work", 50))],
    )
    .await;
    assert!(many.runner().max_running.load(Ordering::SeqCst) > 1);
}

#[tokio::test]
async fn check_mode_runs_no_rescue() {
    let (engine, _) = engine(Scripted::default(), 3, 10, true);
    let report = engine
        .run("bootstrap", &[clone_block(&[1, 2], vec![1])])
        .await;
    assert!(report.check);
    assert!(
        !engine.runner().ran(1, "rescue"),
        "nothing was changed, so nothing is undone"
    );
    assert_eq!(recap_of(&report, "pg1").left_in, None);
}

#[tokio::test]
async fn an_unreachable_host_fails_its_step_instead_of_being_skipped() {
    let runner = Scripted {
        unreachable: [2].into(),
        ..Scripted::default()
    };
    let (engine, _) = engine(runner, 3, 10, false);
    let report = engine
        .run(
            "bootstrap",
            &[step("preflight", &[0, 1, 2], Act::Work("preflight", 1))],
        )
        .await;
    let pg2 = recap_of(&report, "pg2");
    assert!(pg2.unreachable && pg2.status == "failed");
    assert_eq!(pg2.error.as_deref(), Some("preflight: host 2 unreachable"));
    assert!(!engine.runner().ran(2, "preflight"));
}

#[tokio::test]
async fn conditions_leave_hosts_alone_or_pass_them_by() {
    let runner = Scripted {
        streaming: [1].into(),
        ..Scripted::default()
    };
    let (engine, events) = engine(runner, 3, 10, false);
    let mut unless = clone_block(&[1, 2], vec![]);
    unless.unless = Some(Streaming);
    let mut only_if = step("wait", &[1, 2], Act::Work("wait", 1));
    only_if.only_if = Some(Streaming);
    engine.run("bootstrap", &[unless, only_if]).await;
    let runner = engine.runner();
    assert!(!runner.ran(1, "move aside") && runner.ran(2, "move aside"));
    assert!(runner.ran(1, "wait") && !runner.ran(2, "wait"));
    let lines = events.0.lock().unwrap().clone();
    assert!(lines.contains(&"pg1 clone ok".to_string()), "{lines:?}");
    assert!(lines.contains(&"pg2 wait skipped".to_string()), "{lines:?}");
}

type Steps = Vec<Step<Act, Streaming>>;

/// Steps shaped like a switchover, and its rollback.
fn switchover_steps(fail_catch_up: bool) -> (Steps, Steps) {
    let candidate = 1;
    let mut promote = step("promote", &[candidate], Act::Work("promote", 1));
    promote.point_of_no_return = true;
    let catch_up = if fail_catch_up {
        Act::FailOn("catch up", vec![candidate])
    } else {
        Act::Work("catch up", 1)
    };
    let mut catch_up = step("catch up", &[candidate], catch_up);
    catch_up.on_failure = OnFailure::Stop;
    let steps = vec![
        step("stop primary", &[PRIMARY], Act::Work("stop primary", 1)),
        catch_up,
        promote,
        step("rewire", &[2], Act::Work("rewire", 300)),
        step("rejoin", &[PRIMARY], Act::Work("rejoin", 1)),
    ];
    let rollback = vec![step(
        "start old primary",
        &[PRIMARY],
        Act::Work("start old primary", 1),
    )];
    (steps, rollback)
}

#[tokio::test]
async fn a_failure_before_the_point_of_no_return_rolls_back() {
    let (engine, events) = engine(Scripted::default(), 3, 10, false);
    let (steps, rollback) = switchover_steps(true);
    let report = engine.run_guarded("switchover", &steps, &rollback).await;
    let runner = engine.runner();
    assert!(runner.ran(PRIMARY, "start old primary"));
    assert!(!runner.ran(1, "promote"));
    assert_eq!(
        report.stopped.as_deref(),
        Some("step `catch up` failed; rolled back")
    );
    let lines = events.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("rolling back")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn an_interrupt_before_the_point_of_no_return_rolls_back() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let (mut steps, rollback) = switchover_steps(false);
    steps[1] = step("catch up", &[1], Act::Work("catch up", 5_000));
    let run = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_guarded("switchover", &steps, &rollback).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.interrupt();
    let report = run.await.unwrap();
    let runner = engine.runner();
    assert!(runner.ran(PRIMARY, "start old primary"));
    assert!(!runner.ran(1, "promote"));
    assert_eq!(report.stopped.as_deref(), Some("interrupted; rolled back"));
}

#[tokio::test]
async fn past_the_point_of_no_return_an_interrupt_is_noted_and_every_step_finishes() {
    let (engine, events) = engine(Scripted::default(), 3, 10, false);
    let (steps, rollback) = switchover_steps(false);
    let run = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_guarded("switchover", &steps, &rollback).await })
    };
    // `rewire` takes 300 ms: interrupt while it runs, after the promotion.
    tokio::time::sleep(Duration::from_millis(150)).await;
    engine.interrupt();
    let report = run.await.unwrap();
    let runner = engine.runner();
    assert!(runner.ran(1, "promote") && runner.ran(2, "rewire") && runner.ran(PRIMARY, "rejoin"));
    assert!(
        !runner.ran(PRIMARY, "start old primary"),
        "never roll back past the promotion"
    );
    assert_eq!(report.stopped, None);
    assert!(!report.failed());
    let lines = events.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l == "pg2 rewire changed"),
        "the step in flight was not cancelled: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("point of no return")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("interrupted past the point of no return")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_timeline_lists_each_action_with_its_host_step_and_status() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let steps = [
        step("preflight", &[0, 1, 2], Act::Work("preflight", 1)),
        clone_block(&[1, 2], vec![1]),
    ];
    let report = engine.run("bootstrap", &steps).await;
    let spans = |host: &str| -> Vec<(String, String)> {
        report
            .timeline
            .iter()
            .filter(|s| s.host == host)
            .map(|s| (s.step.clone(), s.status.clone()))
            .collect()
    };
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        spans("pg1"),
        owned(&[
            ("preflight", "changed"),
            ("move aside", "changed"),
            ("base backup", "failed"),
            ("rescue: rescue", "changed"),
        ])
    );
    assert_eq!(spans("pg2").len(), 4, "preflight and the three block steps");
    assert!(report.timeline.iter().all(|s| s.start_ms <= s.end_ms));
}

fn in_lane(lane: &str, s: Step<Act, Streaming>) -> Step<Act, Streaming> {
    Step {
        lane: Some(lane.into()),
        ..s
    }
}

#[tokio::test]
async fn lanes_run_side_by_side_each_in_order_and_the_next_step_waits_for_both() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let steps = [
        in_lane(
            "primary",
            step("restart", &[PRIMARY], Act::Work("restart", 40)),
        ),
        in_lane("primary", step("slots", &[PRIMARY], Act::Work("slots", 1))),
        in_lane(
            "replicas",
            step("passfile", &[1, 2], Act::Work("passfile", 20)),
        ),
        step("clone", &[1, 2], Act::Work("clone", 1)),
    ];
    let report = engine.run("bootstrap", &steps).await;
    assert!(!report.failed());
    let runner = engine.runner();
    assert!(
        runner.max_running.load(Ordering::SeqCst) >= 3,
        "the lanes overlapped"
    );
    let order: Vec<String> = runner.calls().into_iter().map(|(_, l)| l).collect();
    let at = |l: &str| order.iter().position(|x| x == l).unwrap();
    assert!(
        at("passfile") < at("slots"),
        "the replicas' lane did not wait for the primary's"
    );
    assert!(at("restart") < at("slots"));
    assert!(order.iter().rposition(|x| x == "clone").unwrap() > at("slots"));
    assert!(order.iter().position(|x| x == "clone").unwrap() > at("slots"));
}

#[tokio::test]
async fn a_lane_that_stops_the_run_lets_the_other_lane_finish_and_nothing_after_runs() {
    let (engine, _) = engine(Scripted::default(), 3, 10, false);
    let steps = [
        in_lane(
            "primary",
            step("restart", &[PRIMARY], Act::FailOn("restart", vec![PRIMARY])),
        ),
        in_lane("primary", step("slots", &[PRIMARY], Act::Work("slots", 1))),
        in_lane(
            "replicas",
            step("passfile", &[1, 2], Act::Work("passfile", 20)),
        ),
        in_lane("replicas", step("config", &[1, 2], Act::Work("config", 1))),
        step("clone", &[1, 2], Act::Work("clone", 1)),
    ];
    let report = engine.run("bootstrap", &steps).await;
    assert_eq!(report.stopped.as_deref(), Some("step `restart` failed"));
    let runner = engine.runner();
    assert!(!runner.ran(PRIMARY, "slots"));
    assert!(runner.ran(1, "config") && runner.ran(2, "config"));
    assert!(!runner.ran(1, "clone") && !runner.ran(2, "clone"));
}

/// A runner whose host `c` waits for `after[c]`.
struct Tree {
    inner: Scripted,
    after: Vec<Option<usize>>,
}

impl Runner for Tree {
    type Action = Act;
    type Condition = Streaming;
    async fn run(&self, host: usize, action: &Act) -> Result<Outcome, StepError> {
        self.inner.run(host, action).await
    }
    async fn holds(&self, host: usize, c: Streaming) -> Result<bool, StepError> {
        self.inner.holds(host, c).await
    }
    fn describe(&self, c: Streaming) -> String {
        self.inner.describe(c)
    }
    fn action_name(&self, action: &Act) -> String {
        self.inner.action_name(action)
    }
    fn unreachable(&self, host: usize) -> Option<String> {
        self.inner.unreachable(host)
    }
    fn waits_for(&self, host: usize) -> Option<usize> {
        self.after[host]
    }
}

fn tree_engine(after: Vec<Option<usize>>) -> (Arc<Engine<Tree>>, Arc<Recorder>) {
    let n = after.len();
    let events = Arc::new(Recorder::default());
    let runner = Tree {
        inner: Scripted::default(),
        after,
    };
    let options = Options {
        check: false,
        forks: 10,
    };
    let engine = Engine::new(runner, events.clone(), members(n), options);
    (Arc::new(engine), events)
}

#[tokio::test]
async fn waves_start_a_host_only_after_the_one_it_waits_for() {
    // pg1 and pg2 stream from the primary; pg3 from pg1, pg4 from pg3.
    let (engine, events) = tree_engine(vec![None, None, None, Some(1), Some(3)]);
    let mut clone = step("clone", &[4, 3, 2, 1], Act::Work("copy", 30));
    clone.waves = true;
    let report = engine.run("bootstrap", &[clone]).await;
    assert!(report.stopped.is_none());
    let lines = events.0.lock().unwrap().clone();
    let at = |line: &str| lines.iter().position(|l| l == line).unwrap();
    // The first wave runs together; each child starts after its upstream is done.
    assert!(at("pg2 clone started") < at("pg1 clone changed"));
    assert!(at("pg1 clone changed") < at("pg3 clone started"));
    assert!(at("pg3 clone changed") < at("pg4 clone started"));
    assert_eq!(engine.runner().inner.calls().len(), 4);
}

#[tokio::test]
async fn waves_fail_a_host_unstarted_when_the_one_it_waits_for_failed() {
    let (engine, _) = tree_engine(vec![None, None, None, Some(1), Some(3)]);
    let mut clone = step("clone", &[1, 2, 3, 4], Act::FailOn("copy", vec![1]));
    clone.waves = true;
    let report = engine.run("bootstrap", &[clone]).await;
    let runner = engine.runner();
    assert!(runner.inner.ran(2, "copy"), "the other branch goes on");
    assert!(!runner.inner.ran(3, "copy") && !runner.inner.ran(4, "copy"));
    let pg3 = report.hosts.iter().find(|h| h.name == "pg3").unwrap();
    let why = pg3.error.as_deref().unwrap_or_default();
    assert!(why.contains("waits for `pg1`, which failed"), "{why}");
    let pg4 = report.hosts.iter().find(|h| h.name == "pg4").unwrap();
    assert!(pg4.error.as_deref().unwrap_or_default().contains("`pg3`"));
}

#[tokio::test]
async fn a_host_waiting_for_one_outside_the_step_is_not_held_back() {
    // pg2 waits for pg1, but pg1 is not in the step: pg2 runs in the first wave.
    let (engine, events) = tree_engine(vec![None, None, Some(1)]);
    let mut start = step("start", &[2], Act::Work("start", 5));
    start.waves = true;
    engine.run("bootstrap", &[start]).await;
    assert!(engine.runner().inner.ran(2, "start"));
    assert!(
        events
            .0
            .lock()
            .unwrap()
            .contains(&"pg2 start changed".to_string())
    );
}
