//! The lab itself: nodes answer over SSH as the sudo user, run the flavour's PostgreSQL
//! (as systemd units on the -systemd flavours), reach each other's port 5432 once
//! PostgreSQL listens there; `lab add`, the proxy node, the fault verbs and `down` do what
//! they say.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{Lab, Node, enabled, flavour_version};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    stdout(&out)
}

/// The major of the server on `node`, asked over SSH as ubuntu through sudo.
fn major_over_ssh(lab: &Lab, node: &Node) -> u32 {
    let num = ok(lab.ssh(
        node,
        "ubuntu",
        "sudo -n -u postgres psql -Atc 'show server_version_num'",
    ));
    num.parse::<u32>().expect("server_version_num") / 10000
}

/// Whether `from` opens a TCP connection to `to:port` within 3 s.
fn reaches(lab: &Lab, from: &Node, to: &Node, port: u16) -> bool {
    let probe = format!(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/{}/{port}' && echo open",
        to.address
    );
    stdout(&lab.exec_on(from, &probe)) == "open"
}

/// Whether `to`'s sshd greets `from` within 3 s: more than a connect, which the kernel of a
/// paused node still completes.
fn sshd_greets(lab: &Lab, from: &Node, to: &Node) -> bool {
    let probe = format!(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/{}/22 && head -c 4 <&3'",
        to.address
    );
    stdout(&lab.exec_on(from, &probe)) == "SSH-"
}

fn pg_answers(lab: &Lab, node: &Node, version: u32) -> bool {
    lab.exec_on(
        node,
        &format!("/usr/lib/postgresql/{version}/bin/pg_isready -q"),
    )
    .status
    .success()
}

fn docker_state(container: &str, field: &str) -> String {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            &format!("{{{{.State.{field}}}}}"),
            container,
        ])
        .output()
        .expect("docker inspect");
    stdout(&out)
}

fn lab_objects(name: &str) -> String {
    let filter = format!("label=pgrepl-lab={name}");
    let mut all = String::new();
    for what in [
        &["ps", "-aq"][..],
        &["volume", "ls", "-q"][..],
        &["network", "ls", "-q"][..],
    ] {
        let out = Command::new("docker")
            .args(what)
            .args(["--filter", &filter])
            .output()
            .expect("docker");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all.trim().to_string()
}

#[test]
fn lab_nodes_answer_over_ssh_run_postgres_and_reach_each_other() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("lab3", 3, "bookworm", "debian");
    for node in &lab.nodes {
        assert_eq!(major_over_ssh(&lab, node), 15);
    }
    // Before PostgreSQL listens on the network, pg1 cannot connect to pg0:5432.
    assert!(!reaches(&lab, &lab.nodes[1], &lab.nodes[0], 5432));
    lab.sql(0, "ALTER SYSTEM SET listen_addresses = '*'");
    assert!(
        lab.exec(0, "pg_ctlcluster 15 main restart")
            .status
            .success()
    );
    for i in 1..3 {
        assert!(
            reaches(&lab, &lab.nodes[i], &lab.nodes[0], 5432),
            "pg{i} cannot reach pg0:5432"
        );
    }
}

#[test]
fn lab_on_forky_runs_postgres_18_with_data_on_a_real_file_system() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("lab18", 2, "forky", "debian");
    for node in &lab.nodes {
        assert_eq!(major_over_ssh(&lab, node), 18);
        // A volume, so a directory renamed away is gone (not so in a fuse-overlayfs layer).
        ok(lab.exec_on(
            node,
            "mountpoint -q /var/lib/postgresql && mountpoint -q /var/lib/pgsql \
             && mkdir -p /var/lib/postgresql/t/a/b && mv /var/lib/postgresql/t/a /var/lib/postgresql/t/c \
             && test ! -e /var/lib/postgresql/t/a && rm -r /var/lib/postgresql/t",
        ));
    }
    let ids: Vec<String> = (0..2)
        .map(|i| lab.sql(i, "SELECT system_identifier FROM pg_control_system()"))
        .collect();
    assert_ne!(ids[0], ids[1], "both nodes have the same cluster");
}

