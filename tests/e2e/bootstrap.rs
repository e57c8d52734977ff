//! `pgrepl bootstrap` end to end: build, prove replication, re-run changes nothing.

use std::time::Duration;

use crate::support::{Lab, enabled};

/// Bootstraps 1+N and proves it: rows flow, replicas refuse writes, secrets stay out of
/// primary_conninfo, the passfile is 0600 postgres, and a re-run changes nothing.
pub(crate) fn bootstrap_and_prove(lab: &Lab, service_check: &str) {
    let run = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc = run.json();
    assert_eq!(doc["status"], "ok", "{run:?}");
    assert_eq!(doc["hosts"].as_array().map(Vec::len), Some(lab.nodes.len()));
    assert!(
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["status"] == "changed" && h["failed"] == 0),
        "{run:?}"
    );

    let token = format!("row-{}", std::process::id());
    lab.sql(
        0,
        &format!("CREATE TABLE IF NOT EXISTS e2e (v text); INSERT INTO e2e VALUES ('{token}')"),
    );
    for i in 1..lab.nodes.len() {
        let seen = lab.wait_for(Duration::from_secs(10), || {
            lab.try_sql(i, &format!("SELECT count(*) FROM e2e WHERE v = '{token}'"))
                .stdout
                .starts_with(b"1")
        });
        assert!(seen, "row not replicated to {}", lab.nodes[i].name);
        let write = lab.try_sql(i, "INSERT INTO e2e VALUES ('x')");
        assert!(!write.status.success());
        assert!(
            String::from_utf8_lossy(&write.stderr).contains("read-only"),
            "{write:?}"
        );
        let conninfo = lab.sql(i, "SHOW primary_conninfo");
        let password = std::fs::read_to_string(lab.dir.join("replication-password")).unwrap();
        assert!(
            !conninfo.contains(password.trim()) && !conninfo.contains("password="),
            "{conninfo}"
        );
        assert!(
            conninfo.contains(&format!("application_name={}", lab.nodes[i].name)),
            "{conninfo}"
        );
        let auto = lab.exec(i, "cat $(su postgres -s /bin/sh -c \"psql -Atc 'show data_directory'\")/postgresql.auto.conf");
        assert!(!String::from_utf8_lossy(&auto.stdout).contains(password.trim()));
        let mode = lab.exec(i, "stat -c '%U %a' ~postgres/.pgrepl_pgpass");
        assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "postgres 600");
    }
    let starts: Vec<String> = (0..lab.nodes.len())
        .map(|i| lab.sql(i, "SELECT pg_postmaster_start_time()"))
        .collect();
    let again = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let doc = again.json();
    for h in doc["hosts"].as_array().unwrap() {
        assert_eq!(
            h["changed"], 0,
            "second run changed something on {}: {again:?}",
            h["name"]
        );
    }
    for (i, before) in starts.iter().enumerate() {
        assert_eq!(
            &lab.sql(i, "SELECT pg_postmaster_start_time()"),
            before,
            "{} restarted on a no-op run",
            lab.nodes[i].name
        );
    }
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(lab.exec(0, service_check).status.success());
}

#[test]
fn bootstrap_1_plus_2_on_bookworm_postgres_15() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("boot15", 3, "bookworm", "debian");
    bootstrap_and_prove(&lab, "test -f /etc/postgresql/15/main/conf.d/pgrepl.conf");
}

#[test]
fn bootstrap_1_plus_2_on_trixie_postgres_17() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("boot17", 3, "trixie", "debian");
    bootstrap_and_prove(&lab, "test -f /etc/postgresql/17/main/conf.d/pgrepl.conf");
}

#[test]
fn bootstrap_pg_ctl_layout_logged_in_as_root() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootpgctl", 3, "bookworm", "pgctl");
    let inv = std::fs::read_to_string(lab.inventory())
        .unwrap()
        .replace("user: ubuntu", "user: root");
    std::fs::write(lab.inventory(), inv).unwrap();
    bootstrap_and_prove(
        &lab,
        "grep -q 'BEGIN pgrepl managed block' /var/lib/pgsql/15/data/postgresql.conf",
    );
}

#[test]
fn bootstrap_1_plus_8_on_defaults() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("boot9", 9, "bookworm", "debian");
    let run = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["verify"]["status"], "ok", "{run:?}");
    assert_eq!(
        lab.sql(
            0,
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        ),
        "8"
    );
}

