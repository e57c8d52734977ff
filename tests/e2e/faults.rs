//! Faults and secrets: what really goes wrong, on real hosts. Nothing is lost (old data
//! dirs come back, no orphan slot keeps WAL), nothing is leaked, and a re-run finishes.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Lab, enabled, pgrepl_with, run_with_trigger};

/// Loads about 160 MB into the primary and caps backups at 20 MB/s, so a base backup takes
/// long enough (~8 s) to be interrupted, cut off or starved of disk on purpose.
fn slow_backups(lab: &Lab) {
    let load = lab.exec(
        0,
        "su postgres -c '/usr/lib/postgresql/15/bin/pgbench -i -s 10 -q postgres' 2>&1",
    );
    assert!(load.status.success(), "{load:?}");
    let inv = std::fs::read_to_string(lab.inventory()).unwrap();
    std::fs::write(
        lab.inventory(),
        inv.replace(
            "  user: replicator\n",
            "  user: replicator\n  backup_max_rate: 20M\n",
        ),
    )
    .unwrap();
}

/// Marks a replica's current (standalone) data so we can tell it came back.
fn mark(lab: &Lab, node: usize) {
    lab.sql(node, "CREATE TABLE old_data AS SELECT 'mine'::text AS v");
}

fn has_own_old_data(lab: &Lab, node: usize) -> bool {
    lab.try_sql(node, "SELECT v FROM old_data").stdout == b"mine\n"
        && lab.sql(node, "SELECT pg_is_in_recovery()") == "f"
}

fn aside_dirs(lab: &Lab, node: usize) -> String {
    String::from_utf8_lossy(
        &lab.exec(
            node,
            "ls -d /var/lib/postgresql/15/main.pgrepl-* 2>/dev/null",
        )
        .stdout,
    )
    .trim()
    .to_string()
}

fn no_orphan_slots(lab: &Lab) -> bool {
    lab.sql(
        0,
        "SELECT count(*) FROM pg_replication_slots WHERE NOT active",
    ) == "0"
}

#[test]
fn interrupt_during_backups_puts_old_data_dirs_back() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("fint", 3, "bookworm", "debian");
    slow_backups(&lab);
    mark(&lab, 1);
    mark(&lab, 2);
    let run = run_with_trigger(&lab, &["bootstrap"], "base backup: ", |pid| {
        std::thread::sleep(Duration::from_secs(2));
        // SIGINT, as Ctrl-C sends it, to the pgrepl process this test started.
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    });
    assert_eq!(run.code, 130, "{run:?}");
    assert!(run.stderr.contains("interrupted"), "{run:?}");
    for (i, node) in [(1, "pg1"), (2, "pg2")] {
        assert!(
            run.stdout
                .contains(&format!("{node}: left as: previous data dir restored")),
            "{run:?}"
        );
        assert!(
            has_own_old_data(&lab, i),
            "{node} lost its data: {:?} {run:?}",
            lab.try_sql(i, "SELECT v FROM old_data")
        );
        assert_eq!(
            aside_dirs(&lab, i),
            "",
            "{node} still has a moved-aside dir"
        );
    }
    assert!(no_orphan_slots(&lab), "an orphan slot retains WAL");
    assert_eq!(
        lab.exec(0, "test -e /var/lib/pgrepl/run.lock")
            .status
            .code(),
        Some(1),
        "the run lock was not released"
    );
    let rerun = lab.pgrepl(&["bootstrap"]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
}