#[test]
fn systemd_nodes_run_postgres_and_sshd_as_units_and_come_back_after_a_reboot() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("labsd", 2, "bookworm-systemd", "debian");
    let mut machine_ids = Vec::new();
    for node in &lab.nodes {
        assert_eq!(major_over_ssh(&lab, node), 15);
        let state = ok(lab.ssh(
            node,
            "ubuntu",
            "ps -o comm= -p 1; systemctl is-active postgresql@15-main ssh; \
             systemctl is-system-running --wait; \
             test -x /usr/sbin/haproxy && echo haproxy; \
             systemctl is-enabled haproxy; systemctl is-active haproxy || true",
        ));
        assert_eq!(
            state.lines().collect::<Vec<_>>(),
            [
                "systemd", "active", "active", "running", "haproxy", "disabled", "inactive"
            ],
            "{}",
            node.name
        );
        machine_ids.push(ok(lab.exec_on(node, "cat /etc/machine-id")));
    }
    assert_ne!(machine_ids[0], machine_ids[1]);

    // A reboot as tests simulate it: docker restart; systemd brings both services back.
    let pg1 = &lab.nodes[1];
    let started = lab.sql(1, "SELECT pg_postmaster_start_time()");
    let out = Command::new("docker")
        .args(["restart", &pg1.container])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let back = lab.wait_for(Duration::from_secs(60), || {
        stdout(&lab.ssh(pg1, "ubuntu", "systemctl is-active postgresql@15-main ssh"))
            == "active\nactive"
    });
    assert!(
        back,
        "postgresql@15-main or ssh not active after docker restart"
    );
    assert!(lab.wait_for(Duration::from_secs(30), || pg_answers(&lab, pg1, 15)));
    assert_ne!(lab.sql(1, "SELECT pg_postmaster_start_time()"), started);
    assert_eq!(ok(lab.exec_on(pg1, "cat /etc/machine-id")), machine_ids[1]);
}

#[test]
fn lab_add_and_the_proxy_node_then_down_removes_everything() {
    if !enabled() {
        return;
    }
    let mut lab = Lab::up_with("labadd", 1, "bookworm", "debian", &["--proxy"]);
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();

    // proxy0: reachable with the lab key, haproxy installed and idle, no PostgreSQL.
    assert_eq!(lab.proxies.len(), 1);
    let proxy = lab.proxies[0].clone();
    assert_eq!(proxy.name, "proxy0");
    assert!(proxy.address.ends_with(".250"), "{proxy:?}");
    assert_eq!(ok(lab.ssh(&proxy, "ubuntu", "hostname")), "proxy0");
    ok(lab.exec_on(&proxy, "/usr/sbin/haproxy -v"));
    assert!(!lab.exec_on(&proxy, "ps -C haproxy").status.success());
    assert_eq!(ok(lab.exec_on(&proxy, "pg_lsclusters -h | wc -l")), "0");
    assert!(!pg_answers(&lab, &proxy, 15));
    let hosts = &inventory[inventory.find("hosts:").unwrap()..];
    assert!(
        !hosts
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("proxy0")),
        "proxy0 is among the inventory's hosts:\n{inventory}"
    );

    // lab add: the next pgI after pg0 (proxy0 does not count), reachable, not in the inventory.
    let pg1 = lab.add();
    assert_eq!(pg1.name, "pg1");
    let prefix = lab.nodes[0].address.rsplit_once('.').unwrap().0;
    assert_eq!(pg1.address, format!("{prefix}.11"));
    assert_eq!(lab.nodes.len(), 2);
    assert_eq!(major_over_ssh(&lab, &pg1), 15);
    assert_eq!(ok(lab.ssh(&pg1, "root", "id -u")), "0");
    assert_eq!(
        std::fs::read_to_string(lab.inventory()).unwrap(),
        inventory,
        "lab add changed inventory.yaml"
    );
    let known = std::fs::read_to_string(lab.dir.join("known_hosts")).unwrap();
    assert!(
        known
            .lines()
            .any(|l| l.starts_with(&format!("{} ", pg1.address))),
        "{known}"
    );
    assert!(sshd_greets(&lab, &pg1, &lab.nodes[0]));
    let ids: Vec<String> = (0..2)
        .map(|i| lab.sql(i, "SELECT system_identifier FROM pg_control_system()"))
        .collect();
    assert_ne!(ids[0], ids[1]);

    // down: no container, volume or network of the lab is left, nor its state dir.
    let name = lab.name.clone();
    let dir = lab.dir.clone();
    // 3 containers, 2 volumes each, 1 network.
    let before = lab_objects(&name);
    assert_eq!(before.lines().count(), 3 + 3 * 2 + 1, "{before}");
    drop(lab);
    assert_eq!(lab_objects(&name), "", "lab down left these behind");
    assert!(!dir.exists());
}

