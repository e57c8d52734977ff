//! `pgrepl cleanup`: moved-aside data dirs are listed with their sizes, and removed only on
//! replicas that verify healthy; verify reports them.

use serde_json::Value;

use crate::support::{Lab, enabled};

const DATA: &str = "/var/lib/postgresql/15/main";

fn aside(i: usize) -> String {
    format!("{DATA}.pgrepl-2025010{i}T101010")
}

/// The entry of the dir this test made on `host` (bootstrap moved others aside too).
fn entry(doc: &Value, host: usize) -> &Value {
    doc["dirs"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["path"] == aside(host)))
        .unwrap_or_else(|| panic!("no dir of pg{host}: {doc:#}"))
}

#[test]
fn cleanup_removes_moved_aside_dirs_of_healthy_replicas_only() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("cleanup", 3, "bookworm", "debian");
    let boot = lab.pgrepl(&["bootstrap"]);
    assert_eq!(boot.code, 0, "{boot:?}");
    for i in 0..3 {
        let dir = aside(i);
        let made = lab.exec(
            i,
            &format!("mkdir -p {dir}/base && head -c 1048576 /dev/zero > {dir}/base/f && chown -R postgres: {dir}"),
        );
        assert!(made.status.success(), "{made:?}");
    }
    let exists = |i: usize| {
        lab.exec(i, &format!("test -d {}", aside(i)))
            .status
            .success()
    };

    // verify lists them with their share of the disk.
    let verify = lab.pgrepl(&["verify", "--format", "json"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    let doc = verify.json();
    let pg2 = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "pg2")
        .unwrap();
    let check = pg2["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "old data dirs")
        .unwrap_or_else(|| panic!("no old data dirs check: {verify:?}"));
    assert_eq!(check["status"], "ok", "{verify:?}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("moved-aside data dir(s) use"),
        "{verify:?}"
    );

    // pg1 is down: its dir stays, as does the primary's.
    assert!(lab.exec(1, "pg_ctlcluster 15 main stop").status.success());
    let run = lab.pgrepl(&["cleanup", "--check", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc = run.json();
    assert_eq!(entry(&doc, 2)["action"], "would_remove", "{run:?}");
    assert_eq!(entry(&doc, 2)["host"], "pg2", "{run:?}");
    assert!(
        entry(&doc, 2)["bytes"].as_u64().unwrap() >= 1 << 20,
        "{run:?}"
    );
    assert_eq!(entry(&doc, 1)["action"], "kept", "{run:?}");
    assert!(
        entry(&doc, 1)["reason"]
            .as_str()
            .unwrap()
            .contains("does not verify healthy"),
        "{run:?}"
    );
    assert_eq!(entry(&doc, 0)["action"], "kept", "{run:?}");
    assert!(
        entry(&doc, 0)["reason"]
            .as_str()
            .unwrap()
            .contains("primary"),
        "{run:?}"
    );
    assert!((0..3).all(exists), "--check removed something");

    let run = lab.pgrepl(&["cleanup"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("pg2  {}  1.0", aside(2)))
                && l.ends_with(" MiB  removed"))
            && run.stdout.contains("freed "),
        "{run:?}"
    );
    assert!(!exists(2), "pg2's dir was not removed: {run:?}");
    assert!(exists(1) && exists(0), "a kept dir was removed: {run:?}");
    assert_eq!(
        lab.exec(0, "test -e /var/lib/pgrepl/run.lock")
            .status
            .code(),
        Some(1),
        "the lock was not released"
    );

    // Healthy again, pg1's goes too.
    assert!(lab.exec(1, "pg_ctlcluster 15 main start").status.success());
    let healthy = lab.wait_for(std::time::Duration::from_secs(30), || {
        lab.pgrepl(&["verify"]).code == 0
    });
    assert!(healthy);
    let run = lab.pgrepl(&["cleanup"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!exists(1) && exists(0), "{run:?}");
}