#[test]
fn a_replica_that_fails_to_start_gets_its_old_data_dir_back_and_a_rerun_finishes() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootfail", 3, "bookworm", "debian");
    // A standby refuses to start with max_connections below its primary's: break pg2 so.
    let marker = "SELECT 'old pg2 data'";
    lab.sql(2, &format!("CREATE TABLE old_data AS {marker} AS v"));
    assert!(
        lab.exec(
            2,
            "echo 'max_connections = 10' > /etc/postgresql/15/main/conf.d/zz-site.conf"
        )
        .status
        .success()
    );
    let run = lab.pgrepl(&["bootstrap", "--format", "json"]);
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
    assert_eq!(host("pg2")["status"], "failed", "{run:?}");
    assert!(
        host("pg2")["left_in"]
            .as_str()
            .unwrap_or_default()
            .contains("previous data dir restored"),
        "{run:?}"
    );
    assert_eq!(host("pg1")["failed"], 0, "pg1 carries on: {run:?}");
    // pg2 runs as before, on its old data.
    assert_eq!(lab.sql(2, "SELECT v FROM old_data"), "old pg2 data");
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        lab.sql(
            0,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pg2' AND NOT active"
        ),
        "0",
        "no orphan slot retains WAL"
    );
    // Fix the cause; a re-run finishes the job.
    assert!(
        lab.exec(2, "rm /etc/postgresql/15/main/conf.d/zz-site.conf")
            .status
            .success()
    );
    let rerun = lab.pgrepl(&["bootstrap"]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
}

#[test]
fn a_rerun_that_raises_settings_restarts_replicas_before_the_primary() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootgrow", 3, "bookworm", "debian");
    let inv = std::fs::read_to_string(lab.inventory()).unwrap();
    let tight = inv.replace(
        "  password_file: replication-password\n",
        "  password_file: replication-password\n  settings: { max_wal_senders: 5 }\n",
    );
    std::fs::write(lab.inventory(), &tight).unwrap();
    assert_eq!(lab.pgrepl(&["bootstrap"]).code, 0);
    let starts: Vec<String> = (0..3)
        .map(|i| lab.sql(i, "SELECT extract(epoch FROM pg_postmaster_start_time())"))
        .collect();
    // Back to pgrepl's sizing: max_wal_senders grows to 10 everywhere. A standby whose
    // value is below its primary's pauses replay, so the replicas must go first.
    std::fs::write(lab.inventory(), &inv).unwrap();
    let run = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let now: Vec<f64> = (0..3)
        .map(|i| {
            lab.sql(i, "SELECT extract(epoch FROM pg_postmaster_start_time())")
                .parse()
                .unwrap()
        })
        .collect();
    for i in 0..3 {
        assert!(
            now[i] > starts[i].parse::<f64>().unwrap(),
            "{} was not restarted",
            lab.nodes[i].name
        );
        assert_eq!(lab.sql(i, "SHOW max_wal_senders"), "10");
    }
    assert!(
        now[1] < now[0] && now[2] < now[0],
        "a replica restarted after the primary: {now:?}"
    );
    // One at a time: the run's timeline shows the two restarts one after the other.
    let doc = run.json();
    let span = |host: &str| {
        let s = doc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["host"] == host && s["step"] == "streaming replica reload or restart")
            .unwrap_or_else(|| panic!("no restart step for {host}: {run:?}"));
        (
            s["start_ms"].as_u64().unwrap(),
            s["end_ms"].as_u64().unwrap(),
        )
    };
    let (a, b) = (span("pg1"), span("pg2"));
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "the replicas restarted together, not one at a time: {a:?} {b:?}"
    );
    for i in 1..3 {
        assert_eq!(lab.sql(i, "SELECT pg_is_wal_replay_paused()"), "f");
    }
}

