//! Cascading replicas (`upstream:`): pg0 -> pg1 -> pg2. pg2 is copied from pg1 and streams
//! through its slot on pg1 (none on the primary); verify and status walk the tree; a
//! switchover to pg1 and back keeps pg2 streaming with no copy and no acknowledged write
//! lost; when pg1 dies, pg2 is named with the cause, and removing pg1 moves pg2 to the
//! primary without a copy; `add-replica pg1 --upstream pg2` brings pg1 back under pg2; a
//! switchover to it is refused; dropping its `upstream:` re-points it with no copy.

use std::time::Duration;

use crate::support::{Lab, Writer, enabled};

fn sender_of(lab: &Lab, node: usize) -> String {
    lab.sql(
        node,
        "SELECT coalesce(sender_host, '') || ' ' || coalesce(slot_name, '') || ' ' || coalesce(status, '') FROM pg_stat_wal_receiver",
    )
}

fn slots_on(lab: &Lab, node: usize) -> String {
    lab.sql(
        node,
        "SELECT coalesce(string_agg(slot_name, ',' ORDER BY slot_name), '') FROM pg_replication_slots",
    )
}

/// Moved-aside data dirs on a node: a copy adds one.
fn asides(lab: &Lab, node: usize) -> String {
    let out = lab.exec(node, "ls /var/lib/postgresql/15 | grep -c pgrepl || true");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `node` streams from `from` through its own slot.
fn streams_from(lab: &Lab, node: usize, from: usize) {
    let want = format!(
        "{} {} streaming",
        lab.nodes[from].address, lab.nodes[node].name
    );
    assert!(
        lab.wait_for(Duration::from_secs(30), || sender_of(lab, node) == want),
        "{} should stream from {}: {}",
        lab.nodes[node].name,
        lab.nodes[from].name,
        sender_of(lab, node)
    );
}

fn verify_json(lab: &Lab) -> serde_json::Value {
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    run.json()
}

fn host<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {json}"))
}

