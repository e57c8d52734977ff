//! `pgrepl remove-replica`: a replica leaves the cluster and nothing of it stays behind: no
//! slot anywhere, no pg_hba rule, no standby that comes back after a reboot; the primary
//! is never restarted; a re-run changes nothing; `--check` changes nothing; the host can
//! join again and then starts at boot; `--wipe` moves the data aside; an unreachable host
//! is refused, then taken out with `--force`.

use std::process::Command;
use std::time::Duration;

use crate::support::{Lab, Writer, enabled};

const DATA: &str = "/var/lib/postgresql/15/main";
const PG_CTL: &str = "/usr/lib/postgresql/15/bin/pg_ctl";

fn inventory(lab: &Lab) -> String {
    std::fs::read_to_string(lab.inventory()).unwrap()
}

fn hba(lab: &Lab, node: usize) -> String {
    let out = lab.exec(node, "cat /etc/postgresql/15/main/pg_hba.conf");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn slots_named(lab: &Lab, node: usize, slot: &str) -> String {
    lab.sql(
        node,
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )
}

fn walsenders_for(lab: &Lab, name: &str) -> String {
    lab.sql(
        0,
        &format!("SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}'"),
    )
}

/// `pg_ctl status`: 0 running, 3 stopped.
fn pg_status(lab: &Lab, node: usize) -> i32 {
    lab.exec(
        node,
        &format!("runuser -u postgres -- {PG_CTL} status -D {DATA} >/dev/null"),
    )
    .status
    .code()
    .unwrap_or(-1)
}

fn start_conf_mode(lab: &Lab, node: usize) -> String {
    let out = lab.exec(
        node,
        "sed -e 's/#.*//' /etc/postgresql/15/main/start.conf | tr -d ' \\t' | grep -v '^$' | head -n1",
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Reboots `node` (`lab restart`). The lab's boot starts the cluster with
/// `pg_ctlcluster`, as Debian's units do; a node whose cluster does not start stays up.
fn reboot(lab: &Lab, node: usize) {
    lab.fault("restart", &lab.nodes[node].name);
}

#[test]
fn remove_replica_leaves_nothing_behind() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("removerep", 4, "bookworm", "debian");
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    let primary_start = lab.sql(0, "SELECT pg_postmaster_start_time()");

    // The primary cannot be removed: invalid input, naming it.
    let refused = lab.pgrepl(&["remove-replica", "pg0"]);
    assert_eq!(refused.code, 64, "{refused:?}");
    assert!(
        refused.stderr.contains("`pg0` is the primary"),
        "{refused:?}"
    );

    // --check shows all of it and changes nothing, the file included.
    let before = inventory(&lab);
    let hba_before = hba(&lab, 0);
    let check = lab.pgrepl(&["remove-replica", "pg1", "--check", "--diff"]);
    assert_eq!(check.code, 0, "{check:?}");
    let shown = format!("{}{}", check.stdout, check.stderr);
    for needle in [
        "would stop PostgreSQL",
        "would remove",
        "would set /etc/postgresql/15/main/start.conf to disabled",
        "would update /etc/postgresql/15/main/pg_hba.conf",
        "would drop slot pg1",
        "would no longer list `pg1`",
        "-host    replication    replicator    ",
    ] {
        assert!(
            shown.contains(needle),
            "--check does not show `{needle}`:\n{check:?}"
        );
    }
    assert_eq!(inventory(&lab), before, "--check changed the inventory");
    assert_eq!(hba(&lab, 0), hba_before, "--check changed pg_hba.conf");
    assert_eq!(slots_named(&lab, 0, "pg1"), "1");
    assert_eq!(start_conf_mode(&lab, 1), "auto");
    assert_eq!(pg_status(&lab, 1), 0, "--check stopped pg1");

    // Remove pg2.
    let run = lab.pgrepl(&["remove-replica", "pg2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("`pg2` is out of the cluster") && run.stdout.contains(DATA),
        "{run:?}"
    );
    let pg2_line = before
        .lines()
        .find(|l| l.contains("name: pg2,"))
        .unwrap()
        .to_string();
    assert_eq!(
        inventory(&lab),
        before.replace(&format!("{pg2_line}\n"), ""),
        "only pg2's line left the inventory"
    );
    // No slot for it anywhere, no walsender.
    for node in [0, 1, 3] {
        assert_eq!(
            slots_named(&lab, node, "pg2"),
            "0",
            "{}",
            lab.nodes[node].name
        );
    }
    assert_eq!(walsenders_for(&lab, "pg2"), "0");
    // Stopped, without its standby configuration or the replication password, autostart off.
    assert_eq!(pg_status(&lab, 2), 3, "pg2 is stopped");
    let leftovers = lab.exec(
        2,
        &format!(
            "ls {DATA}/standby.signal /var/lib/postgresql/.pgrepl_pgpass 2>/dev/null; grep -E 'primary_(conninfo|slot_name)' {DATA}/postgresql.auto.conf; test -f {DATA}/PG_VERSION && echo data-kept"
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&leftovers.stdout).trim(),
        "data-kept",
        "pg2 keeps its data and nothing of its standby setup"
    );
    assert_eq!(start_conf_mode(&lab, 2), "disabled");
    // Its replication login is refused by the primary's pg_hba.conf.
    let password = std::fs::read_to_string(lab.dir.join("replication-password")).unwrap();
    let login = Command::new("docker")
        .args(["exec", "-e", &format!("PGPASSWORD={}", password.trim())])
        .arg(&lab.nodes[2].container)
        .args([
            "psql",
            &format!(
                "host={} user=replicator replication=true dbname=postgres connect_timeout=5",
                lab.nodes[0].address
            ),
            "-c",
            "IDENTIFY_SYSTEM",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&login.stderr);
    assert!(
        !login.status.success() && err.contains("no pg_hba.conf entry"),
        "pg2's replication login: {err}"
    );
    // Writes on the primary: no slot holds their WAL back.
    let lsn = "SELECT pg_current_wal_lsn()";
    let start_lsn = lab.sql(0, lsn);
    lab.sql(
        0,
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 200000) g",
    );
    let written: i64 = lab
        .sql(
            0,
            &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')::bigint"),
        )
        .parse()
        .unwrap();
    assert!(written > 32 << 20, "only {written} bytes of WAL written");
    assert!(
        lab.wait_for(Duration::from_secs(30), || lab.sql(
            0,
            "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn = pg_current_wal_lsn()"
        ) == "2"),
        "pg1 and pg3 caught up"
    );
    lab.sql(0, "CHECKPOINT");
    let held: i64 = lab
        .sql(
            0,
            "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)), 0)::bigint FROM pg_replication_slots",
        )
        .parse()
        .unwrap();
    assert!(
        held < 16 << 20,
        "a slot holds back {held} bytes of WAL after {written} written"
    );
    // A reboot does not bring it back as a standby, nor start it at all.
    reboot(&lab, 2);
    assert_eq!(
        pg_status(&lab, 2),
        3,
        "pg2 came back running after a reboot"
    );
    let start = lab.exec(2, "pg_ctlcluster 15 main start");
    assert!(
        !start.status.success() && String::from_utf8_lossy(&start.stderr).contains("disabled"),
        "pg_ctlcluster starts pg2: {}",
        String::from_utf8_lossy(&start.stderr)
    );
    assert_eq!(walsenders_for(&lab, "pg2"), "0");
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");

    // Again: pg2 is gone from the inventory, so nothing to remove and nothing changes.
    let now = inventory(&lab);
    let hba_now = hba(&lab, 0);
    let again = lab.pgrepl(&["remove-replica", "pg2", "--format", "json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again
            .stderr
            .contains("`pg2` is not in the inventory: nothing to remove"),
        "{again:?}"
    );
    let json = again.json();
    assert_eq!(json["result"], "not in the inventory", "{}", again.stdout);
    let changed: u64 = json["recap"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["changed"].as_u64().unwrap())
        .sum();
    assert_eq!(changed, 0, "{}", again.stdout);
    assert_eq!(inventory(&lab), now);
    assert_eq!(hba(&lab, 0), hba_now);

    // It can join again: add-replica turns its autostart back on, so it survives a reboot.
    let back = lab.pgrepl(&["add-replica", "pg2", "--address", &lab.nodes[2].address]);
    assert_eq!(back.code, 0, "{back:?}");
    assert!(
        back.stderr.contains("start.conf says auto again"),
        "{back:?}"
    );
    assert_eq!(start_conf_mode(&lab, 2), "auto");
    reboot(&lab, 2);
    assert!(
        lab.wait_for(Duration::from_secs(30), || lab.sql(
            0,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg2' AND state = 'streaming'"
        ) == "1"),
        "pg2 does not stream after a reboot once added again"
    );

    // --wipe: the data dir is moved aside (never deleted), and the output says where.
    let wipe = lab.pgrepl(&["remove-replica", "pg3", "--wipe", "--format", "json"]);
    assert_eq!(wipe.code, 0, "{wipe:?}");
    let json = wipe.json();
    assert_eq!(json["result"], "removed");
    assert_eq!(json["data_moved"], true, "{}", wipe.stdout);
    let aside = json["data_dir"].as_str().unwrap_or_default();
    assert!(
        aside.starts_with(&format!("{DATA}.pgrepl-removed-")),
        "{}",
        wipe.stdout
    );
    let moved = lab.exec(
        3,
        &format!("test -f {aside}/PG_VERSION && test ! -e {DATA} && echo moved"),
    );
    assert_eq!(String::from_utf8_lossy(&moved.stdout).trim(), "moved");
    assert_eq!(slots_named(&lab, 0, "pg3"), "0");

    // An unreachable replica is refused, changing nothing; --force takes it out anyway.
    // SSH to pg1 is refused; its PostgreSQL still runs and streams.
    let cut = lab.exec(
        1,
        "iptables -I INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset",
    );
    assert!(cut.status.success(), "{cut:?}");
    let before = inventory(&lab);
    let unreachable = lab.pgrepl(&["remove-replica", "pg1", "--connect-timeout", "3"]);
    assert_eq!(unreachable.code, 2, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("cannot be reached") && unreachable.stderr.contains("--force"),
        "{unreachable:?}"
    );
    assert_eq!(inventory(&lab), before);
    assert_eq!(slots_named(&lab, 0, "pg1"), "1");
    let forced = lab.pgrepl(&["remove-replica", "pg1", "--force", "--connect-timeout", "3"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(forced.stdout.contains("not reached"), "{forced:?}");
    // pg1 still runs and keeps trying to stream: the primary keeps refusing it.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(slots_named(&lab, 0, "pg1"), "0");
    assert_eq!(walsenders_for(&lab, "pg1"), "0");
    let hosts: Vec<String> = inventory(&lab)
        .lines()
        .filter(|l| l.contains("name: pg"))
        .map(str::to_string)
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert!(
        hosts[0].contains("name: pg0,") && hosts[1].contains("name: pg2,"),
        "{hosts:?}"
    );
    let verify = lab.pgrepl(&["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert_eq!(
        lab.sql(0, "SELECT pg_postmaster_start_time()"),
        primary_start,
        "the primary was restarted"
    );
}

/// Synchronous replication (`FIRST 1`, every replica named): removing the standby commits
/// wait for takes it out of `synchronous_standby_names` on every member before it stops,
/// and a client writing all along never stalls.
#[test]
fn removing_the_synchronous_standby_keeps_commits_flowing() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("removesync", 3, "bookworm", "debian");
    let subnet = lab.nodes[0].address.rsplit_once('.').unwrap().0.to_string();
    let text = inventory(&lab).replacen(
        "\nreplication:\n",
        "\nreplication:\n  synchronous: { mode: first, count: 1 }\n",
        1,
    ) + &format!(
        "hba:\n  - {{ database: postgres, user: writer, address: {subnet}.0/24, method: scram-sha-256 }}\n"
    );
    std::fs::write(lab.inventory(), text).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    let names = "SHOW synchronous_standby_names";
    assert_eq!(lab.sql(0, names), r#"FIRST 1 ("pg1", "pg2")"#);
    let sync_state = |name: &str| {
        lab.sql(
            0,
            &format!(
                "SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'), 'none')"
            ),
        )
    };
    assert_eq!(sync_state("pg1"), "sync");

    let writer = Writer::start(&lab, 0, 2);
    assert!(lab.wait_for(Duration::from_secs(20), || writer.count() > 50));
    let run = lab.pgrepl(&["remove-replica", "pg1"]);
    assert_eq!(run.code, 0, "{run:?}");
    for node in [0, 2] {
        assert_eq!(
            lab.sql(node, names),
            r#"FIRST 1 ("pg2")"#,
            "{}",
            lab.nodes[node].name
        );
    }
    assert_eq!(sync_state("pg2"), "sync");
    let after = writer.count();
    assert!(
        lab.wait_for(Duration::from_secs(10), || writer.count() > after + 50),
        "commits stalled after the removal"
    );
    let acked = writer.finish();
    assert_eq!(
        lab.sql(
            0,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        ),
        "0",
        "a commit still waits"
    );
    lab.has_all(2, &acked).unwrap();
    // pg2 is now the only standby commits can wait for: the inventory says so, and
    // removing it is refused until replication.synchronous lets it go.
    let before = inventory(&lab);
    let refused = lab.pgrepl(&["remove-replica", "pg2"]);
    assert_eq!(refused.code, 64, "{refused:?}");
    assert!(refused.stderr.contains("without `pg2`"), "{refused:?}");
    assert_eq!(inventory(&lab), before);
    assert_eq!(sync_state("pg2"), "sync");
}
