//! `pgrepl verify` against healthy and broken clusters.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Lab, Run, enabled};

/// Runs `verify --format json` with extra arguments; returns the run and its parsed report.
fn verify_json(lab: &Lab, extra: &[&str]) -> (Run, Value) {
    let mut args = vec!["verify", "--format", "json"];
    args.extend_from_slice(extra);
    let run = lab.pgrepl(&args);
    let doc = run.json();
    (run, doc)
}

/// The host entry named `host` in a verify report.
fn host<'a>(doc: &'a Value, host: &str) -> &'a Value {
    doc["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["name"] == host))
        .unwrap_or_else(|| panic!("no host {host} in report: {doc:#}"))
}

/// The (status, detail) of the first check named `name` on `host`, if any.
fn check(doc: &Value, host_name: &str, name: &str) -> Option<(String, String)> {
    host(doc, host_name)["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// The probe entry of `host`.
fn probe<'a>(doc: &'a Value, host: &str) -> &'a Value {
    doc["probe"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["host"] == host))
        .unwrap_or_else(|| panic!("no probe for {host}: {doc:#}"))
}

/// Waits until plain `verify` exits 0 again, panicking with the last run if it does not.
fn wait_healthy(lab: &Lab, what: &str) {
    let start = Instant::now();
    let mut last = None;
    let ok = lab.wait_for(Duration::from_secs(60), || {
        let run = lab.pgrepl(&["verify", "--probe-timeout", "3"]);
        let ok = run.code == 0;
        last = Some(run);
        ok
    });
    assert!(
        ok,
        "cluster not healthy again after {what}:\n{:?}",
        last.unwrap()
    );
    eprintln!(
        "healthy again after {what} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn pg_ctl(lab: &Lab, node: usize, action: &str) {
    let out = lab.exec(node, &format!("pg_ctlcluster 15 main {action}"));
    assert!(
        out.status.success(),
        "pg_ctlcluster {action} on {} failed: {out:?}",
        lab.nodes[node].name
    );
}

#[test]
fn verify_reports_health_and_names_each_failure() {
    if !enabled() {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::up("verify15", 3, "bookworm", "debian");
    eprintln!("lab up: {:.1} s", t0.elapsed().as_secs_f64());
    // Real pgrepl bugs seen on the way: asserted at the end so the other cases still run.
    let mut bugs: Vec<String> = Vec::new();
    let boot = lab.pgrepl(&["bootstrap"]);
    if boot.code != 0 {
        // Seen in early runs (while src/ was also changing): every other check ok, but no
        // replica saw the probe row within 10 s. Bootstrap of a healthy lab must exit 0.
        assert!(
            boot.stdout
                .contains("verification failed on pg1 (probe), pg2 (probe)"),
            "{boot:?}"
        );
        bugs.push(format!(
            "first probe on a fresh cluster failed, so bootstrap exited {}:\n{boot:?}",
            boot.code
        ));
    }
    eprintln!("bootstrap done: {:.1} s", t0.elapsed().as_secs_f64());

    // 1. Healthy.
    let (run, doc) = verify_json(&lab, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(doc["status"], "ok", "{run:?}");
    let hosts = doc["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 3, "{run:?}");
    for h in hosts {
        assert_eq!(h["status"], "ok", "{run:?}");
        assert!(
            h["checks"].as_array().is_some_and(|c| !c.is_empty()),
            "host {} has no checks: {run:?}",
            h["name"]
        );
    }
    assert_eq!(host(&doc, "pg0")["role"], "primary", "{run:?}");
    for r in ["pg1", "pg2"] {
        let p = probe(&doc, r);
        assert!(
            p["delay_ms"].is_number(),
            "no numeric probe delay for {r}: {run:?}"
        );
        assert_eq!(p["status"], "ok", "{run:?}");
        assert_eq!(
            check(&doc, r, "wal receiver").map(|c| c.0).as_deref(),
            Some("ok"),
            "{run:?}"
        );
        // The numbers behind the checks, as numbers (bytes, seconds).
        assert!(p["delay_seconds"].is_f64(), "{run:?}");
        let h = host(&doc, r);
        assert_eq!(h["lag"]["state"], "streaming", "{run:?}");
        for field in ["write_bytes", "flush_bytes", "replay_bytes"] {
            assert!(h["lag"][field].is_u64(), "lag.{field} of {r}: {run:?}");
        }
        for field in ["write_seconds", "flush_seconds", "replay_seconds"] {
            assert!(h["lag"][field].is_number(), "lag.{field} of {r}: {run:?}");
        }
        assert!(h["replay_backlog_bytes"].is_u64(), "{run:?}");
        assert_eq!(h["slot"]["name"], r, "{run:?}");
        assert_eq!(h["slot"]["active"], true, "{run:?}");
        assert!(h["slot"]["retained_bytes"].is_u64(), "{run:?}");
    }
    let slots = host(&doc, "pg0")["slots"]
        .as_array()
        .expect("the primary's slots");
    assert_eq!(slots.len(), 2, "{run:?}");
    assert!(
        slots.iter().all(|s| s["retained_bytes"].is_u64()),
        "{run:?}"
    );

    // 1b. The probe database: verify writes its one row in `pgrepl.probe` of the database
    // --probe-database names, and creates nothing anywhere else.
    lab.sql(0, "CREATE DATABASE appdb");
    for i in 1..3 {
        let has = lab.wait_for(Duration::from_secs(10), || {
            lab.sql_in(
                i,
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'appdb'",
            ) == "1"
        });
        assert!(has, "appdb did not reach {}", lab.nodes[i].name);
    }
    // Bootstrap's own verify probed in postgres: start from a postgres without pgrepl's schema.
    lab.sql(0, "DROP SCHEMA pgrepl CASCADE");
    let (run, doc) = verify_json(&lab, &["--probe-database", "appdb"]);
    assert_eq!(run.code, 0, "{run:?}");
    for r in ["pg1", "pg2"] {
        assert_eq!(probe(&doc, r)["status"], "ok", "{run:?}");
    }
    for i in 0..3 {
        assert_eq!(
            lab.sql_in(i, "appdb", "SELECT count(*) FROM pgrepl.probe"),
            "1",
            "no probe row in appdb on {}",
            lab.nodes[i].name
        );
        assert_eq!(
            lab.sql_in(i, "postgres", "SELECT to_regnamespace('pgrepl') IS NULL"),
            "t",
            "verify --probe-database appdb created schema pgrepl in postgres on {}",
            lab.nodes[i].name
        );
    }
    // A probe database that does not exist: a failed check naming it, with a hint.
    let (run, doc) = verify_json(
        &lab,
        &["--probe-database", "nosuchdb", "--probe-timeout", "2"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    let (status, detail) =
        check(&doc, "pg0", "probe").unwrap_or_else(|| panic!("no probe check on pg0: {run:?}"));
    assert_eq!(status, "fail", "{run:?}");
    assert!(
        detail.contains("the probe database `nosuchdb` does not exist on the primary `pg0`")
            && detail.contains("--probe-database"),
        "{run:?}"
    );
    for r in ["pg1", "pg2"] {
        let p = probe(&doc, r);
        assert_eq!(p["status"], "fail", "{run:?}");
        assert!(
            p["error"]
                .as_str()
                .is_some_and(|e| e.contains("`nosuchdb` does not exist")),
            "{run:?}"
        );
    }
    let human = lab.pgrepl(&["verify", "--probe-database", "nosuchdb"]);
    assert!(
        human.code == 2 && human.stdout.contains("`nosuchdb` does not exist"),
        "{human:?}"
    );

    // 2. Replay paused on pg1: it warns about the paused replay and the probe times out.
    lab.sql(1, "SELECT pg_wal_replay_pause()");
    lab.sql(
        0,
        "CREATE TABLE big AS SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g",
    );
    let (run, doc) = verify_json(&lab, &["--max-lag-bytes", "1024", "--probe-timeout", "2"]);
    eprintln!("replay paused: {run:?}");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(doc["status"], "fail", "{run:?}");
    let (status, detail) =
        check(&doc, "pg1", "replay").unwrap_or_else(|| panic!("no replay check on pg1: {run:?}"));
    assert_eq!(status, "warn", "{run:?}");
    assert!(detail.contains("paused"), "{run:?}");
    assert_eq!(
        check(&doc, "pg1", "probe").map(|c| c.0).as_deref(),
        Some("fail"),
        "{run:?}"
    );
    assert_eq!(probe(&doc, "pg1")["status"], "fail", "{run:?}");
    assert!(probe(&doc, "pg1")["delay_ms"].is_null(), "{run:?}");
    // A real timeout says so, with the time really waited.
    let (_, detail) = check(&doc, "pg1", "probe").unwrap();
    assert!(
        detail.starts_with("probe row not replayed within 2 s (--probe-timeout; waited "),
        "{run:?}"
    );
    assert!(
        probe(&doc, "pg1")["waited_seconds"].as_f64().unwrap() >= 2.0,
        "{run:?}"
    );
    assert_eq!(host(&doc, "pg1")["status"], "fail", "{run:?}");
    assert_eq!(
        probe(&doc, "pg2")["status"],
        "ok",
        "pg2 is not paused: {run:?}"
    );
    lab.sql(1, "SELECT pg_wal_replay_resume()");
    wait_healthy(&lab, "replay resumed");

    // 3. An inactive slot outside the inventory: a warning on the primary.
    lab.sql(
        0,
        "SELECT pg_create_physical_replication_slot('orphan', true)",
    );
    let (run, doc) = verify_json(&lab, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(doc["status"], "warn", "{run:?}");
    let (status, detail) = check(&doc, "pg0", "extra slot")
        .unwrap_or_else(|| panic!("no extra slot check on pg0: {run:?}"));
    assert_eq!(status, "warn", "{run:?}");
    assert!(detail.contains("orphan"), "{run:?}");
    lab.sql(0, "SELECT pg_drop_replication_slot('orphan')");
    let (run, _) = verify_json(&lab, &[]);
    assert_eq!(run.code, 0, "{run:?}");

    // 4. A stopped replica.
    pg_ctl(&lab, 2, "stop");
    let (run, doc) = verify_json(&lab, &[]);
    eprintln!("pg2 stopped: {run:?}");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(host(&doc, "pg2")["status"], "fail", "{run:?}");
    let (status, detail) =
        check(&doc, "pg2", "running").unwrap_or_else(|| panic!("no running check on pg2: {run:?}"));
    assert_eq!(status, "fail", "{run:?}");
    assert!(detail.contains("pg2"), "{run:?}");
    assert_eq!(host(&doc, "pg1")["status"], "ok", "pg1 is fine: {run:?}");
    assert_eq!(probe(&doc, "pg2")["status"], "fail", "{run:?}");
    // Not "not seen within 10s" after a fraction of a second: the replica was down.
    let (_, detail) = check(&doc, "pg2", "probe").unwrap();
    assert!(
        detail.starts_with("no probe: the replica was down") && !detail.contains("within"),
        "{run:?}"
    );
    // With a probe timeout under the primary's fixed 5 s wait for every replica to be ready,
    // the stopped replica must still not fail the healthy one.
    let (run, doc) = verify_json(&lab, &["--probe-timeout", "2"]);
    if probe(&doc, "pg1")["status"] != "ok" {
        bugs.push(format!(
            "with pg2 stopped and --probe-timeout 2, healthy pg1 failed its probe:\n{run:?}"
        ));
    }
    pg_ctl(&lab, 2, "start");
    wait_healthy(&lab, "pg2 restarted");

    // 5. The replica's slot dropped on the primary.
    pg_ctl(&lab, 2, "stop");
    lab.sql(0, "SELECT pg_drop_replication_slot('pg2')");
    pg_ctl(&lab, 2, "start");
    let (run, doc) = verify_json(&lab, &["--probe-timeout", "2"]);
    eprintln!("slot pg2 dropped: {run:?}");
    assert_eq!(run.code, 2, "{run:?}");
    let (status, detail) =
        check(&doc, "pg2", "slot").unwrap_or_else(|| panic!("no slot check on pg2: {run:?}"));
    assert_eq!(status, "fail", "{run:?}");
    assert!(detail.contains("missing"), "{run:?}");
    assert_eq!(
        check(&doc, "pg2", "wal receiver").map(|c| c.0).as_deref(),
        Some("fail"),
        "{run:?}"
    );
    // A bootstrap re-run heals it: it recreates the slot, and pg2, a standby of this
    // primary that does not stream, is reloaded and streams through it again (no copy).
    let heal = lab.pgrepl(&["bootstrap"]);
    assert_eq!(heal.code, 0, "{heal:?}");
    assert!(heal.stderr.contains("created slot(s) pg2"), "{heal:?}");
    assert_eq!(
        lab.sql(
            0,
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'pg2'"
        ),
        "t",
        "{heal:?}"
    );
    let (run, doc) = verify_json(&lab, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        check(&doc, "pg2", "slot").map(|c| c.0).as_deref(),
        Some("ok"),
        "{run:?}"
    );

    // 6. pg2 follows pg1 (cascading) instead of the inventory's primary.
    let pg1 = lab.nodes[1].address.clone();
    // pg2's passfile only names the primary's address: let it log in to pg1 too.
    let pass = lab.exec(
        2,
        &format!("f=~postgres/.pgrepl_pgpass; sed -n 's/^[^:]*:/{pg1}:/p' $f >> $f"),
    );
    assert!(pass.status.success(), "{pass:?}");
    lab.sql(2, &format!("ALTER SYSTEM SET primary_conninfo = 'host={pg1} port=5432 user=replicator passfile=/var/lib/postgresql/.pgrepl_pgpass application_name=pg2'"));
    lab.sql(2, "ALTER SYSTEM SET primary_slot_name = ''");
    pg_ctl(&lab, 2, "restart");
    let cascading = lab.wait_for(Duration::from_secs(20), || {
        lab.try_sql(
            2,
            "SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'",
        )
        .stdout
        .starts_with(pg1.as_bytes())
    });
    let (run, doc) = verify_json(&lab, &["--probe-timeout", "3"]);
    eprintln!("pg2 follows pg1 (cascade connected: {cascading}): {run:?}");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(host(&doc, "pg2")["status"], "fail", "{run:?}");
    let (status, detail) = check(&doc, "pg2", "wal receiver")
        .unwrap_or_else(|| panic!("no wal receiver check on pg2: {run:?}"));
    assert_eq!(status, "fail", "{run:?}");
    if cascading {
        assert!(
            detail.contains(&pg1) && detail.contains(&lab.nodes[0].address),
            "{run:?}"
        );
    }
    eprintln!("total: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(bugs.is_empty(), "pgrepl bugs:\n{}", bugs.join("\n\n"));
}
