//! `pgrepl switchover`: the primary changes under a writing client and no acknowledged
//! write is lost; the old primary follows the new one without a copy; refusals change
//! nothing.

use std::time::Duration;

use crate::support::{Lab, Writer, enabled};

fn in_recovery(lab: &Lab, node: usize) -> String {
    lab.sql(node, "SELECT pg_is_in_recovery()")
}

fn sender_of(lab: &Lab, node: usize) -> String {
    lab.sql(
        node,
        "SELECT coalesce(sender_host, '') || ' ' || coalesce(status, '') FROM pg_stat_wal_receiver",
    )
}

/// Switches to `to` under load and checks everything the issue promises.
fn switch_under_load(lab: &Lab, from: usize, to: usize, writer: &Writer, timeline: u32) {
    let before = writer.count();
    let asides = |node: usize| {
        let out = lab.exec(node, "ls /var/lib/postgresql/* | grep -c pgrepl || true");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let asides_before = asides(from);
    let run = lab.pgrepl(&[
        "switchover",
        "--to",
        &lab.nodes[to].name,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["old_primary"], lab.nodes[from].name.as_str());
    assert_eq!(json["new_primary"], lab.nodes[to].name.as_str());
    assert_eq!(json["timeline"], timeline, "{}", run.stdout);
    let unavailable = json["write_unavailable_ms"]
        .as_u64()
        .expect("write_unavailable_ms");
    eprintln!("switchover {from}->{to}: writes unavailable for {unavailable} ms");
    for (i, node) in lab.nodes.iter().enumerate() {
        if i != to {
            assert_eq!(
                json["rewind"][&node.name], "none",
                "no copy: {}",
                run.stdout
            );
        }
    }
    assert_eq!(in_recovery(lab, to), "f");
    for i in (0..3).filter(|&i| i != to) {
        assert_eq!(
            in_recovery(lab, i),
            "t",
            "{} is a standby",
            lab.nodes[i].name
        );
        assert_eq!(
            sender_of(lab, i),
            format!("{} streaming", lab.nodes[to].address)
        );
    }
    // A systemd host keeps every cluster under its unit (active once Debian's wrapper,
    // which pgrepl does not wait for, finishes).
    for i in 0..3 {
        let state = || {
            let unit = lab.exec(
                i,
                "if [ -d /run/systemd/system ]; then systemctl is-active postgresql@$(ls /etc/postgresql)-main; else echo active; fi",
            );
            String::from_utf8_lossy(&unit.stdout).trim().to_string()
        };
        assert!(
            lab.wait_for(Duration::from_secs(15), || state() == "active"),
            "{}: {}",
            lab.nodes[i].name,
            state()
        );
    }
    // The old primary was not copied: no new moved-aside data dir beside its own.
    assert_eq!(asides(from), asides_before);
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let to_line = inventory
        .lines()
        .find(|l| l.contains(&format!("name: {},", lab.nodes[to].name)))
        .unwrap();
    assert!(to_line.contains("role: primary"), "{inventory}");
    // The client goes on writing on the new primary.
    assert!(
        lab.wait_for(Duration::from_secs(20), || writer.count() > before + 20),
        "the client resumed writing on the new primary"
    );
}

#[test]
fn switchover_under_load_loses_nothing_and_switches_back() {
    if !enabled() {
        return;
    }
    let lab = Lab::bootstrapped_for_writes("switchover", "bookworm", None);
    let writer = Writer::start(&lab, 0, 2);
    assert!(lab.wait_for(Duration::from_secs(20), || writer.count() > 50));

    switch_under_load(&lab, 0, 1, &writer, 2);
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");

    // Again with pg1 already primary: nothing changes.
    let again = lab.pgrepl(&["switchover", "--to", "pg1", "--format", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    let changed: u64 = again.json()["rewire"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["changed"].as_u64().unwrap())
        .sum();
    assert_eq!(changed, 0, "{}", again.stdout);

    // And back to the original primary.
    switch_under_load(&lab, 1, 0, &writer, 3);
    let acked = writer.finish();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    for node in 0..3 {
        lab.has_all(node, &acked).unwrap();
    }
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

/// A switchover there and back under load, on another flavour.
fn there_and_back(name: &str, flavour: &str) {
    let lab = Lab::bootstrapped_for_writes(name, flavour, None);
    let writer = Writer::start(&lab, 0, 2);
    assert!(lab.wait_for(Duration::from_secs(20), || writer.count() > 50));
    switch_under_load(&lab, 0, 1, &writer, 2);
    switch_under_load(&lab, 1, 0, &writer, 3);
    let acked = writer.finish();
    for node in 0..3 {
        lab.has_all(node, &acked).unwrap();
    }
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn switchover_on_trixie_postgres_17() {
    if !enabled() {
        return;
    }
    there_and_back("switch17", "trixie");
}

#[test]
fn switchover_on_systemd_hosts_keeps_units_in_charge() {
    if !enabled() {
        return;
    }
    there_and_back("switchsd", "bookworm-systemd");
}

#[test]
fn switchover_refusals_change_nothing() {
    if !enabled() {
        return;
    }
    let lab = Lab::bootstrapped_for_writes("switchrefuse", "bookworm", None);
    let start = lab.sql(0, "SELECT pg_postmaster_start_time()");
    // A stopped candidate.
    lab.exec(2, "pg_ctlcluster 15 main stop");
    let run = lab.pgrepl(&["switchover", "--to", "pg2"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not running on `pg2`"), "{run:?}");
    assert!(
        run.stdout.contains("nothing was changed") || run.stderr.contains("nothing was changed"),
        "{run:?}"
    );
    lab.exec(2, "pg_ctlcluster 15 main start");
    // A lagging candidate: replay paused while writes go on.
    lab.sql(1, "SELECT pg_wal_replay_pause()");
    lab.sql(0, "CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 100000) g");
    let run = lab.pgrepl(&["switchover", "--to", "pg1", "--max-lag-bytes", "1000000"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("replay is paused"), "{run:?}");
    lab.sql(1, "SELECT pg_wal_replay_resume()");
    // Nothing changed: the same primary, never restarted, inventory as it was.
    assert_eq!(in_recovery(&lab, 0), "f");
    assert_eq!(lab.sql(0, "SELECT pg_postmaster_start_time()"), start);
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    assert!(inventory.contains("name: pg0, address"), "{inventory}");
    assert!(
        inventory
            .lines()
            .any(|l| l.contains("name: pg0,") && l.contains("role: primary")),
        "{inventory}"
    );
    let slots = lab.sql(1, "SELECT count(*) FROM pg_replication_slots");
    assert_eq!(slots, "0", "no slot left on the candidate");
}

#[test]
fn a_candidate_frozen_while_catching_up_rolls_back_to_the_old_primary() {
    if !enabled() {
        return;
    }
    // The old primary's walsender gives up on the frozen candidate after 3 s.
    let lab =
        Lab::bootstrapped_for_writes("switchfrozen", "bookworm", Some("wal_sender_timeout: 3s"));
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    let start = lab.sql(0, "SELECT pg_postmaster_start_time()");
    // Freeze the candidate's WAL receiver: it still looks like it streams, but receives
    // nothing more, so it never gets the old primary's shutdown checkpoint.
    let pid = lab.sql(1, "SELECT pid FROM pg_stat_wal_receiver");
    assert!(lab.exec(1, &format!("kill -STOP {pid}")).status.success());
    let run = lab.pgrepl(&["switchover", "--to", "pg1", "--catch-up-timeout", "5"]);
    assert!(lab.exec(1, &format!("kill -CONT {pid}")).status.success());
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("rolling back"), "{run:?}");
    assert!(
        run.stderr.contains("nothing was promoted and nothing lost"),
        "{run:?}"
    );
    assert!(run.stdout.contains("rolled back"), "{run:?}");
    // The old primary serves again (restarted), the candidate is still a standby.
    assert_eq!(in_recovery(&lab, 0), "f");
    assert_ne!(lab.sql(0, "SELECT pg_postmaster_start_time()"), start);
    assert_eq!(in_recovery(&lab, 1), "t");
    assert_eq!(std::fs::read_to_string(lab.inventory()).unwrap(), inventory);
    assert_eq!(lab.sql(1, "SELECT count(*) FROM pg_replication_slots"), "0");
    lab.sql(0, "CREATE TABLE after_rollback AS SELECT 1 AS x");
    assert!(
        lab.wait_for(Duration::from_secs(60), || lab.pgrepl(&["verify"]).code
            == 0),
        "verify 0 once the candidate runs again: {:?}",
        lab.pgrepl(&["verify"])
    );
}