#[test]
fn network_loss_and_full_disk_during_backup_restore_and_rerun_completes() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("fnet", 3, "bookworm", "debian");
    slow_backups(&lab);
    mark(&lab, 1);
    mark(&lab, 2);
    // pg2's data dir lives on a small tmpfs: enough for preflight, filled during the copy.
    let tmpfs = "pg_ctlcluster 15 main stop && mv /var/lib/postgresql/15/main /tmp/main && mount -t tmpfs -o size=420m tmpfs /var/lib/postgresql/15 \
                 && chown postgres:postgres /var/lib/postgresql/15 && cp -a /tmp/main /var/lib/postgresql/15/main && rm -rf /tmp/main && pg_ctlcluster 15 main start";
    let out = lab.exec(2, tmpfs);
    assert!(out.status.success(), "{out:?}");
    let primary = lab.nodes[0].address.clone();
    let (c1, c2) = (
        lab.nodes[1].container.clone(),
        lab.nodes[2].container.clone(),
    );
    let fired = Arc::new(AtomicBool::new(false));
    let fired2 = fired.clone();
    let run = run_with_trigger(
        &lab,
        &["bootstrap", "--format", "json"],
        "base backup: ",
        move |_| {
            std::thread::sleep(Duration::from_secs(2));
            // pg1 loses its path to the primary; pg2's disk fills up.
            let cut = format!(
                "iptables -A OUTPUT -d {primary} -p tcp --dport 5432 -j REJECT --reject-with tcp-reset"
            );
            let _ = Command::new("docker")
                .args(["exec", &c1, "sh", "-c", &cut])
                .status();
            let fill = "dd if=/dev/zero of=/var/lib/postgresql/15/filler bs=1M 2>/dev/null; true";
            let _ = Command::new("docker")
                .args(["exec", &c2, "sh", "-c", fill])
                .status();
            fired2.store(true, Ordering::SeqCst);
        },
    );
    assert!(
        fired.load(Ordering::SeqCst),
        "the faults never fired: {run:?}"
    );
    assert_eq!(run.code, 2, "{run:?}");
    let doc = run.json();
    let host = |name: &str| {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap()
            .clone()
    };
    for name in ["pg1", "pg2"] {
        assert_eq!(host(name)["status"], "failed", "{run:?}");
        assert!(
            host(name)["left_in"]
                .as_str()
                .unwrap_or_default()
                .contains("previous data dir restored"),
            "{run:?}"
        );
    }
    let disk = host("pg2")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        disk.contains("disk full") && disk.contains("needs about"),
        "pg2's message says the disk is full and what is needed: {disk}"
    );
    assert!(
        has_own_old_data(&lab, 1) && has_own_old_data(&lab, 2),
        "a replica lost its data"
    );
    assert!(no_orphan_slots(&lab), "an orphan slot retains WAL");

    // Heal both, and a re-run finishes the job.
    assert!(lab.exec(1, "iptables -F OUTPUT").status.success());
    assert!(
        lab.exec(2, "rm -f /var/lib/postgresql/15/filler")
            .status
            .success()
    );
    let rerun = lab.pgrepl(&["bootstrap"]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
}

