//! The lab itself: nodes answer over SSH as the sudo user, run the flavour's PostgreSQL,
//! and reach each other's port 5432 once PostgreSQL listens there.

use std::process::Command;

use crate::support::{Lab, enabled};

fn ssh(lab: &Lab, node: usize, user: &str, cmd: &str) -> std::process::Output {
    let dir = &lab.dir;
    Command::new("ssh")
        .args([
            "-i",
            &dir.join("id_ed25519").to_string_lossy(),
            "-o",
            &format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg(format!("{user}@{}", lab.nodes[node].address))
        .arg(cmd)
        .output()
        .expect("ssh")
}

#[test]
fn lab_nodes_answer_over_ssh_run_postgres_and_reach_each_other() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("lab3", 3, "bookworm", "debian");
    for i in 0..3 {
        let out = ssh(
            &lab,
            i,
            "ubuntu",
            "sudo -n -u postgres psql -Atc 'show server_version_num'",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .starts_with("15"),
            "{:?}",
            out
        );
    }
    // Before PostgreSQL listens on the network, pg1 cannot connect to pg0:5432.
    let probe = format!(
        "timeout 5 bash -c 'exec 3<>/dev/tcp/{}/5432' && echo open",
        lab.nodes[0].address
    );
    let before = lab.exec(1, &probe);
    assert!(!String::from_utf8_lossy(&before.stdout).contains("open"));
    lab.sql(0, "ALTER SYSTEM SET listen_addresses = '*'");
    assert!(
        lab.exec(0, "pg_ctlcluster 15 main restart")
            .status
            .success()
    );
    for i in 1..3 {
        let out = lab.exec(i, &probe);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("open"),
            "pg{i} cannot reach pg0:5432: {out:?}"
        );
    }
}