/// A replica that is only stopped is started and checked, not copied again; one whose data
/// cannot stream (here: promoted by hand) is copied, and the step says why. Monitoring
/// (verify, status) needs no replication password.
#[test]
fn a_stopped_replica_is_started_not_copied() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootstop", 3, "bookworm", "debian");
    let first = lab.pgrepl(&["bootstrap"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stderr.contains(
            "[pg2] standby check: ok (cannot stream: it holds another cluster (system identifier"
        ),
        "{first:?}"
    );

    // verify and status run without the password (issue 13, item 8).
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
    for cmd in ["verify", "status"] {
        let run = crate::support::pgrepl_with(&no_pw, &[cmd], &[]);
        assert_eq!(run.code, 0, "{cmd} without the password: {run:?}");
    }

    let asides = || {
        String::from_utf8_lossy(
            &lab.exec(
                2,
                "ls -d /var/lib/postgresql/15/main.pgrepl-* 2>/dev/null | wc -l",
            )
            .stdout,
        )
        .trim()
        .to_string()
    };
    let before = asides();
    assert!(lab.exec(2, "pg_ctlcluster 15 main stop").status.success());

    let check = lab.pgrepl(&["bootstrap", "--check"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check
            .stderr
            .contains("[pg2] start and wait for streaming: changed (would start it")
            && !check.stderr.contains("[pg2] move data dir aside"),
        "--check would copy a stopped standby: {check:?}"
    );

    let run = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("[pg2] standby check: ok (a standby of this primary (system identifier"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("[pg2] start and wait for streaming: changed (started; streaming from pg0"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("[pg2] base backup"),
        "pg2 was copied: {run:?}"
    );
    let doc = run.json();
    let pg2 = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "pg2")
        .unwrap()
        .clone();
    assert!(
        pg2["left_in"]
            .as_str()
            .unwrap_or_default()
            .contains("started"),
        "the recap does not say pg2 was started: {run:?}"
    );
    assert_eq!(asides(), before, "a data dir was moved aside: {run:?}");
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        lab.sql(0, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg2' AND state = 'streaming'"),
        "1"
    );

    // Promoted by hand: its data is no standby any more, so it is copied, saying why.
    assert!(
        lab.exec(2, "pg_ctlcluster 15 main promote")
            .status
            .success()
    );
    assert!(lab.wait_for(Duration::from_secs(20), || {
        lab.try_sql(2, "SELECT pg_is_in_recovery()")
            .stdout
            .starts_with(b"f")
    }));
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("[pg2] standby check: ok (cannot stream: it is not a standby"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("[pg2] base backup: changed (copied the primary")
            && run.stderr.contains("(it is not a standby"),
        "{run:?}"
    );
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
}

/// `--check` says whether changed settings take a reload or a restart, from PostgreSQL's
/// own `pg_settings.context`; a run that would restart the primary says so before any step.
#[test]
fn check_says_reload_or_restart_and_a_primary_restart_comes_first() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootcheck", 2, "bookworm", "debian");
    let first = lab.pgrepl(&["bootstrap"]);
    assert_eq!(first.code, 0, "{first:?}");
    let inv = std::fs::read_to_string(lab.inventory()).unwrap();
    let with = |settings: &str| {
        let text = inv.replace(
            "  password_file: replication-password\n",
            &format!("  password_file: replication-password\n  settings: {{ {settings} }}\n"),
        );
        std::fs::write(lab.inventory(), text).unwrap();
    };

    // wal_keep_size is a sighup setting: a reload.
    with("wal_keep_size: 2GB");
    let run = lab.pgrepl(&["bootstrap", "--check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(
            "[pg0] primary reload or restart: changed (would reload (no changed setting needs a restart))"
        ) && !run.stderr.contains("restart the primary"),
        "{run:?}"
    );

    // max_wal_senders is a postmaster setting: a restart, announced first.
    with("max_wal_senders: 12");
    let run = lab.pgrepl(&["bootstrap", "--check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(
            "[pg0] primary reload or restart: changed (would restart to apply max_wal_senders)"
        ),
        "{run:?}"
    );
    let note = run
        .stderr
        .find("pgrepl: this run would restart the primary `pg0` (writes stop for a few seconds) to apply max_wal_senders")
        .unwrap_or_else(|| panic!("no restart note: {run:?}"));
    let first_step = run.stderr.find("[pg0] preflight").expect("preflight line");
    assert!(
        note < first_step,
        "the restart note comes after the steps: {run:?}"
    );

    let before = lab.sql(0, "SELECT pg_postmaster_start_time()");
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("pgrepl: this run restarts the primary `pg0` (writes stop for a few seconds) to apply max_wal_senders"),
        "{run:?}"
    );
    assert_ne!(lab.sql(0, "SELECT pg_postmaster_start_time()"), before);
    assert_eq!(lab.sql(0, "SHOW max_wal_senders"), "12");
}