#[test]
fn preflight_refusals_and_the_run_lock_change_nothing() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("fpre", 3, "bookworm", "debian");
    let snapshot = || lab.snapshot("");
    let before = snapshot();

    // A replica unreachable at the start: nothing changes on any host.
    assert!(
        Command::new("docker")
            .args(["pause", &lab.nodes[2].container])
            .status()
            .unwrap()
            .success()
    );
    let run = lab.pgrepl(&["bootstrap", "--connect-timeout", "3"]);
    assert!(
        Command::new("docker")
            .args(["unpause", &lab.nodes[2].container])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("pg2") && run.stdout.contains("cannot connect"),
        "{run:?}"
    );
    assert_eq!(
        snapshot(),
        before,
        "an unreachable replica let changes through"
    );

    // A changed host key: refused, nothing changed.
    let known = lab.dir.join("known_hosts");
    let good = std::fs::read_to_string(&known).unwrap();
    let pg0_key = good
        .lines()
        .find(|l| l.starts_with(&format!("{} ", lab.nodes[0].address)))
        .unwrap();
    let forged: String = good
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{} ", lab.nodes[1].address)) {
                pg0_key.replacen(&lab.nodes[0].address, &lab.nodes[1].address, 1)
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&known, forged).unwrap();
    let run = lab.pgrepl(&["bootstrap", "--accept-new-host-keys"]);
    std::fs::write(&known, &good).unwrap();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("HOST KEY CHANGED"), "{run:?}");
    assert_eq!(snapshot(), before);

    // A replica that cannot reach the primary's port: named, nothing changed.
    let drop = format!(
        "iptables -A OUTPUT -d {} -p tcp --dport 5432 -j DROP",
        lab.nodes[0].address
    );
    assert!(lab.exec(1, &drop).status.success());
    let run = lab.pgrepl(&["bootstrap"]);
    assert!(lab.exec(1, "iptables -F OUTPUT").status.success());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "pg1: preflight: cannot reach the primary at {}:5432 (no answer within 5s)",
            lab.nodes[0].address
        )),
        "{run:?}"
    );
    assert_eq!(
        snapshot(),
        before,
        "an unreachable primary port let changes through"
    );

    // A missing password: invalid input, before any host is contacted.
    let inv = std::fs::read_to_string(lab.inventory()).unwrap();
    let no_pw = lab.dir.join("no-password.yaml");
    std::fs::write(
        &no_pw,
        inv.replace(
            "password_file: replication-password",
            "password_env: PGREPL_TEST_NO_SUCH_VARIABLE",
        ),
    )
    .unwrap();
    let run = pgrepl_with(&no_pw, &["bootstrap"], &[]);
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.contains("PGREPL_TEST_NO_SUCH_VARIABLE"),
        "{run:?}"
    );

    // A replication login that fails (here: a playbook without the role step) stops
    // before any replica is stopped.
    let book = pgrepl::playbook::EMBEDDED
        .iter()
        .find(|(n, _)| *n == "bootstrap")
        .unwrap()
        .1;
    let dir = lab.dir.join("no-role");
    std::fs::create_dir_all(&dir).unwrap();
    let without_role = book.replace(
        "  - name: replication role\n    hosts: primary\n    lane: primary\n    action: replication_role\n",
        "",
    );
    assert_ne!(
        without_role, book,
        "the role step was not found in the playbook"
    );
    std::fs::write(dir.join("bootstrap.yaml"), without_role).unwrap();
    let run = lab.pgrepl(&["bootstrap", "--playbooks", dir.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .contains("replication login to the primary `pg0` failed, nothing was stopped")
            && run.stdout.contains("password"),
        "{run:?}"
    );
    for (i, was) in before.iter().enumerate().skip(1) {
        assert_eq!(
            lab.sql(i, "SELECT pg_postmaster_start_time()"),
            was.lines().last().unwrap(),
            "pg{i} was stopped"
        );
    }

    // Two runs at once: a lock held by a run elsewhere is refused, naming it; --break-lock recovers it.
    lab.exec(0, "mkdir -p /var/lib/pgrepl && echo 'machine=ops-laptop pid=4242 user=ana command=bootstrap since=2026-11-22T10:00:00Z' > /var/lib/pgrepl/run.lock");
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("machine=ops-laptop pid=4242") && run.stderr.contains("--break-lock"),
        "{run:?}"
    );
    let run = lab.pgrepl(&["bootstrap", "--break-lock"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        lab.exec(0, "test -e /var/lib/pgrepl/run.lock")
            .status
            .code(),
        Some(1),
        "the lock was not released"
    );
}

