//! Tablespaces: a replica copied again in a cluster whose primary has a tablespace. The
//! copy moves the replica's old tablespace dir aside with its data dir, puts both back
//! when the copy is cut short, and `cleanup` removes both once the replica is healthy.

use std::process::Command;
use std::time::Duration;

use crate::support::{Lab, enabled, run_with_trigger};

const TS: &str = "/srv/ts1";

/// Tablespace dirs are made at run time: under an overlay filesystem a dir from an image
/// layer does not rename well.
fn make_tablespace_dirs(lab: &Lab) {
    for i in 0..lab.nodes.len() {
        let out = lab.exec(
            i,
            &format!("install -d -o postgres -g postgres -m 700 {TS}"),
        );
        assert!(out.status.success(), "{out:?}");
    }
}

fn ls(lab: &Lab, node: usize, pattern: &str) -> String {
    let out = lab.exec(node, &format!("ls -d {pattern} 2>/dev/null"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What pg1 holds in the tablespace's table, if it answers.
fn rows(lab: &Lab, node: usize) -> String {
    String::from_utf8_lossy(
        &lab.try_sql(node, "SELECT string_agg(v, ',' ORDER BY v) FROM in_ts")
            .stdout,
    )
    .trim()
    .to_string()
}

#[test]
fn a_promoted_replica_is_copied_again_with_its_tablespace() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("tablespaces", 2, "bookworm", "debian");
    make_tablespace_dirs(&lab);
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");

    // A tablespace with a small table and ~40 MB more (so a rate-limited copy takes a while).
    lab.sql(0, &format!("CREATE TABLESPACE ts1 LOCATION '{TS}'"));
    lab.sql(
        0,
        "CREATE TABLE in_ts (v text) TABLESPACE ts1; INSERT INTO in_ts VALUES ('before');
         CREATE TABLE bulk TABLESPACE ts1 AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 40000) g",
    );
    assert!(
        lab.wait_for(Duration::from_secs(60), || rows(&lab, 1) == "before"),
        "pg1 never replayed the tablespace's table"
    );

    // pg1 is promoted by hand and takes a write of its own: it must be copied again.
    let out = lab.exec(1, "pg_ctlcluster 15 main promote");
    assert!(out.status.success(), "{out:?}");
    assert!(lab.wait_for(Duration::from_secs(30), || {
        lab.sql(1, "SELECT pg_is_in_recovery()") == "f"
    }));
    lab.sql(1, "INSERT INTO in_ts VALUES ('only on pg1')");
    let inv = std::fs::read_to_string(lab.inventory()).unwrap();
    std::fs::write(
        lab.inventory(),
        inv.replace(
            "  user: replicator\n",
            "  user: replicator\n  backup_max_rate: 8M\n",
        ),
    )
    .unwrap();

    // Cut short during the copy: the data dir and the tablespace dir come back together.
    let run = run_with_trigger(&lab, &["bootstrap"], "base backup: ", |pid| {
        std::thread::sleep(Duration::from_secs(1));
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    });
    assert_eq!(run.code, 130, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("tablespace dir {TS} restored from {TS}.pgrepl-"))
            && run.stdout.contains("previous data dir restored from"),
        "{run:?}"
    );
    assert_eq!(ls(&lab, 1, &format!("{TS}.pgrepl-*")), "", "{run:?}");
    assert_eq!(
        rows(&lab, 1),
        "before,only on pg1",
        "pg1's own data did not come back: {run:?}"
    );

    // Copied again: it streams, and the table in the tablespace reads back.
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(&format!("{TS} to {TS}.pgrepl-"))
            && run.stderr.contains("restored together if the copy fails"),
        "the step does not say the tablespace was moved aside: {run:?}"
    );
    assert_eq!(lab.sql(1, "SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        lab.sql(1, "SELECT status FROM pg_stat_wal_receiver"),
        "streaming"
    );
    lab.sql(0, "INSERT INTO in_ts VALUES ('after')");
    assert!(
        lab.wait_for(Duration::from_secs(30), || rows(&lab, 1) == "after,before"),
        "pg1 reads {:?}",
        rows(&lab, 1)
    );
    assert_eq!(lab.sql(1, "SELECT count(*) FROM bulk"), "40000");
    // The old tablespace dir is kept beside the new one, with pg1's own data.
    let aside = ls(&lab, 1, &format!("{TS}.pgrepl-*"));
    assert!(!aside.is_empty() && !aside.contains('\n'), "{aside:?}");
    assert!(
        !ls(&lab, 1, &format!("{aside}/PG_15_*")).is_empty(),
        "the moved-aside tablespace dir lost its contents"
    );
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !run.stderr.contains("copied the primary"),
        "a healthy replica was copied again: {run:?}"
    );

    // verify counts it apart from the data dirs (the lab's own, then pg1 promoted).
    let run = lab.pgrepl(&["verify"]);
    assert!(
        run.stdout
            .contains("2 moved-aside data dir(s) and 1 tablespace dir(s) moved with them use"),
        "{run:?}"
    );
    // cleanup lists and removes it with the old data dir.
    let run = lab.pgrepl(&["cleanup", "--check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!("pg1  {aside}")) && run.stdout.contains("would remove"),
        "{run:?}"
    );
    let run = lab.pgrepl(&["cleanup"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(ls(&lab, 1, &format!("{TS}.pgrepl-*")), "", "{run:?}");
    assert_eq!(
        ls(&lab, 1, "/var/lib/postgresql/15/main.pgrepl-*"),
        "",
        "{run:?}"
    );
    assert_eq!(rows(&lab, 1), "after,before");

    // remove-replica --wipe moves its tablespace dir aside with its data dir.
    let run = lab.pgrepl(&["remove-replica", "pg1", "--wipe"]);
    assert_eq!(run.code, 0, "{run:?}");
    let removed = ls(&lab, 1, &format!("{TS}.pgrepl-removed-*"));
    assert!(
        !removed.is_empty() && !removed.contains('\n'),
        "{removed:?} {run:?}"
    );
    assert!(
        !ls(&lab, 1, &format!("{removed}/PG_15_*")).is_empty(),
        "the tablespace dir moved aside lost its contents: {run:?}"
    );
    assert_eq!(ls(&lab, 1, &format!("{TS}/*")), "", "{run:?}");
    assert!(
        !ls(&lab, 1, "/var/lib/postgresql/15/main.pgrepl-removed-*").is_empty(),
        "{run:?}"
    );
}

/// Preflight refuses a copy whose tablespace path cannot be made on the replica, before
/// anything changes; a missing one is made for postgres by the copy.
#[test]
fn preflight_refuses_a_tablespace_path_the_replica_cannot_make() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("tablespaces-pre", 2, "bookworm", "debian");
    make_tablespace_dirs(&lab);
    lab.sql(0, &format!("CREATE TABLESPACE ts1 LOCATION '{TS}'"));
    lab.sql(
        0,
        "CREATE TABLE t TABLESPACE ts1 AS SELECT repeat('x', 1000) AS pad FROM generate_series(1, 5000)",
    );
    // Each case: prepare pg1 (as root), then bootstrap is refused with `says` and pg1 is
    // left as it was (its own standalone server, nothing moved aside).
    let refused = |prepare: &str, says: &[String]| {
        let out = lab.exec(1, prepare);
        assert!(out.status.success(), "{prepare}: {out:?}");
        let run = lab.pgrepl(&["bootstrap"]);
        assert_eq!(run.code, 2, "{prepare}: {run:?}");
        for s in says {
            assert!(
                run.stdout.contains(s.as_str()),
                "{prepare}: no `{s}`: {run:?}"
            );
        }
        assert_eq!(lab.sql(1, "SELECT pg_is_in_recovery()"), "f");
        assert_eq!(ls(&lab, 1, "/var/lib/postgresql/15/main.pgrepl-*"), "");
    };
    // The path is taken by a file.
    refused(
        &format!("rmdir {TS} && touch {TS}"),
        &[format!(
            "tablespace ts1 needs {TS} on this replica, but it, or a path above it, is not a directory"
        )],
    );
    // A mount point holding files cannot be renamed aside.
    refused(
        &format!(
            "rm {TS} && mkdir {TS} && mount -t tmpfs -o size=16m tmpfs {TS} && touch {TS}/old"
        ),
        &[format!(
            "tablespace ts1 is at {TS}, a mount point holding files on this replica"
        )],
    );
    assert_eq!(ls(&lab, 1, &format!("{TS}/old")), format!("{TS}/old"));
    // Empty, but too small for the tablespace's ~5 MB.
    refused(
        &format!("rm {TS}/old && mount -o remount,size=1m {TS} && chown postgres:postgres {TS}"),
        &[
            format!("free on {TS} but the copy of the primary writes about"),
            format!("there ({TS})"),
        ],
    );
    // Missing, the copy makes it for postgres and goes through.
    let out = lab.exec(1, &format!("umount {TS} && rmdir {TS}"));
    assert!(out.status.success(), "{out:?}");
    let run = lab.pgrepl(&["bootstrap"]);
    assert_eq!(run.code, 0, "{run:?}");
    let owner = lab.exec(1, &format!("stat -c '%U %a' {TS}"));
    assert_eq!(
        String::from_utf8_lossy(&owner.stdout).trim(),
        "postgres 700"
    );
    assert_eq!(lab.sql(1, "SELECT count(*) FROM t"), "5000");
}