#[test]
fn a_cascaded_replica_keeps_streaming_through_switchover_and_removal_of_its_upstream() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("cascade", 3, "bookworm", "debian");
    let path = lab.inventory();
    let inventory = std::fs::read_to_string(&path).unwrap();
    let subnet = lab.nodes[0].address.rsplit_once('.').unwrap().0.to_string();
    let inventory = inventory.replace("name: pg2, address", "name: pg2, upstream: pg1, address")
        + &format!(
            "hba:\n  - {{ database: postgres, user: writer, address: {subnet}.0/24, method: scram-sha-256 }}\n"
        );
    std::fs::write(&path, inventory).unwrap();

    // Bootstrap: pg2 copied from pg1, its slot there and not on the primary.
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("copied `pg1` (its upstream) through slot pg2"),
        "{run:?}"
    );
    streams_from(&lab, 1, 0);
    streams_from(&lab, 2, 1);
    assert_eq!(slots_on(&lab, 0), "pg1");
    assert_eq!(slots_on(&lab, 1), "pg2");
    // A row written on the primary reaches pg2 through pg1.
    lab.sql(
        0,
        "CREATE TABLE cascade_probe (x int); INSERT INTO cascade_probe VALUES (42)",
    );
    assert!(
        lab.wait_for(Duration::from_secs(15), || {
            String::from_utf8_lossy(&lab.try_sql(2, "SELECT x FROM cascade_probe").stdout).trim()
                == "42"
        }),
        "the row reaches pg2"
    );
    // verify walks the tree: pg2's walsender and slot are on pg1, its lag counted both ways.
    let json = verify_json(&lab);
    let pg2 = host(&json, "pg2");
    assert_eq!(pg2["upstream"], "pg1", "{pg2}");
    assert_eq!(pg2["slot"]["name"], "pg2", "{pg2}");
    assert_eq!(pg2["slot"]["active"], true, "{pg2}");
    assert!(pg2["primary_lag_bytes"].is_u64(), "{pg2}");
    assert!(pg2["lag"]["replay_bytes"].is_u64(), "{pg2}");
    let pg1 = host(&json, "pg1");
    let connected = pg1["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "replicas connected")
        .unwrap_or_else(|| panic!("pg1 reports its cascaded replica: {pg1}"));
    assert_eq!(connected["status"], "ok", "{pg1}");
    // status shows the tree; a re-run changes nothing.
    let status = lab.pgrepl(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let s = status.json();
    assert_eq!(host(&s, "pg2")["upstream"], "pg1", "{s}");
    assert_eq!(host(&s, "pg2")["inventory_upstream"], "pg1", "{s}");
    let again = lab.pgrepl(&["bootstrap", "--format", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    for h in again.json()["hosts"].as_array().unwrap() {
        assert_eq!(h["changed"], 0, "re-run changes nothing: {}", again.stdout);
    }

    // Switchover to pg1 under a writing client: pg2 follows it, no copy, nothing lost.
    let asides_before = asides(&lab, 2);
    let writer = Writer::start(&lab, 0, 0);
    assert!(lab.wait_for(Duration::from_secs(20), || writer.count() > 20));
    let run = lab.pgrepl(&["switchover", "--to", "pg1", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        lab.wait_for(Duration::from_secs(20), || writer.count() > 100),
        "the client writes on the new primary"
    );
    streams_from(&lab, 0, 1);
    streams_from(&lab, 2, 1);
    // And back: pg2 cascades from pg1 again, its slot still there, none for it on pg0.
    let run = lab.pgrepl(&["switchover", "--to", "pg0", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let before = writer.count();
    assert!(
        lab.wait_for(Duration::from_secs(20), || writer.count() > before + 50),
        "the client writes on pg0 again"
    );
    let ids = writer.finish();
    streams_from(&lab, 1, 0);
    streams_from(&lab, 2, 1);
    for node in 0..3 {
        lab.has_all(node, &ids).unwrap();
    }
    assert_eq!(slots_on(&lab, 0), "pg1", "no slot for pg2 on the primary");
    assert_eq!(slots_on(&lab, 1), "pg2");
    assert_eq!(asides(&lab, 2), asides_before, "pg2 was not copied");
    verify_json(&lab);

    // pg1 dies: pg2 is named with the cause, by status and by verify.
    lab.fault("crash-pg", &lab.nodes[1].name);
    let status = lab.pgrepl(&["status"]);
    assert_ne!(status.code, 0, "{status:?}");
    assert!(
        status
            .stdout
            .contains("`pg2` does not stream from `pg1`: `pg1` is down"),
        "{status:?}"
    );
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 2, "{verify:?}");
    assert!(
        verify.stdout.contains("its upstream `pg1` is down"),
        "{verify:?}"
    );

    // Removing pg1 moves pg2 to the primary: its slot made there first, no copy.
    let run = lab.pgrepl(&["remove-replica", "pg1"]);
    assert_eq!(run.code, 0, "{run:?}");
    streams_from(&lab, 2, 0);
    assert_eq!(slots_on(&lab, 0), "pg2");
    assert_eq!(asides(&lab, 2), asides_before, "pg2 was not copied");
    let inventory = std::fs::read_to_string(&path).unwrap();
    assert!(!inventory.contains("upstream"), "{inventory}");
    assert!(!inventory.contains("name: pg1"), "{inventory}");
    for node in [0, 2] {
        lab.has_all(node, &ids).unwrap();
    }
    let json = verify_json(&lab);
    assert_eq!(host(&json, "pg2")["upstream"], "pg0");

    // pg1 comes back as a cascaded replica of pg2: copied from it, its slot there.
    let address = lab.nodes[1].address.clone();
    let run = lab.pgrepl(&[
        "add-replica",
        "pg1",
        "--address",
        &address,
        "--upstream",
        "pg2",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("copied `pg2` (its upstream) through slot pg1"),
        "{run:?}"
    );
    streams_from(&lab, 1, 2);
    assert_eq!(slots_on(&lab, 2), "pg1");
    assert_eq!(slots_on(&lab, 0), "pg2");
    let inventory = std::fs::read_to_string(&path).unwrap();
    assert!(
        inventory.contains(&format!(
            "name: pg1, address: {address}, role: replica, upstream: pg2 }}"
        )),
        "{inventory}"
    );
    lab.has_all(1, &ids).unwrap();
    let json = verify_json(&lab);
    assert_eq!(host(&json, "pg1")["upstream"], "pg2");

    // A switchover to a cascaded replica is refused, naming what works; nothing changes.
    let run = lab.pgrepl(&["switchover", "--to", "pg1"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("it is a cascaded replica")
            && run.stdout.contains("switch over to `pg2`"),
        "{run:?}"
    );
    streams_from(&lab, 1, 2);

    // `upstream:` dropped from the inventory: bootstrap re-points pg1 at the primary with a
    // reload (no copy), makes its slot there and drops the unused one on pg2.
    let asides_pg1 = asides(&lab, 1);
    let inventory = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, inventory.replace(", upstream: pg2", "")).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    streams_from(&lab, 1, 0);
    assert_eq!(slots_on(&lab, 0), "pg1,pg2");
    assert_eq!(slots_on(&lab, 2), "", "no slot left on pg2");
    assert_eq!(asides(&lab, 1), asides_pg1, "pg1 was not copied");
    verify_json(&lab);
}