#[test]
fn the_replication_password_appears_nowhere() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("fsec", 3, "bookworm", "debian");
    let password = std::fs::read_to_string(lab.dir.join("replication-password"))
        .unwrap()
        .trim()
        .to_string();
    lab.sql(0, "ALTER SYSTEM SET log_statement = 'all'");
    lab.sql(0, "SELECT pg_reload_conf()");
    // Bootstrap 1+1 first, then add pg2: both commands are watched.
    let full = std::fs::read_to_string(lab.inventory()).unwrap();
    let pg2 = full
        .lines()
        .find(|l| l.contains("name: pg2"))
        .unwrap()
        .to_string();
    std::fs::write(lab.inventory(), full.replace(&format!("{pg2}\n"), "")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let samplers: Vec<_> = lab
        .nodes
        .iter()
        .map(|n| {
            let (container, stop, seen) = (n.container.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let out = Command::new("docker")
                        .args(["exec", &container, "ps", "-eo", "args"])
                        .output()
                        .unwrap();
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&out.stdout).into_owned());
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    let log = lab.dir.join("pgrepl.log");
    let boot = lab.pgrepl(&["bootstrap", "-vv", "--log-file", log.to_str().unwrap()]);
    let add = lab.pgrepl(&[
        "add-replica",
        "pg2",
        "--address",
        &lab.nodes[2].address,
        "-vv",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::SeqCst);
    for s in samplers {
        s.join().unwrap();
    }
    assert_eq!((boot.code, add.code), (0, 0), "{boot:?}\n{add:?}");
    let samples = seen.lock().unwrap();
    assert!(samples.len() > 20, "too few ps samples: {}", samples.len());
    assert!(
        samples
            .iter()
            .any(|s| s.contains("pg_basebackup") || s.contains("psql")),
        "the sampler never saw pgrepl's commands"
    );
    let places: Vec<(String, String)> = vec![
        ("ps -eo args".into(), samples.join("\n")),
        ("stdout".into(), format!("{}{}", boot.stdout, add.stdout)),
        (
            "stderr -vv".into(),
            format!("{}{}", boot.stderr, add.stderr),
        ),
        ("log file".into(), std::fs::read_to_string(&log).unwrap()),
        (
            "primary server log".into(),
            String::from_utf8_lossy(
                &lab.exec(0, "cat /var/log/postgresql/postgresql-15-main.log")
                    .stdout,
            )
            .into_owned(),
        ),
        (
            "pg1 settings".into(),
            lab.sql(1, "SHOW primary_conninfo")
                + &String::from_utf8_lossy(
                    &lab.exec(1, "cat /var/lib/postgresql/15/main/postgresql.auto.conf")
                        .stdout,
                ),
        ),
        (
            "pg2 settings".into(),
            lab.sql(2, "SHOW primary_conninfo")
                + &String::from_utf8_lossy(
                    &lab.exec(2, "cat /var/lib/postgresql/15/main/postgresql.auto.conf")
                        .stdout,
                ),
        ),
    ];
    assert!(
        places[4].1.contains("CREATE ROLE"),
        "log_statement = 'all' did not log the role statement"
    );
    assert!(
        places[3].1.contains("$ cd /"),
        "-vv output reached the log file"
    );
    for (place, text) in &places {
        assert!(
            !text.contains(&password),
            "the replication password leaked into {place}"
        );
    }
    for i in 1..3 {
        assert_eq!(
            String::from_utf8_lossy(
                &lab.exec(i, "stat -c '%U %a' /var/lib/postgresql/.pgrepl_pgpass")
                    .stdout
            )
            .trim(),
            "postgres 600"
        );
    }
}

#[test]
fn a_replica_lost_mid_run_is_named_and_the_others_complete() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("flost", 3, "bookworm", "debian");
    slow_backups(&lab);
    let pg2 = lab.nodes[2].container.clone();
    // pg2 freezes (as a host that dropped off the network) during the copies.
    let run = run_with_trigger(
        &lab,
        &["bootstrap", "--ssh-keepalive", "1", "--format", "json"],
        "[pg2] base backup: ",
        move |_| {
            let _ = Command::new("docker").args(["pause", &pg2]).status();
        },
    );
    assert!(
        Command::new("docker")
            .args(["unpause", &lab.nodes[2].container])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(run.code, 2, "{run:?}");
    let doc = run.json();
    let host = |name: &str| {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(host("pg1")["failed"], 0, "pg1 carries on: {run:?}");
    assert_eq!(
        lab.sql(1, "SELECT status FROM pg_stat_wal_receiver"),
        "streaming"
    );
    assert_eq!(host("pg2")["status"], "failed", "{run:?}");
    let left = host("pg2")["left_in"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        left.contains("main.pgrepl-") && left.contains("not restored"),
        "the recap says where pg2's old data is: {run:?}"
    );
    // pg2's old data dir is intact where the recap says.
    let aside = left
        .split_whitespace()
        .find(|w| w.contains("main.pgrepl-"))
        .unwrap()
        .trim_end_matches([',', ';', '.', ')'])
        .to_string();
    assert!(
        lab.exec(
            2,
            &format!("test -f {aside}/PG_VERSION && test -d {aside}/base")
        )
        .status
        .success(),
        "{aside} is not a data dir"
    );
    // Back on the network, a re-run finishes the job.
    let rerun = lab.pgrepl(&["bootstrap"]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
}
