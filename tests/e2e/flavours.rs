//! pgrepl on the hosts users run beyond bookworm's PostgreSQL 15 under an entrypoint:
//! PostgreSQL 18 (forky), and systemd as PID 1 running PostgreSQL as its unit.

use std::time::Duration;

use crate::bootstrap::bootstrap_and_prove;
use crate::support::{Lab, Node, enabled};

fn unit_state(lab: &Lab, node: &Node, unit: &str) -> String {
    String::from_utf8_lossy(
        &lab.exec_on(node, &format!("systemctl is-active {unit}"))
            .stdout,
    )
    .trim()
    .to_string()
}

fn streaming(lab: &Lab, replica: &str) -> bool {
    lab.try_sql(
        0,
        &format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = '{replica}' AND state = 'streaming'"
        ),
    )
    .stdout
        == b"1\n"
}

#[test]
fn bootstrap_1_plus_2_on_forky_postgres_18() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("boot18", 3, "forky", "debian");
    bootstrap_and_prove(&lab, "test -f /etc/postgresql/18/main/conf.d/pgrepl.conf");
    for i in 0..3 {
        assert!(
            lab.sql(i, "SHOW server_version_num").starts_with("18"),
            "{}",
            lab.nodes[i].name
        );
    }
}

#[test]
fn bootstrap_1_plus_2_on_bookworm_systemd_keeps_the_units_in_charge() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootsd", 3, "bookworm-systemd", "debian");
    bootstrap_and_prove(&lab, "systemctl is-active --quiet postgresql@15-main");
    for node in &lab.nodes {
        assert_eq!(
            unit_state(&lab, node, "postgresql@15-main"),
            "active",
            "{}",
            node.name
        );
        // The postmaster systemd watches is the one that serves (not one pgrepl started
        // beside the unit).
        let main_pid = lab.exec_on(node, "systemctl show -P MainPID postgresql@15-main");
        let pid_file = lab.exec_on(node, "head -n1 /var/lib/postgresql/15/main/postmaster.pid");
        assert_eq!(
            String::from_utf8_lossy(&main_pid.stdout).trim(),
            String::from_utf8_lossy(&pid_file.stdout).trim(),
            "{}",
            node.name
        );
    }

    // Reboots: a replica comes back streaming, the primary comes back a primary and its
    // replicas reconnect, each through its unit.
    lab.fault("restart", "pg1");
    assert!(
        lab.wait_for(Duration::from_secs(30), || streaming(&lab, "pg1")),
        "pg1 does not stream after a reboot"
    );
    assert_eq!(lab.sql(1, "SELECT pg_is_in_recovery()"), "t");
    lab.fault("restart", "pg0");
    assert_eq!(lab.sql(0, "SELECT pg_is_in_recovery()"), "f");
    for replica in ["pg1", "pg2"] {
        assert!(
            lab.wait_for(Duration::from_secs(30), || streaming(&lab, replica)),
            "{replica} does not stream after the primary's reboot"
        );
    }
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn bootstrap_pgctl_layout_on_systemd_through_its_unit() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("bootsdpgctl", 3, "bookworm-systemd", "pgctl");
    bootstrap_and_prove(&lab, "systemctl is-active --quiet postgresql-15");
    for node in &lab.nodes {
        assert_eq!(
            unit_state(&lab, node, "postgresql-15"),
            "active",
            "{}",
            node.name
        );
    }
}

#[test]
fn add_replica_on_bookworm_systemd_to_a_node_from_lab_add() {
    if !enabled() {
        return;
    }
    let mut lab = Lab::up("addsd", 2, "bookworm-systemd", "debian");
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");

    let pg2 = lab.add();
    assert_eq!(pg2.name, "pg2");
    let add = lab.pgrepl(&[
        "add-replica",
        &pg2.name,
        "--address",
        &pg2.address,
        "--format",
        "json",
    ]);
    assert_eq!(add.code, 0, "{add:?}");
    assert!(
        std::fs::read_to_string(lab.inventory())
            .unwrap()
            .contains(&format!("name: {}", pg2.name)),
        "the inventory did not gain pg2"
    );
    assert_eq!(lab.sql(2, "SELECT pg_is_in_recovery()"), "t");
    // pgrepl returns once PostgreSQL accepts connections; systemd marks the unit active
    // when Debian's wrapper, still running under it, finishes (about 2 s later).
    assert!(
        lab.wait_for(Duration::from_secs(15), || unit_state(
            &lab,
            &pg2,
            "postgresql@15-main"
        ) == "active"),
        "unit: {}",
        unit_state(&lab, &pg2, "postgresql@15-main")
    );
    lab.sql(0, "CREATE TABLE after_add AS SELECT 42 AS v");
    assert!(
        lab.wait_for(Duration::from_secs(10), || {
            lab.try_sql(2, "SELECT v FROM after_add").stdout == b"42\n"
        }),
        "pg2 does not replay the primary's writes"
    );
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}
