//! The step engine on a real cluster: check mode changes nothing, PostgreSQL's own check
//! rolls back a bad setting with the primary still running, and a custom playbook's shell
//! steps run in order.

use crate::support::{Lab, enabled, pgrepl_with};

const WATCHED: &str = "cd /etc/postgresql/15/main && cat postgresql.conf pg_hba.conf conf.d/* 2>/dev/null | md5sum; ls /var/lib/postgresql/15/ | md5sum";

fn snapshot(lab: &Lab) -> Vec<(String, String)> {
    (0..lab.nodes.len())
        .map(|i| {
            (
                String::from_utf8_lossy(&lab.exec(i, WATCHED).stdout).into_owned(),
                lab.sql(i, "SELECT pg_postmaster_start_time()"),
            )
        })
        .collect()
}

#[test]
fn check_mode_rollback_and_custom_playbooks() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("engine", 2, "bookworm", "debian");

    // --check on a fresh cluster reports changes and makes none.
    let before = snapshot(&lab);
    let run = lab.pgrepl(&["bootstrap", "--check", "--diff", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.json()["hosts"][0]["changed"].as_u64().unwrap() > 0,
        "{run:?}"
    );
    assert!(
        run.stderr.contains("+listen_addresses = '*'"),
        "--diff shows the new setting: {run:?}"
    );
    assert_eq!(snapshot(&lab), before, "check mode changed a host");

    // A bad value is rejected by PostgreSQL's own check and rolled back; the primary runs on.
    let inv = std::fs::read_to_string(lab.inventory()).unwrap();
    let bad = lab.dir.join("bad.yaml");
    std::fs::write(
        &bad,
        inv.replace(
            "  password_file: replication-password",
            "  password_file: replication-password\n  settings: { max_wal_senders: lots }",
        ),
    )
    .unwrap();
    let run = pgrepl_with(&bad, &["bootstrap"], &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("max_wal_senders") && run.stdout.contains("previous file is back"),
        "{run:?}"
    );
    assert_eq!(
        snapshot(&lab),
        before,
        "a rejected setting left a change behind"
    );

    // A malformed hba address never gets past validation.
    let bad_hba = lab.dir.join("bad-hba.yaml");
    std::fs::write(&bad_hba, format!("{inv}hba:\n  - {{ type: host, database: all, user: app, address: 10.0.0.300/24, method: scram-sha-256 }}\n")).unwrap();
    let run = pgrepl_with(&bad_hba, &["bootstrap"], &[]);
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.contains("hba[].address") && run.stderr.contains("bad-hba.yaml:"),
        "{run:?}"
    );
    assert_eq!(snapshot(&lab), before);

    // A custom playbook runs its shell steps in order around the built-in ones.
    let dir = lab.dir.join("playbooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("verify.yaml"),
        "steps:\n  - { name: before, hosts: all, action: { shell: { command: 'echo before >> /tmp/order', user: root } } }\n  - { name: sql, hosts: primary, action: { sql: { sql: 'SELECT 1' } } }\n  - { name: after, hosts: primary, action: { shell: { command: 'echo after >> /tmp/order', user: root } } }\n",
    )
    .unwrap();
    let run = lab.pgrepl(&["verify", "--playbooks", dir.to_str().unwrap()]);
    assert!(run.stderr.contains("[pg0] after: changed"), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&lab.exec(0, "cat /tmp/order").stdout),
        "before\nafter\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&lab.exec(1, "cat /tmp/order").stdout),
        "before\n"
    );
}
