//! `pgrepl add-replica`: grow a running cluster while a client writes, disturbing nothing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{Lab, enabled};

#[test]
fn add_replica_under_write_load_without_disruption() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("addrep", 3, "bookworm", "debian");
    // Start from 1+1: the inventory without pg2.
    let full = std::fs::read_to_string(lab.inventory()).unwrap();
    let pg2_line = full
        .lines()
        .find(|l| l.contains("name: pg2"))
        .unwrap()
        .to_string();
    std::fs::write(lab.inventory(), full.replace(&format!("{pg2_line}\n"), "")).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Refusals change nothing: the primary, an unknown name, a healthy replica.
    assert_eq!(lab.pgrepl(&["add-replica", "pg0"]).code, 64);
    let unknown = lab.pgrepl(&["add-replica", "pg9"]);
    assert!(
        unknown.code == 64 && unknown.stderr.contains("--address"),
        "{unknown:?}"
    );
    let healthy = lab.pgrepl(&["add-replica", "pg1"]);
    assert!(
        healthy.code == 2 && healthy.stderr.contains("already a healthy replica"),
        "{healthy:?}"
    );

    lab.sql(
        0,
        "CREATE TABLE load (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
    );
    let primary_start = lab.sql(0, "SELECT pg_postmaster_start_time()");
    let replica_start = lab.sql(1, "SELECT pg_postmaster_start_time()");

    // A client writing a row every few milliseconds, and a watcher of pg1's stream.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let container = lab.nodes[0].container.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut child = Command::new("docker")
                .args([
                    "exec",
                    "-i",
                    "-u",
                    "postgres",
                    &container,
                    "psql",
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    "postgres",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut sent = 0usize;
            while !stop.load(Ordering::SeqCst) {
                use std::io::Write;
                if writeln!(stdin, "INSERT INTO load DEFAULT VALUES;").is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            (
                sent,
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let gaps = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let container = lab.nodes[0].container.clone();
        let (stop, gaps) = (stop.clone(), gaps.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new("docker")
                    .args(["exec", "-u", "postgres", &container, "psql", "-Atc", "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg1' AND state = 'streaming'"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).trim() != "1" {
                    gaps.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let add = lab.pgrepl(&[
        "add-replica",
        "pg2",
        "--address",
        &lab.nodes[2].address,
        "--format",
        "json",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (sent, writer_ok, writer_err) = writer.join().unwrap();
    watcher.join().unwrap();

    assert_eq!(add.code, 0, "{add:?}");
    assert!(
        std::fs::read_to_string(lab.inventory())
            .unwrap()
            .contains("name: pg2"),
        "the inventory gained pg2"
    );
    assert!(
        writer_ok && writer_err.is_empty(),
        "a write failed: {writer_err}"
    );
    assert!(sent > 100, "the client wrote only {sent} rows");
    assert_eq!(
        lab.sql(0, "SELECT count(*) FROM load"),
        sent.to_string(),
        "every write committed"
    );
    assert_eq!(
        lab.sql(0, "SELECT pg_postmaster_start_time()"),
        primary_start,
        "the primary restarted"
    );
    assert_eq!(
        lab.sql(1, "SELECT pg_postmaster_start_time()"),
        replica_start,
        "pg1 was touched"
    );
    assert_eq!(
        gaps.load(Ordering::SeqCst),
        0,
        "pg1 stopped streaming during add-replica"
    );
    let caught_up = lab.wait_for(Duration::from_secs(10), || {
        lab.try_sql(2, "SELECT count(*) FROM load").stdout == format!("{sent}\n").into_bytes()
    });
    assert!(caught_up, "pg2 did not catch up");
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn add_replica_refuses_a_primary_restart_unless_allowed() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("addrestart", 3, "bookworm", "debian");
    let full = std::fs::read_to_string(lab.inventory()).unwrap();
    let pg2_line = full
        .lines()
        .find(|l| l.contains("name: pg2"))
        .unwrap()
        .to_string();
    let one_replica = full.replace(&format!("{pg2_line}\n"), "");
    // A primary sized by hand for one replica: 4 walsenders.
    let tight = one_replica.replace(
        "  password_file: replication-password\n",
        "  password_file: replication-password\n  settings: { max_wal_senders: 4 }\n",
    );
    std::fs::write(lab.inventory(), &tight).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(lab.sql(0, "SHOW max_wal_senders"), "4");

    // Without the override pgrepl sizes max_wal_senders for two replicas plus a copy: that
    // needs a restart, which add-replica refuses, changing nothing.
    std::fs::write(lab.inventory(), &one_replica).unwrap();
    let conf =
        "md5sum /etc/postgresql/15/main/conf.d/pgrepl.conf /etc/postgresql/15/main/pg_hba.conf";
    let files = lab.exec(0, conf).stdout;
    let started = lab.sql(0, "SELECT pg_postmaster_start_time()");
    let refused = lab.pgrepl(&["add-replica", "pg2", "--address", &lab.nodes[2].address]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stdout
            .contains("needs a restart to change max_wal_senders")
            && refused.stdout.contains("--allow-restart"),
        "{refused:?}"
    );
    assert_eq!(
        lab.exec(0, conf).stdout,
        files,
        "a refused add-replica changed the primary's files"
    );
    assert_eq!(lab.sql(0, "SELECT pg_postmaster_start_time()"), started);
    assert_eq!(
        lab.sql(2, "SELECT pg_is_in_recovery()"),
        "f",
        "pg2 was touched"
    );

    let pg1_started = lab.sql(1, "SELECT pg_postmaster_start_time()");
    let allowed = lab.pgrepl(&["add-replica", "pg2", "--allow-restart"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    // pg1 took the raised setting first (restarted), so it never paused replay.
    assert_ne!(
        lab.sql(1, "SELECT pg_postmaster_start_time()"),
        pg1_started,
        "pg1 kept max_wal_senders below the primary's"
    );
    assert_eq!(lab.sql(1, "SHOW max_wal_senders"), "10");
    assert_eq!(lab.sql(1, "SELECT pg_is_wal_replay_paused()"), "f");
    assert_ne!(
        lab.sql(0, "SELECT pg_postmaster_start_time()"),
        started,
        "the allowed restart did not happen"
    );
    assert_eq!(lab.sql(0, "SHOW max_wal_senders"), "10");
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
}

/// Issue 13.1, its exact repro: bootstrap 1+2, `lab add` a fourth node, add it with
/// `add-replica NAME --address ADDR`, then `bootstrap`. max_wal_senders is sized from the
/// inventory alone, so the bootstrap after add-replica finds every setting as add-replica
/// left it: 0 changed on every host, nothing restarted (it used to raise max_wal_senders
/// 10 → 11 and restart the primary and every replica).
///
/// Sized from the inventory, a third replica needs max_wal_senders 11 (3 replicas + 2 per
/// concurrent copy + 2) on every member, so add-replica itself needs `--allow-restart`
/// here: without it, it refuses and changes nothing (tested in
/// `add_replica_refuses_a_primary_restart_unless_allowed`).
#[test]
fn bootstrap_after_add_replica_changes_nothing_and_restarts_nothing() {
    if !enabled() {
        return;
    }
    let mut lab = Lab::up("addboot", 3, "bookworm", "debian");
    let boot = lab.pgrepl(&["bootstrap"]);
    assert_eq!(boot.code, 0, "{boot:?}");
    let new = lab.add();
    let add = lab.pgrepl(&[
        "add-replica",
        &new.name,
        "--address",
        &new.address,
        "--allow-restart",
    ]);
    assert_eq!(add.code, 0, "{add:?}");
    let starts = |lab: &Lab| -> Vec<String> {
        (0..lab.nodes.len())
            .map(|i| lab.sql(i, "SELECT pg_postmaster_start_time()"))
            .collect()
    };
    let before = starts(&lab);
    assert_eq!(before.len(), 4, "{:?}", lab.nodes);

    let zero_changed = |run: &crate::support::Run, what: &str| {
        assert_eq!(run.code, 0, "{what}: {run:?}");
        let doc = run.json();
        let hosts = doc["hosts"].as_array().expect("hosts");
        assert_eq!(hosts.len(), 4, "{what}: {run:?}");
        for h in hosts {
            assert_eq!(
                (h["changed"].as_u64(), h["failed"].as_u64()),
                (Some(0), Some(0)),
                "{what} changed something on {}: {run:?}",
                h["name"]
            );
        }
        assert!(
            !run.stderr.contains("max_wal_senders")
                && !run.stderr.contains("would restart")
                && !run.stderr.contains("restarted"),
            "{what} would change or restart something: {run:?}"
        );
    };
    let check = lab.pgrepl(&["bootstrap", "--check", "--diff", "--format", "json"]);
    zero_changed(&check, "bootstrap --check --diff");
    let again = lab.pgrepl(&["bootstrap", "--format", "json"]);
    zero_changed(&again, "bootstrap");
    assert_eq!(
        starts(&lab),
        before,
        "a PostgreSQL restarted during the bootstrap after add-replica ({:?})",
        lab.nodes.iter().map(|n| &n.name).collect::<Vec<_>>()
    );
    let senders: Vec<String> = (0..4).map(|i| lab.sql(i, "SHOW max_wal_senders")).collect();
    assert!(
        senders.iter().all(|s| s == &senders[0]),
        "max_wal_senders differs between members: {senders:?}"
    );
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}