/// Each fault verb does what it says, and its undo brings the node back.
fn fault_verbs(flavour: &str) {
    let version = flavour_version(flavour);
    let systemd = flavour.ends_with("-systemd");
    let test = if systemd { "labfaultsd" } else { "labfault" };
    let lab = Lab::up(test, 2, flavour, "debian");
    let (pg0, pg1) = (&lab.nodes[0], &lab.nodes[1]);
    let up = |what: &str| {
        assert!(sshd_greets(&lab, pg0, pg1), "pg1 unreachable after {what}");
        assert!(
            lab.wait_for(Duration::from_secs(30), || pg_answers(&lab, pg1, version)),
            "pg1's PostgreSQL does not answer after {what}"
        );
        assert_eq!(ok(lab.ssh(pg1, "ubuntu", "hostname")), "pg1");
    };
    up("lab up");

    lab.fault("kill", "pg1");
    assert_eq!(docker_state(&pg1.container, "Running"), "false");
    assert_eq!(docker_state(&pg1.container, "ExitCode"), "137");
    assert!(!sshd_greets(&lab, pg0, pg1));
    lab.fault("start", "pg1");
    up("kill + start");

    lab.fault("stop", "pg1");
    assert_eq!(docker_state(&pg1.container, "Running"), "false");
    lab.fault("start", "pg1");
    up("stop + start");

    let started = lab.sql(1, "SELECT pg_postmaster_start_time()");
    lab.fault("restart", "pg1");
    up("restart");
    assert_ne!(lab.sql(1, "SELECT pg_postmaster_start_time()"), started);

    lab.fault("pause", "pg1");
    assert_eq!(docker_state(&pg1.container, "Paused"), "true");
    assert!(!sshd_greets(&lab, pg0, pg1), "a paused node answered");
    lab.fault("unpause", "pg1");
    up("unpause");

    lab.fault("partition", "pg1");
    assert!(
        !sshd_greets(&lab, pg0, pg1),
        "pg0 reached pg1 across the cut"
    );
    assert!(
        !sshd_greets(&lab, pg1, pg0),
        "pg1 reached pg0 across the cut"
    );
    assert!(
        !lab.ssh(pg1, "ubuntu", "true").status.success(),
        "this host reached pg1 across the cut"
    );
    assert!(pg_answers(&lab, pg1, version), "the host itself stays up");
    lab.fault("heal", "pg1");
    assert!(sshd_greets(&lab, pg1, pg0));
    up("heal");

    lab.fault("crash-pg", "pg1");
    assert_eq!(docker_state(&pg1.container, "Running"), "true");
    assert!(!pg_answers(&lab, pg1, version));
    assert_eq!(ok(lab.ssh(pg1, "ubuntu", "hostname")), "pg1");
    let restart = if systemd {
        assert_eq!(
            stdout(&lab.exec_on(
                pg1,
                &format!("systemctl is-active postgresql@{version}-main")
            )),
            "failed"
        );
        format!("sudo systemctl start postgresql@{version}-main")
    } else {
        format!("sudo pg_ctlcluster {version} main start")
    };
    ok(lab.ssh(pg1, "ubuntu", &restart));
    up("crash-pg + start");
}

#[test]
fn fault_verbs_do_what_they_say_and_undo_on_bookworm() {
    if !enabled() {
        return;
    }
    fault_verbs("bookworm");
}

#[test]
fn fault_verbs_do_what_they_say_and_undo_on_bookworm_systemd() {
    if !enabled() {
        return;
    }
    fault_verbs("bookworm-systemd");
}
