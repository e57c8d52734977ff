//! Synchronous replication (`replication.synchronous`): commits wait for the named standbys
//! and nothing else ends that wait but the standbys, a cancel (committed locally, with
//! PostgreSQL's warning) or `pgrepl sync off`; verify names what commits wait for; `sync on`
//! restores the inventory's value and refuses while it would hang commits; a later bootstrap
//! keeps it off; after a switchover the new primary's setting still holds.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Lab, enabled, pgrepl_with};

/// A 1+2 lab whose inventory asks for `synchronous`, bootstrapped.
fn bootstrapped(name: &str, synchronous: &str) -> Lab {
    let lab = Lab::up(name, 3, "bookworm", "debian");
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap();
    assert!(inventory.contains("\nreplication:\n"), "{inventory}");
    let inventory = inventory.replacen(
        "\nreplication:\n",
        &format!("\nreplication:\n  synchronous: {synchronous}\n"),
        1,
    );
    std::fs::write(lab.inventory(), inventory).unwrap();
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    lab
}

fn pg_ctl(lab: &Lab, node: usize, verb: &str) {
    let out = lab.exec(node, &format!("pg_ctlcluster 15 main {verb}"));
    assert!(
        out.status.success(),
        "{verb} pg{node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A psql on `node` that runs `sql` in the background (statement_timeout 2 s).
fn commit_in_background(lab: &Lab, node: usize, sql: &str) -> Child {
    Command::new("docker")
        .args(["exec", "-u", "postgres", &lab.nodes[node].container])
        .args(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", "postgres"])
        .args(["-c", "SET statement_timeout = '2s'", "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker exec psql")
}

/// Waits for a background psql to end (up to `limit`): its exit code and stderr.
fn ended(child: &mut Child, limit: Duration) -> Option<(i32, String)> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            return Some((status.code().unwrap_or(-1), err));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn waiting(lab: &Lab) -> String {
    lab.sql(
        0,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
    )
}

/// verify's `synchronous` check on the primary, as (status, detail).
fn sync_check(run: &crate::support::Run) -> (String, String) {
    let json = run.json();
    let check = json["hosts"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "synchronous")
        .unwrap_or_else(|| panic!("no synchronous check: {}", run.stdout))
        .clone();
    (
        check["status"].as_str().unwrap().to_string(),
        check["detail"].as_str().unwrap().to_string(),
    )
}

fn standby_names(lab: &Lab, node: usize) -> String {
    lab.sql(node, "SHOW synchronous_standby_names")
}

#[test]
fn sync_any_1_waits_for_a_standby_and_sync_off_releases_commits() {
    if !enabled() {
        return;
    }
    let lab = bootstrapped("sync-any", "{ mode: any, count: 1, standbys: [pg1, pg2] }");
    let want = r#"ANY 1 ("pg1", "pg2")"#;
    for node in 0..3 {
        assert_eq!(
            standby_names(&lab, node),
            want,
            "the same value on every member"
        );
    }
    assert_eq!(lab.sql(0, "SHOW synchronous_commit"), "on");
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sync_check(&run).0, "ok", "{}", run.stdout);
    lab.sql(0, "CREATE TABLE t (id int)");

    // One named standby down: ANY 1 is still met, with no margin.
    pg_ctl(&lab, 1, "stop");
    let mut one = commit_in_background(&lab, 0, "INSERT INTO t VALUES (1)");
    let (code, err) = ended(&mut one, Duration::from_secs(10)).expect("commits go on");
    assert_eq!(code, 0, "{err}");
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    // The stopped replica's own checks fail (exit 2, as for any replica down); the
    // synchronous check itself only warns.
    assert_eq!(run.code, 2, "{run:?}");
    let (status, detail) = sync_check(&run);
    assert_eq!(status, "warn", "{detail}");
    assert!(
        detail.contains("exactly 1 named standby(s) stream (pg2 quorum), no margin"),
        "{detail}"
    );
    assert!(detail.ends_with("not streaming: pg1"), "{detail}");

    // Both down: a commit waits, and statement_timeout does not end that wait.
    pg_ctl(&lab, 2, "stop");
    let mut stuck = commit_in_background(&lab, 0, "INSERT INTO t VALUES (2)");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        stuck.try_wait().unwrap().is_none(),
        "the commit still waits after its 2 s statement_timeout"
    );
    assert_eq!(waiting(&lab), "1");
    let status = lab.pgrepl(&["status"]);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(
        status
            .stdout
            .contains("1 commit(s) on `pg0` wait for synchronous standbys"),
        "{status:?}"
    );
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let (status, detail) = sync_check(&run);
    assert_eq!(status, "fail", "{detail}");
    assert!(
        detail.starts_with(&format!(
            "commits wait: {want} needs 1 named standby(s) streaming, 0 do; not streaming: pg1, pg2; 1 commit(s) waiting now"
        )),
        "{detail}"
    );
    // Cancelling the wait: committed locally, not replicated, and PostgreSQL says so.
    lab.sql(
        0,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
    );
    let (code, err) = ended(&mut stuck, Duration::from_secs(10)).expect("the cancel ends the wait");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("canceling wait for synchronous replication due to user request"),
        "{err}"
    );
    assert!(
        err.contains(
            "The transaction has already committed locally, but might not have been replicated to the standby."
        ),
        "{err}"
    );
    assert_eq!(lab.sql(0, "SELECT count(*) FROM t WHERE id = 2"), "1");

    // `pgrepl sync off` releases a commit that waits.
    let mut released = commit_in_background(&lab, 0, "INSERT INTO t VALUES (3)");
    assert!(lab.wait_for(Duration::from_secs(10), || waiting(&lab) == "1"));
    let off = lab.pgrepl(&["sync", "off"]);
    assert_eq!(off.code, 0, "{off:?}");
    let (code, err) =
        ended(&mut released, Duration::from_secs(10)).expect("sync off released the commit");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("WARNING"), "{err}");
    assert_eq!(lab.sql(0, "SELECT count(*) FROM t WHERE id = 3"), "1");
    assert_eq!(standby_names(&lab, 0), "");
    assert!(
        off.stdout
            .contains("pg0: left as: synchronous replication OFF"),
        "recorded in the recap: {off:?}"
    );
    assert!(
        off.stderr.contains("1 waiting commit(s) released"),
        "{off:?}"
    );
    // Again: nothing to do.
    let again = lab.pgrepl(&["sync", "off"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already off"), "{again:?}");

    // `sync on` refuses while it would hang commits again, changing nothing.
    let on = lab.pgrepl(&["sync", "on"]);
    assert_eq!(on.code, 2, "{on:?}");
    assert!(
        on.stdout
            .contains("would make every commit wait; nothing was changed"),
        "{on:?}"
    );
    assert_eq!(standby_names(&lab, 0), "");

    // The standbys back, a bootstrap keeps synchronous replication off, and says so.
    pg_ctl(&lab, 1, "start");
    pg_ctl(&lab, 2, "start");
    assert!(lab.wait_for(Duration::from_secs(30), || {
        lab.sql(
            0,
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ) == "2"
    }));
    let boot = lab.pgrepl(&["bootstrap"]);
    assert_eq!(boot.code, 0, "{boot:?}");
    assert!(
        boot.stdout
            .contains("synchronous replication is OFF on pg0"),
        "{boot:?}"
    );
    assert_eq!(standby_names(&lab, 0), "");

    // `sync on`: exactly the inventory's value again, by reload.
    let start = lab.sql(0, "SELECT pg_postmaster_start_time()");
    let on = lab.pgrepl(&["sync", "on"]);
    assert_eq!(on.code, 0, "{on:?}");
    assert!(
        on.stdout
            .contains("pg0: left as: synchronous replication ON"),
        "{on:?}"
    );
    assert_eq!(standby_names(&lab, 0), want);
    assert_eq!(lab.sql(0, "SELECT pg_postmaster_start_time()"), start);
    let conf_d = lab.exec(0, "ls /etc/postgresql/15/main/conf.d");
    let conf_d = String::from_utf8_lossy(&conf_d.stdout);
    assert!(
        conf_d.contains("pgrepl.conf") && !conf_d.contains("sync-off"),
        "the override is gone: {conf_d}"
    );
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sync_check(&run).0, "ok");
}

#[test]
fn sync_first_1_marks_sync_and_potential_and_holds_after_a_switchover() {
    if !enabled() {
        return;
    }
    let lab = bootstrapped(
        "sync-first",
        "{ mode: first, count: 1, standbys: [pg1, pg2] }",
    );
    let want = r#"FIRST 1 ("pg1", "pg2")"#;
    let status = lab.pgrepl(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let json = status.json();
    let state = |json: &serde_json::Value, host: &str| {
        json["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .unwrap()["sync_state"]
            .clone()
    };
    assert_eq!(state(&json, "pg1"), "sync", "{}", status.stdout);
    assert_eq!(state(&json, "pg2"), "potential", "{}", status.stdout);

    // Off on pg0 when it stops being the primary: the new primary runs with the
    // inventory's value; the override stays on pg0 until `sync on`.
    let off = lab.pgrepl(&["sync", "off"]);
    assert_eq!(off.code, 0, "{off:?}");
    let run = lab.pgrepl(&["switchover", "--to", "pg1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(standby_names(&lab, 0), "", "the override stays on pg0");
    // The same value, from the managed settings every member got; pg1 never waits for itself.
    assert_eq!(standby_names(&lab, 1), want);
    assert_eq!(
        lab.sql(
            1,
            "SELECT string_agg(application_name || ' ' || sync_state, ', ' ORDER BY application_name) FROM pg_stat_replication WHERE state = 'streaming'"
        ),
        "pg0 async, pg2 sync"
    );
    let mut commit = commit_in_background(&lab, 1, "CREATE TABLE after_switchover (id int)");
    let (code, err) = ended(&mut commit, Duration::from_secs(10)).expect("commits go on");
    assert_eq!(code, 0, "{err}");
    // Only pg2 can confirm commits on pg1 now: verify warns (exit 1), naming it; and it
    // warns about the override left on pg0, which `sync on` removes.
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("`pgrepl sync on` removes it"),
        "{run:?}"
    );
    let on = lab.pgrepl(&["sync", "on"]);
    assert_eq!(on.code, 0, "{on:?}");
    assert!(
        on.stderr
            .contains("[pg0] overrides left on replicas: changed (removed /etc/postgresql/15/main/conf.d/zz-pgrepl-sync-off.conf"),
        "{on:?}"
    );
    assert_eq!(standby_names(&lab, 0), want);
    let run = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stdout.contains("sync on"), "{run:?}");
    let (status, detail) = sync_check(&run);
    assert_eq!(status, "warn");
    assert!(
        detail.contains("exactly 1 named standby(s) stream (pg2 sync)")
            && detail.contains("pg1 is named but is the primary: it never waits for itself"),
        "{detail}"
    );
}

/// Without a lab: a count the named standbys cannot meet is invalid input, before any host.
#[test]
fn sync_count_above_the_named_standbys_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.yaml");
    std::fs::write(
        &path,
        "replication:\n  password: x\n  synchronous: { count: 3, standbys: [pg1, pg2] }\nhosts:\n  - { name: pg0, address: 10.0.0.10, role: primary }\n  - { name: pg1, address: 10.0.0.11, role: replica }\n  - { name: pg2, address: 10.0.0.12, role: replica }\n",
    )
    .unwrap();
    let run = pgrepl_with(&path, &["bootstrap"], &[]);
    assert_eq!(run.code, 64, "{run:?}");
    assert!(
        run.stderr.contains(
            "inventory.yaml:3:25: replication.synchronous.count: count 3 but only 2 standby(s) named (pg1, pg2): every commit would wait forever"
        ),
        "{run:?}"
    );
}

/// Where the layout has no include directory (config in the data dir, run by pg_ctl), the
/// override is a second marked block after the managed one in postgresql.conf.
#[test]
fn sync_off_and_on_with_a_marked_block_where_there_is_no_conf_d() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("sync-pgctl", 2, "bookworm", "pgctl");
    let inventory = std::fs::read_to_string(lab.inventory()).unwrap().replacen(
        "\nreplication:\n",
        "\nreplication:\n  synchronous: {}\n",
        1,
    );
    std::fs::write(lab.inventory(), inventory).unwrap();
    let boot = lab.pgrepl(&["bootstrap"]);
    assert_eq!(boot.code, 0, "{boot:?}");
    // ANY 1 over the only replica: allowed, with a warning before the run.
    assert!(
        boot.stderr.contains("warning: ")
            && boot.stderr.contains(
                "replication.synchronous.count: count 1 equals the number of named standbys (pg1)"
            ),
        "{boot:?}"
    );
    let conf = "/var/lib/pgsql/15/data/postgresql.conf";
    let blocks = |lab: &Lab| {
        let out = lab.exec(0, &format!("grep -o 'BEGIN pgrepl [a-z ]*' {conf}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(standby_names(&lab, 0), r#"ANY 1 ("pg1")"#);
    let off = lab.pgrepl(&["sync", "off"]);
    assert_eq!(off.code, 0, "{off:?}");
    assert_eq!(standby_names(&lab, 0), "");
    assert_eq!(
        blocks(&lab),
        "BEGIN pgrepl managed block\nBEGIN pgrepl sync off",
        "the override comes after the managed block"
    );
    let boot = lab.pgrepl(&["bootstrap"]);
    assert_eq!(boot.code, 0, "{boot:?}");
    assert_eq!(standby_names(&lab, 0), "", "bootstrap keeps it off");
    let on = lab.pgrepl(&["sync", "on"]);
    assert_eq!(on.code, 0, "{on:?}");
    assert_eq!(standby_names(&lab, 0), r#"ANY 1 ("pg1")"#);
    assert_eq!(blocks(&lab), "BEGIN pgrepl managed block");
    let run = lab.pgrepl(&["verify"]);
    assert_eq!(run.code, 1, "no margin with one standby: {run:?}");
}
